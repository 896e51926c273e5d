#!/usr/bin/env bash
# tests/e2e/host_fallback_crash.sh on a PostgreSQL store (issue 14, point 1): a host killed
# right after the commit that ended an item FAILED leaves its fallback in the store, once,
# and the next host runs it once. Needs the server tests/run.sh starts.
. "$(dirname "$0")/../lib.sh"
. "$FERRY_ROOT/tests/helpers/pg_test.sh"
pg_require
rm -rf "$T_DIR"
trap - EXIT
FERRY_TEST_DRIVER=postgres exec bash "$FERRY_ROOT/tests/e2e/host_fallback_crash.sh"
