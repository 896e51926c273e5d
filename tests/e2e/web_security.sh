#!/usr/bin/env bash
# ferry web's security, server side (issue 16, point 7): tokens (401 without or with a bad or
# revoked one, 403 for another team's data and for a role too low), the browser login (an
# HttpOnly SameSite=Strict cookie and a CSRF token every state-changing cookie request must
# send), the audit of an API change with the client's address, request body and header
# limits, a per-token rate limit (429), slow clients cut off (web.timeout), and headers that
# keep a browser from running what a vault or an error message holds.
. "$(dirname "$0")/../lib.sh"
. "$FERRY_ROOT/tests/helpers/web.sh"

write_config 'web = { max_body_bytes = 2048; max_header_bytes = 4096; rate_limit = 40; timeout = 2; };' \
    'people = { command_role = "admin"; };'
install_plugins
ferry create region r1 >/dev/null
ferry create bridge r1 far >/dev/null
ferry create team Ops >/dev/null
ferry create team Dev >/dev/null
ferry create machine Ops far far1 --vault '{"ip":"10.0.0.1","user":"u","ssh_port":22,"datastore":"/d"}' >/dev/null
ferry create machine Dev far far2 --vault '{"ip":"10.0.0.2","user":"u","ssh_port":22,"datastore":"/d"}' >/dev/null
ferry create user vic >/dev/null
ferry create user olga >/dev/null
VIEWER=$(ferry create token vic --team Ops --role viewer --output json | jq -r .data.token)
OPER=$(ferry create token olga --team Ops --role operator --output json | jq -r .data.token)
REVOKED_JSON=$(ferry create token olga --team Ops --role operator --output json)
REVOKED=$(jq -r .data.token <<<"$REVOKED_JSON")
ferry revoke token "$(ferry list tokens --output json | jq -r '.data[-1].tokenId')" >/dev/null 2>&1 ||
    fail "revoke a token"
dev_task=$(ferry create queue-item Dev far2 far --vault '{"function":"hello"}' --output json 2>/dev/null | jq -r '.data[0].taskId')
start_web || exit 1

code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
# --- tokens -------------------------------------------------------------------------------------
eq "no token: 401" "$(code "$WEB/api/v1/queue")" 401
eq "a made-up token: 401" "$(code -H 'Authorization: Bearer fy1_0000' "$WEB/api/v1/queue")" 401
eq "a revoked token: 401" "$(code -H "Authorization: Bearer $REVOKED" "$WEB/api/v1/queue")" 401
eq "not a bearer token: 401" "$(code -H "Authorization: Basic $OPER" "$WEB/api/v1/queue")" 401
eq "a token reads its team: 200" "$(code -H "Authorization: Bearer $VIEWER" "$WEB/api/v1/queue?team=Ops")" 200
eq "another team's list: 403" "$(code -H "Authorization: Bearer $VIEWER" "$WEB/api/v1/queue?team=Dev")" 403
eq "another team's item: 403" "$(code -H "Authorization: Bearer $OPER" "$WEB/api/v1/queue/$dev_task")" 403
eq "another team's cancel: 403" "$(code -H "Authorization: Bearer $OPER" -X POST "$WEB/api/v1/queue/$dev_task/cancel")" 403
eq "... and the item is untouched" "$(ferry list queue --task-id "$dev_task" --output json | jq -r '.data[0].status')" PENDING
eq "another team's machines: 403" "$(code -H "Authorization: Bearer $VIEWER" "$WEB/api/v1/machines?team=Dev")" 403
eq "a list without team shows the token's team only" \
    "$(curl -s -H "Authorization: Bearer $VIEWER" "$WEB/api/v1/queue" | jq -r '[.data[].teamName] | unique | join(",")')" ""
item='{"team":"Ops","machine":"far1","bridge":"far","vault":{"function":"hello"}}'
eq "a viewer may not create: 403" "$(code -H "Authorization: Bearer $VIEWER" -X POST -d "$item" "$WEB/api/v1/queue")" 403
eq "an operator may: 201" "$(code -H "Authorization: Bearer $OPER" -X POST -d "$item" "$WEB/api/v1/queue")" 201
eq "with people.command_role admin, an operator may not queue a hook: 403" \
    "$(code -H "Authorization: Bearer $OPER" -X POST -d '{"team":"Ops","machine":"far1","bridge":"far","vault":{"function":"hello","pre_hook":"true"}}' "$WEB/api/v1/queue")" 403
task=$(ferry list queue --team Ops --output json | jq -r '.data[0].taskId')
eq "a viewer may not cancel: 403" "$(code -H "Authorization: Bearer $VIEWER" -X POST "$WEB/api/v1/queue/$task/cancel")" 403
curl -s -H "Authorization: Bearer $OPER" -X POST "$WEB/api/v1/queue/$task/cancel" >/dev/null
audit=$(ferry audit list --output json | jq -c '[.data[] | select(.action == "queue.cancel")][0] | [.user, .via, .address]')
eq "the API's cancel is audited: user, via api, client address" "$audit" '["olga","api","127.0.0.1"]'
contains "... and in the item's timeline" "$(ferry queue trace "$task" --output json | jq -c '.data.timeline')" "olga"

ev=$(curl -sS -N --max-time 2 -H "Authorization: Bearer $OPER" "$WEB/api/v1/events" 2>/dev/null)
contains "the event stream shows the token's team" "$ev" '"teamName":"Ops"'
not_contains "... and never another team's items" "$ev" "$dev_task"

ferry create schedule Ops nightly --vault '{"cron":"0 2 * * *","machine":"far1","queue_config":{"function":"hello"}}' >/dev/null 2>&1
eq "an operator may turn a schedule off" "$(code -H "Authorization: Bearer $OPER" -X POST "$WEB/api/v1/schedules/Ops/nightly/disable")" 200
eq "... and on with a patch of enabled only" "$(code -H "Authorization: Bearer $OPER" -X POST -d '{"enabled":true}' "$WEB/api/v1/schedules/Ops/nightly")" 200
eq "... but not change its cron: 403" "$(code -H "Authorization: Bearer $OPER" -X POST -d '{"cron":"* * * * *"}' "$WEB/api/v1/schedules/Ops/nightly")" 403
eq "... nor replace its vault: 403" "$(code -H "Authorization: Bearer $OPER" -X POST -d '{"enabled":true}' "$WEB/api/v1/schedules/Ops/nightly?replace=true")" 403
eq "a viewer may not turn it off: 403" "$(code -H "Authorization: Bearer $VIEWER" -X POST "$WEB/api/v1/schedules/Ops/nightly/disable")" 403

# --- browser login: cookie and CSRF -----------------------------------------------------------
jar=$T_DIR/jar
hdr=$(curl -s -D - -o "$T_DIR/login.json" -c "$jar" -X POST -d "{\"token\":\"$OPER\"}" "$WEB/api/v1/login")
csrf=$(jq -r .data.csrfToken "$T_DIR/login.json")
cookie=$(grep -i '^set-cookie:' <<<"$hdr")
contains "login sets an HttpOnly cookie" "$cookie" "HttpOnly"
contains "... SameSite=Strict" "$cookie" "SameSite=Strict"
eq "login answers a CSRF token" "${#csrf}" 64
not_contains "the token is not in the cookie" "$cookie" "$OPER"
eq "a bad token does not log in: 401" "$(code -X POST -d '{"token":"fy1_nope"}' "$WEB/api/v1/login")" 401
eq "the cookie reads: 200" "$(code -b "$jar" "$WEB/api/v1/queue")" 200
eq "a cookie POST without the CSRF token: 403" "$(code -b "$jar" -X POST -d "$item" "$WEB/api/v1/queue")" 403
eq "... with a wrong one: 403" "$(code -b "$jar" -H 'X-CSRF-Token: 00' -X POST -d "$item" "$WEB/api/v1/queue")" 403
eq "... with it: 201" "$(code -b "$jar" -H "X-CSRF-Token: $csrf" -X POST -d "$item" "$WEB/api/v1/queue")" 201
eq "logout" "$(code -b "$jar" -H "X-CSRF-Token: $csrf" -X POST "$WEB/api/v1/logout")" 200
eq "after logout the cookie is refused: 401" "$(code -b "$jar" "$WEB/api/v1/queue")" 401

# --- what a browser is told ---------------------------------------------------------------------
xss='{"team":"Ops","machine":"far1","bridge":"far","vault":{"function":"hello","description":"<script>alert(1)</script><img src=x onerror=alert(2)>"}}'
curl -s -H "Authorization: Bearer $OPER" -X POST -d "$xss" "$WEB/api/v1/queue" >/dev/null
h=$(curl -s -D - -o "$T_DIR/list.json" -H "Authorization: Bearer $OPER" "$WEB/api/v1/queue")
contains "JSON is served as application/json" "$h" "Content-Type: application/json"
contains "... with nosniff" "$h" "X-Content-Type-Options: nosniff"
contains "... and a Content-Security-Policy without inline scripts" "$h" "Content-Security-Policy: default-src 'self'"
eq "the payload comes back as a JSON string, unchanged" "$(jq -r '[.data[].vaultContent.description | strings][0]' "$T_DIR/list.json")" "<script>alert(1)</script><img src=x onerror=alert(2)>"
h=$(curl -s -D - -o /dev/null "$WEB/")
contains "the dashboard is sent with the policy too" "$h" "Content-Security-Policy:"
contains "... and may not be framed" "$h" "X-Frame-Options: DENY"

# --- limits -------------------------------------------------------------------------------------
big=$(head -c 3000 /dev/zero | tr '\0' a)
eq "a body over web.max_body_bytes: 413" "$(code -H "Authorization: Bearer $OPER" -X POST -d "{\"x\":\"$big\"}" "$WEB/api/v1/queue")" 413
head -c 200000000 /dev/zero >"$T_DIR/huge"
t0=$SECONDS
eq "a 200 MB body is refused before it is read: 413" "$(code -H "Authorization: Bearer $OPER" -H 'Content-Type: application/json' --data-binary @"$T_DIR/huge" "$WEB/api/v1/queue")" 413
((SECONDS - t0 <= 5)) && pass "... at once ($((SECONDS - t0)) s)" || fail "refused at once" "took $((SECONDS - t0)) s"
rm -f "$T_DIR/huge"
eq "... also when sent chunked, without a length" "$(code -H "Authorization: Bearer $OPER" -H 'Transfer-Encoding: chunked' -X POST -d "{\"x\":\"$big\"}" "$WEB/api/v1/queue")" 413
hbig=$(head -c 9000 /dev/zero | tr '\0' b)
c=$(code -H "X-Big: $hbig" -H "Authorization: Bearer $OPER" "$WEB/api/v1/queue")
[[ $c == 431 || $c == 413 || $c == 000 ]] && pass "headers over web.max_header_bytes are refused ($c)" || fail "headers over the limit are refused" "got $c"
eq "the server still answers after them" "$(code "$WEB/healthz")" 200

# Slow client: a request line and no more, never finished; cut off after web.timeout (2 s).
exec 7<>/dev/tcp/127.0.0.1/"${WEB##*:}"
printf 'GET /api/v1/queue HTTP/1.1\r\nHost: x\r\n' >&7
t0=$SECONDS
cat <&7 >/dev/null # returns when the server closes the connection
exec 7<&-
((SECONDS - t0 <= 6)) && pass "a slow client is cut off after web.timeout ($((SECONDS - t0)) s)" ||
    fail "a slow client is cut off" "took $((SECONDS - t0)) s"

# Rate limit: 40 a minute per token; the 41st is 429 with Retry-After, another token is not.
codes=$(for i in $(seq 1 45); do code -H "Authorization: Bearer $VIEWER" "$WEB/api/v1/me"; echo; done | sort | uniq -c | tr -s ' ' | tr '\n' ';')
contains "over web.rate_limit a token gets 429" "$codes" "429"
h=$(curl -s -D - -o /dev/null -H "Authorization: Bearer $VIEWER" "$WEB/api/v1/me")
contains "... with Retry-After" "$h" "Retry-After:"
eq "... and another token is not limited" "$(code -H "Authorization: Bearer $OPER" "$WEB/api/v1/me")" 200
stop_web
t_done
