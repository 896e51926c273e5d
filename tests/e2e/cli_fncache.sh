#!/usr/bin/env bash
# The CLI's descriptor cache, version 2 (host/cli/cli_fncache.c; issue 14, point 7): the key
# on line 1, an index of the functions on line 2, one descriptor a line after it, so that a
# create queue-item parses the one descriptor it checks instead of all of them. A damaged
# part (the index, a descriptor, an offset) means a probe and a rewritten cache, never a
# wrong check; a SECRET parameter is still masked from the cache.
. "$(dirname "$0")/../lib.sh"

write_config
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c
chmod 644 "$T_DIR/plugins/misbehave.so"
setup_local_machine Ops box1
CACHE=$T_DIR/.ferry-functions.json
[[ ${FERRY_TEST_DRIVER:-sqlite} == sqlite ]] || CACHE=$(ls "$XDG_CACHE_HOME"/ferry/functions-*.json 2>/dev/null | head -1)
create() { ferry create queue-item Ops box1 local --vault "$1" 2>&1 >/dev/null; }
probes() { LD_DEBUG=files ferry create queue-item Ops box1 local --vault "$1" 2>&1 >/dev/null | grep -c "plugins/core.so"; }

create '{"function":"hello"}' >/dev/null # probes, writes the cache
[[ -n $CACHE ]] || CACHE=$(ls "$XDG_CACHE_HOME"/ferry/functions-*.json 2>/dev/null | head -1)
contains "line 1 is the key, version 2" "$(head -1 "$CACHE" | head -c 12)" '{"version":2'
eq "line 2 is the index: hello and fx_result have [offset, length]" \
    "$(sed -n 2p "$CACHE" | jq -c '[(.hello | length), (.fx_result | length)]')" "[2,2]"
off=$(sed -n 2p "$CACHE" | jq '.fx_result[0]')
len=$(sed -n 2p "$CACHE" | jq '.fx_result[1]')
eq "... the entry names its descriptor in the rest of the file" \
    "$(tail -n +3 "$CACHE" | head -c $((off + len)) | tail -c "$len" | jq -r .name)" fx_result
eq "... one descriptor a line" "$(($(wc -l <"$CACHE") - 2))" "$(sed -n 2p "$CACHE" | jq length)"

eq "with the cache a create probes nothing" "$(probes '{"function":"hello"}')" 0

# Only the descriptor asked for is parsed: a damaged fx_result does not touch a create of hello.
python3 - "$CACHE" fx_result <<'EOF'
import json, sys
path, name = sys.argv[1], sys.argv[2]
lines = open(path).read().split('\n')
base = len(lines[0]) + len(lines[1]) + 2
off, n = json.loads(lines[1])[name]
text = open(path).read()
open(path, 'w').write(text[:base + off] + '{"name":' + ' ' * (n - 8) + text[base + off + n:])
EOF
before=$(md5sum <"$CACHE")
eq "a damaged descriptor of another function: a create of hello probes nothing" "$(probes '{"function":"hello"}')" 0
eq "... and leaves the cache as it is" "$(md5sum <"$CACHE")" "$before"
eq "a create of the damaged one probes" "$(probes '{"function":"fx_result","code":"ok"}')" 1
eq "... checks it with its real descriptor (no warning)" "$(create '{"function":"fx_result","code":"ok"}')" ""
eq "... and the cache was rewritten" "$(probes '{"function":"fx_result","code":"ok"}')" 0

# An offset past the end, an index that is not JSON, a file cut after its key.
python3 - "$CACHE" <<'EOF'
import json, sys
path = sys.argv[1]
lines = open(path).read().split('\n')
index = json.loads(lines[1])
index['hello'] = [10 ** 9, 50]
lines[1] = json.dumps(index, separators=(',', ':'))
open(path, 'w').write('\n'.join(lines))
EOF
eq "an offset past the end: a probe, the real descriptor (its unknown-key warning)" "$(create '{"function":"hello","nmae":"x"}' | grep -c 'did you mean "name"')" 1
eq "... and the cache was rewritten" "$(probes '{"function":"hello"}')" 0
sed -i '2s/.*/{"hello":[0,/' "$CACHE"
eq "an index that is not JSON: a probe, the function known" "$(create '{"function":"hello"}')" ""
head -1 "$CACHE" >"$CACHE.cut" && mv "$CACHE.cut" "$CACHE"
eq "a file cut after its key: a probe, the function known" "$(create '{"function":"hello"}')" ""
eq "... and rewritten whole" "$(sed -n 2p "$CACHE" | jq 'has("hello")')" true

# A SECRET parameter whose name does not look secret is masked from the cache's descriptor.
eq "from the cache" "$(probes '{"function":"fx_result","code":"ok"}')" 0
out=$(ferry create queue-item Ops box1 local --vault '{"function":"fx_result","code":"ok","pin":"pin-7351"}' --output json 2>&1)
not_contains "create's JSON masks fx_result's SECRET pin, known from the cache" "$out" "pin-7351"
contains "... and names it masked" "$out" '"pin"'
out=$(ferry create queue-item Ops box1 local --vault '{"function":"fx_result","pin":"x","code":5}' 2>&1)
contains "a parameter of the wrong type is refused from the cached descriptor" "$out" 'must be'

# The check applies a parameter's default to a copy of the vault: the item keeps its own.
out=$(ferry create queue-item Ops box1 local --vault '{"function":"fx_sleep","extra":{"a":1}}' --output json 2>/dev/null)
eq "a checked item's vault is stored as given (fx_sleep's default seconds not added)" \
    "$(jq -c '.data[0].vaultContent' <<<"$out")" '{"function":"fx_sleep","extra":{"a":1}}'

# ferry functions probes and lists every function, after a cached run as before.
eq "ferry functions lists hello and fx_result" \
    "$(ferry functions --output json | jq -c '[.data[].name] | (index("hello") != null) and (index("fx_result") != null)')" true

t_done
