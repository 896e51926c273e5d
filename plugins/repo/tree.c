/* Snapshot trees: scanning a directory, encoding and decoding. See tree.h. */
#include "tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TREE_MAGIC     "FTR1"
#define MAX_PATH_BYTES 65536

static tnode *add_node(tree *t)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 256;
        t->nodes = xrealloc(t->nodes, t->cap * sizeof(*t->nodes));
    }
    tnode *n = &t->nodes[t->n++];
    memset(n, 0, sizeof(*n));
    return n;
}

/* Hard links: (device, inode) of multiply-linked files -> the node of the first link. */
typedef struct link_map {
    struct link_slot {
        uint64_t dev, ino;
        size_t node; /* node number + 1; 0 = empty */
    } * slots;
    size_t cap, count;
} link_map;

static size_t *link_lookup(link_map *m, uint64_t dev, uint64_t ino)
{
    if ((m->count + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        struct link_slot *slots = xcalloc(cap, sizeof(*slots));
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->slots[i].node)
                continue;
            size_t s = (m->slots[i].ino * 31 + m->slots[i].dev) & (cap - 1);
            while (slots[s].node)
                s = (s + 1) & (cap - 1);
            slots[s] = m->slots[i];
        }
        free(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    size_t s = (ino * 31 + dev) & (m->cap - 1);
    while (m->slots[s].node && (m->slots[s].dev != dev || m->slots[s].ino != ino))
        s = (s + 1) & (m->cap - 1);
    if (!m->slots[s].node) {
        m->slots[s].dev = dev;
        m->slots[s].ino = ino;
        m->count++;
    }
    return &m->slots[s].node;
}

struct scan {
    tree *t;
    link_map links;
    const volatile int *stop;
    rerr *e;
    const char *root;
    tree_filter filter;
    void *filter_arg;
};

static void fill_meta(tnode *n, const struct stat *st)
{
    n->mode = st->st_mode & 07777;
    n->uid = st->st_uid;
    n->gid = st->st_gid;
    n->mtime_sec = st->st_mtim.tv_sec;
    n->mtime_nsec = (uint32_t)st->st_mtim.tv_nsec;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int scan_dir(struct scan *sc, int dirfd, const char *rel);

/* Adds one entry named name inside dirfd (relative path rel). */
static int scan_entry(struct scan *sc, int dirfd, const char *name, const char *rel)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) { /* removed since readdir: not part of this snapshot */
            sc->t->skipped++;
            return 0;
        }
        return rerr_set(sc->e, errno_kind(errno), "cannot stat %s/%s: %s", sc->root, rel,
                        strerror(errno));
    }
    if (S_ISSOCK(st.st_mode)) {
        sc->t->skipped++; /* a socket belongs to a running process, not to a backup */
        return 0;
    }
    if (sc->filter && sc->filter(sc->filter_arg, rel, S_ISDIR(st.st_mode))) {
        sc->t->excluded++; /* excluded directories are not even opened */
        return 0;
    }
    tnode *n = add_node(sc->t);
    size_t self = sc->t->n - 1;
    n->path = xstrdup(rel);
    fill_meta(n, &st);
    if (S_ISDIR(st.st_mode)) {
        n->kind = T_DIR;
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return rerr_set(sc->e, errno_kind(errno), "cannot open directory %s/%s: %s", sc->root,
                            rel, strerror(errno));
        int rc = scan_dir(sc, fd, rel);
        close(fd);
        return rc;
    }
    if (S_ISLNK(st.st_mode)) {
        n->kind = T_SYMLINK;
        size_t cap = (size_t)st.st_size + 2;
        char *text = xmalloc(cap);
        ssize_t len = readlinkat(dirfd, name, text, cap - 1);
        if (len < 0) {
            free(text);
            return rerr_set(sc->e, errno_kind(errno), "cannot read link %s/%s: %s", sc->root, rel,
                            strerror(errno));
        }
        text[len] = '\0';
        n->target = text;
        return 0;
    }
    if (S_ISREG(st.st_mode)) {
        n->kind = T_FILE;
        n->size = (uint64_t)st.st_size;
        n->ino = st.st_ino;
        n->ctime_sec = st.st_ctim.tv_sec;
        n->ctime_nsec = (uint32_t)st.st_ctim.tv_nsec;
        if (st.st_nlink > 1) {
            size_t *first = link_lookup(&sc->links, st.st_dev, st.st_ino);
            if (*first) {
                n->kind = T_HARDLINK;
                n->target = xstrdup(sc->t->nodes[*first - 1].path);
                n->size = 0;
            } else {
                *first = self + 1;
            }
        }
        return 0;
    }
    n->kind = S_ISFIFO(st.st_mode) ? T_FIFO : S_ISCHR(st.st_mode) ? T_CHR : T_BLK;
    n->rdev = st.st_rdev;
    return 0;
}

static int scan_dir(struct scan *sc, int dirfd, const char *rel)
{
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return rerr_set(sc->e, errno_kind(errno), "cannot list %s/%s: %s", sc->root, rel,
                        strerror(errno));
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            names = xrealloc(names, cap * sizeof(*names));
        }
        names[n++] = xstrdup(de->d_name);
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(*names), cmp_names);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (sc->stop && *sc->stop) {
            rc = rerr_set(sc->e, E_CANCELLED, "cancelled");
            break;
        }
        char *child = rel[0] ? xasprintf("%s/%s", rel, names[i]) : xstrdup(names[i]);
        if (strlen(child) > MAX_PATH_BYTES)
            rc = rerr_set(sc->e, E_FAIL, "path too long: %s/%.100s…", sc->root, child);
        else
            rc = scan_entry(sc, dirfd, names[i], child);
        free(child);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

int tree_scan(const char *root, tree *t, const volatile int *stop, rerr *e)
{
    return tree_scan_filtered(root, t, stop, NULL, NULL, e);
}

int tree_scan_filtered(const char *root, tree *t, const volatile int *stop, tree_filter filter,
                       void *filter_arg, rerr *e)
{
    struct scan sc = {
        .t = t, .stop = stop, .e = e, .root = root, .filter = filter, .filter_arg = filter_arg};
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        return rerr_set(e, errno_kind(err) == E_NOTFOUND ? E_NOTFOUND : errno_kind(err),
                        "cannot open %s: %s", root, strerror(err));
    }
    tnode *n = add_node(t);
    n->path = xstrdup("");
    n->kind = T_DIR;
    fill_meta(n, &st);
    int rc = scan_dir(&sc, fd, "");
    close(fd);
    free(sc.links.slots);
    return rc;
}

static uint64_t zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (v < 0 ? UINT64_MAX : 0);
}

static int64_t unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

void tree_encode(const tree *t, buf *out)
{
    buf_append(out, TREE_MAGIC, 4);
    buf_put_varint(out, t->n);
    for (size_t i = 0; i < t->n; i++) {
        const tnode *n = &t->nodes[i];
        buf_put_u8(out, n->kind);
        buf_put_str(out, n->path);
        buf_put_varint(out, n->mode);
        buf_put_varint(out, n->uid);
        buf_put_varint(out, n->gid);
        buf_put_varint(out, zigzag(n->mtime_sec));
        buf_put_varint(out, n->mtime_nsec);
        switch (n->kind) {
        case T_FILE:
            buf_put_varint(out, n->size);
            buf_put_varint(out, n->ino);
            buf_put_varint(out, zigzag(n->ctime_sec));
            buf_put_varint(out, n->ctime_nsec);
            buf_put_varint(out, n->nchunks);
            for (uint32_t c = 0; c < n->nchunks; c++) {
                buf_put_u8(out, n->chunks[c].zero);
                if (!n->chunks[c].zero)
                    buf_append(out, n->chunks[c].id, ID_LEN);
                buf_put_varint(out, n->chunks[c].len);
            }
            break;
        case T_SYMLINK:
        case T_HARDLINK:
            buf_put_str(out, n->target);
            break;
        case T_CHR:
        case T_BLK:
            buf_put_varint(out, n->rdev);
            break;
        default:
            break;
        }
    }
}

static int decode_file(reader *r, tnode *n)
{
    n->size = rd_varint(r);
    n->ino = rd_varint(r);
    n->ctime_sec = unzigzag(rd_varint(r));
    n->ctime_nsec = (uint32_t)rd_varint(r);
    uint64_t count = rd_varint(r);
    if (r->err || count > (uint64_t)(r->end - r->p) / 2)
        return -1;
    n->chunks = xcalloc(count, sizeof(*n->chunks));
    n->nchunks = (uint32_t)count;
    uint64_t total = 0;
    for (uint64_t c = 0; c < count && !r->err; c++) {
        chunk_ref *ref = &n->chunks[c];
        ref->zero = rd_u8(r);
        if (!ref->zero) {
            const uint8_t *id = rd_bytes(r, ID_LEN);
            if (id)
                memcpy(ref->id, id, ID_LEN);
        }
        uint64_t len = rd_varint(r);
        if (len > UINT32_MAX)
            return -1;
        ref->len = (uint32_t)len;
        total += len;
    }
    return r->err || total != n->size ? -1 : 0;
}

/* A string of the encoding: varint length, bytes. NULL (and r->err) when it is cut short, too
 * long, or holds a NUL byte (*nul set: a C string would silently end there). */
static char *rd_name(reader *r, int *nul)
{
    uint64_t n = rd_varint(r);
    if (r->err || n > MAX_PATH_BYTES) {
        r->err = 1;
        return NULL;
    }
    const uint8_t *p = rd_bytes(r, (size_t)n);
    if (p == NULL)
        return NULL;
    if (memchr(p, 0, (size_t)n) != NULL) {
        *nul = 1;
        r->err = 1;
        return NULL;
    }
    char *s = xmalloc((size_t)n + 1);
    memcpy(s, p, (size_t)n);
    s[n] = '\0';
    return s;
}

const char *tree_quote(const char *s, char *out, size_t outlen)
{
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; s[i] && o + 8 < outlen; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (i >= 120) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", ch);
        else
            out[o++] = (char)ch;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

/* Paths seen so far while decoding (node number + 1 per slot), to find parents and repeats. */
typedef struct path_set {
    uint32_t *slots;
    size_t cap, count;
} path_set;

static uint64_t str_hash_n(const char *s, size_t n)
{
    uint64_t h = UINT64_C(1469598103934665603);
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * UINT64_C(1099511628211);
    return h;
}

/* The slot for the n bytes at path: its node's number + 1, or 0 (an empty slot). */
static uint32_t *set_slot(path_set *ps, const tree *t, const char *path, size_t n)
{
    size_t s = str_hash_n(path, n) & (ps->cap - 1);
    for (; ps->slots[s]; s = (s + 1) & (ps->cap - 1)) {
        const char *q = t->nodes[ps->slots[s] - 1].path;
        if (strlen(q) == n && memcmp(q, path, n) == 0)
            break;
    }
    return &ps->slots[s];
}

static void set_add(path_set *ps, const tree *t, size_t node)
{
    if ((ps->count + 1) * 2 > ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 256;
        path_set grown = {.slots = xcalloc(cap, sizeof(uint32_t)), .cap = cap};
        for (size_t i = 0; i < ps->cap; i++)
            if (ps->slots[i]) {
                const char *q = t->nodes[ps->slots[i] - 1].path;
                *set_slot(&grown, t, q, strlen(q)) = ps->slots[i];
            }
        free(ps->slots);
        ps->slots = grown.slots;
        ps->cap = cap;
    }
    const char *path = t->nodes[node].path;
    *set_slot(ps, t, path, strlen(path)) = (uint32_t)node + 1;
    ps->count++;
}

/* The node already decoded at the n bytes of path, or NULL. */
static const tnode *set_find(path_set *ps, const tree *t, const char *path, size_t n)
{
    uint32_t v = ps->cap ? *set_slot(ps, t, path, n) : 0;
    return v ? &t->nodes[v - 1] : NULL;
}

/* Why path is not a relative path of names (each not empty, "." or "..", at most 255
 * bytes), or NULL when it is one. */
static const char *path_problem(const char *path)
{
    if (path[0] == '/')
        return "has an absolute path";
    for (const char *p = path;;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return "has an empty, \".\" or \"..\" path component";
        if (len > 255)
            return "has a name longer than 255 bytes";
        if (end == NULL)
            return NULL;
        p = end + 1;
    }
}

/*
 * Checks node i (just decoded) against the rules every restore relies on: the root comes
 * first as ""; every other path is its parent's path, a slash and one name (not empty, not
 * "." or "..", at most 255 bytes); its parent is a directory decoded before it; no path
 * repeats; a hard link's target is such a path too (restore.c checks that it names a
 * regular file listed before the link). 0, or -1 with t->why set.
 */
static int check_node(tree *t, path_set *ps, size_t i)
{
    const tnode *n = &t->nodes[i];
    char q[512], q2[512];
    const char *why = NULL;
    tree_quote(n->path, q, sizeof(q));
    if (i == 0) {
        if (n->kind == T_DIR && n->path[0] == '\0')
            return 0;
        why = "comes first; the first entry must be the root directory \"\"";
    } else if (n->path[0] == '\0') {
        why = "is a second root";
    } else {
        why = path_problem(n->path);
    }
    if (why) {
        snprintf(t->why, sizeof(t->why), "entry %s %s", q, why);
        return -1;
    }
    const char *slash = strrchr(n->path, '/');
    const tnode *parent = set_find(ps, t, n->path, slash ? (size_t)(slash - n->path) : 0);
    if (parent == NULL || parent->kind != T_DIR) {
        char dir[512];
        snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - n->path) : 0, n->path);
        snprintf(t->why, sizeof(t->why),
                 "entry %s: %s is not a directory listed before it (a path may not pass through "
                 "a symlink or a file)",
                 q, tree_quote(dir, q2, sizeof(q2)));
        return -1;
    }
    if (set_find(ps, t, n->path, strlen(n->path)) != NULL) {
        snprintf(t->why, sizeof(t->why), "entry %s appears twice", q);
        return -1;
    }
    if (n->kind == T_HARDLINK && (why = path_problem(n->target)) != NULL) {
        snprintf(t->why, sizeof(t->why), "hard link %s: its target %s %s", q,
                 tree_quote(n->target, q2, sizeof(q2)), why);
        return -1;
    }
    return 0;
}

int tree_decode(const uint8_t *p, size_t len, tree *t)
{
    reader r;
    rd_init(&r, p, len);
    path_set ps = {0};
    uint64_t count = 0;
    int nul = 0, rc = -1;
    t->why[0] = '\0';
    const uint8_t *magic = rd_bytes(&r, 4);
    if (magic == NULL || memcmp(magic, TREE_MAGIC, 4) != 0)
        goto out;
    count = rd_varint(&r);
    if (r.err || count > len)
        goto out;
    for (uint64_t i = 0; i < count && !r.err; i++) {
        tnode *n = add_node(t);
        n->kind = rd_u8(&r);
        n->path = rd_name(&r, &nul);
        n->mode = (uint32_t)rd_varint(&r) & 07777;
        n->uid = (uint32_t)rd_varint(&r);
        n->gid = (uint32_t)rd_varint(&r);
        n->mtime_sec = unzigzag(rd_varint(&r));
        n->mtime_nsec = (uint32_t)rd_varint(&r);
        if (n->path == NULL || n->kind < T_DIR || n->kind > T_BLK)
            goto out;
        if (n->kind == T_FILE && decode_file(&r, n) != 0)
            goto out;
        if ((n->kind == T_SYMLINK || n->kind == T_HARDLINK) &&
            (n->target = rd_name(&r, &nul)) == NULL)
            goto out;
        if (n->kind == T_CHR || n->kind == T_BLK)
            n->rdev = rd_varint(&r);
        if (r.err || check_node(t, &ps, (size_t)i) != 0)
            goto out;
        set_add(&ps, t, (size_t)i);
    }
    rc = r.err || r.p != r.end ? -1 : 0;
out:
    if (nul)
        snprintf(t->why, sizeof(t->why), "entry %zu of %llu has a name with a NUL byte", t->n,
                 (unsigned long long)count);
    free(ps.slots);
    return rc;
}

int tree_check(tree *t)
{
    path_set ps = {0};
    int rc = 0;
    t->why[0] = '\0';
    for (size_t i = 0; i < t->n && rc == 0; i++) {
        rc = check_node(t, &ps, i);
        if (rc == 0)
            set_add(&ps, t, i);
    }
    free(ps.slots);
    return rc;
}

void tree_free(tree *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->nodes[i].path);
        free(t->nodes[i].target);
        free(t->nodes[i].chunks);
    }
    free(t->nodes);
    memset(t, 0, sizeof(*t));
}

static uint64_t str_hash(const char *s)
{
    uint64_t h = UINT64_C(1469598103934665603);
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * UINT64_C(1099511628211);
    return h;
}

void tree_map_build(tree_map *m, const tree *t)
{
    m->t = t;
    m->cap = 64;
    while (m->cap < t->n * 2)
        m->cap *= 2;
    m->slots = xcalloc(m->cap, sizeof(*m->slots));
    for (size_t i = 0; i < t->n; i++) {
        size_t s = str_hash(t->nodes[i].path) & (m->cap - 1);
        while (m->slots[s])
            s = (s + 1) & (m->cap - 1);
        m->slots[s] = (uint32_t)i + 1;
    }
}

const tnode *tree_map_find(const tree_map *m, const char *path)
{
    if (m->slots == NULL)
        return NULL;
    for (size_t s = str_hash(path) & (m->cap - 1); m->slots[s]; s = (s + 1) & (m->cap - 1)) {
        const tnode *n = &m->t->nodes[m->slots[s] - 1];
        if (strcmp(n->path, path) == 0)
            return n;
    }
    return NULL;
}

void tree_map_free(tree_map *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}
