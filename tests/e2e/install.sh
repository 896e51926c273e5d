#!/usr/bin/env bash
# make install into a temporary prefix; the SDK example builds against it with pkg-config
# alone; the installed host loads and runs it.
. "$(dirname "$0")/../lib.sh"

prefix=$T_DIR/prefix
if make -s -C "$FERRY_ROOT" install PREFIX="$prefix" BUILD="$BUILD" SAN="${SAN:-0}" >"$T_DIR/install.log" 2>&1; then
    pass "make install PREFIX=… succeeds"
else
    fail "make install PREFIX=… succeeds" "$(tail -20 "$T_DIR/install.log")"
fi
for f in bin/ferry lib/ferry/plugins/core.so include/ferry/plugin.h lib/pkgconfig/ferry-plugin.pc \
    etc/ferry/ferry.conf lib/systemd/system/ferry.service lib/systemd/system/ferry-priv.service \
    lib/systemd/system/ferry-priv.socket etc/ferry/priv.conf; do
    [[ -e $prefix/$f ]] && pass "installed $f" || fail "installed $f"
done
contains "the unit runs the installed binary" "$(cat "$prefix/lib/systemd/system/ferry.service")" "ExecStart=$prefix/bin/ferry --config $prefix/etc/ferry/ferry.conf serve"
contains "the default config points at the installed plugins" "$(cat "$prefix/etc/ferry/ferry.conf")" "$prefix/lib/ferry/plugins"
eq "the installed ferry finds the installed config by itself" \
    "$(cd / && env -u FERRY_CONFIG "$prefix/bin/ferry" config show --output json | jq -r .data.file)" "$prefix/etc/ferry/ferry.conf"

# DESTDIR stages the same tree under another root.
stage=$T_DIR/stage
make -s -C "$FERRY_ROOT" install PREFIX=/usr DESTDIR="$stage" BUILD="$BUILD" SAN="${SAN:-0}" >>"$T_DIR/install.log" 2>&1
[[ -x $stage/usr/bin/ferry && -e $stage/etc/ferry/ferry.conf && -e $stage/usr/include/ferry/plugin.h ]] &&
    pass "DESTDIR is honoured (/usr prefix puts the config in /etc/ferry)" ||
    fail "DESTDIR is honoured" "$(find "$stage" -maxdepth 4 | head -30)"

# The out-of-tree example: nothing but the prefix and pkg-config.
cp -r "$FERRY_ROOT/sdk/examples/greeter" "$T_DIR/greeter"
if PKG_CONFIG_PATH=$prefix/lib/pkgconfig make -s -C "$T_DIR/greeter" CFLAGS="-O2 -Wall -Wextra -Werror" >"$T_DIR/example.log" 2>&1; then
    pass "the SDK example builds with pkg-config against the prefix"
else
    fail "the SDK example builds with pkg-config against the prefix" "$(cat "$T_DIR/example.log")"
fi
cflags=$(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags ferry-plugin)
contains "pkg-config gives the installed include dir" "$cflags" "-I$prefix/include"

# The installed host loads and runs it.
mkdir -p "$T_DIR/plugins"
cp "$prefix"/lib/ferry/plugins/*.so "$T_DIR/greeter/greeter.so" "$T_DIR/plugins/"
chmod 644 "$T_DIR"/plugins/*.so
write_config 'plugin = { greeter = { greeting = "Hi"; }; };'
FERRY_BIN=$prefix/bin/ferry
setup_local_machine Ops box1
start_host
id=$(ferry create queue-item Ops box1 local --vault '{"function":"greet","who":"installer","times":2,"token":"s3cr3t-value"}' --output json | jq -r '.data[0].taskId')
wait_status "$id" COMPLETED 15
eq "the installed host ran the example plugin" "$(task_status "$id")" COMPLETED
out=$(ferry list queue --task-id "$id" --output json)
eq "its result came back" "$(jq -r '.data[0].responseVault.result.greetings | join("|")' <<<"$out")" "Hi, installer!|Hi, installer!"
eq "its SECRET parameter is redacted in the listing" "$(jq -r '.data[0].vaultContent.token' <<<"$out")" "********"
trace=$(ferry queue trace "$id")
not_contains "the secret is in no trace" "$trace" "s3cr3t-value"
stop_host
t_done
