#!/usr/bin/env bash
# The least-privilege PostgreSQL layout of docs/operations.md (issue 17, point 4). Migration
# 12 makes NOLOGIN group roles <database>_host and <database>_client and grants them row
# rights. Three databases, one per way in:
# - A: the page's SQL blocks as written (the superuser makes the group roles, the owner has
#   no CREATEROLE): migrations as the owner, a host as a member of the host role, the CLI as
#   a member of the client role; an item runs; neither can create, alter, drop or truncate;
# - B: an owner with CREATEROLE: the migration creates the two roles; and an existing store
#   without migration 12 is upgraded;
#   a long database name that needs quoting;
# - C: an owner without CREATEROLE and no roles: the migration succeeds and logs one line;
#   once an admin runs what it says, the grants apply.
. "$(dirname "$0")/../lib.sh"
. "$FERRY_ROOT/tests/helpers/pg_test.sh"
pg_require

s=$$
db=ferry_roles_$s db2=ferry_roles2_$s db3=ferry_roles3_$s
ADMIN_DB=$(pg_url_for "$FERRY_TEST_PG_ADMIN_URL" postgres)
# block MARKER: the fenced SQL block of docs/operations.md that starts with "-- MARKER", made
# unique: ferry_owner -> ferry_owner_PID, ferry_host -> DB_host, bridge_a -> bridge_a_PID,
# database ferry -> DB.
block() {
    sed -n "/^-- $1/,/^\`\`\`\$/p" "$FERRY_ROOT/docs/operations.md" | sed '$d' |
        sed -E "s/ferry_owner/ferry_owner_$s/g; s/ferry_(host|client)/${db}_\\1/g;
                s/\\b(bridge_a|alice)\\b/\\1_$s/g; s/DATABASE ferry /DATABASE $db /g"
}
roles=$(block "ferry roles")
members=$(block "ferry members")
[[ $roles == *"CREATE ROLE"* && $members == *"GRANT ${db}_host TO bridge_a_$s"* ]] &&
    pass "docs/operations.md has both SQL blocks" || fail "docs/operations.md has both SQL blocks" "$roles / $members"
# admin [-d DB] ARGS...: psql as the superuser, in database postgres or DB.
admin() {
    local url=$ADMIN_DB
    [[ $1 == -d ]] && { url=$(pg_url_for "$FERRY_TEST_PG_ADMIN_URL" "$2"); shift 2; }
    PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 "$url" "$@"
}
cleanup_roles() {
    local d r
    for d in "$db" "$db2" "$db3" "${db4:-}"; do [[ -z $d ]] || admin -c "DROP DATABASE IF EXISTS \"$d\"" >/dev/null 2>&1; done
    admin -At -c "SELECT format('DROP ROLE %I;', rolname) FROM pg_roles WHERE rolname LIKE 'Ferry-Long-$s-%'" 2>/dev/null |
        admin -f - >/dev/null 2>&1
    for r in "${db}_host" "${db}_client" "${db2}_host" "${db2}_client" "${db3}_host" "${db3}_client" \
        "bridge_a_$s" "alice_$s" "login2_$s" "login3_$s" "ferry_owner_$s" "owner2_$s" "owner3_$s"; do
        admin -c "DROP ROLE IF EXISTS $r" >/dev/null 2>&1
    done
}
cleanup_roles
admin -f - <<<"$roles" >"$T_DIR/roles.out" 2>&1 && pass "the roles block runs" || fail "the roles block runs" "$(cat "$T_DIR/roles.out")"
# The server's host, port and database DB as key=value, with user=ROLE.
conn() { python3 -c 'import sys, urllib.parse as up
u = up.urlparse(sys.argv[1]); q = dict(up.parse_qsl(u.query))
print(" ".join(f"{k}={v}" for k, v in [("host", q.get("host")), ("port", q.get("port"))] if v), "dbname=" + sys.argv[3], "user=" + sys.argv[2])' "$ADMIN_DB" "$1" "${2:-$db}"; }
# priv ROLE DB: the role's rights on DB's queue_items (select, insert, truncate) and on
# schema_migrations (insert), as t/f letters.
priv() {
    pg_sql "$(pg_url_for "$FERRY_TEST_PG_ADMIN_URL" "$2")" "SELECT concat(has_table_privilege('$1', 'queue_items', 'SELECT')::text::char,
        has_table_privilege('$1', 'queue_items', 'INSERT')::text::char, has_table_privilege('$1', 'queue_items', 'TRUNCATE')::text::char,
        has_table_privilege('$1', 'schema_migrations', 'INSERT')::text::char)"
}

write_config
install_plugins
pg_config "$T_DIR/owner.conf" local "$(conn "ferry_owner_$s")"
pg_config "$T_DIR/host.conf" local "$(conn "bridge_a_$s")" 'lease = { poll_ms = 200; };'
pg_config "$T_DIR/client.conf" local "$(conn "alice_$s")"

# --- A: the page as written.
out=$(FERRY_CONFIG=$T_DIR/client.conf ferry list teams 2>&1) && fail "the client's login cannot create the tables" "$out"
contains "the client's login cannot create the tables" "$out" "permission denied"
out=$(FERRY_CONFIG=$T_DIR/owner.conf ferry list teams 2>&1) && pass "the owner creates the tables" || fail "the owner creates the tables" "$out"
[[ $out != *"not created"* ]] && pass "roles made by the admin: the migration logs nothing" || fail "roles made by the admin: the migration logs nothing" "$out"
eq "the host role reads and writes rows, cannot truncate or write schema_migrations" "$(priv "${db}_host" "$db")" ttff
eq "the client role reads and writes rows, cannot truncate or write schema_migrations" "$(priv "${db}_client" "$db")" ttff
admin -d "$db" -f - <<<"$members" >"$T_DIR/members.out" 2>&1 && pass "the members block runs" || fail "the members block runs" "$(cat "$T_DIR/members.out")"
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
for login in bridge_a alice; do
    url="$(conn "${login}_$s")"
    for sql in "DROP TABLE queue_items" "TRUNCATE queue_events" "CREATE TABLE x (a int)" "ALTER TABLE teams ADD COLUMN y int" \
        "DELETE FROM schema_migrations" "SELECT ferry_grant_roles()"; do
        out=$(pg_sql "$url" "$sql" 2>&1)
        [[ $? != 0 && ($out == *"permission denied"* || $out == *"must be owner"*) ]] && pass "$login (member) cannot $sql" ||
            fail "$login (member) cannot $sql" "$out"
    done
done
unset FERRY_CONFIG

# --- B: an owner with CREATEROLE; then an existing store (no migration 12) upgraded.
admin -c "CREATE ROLE owner2_$s LOGIN CREATEROLE" -c "CREATE DATABASE $db2 OWNER owner2_$s" >/dev/null
pg_config "$T_DIR/owner2.conf" local "$(conn "owner2_$s" "$db2")"
out=$(FERRY_CONFIG=$T_DIR/owner2.conf ferry list teams 2>&1) && pass "CREATEROLE: the owner migrates" || fail "CREATEROLE: the owner migrates" "$out"
eq "CREATEROLE: the migration created both NOLOGIN roles" \
    "$(pg_sql "$ADMIN_DB" "SELECT string_agg(rolname || ':' || rolcanlogin::text, ',' ORDER BY rolname) FROM pg_roles WHERE rolname IN ('${db2}_host', '${db2}_client')")" \
    "${db2}_client:false,${db2}_host:false"
eq "CREATEROLE: the host role's rights" "$(priv "${db2}_host" "$db2")" ttff
# Back to a store of before migration 12: its record, its function and its grants gone.
pg_sql "$(pg_url_for "$FERRY_TEST_PG_ADMIN_URL" "$db2")" "DELETE FROM schema_migrations WHERE version = 12; DROP FUNCTION ferry_grant_roles();
    REVOKE ALL ON ALL TABLES IN SCHEMA public FROM ${db2}_host, ${db2}_client" >/dev/null
eq "before the upgrade the host role has no rights" "$(priv "${db2}_host" "$db2")" ffff
out=$(FERRY_CONFIG=$T_DIR/owner2.conf ferry list teams 2>&1) && pass "an existing store is upgraded" || fail "an existing store is upgraded" "$out"
eq "the upgrade granted the host role" "$(priv "${db2}_host" "$db2")" ttff
eq "the upgrade granted the client role" "$(priv "${db2}_client" "$db2")" ttff
eq "ferry_grant_roles() runs again" "$(pg_sql "$(pg_url_for "$FERRY_TEST_PG_ADMIN_URL" "$db2")" "SELECT ferry_grant_roles()")" granted
# Tables of later migrations follow (default privileges for the owner).
pg_sql "$(conn "owner2_$s" "$db2")" "CREATE TABLE later (a int)" >/dev/null
eq "a later table of the owner is granted to the client role" \
    "$(pg_sql "$(pg_url_for "$FERRY_TEST_PG_ADMIN_URL" "$db2")" "SELECT has_table_privilege('${db2}_client', 'later', 'UPDATE')::text || has_table_privilege('${db2}_client', 'later', 'TRUNCATE')::text")" truefalse

# A database name that needs quoting and is so long that "<name>_client" is cut to 63 bytes:
# the roles are found again on the next run instead of created twice.
db4=$(printf 'Ferry-Long-%s-%060d' "$s" 0 | cut -c1-60)
admin -c "CREATE DATABASE \"$db4\" OWNER owner2_$s" >/dev/null
pg_config "$T_DIR/owner4.conf" local "$(conn "owner2_$s" "$db4")"
out=$(FERRY_CONFIG=$T_DIR/owner4.conf ferry list teams 2>&1) && pass "a long, quoted database name: the owner migrates" ||
    fail "a long, quoted database name: the owner migrates" "$out"
eq "its roles are cut to 63 bytes" "$(pg_sql "$ADMIN_DB" "SELECT string_agg(length(rolname)::text, ',' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE 'Ferry-Long-$s-%'")" 63,63
eq "ferry_grant_roles() runs again on them" "$(pg_sql "$(pg_url_for "$FERRY_TEST_PG_ADMIN_URL" "$db4")" "SELECT ferry_grant_roles()")" granted

# --- C: an owner without CREATEROLE, no roles.
admin -c "CREATE ROLE owner3_$s LOGIN" -c "CREATE DATABASE $db3 OWNER owner3_$s" -c "REVOKE ALL ON DATABASE $db3 FROM PUBLIC" \
    -c "CREATE ROLE login3_$s LOGIN" >/dev/null
pg_config "$T_DIR/owner3.conf" local "$(conn "owner3_$s" "$db3")"
pg_config "$T_DIR/login3.conf" local "$(conn "login3_$s" "$db3")"
first=$(FERRY_CONFIG=$T_DIR/owner3.conf ferry list teams 2>&1) && pass "no CREATEROLE: the migration succeeds" ||
    fail "no CREATEROLE: the migration succeeds" "$first"
eq "no CREATEROLE: one line is logged" "$(grep -c "not created" <<<"$first")" 1
contains "the line names the roles and what to run" "$first" \
    "roles ${db3}_host and ${db3}_client not created (role owner3_$s may not create roles); as an admin, in database $db3, run: CREATE ROLE ${db3}_host NOLOGIN; CREATE ROLE ${db3}_client NOLOGIN; SELECT ferry_grant_roles();"
eq "no CREATEROLE: no role was created" "$(pg_sql "$ADMIN_DB" "SELECT count(*) FROM pg_roles WHERE rolname LIKE '${db3}\_%'")" 0
out=$(FERRY_CONFIG=$T_DIR/owner3.conf ferry list teams 2>&1)
[[ $out != *"not created"* ]] && pass "the line is logged by the migration only" || fail "the line is logged by the migration only" "$out"
out=$(FERRY_CONFIG=$T_DIR/login3.conf ferry list teams 2>&1) && fail "before the admin acts, a login has no access" "$out"
contains "before the admin acts, a login has no access" "$out" "permission denied"
# The admin runs what the line says, in the database, then makes a login a member.
admin -d "$db3" -c "$(sed -n 's/.*, run: //p' <<<"$first")" -c "GRANT ${db3}_client TO login3_$s" >"$T_DIR/c.out" 2>&1 &&
    pass "the logged SQL runs" || fail "the logged SQL runs" "$(cat "$T_DIR/c.out")"
eq "then the host role has its rights" "$(priv "${db3}_host" "$db3")" ttff
eq "then the client role has its rights" "$(priv "${db3}_client" "$db3")" ttff
FERRY_CONFIG=$T_DIR/login3.conf ferry create team Dev >/dev/null 2>&1 && pass "then a member of the client role writes" ||
    fail "then a member of the client role writes"
cleanup_roles
eq "every role the test made is gone" "$(pg_sql "$ADMIN_DB" "SELECT count(*) FROM pg_roles WHERE rolname ~ '[-_]$s([-_]|\$)'")" 0
t_done
