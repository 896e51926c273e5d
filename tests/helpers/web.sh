# ferry web for the end-to-end tests (tests/e2e/web_*.sh): start_web [ARGS…] starts
# `ferry web --listen 127.0.0.1:0` (a free port) with its log in $T_DIR/web.log and sets WEB
# to its base URL; stop_web stops it with SIGTERM. Source after tests/lib.sh.
WEB_PID=
start_web() {
    local log=$T_DIR/web.log
    : >"$log"
    "$FERRY_BIN" web --listen 127.0.0.1:0 "$@" >>"$log" 2>&1 &
    WEB_PID=$!
    T_EXTRA_PIDS="${T_EXTRA_PIDS:-} $WEB_PID"
    if ! wait_for 15 grep -q "web listening on" "$log"; then
        echo "# ferry web did not start:"; sed 's/^/# /' "$log"; return 1
    fi
    WEB=$(grep -o 'https\?://127\.0\.0\.1:[0-9]*' "$log" | tail -1)
    export FERRY_WEB=$WEB
}
stop_web() {
    [[ -z $WEB_PID ]] && return 0
    kill -TERM "$WEB_PID" 2>/dev/null
    local end=$((SECONDS + 15))
    while kill -0 "$WEB_PID" 2>/dev/null && ((SECONDS < end)); do sleep 0.1; done
    kill -9 "$WEB_PID" 2>/dev/null
    wait "$WEB_PID" 2>/dev/null
    WEB_PID=
}
# web_tokens: TOKEN (operator of Ops) and ADMIN (admin of Ops) from `ferry create token`
# when this build has people (host/people), else placeholders the server ignores.
web_tokens() {
    if "$FERRY_BIN" create user --help >/dev/null 2>&1; then
        "$FERRY_BIN" create user alice >/dev/null 2>&1
        "$FERRY_BIN" create user root-ann >/dev/null 2>&1
        TOKEN=$("$FERRY_BIN" create token alice --team Ops --role operator --output json | jq -r .data.token)
        ADMIN=$("$FERRY_BIN" create token root-ann --team Ops --role admin --output json | jq -r .data.token)
        WEB_AUTH=1
    else
        TOKEN=no-people ADMIN=no-people WEB_AUTH=0
    fi
    export TOKEN ADMIN
}
