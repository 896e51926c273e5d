#!/usr/bin/env bash
# The least-privilege PostgreSQL layout of docs/operations.md (issue 17, point 4): the two SQL
# blocks of the page, run as written (role and database names made unique to this test),
# then migrations as the owner, a host as the host role and the CLI as the client role; an
# item runs; neither of the two can drop or truncate a table or create one.
. "$(dirname "$0")/../lib.sh"
. "$FERRY_ROOT/tests/helpers/pg_test.sh"
pg_require

s=$$
db=ferry_roles_$s
ADMIN_DB=$(pg_url_for "$FERRY_TEST_PG_ADMIN_URL" postgres)
# block MARKER: the fenced SQL block of docs/operations.md that starts with "-- MARKER", made
# unique: ferry_owner -> ferry_owner_PID ..., database ferry -> ferry_roles_PID.
block() {
    sed -n "/^-- $1/,/^\`\`\`\$/p" "$FERRY_ROOT/docs/operations.md" | sed '$d' |
        sed -E "s/ferry_(owner|host|client)/ferry_\\1_$s/g; s/DATABASE ferry /DATABASE $db /g"
}
roles=$(block "ferry roles")
grants=$(block "ferry grants")
[[ $roles == *"CREATE ROLE"* && $grants == *"ALTER DEFAULT PRIVILEGES"* ]] && pass "docs/operations.md has both SQL blocks" ||
    fail "docs/operations.md has both SQL blocks" "$roles / $grants"
cleanup_roles() {
    PGOPTIONS="-c client_min_messages=warning" psql -X -q "$ADMIN_DB" -c "DROP DATABASE IF EXISTS $db" \
        -c "DROP ROLE IF EXISTS ferry_owner_$s" -c "DROP ROLE IF EXISTS ferry_host_$s" -c "DROP ROLE IF EXISTS ferry_client_$s" >/dev/null 2>&1
}
cleanup_roles
psql -X -q -v ON_ERROR_STOP=1 "$ADMIN_DB" -f - <<<"$roles" >"$T_DIR/roles.out" 2>&1 && pass "the roles block runs" || fail "the roles block runs" "$(cat "$T_DIR/roles.out")"
DBURL=$(pg_url_for "$FERRY_TEST_PG_ADMIN_URL" "$db")
psql -X -q -v ON_ERROR_STOP=1 "$DBURL" -f - <<<"$grants" >"$T_DIR/grants.out" 2>&1 && pass "the grants block runs" || fail "the grants block runs" "$(cat "$T_DIR/grants.out")"
# The server's host, port and database as key=value, with user=ROLE.
conn() { python3 -c 'import sys, urllib.parse as up
u = up.urlparse(sys.argv[1]); q = dict(up.parse_qsl(u.query))
print(" ".join(f"{k}={v}" for k, v in [("host", q.get("host")), ("port", q.get("port")), ("dbname", u.path.lstrip("/"))] if v), "user=" + sys.argv[2])' "$DBURL" "$1"; }

write_config
install_plugins
pg_config "$T_DIR/owner.conf" local "$(conn "ferry_owner_$s")"
pg_config "$T_DIR/host.conf" local "$(conn "ferry_host_$s")" 'lease = { poll_ms = 200; };'
pg_config "$T_DIR/client.conf" local "$(conn "ferry_client_$s")"

out=$(FERRY_CONFIG=$T_DIR/client.conf ferry list teams 2>&1) && fail "the client role cannot create the tables" "$out"
contains "the client role cannot create the tables" "$out" "permission denied"
FERRY_CONFIG=$T_DIR/owner.conf ferry list teams >/dev/null 2>&1 && pass "the owner creates the tables" || fail "the owner creates the tables"
export FERRY_CONFIG=$T_DIR/client.conf
ferry create region r >/dev/null && ferry create bridge r local >/dev/null && ferry create team Ops >/dev/null &&
    ferry create machine Ops local box1 --vault '{"connection":"local","password":"pw-r-1"}' >/dev/null &&
    pass "the client role creates resources" || fail "the client role creates resources"
start_pg_host "$T_DIR/host.conf" "$T_DIR/host.log" && pass "a host runs as the host role" || fail "a host runs as the host role"
id=$(ferry create queue-item Ops box1 local --vault '{"function":"hello"}' --output json | jq -r '.data[0].taskId')
wait_status "$id" COMPLETED 15
eq "an item created by the client role runs on the host role's host" "$(task_status "$id")" COMPLETED
stop_pids "$LAST_HOST_PID"
grep -q "permission denied" "$T_DIR/host.log" && fail "the host met no permission error" "$(grep "permission denied" "$T_DIR/host.log" | head -3)" || pass "the host met no permission error"
for role in host client; do
    url="$(conn "ferry_${role}_$s")"
    for sql in "DROP TABLE queue_items" "TRUNCATE queue_events" "CREATE TABLE x (a int)" "ALTER TABLE teams ADD COLUMN y int"; do
        out=$(pg_sql "$url" "$sql" 2>&1)
        [[ $? != 0 && ($out == *"permission denied"* || $out == *"must be owner"*) ]] && pass "the $role role cannot $sql" ||
            fail "the $role role cannot $sql" "$out"
    done
done
cleanup_roles
t_done
