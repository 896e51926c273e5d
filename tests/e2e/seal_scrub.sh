#!/usr/bin/env bash
# Scrubbed results (issue 17, point 5; docs/security.md): a function that echoes its secrets
# in its result, under any key and inside longer text, leaves none of them in the response
# vault (trace, list), the webhook's body or the mail; its non-secret output stays.
. "$(dirname "$0")/../lib.sh"

rx=$T_DIR/rx
start_receivers "$rx"
write_config "smtp = { url = \"smtp://127.0.0.1:$smtp_port\"; from = \"ferry@test.local\"; };" \
    'lease = { poll_ms = 200; };'
install_plugins

# A function that puts its parameters, and text made of them, in its result.
cat >"$T_DIR/seal_leak.c" <<'EOF'
#include <stdio.h>
#include <ferry/plugin.h>
static ferry_result leak_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    (void)ctx;
    const char *pw = json_string_value(json_object_get(params, "password"));
    const char *lic = json_string_value(json_object_get(params, "license"));
    char line[512];
    snprintf(line, sizeof(line), "connected with %s; licence %s; done", pw, lic);
    *result = json_pack("{s:s,s:s,s:[s,{s:s}],s:O,s:s}", "output", line, "visible", "plain-output",
                        "list", pw, "deep", lic, "params", params, "password", pw);
    return FERRY_OK;
}
static const ferry_param leak_params[] = {
    {"password", FERRY_PARAM_STRING, 0, NULL, "secret by name"},
    {"license", FERRY_PARAM_STRING, FERRY_PARAM_SECRET, NULL, "secret by the descriptor"},
    {NULL, 0, 0, NULL, NULL}};
static const ferry_function leak = {FERRY_FUNCTION_INIT, .name = "seal_leak",
    .summary = "echo secrets in the result", FERRY_PARAMS(leak_params), .run = leak_run};
static const ferry_function *const fns[] = {&leak, NULL};
FERRY_PLUGIN(.name = "sealleak", .version = "1.0.0", .summary = "test", .functions = fns);
EOF
san=()
[[ ${SAN:-0} == 1 ]] && san=(-fsanitize=address,undefined)
${CC:-cc} -std=gnu11 -O1 -fPIC -shared -Wall -Werror "${san[@]}" -I"$FERRY_ROOT/sdk/include" \
    -o "$T_DIR/plugins/sealleak.so" "$T_DIR/seal_leak.c" -ljansson || fail "the leak fixture builds"
setup_local_machine Ops m1
start_host || fail "host starts"

PW=scrub-password-SCRUBSECRET1 LIC=scrub-licence-SCRUBSECRET2
ALL="SCRUBSECRET1|SCRUBSECRET2"
id=$(ferry create queue-item Ops m1 local --output json --vault "{\"function\":\"seal_leak\",\"password\":\"$PW\",\"license\":\"$LIC\",\"on_success\":{\"notify\":[\"ops@company.com\",\"http://127.0.0.1:$http_port/hook\"]}}" |
    jq -r '.data[0].taskId')
wait_status "$id" COMPLETED 20 || fail "the item completes" "$(ferry queue trace "$id" 2>&1 | tail -5)"
wait_for 10 test -e "$rx/mail-1.txt" -a -e "$rx/post-1.json" || fail "the notifications arrive"

trace=$(ferry queue trace "$id" --output json)
eq "the response vault keeps non-secret output" "$(jq -r .data.response_vault.result.visible <<<"$trace")" plain-output
eq "... and the text around a secret" "$(jq -r .data.response_vault.result.output <<<"$trace")" \
    "connected with ********; licence ********; done"
for what in "ferry queue trace" "ferry list queue" "the stored response vault" "the webhook's body" "the mail"; do
    case $what in
    "ferry queue trace") text=$trace ;;
    "ferry list queue") text=$(ferry list queue --task-id "$id" --output json) ;;
    "the stored response vault") text=$(sqlite3 "$T_DIR/ferry.db" "SELECT response_vault FROM queue_items WHERE task_id = '$id'") ;;
    "the webhook's body") text=$(cat "$rx/post-1.json") ;;
    "the mail") text=$(cat "$rx/mail-1.txt") ;;
    esac
    found=$(grep -oE "$ALL" <<<"$text" | sort -u | tr '\n' ' ')
    [[ -n $text && -z $found ]] && pass "$what holds neither secret the function echoed" ||
        fail "$what holds neither secret the function echoed" "found: $found in ${text:0:300}"
done
contains "the webhook's body still carries the result" "$(cat "$rx/post-1.json")" "plain-output"
stop_host
t_done
