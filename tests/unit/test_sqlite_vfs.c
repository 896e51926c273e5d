/*
 * Unit tests for host/store/sqlite_vfs.c, the VFS that writes a commit's WAL frames at once.
 *
 * A recording VFS ("rec", below) sits between the VFS under test and unix: it counts the
 * writes that reach each WAL file, can make them fail, and at every other call on a WAL file
 * and every xShmBarrier/xShmLock of a database notes the WAL file's size and a hash of its
 * bytes. The same workload, from the same random seed, runs once through "ferry" (over rec)
 * and once through rec alone: the notes must be the same, call for call. That is the
 * promise of the shim: whenever SQLite or another connection could look at the WAL, and at
 * every sync, the file holds exactly what it holds without the shim.
 * Then: the write count of a commit, other connections and a second process reading every
 * commit at once (synchronous FULL and NORMAL, across checkpoints and log restarts), a child
 * killed at random moments, failing writes (injected, and a real file size limit), and a WAL
 * file cut short or with garbage after it between connections.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sqlite_vfs.h"
#include "util.h"

/* ---- the recording VFS ----------------------------------------------------------------- */

struct rec_file {
    sqlite3_file base;
    sqlite3_file *real;
    int is_wal;
};
#define REC_REAL_OFFSET ((sizeof(struct rec_file) + 15) & ~(size_t)15)

struct note {
    char op;
    int64_t size;
    uint64_t hash;
};

static struct {
    sqlite3_vfs *unix_vfs;
    long wal_writes; /* writes that reached a WAL file */
    long db_cuts;    /* truncations that reached a main database file */
    int fail_code;   /* when set, WAL writes fail with it */
    int recording;
    struct note *notes;
    size_t n_notes, cap_notes;
    sqlite3_file *last_wal; /* the WAL most recently opened, for notes from the database */
} rec;

static void note_wal(char op, sqlite3_file *real)
{
    if (!rec.recording || real == NULL)
        return;
    sqlite3_int64 size = 0;
    assert_int_equal(real->pMethods->xFileSize(real, &size), SQLITE_OK);
    uint64_t h = FNV1A_BASIS;
    unsigned char buf[65536];
    for (sqlite3_int64 at = 0; at < size; at += (sqlite3_int64)sizeof(buf)) {
        int n = size - at < (sqlite3_int64)sizeof(buf) ? (int)(size - at) : (int)sizeof(buf);
        assert_int_equal(real->pMethods->xRead(real, buf, n, at), SQLITE_OK);
        for (int i = 0; i < n; i++)
            h = (h ^ buf[i]) * FNV1A_PRIME;
    }
    if (rec.n_notes == rec.cap_notes) {
        rec.cap_notes = rec.cap_notes ? 2 * rec.cap_notes : 1024;
        rec.notes = realloc(rec.notes, rec.cap_notes * sizeof(*rec.notes));
        assert_non_null(rec.notes);
    }
    rec.notes[rec.n_notes++] = (struct note){op, size, h};
}

static sqlite3_file *rreal(sqlite3_file *f)
{
    return ((struct rec_file *)f)->real;
}

static int is_wal(sqlite3_file *f)
{
    return ((struct rec_file *)f)->is_wal;
}

static int rec_close(sqlite3_file *f)
{
    if (is_wal(f)) {
        note_wal('c', rreal(f));
        if (rec.last_wal == rreal(f))
            rec.last_wal = NULL;
    }
    return rreal(f)->pMethods->xClose(rreal(f));
}

static int rec_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o)
{
    if (is_wal(f))
        note_wal('r', rreal(f));
    return rreal(f)->pMethods->xRead(rreal(f), b, n, o);
}

static int rec_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o)
{
    if (is_wal(f)) {
        rec.wal_writes++;
        if (rec.fail_code)
            return rec.fail_code;
    }
    return rreal(f)->pMethods->xWrite(rreal(f), b, n, o);
}

static int rec_truncate(sqlite3_file *f, sqlite3_int64 s)
{
    if (is_wal(f))
        note_wal('t', rreal(f));
    else
        rec.db_cuts++;
    return rreal(f)->pMethods->xTruncate(rreal(f), s);
}

static int rec_sync(sqlite3_file *f, int fl)
{
    if (is_wal(f))
        note_wal('s', rreal(f));
    return rreal(f)->pMethods->xSync(rreal(f), fl);
}

static int rec_file_size(sqlite3_file *f, sqlite3_int64 *s)
{
    if (is_wal(f))
        note_wal('z', rreal(f));
    return rreal(f)->pMethods->xFileSize(rreal(f), s);
}

static int rec_lock(sqlite3_file *f, int l)
{
    return rreal(f)->pMethods->xLock(rreal(f), l);
}

static int rec_unlock(sqlite3_file *f, int l)
{
    return rreal(f)->pMethods->xUnlock(rreal(f), l);
}

static int rec_check(sqlite3_file *f, int *o)
{
    return rreal(f)->pMethods->xCheckReservedLock(rreal(f), o);
}

static int rec_fcntl(sqlite3_file *f, int op, void *a)
{
    return rreal(f)->pMethods->xFileControl(rreal(f), op, a);
}

static int rec_sector(sqlite3_file *f)
{
    return rreal(f)->pMethods->xSectorSize(rreal(f));
}

static int rec_devchar(sqlite3_file *f)
{
    return rreal(f)->pMethods->xDeviceCharacteristics(rreal(f));
}

static int rec_shm_map(sqlite3_file *f, int r, int s, int e, void volatile **o)
{
    return rreal(f)->pMethods->xShmMap(rreal(f), r, s, e, o);
}

static int rec_shm_lock(sqlite3_file *f, int o, int n, int fl)
{
    note_wal('l', rec.last_wal);
    return rreal(f)->pMethods->xShmLock(rreal(f), o, n, fl);
}

static void rec_shm_barrier(sqlite3_file *f)
{
    note_wal('b', rec.last_wal);
    rreal(f)->pMethods->xShmBarrier(rreal(f));
}

static int rec_shm_unmap(sqlite3_file *f, int d)
{
    return rreal(f)->pMethods->xShmUnmap(rreal(f), d);
}

static int rec_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **p)
{
    return rreal(f)->pMethods->xFetch(rreal(f), o, n, p);
}

static int rec_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p)
{
    return rreal(f)->pMethods->xUnfetch(rreal(f), o, p);
}

static const sqlite3_io_methods rec_methods = {
    3,
    rec_close,
    rec_read,
    rec_write,
    rec_truncate,
    rec_sync,
    rec_file_size,
    rec_lock,
    rec_unlock,
    rec_check,
    rec_fcntl,
    rec_sector,
    rec_devchar,
    rec_shm_map,
    rec_shm_lock,
    rec_shm_barrier,
    rec_shm_unmap,
    rec_fetch,
    rec_unfetch,
};

static int rec_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags,
                    int *out)
{
    (void)vfs;
    sqlite3_vfs *u = rec.unix_vfs;
    if (!(flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL)))
        return u->xOpen(u, name, file, flags, out);
    struct rec_file *f = (struct rec_file *)file;
    memset(f, 0, sizeof(*f));
    f->real = (sqlite3_file *)((char *)file + REC_REAL_OFFSET);
    f->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
    int rc = u->xOpen(u, name, f->real, flags, out);
    if (f->real->pMethods != NULL)
        f->base.pMethods = &rec_methods;
    if (rc == SQLITE_OK && f->is_wal)
        rec.last_wal = f->real;
    return rc;
}

static sqlite3_vfs rec_vfs;

static void register_vfs_pair(void)
{
    rec.unix_vfs = sqlite3_vfs_find("unix");
    assert_non_null(rec.unix_vfs);
    rec_vfs = *rec.unix_vfs;
    rec_vfs.zName = "rec";
    rec_vfs.pNext = NULL;
    rec_vfs.szOsFile = (int)REC_REAL_OFFSET + rec.unix_vfs->szOsFile;
    rec_vfs.xOpen = rec_open;
    assert_int_equal(sqlite3_vfs_register(&rec_vfs, 1), SQLITE_OK);
    assert_int_equal(sqlite_vfs_register(), SQLITE_OK);
    assert_string_equal(sqlite3_vfs_find(NULL)->zName, "ferry");
}

/* ---- helpers ----------------------------------------------------------------------------- */

static char dir[] = "/tmp/ferry-vfs-XXXXXX";

static void db_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static void remove_db(const char *path)
{
    char p[512];
    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : sqlite3_errstr(rc));
}

static sqlite3 *open_db(const char *path, const char *vfs, int sync_normal)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs);
    assert_int_equal(rc, SQLITE_OK);
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, 10000);
    exec_ok(db, "PRAGMA journal_mode = WAL");
    exec_ok(db, sync_normal ? "PRAGMA synchronous = NORMAL" : "PRAGMA synchronous = FULL");
    return db;
}

/* A new database `name` in the test folder (its path in path) with the table t, open through
 * vfs. */
static sqlite3 *new_db(char *path, size_t n, const char *name, const char *vfs, int sync_normal)
{
    db_path(path, n, name);
    remove_db(path);
    sqlite3 *db = open_db(path, vfs, sync_normal);
    exec_ok(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    return db;
}

static sqlite3_int64 query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    sqlite3_int64 v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void assert_intact(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, "unix"), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Inserts rows first..first+n-1 with a v of `bytes` bytes in one transaction. */
static int insert_rows(sqlite3 *db, int first, int n, int bytes)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return rc;
    assert_int_equal(
        sqlite3_prepare_v2(db, "INSERT INTO t(id, v) VALUES (?, zeroblob(?))", -1, &st, NULL),
        SQLITE_OK);
    for (int i = 0; i < n && rc == SQLITE_OK; i++) {
        sqlite3_bind_int(st, 1, first + i);
        sqlite3_bind_int(st, 2, bytes);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_extended_errcode(db);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rc = sqlite3_extended_errcode(db);
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

/* ---- the same file bytes at every look ---------------------------------------------------- */

enum wal_damage { DAMAGE_NONE, DAMAGE_CUT, DAMAGE_GARBAGE };

static void damage_wal(const char *path, enum wal_damage how)
{
    char wal[512];
    snprintf(wal, sizeof(wal), "%s-wal", path);
    struct stat sb;
    if (stat(wal, &sb) != 0 || how == DAMAGE_NONE)
        return;
    if (how == DAMAGE_CUT) {
        /* Through the middle of a frame some way before the end. */
        assert_int_equal(truncate(wal, sb.st_size > 20000 ? sb.st_size - 10000 : sb.st_size / 2),
                         0);
        return;
    }
    int fd = open(wal, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    unsigned char junk[9000];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (unsigned char)(i * 37 + 11);
    /* Bytes 4-7 of a would-be frame header are not zero: it looks like a commit to a reader
     * that does not check. */
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);
}

/*
 * A workload that reaches every way SQLite touches a WAL: small and large commits, a small
 * page cache (pages spilled to the WAL mid-transaction, then written again in place, which
 * makes SQLite rewrite checksums), rollbacks after spills, checkpoints of every kind (log
 * restarts), a second connection reading and checkpointing, and a reopen after the WAL was
 * damaged.
 */
static void workload(const char *path, const char *vfs, int sync_normal, enum wal_damage how)
{
    sqlite3 *db = open_db(path, vfs, sync_normal);
    exec_ok(db, "PRAGMA cache_size = 8");
    exec_ok(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    exec_ok(db, "CREATE TABLE u(k INTEGER PRIMARY KEY, n INTEGER)");
    sqlite3 *other = open_db(path, vfs, sync_normal);
    int id = 1;
    for (int round = 0; round < 16; round++) {
        int n = 1 + (round * 7) % 23;
        assert_int_equal(insert_rows(db, id, n, 300 + 200 * (round % 5)), SQLITE_OK);
        id += n;
        /* Spill, then change the spilled pages again: overwrites in place. */
        exec_ok(db, "BEGIN");
        for (int k = 0; k < 3; k++) {
            char sql[160];
            snprintf(sql, sizeof(sql),
                     "INSERT INTO u(k, n) SELECT id + %d * 100000, length(v) FROM t "
                     "WHERE id %% 3 = %d LIMIT 30",
                     round * 3 + k, k);
            exec_ok(db, sql);
            exec_ok(db, "UPDATE t SET v = zeroblob(length(v) + 1) WHERE id % 5 = 0");
        }
        exec_ok(db, round % 4 == 3 ? "ROLLBACK" : "COMMIT");
        assert_int_equal(query_int(other, "SELECT count(*) FROM t"), id - 1);
        if (round % 3 == 2) {
            static const int modes[] = {SQLITE_CHECKPOINT_PASSIVE, SQLITE_CHECKPOINT_FULL,
                                        SQLITE_CHECKPOINT_RESTART, SQLITE_CHECKPOINT_TRUNCATE};
            sqlite3 *who = round % 2 ? other : db;
            sqlite3_wal_checkpoint_v2(who, NULL, modes[(round / 3) % 4], NULL, NULL);
        }
        if (round == 9) {
            sqlite3_close(other);
            sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
            sqlite3_close(db);
            damage_wal(path, how);
            db = open_db(path, vfs, sync_normal);
            exec_ok(db, "PRAGMA cache_size = 8");
            other = open_db(path, vfs, sync_normal);
            id = (int)query_int(db, "SELECT coalesce(max(id), 0) FROM t") + 1;
        }
    }
    sqlite3_close(other);
    sqlite3_close(db);
}

static void run_recorded(const char *path, const char *vfs, int sync_normal, enum wal_damage how)
{
    remove_db(path);
    free(rec.notes);
    rec.notes = NULL;
    rec.n_notes = rec.cap_notes = 0;
    sqlite3_test_control(SQLITE_TESTCTRL_PRNG_SEED, 20261206, (sqlite3 *)NULL);
    rec.recording = 1;
    workload(path, vfs, sync_normal, how);
    rec.recording = 0;
}

static int same_state(const struct note *a, const struct note *b)
{
    return a->size == b->size && a->hash == b->hash;
}

/* Drops each barrier note next to a note of the same bytes: a look at them again. A first
 * connection reads the wal-index header once more through ferry (the -shm file is zeroed
 * rather than cut, so its first map finds a page, and an invalid header, where unix found
 * none yet, sqlite_vfs.c), and so makes one barrier more than without it. */
static void drop_repeated_barriers(struct note *notes, size_t *n)
{
    size_t kept = 0;
    for (size_t i = 0; i < *n; i++) {
        if (notes[i].op == 'b' && ((kept > 0 && same_state(&notes[kept - 1], &notes[i])) ||
                                   (i + 1 < *n && same_state(&notes[i + 1], &notes[i]))))
            continue;
        notes[kept++] = notes[i];
    }
    *n = kept;
}

static void same_bytes_at_every_look(int sync_normal, enum wal_damage how)
{
    char a[256], b[256];
    db_path(a, sizeof(a), "plain.db");
    db_path(b, sizeof(b), "shim.db");
    long before = rec.wal_writes;
    run_recorded(a, "rec", sync_normal, how);
    long plain_writes = rec.wal_writes - before;
    struct note *plain = rec.notes;
    size_t n_plain = rec.n_notes;
    rec.notes = NULL;
    before = rec.wal_writes;
    run_recorded(b, "ferry", sync_normal, how);
    long shim_writes = rec.wal_writes - before;
    drop_repeated_barriers(plain, &n_plain);
    drop_repeated_barriers(rec.notes, &rec.n_notes);
    assert_true(n_plain > 500);
    assert_int_equal(rec.n_notes, n_plain);
    for (size_t i = 0; i < n_plain; i++) {
        if (plain[i].op != rec.notes[i].op || plain[i].size != rec.notes[i].size ||
            plain[i].hash != rec.notes[i].hash)
            fail_msg("look %zu of %zu: '%c' %lld bytes without the shim, '%c' %lld with it%s", i,
                     n_plain, plain[i].op, (long long)plain[i].size, rec.notes[i].op,
                     (long long)rec.notes[i].size,
                     plain[i].size == rec.notes[i].size ? " (other bytes)" : "");
    }
    /* The final files too, byte for byte. */
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "cmp -s %s %s", a, b);
    assert_int_equal(system(cmd), 0);
    assert_intact(b);
    assert_true(shim_writes < plain_writes);
    free(plain);
}

/* The cases of the tests below that run once per synchronous setting (and WAL damage). */
struct vfs_case {
    int sync_normal;
    enum wal_damage how;
};
static struct vfs_case full = {0, DAMAGE_NONE}, normal = {1, DAMAGE_NONE},
                       normal_cut = {1, DAMAGE_CUT}, full_garbage = {0, DAMAGE_GARBAGE};

static void test_same_bytes(void **state)
{
    const struct vfs_case *c = *state;
    same_bytes_at_every_look(c->sync_normal, c->how);
}

/* ---- a commit's frames in one write -------------------------------------------------------- */

static int count_frames(void *arg, sqlite3 *db, const char *name, int frames)
{
    (void)db;
    (void)name;
    *(int *)arg = frames;
    return SQLITE_OK;
}

/* The WAL writes of one 50-row commit (about a dozen frames) through vfs. */
static long commit_writes(const char *vfs, int *frames)
{
    char path[256];
    sqlite3 *db = new_db(path, sizeof(path), "count.db", vfs, 0);
    int before_frames = 0;
    sqlite3_wal_hook(db, count_frames, &before_frames);
    assert_int_equal(insert_rows(db, 1, 5, 10), SQLITE_OK);
    int after_frames = before_frames;
    sqlite3_wal_hook(db, count_frames, &after_frames);
    long before = rec.wal_writes;
    assert_int_equal(insert_rows(db, 100, 50, 800), SQLITE_OK);
    long writes = rec.wal_writes - before;
    *frames = after_frames - before_frames;
    sqlite3_close(db);
    return writes;
}

/* Two connections taking turns: each one's commit still lands where the other's ended, not
 * where its own last one did, and is still one write. */
static void test_turns_in_one_write_each(void **state)
{
    (void)state;
    char path[256];
    sqlite3 *a = new_db(path, sizeof(path), "turns.db", "ferry", 0);
    sqlite3 *b = open_db(path, "ferry", 1);
    for (int i = 0; i < 20; i++) {
        long before = rec.wal_writes;
        assert_int_equal(insert_rows(i % 2 ? b : a, 1 + 10 * i, 10, 900), SQLITE_OK);
        assert_int_equal(rec.wal_writes - before, 1);
    }
    sqlite3_close(a);
    sqlite3_close(b);
}

static void test_commit_in_one_write(void **state)
{
    (void)state;
    int plain_frames = 0, shim_frames = 0;
    long plain = commit_writes("rec", &plain_frames);
    long shim = commit_writes("ferry", &shim_frames);
    assert_int_equal(plain_frames, shim_frames);
    assert_true(shim_frames >= 10);
    assert_int_equal(plain, 2 * plain_frames); /* a header and a page per frame */
    assert_int_equal(shim, 1);
}

/* ---- other connections and processes see every commit at once ---------------------------------
 */

/* A reader in a child process: for each number n read from `in`, answers with the count of
 * rows of t, read through the unix VFS, on `out`. */
static void reader_child(const char *path, int in, int out)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, "unix") != SQLITE_OK)
        _exit(2);
    sqlite3_busy_timeout(db, 10000);
    int n;
    while (read(in, &n, sizeof(n)) == (ssize_t)sizeof(n)) {
        sqlite3_stmt *st = NULL;
        int count = -1;
        if (sqlite3_prepare_v2(db, "SELECT count(*), sum(length(v)) FROM t", -1, &st, NULL) ==
                SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            count = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        /* A checkpoint from this process now and then, restarting the log under the writer. */
        if (n % 7 == 3)
            sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        if (write(out, &count, sizeof(count)) != (ssize_t)sizeof(count))
            _exit(3);
    }
    sqlite3_close(db);
    _exit(0);
}

static void others_see_every_commit(int sync_normal)
{
    char path[256];
    sqlite3 *db = new_db(path, sizeof(path), sync_normal ? "see-normal.db" : "see-full.db", "ferry",
                         sync_normal);
    sqlite3 *same_process = open_db(path, "unix", sync_normal);
    int to_child[2], from_child[2];
    assert_int_equal(pipe(to_child), 0);
    assert_int_equal(pipe(from_child), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(to_child[1]);
        close(from_child[0]);
        reader_child(path, to_child[0], from_child[1]);
    }
    close(to_child[0]);
    close(from_child[1]);
    int rows = 0;
    for (int i = 0; i < 120; i++) {
        /* From one row to more than the 128 KiB the shim gathers at once. */
        int n = i % 10 == 9 ? 60 : 1 + i % 4;
        int bytes = i % 10 == 9 ? 3000 : 100 + 50 * (i % 7);
        assert_int_equal(insert_rows(db, rows + 1, n, bytes), SQLITE_OK);
        rows += n;
        assert_int_equal(query_int(same_process, "SELECT count(*) FROM t"), rows);
        assert_int_equal(write(to_child[1], &i, sizeof(i)), (ssize_t)sizeof(i));
        int seen = -2;
        assert_int_equal(read(from_child[0], &seen, sizeof(seen)), (ssize_t)sizeof(seen));
        assert_int_equal(seen, rows);
        if (i % 11 == 5)
            sqlite3_wal_checkpoint_v2(same_process, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
        if (i % 13 == 6)
            sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    }
    close(to_child[1]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(from_child[0]);
    sqlite3_close(same_process);
    sqlite3_close(db);
    assert_intact(path);
}

static void test_others_see_every_commit(void **state)
{
    const struct vfs_case *c = *state;
    others_see_every_commit(c->sync_normal);
}

/* ---- killed at any moment ----------------------------------------------------------------- */

/* Commits forever, one transaction per id from `first`, and writes each id to `out` once
 * its COMMIT returned. */
static void committer_child(const char *path, int sync_normal, int first, int out)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, "ferry") != SQLITE_OK)
        _exit(2);
    sqlite3_busy_timeout(db, 10000);
    sqlite3_exec(db, sync_normal ? "PRAGMA synchronous = NORMAL" : "PRAGMA synchronous = FULL",
                 NULL, NULL, NULL);
    sqlite3_exec(db, "PRAGMA cache_size = 16", NULL, NULL, NULL);
    for (int id = first;; id++) {
        /* Every tenth transaction is larger than the gather buffer and the page cache. */
        int big = id % 10 == 0;
        if (insert_rows(db, id * 1000, big ? 60 : 1 + id % 3, big ? 2500 : 200) != SQLITE_OK)
            _exit(4);
        if (write(out, &id, sizeof(id)) != (ssize_t)sizeof(id))
            _exit(3);
    }
}

static void killed_at_any_moment(int sync_normal)
{
    char path[256];
    sqlite3 *db = new_db(path, sizeof(path), sync_normal ? "kill-normal.db" : "kill-full.db",
                         "ferry", sync_normal);
    sqlite3_close(db);
    unsigned seed = (unsigned)time(NULL);
    print_message("seed %u\n", seed);
    srandom(seed);
    int next = 1, committed = 0;
    for (int round = 0; round < 40; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            committer_child(path, sync_normal, next, fds[1]);
        }
        close(fds[1]);
        /* The kill lands among commits: after the first one, at a random moment. */
        int id;
        assert_int_equal(read(fds[0], &id, sizeof(id)), (ssize_t)sizeof(id));
        assert_int_equal(id, next);
        next++;
        committed++;
        usleep((useconds_t)(random() % 20000));
        kill(pid, SIGKILL);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status));
        while (read(fds[0], &id, sizeof(id)) == (ssize_t)sizeof(id)) {
            assert_int_equal(id, next);
            next++;
            committed++;
        }
        close(fds[0]);
        assert_intact(path);
        db = open_db(path, "unix", sync_normal);
        char sql[200];
        snprintf(sql, sizeof(sql), "SELECT count(DISTINCT id / 1000) FROM t WHERE id / 1000 < %d",
                 next);
        assert_int_equal(query_int(db, sql), next - 1);
        sqlite3_close(db);
        /* A child killed after COMMIT returned but before it said so leaves one more. */
        db = open_db(path, "unix", sync_normal);
        next = (int)query_int(db, "SELECT coalesce(max(id) / 1000, 0) FROM t") + 1;
        sqlite3_close(db);
    }
    assert_true(committed >= 40);
}

static void test_killed(void **state)
{
    const struct vfs_case *c = *state;
    killed_at_any_moment(c->sync_normal);
}

/* ---- a failing write comes back to SQLite as it is ---------------------------------------- */

/* The result of a 50-row commit whose WAL writes fail with `code`, through vfs; afterwards
 * the database holds the rows before it and none of it, and takes the next commit. */
static int failed_commit(const char *vfs, int sync_normal, int code)
{
    char path[256];
    sqlite3 *db = new_db(path, sizeof(path), "fail.db", vfs, sync_normal);
    assert_int_equal(insert_rows(db, 1, 10, 100), SQLITE_OK);
    rec.fail_code = code;
    int rc = insert_rows(db, 100, 50, 800);
    rec.fail_code = 0;
    sqlite3 *other = open_db(path, "unix", sync_normal);
    assert_int_equal(query_int(other, "SELECT count(*) FROM t"), 10);
    sqlite3_close(other);
    assert_int_equal(insert_rows(db, 200, 3, 100), SQLITE_OK);
    assert_int_equal(query_int(db, "SELECT count(*) FROM t"), 13);
    sqlite3_close(db);
    assert_intact(path);
    return rc;
}

static void test_write_error_reaches_sqlite(void **state)
{
    (void)state;
    static const int codes[] = {SQLITE_IOERR_WRITE, SQLITE_FULL};
    for (int sync_normal = 0; sync_normal <= 1; sync_normal++)
        for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
            int plain = failed_commit("rec", sync_normal, codes[i]);
            int shim = failed_commit("ferry", sync_normal, codes[i]);
            assert_int_equal(plain, codes[i]);
            assert_int_equal(shim, plain);
        }
}

/* A transaction whose frames could not be written ends; another connection commits at the
 * same place in the WAL; the frames of the first are never written over the second's. */
static void test_failed_frames_dropped(void **state)
{
    (void)state;
    char path[256];
    sqlite3 *a = new_db(path, sizeof(path), "drop.db", "ferry", 1);
    sqlite3 *b = open_db(path, "ferry", 1);
    exec_ok(a, "PRAGMA cache_size = 8"); /* its frames reach the WAL before any commit */
    assert_int_equal(insert_rows(a, 1, 10, 100), SQLITE_OK);
    rec.fail_code = SQLITE_IOERR_WRITE;
    assert_int_equal(insert_rows(a, 100, 200, 3000), SQLITE_IOERR_WRITE);
    sqlite3_exec(a, "ROLLBACK", NULL, NULL, NULL);
    rec.fail_code = 0;
    assert_int_equal(insert_rows(b, 1000, 40, 3000), SQLITE_OK);
    assert_int_equal(query_int(a, "SELECT count(*) FROM t"), 50);
    assert_int_equal(insert_rows(a, 2000, 5, 100), SQLITE_OK);
    sqlite3_close(a);
    sqlite3_close(b);
    assert_intact(path);
    sqlite3 *c = open_db(path, "unix", 1);
    assert_int_equal(query_int(c, "SELECT count(*) FROM t WHERE id >= 1000 AND id < 2000 AND "
                                  "length(v) = 3000"),
                     40);
    sqlite3_close(c);
}

/* A real failure: a file size limit (RLIMIT_FSIZE, SIGXFSZ ignored) that a large commit
 * passes. In a child, so the limit stays there; the commit's result comes back as exit status
 * 100 + the primary result code. */
static int limited_commit(const char *vfs, int sync_normal)
{
    char path[256];
    sqlite3 *db = new_db(path, sizeof(path), "limit.db", vfs, sync_normal);
    assert_int_equal(insert_rows(db, 1, 10, 100), SQLITE_OK);
    sqlite3_close(db);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit lim = {256 << 10, 256 << 10};
        if (setrlimit(RLIMIT_FSIZE, &lim) != 0)
            _exit(2);
        sqlite3 *c = NULL;
        if (sqlite3_open_v2(path, &c, SQLITE_OPEN_READWRITE, vfs) != SQLITE_OK)
            _exit(3);
        sqlite3_extended_result_codes(c, 1);
        sqlite3_exec(c, sync_normal ? "PRAGMA synchronous = NORMAL" : "PRAGMA synchronous = FULL",
                     NULL, NULL, NULL);
        int rc = insert_rows(c, 100, 200, 3000);
        sqlite3_close(c);
        _exit(rc == SQLITE_OK ? 1 : 100 + (rc & 0xff));
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    sqlite3 *other = open_db(path, "unix", sync_normal);
    assert_int_equal(query_int(other, "SELECT count(*) FROM t"), 10);
    sqlite3_close(other);
    assert_intact(path);
    return WEXITSTATUS(status);
}

static void test_file_size_limit(void **state)
{
    (void)state;
    for (int sync_normal = 0; sync_normal <= 1; sync_normal++) {
        int plain = limited_commit("rec", sync_normal);
        int shim = limited_commit("ferry", sync_normal);
        assert_true(plain > 100);
        assert_int_equal(shim, plain);
    }
}

/* ---- a recovery reads the log many frames at a time (sqlite_vfs_read_ahead) ----------------- */

/* Opens path through "ferry" (reading ahead or not) and runs a first query, which rebuilds
 * the WAL index from the log: the rows and bytes of t it finds, and the WAL reads that
 * reached the file meanwhile (rec's notes). Closed without a checkpoint: the log stays. */
static long first_query_reads(const char *path, int read_ahead, sqlite3_int64 *rows,
                              sqlite3_int64 *bytes)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, "ferry"), SQLITE_OK);
    if (read_ahead)
        assert_int_equal(sqlite_vfs_read_ahead(db), SQLITE_OK);
    free(rec.notes);
    rec.notes = NULL;
    rec.n_notes = rec.cap_notes = 0;
    rec.recording = 1;
    *rows = query_int(db, "SELECT count(*) FROM t");
    rec.recording = 0;
    long reads = 0;
    for (size_t i = 0; i < rec.n_notes; i++)
        reads += rec.notes[i].op == 'r';
    *bytes = query_int(db, "SELECT coalesce(sum(length(v)), 0) FROM t");
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
    sqlite3_close(db);
    return reads;
}

/* A log of some 80 frames left by a closed connection, whole, cut through a frame, or
 * with garbage after it: a connection that reads ahead finds the same rows as one that
 * does not, in a small fraction of the reads. */
static void test_recovery_reads_ahead(void **state)
{
    (void)state;
    static const enum wal_damage damages[] = {DAMAGE_NONE, DAMAGE_CUT, DAMAGE_GARBAGE};
    for (size_t d = 0; d < sizeof(damages) / sizeof(damages[0]); d++) {
        char path[256];
        sqlite3 *db = new_db(path, sizeof(path), "ahead.db", "ferry", 0);
        for (int i = 0; i < 30; i++)
            assert_int_equal(insert_rows(db, 1 + 5 * i, 5, 900), SQLITE_OK);
        sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
        sqlite3_close(db);
        damage_wal(path, damages[d]);
        char wal[300];
        struct stat sb;
        snprintf(wal, sizeof(wal), "%s-wal", path);
        assert_int_equal(stat(wal, &sb), 0);
        long frames = (long)(sb.st_size - 32) / (4096 + 24);
        sqlite3_int64 rows = 0, bytes = 0, ahead_rows = -1, ahead_bytes = -1;
        long plain = first_query_reads(path, 0, &rows, &bytes);
        long ahead = first_query_reads(path, 1, &ahead_rows, &ahead_bytes);
        assert_int_equal(ahead_rows, rows);
        assert_int_equal(ahead_bytes, bytes);
        assert_true(rows >= (damages[d] == DAMAGE_CUT ? 100 : 150));
        /* Every frame of the log is read once without; with, about one read in 15. */
        assert_true(frames >= 60);
        assert_true(plain >= frames);
        assert_true(plain - ahead >= frames * 3 / 4);
        assert_intact(path);
    }
}

/* A connection that read its log ahead, then takes turns with another one that writes,
 * restarts the log and writes again: each sees every commit of the other. */
static void test_read_ahead_then_turns(void **state)
{
    (void)state;
    char path[256];
    sqlite3 *db = new_db(path, sizeof(path), "ahead-turns.db", "ferry", 1);
    assert_int_equal(insert_rows(db, 1, 40, 900), SQLITE_OK);
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
    sqlite3_close(db);
    sqlite3 *a = NULL;
    assert_int_equal(sqlite3_open_v2(path, &a, SQLITE_OPEN_READWRITE, "ferry"), SQLITE_OK);
    assert_int_equal(sqlite_vfs_read_ahead(a), SQLITE_OK);
    sqlite3_busy_timeout(a, 10000);
    assert_int_equal(query_int(a, "SELECT count(*) FROM t"), 40);
    sqlite3 *b = open_db(path, "ferry", 1);
    int rows = 40;
    for (int i = 0; i < 24; i++) {
        sqlite3 *writer = i % 2 ? a : b, *reader = i % 2 ? b : a;
        int n = 1 + i % 5;
        assert_int_equal(insert_rows(writer, rows + 1, n, 700 + 100 * (i % 4)), SQLITE_OK);
        rows += n;
        assert_int_equal(query_int(reader, "SELECT count(*) FROM t"), rows);
        if (i % 6 == 2)
            sqlite3_wal_checkpoint_v2(i % 4 ? a : b, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    }
    sqlite3_close(b);
    sqlite3_close(a);
    assert_intact(path);
}

/* Copies the file from over to (made or cut to its length). */
static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(in >= 0 && out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    assert_int_equal(n, 0);
    close(in);
    close(out);
}

/* A connection through ferry that commits `commits` transactions of 4 rows from first, then
 * closes without a checkpoint (the WAL and -shm stay, as a command leaves them). */
static void commits_left_in_wal(const char *path, int first, int commits)
{
    sqlite3 *db = open_db(path, "ferry", 0);
    for (int i = 0; i < commits; i++)
        assert_int_equal(insert_rows(db, first + 4 * i, 4, 500), SQLITE_OK);
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
    sqlite3_close(db);
}

/* The first connection of a process to a store nobody has open (unix's DMS lock free) finds
 * a -shm file whose index is valid for a longer log than the WAL now holds (the WAL put back
 * to an earlier copy meanwhile): it rebuilds the index from the WAL and sees that WAL's rows,
 * not the index's. The -shm file is zeroed for it rather than cut to 3 bytes and grown
 * again: it keeps the 64 KiB it was given here, where the cut left the 32 KiB SQLite maps. */
static void test_first_open_zeroes_shm(void **state)
{
    (void)state;
    char path[256], wal[300], shm[300], saved[300];
    sqlite3 *db = new_db(path, sizeof(path), "shm.db", "ferry", 0);
    sqlite3_close(db);
    snprintf(wal, sizeof(wal), "%s-wal", path);
    snprintf(shm, sizeof(shm), "%s-shm", path);
    snprintf(saved, sizeof(saved), "%s-wal.saved", path);
    commits_left_in_wal(path, 1, 5);
    copy_file(wal, saved);
    commits_left_in_wal(path, 21, 5);
    struct stat sb;
    assert_int_equal(stat(shm, &sb), 0);
    assert_int_equal(sb.st_size, 32768);
    assert_int_equal(truncate(shm, 65536), 0);
    copy_file(saved, wal);
    db = open_db(path, "ferry", 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM t"), 20);
    assert_int_equal(query_int(db, "SELECT max(id) FROM t"), 20);
    assert_int_equal(stat(shm, &sb), 0);
    assert_int_equal(sb.st_size, 65536);
    /* ... and the index it built serves the next commits and a second connection. */
    assert_int_equal(insert_rows(db, 21, 4, 500), SQLITE_OK);
    sqlite3 *other = open_db(path, "ferry", 0);
    assert_int_equal(query_int(other, "SELECT count(*) FROM t"), 24);
    sqlite3_close(other);
    sqlite3_close(db);
    assert_intact(path);
}

/* Processes that open the store, commit a row and close it again, at once: each open may be
 * the first of the store (the -shm file zeroed under unix's DMS lock) while another one
 * opens or commits. Every row is there and the file is intact. */
static void test_first_opens_at_once(void **state)
{
    (void)state;
    char path[256];
    sqlite3 *db = new_db(path, sizeof(path), "first-opens.db", "ferry", 0);
    sqlite3_close(db);
    enum { CHILDREN = 4, ROUNDS = 25 };
    pid_t pids[CHILDREN];
    for (int c = 0; c < CHILDREN; c++) {
        pids[c] = fork();
        assert_true(pids[c] >= 0);
        if (pids[c] == 0) {
            for (int i = 0; i < ROUNDS; i++) {
                sqlite3 *mine = NULL;
                if (sqlite3_open_v2(path, &mine, SQLITE_OPEN_READWRITE, "ferry") != SQLITE_OK)
                    _exit(2);
                sqlite3_busy_timeout(mine, 10000);
                sqlite3_db_config(mine, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, i % 3 != 0, (int *)NULL);
                if (insert_rows(mine, 1000 * (c + 1) + i, 1, 300) != SQLITE_OK)
                    _exit(3);
                if (sqlite3_close(mine) != SQLITE_OK)
                    _exit(4);
            }
            _exit(0);
        }
    }
    for (int c = 0; c < CHILDREN; c++) {
        int status = 0;
        assert_int_equal(waitpid(pids[c], &status, 0), pids[c]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    db = open_db(path, "ferry", 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM t"), CHILDREN * ROUNDS);
    sqlite3_close(db);
    assert_intact(path);
}

/* A checkpoint of every frame cuts the database file to the size the log's last commit
 * gives it: through rec alone that cut reaches the file even when the file has that size
 * already (an ftruncate that changes its times, and so made the checkpoint's fdatasync write
 * its inode); through ferry only a cut that changes the size does. */
static void test_no_cut_to_the_same_size(void **state)
{
    (void)state;
    static const char *const vfs[] = {"rec", "ferry"};
    long cuts[2];
    for (int v = 0; v < 2; v++) {
        char path[256];
        sqlite3 *db = new_db(path, sizeof(path), "same-size.db", vfs[v], 0);
        assert_int_equal(insert_rows(db, 1, 40, 900), SQLITE_OK);
        assert_int_equal(sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL),
                         SQLITE_OK);
        /* Rows that fit the pages the file has: the next checkpoint leaves its size. */
        exec_ok(db, "UPDATE t SET v = zeroblob(800) WHERE id % 2 = 0");
        long before = rec.db_cuts;
        struct stat sb, after;
        char sql[40];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM t");
        assert_int_equal(stat(path, &sb), 0);
        assert_int_equal(sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL),
                         SQLITE_OK);
        assert_int_equal(stat(path, &after), 0);
        assert_int_equal(after.st_size, sb.st_size);
        cuts[v] = rec.db_cuts - before;
        assert_int_equal(query_int(db, sql), 40);
        sqlite3_close(db);
        assert_intact(path);
    }
    assert_int_equal(cuts[0], 1);
    assert_int_equal(cuts[1], 0);
}

/* Run as root, SQLite gives every WAL and -shm file it opens the database's owner; when the
 * file has that owner already, no chown is made, so the WAL's inode is not changed by the
 * open (its change time stays): a chown marked it dirty for the next fdatasync. Not root:
 * SQLite makes no chown, nothing to check. */
static void test_no_chown_that_changes_nothing(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    char path[256], wal[300];
    sqlite3 *db = new_db(path, sizeof(path), "chown.db", "ferry", 0);
    sqlite3_close(db);
    snprintf(wal, sizeof(wal), "%s-wal", path);
    commits_left_in_wal(path, 1, 3);
    struct stat before, after;
    assert_int_equal(stat(wal, &before), 0);
    struct timespec pause = {0, 20 * 1000 * 1000}; /* past a tick of the coarse clock */
    nanosleep(&pause, NULL);
    db = open_db(path, "ferry", 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM t"), 12);
    assert_int_equal(stat(wal, &after), 0);
    assert_int_equal(after.st_ctim.tv_sec, before.st_ctim.tv_sec);
    assert_int_equal(after.st_ctim.tv_nsec, before.st_ctim.tv_nsec);
    assert_int_equal(after.st_uid, before.st_uid);
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
    sqlite3_close(db);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    register_vfs_pair();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_in_one_write),
        cmocka_unit_test(test_turns_in_one_write_each),
        cmocka_unit_test_prestate(test_same_bytes, &full),
        cmocka_unit_test_prestate(test_same_bytes, &normal),
        cmocka_unit_test_prestate(test_same_bytes, &normal_cut),
        cmocka_unit_test_prestate(test_same_bytes, &full_garbage),
        cmocka_unit_test_prestate(test_others_see_every_commit, &full),
        cmocka_unit_test_prestate(test_others_see_every_commit, &normal),
        cmocka_unit_test_prestate(test_killed, &full),
        cmocka_unit_test_prestate(test_killed, &normal),
        cmocka_unit_test(test_write_error_reaches_sqlite),
        cmocka_unit_test(test_failed_frames_dropped),
        cmocka_unit_test(test_file_size_limit),
        cmocka_unit_test(test_recovery_reads_ahead),
        cmocka_unit_test(test_read_ahead_then_turns),
        cmocka_unit_test(test_first_open_zeroes_shm),
        cmocka_unit_test(test_first_opens_at_once),
        cmocka_unit_test(test_no_cut_to_the_same_size),
        cmocka_unit_test(test_no_chown_that_changes_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
