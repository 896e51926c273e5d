#!/usr/bin/env bash
# The plugin registry: loading, every kind of refusal, functions listing, docs, ferry run.
. "$(dirname "$0")/../lib.sh"

write_config 'plugin = { greeter = { greeting = "Howdy"; }; };'
install_plugins
P=$T_DIR/plugins

# --- good plugins ---------------------------------------------------------------------------
out=$(ferry functions --output json)
eq "functions lists hello" "$(jq -r '.data[] | select(.name=="hello") | .plugin' <<<"$out")" core
eq "functions lists log_message" "$(jq -r '[.data[].name] | index("log_message") != null' <<<"$out")" true
eq "log_message's message is required" \
    "$(jq -r '.data[] | select(.name=="log_message") | .params[] | select(.name=="message") | .required' <<<"$out")" true
text=$(ferry functions log_message)
contains "functions NAME shows the parameter table" "$text" "message"
contains "functions NAME shows the default" "$text" 'default "info"'

out=$(ferry run hello --output json)
contains "run hello says hello from the hostname" "$(jq -r .data.result.message <<<"$out")" "hello from $(hostname)"
out=$(ferry run log_message --vault '{"message":"hi there"}' 2>&1)
contains "run log_message logs into the trace" "$out" "[info] hi there"
out=$(ferry run log_message 2>&1); rc=$?
eq "run without a required parameter exits 1" "$rc" 1
contains "and names the parameter" "$out" '"message"'

# --- refusals: each fixture is refused with a clear reason and the rest keep working ---------
build_fixture "$P/01_notelf.so" abi.c && echo "not a library" >"$P/01_notelf.so"
build_fixture "$P/02_noentry.so" abi.c -DNO_ENTRY
build_fixture "$P/03_major.so" abi.c -DMAJOR_2 -DFUNC=fn_major
build_fixture "$P/04_minor.so" abi.c -DMINOR_NEWER -DFUNC=fn_minor
build_fixture "$P/zz_duplicate.so" abi.c -DDUPLICATE -DFUNC=dup
build_fixture "$P/06_initfail.so" abi.c -DINIT_FAIL -DFUNC=fn_initfail
build_fixture "$P/07_initsegv.so" abi.c -DINIT_SEGV -DFUNC=fn_initsegv
build_fixture "$P/08_flags.so" abi.c -DBAD_FLAGS -DFUNC=fn_flags
build_fixture "$P/09_writable.so" abi.c -DFUNC=fn_writable && chmod o+w "$P/09_writable.so"
build_fixture "$P/10_good.so" abi.c -DFUNC=fn_good
chmod 644 "$P"/0[1-8]*.so "$P"/zz_*.so "$P/10_good.so"

out=$(ferry plugins --output json)
reason() { jq -r --arg f "$1" '.data[] | select(.file==$f) | .reason' <<<"$out"; }
loaded() { jq -r --arg f "$1" '.data[] | select(.file==$f) | .loaded' <<<"$out"; }
contains "not-ELF file refused" "$(reason 01_notelf.so)" "not a shared object"
contains "missing entry symbol refused" "$(reason 02_noentry.so)" "no ferry_plugin_entry symbol"
contains "major ABI mismatch refused" "$(reason 03_major.so)" "built for ABI 2.2"
contains "newer minor refused" "$(reason 04_minor.so)" "newer than this host's 1.2"
contains "duplicate function refused, naming the owner" "$(reason zz_duplicate.so)" "function 'hello' is already provided by plugin core"
contains "failing init refused with its reason" "$(reason 06_initfail.so)" "init failed: fixture refuses to start: no license key"
contains "segfaulting init refused, the CLI survives" "$(reason 07_initsegv.so)" "crashed in init(): signal 11"
contains "unknown flag bits refused" "$(reason 08_flags.so)" "unknown flag bits"
contains "world-writable file refused with the fix" "$(reason 09_writable.so)" "is world-writable; chmod o-w"
eq "a good fixture beside them loads" "$(loaded 10_good.so)" true
eq "core still loads" "$(loaded core.so)" true
text=$(ferry plugins)
contains "text listing marks refusals" "$text" "REFUSED"

# The host survives the same directory: it logs one line per refusal and serves the rest.
ferry create region r1 >/dev/null && ferry create bridge r1 local >/dev/null &&
    ferry create team Ops >/dev/null &&
    ferry create machine Ops local box1 --vault '{"connection":"local"}' >/dev/null
start_host
log=$(cat "$T_DIR/host.log")
eq "host logs one line per refused plugin" "$(grep -c 'refused:' <<<"$log")" 9
contains "host log names the segfaulting init" "$log" "07_initsegv.so refused: crashed in init(): signal 11"
id=$(ferry create queue-item Ops box1 local --vault '{"function":"fn_good"}' --output json | jq -r '.data[0].taskId')
wait_status "$id" COMPLETED 10
eq "the host ran the good plugin next to the broken ones" "$(task_status "$id")" COMPLETED
kill -0 "$HOST_PID" 2>/dev/null && pass "host still running" || fail "host still running"
stop_host

# --- world-writable directory ---------------------------------------------------------------
chmod o+w "$P"
out=$(ferry plugins --output json)
contains "world-writable directory refuses every plugin" "$(jq -r '.data[] | select(.file=="core.so") | .reason' <<<"$out")" "plugin directory $P is world-writable; chmod o-w $P"
chmod o-w "$P"

# --- docs are generated from the descriptors and must not be stale -------------------------
tmp=$T_DIR/functions.md
printf 'plugins = { dir = "%s"; };\n' "$FERRY_ROOT/$BUILD/plugins" >"$T_DIR/docs.conf"
FERRY_CONFIG=$T_DIR/docs.conf "$FERRY_BIN" functions --markdown >"$tmp" 2>/dev/null
if diff -u "$FERRY_ROOT/docs/functions.md" "$tmp" >"$T_DIR/diff" 2>&1; then
    pass "docs/functions.md matches the plugins (make docs)"
else
    fail "docs/functions.md matches the plugins (make docs)" "$(head -20 "$T_DIR/diff")"
fi
"$FERRY_BIN" config reference >"$T_DIR/configuration.md"
if diff -q "$FERRY_ROOT/docs/configuration.md" "$T_DIR/configuration.md" >/dev/null; then
    pass "docs/configuration.md matches the config table (make docs)"
else
    fail "docs/configuration.md matches the config table (make docs)"
fi

t_done
