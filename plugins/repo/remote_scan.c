/* A remote machine's find listing into a snapshot tree. See remote_scan.h. */
#include "remote_scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECORD_MAX  ((size_t)160 << 10) /* header, a path of 64 KiB, a target of 64 KiB */
#define ENTRIES_MAX ((size_t)1 << 26)

typedef struct rnode {
    tnode n;
    uint64_t dev;
    uint64_t nlink;
} rnode;

struct remote_scan {
    tree_filter filter;
    void *filter_arg;
    buf pending; /* bytes of an incomplete record */
    rnode *nodes;
    size_t n, cap;
    size_t skipped;
};

remote_scan *remote_scan_new(tree_filter filter, void *filter_arg)
{
    remote_scan *rs = xcalloc(1, sizeof(*rs));
    rs->filter = filter;
    rs->filter_arg = filter_arg;
    return rs;
}

void remote_scan_free(remote_scan *rs)
{
    if (rs == NULL)
        return;
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->nodes[i].n.path);
        free(rs->nodes[i].n.target);
    }
    free(rs->nodes);
    buf_free(&rs->pending);
    free(rs);
}

/* An unsigned decimal token; 0, or -1 when it is not one (or overflows). */
static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* A %T@ time, "SECONDS.FRACTION" with an optional '-'; 0 or -1. */
static int parse_time(const char *s, size_t len, int64_t *sec, uint32_t *nsec)
{
    int neg = len > 0 && s[0] == '-';
    const char *dot = memchr(s, '.', len);
    size_t ilen = dot ? (size_t)(dot - s) : len;
    uint64_t whole = 0;
    if (parse_u64(s + neg, ilen - (size_t)neg, &whole) != 0 || whole > INT64_MAX / 2)
        return -1;
    uint64_t frac = 0;
    if (dot) {
        size_t flen = len - ilen - 1;
        if (flen == 0 || flen > 10)
            return -1;
        for (size_t i = 0; i < 9; i++) {
            char ch = i < flen ? dot[1 + i] : '0';
            if (ch < '0' || ch > '9')
                return -1;
            frac = frac * 10 + (uint64_t)(ch - '0');
        }
        if (flen == 10 && (dot[10] < '0' || dot[10] > '9'))
            return -1;
    }
    *sec = neg ? -(int64_t)whole : (int64_t)whole;
    *nsec = (uint32_t)frac;
    if (neg && frac) { /* -(1.25) is -2 seconds plus 0.75 */
        *sec -= 1;
        *nsec = (uint32_t)(1000000000u - frac);
    }
    return 0;
}

/* Parses one complete record: head (header and path, NUL-free, headlen bytes) and target. */
static int parse_record(remote_scan *rs, const char *head, size_t headlen, const char *link_text,
                        rerr *e)
{
    const char *tok[10];
    size_t toklen[10];
    const char *p = head, *end = head + headlen;
    char q[512];
    for (int i = 0; i < 10; i++) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        if (sp == NULL)
            return rerr_set(e, E_FAIL, "the remote listing's record %zu is malformed: %s",
                            rs->n + 1, tree_quote(head, q, sizeof(q)));
        tok[i] = p;
        toklen[i] = (size_t)(sp - p);
        p = sp + 1;
    }
    size_t pathlen = (size_t)(end - p);
    uint64_t mode = 0, v[10] = {0};
    int ok = toklen[0] == 1 && toklen[1] >= 1 && toklen[1] <= 5;
    for (size_t i = 0; ok && i < toklen[1]; i++) {
        ok = tok[1][i] >= '0' && tok[1][i] <= '7';
        mode = mode * 8 + (uint64_t)(tok[1][i] - '0');
    }
    for (int i = 2; ok && i < 10; i++)
        if (i != 5 && i != 6)
            ok = parse_u64(tok[i], toklen[i], &v[i]) == 0;
    rnode r = {0};
    ok = ok && mode <= 07777 && v[2] <= UINT32_MAX && v[3] <= UINT32_MAX &&
         parse_time(tok[5], toklen[5], &r.n.mtime_sec, &r.n.mtime_nsec) == 0 &&
         parse_time(tok[6], toklen[6], &r.n.ctime_sec, &r.n.ctime_nsec) == 0;
    if (!ok)
        return rerr_set(e, E_FAIL, "the remote listing's record %zu is malformed: %s", rs->n + 1,
                        tree_quote(head, q, sizeof(q)));
    switch (tok[0][0]) {
    case 'd':
        r.n.kind = T_DIR;
        break;
    case 'f':
        r.n.kind = T_FILE;
        break;
    case 'l':
        r.n.kind = T_SYMLINK;
        break;
    case 'p':
        r.n.kind = T_FIFO;
        break;
    case 'c':
        r.n.kind = T_CHR;
        break;
    case 'b':
        r.n.kind = T_BLK;
        break;
    case 's':
        rs->skipped++;
        return 0; /* sockets are skipped, as local scans skip them */
    default:
        return rerr_set(e, E_FAIL, "the remote listing's record %zu has an unknown type '%c'",
                        rs->n + 1, tok[0][0]);
    }
    if ((rs->n == 0) != (pathlen == 0) || (rs->n == 0 && r.n.kind != T_DIR))
        return rerr_set(e, E_FAIL,
                        "the remote listing is malformed: record %zu %s (the first record, and "
                        "only it, is the root directory)",
                        rs->n + 1, pathlen ? tree_quote(p, q, sizeof(q)) : "is a second root");
    if (rs->n == ENTRIES_MAX)
        return rerr_set(e, E_FAIL, "the remote listing has more than %zu entries", ENTRIES_MAX);
    r.n.mode = (uint32_t)mode;
    r.n.uid = (uint32_t)v[2];
    r.n.gid = (uint32_t)v[3];
    r.n.size = r.n.kind == T_FILE ? v[4] : 0;
    r.n.ino = v[7];
    r.dev = v[8];
    r.nlink = v[9];
    r.n.path = xmalloc(pathlen + 1);
    memcpy(r.n.path, p, pathlen);
    r.n.path[pathlen] = '\0';
    if (r.n.kind == T_SYMLINK)
        r.n.target = xstrdup(link_text);
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 256;
        rs->nodes = xrealloc(rs->nodes, rs->cap * sizeof(*rs->nodes));
    }
    rs->nodes[rs->n++] = r;
    return 0;
}

int remote_scan_feed(remote_scan *rs, const void *data, size_t len, rerr *e)
{
    buf_append(&rs->pending, data, len);
    const char *p = (const char *)rs->pending.data;
    const char *end = p + rs->pending.len;
    int rc = 0;
    for (;;) {
        const char *nul1 = memchr(p, '\0', (size_t)(end - p));
        const char *nul2 = nul1 ? memchr(nul1 + 1, '\0', (size_t)(end - nul1 - 1)) : NULL;
        if (nul2 == NULL)
            break;
        if ((rc = parse_record(rs, p, (size_t)(nul1 - p), nul1 + 1, e)) != 0)
            break;
        p = nul2 + 1;
    }
    size_t left = (size_t)(end - p);
    memmove(rs->pending.data, p, left);
    rs->pending.len = left;
    if (rc == 0 && left > RECORD_MAX)
        rc = rerr_set(e, E_FAIL, "the remote listing's record %zu is longer than %zu bytes",
                      rs->n + 1, RECORD_MAX);
    return rc;
}

/* Pre-order with each directory's children sorted by name: paths compared byte by byte with
 * '/' below every other byte, which is comparing them component by component. */
static int cmp_paths(const void *x, const void *y)
{
    const unsigned char *a = (const unsigned char *)((const rnode *)x)->n.path;
    const unsigned char *b = (const unsigned char *)((const rnode *)y)->n.path;
    for (;; a++, b++) {
        unsigned ca = *a == '/' ? 1 : *a ? *a + 1u : 0;
        unsigned cb = *b == '/' ? 1 : *b ? *b + 1u : 0;
        if (ca != cb)
            return ca < cb ? -1 : 1;
        if (ca == 0)
            return 0;
    }
}

static const rnode *link_nodes;
static int cmp_links(const void *x, const void *y)
{
    const rnode *a = &link_nodes[*(const size_t *)x], *b = &link_nodes[*(const size_t *)y];
    if (a->dev != b->dev)
        return a->dev < b->dev ? -1 : 1;
    if (a->n.ino != b->n.ino)
        return a->n.ino < b->n.ino ? -1 : 1;
    return *(const size_t *)x < *(const size_t *)y ? -1 : 1;
}

/* Makes every multiply-linked regular file after the first of its inode a hard link to it. */
static void group_links(rnode *nodes, size_t n)
{
    size_t *idx = xcalloc(n ? n : 1, sizeof(*idx));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (nodes[i].n.kind == T_FILE && nodes[i].nlink > 1)
            idx[k++] = i;
    link_nodes = nodes; /* qsort has no context argument; a scan runs on one thread */
    qsort(idx, k, sizeof(*idx), cmp_links);
    for (size_t i = 1; i < k; i++) {
        size_t first = i;
        while (first > 0 && nodes[idx[first - 1]].dev == nodes[idx[i]].dev &&
               nodes[idx[first - 1]].n.ino == nodes[idx[i]].n.ino)
            first--;
        if (first == i)
            continue;
        tnode *link = &nodes[idx[i]].n;
        link->kind = T_HARDLINK;
        link->target = xstrdup(nodes[idx[first]].n.path);
        link->size = 0;
    }
    free(idx);
}

int remote_scan_finish(remote_scan *rs, tree *t, rerr *e)
{
    int rc = 0;
    char q[512];
    if (rs->pending.len)
        rc = rerr_set(e, E_FAIL, "the remote listing ends in the middle of a record: %s",
                      tree_quote((const char *)rs->pending.data, q, sizeof(q)));
    else if (rs->n == 0)
        rc = rerr_set(e, E_FAIL, "the remote listing is empty");
    if (rc != 0)
        goto out;
    if (rs->n > 2)
        qsort(rs->nodes + 1, rs->n - 1, sizeof(*rs->nodes), cmp_paths);
    /* Excluded directories go with all they hold: their entries follow them in this order. */
    size_t kept = 0;
    char *cut = NULL;
    size_t cutlen = 0;
    for (size_t i = 0; i < rs->n; i++) {
        rnode *r = &rs->nodes[i];
        int inside = cut && strncmp(r->n.path, cut, cutlen) == 0 && r->n.path[cutlen] == '/';
        int drop = inside || (i > 0 && rs->filter &&
                              rs->filter(rs->filter_arg, r->n.path, r->n.kind == T_DIR));
        if (!drop) {
            rs->nodes[kept++] = *r;
            continue;
        }
        free(r->n.target);
        if (!inside) {
            t->excluded++;
            if (r->n.kind == T_DIR) {
                free(cut);
                cut = r->n.path;
                cutlen = strlen(cut);
                continue;
            }
        }
        free(r->n.path);
    }
    free(cut);
    rs->n = kept;
    group_links(rs->nodes, rs->n);
    t->nodes = xcalloc(rs->n, sizeof(*t->nodes));
    t->cap = t->n = rs->n;
    t->skipped = rs->skipped;
    for (size_t i = 0; i < rs->n; i++)
        t->nodes[i] = rs->nodes[i].n;
    rs->n = 0;
    if (tree_check(t) != 0)
        rc = rerr_set(e, E_FAIL, "the remote listing is refused: %s", t->why);
out:
    remote_scan_free(rs);
    return rc;
}
