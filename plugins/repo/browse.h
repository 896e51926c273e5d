/*
 * Reading a storage without changing it, for repo_list, repo_snapshots, repo_ls and repo_diff
 * (and so for `ferry repo snapshots|ls|diff`): a snapshot as a listing row, a snapshot named
 * by a unique prefix of its id, a directory of a snapshot's tree, the changes between two
 * trees. Nothing here writes to the storage or takes a lock.
 *
 * Names in a tree are bytes. A JSON string must be UTF-8, so a path or target that is not
 * valid UTF-8 is given twice: "path" with each invalid byte as U+FFFD (for reading) and
 * "path_hex" with the exact bytes in hex (only then present).
 */
#ifndef REPO_BROWSE_H
#define REPO_BROWSE_H

#include <jansson.h>

#include "snapshot.h"
#include "tree.h"

/*
 * A snapshot as repo_list and repo_snapshots list it (new reference): {"repository", "id",
 * "machine", "time", "expires", "tags", "source", "stats"}, members the manifest lacks as null.
 */
json_t *snap_row(const snap_info *si);

/*
 * The snapshot of l that what names, among those of repository and machine (NULL: any):
 * "latest" (the newest), "REPOSITORY/ID" or "ID", where ID is an id or a prefix of exactly one
 * id (an id that is whole wins over longer ids it starts). NULL with e set when none matches
 * (E_NOTFOUND) or several do (E_INVALID, naming the first three and the count); what appears
 * in the message quoted. storage_name is for messages.
 */
const snap_info *snap_find(const snap_list *l, const char *what, const char *repository,
                           const char *machine, const char *storage_name, rerr *e);

/*
 * Loads the index and the tree of snapshot si of s into t (empty on entry). 0, or -1 with e
 * set (naming the damaged object, or the tree entry refused).
 */
int snap_tree(storage *s, const snap_info *si, tree *t, rerr *e);

/*
 * The entries of t at path (relative, "" or "/" for the root; a leading or trailing '/' is
 * ignored): the entry itself and, for a directory, what it holds (directly, or everything
 * below with recursive). *out: a new array of {"path", "type", "mode", "uid", "gid", "size",
 * "mtime", "target"} in tree order. 0, or -1 with e set: E_INVALID for a path with an empty,
 * "." or ".." component, E_NOTFOUND when the snapshot has no such entry. label names the
 * snapshot in messages ("snapshot web/20260101_020000 in storage s3").
 */
int browse_ls(const tree *t, const char *path, int recursive, const char *label, json_t **out,
              rerr *e);

/*
 * What changed from tree a to tree b, in tree order (new reference): {"changes": [{"path",
 * "change"}], "stats"}. change is restic's: "+" added, "-" removed, "M" content changed (a
 * file's chunks, a link's target, a device's number), "T" type changed, "U" metadata changed
 * (mode, owner, mtime; only when metadata is set). A directory's path ends with '/'. stats:
 * {"added": {"files","dirs","others","bytes"}, "removed": {…}, "changed_files", "metadata"}.
 */
json_t *browse_diff(const tree *a, const tree *b, int metadata);

#endif
