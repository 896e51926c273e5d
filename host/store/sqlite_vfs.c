/*
 * The VFS "ferry": SQLite's unix VFS, except that a WAL file's appended frames are gathered
 * in memory and written with one pwrite. SQLite writes each WAL frame as two writes (its
 * 24-byte header, then the page), so a commit of 12 pages cost 24 pwrite calls, and a
 * 10,000-item drain 44,759.
 *
 * When the gathered bytes reach the file (wal.c of SQLite 3.40, sqlite3WalFrames and the
 * functions around it, is what this follows):
 *  - At the end of a commit frame, inside the xWrite of its page: a frame header whose
 *    "database size" field is not zero marks the commit, and the page after it completes
 *    it. So a commit's frames are in the file before sqlite3WalFrames syncs them
 *    (synchronous=FULL) or publishes the new wal-index header to other connections
 *    (synchronous=NORMAL, no sync), and a failed write comes back from that xWrite with the
 *    VFS below's own error code, where SQLite expects it.
 *  - Before any other call on the WAL file (xRead, xSync, xTruncate, xFileSize, locks,
 *    xFileControl, xClose), before a write that does not extend the gathered bytes, and
 *    when the buffer is full.
 *  - Before the main database file's xShmBarrier and xShmLock: a second line behind the
 *    first rule, so nothing this connection wrote is still in memory when the wal-index
 *    changes or a lock moves. An error there cannot be returned (xShmBarrier returns
 *    nothing; a lock call is the wrong place), so the bytes stay gathered and the next call
 *    on the WAL file tries again and returns the error. Only frames of a transaction that
 *    has not committed can be in memory then; when its write lock is released they are
 *    written or dropped, never written later over another connection's frames.
 * Only appends are gathered: a write inside frames this transaction already wrote (SQLite
 * overwrites a page it spilled earlier, then rewrites the checksums of the frames after it)
 * goes straight to the file, after the gathered bytes. Durability is unchanged: data reach
 * the disk at the same xSync calls, with the same bytes in the file at each of them.
 */
#include "sqlite_vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* The WAL file's header (magic, version, page size, salts, checksums). */
#define WAL_HEADER 32
/* A WAL frame header; bytes 4-7 hold the database size in pages after a commit, else 0. */
#define WAL_FRAME_HEADER 24
/* The most gathered at once: the unix VFS writes at most 0x1ffff bytes per xWrite (it masks
 * the length to 17 bits; SQLite itself never writes more than a 64 KiB page), so 31 frames
 * of 4 KiB. A larger commit is written in pieces of this size. */
#define WAL_GATHER_MAX   0x1ffff
#define WAL_GATHER_FIRST (64 << 10)
/* The most read ahead at once (wal_read): 11 frames of 4 KiB, about what a create's commit
 * then gathers in the same buffer, so the read touches no page of it the commit would not
 * (with the whole 64 KiB, 5 to 10 page faults more a command: more than the reads saved). */
#define WAL_READ_AHEAD_MAX (48 << 10)

struct vfs_file {
    sqlite3_file base;     /* pMethods is db_methods or wal_methods */
    sqlite3_file *real;    /* the file of the VFS below, in the same allocation */
    struct vfs_file *wal;  /* main database: its WAL file while that is open */
    struct vfs_file *db;   /* WAL: its main database file */
    unsigned char *gather; /* WAL: appended bytes not yet written */
    size_t len, cap;
    sqlite3_int64 gather_at; /* file offset of gather[0] */
    sqlite3_int64 end;       /* end of the frames appended in this write transaction, or -1 */
    int commit_header;       /* the last gathered write was a commit frame's header */
    int read_ahead;          /* main database: its WAL's frame scans read ahead */
    size_t ahead_len;        /* WAL: bytes of the file from ahead_at held in gather (len 0) */
    sqlite3_int64 ahead_at;
};

/* The file of the VFS below starts here, aligned for any type. */
#define REAL_OFFSET ((sizeof(struct vfs_file) + 15) & ~(size_t)15)

static const sqlite3_io_methods db_methods, wal_methods;

static sqlite3_vfs *below(sqlite3_vfs *vfs)
{
    return vfs->pAppData;
}

static sqlite3_file *real(sqlite3_file *file)
{
    return ((struct vfs_file *)file)->real;
}

/* Writes the gathered bytes; on failure they stay gathered and the error is returned. */
static int wal_flush(struct vfs_file *w)
{
    if (w->len == 0)
        return SQLITE_OK;
    int rc = w->real->pMethods->xWrite(w->real, w->gather, (int)w->len, w->gather_at);
    if (rc == SQLITE_OK) {
        w->len = 0;
        w->commit_header = 0;
    }
    return rc;
}

/* Room for n more gathered bytes: 0 when that would pass WAL_GATHER_MAX or memory ran out. */
static int wal_room(struct vfs_file *w, size_t n)
{
    if (w->len + n <= w->cap)
        return 1;
    if (w->len + n > WAL_GATHER_MAX)
        return 0;
    size_t cap = w->cap ? w->cap : WAL_GATHER_FIRST;
    while (cap < w->len + n)
        cap *= 2;
    unsigned char *grown = realloc(w->gather, cap);
    if (grown == NULL)
        return 0;
    w->gather = grown;
    w->cap = cap;
    return 1;
}

static int is_commit_header(const void *data, int n)
{
    const unsigned char *b = data;
    return n == WAL_FRAME_HEADER && (b[4] | b[5] | b[6] | b[7]) != 0;
}

static int wal_write(sqlite3_file *file, const void *data, int n, sqlite3_int64 off)
{
    struct vfs_file *w = (struct vfs_file *)file;
    w->ahead_len = 0;
    int ends_commit = w->commit_header; /* this is the page of a commit frame */
    if (off == 0)
        w->end = 0; /* a new WAL header: the log starts again */
    int append = w->end < 0 || off == w->end;
    int rc = SQLITE_OK;
    if (w->len > 0 && (!append || off != w->gather_at + (sqlite3_int64)w->len ||
                       w->len + (size_t)n > WAL_GATHER_MAX))
        rc = wal_flush(w);
    if (rc != SQLITE_OK)
        return rc;
    if (!append || !wal_room(w, (size_t)n)) {
        rc = wal_flush(w);
        if (rc == SQLITE_OK)
            rc = w->real->pMethods->xWrite(w->real, data, n, off);
        if (rc == SQLITE_OK && append)
            w->end = off + n;
        w->commit_header = 0;
        return rc;
    }
    if (w->len == 0)
        w->gather_at = off;
    memcpy(w->gather + w->len, data, (size_t)n);
    w->len += (size_t)n;
    w->end = off + n;
    if (ends_commit)
        return wal_flush(w);
    w->commit_header = is_commit_header(data, n);
    return SQLITE_OK;
}

static int wal_close(sqlite3_file *file)
{
    struct vfs_file *w = (struct vfs_file *)file;
    int flushed = wal_flush(w);
    if (w->db != NULL)
        w->db->wal = NULL;
    free(w->gather);
    int rc = w->real->pMethods->xClose(w->real);
    return flushed != SQLITE_OK ? flushed : rc;
}

/*
 * A checkpoint that copied every frame cuts the database file to the size the log's last
 * commit gives it (wal.c, walCheckpoint), most often the size it has: an ftruncate to the
 * same size changes no byte but its times, and that marked the inode dirty for fdatasync, so
 * the checkpoint's sync wrote the inode's block too (ext4 without a journal; the last of the
 * create's inode writes). Only such a cut is left out: the size can change meanwhile only by
 * a checkpoint (one at a time, under its lock) or, outside WAL mode, by the holder of the
 * exclusive lock, the caller.
 */
static int db_truncate(sqlite3_file *file, sqlite3_int64 size)
{
    sqlite3_int64 now = -1;
    if (real(file)->pMethods->xFileSize(real(file), &now) == SQLITE_OK && now == size)
        return SQLITE_OK;
    return real(file)->pMethods->xTruncate(real(file), size);
}

static int db_close(sqlite3_file *file)
{
    struct vfs_file *d = (struct vfs_file *)file;
    if (d->wal != NULL)
        d->wal->db = NULL;
    return d->real->pMethods->xClose(d->real);
}

/* Every other WAL file method forgets the bytes read ahead (wal_read), writes the gathered
 * bytes, then forwards. */
#define WAL_FLUSH_FIRST(file)                                                                      \
    do {                                                                                           \
        ((struct vfs_file *)(file))->ahead_len = 0;                                                \
        int flushed_ = wal_flush((struct vfs_file *)(file));                                       \
        if (flushed_ != SQLITE_OK)                                                                 \
            return flushed_;                                                                       \
    } while (0)

/* Whether a read of n bytes at off is one whole frame (its header and a page of 512 to 65536
 * bytes), as a scan of the log reads them: wal.c's recovery (walIndexRecover). A reader's
 * page and a checkpoint's copy read the page alone. */
static int is_frame_read(int n, sqlite3_int64 off)
{
    int page = n - WAL_FRAME_HEADER;
    return page >= 512 && page <= 65536 && (page & (page - 1)) == 0 && off >= WAL_HEADER &&
           (off - WAL_HEADER) % n == 0;
}

/* Reads as many whole frames from off as WAL_READ_AHEAD_MAX and the file allow into the
 * gather buffer (ahead_at, ahead_len); at least the frame of n bytes asked for, else an
 * error. */
static int wal_read_ahead(struct vfs_file *w, int n, sqlite3_int64 off)
{
    sqlite3_int64 size = 0;
    if (!wal_room(w, (size_t)n) || w->real->pMethods->xFileSize(w->real, &size) != SQLITE_OK ||
        size < off + n)
        return SQLITE_IOERR_READ;
    size_t room = w->cap < WAL_READ_AHEAD_MAX ? w->cap : WAL_READ_AHEAD_MAX;
    sqlite3_int64 frames = (sqlite3_int64)(room / (size_t)n);
    if (frames < 1)
        frames = 1; /* pages of 32 KiB or more: one frame, as the buffer holds it */
    if (frames > (size - off) / n)
        frames = (size - off) / n;
    int rc = w->real->pMethods->xRead(w->real, w->gather, (int)(frames * n), off);
    if (rc == SQLITE_OK) {
        w->ahead_at = off;
        w->ahead_len = (size_t)(frames * n);
    }
    return rc;
}

/*
 * A connection that opens the store after every other one closed it rebuilds the WAL index
 * from the whole log (SQLite truncates the -shm file at the first open), one read of 4,120
 * bytes per frame: with the log a command leaves for the next (store_sqlite.c,
 * SHORT_WAL_FRAMES) that was 60 to 120 reads of every command. Where the database asked
 * for it (sqlite_vfs_read_ahead), a read of a whole frame reads up to 10 frames after it
 * too, into the buffer appends are gathered in (empty while anything reads), and the next
 * frame reads are answered from there. The bytes are held only until any other call on the WAL
 * file or any change of the database's WAL locks (db_shm_lock, db_shm_barrier): recovery
 * scans the log holding the write lock and every read lock, so no other connection writes
 * it meanwhile, and this one's own writes and truncations forget them first.
 */
static int wal_read(sqlite3_file *file, void *buf, int n, sqlite3_int64 off)
{
    struct vfs_file *w = (struct vfs_file *)file;
    if (w->ahead_len > 0 && off >= w->ahead_at &&
        off + n <= w->ahead_at + (sqlite3_int64)w->ahead_len) {
        memcpy(buf, w->gather + (off - w->ahead_at), (size_t)n);
        return SQLITE_OK;
    }
    WAL_FLUSH_FIRST(file);
    if (w->db != NULL && w->db->read_ahead && is_frame_read(n, off) &&
        wal_read_ahead(w, n, off) == SQLITE_OK) {
        memcpy(buf, w->gather, (size_t)n);
        return SQLITE_OK;
    }
    return real(file)->pMethods->xRead(real(file), buf, n, off);
}

/*
 * A connection that keeps its WAL file (SQLITE_FCNTL_PERSIST_WAL: store_sqlite.c's
 * short-lived ones) empties it, once its close has checkpointed every frame into the
 * database, by zeroing the header instead of cutting the file to nothing: the next opener's
 * recovery reads no valid header and so an empty WAL, and the next commit writes its header
 * and frames over blocks the file already has. Its fdatasync then changes no file size (on
 * this development machine 0.145 ms against 0.26 for one that appends), and nobody syncs the
 * WAL's directory or makes the file again. Up to WAL_KEEP_MAX; a longer WAL (a bulk create)
 * is cut as before. Only an empty WAL is asked for so (wal.c: sqlite3WalClose, and a
 * TRUNCATE checkpoint, both with every frame in the database): any other length is cut.
 */
#define WAL_KEEP_MAX (1 << 20)

static int wal_truncate(sqlite3_file *file, sqlite3_int64 size)
{
    struct vfs_file *w = (struct vfs_file *)file;
    WAL_FLUSH_FIRST(file);
    int persist = -1;
    sqlite3_int64 now = 0;
    if (size == 0 && w->db != NULL &&
        w->db->real->pMethods->xFileControl(w->db->real, SQLITE_FCNTL_PERSIST_WAL, &persist) ==
            SQLITE_OK &&
        persist == 1 && w->real->pMethods->xFileSize(w->real, &now) == SQLITE_OK &&
        now > WAL_HEADER && now <= WAL_KEEP_MAX) {
        static const unsigned char zero[WAL_HEADER];
        return w->real->pMethods->xWrite(w->real, zero, WAL_HEADER, 0);
    }
    return real(file)->pMethods->xTruncate(real(file), size);
}

static int wal_sync(sqlite3_file *file, int flags)
{
    WAL_FLUSH_FIRST(file);
    return real(file)->pMethods->xSync(real(file), flags);
}

static int wal_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
    WAL_FLUSH_FIRST(file);
    return real(file)->pMethods->xFileSize(real(file), size);
}

static int wal_lock(sqlite3_file *file, int level)
{
    WAL_FLUSH_FIRST(file);
    return real(file)->pMethods->xLock(real(file), level);
}

static int wal_unlock(sqlite3_file *file, int level)
{
    WAL_FLUSH_FIRST(file);
    return real(file)->pMethods->xUnlock(real(file), level);
}

static int wal_check_reserved(sqlite3_file *file, int *out)
{
    WAL_FLUSH_FIRST(file);
    return real(file)->pMethods->xCheckReservedLock(real(file), out);
}

static int wal_file_control(sqlite3_file *file, int op, void *arg)
{
    WAL_FLUSH_FIRST(file);
    return real(file)->pMethods->xFileControl(real(file), op, arg);
}

static int wal_fetch(sqlite3_file *file, sqlite3_int64 off, int n, void **out)
{
    *out = NULL;
    WAL_FLUSH_FIRST(file);
    return real(file)->pMethods->xFetch(real(file), off, n, out);
}

/* The main database file's shared memory: the WAL's gathered bytes go first (see top). */
static int db_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
    struct vfs_file *d = (struct vfs_file *)file;
    struct vfs_file *w = d->wal;
    int write_lock = offset == 0 && (flags & SQLITE_SHM_EXCLUSIVE);
    if (w != NULL)
        w->ahead_len = 0; /* another connection may write the log once a lock moves */
    if (w != NULL && wal_flush(w) != SQLITE_OK && write_lock && (flags & SQLITE_SHM_UNLOCK)) {
        /* The write transaction ends with bytes that could not be written: they are frames
         * of a transaction that did not commit (a commit's frames are written in its xWrite,
         * or the commit fails), and written later they would land on frames another
         * connection wrote meanwhile. SQLite already had the error. */
        w->len = 0;
        w->commit_header = 0;
    }
    /* Taking the write lock starts a write transaction: its first write is an append
     * wherever it lands (another connection may have restarted the log). */
    if (w != NULL && write_lock && (flags & SQLITE_SHM_LOCK))
        w->end = -1;
    return d->real->pMethods->xShmLock(d->real, offset, n, flags);
}

static void db_shm_barrier(sqlite3_file *file)
{
    struct vfs_file *d = (struct vfs_file *)file;
    if (d->wal != NULL) {
        d->wal->ahead_len = 0;
        (void)wal_flush(d->wal);
    }
    d->real->pMethods->xShmBarrier(d->real);
}

/* Straight to the file below. */
static int pass_read(sqlite3_file *file, void *buf, int n, sqlite3_int64 off)
{
    return real(file)->pMethods->xRead(real(file), buf, n, off);
}

static int pass_write(sqlite3_file *file, const void *buf, int n, sqlite3_int64 off)
{
    return real(file)->pMethods->xWrite(real(file), buf, n, off);
}

static int pass_sync(sqlite3_file *file, int flags)
{
    return real(file)->pMethods->xSync(real(file), flags);
}

static int pass_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
    return real(file)->pMethods->xFileSize(real(file), size);
}

static int pass_lock(sqlite3_file *file, int level)
{
    return real(file)->pMethods->xLock(real(file), level);
}

static int pass_unlock(sqlite3_file *file, int level)
{
    return real(file)->pMethods->xUnlock(real(file), level);
}

static int pass_check_reserved(sqlite3_file *file, int *out)
{
    return real(file)->pMethods->xCheckReservedLock(real(file), out);
}

static int pass_file_control(sqlite3_file *file, int op, void *arg)
{
    return real(file)->pMethods->xFileControl(real(file), op, arg);
}

static int pass_sector_size(sqlite3_file *file)
{
    return real(file)->pMethods->xSectorSize(real(file));
}

static int pass_device_characteristics(sqlite3_file *file)
{
    return real(file)->pMethods->xDeviceCharacteristics(real(file));
}

static int pass_shm_map(sqlite3_file *file, int region, int size, int extend, void volatile **out)
{
    return real(file)->pMethods->xShmMap(real(file), region, size, extend, out);
}

/*
 * The first connection to open a database's WAL index (no one holds the -shm file's DMS
 * lock) cuts the -shm file to 3 bytes, unix's xShmMap then grows it again with a one-byte
 * write at the end of each 4 KiB page: so that this connection finds no valid wal-index
 * header and rebuilds the index from the WAL (recovery), and every later one finds zeroes
 * where no index was written. Each command is such a first connection, and on ext4 the cut
 * frees the file's blocks and pages and the growth allocates them again: 50 to 100 us of a
 * create, for the same bytes. The cut to 3 bytes that the main database's xShmMap asks for
 * (unix makes no other call of ftruncate inside it) zeroes the file from byte 3 instead,
 * holding the same DMS lock, and leaves its size: every byte a reader of the file can see
 * is what it would see after the cut and the growth, the header's copies invalid as before
 * (unix's growth finds the file long enough and writes nothing). A file shorter than that
 * cut or longer than SHM_ZERO_MAX is cut as before, as after a failed write.
 */
#define SHM_CUT      3
#define SHM_ZERO_MAX (1 << 20)

static __thread int in_shm_map; /* a main database's xShmMap runs on this thread */
static int (*below_ftruncate)(int, off_t);

static int vfs_ftruncate(int fd, off_t size)
{
    struct stat st;
    if (!in_shm_map || size != SHM_CUT || fstat(fd, &st) != 0 || st.st_size <= SHM_CUT ||
        st.st_size > SHM_ZERO_MAX)
        return below_ftruncate(fd, size);
    static const char zero[4096];
    struct iovec iov[64];
    off_t at = SHM_CUT;
    while (at < st.st_size) {
        int n = 0;
        ssize_t want = 0;
        for (off_t next = at; next < st.st_size && n < 64; n++) {
            size_t len = sizeof(zero) - (size_t)(next % (off_t)sizeof(zero));
            if ((off_t)len > st.st_size - next)
                len = (size_t)(st.st_size - next);
            iov[n] = (struct iovec){(void *)zero, len};
            want += (ssize_t)len;
            next += (off_t)len;
        }
        ssize_t done = pwritev(fd, iov, n, at);
        if (done != want)
            return below_ftruncate(fd, size);
        at += done;
    }
    return 0;
}

static int db_shm_map(sqlite3_file *file, int region, int size, int extend, void volatile **out)
{
    in_shm_map = 1;
    int rc = real(file)->pMethods->xShmMap(real(file), region, size, extend, out);
    in_shm_map = 0;
    return rc;
}

static int pass_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
    return real(file)->pMethods->xShmLock(real(file), offset, n, flags);
}

static void pass_shm_barrier(sqlite3_file *file)
{
    real(file)->pMethods->xShmBarrier(real(file));
}

static int pass_shm_unmap(sqlite3_file *file, int delete_flag)
{
    return real(file)->pMethods->xShmUnmap(real(file), delete_flag);
}

static int pass_fetch(sqlite3_file *file, sqlite3_int64 off, int n, void **out)
{
    return real(file)->pMethods->xFetch(real(file), off, n, out);
}

static int pass_unfetch(sqlite3_file *file, sqlite3_int64 off, void *p)
{
    return real(file)->pMethods->xUnfetch(real(file), off, p);
}

static const sqlite3_io_methods db_methods = {
    3,
    db_close,
    pass_read,
    pass_write,
    db_truncate,
    pass_sync,
    pass_file_size,
    pass_lock,
    pass_unlock,
    pass_check_reserved,
    pass_file_control,
    pass_sector_size,
    pass_device_characteristics,
    db_shm_map,
    db_shm_lock,
    db_shm_barrier,
    pass_shm_unmap,
    pass_fetch,
    pass_unfetch,
};

static const sqlite3_io_methods wal_methods = {
    3,
    wal_close,
    wal_read,
    wal_write,
    wal_truncate,
    wal_sync,
    wal_file_size,
    wal_lock,
    wal_unlock,
    wal_check_reserved,
    wal_file_control,
    pass_sector_size,
    pass_device_characteristics,
    pass_shm_map,
    pass_shm_lock,
    pass_shm_barrier,
    pass_shm_unmap,
    wal_fetch,
    pass_unfetch,
};

/*
 * Whether the WAL file name holds more than its header. Such a WAL's directory entry is on
 * disk: whoever writes a WAL's header syncs it before writing any frame after it (wal.c,
 * sqlite3WalFrames: syncHeader, at every synchronous level but OFF, which ferry never uses),
 * and the unix VFS syncs a file's directory at the first sync of a WAL it opened with
 * SQLITE_OPEN_CREATE. The one that wrote the header opened the file so: it found the file
 * missing or no longer than a header (a reader may create an empty WAL and never sync it),
 * and vfs_open drops SQLITE_OPEN_CREATE only past that. Opened without it, the unix VFS does
 * not sync the directory again at this connection's first commit: an fdatasync of the
 * directory and three system calls that every command paid.
 */
static int wal_has_frames(const char *name)
{
    struct stat st;
    return stat(name, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > WAL_HEADER;
}

/* Main database and WAL files get this VFS's methods around the file below; every other file
 * (journals, temporary files) is the file below itself, in the same memory. */
static int vfs_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags,
                    int *out_flags)
{
    const sqlite3_io_methods *methods = (flags & SQLITE_OPEN_MAIN_DB) ? &db_methods
                                        : (flags & SQLITE_OPEN_WAL)   ? &wal_methods
                                                                      : NULL;
    if (methods == NULL)
        return below(vfs)->xOpen(below(vfs), name, file, flags, out_flags);
    struct vfs_file *f = (struct vfs_file *)file;
    memset(f, 0, sizeof(*f));
    f->real = (sqlite3_file *)((char *)file + REAL_OFFSET);
    f->end = -1;
    int rc = SQLITE_CANTOPEN;
    if (methods == &wal_methods && (flags & SQLITE_OPEN_CREATE) && wal_has_frames(name))
        rc = below(vfs)->xOpen(below(vfs), name, f->real, flags & ~SQLITE_OPEN_CREATE,
                               out_flags);
    if (rc == SQLITE_CANTOPEN) /* not tried, or gone since */
        rc = below(vfs)->xOpen(below(vfs), name, f->real, flags, out_flags);
    /* SQLite calls xClose whenever pMethods is set, even after a failed xOpen. */
    if (f->real->pMethods == NULL)
        return rc;
    f->base.pMethods = methods;
    if (methods == &wal_methods) {
        struct vfs_file *db = (struct vfs_file *)sqlite3_database_file_object(name);
        if (db != NULL && db->base.pMethods == &db_methods) {
            f->db = db;
            db->wal = f;
        }
    }
    return rc;
}

static int vfs_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    return below(vfs)->xDelete(below(vfs), name, sync_dir);
}

static int vfs_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    return below(vfs)->xAccess(below(vfs), name, flags, out);
}

static int vfs_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    return below(vfs)->xFullPathname(below(vfs), name, n, out);
}

static void *vfs_dl_open(sqlite3_vfs *vfs, const char *name)
{
    return below(vfs)->xDlOpen(below(vfs), name);
}

static void vfs_dl_error(sqlite3_vfs *vfs, int n, char *msg)
{
    below(vfs)->xDlError(below(vfs), n, msg);
}

static void (*vfs_dl_sym(sqlite3_vfs *vfs, void *lib, const char *sym))(void)
{
    return below(vfs)->xDlSym(below(vfs), lib, sym);
}

static void vfs_dl_close(sqlite3_vfs *vfs, void *lib)
{
    below(vfs)->xDlClose(below(vfs), lib);
}

static int vfs_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    return below(vfs)->xRandomness(below(vfs), n, out);
}

static int vfs_sleep(sqlite3_vfs *vfs, int us)
{
    return below(vfs)->xSleep(below(vfs), us);
}

static int vfs_current_time(sqlite3_vfs *vfs, double *out)
{
    return below(vfs)->xCurrentTime(below(vfs), out);
}

static int vfs_get_last_error(sqlite3_vfs *vfs, int n, char *out)
{
    return below(vfs)->xGetLastError(below(vfs), n, out);
}

static int vfs_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    return below(vfs)->xCurrentTimeInt64(below(vfs), out);
}

static int vfs_set_system_call(sqlite3_vfs *vfs, const char *name, sqlite3_syscall_ptr p)
{
    return below(vfs)->xSetSystemCall(below(vfs), name, p);
}

static sqlite3_syscall_ptr vfs_get_system_call(sqlite3_vfs *vfs, const char *name)
{
    return below(vfs)->xGetSystemCall(below(vfs), name);
}

static const char *vfs_next_system_call(sqlite3_vfs *vfs, const char *name)
{
    return below(vfs)->xNextSystemCall(below(vfs), name);
}

static sqlite3_vfs ferry_vfs = {
    .iVersion = 3,
    .zName = "ferry",
    .xOpen = vfs_open,
    .xDelete = vfs_delete,
    .xAccess = vfs_access,
    .xFullPathname = vfs_full_pathname,
    .xDlOpen = vfs_dl_open,
    .xDlError = vfs_dl_error,
    .xDlSym = vfs_dl_sym,
    .xDlClose = vfs_dl_close,
    .xRandomness = vfs_randomness,
    .xSleep = vfs_sleep,
    .xCurrentTime = vfs_current_time,
    .xGetLastError = vfs_get_last_error,
    .xCurrentTimeInt64 = vfs_current_time_int64,
    .xSetSystemCall = vfs_set_system_call,
    .xGetSystemCall = vfs_get_system_call,
    .xNextSystemCall = vfs_next_system_call,
};

int sqlite_vfs_open(const char *path, int flags, int mode)
{
    int fd = open(path, flags | O_NOATIME, mode);
    if (fd < 0 && errno == EPERM)
        fd = open(path, flags, mode); /* not the file's owner */
    return fd;
}

int sqlite_vfs_read_ahead(sqlite3 *db)
{
    sqlite3_file *file = NULL;
    if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &file) != SQLITE_OK ||
        file == NULL || file->pMethods != &db_methods)
        return SQLITE_NOTFOUND;
    ((struct vfs_file *)file)->read_ahead = 1;
    return SQLITE_OK;
}

/*
 * A process running as root gives every WAL and -shm file it opens the database file's
 * owner (unix's robustFchown), at each open: a chown to the owner the file has already is
 * no change, but it still marks the inode dirty for fdatasync (a change of attributes, as
 * a size change would), so the create's fdatasync of the WAL wrote the inode's block too,
 * one disk round trip more, where a write that changed only the modification time leaves
 * it to writeback (ext4 without a journal; writeback:writeback_write_inode in 100 creates
 * 109 -> 9, the checkpoints'). The chown is made only when the owner differs.
 */
static int (*below_fchown)(int, uid_t, gid_t);

static int vfs_fchown(int fd, uid_t uid, gid_t gid)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_uid == uid && st.st_gid == gid)
        return 0;
    return below_fchown(fd, uid, gid);
}

int sqlite_vfs_register(void)
{
    if (ferry_vfs.pAppData != NULL)
        return SQLITE_OK;
    sqlite3_vfs *under = sqlite3_vfs_find(NULL);
    if (under == NULL)
        return SQLITE_ERROR;
    ferry_vfs.iVersion = under->iVersion < 3 ? under->iVersion : 3;
    ferry_vfs.szOsFile = (int)REAL_OFFSET + under->szOsFile;
    ferry_vfs.mxPathname = under->mxPathname;
    ferry_vfs.pAppData = under;
    if (under->iVersion >= 3 && under->xSetSystemCall != NULL) {
        (void)under->xSetSystemCall(under, "open", (sqlite3_syscall_ptr)sqlite_vfs_open);
        below_ftruncate = (int (*)(int, off_t))under->xGetSystemCall(under, "ftruncate");
        if (below_ftruncate != NULL)
            (void)under->xSetSystemCall(under, "ftruncate", (sqlite3_syscall_ptr)vfs_ftruncate);
        below_fchown = (int (*)(int, uid_t, gid_t))under->xGetSystemCall(under, "fchown");
        if (below_fchown != NULL)
            (void)under->xSetSystemCall(under, "fchown", (sqlite3_syscall_ptr)vfs_fchown);
    }
    return sqlite3_vfs_register(&ferry_vfs, 1);
}
