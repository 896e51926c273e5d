#!/usr/bin/env bash
# os_update (issue 7, point 2).
#   1. For real on this machine, dry run: apt-get -s plans by class; nothing changes.
#   2. A real change, safely: a throwaway package ferry-test-tiny built here with dpkg-deb,
#      version 1.0 installed, 2.0 in a local apt repository that apt is pointed at through
#      APT_CONFIG (the machine's own sources are left alone); os_update upgrades it, reports
#      1.0 -> 2.0, and "reboots" through a reboot_command that only touches a file (2.0's
#      postinst asks for a reboot the Debian way, /var/run/reboot-required). The package is
#      purged at the end. Nothing here ever reboots.
#      A name no package list knows (issue 13, point 11) is listed under not_installed, as a
#      name that is not installed is, instead of failing the job.
#   3. dnf, through stand-in dnf and rpm commands: its output is parsed the same way.
. "$(dirname "$0")/../lib.sh"

PKG=ferry-test-tiny
REBOOT_FLAG=/var/run/reboot-required
had_flag=0; [[ -e $REBOOT_FLAG ]] && had_flag=1
cleanup_pkg() {
    dpkg -P "$PKG" >/dev/null 2>&1
    ((had_flag)) || rm -f "$REBOOT_FLAG"
}
trap 'cleanup_pkg; t_cleanup' EXIT
command -v apt-get >/dev/null || { echo "1..0 # SKIP no apt-get on this machine"; pass "skipped: no apt"; t_done; exit 0; }
dpkg -s "$PKG" >/dev/null 2>&1 && cleanup_pkg

write_config 'timeouts = { default = 120; grace = 1; };' 'retry = { max_retries = 0; };' \
    'lease = { poll_ms = 100; };' "workers = { count = 4; path = \"$T_DIR/fakebin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"; pass_env = \"APT_CONFIG\"; };" \
    "plugin = { ops = { reboot_command = \"echo rebooting >$T_DIR/rebooted\"; }; };"
install_plugins
setup_local_machine Ops m1
ferry create machine Ops local m2 --vault '{"connection":"local"}' >/dev/null
ferry create machine Ops local m3 --vault '{"connection":"local"}' >/dev/null

status_is() { [[ $(task_status "$1") == "$2" ]]; }
wait_st() { wait_for "${3:-60}" status_is "$1" "$2"; }
q() { ferry create queue-item Ops "$1" local --vault "$2" --output json | jq -r '.data[0].taskId'; }
res() { ferry list queue --task-id "$1" --output json | jq -c '.data[0].responseVault'; }

# --- 1. dry run against this machine's real package lists ------------------------------------
sim=$(LC_ALL=C apt-get -s -o Debug::NoLocking=1 upgrade --with-new-pkgs 2>/dev/null | grep '^Inst ')
n_all=$(grep -c . <<<"$sim")
n_sec=$(grep '^Inst [^ ]* \[' <<<"$sim" | grep -ci security)
status_before=$(md5sum /var/lib/dpkg/status)
start_host
all=$(q m1 '{"function":"os_update","packages":"all","dry_run":true,"refresh":false}')
sec=$(q m2 '{"function":"os_update","packages":["security","critical"],"dry_run":true,"refresh":false,"reboot":true}')
bad=$(q m3 '{"function":"os_update","packages":["security","not a name!"]}')
wait_st "$all" COMPLETED && wait_st "$sec" COMPLETED && wait_st "$bad" FAILED
r=$(res "$all")
eq "apt is detected" "$(jq -r .result.manager <<<"$r")" apt
eq "a dry run of all lists what apt-get -s upgrades ($n_all)" "$(jq -r .result.count <<<"$r")" "$n_all"
eq "each package has a name and a new version" "$(jq -r '[.result.packages[] | select((.name | length) > 0 and (.new_version | length) > 0)] | length' <<<"$r")" "$n_all"
if ((n_all > 0)); then
    first=$(head -1 <<<"$sim")
    name=$(awk '{print $2}' <<<"$first")
    old=$(sed -n 's/^Inst [^ ]* \[\([^]]*\)\].*/\1/p' <<<"$first")
    eq "old and new versions as apt has them ($name)" \
        "$(jq -r --arg n "$name" '.result.packages[] | select(.name == $n) | [.old_version // "", .new_version] | @tsv' <<<"$r")" \
        "$old	$(sed -n 's/^[^(]*(\([^ ]*\) .*/\1/p' <<<"$first")"
else
    pass "old and new versions (no updates pending on this machine)"
fi
r=$(res "$sec")
eq "security updates are picked by their origin ($n_sec)" \
    "$(jq -r '[.result.packages[] | select(.security and .old_version != null)] | length' <<<"$r")" "$n_sec"
eq "every package is there for its class, or as a dependency of one" \
    "$(jq -r '[.result.packages[] | select(.security or .critical or .dependency | not)] | length' <<<"$r")" 0
eq "a dry run never reboots" "$(jq -r '[.result.dry_run, .result.reboot] | @tsv' <<<"$r")" $'true\tskipped: dry run'
eq "the dry runs changed nothing" "$(md5sum /var/lib/dpkg/status)" "$status_before"
r=$(res "$bad")
eq "a bad package name is INVALID" "$(jq -r .error.outcome <<<"$r")" INVALID
contains "and says why" "$(jq -r .error.message <<<"$r")" "'not a name!' is neither a class"
stop_host

# --- 2. a real upgrade from a local repository ------------------------------------------------
A=$T_DIR/apt
mkdir -p "$A/repo" "$A/lists/partial" "$A/cache/archives/partial" "$A/sources.list.d"
mkdeb() { # mkdeb NAME VERSION [POSTINST]
    local root=$A/build/$1-$2
    mkdir -p "$root/DEBIAN" "$root/usr/share/$1"
    echo "$2" >"$root/usr/share/$1/version"
    printf 'Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: ferry tests <ferry@test.local>\nPriority: optional\nSection: misc\nDescription: throwaway package for ferry'"'"'s os_update test\n' "$1" "$2" >"$root/DEBIAN/control"
    if [[ -n ${3:-} ]]; then printf '#!/bin/sh\n%s\n' "$3" >"$root/DEBIAN/postinst"; chmod 755 "$root/DEBIAN/postinst"; fi
    dpkg-deb --root-owner-group -b "$root" "$A/$1_$2_all.deb" >/dev/null
}
mkdeb "$PKG" 1.0
mkdeb "$PKG" 2.0 "[ -e $REBOOT_FLAG ] || touch $REBOOT_FLAG"
mkdeb ferry-test-other 1.0
cp "$A/${PKG}_2.0_all.deb" "$A/ferry-test-other_1.0_all.deb" "$A/repo/"
(cd "$A/repo" && for f in *.deb; do
    dpkg-deb -f "$f"; echo "Filename: ./$f"; echo "Size: $(stat -c %s "$f")"
    echo "SHA256: $(sha256sum "$f" | cut -d' ' -f1)"; echo
done) >"$A/repo/Packages"
echo "deb [trusted=yes] file:$A/repo ./" >"$A/sources.list"
cat >"$A/apt.conf" <<EOF
Dir::Etc::sourcelist "$A/sources.list";
Dir::Etc::sourceparts "$A/sources.list.d";
Dir::State::Lists "$A/lists";
Dir::Cache "$A/cache";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
dpkg -i "$A/${PKG}_1.0_all.deb" >/dev/null || fail "the throwaway package 1.0 installs"
rm -f "$REBOOT_FLAG.ferry-test"
APT_CONFIG=$A/apt.conf start_host
dry=$(q m1 "{\"function\":\"os_update\",\"packages\":[\"$PKG\",\"ferry-test-other\",\"ferry-no-such-package\"],\"dry_run\":true}")
wait_st "$dry" COMPLETED
r=$(res "$dry")
eq "a dry run by name plans 1.0 -> 2.0 (after apt-get update of the local repository)" \
    "$(jq -r '.result.packages[] | [.name, .old_version, .new_version] | @tsv' <<<"$r")" "$PKG	1.0	2.0"
eq "named packages not installed, or in no package list at all, are reported, not installed" \
    "$(jq -r '.result.not_installed | sort | join(",")' <<<"$r")" ferry-no-such-package,ferry-test-other
eq "and the dry run left 1.0 installed" "$(dpkg-query -W -f='${Version}' "$PKG")" 1.0
up=$(q m1 "{\"function\":\"os_update\",\"packages\":[\"$PKG\",\"ferry-no-such-package\"],\"reboot\":true}")
wait_st "$up" COMPLETED
r=$(res "$up")
eq "os_update upgrades the package for real" "$(dpkg-query -W -f='${Version}' "$PKG")" 2.0
eq "the result lists it with its old and new version" "$(jq -r '.result.packages[] | [.name, .old_version, .new_version] | @tsv' <<<"$r")" "$PKG	1.0	2.0"
eq "and the unknown name under not_installed" "$(jq -r '.result.not_installed | join(",")' <<<"$r")" ferry-no-such-package
eq "the update asked for a reboot" "$(jq -r .result.reboot_required <<<"$r")" true
eq "reboot: true reboots through the reboot_command" "$(jq -r .result.reboot <<<"$r")" scheduled
eq "(which here only wrote a file)" "$(cat "$T_DIR/rebooted" 2>/dev/null)" rebooting
contains "apt's output is in the trace" "$(ferry queue trace "$up" --output json | jq -r '.data.timeline[].details')" "Setting up $PKG (2.0)"
again=$(q m1 "{\"function\":\"os_update\",\"packages\":[\"$PKG\"],\"reboot\":false}")
wait_st "$again" COMPLETED
eq "run again, there is nothing to do" "$(res "$again" | jq -r '[.result.count, .result.reboot] | @tsv')" $'0\tnot requested'
stop_host
cleanup_pkg

# --- 3. dnf, through stand-ins ------------------------------------------------------------------
B=$T_DIR/fakebin
mkdir -p "$B"
cat >"$B/dnf" <<EOF
#!/bin/sh
echo "dnf \$*" >>$T_DIR/dnf.log
case "\$*" in
*check-update*--sec-severity=Critical*) printf 'openssl.x86_64   1:3.0.7-27.el9   baseos\n'; exit 100 ;;
*check-update*--security*) printf 'openssl.x86_64   1:3.0.7-27.el9   baseos\ncurl.x86_64   7.76.1-29.el9   baseos\n'; exit 100 ;;
*check-update*) printf '\nbash.x86_64      5.1.8-9.el9      baseos\nopenssl.x86_64   1:3.0.7-27.el9   baseos\ncurl.x86_64   7.76.1-29.el9   baseos\nObsoleting Packages\ngrub2-tools.x86_64  1:2.06-70.el9  baseos\n'; exit 100 ;;
*upgrade*) touch $T_DIR/dnf.upgraded; exit 0 ;;
*) exit 0 ;;
esac
EOF
cat >"$B/rpm" <<EOF
#!/bin/sh
if [ "\$2" = "--quiet" ]; then case "\$3" in bash|openssl|curl) exit 0 ;; *) exit 1 ;; esac; fi
for p; do case "\$p" in
bash.x86_64) [ -e $T_DIR/dnf.upgraded ] && printf 'bash.x86_64\t5.1.8-9.el9\n' || printf 'bash.x86_64\t5.1.8-6.el9\n' ;;
openssl.x86_64) [ -e $T_DIR/dnf.upgraded ] && printf 'openssl.x86_64\t1:3.0.7-27.el9\n' || printf 'openssl.x86_64\t1:3.0.7-24.el9\n' ;;
curl.x86_64) [ -e $T_DIR/dnf.upgraded ] && printf 'curl.x86_64\t7.76.1-29.el9\n' || printf 'curl.x86_64\t7.76.1-26.el9\n' ;;
esac; done
EOF
chmod 755 "$B/dnf" "$B/rpm"
PATH=$B:$PATH start_host
d1=$(q m1 '{"function":"os_update","packages":["security","critical"],"dry_run":true,"package_manager":"dnf"}')
wait_st "$d1" COMPLETED
r=$(res "$d1")
eq "dnf: security and critical classes from check-update" \
    "$(jq -r '[.result.packages[] | [.name, .old_version, .new_version, .security, (.critical // false)] | @tsv] | sort | .[]' <<<"$r")" \
    $'curl.x86_64\t7.76.1-26.el9\t7.76.1-29.el9\ttrue\tfalse\nopenssl.x86_64\t1:3.0.7-24.el9\t1:3.0.7-27.el9\ttrue\ttrue'
d2=$(q m2 '{"function":"os_update","packages":["all","nosuchpkg"],"package_manager":"dnf"}')
wait_st "$d2" COMPLETED
r=$(res "$d2")
eq "dnf: all, without the obsoleting section" "$(jq -r '[.result.packages[].name] | sort | join(" ")' <<<"$r")" "bash.x86_64 curl.x86_64 openssl.x86_64"
eq "dnf: a missing name is reported" "$(jq -r '.result.not_installed | join(",")' <<<"$r")" nosuchpkg
eq "dnf: after the upgrade the new versions are read back from rpm" "$(jq -r '.result.packages[] | select(.name == "bash.x86_64") | [.old_version, .new_version] | @tsv' <<<"$r")" $'5.1.8-6.el9\t5.1.8-9.el9'
contains "dnf: upgrade ran for all" "$(cat "$T_DIR/dnf.log")" "dnf -y upgrade"
stop_host
t_done
