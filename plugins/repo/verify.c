/*
 * repo_verify: checks a storage.
 *   - every index file parses and every indexed pack exists;
 *   - every pack (or a random sample of them) is read whole: its trailer must open, and
 *     every blob the index places in it must open, decompress and hash to its id;
 *   - every snapshot's manifest and tree load, and every chunk they use is indexed.
 * Damage is reported per object (the pack or manifest key) and mapped to the files that use
 * the damaged chunks ("repository@snapshot:path").
 *
 * On a cold storage (an S3 class such as GLACIER that must be restored before a read), data
 * packs are not read: a read would fail, and a restore costs money and hours. Each is checked
 * for presence and for a size that holds every blob the index places in it; packs of
 * snapshot trees (kept in the hot class) are read as usual. The result counts what was
 * skipped ("cold_packs_skipped"), and the log says so.
 *
 * With a repository, the check narrows to what that repository's snapshots use: only the
 * packs holding their chunks are read, and only damage to those chunks (or to those packs
 * as a whole) counts, so damage that only another repository uses does not fail it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "index.h"
#include "pack.h"
#include "snapshot.h"
#include "tree.h"

#define MAX_DAMAGE 1000

typedef struct vf {
    storage *s;
    chunk_index ix;
    uint32_t **per; /* index entry numbers per pack */
    size_t *nper;
    uint8_t *wanted;      /* per index entry: used by the repository (NULL: all wanted) */
    uint8_t *wanted_pack; /* per pack: holds a wanted entry (NULL: all wanted) */
    uint32_t *chosen;
    size_t nchosen;
    size_t next;           /* atomic */
    int running;           /* atomic */
    int stop;              /* atomic */
    uint64_t bytes, blobs; /* atomics */
    pthread_mutex_t mu;
    json_t *damage;
    rerr err;
} vf;

static void add_damage(vf *v, const char *object, const uint8_t *chunk, const char *why)
{
    char hex[HEX_LEN + 1];
    if (chunk)
        hex_encode(chunk, ID_LEN, hex);
    pthread_mutex_lock(&v->mu);
    if (json_array_size(v->damage) < MAX_DAMAGE)
        json_array_append_new(v->damage, json_pack("{s:s,s:s?,s:s,s:[]}", "object", object, "chunk",
                                                   chunk ? hex : NULL, "error", why, "files"));
    pthread_mutex_unlock(&v->mu);
}

static void check_pack(vf *v, codec *c, buf *data, buf *out, uint32_t p)
{
    char key[96], why[256];
    pack_key(v->ix.packs[p].id, key, sizeof(key));
    data->len = 0;
    rerr e = {0};
    int rc = stor_get(v->s, key, 0, 0, data, &e);
    if (rc != ST_OK) {
        add_damage(v, key, NULL, rc == ST_NOTFOUND ? "missing" : e.msg);
        return;
    }
    __atomic_fetch_add(&v->bytes, data->len, __ATOMIC_RELAXED);
    blob_entry *trailer = NULL;
    size_t n = 0;
    uint8_t id[ID_LEN];
    if (pack_parse(c, data->data, data->len, &trailer, &n, id) != 0)
        add_damage(v, key, NULL, "the pack's trailer is damaged");
    else if (memcmp(id, v->ix.packs[p].id, ID_LEN) != 0)
        add_damage(v, key, NULL, "the pack's trailer does not match its name");
    free(trailer);
    for (size_t i = 0; i < v->nper[p]; i++) {
        if (v->wanted && !v->wanted[v->per[p][i]])
            continue;
        const idx_entry *ie = &v->ix.entries[v->per[p][i]];
        blob_entry be = {.type = ie->type,
                         .flags = ie->flags,
                         .offset = ie->offset,
                         .stored = ie->stored,
                         .raw = ie->raw};
        memcpy(be.id, ie->id, ID_LEN);
        if ((uint64_t)ie->offset + ie->stored > data->len)
            add_damage(v, key, ie->id, "the pack is shorter than its index says");
        else if (blob_decode(c, &be, data->data + ie->offset, out, why, sizeof(why)) != 0)
            add_damage(v, key, ie->id, why);
        __atomic_fetch_add(&v->blobs, 1, __ATOMIC_RELAXED);
    }
}

static void *worker_main(void *arg)
{
    vf *v = arg;
    codec *c = codec_new(&v->s->keys, 0);
    buf data = {0}, out = {0};
    for (;;) {
        size_t i = __atomic_fetch_add(&v->next, 1, __ATOMIC_RELAXED);
        if (i >= v->nchosen || __atomic_load_n(&v->stop, __ATOMIC_RELAXED))
            break;
        check_pack(v, c, &data, &out, v->chosen[i]);
    }
    buf_free(&data);
    buf_free(&out);
    codec_free(c);
    __atomic_fetch_sub(&v->running, 1, __ATOMIC_RELEASE);
    return NULL;
}

struct listing {
    vf *v;
    uint8_t *present;
    uint64_t *sizes; /* per pack, as listed */
    size_t unindexed;
};

static int note_pack(void *arg, const char *key, uint64_t size)
{
    struct listing *l = arg;
    const char *name = strrchr(key, '/');
    uint8_t id[ID_LEN];
    uint32_t p =
        name && hex_decode(name + 1, id, ID_LEN) == 0 ? idx_pack_find(&l->v->ix, id) : IDX_NONE;
    if (p == IDX_NONE) {
        l->unindexed++;
    } else {
        l->present[p] = 1;
        l->sizes[p] = size;
    }
    return 0;
}

/* Whether pack p holds file data only (no tree): in a cold storage, such a pack is cold. */
static int data_only(const vf *v, uint32_t p)
{
    for (size_t i = 0; i < v->nper[p]; i++)
        if (v->ix.entries[v->per[p][i]].type == BLOB_TREE)
            return 0;
    return 1;
}

/*
 * For a cold storage: takes the data packs out of present (so choose leaves them), checking
 * instead that the listed size holds every blob the index places in them (and the trailer's
 * length word). Returns how many were taken out.
 */
static size_t skip_cold(vf *v, uint8_t *present, const uint64_t *sizes)
{
    size_t skipped = 0;
    for (uint32_t p = 0; p < v->ix.npacks; p++) {
        if (!present[p] || !data_only(v, p) || (v->wanted_pack && !v->wanted_pack[p]))
            continue;
        uint64_t end = 4;
        for (size_t i = 0; i < v->nper[p]; i++) {
            const idx_entry *ie = &v->ix.entries[v->per[p][i]];
            if ((uint64_t)ie->offset + ie->stored > end)
                end = (uint64_t)ie->offset + ie->stored;
        }
        if (sizes[p] < end + 4) {
            char key[96];
            pack_key(v->ix.packs[p].id, key, sizeof(key));
            add_damage(v, key, NULL, "the pack is shorter than its index says (size as listed)");
        }
        present[p] = 0;
        skipped++;
    }
    return skipped;
}

/* Picks the packs to read: all, or each with probability sample/100 (at least one). */
static void choose(vf *v, const uint8_t *present, double sample)
{
    v->chosen = xcalloc(v->ix.npacks ? v->ix.npacks : 1, sizeof(*v->chosen));
    unsigned seed = (unsigned)time(NULL);
    for (uint32_t p = 0; p < v->ix.npacks; p++) {
        if (!present[p] || (v->wanted_pack && !v->wanted_pack[p]))
            continue;
        if (sample >= 100.0 || (double)rand_r(&seed) / RAND_MAX * 100.0 < sample)
            v->chosen[v->nchosen++] = p;
    }
    if (v->nchosen == 0)
        for (uint32_t p = 0; p < v->ix.npacks && v->nchosen == 0; p++)
            if (present[p] && (v->wanted_pack == NULL || v->wanted_pack[p]))
                v->chosen[v->nchosen++] = p;
}

static void want(vf *v, const uint8_t id[ID_LEN])
{
    const idx_entry *ie = idx_find(&v->ix, id);
    if (ie == NULL || ie->pack == IDX_PENDING)
        return; /* reported by check_snapshots */
    v->wanted[ie - v->ix.entries] = 1;
    v->wanted_pack[ie->pack] = 1;
}

/*
 * Marks the index entries (and packs) the repository's snapshots use: their trees' chunks
 * and their files' chunks. A snapshot whose tree does not load is skipped here; the damage
 * is reported by check_snapshots. 0, or -1 with e set (the snapshots cannot be listed).
 */
static int mark_wanted(vf *v, codec *c, const char *repository, rerr *e)
{
    v->wanted = xcalloc(v->ix.count ? v->ix.count : 1, 1);
    v->wanted_pack = xcalloc(v->ix.npacks ? v->ix.npacks : 1, 1);
    snap_list l;
    int rc = snap_list_read(v->s, repository, &l, e);
    for (size_t i = 0; rc == 0 && i < l.n; i++) {
        size_t k;
        json_t *ref;
        uint8_t id[ID_LEN];
        json_array_foreach (json_object_get(l.items[i].doc, "tree"), k, ref) {
            const char *hex = json_string_value(json_object_get(ref, "id"));
            if (hex && hex_decode(hex, id, ID_LEN) == 0)
                want(v, id);
        }
        tree t = {0};
        rerr ignore = {0};
        if (tree_load(v->s, &v->ix, c, l.items[i].doc, &t, &ignore) == 0)
            for (size_t n = 0; n < t.n; n++)
                for (uint32_t j = 0; j < t.nodes[n].nchunks; j++)
                    if (!t.nodes[n].chunks[j].zero)
                        want(v, t.nodes[n].chunks[j].id);
        tree_free(&t);
    }
    snap_list_free(&l);
    return rc;
}

/* Loads every snapshot, checks its chunks are indexed, names files using damaged chunks. */
static size_t check_snapshots(vf *v, codec *c, const char *repository, ui *u, rerr *e)
{
    snap_list l;
    if (snap_list_read(v->s, repository, &l, e) != 0) {
        snap_list_free(&l);
        add_damage(v, "snapshots/", NULL, e->msg);
        memset(e, 0, sizeof(*e));
        return 0;
    }
    /* Chunks found damaged so far, to name the files that use them. */
    size_t ndamage = json_array_size(v->damage);
    uint8_t(*bad)[ID_LEN] = xcalloc(ndamage ? ndamage : 1, ID_LEN);
    size_t *bad_item = xcalloc(ndamage ? ndamage : 1, sizeof(*bad_item));
    size_t nbad = 0;
    for (size_t d = 0; d < ndamage; d++) {
        const char *hex = json_string_value(json_object_get(json_array_get(v->damage, d), "chunk"));
        if (hex && hex_decode(hex, bad[nbad], ID_LEN) == 0)
            bad_item[nbad++] = d;
    }
    for (size_t i = 0; i < l.n; i++) {
        const snap_info *si = &l.items[i];
        char key[300];
        snap_key(si->repository, si->id, key, sizeof(key));
        tree t = {0};
        rerr te = {0};
        ui_progress(u, 90, "verifying snapshot %s", key);
        if (tree_load(v->s, &v->ix, c, si->doc, &t, &te) != 0)
            add_damage(v, key, NULL, te.msg);
        for (size_t n = 0; n < t.n; n++) {
            const tnode *node = &t.nodes[n];
            for (uint32_t k = 0; k < node->nchunks; k++) {
                const chunk_ref *ref = &node->chunks[k];
                if (ref->zero)
                    continue;
                if (idx_find(&v->ix, ref->id) == NULL)
                    add_damage(v, key, ref->id, "a chunk of the snapshot is not indexed");
                for (size_t d = 0; d < nbad; d++) {
                    json_t *files =
                        json_object_get(json_array_get(v->damage, bad_item[d]), "files");
                    if (memcmp(bad[d], ref->id, ID_LEN) != 0 || json_array_size(files) >= 100)
                        continue;
                    char *file = xasprintf("%s@%s:%s", si->repository, si->id, node->path);
                    json_array_append_new(files, json_string(file));
                    free(file);
                }
            }
        }
        tree_free(&t);
    }
    free(bad);
    free(bad_item);
    size_t n = l.n;
    snap_list_free(&l);
    return n;
}

static int run_checks(vf *v, ui *u)
{
    int nthreads = default_threads();
    pthread_t th[16];
    if (nthreads > 16)
        nthreads = 16;
    v->running = nthreads;
    for (int i = 0; i < nthreads; i++)
        pthread_create(&th[i], NULL, worker_main, v);
    while (__atomic_load_n(&v->running, __ATOMIC_ACQUIRE) > 0) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (ui_cancelled(u))
            __atomic_store_n(&v->stop, 1, __ATOMIC_RELAXED);
        size_t done = __atomic_load_n(&v->next, __ATOMIC_RELAXED);
        ui_progress(
            u, v->nchosen ? (int)((done > v->nchosen ? v->nchosen : done) * 85 / v->nchosen) : 85,
            "verifying: %zu of %zu packs, %.1f MiB", done > v->nchosen ? v->nchosen : done,
            v->nchosen, (double)__atomic_load_n(&v->bytes, __ATOMIC_RELAXED) / 1048576.0);
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    return __atomic_load_n(&v->stop, __ATOMIC_RELAXED) ? -1 : 0;
}

int repo_verify(storage *s, const char *repository, double sample, ui *u, json_t **result, rerr *e)
{
    vf v = {.s = s, .damage = json_array()};
    pthread_mutex_init(&v.mu, NULL);
    idx_init(&v.ix);
    codec *c = codec_new(&s->keys, 0);
    uint8_t *present = NULL;
    uint64_t *sizes = NULL;
    size_t cold_skipped = 0;
    int rc = -1;
    ui_progress(u, 0, "verifying: reading the index");
    if (idx_load(s, &v.ix, e) != 0)
        goto out;
    v.per = xcalloc(v.ix.npacks ? v.ix.npacks : 1, sizeof(*v.per));
    v.nper = xcalloc(v.ix.npacks ? v.ix.npacks : 1, sizeof(*v.nper));
    for (size_t i = 0; i < v.ix.count; i++) {
        uint32_t p = v.ix.entries[i].pack;
        if (p == IDX_PENDING)
            continue;
        v.per[p] = xrealloc(v.per[p], (v.nper[p] + 1) * sizeof(**v.per));
        v.per[p][v.nper[p]++] = (uint32_t)i;
    }
    present = xcalloc(v.ix.npacks ? v.ix.npacks : 1, 1);
    sizes = xcalloc(v.ix.npacks ? v.ix.npacks : 1, sizeof(*sizes));
    struct listing l = {.v = &v, .present = present, .sizes = sizes};
    if (stor_list(s, "data/", note_pack, &l, e) != ST_OK)
        goto out;
    if (repository && mark_wanted(&v, c, repository, e) != 0)
        goto out;
    for (uint32_t p = 0; p < v.ix.npacks; p++) {
        char key[96];
        pack_key(v.ix.packs[p].id, key, sizeof(key));
        if (!present[p] && (v.wanted_pack == NULL || v.wanted_pack[p]))
            add_damage(&v, key, NULL, "missing: the index lists it but the storage lacks it");
    }
    /* Chunks of missing packs are damaged too, so that their files get named. */
    for (uint32_t p = 0; p < v.ix.npacks; p++) {
        char key[96];
        pack_key(v.ix.packs[p].id, key, sizeof(key));
        for (size_t i = 0; !present[p] && i < v.nper[p]; i++)
            if (v.wanted == NULL || v.wanted[v.per[p][i]])
                add_damage(&v, key, v.ix.entries[v.per[p][i]].id, "in a missing pack");
    }
    if (s->cold) {
        cold_skipped = skip_cold(&v, present, sizes);
        ui_log(u, 0,
               "storage %s keeps its data packs in a cold storage class: %zu were not read "
               "(that would need a restore), only checked for presence and size; the packs of "
               "snapshot trees were read",
               s->name, cold_skipped);
    }
    if (v.ix.npacks > cold_skipped)
        choose(&v, present, sample);
    if (run_checks(&v, u) != 0) {
        rerr_set(e, E_CANCELLED, "cancelled");
        goto out;
    }
    size_t nsnaps = check_snapshots(&v, c, repository, u, e);
    size_t ndamage = json_array_size(v.damage);
    *result =
        json_pack("{s:s,s:b,s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:O}", "storage", s->name, "ok",
                  ndamage == 0, "sample_percent", sample, "packs_total", (json_int_t)v.ix.npacks,
                  "packs_checked", (json_int_t)v.nchosen, "blobs_checked", (json_int_t)v.blobs,
                  "bytes_checked", (json_int_t)v.bytes, "snapshots_checked", (json_int_t)nsnaps,
                  "unindexed_packs", (json_int_t)l.unindexed, "cold_packs_skipped",
                  (json_int_t)cold_skipped, "damaged", v.damage);
    for (size_t i = 0; i < ndamage; i++) {
        json_t *d = json_array_get(v.damage, i);
        json_t *files = json_object_get(d, "files");
        ui_log(u, 1, "damaged: %s%s%s: %s%s%s", json_string_value(json_object_get(d, "object")),
               json_object_get(d, "chunk") != json_null() ? " chunk " : "",
               json_object_get(d, "chunk") != json_null()
                   ? json_string_value(json_object_get(d, "chunk"))
                   : "",
               json_string_value(json_object_get(d, "error")),
               json_array_size(files) ? "; used by " : "",
               json_array_size(files) ? json_string_value(json_array_get(files, 0)) : "");
    }
    if (ndamage) {
        json_t *d = json_array_get(v.damage, 0);
        json_t *files = json_object_get(d, "files");
        rerr_set(e, E_CORRUPT, "storage %s is damaged (%zu problems): %s: %s%s%s", s->name, ndamage,
                 json_string_value(json_object_get(d, "object")),
                 json_string_value(json_object_get(d, "error")),
                 json_array_size(files) ? "; used by " : "",
                 json_array_size(files) ? json_string_value(json_array_get(files, 0)) : "");
        goto out;
    }
    rc = 0;
out:
    for (size_t p = 0; v.per && p < v.ix.npacks; p++)
        free(v.per[p]);
    free(v.per);
    free(v.nper);
    free(v.chosen);
    free(v.wanted);
    free(v.wanted_pack);
    free(present);
    free(sizes);
    codec_free(c);
    json_decref(v.damage);
    idx_free(&v.ix);
    pthread_mutex_destroy(&v.mu);
    return rc;
}
