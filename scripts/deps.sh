#!/usr/bin/env bash
# Makes sure the Debian packages ferry needs are installed.
#   scripts/deps.sh build   what `make` needs (compiler, headers, pkg-config)
#   scripts/deps.sh test    what `make check` needs on top (jq, cmocka, servers used by tests)
#   scripts/deps.sh bench   what `make bench` needs on top (restic, borg)
# As root it runs apt-get; otherwise it prints the exact apt-get line and exits 1.
set -euo pipefail

build_pkgs="gcc make pkg-config libc6-dev libjansson-dev libconfig-dev libcurl4-openssl-dev
  libsqlite3-dev libpq-dev libzstd-dev libssl-dev libexpat1-dev"
test_pkgs="$build_pkgs libcmocka-dev jq clang g++ python3 procps psmisc uuid-runtime bc
  postgresql openssh-server openssh-client lighttpd lighttpd-mod-webdav curl"
bench_pkgs="$test_pkgs restic borgbackup"

case "${1:-build}" in
build) want=$build_pkgs ;;
test) want=$test_pkgs ;;
bench) want=$bench_pkgs ;;
*) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac

missing=()
for p in $want; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

line="apt-get install -y --no-install-recommends ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
    echo "ferry: missing Debian packages: ${missing[*]}" >&2
    echo "ferry: install them as root, then run make again:" >&2
    echo "  sudo apt-get update && sudo $line" >&2
    exit 1
fi
echo "ferry: installing missing packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists yet; an old list may name versions that are gone.
log=$(mktemp)
# shellcheck disable=SC2086
if ! { apt-get update -qq && $line -qq; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "ferry: apt-get failed; the output is above" >&2
    rm -f "$log"
    exit 1
fi
rm -f "$log"
