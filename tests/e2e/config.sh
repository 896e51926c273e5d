#!/usr/bin/env bash
# Configuration: where it is found, defaults, and errors that name the file and line.
. "$(dirname "$0")/../lib.sh"

unset FERRY_CONFIG
mkdir -p "$T_DIR/a/conf" "$T_DIR/b"
printf 'bridge = "from-conf-dir";\n' >"$T_DIR/a/conf/ferry.conf"
printf 'bridge = "from-env";\n' >"$T_DIR/b/env.conf"
printf 'bridge = "from-flag";\n' >"$T_DIR/b/flag.conf"
bridge() { "$FERRY_BIN" "$@" config show --output json | jq -r .data.bridge; }

if [[ -e /etc/ferry/ferry.conf ]]; then
    fail "no /etc/ferry/ferry.conf on the test machine (it would shadow conf/ferry.conf)"
else
    eq "conf/ferry.conf is the fallback" "$(cd "$T_DIR/a" && bridge)" from-conf-dir
fi
eq "FERRY_CONFIG beats conf/ferry.conf" "$(cd "$T_DIR/a" && FERRY_CONFIG=$T_DIR/b/env.conf bridge)" from-env
eq "--config beats FERRY_CONFIG" "$(cd "$T_DIR/a" && FERRY_CONFIG=$T_DIR/b/env.conf bridge --config "$T_DIR/b/flag.conf")" from-flag
eq "-c works anywhere on the line" "$(cd "$T_DIR/a" && "$FERRY_BIN" config show -c "$T_DIR/b/flag.conf" --output json | jq -r .data.bridge)" from-flag
# No file anywhere: exit 2 naming the places looked at, and no store made up in the current
# directory (issue 13: it created ./var/ferry.db and printed an empty table).
out=$(cd "$T_DIR/b" && "$FERRY_BIN" list queue 2>&1); rc=$?
eq "no config found: exit 2" "$rc" 2
contains "it names /etc/ferry/ferry.conf" "$out" "/etc/ferry/ferry.conf"
contains "it names conf/ferry.conf in the current directory" "$out" "conf/ferry.conf (in $T_DIR/b)"
contains "it says how to give one" "$out" "give --config FILE or set FERRY_CONFIG"
eq "it is one line" "$(wc -l <<<"$out")" 1
[[ ! -e $T_DIR/b/var ]] && pass "no ./var/ferry.db is created" || fail "no ./var/ferry.db is created" "$(find "$T_DIR/b")"
out=$(cd "$T_DIR/b" && "$FERRY_BIN" create team X --output json); rc=$?
eq "with --output json too: exit 2" "$rc" 2
eq "the error is in the JSON envelope" "$(jq -r '.success, (.error | startswith("no configuration found"))' <<<"$out" | tr '\n' ' ')" "false true "
out=$(cd "$T_DIR/b" && timeout 10 "$FERRY_BIN" serve 2>&1); rc=$?
eq "serve without a config: exit 2" "$rc" 2
[[ ! -e $T_DIR/b/var ]] && pass "serve creates no store either" || fail "serve creates no store either"

# The place `make install` writes (PREFIX/etc/ferry/ferry.conf) is found from PREFIX/bin/ferry.
mkdir -p "$T_DIR/prefix/bin" "$T_DIR/prefix/etc/ferry"
cp "$FERRY_BIN" "$T_DIR/prefix/bin/ferry"
printf 'bridge = "from-prefix";\n' >"$T_DIR/prefix/etc/ferry/ferry.conf"
eq "an installed ferry reads PREFIX/etc/ferry/ferry.conf" "$(cd "$T_DIR/b" && "$T_DIR/prefix/bin/ferry" config show --output json | jq -r .data.bridge)" from-prefix
out=$(cd "$T_DIR/b" && "$T_DIR/prefix/bin/ferry" config show --output json)
eq "and says which file it read" "$(jq -r .data.file <<<"$out")" "$T_DIR/prefix/etc/ferry/ferry.conf"
rm "$T_DIR/prefix/etc/ferry/ferry.conf"
out=$(cd "$T_DIR/b" && "$T_DIR/prefix/bin/ferry" list teams 2>&1); rc=$?
eq "an installed ferry without it: exit 2" "$rc" 2
contains "naming PREFIX/etc/ferry/ferry.conf first" "$out" "none of $T_DIR/prefix/etc/ferry/ferry.conf, /etc/ferry/ferry.conf"

# An empty file means every default.
: >"$T_DIR/b/empty.conf"
out=$(cd "$T_DIR/b" && "$FERRY_BIN" -c empty.conf config show --output json)
eq "defaults: bridge" "$(jq -r .data.bridge <<<"$out")" local
eq "default workers" "$(jq -r .data.workers.count <<<"$out")" 4
eq "default vault limit is 1 MiB" "$(jq -r .data.vault.max_bytes <<<"$out")" 1048576

# Relative paths are resolved against the config file's directory.
printf 'store = { path = "db/x.db"; };\nplugins = { dir = "../plugins"; };\n' >"$T_DIR/b/rel.conf"
out=$("$FERRY_BIN" -c "$T_DIR/b/rel.conf" config show --output json)
eq "relative store path is next to the file" "$(jq -r .data.store.path <<<"$out")" "$T_DIR/b/db/x.db"

# Errors: unknown key, wrong type, out of range, syntax; each names file and line, exit 1.
cfg=$T_DIR/bad.conf
printf 'bridge = "x";\nstore = {\n  drvier = "sqlite";\n};\n' >"$cfg"
out=$("$FERRY_BIN" -c "$cfg" config show 2>&1); rc=$?
eq "unknown key exits 1" "$rc" 1
eq "unknown key names file and line" "$out" "ferry: $cfg:3: unknown key 'store.drvier'; see docs/configuration.md for the keys"
printf 'workers = { count = "four"; };\n' >"$cfg"
out=$("$FERRY_BIN" -c "$cfg" config show 2>&1)
eq "wrong type names file, line and type" "$out" "ferry: $cfg:1: workers.count must be an integer"
printf 'workers = {\n count = 0; };\n' >"$cfg"
out=$("$FERRY_BIN" -c "$cfg" config show 2>&1)
contains "out of range names the bounds" "$out" "$cfg:2: workers.count is 0; it must be between 1 and 1024"
printf 'bridge = "x";\nlog_level = ;\n' >"$cfg"
out=$("$FERRY_BIN" -c "$cfg" config show 2>&1)
contains "syntax error names file and line" "$out" "$cfg:2: syntax error"
printf 'store = { driver = "mysql"; };\n' >"$cfg"
out=$("$FERRY_BIN" -c "$cfg" config show 2>&1)
contains "bad enum value says what is allowed" "$out" "store.driver is 'mysql'; use \"sqlite\" or \"postgres\""
# A key that does nothing is refused, not silently accepted (issue 13: http.listen).
printf 'bridge = "x";\nhttp = { listen = "127.0.0.1:8080"; };\n' >"$cfg"
out=$("$FERRY_BIN" -c "$cfg" config show 2>&1); rc=$?
eq "http.listen exits 1" "$rc" 1
eq "http.listen is refused with the reason" "$out" "ferry: $cfg:2: http.listen does nothing: the web listener is web.listen (ferry web); remove it"
not_contains "config reference does not offer it" "$("$FERRY_BIN" config reference)" "| \`http.listen\`"
out=$("$FERRY_BIN" -c "$T_DIR/none.conf" config show 2>&1); rc=$?
eq "missing --config file exits 1" "$rc" 1
contains "missing file is named" "$out" "cannot read config $T_DIR/none.conf"

# Plugin sections reach the plugin's init() as JSON.
write_config 'plugin = { greeter = { greeting = "Ahoy"; }; };'
export FERRY_CONFIG=$T_DIR/ferry.conf
install_plugins
mkdir -p "$T_DIR/sdk" && cp "$FERRY_ROOT/sdk/examples/greeter/greeter.c" "$T_DIR/sdk/"
cc -shared -fPIC -fvisibility=hidden -I"$FERRY_ROOT/sdk/include" -o "$T_DIR/plugins/greeter.so" "$T_DIR/sdk/greeter.c" -ljansson
out=$(ferry run greet --vault '{"who":"sailor"}' 2>/dev/null)
eq "plugin section reaches init" "$(jq -r '.greetings[0]' <<<"$out")" "Ahoy, sailor!"

# Every key in the table is documented.
"$FERRY_BIN" config reference >"$T_DIR/ref.md"
for key in bridge store.driver store.path workers.count timeouts.default retry.jitter smtp.url vault.max_bytes; do
    grep -q "\`$key\`" "$T_DIR/ref.md" || fail "configuration reference lists $key"
done
pass "configuration reference lists every key"
t_done
