/*
 * The storage engine's operations, independent of the plugin SDK: back up a directory into
 * a storage, restore a snapshot into a directory, apply retention and collect garbage,
 * verify a storage. The functions in functions.c wrap them as queue functions.
 *
 * Each operation runs on the calling thread plus worker threads it starts and joins before
 * returning. Only the calling thread calls back into the ui (progress, log, cancelled), so
 * the ui may use host services that are bound to the thread that called run().
 */
#ifndef REPO_ENGINE_H
#define REPO_ENGINE_H

#include <jansson.h>

#include "lock.h"
#include "storage.h"
#include "tree.h"
#include "util.h"

typedef struct ui {
    void *arg;
    void (*progress)(void *arg, int percent, const char *message);
    void (*log)(void *arg, int warn, const char *message);
    int (*cancelled)(void *arg);
} ui;

void ui_progress(ui *u, int percent, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void ui_log(ui *u, int warn, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Non-zero once the job is cancelled. */
int ui_cancelled(ui *u);
/* Worker threads used by default: the machine's cores, at most 8. */
int default_threads(void);

/*
 * Where a push's files come from when they are not a local directory: remote_read.c's
 * machine reached over SSH. scan, open and close run on the thread that called repo_backup;
 * next and read on one worker thread per stream.
 */
typedef struct backup_source {
    void *arg;
    /* Lists the entries (metadata only) into t (empty on entry), as tree_scan does. */
    int (*scan)(void *arg, tree *t, rerr *e);
    /* Starts reading the content of the regular files paths[0..n) (borrowed until close), in
     * that order. Returns the stream, or NULL with e set. */
    void *(*open)(void *arg, const char *const *paths, size_t n, rerr *e);
    /* The next file of the stream: *index is its position in paths (the files before it
     * vanished since the scan), SIZE_MAX at the end. 0, or -1 with e set. */
    int (*next)(void *stream, size_t *index, rerr *e);
    /* Up to len bytes of the current file's content (holes as zeros); 0 at its end, -1 with e
     * set. */
    long (*read)(void *stream, void *dst, size_t len, rerr *e);
    /* Ends a stream (stopping its command when failed) and frees it; adds the files that
     * changed while they were read to *changed. 0, or -1 with e set. */
    int (*close)(void *arg, void *stream, int failed, uint64_t *changed, rerr *e);
    /* Called from any thread when the push stops (a failure or a cancel): reads and writes
     * in flight give up soon after. */
    void (*stop)(void *arg);
} backup_source;

typedef struct backup_req {
    const char *repository;  /* name recorded in the snapshot */
    const char *source;      /* directory to read (on the remote machine when remote is set) */
    const backup_source *remote; /* NULL: source is a local directory */
    tree_filter filter;          /* local scans: "exclude" (NULL: none); remote scans filter */
    void *filter_arg;            /* themselves */
    int source_is_snapshot;  /* source is a local snapshot (recorded in the manifest) */
    const char *path;        /* repo_push's "paths": the absolute path (recorded), else NULL */
    const char *snapshot_id; /* id of the new snapshot */
    int default_id;          /* snapshot_id is the default (the time): on a clash add -2, -3 … */
    const json_t *tags;      /* any JSON, or NULL */
    const char *description;
    const char *hostname;
    const char *machine;     /* the item's machine: recorded, and whose last snapshot is
                                the change-detection baseline */
    int level;       /* zstd level, 0: none */
    int verify;      /* re-read what was written */
    int reread;      /* read every file: no change detection against the last snapshot */
    int64_t expires; /* Unix seconds, 0: none */
    int threads;     /* 0: default_threads() */
} backup_req;

/* Pushes req->source as a new snapshot; *result (new reference) holds statistics. */
int repo_backup(storage *s, const backup_req *req, ui *u, json_t **result, rerr *e);

typedef struct restore_req {
    const char *repository; /* repository whose snapshot is restored */
    const char *point;      /* "latest", a snapshot id or a tag */
    const char *dest;       /* directory to create (must not exist) */
    int verify;             /* re-read the restored files and check them against the tree */
    int fsync;              /* flush restored files before returning */
    int threads;
    /* A partial restore: the entries include() selects (path relative to the snapshot's
     * root, is_dir for a directory), everything a selected directory holds, and the
     * directories leading to them. NULL: everything. (repo_pull selects with pattern.h.) */
    int (*include)(const void *arg, const char *path, int is_dir);
    const void *include_arg;
} restore_req;

/* Restores a snapshot into req->dest (created; must not exist). */
int repo_restore(storage *s, const restore_req *req, ui *u, json_t **result, rerr *e);

typedef struct gc_req {
    int dry_run;
    int full;      /* also list data/ for packs no index knows (after crashes) */
    int64_t grace; /* seconds: younger unreferenced packs are kept */
    int64_t now;   /* Unix seconds (a parameter so tests need no clock tricks) */
    /* A keep policy (keep.h) applied to each group (repository and machine) that matches
     * repository and machine (NULL: any); NULL: expiries only. */
    const struct keep_policy *policy;
    const char *repository;
    const char *machine;
} gc_req;

/* Removes expired snapshots, and those a keep policy does not keep, and the data only they
 * used. See gc.c for the algorithm. */
int repo_gc(storage *s, const gc_req *req, ui *u, json_t **result, rerr *e);

/* Checks a storage: every pack (or a sample percentage of them) and every snapshot tree. */
int repo_verify(storage *s, const char *repository, double sample_percent, ui *u, json_t **result,
                rerr *e);

typedef struct copy_req {
    const char *repository; /* NULL: every repository of the source */
    int full;               /* copy every pack and manifest again, even those the target has */
    int64_t now;            /* Unix seconds: expired snapshots are not copied */
} copy_req;

/*
 * Copies snapshots of req->repository from src to dst, a replica of src (opened with
 * storage_open_replica): the packs they use that dst lacks (all of them with full), one
 * index file for those packs, then the manifests. *result (new reference):
 * {"snapshots_copied": ["repo/id", ...], "snapshots_present", "packs_copied",
 * "packs_present", "bytes_copied"}. See replicate.c.
 */
int repo_copy(storage *src, storage *dst, const copy_req *req, ui *u, json_t **result, rerr *e);

#endif
