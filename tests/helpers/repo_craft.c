/*
 * repo_craft: writes a hostile snapshot into a local storage through the storage format's own
 * encoders (the repo plugin's sources are compiled in), for tests/e2e/repo_restore_hostile.sh.
 *
 *   repo_craft STORAGE_DIR REPOSITORY FROM_ID NEW_ID SCENARIO OUTSIDE
 *
 * Loads snapshot FROM_ID of REPOSITORY (a plain local storage), adds the entries of SCENARIO
 * to its tree (file entries reuse the content of the tree's first non-empty file), stores the
 * new tree in a new pack with its index file, and writes manifest NEW_ID. OUTSIDE is a
 * directory outside any restore (absolute) that the entries aim at; relative escapes assume
 * the restore is made three levels below OUTSIDE's parent (DATASTORE/repositories/.NAME.pull-*
 * with OUTSIDE = DATASTORE/../sentinel). Exit status 0, or 1 with the reason on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/repo/chunker.c"
#include "../../plugins/repo/crypto.c"
#include "../../plugins/repo/index.c"
#include "../../plugins/repo/pack.c"
#include "../../plugins/repo/snapshot.c"
#include "../../plugins/repo/storage.c"
#include "../../plugins/repo/storage_local.c"
#include "../../plugins/repo/tree.c"
#include "../../plugins/repo/util.c"

const stor_ops stor_s3_ops = {.name = "s3"};
const stor_ops stor_sftp_ops = {.name = "sftp"};
const stor_ops stor_webdav_ops = {.name = "webdav"};

static const tnode *content; /* the first file with data: its chunks back crafted files */

static tnode *add(tree *t, uint8_t kind, const char *path, uint32_t mode, const char *target)
{
    tnode *n = add_node(t);
    n->kind = kind;
    n->path = xstrdup(path);
    n->mode = mode;
    n->target = target ? xstrdup(target) : NULL;
    n->mtime_sec = 1700000000;
    if (kind == T_FILE) {
        n->size = content->size;
        n->nchunks = content->nchunks;
        n->chunks = xmalloc(content->nchunks * sizeof(chunk_ref));
        memcpy(n->chunks, content->chunks, content->nchunks * sizeof(chunk_ref));
    }
    return n;
}

/* Adds SCENARIO's entries to t. 0, or -1 for an unknown scenario. */
static int craft(tree *t, const char *scenario, const char *outside)
{
    char *abs_file = xasprintf("%s/absolute", outside);
    int rc = 0;
    if (strcmp(scenario, "dotdot") == 0) {
        add(t, T_FILE, "../../../sentinel/dotdot", 04755, NULL);
    } else if (strcmp(scenario, "middle_dotdot") == 0) {
        add(t, T_FIFO, "data/../../../../sentinel/middle", 0666, NULL);
    } else if (strcmp(scenario, "absolute") == 0) {
        add(t, T_FILE, abs_file, 04755, NULL);
    } else if (strcmp(scenario, "symlink_fifo") == 0) {
        add(t, T_SYMLINK, "d", 0777, outside);
        add(t, T_FIFO, "d/fifo", 0666, NULL);
    } else if (strcmp(scenario, "symlink_file") == 0) {
        add(t, T_SYMLINK, "d", 0777, outside);
        add(t, T_FILE, "d/setuid", 04755, NULL);
    } else if (strcmp(scenario, "symlink_dir") == 0) {
        add(t, T_SYMLINK, "d", 0777, outside);
        add(t, T_DIR, "d/sub", 0777, NULL);
    } else if (strcmp(scenario, "symlink_hardlink") == 0) {
        add(t, T_SYMLINK, "d", 0777, outside);
        add(t, T_HARDLINK, "d/hard", 0, content->path);
    } else if (strcmp(scenario, "hardlink_outside") == 0) {
        add(t, T_HARDLINK, "stolen", 0, "../../../sentinel/victim");
    } else if (strcmp(scenario, "hardlink_via_symlink") == 0) {
        add(t, T_SYMLINK, "d", 0777, outside);
        add(t, T_HARDLINK, "stolen", 0, "d/victim");
    } else if (strcmp(scenario, "hardlink_to_symlink") == 0) {
        add(t, T_SYMLINK, "d", 0777, outside);
        add(t, T_HARDLINK, "stolen", 0, "d");
    } else if (strcmp(scenario, "duplicate") == 0) {
        add(t, T_FILE, "twice", 0644, NULL);
        add(t, T_FIFO, "twice", 0666, NULL);
    } else if (strcmp(scenario, "benign") == 0) {
        /* Legitimate but pointed: a symlink to the outside (kept as a link, never followed)
         * and a world-writable set-user-ID file (restored without the set-user-ID bit). */
        add(t, T_SYMLINK, "outlink", 0777, outside);
        add(t, T_FILE, "suid-world-writable", 04777, NULL);
    } else {
        rc = -1;
    }
    free(abs_file);
    return rc;
}

/* Stores t's tree in a new pack and its index file, then manifest id, a copy of doc. */
static int write_snapshot(storage *s, chunk_index *ix, codec *c, const json_t *doc,
                          const char *repo, const char *id, const tree *t, rerr *e)
{
    pack_writer pw = {.s = s};
    json_t *refs = NULL, *out = NULL;
    pack *p = NULL;
    int rc = -1;
    if (tree_store(s, ix, c, &pw, t, &refs, e) != 0)
        goto out;
    p = pack_finish(&pw, c, e);
    if (p == NULL && e->kind)
        goto out;
    if (p) {
        idx_group g = {
            .pack_id = p->id, .time = (int64_t)time(NULL), .entries = p->entries, .n = p->n};
        char key[96];
        if (pack_commit(p, e) != 0 || idx_write(s, &g, 1, key, e) != 0)
            goto out;
    }
    out = json_deep_copy(doc);
    json_object_set_new(out, "id", json_string(id));
    json_object_set(out, "tree", refs);
    json_object_del(out, "parent");
    if (snap_write(s, repo, id, out, e) != ST_OK)
        goto out;
    rc = 0;
out:
    json_decref(out);
    json_decref(refs);
    pack_free(p);
    pack_writer_free(&pw);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: repo_craft STORAGE_DIR REPOSITORY FROM_ID NEW_ID SCENARIO "
                        "OUTSIDE\n");
        return 2;
    }
    const char *dir = argv[1], *repo = argv[2], *from = argv[3], *id = argv[4];
    json_t *vault = json_pack("{s:s,s:s}", "provider", "local", "path", dir);
    storage *s = NULL;
    chunk_index ix;
    idx_init(&ix);
    codec *c = NULL;
    tree t = {0};
    tnode keep = {0};
    json_t *doc = NULL;
    rerr e = {0};
    int rc = 1;
    if (storage_open("st", vault, 0, &s, &e) != 0 || idx_load(s, &ix, &e) != 0 ||
        snap_read(s, repo, from, &doc, &e) != 0)
        goto out;
    c = codec_new(&s->keys, 3);
    if (tree_load(s, &ix, c, doc, &t, &e) != 0)
        goto out;
    for (size_t i = 0; i < t.n && content == NULL; i++)
        if (t.nodes[i].kind == T_FILE && t.nodes[i].nchunks > 0)
            content = &t.nodes[i];
    if (content == NULL) {
        rerr_set(&e, E_FAIL, "snapshot %s has no file with data to reuse", from);
        goto out;
    }
    /* content points into t.nodes, which add() may move: keep a copy. */
    keep = *content;
    keep.path = xstrdup(content->path);
    keep.target = NULL;
    keep.chunks = xmalloc(keep.nchunks * sizeof(chunk_ref));
    memcpy(keep.chunks, content->chunks, keep.nchunks * sizeof(chunk_ref));
    content = &keep;
    if (craft(&t, argv[5], argv[6]) != 0) {
        rerr_set(&e, E_INVALID, "unknown scenario %s", argv[5]);
        rc = 2;
        goto out;
    }
    if (write_snapshot(s, &ix, c, doc, repo, id, &t, &e) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "repo_craft: %s\n", e.msg);
    json_decref(doc);
    json_decref(vault);
    codec_free(c);
    tree_free(&t);
    free(keep.path);
    free(keep.chunks);
    idx_free(&ix);
    storage_close(s);
    return rc;
}
