#!/usr/bin/env bash
# Issue 18, point 7: `dpkg-buildpackage -us -uc -b` builds the ferry and ferry-plugin-dev
# packages from debian/ (no make check inside: DEB_BUILD_OPTIONS=nocheck); lintian finds no
# error; installed with `dpkg --root` into a throwaway root, their maintainer scripts create
# the ferry user and /var/lib/ferry 0700 and enable ferry.service; `ferry --version` and the
# README tour run against that install; purge removes the state directory.
#
# dpkg --root runs the maintainer scripts chrootless (--force-script-chrootless, with
# DPKG_ROOT set, which systemd-sysusers, systemd-tmpfiles and deb-systemd-helper honour):
# a chroot would need a whole Debian system in the root. --force-depends, since the root
# has none of the libraries; the binaries run on this machine's. A policy-rc.d in the root
# keeps deb-systemd-invoke from starting anything.
#
# Cost: the packages are built from a copy of the sources and of build/'s objects
# (dpkg-buildpackage -nc), so make finds everything up to date: about 10 s instead of a
# rebuild (~25 s of CPU, 100 s on a busy machine).
# `make deb` builds them from scratch with Debian's flags (docs/operations.md).
. "$(dirname "$0")/../lib.sh"
unset FERRY_CONFIG

src=$T_DIR/src/ferry
mkdir -p "$src"
for f in Makefile README.md conf debian dist docs host plugins scripts sdk; do
    cp -a "$FERRY_ROOT/$f" "$src/"
done
# Not what an earlier dpkg-buildpackage in the tree left (debian/.gitignore lists it).
rm -rf "$src"/debian/{.debhelper,debhelper-build-stamp,files,ferry,ferry-plugin-dev,tmp}
reuse=()
if [[ -x $FERRY_ROOT/build/ferry ]]; then
    mkdir -p "$src/build"
    for f in obj gen plugins man completion ferry .deps-build; do
        [[ -e $FERRY_ROOT/build/$f ]] && cp -a "$FERRY_ROOT/build/$f" "$src/build/"
    done
    reuse=(-nc)
fi

# --- debian/control builds with what scripts/deps.sh installs -----------------------------
# Build-Depends is deps.sh's build set less build-essential's (gcc, make, libc6-dev), plus
# debhelper-compat.
want=$("$FERRY_ROOT/scripts/deps.sh" list build | grep -vxE 'gcc|make|libc6-dev' | sort | tr '\n' ' ')
have=$(sed -n '/^Build-Depends:/,/^[A-Z]/p' "$src/debian/control" | sed '$d' |
    sed 's/^Build-Depends://' | tr ',' '\n' | sed 's/([^)]*)//; s/^ *//; s/ *$//' |
    grep -v '^$' | grep -vx debhelper-compat | sort | tr '\n' ' ')
eq "debian/control's Build-Depends are scripts/deps.sh's build packages" "$have" "$want"
contains "... with debhelper-compat 13" "$(cat "$src/debian/control")" "debhelper-compat (= 13)"

# The packages are never sanitizer builds: their objects are build/'s whatever BUILD is. A
# SAN=1 run without a plain build/ would compile it all again (~150 s on a busy machine) to
# test nothing sanitizer-related, so it leaves the packages to the plain run; the checks of
# debian/control above need no build and run in both.
if [[ ! -x $FERRY_ROOT/build/ferry && ${SAN:-0} == 1 ]]; then
    echo "# the packages are skipped under SAN=1: no plain build/ to make the packages from (make check runs it)"
    t_done
    exit 0
fi

# --- build ------------------------------------------------------------------------------
start=$SECONDS
# Without this run's BUILD and SAN (debian/rules fixes them too).
if (cd "$src" && env -u BUILD -u SAN DEB_BUILD_OPTIONS="nocheck parallel=2 noddebs" \
    dpkg-buildpackage -us -uc -b "${reuse[@]}") >"$T_DIR/build.log" 2>&1; then
    pass "dpkg-buildpackage -us -uc -b builds (${reuse[*]:-from scratch}, $((SECONDS - start)) s)"
else
    fail "dpkg-buildpackage -us -uc -b builds" "$(tail -30 "$T_DIR/build.log")"
    t_done
    exit 1
fi
echo "# dpkg-buildpackage: $((SECONDS - start)) s"
not_contains "... without running the test suite" "$(cat "$T_DIR/build.log")" "tests/run.sh"
deb=$(ls "$T_DIR"/src/ferry_*_*.deb)
dev=$(ls "$T_DIR"/src/ferry-plugin-dev_*_all.deb)
files=$(dpkg-deb -c "$deb" | awk '{ print $6 }')
for f in ./usr/bin/ferry ./usr/lib/ferry/plugins/core.so ./usr/lib/ferry/plugins/repo.so \
    ./lib/systemd/system/ferry.service ./lib/systemd/system/ferry-web.service \
    ./usr/share/man/man1/ferry.1.gz ./usr/share/man/man5/ferry.conf.5.gz \
    ./usr/share/bash-completion/completions/ferry ./usr/share/zsh/vendor-completions/_ferry \
    ./usr/lib/sysusers.d/ferry.conf ./usr/lib/tmpfiles.d/ferry.conf ./etc/ferry/ferry.conf; do
    contains "ferry holds $f" "$files" "$f"
done
contains "ferry-plugin-dev holds the SDK header" "$(dpkg-deb -c "$dev")" "./usr/include/ferry/plugin.h"
contains "... and ferry-plugin.pc" "$(dpkg-deb -c "$dev")" "./usr/share/pkgconfig/ferry-plugin.pc"
contains "the daemon's package depends on the libraries it opens on first use" \
    "$(dpkg-deb -f "$deb" Depends)" "libcurl4"
out=$(lintian --fail-on error "$T_DIR"/src/ferry_*.changes 2>&1)
rc=$?
eq "lintian finds no error" "$rc" 0
grep -E '^[EW]: ' <<<"$out" | sed 's/^/# lintian: /'

# --- install into a throwaway root ----------------------------------------------------------
root=$T_DIR/root
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/usr/sbin"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
dpkg_root() { dpkg --root="$root" --force-script-chrootless --force-depends "$@"; }
if [[ $(id -u) -eq 0 ]]; then
    check "dpkg --root installs both packages, running their maintainer scripts" \
        dpkg_root -i "$deb" "$dev"
    uid=$(awk -F: '$1 == "ferry" { print $3 }' "$root/etc/passwd")
    [[ -n $uid ]] && pass "postinst created the system user ferry (uid $uid)" ||
        fail "postinst created the system user ferry" "$(cat "$root/etc/passwd" 2>&1)"
    contains "... with /var/lib/ferry as its home and no shell" "$(grep '^ferry:' "$root/etc/passwd")" \
        ":/var/lib/ferry:/usr/sbin/nologin"
    eq "postinst created /var/lib/ferry 0700, owned by ferry" \
        "$(stat -c '%a %u' "$root/var/lib/ferry" 2>&1)" "700 $uid"
    gid=$(awk -F: '$1 == "ferry" { print $3 }' "$root/etc/group")
    eq "... and the config 0640, root's, readable by the ferry group (it may hold secrets)" \
        "$(stat -c '%a %u %g' "$root/etc/ferry/ferry.conf" 2>&1)" "640 0 $gid"
    check "ferry.service is enabled" test -L "$root/etc/systemd/system/multi-user.target.wants/ferry.service"
    check "ferry-web.service is not" test ! -e "$root/etc/systemd/system/multi-user.target.wants/ferry-web.service"
else
    # dpkg --root needs root; without it the files alone are checked.
    echo "# not root: dpkg-deb -x instead of dpkg --root (no maintainer scripts)"
    dpkg-deb -x "$deb" "$root" && dpkg-deb -x "$dev" "$root"
    mkdir -p "$root/var/lib/ferry"
fi
ferry_bin=$root/usr/bin/ferry
contains "the installed ferry --version answers" "$("$ferry_bin" --version)" "ferry 0.1.0"
check "... and is no sanitizer build" bash -c "! grep -q __asan_init '$ferry_bin'"
man_out=$(MANWIDTH=100 man --warnings -l "$root/usr/share/man/man1/ferry.1.gz" 2>&1)
contains "man ferry renders the installed page" "$man_out" "ferry create queue-item TEAM MACHINE BRIDGE"
contains "man ferry.conf renders" "$(man -l "$root/usr/share/man/man5/ferry.conf.5.gz" 2>&1)" "store.driver"
cflags=$(PKG_CONFIG_PATH=$root/usr/share/pkgconfig pkg-config --define-variable=prefix="$root/usr" --cflags ferry-plugin)
contains "pkg-config ferry-plugin gives the installed include dir" "$cflags" "-I$root/usr/include"

# --- the README tour against the install ------------------------------------------------
# The shipped configuration, with its absolute paths moved into the root.
sed -e "s|\"/var/lib/ferry|\"$root/var/lib/ferry|; s|\"/usr/lib/ferry|\"$root/usr/lib/ferry|" \
    "$root/etc/ferry/ferry.conf" >"$T_DIR/ferry.conf"
export FERRY_CONFIG=$T_DIR/ferry.conf
FERRY_BIN=$ferry_bin
check "ferry init on the shipped configuration" ferry init
start_host || fail "the installed host starts"
sed -n '/<!-- tour -->/,/<!-- \/tour -->/p' "$FERRY_ROOT/README.md" | sed '1,2d;$d' | sed '$d' |
    sed "s|build/ferry|$ferry_bin|g" >"$T_DIR/tour.sh"
mkdir -p "$T_DIR/tour"
out=$(cd "$T_DIR/tour" && bash -e "$T_DIR/tour.sh" 2>&1)
rc=$?
eq "the README tour runs against the installed ferry" "$rc" 0
contains "functions lists hello (from the installed plugins)" "$out" "hello"
contains "the hello item completed" "$out" "COMPLETED"
contains "its result is readable with jq" "$out" "hello from $(hostname)"
contains "the waited item completed" "$out" "Status: COMPLETED"
[[ -f $root/var/lib/ferry/ferry.db ]] && pass "the store is in the root's /var/lib/ferry" ||
    fail "the store is in the root's /var/lib/ferry"
stop_host

# --- purge ------------------------------------------------------------------------------
if [[ $(id -u) -eq 0 ]]; then
    check "dpkg --purge removes both" dpkg_root --purge ferry ferry-plugin-dev
    check "... and the state directory with them" test ! -e "$root/var/lib/ferry"
    check "... and the configuration" test ! -e "$root/etc/ferry/ferry.conf"
    left=$(cd "$root" && find . \( -type f -o -type l \) ! -path './var/lib/dpkg/*' ! -path './etc/*' \
        ! -path ./usr/sbin/policy-rc.d ! -path './var/lib/systemd/*' | sort | tr '\n' ' ')
    eq "... and every file of theirs" "$left" ""
fi
t_done
