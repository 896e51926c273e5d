#!/usr/bin/env bash
# tests/e2e/web_api.sh on a PostgreSQL store: ferry web, its API and /metrics read the same
# through the PostgreSQL driver (tests/run.sh starts the server for pg_* files).
export FERRY_TEST_DRIVER=postgres
exec "$(dirname "$0")/web_api.sh"
