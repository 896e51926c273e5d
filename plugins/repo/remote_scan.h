/*
 * A remote machine's directory listing, as one streamed GNU find, parsed into the same tree
 * the local scan builds (tree.h): pre-order, each directory's children sorted by name, the
 * first link of a multiply-linked regular file as the data holder and the later ones as hard
 * links to it. The remote side needs only sh and GNU find:
 *
 *     cd -- ROOT && LC_ALL=C exec find . -printf REMOTE_SCAN_FORMAT
 *
 * One record per entry: "TYPE MODE UID GID SIZE MTIME CTIME INODE DEVICE NLINK PATH" NUL
 * "LINK-TARGET" NUL, times as seconds with a fraction (%T@), names as raw bytes (they may
 * hold newlines, spaces or invalid UTF-8, never NUL). Nothing in the listing is trusted:
 * a malformed or truncated record, a path with "..", an absolute path, a repeated path, an
 * entry whose directory is not listed, anything the restore rules refuse fails the scan
 * with a message naming the record.
 */
#ifndef REPO_REMOTE_SCAN_H
#define REPO_REMOTE_SCAN_H

#include <stddef.h>

#include "tree.h"
#include "util.h"

#define REMOTE_SCAN_FORMAT "%y %m %U %G %s %T@ %C@ %i %D %n %P\\0%l\\0"

typedef struct remote_scan remote_scan;

/* A new parser. filter (may be NULL) leaves entries out as tree_scan_filtered does. */
remote_scan *remote_scan_new(tree_filter filter, void *filter_arg);
/* Feeds the next len bytes of find's output. 0, or -1 with e set (the listing is bad). */
int remote_scan_feed(remote_scan *rs, const void *data, size_t len, rerr *e);
/*
 * Ends the listing and builds the tree into t (empty on entry): sorted, filtered, hard links
 * grouped, checked. 0, or -1 with e set. Frees rs either way.
 */
int remote_scan_finish(remote_scan *rs, tree *t, rerr *e);
void remote_scan_free(remote_scan *rs);

#endif
