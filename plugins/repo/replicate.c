/*
 * Copying snapshots from one storage to a replica of it (repo_replicate with a storage
 * source). The replica shares the source's config (storage_open_replica), so packs, index
 * entries and manifests copy byte for byte: nothing is decrypted, re-chunked or
 * re-compressed.
 *
 * The copy keeps the format's commit order: the packs the chosen snapshots use, then one
 * index file listing them, then the manifests. An interrupted copy leaves packs that no
 * index lists; the target stays valid and the next copy sends them again.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "index.h"
#include "pack.h"
#include "snapshot.h"

typedef struct cp {
    storage *src, *dst;
    const chunk_index *six;
    uint32_t *packs; /* source pack numbers to copy */
    size_t npacks;
    size_t next; /* atomic: next pack to copy */
    int stop;    /* atomic */
    int running; /* atomic: threads still copying */
    pthread_mutex_t mu;
    idx_group *groups; /* one per copied pack (entries owned) */
    size_t ngroups;
    uint64_t bytes; /* atomic */
    rerr err;
} cp;

static void cp_fail(cp *c, const rerr *e)
{
    pthread_mutex_lock(&c->mu);
    rerr_merge(&c->err, e);
    __atomic_store_n(&c->stop, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&c->mu);
}

/* Copies one pack: read it whole, check its trailer names it, store it under the same key. */
static int copy_pack(cp *c, codec *k, buf *data, uint32_t packno, rerr *e)
{
    const uint8_t *id = c->six->packs[packno].id;
    char key[96];
    pack_key(id, key, sizeof(key));
    data->len = 0;
    int rc = stor_get(c->src, key, 0, 0, data, e);
    if (rc == ST_NOTFOUND)
        return rerr_set(e, E_CORRUPT, "%s is missing from storage %s (run repo_verify on it)", key,
                        c->src->name);
    if (rc != ST_OK)
        return -1;
    blob_entry *entries = NULL;
    size_t n = 0;
    uint8_t got[ID_LEN];
    if (pack_parse(k, data->data, data->len, &entries, &n, got) != 0 ||
        memcmp(got, id, ID_LEN) != 0) {
        free(entries);
        return rerr_set(e, E_CORRUPT, "%s in storage %s is damaged (run repo_verify on it)", key,
                        c->src->name);
    }
    if (stor_put(c->dst, key, data->data, data->len, 0, e) != ST_OK) {
        free(entries);
        return -1;
    }
    __atomic_fetch_add(&c->bytes, data->len, __ATOMIC_RELAXED);
    pthread_mutex_lock(&c->mu);
    c->groups = xrealloc(c->groups, (c->ngroups + 1) * sizeof(*c->groups));
    c->groups[c->ngroups++] =
        (idx_group){.pack_id = id, .time = (int64_t)time(NULL), .entries = entries, .n = n};
    pthread_mutex_unlock(&c->mu);
    return 0;
}

static void *copier_main(void *arg)
{
    cp *c = arg;
    codec *k = codec_new(&c->src->keys, 0);
    buf data = {0};
    for (;;) {
        size_t i = __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED);
        if (i >= c->npacks || __atomic_load_n(&c->stop, __ATOMIC_RELAXED))
            break;
        rerr e = {0};
        if (copy_pack(c, k, &data, c->packs[i], &e) != 0) {
            cp_fail(c, &e);
            break;
        }
    }
    buf_free(&data);
    codec_free(k);
    __atomic_fetch_sub(&c->running, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Marks in want[] the source packs that hold the snapshot's tree and file chunks. */
static int mark_packs(storage *s, const chunk_index *ix, codec *k, const snap_info *si,
                      uint8_t *want, rerr *e)
{
    tree t = {0};
    if (tree_load(s, ix, k, si->doc, &t, e) != 0)
        return -1;
    int rc = 0;
    const json_t *refs = json_object_get(si->doc, "tree");
    size_t i;
    const json_t *ref;
    json_array_foreach (refs, i, ref) {
        uint8_t id[ID_LEN];
        const char *hex = json_string_value(json_object_get(ref, "id"));
        const idx_entry *en = hex && hex_decode(hex, id, ID_LEN) == 0 ? idx_find(ix, id) : NULL;
        if (en == NULL) {
            rc = rerr_set(e, E_CORRUPT, "snapshot %s/%s: a tree chunk is in no index of %s",
                          si->repository, si->id, s->name);
            goto out;
        }
        want[en->pack] = 1;
    }
    for (size_t n = 0; n < t.n; n++) {
        for (uint32_t c = 0; c < t.nodes[n].nchunks; c++) {
            const chunk_ref *r = &t.nodes[n].chunks[c];
            if (r->zero)
                continue;
            const idx_entry *en = idx_find(ix, r->id);
            if (en == NULL) {
                rc = rerr_set(e, E_CORRUPT,
                              "snapshot %s/%s: a chunk of %s is in no index of %s (run "
                              "repo_verify)",
                              si->repository, si->id, t.nodes[n].path, s->name);
                goto out;
            }
            want[en->pack] = 1;
        }
    }
out:
    tree_free(&t);
    return rc;
}

/* Snapshots to copy: not expired (a repository's newest always counts), and with full
 * unset, not on the target already. */
static int choose(const snap_list *sl, const snap_list *dl, const copy_req *req, uint8_t *chosen,
                  size_t *there)
{
    int count = 0;
    *there = 0;
    for (size_t i = 0; i < sl->n; i++) {
        const snap_info *si = &sl->items[i];
        int newest = 1;
        for (size_t j = i + 1; j < sl->n && newest; j++)
            newest = strcmp(sl->items[j].repository, si->repository) != 0;
        int present = 0;
        for (size_t j = 0; j < dl->n && !present; j++)
            present = strcmp(dl->items[j].repository, si->repository) == 0 &&
                      strcmp(dl->items[j].id, si->id) == 0;
        *there += (size_t)present;
        chosen[i] = (!si->expires || si->expires > req->now || newest) && (req->full || !present);
        count += chosen[i];
    }
    return count;
}

static int run_copiers(cp *c, ui *u, int nthreads)
{
    pthread_t th[32];
    if (nthreads > 32)
        nthreads = 32;
    c->running = nthreads;
    for (int i = 0; i < nthreads; i++)
        pthread_create(&th[i], NULL, copier_main, c);
    while (__atomic_load_n(&c->running, __ATOMIC_ACQUIRE) > 0) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (ui_cancelled(u)) {
            rerr e = {0};
            rerr_set(&e, E_CANCELLED, "cancelled");
            cp_fail(c, &e);
        }
        size_t done = __atomic_load_n(&c->next, __ATOMIC_RELAXED);
        ui_progress(u,
                    c->npacks ? (int)(80 * (done < c->npacks ? done : c->npacks) / c->npacks) : 80,
                    "copying to %s: %zu of %zu packs, %.1f MiB", c->dst->name,
                    done < c->npacks ? done : c->npacks, c->npacks,
                    (double)__atomic_load_n(&c->bytes, __ATOMIC_RELAXED) / 1048576.0);
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    return c->err.kind == E_NONE ? 0 : -1;
}

/* Copies the chosen manifests, oldest first; counts those copied into *copied. */
static int copy_manifests(storage *src, storage *dst, const snap_list *sl, const uint8_t *chosen,
                          json_t *copied, rerr *e)
{
    buf raw = {0};
    int rc = 0;
    for (size_t i = 0; i < sl->n && rc == 0; i++) {
        if (!chosen[i])
            continue;
        char key[300];
        snap_key(sl->items[i].repository, sl->items[i].id, key, sizeof(key));
        raw.len = 0;
        int got = stor_get(src, key, 0, 0, &raw, e);
        if (got == ST_NOTFOUND)
            continue; /* collected on the source meanwhile */
        int put =
            got == ST_OK ? stor_put(dst, key, raw.data, raw.len, STOR_PUT_EXCLUSIVE, e) : ST_ERROR;
        if (put == ST_ERROR)
            rc = -1;
        else if (put == ST_OK)
            json_array_append_new(copied,
                                  json_sprintf("%s/%s", sl->items[i].repository, sl->items[i].id));
    }
    buf_free(&raw);
    return rc;
}

int repo_copy(storage *src, storage *dst, const copy_req *req, ui *u, json_t **result, rerr *e)
{
    snap_list sl = {0}, dl = {0};
    chunk_index six, dix;
    idx_init(&six);
    idx_init(&dix);
    cp c = {.src = src, .dst = dst, .six = &six};
    pthread_mutex_init(&c.mu, NULL);
    codec *k = codec_new(&src->keys, 0);
    uint8_t *chosen = NULL, *want = NULL;
    json_t *copied = json_array();
    size_t present_packs = 0;
    int rc = -1;

    ui_progress(u, 1, "reading snapshots of %s and %s", src->name, dst->name);
    if (snap_list_read(src, req->repository, &sl, e) != 0 ||
        snap_list_read(dst, req->repository, &dl, e) != 0)
        goto out;
    chosen = xcalloc(sl.n + 1, 1);
    size_t there = 0;
    int nchosen = choose(&sl, &dl, req, chosen, &there);
    if (nchosen > 0 && (idx_load(src, &six, e) != 0 || idx_load(dst, &dix, e) != 0))
        goto out;
    want = xcalloc(six.npacks + 1, 1);
    for (size_t i = 0; i < sl.n; i++)
        if (chosen[i] && mark_packs(src, &six, k, &sl.items[i], want, e) != 0)
            goto out;
    c.packs = xcalloc(six.npacks + 1, sizeof(*c.packs));
    for (uint32_t p = 0; p < six.npacks; p++) {
        if (!want[p])
            continue;
        if (!req->full && idx_pack_find(&dix, six.packs[p].id) != IDX_NONE)
            present_packs++;
        else
            c.packs[c.npacks++] = p;
    }
    int threads = src->connections > dst->connections ? src->connections : dst->connections;
    if (run_copiers(&c, u, threads) != 0) {
        rerr_merge(e, &c.err);
        goto out;
    }
    char key[80];
    ui_progress(u, 85, "indexing %zu packs in %s", c.ngroups, dst->name);
    if (c.ngroups > 0 && idx_write(dst, c.groups, c.ngroups, key, e) != 0)
        goto out;
    ui_progress(u, 90, "copying %d snapshot manifests to %s", nchosen, dst->name);
    if (copy_manifests(src, dst, &sl, chosen, copied, e) != 0)
        goto out;
    *result = json_pack("{s:O,s:I,s:I,s:I,s:I}", "snapshots_copied", copied, "snapshots_present",
                        (json_int_t)there, "packs_copied", (json_int_t)c.ngroups, "packs_present",
                        (json_int_t)present_packs, "bytes_copied", (json_int_t)c.bytes);
    rc = 0;
out:
    for (size_t i = 0; i < c.ngroups; i++)
        free((void *)c.groups[i].entries);
    free(c.groups);
    free(c.packs);
    free(want);
    free(chosen);
    json_decref(copied);
    codec_free(k);
    idx_free(&six);
    idx_free(&dix);
    snap_list_free(&sl);
    snap_list_free(&dl);
    pthread_mutex_destroy(&c.mu);
    return rc;
}
