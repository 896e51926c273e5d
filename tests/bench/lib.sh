# Sourced by the scripts of tests/bench: rows, the summary table, stores and processes.
# Expects ROOT (the source tree), BUILD and W (a scratch directory of the caller).
FERRY=$ROOT/$BUILD/ferry
BQ=$ROOT/$BUILD/tests/bench_queue
# Every process the bench starts inherits this marker; run.sh finds leftovers by it.
export FERRY_BENCH_MARK=${FERRY_BENCH_MARK:-ferry-bench-$$-$RANDOM}
# The summary table's rows ("metric|ferry|peer|ratio|target|verdict"), printed by run.sh.
export BENCH_SUMMARY=${BENCH_SUMMARY:-$W/summary}

row() { printf '%-58s %14s\n' "$1" "$2"; }
now_ns() { date +%s%N; }
now_ms() { date +%s%3N; }

# rate COUNT NANOSECONDS: count per second, rounded.
rate() { awk -v n="$1" -v ns="$2" 'BEGIN { printf "%.0f", (ns > 0 ? n * 1e9 / ns : 0) }'; }
# ratio A B: A / B with two decimals, or "-" when either is not a number.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }'
}
# verdict VALUE OP LIMIT: PASS when VALUE OP LIMIT holds (OP is >= or <=), MISS otherwise,
# "-" when VALUE is not a number. Targets are information: nothing fails on a MISS.
verdict() {
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        if (v !~ /^[0-9.]+$/) { print "-"; exit }
        ok = (op == ">=") ? v + 0 >= l + 0 : v + 0 <= l + 0
        print ok ? "PASS" : "MISS" }'
}
# summary METRIC FERRY PEER RATIO TARGET VERDICT: one row of the final table.
summary() { local IFS='|'; echo "$*" >>"$BENCH_SUMMARY"; }

# setup NAME [config lines...]: a fresh SQLite store in $W/NAME with team Ops, region r,
# bridge local and machines m0..m99; exports FERRY_CONFIG, DB and D. The misbehave fixture
# (fx_noop, fx_stamp) is built into its plugin folder.
setup() {
    local d=$W/$1
    shift
    mkdir -p "$d/plugins"
    plugins "$d/plugins"
    { echo "store = { path = \"$d/ferry.db\"; };"; echo "plugins = { dir = \"$d/plugins\"; };"
      echo 'log_level = "warn";'; for l in "$@"; do echo "$l"; done; } >"$d/ferry.conf"
    export FERRY_CONFIG=$d/ferry.conf DB=$d/ferry.db D=$d
    populate
}
# plugins DIR: the built plugins and the misbehave fixture, built once per run.
plugins() {
    if [[ ! -f $W/misbehave.so ]]; then
        cc -std=gnu11 -O2 -fPIC -fvisibility=hidden -shared -I"$ROOT/sdk/include" \
            -o "$W/misbehave.so" "$ROOT/tests/fixtures/misbehave.c" -ljansson || return 1
    fi
    cp "$ROOT/$BUILD"/plugins/*.so "$W/misbehave.so" "$1/"
    chmod 755 "$1"
    chmod 644 "$1"/*.so
}
# populate: region r, bridge local, team Ops, machines m0..m99 in the store of FERRY_CONFIG.
populate() {
    "$FERRY" create region r >/dev/null && "$FERRY" create bridge r local >/dev/null &&
        "$FERRY" create team Ops >/dev/null || { echo "bench: setting up the store failed" >&2; return 1; }
    local i
    for i in $(seq 0 99); do
        "$FERRY" create machine Ops local "m$i" --vault '{"connection":"local"}' >/dev/null || return 1
    done
}
# sql QUERY: one value from the SQLite store $DB ("?" when the query fails).
sql() { sqlite3 -readonly "$DB" "$1" 2>/dev/null || echo "?"; }
# status_kib PID FIELD: VmRSS, VmHWM… of a process in KiB ("?" when it is gone).
status_kib() { awk -v f="$2:" '$1 == f { print $2; found = 1 } END { if (!found) print "?" }' "/proc/$1/status" 2>/dev/null || echo "?"; }
# children_rss PID: the summed VmRSS (KiB) of PID's child processes (the host's workers).
children_rss() {
    local sum=0 c v
    for c in $(cat "/proc/$1/task/"*/children 2>/dev/null); do
        v=$(status_kib "$c" VmRSS)
        [[ $v =~ ^[0-9]+$ ]] && sum=$((sum + v))
    done
    echo "$sum"
}
# alive PID: the process exists and is not a zombie.
alive() { [[ -e /proc/$1 ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
# stop_pid PID: SIGTERM, then SIGKILL after 10 s; reaps it when it is our child.
stop_pid() {
    local p=$1 i
    [[ -n $p ]] || return 0
    kill -TERM "$p" 2>/dev/null || return 0
    for i in $(seq 100); do alive "$p" || break; sleep 0.1; done
    alive "$p" && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    return 0
}
