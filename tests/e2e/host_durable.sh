#!/usr/bin/env bash
# The host commits without a sync and makes its commits durable from a thread of its own
# (store_defer_sync, host/serve/durable.c), while its loop goes on. What depends on a commit
# still waits for it to be on disk:
#  - no run message reaches a worker before an fdatasync of the log that started after the
#    claim's commit was written, and ended (the host's syncs run off its main thread);
#  - a failed sync stops the host, and the attempt of the claim it covered never runs;
#  - another process reading the store (ferry queue wait) syncs the log once after it sees
#    a change, and not while the store stays the same (the read barrier).
. "$(dirname "$0")/../lib.sh"

only_sqlite "the log synced off the host's loop is SQLite's WAL"
need_strace
write_config 'workers = { count = 3; prefork = 3; pipeline = 8; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c && chmod 644 "$T_DIR/plugins/misbehave.so"
setup_local_machine Ops box1
for m in $(seq 1 8); do
    ferry create machine Ops local "m$m" --vault '{"connection":"local"}' >/dev/null
done

# --- run messages wait for the sync of their claim ---------------------------------------
start_host || fail "the host starts"
strace -f -p "$HOST_PID" -y -s 262144 -e trace=pwrite64,fdatasync,write -e signal=none \
    -o "$T_DIR/trace" 2>/dev/null &
tracer=$!
sleep 1 # attached (strace writes nothing before a call)
# A long attempt keeps the host busy: its commits are synced by its thread (an idle host
# syncs a claim itself, at once).
ferry create queue-item Ops box1 local --vault '{"function":"fx_sleep","seconds":3}' >/dev/null
for round in 1 2 3; do
    for k in $(seq 0 19); do
        echo '{"team":"Ops","machine":"m'$((k % 8 + 1))'","bridge":"local","vault":{"function":"fx_noop"},"priority":1}'
    done | ferry create queue-items >/dev/null
    sleep 0.3
done
ferry create queue-item Ops box1 local --vault '{"function":"fx_noop"}' >/dev/null
completed() { [[ $(sqlite3 "$T_DIR/ferry.db" "SELECT count(*) FROM queue_items WHERE status = 'COMPLETED'") == "$1" ]]; }
wait_for 20 completed 62 ||
    fail "the 62 items complete" "$(sqlite3 "$T_DIR/ferry.db" "SELECT status, count(*) FROM queue_items GROUP BY 1")"
kill -INT "$tracer"
wait "$tracer" 2>/dev/null
stop_host

result=$(python3 - "$T_DIR/trace" <<'PY'
import re, sys
events, pending = [], {}
for i, line in enumerate(open(sys.argv[1], errors="replace")):
    m = re.match(r"(\d+)\s+(.*)", line)
    if not m:
        continue
    tid, rest = m.group(1), m.group(2)
    r = re.match(r"<\.\.\. (\w+) resumed>(.*)", rest)
    if r:
        if tid in pending:
            name, start, text = pending.pop(tid)
            events.append((name, tid, start, i, text + r.group(2)))
        continue
    name = rest.split("(", 1)[0]
    if "<unfinished ...>" in rest:
        pending[tid] = (name, i, rest)
    else:
        events.append((name, tid, i, i, rest))
wal = lambda t: re.match(r"\w+\(\d+<[^>]*-wal>", t) is not None
writes = [e for e in events if e[0] == "pwrite64" and wal(e[4])]
syncs = [e for e in events if e[0] == "fdatasync" and wal(e[4]) and re.search(r"= 0\s*$", e[4])]
runs = [e for e in events if e[0] == "write" and '\\"op\\":\\"run\\"' in e[4]]
bad, checked, main = [], 0, set()
for name, tid, start, end, text in runs:
    main.add(tid)
    for task in re.findall(r'\\"task\\":\\"([0-9a-f-]{36})\\"', text):
        claim = [w for w in writes if w[3] < start and task in w[4]]
        if not claim:
            bad.append(task + ": no write of its claim to the log")
            continue
        done = claim[-1][3]
        if not any(s[2] > done and s[3] < start for s in syncs):
            bad.append(task + ": run message before a sync that covers its claim")
        checked += 1
off = sum(1 for s in syncs if s[1] not in main)
print(checked, off, "; ".join(bad[:5]) or "-")
PY
)
read -r checked off bad <<<"$result"
((checked >= 62)) && pass "the trace holds the run messages of the 62 items ($checked)" ||
    fail "the trace holds the run messages of the 62 items" "$result"
eq "no run message precedes the sync of the log that covers its claim" "$bad" "-"
((off >= 1)) && pass "the host syncs its log off its main thread ($off syncs)" ||
    fail "the host syncs its log off its main thread" "$result"

# --- a failed sync: the host stops, the attempt never runs --------------------------------
ran=$T_DIR/ran
task=$(ferry create queue-item Ops box1 local --vault '{"function":"fx_record","file":"'"$ran"'","label":"x"}' --output json | jq -r '.data[0].taskId')
FERRY_TEST_SYNC_FAIL=1 "$FERRY_BIN" serve >>"$T_DIR/host2.log" 2>&1 &
pid=$!
end=$((SECONDS + 15))
while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
    fail "a host whose sync fails stops"
    kill -9 "$pid"
    wait "$pid" 2>/dev/null
else
    wait "$pid"
    rc=$?
    ((rc != 0)) && pass "a host whose sync fails stops, with a failure ($rc)" ||
        fail "a host whose sync fails stops with a failure" "exit $rc"
fi
contains "it says so at error" "$(cat "$T_DIR/host2.log")" "store sync failed"
contains "... for the claim of the item" "$(sqlite3 "$T_DIR/ferry.db" "SELECT status FROM queue_items WHERE task_id = '$task'")" PROCESSING
sleep 0.5
eq "the attempt of the claim the failed sync covered never ran" "$(cat "$ran" 2>/dev/null)" ""

# --- the read barrier ----------------------------------------------------------------------
# An item no host takes (bridge "far" has none): the wait polls an unchanged store, then sees
# one change (another create on its bridge wakes it).
ferry create region far-region >/dev/null
ferry create bridge far-region far >/dev/null
ferry create machine Ops far farbox --vault '{"connection":"local"}' >/dev/null
id=$(ferry create queue-item Ops farbox far --vault '{"function":"fx_noop"}' --output json | jq -r '.data[0].taskId')
strace -f -y -e trace=fdatasync -o "$T_DIR/wtrace" "$FERRY_BIN" queue wait "$id" --timeout 3 \
    >/dev/null 2>&1 &
waiter=$!
sleep 1.5
ferry create queue-item Ops farbox far --vault '{"function":"fx_noop"}' >/dev/null
wait "$waiter"
eq "a wait syncs the log at its first read and once after a change, not while polling" \
    "$(grep -cE 'fdatasync\([0-9]+<[^>]*-wal>' "$T_DIR/wtrace")" 2
t_done
