/*
 * Snapshot manifests: "snapshots/<repository>/<snapshot id>", a sealed JSON document naming
 * the snapshot's tree chunks, its time, tags, expiry and statistics. Writing the manifest is
 * a push's commit point: a snapshot exists exactly when its manifest does, and everything
 * the manifest names was stored before it. See docs/storage-format.md.
 */
#ifndef REPO_SNAPSHOT_H
#define REPO_SNAPSHOT_H

#include <jansson.h>

#include "index.h"
#include "pack.h"
#include "storage.h"
#include "tree.h"

#define MANIFEST_FORMAT 1

/* A snapshot as listed: its manifest plus the fields most callers need. */
typedef struct snap_info {
    char repository[129];
    char id[129];
    int64_t time;    /* Unix seconds */
    int64_t time_ns; /* Unix nanoseconds ("unix_time_ns"; time * 1e9 in older manifests):
                        orders snapshots pushed in the same second */
    int64_t expires; /* Unix seconds; 0: kept until removed */
    json_t *doc;     /* the manifest (owned) */
} snap_info;

typedef struct snap_list {
    snap_info *items;
    size_t n;
} snap_list;

/* Key of a manifest into out (outlen bytes). */
void snap_key(const char *repository, const char *id, char *out, size_t outlen);

/* Writes a new manifest; ST_EXISTS when the snapshot exists already. 0/ST_EXISTS/-1. */
int snap_write(storage *s, const char *repository, const char *id, const json_t *doc, rerr *e);
/* Reads a manifest into *doc (new reference). ST_OK, ST_NOTFOUND or -1. */
int snap_read(storage *s, const char *repository, const char *id, json_t **doc, rerr *e);
/* Reads every manifest of repository (NULL: of every repository), oldest first. */
int snap_list_read(storage *s, const char *repository, snap_list *out, rerr *e);
void snap_list_free(snap_list *l);

/*
 * Finds the snapshot a restore point names in l: "latest", a snapshot id, or a tag (a value
 * of the manifest's tags, or "key=value"); the newest match wins. NULL when none matches.
 * Any machine's snapshot may match: snap_resolve_on narrows it.
 */
const snap_info *snap_resolve(const snap_list *l, const char *point);

/*
 * snap_resolve for restores on a machine: "latest" and tags match only snapshots whose
 * manifest's "machine" is machine (NULL: manifests without one), so one machine never
 * restores another's data by accident; a snapshot id names its snapshot whoever pushed it
 * (ids are unique per repository).
 */
const snap_info *snap_resolve_on(const snap_list *l, const char *point, const char *machine);

/* The machine a manifest records ("machine"), or NULL. */
const char *snap_machine(const json_t *doc);

/*
 * Stores a tree as TREE blobs: encodes it, cuts it with the storage's metadata chunker,
 * adds chunks the index lacks to pw (new blobs get IDX_PENDING entries). *refs receives the
 * manifest's "tree" array (new reference). 0, or -1 with e set.
 */
int tree_store(storage *s, chunk_index *ix, codec *c, pack_writer *pw, const tree *t, json_t **refs,
               rerr *e);
/* Loads the tree a manifest names. 0, or -1 with e set (naming the damaged object). */
int tree_load(storage *s, const chunk_index *ix, codec *c, const json_t *doc, tree *t, rerr *e);

/* Reads, opens and checks one blob. 0, or -1 with e set (naming pack and chunk). */
int blob_fetch(storage *s, const chunk_index *ix, codec *c, const uint8_t id[ID_LEN], buf *out,
               rerr *e);

/* Snapshot ids for new snapshots: UTC "YYYYmmdd_HHMMSS" (repo_backup adds "-2", "-3" …
 * when another push took the id in the same second). */
void snap_default_id(char *out, size_t outlen);

#endif
