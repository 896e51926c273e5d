#!/usr/bin/env bash
# Choosing and opening the PostgreSQL store (issue 5, points 1 and 3): the driver is chosen
# by the config (driver "postgres" with a conninfo, as a postgres:// URL or key=value);
# migrations are numbered like SQLite's and applied once even when
# several processes open a fresh database at the same moment; errors are clear and never
# show a password; a host wakes on new items through LISTEN/NOTIFY, not by polling.
. "$(dirname "$0")/../lib.sh"
. "$FERRY_ROOT/tests/helpers/pg_test.sh"
pg_require

URL=$(pg_new_db "ferry_store_$$") || { fail "create the test database"; t_done; exit 1; }
write_config
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c && chmod 644 "$T_DIR/plugins/misbehave.so"
export FERRY_CONFIG=$T_DIR/pg.conf

# --- a fresh database opened by eight processes at once ---------------------------------------
pg_config "$FERRY_CONFIG" local "$URL"
for i in 1 2 3 4 5 6 7 8; do ferry list teams --output json >"$T_DIR/open$i.out" 2>&1 & done
wait
bad=0
for i in 1 2 3 4 5 6 7 8; do jq -e '.success' "$T_DIR/open$i.out" >/dev/null 2>&1 || bad=$((bad + 1)); done
eq "eight processes open a fresh database at once" "$bad" 0
[[ $bad -gt 0 ]] && sed 's/^/# /' "$T_DIR"/open*.out | head -10
# SQLite's list, from a fresh SQLite store opened by the same ferry.
FERRY_CONFIG=$T_DIR/ferry.conf ferry list teams >/dev/null 2>&1
eq "the migrations are recorded once, numbered like SQLite's" \
    "$(pg_sql "$URL" "SELECT string_agg(version || ':' || name, ',' ORDER BY version) FROM schema_migrations")" \
    "$(sqlite3 "$T_DIR/ferry.db" "SELECT group_concat(version || ':' || name, ',') FROM (SELECT * FROM schema_migrations ORDER BY version)")"

# --- the ways to name the store ----------------------------------------------------------------
kv=$(python3 -c 'import sys, urllib.parse as up
u = up.urlparse(sys.argv[1]); q = dict(up.parse_qsl(u.query))
print(" ".join(f"{k}={v}" for k, v in [("host", q.get("host")), ("port", q.get("port")), ("user", q.get("user")), ("dbname", u.path.lstrip("/"))] if v))' "$URL")
ferry create region r >/dev/null
ferry create bridge r local >/dev/null
ferry create team Ops >/dev/null
ferry create machine Ops local box1 --vault '{"connection":"local"}' >/dev/null
pg_config "$T_DIR/kv.conf" local "$kv"
eq "driver postgres with a key=value conninfo" "$(FERRY_CONFIG=$T_DIR/kv.conf ferry list teams --output json | jq -r '.data[0].teamName')" Ops
port=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' <<<"$URL")
db=ferry_store_$$
tcp="postgres://postgres:not-shown-anywhere@127.0.0.1:$port/$db"
pg_config "$T_DIR/tcp.conf" local "$tcp"
eq "driver postgres with a postgres:// URL over TCP" "$(FERRY_CONFIG=$T_DIR/tcp.conf ferry list teams --output json | jq -r '.data[0].teamName')" Ops

# --- errors ------------------------------------------------------------------------------------
pg_config "$T_DIR/nodb.conf" local "postgres://postgres:not-shown-anywhere@127.0.0.1:$port/no_such_db"
out=$(FERRY_CONFIG=$T_DIR/nodb.conf ferry list teams 2>&1); rc=$?
[[ $rc -ne 0 ]] && pass "a missing database is an error (exit $rc)" || fail "a missing database is an error" "$out"
contains "the message names the store" "$out" "cannot open the PostgreSQL store postgres://postgres@127.0.0.1:$port/no_such_db"
contains "and what went wrong" "$out" "does not exist"
not_contains "and never the password" "$out" "not-shown-anywhere"
pg_config "$T_DIR/down.conf" local "postgres://postgres@127.0.0.1:1/x?connect_timeout=3"
t=$SECONDS
out=$(FERRY_CONFIG=$T_DIR/down.conf ferry list teams 2>&1); rc=$?
[[ $rc -ne 0 && $((SECONDS - t)) -lt 10 ]] && pass "an unreachable server is a prompt error" || fail "an unreachable server is a prompt error" "$out"
contains "naming the server" "$out" "postgres://postgres@127.0.0.1:1/x"

# --- wake-ups: a host with a slow poll still starts new items at once ----------------------------
# Its bridge has a long, mixed-case name: channel names are identifiers of at most 63 bytes.
is_status() { [[ $(task_status "$1") == "$2" ]]; }
BR=Edge.East-1_$(printf 'x%.0s' $(seq 1 90))
ferry create bridge r "$BR" >/dev/null
ferry create machine Ops "$BR" box2 --vault '{"connection":"local"}' >/dev/null
pg_config "$T_DIR/host.conf" "$BR" "$URL" 'lease = { poll_ms = 60000; };' 'workers = { count = 1; prefork = 1; };'
start_pg_host "$T_DIR/host.conf" "$T_DIR/host.log" || fail "the host starts"
HOST=$LAST_HOST_PID
sleep 0.5
changes() { pg_sql "$URL" "SELECT n FROM resource_changes"; }
changes0=$(changes)
lat=()
for i in 1 2 3 4 5; do
    t=$(date +%s%N)
    id=$(ferry create queue-item Ops box2 "$BR" --vault '{"function":"fx_noop"}' --output json | jq -r '.data[0].taskId')
    ferry queue wait "$id" --timeout 20 >/dev/null
    lat+=($((($(date +%s%N) - t) / 1000000)))
done
max=$(printf '%s\n' "${lat[@]}" | sort -n | tail -1)
[[ $max -lt 5000 ]] && pass "NOTIFY wakes the host: 5 items ran within ${lat[*]} ms (poll is 60 s)" ||
    fail "NOTIFY wakes the host" "${lat[*]} ms"
# A cancel reaches a running attempt through the same channel.
id=$(ferry create queue-item Ops box2 "$BR" --vault '{"function":"fx_sleep","seconds":30}' --output json | jq -r '.data[0].taskId')
wait_for 10 is_status "$id" PROCESSING || fail "the sleeper starts"
t=$SECONDS
ferry queue cancel "$id" >/dev/null
wait_for 10 is_status "$id" CANCELLED && pass "a cancel reaches the running attempt at once ($((SECONDS - t)) s)" || fail "a cancel reaches the running attempt" "$(task_status "$id")"
# The count a host keeps machine facts by (migration 11): running items leave it, a change
# of a machine or a team raises it (tests/e2e/host_machine_cache.sh@pg: the host sees it).
eq "items that run change no machine (the count of changes stays)" "$(changes)" "$changes0"
ferry update machine-vault Ops box2 --vault '{"note":"changed"}' >/dev/null
ferry update team-vault Ops --vault '{"note":"changed"}' >/dev/null
eq "a machine's and a team's change are counted" "$(changes)" "$((changes0 + 2))"
stop_pids "$HOST"
not_contains "the host log has no stray server notices" "$(cat "$T_DIR/host.log")" "FATAL:"
not_contains "no sanitizer reports from the hosts" "$(cat "$T_DIR/host.log")" "Sanitizer"
not_contains "no undefined behaviour reported" "$(cat "$T_DIR/host.log")" "runtime error:"
t_done
