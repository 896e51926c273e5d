#!/usr/bin/env bash
# The streaming exec service (ABI 1.2: ferry_host.exec_start / exec_wait, issue 15 point 1),
# on the local machine and over real OpenSSH on loopback, logging in as a separate
# unprivileged user with key authentication and a pinned host key (tests/helpers/sshd.sh
# --key-user).
. "$(dirname "$0")/../lib.sh"

SSHD_DIR=$T_DIR/sshd
KEY_USER=ferry-stream
port=$("$FERRY_ROOT/tests/helpers/sshd.sh" start "$SSHD_DIR" --key-user "$KEY_USER") ||
    { fail "sshd starts" "$port"; t_done; exit 1; }
t_cleanup_sshd() { "$FERRY_ROOT/tests/helpers/sshd.sh" stop "$SSHD_DIR"; t_cleanup; }
trap t_cleanup_sshd EXIT
pass "sshd listens on 127.0.0.1:$port"

# --- the fixture: an unprivileged user, key authentication, a pinned host key ---------------
. "$SSHD_DIR/env"
eq "sshd.sh records the port" "$SSHD_PORT" "$port"
eq "... the key user" "$SSHD_USER" "$KEY_USER"
eq "... and its home" "$SSHD_HOME" "/home/$KEY_USER"
eq "the home is the user's own" "$(stat -c '%U %a' "$SSHD_HOME")" "$KEY_USER 755"
printf '[127.0.0.1]:%s %s\n' "$port" "$SSHD_HOST_KEY" >"$T_DIR/known_hosts"
kssh() { # kssh USER COMMAND: logs in with the client key, the host key pinned
    ssh -F /dev/null -i "$SSHD_DIR/client_key" -p "$port" -o BatchMode=yes -o IdentitiesOnly=yes \
        -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$T_DIR/known_hosts" "$1@127.0.0.1" "$2"
}
eq "the key user logs in with the key and the pinned host key" \
    "$(kssh "$KEY_USER" 'id -un; id -u; echo $HOME' 2>&1 | tr '\n' ' ')" "$KEY_USER $(id -u "$KEY_USER") /home/$KEY_USER "
[[ $(id -u "$KEY_USER") -ne 0 ]] && pass "it is not root" || fail "it is not root"
eq "root still logs in with the key" "$(kssh root 'id -un' 2>&1)" root
printf '[127.0.0.1]:%s %s\n' "$port" "$(ssh-keygen -y -f "$SSHD_DIR/client_key")" >"$T_DIR/known_hosts"
contains "a host key that is not the pinned one is refused" "$(kssh "$KEY_USER" true 2>&1)" \
    "Host key verification failed"

# --- a probe plugin ------------------------------------------------------------------------
# fx_pump starts params.command with exec_start, writes params.bytes of a deterministic
# pseudo-random stream to its stdin from a thread while run() reads its stdout to the end,
# hashing both sides (FNV-1a 64), then exec_wait. It returns the counts, hashes and errors of
# both sides, the first 64 bytes read (hex), exec_wait's result, whether the host has exec_start, and the worker's peak RSS
# before and after; it logs "stopped=..." (a cancelled item's result is not kept).
# grace: 3 s, time for a far-side cancel's own ssh session to kill the command (about 0.35 s
# on a quiet machine, past 1 s under a loaded make check).
write_config 'timeouts = { default = 120; grace = 3; };' 'retry = { max_retries = 0; };' \
    'lease = { poll_ms = 100; };' 'workers = { count = 4; };'
install_plugins
cat >"$T_DIR/fx_stream.c" <<'EOF'
#include <ferry/plugin.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct side { int fd; json_int_t bytes, done; unsigned long long hash; int err; };

static unsigned long long fnv(unsigned long long h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static void *writer(void *arg)
{
    struct side *w = arg;
    static unsigned char buf[65536];
    unsigned long long x = 88172645463325252ULL;
    w->hash = 14695981039346656037ULL;
    while (w->done < w->bytes) {
        size_t n = (size_t)(w->bytes - w->done) < sizeof(buf) ? (size_t)(w->bytes - w->done) : sizeof(buf);
        for (size_t i = 0; i < n; i += 8) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            memcpy(buf + i, &x, n - i < 8 ? n - i : 8);
        }
        ssize_t k = write(w->fd, buf, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) { w->err = errno; break; }
        w->hash = fnv(w->hash, buf, (size_t)k);
        w->done += k;
    }
    close(w->fd);
    return NULL;
}

static json_int_t hwm_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    json_int_t kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kb = strtoll(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

static ferry_result fx_pump(ferry_ctx *ctx, const json_t *p, json_t **r)
{
    json_int_t before = hwm_kb();
    int has = FERRY_HOST_HAS(ctx->host, exec_start) && FERRY_HOST_HAS(ctx->host, exec_wait);
    if (!has) {
        ferry_set_error(ctx, "old_host", "no exec_start");
        return FERRY_FAIL;
    }
    int to = -1, from = -1;
    ferry_exec_stream *s = ctx->host->exec_start(ctx, json_string_value(json_object_get(p, "command")),
                                                 json_object_get(p, "options"), &to, &from);
    if (s == NULL)
        return FERRY_FAIL; /* the service set the error */
    struct side w = {.fd = to, .bytes = json_integer_value(json_object_get(p, "bytes"))};
    pthread_t t;
    pthread_create(&t, NULL, writer, &w);
    static unsigned char buf[65536];
    char head[129] = ""; /* the first 64 bytes in hex */
    struct side rd = {.hash = 14695981039346656037ULL};
    for (;;) {
        ssize_t n = read(from, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) { rd.err = n < 0 ? errno : 0; break; }
        for (json_int_t i = 0; rd.done + i < 64 && i < n; i++)
            snprintf(head + 2 * (rd.done + i), 3, "%02x", buf[i]);
        rd.hash = fnv(rd.hash, buf, (size_t)n);
        rd.done += n;
    }
    close(from);
    pthread_join(t, NULL);
    json_t *res = ctx->host->exec_wait(ctx, s, 0);
    if (res == NULL)
        return FERRY_FAIL;
    const char *why = json_string_value(json_object_get(res, "stopped"));
    ferry_log(ctx, FERRY_LOG_INFO, "stopped=%s sent=%lld write_errno=%d", why ? why : "null",
              (long long)w.done, w.err);
    char hs[32], hr[32];
    snprintf(hs, sizeof(hs), "%016llx", w.hash);
    snprintf(hr, sizeof(hr), "%016llx", rd.hash);
    *r = json_pack("{s:I,s:i,s:s,s:I,s:s,s:s,s:o,s:b,s:I,s:I}", "sent", w.done, "write_errno",
                   w.err, "hash_sent", hs, "received", rd.done, "hash_received", hr, "head",
                   head, "wait", res, "has_exec_start", has, "hwm_before_kb", before,
                   "hwm_after_kb", hwm_kb());
    return FERRY_OK;
}

static ferry_result fx_badwait(ferry_ctx *ctx, const json_t *p, json_t **r)
{
    (void)p;
    int to, from;
    json_t *first = ctx->host->exec_wait(ctx, NULL, 0);
    ferry_exec_stream *s = ctx->host->exec_start(ctx, "true", NULL, &to, &from);
    if (s == NULL)
        return FERRY_FAIL;
    close(to);
    close(from);
    json_t *ok = ctx->host->exec_wait(ctx, s, 0);
    json_t *again = ctx->host->exec_wait(ctx, s, 0);
    json_t *refused = json_pack("{s:s}", "stdin", "x");
    ferry_exec_stream *bad = ctx->host->exec_start(ctx, "cat", refused, &to, &from);
    int unset = to == -1 && from == -1;
    json_decref(refused);
    /* One never waited: the worker stops it when the attempt ends. */
    ferry_exec_stream *left = ctx->host->exec_start(ctx, "exec sleep 3139", NULL, &to, &from);
    *r = json_pack("{s:b,s:o,s:b,s:b,s:b,s:b}", "null_handle", first == NULL, "ok", ok,
                   "again_null", again == NULL, "stdin_refused", bad == NULL, "fds_unset", unset,
                   "left_started", left != NULL);
    return FERRY_OK;
}

static const ferry_param pump_params[] = {
    {"command", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL, "command"},
    {"bytes", FERRY_PARAM_INTEGER, 0, NULL, "bytes to write"},
    {"options", FERRY_PARAM_OBJECT, 0, NULL, "exec_start options"},
    {NULL, 0, 0, NULL, NULL}};
static const ferry_function def_pump = {FERRY_FUNCTION_INIT, .name = "fx_pump", .summary = "pump",
                                        FERRY_PARAMS(pump_params), .run = fx_pump};
static const ferry_function def_badwait = {FERRY_FUNCTION_INIT, .name = "fx_badwait",
                                           .summary = "bad handles", .run = fx_badwait};
static const ferry_function *const fns[] = {&def_pump, &def_badwait, NULL};
FERRY_PLUGIN(.name = "fxstream", .version = "1", .summary = "exec_start probes", .functions = fns)
EOF
# A plugin built for ABI 1.1 (its descriptor says 1.1, as FERRY_PLUGIN made it before 1.2): it
# loads and runs on this 1.2 host; exec, a 1.0 service, works for it.
cat >"$T_DIR/fx_old.c" <<'EOF'
#include <ferry/plugin.h>
static ferry_result fx_old11(ferry_ctx *ctx, const json_t *p, json_t **r)
{
    (void)p;
    json_t *res = ferry_exec(ctx, "echo old plugin", NULL);
    if (res == NULL)
        return FERRY_FAIL;
    *r = json_pack("{s:O,s:i}", "output", json_object_get(res, "output"), "attempt", ferry_attempt(ctx));
    json_decref(res);
    return FERRY_OK;
}
static const ferry_function def_old = {FERRY_FUNCTION_INIT, .name = "fx_old11", .summary = "old", .run = fx_old11};
static const ferry_function *const fns[] = {&def_old, NULL};
FERRY_PLUGIN(.name = "fxold", .version = "1", .summary = "built for 1.1", .functions = fns, .abi_minor = 1)
EOF
san=(); [[ ${SAN:-0} == 1 ]] && san=(-fsanitize=address,undefined)
${CC:-cc} -std=gnu11 -O2 -fPIC -fvisibility=hidden -shared -Wall -Wextra -Werror "${san[@]}" \
    -I"$FERRY_ROOT/sdk/include" -o "$T_DIR/plugins/fxstream.so" "$T_DIR/fx_stream.c" -ljansson -lpthread &&
    ${CC:-cc} -std=gnu11 -O1 -fPIC -fvisibility=hidden -shared -Wall -Wextra -Werror -Wno-override-init \
        "${san[@]}" -I"$FERRY_ROOT/sdk/include" -o "$T_DIR/plugins/fxold.so" "$T_DIR/fx_old.c" -ljansson &&
    chmod 644 "$T_DIR"/plugins/fx*.so && pass "the probe plugins build" || fail "the probe plugins build"

# docs/sdk.md's example, as printed there, with a descriptor around it.
{
    sed -n '/^## Streaming a command/,/^## /p' "$FERRY_ROOT/docs/sdk.md" | sed -n '/^```c$/,/^```$/p' | sed '1d;$d'
    cat <<'EOF'
static const ferry_param ex_params[] = {
    {"text", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL, "text"}, {NULL, 0, 0, NULL, NULL}};
static const ferry_function def_ex = {FERRY_FUNCTION_INIT, .name = "count_lines", .summary = "wc -l",
                                      FERRY_PARAMS(ex_params), .run = count_lines};
static const ferry_function *const ex_fns[] = {&def_ex, NULL};
FERRY_PLUGIN(.name = "docex", .version = "1", .summary = "docs/sdk.md's example", .functions = ex_fns)
EOF
} >"$T_DIR/docex.c"
${CC:-cc} -std=gnu11 -O1 -fPIC -fvisibility=hidden -shared -Wall -Wextra -Werror "${san[@]}" \
    -I"$FERRY_ROOT/sdk/include" -o "$T_DIR/plugins/docex.so" "$T_DIR/docex.c" -ljansson -lpthread &&
    chmod 644 "$T_DIR/plugins/docex.so" && pass "docs/sdk.md's exec_start example builds" ||
    fail "docs/sdk.md's exec_start example builds"

ferry create region r1 >/dev/null
ferry create bridge r1 local >/dev/null
ferry create team Ops >/dev/null
ds=$SSHD_HOME/ds-$$
ferry create machine Ops local here --vault '{"connection":"local"}' >/dev/null
remote_vault=$(jq -n --argjson p "$port" --arg u "$KEY_USER" --arg k "$(cat "$SSHD_DIR/client_key")" \
    --arg h "$SSHD_HOST_KEY" --arg d "$ds" \
    '{ip:"127.0.0.1", user:$u, ssh_port:$p, SSH_PRIVATE_KEY:$k, host_public_key:$h, datastore:$d}')
ferry create machine Ops local far --vault "$remote_vault" >/dev/null
start_host

status_is() { [[ $(task_status "$1") == "$2" ]]; }
wait_st() { wait_for "${3:-60}" status_is "$1" "$2"; }
q() { # q MACHINE VAULT_JSON: prints the task id
    ferry create queue-item Ops "$1" local --vault "$2" --output json | jq -r '.data[0].taskId'
}
pump() { # pump MACHINE COMMAND BYTES [OPTIONS_JSON [EXTRA]]
    q "$1" "$(jq -n --arg c "$2" --argjson b "$3" --argjson o "${4:-{\}}" --argjson x "${5:-{\}}" \
        '{function:"fx_pump", command:$c, bytes:$b, options:$o} + $x')"
}
rjson() { ferry list queue --task-id "$1" --output json | jq -c ".data[0].responseVault.result"; }
unhex() { python3 -c 'import sys; sys.stdout.write(bytes.fromhex(sys.stdin.read().strip()).decode())'; }
res() { ferry list queue --task-id "$1" --output json | jq -c '.data[0].responseVault'; }
result() { ferry list queue --task-id "$1" --output json | jq -r ".data[0].responseVault.result${2:-}"; }
trace() { ferry queue trace "$1" --output json | jq -r '.data.timeline[] | "\(.action) \(.details)"'; }
remote_left() { pgrep -u "$KEY_USER" -f "$1" | wc -l; }
none_left() { [[ $(remote_left "$1") == 0 ]]; }

# --- ABI -------------------------------------------------------------------------------------
eq "plugin.h is ABI 1.2" "$(sed -n 's/^#define FERRY_ABI_MINOR *\([0-9]*\).*/\1/p' "$FERRY_ROOT/sdk/include/ferry/plugin.h")" 2
eq "a plugin built for ABI 1.1 loads on the 1.2 host" \
    "$(ferry plugins --output json | jq -r '.data[] | select(.file=="fxold.so") | "\(.loaded) \(.abi)"')" "true 1.1"
t=$(q here '{"function":"fx_old11"}')
wait_st "$t" COMPLETED 20
eq "... and runs" "$(rjson "$t")" '{"output":"old plugin\n","attempt":1}'

for m in here far; do
    t=$(q "$m" '{"function":"count_lines","text":"one\ntwo\nthree\n"}')
    wait_st "$t" COMPLETED 30
    eq "$m: docs/sdk.md's example runs" "$(rjson "$t")" '{"lines":3}'
done

# --- 200 MiB through cat, both ways, local and over SSH --------------------------------------
MIB200=$((200 * 1024 * 1024))
for m in here far; do
    t=$(pump "$m" cat "$MIB200")
    wait_st "$t" COMPLETED 180
    r=$(rjson "$t")
    eq "$m: FERRY_HOST_HAS(host, exec_start) is true on the 1.2 host" "$(jq -r .has_exec_start <<<"$r")" true
    eq "$m: 200 MiB go to cat's stdin" "$(jq -r .sent <<<"$r")" "$MIB200"
    eq "$m: and all come back from its stdout" "$(jq -r .received <<<"$r")" "$MIB200"
    eq "$m: the same bytes (hash)" "$(jq -r .hash_received <<<"$r")" "$(jq -r .hash_sent <<<"$r")"
    echo "# $m: 200 MiB through cat both ways in $(jq -r .wait.duration_ms <<<"$r") ms"
    eq "$m: cat exits 0, not stopped" "$(jq -c '[.wait.exit_code, .wait.signal, .wait.stopped]' <<<"$r")" '[0,null,null]'
    grow=$(( $(jq -r '.hwm_after_kb - .hwm_before_kb' <<<"$r") ))
    (( grow < 16384 )) && pass "$m: the worker's peak RSS grows by $grow KiB while 200 MiB pass (< 16 MiB)" ||
        fail "$m: the worker's peak RSS stays bounded" "$r"
done

# --- binary data, stderr apart, env and cwd ------------------------------------------------------
for m in here far; do
    t=$(pump "$m" 'printf "\000\377\r\n%s|" "$FOO"; pwd; echo to-stderr >&2; exit 5' 0 \
        '{"env": {"FOO": "a b'"'"'c"}, "cwd": "/tmp"}')
    wait_st "$t" COMPLETED 30
    r=$(rjson "$t")
    eq "$m: stdout is binary-safe (no terminal)" "$(jq -r '[.received, .head[0:8]] | join(" ")' <<<"$r")" "15 00ff0d0a"
    eq "$m: env and cwd reach the command" "$(jq -r '.head[8:]' <<<"$r" | unhex)" "a b'c|/tmp"
    eq "$m: stderr is kept apart, the exit code comes back" "$(jq -c '[.wait.output, .wait.exit_code]' <<<"$r")" '["to-stderr\n",5]'
done

# --- early ends: stdout closed early, stdin never read; a stderr flood ----------------------------
for m in here far; do
    t=$(pump "$m" 'head -c 1000 >/dev/null; echo got-1000; exec >&-; sleep 1; exit 2' $((64 * 1024 * 1024)))
    wait_st "$t" COMPLETED 60
    r=$(rjson "$t")
    eq "$m: a command that stops reading: the function's writes fail with EPIPE" "$(jq -r .write_errno <<<"$r")" 32
    eq "$m: ... the worker lives on (no SIGPIPE) and gets its output and exit" "$(jq -r '.head' <<<"$r" | unhex) $(jq -r .wait.exit_code <<<"$r")" "got-1000 2"
    t=$(pump "$m" 'echo never-read' $((64 * 1024 * 1024)))
    wait_st "$t" COMPLETED 60
    r=$(rjson "$t")
    eq "$m: a command that never reads its stdin" "$(jq -r '.head' <<<"$r" | unhex) $(jq -c '[.write_errno, .wait.exit_code]' <<<"$r")" 'never-read [32,0]'
    t=$(pump "$m" 'head -c 8388608 /dev/zero | tr "\0" e >&2; echo the-end >&2; cat' $((16 * 1024 * 1024)))
    wait_st "$t" COMPLETED 60
    r=$(rjson "$t")
    eq "$m: 8 MiB of stderr do not block the command" "$(jq -r .received <<<"$r")" $((16 * 1024 * 1024))
    eq "$m: exec_wait has its last 64 KiB" "$(jq -c '[(.wait.output | length), (.wait.output | endswith("ethe-end\n")), .wait.truncated]' <<<"$r")" '[65536,true,true]'
done

# --- bad handles, refused options, a stream never waited ----------------------------------------
t=$(q here '{"function":"fx_badwait"}')
wait_st "$t" COMPLETED 30
eq "a NULL handle, a handle already waited: NULL, no crash; stdin refused, the descriptors -1" \
    "$(rjson "$t")" '{"null_handle":true,"ok":{"exit_code":0,"output":"","truncated":false,"duration_ms":'"$(result "$t" .ok.duration_ms)"',"signal":null,"stopped":null},"again_null":true,"stdin_refused":true,"fds_unset":true,"left_started":true}'
contains "a stream the function never waited for is stopped at the attempt's end" "$(trace "$t")" \
    "stopped 1 command started by exec_start and never waited for"
wait_for 5 bash -c '! pgrep -f "sleep 313[9]" >/dev/null' && pass "... its process is gone" || fail "... its process is gone"

# --- stopping: the timeout, a cancel, the job's timeout, kill -9 of ssh -----------------------------
# Each command sleeps under a number of its own: no process of it may be left on the far side
# (the key user's processes), the local side reads end-of-file at once.
t=$(pump far 'sleep 3131; echo late' 0 '{"timeout": 2}')
wait_st "$t" COMPLETED 30
r=$(rjson "$t")
eq "far: the exec timeout stops the command while the function is blocked in read()" \
    "$(jq -c '[.wait.stopped, .received]' <<<"$r")" '["timeout",0]'
wait_for 8 none_left "sleep 3131" && pass "far: no process of it is left on the remote side after the timeout" ||
    fail "far: no process of it is left on the remote side after the timeout" "$(pgrep -a -u "$KEY_USER")"

for m in here far; do
    t=$(pump "$m" 'sleep 3132; echo never' $((1024 * 1024 * 1024)))
    wait_st "$t" PROCESSING 20
    [[ $m == far ]] && wait_for 10 bash -c "pgrep -u $KEY_USER -f 'sleep 3132' >/dev/null"
    sleep 1 # the writer fills the pipes and blocks in write(), the reader in read()
    ferry queue cancel "$t" >/dev/null
    wait_st "$t" CANCELLED 20
    wait_for 10 bash -c "ferry queue trace $t --output json | grep -q stopped=" 
    contains "$m: a cancel stops the command while the function is blocked in write() and read()" \
        "$(trace "$t")" "stopped=cancelled"
done
wait_for 8 none_left "sleep 3132" && pass "far: no process of it is left on the remote side after a cancel" ||
    fail "far: no process of it is left on the remote side after a cancel" "$(pgrep -a -u "$KEY_USER")"

t=$(pump far 'sleep 3133' 0 '{}' '{"timeout": 3}')
wait_st "$t" FAILED 30
contains "far: the job's timeout fails the job" "$(res "$t" | jq -r .error.outcome)" TIMEOUT
wait_for 8 none_left "sleep 3133" && pass "far: no process of it is left on the remote side after the job's timeout" ||
    fail "far: no process of it is left on the remote side after the job's timeout" "$(pgrep -a -u "$KEY_USER")"

t=$(pump far 'sleep 3134; echo never' 0)
wait_for 15 bash -c "pgrep -u $KEY_USER -f 'sleep 3134' >/dev/null"
client=$(pgrep -f -- "-p $port .*sleep 3134" | head -1)
[[ -n $client ]] && kill -9 "$client"
wait_st "$t" COMPLETED 20
eq "far: kill -9 of the local ssh client: the function reads end-of-file, exec_wait says so" \
    "$(rjson "$t" | jq -c '[.received, .wait.signal]')" '[0,9]'
wait_for 8 none_left "sleep 3134" && pass "far: no process of it is left on the remote side after kill -9 of ssh" ||
    fail "far: no process of it is left on the remote side after kill -9 of ssh" "$(pgrep -a -u "$KEY_USER")"

# --- failures --------------------------------------------------------------------------------------
t=$(pump here cat 0 '{"stdin": "x"}')
wait_st "$t" FAILED 20
contains "stdin is refused with a clear error" "$(res "$t" | jq -r .error.message)" '"stdin" is exec'"'"'s option'
t=$(pump here cat 0 '{"max_output": 10}')
wait_st "$t" FAILED 20
contains "max_output too" "$(res "$t" | jq -r .error.message)" '"max_output" is exec'"'"'s option'
ferry create machine Ops local mitm --vault "$(jq --arg h "$(ssh-keygen -y -f "$SSHD_DIR/client_key")" '.host_public_key = $h' <<<"$remote_vault")" >/dev/null
t=$(pump mitm cat 1000)
wait_st "$t" FAILED 30
contains "a host key that is not the pinned one: exec_wait fails with ssh's reason" "$(res "$t" | jq -r .error.message)" \
    "Host key verification failed"

stop_host
rm -rf "$ds"
t_done
