#!/usr/bin/env bash
# PostgreSQL for `make bench`: a throwaway server with PostgreSQL's durable defaults (fsync
# and synchronous_commit on, like SQLite's synchronous=full), so the figures compare fairly.
#   tests/bench/pg_env.sh [start]          starts one; prints the URL of its database "ferry"
#   tests/bench/pg_env.sh createdb URL NAME   a fresh database NAME on it; prints its URL
#   tests/bench/pg_env.sh stop URL         stops it and removes its files
# Use the URL as the store: `store = { driver = "postgres"; conninfo = "URL"; };` in a config,
# or as the DB argument of build/tests/bench_queue. Exits 1 with the reason when no server
# can be started (no PostgreSQL 15 binaries, or not root and not allowed to run initdb).
set -euo pipefail
pg=$(cd "$(dirname "$0")/../.." && pwd)/scripts/pg.sh
case "${1:-start}" in
start) exec "$pg" start --durable ;;
createdb) exec "$pg" createdb "${2:?usage: pg_env.sh createdb URL NAME}" "${3:?usage: pg_env.sh createdb URL NAME}" ;;
stop) exec "$pg" stop "${2:?usage: pg_env.sh stop URL}" ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
