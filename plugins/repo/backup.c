/*
 * repo_backup: a directory into a storage as a new snapshot.
 *
 * 1. Scan the directory (metadata only) and load the index and the previous snapshot of the
 *    repository from the same machine. A file whose size, mtime, inode and ctime all match
 *    that snapshot keeps its chunk list without being read. The rule is the same whatever
 *    the source: a local snapshot copied with cp -a has new inodes and ctimes, so its files
 *    are read again (deduplication still stores nothing twice); a btrfs snapshot keeps them.
 * 2. Worker threads take the remaining files largest first (so the two cores finish
 *    together), cut them with FastCDC, hash the chunks, and compress and seal the chunks the
 *    index lacks into their own pack. Uploader threads store full packs and, right after
 *    each, a one-pack index file: an interrupted push leaves nothing behind that the next
 *    push cannot reuse.
 * 3. Store the tree, write the manifest (the commit point), replace this push's small
 *    index files by one, and with verify re-read every pack and the manifest.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "index.h"
#include "pack.h"
#include "snapshot.h"
#include "tree.h"
#include "xfer.h"

#define READ_BUF      ((size_t)8 << 20)
#define QUEUE_CAP     3
#define MAX_UPLOADERS 32 /* storage_open caps the vault's "connections" there */

typedef struct written_pack {
    uint8_t id[ID_LEN];
    char index_key[80];
    blob_entry *entries;
    size_t n;
} written_pack;

typedef struct bk {
    storage *s;
    const backup_req *req;
    chunk_index ix;
    pthread_mutex_t mu; /* ix, written, err, the queue */
    pthread_cond_t q_nonempty;
    pthread_cond_t q_nonfull;
    pack *queue[QUEUE_CAP];
    size_t qhead, qlen;
    int q_closed;
    written_pack *written;
    size_t nwritten;
    char id[160]; /* the snapshot's id: req->snapshot_id, or it with a suffix (commit) */
    tree t;
    size_t *work;
    size_t nwork;
    size_t next; /* atomic: next work item */
    int rootfd;
    int stop;      /* atomic */
    int running;   /* atomic: workers still running */
    int uploading; /* atomic: uploaders still running */
    rerr err;
    uint64_t bytes_done, bytes_new, stored_new, chunks_new, changed; /* atomics */
    uint64_t reused; /* bytes of files taken over from the previous snapshot unread */
} bk;

/*
 * Test-only injection point: when set (only tests/unit/test_repo_hardlink.c, which compiles
 * this file in, sets it), called with the source directory after the scan and the plan and
 * before any file is read, so a test can change the directory exactly there. Never set in
 * the plugin.
 */
static void (*backup_test_after_scan)(const char *source);

static void add_u64(uint64_t *p, uint64_t v)
{
    __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

static uint64_t get_u64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static int stopped(bk *b)
{
    return __atomic_load_n(&b->stop, __ATOMIC_RELAXED);
}

static void bk_fail(bk *b, const rerr *e)
{
    pthread_mutex_lock(&b->mu);
    rerr_merge(&b->err, e);
    __atomic_store_n(&b->stop, 1, __ATOMIC_RELAXED);
    if (b->req->remote)
        b->req->remote->stop(b->req->remote->arg);
    pthread_cond_broadcast(&b->q_nonfull);
    pthread_cond_broadcast(&b->q_nonempty);
    pthread_mutex_unlock(&b->mu);
}

/* Stores a finished pack, then its one-pack index file, then records both. A cancel that
 * comes once the pack is stored does not stop its index (xfer_shield). */
static int store_pack(bk *b, pack *p, rerr *e)
{
    written_pack w = {.entries = p->entries, .n = p->n};
    memcpy(w.id, p->id, ID_LEN);
    idx_group g = {.pack_id = p->id, .time = (int64_t)time(NULL), .entries = p->entries, .n = p->n};
    if (pack_commit(p, e) != 0)
        return -1;
    int was = xfer_shield(1);
    int rc = idx_write(b->s, &g, 1, w.index_key, e);
    xfer_shield(was);
    if (rc != 0)
        return -1;
    add_u64(&b->stored_new, p->size);
    pthread_mutex_lock(&b->mu);
    uint32_t packno = idx_pack_add(&b->ix, p->id, g.time);
    idx_add_blobs(&b->ix, packno, p->entries, p->n);
    b->written = xrealloc(b->written, (b->nwritten + 1) * sizeof(*b->written));
    b->written[b->nwritten++] = w;
    pthread_mutex_unlock(&b->mu);
    p->entries = NULL; /* now owned by b->written */
    return 0;
}

static void *uploader_main(void *arg)
{
    bk *b = arg;
    for (;;) {
        pthread_mutex_lock(&b->mu);
        while (b->qlen == 0 && !b->q_closed)
            pthread_cond_wait(&b->q_nonempty, &b->mu);
        if (b->qlen == 0) {
            pthread_mutex_unlock(&b->mu);
            __atomic_fetch_sub(&b->uploading, 1, __ATOMIC_RELEASE);
            return NULL;
        }
        pack *p = b->queue[b->qhead];
        b->qhead = (b->qhead + 1) % QUEUE_CAP;
        b->qlen--;
        pthread_cond_signal(&b->q_nonfull);
        pthread_mutex_unlock(&b->mu);
        rerr e = {0};
        if (!stopped(b) && store_pack(b, p, &e) != 0)
            bk_fail(b, &e);
        pack_free(p);
    }
}

/* Hands a full pack to the uploaders; blocks while QUEUE_CAP packs are waiting. */
static void enqueue(bk *b, pack *p)
{
    pthread_mutex_lock(&b->mu);
    while (b->qlen == QUEUE_CAP && !stopped(b))
        pthread_cond_wait(&b->q_nonfull, &b->mu);
    if (stopped(b)) {
        pthread_mutex_unlock(&b->mu);
        pack_free(p);
        return;
    }
    b->queue[(b->qhead + b->qlen) % QUEUE_CAP] = p;
    b->qlen++;
    pthread_cond_signal(&b->q_nonempty);
    pthread_mutex_unlock(&b->mu);
}

static void push_ref(tnode *n, uint32_t *cap, const chunk_ref *ref)
{
    if (n->nchunks == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        n->chunks = xrealloc(n->chunks, *cap * sizeof(*n->chunks));
    }
    n->chunks[n->nchunks++] = *ref;
}

/* One chunk of a file: a hole, a known chunk, or a new blob for this thread's pack. */
static int add_chunk(bk *b, codec *c, pack_writer *pw, tnode *n, uint32_t *cap, const uint8_t *p,
                     size_t len, rerr *e)
{
    chunk_ref ref = {.len = (uint32_t)len};
    if (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0) {
        ref.zero = 1;
    } else {
        hasher_id(c->hash, p, len, ref.id);
        idx_entry pending = {.pack = IDX_PENDING, .type = BLOB_DATA};
        memcpy(pending.id, ref.id, ID_LEN);
        int inserted = 0;
        pthread_mutex_lock(&b->mu);
        idx_insert(&b->ix, &pending, &inserted);
        pthread_mutex_unlock(&b->mu);
        if (inserted) {
            if (pack_add(pw, c, ref.id, BLOB_DATA, p, len, e) != 0)
                return -1;
            add_u64(&b->bytes_new, len);
            add_u64(&b->chunks_new, 1);
            if (pw->size >= PACK_TARGET_SIZE) {
                pack *full = pack_finish(pw, c, e);
                if (full == NULL)
                    return -1;
                enqueue(b, full);
            }
        }
    }
    push_ref(n, cap, &ref);
    add_u64(&b->bytes_done, len);
    return 0;
}

/* O_NONBLOCK: a file replaced by a FIFO since the scan must not block the open (it does
 * nothing to reads of a regular file). */
static int open_file(bk *b, const char *path)
{
    int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
    int fd = openat(b->rootfd, path, flags | O_NOATIME);
    if (fd < 0 && errno == EPERM) /* O_NOATIME needs ownership */
        fd = openat(b->rootfd, path, flags);
    return fd;
}

/* Where chunk_content reads a file's bytes from: a local descriptor or a remote stream. */
typedef struct bk_input {
    long (*read)(void *arg, void *dst, size_t len, rerr *e);
    void *arg;
    const char *source; /* for messages */
    const char *path;
} bk_input;

static long fd_input(void *arg, void *dst, size_t len, rerr *e)
{
    bk_input *in = arg;
    int fd = *(int *)in->arg;
    for (;;) {
        ssize_t got = read(fd, dst, len);
        if (got >= 0)
            return (long)got;
        if (errno != EINTR)
            return rerr_set(e, errno_kind(errno), "cannot read %s/%s: %s", in->source, in->path,
                            strerror(errno));
    }
}

/*
 * Cuts the content in reads into chunks and stores the new ones: the step local and remote
 * pushes share. *total receives the bytes read. 0, or -1 with e set.
 */
static int chunk_content(bk *b, codec *c, pack_writer *pw, buf *rb, tnode *n, bk_input *in,
                         uint64_t *total, rerr *e)
{
    uint32_t cap = 0;
    size_t have = 0, start = 0;
    int eof = 0, rc = 0;
    *total = 0;
    while (rc == 0) {
        if (!eof && have - start < CDC_DATA_MAX) {
            memmove(rb->data, rb->data + start, have - start);
            have -= start;
            start = 0;
            while (!eof && have < READ_BUF) {
                long got = in->read(in, rb->data + have, READ_BUF - have, e);
                if (got < 0) {
                    rc = -1;
                    break;
                }
                eof = got == 0;
                have += (size_t)got;
            }
        }
        if (rc != 0 || start == have || stopped(b))
            break;
        size_t cut = cdc_cut(&b->s->data_cdc, rb->data + start, have - start);
        rc = add_chunk(b, c, pw, n, &cap, rb->data + start, cut, e);
        start += cut;
        *total += cut;
    }
    return rc;
}

/* Reads, cuts and stores one local file. 0, or -1 with e set. */
static int read_file(bk *b, codec *c, pack_writer *pw, buf *rb, tnode *n, rerr *e)
{
    int fd = open_file(b, n->path);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        if (fd < 0 && err != ENOENT && err != ELOOP && err != ENXIO) /* ENXIO: a socket */
            return rerr_set(e, errno_kind(err), "cannot open %s/%s: %s", b->req->source, n->path,
                            strerror(err));
        n->kind = 0; /* removed or replaced since the scan: not part of this snapshot */
        add_u64(&b->changed, 1);
        return 0;
    }
    if (st.st_size > (off_t)(1 << 20))
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    uint64_t total = 0;
    bk_input in = {.read = fd_input, .arg = &fd, .source = b->req->source, .path = n->path};
    int rc = chunk_content(b, c, pw, rb, n, &in, &total, e);
    struct stat after;
    if (rc == 0 && fstat(fd, &after) == 0 &&
        (after.st_mtim.tv_sec != st.st_mtim.tv_sec || after.st_mtim.tv_nsec != st.st_mtim.tv_nsec ||
         (uint64_t)after.st_size != total))
        add_u64(&b->changed, 1); /* written to while read: stored as read */
    close(fd);
    /* The identity of what was read, for the next push's change detection. */
    n->size = total;
    n->mtime_sec = st.st_mtim.tv_sec;
    n->mtime_nsec = (uint32_t)st.st_mtim.tv_nsec;
    n->ino = st.st_ino;
    n->ctime_sec = st.st_ctim.tv_sec;
    n->ctime_nsec = (uint32_t)st.st_ctim.tv_nsec;
    return rc;
}

/* A worker's share of the files: a remote stream and the nodes it reads, in order; for a
 * local push (stream NULL) the workers share b->work instead. */
typedef struct bk_share {
    bk *b;
    void *stream;
    size_t *nodes;
    const char **paths;
    size_t n;
    uint64_t bytes;
} bk_share;

static long stream_input(void *arg, void *dst, size_t len, rerr *e)
{
    bk_input *in = arg;
    bk_share *sh = in->arg;
    return sh->b->req->remote->read(sh->stream, dst, len, e);
}

/*
 * Reads a share's files from its stream, in order. The identity recorded for the next
 * push's change detection is the scan's (mtime, inode, ctime): a file written to after the
 * scan differs from it next time and is read again. A file missing from the stream vanished
 * (or stopped being a regular file) since the scan: it is not part of the snapshot, as in a
 * local push.
 */
static int read_share(bk_share *sh, codec *c, pack_writer *pw, buf *rb, rerr *e)
{
    bk *b = sh->b;
    const backup_source *src = b->req->remote;
    size_t expect = 0;
    while (!stopped(b)) {
        size_t index = SIZE_MAX;
        if (src->next(sh->stream, &index, e) != 0)
            return -1;
        if (index != SIZE_MAX && (index < expect || index >= sh->n))
            return rerr_set(e, E_FAIL, "the remote file stream is out of order");
        size_t end = index == SIZE_MAX ? sh->n : index;
        for (; expect < end; expect++) {
            b->t.nodes[sh->nodes[expect]].kind = 0;
            add_u64(&b->changed, 1);
        }
        if (index == SIZE_MAX)
            return 0;
        tnode *n = &b->t.nodes[sh->nodes[index]];
        uint64_t total = 0;
        bk_input in = {
            .read = stream_input, .arg = sh, .source = b->req->source, .path = n->path};
        if (chunk_content(b, c, pw, rb, n, &in, &total, e) != 0)
            return -1;
        if (total != n->size)
            add_u64(&b->changed, 1); /* grew or shrank since the scan: stored as read */
        n->size = total;
        expect = index + 1;
    }
    return 0;
}

static void *worker_main(void *arg)
{
    bk_share *sh = arg;
    bk *b = sh->b;
    codec *c = codec_new(&b->s->keys, b->req->level);
    pack_writer pw = {.s = b->s};
    buf rb = {0};
    buf_reserve(&rb, READ_BUF);
    if (sh->stream) {
        rerr e = {0};
        if (read_share(sh, c, &pw, &rb, &e) != 0)
            bk_fail(b, &e);
    }
    while (sh->stream == NULL) {
        size_t i = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED);
        if (i >= b->nwork || stopped(b))
            break;
        rerr e = {0};
        if (read_file(b, c, &pw, &rb, &b->t.nodes[b->work[i]], &e) != 0) {
            bk_fail(b, &e);
            break;
        }
    }
    if (!stopped(b)) {
        rerr e = {0};
        pack *p = pack_finish(&pw, c, &e);
        if (p)
            enqueue(b, p);
        else if (e.kind)
            bk_fail(b, &e);
    }
    pack_writer_free(&pw);
    buf_free(&rb);
    codec_free(c);
    __atomic_fetch_sub(&b->running, 1, __ATOMIC_RELEASE);
    return NULL;
}

/*
 * Non-zero when the previous snapshot's entry p still describes file n: size, mtime, inode
 * and ctime all equal. A rewrite that restores size and mtime (touch -d) still changes the
 * ctime, so it is read again.
 */
static int unchanged(const bk *b, const tnode *n, const tnode *p)
{
    if (p == NULL || p->kind != T_FILE || p->size != n->size || p->mtime_sec != n->mtime_sec ||
        p->mtime_nsec != n->mtime_nsec || p->ino != n->ino || p->ctime_sec != n->ctime_sec ||
        p->ctime_nsec != n->ctime_nsec)
        return 0;
    for (uint32_t i = 0; i < p->nchunks; i++)
        if (!p->chunks[i].zero && idx_find(&b->ix, p->chunks[i].id) == NULL)
            return 0; /* its data has been collected since: read the file again */
    return 1;
}

static const tree *sort_tree;
static int by_size_desc(const void *x, const void *y)
{
    uint64_t a = sort_tree->nodes[*(const size_t *)x].size;
    uint64_t c = sort_tree->nodes[*(const size_t *)y].size;
    return a < c ? 1 : a > c ? -1 : 0;
}

/* Decides, file by file, what must be read; returns the bytes taken over unread. */
static uint64_t plan(bk *b, const tree *prev)
{
    tree_map map = {0};
    if (prev)
        tree_map_build(&map, prev);
    b->work = xcalloc(b->t.n, sizeof(*b->work));
    uint64_t reused = 0;
    for (size_t i = 0; i < b->t.n; i++) {
        tnode *n = &b->t.nodes[i];
        if (n->kind != T_FILE)
            continue;
        const tnode *p = prev ? tree_map_find(&map, n->path) : NULL;
        if (unchanged(b, n, p)) {
            n->chunks = xmalloc((p->nchunks ? p->nchunks : 1) * sizeof(*n->chunks));
            if (p->nchunks)
                memcpy(n->chunks, p->chunks, p->nchunks * sizeof(*n->chunks));
            n->nchunks = p->nchunks;
            n->reused = 1;
            reused += n->size;
        } else {
            b->work[b->nwork++] = i;
        }
    }
    tree_map_free(&map);
    sort_tree = &b->t; /* qsort has no context argument; plan runs on one thread */
    qsort(b->work, b->nwork, sizeof(*b->work), by_size_desc);
    return reused;
}

/* Loads the tree of the repository's newest snapshot from this machine as the
 * change-detection baseline (another machine's files say nothing about this one's). */
static int load_previous(bk *b, codec *c, tree *prev, char *prev_id, size_t idlen, rerr *e)
{
    snap_list l;
    if (snap_list_read(b->s, b->req->repository, &l, e) != 0) {
        snap_list_free(&l);
        return -1;
    }
    int rc = 0;
    const snap_info *last = snap_resolve_on(&l, "latest", b->req->machine);
    if (last) {
        snprintf(prev_id, idlen, "%s", last->id);
        rerr ignore = {0};
        if (tree_load(b->s, &b->ix, c, last->doc, prev, &ignore) != 0) {
            tree_free(prev); /* a damaged baseline only costs re-reading every file */
            prev_id[0] = '\0';
        }
    }
    snap_list_free(&l);
    return rc;
}

static void report(bk *b, ui *u, uint64_t total, double started)
{
    uint64_t done = get_u64(&b->bytes_done);
    double secs = mono_sec() - started;
    int pct = total && done < total ? (int)(done * 90 / total) : 90; /* links re-read: more */
    ui_progress(u, pct, "%s: %.1f of %.1f MiB read, %.1f MiB new, %.0f MB/s", b->req->repository,
                (double)done / 1048576.0, (double)total / 1048576.0,
                (double)get_u64(&b->bytes_new) / 1048576.0,
                secs > 0 ? (double)done / 1e6 / secs : 0.0);
}

/* Reports progress and notices a cancel until the threads *alive counts have ended. */
static void watch(bk *b, int *alive, ui *u, uint64_t total, double started)
{
    while (__atomic_load_n(alive, __ATOMIC_ACQUIRE) > 0) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (!stopped(b) && ui_cancelled(u)) {
            rerr e = {0};
            rerr_set(&e, E_CANCELLED, "cancelled");
            bk_fail(b, &e);
        }
        report(b, u, total, started);
    }
}

/*
 * A remote push's files split into one share per stream, largest first to the share with
 * the fewest bytes so far, each share keeping the largest-first order. Returns the shares
 * used (none when no file is to be read).
 */
static int split_shares(bk *b, bk_share *shares, int nshares)
{
    if (b->nwork == 0)
        return 0;
    if ((size_t)nshares > b->nwork)
        nshares = (int)b->nwork;
    for (int k = 0; k < nshares; k++) {
        shares[k].nodes = xcalloc(b->nwork, sizeof(size_t));
        shares[k].paths = xcalloc(b->nwork, sizeof(char *));
    }
    for (size_t i = 0; i < b->nwork; i++) {
        int best = 0;
        for (int k = 1; k < nshares; k++)
            if (shares[k].bytes < shares[best].bytes)
                best = k;
        bk_share *sh = &shares[best];
        const tnode *n = &b->t.nodes[b->work[i]];
        sh->nodes[sh->n] = b->work[i];
        sh->paths[sh->n++] = n->path;
        sh->bytes += n->size + 512; /* a tar header per file */
    }
    return nshares;
}

/* Runs the workers and uploaders over b->work; returns when all packs are stored. */
static int run_threads(bk *b, ui *u, uint64_t total, double started)
{
    int nworkers = b->req->threads > 0 ? b->req->threads : default_threads();
    /* One uploader per connection the storage takes: 2 for a local disk, the vault's
     * "connections" (default 4) for remote ones. */
    int nuploaders = b->s->connections > 0 ? b->s->connections : 2;
    pthread_t workers[16], uploaders[MAX_UPLOADERS];
    bk_share shares[16];
    if (nworkers > 16)
        nworkers = 16;
    if (nuploaders > MAX_UPLOADERS)
        nuploaders = MAX_UPLOADERS;
    memset(shares, 0, sizeof(shares));
    for (int i = 0; i < 16; i++)
        shares[i].b = b;
    const backup_source *src = b->req->remote;
    if (src) {
        /* One stream (one remote command, one connection) per worker. */
        nworkers = split_shares(b, shares, nworkers);
        for (int k = 0; k < nworkers; k++) {
            rerr e = {0};
            shares[k].stream = src->open(src->arg, shares[k].paths, shares[k].n, &e);
            if (shares[k].stream == NULL) {
                bk_fail(b, &e);
                nworkers = k;
            }
        }
    }
    b->running = nworkers;
    b->uploading = nuploaders;
    for (int i = 0; i < nuploaders; i++)
        pthread_create(&uploaders[i], NULL, uploader_main, b);
    for (int i = 0; i < nworkers; i++)
        pthread_create(&workers[i], NULL, worker_main, &shares[i]);
    watch(b, &b->running, u, total, started);
    for (int i = 0; i < nworkers; i++)
        pthread_join(workers[i], NULL);
    for (int k = 0; src && k < nworkers; k++) {
        rerr e = {0};
        uint64_t changed = 0;
        if (src->close(src->arg, shares[k].stream, stopped(b), &changed, &e) != 0 && !stopped(b))
            bk_fail(b, &e);
        add_u64(&b->changed, changed);
    }
    for (int k = 0; k < 16; k++) {
        free(shares[k].nodes);
        free(shares[k].paths);
    }
    pthread_mutex_lock(&b->mu);
    b->q_closed = 1;
    pthread_cond_broadcast(&b->q_nonempty);
    pthread_mutex_unlock(&b->mu);
    /* The last packs may take a while to reach a remote storage: a cancel still counts. */
    watch(b, &b->uploading, u, total, started);
    for (int i = 0; i < nuploaders; i++)
        pthread_join(uploaders[i], NULL);
    return b->err.kind == E_NONE ? 0 : -1;
}

/*
 * Makes every hard link of the tree name a regular file of this snapshot holding its inode's
 * data. The scan names the first link of a multiply-linked file as the data holder; if that
 * link vanished before it was read, or now is something else (a directory, a FIFO, another
 * file: its inode differs from the one scanned), the next link of the group becomes the
 * holder (a file to read, queued in b->work) and the later ones name it. Returns the number
 * of links to read; the caller reads them and calls again until none is left (a holder can
 * vanish too). Runs on one thread, between the worker rounds.
 */
static size_t relink(bk *b)
{
    tree_map map;
    tree_map_build(&map, &b->t);
    size_t *moved = xcalloc(b->t.n, sizeof(*moved)); /* holder node -> its replacement + 1 */
    b->nwork = 0;
    b->next = 0;
    for (size_t i = 0; i < b->t.n; i++) {
        tnode *n = &b->t.nodes[i];
        if (n->kind != T_HARDLINK)
            continue;
        const tnode *found = tree_map_find(&map, n->target);
        size_t h = found ? (size_t)(found - b->t.nodes) : i;
        while (h < i && moved[h])
            h = moved[h] - 1;
        const tnode *holder = &b->t.nodes[h];
        if (h < i && holder->kind == T_FILE && holder->ino == n->ino) {
            if (strcmp(n->target, holder->path) != 0) {
                free(n->target);
                n->target = xstrdup(holder->path);
            }
            continue;
        }
        if (h < i) {
            moved[h] = i + 1;
            if (holder->kind == T_FILE)
                add_u64(&b->changed, 1); /* replaced by another file (vanished: counted) */
        }
        free(n->target);
        n->target = NULL;
        n->kind = T_FILE;
        b->work[b->nwork++] = i;
    }
    free(moved);
    tree_map_free(&map);
    return b->nwork;
}

/* Replaces this push's one-pack index files by a single file. Failures only cost speed. */
static void consolidate(bk *b)
{
    if (b->nwritten < 2)
        return;
    idx_group *groups = xcalloc(b->nwritten, sizeof(*groups));
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < b->nwritten; i++)
        groups[i] = (idx_group){.pack_id = b->written[i].id,
                                .time = now,
                                .entries = b->written[i].entries,
                                .n = b->written[i].n};
    char key[80];
    rerr e = {0};
    if (idx_write(b->s, groups, b->nwritten, key, &e) == 0)
        for (size_t i = 0; i < b->nwritten; i++)
            stor_del(b->s, b->written[i].index_key, &e);
    free(groups);
}

/* Re-reads every pack this push wrote and checks every blob in it. */
static int verify_written(bk *b, codec *c, ui *u, rerr *e)
{
    buf data = {0}, out = {0};
    int rc = 0;
    size_t cold = 0;
    for (size_t i = 0; i < b->nwritten && rc == 0; i++) {
        written_pack *w = &b->written[i];
        char key[96], why[256];
        pack_key(w->id, key, sizeof(key));
        /* A cold storage's data packs cannot be read back without a restore (storage.h). */
        int data_only = 1;
        for (size_t j = 0; j < w->n && data_only; j++)
            data_only = w->entries[j].type != BLOB_TREE;
        if (b->s->cold && data_only) {
            cold++;
            continue;
        }
        data.len = 0;
        if (stor_get(b->s, key, 0, 0, &data, e) != ST_OK) {
            rc = rerr_set(e, E_CORRUPT, "verify: %s is missing from storage %s", key, b->s->name);
            break;
        }
        blob_entry *entries = NULL;
        size_t n = 0;
        uint8_t id[ID_LEN];
        if (pack_parse(c, data.data, data.len, &entries, &n, id) != 0 || n != w->n ||
            memcmp(id, w->id, ID_LEN) != 0)
            rc = rerr_set(e, E_CORRUPT, "verify: %s reads back differently", key);
        for (size_t j = 0; j < n && rc == 0; j++)
            if (blob_decode(c, &entries[j], data.data + entries[j].offset, &out, why,
                            sizeof(why)) != 0)
                rc = rerr_set(e, E_CORRUPT, "verify: %s: %s", key, why);
        free(entries);
        ui_progress(u, 95, "verifying: %zu of %zu packs", i + 1, b->nwritten);
    }
    if (cold)
        ui_log(u, 0,
               "verify: %zu data packs in the storage's cold class were not read back (that "
               "needs a restore); the server checked each upload's SHA-256 and MD5",
               cold);
    buf_free(&data);
    buf_free(&out);
    return rc;
}

/* The manifest (new reference); tree_refs is borrowed. */
static json_t *make_manifest(bk *b, json_t *tree_refs, const char *parent, uint64_t total)
{
    const backup_req *r = b->req;
    char when[32], until[32];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec;
    iso_time(now, when, sizeof(when));
    iso_time(r->expires, until, sizeof(until));
    size_t files = 0, dirs = 0, links = 0, other = 0, reused = 0;
    for (size_t i = 0; i < b->t.n; i++) {
        const tnode *n = &b->t.nodes[i];
        files += n->kind == T_FILE || n->kind == T_HARDLINK;
        dirs += n->kind == T_DIR;
        links += n->kind == T_SYMLINK;
        other += n->kind >= T_FIFO;
        reused += n->reused;
    }
    json_t *stats = json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "files", (json_int_t)files, "dirs",
        (json_int_t)dirs, "symlinks", (json_int_t)links, "special", (json_int_t)other,
        "reused_files", (json_int_t)reused, "bytes", (json_int_t)total, "bytes_read",
        (json_int_t)(get_u64(&b->bytes_done) - b->reused), "bytes_new",
        (json_int_t)get_u64(&b->bytes_new), "bytes_stored", (json_int_t)get_u64(&b->stored_new),
        "chunks_new", (json_int_t)get_u64(&b->chunks_new));
    json_t *doc = json_pack(
        "{s:i,s:s,s:s,s:s,s:I,s:I,s:s?,s:I,s:s?,s:s?,s:s,s:O?,s:s?,s:s?,s:O,s:o}", "format",
        MANIFEST_FORMAT, "repository", r->repository, "id", b->id, "time", when,
        "unix_time", (json_int_t)now, "unix_time_ns",
        (json_int_t)(now * 1000000000LL + ts.tv_nsec), "expires", r->expires ? until : NULL, "expires_unix",
        (json_int_t)r->expires, "hostname", r->hostname, "machine", r->machine, "source",
        r->source_is_snapshot ? "snapshot" : "live", "tags", r->tags, "description", r->description,
        "parent", parent[0] ? parent : NULL, "tree", tree_refs, "stats", stats);
    if (doc && r->path)
        json_object_set_new(doc, "path", json_string(r->path));
    return doc;
}

/* Stores the tree and writes the manifest: the commit point. */
static int commit(bk *b, codec *c, const char *parent, uint64_t total, json_t **doc_out, rerr *e)
{
    size_t kept = 0;
    for (size_t i = 0; i < b->t.n; i++) {
        tnode *n = &b->t.nodes[i];
        if (n->kind == 0) { /* vanished while the push ran: not part of the snapshot */
            free(n->path);
            free(n->target);
            free(n->chunks);
            continue;
        }
        b->t.nodes[kept++] = *n;
    }
    b->t.n = kept;
    pack_writer pw = {.s = b->s};
    json_t *refs = NULL;
    int rc = tree_store(b->s, &b->ix, c, &pw, &b->t, &refs, e);
    pack *p = rc == 0 ? pack_finish(&pw, c, e) : NULL;
    if (rc == 0 && p == NULL && e->kind)
        rc = -1;
    if (rc == 0 && p)
        rc = store_pack(b, p, e);
    pack_free(p);
    pack_writer_free(&pw);
    if (rc != 0) {
        json_decref(refs);
        return -1;
    }
    /* A default id (the second) is taken when another machine pushed this repository in
     * the same second: the next free suffix is used. A given id is the caller's choice. */
    json_t *doc = NULL;
    for (int n = 2;; n++) {
        json_decref(doc);
        doc = make_manifest(b, refs, parent, total);
        rc = snap_write(b->s, b->req->repository, b->id, doc, e);
        if (rc != ST_EXISTS || !b->req->default_id || n > 1000)
            break;
        snprintf(b->id, sizeof(b->id), "%s-%d", b->req->snapshot_id, n);
    }
    json_decref(refs);
    if (rc == ST_EXISTS)
        rc = rerr_set(e, E_INVALID,
                      "snapshot %s of repository %s already exists in storage %s; choose "
                      "another snapshot_id",
                      b->id, b->req->repository, b->s->name);
    if (rc != ST_OK) {
        json_decref(doc);
        return -1;
    }
    *doc_out = doc;
    return 0;
}

static void bk_free(bk *b)
{
    for (size_t i = 0; i < b->nwritten; i++)
        free(b->written[i].entries);
    free(b->written);
    free(b->work);
    tree_free(&b->t);
    idx_free(&b->ix);
    if (b->rootfd >= 0)
        close(b->rootfd);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->q_nonempty);
    pthread_cond_destroy(&b->q_nonfull);
}

int repo_backup(storage *s, const backup_req *req, ui *u, json_t **result, rerr *e)
{
    double started = mono_sec();
    bk b = {.s = s, .req = req, .rootfd = -1};
    snprintf(b.id, sizeof(b.id), "%s", req->snapshot_id);
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.q_nonempty, NULL);
    pthread_cond_init(&b.q_nonfull, NULL);
    idx_init(&b.ix);
    codec *c = codec_new(&s->keys, req->level);
    tree prev = {0};
    char parent[129] = "";
    int rc = -1;
    json_t *doc = NULL;

    ui_progress(u, 0, "%s: reading the index and the previous snapshot", req->repository);
    if (idx_load(s, &b.ix, e) != 0 ||
        load_previous(&b, c, &prev, parent, sizeof(parent), e) != 0)
        goto out;
    ui_progress(u, 1, "%s: scanning %s", req->repository, req->source);
    if (req->remote ? req->remote->scan(req->remote->arg, &b.t, e) != 0
                    : tree_scan_filtered(req->source, &b.t, NULL, req->filter, req->filter_arg,
                                         e) != 0)
        goto out;
    if (!req->remote)
        b.rootfd = open(req->source, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (!req->remote && b.rootfd < 0) {
        rerr_set(e, errno_kind(errno), "cannot open %s: %s", req->source, strerror(errno));
        goto out;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < b.t.n; i++)
        total += b.t.nodes[i].kind == T_FILE ? b.t.nodes[i].size : 0;
    b.reused = plan(&b, parent[0] && !req->reread ? &prev : NULL);
    add_u64(&b.bytes_done, b.reused);
    if (parent[0])
        ui_log(u, 0, "%s: %zu files to read, the rest unchanged since snapshot %s", req->repository,
               b.nwork, parent);
    if (backup_test_after_scan)
        backup_test_after_scan(req->source);
    /* The hard links whose first link was not read as scanned get another holder, read in
     * a further round. */
    do {
        if (run_threads(&b, u, total, started) != 0) {
            rerr_merge(e, &b.err);
            goto out;
        }
        pthread_mutex_lock(&b.mu);
        b.q_closed = 0;
        pthread_mutex_unlock(&b.mu);
    } while (relink(&b) > 0);
    if (commit(&b, c, parent, total, &doc, e) != 0)
        goto out;
    consolidate(&b);
    if (req->verify) {
        json_t *back = NULL;
        if (verify_written(&b, c, u, e) != 0)
            goto out;
        if (snap_read(s, req->repository, b.id, &back, e) != ST_OK ||
            !json_equal(back, doc)) {
            json_decref(back);
            rerr_set(e, E_CORRUPT, "verify: the manifest reads back differently");
            goto out;
        }
        json_decref(back);
    }
    if (b.changed)
        ui_log(u, 1, "%s: %llu files changed or vanished while they were read", req->repository,
               (unsigned long long)b.changed);
    double secs = mono_sec() - started;
    *result = json_pack(
        "{s:s,s:s,s:s,s:s?,s:O,s:b,s:f,s:f,s:I}", "repository", req->repository, "storage", s->name,
        "snapshot_id", b.id, "parent", parent[0] ? parent : NULL, "stats",
        json_object_get(doc, "stats"), "verified", req->verify, "seconds", secs, "mb_per_s",
        secs > 0 ? (double)total / 1e6 / secs : 0.0, "peak_rss_kb", (json_int_t)peak_rss_kb());
    ui_progress(u, 100, "%s: snapshot %s stored (%.1f MiB new)", req->repository, b.id,
                (double)b.bytes_new / 1048576.0);
    rc = 0;
out:
    if (req->remote) { /* the streams the remote source started that no open took */
        rerr ignore = {0};
        req->remote->close(req->remote->arg, NULL, rc != 0, NULL, &ignore);
    }
    json_decref(doc);
    tree_free(&prev);
    codec_free(c);
    bk_free(&b);
    return rc;
}
