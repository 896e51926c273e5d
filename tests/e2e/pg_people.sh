#!/usr/bin/env bash
# People on PostgreSQL (issue 16, points 5 and 6): the unit suite (tests/unit/test_people.c)
# and the CLI's test (people_cli.sh) against a PostgreSQL store, and migration 5 on a store
# of schema version 4 with history: the tables come, the history stays, and users, tokens,
# the audit log and the events' actor work in it.
. "$(dirname "$0")/../lib.sh"
. "$FERRY_ROOT/tests/helpers/pg_test.sh"
pg_require

# --- the unit suite and the CLI's test, on PostgreSQL -----------------------------------------------
URL=$(pg_new_db "ferry_people_unit_$$") || { fail "create the test database"; t_done; exit 1; }
if out=$(FERRY_TEST_PG_URL=$URL CMOCKA_MESSAGE_OUTPUT=TAP "$FERRY_ROOT/$BUILD/tests/test_people" 2>&1); then
    pass "test_people passes on SQLite and PostgreSQL ($(grep -c '^ok' <<<"$out") tests)"
else
    fail "test_people on PostgreSQL" "$(grep -A3 'not ok' <<<"$out" | head -20)"
fi
contains "the PostgreSQL suite ran" "$out" "people_postgres"
if out=$(FERRY_TEST_DRIVER=postgres bash "$FERRY_ROOT/tests/e2e/people_cli.sh" 2>&1); then
    pass "people_cli.sh passes on PostgreSQL ($(grep -c '^ok' <<<"$out") checks)"
else
    fail "people_cli.sh on PostgreSQL" "$(grep -A3 'not ok' <<<"$out" | head -20)"
fi

# --- migration 5 on a store of version 4 ---------------------------------------------------------
URL=$(pg_new_db "ferry_people_mig5_$$") || { fail "create the test database"; t_done; exit 1; }
export FERRY_CONFIG=$T_DIR/pg.conf
pg_config "$FERRY_CONFIG" local "$URL"
ferry create region r >/dev/null
ferry create bridge r local >/dev/null
ferry create team Ops >/dev/null
ferry create machine Ops local m1 --vault '{"connection":"local"}' >/dev/null
old=$(ferry create queue-item Ops m1 local --vault '{"function":"hello","name":"t"}' --output json 2>/dev/null | jq -r '.data[0].taskId')
pg_sql "$URL" "DROP TABLE audit_log; DROP TABLE tokens; DROP TABLE users;
ALTER TABLE queue_events DROP COLUMN actor;
DELETE FROM schema_migrations WHERE version >= 5;" >/dev/null
eq "the store is at schema version 4" "$(pg_sql "$URL" "SELECT max(version) FROM schema_migrations")" 4
trace=$(ferry queue trace "$old" --output json 2>&1)
eq "migration 5 is applied when the store is opened" \
    "$(pg_sql "$URL" "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations WHERE version <= 5")" "1,2,3,4,5"
eq "the old item's timeline reads as before, without an actor" \
    "$(jq -r '[.data.timeline[] | "\(.action):\(.actor // "-")"] | join(",")' <<<"$trace")" "CREATED:-"
eq "users, tokens and audit_log exist" \
    "$(pg_sql "$URL" "SELECT count(*) FROM pg_tables WHERE tablename IN ('users', 'tokens', 'audit_log')")" 3
ferry create user ann >/dev/null || fail "create user on the migrated store"
token=$(ferry create token ann --team Ops --role viewer --output json | jq -r '.data.token')
eq "a token is made" "${#token}" 68
eq "only its hash is stored" "$(pg_sql "$URL" "SELECT count(*) FROM tokens WHERE token_hash = encode(sha256('$token'::bytea), 'hex')")" 1
ferry queue cancel "$old" >/dev/null
eq "the cancel is audited" "$(ferry audit list --action queue.cancel --output json | jq -r '.data[0] | [.target, .via] | @tsv')" "$old	cli"
eq "and in the timeline with its actor" \
    "$(ferry queue trace "$old" --output json | jq -r '.data.timeline[-1].actor')" "$(id -un) (cli)"

t_done
