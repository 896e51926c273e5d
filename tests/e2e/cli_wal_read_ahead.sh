#!/usr/bin/env bash
# A command is usually the first to open the store since the last one closed it, so its
# first read rebuilds the WAL index from the whole log the commands before it left
# (store_sqlite.c, SHORT_WAL_FRAMES). It reads that log many frames at a time
# (sqlite_vfs.c, wal_read), not one pread of a 4 KiB page and its header per frame, and
# finds every item.
. "$(dirname "$0")/../lib.sh"
only_sqlite "the WAL is SQLite's"
need_strace
DB=$T_DIR/ferry.db
write_config
install_plugins
setup_local_machine Ops box1
# The frames of the log that a recovery finds: those whose header carries the log header's
# salts (a checkpoint empties the log by zeroing its header; frames of an earlier log stay
# behind the valid ones).
valid_frames() {
    local salt n=0
    salt=$(od -An -v -tx1 -j 16 -N 8 "$DB-wal" 2>/dev/null | tr -d ' \n')
    [[ -n $salt && $salt != 0000000000000000 ]] || { echo 0; return; }
    while [[ $(od -An -v -tx1 -j $((32 + n * 4120 + 8)) -N 8 "$DB-wal" | tr -d ' \n') == "$salt" ]]; do
        n=$((n + 1))
    done
    echo "$n"
}
# About 12 frames a create (the first one also probes the plugins and writes the descriptor
# cache); a command that leaves 128 or more checkpoints the log. Creates until the log holds
# 30 frames or more.
frames=0 made=0
while [[ $frames -lt 30 && $made -lt 20 ]]; do
    ferry create queue-item Ops box1 local --vault '{"function":"hello"}' >/dev/null 2>&1 || fail "a create failed"
    made=$((made + 1))
    frames=$(valid_frames)
done
[[ $frames -ge 30 ]] && pass "the commands left a log of $frames frames" || fail "the commands left a log" "$frames frames"
ASAN_OPTIONS=${ASAN_OPTIONS//detect_leaks=1/detect_leaks=0} strace -o "$T_DIR/trace" -e trace=openat,pread64 \
    "$FERRY_BIN" create queue-item Ops box1 local --vault '{"function":"hello"}' >/dev/null 2>&1 ||
    fail "the traced create failed"
# The WAL's descriptor, then its reads: a frame is 4,120 bytes (a 24-byte header, a page).
wal_fd=$(awk '/openat\(.*ferry\.db-wal"/ { print $NF; exit }' "$T_DIR/trace")
frame_reads=$(awk -v fd="$wal_fd" '$0 ~ "^pread64\\(" fd ", " && / 4120, / { n++ } END { print n + 0 }' "$T_DIR/trace")
wal_reads=$(awk -v fd="$wal_fd" '$0 ~ "^pread64\\(" fd ", " { n++ } END { print n + 0 }' "$T_DIR/trace")
eq "the create read no frame of the log alone" "$frame_reads" 0
[[ $wal_reads -ge 1 && $wal_reads -le $((frames / 5 + 20)) ]] &&
    pass "... but $wal_reads reads of the WAL for $frames frames" ||
    fail "... few reads of the WAL" "$wal_reads reads for $frames frames" "$(grep pread64 "$T_DIR/trace" | head -40)"
eq "every item is there" "$(sqlite3 -cmd '.timeout 5000' "$DB" "SELECT count(*) FROM queue_items")" $((made + 1))
eq "the store is intact" "$(sqlite3 -cmd '.timeout 5000' "$DB" 'PRAGMA integrity_check')" ok
t_done
