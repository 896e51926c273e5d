/* Snapshot manifests and trees in a storage: see snapshot.h. */
#include "snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MANIFEST_AAD "ferry-snapshot"
#define TREE_MAX     ((size_t)1 << 30)

void snap_key(const char *repository, const char *id, char *out, size_t outlen)
{
    snprintf(out, outlen, "snapshots/%s/%s", repository, id);
}

void snap_default_id(char *out, size_t outlen)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, outlen, "%Y%m%d_%H%M%S", &tm);
}

int snap_write(storage *s, const char *repository, const char *id, const json_t *doc, rerr *e)
{
    char key[300];
    snap_key(repository, id, key, sizeof(key));
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    int rc = stor_put_sealed(s, key, MANIFEST_AAD, text, strlen(text), STOR_PUT_EXCLUSIVE, e);
    free(text);
    return rc;
}

static int parse_manifest(storage *s, const char *key, const buf *plain, json_t **doc, rerr *e)
{
    json_error_t jerr;
    *doc = json_loadb((const char *)plain->data, plain->len, 0, &jerr);
    if (*doc == NULL || !json_is_array(json_object_get(*doc, "tree"))) {
        json_decref(*doc);
        *doc = NULL;
        return rerr_set(e, E_CORRUPT, "%s in storage %s is not a valid manifest", key, s->name);
    }
    return ST_OK;
}

int snap_read(storage *s, const char *repository, const char *id, json_t **doc, rerr *e)
{
    char key[300];
    snap_key(repository, id, key, sizeof(key));
    buf plain = {0};
    int rc = stor_get_sealed(s, key, MANIFEST_AAD, &plain, e);
    if (rc == ST_OK)
        rc = parse_manifest(s, key, &plain, doc, e);
    buf_free(&plain);
    return rc;
}

struct list_state {
    snap_list *out;
};

static int collect(void *arg, const char *key, uint64_t size)
{
    (void)size;
    struct list_state *ls = arg;
    const char *rest = key + strlen("snapshots/");
    const char *slash = strchr(rest, '/');
    if (slash == NULL || (size_t)(slash - rest) > 128 || strlen(slash + 1) > 128)
        return 0;
    snap_list *l = ls->out;
    l->items = xrealloc(l->items, (l->n + 1) * sizeof(*l->items));
    snap_info *si = &l->items[l->n++];
    memset(si, 0, sizeof(*si));
    snprintf(si->repository, sizeof(si->repository), "%.*s", (int)(slash - rest), rest);
    snprintf(si->id, sizeof(si->id), "%s", slash + 1);
    return 0;
}

static int by_time(const void *a, const void *b)
{
    const snap_info *x = a, *y = b;
    if (x->time_ns != y->time_ns)
        return x->time_ns < y->time_ns ? -1 : 1;
    int c = strcmp(x->repository, y->repository);
    return c ? c : strcmp(x->id, y->id);
}

int snap_list_read(storage *s, const char *repository, snap_list *out, rerr *e)
{
    memset(out, 0, sizeof(*out));
    char prefix[200];
    snprintf(prefix, sizeof(prefix), "snapshots/%s%s", repository ? repository : "",
             repository ? "/" : "");
    struct list_state ls = {.out = out};
    if (stor_list(s, prefix, collect, &ls, e) != ST_OK)
        return -1;
    size_t kept = 0;
    for (size_t i = 0; i < out->n; i++) {
        snap_info *si = &out->items[i];
        json_t *doc = NULL;
        int rc = snap_read(s, si->repository, si->id, &doc, e);
        if (rc == ST_NOTFOUND)
            continue; /* removed by retention since the listing */
        if (rc != ST_OK) {
            out->n = kept; /* the caller's snap_list_free releases what was read */
            return -1;
        }
        si->doc = doc;
        si->time = json_integer_value(json_object_get(doc, "unix_time"));
        const json_t *ns = json_object_get(doc, "unix_time_ns");
        si->time_ns = json_is_integer(ns) ? json_integer_value(ns) : si->time * 1000000000LL;
        si->expires = json_integer_value(json_object_get(doc, "expires_unix"));
        out->items[kept++] = *si;
    }
    out->n = kept;
    if (out->n > 1)
        qsort(out->items, out->n, sizeof(*out->items), by_time);
    return 0;
}

void snap_list_free(snap_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        json_decref(l->items[i].doc);
    free(l->items);
    memset(l, 0, sizeof(*l));
}

static int tag_matches(const json_t *tags, const char *point)
{
    if (json_is_string(tags))
        return strcmp(json_string_value(tags), point) == 0;
    size_t i;
    const char *key;
    json_t *v;
    if (json_is_array(tags)) {
        json_array_foreach (tags, i, v) {
            if (tag_matches(v, point))
                return 1;
        }
        return 0;
    }
    if (json_is_object(tags)) {
        json_object_foreach ((json_t *)tags, key, v) {
            char *text = json_is_string(v) ? xstrdup(json_string_value(v))
                                           : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            char *pair = xasprintf("%s=%s", key, text);
            int hit = strcmp(text, point) == 0 || strcmp(pair, point) == 0;
            free(pair);
            free(text);
            if (hit)
                return 1;
        }
    }
    return 0;
}

const char *snap_machine(const json_t *doc)
{
    return json_string_value(json_object_get(doc, "machine"));
}

/* Resolution with an optional machine filter: any_machine, or manifests of machine. */
static const snap_info *resolve(const snap_list *l, const char *point, int any_machine,
                                const char *machine)
{
    if (point == NULL)
        point = "latest";
    int latest = strcmp(point, "latest") == 0;
    for (size_t i = l->n; i-- > 0 && !latest;)
        if (strcmp(l->items[i].id, point) == 0)
            return &l->items[i];
    for (size_t i = l->n; i-- > 0;) {
        const json_t *doc = l->items[i].doc;
        const char *m = snap_machine(doc);
        if (!any_machine && !(m && machine ? strcmp(m, machine) == 0 : m == machine))
            continue;
        if (latest || tag_matches(json_object_get(doc, "tags"), point))
            return &l->items[i];
    }
    return NULL;
}

const snap_info *snap_resolve(const snap_list *l, const char *point)
{
    return resolve(l, point, 1, NULL);
}

const snap_info *snap_resolve_on(const snap_list *l, const char *point, const char *machine)
{
    return resolve(l, point, 0, machine);
}

int tree_store(storage *s, chunk_index *ix, codec *c, pack_writer *pw, const tree *t, json_t **refs,
               rerr *e)
{
    buf enc = {0};
    tree_encode(t, &enc);
    *refs = json_array();
    size_t off = 0;
    int rc = 0;
    while (off < enc.len && rc == 0) {
        size_t n = cdc_cut(&s->meta_cdc, enc.data + off, enc.len - off);
        uint8_t id[ID_LEN];
        hasher_id(c->hash, enc.data + off, n, id);
        idx_entry pending = {.pack = IDX_PENDING, .type = BLOB_TREE};
        memcpy(pending.id, id, ID_LEN);
        int inserted = 0;
        idx_insert(ix, &pending, &inserted);
        if (inserted)
            rc = pack_add(pw, c, id, BLOB_TREE, enc.data + off, n, e);
        char hex[HEX_LEN + 1];
        hex_encode(id, ID_LEN, hex);
        json_array_append_new(*refs, json_pack("{s:s,s:I}", "id", hex, "len", (json_int_t)n));
        off += n;
    }
    buf_free(&enc);
    if (rc != 0) {
        json_decref(*refs);
        *refs = NULL;
    }
    return rc;
}

int blob_fetch(storage *s, const chunk_index *ix, codec *c, const uint8_t id[ID_LEN], buf *out,
               rerr *e)
{
    char hex[HEX_LEN + 1], key[96], why[200];
    const idx_entry *ie = idx_find(ix, id);
    if (ie == NULL || ie->pack == IDX_PENDING) {
        hex_encode(id, ID_LEN, hex);
        return rerr_set(e, E_CORRUPT, "chunk %s is missing from storage %s (not in its index)", hex,
                        s->name);
    }
    pack_key(ix->packs[ie->pack].id, key, sizeof(key));
    buf stored = {0};
    int rc = stor_get(s, key, ie->offset, ie->stored, &stored, e);
    if (rc == ST_NOTFOUND) {
        rc = rerr_set(e, E_CORRUPT, "%s is missing from storage %s", key, s->name);
    } else if (rc == ST_OK) {
        blob_entry be = {.type = ie->type,
                         .flags = ie->flags,
                         .offset = ie->offset,
                         .stored = ie->stored,
                         .raw = ie->raw};
        memcpy(be.id, id, ID_LEN);
        if (blob_decode(c, &be, stored.data, out, why, sizeof(why)) != 0)
            rc = rerr_set(e, E_CORRUPT, "%s in storage %s: %s", key, s->name, why);
    }
    buf_free(&stored);
    return rc == ST_OK ? 0 : -1;
}

int tree_load(storage *s, const chunk_index *ix, codec *c, const json_t *doc, tree *t, rerr *e)
{
    const json_t *refs = json_object_get(doc, "tree");
    buf enc = {0}, chunk = {0};
    size_t i;
    json_t *ref;
    int rc = 0;
    json_array_foreach (refs, i, ref) {
        uint8_t id[ID_LEN];
        const char *hex = json_string_value(json_object_get(ref, "id"));
        if (hex == NULL || hex_decode(hex, id, ID_LEN) != 0) {
            rc = rerr_set(e, E_CORRUPT, "a manifest in storage %s has a malformed tree", s->name);
            break;
        }
        if (blob_fetch(s, ix, c, id, &chunk, e) != 0) {
            rc = -1;
            break;
        }
        if (enc.len + chunk.len > TREE_MAX) {
            rc = rerr_set(e, E_CORRUPT, "a snapshot tree in storage %s is implausibly large",
                          s->name);
            break;
        }
        buf_append(&enc, chunk.data, chunk.len);
    }
    if (rc == 0 && tree_decode(enc.data, enc.len, t) != 0)
        rc = rerr_set(e, E_CORRUPT, "snapshot %s/%s in storage %s: its tree %s%s",
                      json_string_value(json_object_get(doc, "repository")),
                      json_string_value(json_object_get(doc, "id")), s->name,
                      t->why[0] ? "is refused: " : "does not decode", t->why);
    buf_free(&enc);
    buf_free(&chunk);
    return rc;
}
