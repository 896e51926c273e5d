#!/usr/bin/env bash
# The seed guide's "all-servers" with a machine group of that name (issue 15, point 3): its
# scripts, extracted from tests/seed/ with `rediacc-cli` replaced by `ferry` and nothing else
# changed, run against a group all-servers of three machines instead of one machine:
#   block-01.sh               its os_update item on all-servers fans out: one os_update per
#                             machine (apt-get is a stand-in with a fixed plan), the parent
#                             COMPLETED with each machine's task id and status
#   setup-backup-schedule.sh  its weekly-full-backup schedule on all-servers fires (the test
#                             clock runs to Sunday 03:00 UTC): one repo_push per machine
. "$(dirname "$0")/../lib.sh"

SEED=$T_DIR/seed
"$FERRY_ROOT/tests/seed/extract.sh" "$FERRY_ROOT/tests/seed/000_fe445159a0569f11.txt" "$SEED" >/dev/null ||
    { fail "the guide's scripts are extracted"; t_done; exit 1; }
T_BRIDGE=prod-bridge write_config 'lease = { poll_ms = 100; };' "workers = { count = 4; path = \"$T_DIR/sandbox:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"; };" \
    'retry = { max_retries = 0; };' 'timeouts = { default = 120; grace = 1; };'
install_plugins
mkdir -p "$T_DIR/bin" "$T_DIR/sandbox"
# The machines' apt-get: a stand-in that answers from a fixed plan (a security update of
# libc6, an update of bash), so the fan-out is tested whatever this machine's package lists
# say; nothing is installed.
cat >"$T_DIR/sandbox/apt-get" <<'EOF'
#!/bin/bash
inst() {
    case $1 in
    libc6) echo "Inst libc6 [2.36-9] (2.36-9+deb12u99 Debian-Security:12/stable-security [amd64])" ;;
    bash) echo "Inst bash [5.2.15-2] (5.2.15-2+b99 Debian:12/stable [amd64])" ;;
    *) echo "Skipping $1, it is not installed and only upgrades are requested." ;;
    esac
}
[[ " $* " == *" update "* ]] && { echo "sandbox: apt-get update skipped"; exit 0; }
if [[ " $* " == *" -s "* && " $* " == *" upgrade "* ]]; then inst libc6; inst bash; exit 0; fi
if [[ " $* " == *" -s "* ]]; then
    names=0
    for a; do [[ $a == --only-upgrade ]] && { names=1; continue; }; ((names)) && inst "$a"; done
    exit 0
fi
echo "sandbox: $*"
EOF
chmod 755 "$T_DIR/sandbox/apt-get"
ln -s "$FERRY_BIN" "$T_DIR/bin/ferry"

ferry create region us-east >/dev/null
ferry create bridge us-east prod-bridge >/dev/null
ferry create team Operations >/dev/null
for m in web-server-01 web-server-02 db-server-01 app-server-01 archive-server; do
    ferry create machine Operations prod-bridge "$m" --vault '{"connection":"local"}' >/dev/null
done
out=$(ferry create machine-group Operations all-servers --members web-server-01,web-server-02,db-server-01)
eq "the group all-servers is created" "$out" "Successfully created machine group all-servers with 3 members"

run_seed() { # run_seed SCRIPT: output in $T_DIR/out
    (cd "$T_DIR" && PATH=$T_DIR/bin:$PATH timeout 60 bash "$SEED/$1") >"$T_DIR/out" 2>"$T_DIR/err"
    RC=$?
}
# parent FUNCTION: the newest group item of FUNCTION on all-servers.
parent() {
    ferry list queue --machine all-servers --output json | jq -r --arg f "$1" \
        '[.data[] | select(.function == $f and .machineName == "all-servers")][0].taskId'
}
res() { ferry list queue --task-id "$1" --output json | jq -c '.data[0].responseVault'; }

PATH=$T_DIR/sandbox:$PATH start_host || { fail "the host starts"; t_done; exit 1; }

# --- block-01.sh: the system update job, on every server ---------------------------------------
run_seed block-01.sh
eq "block-01.sh runs" "$RC" 0
contains "it queues for all-servers" "$(cat "$T_DIR/out")" "Successfully created queue item for machine all-servers with priority 2"
osu=$(parent os_update)
eq "list queue --machine all-servers: the os_update parent and one child per server" \
    "$(ferry list queue --machine all-servers --output json | jq -r --arg p "$osu" \
        '[.data[] | select(.parentTaskId == $p) | .machineName] | sort | join(",")')" \
    "db-server-01,web-server-01,web-server-02"
eq "each child has the guide's vault and priority" \
    "$(ferry list queue --machine all-servers --output json | jq -r --arg p "$osu" \
        '[.data[] | select(.parentTaskId == $p) | [.priority, .vaultContent.reboot, (.vaultContent.packages | join("+"))] | @tsv] | unique | join(";")')" \
    "2	false	security+critical"
wait_status "$osu" COMPLETED 120 || fail "the os_update parent completes" "$(ferry queue trace "$osu")"
r=$(res "$osu")
eq "its response lists each server's task, status and error" \
    "$(jq -r '[.members[] | [.machine, .status, (.taskId | length), .error] | @tsv] | join(";")' <<<"$r")" \
    "web-server-01	COMPLETED	36	;web-server-02	COMPLETED	36	;db-server-01	COMPLETED	36	"
child=$(jq -r '.members[0].taskId' <<<"$r")
eq "a child's own result is the os_update report" "$(res "$child" | jq -r .result.manager)" apt
eq "from the stand-in's plan" "$(res "$child" | jq -r '[.result.packages[].name] | sort | join(",")')" "bash,libc6"

# --- setup-backup-schedule.sh: the weekly full backup of all-servers ---------------------------
# The scheduler's test clock, for the CLI and a new host: 60 times faster, from Sunday
# 2031-06-01 02:59:40 UTC.
stop_host
RATE=60
export FERRY_TEST_CLOCK_RATE=$RATE
export FERRY_TEST_CLOCK_OFFSET_MS=$(($(date -u -d 2031-06-01T02:59:40Z +%s)000 - $(date +%s%3N) * RATE))
run_seed setup-backup-schedule.sh
start_host
eq "setup-backup-schedule.sh exits 0" "$RC" 0
contains "it creates weekly-full-backup on all-servers" "$(cat "$T_DIR/out")" "Successfully created schedule weekly-full-backup"
weekly_fired() { [[ $(parent repo_push) != null ]]; }
wait_for 30 weekly_fired || fail "weekly-full-backup fires at Sunday 03:00" "$(ferry list team-schedules Operations)"
wk=$(parent repo_push)
eq "the fire is the schedule's" "$(ferry list queue --task-id "$wk" --output json | jq -r '.data[0] | [.scheduleName, .scheduleFireTime] | @tsv')" \
    "weekly-full-backup	2031-06-01T03:00:00.000Z"
eq "one repo_push per server" \
    "$(ferry list queue --machine all-servers --output json | jq -r --arg p "$wk" '[.data[] | select(.parentTaskId == $p) | .function] | join(",")')" \
    "repo_push,repo_push,repo_push"
ends() { [[ $(task_status "$wk") == COMPLETED || $(task_status "$wk") == FAILED ]]; }
wait_for 60 ends || fail "the weekly fire ends" "$(ferry queue trace "$wk")"
# No storage s3-weekly-backups exists here: each push fails, and the parent says so per server.
r=$(res "$wk")
eq "the parent lists the three servers" "$(jq -r '[.members[].machine] | join(",")' <<<"$r")" \
    "web-server-01,web-server-02,db-server-01"
eq "with each one's status" "$(jq -r '[.members[] | .status] | unique | join(",")' <<<"$r")" "$(task_status "$wk")"
echo "# weekly-full-backup on all-servers: $(task_status "$wk"); $(jq -r '.members[0].error // "no error"' <<<"$r")"
stop_host
t_done
