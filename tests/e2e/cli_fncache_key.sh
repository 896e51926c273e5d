#!/usr/bin/env bash
# The CLI's descriptor cache names its plugin directory in its key (host/cli/cli_fncache.c,
# written without stdio since session 14): a directory whose name holds '"', '\' and a
# control character still gives one line of JSON, the directory's name as given, and a
# cache that the next create uses (no probe) and that a changed plugin file invalidates.
. "$(dirname "$0")/../lib.sh"

write_config
dir="$T_DIR/plug \"q\" \\ b"$'\t'"x"
mkdir -p "$dir"
chmod 755 "$dir"
cp "$FERRY_ROOT/$BUILD"/plugins/*.so "$dir/"
chmod 644 "$dir"/*.so
# libconfig's string: '\' and '"' escaped, the tab as \t.
conf_dir=$(printf '%s' "$dir" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/\\t/g')
grep -v '^plugins = ' "$T_DIR/ferry.conf" >"$T_DIR/ferry.conf.new"
printf 'plugins = { dir = "%s"; };\n' "$conf_dir" >>"$T_DIR/ferry.conf.new"
mv "$T_DIR/ferry.conf.new" "$T_DIR/ferry.conf"
setup_local_machine Ops box1
CACHE=$T_DIR/.ferry-functions.json
[[ ${FERRY_TEST_DRIVER:-sqlite} == sqlite ]] || CACHE=$(ls "$XDG_CACHE_HOME"/ferry/functions-*.json 2>/dev/null | head -1)
create() { ferry create queue-item Ops box1 local --vault "$1" 2>&1 >/dev/null; }
probes() { LD_DEBUG=files ferry create queue-item Ops box1 local --vault "$1" 2>&1 >/dev/null | grep -c "/core.so"; }

eq "a create with the odd directory knows hello (no warning)" "$(create '{"function":"hello"}')" ""
[[ -n $CACHE ]] || CACHE=$(ls "$XDG_CACHE_HOME"/ferry/functions-*.json 2>/dev/null | head -1)
eq "the key is one line of JSON naming the directory as given" \
    "$(head -1 "$CACHE" | jq -r .dir)" "$dir"
eq "... with every plugin file's identity" \
    "$(head -1 "$CACHE" | jq -c '.files | keys | (index("core.so") != null)')" true
eq "... its numbers as numbers" \
    "$(head -1 "$CACHE" | jq -c '[.version, (.exe.ino | type), (.files["core.so"].size | type)]')" \
    '[2,"number","number"]'
eq "the next create uses the cache (no probe)" "$(probes '{"function":"hello"}')" 0
touch -d '2001-01-01' "$dir/core.so"
eq "a plugin file's new mtime: the next create probes" "$(probes '{"function":"hello"}')" 1
eq "... and the one after it uses the rewritten cache" "$(probes '{"function":"hello"}')" 0

t_done
