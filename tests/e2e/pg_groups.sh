#!/usr/bin/env bash
# tests/e2e/groups.sh on a PostgreSQL store (issue 15, point 3): the same commands and
# fan-outs, and two hosts of one bridge settling each parent once. Needs the server
# tests/run.sh starts.
. "$(dirname "$0")/../lib.sh"
. "$FERRY_ROOT/tests/helpers/pg_test.sh"
pg_require
rm -rf "$T_DIR"
trap - EXIT
FERRY_TEST_DRIVER=postgres exec bash "$FERRY_ROOT/tests/e2e/groups.sh"
