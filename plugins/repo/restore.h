/*
 * What every restore shares, wherever it writes: restore.c restores into a directory of the
 * bridge (repo_restore), remote_restore.c streams the same snapshot as a tar archive to a
 * machine reached over SSH (repo_restore_stream). Both open the snapshot with restore_open,
 * which reads the index and the snapshot's tree, narrows the tree to req->include, refuses
 * what no restore may write (tree_decode's checks, then hard links that do not name a
 * regular file listed before them), lists every chunk the files need by pack and thaws
 * those packs on a cold storage -- all before a byte is written anywhere.
 */
#ifndef REPO_RESTORE_H
#define REPO_RESTORE_H

#include <pthread.h>

#include "beneath.h"
#include "engine.h"
#include "index.h"
#include "tree.h"

/* One chunk a file needs: where it is stored and where it goes. */
typedef struct need {
    uint32_t pack;
    uint32_t offset; /* of the blob in its pack */
    uint32_t node;
    uint64_t file_offset;
    const idx_entry *entry;
} need;

typedef struct restore_state {
    storage *s;
    const restore_req *req;
    chunk_index ix;
    tree t;
    json_t *doc; /* the snapshot's manifest (owned) */
    need *needs; /* sorted by pack and offset */
    size_t nneeds;
    size_t *groups; /* start of each pack's run of needs; groups[ngroups] = nneeds */
    size_t ngroups;
    uint64_t total;   /* bytes of the chunks the files need (holes left out) */
    uint64_t logical; /* bytes of the regular files */
    size_t thawed;    /* packs asked back from a cold storage */
    size_t next;      /* atomic */
    int destfd;
    int stop;              /* atomic */
    int running;           /* atomic */
    uint64_t written;      /* atomic */
    size_t skipped;        /* atomic: device files not created (not root) */
    size_t owner_failures; /* atomic: owners not restored (not root) */
    size_t restricted;     /* atomic: entries whose mode was narrowed (safe_mode) */
    int percent;           /* the last progress reported: never goes back */
    int (*node_fn)(struct restore_state *r, size_t i, beneath_dir *dc, rerr *e);
    pthread_mutex_t mu;
    rerr err;
} restore_state;

/*
 * Opens req's snapshot in storage s as described above (r is initialised here). 0, or -1
 * with e set; restore_close frees r either way.
 */
int restore_open(restore_state *r, storage *s, const restore_req *req, ui *u, rerr *e);
void restore_close(restore_state *r);

/* Reports progress through u, never lower than what was reported before. */
void restore_progress(restore_state *r, ui *u, int percent, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * The permission bits entry n is restored with: set-user-ID and set-group-ID only on a
 * regular file whose owner was restored (owned) and that others (and, for set-user-ID, its
 * group) may not write; no permissions for others on a device node. Counts what it narrows.
 */
uint32_t restore_safe_mode(restore_state *r, const tnode *n, int owned);

/*
 * Logs what the restore could not do exactly (devices not made, owners not set, modes
 * narrowed) and returns its result (a new object): repository, storage, snapshot_id,
 * entries, bytes, verified, seconds, mb_per_s, peak_rss_kb, thawed_packs.
 */
json_t *restore_finish(restore_state *r, ui *u, double started);

/*
 * The GNU tar that reads the stream on the machine, in the new directory (-C, added by the
 * caller): modes exactly as sent (-p; the stream has narrowed them already), numeric owners
 * (taken only by root), directories' modes and times set once their content is in. (Not -k:
 * with it GNU tar leaves the metadata of "." alone; the directory is new and the tree has no
 * repeated path, so there is nothing to keep.) GNU tar's own defaults are part of the defence: it
 * strips a leading "/" and refuses a member with a ".." component, and it creates a
 * symlink whose target is absolute or climbs with ".." as a placeholder until the end, so
 * a later member through that link fails instead of leaving the directory.
 */
#define STREAM_TAR_X                                                                               \
    "tar -x -f - -p --numeric-owner --delay-directory-restore --warning=no-unknown-keyword"

/* A restore streamed to a machine (remote_restore.c). */
typedef struct stream_req {
    int fd;           /* where the tar stream goes (the caller closes it) */
    int64_t uid, gid; /* the machine's user: owners and device nodes are restored only by root */
    json_t *sums;     /* with req->verify, an object that receives {"path": "SHA-256 hex"} of
                         every regular file and hard link sent (borrowed) */
} stream_req;

/*
 * Restores req's snapshot (req->dest unused) as one pax tar stream written to sr->fd, for
 * GNU `tar -x` on the machine: directories, files (sparse where the snapshot has holes),
 * symlinks, hard links, fifos and (for root) devices, with modes narrowed as restore_safe_mode
 * says, numeric owners and mtimes. Decryption, decompression and the checks of every chunk
 * happen here. 0 with *result (new reference, as repo_restore's), or -1 with e set.
 */
int repo_restore_stream(storage *s, const restore_req *req, stream_req *sr, ui *u, json_t **result,
                        rerr *e);

/*
 * Checks the machine's listing of what tar wrote (`sha256sum -z` of every regular file, run
 * in the restored directory: "HEX  ./path" records ended by NUL bytes) against sums. 0 when
 * every path of sums is listed with its sum and nothing else is; -1 with e naming the first
 * difference.
 */
int stream_verify(const json_t *sums, const char *listing, size_t len, rerr *e);

#endif
