#!/usr/bin/env bash
# The SDK's promises (plugin.h) end to end: a parameter named after a host-owned vault key is
# refused at load; fini() runs in every process where init() ran (probes, `ferry run`, a
# host's workers); host->task_id and host->attempt (ABI 1.1) give an item's task id and
# attempt number, across retries and nested calls; a plugin built for ABI 1.0 still loads
# and runs; FERRY_FN_NEEDS_MACHINE is accepted and not listed; a plugin's hook_dir is
# checked at load.
. "$(dirname "$0")/../lib.sh"

write_config
install_plugins
P=$T_DIR/plugins
H=$FERRY_ROOT/sdk/include/ferry/plugin.h

# --- reserved parameter names ----------------------------------------------------------------
reserved=$(sed -n '/^#define FERRY_RESERVED_PARAMS/,/^$/p' "$H" | grep -o '"[a-z_]*"' | tr -d '"' | tr '\n' ' ')
eq "plugin.h reserves the host's keys" "$reserved" \
    "function timeout max_retries retry_delay on_failure on_success pre_hook post_hook priority max_parallel stop_on_failure "
# Every key the host reads from an item vault (vault.c's table) is reserved or passed through.
host_keys=$(sed -n '/host_key_rules\[\] = {/,/^};/p' "$FERRY_ROOT/host/base/vault.c" | grep -o '{"[a-z_]*"' | tr -d '{"' | tr '\n' ' ')
missing=
for key in $host_keys; do
    [[ " $reserved description tags " == *" $key "* ]] || missing+=" $key"
done
(( $(wc -w <<<"$host_keys") >= 10 )) && [[ -z $missing ]] &&
    pass "every host key of vault.c is reserved or passed through ($host_keys)" ||
    fail "every host key of vault.c is reserved or passed through" "not reserved:$missing" "read: $host_keys"
for name in $reserved; do
    build_fixture "$P/r_$name.so" abi.c -DFUNC="r_$name" -DRESERVED="$name"
done
build_fixture "$P/r_ok.so" abi.c -DFUNC=r_ok -DRESERVED=description
chmod 644 "$P"/r_*.so
out=$(ferry plugins --output json)
for name in $reserved; do
    contains "a parameter named $name is refused at load" \
        "$(jq -r --arg f "r_$name.so" '.data[] | select(.file==$f) | .reason' <<<"$out")" \
        "function r_$name: parameter '$name' is a vault key the host owns"
    contains "docs/sdk.md lists $name as reserved" "$(sed -n '/^## Reserved parameter names/,/^## /p' "$FERRY_ROOT/docs/sdk.md")" "\`$name\`"
done
eq "a parameter named description (passed through) loads" \
    "$(jq -r '.data[] | select(.file=="r_ok.so") | .loaded' <<<"$out")" true
rm -f "$P"/r_*.so

# --- fini ------------------------------------------------------------------------------------
M=$T_DIR/marker
build_fixture "$P/fin.so" abi.c -DFUNC=fin -DFINI_MARKER="$M"
chmod 644 "$P/fin.so"
unpaired() { # pids that ran init() but not fini()
    [[ -f $M ]] || return 0
    comm -23 <(awk '$1=="init"{print $2}' "$M" | sort) <(awk '$1=="fini"{print $2}' "$M" | sort)
}
ferry plugins >/dev/null
eq "a probe runs fini() after init()" "$(unpaired)" ""
contains "(the marker saw the probe)" "$(cat "$M" 2>/dev/null)" "init"
before=$(grep -c init "$M")
out=$(ferry run fin --output json)
eq "ferry run succeeds" "$(jq -r .data.status <<<"$out")" OK
(( $(grep -c init "$M") >= before + 2 )) && pass "ferry run initialised the plugin in its worker" ||
    fail "ferry run initialised the plugin in its worker" "$(cat "$M")"
eq "the worker of ferry run calls fini() when it is retired" "$(unpaired)" ""

setup_local_machine Ops box1
start_host
: >"$M"
id=$(ferry create queue-item Ops box1 local --vault '{"function":"fin"}' --output json | jq -r '.data[0].taskId')
wait_status "$id" COMPLETED 15
eq "a host's worker ran fin" "$(task_status "$id")" COMPLETED
stop_host
[[ -s $M ]] && pass "the host's worker initialised the plugin" || fail "the host's worker initialised the plugin"
eq "the host's workers call fini() at shutdown" "$(unpaired)" ""

# --- task id and attempt (ABI 1.1) --------------------------------------------------------------
build_fixture "$P/plain.so" abi.c -DFUNC=plain
build_fixture "$P/flaky.so" abi.c -DFUNC=flaky -DRETRY_FIRST
build_fixture "$P/caller.so" abi.c -DFUNC=caller -DCALLS=flaky
build_fixture "$P/old10.so" abi.c -DFUNC=old10 -DOLD_MINOR
build_fixture "$P/nm.so" abi.c -DFUNC=nm -DNEEDS_MACHINE
chmod 644 "$P"/*.so
start_host
result() { ferry list queue --task-id "$1" --output json | jq -c '.data[0].responseVault.result'; }
item() { ferry create queue-item Ops box1 local --vault "$1" --output json | jq -r '.data[0].taskId'; }
id=$(item '{"function":"plain"}')
wait_status "$id" COMPLETED 15
eq "a function sees its item's task id and attempt 1" "$(result "$id")" "{\"version\":1,\"task\":\"$id\",\"attempt\":1}"
id=$(item '{"function":"flaky","max_retries":1,"retry_delay":0}')
wait_status "$id" COMPLETED 20
eq "a retry sees the same task id and attempt 2" "$(result "$id")" "{\"version\":1,\"task\":\"$id\",\"attempt\":2}"
id=$(item '{"function":"caller","max_retries":1,"retry_delay":0}')
wait_status "$id" COMPLETED 20
eq "a nested call sees its item's task id and attempt" "$(result "$id" | jq -c .callee)" "{\"version\":1,\"task\":\"$id\",\"attempt\":2}"
out=$(ferry run plain --output json)
contains "ferry run gives a run id of its own" "$(jq -r .data.result.task <<<"$out")" "run-"
eq "and attempt 1" "$(jq -r .data.result.attempt <<<"$out")" 1

# --- a plugin built for ABI 1.0 keeps working; NEEDS_MACHINE is accepted ---------------------
minor=$(sed -n 's/^#define FERRY_ABI_MINOR *\([0-9]*\).*/\1/p' "$H")
eq "plugin.h is ABI 1.2" "$minor" 2
contains "ferry --version names the SDK's ABI" "$(ferry --version)" "plugin ABI 1.$minor"
eq "a 1.0 plugin loads on a 1.2 host" "$(ferry plugins --output json | jq -r '.data[] | select(.file=="old10.so") | "\(.loaded) \(.abi)"')" "true 1.0"
id=$(item '{"function":"old10"}')
wait_status "$id" COMPLETED 15
eq "and runs" "$(result "$id")" '{"version":1}'
eq "a function with FERRY_FN_NEEDS_MACHINE loads, the flag not listed" \
    "$(ferry functions nm --output json | jq -c .data.flags)" "[]"
stop_host

# --- hook_dir: a plugin, not the worker, says where hooks run -------------------------------
build_fixture "$P/hd_ok.so" abi.c -DFUNC=hd_ok '-DHOOK_DIR="{datastore}/sites/{site}"'
build_fixture "$P/hd_bad.so" abi.c -DFUNC=hd_bad '-DHOOK_DIR="{datastore/x"'
build_fixture "$P/hd_old.so" abi.c -DFUNC=hd_old -DOLD_MINOR
chmod 644 "$P"/hd_*.so
out=$(ferry plugins --output json)
eq "a plugin with a hook_dir template loads" "$(jq -r '.data[] | select(.file=="hd_ok.so") | .loaded' <<<"$out")" true
contains "a malformed hook_dir is refused with the reason" \
    "$(jq -r '.data[] | select(.file=="hd_bad.so") | .reason' <<<"$out")" "hook_dir placeholder at byte 0 is not {name}"
eq "a 1.0-sized descriptor (no hook_dir member) still loads" "$(jq -r '.data[] | select(.file=="hd_old.so") | .loaded' <<<"$out")" true
contains "docs/sdk.md documents hook_dir" "$(cat "$FERRY_ROOT/docs/sdk.md")" "hook_dir"
rm -f "$P"/hd_*.so
t_done
