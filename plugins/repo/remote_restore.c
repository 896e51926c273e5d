/*
 * repo_restore_stream: a snapshot as one pax tar stream, for GNU tar on a machine reached over
 * SSH that has no ferry (restore.h).
 *
 * restore_open does what every restore does first (the tree checked and narrowed, the chunks
 * listed, a cold storage thawed). Then the entries go out in the tree's order, a directory
 * before what it holds. A file's content must go out in file order, so worker threads fetch,
 * decrypt, decompress and check its chunks ahead of the writer into a ring of slots (as
 * many as twice the threads, so at most that many chunks of 4 MiB are held), and the calling
 * thread writes them to libarchive in order. Runs of zeros the snapshot records as holes
 * become holes of a GNU 1.0 sparse entry: they never cross the network.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pack.h"
#include "restore.h"

#define ZEROS_LEN ((size_t)64 << 10)

/* One chunk to send, in the stream's order. */
typedef struct fetch {
    const idx_entry *entry;
    const tnode *node;
} fetch;

typedef struct slot {
    buf data;
    int ready;
} slot;

typedef struct streamer {
    restore_state *r;
    stream_req *sr;
    fetch *fetches;
    size_t n;
    slot *slots;
    size_t window;
    size_t next;     /* the next fetch a worker takes (under mu) */
    size_t consumed; /* fetches the writer has sent (under mu) */
    int stop;        /* under mu */
    int running;     /* workers not yet ended (under mu) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rerr err;
    struct archive *a;
    uint64_t sent; /* bytes of file content handed to libarchive */
    ui *u;
} streamer;

/* Reads, opens and checks one chunk into data. */
static int fetch_one(streamer *st, codec *c, buf *stored, const fetch *f, buf *data, rerr *e)
{
    restore_state *r = st->r;
    char key[96], why[256];
    pack_key(r->ix.packs[f->entry->pack].id, key, sizeof(key));
    stored->len = 0;
    int rc = stor_get(r->s, key, f->entry->offset, f->entry->stored, stored, e);
    if (rc == ST_NOTFOUND)
        return rerr_set(e, E_CORRUPT, "%s is missing from storage %s (needed by %s)", key,
                        r->s->name, f->node->path);
    if (rc != ST_OK)
        return -1;
    blob_entry be = {.type = f->entry->type,
                     .flags = f->entry->flags,
                     .offset = f->entry->offset,
                     .stored = f->entry->stored,
                     .raw = f->entry->raw};
    memcpy(be.id, f->entry->id, ID_LEN);
    if (blob_decode(c, &be, stored->data, data, why, sizeof(why)) != 0)
        return rerr_set(e, E_CORRUPT, "%s in storage %s: %s; needed by file %s", key, r->s->name,
                        why, f->node->path);
    return 0;
}

static void *fetch_main(void *arg)
{
    streamer *st = arg;
    codec *c = codec_new(&st->r->s->keys, 0);
    buf stored = {0};
    pthread_mutex_lock(&st->mu);
    while (!st->stop && st->next < st->n) {
        if (st->next >= st->consumed + st->window) {
            pthread_cond_wait(&st->cv, &st->mu); /* the ring is full: wait for the writer */
            continue;
        }
        size_t k = st->next++;
        slot *sl = &st->slots[k % st->window];
        pthread_mutex_unlock(&st->mu);
        rerr e = {0};
        int rc = fetch_one(st, c, &stored, &st->fetches[k], &sl->data, &e);
        pthread_mutex_lock(&st->mu);
        if (rc != 0) {
            rerr_merge(&st->err, &e);
            st->stop = 1;
        } else {
            sl->ready = 1;
        }
        pthread_cond_broadcast(&st->cv);
    }
    st->running--;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    buf_free(&stored);
    codec_free(c);
    return NULL;
}

/* Waits for fetch k (the next in order); its slot, or NULL once the stream stops. */
static slot *take(streamer *st, size_t k)
{
    slot *sl = &st->slots[k % st->window];
    pthread_mutex_lock(&st->mu);
    while (!st->stop && !sl->ready) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&st->cv, &st->mu, &ts);
        if (!st->stop && !sl->ready && ui_cancelled(st->u)) {
            rerr c = {0};
            rerr_set(&c, E_CANCELLED, "cancelled");
            rerr_merge(&st->err, &c);
            st->stop = 1;
        }
    }
    slot *out = st->stop ? NULL : sl;
    pthread_mutex_unlock(&st->mu);
    return out;
}

static void give_back(streamer *st, slot *sl)
{
    pthread_mutex_lock(&st->mu);
    sl->ready = 0;
    st->consumed++;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

static la_ssize_t write_cb(struct archive *a, void *arg, const void *p, size_t n)
{
    streamer *st = arg;
    const uint8_t *b = p;
    size_t left = n;
    while (left > 0) {
        ssize_t w = write(st->sr->fd, b, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            archive_set_error(a, errno, "%s", strerror(errno));
            return -1;
        }
        b += w;
        left -= (size_t)w;
    }
    return (la_ssize_t)n;
}

/* The stream's failure: the machine's side ended (EPIPE) or libarchive's own reason. */
static int archive_fail(streamer *st, const char *what, rerr *e)
{
    if (archive_errno(st->a) == EPIPE)
        return rerr_set(e, E_TRANSIENT, "the machine stopped reading the restore while %s", what);
    return rerr_set(e, E_FAIL, "cannot write the restore's tar stream (%s): %s", what,
                    archive_error_string(st->a) ? archive_error_string(st->a) : "?");
}

static int put_data(streamer *st, const void *p, size_t n, EVP_MD_CTX *md, rerr *e)
{
    if (md)
        EVP_DigestUpdate(md, p, n);
    if (n && archive_write_data(st->a, p, n) < 0)
        return archive_fail(st, "sending file content", e);
    st->sent += n;
    return 0;
}

/* Sends file n's content (its header is written): chunks in order, zeros for holes. */
static int send_content(streamer *st, const tnode *n, size_t *k, EVP_MD_CTX *md, rerr *e)
{
    static const uint8_t zeros[ZEROS_LEN];
    for (uint32_t c = 0; c < n->nchunks; c++) {
        const chunk_ref *ref = &n->chunks[c];
        if (ref->zero) {
            /* libarchive skips the zeros of a hole, but counts them to find the next data. */
            for (uint32_t left = ref->len; left > 0;) {
                size_t piece = left < ZEROS_LEN ? left : ZEROS_LEN;
                if (put_data(st, zeros, piece, md, e) != 0)
                    return -1;
                left -= (uint32_t)piece;
            }
            continue;
        }
        slot *sl = take(st, *k);
        if (sl == NULL)
            return -1; /* st->err says why */
        int rc = put_data(st, sl->data.data, sl->data.len, md, e);
        give_back(st, sl);
        (*k)++;
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* Marks the data of file n as the runs of its chunks that are not holes (a GNU sparse map). */
static void sparse_map(struct archive_entry *ae, const tnode *n)
{
    int holes = 0;
    for (uint32_t c = 0; c < n->nchunks && !holes; c++)
        holes = n->chunks[c].zero;
    if (!holes)
        return;
    uint64_t off = 0, start = 0;
    int in_data = 0;
    for (uint32_t c = 0; c < n->nchunks; off += n->chunks[c].len, c++) {
        if (!n->chunks[c].zero && !in_data) {
            start = off;
            in_data = 1;
        } else if (n->chunks[c].zero && in_data) {
            archive_entry_sparse_add_entry(ae, (la_int64_t)start, (la_int64_t)(off - start));
            in_data = 0;
        }
    }
    /* The last run of data, or an empty one at the end: tar makes the file its full size. */
    archive_entry_sparse_add_entry(ae, (la_int64_t)(in_data ? start : off),
                                   (la_int64_t)(in_data ? off - start : 0));
}

/* The SHA-256 of a file as hex, into sums under its path (and under a hard link's). */
static void put_sum(json_t *sums, const char *path, EVP_MD_CTX *md)
{
    uint8_t d[32];
    char hex[65];
    unsigned int len = 0;
    EVP_DigestFinal_ex(md, d, &len);
    hex_encode(d, 32, hex);
    json_object_set_new_nocheck(sums, path, json_string(hex));
}

/* Writes entry i: its header, and a regular file's content. */
static int send_entry(streamer *st, size_t i, size_t *k, EVP_MD_CTX *md, rerr *e)
{
    restore_state *r = st->r;
    const tnode *n = &r->t.nodes[i];
    int root = st->sr->uid == 0;
    if ((n->kind == T_CHR || n->kind == T_BLK) && !root) {
        r->skipped++;
        return 0;
    }
    int owned = root || ((int64_t)n->uid == st->sr->uid && (int64_t)n->gid == st->sr->gid);
    if (!owned && n->kind != T_HARDLINK)
        r->owner_failures++;
    struct archive_entry *ae = archive_entry_new();
    archive_entry_set_pathname(ae, n->path[0] ? n->path : ".");
    archive_entry_set_uid(ae, n->uid);
    archive_entry_set_gid(ae, n->gid);
    archive_entry_set_mtime(ae, (time_t)n->mtime_sec, (long)n->mtime_nsec);
    uint32_t mode = n->kind == T_HARDLINK ? 0 : restore_safe_mode(r, n, owned);
    static const unsigned type[] = {
        [T_DIR] = AE_IFDIR,  [T_FILE] = AE_IFREG, [T_SYMLINK] = AE_IFLNK, [T_HARDLINK] = AE_IFREG,
        [T_FIFO] = AE_IFIFO, [T_CHR] = AE_IFCHR,  [T_BLK] = AE_IFBLK};
    archive_entry_set_filetype(ae, type[n->kind]);
    archive_entry_set_perm(ae, mode);
    if (n->kind == T_FILE) {
        archive_entry_set_size(ae, (la_int64_t)n->size);
        sparse_map(ae, n);
    } else if (n->kind == T_SYMLINK) {
        archive_entry_set_symlink(ae, n->target);
    } else if (n->kind == T_HARDLINK) {
        archive_entry_set_hardlink(ae, n->target);
        archive_entry_set_size(ae, 0);
    } else if (n->kind == T_CHR || n->kind == T_BLK) {
        archive_entry_set_rdev(ae, (dev_t)n->rdev);
    }
    int rc = archive_write_header(st->a, ae) < ARCHIVE_WARN
                 ? archive_fail(st, "sending an entry", e)
                 : 0;
    archive_entry_free(ae);
    if (rc != 0 || n->kind != T_FILE)
        goto out;
    if (md)
        EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    rc = send_content(st, n, k, md, e);
    if (rc == 0 && archive_write_finish_entry(st->a) < ARCHIVE_WARN)
        rc = archive_fail(st, "ending a file", e);
    if (rc == 0 && md)
        put_sum(st->sr->sums, n->path, md);
out:
    if (rc == 0 && n->kind == T_HARDLINK && md) {
        json_t *sum = json_object_get(st->sr->sums, n->target);
        if (sum)
            json_object_set_nocheck(st->sr->sums, n->path, sum);
    }
    return rc;
}

/* Every chunk the files need, in the order the stream sends them. */
static void list_fetches(streamer *st)
{
    restore_state *r = st->r;
    size_t cap = 0;
    for (size_t i = 0; i < r->t.n; i++) {
        const tnode *n = &r->t.nodes[i];
        for (uint32_t c = 0; n->kind == T_FILE && c < n->nchunks; c++) {
            if (n->chunks[c].zero)
                continue;
            if (st->n == cap) {
                cap = cap ? cap * 2 : 1024;
                st->fetches = xrealloc(st->fetches, cap * sizeof(*st->fetches));
            }
            /* restore_open's plan found every chunk in the index. */
            st->fetches[st->n++] = (fetch){.entry = idx_find(&r->ix, n->chunks[c].id), .node = n};
        }
    }
}

static int open_archive(streamer *st, rerr *e)
{
    st->a = archive_write_new();
    /* pax: any name length, nanosecond times, numeric owners, GNU sparse entries. Names are
     * bytes in the snapshot and go out as bytes (hdrcharset=BINARY): no locale converts them. */
    if (archive_write_set_format_pax(st->a) != ARCHIVE_OK ||
        archive_write_set_options(st->a, "hdrcharset=BINARY") != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(st->a, 1) != ARCHIVE_OK ||
        archive_write_open(st->a, st, NULL, write_cb, NULL) != ARCHIVE_OK)
        return rerr_set(e, E_FAIL, "cannot start the restore's tar stream: %s",
                        archive_error_string(st->a) ? archive_error_string(st->a) : "?");
    return 0;
}

/* Sends every entry, with the fetch workers running. */
static int send_all(streamer *st, rerr *e)
{
    restore_state *r = st->r;
    EVP_MD_CTX *md = st->sr->sums ? EVP_MD_CTX_new() : NULL;
    size_t k = 0;
    int rc = 0;
    uint64_t total = r->logical ? r->logical : 1;
    for (size_t i = 0; i < r->t.n && rc == 0; i++) {
        rc = send_entry(st, i, &k, md, e);
        restore_progress(r, st->u, 5 + (int)(85 * (st->sent > total ? total : st->sent) / total),
                         "streaming to the machine: %zu of %zu entries, %.1f of %.1f MiB", i + 1,
                         r->t.n, (double)st->sent / 1048576.0, (double)r->logical / 1048576.0);
        if (rc == 0 && ui_cancelled(st->u))
            rc = rerr_set(e, E_CANCELLED, "cancelled");
    }
    if (rc == 0 && archive_write_close(st->a) != ARCHIVE_OK)
        rc = archive_fail(st, "ending the stream", e);
    EVP_MD_CTX_free(md);
    return rc;
}

int repo_restore_stream(storage *s, const restore_req *req, stream_req *sr, ui *u, json_t **result,
                        rerr *e)
{
    double started = mono_sec();
    restore_state r;
    streamer st = {.r = &r, .sr = sr, .u = u};
    pthread_mutex_init(&st.mu, NULL);
    pthread_cond_init(&st.cv, NULL);
    int nthreads = 0, rc = -1;
    pthread_t th[32];
    if (restore_open(&r, s, req, u, e) != 0 || open_archive(&st, e) != 0)
        goto out;
    list_fetches(&st);
    nthreads = req->threads > 0 ? req->threads : default_threads();
    if (req->threads <= 0 && s->connections > nthreads)
        nthreads = s->connections;
    nthreads = nthreads > 32 ? 32 : nthreads;
    st.window = (size_t)nthreads * 2;
    st.slots = xcalloc(st.window, sizeof(*st.slots));
    st.running = nthreads;
    for (int i = 0; i < nthreads; i++)
        pthread_create(&th[i], NULL, fetch_main, &st);
    rerr mine = {0};
    rc = send_all(&st, &mine);
    pthread_mutex_lock(&st.mu);
    st.stop = 1;
    pthread_cond_broadcast(&st.cv);
    pthread_mutex_unlock(&st.mu);
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    if (rc != 0) {
        /* A worker's failure is the cause of the writer's; else the writer's own. */
        rerr_merge(e, st.err.kind != E_NONE ? &st.err : &mine);
        goto out;
    }
    *result = restore_finish(&r, u, started);
    json_object_set_new(*result, "streamed_bytes", json_integer((json_int_t)st.sent));
out:
    if (st.a)
        archive_write_free(st.a);
    for (size_t i = 0; i < st.window; i++)
        buf_free(&st.slots[i].data);
    free(st.slots);
    free(st.fetches);
    pthread_cond_destroy(&st.cv);
    pthread_mutex_destroy(&st.mu);
    restore_close(&r);
    return rc;
}

int stream_verify(const json_t *sums, const char *listing, size_t len, rerr *e)
{
    json_t *seen = json_object();
    int rc = 0;
    char q[256];
    for (const char *p = listing, *end = listing + len; p < end && rc == 0;) {
        const char *rec_end = memchr(p, '\0', (size_t)(end - p));
        if (rec_end == NULL)
            rec_end = end;
        /* "HEX  ./path" (sha256sum's text mode; "HEX *./path" in binary mode) */
        if (rec_end - p < 64 + 4 || memcmp(p + 64, "  ./", 4) != 0) {
            rc = rerr_set(e, E_FAIL, "verify: the machine's listing of the restore is garbled");
            break;
        }
        char *path = xasprintf("%.*s", (int)(rec_end - p - 68), p + 68);
        const char *want = json_string_value(json_object_get(sums, path));
        if (want == NULL)
            rc =
                rerr_set(e, E_CORRUPT, "verify: the restore holds a file the snapshot does not: %s",
                         tree_quote(path, q, sizeof(q)));
        else if (strncmp(want, p, 64) != 0)
            rc = rerr_set(e, E_CORRUPT, "verify: %s on the machine differs from the snapshot",
                          tree_quote(path, q, sizeof(q)));
        json_object_set_new_nocheck(seen, path, json_true());
        free(path);
        p = rec_end + 1;
    }
    const char *path;
    json_t *v;
    json_object_foreach ((json_t *)sums, path, v) {
        if (rc != 0)
            break;
        (void)v;
        if (json_object_get(seen, path) == NULL)
            rc = rerr_set(e, E_CORRUPT, "verify: %s is missing on the machine",
                          tree_quote(path, q, sizeof(q)));
    }
    json_decref(seen);
    return rc;
}
