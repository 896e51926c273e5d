#!/usr/bin/env bash
# `make run`: the host in the foreground on the default configuration (conf/ferry.conf:
# SQLite under var/, plugins from build/plugins), with a local machine ready for it.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
ferry=$build/ferry
"$ferry" init
cat <<'TIP'

ferry is starting. In another terminal, from this directory:
  build/ferry create queue-item Default localhost local --vault '{"function":"hello"}'
  build/ferry list queue
Stop the host with Ctrl-C (running attempts get timeouts.grace seconds to finish).

TIP
exec "$ferry" serve
