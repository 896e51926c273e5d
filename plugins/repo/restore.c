/*
 * repo_restore: a snapshot into a new directory.
 *
 * 1. Load the index and the snapshot's tree; create every directory, file (at its final
 *    size, so runs of zeros stay holes), symlink, hard link and special file.
 * 2. List every (chunk, file, offset) the files need, sorted by pack and offset. Worker
 *    threads take one pack at a time, read the needed ranges (neighbouring blobs in one
 *    read), open, decompress and check each blob against its id, and write it to every
 *    place that needs it. A damaged blob fails the restore naming the object and the file.
 * 3. Set owners, permissions and times, children before their directories.
 * 4. With verify, read every restored file back and check it chunk by chunk.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "pack.h"
#include "restore.h"
#include "snapshot.h"

#define RUN_GAP ((uint32_t)1 << 20) /* read across gaps up to this size */
#define RUN_MAX ((uint32_t)8 << 20) /* longest single read */

typedef restore_state rs;

static void rs_fail(rs *r, const rerr *e)
{
    pthread_mutex_lock(&r->mu);
    rerr_merge(&r->err, e);
    __atomic_store_n(&r->stop, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&r->mu);
}

/* What an errno from the beneath_* walk means for an entry of the snapshot. */
static const char *why_errno(int err)
{
    switch (err) {
    case ELOOP:
    case EXDEV:
        return "the path passes through a symlink or leaves the restore (refused)";
    case ENOTDIR:
        return "a component of the path is not a directory (refused)";
    default:
        return strerror(err);
    }
}

static int fail_entry(rs *r, const tnode *n, const char *what, int err, rerr *e)
{
    char q[256];
    return rerr_set(e, errno_kind(err), "cannot %s %s/%s: %s", what, r->req->dest,
                    tree_quote(n->path, q, sizeof(q)), why_errno(err));
}

/* Opens regular file n of the restore (flags O_WRONLY or O_RDONLY), its directory taken
 * through dc beneath destfd, the file itself never a symlink. fd, or -1 with errno set. */
static int open_entry(rs *r, beneath_dir *dc, const tnode *n, int flags)
{
    const char *name;
    int pfd = beneath_dir_open(dc, r->destfd, n->path, &name);
    return pfd < 0 ? -1 : openat(pfd, name, flags | O_NOFOLLOW | O_CLOEXEC);
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* A worker's open file, kept while consecutive writes go to the same file. */
typedef struct open_file {
    uint32_t node;
    int fd;
    beneath_dir dir; /* the directory of the last file opened */
} open_file;

static int write_need(rs *r, open_file *of, const need *nd, const buf *data, rerr *e)
{
    const tnode *n = &r->t.nodes[nd->node];
    if (of->fd < 0 || of->node != nd->node) {
        if (of->fd >= 0)
            close(of->fd);
        of->node = nd->node;
        of->fd = open_entry(r, &of->dir, n, O_WRONLY);
        if (of->fd < 0)
            return fail_entry(r, n, "open", errno, e);
    }
    if (pwrite_all(of->fd, data->data, data->len, nd->file_offset) != 0)
        return rerr_set(e, errno_kind(errno), "cannot write %s/%s: %s", r->req->dest, n->path,
                        strerror(errno));
    __atomic_fetch_add(&r->written, data->len, __ATOMIC_RELAXED);
    return 0;
}

/* Restores the needs [from, to) of one pack. */
static int restore_group(rs *r, codec *c, open_file *of, buf *run, buf *out, size_t from, size_t to,
                         rerr *e)
{
    char key[96], why[256];
    pack_key(r->ix.packs[r->needs[from].pack].id, key, sizeof(key));
    size_t i = from;
    while (i < to) {
        /* One read covers the blobs from need i up to a gap or the size limit. */
        uint32_t start = r->needs[i].offset;
        uint32_t end = start + r->needs[i].entry->stored;
        size_t j = i + 1;
        while (j < to && r->needs[j].offset <= end + RUN_GAP &&
               r->needs[j].offset + r->needs[j].entry->stored - start <= RUN_MAX) {
            uint32_t e_end = r->needs[j].offset + r->needs[j].entry->stored;
            end = e_end > end ? e_end : end;
            j++;
        }
        run->len = 0;
        int rc = stor_get(r->s, key, start, end - start, run, e);
        if (rc == ST_NOTFOUND)
            return rerr_set(e, E_CORRUPT, "%s is missing from storage %s (needed by %s)", key,
                            r->s->name, r->t.nodes[r->needs[i].node].path);
        if (rc != ST_OK)
            return -1;
        const idx_entry *decoded = NULL;
        for (; i < j; i++) {
            const need *nd = &r->needs[i];
            if (nd->entry != decoded) {
                blob_entry be = {.type = nd->entry->type,
                                 .flags = nd->entry->flags,
                                 .offset = nd->offset,
                                 .stored = nd->entry->stored,
                                 .raw = nd->entry->raw};
                memcpy(be.id, nd->entry->id, ID_LEN);
                if (blob_decode(c, &be, run->data + (nd->offset - start), out, why, sizeof(why)) !=
                    0)
                    return rerr_set(e, E_CORRUPT, "%s in storage %s: %s; needed by file %s", key,
                                    r->s->name, why, r->t.nodes[nd->node].path);
                decoded = nd->entry;
            }
            if (write_need(r, of, nd, out, e) != 0)
                return -1;
        }
        if (__atomic_load_n(&r->stop, __ATOMIC_RELAXED))
            return 0;
    }
    return 0;
}

static void *worker_main(void *arg)
{
    rs *r = arg;
    codec *c = codec_new(&r->s->keys, 0);
    buf run = {0}, out = {0};
    open_file of = {.fd = -1, .dir = BENEATH_DIR_INIT};
    for (;;) {
        size_t g = __atomic_fetch_add(&r->next, 1, __ATOMIC_RELAXED);
        if (g >= r->ngroups || __atomic_load_n(&r->stop, __ATOMIC_RELAXED))
            break;
        rerr e = {0};
        if (restore_group(r, c, &of, &run, &out, r->groups[g], r->groups[g + 1], &e) != 0) {
            rs_fail(r, &e);
            break;
        }
    }
    if (of.fd >= 0)
        close(of.fd);
    beneath_dir_close(&of.dir);
    buf_free(&run);
    buf_free(&out);
    codec_free(c);
    __atomic_fetch_sub(&r->running, 1, __ATOMIC_RELEASE);
    return NULL;
}

static int by_pack_offset(const void *x, const void *y)
{
    const need *a = x, *b = y;
    if (a->pack != b->pack)
        return a->pack < b->pack ? -1 : 1;
    if (a->offset != b->offset)
        return a->offset < b->offset ? -1 : 1;
    return a->node < b->node ? -1 : a->node > b->node;
}

/* Lists what every file needs and groups it by pack. */
static int plan(rs *r, rerr *e)
{
    size_t cap = 0;
    uint64_t *total = &r->total;
    for (size_t i = 0; i < r->t.n; i++) {
        const tnode *n = &r->t.nodes[i];
        if (n->kind != T_FILE)
            continue;
        uint64_t off = 0;
        for (uint32_t c = 0; c < n->nchunks; off += n->chunks[c].len, c++) {
            if (n->chunks[c].zero)
                continue;
            const idx_entry *ie = idx_find(&r->ix, n->chunks[c].id);
            if (ie == NULL || ie->pack == IDX_PENDING) {
                char hex[HEX_LEN + 1];
                hex_encode(n->chunks[c].id, ID_LEN, hex);
                return rerr_set(e, E_CORRUPT,
                                "chunk %s of file %s is missing from storage %s (not in its "
                                "index)",
                                hex, n->path, r->s->name);
            }
            if (r->nneeds == cap) {
                cap = cap ? cap * 2 : 1024;
                r->needs = xrealloc(r->needs, cap * sizeof(*r->needs));
            }
            r->needs[r->nneeds++] = (need){.pack = ie->pack,
                                           .offset = ie->offset,
                                           .node = (uint32_t)i,
                                           .file_offset = off,
                                           .entry = ie};
            *total += n->chunks[c].len;
        }
    }
    if (r->nneeds > 1)
        qsort(r->needs, r->nneeds, sizeof(*r->needs), by_pack_offset);
    r->groups = xmalloc((r->nneeds + 1) * sizeof(*r->groups));
    for (size_t i = 0; i < r->nneeds; i++)
        if (i == 0 || r->needs[i].pack != r->needs[i - 1].pack)
            r->groups[r->ngroups++] = i;
    r->groups[r->ngroups] = r->nneeds;
    return 0;
}

/* Progress of a thaw, as the item's progress line. */
typedef struct thawing {
    ui *u;
    const char *repository;
} thawing;

static void on_thaw(void *arg, size_t ready, size_t total, double waited)
{
    thawing *t = arg;
    /* Its own phase name (before the ':'), so that the first report is never held back. */
    ui_progress(t->u, 1, "thawing %s from cold storage: %zu of %zu packs ready after %.0f s",
                t->repository, ready, total, waited);
}

/*
 * On a cold storage (S3 GLACIER, DEEP_ARCHIVE), asks for the restore of every pack the plan
 * reads and waits until all are readable (stor_thaw, bounded by the vault's thaw_timeout).
 * r->thawed: how many packs it asked for. 0, or -1 with e set.
 */
static int thaw_packs(rs *r, ui *u, rerr *e)
{
    size_t *thawed = &r->thawed;
    *thawed = 0;
    if (!r->s->cold || r->ngroups == 0)
        return 0;
    char **names = xmalloc(r->ngroups * sizeof(*names));
    for (size_t g = 0; g < r->ngroups; g++) {
        names[g] = xmalloc(96);
        pack_key(r->ix.packs[r->needs[r->groups[g]].pack].id, names[g], 96);
    }
    ui_log(u, 0,
           "storage %s keeps its data in a cold storage class: restoring (thawing) the %zu packs "
           "this pull reads before reading them",
           r->s->name, r->ngroups);
    thawing t = {.u = u, .repository = r->req->repository};
    int rc = stor_thaw(r->s, names, r->ngroups, on_thaw, &t, e);
    for (size_t g = 0; g < r->ngroups; g++)
        free(names[g]);
    free(names);
    *thawed = r->ngroups;
    return rc;
}

/* A hard link of the restore, to a regular file of the restore and through no symlink. */
static int create_link(rs *r, const tnode *n, int pfd, const char *name)
{
    const char *tname;
    int tfd = beneath_parent(r->destfd, n->target, &tname);
    struct stat st;
    int rc = -1;
    if (tfd < 0)
        return -1;
    if (fstatat(tfd, tname, &st, AT_SYMLINK_NOFOLLOW) != 0)
        goto out;
    if (!S_ISREG(st.st_mode)) {
        errno = ELOOP;
        goto out;
    }
    rc = linkat(tfd, tname, pfd, name, 0); /* 0: the target itself, never what it points to */
out:
    if (tfd >= 0) {
        int err = errno;
        close(tfd);
        errno = err;
    }
    return rc;
}

/*
 * Creates one entry under destfd: its directory is opened beneath destfd with no symlink
 * followed, and the entry made there under its one name (never replacing anything). A
 * regular file is created at its final size, so holes stay holes.
 */
static int create_entry(rs *r, size_t i, beneath_dir *dc, rerr *e)
{
    const tnode *n = &r->t.nodes[i];
    if (n->path[0] == '\0')
        return 0; /* the root: req->dest itself */
    const char *name;
    int pfd = beneath_dir_open(dc, r->destfd, n->path, &name);
    int rc = pfd < 0 ? -1 : 0;
    if (rc == 0) {
        switch (n->kind) {
        case T_DIR:
            rc = mkdirat(pfd, name, 0700);
            break;
        case T_FILE: {
            int fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
            rc = fd < 0 ? -1 : n->size ? ftruncate(fd, (off_t)n->size) : 0;
            if (fd >= 0)
                close(fd);
            break;
        }
        case T_SYMLINK:
            rc = symlinkat(n->target, pfd, name);
            break;
        case T_HARDLINK:
            rc = create_link(r, n, pfd, name);
            break;
        case T_FIFO:
            rc = mkfifoat(pfd, name, 0600);
            break;
        default: /* devices: only root may make them */
            rc = mknodat(pfd, name, (n->kind == T_CHR ? S_IFCHR : S_IFBLK) | 0600, (dev_t)n->rdev);
            if (rc != 0 && errno == EPERM) {
                __atomic_fetch_add(&r->skipped, 1, __ATOMIC_RELAXED);
                rc = 0;
            }
            break;
        }
    }
    return rc != 0 ? fail_entry(r, n, "create", errno, e) : 0;
}

static int create_file(rs *r, size_t i, beneath_dir *dc, rerr *e)
{
    return r->t.nodes[i].kind == T_FILE ? create_entry(r, i, dc, e) : 0;
}

/*
 * The permission bits entry n gets (restore.h). Set-user-ID is kept on a regular file only when its
 * owner was restored (owned) and neither its group nor others may write it; set-group-ID
 * only when its owner was restored and others may not write it. A device node never gets
 * permissions for others. Anything dropped is counted and reported once.
 */
uint32_t restore_safe_mode(rs *r, const tnode *n, int owned)
{
    uint32_t m = n->mode & 07777, keep = m;
    if (n->kind == T_FILE) {
        if ((m & S_ISUID) && (!owned || (m & 022)))
            keep &= ~(uint32_t)S_ISUID;
        if ((m & S_ISGID) && (!owned || (m & 002)))
            keep &= ~(uint32_t)S_ISGID;
    } else if (n->kind == T_CHR || n->kind == T_BLK || n->kind == T_FIFO) {
        keep &= n->kind == T_FIFO ? 0777 : 0770;
    }
    if (keep != m)
        __atomic_fetch_add(&r->restricted, 1, __ATOMIC_RELAXED);
    return keep;
}

/* Does the file type st found match the entry's kind? (A hard link is its first link's.) */
static int same_kind(const tnode *n, mode_t st_mode)
{
    switch (n->kind) {
    case T_DIR:
        return S_ISDIR(st_mode);
    case T_SYMLINK:
        return S_ISLNK(st_mode);
    case T_FIFO:
        return S_ISFIFO(st_mode);
    case T_CHR:
        return S_ISCHR(st_mode);
    case T_BLK:
        return S_ISBLK(st_mode);
    default:
        return S_ISREG(st_mode);
    }
}

/*
 * Owners, permissions and times of one entry (a hard link shares its first link's inode).
 * Reached like create_entry: its directory beneath destfd, then the entry by its one name,
 * checked to be what the restore created before anything is changed. The root, last of
 * all, through destfd itself.
 */
static int set_metadata(rs *r, size_t i, beneath_dir *dc, rerr *e)
{
    const tnode *n = &r->t.nodes[i];
    if (n->kind == T_HARDLINK)
        return 0;
    struct timespec ts[2] = {{.tv_sec = n->mtime_sec, .tv_nsec = n->mtime_nsec},
                             {.tv_sec = n->mtime_sec, .tv_nsec = n->mtime_nsec}};
    const char *what = "chown", *name = "";
    int owned = 1, rc = 0, pfd = r->destfd;
    struct stat st;
    if (n->path[0]) {
        pfd = beneath_dir_open(dc, r->destfd, n->path, &name);
        if (pfd < 0)
            return fail_entry(r, n, "reach", errno, e);
        int device = n->kind == T_CHR || n->kind == T_BLK;
        if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            what = "stat";
            rc = device && errno == ENOENT && geteuid() != 0 ? 1 : -1; /* not made: skipped */
        } else if (!same_kind(n, st.st_mode)) {
            char q[256];
            return rerr_set(e, E_FAIL,
                            "cannot restore %s/%s: another kind of file took its place (refused)",
                            r->req->dest, tree_quote(n->path, q, sizeof(q)));
        }
    }
    if (rc == 0 && fchownat(pfd, name, n->uid, n->gid,
                            AT_SYMLINK_NOFOLLOW | (name[0] ? 0 : AT_EMPTY_PATH)) != 0) {
        owned = 0;
        if (geteuid() == 0 || errno != EPERM)
            rc = -1;
        else
            __atomic_fetch_add(&r->owner_failures, 1, __ATOMIC_RELAXED);
    }
    if (rc == 0 && n->kind != T_SYMLINK) {
        what = "chmod";
        /* fchmodat follows a symlink, but the entry was just seen to be no symlink, inside a
         * restore root that stays 0700 (owned by this process) until its own metadata. */
        rc = name[0] ? fchmodat(pfd, name, restore_safe_mode(r, n, owned), 0)
                     : fchmod(pfd, restore_safe_mode(r, n, owned));
    }
    if (rc == 0) {
        what = "set times of";
        rc = name[0] ? utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW) : futimens(pfd, ts);
    }
    return rc < 0 ? fail_entry(r, n, what, errno, e) : 0;
}

static int set_file_metadata(rs *r, size_t i, beneath_dir *dc, rerr *e)
{
    uint8_t k = r->t.nodes[i].kind;
    return k != T_DIR && k != T_SYMLINK ? set_metadata(r, i, dc, e) : 0;
}

/* A symlink of the snapshot: made last, once nothing else will be created, never followed. */
static int make_symlink(rs *r, size_t i, beneath_dir *dc, rerr *e)
{
    return create_entry(r, i, dc, e) != 0 ? -1 : set_metadata(r, i, dc, e);
}

/* Runs fn on every node matching kinds (a bit mask of 1 << kind) in order, or in reverse. */
static int each_node(rs *r, int (*fn)(rs *, size_t, beneath_dir *, rerr *), unsigned kinds,
                     int reverse, rerr *e)
{
    beneath_dir dc = BENEATH_DIR_INIT;
    int rc = 0;
    for (size_t k = 0; k < r->t.n && rc == 0; k++) {
        size_t i = reverse ? r->t.n - 1 - k : k;
        if ((kinds & (1u << r->t.nodes[i].kind)) && fn(r, i, &dc, e) != 0)
            rc = -1;
    }
    beneath_dir_close(&dc);
    return rc;
}

static void *nodes_main(void *arg)
{
    rs *r = arg;
    beneath_dir dc = BENEATH_DIR_INIT;
    for (;;) {
        size_t i = __atomic_fetch_add(&r->next, 1, __ATOMIC_RELAXED);
        if (i >= r->t.n || __atomic_load_n(&r->stop, __ATOMIC_RELAXED))
            break;
        rerr e = {0};
        if (r->node_fn(r, i, &dc, &e) != 0) {
            rs_fail(r, &e);
            break;
        }
    }
    beneath_dir_close(&dc);
    __atomic_fetch_sub(&r->running, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Reads file n back and checks each chunk against its id. */
static int verify_file(rs *r, codec *c, buf *data, beneath_dir *dc, const tnode *n, rerr *e)
{
    int fd = open_entry(r, dc, n, O_RDONLY);
    if (fd < 0)
        return fail_entry(r, n, "verify: open", errno, e);
    uint64_t off = 0;
    int rc = 0;
    for (uint32_t i = 0; i < n->nchunks && rc == 0; off += n->chunks[i].len, i++) {
        const chunk_ref *ref = &n->chunks[i];
        data->len = 0;
        buf_reserve(data, ref->len);
        ssize_t got = pread(fd, data->data, ref->len, (off_t)off);
        uint8_t id[ID_LEN];
        int ok = got == (ssize_t)ref->len;
        if (ok && ref->zero)
            ok = ref->len == 0 ||
                 (data->data[0] == 0 && memcmp(data->data, data->data + 1, ref->len - 1) == 0);
        else if (ok) {
            hasher_id(c->hash, data->data, ref->len, id);
            ok = memcmp(id, ref->id, ID_LEN) == 0;
        }
        if (!ok)
            rc = rerr_set(e, E_CORRUPT, "verify: %s/%s differs from the snapshot at byte %llu",
                          r->req->dest, n->path, (unsigned long long)off);
    }
    close(fd);
    return rc;
}

static void *verify_main(void *arg)
{
    rs *r = arg;
    codec *c = codec_new(&r->s->keys, 0);
    buf data = {0};
    beneath_dir dc = BENEATH_DIR_INIT;
    for (;;) {
        size_t i = __atomic_fetch_add(&r->next, 1, __ATOMIC_RELAXED);
        if (i >= r->t.n || __atomic_load_n(&r->stop, __ATOMIC_RELAXED))
            break;
        rerr e = {0};
        if (r->t.nodes[i].kind == T_FILE &&
            verify_file(r, c, &data, &dc, &r->t.nodes[i], &e) != 0) {
            rs_fail(r, &e);
            break;
        }
        __atomic_fetch_add(&r->written, r->t.nodes[i].size, __ATOMIC_RELAXED);
    }
    beneath_dir_close(&dc);
    buf_free(&data);
    codec_free(c);
    __atomic_fetch_sub(&r->running, 1, __ATOMIC_RELEASE);
    return NULL;
}

void restore_progress(rs *r, ui *u, int percent, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (percent < r->percent)
        percent = r->percent;
    r->percent = percent;
    ui_progress(u, percent, "%s", msg);
}

/*
 * Runs fn on the worker threads and reports progress until they finish, as a percentage
 * from lo to hi: of total bytes, or (total 0) of the tree's entries.
 */
static int run_threads(rs *r, void *(*fn)(void *), ui *u, uint64_t total, const char *what, int lo,
                       int hi)
{
    /* Each thread reads runs of packs and writes files: as many as there are cores, or as
     * the storage's connections when a remote storage allows more transfers at once. */
    int nthreads = r->req->threads > 0 ? r->req->threads : default_threads();
    if (r->req->threads <= 0 && r->s->connections > nthreads)
        nthreads = r->s->connections;
    if (nthreads > 32)
        nthreads = 32;
    pthread_t th[32];
    r->next = 0;
    r->written = 0;
    r->running = nthreads;
    double started = mono_sec();
    for (int i = 0; i < nthreads; i++)
        pthread_create(&th[i], NULL, fn, r);
    while (__atomic_load_n(&r->running, __ATOMIC_ACQUIRE) > 0) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (ui_cancelled(u)) {
            rerr e = {0};
            rerr_set(&e, E_CANCELLED, "cancelled");
            rs_fail(r, &e);
        }
        uint64_t done = __atomic_load_n(&r->written, __ATOMIC_RELAXED);
        double secs = mono_sec() - started;
        if (total == 0) {
            /* next runs past the end by one per thread as the threads finish */
            size_t at = __atomic_load_n(&r->next, __ATOMIC_RELAXED);
            at = at > r->t.n ? r->t.n : at;
            restore_progress(r, u, lo + (int)((uint64_t)(hi - lo) * at / (r->t.n ? r->t.n : 1)),
                             "%s: %zu of %zu entries", what, at, r->t.n);
        } else {
            done = done > total ? total : done;
            restore_progress(r, u, lo + (int)((uint64_t)(hi - lo) * done / total),
                             "%s: %.1f of %.1f MiB, %.0f MB/s", what, (double)done / 1048576.0,
                             (double)total / 1048576.0, secs > 0 ? (double)done / 1e6 / secs : 0.0);
        }
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    return r->err.kind == E_NONE ? 0 : -1;
}

/*
 * Refuses, before anything is written, a hard link whose target is not a regular file listed
 * before it (a hostile tree, or an older push whose first link vanished while it ran): a
 * restore links only files it made itself.
 */
static int check_links(rs *r, const json_t *doc, rerr *e)
{
    tree_map m;
    tree_map_build(&m, &r->t);
    int rc = 0;
    for (size_t i = 0; i < r->t.n && rc == 0; i++) {
        const tnode *n = &r->t.nodes[i], *first;
        if (n->kind != T_HARDLINK)
            continue;
        first = tree_map_find(&m, n->target);
        if (first == NULL || first->kind != T_FILE || first > n) {
            char q[256], q2[256];
            rc = rerr_set(e, E_CORRUPT,
                          "snapshot %s/%s in storage %s: hard link %s: its target %s is not a "
                          "regular file listed before it; nothing was restored",
                          r->req->repository, json_string_value(json_object_get(doc, "id")),
                          r->s->name, tree_quote(n->path, q, sizeof(q)),
                          tree_quote(n->target, q2, sizeof(q2)));
        }
    }
    tree_map_free(&m);
    return rc;
}

/* Finds the snapshot, loads its tree. */
static int load_snapshot(rs *r, codec *c, rerr *e)
{
    snap_list l;
    int rc = -1;
    if (snap_list_read(r->s, r->req->repository, &l, e) != 0)
        goto out;
    const snap_info *si = snap_resolve(&l, r->req->point);
    if (si == NULL) {
        rerr_set(e, E_NOTFOUND, "no snapshot of repository %s in storage %s matches \"%s\"%s",
                 r->req->repository, r->s->name, r->req->point,
                 l.n ? "" : " (the storage has none of this repository)");
        goto out;
    }
    r->doc = json_incref(si->doc);
    rc = tree_load(r->s, &r->ix, c, si->doc, &r->t, e);
out:
    snap_list_free(&l);
    return rc;
}

/* Marks the directories leading to node i as kept (1) when they are not kept already. */
static void keep_parents(const tree *t, const tree_map *m, uint8_t *keep, size_t i)
{
    char *path = xstrdup(t->nodes[i].path);
    for (char *slash = strrchr(path, '/');; slash = strrchr(path, '/')) {
        if (slash)
            *slash = '\0';
        const tnode *p = tree_map_find(m, slash ? path : "");
        if (p == NULL || keep[p - t->nodes])
            break;
        keep[p - t->nodes] = 1;
        if (slash == NULL)
            break;
    }
    free(path);
}

/*
 * A partial restore (req->include): keeps the entries it selects, what selected directories
 * hold and the directories leading to them. A hard link kept without its first link becomes
 * a regular file with that file's content, and later links to it point at it instead. When
 * nothing is selected the restore fails before anything is written.
 */
static int narrow(rs *r, rerr *e)
{
    const restore_req *req = r->req;
    if (req->include == NULL)
        return 0;
    uint8_t *keep = xcalloc(r->t.n, 1); /* 2: selected, 1: leads to a selected entry */
    tree_map m;
    tree_map_build(&m, &r->t);
    size_t selected = 0;
    for (size_t i = 1; i < r->t.n; i++) {
        tnode *n = &r->t.nodes[i];
        const char *slash = strrchr(n->path, '/');
        const tnode *parent = NULL;
        if (slash) {
            char *dir = xasprintf("%.*s", (int)(slash - n->path), n->path);
            parent = tree_map_find(&m, dir);
            free(dir);
        }
        if ((parent && keep[parent - r->t.nodes] == 2) ||
            req->include(req->include_arg, n->path, n->kind == T_DIR)) {
            keep[i] = 2;
            selected++;
            keep_parents(&r->t, &m, keep, i);
        }
    }
    int rc = 0;
    if (selected == 0)
        rc = rerr_set(e, E_NOTFOUND, "include matches nothing in snapshot %s of %s",
                      json_string_value(json_object_get(r->doc, "id")), req->repository);
    for (size_t i = 0; i < r->t.n && rc == 0; i++) {
        tnode *n = &r->t.nodes[i];
        const tnode *first = keep[i] && n->kind == T_HARDLINK ? tree_map_find(&m, n->target) : NULL;
        if (first == NULL || first->kind != T_FILE || keep[first - r->t.nodes])
            continue; /* check_links refuses a bad target */
        /* The first kept link of the inode takes the file's place. */
        char *moved = xstrdup(n->path);
        free(n->target);
        n->target = NULL;
        n->kind = T_FILE;
        n->size = first->size;
        n->nchunks = first->nchunks;
        n->chunks = xmalloc(first->nchunks * sizeof(chunk_ref) + 1);
        memcpy(n->chunks, first->chunks, first->nchunks * sizeof(chunk_ref));
        for (size_t j = i + 1; j < r->t.n; j++)
            if (r->t.nodes[j].kind == T_HARDLINK &&
                strcmp(r->t.nodes[j].target, first->path) == 0) {
                free(r->t.nodes[j].target);
                r->t.nodes[j].target = xstrdup(moved);
            }
        free(moved);
    }
    tree_map_free(&m);
    keep[0] = 1; /* the root */
    size_t out = 0;
    for (size_t i = 0; i < r->t.n; i++) {
        if (keep[i]) {
            r->t.nodes[out++] = r->t.nodes[i];
            continue;
        }
        free(r->t.nodes[i].path);
        free(r->t.nodes[i].target);
        free(r->t.nodes[i].chunks);
    }
    r->t.n = out;
    free(keep);
    return rc;
}

int restore_open(rs *r, storage *s, const restore_req *req, ui *u, rerr *e)
{
    memset(r, 0, sizeof(*r));
    r->s = s;
    r->req = req;
    r->destfd = -1;
    pthread_mutex_init(&r->mu, NULL);
    idx_init(&r->ix);
    codec *c = codec_new(&s->keys, 0);
    restore_progress(r, u, 0, "%s: reading the index and the snapshot", req->repository);
    int rc = idx_load(s, &r->ix, e) != 0 || load_snapshot(r, c, e) != 0 || narrow(r, e) != 0 ||
                     check_links(r, r->doc, e) != 0 || plan(r, e) != 0 || thaw_packs(r, u, e) != 0
                 ? -1
                 : 0;
    codec_free(c);
    for (size_t i = 0; i < r->t.n; i++)
        r->logical += r->t.nodes[i].kind == T_FILE ? r->t.nodes[i].size : 0;
    return rc;
}

void restore_close(rs *r)
{
    if (r->destfd >= 0)
        close(r->destfd);
    json_decref(r->doc);
    free(r->needs);
    free(r->groups);
    tree_free(&r->t);
    idx_free(&r->ix);
    pthread_mutex_destroy(&r->mu);
}

json_t *restore_finish(rs *r, ui *u, double started)
{
    if (r->skipped)
        ui_log(u, 1, "%zu device files were not created (only root may make them)", r->skipped);
    if (r->owner_failures)
        ui_log(u, 1, "owners of %zu entries were not restored (only root may set them)",
               r->owner_failures);
    if (r->restricted)
        ui_log(u, 1,
               "%zu entries were restored with narrower permissions: set-user-ID and "
               "set-group-ID bits need their owner restored and no write access for others; "
               "device nodes get none for others",
               r->restricted);
    double secs = mono_sec() - started;
    return json_pack("{s:s,s:s,s:O,s:I,s:I,s:b,s:f,s:f,s:I,s:I}", "repository", r->req->repository,
                     "storage", r->s->name, "snapshot_id", json_object_get(r->doc, "id"), "entries",
                     (json_int_t)r->t.n, "bytes", (json_int_t)r->logical, "verified",
                     r->req->verify, "seconds", secs, "mb_per_s",
                     secs > 0 ? (double)r->logical / 1e6 / secs : 0.0, "peak_rss_kb",
                     (json_int_t)peak_rss_kb(), "thawed_packs", (json_int_t)r->thawed);
}

/*
 * Creates req->dest (it must not exist) and opens it without following a symlink: a link or
 * anything else put there between the mkdir and the open is refused, as is a directory not
 * owned by this process or open to others.
 */
static int open_dest(rs *r, rerr *e)
{
    const char *dest = r->req->dest;
    struct stat st;
    if (mkdir(dest, 0700) != 0 ||
        (r->destfd = open(dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
        fstat(r->destfd, &st) != 0)
        return rerr_set(e, errno_kind(errno), "cannot create %s: %s", dest, strerror(errno));
    if (st.st_uid != geteuid() || (st.st_mode & 077) != 0)
        return rerr_set(e, E_FAIL,
                        "refusing to restore into %s: it was replaced after it was created (owner "
                        "%u, mode %04o)",
                        dest, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
    return 0;
}

int repo_restore(storage *s, const restore_req *req, ui *u, json_t **result, rerr *e)
{
    double started = mono_sec();
    rs r;
    int rc = -1;
    if (restore_open(&r, s, req, u, e) != 0 || open_dest(&r, e) != 0)
        goto out;
    /* Directories first, then files on every core (creating inodes is much of a restore of
     * many small files), then hard links and special files, which need their targets. */
    restore_progress(&r, u, 1, "%s: creating %zu entries", req->repository, r.t.n);
    r.node_fn = create_file;
    if (each_node(&r, create_entry, 1u << T_DIR, 0, e) != 0 ||
        run_threads(&r, nodes_main, u, 0, "creating", 1, 5) != 0 ||
        each_node(&r, create_entry, 1u << T_HARDLINK | 1u << T_FIFO | 1u << T_CHR | 1u << T_BLK, 0,
                  e) != 0) {
        rerr_merge(e, &r.err);
        goto out;
    }
    if (run_threads(&r, worker_main, u, r.total, "restoring", 5, 85) != 0) {
        rerr_merge(e, &r.err);
        goto out;
    }
    /* Owners, modes and times: entries on every core; then the snapshot's symlinks, created
     * only now that nothing else will be made and never followed; then directories,
     * children first, the restore root last (it stays 0700 until then). */
    r.node_fn = set_file_metadata;
    if (run_threads(&r, nodes_main, u, 0, "setting owners and times", 85, 89) != 0 ||
        each_node(&r, make_symlink, 1u << T_SYMLINK, 0, e) != 0 ||
        each_node(&r, set_metadata, 1u << T_DIR, 1, e) != 0) {
        rerr_merge(e, &r.err);
        goto out;
    }
    if (req->verify && run_threads(&r, verify_main, u, r.logical, "verifying", 90, 99) != 0) {
        rerr_merge(e, &r.err);
        goto out;
    }
    if (req->fsync && syncfs(r.destfd) != 0) {
        rerr_set(e, errno_kind(errno), "cannot flush %s: %s", req->dest, strerror(errno));
        goto out;
    }
    *result = restore_finish(&r, u, started);
    json_object_set_new(*result, "path_walk",
                        json_string(beneath_openat2() ? "openat2" : "nofollow"));
    rc = 0;
out:
    restore_close(&r);
    return rc;
}
