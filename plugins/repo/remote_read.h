/*
 * The files of a directory on a machine reached over SSH, for a push (a backup_source,
 * engine.h), with nothing but sh, GNU find and GNU tar on the far side. Everything else --
 * chunking, hashing, compression, encryption -- happens in the worker on the bridge.
 *
 * - The scan is one streamed `find . -printf` (remote_scan.h) through the host's streaming
 *   exec service (ferry_host.exec_start).
 * - The content of the files to read (those that changed since the machine's last snapshot)
 *   comes through one streamed `tar -c` per worker thread, its file list written to tar's
 *   stdin NUL-separated (--null --verbatim-files-from --no-unquote: names are taken as raw
 *   bytes, never as options or escapes), read with libarchive. GNU tar's --sparse sends only
 *   the data blocks of sparse files (the holes arrive as zeros from libarchive and are stored
 *   as holes); --hard-dereference and --no-recursion keep every entry a listed file.
 * - A tar entry that names no listed file fails the push; a listed file missing from the
 *   stream (it vanished) or no longer a regular file is left out of the snapshot, as a local
 *   push does, and counted in the warning about files that changed while read, as are tar's
 *   "file changed as we read it" and a size that differs from the scan's.
 * - The tar commands start together with the listing (one per default worker thread), so
 *   their connections are made while find runs: each waits for its list on stdin. open takes
 *   one of them (or starts another); close with a NULL stream ends those no open took (tar
 *   gets an empty list) and must be called once the push no longer opens streams.
 * - A stop (cancel, timeout, failure elsewhere) ends the commands through exec_wait, which
 *   stops the remote processes; reads and writes poll so no thread stays blocked on them.
 */
#ifndef REPO_REMOTE_READ_H
#define REPO_REMOTE_READ_H

#include <ferry/plugin.h>

#include "engine.h"
#include "pattern.h"

typedef struct remote_source {
    ferry_ctx *ctx;
    const char *machine;        /* for messages */
    const char *root;           /* the directory on the machine (borrowed) */
    const pattern_set *exclude; /* borrowed, may be NULL */
    int stop;                   /* atomic: set when the push stops */
    uint64_t bytes;             /* atomic: bytes received from the machine (listing + data) */
    void *ready[16];            /* tar streams started with the listing, waiting for a list */
    int nready;
    backup_source ops; /* what backup_req.remote points to */
} remote_source;

/*
 * Prepares rs for the directory root on the job's machine. Returns 0, or -1 with e set when
 * the host has no streaming exec service (ABI 1.2).
 */
int remote_source_init(remote_source *rs, ferry_ctx *ctx, const char *machine, const char *root,
                       const pattern_set *exclude, rerr *e);

#endif
