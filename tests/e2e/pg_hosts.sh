#!/usr/bin/env bash
# Many bridges on one PostgreSQL database (issue 5, point 4): four `ferry serve` processes,
# two on bridges of their own and two sharing a third, run 20,000 fx_record items against one
# database, half of them queued before the hosts start and half while they run. fx_record
# appends "label pid start_ms end_ms" to one file under flock, so the file says what ran,
# how often, when and in which order:
#   - every item ran exactly once and none is lost (20,000 distinct labels, all COMPLETED,
#     one ASSIGNED event each);
#   - per machine (concurrency 1), runs never overlap and items of one priority ran in
#     creation order, even on the bridge two hosts share;
#   - a machine of concurrency 2 never ran more than two at once;
#   - each host ran only its own bridge's items, and both hosts of the shared bridge worked.
. "$(dirname "$0")/../lib.sh"
. "$FERRY_ROOT/tests/helpers/pg_test.sh"
pg_require

N=${PG_HOSTS_ITEMS:-20000}
URL=$(pg_new_db "ferry_hosts_$$") || { fail "create the test database"; t_done; exit 1; }
write_config
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c && chmod 644 "$T_DIR/plugins/misbehave.so"
build_queue_fill || { t_done; exit 1; }
export FERRY_CONFIG=$T_DIR/admin.conf
pg_config "$FERRY_CONFIG" b1 "$URL"

ferry create region r >/dev/null
for b in b1 b2 b3; do ferry create bridge r $b >/dev/null; done
ferry create team T >/dev/null
MACHINES=()
for b in b1 b2 b3; do
    for i in 0 1 2 3 4; do
        ferry create machine T $b "$b-m$i" --vault '{"connection":"local"}' >/dev/null
        MACHINES+=("$b:$b-m$i")
    done
done
ferry create machine T b3 b3-wide --vault '{"connection":"local","concurrency":2}' >/dev/null
MACHINES+=("b3:b3-wide")
eq "16 machines on 3 bridges" "$(ferry list team-machines T --output json | jq '.data | length')" 16

# specs FROM TO: the item lines for queue_fill; item i goes to machine i % 16, with a
# priority pattern that mixes 1, 3 and 5, labelled "machine:i:priority". Runs take 1 ms (10
# on the concurrency-2 machine), so that overlaps would show in the millisecond stamps.
specs() {
    local m=${#MACHINES[@]}
    awk -v from="$1" -v to="$2" -v m="$m" -v file="$T_DIR/runs.log" -v list="${MACHINES[*]}" '
        BEGIN { split(list, ms, " ")
                for (i = from; i < to; i++) {
                    split(ms[i % m + 1], bm, ":"); p = (i % 11 == 0) ? 1 : (i % 7 == 0) ? 5 : 3
                    printf "T %s %s %d {\"function\":\"fx_record\",\"file\":\"%s\",\"label\":\"%s:%d:%d\",\"sleep_ms\":%d}\n",
                           bm[2], bm[1], p, file, bm[2], i, p, bm[2] == "b3-wide" ? 10 : 1 } }'
}
half=$((N / 2))
t0=$(date +%s%N)
eq "the first half is queued before any host runs" "$(specs 0 $half | "$T_DIR/queue_fill" "$URL" 500)" "$half"
fill_ms=$((($(date +%s%N) - t0) / 1000000))
echo "# queued $half items in $fill_ms ms"

HOSTS=()
for h in 1 2 3 4; do
    bridge=b$h
    ((h == 4)) && bridge=b3
    pg_config "$T_DIR/host$h.conf" "$bridge" "$URL" 'workers = { count = 3; prefork = 3; };'
    start_pg_host "$T_DIR/host$h.conf" "$T_DIR/host$h.log" || fail "host $h starts"
    HOSTS+=("$LAST_HOST_PID")
done
t0=$(date +%s%N)
eq "the second half is queued while the four hosts run" "$(specs $half "$N" | "$T_DIR/queue_fill" "$URL" 500)" "$((N - half))"

all_ended() { [[ $(pg_sql "$URL" "SELECT count(*) FROM queue_items WHERE status IN ('COMPLETED','FAILED','CANCELLED')") -ge $N ]]; }
if wait_for 170 all_ended; then
    pass "all $N items ended within 170 s"
else
    fail "all $N items ended within 170 s" "$(pg_sql "$URL" "SELECT status, count(*) FROM queue_items GROUP BY 1")"
fi
secs=$((($(date +%s%N) - t0) / 1000000))
echo "# $N items ran in $secs ms with 4 hosts: $((N * 1000 / (secs > 0 ? secs : 1))) items/s"
for h in 1 2 3 4; do
    if kill -0 "${HOSTS[$((h - 1))]}" 2>/dev/null; then pass "host $h ran throughout"; else fail "host $h ran throughout" "$(tail -5 "$T_DIR/host$h.log")"; fi
done
stop_pids "${HOSTS[@]}"

# --- what the store says ------------------------------------------------------------------------
eq "every item COMPLETED" "$(pg_sql "$URL" "SELECT status || '=' || count(*) FROM queue_items GROUP BY status")" "COMPLETED=$N"
eq "no retries" "$(pg_sql "$URL" "SELECT coalesce(sum(retry_count), 0) FROM queue_items")" 0
eq "one claim per item (ASSIGNED events)" "$(pg_sql "$URL" "SELECT count(*) FROM queue_events WHERE action = 'ASSIGNED'")" "$N"
eq "one end per item (COMPLETED events)" "$(pg_sql "$URL" "SELECT count(*) FROM queue_events WHERE action = 'COMPLETED'")" "$N"
eq "each own bridge has one host, the shared one two" \
    "$(pg_sql "$URL" "SELECT string_agg(bridge_name || '=' || n, ' ' ORDER BY bridge_name) FROM (SELECT bridge_name, count(DISTINCT lease_owner) n FROM queue_items GROUP BY 1) x")" \
    "b1=1 b2=1 b3=2"
owners_ok=1
for h in 1 2 3 4; do
    bridge=b$h
    ((h == 4)) && bridge=b3
    wrong=$(pg_sql "$URL" "SELECT count(*) FROM queue_items WHERE lease_owner LIKE '%:${HOSTS[$((h - 1))]}:%' AND bridge_name <> '$bridge'")
    [[ $wrong == 0 ]] || owners_ok=0
done
eq "each host ran only its own bridge's items" "$owners_ok" 1

# --- what the runs say --------------------------------------------------------------------------
eq "$N runs recorded" "$(wc -l <"$T_DIR/runs.log")" "$N"
eq "no item ran twice" "$(awk '{print $1}' "$T_DIR/runs.log" | sort | uniq -d | head -3)" ""
eq "no item is missing" "$(awk '{print $1}' "$T_DIR/runs.log" | sort -u | wc -l)" "$N"
# Per machine of concurrency 1, in the order the runs ended (the file's order): each run
# starts after the previous one ended, and items of one priority ran in creation order.
order=$(awk '{ split($1, l, ":"); m = l[1]; i = l[2] + 0; p = l[3]
               if (m == "b3-wide") next
               if (m in last_end && $3 < last_end[m]) { print "overlap on " m ": " $0; bad++ }
               last_end[m] = $4
               k = m ":" p
               if (k in last_i && i < last_i[k]) { print "out of order on " m ": " l[2] " after " last_i[k]; bad++ }
               last_i[k] = i }
             END { if (bad > 5) print bad " problems in all" }' "$T_DIR/runs.log" | head -5)
eq "per-machine runs never overlap and keep creation order within a priority" "$order" ""
# The concurrency-2 machine: at each run's start, the runs already going (started no later,
# ending after it) are at most one more.
wide=$(awk '$1 ~ /^b3-wide:/ { n++; s[n] = $3; e[n] = $4 }
            END { for (i = 1; i <= n; i++) { c = 1
                      for (j = 1; j <= n; j++) if (j != i && s[j] <= s[i] && e[j] > s[i]) c++
                      if (c > max) max = c }
                  print max + 0 }' "$T_DIR/runs.log")
if [[ $wide -ge 1 && $wide -le 2 ]]; then pass "the concurrency-2 machine ran at most 2 at once ($wide)"; else fail "the concurrency-2 machine ran at most 2 at once" "max $wide"; fi
not_contains "no sanitizer reports from the hosts" "$(cat "$T_DIR"/host*.log)" "Sanitizer"
not_contains "no undefined behaviour reported" "$(cat "$T_DIR"/host*.log)" "runtime error:"
t_done
