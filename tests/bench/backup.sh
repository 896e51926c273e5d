#!/usr/bin/env bash
# Backup benchmark: ferry's repo_push / repo_pull against restic and borg on the same
# generated tree, in the same run. Prints one row per tool and phase with wall time, MB/s
# (tree size / wall time, as restic and borg users quote it) and peak RSS.
#
#   tests/bench/backup.sh            (BUILD=build by default; run from the source tree)
#
# Environment: BENCH_DIR (default a new /tmp/ferry-bench-backup.XXXXXX; removed at the end unless
# BENCH_KEEP=1), BENCH_MB (tree size, default 1024), BENCH_TOOLS (default "ferry restic borg"),
# BENCH_TARGET: local (default: a directory), s3 (moto_server on loopback, signatures checked,
# tests/helpers/moto.sh) or sftp (OpenSSH on loopback, tests/helpers/sshd.sh); ferry and
# restic write to the same server, each into its own bucket or directory.
# BENCH_SOURCE: local (default: the machine is the bridge itself) or ssh (issue 15: the tool
# "ferry-ssh" pushes from and pulls onto a machine reached over OpenSSH on loopback, logging in
# as an unprivileged user, tests/helpers/sshd.sh --key-user; ferry's storage stays local, and
# restic backs the same tree up over SFTP to that server; the default tools are then
# "ferry ferry-ssh restic", so the local and the remote push are measured in the same run).
# BENCH_SSH_USER (default ferry-bench): the SSH machine's account; two runs at once need two
# (each run authorizes its own key and removes the account's datastore at its end).
# BENCH_CPUACCT: a cgroup v1 cpuacct directory (e.g. /sys/fs/cgroup/cpuacct/ferry-bench; made
# when missing) the run moves itself into, so that every process it starts is counted there
# (the host, its workers, ssh, sshd and the far side's tar); ferry's rows then add the CPU
# seconds of their phase, which other load on a shared machine changes less than wall time.
# With BENCH_SOURCE=ssh the SSH machine's sshd (and so its sessions and their tar) is counted
# apart, in $BENCH_CPUACCT-far: "CPU s" is the bridge's side, "far CPU s" the machine's, which
# a real machine would not take from the bridge's cores.
#
# The tree: four 1/10-size files, 200 medium files and about 20,000 small ones (1-32 KiB),
# about 70 % incompressible (random) and 30 % compressible (log-like text). The incremental run
# follows a change of about 1 % of the bytes: 200 small files rewritten, 2 medium files
# appended to, and a block overwritten in the middle of a large file. All runs use a warm
# page cache. Every tool encrypts (ferry: a passphrase in the storage vault; restic always;
# borg: repokey) and uses its default compression.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
FERRY_BIN=$ROOT/$BUILD/ferry
DIR=${BENCH_DIR:-$(mktemp -d /tmp/ferry-bench-backup.XXXXXX)}
MB=${BENCH_MB:-1024}
SOURCE=${BENCH_SOURCE:-local}
if [[ $SOURCE == ssh ]]; then TOOLS=${BENCH_TOOLS:-ferry ferry-ssh restic}; else TOOLS=${BENCH_TOOLS:-ferry restic borg}; fi
export RESTIC_PASSWORD=bench-passphrase BORG_PASSPHRASE=bench-passphrase
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
SRC=$DIR/datastore/repositories/bench
LOCAL_SRC=$SRC
HOST_PID=
MACHINE=box
SSH_USER=${BENCH_SSH_USER:-ferry-bench}
SSHD_HOME=
REMOTE_DS= # the SSH machine's datastore: a directory of this run in the user's home

TARGET=${BENCH_TARGET:-local}
CPUACCT=${BENCH_CPUACCT:-}
cpu_ns() { if [[ -n $CPUACCT ]]; then cat "$CPUACCT${1:-}/cpuacct.usage" 2>/dev/null || echo 0; else echo 0; fi; }
cleanup() {
    [[ -n $HOST_PID ]] && kill "$HOST_PID" 2>/dev/null && wait "$HOST_PID" 2>/dev/null
    case $TARGET in
    s3) "$ROOT/tests/helpers/moto.sh" stop "$DIR/moto" 2>/dev/null ;;
    sftp) "$ROOT/tests/helpers/sshd.sh" stop "$DIR/sshd" 2>/dev/null ;;
    esac
    if [[ $SOURCE == ssh ]]; then
        "$ROOT/tests/helpers/sshd.sh" stop "$DIR/sshd" 2>/dev/null
        [[ -n $REMOTE_DS ]] && rm -rf "$REMOTE_DS"
    fi
    [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$DIR"
    [[ -n $CPUACCT ]] && echo $$ >"${CPUACCT%/*}/cgroup.procs" && rmdir "$CPUACCT" "$CPUACCT-far" 2>/dev/null
}
trap cleanup EXIT

# --- the tree ---------------------------------------------------------------------------------
generate() {
    python3 - "$SRC" "$MB" <<'EOF'
import os, random, sys
root, total_mb = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
total = total_mb << 20
# Log-like lines: timestamps, levels, messages with numbers and ids. Each file draws its
# own sequence from a large pool of lines, so it compresses (about 4:1 with zstd) but does
# not deduplicate against other files.
words = "request served cache miss user login failed retry upstream timeout disk queue " \
        "worker started stopped backup snapshot pushed pulled verify ok error warn".split()
levels = ["INFO", "WARN", "DEBUG", "ERROR"]
pool = []
for i in range(200000):
    msg = " ".join(rnd.choice(words) for _ in range(rnd.randint(3, 9)))
    pool.append(("2026-01-%02d %02d:%02d:%02d.%03d %s [%s] %s id=%s n=%d\n" % (
        rnd.randint(1, 28), rnd.randint(0, 23), rnd.randint(0, 59), rnd.randint(0, 59),
        rnd.randint(0, 999), rnd.choice(levels), rnd.choice(words), msg,
        os.urandom(6).hex(), rnd.randint(0, 1 << 20))).encode())
def text(n):
    out = bytearray()
    while len(out) < n:
        out += b"".join(rnd.choices(pool, k=1000))
    return bytes(out[:n])
def data(n, random_share):
    return os.urandom(n) if rnd.random() < random_share else text(n)
def put(path, payload):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(payload)
big = total // 10
for i in range(4):  # 3 random, 1 text
    put(f"{root}/big/file{i}.bin", os.urandom(big) if i < 3 else text(big))
mid_total = total * 3 // 10
for i in range(200):
    put(f"{root}/mid/d{i % 10}/m{i}.dat", data(mid_total // 200, 0.66))
small_left = total - 4 * big - mid_total
i = 0
while small_left > 0:
    n = min(small_left, rnd.randint(1024, 32768))
    put(f"{root}/small/s{i % 20:02d}/t{(i // 20) % 10}/n{i}.txt", data(n, 0.70))
    small_left -= n
    i += 1
print(i + 204)
EOF
}

change_one_percent() {
    python3 - "$SRC" "$MB" <<'EOF'
import os, sys, zlib
root, total_mb = sys.argv[1], int(sys.argv[2])
total = total_mb << 20
block = total // 100 - 2 * 65536 - 200 * 16384
with open(f"{root}/big/file1.bin", "r+b") as f:  # overwrite in the middle
    f.seek(os.path.getsize(f"{root}/big/file1.bin") // 2)
    f.write(os.urandom(max(block, 4096)))
for i in range(2):
    with open(f"{root}/mid/d{i}/m{i}.dat", "ab") as f:
        f.write(os.urandom(65536))
n = 0
for dirpath, _, names in sorted(os.walk(f"{root}/small")):
    for name in sorted(names):
        if n < 200 and zlib.crc32(name.encode()) % 50 == 0:
            with open(os.path.join(dirpath, name), "wb") as f:
                f.write(os.urandom(16384))
            n += 1
EOF
}

# --- measuring ----------------------------------------------------------------------------------
TREE_BYTES=0
ROWS=()
# row TOOL PHASE SECONDS RSS_KB [CPU_SECONDS [FAR_CPU_SECONDS]]
row() {
    local mbs cpu=
    mbs=$(awk -v b="$TREE_BYTES" -v s="$3" 'BEGIN { printf "%.0f", (s > 0 ? b / 1e6 / s : 0) }')
    [[ -n $CPUACCT ]] && cpu=$(printf ' %8s %10s' "${5:--}" "${6:--}")
    ROWS+=("$(printf '%-9s %-12s %8.2f %9s %10.0f' "$1" "$2" "$3" "$mbs" "$(awk -v k="$4" 'BEGIN { print k / 1024 }')")$cpu")
    echo "# $1 $2: $3 s, $mbs MB/s, $(($4 / 1024)) MiB${5:+, CPU $5 s}${6:+, far CPU $6 s}" >&2
}
# timed OUTFILE CMD...: runs CMD, writes "seconds rss_kb" to OUTFILE
timed() {
    local out=$1; shift
    /usr/bin/time -f "%e %M" -o "$out" "$@" >"$out.log" 2>&1
}
# Flushes earlier writes (so no tool pays for another's writeback), then reads the tree once.
warm() { sync; find "$SRC" -type f -exec cat {} + >/dev/null; }

# --- ferry --------------------------------------------------------------------------------------
ferry() { FERRY_CONFIG=$DIR/ferry.conf "$FERRY_BIN" "$@"; }
ferry_setup() {
    # Each ferry tool starts from an empty store and storage: nothing dedups against another's.
    rm -rf "$DIR/ferry.db" "$DIR/ferry.db-wal" "$DIR/ferry.db-shm" "$DIR/ferry-storage"
    mkdir -p "$DIR/plugins" "$DIR/ferry-storage"
    chmod 755 "$DIR/plugins"
    cp "$ROOT/$BUILD"/plugins/repo.so "$DIR/plugins/"
    chmod 644 "$DIR/plugins/repo.so"
    cat >"$DIR/ferry.conf" <<EOF
bridge = "bench";
store = { path = "$DIR/ferry.db"; synchronous = "normal"; };
plugins = { dir = "$DIR/plugins"; };
workers = { count = 2; prefork = 1; max_jobs = 1; };
lease = { poll_ms = 50; };
timeouts = { default = 7200; };
EOF
    ferry create region bench >/dev/null && ferry create bridge bench bench >/dev/null &&
        ferry create team Bench >/dev/null &&
        ferry create machine Bench bench box --vault "{\"connection\":\"local\",\"datastore\":\"$DIR/datastore\"}" >/dev/null &&
        ferry create storage Bench store --vault "$(storage_vault)" >/dev/null ||
        { echo "ferry setup failed" >&2; return 1; }
    if [[ $SOURCE == ssh ]]; then
        ferry create machine Bench bench far --vault "$(jq -cn --rawfile key "$SSHD_CLIENT_KEY" \
            --arg hk "$SSHD_HOST_KEY" --arg ds "$REMOTE_DS" --argjson port "$SSHD_PORT" \
            --arg user "$SSHD_USER" '{ip:"127.0.0.1", ssh_port:$port, user:$user, datastore:$ds,
                SSH_PRIVATE_KEY:$key, host_public_key:$hk}')" >/dev/null ||
            { echo "ferry setup (ssh machine) failed" >&2; return 1; }
    fi
    # The binary itself, not the ferry function: $! must be the host's pid, or the host
    # outlives the bench (a function in the background runs in a subshell, and $! is the
    # subshell's).
    FERRY_CONFIG=$DIR/ferry.conf "$FERRY_BIN" serve >"$DIR/host.log" 2>&1 &
    HOST_PID=$!
    for _ in $(seq 100); do grep -qs "serving bridge" "$DIR/host.log" && return 0; sleep 0.1; done
    echo "ferry host did not start" >&2
    return 1
}
# ferry_job PHASE VAULT: runs one queue item and records wall time and the worker's peak RSS
ferry_job() {
    local start end out cpu0 cpu1 far0 far1
    cpu0=$(cpu_ns) far0=$(cpu_ns -far)
    start=$(date +%s.%N)
    out=$(ferry create queue-item Bench "$MACHINE" bench --vault "$2" --wait --timeout 3600 --output json)
    end=$(date +%s.%N)
    cpu1=$(cpu_ns) far1=$(cpu_ns -far)
    local status rss
    status=$(jq -r '.data[0].status' <<<"$out" 2>/dev/null)
    if [[ $status != COMPLETED ]]; then
        echo "ferry $1 failed: $out" >&2
        return 1
    fi
    rss=$(jq -r '.data[0].responseVault.result | (.peak_rss_kb // .pushed[0].peak_rss_kb)' <<<"$out")
    row "$TOOL" "$1" "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')" "$rss" \
        "$([[ -n $CPUACCT ]] && awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')" \
        "$([[ -n $CPUACCT && $SOURCE == ssh ]] && awk -v a="$far0" -v b="$far1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')"
}
# ferry_jobs DATASTORE: a first push, an incremental push after a 1 % change, and a pull into
# a new repository of DATASTORE, on $MACHINE. change_one_percent rewrites files in place, so
# their owner stays (a chown would change every ctime and defeat change detection).
ferry_jobs() {
    ferry_setup || return 1
    warm
    ferry_job first '{"function":"repo_push","repository":"bench","storage":"store","snapshot_id":"first"}' || return 1
    change_one_percent
    warm
    ferry_job incremental '{"function":"repo_push","repository":"bench","storage":"store","snapshot_id":"second"}' || return 1
    rm -rf "$1/repositories/restored"
    ferry_job restore '{"function":"repo_pull","repository":"restored","from_repository":"bench","storage":"store","verify":false}' || return 1
    kill "$HOST_PID" && wait "$HOST_PID" 2>/dev/null
    HOST_PID=
    rm -rf "$1/repositories/restored"
}
run_ferry() { MACHINE=box TOOL=ferry ferry_jobs "$DIR/datastore"; }
# The same jobs for a machine reached over SSH (BENCH_SOURCE=ssh): the tree is in the user's
# datastore, the restore goes back onto that machine.
run_ferry_ssh() {
    [[ $SOURCE == ssh ]] || { echo "ferry-ssh needs BENCH_SOURCE=ssh" >&2; return 1; }
    MACHINE=far TOOL=ferry-ssh ferry_jobs "$REMOTE_DS"
}

# --- restic and borg --------------------------------------------------------------------------
measure() { # TOOL PHASE CMD...
    local tool=$1 phase=$2; shift 2
    if ! timed "$DIR/t" "$@"; then
        echo "$tool $phase failed:" >&2
        tail -5 "$DIR/t.log" >&2
        return 1
    fi
    read -r secs rss <"$DIR/t"
    row "$tool" "$phase" "$secs" "$rss"
}
run_restic() {
    command -v restic >/dev/null || { echo "restic is not installed (scripts/deps.sh bench)" >&2; return 1; }
    local repo=$DIR/restic-repo target=$DIR/restic-restore
    local -a opts=()
    local restic_target=$TARGET
    [[ $SOURCE == ssh ]] && restic_target=sftp
    case $restic_target in
    s3) repo=s3:http://127.0.0.1:$PORT/restic
        "$ROOT/tests/helpers/moto.sh" bucket "$DIR/moto" restic >/dev/null || return 1 ;;
    sftp) repo=sftp:root@127.0.0.1:$DIR/sftp-restic
        [[ $SOURCE == ssh ]] && PORT=$SSHD_PORT
        opts=(-o "sftp.command=ssh -p $PORT -i $DIR/sshd/client_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@127.0.0.1 -s sftp") ;;
    esac
    local -a R=(restic ${opts[@]+"${opts[@]}"})
    "${R[@]}" init --repo "$repo" >/dev/null 2>&1 || return 1
    warm
    measure restic first "${R[@]}" --repo "$repo" backup --quiet "$SRC" || return 1
    change_one_percent
    warm
    measure restic incremental "${R[@]}" --repo "$repo" backup --quiet "$SRC" || return 1
    rm -rf "$target"
    measure restic restore "${R[@]}" --repo "$repo" restore latest --quiet --target "$target" || return 1
    rm -rf "$target" "$repo"
}
run_borg() {
    command -v borg >/dev/null || { echo "borg is not installed (scripts/deps.sh bench)" >&2; return 1; }
    local repo=$DIR/borg-repo target=$DIR/borg-restore
    borg init --encryption=repokey "$repo" >/dev/null 2>&1 || return 1
    warm
    measure borg first borg create "$repo::first" "$SRC" || return 1
    change_one_percent
    warm
    measure borg incremental borg create "$repo::second" "$SRC" || return 1
    rm -rf "$target" && mkdir -p "$target"
    measure borg restore sh -c 'cd "$1" && borg extract "$2"' sh "$target" "$repo::second" || return 1
    rm -rf "$target" "$repo"
}

# The storage server, when remote: both tools write to it over loopback.
PORT=
start_target() {
    case $TARGET in
    local) ;;
    s3)
        PORT=$("$ROOT/tests/helpers/moto.sh" start "$DIR/moto") &&
            "$ROOT/tests/helpers/moto.sh" bucket "$DIR/moto" ferry >/dev/null || return 1
        export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
        AWS_ACCESS_KEY_ID=$(cat "$DIR/moto/access_key_id")
        AWS_SECRET_ACCESS_KEY=$(cat "$DIR/moto/secret_access_key") ;;
    sftp)
        PORT=$("$ROOT/tests/helpers/sshd.sh" start "$DIR/sshd") || return 1
        mkdir -p "$DIR/sftp-ferry" ;;
    *) echo "BENCH_TARGET must be local, s3 or sftp" >&2; return 1 ;;
    esac
}
storage_vault() {
    case $TARGET in
    local) jq -nc --arg p "$DIR/ferry-storage" '{provider:"local",path:$p,passphrase:"bench-passphrase"}' ;;
    s3) jq -nc --arg e "http://127.0.0.1:$PORT" --arg k "$AWS_ACCESS_KEY_ID" --arg s "$AWS_SECRET_ACCESS_KEY" \
        '{provider:"s3",endpoint:$e,bucket:"ferry",access_key_id:$k,secret_access_key:$s,passphrase:"bench-passphrase"}' ;;
    sftp) jq -nc --arg p "$DIR/sftp-ferry" --arg port "$PORT" --rawfile key "$DIR/sshd/client_key" \
        --arg hk "$(cut -d' ' -f1,2 "$DIR/sshd/host_key.pub")" \
        '{provider:"sftp",host:"127.0.0.1",port:($port|tonumber),user:"root",path:$p,private_key:$key,host_public_key:$hk,passphrase:"bench-passphrase"}' ;;
    esac
}

rm -rf "$DIR"
mkdir -p "$DIR"
if [[ -n $CPUACCT ]]; then
    mkdir -p "$CPUACCT" && echo $$ >"$CPUACCT/cgroup.procs" ||
        { echo "# cannot count CPU in $CPUACCT (a cgroup v1 cpuacct directory)" >&2; exit 1; }
fi
start_target || { echo "# the $TARGET server did not start" >&2; exit 1; }
if [[ $SOURCE == ssh ]]; then
    "$ROOT/tests/helpers/sshd.sh" start "$DIR/sshd" --key-user "$SSH_USER" >/dev/null ||
        { echo "# the SSH machine's server did not start" >&2; exit 1; }
    . "$DIR/sshd/env"
    if [[ -n $CPUACCT ]]; then # the machine's side is counted apart
        mkdir -p "$CPUACCT-far" && cat "$DIR/sshd/sshd.pid" >"$CPUACCT-far/cgroup.procs" ||
            { echo "# cannot count the SSH machine's CPU in $CPUACCT-far" >&2; exit 1; }
    fi
    REMOTE_DS=$SSHD_HOME/ds-${DIR##*/}
    rm -rf "$REMOTE_DS"
    install -d -o "$SSH_USER" -m 0700 "$REMOTE_DS" "$REMOTE_DS/repositories"
fi
echo "# generating a ${MB} MiB tree in $SRC" >&2
files=$(generate) || exit 1
TREE_BYTES=$(du -sb --apparent-size "$SRC" | cut -f1)
cp -a "$SRC" "$DIR/pristine"
echo "# $files files, $TREE_BYTES bytes; $(nproc) cores" >&2
for tool in $TOOLS; do
    SRC=$LOCAL_SRC
    [[ $tool == ferry-ssh ]] && SRC=$REMOTE_DS/repositories/bench
    rm -rf "$SRC" && cp -a "$DIR/pristine" "$SRC"
    [[ $tool == ferry-ssh ]] && chown -R "$SSH_USER:" "$SRC"
    "run_${tool//-/_}" || echo "# $tool: skipped after an error" >&2
done

where="$TARGET storage"
[[ $SOURCE == ssh ]] && where="ferry-ssh: a machine over SSH, local storage; restic: sftp storage"
echo "backup benchmark ($where): $files files, $((TREE_BYTES / 1048576)) MiB, $(nproc) cores; MB/s = tree size / wall time"
printf '%-9s %-12s %8s %9s %10s%s\n' tool phase seconds MB/s "RSS MiB" "${CPUACCT:+    CPU s  far CPU s}"
for r in "${ROWS[@]}"; do echo "$r"; done
# Rows for the summary table of tests/bench/run.sh: ferry's MB/s beside restic's per phase.
if [[ -n ${BENCH_SUMMARY:-} && $SOURCE == ssh ]]; then
    # From an SSH machine: ferry-ssh beside restic over SFTP, and the first push beside
    # ferry's own local first push of the same tree in this run (issue 15: at least half).
    for phase in first incremental restore; do
        f=$(printf '%s\n' "${ROWS[@]}" | awk -v p="$phase" '$1 == "ferry-ssh" && $2 == p { print $4 }')
        r=$(printf '%s\n' "${ROWS[@]}" | awk -v p="$phase" '$1 == "restic" && $2 == p { print $4 }')
        l=$(printf '%s\n' "${ROWS[@]}" | awk -v p="$phase" '$1 == "ferry" && $2 == p { print $4 }')
        [[ -n $f ]] || continue
        ratio=$(awk -v a="$f" -v b="$r" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }')
        target=- verdict=-
        if [[ $phase == first && -n $l ]]; then
            target=">= 0.5 x local $l"
            verdict=$(awk -v a="$f" -v b="$l" 'BEGIN { print (a >= 0.5 * b ? "PASS" : "MISS") }')
        fi
        echo "backup $phase, SSH machine, $((TREE_BYTES / 1048576)) MiB (MB/s)|$f|${r:--}|$ratio|$target|$verdict" >>"$BENCH_SUMMARY"
    done
elif [[ -n ${BENCH_SUMMARY:-} ]]; then
    for phase in first incremental restore; do
        f=$(printf '%s\n' "${ROWS[@]}" | awk -v p="$phase" '$1 == "ferry" && $2 == p { print $4 }')
        r=$(printf '%s\n' "${ROWS[@]}" | awk -v p="$phase" '$1 == "restic" && $2 == p { print $4 }')
        [[ -n $f ]] || continue
        ratio=$(awk -v a="$f" -v b="$r" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }')
        echo "backup $phase, $TARGET, $((TREE_BYTES / 1048576)) MiB (MB/s)|$f|${r:--}|$ratio|-|-" >>"$BENCH_SUMMARY"
    done
fi
