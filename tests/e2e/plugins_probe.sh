#!/usr/bin/env bash
# The registry's probes run side by side: slow, hanging and crashing plugins cost one probe
# deadline together, not one each; every plugin is still judged on its own, the listing and
# the host log come out in file order, and no probe sees another's pipes or the store.
. "$(dirname "$0")/../lib.sh"

write_config ''
export FIXTURE_COUNT_FDS=1 # tests/fixtures/abi.c, -DINIT_FDS
install_plugins
P=$T_DIR/plugins
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
left_with() { # left_with CONFIG: how many ferry processes run with FERRY_CONFIG=CONFIG
    local pid n=0
    for pid in $(pgrep -f -- "$FERRY_BIN"); do
        tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "FERRY_CONFIG=$1" && n=$((n + 1))
    done
    echo "$n"
}

# --- slow plugins: the probes overlap ------------------------------------------------------
for i in 1 2 3 4; do
    build_fixture "$P/2${i}_slow.so" abi.c -DFUNC=fn_slow$i -DINIT_SLEEP_MS=2000
done
# Ends later than the fast refusal after it, and still comes first in the log.
build_fixture "$P/30_slow_segv.so" abi.c -DFUNC=fn_slow_segv -DINIT_SLEEP_MS=1000 -DINIT_SEGV
build_fixture "$P/31_fail.so" abi.c -DFUNC=fn_fail -DINIT_FAIL
build_fixture "$P/40_fds.so" abi.c -DFUNC=fn_fds -DINIT_FDS
chmod 644 "$P"/*.so

start=$(date +%s%N)
out=$(ferry plugins --output json)
took=$(ms_since "$start")
if ((took < 5000)); then
    pass "four plugins sleeping 2 s in init() are probed together (${took} ms, not 8 s)"
else
    fail "four plugins sleeping 2 s in init() are probed together" "took ${took} ms"
fi
reason() { jq -r --arg f "$1" '.data[] | select(.file==$f) | .reason' <<<"$out"; }
loaded() { jq -r --arg f "$1" '.data[] | select(.file==$f) | .loaded' <<<"$out"; }
eq "the slow plugins all load" "$(for i in 1 2 3 4; do loaded 2${i}_slow.so; done | sort -u)" true
contains "a plugin crashing while others probe is refused with its signal" \
    "$(reason 30_slow_segv.so)" "crashed in init(): signal 11"
contains "a failing init beside them is refused with its reason" "$(reason 31_fail.so)" \
    "init failed: fixture refuses to start: no license key"
eq "a probe inherits no descriptor but its report pipe" "$(loaded 40_fds.so)" true
eq "the bundled plugins load beside them" "$(loaded core.so)$(loaded ops.so)$(loaded repo.so)" truetruetrue
eq "the listing is in file order" "$(jq -r '[.data[].file] | join(" ")' <<<"$out")" \
    "21_slow.so 22_slow.so 23_slow.so 24_slow.so 30_slow_segv.so 31_fail.so 40_fds.so core.so ops.so repo.so"

# The host: the same judgements, refusals logged in file order, the plugins usable. Its
# probes start before the store opens; the fds fixture proves they never see it.
setup_local_machine Ops box1
start_host
log=$(cat "$T_DIR/host.log")
eq "host refusals are logged in file order, whichever probe ended first" \
    "$(grep -o '[0-9a-z_]*\.so refused: [a-z]*' <<<"$log" | tr '\n' ' ')" \
    "30_slow_segv.so refused: crashed 31_fail.so refused: init "
not_contains "the host's probes inherit nothing of the host" "$log" "inherited descriptors"
id=$(ferry create queue-item Ops box1 local --vault '{"function":"fn_fds"}' --output json | jq -r '.data[0].taskId')
wait_status "$id" COMPLETED 10
eq "a plugin probed at start-up runs" "$(task_status "$id")" COMPLETED

# A drop-in is probed while the host has its store open: the probe still sees none of it.
build_fixture "$T_DIR/fds2.so" abi.c -DFUNC=fn_fds2 -DINIT_FDS
chmod 644 "$T_DIR/fds2.so" && mv "$T_DIR/fds2.so" "$P/41_fds2.so"
wait_for 10 grep -q "plugins rescanned" "$T_DIR/host.log"
not_contains "a drop-in's probe inherits nothing of the serving host" "$(cat "$T_DIR/host.log")" \
    "inherited descriptors"
id=$(ferry create queue-item Ops box1 local --vault '{"function":"fn_fds2"}' --output json | jq -r '.data[0].taskId')
wait_status "$id" COMPLETED 10
eq "the drop-in runs" "$(task_status "$id")" COMPLETED
stop_host
rm -f "$P"/2?_slow.so "$P"/3?_*.so "$P"/4?_*.so

# --- many plugins: a bounded number of probes at once --------------------------------------
# 24 probes at once would need 48 pipe descriptors; under a limit of 48 they must queue.
build_fixture "$T_DIR/many.so" abi.c -DFUNC=fn_many -DINIT_SLEEP_MS=200
for i in $(seq 10 33); do install -m 644 "$T_DIR/many.so" "$P/6${i}_many.so"; done
out=$(ulimit -n 48 && ferry plugins --output json)
eq "24 plugins under a 48-descriptor limit are all probed" \
    "$(jq '[.data[] | select(.file | endswith("_many.so")) | select(.name == "abi_fn_many")] | length' <<<"$out")" 24
eq "none is refused for want of a pipe" \
    "$(jq '[.data[] | select(.reason // "" | contains("cannot probe"))] | length' <<<"$out")" 0
rm -f "$P"/6*_many.so

# --- hanging plugins: one deadline for all of them -----------------------------------------
build_fixture "$P/50_hang.so" abi.c -DFUNC=fn_hang1 -DINIT_SLEEP_MS=600000
build_fixture "$P/51_hang.so" abi.c -DFUNC=fn_hang2 -DINIT_SLEEP_MS=600000
build_fixture "$P/52_slow.so" abi.c -DFUNC=fn_slow -DINIT_SLEEP_MS=1000
build_fixture "$P/53_segv.so" abi.c -DFUNC=fn_segv -DINIT_SEGV
chmod 644 "$P"/*.so
start=$(date +%s%N)
out=$(ferry plugins --output json)
took=$(ms_since "$start")
if ((took >= 10000 && took < 15000)); then
    pass "two plugins hanging in init() cost one 10 s deadline together (${took} ms)"
else
    fail "two plugins hanging in init() cost one 10 s deadline together" "took ${took} ms"
fi
eq "both hanging plugins are refused at the deadline" \
    "$(reason 50_hang.so) | $(reason 51_hang.so)" \
    "did not finish in init() within 10 s | did not finish in init() within 10 s"
eq "a slow plugin probed beside them loads" "$(loaded 52_slow.so)" true
contains "a crashing one beside them is refused with its signal" "$(reason 53_segv.so)" \
    "crashed in init(): signal 11"
eq "the bundled plugins load beside them" "$(loaded core.so)$(loaded ops.so)$(loaded repo.so)" truetruetrue
sleep 0.2
eq "the hanging probes were killed" "$(left_with "$FERRY_CONFIG")" 0

# A host whose store cannot be opened stops at once: the probes it started are not waited for.
sed "s#path = \"$T_DIR/ferry.db\"#path = \"/dev/null/ferry.db\"#" "$FERRY_CONFIG" >"$T_DIR/nostore.conf"
start=$(date +%s%N)
FERRY_CONFIG=$T_DIR/nostore.conf "$FERRY_BIN" serve >"$T_DIR/nostore.log" 2>&1
rc=$?
took=$(ms_since "$start")
if ((rc != 0 && took < 5000)); then
    pass "a host without its store exits at once beside hanging probes (${took} ms)"
else
    fail "a host without its store exits at once beside hanging probes" "rc $rc, ${took} ms: $(cat "$T_DIR/nostore.log")"
fi
not_contains "and logs no plugin it did not finish judging" "$(cat "$T_DIR/nostore.log")" "refused"
sleep 0.2
eq "its probes were killed" "$(left_with "$T_DIR/nostore.conf")" 0

t_done
