/*
 * Snapshot trees: every entry of a repository directory with its metadata and, for regular
 * files, the list of chunks that make up its content. Entries are in pre-order with each
 * directory's children sorted by name, so a directory always comes before what it holds.
 * The encoded tree is itself chunked and stored as TREE blobs (docs/storage-format.md):
 *     "FTR1" | varint entries | entry …
 * Names are bytes, not text: any name the filesystem allows round-trips.
 */
#ifndef REPO_TREE_H
#define REPO_TREE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

enum { T_DIR = 1, T_FILE, T_SYMLINK, T_HARDLINK, T_FIFO, T_CHR, T_BLK };

typedef struct chunk_ref {
    uint8_t id[ID_LEN];
    uint32_t len;
    uint8_t zero; /* a run of zero bytes: not stored, restored as a hole */
} chunk_ref;

typedef struct tnode {
    char *path;   /* relative to the repository root; "" is the root itself */
    char *target; /* T_SYMLINK: the link's text; T_HARDLINK: the path of the first link */
    uint8_t kind;
    uint8_t reused; /* (not encoded) content taken from the previous snapshot */
    uint32_t mode;  /* permission bits, 07777 */
    uint32_t uid;
    uint32_t gid;
    int64_t mtime_sec;
    uint32_t mtime_nsec;
    int64_t ctime_sec; /* T_FILE: change detection against the next snapshot */
    uint32_t ctime_nsec;
    uint64_t ino;
    uint64_t size;
    uint64_t rdev;
    chunk_ref *chunks;
    uint32_t nchunks;
} tnode;

typedef struct tree {
    tnode *nodes;
    size_t n;
    size_t cap;
    size_t skipped;  /* sockets and entries that vanished during the scan */
    size_t excluded; /* entries a scan's filter left out (a directory counts once) */
    char why[640];   /* tree_decode: the entry refused and why ("" when the bytes are cut) */
} tree;

/*
 * Reads the directory root into t (metadata only; no file content). Returns 0, or -1 with e
 * set. stop, when not NULL, is polled and ends the scan early (E_CANCELLED) when non-zero.
 */
int tree_scan(const char *root, tree *t, const volatile int *stop, rerr *e);
/*
 * A scan's filter (repo_push's "exclude"): non-zero leaves out the entry at rel (relative to
 * the root, never ""), and for a directory everything it holds (it is not even opened).
 */
typedef int (*tree_filter)(void *arg, const char *rel, int is_dir);
/* tree_scan with a filter (NULL: none). */
int tree_scan_filtered(const char *root, tree *t, const volatile int *stop, tree_filter filter,
                       void *filter_arg, rerr *e);
void tree_encode(const tree *t, buf *out);
/*
 * Decodes into t (empty on entry). 0, or -1 when the bytes are malformed or an entry breaks
 * the rules every restore relies on (t->why then names the entry): the root "" comes first;
 * every other path is an earlier directory's path, "/" and one name (not empty, "." or "..",
 * no NUL byte, at most 255 bytes; the root's children have no slash); no path repeats; a hard
 * link's target is such a path too. (That it names a regular file listed before the link is
 * checked by restores: pushes before backup.c's relink() could leave a dangling hard link
 * when the first link vanished while they ran, and such a tree must still be counted by
 * gc.) Symlink targets are text, never checked: a restore creates symlinks and never follows
 * them.
 */
int tree_decode(const uint8_t *p, size_t n, tree *t);
/* Checks a tree built elsewhere than by tree_scan (a remote machine's listing) against the
 * rules tree_decode applies. 0, or -1 with t->why naming the entry. */
int tree_check(tree *t);
void tree_free(tree *t);
/* Returns out (outlen bytes, at least 16) holding s in double quotes, bytes outside printable
 * ASCII as \xNN, cut after 120 bytes: a hostile name is shown, never echoed raw into a log. */
const char *tree_quote(const char *s, char *out, size_t outlen);

/* A path -> node lookup over a tree (for the previous snapshot's shortcut and hard links). */
typedef struct tree_map {
    const tree *t;
    uint32_t *slots;
    size_t cap;
} tree_map;

void tree_map_build(tree_map *m, const tree *t);
const tnode *tree_map_find(const tree_map *m, const char *path);
void tree_map_free(tree_map *m);

#endif
