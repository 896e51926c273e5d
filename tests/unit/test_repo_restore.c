/*
 * Unit tests for the safety of restores (issue 13, points 1 and 5): tree names checked when a
 * tree is decoded, the confined path walk (plugins/repo/beneath.c) with openat2() and with
 * the O_NOFOLLOW fallback, the restore's own creates and metadata refusing symlinks planted
 * in the target (a second line of defence behind the decode check, so these build trees
 * that tree_decode would refuse), and progress that never goes back during a real restore.
 * The plugin's sources are compiled in, as in test_repo_format.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../plugins/repo/beneath.c"
#include "../../plugins/repo/chunker.c"
#include "../../plugins/repo/crypto.c"
#include "../../plugins/repo/index.c"
#include "../../plugins/repo/pack.c"
#include "../../plugins/repo/restore.c"
#include "../../plugins/repo/snapshot.c"
#include "../../plugins/repo/storage.c"
#include "../../plugins/repo/storage_local.c"
#include "../../plugins/repo/tree.c"
#include "../../plugins/repo/ui.c"
#include "../../plugins/repo/util.c"

const stor_ops stor_s3_ops = {.name = "s3"};
const stor_ops stor_sftp_ops = {.name = "sftp"};
const stor_ops stor_webdav_ops = {.name = "webdav"};

static tnode *node(tree *t, uint8_t kind, const char *path, const char *target)
{
    tnode *n = add_node(t);
    n->kind = kind;
    n->path = xstrdup(path);
    n->target = target ? xstrdup(target) : NULL;
    n->mode = kind == T_DIR ? 0755 : 0644;
    return n;
}

/* Encodes t and decodes it into out; returns tree_decode's answer. */
static int round_trip(const tree *t, tree *out)
{
    buf enc = {0};
    tree_encode(t, &enc);
    int rc = tree_decode(enc.data, enc.len, out);
    buf_free(&enc);
    return rc;
}

/* What a case adds to a tree of the root and the directory "a": up to two entries. */
typedef struct entry_spec {
    uint8_t kind;
    const char *path, *target;
} entry_spec;

typedef struct tree_case {
    entry_spec add[2];
    const char *expect; /* in tree->why, or in the restore's error */
} tree_case;

static void build(tree *t, const entry_spec *add)
{
    node(t, T_DIR, "", NULL);
    node(t, T_DIR, "a", NULL);
    node(t, T_FILE, "a/file", NULL);
    for (int k = 0; k < 2 && add[k].path; k++)
        node(t, add[k].kind, add[k].path, add[k].target);
}

/* Decode must refuse the tree, with t->why holding expect. */
static void refused(const entry_spec *add, const char *expect)
{
    tree t = {0}, back = {0};
    build(&t, add);
    assert_int_equal(round_trip(&t, &back), -1);
    if (strstr(back.why, expect) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", expect, back.why);
    tree_free(&back);
    tree_free(&t);
}

static const tree_case bad_names[] = {
    {{{T_FILE, "../x", NULL}}, "entry \"../x\" has an empty, \".\" or \"..\" path component"},
    {{{T_FIFO, "a/../../x", NULL}}, "entry \"a/../../x\" has an empty"},
    {{{T_FILE, "a/./x", NULL}}, "entry \"a/./x\" has an empty"},
    {{{T_FILE, "a//x", NULL}}, "entry \"a//x\" has an empty"},
    {{{T_DIR, "a/b/", NULL}}, "entry \"a/b/\" has an empty"},
    {{{T_FILE, "/etc/cron.d/x", NULL}}, "entry \"/etc/cron.d/x\" has an absolute path"},
    {{{T_DIR, "", NULL}}, "entry \"\" is a second root"},
    {{{T_SYMLINK, "a/d", "/etc"}, {T_FILE, "a/d/passwd", NULL}},
     "entry \"a/d/passwd\": \"a/d\" is not a directory"},
    {{{T_FILE, "f", NULL}, {T_DIR, "f/x", NULL}}, "entry \"f/x\": \"f\" is not a directory"},
    {{{T_FILE, "b/x", NULL}, {T_DIR, "b", NULL}},
     "entry \"b/x\": \"b\" is not a directory listed before it"},
    {{{T_FIFO, "a/file", NULL}}, "entry \"a/file\" appears twice"},
    {{{T_DIR, "a", NULL}}, "entry \"a\" appears twice"},
    {{{T_HARDLINK, "a/h", "../etc/shadow"}},
     "hard link \"a/h\": its target \"../etc/shadow\" has an empty"},
    {{{T_HARDLINK, "a/h", "/etc/shadow"}},
     "hard link \"a/h\": its target \"/etc/shadow\" has an absolute"},
    {{{T_HARDLINK, "a/h", ""}}, "hard link \"a/h\": its target \"\" has an empty"},
    /* A hostile name is quoted and escaped in the message, never echoed raw. */
    {{{T_FILE, "../\n\x1b[31mred", NULL}}, "entry \"../\\x0a\\x1b[31mred\""},
};

/* Well-formed hard links the restore refuses: a target not a regular file listed before. */
static const tree_case bad_links[] = {
    {{{T_HARDLINK, "a/h", "a/later"}, {T_FILE, "a/later", NULL}}, "its target \"a/later\""},
    {{{T_SYMLINK, "a/l", "/etc/shadow"}, {T_HARDLINK, "a/h", "a/l"}}, "its target \"a/l\""},
    {{{T_HARDLINK, "a/h", "a"}}, "its target \"a\""},
    {{{T_SYMLINK, "a/l", "/etc"}, {T_HARDLINK, "a/h", "a/l/shadow"}}, "its target \"a/l/shadow\""},
    {{{T_HARDLINK, "a/h", "a/gone"}}, "its target \"a/gone\""},
};

static void test_decode_refuses_bad_names(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(*bad_names); i++)
        refused(bad_names[i].add, bad_names[i].expect);
    char name[300];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    refused((entry_spec[2]){{T_FILE, name, NULL}}, "has a name longer than 255 bytes");

    /* The first entry must be the root. */
    tree t = {0}, back = {0};
    node(&t, T_FILE, "x", NULL);
    assert_int_equal(round_trip(&t, &back), -1);
    assert_non_null(strstr(back.why, "the first entry must be the root"));
    tree_free(&back);
    tree_free(&t);
}

/* A NUL byte inside a name or a symlink target would cut the C string short: refused. */
static void test_decode_refuses_nul(void **state)
{
    (void)state;
    for (int which = 0; which < 2; which++) {
        tree t = {0}, back = {0};
        node(&t, T_DIR, "", NULL);
        node(&t, T_SYMLINK, "aXb", "cYd");
        buf enc = {0};
        tree_encode(&t, &enc);
        uint8_t *p = memmem(enc.data, enc.len, which ? "cYd" : "aXb", 3);
        assert_non_null(p);
        p[1] = 0;
        assert_int_equal(tree_decode(enc.data, enc.len, &back), -1);
        assert_non_null(strstr(back.why, "has a name with a NUL byte"));
        tree_free(&back);
        tree_free(&t);
        buf_free(&enc);
    }
}

static void test_decode_accepts_real_trees(void **state)
{
    (void)state;
    tree t = {0}, back = {0};
    node(&t, T_DIR, "", NULL);
    node(&t, T_DIR, "a", NULL);
    node(&t, T_FILE, "a/..file", NULL);
    node(&t, T_FILE, "a/.hidden", NULL);
    node(&t, T_FILE, "a/back\\slash\nnewline", NULL);
    node(&t, T_HARDLINK, "a/h", "a/.hidden");
    node(&t, T_SYMLINK, "a/up", "../../../../etc/passwd"); /* a symlink's text is free */
    node(&t, T_SYMLINK, "a/abs", "/etc");
    node(&t, T_DIR, "a/ünïcødé 名前", NULL);
    node(&t, T_FIFO, "a/ünïcødé 名前/fifo", NULL);
    node(&t, T_FILE, "top", NULL)->mode = 0104755; /* type bits in mode are dropped */
    assert_int_equal(round_trip(&t, &back), 0);
    assert_int_equal(back.n, t.n);
    assert_string_equal(back.why, "");
    assert_int_equal(back.nodes[10].mode, 04755);
    tree_free(&back);
    tree_free(&t);

    /* A scanned tree passes (names from readdir, hard links to files scanned before). */
    char tmpl[] = "/tmp/test_restore.XXXXXX";
    char *dir = mkdtemp(tmpl);
    char *cmd = xasprintf("cd %s && mkdir -p 'x/y z' && echo 1 >x/f && ln x/f 'x/y z/g' && "
                          "ln -s /etc x/l && mkfifo x/p && touch .a ./-b",
                          dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    rerr e = {0};
    assert_int_equal(tree_scan(dir, &t, NULL, &e), 0);
    for (size_t i = 0; i < t.n; i++)
        t.nodes[i].size = 0; /* a scan reads no content: no chunks to add up to the size */
    if (round_trip(&t, &back) != 0)
        fail_msg("a scanned tree does not decode: %s", back.why);
    assert_int_equal(back.n, t.n);
    tree_free(&back);
    tree_free(&t);
    cmd = xasprintf("rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

/* Hard links whose target is well formed but not a regular file listed before the link
 * decode (gc must still count such a tree) and are refused by a restore before it writes. */
static void test_restore_refuses_bad_link_targets(void **state)
{
    (void)state;
    storage st = {.name = "st"};
    restore_req req = {.repository = "r", .dest = "/nonexistent"};
    json_t *doc = json_pack("{s:s}", "id", "snap");
    for (size_t k = 0; k < sizeof(bad_links) / sizeof(*bad_links); k++) {
        tree t = {0};
        rs r = {.s = &st, .req = &req};
        build(&t, bad_links[k].add);
        assert_int_equal(round_trip(&t, &r.t), 0);
        rerr e = {0};
        assert_int_equal(check_links(&r, doc, &e), -1);
        if (strstr(e.msg, bad_links[k].expect) == NULL ||
            strstr(e.msg, "snapshot r/snap in storage st: hard link \"a/h\"") == NULL ||
            strstr(e.msg, "is not a regular file listed before it") == NULL)
            fail_msg("expected \"%s\" in \"%s\"", bad_links[k].expect, e.msg);
        tree_free(&r.t);
        tree_free(&t);
    }
    /* A link to a file listed before it passes. */
    tree t = {0};
    rs r = {.s = &st, .req = &req};
    node(&t, T_DIR, "", NULL);
    node(&t, T_FILE, "f", NULL);
    node(&t, T_HARDLINK, "g", "f");
    assert_int_equal(round_trip(&t, &r.t), 0);
    rerr e = {0};
    assert_int_equal(check_links(&r, doc, &e), 0);
    tree_free(&r.t);
    tree_free(&t);
    json_decref(doc);
}

/* A sandbox: ROOT/{in/, in/dir/, in/link -> OUT, in/dir/up -> ../.., in/file} and OUT/. */
typedef struct sandbox {
    char root[64];
    char *in, *out;
    int infd;
} sandbox;

static void sandbox_make(sandbox *sb)
{
    strcpy(sb->root, "/tmp/test_restore.XXXXXX");
    assert_non_null(mkdtemp(sb->root));
    sb->in = xasprintf("%s/in", sb->root);
    sb->out = xasprintf("%s/out", sb->root);
    char *cmd = xasprintf("cd %s && mkdir -p in/dir out && echo secret >out/victim && "
                          "chmod 600 out/victim && ln -s %s in/link && ln -s ../.. in/dir/up && "
                          "echo inside >in/file && ln -s %s/victim in/victim-link",
                          sb->root, sb->out, sb->out);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    sb->infd = open(sb->in, O_RDONLY | O_DIRECTORY);
    assert_true(sb->infd >= 0);
}

/* Everything outside ROOT/in: names, types, modes and link counts, for before/after comparisons. */
static char *outside_listing(const sandbox *sb)
{
    char *cmd = xasprintf("find %s -path %s -prune -o -printf '%%P %%y %%m %%n\\n' | sort",
                          sb->root, sb->in);
    FILE *f = popen(cmd, "r");
    buf b = {0};
    char chunk[512];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    pclose(f);
    free(cmd);
    buf_put_u8(&b, 0);
    return (char *)b.data;
}

static void sandbox_free(sandbox *sb)
{
    close(sb->infd);
    char *cmd = xasprintf("rm -rf %s", sb->root);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(sb->in);
    free(sb->out);
}

static void walk_checks(int use2)
{
    beneath_use_openat2(use2);
    assert_int_equal(beneath_openat2(), use2);
    sandbox sb;
    sandbox_make(&sb);
    char *before = outside_listing(&sb);
    const char *escapes[] = {"link/new",    "link/victim", "dir/up/out/new", "dir/up/in/file",
                             "victim-link", "link",        "../out/new",     "/tmp/new",
                             "dir/../file", "dir//x",      "./file",         "dir/up"};
    for (size_t i = 0; i < sizeof(escapes) / sizeof(*escapes); i++) {
        int fd = beneath_open(sb.infd, escapes[i], O_WRONLY | O_CREAT, 0666);
        if (fd >= 0)
            fail_msg("mode %d: beneath_open(%s) opened", use2, escapes[i]);
        /* The parent of a name is opened only when it is the restore root or a real
         * directory in it, never what a symlink points to; the name itself is not followed. */
        const char *name;
        fd = beneath_parent(sb.infd, escapes[i], &name);
        if (fd >= 0) {
            struct stat st, in, dir;
            assert_int_equal(fstat(fd, &st), 0);
            assert_int_equal(fstat(sb.infd, &in), 0);
            assert_int_equal(fstatat(sb.infd, "dir", &dir, AT_SYMLINK_NOFOLLOW), 0);
            if (st.st_ino != in.st_ino && st.st_ino != dir.st_ino)
                fail_msg("mode %d: beneath_parent(%s) opened a directory outside", use2,
                         escapes[i]);
            close(fd);
        }
    }
    char *after = outside_listing(&sb);
    assert_string_equal(after, before);
    free(after);
    /* Paths inside open, and create where asked. */
    int fd = beneath_open(sb.infd, "dir/new", O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    fd = beneath_open(sb.infd, "file", O_RDONLY, 0);
    assert_true(fd >= 0);
    close(fd);
    fd = beneath_open(sb.infd, "", O_RDONLY, 0);
    assert_true(fd >= 0);
    close(fd);
    const char *name;
    fd = beneath_parent(sb.infd, "dir/new", &name);
    assert_true(fd >= 0);
    assert_string_equal(name, "new");
    assert_int_equal(faccessat(fd, name, F_OK, AT_SYMLINK_NOFOLLOW), 0);
    close(fd);
    /* The directory cache: a hit still refuses a bad last name; a miss walks again. */
    beneath_dir dc = BENEATH_DIR_INIT;
    assert_true(beneath_dir_open(&dc, sb.infd, "dir/new", &name) >= 0);
    int cached = dc.fd;
    assert_int_equal(beneath_dir_open(&dc, sb.infd, "dir/other", &name), cached);
    assert_string_equal(name, "other");
    const char *bad[] = {"dir/..", "dir/.", "dir/", "link/x", "dir/up/x", "../x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        if (beneath_dir_open(&dc, sb.infd, bad[i], &name) >= 0)
            fail_msg("mode %d: beneath_dir_open(%s) opened", use2, bad[i]);
        assert_true(beneath_dir_open(&dc, sb.infd, "dir/new", &name) >= 0); /* refill */
    }
    assert_true(beneath_dir_open(&dc, sb.infd, "file", &name) >= 0);
    assert_string_equal(name, "file");
    beneath_dir_close(&dc);
    free(before);
    sandbox_free(&sb);
    beneath_use_openat2(1);
}

static void test_beneath_openat2(void **state)
{
    (void)state;
    walk_checks(1);
}

static void test_beneath_walk(void **state)
{
    (void)state;
    walk_checks(0);
}

/* A restore whose target holds entries planted before the restore reached them (or a tree
 * that got past decode): every create and every metadata change refuses them. */
static void planted_checks(int use2)
{
    beneath_use_openat2(use2);
    sandbox sb;
    sandbox_make(&sb);
    char *before = outside_listing(&sb);
    restore_req req = {.repository = "r", .dest = sb.in};
    rs r = {.req = &req, .destfd = sb.infd};
    tree *t = &r.t;
    node(t, T_DIR, "", NULL);
    node(t, T_FILE, "link/new", NULL);             /* through a planted symlink */
    node(t, T_FIFO, "dir/up/out/fifo", NULL);      /* through a planted ../.. */
    node(t, T_DIR, "link/sub", NULL);              /* mkdir through a symlink */
    node(t, T_HARDLINK, "stolen", "link/victim");  /* link an outside file in */
    node(t, T_HARDLINK, "stolen2", "victim-link"); /* link a symlink */
    node(t, T_SYMLINK, "link/evil", "/etc");       /* a symlink through a symlink */
    node(t, T_FILE, "file", NULL);                 /* already there: never replaced */
    size_t first_meta = t->n;
    node(t, T_DIR, "link", NULL)->mode = 0777;          /* a symlink where a directory is */
    node(t, T_FILE, "victim-link", NULL)->mode = 04777; /* a symlink where a file is */
    node(t, T_FIFO, "link/victim", NULL)->mode = 0666;
    beneath_dir dc = BENEATH_DIR_INIT;
    for (size_t i = 1; i < first_meta; i++) {
        rerr e = {0};
        if (create_entry(&r, i, &dc, &e) == 0)
            fail_msg("mode %d: creating %s succeeded", use2, t->nodes[i].path);
        assert_non_null(strstr(e.msg, t->nodes[i].path));
    }
    for (size_t i = first_meta; i < t->n; i++) {
        rerr e = {0};
        if (set_metadata(&r, i, &dc, &e) == 0)
            fail_msg("mode %d: metadata of %s succeeded", use2, t->nodes[i].path);
        assert_non_null(strstr(e.msg, t->nodes[i].path));
    }
    beneath_dir_close(&dc);
    char *after = outside_listing(&sb);
    assert_string_equal(after, before);
    free(after);
    free(before);
    tree_free(t);
    sandbox_free(&sb);
    beneath_use_openat2(1);
}

static void test_planted_openat2(void **state)
{
    (void)state;
    planted_checks(1);
}

static void test_planted_walk(void **state)
{
    (void)state;
    planted_checks(0);
}

/* Records every progress report of a restore. */
typedef struct seen {
    int percent[4096];
    char msg[4096][128];
    size_t n;
} seen;

static void on_progress(void *arg, int percent, const char *message)
{
    seen *s = arg;
    if (s->n < 4096) {
        s->percent[s->n] = percent;
        snprintf(s->msg[s->n], sizeof(s->msg[0]), "%s", message);
        s->n++;
    }
}

/* Writes a snapshot "snap" of repository "r" with files of the given sizes and a symlink. */
static void write_snapshot(storage *s, int nfiles, const uint32_t *modes)
{
    chunk_index ix;
    idx_init(&ix);
    rerr e = {0};
    assert_int_equal(idx_load(s, &ix, &e), 0);
    codec *c = codec_new(&s->keys, 3);
    pack_writer pw = {.s = s};
    tree t = {0};
    node(&t, T_DIR, "", NULL)->mode = 0755;
    node(&t, T_DIR, "d", NULL);
    for (int i = 0; i < nfiles; i++) {
        char path[32], data[64];
        snprintf(path, sizeof(path), "d/f%05d", i);
        int len = snprintf(data, sizeof(data), "content of file %d", i);
        tnode *n = node(&t, T_FILE, path, NULL);
        n->mode = modes ? modes[i] : 0644;
        n->uid = geteuid();
        n->gid = getegid();
        n->size = (uint64_t)len;
        n->nchunks = 1;
        n->chunks = xcalloc(1, sizeof(chunk_ref));
        n->chunks[0].len = (uint32_t)len;
        hasher_id(c->hash, data, (size_t)len, n->chunks[0].id);
        int inserted = 0;
        idx_entry pending = {.pack = IDX_PENDING, .type = BLOB_DATA};
        memcpy(pending.id, n->chunks[0].id, ID_LEN);
        idx_insert(&ix, &pending, &inserted);
        assert_int_equal(pack_add(&pw, c, n->chunks[0].id, BLOB_DATA, data, (size_t)len, &e), 0);
    }
    node(&t, T_SYMLINK, "d/out", "/etc");
    tnode *dev = node(&t, T_CHR, "d/null", NULL);
    dev->mode = 0666;
    dev->rdev = makedev(1, 3);
    json_t *refs = NULL;
    assert_int_equal(tree_store(s, &ix, c, &pw, &t, &refs, &e), 0);
    pack *p = pack_finish(&pw, c, &e);
    assert_non_null(p);
    idx_group g = {.pack_id = p->id, .time = 1, .entries = p->entries, .n = p->n};
    char key[96];
    assert_int_equal(pack_commit(p, &e), 0);
    assert_int_equal(idx_write(s, &g, 1, key, &e), 0);
    pack_free(p);
    pack_writer_free(&pw);
    json_t *doc = json_pack("{s:i,s:s,s:s,s:I,s:o}", "format", 1, "repository", "r", "id", "snap",
                            "unix_time", (json_int_t)1, "tree", refs);
    assert_int_equal(snap_write(s, "r", "snap", doc, &e), ST_OK);
    json_decref(doc);
    tree_free(&t);
    codec_free(c);
    idx_free(&ix);
}

/* A real restore: progress never goes back and never counts past the end ("6 of 4"); the
 * snapshot's symlink comes back as a link; set-id bits and device nodes follow the
 * documented rules. */
static void test_restore_progress_and_modes(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/test_restore.XXXXXX";
    char *dir = mkdtemp(tmpl);
    char *store = xasprintf("%s/store", dir), *dest = xasprintf("%s/dest", dir);
    json_t *vault = json_pack("{s:s,s:s}", "provider", "local", "path", store);
    storage *s = NULL;
    rerr e = {0};
    assert_int_equal(storage_open("st", vault, 1, &s, &e), 0);
    uint32_t modes[4] = {04755, 04757, 02775, 02777}; /* kept, dropped, kept, dropped */
    /* Enough files that each phase outlives the 100 ms between progress reports. */
    enum { NFILES = 6000 };
    uint32_t *all = xcalloc(NFILES, sizeof(uint32_t));
    for (int i = 0; i < NFILES; i++)
        all[i] = i < 4 ? modes[i] : 0644;
    write_snapshot(s, NFILES, all);
    free(all);
    /* A target that is already there, even as a symlink to an empty directory, is refused
     * and what it points to stays empty. */
    char *elsewhere = xasprintf("%s/elsewhere", dir), *planted = xasprintf("%s/planted", dir);
    assert_int_equal(mkdir(elsewhere, 0755), 0);
    assert_int_equal(symlink(elsewhere, planted), 0);
    restore_req bad = {.repository = "r", .point = "latest", .dest = planted, .threads = 2};
    json_t *none = NULL;
    assert_int_equal(repo_restore(s, &bad, NULL, &none, &e), -1);
    assert_non_null(strstr(e.msg, "cannot create"));
    assert_null(none);
    DIR *d = opendir(elsewhere);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            fail_msg("%s appeared in %s", de->d_name, elsewhere);
    closedir(d);
    free(elsewhere);
    free(planted);
    memset(&e, 0, sizeof(e));

    seen *sn = xcalloc(1, sizeof(*sn));
    ui u = {.arg = sn, .progress = on_progress};
    restore_req req = {
        .repository = "r", .point = "latest", .dest = dest, .verify = 1, .threads = 2};
    json_t *result = NULL;
    if (repo_restore(s, &req, &u, &result, &e) != 0)
        fail_msg("restore failed: %s", e.msg);
    assert_true(sn->n >= 4);
    for (size_t i = 0; i < sn->n; i++) {
        if (i > 0 && sn->percent[i] < sn->percent[i - 1])
            fail_msg("progress went back: %d%% (%s) after %d%% (%s)", sn->percent[i], sn->msg[i],
                     sn->percent[i - 1], sn->msg[i - 1]);
        unsigned long a, b;
        const char *of = strstr(sn->msg[i], ": ");
        if (of && sscanf(of, ": %lu of %lu entries", &a, &b) == 2 && a > b)
            fail_msg("progress counts past the end: %s", sn->msg[i]);
        assert_true(sn->percent[i] >= 0 && sn->percent[i] <= 100);
    }
    char path[512], link[64];
    snprintf(path, sizeof(path), "%s/d/out", dest);
    ssize_t n = readlink(path, link, sizeof(link) - 1);
    assert_int_equal(n, 4);
    link[n] = '\0';
    assert_string_equal(link, "/etc");
    uint32_t want[4] = {04755, 0757, 02775, 0777};
    for (int i = 0; i < 4; i++) {
        struct stat st;
        snprintf(path, sizeof(path), "%s/d/f%05d", dest, i);
        assert_int_equal(lstat(path, &st), 0);
        if ((st.st_mode & 07777) != want[i])
            fail_msg("%s: mode %04o, expected %04o", path, st.st_mode & 07777, want[i]);
    }
    /* A device node: made only as root, never with permissions for others. */
    struct stat st;
    snprintf(path, sizeof(path), "%s/d/null", dest);
    if (geteuid() == 0) {
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISCHR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0660);
    } else {
        assert_int_equal(lstat(path, &st), -1);
    }
    assert_int_equal(stat(dest, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755);
    json_decref(result);
    json_decref(vault);
    storage_close(s);
    free(sn);
    char *cmd = xasprintf("rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(store);
    free(dest);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_refuses_bad_names),
        cmocka_unit_test(test_decode_refuses_nul),
        cmocka_unit_test(test_decode_accepts_real_trees),
        cmocka_unit_test(test_restore_refuses_bad_link_targets),
        cmocka_unit_test(test_beneath_openat2),
        cmocka_unit_test(test_beneath_walk),
        cmocka_unit_test(test_planted_openat2),
        cmocka_unit_test(test_planted_walk),
        cmocka_unit_test(test_restore_progress_and_modes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
