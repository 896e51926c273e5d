#!/usr/bin/env bash
# What a PostgreSQL store costs the server per item (issue 14, point 6), counted rather than
# timed:
#   - a host draining 3,000 items finds the items it claims and ends by index: the claim and
#     the finish named them with IN (…), which the planner hashed against a sequential scan
#     of queue_items in every turn (about two scans a turn), so a turn cost as much as the
#     table was deep;
#   - a transaction's BEGIN travels with its first statement, and the question of its id
#     (which a commit that loses its connection needs) with a write: neither costs a round
#     trip of its own, in the CLI's create as in the host's turns.
. "$(dirname "$0")/../lib.sh"
. "$FERRY_ROOT/tests/helpers/pg_test.sh"
pg_require

N=3000
URL=$(pg_new_db "ferry_trips_$$") || { fail "create the test database"; t_done; exit 1; }
write_config
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c && chmod 644 "$T_DIR/plugins/misbehave.so"
build_queue_fill || { t_done; exit 1; }
export FERRY_CONFIG=$T_DIR/pg.conf
pg_config "$FERRY_CONFIG" local "$URL" 'workers = { count = 2; prefork = 2; pipeline = 32; };'

ferry create region r >/dev/null
ferry create bridge r local >/dev/null
ferry create team T >/dev/null
for i in $(seq 0 19); do ferry create machine T local "m$i" --vault '{"connection":"local"}' >/dev/null; done
eq "$N items queued" "$(awk -v n=$N 'BEGIN { for (i = 0; i < n; i++) printf "T m%d local 3 {\"function\":\"fx_noop\"}\n", i % 20 }' |
    "$T_DIR/queue_fill" "$URL" 1000)" "$N"

seq_scans() { pg_sql "$URL" "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'queue_items'"; }
# strace records what the host sends (sendto), each call with its bytes as text.
tracing=0
command -v strace >/dev/null && strace -f -o /dev/null true 2>/dev/null && tracing=1
before=$(seq_scans)
if ((tracing)); then
    strace -f -s 4096 -e trace=sendto -o "$T_DIR/host.trace" "$FERRY_BIN" serve --drain >"$T_DIR/host.log" 2>&1
else
    ferry serve --drain >"$T_DIR/host.log" 2>&1
fi
eq "the host drained every item" \
    "$(pg_sql "$URL" "SELECT status || '=' || count(*) FROM queue_items GROUP BY status")" "COMPLETED=$N"
# The server counts a backend's scans when it ends (the host's has). Before, the drain's
# turns scanned the table about twice each (more than 40 times here); what is left may be a
# statement or two of the host's start, on a table the planner then found small.
after=$(seq_scans)
scans=$((after - before))
[[ $scans -lt 10 ]] && pass "the drain found its items by index: $scans sequential scans of queue_items" ||
    fail "the drain found its items by index" "$scans sequential scans of queue_items in the drain"

# sends_alone TRACE PATTERN OTHERS: the sends that carry PATTERN and none of the statements
# OTHERS (an extended regular expression), i.e. that cost a round trip of their own.
sends_alone() { grep -E 'sendto\(' "$1" | grep -F "$2" | grep -vE "$3"; }
STATEMENTS='ferry_[0-9]|SELECT|INSERT|UPDATE|DELETE|WITH|SAVEPOINT'
WRITES='ferry_[0-9]|INSERT|UPDATE|DELETE|WITH'
if ((tracing)); then
    turns=$(grep -cF 'BEGIN' "$T_DIR/host.trace")
    [[ $turns -gt 0 ]] && pass "the host's turns began transactions: $turns" ||
        fail "the host's turns began transactions" "$(head -5 "$T_DIR/host.trace")"
    eq "each BEGIN of the host went with the transaction's first statement" \
        "$(sends_alone "$T_DIR/host.trace" BEGIN "$STATEMENTS" | head -3)" ""
    eq "each question of the host's transaction id went with a write" \
        "$(sends_alone "$T_DIR/host.trace" txid_current_if_assigned "$WRITES" | head -3)" ""

    strace -f -s 4096 -e trace=sendto -o "$T_DIR/create.trace" \
        "$FERRY_BIN" create queue-item T m0 local --vault '{"function":"fx_noop"}' >"$T_DIR/create.out" 2>&1
    contains "the traced create queued its item" "$(cat "$T_DIR/create.out")" "Task ID"
    grep -qF BEGIN "$T_DIR/create.trace" && grep -qF txid_current_if_assigned "$T_DIR/create.trace" &&
        pass "the create began a transaction and asked for its id" ||
        fail "the create began a transaction and asked for its id" "$(head -5 "$T_DIR/create.trace")"
    eq "the create's BEGIN went with its first statement" \
        "$(sends_alone "$T_DIR/create.trace" BEGIN "$STATEMENTS" | head -3)" ""
    eq "the create's question of its transaction id went with its first write" \
        "$(sends_alone "$T_DIR/create.trace" txid_current_if_assigned "$WRITES" | head -3)" ""
else
    echo "ok $((T_N += 1)) - # SKIP strace cannot trace here"
fi

t_done
