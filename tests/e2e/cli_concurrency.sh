#!/usr/bin/env bash
# Concurrency through the CLI on one SQLite store (issue 3, point 6): 4 processes creating
# 2,500 items each at the same moment give exactly 10,000 items, and no "database is locked"
# (or any other error) reaches the user. A reader lists the queue meanwhile. The numbers are
# the issue's; the measured cost per item is printed (a TAP comment) rather than the load
# being shrunk, and only a hard bound fails the test.
. "$(dirname "$0")/../lib.sh"

WRITERS=${FERRY_CONC_WRITERS:-4}
PER_WRITER=${FERRY_CONC_ITEMS:-2500}
LIMIT_S=${FERRY_CONC_LIMIT:-240} # a hard bound so a hang fails instead of stalling the suite
[[ ${SAN:-0} == 1 && -z ${FERRY_CONC_LIMIT:-} ]] && LIMIT_S=540 # ASan makes every CLI start slower
TOTAL=$((WRITERS * PER_WRITER))
# sql DB QUERY: runs SQL on the SQLite store (sqlite3 when installed, else python3's module),
# printing rows as a|b|c. Only for what the CLI cannot do or must be checked beneath it.
sql() {
    if command -v sqlite3 >/dev/null; then
        sqlite3 -cmd '.timeout 5000' "$1" "$2"
    else
        python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=5)
for r in c.execute(sys.argv[2]).fetchall(): print("|".join(str(x) for x in r))
c.commit()' "$1" "$2"
    fi
}

write_config
install_plugins
setup_local_machine Ops box1

# --- a fresh store opened by several processes at once ---------------------------------------
fresh=$T_DIR/fresh.conf
sed "s|$T_DIR/ferry.db|$T_DIR/fresh.db|" "$T_DIR/ferry.conf" >"$fresh"
pids=()
for i in 1 2 3 4 5 6; do
    "$FERRY_BIN" --config "$fresh" list teams --output json >"$T_DIR/fresh.$i.out" 2>"$T_DIR/fresh.$i.err" &
    pids+=($!)
done
bad=0
for i in "${!pids[@]}"; do wait "${pids[$i]}" || bad=$((bad + 1)); done
eq "6 processes opening a fresh store at once all succeed" "$bad" 0
eq "and print nothing on stderr" "$(cat "$T_DIR"/fresh.*.err)" ""
eq "each migration is recorded once" \
    "$(sql "$T_DIR/fresh.db" 'SELECT count(*) = count(DISTINCT version) FROM schema_migrations' 2>&1)" 1

# --- 4 writers at once ---------------------------------------------------------------------------
# writer N: waits for the start signal, then creates PER_WRITER items, counting failures.
writer() {
    local w=$1 i fails=0
    while [[ ! -e $T_DIR/go ]]; do sleep 0.01; done
    for ((i = 1; i <= PER_WRITER; i++)); do
        "$FERRY_BIN" create queue-item Ops box1 local --priority $((i % 5 + 1)) \
            --vault "{\"function\":\"hello\",\"tags\":{\"writer\":$w,\"seq\":$i}}" >/dev/null || fails=$((fails + 1))
    done
    echo "$fails" >"$T_DIR/fails.$w"
}
# reader: lists the queue until told to stop, counting failures.
reader() {
    local fails=0 n=0
    while [[ ! -e $T_DIR/stop ]]; do
        "$FERRY_BIN" list queue --max-records 20 --output json >/dev/null || fails=$((fails + 1))
        n=$((n + 1))
        sleep 0.2
    done
    echo "$fails $n" >"$T_DIR/reader"
}
pids=()
for ((w = 1; w <= WRITERS; w++)); do
    writer $w 2>"$T_DIR/err.$w" &
    pids+=($!)
done
reader 2>"$T_DIR/err.reader" &
reader_pid=$!
T_EXTRA_PIDS="${pids[*]} $reader_pid"
start=$(date +%s%N)
touch "$T_DIR/go"
timed_out=0
for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
        if (($(date +%s%N) - start > LIMIT_S * 1000000000)); then timed_out=1; break 2; fi
        sleep 0.2
    done
done
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
if ((timed_out)); then
    kill ${pids[*]} 2>/dev/null
    fail "$WRITERS writers finished within ${LIMIT_S} s" "still running after $elapsed_ms ms"
else
    pass "$WRITERS writers finished within ${LIMIT_S} s"
fi
wait "${pids[@]}" 2>/dev/null
touch "$T_DIR/stop"
wait "$reader_pid" 2>/dev/null
T_EXTRA_PIDS=

echo "# $TOTAL items by $WRITERS processes in $elapsed_ms ms:" \
    "$((elapsed_ms * 1000 / TOTAL)) us per item wall, $((TOTAL * 1000 / (elapsed_ms + 1))) items/s (CLI, $(nproc) CPUs)"
# The time is a measurement, not an assertion: it depends on the machine and its load (about
# 44 s on an idle 2-CPU VM, most of it process start-up).
((elapsed_ms <= 60000)) || echo "# NOTE: over 60 s on this machine (load: $(cut -d' ' -f1-3 /proc/loadavg))"

errors=$(cat "$T_DIR"/err.*)
eq "no error reached stderr" "$(head -5 <<<"$errors")" ""
not_contains "no 'database is locked'" "$errors" "locked"
eq "every create exited 0" "$(cat "$T_DIR"/fails.* | awk '{n += $1} END {print n + 0}')" 0
eq "the reader never failed" "$(cut -d' ' -f1 "$T_DIR/reader")" 0
echo "# the reader listed the queue $(cut -d' ' -f2 "$T_DIR/reader") times meanwhile"

# --- exactly TOTAL items, each once ------------------------------------------------------------------
out=$(ferry list queue --max-records 10000 --output json)
eq "list queue sees exactly $TOTAL items" "$(jq '.data | length' <<<"$out")" "$TOTAL"
eq "with $TOTAL distinct task ids" "$(jq '[.data[].taskId] | unique | length' <<<"$out")" "$TOTAL"
eq "each (writer, seq) exactly once" "$(jq '[.data[].vaultContent.tags | "\(.writer)/\(.seq)"] | unique | length' <<<"$out")" "$TOTAL"
eq "$PER_WRITER from each writer" "$(jq -c '[.data | group_by(.vaultContent.tags.writer)[] | length] | unique' <<<"$out")" "[$PER_WRITER]"
eq "all PENDING" "$(jq -c '[.data[].status] | unique' <<<"$out")" '["PENDING"]'
eq "priorities as given" "$(jq -c '[.data[] | select(.priority != (.vaultContent.tags.seq % 5 + 1))] | length' <<<"$out")" 0
eq "SQL counts $TOTAL rows and $TOTAL CREATED events" \
    "$(sql "$T_DIR/ferry.db" "SELECT (SELECT count(*) FROM queue_items) || ' ' || (SELECT count(*) FROM queue_events WHERE action = 'CREATED')" 2>&1)" \
    "$TOTAL $TOTAL"
eq "the database is intact" "$(sql "$T_DIR/ferry.db" 'PRAGMA integrity_check' 2>&1)" ok
for p in 1 2 3 4 5; do
    eq "priority $p: $((TOTAL / 5)) items" "$(ferry list queue --priority $p --max-records 10000 --output json | jq '.data | length')" $((TOTAL / 5))
done

t_done
