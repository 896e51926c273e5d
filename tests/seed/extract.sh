#!/usr/bin/env bash
# extract.sh GUIDE OUTDIR: writes every ```bash block of the seed guide GUIDE into OUTDIR as
# its own script, with `rediacc-cli` replaced by `ferry` (the only change the guide's users
# make). A block whose first lines name it ("# backup-workflow.sh") is written under that
# name; the others as block-NN.sh (NN: the block's number in the guide, from 01). Prints one
# line per script: "NN NAME". Exits 1 when GUIDE has no bash block.
set -euo pipefail
guide=${1:?usage: extract.sh GUIDE OUTDIR}
out=${2:?usage: extract.sh GUIDE OUTDIR}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Split: block N goes to $tmp/N, without its fences.
awk -v dir="$tmp" '
    /^```bash[[:space:]]*$/ && !inside { inside = 1; n++; file = sprintf("%s/%02d", dir, n); printf "" > file; next }
    /^```[[:space:]]*$/ && inside { inside = 0; close(file); next }
    inside { print > file }
' "$guide"

count=0
for block in "$tmp"/*; do
    [[ -e $block ]] || break
    n=$(basename "$block")
    # A name in a comment among the first three lines: "# setup-backup-schedule.sh".
    name=$(head -3 "$block" | sed -n 's/^#[[:space:]]*\([A-Za-z0-9_.-]*\.sh\)[[:space:]]*$/\1/p' | head -1)
    [[ -n $name ]] || name=block-$n.sh
    sed 's/rediacc-cli/ferry/g' "$block" >"$out/$name"
    chmod 755 "$out/$name"
    echo "$n $name"
    count=$((count + 1))
done
((count > 0)) || { echo "extract.sh: no \`\`\`bash block in $guide" >&2; exit 1; }
