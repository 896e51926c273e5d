#!/usr/bin/env bash
# Checks that everything the build and the tests use comes from a Debian package that
# scripts/deps.sh lists, so that a fresh machine where `make check` installed those packages
# has it all. Reads what is used on stdin, one item a line:
#   header PATH   a header the compiler included (from `make deps-inputs`)
#   file PATH     any other file the build uses (a sanitizer or libFuzzer runtime)
#   pkg NAME      a pkg-config module (checked through its .pc file)
#   lib NAME      a library linked as -lNAME (checked through the file the linker takes)
#   cmd NAME      a program the tests run, looked up where a fresh Debian machine has it:
#                 /usr/sbin, /usr/bin, /sbin, /bin, /usr/lib/postgresql/*/bin (not PATH:
#                 a pyenv or /usr/local copy on this machine says nothing about a new one)
# Files inside the source tree are skipped. A file is fine when dpkg says it belongs to a
# package that deps.sh lists for SET, or to one of their dependencies (Depends and
# Pre-Depends, recursively, as `apt-cache depends --recurse` reports them, virtual packages
# through their providers), or to an Essential or Priority: required package (every Debian
# system has those).
# Prints one line per problem, naming the file, the package it came from and the fix, and
# exits 1; prints a summary line and exits 0 when all is fine.
#   scripts/deps-check.sh [SET]       SET: build, test (default) or bench
# DEPS_SH (default scripts/deps.sh) names the script whose lists are checked (the test of
# this script points it at a doctored copy).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
deps_sh=${DEPS_SH:-$root/scripts/deps.sh}
set_name=${1:-test}
cc=${CC:-cc}

listed=$("$deps_sh" list "$set_name") || { echo "deps-check: $deps_sh list $set_name failed" >&2; exit 2; }
# Package names (and providers of virtual packages) reachable from the listed ones.
declare -A allowed=()
while read -r p; do
    [[ -n $p ]] && allowed[$p]=1
done < <(
    # shellcheck disable=SC2086
    apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
        --no-replaces --no-enhances $listed 2>/dev/null |
        sed -E 's/^ *\|?(Pre)?Depends: //; s/^ +//; s/:any$//' | grep -v '^<'
    printf '%s\n' $listed
    # Essential and Priority: required packages are on every Debian system (debootstrap's
    # minbase installs them all).
    dpkg-query -W -f='${Package} ${Essential} ${Priority}\n' |
        awk '$2 == "yes" || $3 == "required" { print $1 }'
)

declare -A why=() # path -> the input line it stands for
paths=()
problems=()
add_path() { # PATH WHAT
    local p
    p=$(realpath -sm "$1")
    [[ $p == "$root"/* ]] && return 0
    [[ -n ${why[$p]:-} ]] && return 0
    why[$p]=$2
    paths+=("$p")
}
while read -r kind name; do
    [[ -z ${kind:-} ]] && continue
    case $kind in
    header | file) add_path "$name" "$kind $name" ;;
    pkg)
        if pc=$(pkg-config --path "$name" 2>/dev/null) && [[ -n $pc ]]; then
            add_path "$pc" "pkg-config module $name"
        else
            problems+=("pkg-config module $name is not installed (its -dev package is missing from scripts/deps.sh?)")
        fi
        ;;
    lib)
        f=$("$cc" -print-file-name="lib$name.so")
        [[ $f == */* ]] || f=$("$cc" -print-file-name="lib$name.a")
        if [[ $f == */* ]]; then
            add_path "$f" "library -l$name"
        else
            problems+=("library -l$name is not installed (its -dev package is missing from scripts/deps.sh?)")
        fi
        ;;
    cmd)
        found=
        for d in /usr/sbin /usr/bin /sbin /bin /usr/lib/postgresql/*/bin; do
            [[ -x $d/$name && ! -d $d/$name ]] && { found=$d/$name; break; }
        done
        if [[ -n $found ]]; then
            add_path "$found" "program $name"
        else
            problems+=("program $name, which the tests run, is not installed in the system directories: add its package to scripts/deps.sh")
        fi
        ;;
    *) problems+=("deps-check: cannot read input line: $kind $name") ;;
    esac
done

# path -> owning packages ("a, b"), from one batch query; the rest one by one below.
declare -A owner=()
if [[ ${#paths[@]} -gt 0 ]]; then
    while IFS= read -r line; do
        [[ $line == *": /"* ]] || continue
        owner[${line#*: }]=${line%%: /*}
    done < <(dpkg -S "${paths[@]}" 2>/dev/null)
fi
# dpkg knows a file by the path its package shipped: with merged /usr, /usr/bin/x may be
# /bin/x; an alternatives symlink (/usr/bin/cc) belongs to nobody but its target does.
owner_of() {
    local p=$1 alt real
    [[ -n ${owner[$p]:-} ]] && { echo "${owner[$p]}"; return 0; }
    case $p in
    /usr/bin/* | /usr/sbin/* | /usr/lib/*) alt=${p#/usr} ;;
    /bin/* | /sbin/* | /lib/*) alt=/usr$p ;;
    *) alt= ;;
    esac
    real=$(readlink -f "$p")
    for q in $alt "$real"; do
        [[ -z $q || $q == "$p" ]] && continue
        line=$(dpkg -S "$q" 2>/dev/null | grep -m1 ": /") && { echo "${line%%: /*}"; return 0; }
    done
    return 1
}

checked=0
for p in "${paths[@]}"; do
    checked=$((checked + 1))
    if ! pkgs=$(owner_of "$p"); then
        problems+=("$p (${why[$p]}) comes from no Debian package: install it from one that scripts/deps.sh lists")
        continue
    fi
    ok=0
    IFS=', ' read -r -a names <<<"$pkgs"
    for n in "${names[@]}"; do
        [[ -n ${allowed[${n%%:*}]:-} ]] && ok=1
    done
    [[ $ok -eq 1 ]] ||
        problems+=("$p (${why[$p]}) comes from Debian package ${pkgs%%:*}, which scripts/deps.sh does not list (nor any package it lists depends on it): add it to ${set_name}_pkgs")
done

if [[ ${#problems[@]} -gt 0 ]]; then
    printf '%s\n' "${problems[@]}"
    exit 1
fi
echo "deps-check: $checked files, all from packages scripts/deps.sh lists for $set_name (or their dependencies)"
