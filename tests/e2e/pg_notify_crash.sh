#!/usr/bin/env bash
# tests/e2e/host_notify_crash.sh on a PostgreSQL store (issue 14, point 1): notifications of
# an end whose host died right after the commit are sent by the next host, once. Needs the
# server tests/run.sh starts.
. "$(dirname "$0")/../lib.sh"
. "$FERRY_ROOT/tests/helpers/pg_test.sh"
pg_require
rm -rf "$T_DIR"
trap - EXIT
FERRY_TEST_DRIVER=postgres exec bash "$FERRY_ROOT/tests/e2e/host_notify_crash.sh"
