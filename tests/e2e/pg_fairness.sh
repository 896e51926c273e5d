#!/usr/bin/env bash
# Fair claims on PostgreSQL (issue 14): four hosts of one bridge, each with 2 workers and a
# pipeline of 32 (a host may hold 66 items, more than the bridge's 40 machines), drain 4,000
# queued fx_stamp items together. Every host with free workers gets work: each runs at least
# a tenth of the items (host/serve/fairness.c: a host that waits says so, and the others keep
# to a fair share meanwhile; before, the first hosts held every machine and the others ran
# nothing), and every item runs exactly once. Not timed. Needs the server tests/run.sh starts.
. "$(dirname "$0")/../lib.sh"
. "$FERRY_ROOT/tests/helpers/pg_test.sh"
pg_require

N=${PG_FAIRNESS_ITEMS:-4000}
MACHINES=40
URL=$(pg_new_db "ferry_fair_$$") || { fail "create the test database"; t_done; exit 1; }
write_config
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c && chmod 644 "$T_DIR/plugins/misbehave.so"
build_queue_fill || { t_done; exit 1; }
export FERRY_CONFIG=$T_DIR/admin.conf
pg_config "$FERRY_CONFIG" b1 "$URL"
ferry create region r >/dev/null
ferry create bridge r b1 >/dev/null
ferry create team T >/dev/null
for ((m = 0; m < MACHINES; m++)); do
    ferry create machine T b1 "m$m" --vault '{"connection":"local"}' >/dev/null
done
runs=$T_DIR/runs.log
eq "$N items are queued" "$(awk -v n="$N" -v m="$MACHINES" -v file="$runs" 'BEGIN {
        for (i = 0; i < n; i++)
            printf "T m%d b1 3 {\"function\":\"fx_stamp\",\"file\":\"%s\",\"label\":%d}\n", i % m, file, i }' |
    "$T_DIR/queue_fill" "$URL" 1000)" "$N"

PIDS=()
for h in 1 2 3 4; do
    pg_config "$T_DIR/host$h.conf" b1 "$URL" 'workers = { count = 2; prefork = 2; pipeline = 32; };'
done
for h in 1 2 3 4; do
    FERRY_CONFIG=$T_DIR/host$h.conf timeout -k 5 170 "$FERRY_BIN" serve --drain >"$T_DIR/host$h.log" 2>&1 &
    PIDS+=($!)
    T_EXTRA_PIDS="${T_EXTRA_PIDS:-} $!"
done
for h in 1 2 3 4; do
    wait "${PIDS[$((h - 1))]}"
    eq "host $h drained and stopped" "$?" 0
done

eq "every item COMPLETED" "$(pg_sql "$URL" "SELECT status || '=' || count(*) FROM queue_items GROUP BY status")" "COMPLETED=$N"
eq "one claim per item (ASSIGNED events)" "$(pg_sql "$URL" "SELECT count(*) FROM queue_events WHERE action = 'ASSIGNED'")" "$N"
eq "no retries" "$(pg_sql "$URL" "SELECT coalesce(sum(retry_count), 0) FROM queue_items")" 0
eq "$N runs stamped" "$(wc -l <"$runs")" "$N"
eq "no item ran twice" "$(awk '{print $1}' "$runs" | sort | uniq -d | head -3)" ""
eq "no item is missing" "$(awk '{print $1}' "$runs" | sort -u | wc -l)" "$N"
shares=$(pg_sql "$URL" "SELECT count(*) FROM queue_items GROUP BY lease_owner ORDER BY 1 DESC" | tr '\n' ' ')
echo "# items run by each host: $shares"
eq "four hosts ran items" "$(wc -w <<<"$shares")" 4
for n in $shares; do
    ((n * 10 >= N)) && pass "a host ran at least a tenth of the items ($n of $N)" ||
        fail "a host ran at least a tenth of the items" "$n of $N (all: $shares)"
done
eq "no host waits any more" "$(pg_sql "$URL" "SELECT count(*) FROM claim_waits WHERE until_ms > (extract(epoch from clock_timestamp()) * 1000)::bigint")" 0
not_contains "no sanitizer reports from the hosts" "$(cat "$T_DIR"/host*.log)" "Sanitizer"
not_contains "no undefined behaviour reported" "$(cat "$T_DIR"/host*.log)" "runtime error:"
t_done
