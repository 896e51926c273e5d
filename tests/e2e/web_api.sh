#!/usr/bin/env bash
# docs/api.md, walked (issue 16, point 2): every ```sh example of the document runs, in
# order, against a live `ferry web` beside a live `ferry serve`, and must exit 0 (each
# example checks its own answer with curl -f and jq -e); every route the document names
# has an example; and the API's answers are the CLI's (the same JSON for the same query).
# With FERRY_TEST_DRIVER=postgres (tests/e2e/pg_web.sh) the same runs on PostgreSQL.
. "$(dirname "$0")/../lib.sh"
. "$FERRY_ROOT/tests/helpers/web.sh"

write_config
install_plugins
ferry create region r1 >/dev/null
ferry create bridge r1 local >/dev/null
ferry create bridge r1 far >/dev/null
ferry create team Ops >/dev/null
ferry create team Dev >/dev/null
ferry create machine Ops local box1 --vault '{"connection":"local"}' >/dev/null
ferry create machine Ops far far1 --vault '{"ip":"10.0.0.1","user":"u","ssh_port":22,"datastore":"/d"}' >/dev/null
ferry create storage Ops backups --vault '{"provider":"local","path":"/srv/b"}' >/dev/null
ferry create schedule Ops nightly --vault '{"cron":"0 2 * * *","timezone":"UTC","machine":"far1","queue_config":{"function":"hello"}}' >/dev/null
web_tokens
start_host || exit 1
start_web || exit 1
wait_for 10 bash -c "curl -fsS '$WEB/api/v1/hosts' -H 'Authorization: Bearer $TOKEN' | jq -e '.data[0].alive'" ||
    fail "the host's heartbeat shows in /api/v1/hosts"

# --- every example of docs/api.md, in order ---------------------------------------------------
doc=$FERRY_ROOT/docs/api.md
mapfile -d '' blocks < <(awk '/^```sh$/{on=1; b=""; next} /^```$/{if(on){printf "%s%c", b, 0}; on=0; next} on{b=b $0 "\n"}' "$doc")
((${#blocks[@]} >= 15)) && pass "docs/api.md has ${#blocks[@]} examples" || fail "docs/api.md has examples" "found ${#blocks[@]}"
for b in "${blocks[@]}"; do
    first=$(head -1 <<<"$b")
    if [[ $b == *"/api/v1/audit"* ]] && ! ferry audit list --help >/dev/null 2>&1; then
        pass "example: ${first:0:60} (skipped: this build has no audit log yet)"; continue
    fi
    # In this shell, so that TASK, set by the create example, is there for the later ones.
    if eval "$b" >"$T_DIR/example.out" 2>&1; then pass "example: ${first:0:90}"
    else fail "example: ${first:0:90}" "$b" "$(head -c 2000 "$T_DIR/example.out")"; fi
    export TASK=${TASK:-}
done

# Every route heading has at least one example before the next heading.
missing=$(awk '/^### /{if(h!="" && !ex) print h; h=$0; ex=0; next} /^```sh$/{ex=1} END{if(h!="" && !ex) print h}' "$doc")
eq "every route of docs/api.md has an example" "$missing" ""

# --- the API prints the CLI's shapes -------------------------------------------------------------
auth=(-H "Authorization: Bearer $TOKEN")
strip() { jq -S 'del(.data[]?.ageInMinutes, .data[]?.healthStatus) | del(.data[]?.totalDurationSeconds, .data[]?.processingDurationSeconds)'; }
api=$(curl -fsS "${auth[@]}" "$WEB/api/v1/queue?team=Ops&bridge=far&max-records=3" | strip)
cli=$(ferry list queue --team Ops --bridge far --max-records 3 --output json | strip)
eq "GET /api/v1/queue answers what ferry list queue --output json prints" "$api" "$cli"
api=$(curl -fsS "${auth[@]}" "$WEB/api/v1/queue/$TASK" | jq -S 'del(.data.queue_item.ageInMinutes, .data.queue_item.healthStatus, .data.queue_item.totalDurationSeconds, .data.queue_item.processingDurationSeconds, .data.timeline[].secondsSincePrevious)')
cli=$(ferry queue trace "$TASK" --output json | jq -S 'del(.data.queue_item.ageInMinutes, .data.queue_item.healthStatus, .data.queue_item.totalDurationSeconds, .data.queue_item.processingDurationSeconds, .data.timeline[].secondsSincePrevious)')
eq "GET /api/v1/queue/ID answers what ferry queue trace prints" "$api" "$cli"
eq "list filters: truncated and total" "$(curl -fsS "${auth[@]}" "$WEB/api/v1/queue?team=Ops&max-records=1" | jq -c '[.truncated, .total > 1]')" '[true,true]'

# --- refusals ------------------------------------------------------------------------------------
code() { curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$@"; }
eq "unknown parameter is 400" "$(code "$WEB/api/v1/queue?bogus=1")" 400
eq "a parameter that reads server files is refused" "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ADMIN" -X POST "$WEB/api/v1/schedules/Ops/nightly?vault-file=/etc/passwd" -d '{}')" 400
eq "a parameter that would hold the request until the item ends is refused" "$(code "$WEB/api/v1/queue/$TASK?follow=1")" 400
eq "bad status filter is 400 (the CLI's check)" "$(code "$WEB/api/v1/queue?status=NOPE")" 400
eq "unknown item is 404" "$(code "$WEB/api/v1/queue/00000000-0000-4000-8000-000000000000")" 404
eq "cancelling a CANCELLED item is 409" "$(code -X POST "$WEB/api/v1/queue/$TASK/cancel")" 409
eq "unknown route is 404" "$(code "$WEB/api/v1/nothing")" 404
eq "wrong method is 405" "$(code -X DELETE "$WEB/api/v1/queue")" 405
eq "a vault that is not JSON is 400" "$(code -X POST "$WEB/api/v1/queue" -d '{"team":')" 400
eq "an unknown machine is 404 (the CLI's check)" "$(code -X POST "$WEB/api/v1/queue" -d '{"team":"Ops","machine":"nope","bridge":"far","vault":{"function":"hello"}}')" 404
n0=$(ferry list queue --output json | jq '.data | length')
eq "a bad line in a many-item create writes none (all or nothing)" "$(code -X POST "$WEB/api/v1/queue" -d '[{"team":"Ops","machine":"far1","bridge":"far","vault":{"function":"hello"}},{"team":"Ops","machine":"far1","bridge":"far","vault":{"function":"hello"},"priority":9}]')" 400
eq "... nothing written" "$(ferry list queue --output json | jq '.data | length')" "$n0"

# --- /metrics after real work ----------------------------------------------------------------------
id=$(curl -fsS "${auth[@]}" -X POST "$WEB/api/v1/queue" -d '{"team":"Ops","machine":"box1","bridge":"local","vault":{"function":"hello"}}' | jq -r '.data[0].taskId')
wait_status "$id" COMPLETED || fail "the host runs an item made through the API"
ev=$(curl -sS -N --max-time 2 "${auth[@]}" "$WEB/api/v1/events" 2>/dev/null)
contains "the event stream tells the item's end" "$(grep "\"taskId\":\"$id\"" <<<"$ev" | tail -1)" '"status":"COMPLETED"'
contains "... as a server-sent event" "$(grep -B1 "\"taskId\":\"$id\"" <<<"$ev" | head -1)" "event: item"
done_n=$(ferry list queue --status COMPLETED --output json | jq '[.data[] | select(.function == "hello")] | length')
# An end is counted once it is 5 s old (docs/api.md).
wait_for 15 bash -c "curl -fsS '$WEB/metrics' | grep -qx 'ferry_items_completed_total{function=\"hello\"} $done_n'"
m=$(curl -fsS "$WEB/metrics")
contains "metrics count the completed items by function" "$m" "ferry_items_completed_total{function=\"hello\"} $done_n"
contains "metrics have the duration histogram" "$m" "ferry_attempt_duration_seconds_count{function=\"hello\"} $done_n"
contains "metrics have the queue depth by bridge, status and priority" "$m" 'ferry_queue_depth{bridge="far",status="PENDING",priority="'
contains "metrics count hosts alive" "$m" 'ferry_hosts_alive 1'
eq "every metrics line is a comment or NAME{labels} VALUE" "$(grep -Ev '^(# (HELP|TYPE) .*|[a-z_]+(\{[^}]*\})? -?[0-9.e+Inf]+)$' <<<"$m")" ""

# libmicrohttpd is loaded by ferry web only (host/web/lazy_mhd.c).
not_contains "the binary does not link libmicrohttpd" "$(readelf -d "$FERRY_ROOT/$BUILD/ferry" | grep NEEDED)" microhttpd
not_contains "... other commands do not load it" "$(LD_DEBUG=files "$FERRY_ROOT/$BUILD/ferry" list queue 2>&1 >/dev/null)" "libmicrohttpd"
contains "... ferry web does" "$(cat "/proc/$WEB_PID/maps" 2>/dev/null)" "libmicrohttpd"
stop_web
stop_host
eq "a stopped host is not alive" "$(sqlite3 "$T_DIR/ferry.db" "SELECT count(*) FROM hosts WHERE stopped_at IS NOT NULL")" 1
t_done
