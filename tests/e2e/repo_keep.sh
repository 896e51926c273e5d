#!/usr/bin/env bash
# Keep policies (issue 15, point 2): repo_push with keep_* thins its own group (its
# repository's snapshots from its machine) by restic's rules, in UTC with ISO weeks, and
# lists every decision with its reasons; gc then frees what only the removed snapshots used;
# another machine's snapshots of the same repository and another repository's stay. repo_gc
# applies a policy by hand, narrowed by repository and from_machine, with a dry run.
# Bad counts are refused in one line. Snapshot times are set by rewriting the manifests of a
# storage without a passphrase (seal(m) = m, docs/storage-format.md) before any collection
# has counted them: nothing in ferry itself can backdate a snapshot.
. "$(dirname "$0")/../lib.sh"

write_config 'lease = { poll_ms = 100; };' 'plugin = { repo = { gc_grace_hours = 0.0; }; };'
install_plugins
DS=$T_DIR/ds DS2=$T_DIR/ds2 ST=$T_DIR/st
ferry create region r >/dev/null && ferry create bridge r local >/dev/null && ferry create team Ops >/dev/null
ferry create machine Ops local box --vault "{\"connection\":\"local\",\"datastore\":\"$DS\"}" >/dev/null
ferry create machine Ops local box2 --vault "{\"connection\":\"local\",\"datastore\":\"$DS2\"}" >/dev/null
ferry create storage Ops st --vault "{\"provider\":\"local\",\"path\":\"$ST\"}" >/dev/null
start_host

# job MACHINE VAULT: runs an item and prints its response vault.
job() {
    local task
    task=$(ferry create queue-item Ops "$1" local --vault "$2" --output json | jq -r '.data[0].taskId')
    ferry queue wait "$task" --timeout 120 >/dev/null 2>&1
    ferry list queue --task-id "$task" --output json | jq -c '.data[0].responseVault'
}
status() { jq -r .status <<<"$1"; }
res() { jq -r ".result$2" <<<"$1"; }
err() { jq -r ".error$2" <<<"$1"; }
at() { date -u -d "$1" +%s; }
# push MACHINE REPOSITORY ID TIME: a push without retention, then the manifest's time set.
push() {
    local out f
    out=$(job "$1" "{\"function\":\"repo_push\",\"repository\":\"$2\",\"storage\":\"st\",\"snapshot_id\":\"$3\"}")
    [[ $(status "$out") == COMPLETED ]] || fail "push $2/$3 from $1" "$out"
    f=$ST/snapshots/$2/$3
    jq -c --argjson t "$(at "$4")" '.unix_time = $t | .unix_time_ns = $t * 1000000000' "$f" >"$f.new" &&
        mv "$f.new" "$f"
}
ids() { ls "$ST/snapshots/$1" | sort | paste -sd, -; }
reasons() { jq -r --arg id "$2" ".result.retention.policy.keep[] | select(.id == \$id) | .reasons | join(\",\")" <<<"$1"; }

# --- a calendar: web on box, web on box2, db on box -------------------------------------------
mkdir -p "$DS/repositories/web" "$DS2/repositories/web" "$DS/repositories/db"
echo shared >"$DS/repositories/web/keep.txt"
head -c 1500000 /dev/urandom >"$DS/repositories/web/old.bin" # only in c01
push box web c01 "2025-01-05 10:00"
rm "$DS/repositories/web/old.bin"
n=2
for t in "2025-02-10 09:00" "2025-02-28 23:00" "2025-03-03 08:00" "2025-03-09 20:00" \
    "2025-03-10 07:00" "2025-03-10 19:00" "2025-03-11 06:00"; do
    echo "$t" >"$DS/repositories/web/when.txt"
    push box web "c0$n" "$t"
    n=$((n + 1))
done
echo other >"$DS2/repositories/web/f"
push box2 web o1 "2025-01-01 12:00"
echo other2 >"$DS2/repositories/web/f"
push box2 web o2 "2025-01-02 12:00"
echo db >"$DS/repositories/db/f"
push box db d1 "2025-01-01 12:00"
echo db2 >"$DS/repositories/db/f"
push box db d2 "2025-01-03 12:00"
eq "the calendar is in the storage" "$(ids web)" c01,c02,c03,c04,c05,c06,c07,c08,o1,o2

# --- a dry run by hand ---------------------------------------------------------------------------
POLICY='"keep_daily":3,"keep_weekly":3,"keep_monthly":3'
out=$(job box "{\"function\":\"repo_gc\",\"storage\":\"st\",\"repository\":\"web\",\"from_machine\":\"box\",$POLICY,\"dry_run\":true}")
eq "a dry run completes" "$(status "$out")" COMPLETED
eq "it lists what the policy would remove" "$(res "$out" '.policy.remove | map(.id) | sort | join(",")')" c02,c04,c06
eq "and why each one stays" "$(res "$out" '.policy.keep[] | select(.id == "c01") | .reasons | join(",")')" \
    "monthly snapshot"
eq "naming the rules" "$(res "$out" .policy.rules)" "keep 3 daily, 3 weekly, 3 monthly snapshots"
eq "only web from box is decided" "$(res "$out" '.policy | [.keep[], .remove[]] | map(.machine + "/" + .repository) | unique | join(",")')" box/web
eq "and nothing is removed" "$(ids web)" c01,c02,c03,c04,c05,c06,c07,c08,o1,o2

# --- a push with the policy --------------------------------------------------------------------
echo now >"$DS/repositories/web/when.txt"
out=$(job box "{\"function\":\"repo_push\",\"repository\":\"web\",\"storage\":\"st\",\"snapshot_id\":\"c09\",$POLICY}")
eq "a push with keep_* completes" "$(status "$out")" COMPLETED
# Newest first: c09 (now), c08 (Tue 11 Mar), c07 and c06 (Mon 10 Mar), c05 (Sun 9 Mar), c04
# (Mon 3 Mar), c03 (28 Feb), c02 (10 Feb), c01 (5 Jan). Daily: c09 c08 c07. ISO weeks: c09's,
# 10-16 Mar (c08), 3-9 Mar (c05: a week starting on Sunday would have taken c04 instead).
# Monthly: c09, c08, c03.
eq "it removes what no rule keeps" "$(res "$out" '.retention.policy.remove | map(.id) | sort | join(",")')" c01,c02,c04,c06
eq "the storage keeps the rest, and the other groups" "$(ids web)" c03,c05,c07,c08,c09,o1,o2
eq "db is untouched" "$(ids db)" d1,d2
eq "the new snapshot is daily, weekly and monthly" "$(reasons "$out" c09)" \
    "daily snapshot,weekly snapshot,monthly snapshot"
eq "the Sunday is the ISO week's" "$(reasons "$out" c05)" "weekly snapshot"
eq "the same day's later snapshot is the daily" "$(reasons "$out" c07)" "daily snapshot"
eq "February's last is the monthly" "$(reasons "$out" c03)" "monthly snapshot"
eq "removed snapshots say why" "$(res "$out" '.retention.policy.remove[0].reasons | join(",")')" \
    "not kept by the policy"
eq "no expiry is removed as such" "$(res "$out" '.retention.expired | length')" 0
eq "a push with keep_* records no expiry" "$(jq .expires_unix "$ST/snapshots/web/c09")" 0
freed=$(res "$out" .retention.bytes_freed)
[[ $freed -ge 1500000 ]] && pass "gc frees what only the removed snapshots used ($freed bytes)" ||
    fail "gc frees what only the removed snapshots used" "$out"
eq "the storage verifies" "$(status "$(job box '{"function":"repo_verify","storage":"st"}')")" COMPLETED
out=$(job box '{"function":"repo_pull","repository":"web-back","from_repository":"web","storage":"st","restore_point":"c03"}')
eq "a kept snapshot restores" "$(cat "$DS/repositories/web-back/when.txt")" "2025-02-28 23:00"
out=$(job box2 '{"function":"repo_pull","repository":"web","storage":"st"}')
eq "box2's latest web is its own" "$(cat "$DS2/repositories/web/f")" other2

# --- the same policy again changes nothing -----------------------------------------------------
out=$(job box "{\"function\":\"repo_gc\",\"storage\":\"st\",\"repository\":\"web\",\"from_machine\":\"box\",$POLICY}")
eq "a policy applied twice removes nothing more" "$(res "$out" '.policy.remove | length')" 0

# --- repo_gc by hand on another machine's group ------------------------------------------------
out=$(job box '{"function":"repo_gc","storage":"st","from_machine":"box2","keep_last":1}')
eq "repo_gc with from_machine thins that machine's groups" "$(res "$out" '.policy.remove | map(.snapshot) | join(",")')" web/o1
eq "with the reason kept" "$(res "$out" '.policy.keep | map(.id + ":" + (.reasons | join("+"))) | join(",")')" "o2:last snapshot"
eq "the other groups are untouched" "$(ids web)/$(ids db)" c03,c05,c07,c08,c09,o2/d1,d2

# --- without filters, every group keeps its newest -----------------------------------------------
# A state written before the machines were recorded in it (no "FGM1" trailer): the machines
# are read from the manifests again.
python3 - "$ST/gc/state" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
cut = data.rfind(b"FGM1")
assert cut > 0
open(sys.argv[1], "wb").write(data[:cut])
PY
out=$(job box '{"function":"repo_gc","storage":"st","keep_last":1,"dry_run":true}')
eq "keep_last 1 over the storage keeps each group's newest" "$(res "$out" '.policy.keep | map(.snapshot) | sort | join(",")')" \
    db/d2,web/c09,web/o2

# --- retention_days with keep_* is keep-within, from the group's newest -------------------------
out=$(job box '{"function":"repo_gc","storage":"st","repository":"web","from_machine":"box","keep_last":1,"retention_days":200,"dry_run":true}')
eq "snapshots within 200 days of the newest (now) are kept" "$(res "$out" '.policy.remove | map(.id) | sort | join(",")')" c03,c05,c07,c08

# --- bad policies: one line, nothing removed -----------------------------------------------------
for bad in '"keep_daily":0' '"keep_weekly":-2' '"retention_days":-1'; do
    out=$(job box "{\"function\":\"repo_push\",\"repository\":\"web\",\"storage\":\"st\",$bad}")
    eq "repo_push refuses {$bad}" "$(err "$out" .outcome)/$(err "$out" .code)" INVALID/bad_parameter
done
contains "naming the parameter and what it takes" "$(err "$(job box '{"function":"repo_gc","storage":"st","keep_monthly":0}')" .message)" \
    "keep_monthly must be an integer, at least 1, or -1 for all"
msg=$(ferry create queue-item Ops box local --vault '{"function":"repo_gc","storage":"st","keep_last":1.5}' 2>&1)
rc=$?
[[ $rc -ne 0 && $(wc -l <<<"$msg") -eq 1 && $msg == *keep_last* ]] && pass "a fractional count is refused at create time ($msg)" ||
    fail "a fractional count is refused at create time" "rc $rc: $msg"
out=$(job box '{"function":"repo_gc","storage":"st","repository":"web"}')
eq "a filter without a policy is refused" "$(err "$out" .outcome)" INVALID
eq "nothing was removed" "$(ids web)/$(ids db)" c03,c05,c07,c08,c09,o2/d1,d2

# --- -1 keeps every bucket ---------------------------------------------------------------------
out=$(job box '{"function":"repo_gc","storage":"st","repository":"web","from_machine":"box","keep_monthly":-1,"dry_run":true}')
eq "keep_monthly -1 keeps one per month" "$(res "$out" '.policy.remove | map(.id) | sort | join(",")')" c05,c07
eq "described as all" "$(res "$out" .policy.rules)" "keep all monthly snapshots"

# --- a machine's newest snapshot stays when another machine pushes the same repository ----------
echo e1 >"$DS2/repositories/web/f"
job box2 '{"function":"repo_push","repository":"web","storage":"st","snapshot_id":"e1","retention_days":0.00002}' >/dev/null
sleep 2
out=$(job box '{"function":"repo_push","repository":"web","storage":"st","snapshot_id":"c10","retention_days":30}')
eq "box2's expired last backup stays while box pushes web" "$(res "$out" '.retention.expired | length')" 0
check "e1 is still in the storage" test -e "$ST/snapshots/web/e1"
out=$(job box2 '{"function":"repo_push","repository":"web","storage":"st","snapshot_id":"e2","retention_days":30}')
eq "it goes once box2 pushes again" "$(res "$out" '.retention.expired | join(",")')" web/e1
stop_host
t_done
