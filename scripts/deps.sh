#!/usr/bin/env bash
# Makes sure the Debian packages ferry needs are installed.
#   scripts/deps.sh build   what `make` needs (compiler, headers, pkg-config)
#   scripts/deps.sh test    what `make check` and `make fuzz` need on top (jq, cmocka, clang
#                           and its sanitizer/libFuzzer runtimes, servers used by tests)
#   scripts/deps.sh bench   what `make bench` needs on top (restic, borg, time; nodejs and npm,
#                           with which tests/bench/graphile.sh installs graphile-worker, the
#                           peer, are in the test set: tests/e2e/web_browser.sh needs them)
#   scripts/deps.sh list build|test|bench   prints the set, one package a line
# As root it runs apt-get; otherwise it prints the exact apt-get line and exits 1.
#
# tests/e2e/deps_listed.sh checks these lists: every header the build, the unit tests and
# the fuzz harnesses include, every library they link and every program the tests run must
# come from a package listed here or from one of its dependencies (or from an Essential or
# Priority: required package, which every Debian system has). Add a package here when that test names one.
#
# Not from Debian, on purpose (the check knows these exceptions and says so):
#   - moto_server (tests/helpers/moto.sh, the S3 server of tests/e2e/storage_s3.sh,
#     storage_stream.sh and storage_cold.sh) is the
#     Python package "moto" (5.2 here), installed with pip into a Python that is not
#     Debian's: the development image has it in pyenv (/root/.pyenv), whose python3 comes
#     first on PATH. Those tests also inspect buckets with boto3, which comes with moto. No
#     package listed here provides it (Debian 12 has no python3-moto, and PyPI is not
#     reachable from the development machine), so on a fresh Debian 12 machine they fail
#     ("moto.sh: no moto_server on PATH") until `pip install 'moto[server]>=5'` puts one
#     on PATH.
#   - Apart from moto, the tests' Python needs only the standard library, which Debian's
#     python3 (listed below) has; the check looks at Debian's python3, not pyenv's.
set -euo pipefail

build_pkgs="gcc make pkg-config libc6-dev libjansson-dev libconfig-dev libcurl4-openssl-dev
  libsqlite3-dev libpq-dev libzstd-dev libssl-dev libexpat1-dev libarchive-dev"
build_pkgs="$build_pkgs libmicrohttpd-dev" # ferry web (host/web/)
test_pkgs="$build_pkgs libcmocka-dev jq clang libclang-rt-14-dev g++ python3 procps psmisc
  uuid-runtime bc sqlite3 postgresql openssh-server openssh-client lighttpd lighttpd-mod-webdav
  curl"
test_pkgs="$test_pkgs systemd" # tests/e2e/unit_security.sh: systemd-analyze security --offline
test_pkgs="$test_pkgs openssl" # tests/e2e/web_tls.sh makes a self-signed certificate
test_pkgs="$test_pkgs chromium nodejs npm" # tests/e2e/web_browser.sh: the dashboard in a browser
test_pkgs="$test_pkgs debhelper dpkg-dev fakeroot lintian" # tests/e2e/package.sh: the .debs
test_pkgs="$test_pkgs bash-completion zsh" # tests/e2e/man_completion.sh
test_pkgs="$test_pkgs bsdutils" # tests/e2e/cli_term.sh, cli_wait.sh: script(1) gives the CLI a terminal
test_pkgs="$test_pkgs strace" # tests that count system calls: cli_open.sh, host_idle_wal.sh, …
bench_pkgs="$test_pkgs restic borgbackup time"

if [[ ${1:-} == list ]]; then
    case "${2:-}" in
    build) printf '%s\n' $build_pkgs ;;
    test) printf '%s\n' $test_pkgs ;;
    bench) printf '%s\n' $bench_pkgs ;;
    *) echo "usage: $0 list build|test|bench" >&2; exit 2 ;;
    esac
    exit 0
fi

case "${1:-build}" in
build) want=$build_pkgs ;;
test) want=$test_pkgs ;;
bench) want=$bench_pkgs ;;
*) echo "usage: $0 build|test|bench|list SET" >&2; exit 2 ;;
esac

# An installed package that Provides a wanted one counts (a nodejs build that bundles npm
# provides and conflicts with Debian's npm: asking for npm there would fail).
provided=" $(dpkg-query -W -f='${Status}|${Provides}\n' 2>/dev/null |
    awk -F'|' '$1 == "install ok installed" { print $2 }' | tr ',' '\n' |
    sed 's/([^)]*)//; s/^ *//; s/ *$//' | sort -u | tr '\n' ' ') "
missing=()
for p in $want; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ $status == "install ok installed" || $provided == *" $p "* ]] || missing+=("$p")
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
