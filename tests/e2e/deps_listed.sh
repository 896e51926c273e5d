#!/usr/bin/env bash
# A new machine passes `make check`: the test packages are installed before anything of the
# tests is compiled, and every header, library and program the build and the tests use
# comes from a Debian package that scripts/deps.sh lists (scripts/deps-check.sh), which is
# shown able to fail: a doctored package list, a header from no package, a missing program.
. "$(dirname "$0")/../lib.sh"
cd "$FERRY_ROOT" || exit 1

# --- install first ------------------------------------------------------------------------
# A dry run of make check from nothing (-B): `scripts/deps.sh test` must come before the
# first unit test or fuzz replay is compiled (on a fresh machine cmocka.h is missing until
# then). Order-only prerequisites keep that order under -j too.
plan=$(make -n -B check BUILD="$T_DIR/b" SAN=0 2>&1)
deps_at=$(grep -n 'scripts/deps.sh test' <<<"$plan" | head -1 | cut -d: -f1)
unit_at=$(grep -n -- '-c \|-o ' <<<"$plan" | grep -n 'tests/unit/test_' | head -1 | cut -d: -f2)
[[ -z $unit_at ]] && unit_at=$(grep -n 'tests/unit/test_' <<<"$plan" | head -1 | cut -d: -f1)
replay_at=$(grep -n 'tests/fuzz/fuzz_' <<<"$plan" | head -1 | cut -d: -f1)
if [[ -n $deps_at && -n $unit_at && $deps_at -lt $unit_at ]]; then
    pass "make check installs the test packages (line $deps_at) before compiling unit tests (line $unit_at)"
else
    fail "make check installs the test packages before compiling unit tests" \
        "deps.sh test at line ${deps_at:-none}, first unit test at line ${unit_at:-none}"
fi
if [[ -n $deps_at && -n $replay_at && $deps_at -lt $replay_at ]]; then
    pass "... and before compiling the fuzz replays (line $replay_at)"
else
    fail "make check installs the test packages before compiling the fuzz replays" \
        "deps.sh test at line ${deps_at:-none}, first harness at line ${replay_at:-none}"
fi
rules=$(make -p -n -q check BUILD="$T_DIR/b" SAN=0 2>/dev/null)
contains "unit tests have the test packages as an order-only prerequisite (-j safe)" \
    "$(grep -E '^[^#]*tests/test_%:' <<<"$rules" | head -1)" "| build/.deps-test"

# --- everything used comes from a listed package ----------------------------------------
if ! make -s --no-print-directory deps-inputs BUILD="$BUILD" SAN="${SAN:-0}" >"$T_DIR/inputs" 2>"$T_DIR/inputs.err"; then
    fail "make deps-inputs lists what the build uses" "$(cat "$T_DIR/inputs.err")"
fi
headers=$(grep -c '^header ' "$T_DIR/inputs")
[[ $headers -gt 50 ]] && pass "make deps-inputs lists the headers the compiler includes ($headers)" ||
    fail "make deps-inputs lists the headers" "$(head -20 "$T_DIR/inputs")"
contains "... with the system headers of the test and fuzz builds" "$(cat "$T_DIR/inputs")" "header /usr/include/cmocka.h"
contains "... the libraries linked" "$(cat "$T_DIR/inputs")" "lib jansson"
contains "... and the libFuzzer runtime" "$(cat "$T_DIR/inputs")" "libclang_rt.fuzzer"

# The programs the tests and their helpers run (tests/e2e, tests/helpers, scripts/pg.sh),
# looked up where Debian installs them. moto_server is not here: it comes from pip (see the
# exceptions in scripts/deps.sh).
for c in jq timeout sshd ssh ssh-keygen lighttpd psql pg_ctl initdb postgres curl openssl python3 \
    bc sqlite3 ps pgrep pkill killall uuidgen dpkg-deb apt-get od stat sha256sum flock setsid \
    runuser cc gcc clang make pkg-config chromium node npm \
    dpkg dpkg-buildpackage lintian dh systemd-sysusers systemd-tmpfiles deb-systemd-helper man zsh; do
    echo "cmd $c"
done >>"$T_DIR/inputs"
# tests/e2e/man_completion.sh loads bash-completion itself.
echo "file /usr/share/bash-completion/bash_completion" >>"$T_DIR/inputs"

# The Python modules the tests import (tests/helpers/*.py, python3 -c and heredocs in the
# scripts), as Debian's python3 finds them. moto and the boto3/botocore it brings are the
# pip exception documented in scripts/deps.sh; they are checked to be only in storage_s3.sh
# and moto.sh.
mods=$(grep -ohE "(^|['\"; ])(import [A-Za-z0-9_., ]+|from [A-Za-z0-9_.]+ import)" \
    tests/helpers/*.py tests/helpers/*.sh tests/e2e/*.sh scripts/*.sh tests/lib.sh |
    sed -E "s/^['\"; ]//; s/^from ([A-Za-z0-9_.]+) import/\1/; s/^import //; s/ as [A-Za-z0-9_]+//g" |
    tr ',' '\n' | sed 's/ //g' | grep -v '^$' | cut -d. -f1 | sort -u)
contains "the tests' Python imports are found (sqlite3 among them)" "$mods" sqlite3
pip_users=$(grep -lE "import[^'\"]*\b(moto|boto3|botocore)\b" tests/helpers/* tests/e2e/*.sh scripts/*.sh | sort | tr '\n' ' ')
eq "only the S3 tests and their helper use the pip-only modules" "$pip_users" \
    "tests/e2e/storage_cold.sh tests/e2e/storage_s3.sh tests/e2e/storage_stream.sh tests/helpers/moto.sh "
for m in $mods; do
    case $m in moto | boto3 | botocore) continue ;; esac
    f=$(/usr/bin/python3 -c "import $m, sys; print(getattr(sys.modules['$m'], '__file__', None) or '')" 2>&1) ||
        { echo "cmd python3-module-$m-missing"; continue; }
    [[ -n $f ]] && echo "file $f" # built into the interpreter when empty
done >>"$T_DIR/inputs"

if out=$(scripts/deps-check.sh test <"$T_DIR/inputs" 2>&1); then
    pass "every header, library and program used comes from a package scripts/deps.sh lists"
else
    fail "every header, library and program used comes from a package scripts/deps.sh lists" "$out"
fi

# --- and the check can fail -------------------------------------------------------------
# A deps.sh that forgot libjansson-dev and sqlite3.
sed -e 's/ libjansson-dev//' -e 's/ sqlite3//' scripts/deps.sh >"$T_DIR/deps.sh"
chmod +x "$T_DIR/deps.sh"
out=$(DEPS_SH=$T_DIR/deps.sh scripts/deps-check.sh test <"$T_DIR/inputs" 2>&1)
rc=$?
eq "a package list without libjansson-dev fails the check" "$rc" 1
contains "... naming the header and its package" "$out" \
    "/usr/include/jansson.h (header /usr/include/jansson.h) comes from Debian package libjansson-dev, which scripts/deps.sh does not list"
contains "... and the program the tests run" "$out" "program sqlite3) comes from Debian package sqlite3"

# A header that no package installed (as from /usr/local or a hand-built library).
mkdir -p "$T_DIR/include"
echo '#define FAKE 1' >"$T_DIR/include/fake.h"
out=$(printf 'header %s\n' "$T_DIR/include/fake.h" | scripts/deps-check.sh test 2>&1)
rc=$?
eq "a header from no Debian package fails the check" "$rc" 1
contains "... naming it" "$out" "$T_DIR/include/fake.h (header $T_DIR/include/fake.h) comes from no Debian package"

# A program the tests run that is not installed, and a library that is not either.
out=$(printf 'cmd ferry-no-such-program\nlib ferry_no_such_lib\npkg ferry-no-such-module\n' |
    scripts/deps-check.sh test 2>&1)
rc=$?
eq "a missing program, library or pkg-config module fails the check" "$rc" 1
contains "... naming the program" "$out" "program ferry-no-such-program, which the tests run, is not installed"
contains "... the library" "$out" "library -lferry_no_such_lib is not installed"
contains "... and the module" "$out" "pkg-config module ferry-no-such-module is not installed"

# A package that only a listed package's Recommends would bring (not a dependency) is not
# enough: libclang-rt-14-dev is no Depends of clang, so dropping it fails for its runtime.
sed -e 's/ libclang-rt-14-dev//' scripts/deps.sh >"$T_DIR/deps2.sh"
chmod +x "$T_DIR/deps2.sh"
out=$(grep libclang_rt "$T_DIR/inputs" | DEPS_SH=$T_DIR/deps2.sh scripts/deps-check.sh test 2>&1)
rc=$?
eq "a package list without libclang-rt-14-dev fails for the libFuzzer runtime" "$rc" 1
contains "... naming it" "$out" "comes from Debian package libclang-rt-14-dev"

t_done
