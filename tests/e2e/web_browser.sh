#!/usr/bin/env bash
# The web dashboard in a real browser (issue 16, points 4 and 7): Debian's chromium, driven
# by playwright-core from npm (installed into $BUILD/node_modules on first use), against a
# real `ferry serve` and `ferry web` on a fresh store. tests/e2e/web_browser.js does the
# clicking: sign in (cookie + CSRF), counts, filter, paging, a trace and its timeline,
# create with confirmation and live progress over server-sent events, cancel, the other
# views, XSS payloads in vaults and errors that must stay text, a phone-sized screen, sign out.
# Screenshots: $BUILD/artifacts/web/*.png (docs/web.md).
. "$(dirname "$0")/../lib.sh"
. "$FERRY_ROOT/tests/helpers/web.sh"

PW_VERSION=1.65.2 # playwright-core: drives Debian's chromium over CDP; no browser download
ART=$FERRY_ROOT/$BUILD/artifacts/web
NODE_MODULES=$FERRY_ROOT/$BUILD/node_modules

command -v chromium >/dev/null || { fail "chromium is installed (scripts/deps.sh test)"; t_done; exit 1; }
command -v node >/dev/null || { fail "node is installed (scripts/deps.sh test)"; t_done; exit 1; }
if [[ ! -f $NODE_MODULES/playwright-core/package.json ]] ||
    [[ $(jq -r .version "$NODE_MODULES/playwright-core/package.json") != "$PW_VERSION" ]]; then
    # From the npm registry only; playwright-core alone never downloads a browser.
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$FERRY_ROOT/$BUILD" --no-save --no-package-lock \
        --no-audit --no-fund --loglevel=error "playwright-core@$PW_VERSION" >"$T_DIR/npm.log" 2>&1 ||
        { fail "npm installs playwright-core@$PW_VERSION" "$(tail -5 "$T_DIR/npm.log")"; t_done; exit 1; }
fi
rm -rf "$ART" && mkdir -p "$ART"

write_config
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c && chmod 644 "$T_DIR/plugins/misbehave.so"
ferry create region r1 >/dev/null
ferry create bridge r1 local >/dev/null
ferry create bridge r1 far >/dev/null # no host serves it: its items stay PENDING
ferry create team Ops >/dev/null
ferry create team Dev >/dev/null
ferry create machine Ops local box1 --vault '{"connection":"local"}' >/dev/null
ferry create machine Ops far far1 --vault '{"ip":"10.0.0.1","user":"u","ssh_port":22,"datastore":"/d"}' >/dev/null
ferry create machine Dev far dev1 --vault '{"ip":"10.0.0.2","user":"u","ssh_port":22,"datastore":"/d"}' >/dev/null
ferry create machine-group Ops web --members box1,far1 >/dev/null
# A storage whose credentials the dashboard must never show (the API masks them).
ferry create storage Ops backups --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/store\",\"secret_key\":\"planted-s3cr3t-42\"}" >/dev/null
ferry create schedule Ops nightly --vault '{"cron":"0 2 * * *","timezone":"UTC","machine":"box1","queue_config":{"function":"fx_noop"}}' >/dev/null 2>&1
ferry create user alice >/dev/null
TOKEN=$(ferry create token alice --team Ops --role operator --output json | jq -r '.data.token')
ferry create user vic >/dev/null
VIEWER=$(ferry create token vic --team Ops --role viewer --output json | jq -r '.data.token')
[[ -n $TOKEN && $TOKEN != null && -n $VIEWER && $VIEWER != null ]] ||
    { fail "an operator and a viewer token for the browser"; t_done; exit 1; }

mk() { # TEAM MACHINE BRIDGE PRIORITY VAULT: prints the task id
    ferry create queue-item "$1" "$2" "$3" --priority "$4" --vault "$5" --output json 2>/dev/null | jq -r '.data[0].taskId'
}
# 60 pending items (more than a page), priorities 1-5; another team's item the token must not see.
for i in $(seq 1 60); do mk Ops far1 far $(((i % 5) + 1)) '{"function":"fx_noop"}' >/dev/null; done
mk Dev dev1 far 1 '{"function":"fx_noop"}' >/dev/null
CANCEL_ID=$(mk Ops far1 far 2 '{"function":"fx_noop","description":"cancel me"}')
KEEP_ID=$(mk Ops far1 far 2 '{"function":"fx_noop","description":"keep me"}')
# Hostile strings where the dashboard shows store text: a description and tags (request
# vault), a parameter, and an error message (last failure reason, timeline, failures view).
P1='<script>window.__xss=1;alert(1)</script>'
P2='<img src=x onerror="window.__xss=2;alert(2)">'
XSS_VAULT=$(jq -cn --arg a "$P1" --arg b "$P2" '{function:"fx_noop",description:($a+$b),tags:[$b,$a]}')
XSS_PENDING=$(mk Ops far1 far 3 "$XSS_VAULT")
XSS_FAIL_VAULT=$(jq -cn --arg m "$P2 $P1" '{function:"fx_result",code:"FAIL",message:$m,max_retries:0}')
start_host || { fail "ferry serve starts"; t_done; exit 1; }
XSS_FAILED=$(mk Ops box1 local 2 "$XSS_FAIL_VAULT")
DONE_ID=$(mk Ops box1 local 3 '{"function":"fx_noop"}')
wait_status "$XSS_FAILED" FAILED 20 || fail "the hostile item fails" "$(task_status "$XSS_FAILED")"
wait_status "$DONE_ID" COMPLETED 20 || fail "an item completes" "$(task_status "$DONE_ID")"

start_web || { fail "ferry web starts"; t_done; exit 1; }

# The files are built into the binary and served with a policy that forbids inline script.
hdr=$(curl -sS -D - -o "$T_DIR/index.html" "$WEB/")
contains "GET / serves the dashboard" "$(cat "$T_DIR/index.html")" '<script src="/app.js" defer></script>'
csp=$(grep -i '^content-security-policy:' <<<"$hdr" | tr -d '\r')
# The policy for scripts: script-src, or default-src when there is none.
scripts=$(tr ';' '\n' <<<"${csp#*:}" | sed 's/^ *//' | grep -E '^script-src ' | head -1)
[[ -n $scripts ]] || scripts=$(tr ';' '\n' <<<"${csp#*:}" | sed 's/^ *//' | grep -E '^default-src ' | head -1)
if [[ $scripts == *"'self'"* && $scripts != *unsafe-* && $scripts != *"*"* && $scripts != *data:* ]]; then
    pass "the dashboard is served with a CSP that allows only its own scripts"
else
    fail "the dashboard is served with a CSP that allows only its own scripts" "header: ${csp:-none}"
fi
# Nothing in the files parses HTML from strings, and no markup carries inline code or style.
bad=$(grep -nE 'innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function' \
    "$FERRY_ROOT"/host/web/assets/*.js || true)
eq "no HTML-parsing sink in the dashboard's scripts" "$bad" ""
bad=$(grep -nE '<script>|<script [^>]*>[^<]|\son[a-z]+=|style=' "$FERRY_ROOT"/host/web/assets/*.html || true)
eq "no inline script, handler or style in the dashboard's HTML" "$bad" ""

jq -n --arg cancel "$CANCEL_ID" --arg keep "$KEEP_ID" --arg p "$XSS_PENDING" --arg f "$XSS_FAILED" \
    --argjson p1 "$(ferry list queue --team Ops --status PENDING --priority 1 --output json | jq '.total')" \
    '{cancelId:$cancel, keepId:$keep, xssIds:[$f,$p], pendingP1:$p1,
      failReason:"onerror"}' >"$T_DIR/data.json"

start=$SECONDS
FERRY_WEB=$WEB FERRY_TOKEN=$TOKEN FERRY_VIEWER_TOKEN=$VIEWER WEB_ARTIFACTS=$ART WEB_PROFILE=$T_DIR/profile \
    WEB_DATA=$T_DIR/data.json NODE_MODULES=$NODE_MODULES \
    timeout 120 node "$FERRY_ROOT/tests/e2e/web_browser.js" >"$T_DIR/browser.out" 2>"$T_DIR/browser.err"
rc=$?
while IFS= read -r line; do
    case $line in
    PASS\ *) pass "browser: ${line#PASS }" ;;
    FAIL\ *) rest=${line#FAIL }; fail "browser: ${rest%%$'\t'*}" "${rest#*$'\t'}" ;;
    \#*) echo "$line" ;;
    esac
done <"$T_DIR/browser.out"
[[ $rc -eq 0 ]] || fail "the browser run exits 0" "exit $rc" "$(tail -5 "$T_DIR/browser.err")"
echo "# browser run: $((SECONDS - start)) s; screenshots in $ART"
n=$(ls "$ART"/*.png 2>/dev/null | wc -l)
[[ $n -ge 20 ]] && pass "every step saved a screenshot ($n)" || fail "every step saved a screenshot" "$n in $ART"

stop_web
stop_host
t_done
