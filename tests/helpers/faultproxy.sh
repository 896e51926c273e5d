#!/usr/bin/env bash
# A fault-injecting TCP proxy for tests (tests/helpers/faultproxy.py), on 127.0.0.1 only.
#
#   faultproxy.sh start DIR TARGET_PORT   starts a proxy to 127.0.0.1:TARGET_PORT in mode
#                                         "pass" and prints the port it listens on
#   faultproxy.sh mode DIR MODE...        pass | drop | stall | http500 N | cut BYTES
#                                         (what each does: faultproxy.py's header)
#   faultproxy.sh stat DIR                prints the most connections open at once since the
#                                         last stat (or start), then starts counting again
#   faultproxy.sh stop DIR                stops the proxy and waits for it
set -euo pipefail

cmd=${1:?usage: faultproxy.sh start|mode|stat|stop DIR ...}
dir=${2:?usage: faultproxy.sh start|mode|stat|stop DIR ...}
here=$(cd "$(dirname "$0")" && pwd)

case $cmd in
start)
    target=${3:?usage: faultproxy.sh start DIR TARGET_PORT}
    mkdir -p "$dir"
    echo pass >"$dir/mode"
    rm -f "$dir/port"
    python3 "$here/faultproxy.py" "$dir" "$target" >"$dir/port" 2>"$dir/proxy.log" </dev/null &
    echo $! >"$dir/proxy.pid"
    for _ in $(seq 100); do
        [[ -s $dir/port ]] && { cat "$dir/port"; exit 0; }
        kill -0 "$(cat "$dir/proxy.pid")" 2>/dev/null || break
        sleep 0.05
    done
    echo "faultproxy.sh: the proxy did not start:" >&2
    cat "$dir/proxy.log" >&2
    exit 1
    ;;
mode)
    shift 2
    echo "$*" >"$dir/mode.tmp" && mv "$dir/mode.tmp" "$dir/mode"
    ;;
stat)
    cat "$dir/stats"
    # The proxy only raises the figure; writing 0 starts a new count (open ones re-raise it).
    echo 0 >"$dir/stats"
    ;;
stop)
    [[ -f $dir/proxy.pid ]] || exit 0
    pid=$(cat "$dir/proxy.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/proxy.pid"
    ;;
*) echo "usage: faultproxy.sh start|mode|stat|stop DIR ..." >&2; exit 2 ;;
esac
