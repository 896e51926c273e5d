#!/usr/bin/env bash
# Verification (issue 8, point 5): a push with verify re-reads what it wrote; repo_verify
# checks a storage fully or by sample; one flipped byte in a pack is named by repo_verify
# and by repo_pull, with the file that uses it; a missing pack and a damaged manifest are
# named too; restoring the byte makes the storage whole again.
. "$(dirname "$0")/../lib.sh"

write_config 'lease = { poll_ms = 100; };'
install_plugins
DS=$T_DIR/ds
ferry create region r >/dev/null && ferry create bridge r local >/dev/null && ferry create team Ops >/dev/null
ferry create machine Ops local box --vault "{\"connection\":\"local\",\"datastore\":\"$DS\"}" >/dev/null
ferry create storage Ops st --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/st\",\"passphrase\":\"pw\"}" >/dev/null
start_host

job() {
    local task
    task=$(ferry create queue-item Ops box local --vault "$1" --output json | jq -r '.data[0].taskId')
    ferry queue wait "$task" --timeout 120 >/dev/null 2>&1
    ferry list queue --task-id "$task" --output json | jq -c '.data[0].responseVault'
}
status() { jq -r .status <<<"$1"; }
res() { jq -r ".result$2" <<<"$1"; }
err() { jq -r ".error$2" <<<"$1"; }

mkdir -p "$DS/repositories/web/docs"
head -c 6000000 /dev/urandom >"$DS/repositories/web/victim.bin"
echo "a small file" >"$DS/repositories/web/docs/readme.txt"
out=$(job '{"function":"repo_push","repository":"web","storage":"st","snapshot_id":"first","verify":true}')
eq "push with verify completes" "$(status "$out")" COMPLETED
eq "and says it verified" "$(res "$out" .verified)" true
for i in 1 2 3; do
    mkdir -p "$DS/repositories/web/more$i"
    head -c 300000 /dev/urandom >"$DS/repositories/web/more$i/f.bin"
    out=$(job "{\"function\":\"repo_push\",\"repository\":\"web\",\"storage\":\"st\",\"snapshot_id\":\"s$i\"}")
done
out=$(job '{"function":"repo_verify","storage":"st"}')
eq "repo_verify of a sound storage completes" "$(status "$out")" COMPLETED
eq "it reads every pack" "$(res "$out" .packs_checked)" "$(res "$out" .packs_total)"
eq "and every snapshot" "$(res "$out" .snapshots_checked)" 4
eq "and finds no damage" "$(res "$out" '.damaged | length')" 0
out=$(job '{"function":"repo_verify","storage":"st","sample":1}')
eq "a 1 % sample reads at least one pack" "$(res "$out" .packs_checked)" 1
out=$(job '{"function":"repo_verify","storage":"st","sample":0}')
eq "sample 0 is invalid" "$(err "$out" .outcome)" INVALID

# The largest pack holds victim.bin; flip one byte in its middle.
pack=$(find "$T_DIR/st/data" -type f -printf '%s %P\n' | sort -rn | head -1 | cut -d' ' -f2)
key=data/$pack
file=$T_DIR/st/$key
middle=$(($(stat -c %s "$file") / 2))
flip() { python3 -c "
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0x01]))" "$file" "$middle"; }
flip
out=$(job '{"function":"repo_verify","storage":"st"}')
eq "repo_verify fails on a flipped byte" "$(status "$out")" FAILED
eq "as corruption" "$(err "$out" .code)" corrupt
contains "naming the damaged object" "$(err "$out" .message)" "$key"
contains "and the file" "$(err "$out" .message)" "web@first:victim.bin"
eq "its result lists the object" "$(res "$out" '.damaged[0].object')" "$key"
contains "with every snapshot's file that uses it" "$(res "$out" '.damaged[0].files | join(" ")')" "web@s3:victim.bin"
out=$(job '{"function":"repo_pull","repository":"back","from_repository":"web","storage":"st"}')
eq "repo_pull fails on the flipped byte" "$(status "$out")" FAILED
contains "naming the damaged object" "$(err "$out" .message)" "$key"
contains "and the file" "$(err "$out" .message)" "needed by file victim.bin"
check "a failed pull leaves no repository behind" test ! -e "$DS/repositories/back"
eq "nor a temporary directory" "$(ls -A "$DS/repositories" | grep -c '^\.')" 0
flip
out=$(job '{"function":"repo_verify","storage":"st"}')
eq "with the byte restored the storage verifies again" "$(status "$out")" COMPLETED
out=$(job '{"function":"repo_pull","repository":"back","from_repository":"web","storage":"st"}')
eq "and restores" "$(status "$out")" COMPLETED
check "the same bytes" cmp "$DS/repositories/web/victim.bin" "$DS/repositories/back/victim.bin"

# A damaged manifest and a missing pack are named too.
manifest=$T_DIR/st/snapshots/web/s1
cp "$manifest" "$T_DIR/manifest.bak"
printf 'X' | dd of="$manifest" bs=1 seek=20 conv=notrunc status=none
out=$(job '{"function":"repo_verify","storage":"st"}')
contains "a damaged manifest is named" "$(err "$out" .message)" "snapshots/web/s1"
cp "$T_DIR/manifest.bak" "$manifest"
small=$(find "$T_DIR/st/data" -type f -printf '%s %P\n' | sort -n | head -1 | cut -d' ' -f2)
mv "$T_DIR/st/data/$small" "$T_DIR/pack.bak"
out=$(job '{"function":"repo_verify","storage":"st"}')
eq "a missing pack fails verification" "$(status "$out")" FAILED
contains "and is named missing" "$(res "$out" '.damaged[0].error')" "missing"
eq "it is the pack that went" "$(res "$out" '.damaged[0].object')" "data/$small"
mv "$T_DIR/pack.bak" "$T_DIR/st/data/$small"
eq "put back, all is well" "$(status "$(job '{"function":"repo_verify","storage":"st"}')")" COMPLETED
stop_host
t_done
