#!/usr/bin/env bash
# The docs name only files that exist: every source path (host/…, plugins/…, sdk/…, tests/…,
# scripts/…, docs/…) written in README.md or docs/*.md is a file or folder of the tree, and
# docs/architecture.md names every folder of host/. Shown able to fail on a doctored page.
. "$(dirname "$0")/../lib.sh"
cd "$FERRY_ROOT" || exit 1

# paths_missing FILE...: prints each named path that is not in the tree.
paths_missing() {
    # A path starts a word (not inside a URL); NAME-like capitals are placeholders.
    grep -ohP '(?<![/\w.-])(host|plugins|sdk|tests|scripts|docs)/[A-Za-z0-9_./-]*[A-Za-z0-9_]' "$@" |
        sort -u | while read -r p; do
            [[ $p =~ [A-Z]{3,} || $p == *.new || $p == *_ ]] && continue
            [[ -e $p ]] || echo "$p"
        done
}

missing=$(paths_missing README.md docs/*.md)
eq "every path README.md and docs/ name exists" "$missing" ""

fake=$T_DIR/fake.md
printf 'The claim lives in host/store/no_such_file.c.\n' >"$fake"
eq "... and a page naming a missing file is caught" "$(paths_missing "$fake")" \
    "host/store/no_such_file.c"

if [[ -f docs/architecture.md ]]; then
    unnamed=
    for d in host/*/; do
        d=${d%/}
        grep -qF "$d/" docs/architecture.md || unnamed="$unnamed $d"
    done
    eq "docs/architecture.md names every folder of host/" "$unnamed" ""
else
    fail "docs/architecture.md exists"
fi
t_done
