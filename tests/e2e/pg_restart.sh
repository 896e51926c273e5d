#!/usr/bin/env bash
# A host rides out database restarts (issue 5, point 7): a host runs 2,000 fx_record items on
# a PostgreSQL server of this test's own, which is restarted twice mid-run: once cleanly
# (fast shutdown: every session is cut, as by a package upgrade) and once by a crash
# (immediate stop, down for two seconds, then crash recovery). The host reconnects with
# backoff instead of exiting, rebuilds the batch it had open, and every item still runs
# exactly once. Meanwhile the CLI fails at once with a clear message, and works again after.
. "$(dirname "$0")/../lib.sh"
. "$FERRY_ROOT/tests/helpers/pg_test.sh"
pg_require

N=2000
PGSH=$FERRY_ROOT/scripts/pg.sh
URL=$("$PGSH" start 2>"$T_DIR/pg.err") || { fail "start a server of its own" "$(cat "$T_DIR/pg.err")"; t_done; exit 1; }
trap '"$PGSH" stop "$URL"; t_cleanup' EXIT
write_config
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c && chmod 644 "$T_DIR/plugins/misbehave.so"
build_queue_fill || { t_done; exit 1; }
export FERRY_CONFIG=$T_DIR/host.conf
pg_config "$FERRY_CONFIG" b1 "$URL" 'workers = { count = 3; prefork = 3; };' 'lease = { seconds = 60; };'

ferry create region r >/dev/null
ferry create bridge r b1 >/dev/null
ferry create team T >/dev/null
for i in 0 1 2 3; do ferry create machine T b1 "m$i" --vault '{"connection":"local"}' >/dev/null; done
awk -v n=$N -v file="$T_DIR/runs.log" 'BEGIN { for (i = 0; i < n; i++)
    printf "T m%d b1 3 {\"function\":\"fx_record\",\"file\":\"%s\",\"label\":\"m%d:%d\",\"sleep_ms\":3}\n",
           i % 4, file, i % 4, i }' >"$T_DIR/specs"
eq "$N items queued" "$("$T_DIR/queue_fill" "$URL" 500 <"$T_DIR/specs")" "$N"

start_pg_host "$FERRY_CONFIG" "$T_DIR/host.log" || fail "the host starts"
HOST=$LAST_HOST_PID
runs() { [[ -f $T_DIR/runs.log ]] && wc -l <"$T_DIR/runs.log" || echo 0; }
at_least() { [[ $(runs) -ge $1 ]]; }

wait_for 60 at_least 400 || fail "400 items ran before the first restart" "$(runs) ran"
if "$PGSH" restart "$URL" 2>"$T_DIR/pg.err"; then pass "the server restarts (fast shutdown) mid-run"; else fail "the server restarts (fast shutdown) mid-run" "$(cat "$T_DIR/pg.err")"; fi
before=$(runs)
wait_for 60 at_least $((before + 300)) && pass "items run again after the restart" || fail "items run again after the restart" "$(runs) ran"

"$PGSH" kill "$URL" 2>"$T_DIR/pg.err" || fail "the server stops at once (immediate)" "$(cat "$T_DIR/pg.err")"
t=$(date +%s%N)
out=$(ferry list queue --max-records 1 2>&1); rc=$?
ms=$((($(date +%s%N) - t) / 1000000))
[[ $rc -ne 0 ]] && pass "the CLI fails while the server is down (exit $rc)" || fail "the CLI fails while the server is down" "$out"
contains "its message names the store" "$out" "cannot open the PostgreSQL store postgres://"
[[ $ms -lt 5000 ]] && pass "and fails at once ($ms ms)" || fail "and fails at once" "$ms ms"
sleep 2
if "$PGSH" run "$URL" 2>"$T_DIR/pg.err"; then pass "the server comes back after a crash"; else fail "the server comes back after a crash" "$(cat "$T_DIR/pg.err")"; fi

all_ended() { [[ $(pg_sql "$URL" "SELECT count(*) FROM queue_items WHERE status IN ('COMPLETED','FAILED','CANCELLED')") -ge $N ]]; }
wait_for 120 all_ended && pass "all $N items ended" || fail "all $N items ended" "$(pg_sql "$URL" "SELECT status, count(*) FROM queue_items GROUP BY 1")"
if kill -0 "$HOST" 2>/dev/null; then pass "the host ran throughout"; else fail "the host ran throughout" "$(tail -5 "$T_DIR/host.log")"; fi
contains "the host logged the lost connection" "$(cat "$T_DIR/host.log")" "connection lost"
contains "and the reconnect" "$(cat "$T_DIR/host.log")" "reconnected"
# A write cut by a restart runs again on the new connection; no outcome is dropped with it.
not_contains "no outcome was lost with the connection" "$(cat "$T_DIR/host.log")" "cannot record the outcome"
eq "the CLI works again" "$(ferry list queue --status COMPLETED --max-records 10000 --output json | jq '.data | length')" "$N"
stop_pids "$HOST"

eq "every item COMPLETED" "$(pg_sql "$URL" "SELECT status || '=' || count(*) FROM queue_items GROUP BY status")" "COMPLETED=$N"
eq "$N runs recorded" "$(wc -l <"$T_DIR/runs.log")" "$N"
eq "no item ran twice" "$(awk '{print $1}' "$T_DIR/runs.log" | sort | uniq -d | head -3)" ""
eq "one claim per item" "$(pg_sql "$URL" "SELECT count(*) FROM queue_events WHERE action = 'ASSIGNED'")" "$N"
order=$(awk '{ split($1, l, ":"); m = l[1]; i = l[2] + 0
               if (m in last && (i < last[m] || $3 < end[m])) { print "on " m ": " $0; bad++ }
               last[m] = i; end[m] = $4 }' "$T_DIR/runs.log" | head -3)
eq "per-machine order held across the restarts" "$order" ""
grep -E "error|warn|rebuilt" "$T_DIR/host.log" | head -20 | sed 's/^/# /'
not_contains "no sanitizer reports from the hosts" "$(cat "$T_DIR/host.log")" "Sanitizer"
not_contains "no undefined behaviour reported" "$(cat "$T_DIR/host.log")" "runtime error:"
t_done
