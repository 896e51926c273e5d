#!/usr/bin/env bash
# No secret in any answer of ferry web (issue 16, point 7): secrets planted in a machine's,
# a storage's, a schedule's and items' vaults (made through the CLI and through the API)
# never appear in the output of any route, read with an admin token, including the answers
# of the changes themselves, the event stream, /metrics and the audit log.
. "$(dirname "$0")/../lib.sh"
. "$FERRY_ROOT/tests/helpers/web.sh"

write_config
install_plugins
S_M1=MSECRET-1a2b3c4d5e S_M2=MKEY-aa11bb22cc33 S_S1=SSECRET-5b4a3c2d1e S_S2=SAKEY-9f8e7d6c5b
S_I1=ISECRET-0f1e2d3c4b S_I2=IAPISECRET-66dd77ee S_SC=SCHSECRET-77aa66bb55 S_T=TSECRET-31415926
ferry create region r1 >/dev/null
ferry create bridge r1 far >/dev/null
ferry create team Ops --vault "{\"slack_token\":\"$S_T\"}" >/dev/null
ferry create machine Ops far far1 --vault "{\"ip\":\"10.0.0.1\",\"user\":\"u\",\"ssh_port\":22,\"datastore\":\"/d\",\"password\":\"$S_M1\",\"ssh_private_key\":\"$S_M2\"}" >/dev/null
ferry create machine-group Ops fleet --members far1 >/dev/null
ferry create storage Ops s3main --vault "{\"provider\":\"s3\",\"bucket\":\"b\",\"access_key\":\"$S_S2\",\"secret_key\":\"$S_S1\"}" >/dev/null
ferry create schedule Ops nightly --vault "{\"cron\":\"0 2 * * *\",\"machine\":\"far1\",\"queue_config\":{\"function\":\"hello\",\"api_token\":\"$S_SC\"}}" >/dev/null 2>&1
t1=$(ferry create queue-item Ops far1 far --vault "{\"function\":\"hello\",\"password\":\"$S_I1\"}" --output json 2>/dev/null | jq -r '.data[0].taskId')
ferry create user ada >/dev/null
ADMIN=$(ferry create token ada --team Ops --role admin --output json | jq -r .data.token)
start_web || exit 1

out=$T_DIR/answers
: >"$out"
get() { curl -s -H "Authorization: Bearer $ADMIN" "$@" >>"$out"; echo >>"$out"; }
get -X POST "$WEB/api/v1/queue" -d "{\"team\":\"Ops\",\"machine\":\"far1\",\"bridge\":\"far\",\"vault\":{\"function\":\"hello\",\"client_secret\":\"$S_I2\"}}"
get -X POST "$WEB/api/v1/queue" -d "[{\"team\":\"Ops\",\"machine\":\"far1\",\"bridge\":\"far\",\"vault\":{\"function\":\"hello\",\"password\":\"$S_I2\"}}]"
get "$WEB/api/v1/queue"
get "$WEB/api/v1/queue?team=Ops&max-records=10000"
get "$WEB/api/v1/queue/$t1"
get -X POST "$WEB/api/v1/queue/$t1/cancel"
get -X POST "$WEB/api/v1/queue/$t1/retry"
get "$WEB/api/v1/schedules"
get -X POST "$WEB/api/v1/schedules/Ops/nightly/disable"
get -X POST "$WEB/api/v1/schedules/Ops/nightly" -d '{"timezone":"UTC"}'
get "$WEB/api/v1/machines"
get "$WEB/api/v1/groups"
get "$WEB/api/v1/storages"
get "$WEB/api/v1/hosts"
get "$WEB/api/v1/summary"
get "$WEB/api/v1/audit"
get "$WEB/api/v1/me"
get -X POST "$WEB/api/v1/login" -d "{\"token\":\"$ADMIN\"}"
get "$WEB/metrics"
get "$WEB/healthz"
get "$WEB/"
get -N --max-time 2 "$WEB/api/v1/events"
get "$WEB/api/v1/queue/$t1/nothing"
get -X POST "$WEB/api/v1/queue" -d "{\"team\":\"Ops\",\"machine\":\"nope\",\"bridge\":\"far\",\"vault\":{\"function\":\"hello\",\"password\":\"$S_I2\"}}"

lines=$(wc -l <"$out")
((lines >= 25)) && pass "every route answered ($lines lines)" || fail "every route answered" "$(cat "$out")"
contains "the answers hold the items (so the grep means something)" "$(cat "$out")" "$t1"
contains "... and the masked values" "$(cat "$out")" '"password":'
for s in "$S_M1" "$S_M2" "$S_S1" "$S_S2" "$S_I1" "$S_I2" "$S_SC" "$S_T" "$ADMIN"; do
    if grep -qF "$s" "$out"; then fail "secret ${s%%-*} appears in no answer" "$(grep -F "$s" "$out" | head -3 | cut -c1-300)"
    else pass "secret ${s%%-*} appears in no answer"; fi
done
stop_web
not_contains "nor in ferry web's log" "$(cat "$T_DIR/web.log")" "SECRET"
t_done
