/* Reading a storage without changing it: see browse.h. */
#include "browse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "index.h"
#include "pack.h"

/* --- names as JSON ----------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (n bytes left), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len = c < 0x80                 ? 1
                 : c >= 0xc2 && c <= 0xdf ? 2
                 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4
                                          : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0) || (c == 0xf0 && p[1] < 0x90) ||
        (c == 0xf4 && p[1] >= 0x90))
        return 0; /* overlong forms, surrogates, beyond U+10FFFF */
    return len;
}

/*
 * Sets obj[key] to the bytes s as a JSON string: as they are when they are UTF-8; otherwise
 * with each invalid byte as U+FFFD, and obj[key "_hex"] holding the bytes exactly.
 */
static void set_name(json_t *obj, const char *key, const char *s)
{
    json_t *v = json_string(s);
    if (v != NULL) {
        json_object_set_new(obj, key, v);
        return;
    }
    size_t n = strlen(s), o = 0;
    char *lossy = xmalloc(n * 3 + 1), *hex = xmalloc(n * 2 + 1);
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq(p + i, n - i);
        if (len == 0) {
            memcpy(lossy + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(lossy + o, p + i, len);
            o += len;
            i += len;
        }
    }
    lossy[o] = '\0';
    hex_encode(p, n, hex);
    char *hex_key = xasprintf("%s_hex", key);
    json_object_set_new(obj, key, json_string(lossy));
    json_object_set_new(obj, hex_key, json_string(hex));
    free(hex_key);
    free(hex);
    free(lossy);
}

/* --- snapshots ----------------------------------------------------------------------------- */

json_t *snap_row(const snap_info *si)
{
    const json_t *doc = si->doc;
    json_t *row = json_object();
    set_name(row, "repository", si->repository);
    set_name(row, "id", si->id);
    static const char *const members[] = {"machine", "time", "expires", "tags", "source", "stats"};
    for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
        json_t *v = json_object_get(doc, members[i]);
        json_object_set_new(row, members[i], v ? json_incref(v) : json_null());
    }
    return row;
}

static int snap_matches(const snap_info *si, const char *repository, const char *machine)
{
    const char *m = snap_machine(si->doc);
    return (repository == NULL || strcmp(si->repository, repository) == 0) &&
           (machine == NULL || (m != NULL && strcmp(m, machine) == 0));
}

/* The candidates of snap_find: whole ids (whole set) or prefixes, counted into *n. */
static const snap_info *snap_scan(const snap_list *l, const char *repo_part, const char *id_part,
                                  const char *repository, const char *machine, int whole, size_t *n,
                                  char *names, size_t names_len)
{
    const snap_info *found = NULL;
    size_t used = 0, id_len = strlen(id_part);
    *n = 0;
    for (size_t i = l->n; i-- > 0;) {
        const snap_info *si = &l->items[i];
        if (!snap_matches(si, repository, machine) ||
            (repo_part && strcmp(si->repository, repo_part) != 0))
            continue;
        if (whole ? strcmp(si->id, id_part) != 0 : strncmp(si->id, id_part, id_len) != 0)
            continue;
        if (++*n == 1)
            found = si;
        if (*n <= 3 && used < names_len) {
            char both[300], q[300];
            snprintf(both, sizeof(both), "%s/%s", si->repository, si->id);
            used += (size_t)snprintf(names + used, names_len - used, "%s%s", *n > 1 ? ", " : "",
                                     tree_quote(both, q, sizeof(q)));
        }
    }
    return found;
}

const snap_info *snap_find(const snap_list *l, const char *what, const char *repository,
                           const char *machine, const char *storage_name, rerr *e)
{
    char q[300], names[1024] = "", filter[600] = "";
    tree_quote(what, q, sizeof(q));
    if (repository || machine)
        snprintf(filter, sizeof(filter), " (%s%s%s%s%s)", repository ? "repository " : "",
                 repository ? repository : "", repository && machine ? ", " : "",
                 machine ? "pushed by " : "", machine ? machine : "");
    if (strcmp(what, "latest") == 0) {
        for (size_t i = l->n; i-- > 0;)
            if (snap_matches(&l->items[i], repository, machine))
                return &l->items[i];
        rerr_set(e, E_NOTFOUND, "storage %s has no snapshot%s", storage_name, filter);
        return NULL;
    }
    char *copy = xstrdup(what), *slash = strchr(copy, '/');
    const char *repo_part = NULL, *id_part = copy;
    if (slash) {
        *slash = '\0';
        repo_part = copy;
        id_part = slash + 1;
    }
    const snap_info *found = NULL;
    size_t n = 0;
    if (*id_part == '\0') {
        rerr_set(e, E_INVALID,
                 "snapshot %s names no id: give an id, a prefix of one, "
                 "REPOSITORY/ID or latest",
                 q);
        goto out;
    }
    found = snap_scan(l, repo_part, id_part, repository, machine, 1, &n, names, sizeof(names));
    if (n == 0)
        found = snap_scan(l, repo_part, id_part, repository, machine, 0, &n, names, sizeof(names));
    if (n == 0)
        rerr_set(e, E_NOTFOUND, "storage %s has no snapshot %s%s (ferry repo snapshots lists them)",
                 storage_name, q, filter);
    else if (n > 1)
        rerr_set(e, E_INVALID,
                 "snapshot %s is ambiguous in storage %s: %zu snapshots match (%s%s); "
                 "give more of the id, or REPOSITORY/ID",
                 q, storage_name, n, names, n > 3 ? ", …" : "");
out:
    free(copy);
    return n == 1 ? found : NULL;
}

int snap_tree(storage *s, const snap_info *si, tree *t, rerr *e)
{
    chunk_index ix;
    idx_init(&ix);
    codec *c = codec_new(&s->keys, 0);
    int rc = idx_load(s, &ix, e) != 0 || tree_load(s, &ix, c, si->doc, t, e) != 0 ? -1 : 0;
    codec_free(c);
    idx_free(&ix);
    return rc;
}

/* --- ls ---------------------------------------------------------------------------------- */

static const char *kind_name(uint8_t kind)
{
    static const char *const names[] = {"",         "dir",  "file",    "symlink",
                                        "hardlink", "fifo", "chardev", "blockdev"};
    return kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "unknown";
}

static json_t *entry_json(const tnode *n)
{
    char when[64], ns[16];
    iso_time(n->mtime_sec, when, sizeof(when));
    snprintf(ns, sizeof(ns), ".%09uZ", (unsigned)n->mtime_nsec % 1000000000u);
    size_t w = strlen(when);
    if (w > 0 && when[w - 1] == 'Z')
        snprintf(when + w - 1, sizeof(when) - (w - 1), "%s", ns);
    json_t *o = json_object();
    set_name(o, "path", n->path);
    json_object_set_new(o, "type", json_string(kind_name(n->kind)));
    json_object_set_new(o, "mode", json_integer(n->mode));
    json_object_set_new(o, "uid", json_integer(n->uid));
    json_object_set_new(o, "gid", json_integer(n->gid));
    json_object_set_new(o, "size", json_integer((json_int_t)(n->kind == T_FILE ? n->size : 0)));
    json_object_set_new(o, "mtime", json_string(when));
    if (n->target && (n->kind == T_SYMLINK || n->kind == T_HARDLINK))
        set_name(o, "target", n->target);
    return o;
}

/* The path without leading and trailing slashes (new string), or NULL when a component is
 * empty, "." or "..". */
static char *clean_path(const char *path)
{
    while (*path == '/')
        path++;
    char *p = xstrdup(path);
    size_t n = strlen(p);
    while (n > 0 && p[n - 1] == '/')
        p[--n] = '\0';
    for (char *c = p; *c;) {
        char *end = strchr(c, '/');
        size_t len = end ? (size_t)(end - c) : strlen(c);
        if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.')) {
            free(p);
            return NULL;
        }
        c += len + (end != NULL);
    }
    return p;
}

int browse_ls(const tree *t, const char *path, int recursive, const char *label, json_t **out,
              rerr *e)
{
    char q[300];
    *out = NULL;
    char *p = clean_path(path ? path : "");
    if (p == NULL)
        return rerr_set(e, E_INVALID, "path %s has an empty, \".\" or \"..\" component",
                        tree_quote(path, q, sizeof(q)));
    size_t plen = strlen(p);
    const tnode *top = NULL;
    for (size_t i = 0; i < t->n && top == NULL; i++)
        if (strcmp(t->nodes[i].path, p) == 0)
            top = &t->nodes[i];
    if (top == NULL) {
        rerr_set(e, E_NOTFOUND, "%s has no entry %s", label, tree_quote(p, q, sizeof(q)));
        free(p);
        return -1;
    }
    *out = json_array();
    if (plen > 0)
        json_array_append_new(*out, entry_json(top));
    for (size_t i = 0; top->kind == T_DIR && i < t->n; i++) {
        const char *np = t->nodes[i].path;
        if (np[0] == '\0' || (plen > 0 && (strncmp(np, p, plen) != 0 || np[plen] != '/')))
            continue;
        const char *rest = np + plen + (plen > 0);
        if (recursive || strchr(rest, '/') == NULL)
            json_array_append_new(*out, entry_json(&t->nodes[i]));
    }
    free(p);
    return 0;
}

/* --- diff -------------------------------------------------------------------------------- */

/* Tree order: paths compared as byte strings in which '/' sorts before every other byte. */
static int tree_order(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned x = (unsigned char)*a, y = (unsigned char)*b;
        if (x != y || x == 0) {
            x = x == 0 ? 0 : x == '/' ? 1 : x + 2;
            y = y == 0 ? 0 : y == '/' ? 1 : y + 2;
            return x < y ? -1 : x > y;
        }
    }
}

typedef struct change {
    const tnode *n;
    char what[4];
} change;

static void add_change(change *ch, size_t *n, const tnode *node, const char *what)
{
    ch[*n].n = node;
    snprintf(ch[*n].what, sizeof(ch[*n].what), "%s", what);
    ++*n;
}

static int by_tree_order(const void *x, const void *y)
{
    return tree_order(((const change *)x)->n->path, ((const change *)y)->n->path);
}

static int same_content(const tnode *a, const tnode *b)
{
    switch (a->kind) {
    case T_FILE:
        if (a->size != b->size || a->nchunks != b->nchunks)
            return 0;
        for (uint32_t i = 0; i < a->nchunks; i++)
            if (memcmp(a->chunks[i].id, b->chunks[i].id, ID_LEN) != 0 ||
                a->chunks[i].len != b->chunks[i].len || a->chunks[i].zero != b->chunks[i].zero)
                return 0;
        return 1;
    case T_SYMLINK:
    case T_HARDLINK:
        return strcmp(a->target ? a->target : "", b->target ? b->target : "") == 0;
    case T_CHR:
    case T_BLK:
        return a->rdev == b->rdev;
    default:
        return 1;
    }
}

static int same_metadata(const tnode *a, const tnode *b)
{
    return a->mode == b->mode && a->uid == b->uid && a->gid == b->gid &&
           a->mtime_sec == b->mtime_sec && a->mtime_nsec == b->mtime_nsec;
}

typedef struct side_stats {
    json_int_t files, dirs, others, bytes;
} side_stats;

static void count(side_stats *s, const tnode *n)
{
    s->files += n->kind == T_FILE || n->kind == T_HARDLINK;
    s->dirs += n->kind == T_DIR;
    s->others += n->kind != T_FILE && n->kind != T_HARDLINK && n->kind != T_DIR;
    s->bytes += n->kind == T_FILE ? (json_int_t)n->size : 0;
}

static json_t *side_json(const side_stats *s)
{
    return json_pack("{s:I,s:I,s:I,s:I}", "files", s->files, "dirs", s->dirs, "others", s->others,
                     "bytes", s->bytes);
}

json_t *browse_diff(const tree *a, const tree *b, int metadata)
{
    tree_map ma, mb;
    tree_map_build(&ma, a);
    tree_map_build(&mb, b);
    change *ch = xcalloc(a->n + b->n + 1, sizeof(*ch));
    size_t n = 0;
    side_stats added = {0}, removed = {0};
    json_int_t changed_files = 0, changed_meta = 0;
    for (size_t i = 0; i < a->n; i++) {
        const tnode *na = &a->nodes[i];
        if (na->path[0] == '\0')
            continue;
        const tnode *nb = tree_map_find(&mb, na->path);
        if (nb == NULL) {
            add_change(ch, &n, na, "-");
            count(&removed, na);
        } else if (na->kind != nb->kind) {
            add_change(ch, &n, nb, "T");
        } else if (!same_content(na, nb)) {
            add_change(ch, &n, nb, "M");
            changed_files += nb->kind == T_FILE;
        } else if (metadata && !same_metadata(na, nb)) {
            add_change(ch, &n, nb, "U");
            changed_meta++;
        }
    }
    for (size_t i = 0; i < b->n; i++) {
        const tnode *nb = &b->nodes[i];
        if (nb->path[0] != '\0' && tree_map_find(&ma, nb->path) == NULL) {
            add_change(ch, &n, nb, "+");
            count(&added, nb);
        }
    }
    qsort(ch, n, sizeof(*ch), by_tree_order);
    json_t *changes = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_object();
        if (ch[i].n->kind == T_DIR) {
            char *with_slash = xasprintf("%s/", ch[i].n->path);
            set_name(c, "path", with_slash);
            free(with_slash);
        } else {
            set_name(c, "path", ch[i].n->path);
        }
        json_object_set_new(c, "change", json_string(ch[i].what));
        json_array_append_new(changes, c);
    }
    free(ch);
    tree_map_free(&ma);
    tree_map_free(&mb);
    return json_pack("{s:o,s:{s:o,s:o,s:I,s:I}}", "changes", changes, "stats", "added",
                     side_json(&added), "removed", side_json(&removed), "changed_files",
                     changed_files, "metadata", changed_meta);
}
