#!/usr/bin/env bash
# What one short command pays for at start (issue 14, point 7): libcurl and libpq are not
# linked but loaded by the first call that needs them (host/base/lazy_lib.h), and the plugin
# descriptors come from the CLI's cache (host/cli/cli_fncache.c) while no plugin file
# changed, without losing a warning when one did. Prints (does not assert) the time of one
# create queue-item.
. "$(dirname "$0")/../lib.sh"

write_config
install_plugins
ferry create region r1 >/dev/null
ferry create bridge r1 local >/dev/null
ferry create team Ops >/dev/null
ferry create machine Ops local box1 --vault '{"connection":"local"}' >/dev/null
create() { ferry create queue-item Ops box1 local --vault "{\"function\":\"$1\"}" 2>&1 >/dev/null; }

# --- lazy libraries --------------------------------------------------------------------------
needed=$(readelf -d "$FERRY_BIN" | grep NEEDED)
not_contains "the binary does not link libcurl" "$needed" libcurl
not_contains "... nor libpq" "$needed" libpq
create hello >/dev/null # the first one probes the plugins (repo.so links libcurl) and caches
loaded=$(LD_DEBUG=files ferry create queue-item Ops box1 local --vault '{"function":"hello"}' 2>&1 >/dev/null)
not_contains "create queue-item on SQLite (plugins cached) loads no libcurl" "$loaded" "file=libcurl"
not_contains "... and no libpq" "$loaded" "file=libpq"
out=$(LD_DEBUG=files ferry notify test http://127.0.0.1:1/ 2>&1)
contains "notify test loads libcurl on its first call" "$out" "file=libcurl.so.4"
contains "... and reports the request's failure, in libcurl's words" "$out" "ferry: POST http://127.0.0.1:1/ failed: Couldn't connect to server"

# A machine without the library: hidden here by a bind mount of /dev/null over it in a
# private mount namespace (needs root; skipped otherwise). One line naming the package, no
# crash, exit 1.
hide() { # LIBRARY COMMAND...: runs COMMAND with LIBRARY unloadable
    local lib
    lib=$(realpath "/lib/x86_64-linux-gnu/$1" 2>/dev/null) || return 1
    shift
    unshare -m --propagation private bash -c 'mount --bind /dev/null "$1" || exit 99; shift; exec "$@"' \
        hide "$lib" "$@"
}
if hide libpq.so.5 true 2>/dev/null; then
    printf 'store = { driver = "postgres"; conninfo = "host=%s dbname=x"; };\nplugins = { dir = "%s"; };\n' \
        "$T_DIR/nosock" "$T_DIR/plugins" >"$T_DIR/pg.conf"
    out=$(hide libpq.so.5 "$FERRY_BIN" --config "$T_DIR/pg.conf" list teams 2>&1)
    rc=$?
    eq "without libpq, a PostgreSQL store: exit 1" "$rc" 1
    contains "... one line naming the package" "$out" "ferry: the store is PostgreSQL, but cannot load libpq.so.5 (install the Debian package libpq5)"
    eq "... and nothing else" "$(wc -l <<<"$out")" 1
    out=$(hide libpq.so.5 "$FERRY_BIN" --config "$T_DIR/pg.conf" serve 2>&1)
    rc=$?
    eq "... ferry serve too: exit 1" "$rc/$(wc -l <<<"$out")" "1/1"
    contains "... naming the package" "$out" "install the Debian package libpq5"
    out=$(hide libpq.so.5 "$FERRY_BIN" create queue-item Ops box1 local --vault '{"function":"hello"}' 2>&1)
    eq "... an SQLite store does not need it" "$?" 0
    out=$(hide libcurl.so.4 "$FERRY_BIN" notify test http://127.0.0.1:1/ 2>&1)
    rc=$?
    eq "without libcurl, notify test: exit 1" "$rc" 1
    contains "... the request fails naming the package" "$out" "POST http://127.0.0.1:1/ failed: cannot load libcurl.so.4 (install the Debian package libcurl4)"
else
    echo "ok $((T_N += 1)) - # SKIP hiding a library needs unshare -m and mount (root)"
fi

# --- the descriptor cache ----------------------------------------------------------------------
rm -f "$T_DIR/.ferry-functions.json"
probes=$(LD_DEBUG=files ferry create queue-item Ops box1 local --vault '{"function":"hello"}' 2>&1 >/dev/null | grep -c "plugins/core.so")
[[ $probes -gt 0 ]] && pass "without a cache the plugins are probed" || fail "without a cache the plugins are probed"
eq "... and the cache is written beside the store, private" "$(stat -c %a "$T_DIR/.ferry-functions.json" 2>&1)" 600
probes=$(LD_DEBUG=files ferry create queue-item Ops box1 local --vault '{"function":"hello"}' 2>&1 >/dev/null | grep -c "plugins/core.so")
eq "with the cache nothing is probed" "$probes" 0
eq "... and a known function gets no warning" "$(create hello)" ""
contains "an unknown function still gets its warning" "$(create no_such_fn)" "warning: function no_such_fn is not provided by any plugin in $T_DIR/plugins"
out=$(ferry create queue-item Ops box1 local --vault '{"function":"hello","nmae":"x"}' 2>&1 >/dev/null)
contains "... and an unknown key its warning, from the cached parameters" "$out" 'vault key "nmae" is neither a parameter of hello nor a host key (did you mean "name"?)'
out=$(ferry create queue-item Ops box1 local --vault '{"function":"hello","name":5}' 2>&1)
contains "... a parameter of the wrong type is refused" "$out" 'parameter "name" of hello must be a string, got an integer'

# A plugin removed, added back, replaced by something that is not one: each is seen at once.
mv "$T_DIR/plugins/core.so" "$T_DIR/core.so"
contains "a removed plugin's function is unknown at once" "$(create hello)" "function hello is not provided"
cp "$T_DIR/core.so" "$T_DIR/plugins/core.so"
chmod 644 "$T_DIR/plugins/core.so"
eq "... and known again once it is back" "$(create hello)" ""
printf 'not a plugin\n' >"$T_DIR/plugins/core.so"
contains "a plugin file replaced by something else is probed again" "$(create hello)" "function hello is not provided"
cp "$T_DIR/core.so" "$T_DIR/plugins/core.so"
eq "... and the plugin again" "$(create hello)" ""
chmod o+w "$T_DIR/plugins"
contains "a world-writable plugin directory refuses every plugin, cache or not" "$(create hello)" "function hello is not provided"
chmod o-w "$T_DIR/plugins"
eq "... until it is fixed" "$(create hello)" ""
printf '{"version":' >"$T_DIR/.ferry-functions.json"
eq "a damaged cache is ignored" "$(create hello)" ""
contains "... and rewritten" "$(head -c 12 "$T_DIR/.ferry-functions.json")" '{"version":2'
cp "$T_DIR/ferry.conf" "$T_DIR/ferry.conf.orig"
echo 'plugin = { core = { greeting = "hi"; }; };' >>"$T_DIR/ferry.conf"
probes=$(LD_DEBUG=files ferry create queue-item Ops box1 local --vault '{"function":"hello"}' 2>&1 >/dev/null | grep -c "plugins/core.so")
[[ $probes -gt 0 ]] && pass "a changed plugin config section means a new probe" ||
    fail "a changed plugin config section means a new probe"
cp "$T_DIR/ferry.conf.orig" "$T_DIR/ferry.conf"
probes=$(LD_DEBUG=files ferry functions 2>&1 >/dev/null | grep -c "plugins/core.so")
[[ $probes -gt 0 ]] && pass "ferry functions always probes" || fail "ferry functions always probes"

# --- time (printed) --------------------------------------------------------------------------
create hello >/dev/null
start=$(date +%s%N)
for _ in $(seq 50); do ferry create queue-item Ops box1 local --vault '{"function":"hello"}' >/dev/null 2>&1; done
end=$(date +%s%N)
echo "# create queue-item: $(((end - start) / 50000)) us each, mean of 50 (${FERRY_TEST_DRIVER:-sqlite})"

t_done
