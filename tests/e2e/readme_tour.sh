#!/usr/bin/env bash
# A newcomer's first run: start the host the way `make run` does (scripts/run.sh, default
# conf/ferry.conf) in a copy of the tree, then run the README's tour exactly as written.
. "$(dirname "$0")/../lib.sh"
unset FERRY_CONFIG

tree=$T_DIR/tree
mkdir -p "$tree/build" "$tree/scripts"
cp -r "$FERRY_ROOT/conf" "$tree/"
cp "$FERRY_ROOT/scripts/run.sh" "$tree/scripts/"
cp "$FERRY_ROOT/$BUILD/ferry" "$tree/build/ferry"
cp -r "$FERRY_ROOT/$BUILD/plugins" "$tree/build/plugins"

(cd "$tree" && exec scripts/run.sh build) >"$T_DIR/run.log" 2>&1 &
HOST_PID=$!
if wait_for 15 grep -q "serving bridge local" "$T_DIR/run.log"; then
    pass "make run's script starts the host on the default config"
else
    fail "make run's script starts the host on the default config" "$(cat "$T_DIR/run.log")"
fi
contains "with a local machine ready" "$(cat "$T_DIR/run.log")" "ready: team Default, machine localhost (local) on bridge local"

sed -n '/<!-- tour -->/,/<!-- \/tour -->/p' "$FERRY_ROOT/README.md" | sed '1,2d;$d' | sed '$d' >"$T_DIR/tour.sh"
[[ $(wc -l <"$T_DIR/tour.sh") -gt 5 ]] && pass "the README has a tour" || fail "the README has a tour"
out=$(cd "$tree" && bash -e "$T_DIR/tour.sh" 2>&1); rc=$?
eq "the tour runs exactly as written" "$rc" 0
contains "functions lists hello" "$out" "hello"
contains "the hello item completed" "$out" "COMPLETED"
contains "its result is readable with jq" "$out" "hello from $(hostname)"
contains "the trace has a timeline" "$out" "TIMELINE"
contains "the waited item completed" "$out" "Status: COMPLETED"
[[ -f $tree/var/ferry.db ]] && pass "the store is var/ferry.db" || fail "the store is var/ferry.db"
kill -INT "$HOST_PID"
wait_for 15 bash -c "! kill -0 $HOST_PID 2>/dev/null" && pass "Ctrl-C stops the host" || fail "Ctrl-C stops the host"
HOST_PID=
t_done
