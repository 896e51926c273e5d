# Shared helpers for end-to-end tests: TAP output, a private ferry setup per test file,
# fixture plugins compiled on the spot, and a host started and stopped with real signals.
# Source it from a test script: . "$(dirname "$0")/../lib.sh"
set -uo pipefail

FERRY_ROOT=${FERRY_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
BUILD=${BUILD:-build}
FERRY_BIN=$FERRY_ROOT/$BUILD/ferry
# Under SAN=1, let crashes be crashes: the isolation tests expect a segfaulting plugin to be
# killed by SIGSEGV, not turned into ASan's report and exit status 1.
export ASAN_OPTIONS=${ASAN_OPTIONS:-handle_segv=0:handle_abort=0:handle_sigbus=0:handle_sigfpe=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
T_N=0
T_FAILED=0
T_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ferry-test.XXXXXX")
HOST_PID=
export FERRY_CONFIG=$T_DIR/ferry.conf
# The CLI's descriptor cache with a PostgreSQL store (docs/cli.md) stays in the test's dir.
export XDG_CACHE_HOME=$T_DIR/cache
unset FERRY_TEST_KEEP_HOST
# No "no host is serving bridge" warning on stderr (tests/e2e/status.sh unsets it).
export FERRY_NO_HOST_WARNING=1

t_cleanup() {
    [[ -n $HOST_PID ]] && kill -9 "$HOST_PID" 2>/dev/null
    [[ -n ${T_EXTRA_PIDS:-} ]] && kill -9 $T_EXTRA_PIDS 2>/dev/null
    wait 2>/dev/null
    if [[ $T_FAILED -eq 0 ]]; then rm -rf "$T_DIR"; else echo "# kept $T_DIR for inspection"; fi
}
trap t_cleanup EXIT

ferry() { "$FERRY_BIN" "$@"; }

# pass NAME / fail NAME [DETAILS...]
pass() { T_N=$((T_N + 1)); echo "ok $T_N - $1"; }
fail() {
    T_N=$((T_N + 1)); T_FAILED=$((T_FAILED + 1))
    echo "not ok $T_N - $1"
    shift
    local line
    for line in "$@"; do printf '%s\n' "$line" | sed 's/^/#   /'; done
}
# check NAME COMMAND...: passes when the command succeeds
check() {
    local name=$1; shift
    local out
    if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "command: $*" "$out"; fi
}
# eq NAME ACTUAL EXPECTED
eq() {
    if [[ "$2" == "$3" ]]; then pass "$1"; else fail "$1" "expected: $3" "actual:   $2"; fi
}
# contains NAME HAYSTACK NEEDLE
contains() {
    if [[ "$2" == *"$3"* ]]; then pass "$1"; else fail "$1" "expected to contain: $3" "actual: $2"; fi
}
not_contains() {
    if [[ "$2" != *"$3"* ]]; then pass "$1"; else fail "$1" "expected not to contain: $3" "actual: $2"; fi
}
# wait_for SECONDS COMMAND...: polls until the command succeeds; 1 on timeout
wait_for() {
    local limit=$1; shift
    local end=$((SECONDS + limit))
    while ((SECONDS <= end)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# Writes $T_DIR/ferry.conf: a private store and plugin directory. Extra lines are appended
# inside the file (libconfig settings), e.g. write_config 'workers = { count = 2; };'
#
# With FERRY_TEST_DRIVER=postgres the store is a fresh PostgreSQL database on the server
# FERRY_TEST_PG_ADMIN_URL names (tests/run.sh starts one), so a test written for SQLite runs
# unchanged against PostgreSQL: the database is named after the SQLite path it replaces
# ("$T_DIR/ferry.db"), so a test that derives another store by editing that path in the
# config gets another database (a wrapper around ferry creates it on first use), and a
# `sqlite3 FILE QUERY` stand-in on the PATH runs a test's SQL surgery on the database of
# FILE instead.
write_config() {
    mkdir -p "$T_DIR/plugins"
    chmod 755 "$T_DIR" "$T_DIR/plugins"
    local store="store = { path = \"$T_DIR/ferry.db\"; };"
    if [[ ${FERRY_TEST_DRIVER:-sqlite} == postgres ]]; then
        if [[ -z ${FERRY_TEST_PG_ADMIN_URL:-} ]]; then
            fail "FERRY_TEST_DRIVER=postgres needs a server" \
                "${FERRY_TEST_PG_ERROR:-FERRY_TEST_PG_ADMIN_URL is not set; run through tests/run.sh (make check), which starts one}"
            exit 1
        fi
        local pg=$T_DIR/pg
        if [[ ! -x $pg/ferry ]]; then
            mkdir -p "$pg"
            # host=… port=… user=… of the server, for key=value conninfo strings.
            python3 - "$FERRY_TEST_PG_ADMIN_URL" >"$pg/server" <<'PY' || { fail "parse FERRY_TEST_PG_ADMIN_URL"; exit 1; }
import sys, urllib.parse as up
u = up.urlparse(sys.argv[1]); q = dict(up.parse_qsl(u.query))
kv = {"host": q.get("host") or up.unquote(u.hostname or ""), "port": q.get("port") or (str(u.port) if u.port else ""),
      "user": q.get("user") or up.unquote(u.username or ""), "password": q.get("password") or up.unquote(u.password or "")}
print(" ".join(f"{k}={v}" for k, v in kv.items() if v))
PY
            cat >"$pg/ferry" <<EOF
#!/usr/bin/env bash
# Test stand-in for ferry: creates the database its config names, once, then runs ferry.
cfg=\${FERRY_CONFIG:-}
for ((i = 1; i < \$#; i++)); do [[ \${!i} == --config ]] && { j=\$((i + 1)); cfg=\${!j}; }; done
db=\$(sed -n 's/.*conninfo = ".*dbname=\([^ "]*\).*/\1/p' "\$cfg" 2>/dev/null | head -1)
if [[ -n \$db ]] && ! grep -qxF "\$db" "$pg/created" 2>/dev/null; then
    psql -X -q "$FERRY_TEST_PG_ADMIN_URL" -c "CREATE DATABASE \"\$db\"" >/dev/null 2>&1
    echo "\$db" >>"$pg/created"
fi
exec "$FERRY_BIN" "\$@"
EOF
            cat >"$pg/sqlite3" <<EOF
#!/usr/bin/env bash
# Test stand-in for sqlite3 [-cmd X] FILE QUERY: runs QUERY on the database named FILE.
while [[ \$1 == -* ]]; do shift 2; done
# Booleans print as SQLite's 1 and 0.
psql -X -q -At -F'|' -v ON_ERROR_STOP=1 "\$(cat "$pg/server") dbname=\$1" -c "\$2" |
    sed -E ':a; s/(^|[|])t([|]|\$)/\11\2/; s/(^|[|])f([|]|\$)/\10\2/; ta'
exit \${PIPESTATUS[0]}
EOF
            chmod 755 "$pg/ferry" "$pg/sqlite3"
            FERRY_BIN=$pg/ferry
            PATH=$pg:$PATH
        fi
        store="store = { driver = \"postgres\"; conninfo = \"$(cat "$pg/server") dbname=$T_DIR/ferry.db\"; };"
    fi
    {
        echo "bridge = \"${T_BRIDGE:-local}\";"
        echo "log_level = \"${T_LOG_LEVEL:-info}\";"
        echo "$store"
        echo "plugins = { dir = \"$T_DIR/plugins\"; };"
        for line in "$@"; do echo "$line"; done
    } >"$T_DIR/ferry.conf"
}

# start_receivers DIR: starts the loopback SMTP and HTTP receivers (tests/helpers/receivers.py)
# writing into DIR, and sets smtp_port and http_port; a receiver that does not start ends the test.
start_receivers() {
    mkdir -p "$1"
    python3 "$FERRY_ROOT/tests/helpers/receivers.py" "$1" &
    T_EXTRA_PIDS="${T_EXTRA_PIDS:-} $!"
    wait_for 10 test -s "$1/ports" || { fail "receivers started"; t_done; exit 1; }
    read -r smtp_port http_port <"$1/ports"
}

# Copies the built plugins into the test's plugin directory.
install_plugins() {
    cp "$FERRY_ROOT/$BUILD"/plugins/*.so "$T_DIR/plugins/"
    chmod 644 "$T_DIR"/plugins/*.so
}

# build_fixture OUT.so SOURCE [CFLAGS...]: compiles a fixture plugin from tests/fixtures.
build_fixture() {
    local out=$1 src=$2; shift 2
    local san=()
    [[ ${SAN:-0} == 1 ]] && san=(-fsanitize=address,undefined)
    ${CC:-cc} -std=gnu11 -O1 -g -fPIC -fvisibility=hidden -shared -Wall -Wextra -Werror \
        "${san[@]}" -I"$FERRY_ROOT/sdk/include" "$@" -o "$out" \
        "$FERRY_ROOT/tests/fixtures/$src" -ljansson || { fail "fixture $src builds"; return 1; }
}

# Starts `ferry serve` in the background (log in $T_DIR/host.log) and waits until it serves.
start_host() {
    local log=${1:-$T_DIR/host.log}
    "$FERRY_BIN" serve >>"$log" 2>&1 &
    HOST_PID=$!
    wait_for 10 grep -q "serving bridge" "$log" || { echo "# host did not start:"; sed 's/^/# /' "$log"; return 1; }
}

# Stops the host with SIGTERM and waits for it (up to 30 s).
stop_host() {
    [[ -z $HOST_PID ]] && return 0
    kill -TERM "$HOST_PID" 2>/dev/null
    local end=$((SECONDS + 30))
    while kill -0 "$HOST_PID" 2>/dev/null && ((SECONDS < end)); do sleep 0.1; done
    kill -9 "$HOST_PID" 2>/dev/null
    wait "$HOST_PID" 2>/dev/null
    HOST_PID=
}

# Creates the resources a local queue needs: region, bridge, team, machine (local).
setup_local_machine() {
    local team=${1:-Ops} machine=${2:-box1} bridge=${T_BRIDGE:-local}
    ferry create region local-region >/dev/null 2>&1
    ferry create bridge local-region "$bridge" >/dev/null 2>&1
    ferry create team "$team" >/dev/null 2>&1
    ferry create machine "$team" "$bridge" "$machine" --vault '{"connection":"local"}' >/dev/null
}

# Prints the status of a task.
# tree_compare A B: compares two trees entry by entry (tests/helpers/tree_compare.py); prints the
# differences and "N entries compared, M differ", returns 1 when some differ.
# Skips the whole file (one SKIP line, exit 0) unless the store is SQLite: why says what is
# SQLite's alone.
only_sqlite() {
    [[ ${FERRY_TEST_DRIVER:-sqlite} == sqlite ]] && return 0
    echo "ok 1 - # SKIP $1"
    exit 0
}
# Skips the whole file unless strace can trace here (scripts/deps.sh installs it; a container
# may forbid ptrace).
need_strace() {
    command -v strace >/dev/null && strace -f -o /dev/null true 2>/dev/null && return 0
    echo "ok 1 - # SKIP strace cannot trace here"
    exit 0
}
# build_bench_queue: makes $BUILD/tests/bench_queue (the benchmarks' store driver); the
# file ends, failed, when it does not build.
build_bench_queue() {
    make -s -C "$FERRY_ROOT" BUILD="$BUILD" "$BUILD/tests/bench_queue" >"$T_DIR/make.log" 2>&1 && return 0
    fail "the bench driver builds" "$(tail -5 "$T_DIR/make.log")"
    t_done
    exit 1
}
# trace_idle_items CALLS FILE: traces the host's system calls CALLS (strace -e trace=CALLS) to
# FILE while five items run one at a time on box1, each queued once the host is idle again.
trace_idle_items() {
    local tracer i id
    strace -f -p "$HOST_PID" -e trace="$1" -e signal=none -s 40 -o "$2" 2>/dev/null &
    tracer=$!
    wait_for 10 test -s "$2" || sleep 1 # attached: strace writes nothing before a call
    for i in 1 2 3 4 5; do
        id=$(ferry create queue-item Ops box1 local --vault '{"function":"hello"}' --output json |
            jq -r '.data[0].taskId')
        wait_status "$id" COMPLETED 20 || fail "item $i completes" "$(task_status "$id")"
        sleep 0.3 # idle again before the next
    done
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null
}
tree_compare() { python3 "$FERRY_ROOT/tests/helpers/tree_compare.py" "$1" "$2"; }
# build_repo_craft: compiles tests/helpers/repo_craft.c (hostile snapshots) to $T_DIR/repo_craft.
build_repo_craft() {
    local san=()
    [[ ${SAN:-0} == 1 ]] && san=(-fsanitize=address,undefined)
    # shellcheck disable=SC2046
    ${CC:-cc} -std=gnu11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror "${san[@]}" -o "$T_DIR/repo_craft" \
        "$FERRY_ROOT/tests/helpers/repo_craft.c" \
        $(pkg-config --cflags --libs jansson libzstd libcrypto libcurl expat) -lpthread ||
        fail "tests/helpers/repo_craft.c builds"
}
task_status() { ferry list queue --task-id "$1" --output json | jq -r '.data[0].status'; }

# lines_at_least FILE N: the file exists and has N lines or more (for wait_for)
lines_at_least() { [[ -f $1 && $(wc -l <"$1") -ge $2 ]]; }

# wait_status TASK STATUS [SECONDS]: polls the task's status until it is STATUS
status_is() { [[ $(task_status "$1") == "$2" ]]; }
wait_status() { wait_for "${3:-20}" status_is "$1" "$2"; }

t_done() {
    echo "# $T_N tests, $T_FAILED failed"
    [[ $T_FAILED -eq 0 ]]
}
