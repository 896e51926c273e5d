/*
 * Retention and garbage collection (repo_gc, and the end of every repo_push).
 *
 * The collector keeps a reference count per chunk in the storage ("gc/state"): for every
 * snapshot it has counted, each distinct chunk the snapshot uses (file data and the tree's
 * own chunks) adds one. A run
 *   1. takes the exclusive lock, or gives up at once when anyone else uses the storage;
 *   2. counts snapshots that appeared since the last run (reading their trees) and
 *      uncounts those that disappeared;
 *   3. decides, group by group (a repository's snapshots from one machine), which snapshots
 *      go (keep.c): expired ones, never the group's newest, and, in the groups a keep
 *      policy applies to, those no rule keeps; removes and uncounts them;
 *   4. finds packs whose chunks are now unused: a pack with no used chunk is deleted, a pack
 *      that is at least half unused has its used chunks copied into a new pack first (so
 *      bytes copied never exceed bytes freed); packs indexed less than `grace` ago are left
 *      alone, which keeps what an interrupted push stored for the next one to reuse; on a
 *      cold storage (S3 GLACIER, DEEP_ARCHIVE) packs are only deleted, never repacked;
 *   5. records the new counts and the packs to delete, rewrites the index files that listed
 *      them, then deletes them.
 * Its storage I/O is the state and index (metadata, about 40 bytes per chunk), the trees of
 * snapshots that came or went, and the packs that lose data: it never reads a pack that
 * keeps all its data, so its cost follows what is removed, not the storage's size.
 * Every step can be interrupted: the next run finishes what the last one left.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "index.h"
#include "keep.h"
#include "pack.h"
#include "snapshot.h"
#include "tree.h"

#define STATE_KEY   "gc/state"
#define STATE_AAD   "ferry-gc"
#define STATE_MAGIC "FGC1"
/* The state's optional trailer: the machine of each counted snapshot. */
#define MACHINES_MAGIC "FGM1"

/* chunk id -> number of counted snapshots using it */
typedef struct refmap {
    struct ref {
        uint8_t id[ID_LEN];
        uint32_t count;
        uint8_t used;
    } * slots;
    size_t cap, n;
} refmap;

static struct ref *ref_get(refmap *m, const uint8_t id[ID_LEN], int create)
{
    if (create && (m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 4096;
        struct ref *slots = xcalloc(cap, sizeof(*slots));
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->slots[i].used)
                continue;
            uint64_t h;
            memcpy(&h, m->slots[i].id, 8);
            size_t s = h & (cap - 1);
            while (slots[s].used)
                s = (s + 1) & (cap - 1);
            slots[s] = m->slots[i];
        }
        free(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    if (m->cap == 0)
        return NULL;
    uint64_t h;
    memcpy(&h, id, 8);
    size_t s = h & (m->cap - 1);
    while (m->slots[s].used && memcmp(m->slots[s].id, id, ID_LEN) != 0)
        s = (s + 1) & (m->cap - 1);
    if (!m->slots[s].used) {
        if (!create)
            return NULL;
        m->slots[s].used = 1;
        memcpy(m->slots[s].id, id, ID_LEN);
        m->n++;
    }
    return &m->slots[s];
}

/* A snapshot the state has counted. */
typedef struct counted {
    char key[260]; /* "repository/id" */
    int64_t expires;
    int64_t time;
    char machine[129]; /* the manifest's "machine"; "" when it names none */
    int machine_known; /* read from the state's trailer or from the manifest */
    uint8_t (*tree)[ID_LEN];
    size_t ntree;
    int listed; /* its manifest exists now */
    int drop;   /* to uncount in this run */
} counted;

typedef struct gc_state {
    counted *snaps;
    size_t nsnaps;
    refmap refs;
    uint8_t (*pending)[ID_LEN]; /* packs decided dead, maybe not deleted yet */
    size_t npending;
} gc_state;

static void state_free(gc_state *st)
{
    for (size_t i = 0; i < st->nsnaps; i++)
        free(st->snaps[i].tree);
    free(st->snaps);
    free(st->refs.slots);
    free(st->pending);
    memset(st, 0, sizeof(*st));
}

static counted *add_counted(gc_state *st)
{
    st->snaps = xrealloc(st->snaps, (st->nsnaps + 1) * sizeof(*st->snaps));
    counted *c = &st->snaps[st->nsnaps++];
    memset(c, 0, sizeof(*c));
    return c;
}

/*
 * The trailer after the pending packs: "FGM1" | varint snapshots | snapshots × str machine,
 * in the order of the counted snapshots. Writers before it leave it out and readers before
 * it ignore it; a state without a usable one leaves the machines unknown, and the run reads
 * them from the manifests (fill_machines).
 */
static void load_machines(reader *r, gc_state *st)
{
    const uint8_t *magic = rd_bytes(r, 4);
    if (magic == NULL || memcmp(magic, MACHINES_MAGIC, 4) != 0 || rd_varint(r) != st->nsnaps) {
        r->err = 0;
        return;
    }
    for (size_t i = 0; i < st->nsnaps && !r->err; i++) {
        char *m = rd_str(r, sizeof(st->snaps[i].machine) - 1);
        snprintf(st->snaps[i].machine, sizeof(st->snaps[i].machine), "%s", m ? m : "");
        st->snaps[i].machine_known = m != NULL;
        free(m);
    }
    if (r->err)
        for (size_t i = 0; i < st->nsnaps; i++)
            st->snaps[i].machine_known = 0;
    r->err = 0;
}

static int state_load(storage *s, gc_state *st, rerr *e)
{
    buf plain = {0};
    int rc = stor_get_sealed(s, STATE_KEY, STATE_AAD, &plain, e);
    if (rc == ST_NOTFOUND)
        return 0;
    if (rc != ST_OK) {
        buf_free(&plain); /* a state that does not open leaves its bytes here */
        return -1;
    }
    reader r;
    rd_init(&r, plain.data, plain.len);
    const uint8_t *magic = rd_bytes(&r, 4);
    if (magic == NULL || memcmp(magic, STATE_MAGIC, 4) != 0)
        r.err = 1;
    uint64_t n = rd_varint(&r);
    for (uint64_t i = 0; i < n && !r.err; i++) {
        counted *c = add_counted(st);
        char *key = rd_str(&r, sizeof(c->key) - 1);
        snprintf(c->key, sizeof(c->key), "%s", key ? key : "");
        free(key);
        c->expires = (int64_t)rd_varint(&r);
        c->time = (int64_t)rd_varint(&r);
        c->ntree = rd_varint(&r);
        if (c->ntree > plain.len / ID_LEN) {
            r.err = 1;
            c->ntree = 0;
            break;
        }
        c->tree = xcalloc(c->ntree, ID_LEN);
        for (size_t t = 0; t < c->ntree; t++) {
            const uint8_t *id = rd_bytes(&r, ID_LEN);
            if (id)
                memcpy(c->tree[t], id, ID_LEN);
        }
    }
    uint64_t nrefs = rd_varint(&r);
    for (uint64_t i = 0; i < nrefs && !r.err; i++) {
        const uint8_t *id = rd_bytes(&r, ID_LEN);
        uint64_t count = rd_varint(&r);
        if (id)
            ref_get(&st->refs, id, 1)->count = (uint32_t)count;
    }
    uint64_t npending = rd_varint(&r);
    if (!r.err && npending <= plain.len / ID_LEN) {
        st->pending = xcalloc(npending, ID_LEN);
        for (uint64_t i = 0; i < npending && !r.err; i++) {
            const uint8_t *id = rd_bytes(&r, ID_LEN);
            if (id)
                memcpy(st->pending[st->npending++], id, ID_LEN);
        }
    }
    if (!r.err && r.p < r.end)
        load_machines(&r, st);
    buf_free(&plain);
    if (r.err)
        return rerr_set(e, E_CORRUPT,
                        "%s in storage %s is damaged; delete it to rebuild the "
                        "reference counts from every snapshot",
                        STATE_KEY, s->name);
    return 0;
}

static int state_save(storage *s, const gc_state *st, rerr *e)
{
    buf b = {0};
    buf_append(&b, STATE_MAGIC, 4);
    size_t live = 0;
    for (size_t i = 0; i < st->nsnaps; i++)
        live += !st->snaps[i].drop;
    buf_put_varint(&b, live);
    for (size_t i = 0; i < st->nsnaps; i++) {
        const counted *c = &st->snaps[i];
        if (c->drop)
            continue;
        buf_put_str(&b, c->key);
        buf_put_varint(&b, (uint64_t)c->expires);
        buf_put_varint(&b, (uint64_t)c->time);
        buf_put_varint(&b, c->ntree);
        for (size_t t = 0; t < c->ntree; t++)
            buf_append(&b, c->tree[t], ID_LEN);
    }
    size_t nrefs = 0;
    for (size_t i = 0; i < st->refs.cap; i++)
        nrefs += st->refs.slots[i].used && st->refs.slots[i].count > 0;
    buf_put_varint(&b, nrefs);
    for (size_t i = 0; i < st->refs.cap; i++) {
        if (!st->refs.slots[i].used || st->refs.slots[i].count == 0)
            continue;
        buf_append(&b, st->refs.slots[i].id, ID_LEN);
        buf_put_varint(&b, st->refs.slots[i].count);
    }
    buf_put_varint(&b, st->npending);
    for (size_t i = 0; i < st->npending; i++)
        buf_append(&b, st->pending[i], ID_LEN);
    buf_append(&b, MACHINES_MAGIC, 4);
    buf_put_varint(&b, live);
    for (size_t i = 0; i < st->nsnaps; i++)
        if (!st->snaps[i].drop)
            buf_put_str(&b, st->snaps[i].machine);
    int rc = stor_put_sealed(s, STATE_KEY, STATE_AAD, b.data, b.len, 0, e);
    buf_free(&b);
    return rc == ST_OK ? 0 : -1;
}

/* Adds delta to the count of every distinct chunk a snapshot uses. */
static int count_snapshot(storage *s, const chunk_index *ix, codec *c, gc_state *st,
                          const counted *snap, int delta, rerr *e)
{
    json_t *refs = json_array();
    for (size_t i = 0; i < snap->ntree; i++) {
        char hex[HEX_LEN + 1];
        hex_encode(snap->tree[i], ID_LEN, hex);
        json_array_append_new(refs, json_pack("{s:s}", "id", hex));
    }
    json_t *doc = json_pack("{s:o}", "tree", refs);
    tree t = {0};
    int rc = tree_load(s, ix, c, doc, &t, e);
    json_decref(doc);
    if (rc != 0)
        return -1;
    refmap seen = {0};
    for (size_t i = 0; i < snap->ntree; i++)
        ref_get(&seen, snap->tree[i], 1);
    for (size_t i = 0; i < t.n; i++)
        for (uint32_t k = 0; k < t.nodes[i].nchunks; k++)
            if (!t.nodes[i].chunks[k].zero)
                ref_get(&seen, t.nodes[i].chunks[k].id, 1);
    for (size_t i = 0; i < seen.cap; i++) {
        if (!seen.slots[i].used)
            continue;
        struct ref *r = ref_get(&st->refs, seen.slots[i].id, 1);
        if (delta > 0)
            r->count++;
        else if (r->count > 0)
            r->count--;
    }
    free(seen.slots);
    tree_free(&t);
    return 0;
}

typedef struct listed {
    char **keys;
    size_t n;
} listed;

static int collect_snapshot(void *arg, const char *key, uint64_t size)
{
    (void)size;
    listed *l = arg;
    l->keys = xrealloc(l->keys, (l->n + 1) * sizeof(*l->keys));
    l->keys[l->n++] = xstrdup(key + strlen("snapshots/"));
    return 0;
}

/* Reads a new snapshot's manifest into a counted record. */
static int read_new(storage *s, const char *key, counted *c, rerr *e)
{
    char repo[260];
    snprintf(repo, sizeof(repo), "%s", key);
    char *slash = strchr(repo, '/');
    if (slash == NULL)
        return 0;
    *slash = '\0';
    json_t *doc = NULL;
    int rc = snap_read(s, repo, slash + 1, &doc, e);
    if (rc != ST_OK)
        return rc;
    snprintf(c->key, sizeof(c->key), "%s", key);
    c->expires = json_integer_value(json_object_get(doc, "expires_unix"));
    c->time = json_integer_value(json_object_get(doc, "unix_time"));
    const char *machine = snap_machine(doc);
    snprintf(c->machine, sizeof(c->machine), "%s", machine ? machine : "");
    c->machine_known = 1;
    const json_t *refs = json_object_get(doc, "tree");
    c->ntree = json_array_size(refs);
    c->tree = xcalloc(c->ntree ? c->ntree : 1, ID_LEN);
    for (size_t i = 0; i < c->ntree; i++) {
        const char *hex = json_string_value(json_object_get(json_array_get(refs, i), "id"));
        if (hex == NULL || hex_decode(hex, c->tree[i], ID_LEN) != 0) {
            json_decref(doc);
            return rerr_set(e, E_CORRUPT, "snapshot %s has a malformed tree list", key);
        }
    }
    json_decref(doc);
    return ST_OK;
}

typedef struct gc_run {
    storage *s;
    const gc_req *req;
    ui *u;
    chunk_index ix;
    gc_state st;
    codec *c;
    json_t *expired;
    json_t *policy_keep, *policy_remove; /* with a keep policy: each snapshot it decided */
    uint64_t freed, copied;
    size_t deleted, repacked;
} gc_run;

/* Reads the machine of each listed snapshot the state does not know it of (a state written
 * before the trailer existed): once, as the next state records them. */
static int fill_machines(gc_run *g, rerr *e)
{
    for (size_t i = 0; i < g->st.nsnaps; i++) {
        counted *c = &g->st.snaps[i];
        if (c->drop || c->machine_known)
            continue;
        char repo[260];
        snprintf(repo, sizeof(repo), "%s", c->key);
        char *slash = strchr(repo, '/');
        json_t *doc = NULL;
        int rc = ST_NOTFOUND;
        if (slash) {
            *slash = '\0';
            rc = snap_read(g->s, repo, slash + 1, &doc, e);
        }
        if (rc == ST_NOTFOUND) {
            c->drop = 1; /* gone since the listing */
            memset(e, 0, sizeof(*e));
            continue;
        }
        if (rc != ST_OK)
            return -1;
        const char *machine = snap_machine(doc);
        snprintf(c->machine, sizeof(c->machine), "%s", machine ? machine : "");
        c->machine_known = 1;
        json_decref(doc);
    }
    return 0;
}

/* Length of the repository part of a counted key ("repository/id"). */
static size_t repo_len(const counted *c)
{
    return strcspn(c->key, "/");
}

static int by_group(const void *a, const void *b)
{
    const counted *x = *(counted *const *)a, *y = *(counted *const *)b;
    size_t lx = repo_len(x), ly = repo_len(y);
    int cmp = strncmp(x->key, y->key, lx < ly ? lx : ly);
    if (cmp == 0 && lx != ly)
        cmp = lx < ly ? -1 : 1;
    return cmp ? cmp : strcmp(x->machine, y->machine);
}

/* Whether the request's keep policy applies to the group of c. */
static int policy_applies(const gc_req *req, const counted *c)
{
    size_t len = repo_len(c);
    return keep_policy_active(req->policy) &&
           (req->repository == NULL ||
            (strlen(req->repository) == len && strncmp(req->repository, c->key, len) == 0)) &&
           (req->machine == NULL || strcmp(req->machine, c->machine) == 0);
}

/* What the result says of one snapshot a policy decided: where, when, and why. */
static json_t *decision(const counted *c, const keep_item *it, const keep_policy *p)
{
    char when[40];
    if (c->time >= -62135596800LL && c->time <= 253402300799LL) /* years 1 to 9999 */
        iso_time(c->time, when, sizeof(when));
    else
        snprintf(when, sizeof(when), "@%lld", (long long)c->time); /* a damaged manifest's */
    json_t *why = json_array();
    for (int bit = 0; bit < KEEP_WHY_BITS; bit++) {
        if (!(it->why & (1u << bit)))
            continue;
        char text[80];
        if ((1u << bit) == KEEP_WHY_WITHIN)
            snprintf(text, sizeof(text), "within %g days of the newest", p->within / 86400.0);
        else
            snprintf(text, sizeof(text), "%s", keep_why_text(bit));
        json_array_append_new(why, json_string(text));
    }
    size_t len = repo_len(c);
    return json_pack("{s:s,s:s%,s:s,s:s,s:s,s:o}", "snapshot", c->key, "repository", c->key, len,
                     "id", c->key + len + 1, "machine", c->machine, "time", when, "reasons", why);
}

/*
 * Step 3: decides each group's snapshots (keep.c) and removes those that go. A group is a
 * repository's snapshots from one machine, so one machine's policy, or its newest
 * snapshot, never decides over another's.
 */
static int expire(gc_run *g, rerr *e)
{
    size_t n = 0;
    counted **live = xcalloc(g->st.nsnaps ? g->st.nsnaps : 1, sizeof(*live));
    for (size_t i = 0; i < g->st.nsnaps; i++)
        if (!g->st.snaps[i].drop)
            live[n++] = &g->st.snaps[i];
    qsort(live, n, sizeof(*live), by_group);
    keep_item *items = xcalloc(n ? n : 1, sizeof(*items));
    int rc = 0;
    for (size_t start = 0, end; start < n && rc == 0; start = end) {
        for (end = start + 1; end < n && by_group(&live[start], &live[end]) == 0; end++)
            ;
        for (size_t k = start; k < end; k++)
            items[k] =
                (keep_item){.id = live[k]->key, .time = live[k]->time, .expires = live[k]->expires};
        int apply = policy_applies(g->req, live[start]);
        keep_apply(apply ? g->req->policy : NULL, items + start, end - start, g->req->now);
        for (size_t k = start; k < end && rc == 0; k++) {
            counted *c = live[k];
            if (apply)
                json_array_append_new(items[k].keep ? g->policy_keep : g->policy_remove,
                                      decision(c, &items[k], g->req->policy));
            if (items[k].keep)
                continue;
            if (items[k].why == KEEP_WHY_EXPIRED)
                json_array_append_new(g->expired, json_string(c->key));
            char key[300];
            snprintf(key, sizeof(key), "snapshots/%s", c->key);
            if (!g->req->dry_run && stor_del(g->s, key, e) == ST_ERROR)
                rc = -1;
            c->drop = 1;
        }
    }
    free(items);
    free(live);
    return rc;
}

/* Steps 2 and 3: reconcile the counted set with the listing, then expire. */
static int reconcile(gc_run *g, rerr *e)
{
    listed l = {0};
    int rc = stor_list(g->s, "snapshots/", collect_snapshot, &l, e) == ST_OK ? 0 : -1;
    for (size_t i = 0; i < l.n && rc == 0; i++) {
        size_t k;
        for (k = 0; k < g->st.nsnaps; k++)
            if (strcmp(g->st.snaps[k].key, l.keys[i]) == 0)
                break;
        if (k < g->st.nsnaps) {
            g->st.snaps[k].listed = 1;
            continue;
        }
        counted fresh = {0};
        int got = read_new(g->s, l.keys[i], &fresh, e);
        if (got == ST_NOTFOUND) {
            free(fresh.tree);
            continue;
        }
        if (got != ST_OK || count_snapshot(g->s, &g->ix, g->c, &g->st, &fresh, +1, e) != 0) {
            free(fresh.tree);
            rc = -1;
            break;
        }
        fresh.listed = 1;
        *add_counted(&g->st) = fresh;
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.keys[i]);
    free(l.keys);
    if (rc != 0)
        return -1;
    for (size_t i = 0; i < g->st.nsnaps; i++)
        if (!g->st.snaps[i].listed)
            g->st.snaps[i].drop = 1; /* removed by an earlier run that did not finish */
    if (fill_machines(g, e) != 0 || expire(g, e) != 0)
        return -1;
    for (size_t i = 0; i < g->st.nsnaps; i++) {
        rerr ignore = {0};
        if (g->st.snaps[i].drop &&
            count_snapshot(g->s, &g->ix, g->c, &g->st, &g->st.snaps[i], -1, &ignore) != 0)
            ui_log(g->u, 1,
                   "snapshot %s: its tree is unreadable (%s); the data it used stays "
                   "counted (delete gc/state from the storage to recount every snapshot)",
                   g->st.snaps[i].key, ignore.msg);
    }
    return 0;
}

/* Per pack: bytes still used by some snapshot (canonical index entries with a count). */
static uint64_t *live_bytes(gc_run *g)
{
    uint64_t *live = xcalloc(g->ix.npacks ? g->ix.npacks : 1, sizeof(*live));
    for (size_t i = 0; i < g->ix.count; i++) {
        const idx_entry *ie = &g->ix.entries[i];
        const struct ref *r = ref_get(&g->st.refs, ie->id, 0);
        if (ie->pack != IDX_PENDING && r && r->count > 0)
            live[ie->pack] += ie->stored;
    }
    return live;
}

static void add_pending(gc_state *st, const uint8_t id[ID_LEN])
{
    st->pending = xrealloc(st->pending, (st->npending + 1) * ID_LEN);
    memcpy(st->pending[st->npending++], id, ID_LEN);
}

/* Copies the used blobs of pack packno into pw; new packs are stored as they fill. */
static int repack_one(gc_run *g, uint32_t packno, pack_writer *pw, pack **done, size_t *ndone,
                      rerr *e)
{
    char key[96];
    pack_key(g->ix.packs[packno].id, key, sizeof(key));
    buf data = {0};
    int rc = stor_get(g->s, key, 0, 0, &data, e) == ST_OK ? 0 : -1;
    for (size_t i = 0; i < g->ix.count && rc == 0; i++) {
        const idx_entry *ie = &g->ix.entries[i];
        const struct ref *r = ref_get(&g->st.refs, ie->id, 0);
        if (ie->pack != packno || r == NULL || r->count == 0)
            continue;
        if ((uint64_t)ie->offset + ie->stored > data.len) {
            rc = rerr_set(e, E_CORRUPT, "%s is shorter than its index says", key);
            break;
        }
        blob_entry be = {.type = ie->type,
                         .flags = ie->flags,
                         .offset = ie->offset,
                         .stored = ie->stored,
                         .raw = ie->raw};
        memcpy(be.id, ie->id, ID_LEN);
        if (pack_add_stored(pw, &be, data.data + ie->offset, e) != 0) {
            rc = -1;
            break;
        }
        g->copied += ie->stored;
        if (pw->size >= PACK_TARGET_SIZE) {
            pack *full = pack_finish(pw, g->c, e);
            if (full == NULL)
                rc = -1;
            else
                done[(*ndone)++] = full;
        }
    }
    buf_free(&data);
    return rc;
}

/* Rewrites the index files that list a pack about to go; adds one for the new packs. */
static int rewrite_index(gc_run *g, const uint8_t *going, pack **fresh, size_t nfresh, rerr *e)
{
    /* Entries per surviving pack, from the in-memory index. */
    blob_entry **per = xcalloc(g->ix.npacks ? g->ix.npacks : 1, sizeof(*per));
    size_t *nper = xcalloc(g->ix.npacks ? g->ix.npacks : 1, sizeof(*nper));
    for (size_t i = 0; i < g->ix.count; i++) {
        const idx_entry *ie = &g->ix.entries[i];
        if (ie->pack == IDX_PENDING || going[ie->pack])
            continue;
        per[ie->pack] = xrealloc(per[ie->pack], (nper[ie->pack] + 1) * sizeof(blob_entry));
        blob_entry *be = &per[ie->pack][nper[ie->pack]++];
        *be = (blob_entry){.type = ie->type,
                           .flags = ie->flags,
                           .offset = ie->offset,
                           .stored = ie->stored,
                           .raw = ie->raw};
        memcpy(be->id, ie->id, ID_LEN);
    }
    uint8_t *affected = xcalloc(g->ix.nfiles ? g->ix.nfiles : 1, 1);
    for (size_t i = 0; i < g->ix.nfile_packs; i++)
        if (going[g->ix.file_packs[i].pack])
            affected[g->ix.file_packs[i].file] = 1;
    idx_group *groups = xcalloc(g->ix.npacks + nfresh + 1, sizeof(*groups));
    size_t ng = 0;
    for (size_t i = 0; i < nfresh; i++)
        groups[ng++] = (idx_group){.pack_id = fresh[i]->id,
                                   .time = g->req->now,
                                   .entries = fresh[i]->entries,
                                   .n = fresh[i]->n};
    uint8_t *listed_pack = xcalloc(g->ix.npacks ? g->ix.npacks : 1, 1);
    for (size_t i = 0; i < g->ix.nfile_packs; i++) {
        const idx_file_pack *fp = &g->ix.file_packs[i];
        if (!affected[fp->file] || going[fp->pack] || listed_pack[fp->pack] || !nper[fp->pack])
            continue;
        listed_pack[fp->pack] = 1;
        groups[ng++] = (idx_group){.pack_id = g->ix.packs[fp->pack].id,
                                   .time = g->ix.packs[fp->pack].time,
                                   .entries = per[fp->pack],
                                   .n = nper[fp->pack]};
    }
    char key[80];
    int rc = ng ? idx_write(g->s, groups, ng, key, e) : 0;
    for (size_t f = 0; f < g->ix.nfiles && rc == 0; f++)
        if (affected[f] && stor_del(g->s, g->ix.files[f], e) == ST_ERROR)
            rc = -1;
    for (size_t i = 0; i < g->ix.npacks; i++)
        free(per[i]);
    free(per);
    free(nper);
    free(affected);
    free(groups);
    free(listed_pack);
    return rc;
}

/* Step 4 and 5: decide, repack, record, reindex, delete. */
static int collect(gc_run *g, rerr *e)
{
    uint64_t *live = live_bytes(g);
    uint8_t *going = xcalloc(g->ix.npacks ? g->ix.npacks : 1, 1);
    for (size_t i = 0; i < g->st.npending; i++) {
        uint32_t p = idx_pack_find(&g->ix, g->st.pending[i]);
        if (p != IDX_NONE) {
            going[p] = 1;
        } else if (!g->req->dry_run) {
            /* Unindexed by a run that stopped before deleting it. */
            char key[96];
            pack_key(g->st.pending[i], key, sizeof(key));
            if (stor_del(g->s, key, e) == ST_ERROR) {
                free(going);
                free(live);
                return -1;
            }
        }
    }
    pack_writer pw = {.s = g->s};
    pack **fresh = xcalloc(g->ix.npacks + 2, sizeof(*fresh));
    size_t nfresh = 0;
    int rc = 0;
    for (uint32_t p = 0; p < g->ix.npacks && rc == 0; p++) {
        const idx_pack *ip = &g->ix.packs[p];
        if (going[p] || ip->time > g->req->now - g->req->grace)
            continue;
        uint64_t dead = ip->bytes - (live[p] < ip->bytes ? live[p] : ip->bytes);
        if (live[p] > 0 && dead < live[p])
            continue;
        /* A cold storage's packs cannot be read without a restore (hours, and paid): it
         * deletes packs that lost everything and repacks nothing. */
        if (live[p] > 0 && g->s->cold)
            continue;
        if (live[p] > 0) {
            if (g->req->dry_run) {
                g->copied += live[p];
            } else if (repack_one(g, p, &pw, fresh, &nfresh, e) != 0) {
                rc = -1;
                break;
            }
            g->repacked++;
        } else {
            g->deleted++;
        }
        g->freed += dead;
        going[p] = 1;
    }
    if (rc == 0 && !g->req->dry_run) {
        pack *last = pack_finish(&pw, g->c, e);
        if (last)
            fresh[nfresh++] = last;
        else if (e->kind)
            rc = -1;
        for (size_t i = 0; i < nfresh && rc == 0; i++)
            rc = pack_commit(fresh[i], e);
        free(g->st.pending);
        g->st.pending = NULL;
        g->st.npending = 0;
        for (uint32_t p = 0; p < g->ix.npacks; p++)
            if (going[p])
                add_pending(&g->st, g->ix.packs[p].id);
        /* Saved even when nothing goes: the counts of new and removed snapshots. From here
         * on, a crash leaves the pending packs for the next run to delete. */
        if (rc == 0)
            rc = state_save(g->s, &g->st, e);
        if (rc == 0 && g->st.npending)
            rc = rewrite_index(g, going, fresh, nfresh, e);
        for (uint32_t p = 0; p < g->ix.npacks && rc == 0; p++) {
            char key[96];
            pack_key(g->ix.packs[p].id, key, sizeof(key));
            if (going[p] && stor_del(g->s, key, e) == ST_ERROR)
                rc = -1;
        }
        if (rc == 0 && g->st.npending) {
            g->st.npending = 0;
            rc = state_save(g->s, &g->st, e);
        }
        /* The packs repacked into are indexed now (rewrite_index): "full" must know them,
         * or it would take them for packs no index lists. */
        for (size_t i = 0; i < nfresh && rc == 0; i++)
            idx_pack_add(&g->ix, fresh[i]->id, g->req->now);
    }
    pack_writer_free(&pw);
    for (size_t i = 0; i < nfresh; i++)
        pack_free(fresh[i]);
    free(fresh);
    free(going);
    free(live);
    return rc;
}

/*
 * Unindexed packs ("full"): a pack no index lists is either left by a push killed between
 * storing it and indexing it, or being uploaded by a push right now. Providers do not all
 * report an object's age, so the collector records when it first saw each unindexed pack
 * ("gc/unindexed", sealed JSON {"<pack id>": unix seconds}) and deletes one only when that
 * is at least the grace period ago, like an indexed pack.
 */
#define SEEN_KEY "gc/unindexed"
#define SEEN_AAD "ferry-gc-unindexed"

struct unindexed {
    gc_run *g;
    json_t *seen_before; /* the record as loaded */
    json_t *seen;        /* the record to save: the packs still unindexed and kept */
    size_t n, kept;
};

static int drop_unindexed(void *arg, const char *key, uint64_t size)
{
    struct unindexed *u = arg;
    const char *name = strrchr(key, '/');
    uint8_t id[ID_LEN];
    if (name == NULL || hex_decode(name + 1, id, ID_LEN) != 0 ||
        idx_pack_find(&u->g->ix, id) != IDX_NONE)
        return 0;
    const json_t *was = json_object_get(u->seen_before, name + 1);
    int64_t first = json_is_integer(was) ? json_integer_value(was) : u->g->req->now;
    if (first > u->g->req->now - u->g->req->grace) {
        json_object_set_new(u->seen, name + 1, json_integer(first));
        u->kept++;
        return 0;
    }
    rerr ignore = {0};
    if (u->g->req->dry_run || stor_del(u->g->s, key, &ignore) == ST_OK) {
        u->n++;
        u->g->freed += size;
    }
    return 0;
}

/* Deletes the unindexed packs first seen at least the grace period ago; records the rest. */
static int collect_unindexed(gc_run *g, size_t *deleted, size_t *kept, rerr *e)
{
    struct unindexed u = {.g = g, .seen = json_object()};
    buf plain = {0};
    int rc = stor_get_sealed(g->s, SEEN_KEY, SEEN_AAD, &plain, e);
    if (rc == ST_OK)
        u.seen_before = json_loadb((const char *)plain.data, plain.len, 0, NULL);
    buf_free(&plain);
    if (rc == ST_NOTFOUND || (rc == ST_OK && !json_is_object(u.seen_before))) {
        /* None yet, or unreadable: every unindexed pack counts as first seen now. */
        memset(e, 0, sizeof(*e));
        rc = ST_OK;
    }
    if (rc == ST_OK)
        rc = stor_list(g->s, "data/", drop_unindexed, &u, e);
    if (rc == ST_OK && !g->req->dry_run) {
        char *text = json_dumps(u.seen, JSON_COMPACT | JSON_SORT_KEYS);
        rc = stor_put_sealed(g->s, SEEN_KEY, SEEN_AAD, text, strlen(text), 0, e);
        free(text);
    }
    *deleted = u.n;
    *kept = u.kept;
    json_decref(u.seen_before);
    json_decref(u.seen);
    return rc == ST_OK ? 0 : -1;
}

int repo_gc(storage *s, const gc_req *req, ui *u, json_t **result, rerr *e)
{
    gc_run g = {.s = s,
                .req = req,
                .u = u,
                .expired = json_array(),
                .policy_keep = json_array(),
                .policy_remove = json_array()};
    char holder[512] = "";
    lock *lk = NULL;
    int rc = lock_exclusive(s, "retention", &lk, holder, sizeof(holder), e);
    if (rc != 0) {
        json_decref(g.expired);
        json_decref(g.policy_keep);
        json_decref(g.policy_remove);
        if (rc < 0)
            return -1;
        ui_log(u, 0, "retention deferred: storage %s is in use (%s)", s->name, holder);
        *result = json_pack("{s:b,s:s}", "deferred", 1, "reason", holder);
        return 0;
    }
    idx_init(&g.ix);
    g.c = codec_new(&s->keys, 0);
    size_t unindexed = 0, unindexed_kept = 0;
    uint64_t temporaries = 0;
    rc = -1;
    ui_progress(u, 0, "retention: reading the index and the reference counts");
    if (idx_load(s, &g.ix, e) != 0 || state_load(s, &g.st, e) != 0 || reconcile(&g, e) != 0 ||
        collect(&g, e) != 0)
        goto out;
    if (req->full && collect_unindexed(&g, &unindexed, &unindexed_kept, e) != 0)
        goto out;
    /* Temporaries of puts and streams a crash interrupted (".tmp-TIME-…", multipart uploads
     * on S3): their names carry their age, and the grace period keeps those being written. */
    if (req->full && !req->dry_run &&
        stor_sweep_tmp(s, req->now - req->grace, &temporaries, e) != 0)
        goto out;
    size_t kept = 0;
    for (size_t i = 0; i < g.st.nsnaps; i++)
        kept += !g.st.snaps[i].drop;
    *result = json_pack("{s:b,s:b,s:O,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "deferred", 0, "dry_run",
                        req->dry_run, "expired", g.expired, "snapshots", (json_int_t)kept,
                        "packs_deleted", (json_int_t)g.deleted, "packs_repacked",
                        (json_int_t)g.repacked, "unindexed_packs_deleted", (json_int_t)unindexed,
                        "unindexed_packs_kept", (json_int_t)unindexed_kept, "bytes_freed",
                        (json_int_t)g.freed, "bytes_copied", (json_int_t)g.copied,
                        "temporaries_deleted", (json_int_t)temporaries);
    if (keep_policy_active(req->policy)) {
        char rules[300];
        keep_policy_describe(req->policy, rules, sizeof(rules));
        json_object_set_new(*result, "policy",
                            json_pack("{s:s,s:s?,s:s?,s:O,s:O}", "rules", rules, "repository",
                                      req->repository, "machine", req->machine, "keep",
                                      g.policy_keep, "remove", g.policy_remove));
    }
    rc = 0;
out:
    lock_release(lk);
    json_decref(g.expired);
    json_decref(g.policy_keep);
    json_decref(g.policy_remove);
    codec_free(g.c);
    state_free(&g.st);
    idx_free(&g.ix);
    return rc;
}
