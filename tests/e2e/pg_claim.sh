#!/usr/bin/env bash
# A host's claims on PostgreSQL (issue 14, point 6):
#   - the claim walks the bridge by machine (its own S_CLAIM_SCAN text): a backlog queued on
#     a few machines ahead of everyone else's still lets every machine with a free slot get
#     its first item in one claim, a machine of concurrency 2 runs two at once, and an item
#     waiting for a dependency does not hide the machine's next ready item;
#   - the machines of a claim's items are read in one list per team: each item of many
#     machines claimed at once runs with its own machine's facts, a vault changed between
#     claims is what the next claim's item sees, and a machine of another team still runs;
#   - a conninfo that sets libpq's options (the driver's default sets random_page_cost) opens.
. "$(dirname "$0")/../lib.sh"
. "$FERRY_ROOT/tests/helpers/pg_test.sh"
pg_require

URL=$(pg_new_db "ferry_claim_$$") || { fail "create the test database"; t_done; exit 1; }
write_config
install_plugins
export FERRY_CONFIG=$T_DIR/pg.conf
# Two workers with eight attempts queued each: one claim takes every item it can.
pg_config "$FERRY_CONFIG" local "$URL" "workers = { count = 2; prefork = 2; pipeline = 8; };"

ferry create region r >/dev/null
ferry create bridge r local >/dev/null
ferry create team Ops >/dev/null
ferry create team Dev >/dev/null
for i in $(seq 0 9); do
    ferry create machine Ops local "m$i" --vault "{\"connection\":\"local\",\"rack\":\"r$i\",\"password\":\"hidden$i\"}" >/dev/null
done
ferry create machine Ops local wide --vault '{"connection":"local","concurrency":2}' >/dev/null
ferry create machine Dev local d0 --vault '{"connection":"local"}' >/dev/null

# item TEAM MACHINE PRIORITY [--after ID]: queues a hello item; prints its task id.
item() {
    local team=$1 machine=$2 prio=$3
    shift 3
    ferry create queue-item "$team" "$machine" local --vault '{"function":"hello","name":"t"}' \
        -p "$prio" "$@" --output json | jq -r '.data[0].taskId'
}

# --- machine facts for a claim of many machines ------------------------------------------------
declare -A TASK
for i in $(seq 0 9); do TASK[m$i]=$(item Ops "m$i" 3); done
TASK[d0]=$(item Dev d0 3)
ferry serve --drain >"$T_DIR/host1.log" 2>&1
eq "the host drained the first claim" "$?" 0
bad=0
for m in "${!TASK[@]}"; do
    got=$(pg_sql "$URL" "SELECT status || ' ' || coalesce(response_vault::json->'result'->>'machine', '-') FROM queue_items WHERE task_id = '${TASK[$m]}'")
    [[ $got == "COMPLETED $m" ]] || { bad=$((bad + 1)); echo "# ${TASK[$m]} on $m: $got"; }
done
eq "11 items of 11 machines in one claim: each ran with its own machine" "$bad" 0
eq "one claim took them all" "$(pg_sql "$URL" "SELECT count(DISTINCT assigned_at) FROM queue_items")" 1

# A vault changed between two claims is what the second claim's items see.
# m3 becomes a remote machine nothing answers for (port 1 of loopback, no key).
ferry update machine-vault Ops m3 --vault '{"connection":null,"ip":"127.0.0.1","user":"nobody","ssh_port":1}' >/dev/null ||
    fail "update m3's vault"
for i in $(seq 0 9); do TASK[m$i]=$(item Ops "m$i" 3); done
ferry serve --drain >"$T_DIR/host2.log" 2>&1
eq "m3, now remote and unreachable, did not complete" \
    "$(pg_sql "$URL" "SELECT status FROM queue_items WHERE task_id = '${TASK[m3]}'")" FAILED
eq "the other nine did, on their own machines (19 with the first claim's other ten)" \
    "$(pg_sql "$URL" "SELECT count(*) FROM queue_items WHERE status = 'COMPLETED' AND machine_name <> 'm3' AND response_vault::json->'result'->>'machine' = machine_name")" 19
ferry update machine-vault Ops m3 --replace --vault '{"connection":"local"}' >/dev/null

# --- the claim walks by machine ------------------------------------------------------------------
# m0 and m1 hold a backlog of 30 priority-1 items each, queued first; every other machine
# has one priority-5 item; wide (concurrency 2) has three; m2's first item waits for one
# of m9's, its second is ready.
pg_sql "$URL" "UPDATE queue_items SET status = 'COMPLETED' WHERE status NOT IN ('COMPLETED','FAILED','CANCELLED')" >/dev/null
for k in $(seq 1 30); do item Ops m0 1 >/dev/null; item Ops m1 1 >/dev/null; done
blocker=$(item Ops m9 5)
waiting=$(item Ops m2 5 --after "$blocker")
ready=$(item Ops m2 5)
for i in 3 4 5 6 7 8; do item Ops "m$i" 5 >/dev/null; done
for k in 1 2 3; do item Ops wide 5 >/dev/null; done
pg_config "$T_DIR/one.conf" local "$URL" "workers = { count = 2; prefork = 2; pipeline = 16; };"
first_claim() {
    pg_sql "$URL" "SELECT machine_name, count(*) FROM queue_items WHERE assigned_at = (SELECT min(assigned_at) FROM queue_items WHERE assigned_at > $1) GROUP BY machine_name ORDER BY machine_name" | tr '\n' ' '
}
t0=$(($(date +%s%N) / 1000000))
FERRY_CONFIG=$T_DIR/one.conf ferry serve --drain >"$T_DIR/host3.log" 2>&1
eq "the host drained the backlog" "$?" 0
eq "its first claim took one item of each machine of concurrency 1 and two of wide" \
    "$(first_claim "$t0")" "m0|1 m1|1 m2|1 m3|1 m4|1 m5|1 m6|1 m7|1 m8|1 m9|1 wide|2 "
eq "m2's ready item went first; the one waiting for m9's ran after it" \
    "$(pg_sql "$URL" "SELECT (SELECT started_at FROM queue_items WHERE task_id = '$ready') < (SELECT started_at FROM queue_items WHERE task_id = '$waiting')")" t
eq "every item of the backlog completed" \
    "$(pg_sql "$URL" "SELECT count(*) FROM queue_items WHERE status <> 'COMPLETED' AND assigned_at > $t0")" 0

# --- a conninfo with libpq options ------------------------------------------------------------
kv=$(python3 -c 'import sys, urllib.parse as up
u = up.urlparse(sys.argv[1]); q = dict(up.parse_qsl(u.query))
print(" ".join(f"{k}={v}" for k, v in [("host", q.get("host")), ("port", q.get("port")), ("user", q.get("user")), ("dbname", u.path.lstrip("/"))] if v))' "$URL")
pg_config "$T_DIR/opts.conf" local "$kv options='-c work_mem=8MB'"
eq "a conninfo that sets options opens the store" \
    "$(FERRY_CONFIG=$T_DIR/opts.conf ferry list teams --output json | jq -r '[.data[].teamName] | join(",")')" "Dev,Ops"

t_done
