#!/usr/bin/env bash
# graphile-worker for `make bench`, the peer the queue is measured against.
#   tests/bench/graphile.sh install          installs the pinned version with npm into
#                                            build/bench/node (once; kept until make clean)
#   tests/bench/graphile.sh version          prints the pinned version
#   tests/bench/graphile.sh run URL N CONC   drains N queued no-op jobs on the PostgreSQL
#                                            database URL (tests/bench/graphile.js says how);
#                                            prints "enqueue_per_s total_s steady_s rss_kib"
# node and npm come from scripts/deps.sh bench. 0.17 is the newest line that runs on the
# node of Debian 12 (0.18 needs node 22).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VERSION=0.17.3
DIR=$ROOT/build/bench/node
installed() { [[ -f $DIR/node_modules/graphile-worker/package.json ]] &&
    grep -q "\"version\": \"$VERSION\"" "$DIR/node_modules/graphile-worker/package.json"; }
case "${1:-}" in
install)
    installed && exit 0
    command -v npm >/dev/null || { echo "graphile.sh: no npm (scripts/deps.sh bench installs it)" >&2; exit 1; }
    mkdir -p "$DIR"
    [[ -f $DIR/package.json ]] || echo '{ "private": true }' >"$DIR/package.json"
    cd "$DIR" && npm install --no-audit --no-fund --loglevel=error "graphile-worker@$VERSION" ;;
version) echo "$VERSION" ;;
run)
    installed || { echo "graphile.sh: run 'tests/bench/graphile.sh install' first" >&2; exit 1; }
    NODE_PATH=$DIR/node_modules exec node "$ROOT/tests/bench/graphile.js" "${2:?URL}" "${3:?N}" "${4:?CONCURRENCY}" ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
