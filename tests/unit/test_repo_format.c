/*
 * Unit tests for the repo plugin's storage format (plugins/repo): the chunker, buffers and
 * varints, sealing and keys, packs and blobs, trees, the index, snapshot resolution and the
 * local storage provider. The plugin's sources are compiled into this test directly; none
 * of them uses host code.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../plugins/repo/chunker.c"
#include "../../plugins/repo/crypto.c"
#include "../../plugins/repo/index.c"
#include "../../plugins/repo/pack.c"
#include "../../plugins/repo/snapshot.c"
#include "../../plugins/repo/storage.c"
#include "../../plugins/repo/storage_local.c"
#include "../../plugins/repo/tree.c"
#include "../../plugins/repo/util.c"

/* The remote providers are tested end to end against real servers (tests/e2e/storage_*.sh);
 * this file exercises the format on the local provider, so storage.c's table only needs
 * their names here. */
const stor_ops stor_s3_ops = {.name = "s3"};
const stor_ops stor_sftp_ops = {.name = "sftp"};
const stor_ops stor_webdav_ops = {.name = "webdav"};

/* Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

static size_t cut_all(const cdc *c, const uint8_t *p, size_t n, size_t *cuts, size_t max)
{
    size_t k = 0, off = 0;
    while (off < n && k < max) {
        size_t len = cdc_cut(c, p + off, n - off);
        off += len;
        cuts[k++] = off;
    }
    return k;
}

static void test_chunker_bounds_and_determinism(void **state)
{
    (void)state;
    size_t n = 24u << 20;
    uint8_t *data = xmalloc(n);
    fill(data, n, 1);
    cdc c;
    cdc_init(&c, 7, CDC_DATA_MIN, CDC_DATA_AVG, CDC_DATA_MAX);
    size_t cuts[256], again[256];
    size_t k = cut_all(&c, data, n, cuts, 256);
    assert_int_equal(cut_all(&c, data, n, again, 256), k);
    assert_memory_equal(cuts, again, k * sizeof(size_t));
    assert_int_equal(cuts[k - 1], n);
    for (size_t i = 0; i + 1 < k; i++) {
        size_t len = cuts[i] - (i ? cuts[i - 1] : 0);
        assert_true(len >= CDC_DATA_MIN && len <= CDC_DATA_MAX);
    }
    /* About 1 MiB on average: 24 MiB makes 12 to 48 chunks. */
    assert_in_range(k, 12, 48);
    /* Another seed cuts elsewhere. */
    cdc other;
    cdc_init(&other, 8, CDC_DATA_MIN, CDC_DATA_AVG, CDC_DATA_MAX);
    assert_true(cut_all(&other, data, n, again, 256) != k ||
                memcmp(cuts, again, k * sizeof(size_t)) != 0);
    free(data);
}

static void test_chunker_resyncs_after_insert(void **state)
{
    (void)state;
    size_t n = 16u << 20, ins = 1000;
    uint8_t *a = xmalloc(n), *b = xmalloc(n + ins);
    fill(a, n, 2);
    memcpy(b, a, n / 2);
    fill(b + n / 2, ins, 3);
    memcpy(b + n / 2 + ins, a + n / 2, n - n / 2);
    cdc c;
    cdc_init(&c, 9, CDC_DATA_MIN, CDC_DATA_AVG, CDC_DATA_MAX);
    size_t ca[128], cb[128];
    size_t ka = cut_all(&c, a, n, ca, 128), kb = cut_all(&c, b, n + ins, cb, 128);
    /* Every cut point after the insertion (past one chunk) reappears shifted by ins. */
    size_t same = 0, after = 0;
    for (size_t i = 0; i < ka; i++) {
        if (ca[i] <= n / 2 + CDC_DATA_MAX)
            continue;
        after++;
        for (size_t j = 0; j < kb; j++)
            same += cb[j] == ca[i] + ins;
    }
    assert_true(after > 0);
    assert_int_equal(same, after);
    free(a);
    free(b);
}

static void test_chunker_short_input(void **state)
{
    (void)state;
    uint8_t small[100] = {0};
    cdc c;
    cdc_init(&c, 1, CDC_META_MIN, CDC_META_AVG, CDC_META_MAX);
    assert_int_equal(cdc_cut(&c, small, sizeof(small)), sizeof(small));
    assert_int_equal(cdc_cut(&c, small, 0), 0);
    /* Zeros never match a mask: cut at the maximum. */
    uint8_t *zeros = xcalloc(1, CDC_META_MAX * 2);
    assert_int_equal(cdc_cut(&c, zeros, CDC_META_MAX * 2), CDC_META_MAX);
    free(zeros);
}

static void test_varints_and_reader(void **state)
{
    (void)state;
    buf b = {0};
    uint64_t values[] = {0, 1, 127, 128, 300, 1u << 31, UINT64_MAX};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        buf_put_varint(&b, values[i]);
    buf_put_str(&b, "héllo");
    buf_put_u32(&b, 0xdeadbeef);
    reader r;
    rd_init(&r, b.data, b.len);
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        assert_true(rd_varint(&r) == values[i]);
    char *s = rd_str(&r, 100);
    assert_string_equal(s, "héllo");
    free(s);
    assert_int_equal(rd_u32(&r), 0xdeadbeef);
    assert_int_equal(r.err, 0);
    rd_u8(&r);
    assert_int_equal(r.err, 1); /* past the end */
    /* A string longer than allowed, and a truncated varint, are errors. */
    rd_init(&r, b.data, b.len);
    for (int i = 0; i < 7; i++)
        rd_varint(&r);
    assert_null(rd_str(&r, 2));
    uint8_t cut[] = {0x80, 0x80};
    rd_init(&r, cut, sizeof(cut));
    rd_varint(&r);
    assert_int_equal(r.err, 1);
    buf_free(&b);
    char hex[9];
    uint8_t raw[4] = {0x01, 0xab, 0x00, 0xff}, back[4];
    hex_encode(raw, 4, hex);
    assert_string_equal(hex, "01ab00ff");
    assert_int_equal(hex_decode(hex, back, 4), 0);
    assert_memory_equal(raw, back, 4);
    assert_int_equal(hex_decode("01ab00f", back, 4), -1);
    assert_int_equal(hex_decode("01ab00fg", back, 4), -1);
}

static void test_names(void **state)
{
    (void)state;
    assert_true(valid_name("web-app_1.2"));
    assert_false(valid_name(""));
    assert_false(valid_name(".hidden"));
    assert_false(valid_name("a/b"));
    assert_false(valid_name(".."));
    assert_false(valid_name("a b"));
}

static void test_seal_and_keys(void **state)
{
    (void)state;
    keys k;
    json_t *enc = NULL;
    keys_create("correct horse", &k, &enc);
    assert_non_null(enc);
    assert_true(k.encrypted);
    keys back;
    rerr e = {0};
    assert_int_equal(keys_unlock(enc, "correct horse", &back, &e), 0);
    assert_memory_equal(&k, &back, sizeof(k));
    rerr wrong = {0};
    assert_int_equal(keys_unlock(enc, "wrong", &back, &wrong), -1);
    assert_int_equal(wrong.kind, E_INVALID);
    assert_non_null(strstr(wrong.msg, "wrong passphrase"));
    rerr none = {0};
    assert_int_equal(keys_unlock(enc, NULL, &back, &none), -1);
    json_decref(enc);

    const char msg[] = "attack at dawn";
    buf sealed = {0}, opened = {0};
    seal_buf(&k, "aad", msg, sizeof(msg), &sealed);
    assert_int_equal(sealed.len, sizeof(msg) + SEAL_OVERHEAD);
    assert_int_equal(unseal_buf(&k, "aad", sealed.data, sealed.len, &opened), 0);
    assert_memory_equal(opened.data, msg, sizeof(msg));
    opened.len = 0;
    assert_int_equal(unseal_buf(&k, "other", sealed.data, sealed.len, &opened), -1);
    sealed.data[SEAL_NONCE + 3] ^= 1;
    assert_int_equal(unseal_buf(&k, "aad", sealed.data, sealed.len, &opened), -1);
    buf_free(&sealed);
    buf_free(&opened);

    /* Ids: plain SHA-256 without encryption, keyed (and different) with it. */
    keys plain = {0};
    uint8_t a[ID_LEN], b[ID_LEN], c[ID_LEN];
    hasher *hp = hasher_new(&plain), *hk = hasher_new(&k);
    hasher_id(hp, msg, sizeof(msg), a);
    sha256(msg, sizeof(msg), b);
    assert_memory_equal(a, b, ID_LEN);
    hasher_id(hk, msg, sizeof(msg), c);
    assert_memory_not_equal(a, c, ID_LEN);
    hasher_id(hk, msg, sizeof(msg), b);
    assert_memory_equal(b, c, ID_LEN); /* a keyed id is stable */
    hasher_free(hp);
    hasher_free(hk);
}

static char *make_temp_dir(void);
static void remove_tree(const char *dir);

static void pack_round_trip(int encrypted)
{
    char *dir = make_temp_dir();
    json_t *vault = json_pack("{s:s,s:s?}", "path", dir, "passphrase", encrypted ? "pw" : NULL);
    storage *s = NULL;
    rerr e = {0};
    assert_int_equal(storage_open("st", vault, 1, &s, &e), 0);
    assert_int_equal(s->keys.encrypted, encrypted);
    codec *c = codec_new(&s->keys, 3);
    pack_writer pw = {.s = s};
    uint8_t *random = xmalloc(300000), text[200000];
    fill(random, 300000, 5);
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (uint8_t)("abcdefgh\n"[i % 9]);
    uint8_t id1[ID_LEN], id2[ID_LEN];
    hasher_id(c->hash, random, 300000, id1);
    hasher_id(c->hash, text, sizeof(text), id2);
    assert_int_equal(pack_add(&pw, c, id1, BLOB_DATA, random, 300000, &e), 0);
    assert_int_equal(pack_add(&pw, c, id2, BLOB_TREE, text, sizeof(text), &e), 0);
    assert_int_equal(pw.entries[0].flags & BLOB_COMPRESSED, 0); /* random: stored as is */
    assert_true(pw.entries[1].flags & BLOB_COMPRESSED);
    assert_true(pw.entries[1].stored < 2000);
    pack *p = pack_finish(&pw, c, &e);
    assert_non_null(p);
    assert_null(pack_finish(&pw, c, &e)); /* the writer is empty again */
    assert_int_equal(e.kind, E_NONE);
    uint8_t want[ID_LEN];
    memcpy(want, p->id, ID_LEN);
    assert_int_equal(pack_commit(p, &e), 0);
    pack_free(p);
    char key[96];
    pack_key(want, key, sizeof(key));
    buf data = {0};
    assert_int_equal(stor_get(s, key, 0, 0, &data, &e), ST_OK);
    blob_entry *entries;
    size_t n;
    uint8_t pid[ID_LEN];
    assert_int_equal(pack_parse(c, data.data, data.len, &entries, &n, pid), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(pid, want, ID_LEN);
    buf out = {0};
    char why[200];
    assert_int_equal(
        blob_decode(c, &entries[0], data.data + entries[0].offset, &out, why, sizeof(why)), 0);
    assert_memory_equal(out.data, random, 300000);
    assert_int_equal(
        blob_decode(c, &entries[1], data.data + entries[1].offset, &out, why, sizeof(why)), 0);
    assert_memory_equal(out.data, text, sizeof(text));
    /* One flipped byte is caught and the chunk named. */
    data.data[entries[0].offset + 1000] ^= 0x40;
    assert_int_equal(
        blob_decode(c, &entries[0], data.data + entries[0].offset, &out, why, sizeof(why)), -1);
    char hex[HEX_LEN + 1];
    hex_encode(id1, ID_LEN, hex);
    assert_non_null(strstr(why, hex));
    /* A damaged trailer is refused, or (without encryption) no longer matches the id. */
    data.data[data.len - 10] ^= 1;
    blob_entry *none = NULL;
    uint8_t other[ID_LEN];
    int parsed = pack_parse(c, data.data, data.len, &none, &n, other);
    assert_true(parsed == -1 || (!encrypted && memcmp(other, want, ID_LEN) != 0));
    free(none);
    free(entries);
    buf_free(&out);
    buf_free(&data);
    pack_writer_free(&pw);
    free(random);
    codec_free(c);
    storage_close(s);
    json_decref(vault);
    remove_tree(dir);
    free(dir);
}

static void test_pack_plain(void **state)
{
    (void)state;
    pack_round_trip(0);
}

static void test_pack_encrypted(void **state)
{
    (void)state;
    pack_round_trip(1);
}

static void test_compression_names(void **state)
{
    (void)state;
    assert_int_equal(compression_level("fast"), 1);
    assert_int_equal(compression_level("default"), 3);
    assert_int_equal(compression_level("high"), 9);
    assert_int_equal(compression_level("none"), 0);
    assert_int_equal(compression_level("max"), -1);
    assert_int_equal(compression_level(NULL), -1);
}

static void test_tree_round_trip(void **state)
{
    (void)state;
    tree t = {0};
    const char *paths[] = {"", "dir", "dir/ünïcødé 名前", "dir/link", "dir/hard", "fifo"};
    uint8_t kinds[] = {T_DIR, T_DIR, T_FILE, T_SYMLINK, T_HARDLINK, T_FIFO};
    for (size_t i = 0; i < 6; i++) {
        tnode *n = add_node(&t);
        n->path = xstrdup(paths[i]);
        n->kind = kinds[i];
        n->mode = 0644 + (uint32_t)i;
        n->uid = 1000 + (uint32_t)i;
        n->gid = 2000;
        n->mtime_sec = -5 + (int64_t)i; /* before 1970 too */
        n->mtime_nsec = 999999999;
    }
    tnode *f = &t.nodes[2];
    f->size = 5000 + 100;
    f->ino = 42;
    f->ctime_sec = 1700000000;
    f->nchunks = 2;
    f->chunks = xcalloc(2, sizeof(chunk_ref));
    f->chunks[0].len = 5000;
    memset(f->chunks[0].id, 0xab, ID_LEN);
    f->chunks[1].len = 100;
    f->chunks[1].zero = 1;
    t.nodes[3].target = xstrdup("../elsewhere");
    t.nodes[4].target = xstrdup("dir/ünïcødé 名前");
    buf enc = {0};
    tree_encode(&t, &enc);
    tree back = {0};
    assert_int_equal(tree_decode(enc.data, enc.len, &back), 0);
    assert_int_equal(back.n, 6);
    for (size_t i = 0; i < 6; i++) {
        assert_string_equal(back.nodes[i].path, paths[i]);
        assert_int_equal(back.nodes[i].kind, kinds[i]);
        assert_int_equal(back.nodes[i].mode, t.nodes[i].mode);
        assert_int_equal(back.nodes[i].uid, t.nodes[i].uid);
        assert_true(back.nodes[i].mtime_sec == t.nodes[i].mtime_sec);
        assert_int_equal(back.nodes[i].mtime_nsec, 999999999);
    }
    assert_int_equal(back.nodes[2].nchunks, 2);
    assert_memory_equal(back.nodes[2].chunks, f->chunks, 2 * sizeof(chunk_ref));
    assert_string_equal(back.nodes[3].target, "../elsewhere");
    /* The lookup map finds every path. */
    tree_map m;
    tree_map_build(&m, &back);
    for (size_t i = 0; i < 6; i++)
        assert_ptr_equal(tree_map_find(&m, paths[i]), &back.nodes[i]);
    assert_null(tree_map_find(&m, "nope"));
    tree_map_free(&m);
    /* Truncated or altered encodings are refused, never crash. */
    for (size_t cut = 0; cut < enc.len; cut += 7) {
        tree bad = {0};
        assert_int_equal(tree_decode(enc.data, cut, &bad), -1);
        tree_free(&bad);
    }
    tree_free(&back);
    tree_free(&t);
    buf_free(&enc);
}

static char *make_temp_dir(void)
{
    char tmpl[] = "/tmp/test_repo.XXXXXX";
    return xstrdup(mkdtemp(tmpl));
}

static void remove_tree(const char *dir)
{
    char *cmd = xasprintf("rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

static void test_tree_scan(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char *p;
    p = xasprintf("%s/b", dir), mkdir(p, 0750), free(p);
    p = xasprintf("%s/b/file", dir);
    int fd = open(p, O_WRONLY | O_CREAT, 0640);
    assert_int_equal(write(fd, "hello", 5), 5);
    close(fd);
    char *hard = xasprintf("%s/a-hard", dir);
    assert_int_equal(link(p, hard), 0);
    char *sym = xasprintf("%s/c", dir);
    assert_int_equal(symlink("b/file", sym), 0);
    tree t = {0};
    rerr e = {0};
    assert_int_equal(tree_scan(dir, &t, NULL, &e), 0);
    assert_int_equal(t.n, 5);
    /* Sorted pre-order: "", a-hard, b, b/file, c; the first link seen holds the content. */
    assert_string_equal(t.nodes[1].path, "a-hard");
    assert_int_equal(t.nodes[1].kind, T_FILE);
    assert_int_equal(t.nodes[1].size, 5);
    assert_string_equal(t.nodes[2].path, "b");
    assert_int_equal(t.nodes[2].mode, 0750);
    assert_int_equal(t.nodes[3].kind, T_HARDLINK);
    assert_string_equal(t.nodes[3].target, "a-hard");
    assert_int_equal(t.nodes[4].kind, T_SYMLINK);
    assert_string_equal(t.nodes[4].target, "b/file");
    tree_free(&t);
    rerr missing = {0};
    char *gone = xasprintf("%s/nope", dir);
    assert_int_equal(tree_scan(gone, &t, NULL, &missing), -1);
    assert_int_equal(missing.kind, E_NOTFOUND);
    tree_free(&t);
    free(gone);
    free(p);
    free(hard);
    free(sym);
    remove_tree(dir);
    free(dir);
}

static void test_index_table(void **state)
{
    (void)state;
    chunk_index ix;
    idx_init(&ix);
    uint8_t pid[ID_LEN];
    fill(pid, ID_LEN, 11);
    uint32_t p = idx_pack_add(&ix, pid, 123);
    assert_int_equal(idx_pack_add(&ix, pid, 456), p);
    assert_int_equal(idx_pack_find(&ix, pid), p);
    for (uint32_t i = 0; i < 100000; i++) {
        idx_entry e = {.pack = p, .offset = i, .raw = i};
        fill(e.id, ID_LEN, i + 100);
        int inserted = 0;
        idx_insert(&ix, &e, &inserted);
        assert_true(inserted);
    }
    assert_int_equal(ix.count, 100000);
    for (uint32_t i = 0; i < 100000; i += 997) {
        uint8_t id[ID_LEN];
        fill(id, ID_LEN, i + 100);
        idx_entry *e = idx_find(&ix, id);
        assert_non_null(e);
        assert_int_equal(e->offset, i);
    }
    uint8_t absent[ID_LEN];
    fill(absent, ID_LEN, 99);
    assert_null(idx_find(&ix, absent));
    idx_free(&ix);
}

static int count_key(void *arg, const char *key, uint64_t size)
{
    (void)key;
    (void)size;
    (*(int *)arg)++;
    return 0;
}

static void test_local_provider(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char *root = xasprintf("%s/store", dir);
    json_t *vault = json_pack("{s:s,s:s}", "provider", "local", "path", root);
    rerr e = {0};
    void *be = stor_local_ops.open(vault, &e);
    assert_non_null(be);
    assert_int_equal(stor_local_ops.put(be, "data/ab/x", "0123456789", 10, 0, &e), ST_OK);
    assert_int_equal(stor_local_ops.put(be, "data/ab/x", "abc", 3, STOR_PUT_EXCLUSIVE, &e),
                     ST_EXISTS);
    buf out = {0};
    assert_int_equal(stor_local_ops.get(be, "data/ab/x", 2, 3, &out, &e), ST_OK);
    assert_int_equal(out.len, 3);
    assert_memory_equal(out.data, "234", 3);
    assert_int_equal(stor_local_ops.get(be, "data/ab/missing", 0, 0, &out, &e), ST_NOTFOUND);
    rerr shortread = {0};
    assert_int_equal(stor_local_ops.get(be, "data/ab/x", 5, 10, &out, &shortread), ST_ERROR);
    assert_int_equal(shortread.kind, E_CORRUPT);
    assert_int_equal(stor_local_ops.put(be, "index/y", "i", 1, 0, &e), ST_OK);
    int n = 0;
    assert_int_equal(stor_local_ops.list(be, "data/", count_key, &n, &e), ST_OK);
    assert_int_equal(n, 1);
    n = 0;
    assert_int_equal(stor_local_ops.list(be, "nothing/", count_key, &n, &e), ST_OK);
    assert_int_equal(n, 0);
    uint64_t size = 0;
    assert_int_equal(stor_local_ops.exists(be, "data/ab/x", &size, &e), ST_OK);
    assert_int_equal(size, 10);
    assert_int_equal(stor_local_ops.del(be, "data/ab/x", &e), ST_OK);
    assert_int_equal(stor_local_ops.del(be, "data/ab/x", &e), ST_NOTFOUND);
    stor_local_ops.close(be);
    json_decref(vault);
    /* A storage whose parent directory is missing (an unmounted disk) is transient. */
    vault = json_pack("{s:s}", "path", "/nonexistent-ferry-test/store");
    rerr gone = {0};
    assert_null(stor_local_ops.open(vault, &gone));
    assert_int_equal(gone.kind, E_TRANSIENT);
    json_decref(vault);
    vault = json_pack("{s:s}", "path", "relative/path");
    rerr rel = {0};
    assert_null(stor_local_ops.open(vault, &rel));
    assert_int_equal(rel.kind, E_INVALID);
    json_decref(vault);
    buf_free(&out);
    free(root);
    remove_tree(dir);
    free(dir);
}

/*
 * Restore points on a machine (issue 13, point 7): "latest" and tags among the machine's
 * own snapshots, an id among all; snapshots of one second ordered by unix_time_ns.
 */
static void test_resolve_per_machine(void **state)
{
    (void)state;
    snap_list l = {.n = 4, .items = calloc(4, sizeof(snap_info))};
    const char *ids[] = {"w1", "a1", "w2", "a2"};
    const char *machines[] = {"web", "app", "web", "app"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(l.items[i].id, sizeof(l.items[i].id), "%s", ids[i]);
        l.items[i].doc = json_pack("{s:s,s:s}", "machine", machines[i], "tags", "release");
    }
    assert_string_equal(snap_resolve(&l, "latest")->id, "a2");
    assert_string_equal(snap_resolve_on(&l, "latest", "web")->id, "w2");
    assert_string_equal(snap_resolve_on(&l, NULL, "app")->id, "a2");
    assert_string_equal(snap_resolve_on(&l, "release", "web")->id, "w2");
    assert_string_equal(snap_resolve_on(&l, "a1", "web")->id, "a1"); /* an id: any machine */
    assert_null(snap_resolve_on(&l, "latest", "db"));
    assert_null(snap_resolve_on(&l, "latest", NULL)); /* every manifest names a machine */
    json_object_del(l.items[1].doc, "machine");
    assert_string_equal(snap_resolve_on(&l, "latest", NULL)->id, "a1");
    assert_string_equal(snap_machine(l.items[0].doc), "web");
    assert_null(snap_machine(l.items[1].doc));
    snap_list_free(&l);

    /* Two snapshots in one second: the later push is "latest", whatever the ids. */
    char *dir = make_temp_dir();
    json_t *vault = json_pack("{s:s}", "path", dir);
    storage *s = NULL;
    rerr e = {0};
    assert_int_equal(storage_open("st", vault, 1, &s, &e), 0);
    json_t *first = json_pack("{s:I,s:I,s:[]}", "unix_time", (json_int_t)100, "unix_time_ns",
                              (json_int_t)100000000500, "tree");
    json_t *second = json_pack("{s:I,s:I,s:[]}", "unix_time", (json_int_t)100, "unix_time_ns",
                               (json_int_t)100000000900, "tree");
    json_t *old = json_pack("{s:I,s:[]}", "unix_time", (json_int_t)99, "tree");
    assert_int_equal(snap_write(s, "web", "zz-first", first, &e), ST_OK);
    assert_int_equal(snap_write(s, "web", "aa-second", second, &e), ST_OK);
    assert_int_equal(snap_write(s, "web", "old", old, &e), ST_OK);
    assert_int_equal(snap_list_read(s, "web", &l, &e), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.items[0].id, "old");
    assert_string_equal(snap_resolve(&l, "latest")->id, "aa-second");
    snap_list_free(&l);
    storage_close(s);
    json_decref(first);
    json_decref(second);
    json_decref(old);
    json_decref(vault);
    remove_tree(dir);
    free(dir);
}

static void test_storage_index_and_snapshots(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    json_t *vault = json_pack("{s:s,s:s}", "path", dir, "passphrase", "pw");
    storage *s = NULL;
    rerr e = {0};
    assert_int_equal(storage_open("st", vault, 0, &s, &e), -1); /* nothing pushed yet */
    assert_int_equal(e.kind, E_NOTFOUND);
    memset(&e, 0, sizeof(e));
    assert_int_equal(storage_open("st", vault, 1, &s, &e), 0);
    assert_true(s->keys.encrypted);
    /* Index files round-trip through the storage. */
    blob_entry be[2] = {{.offset = 4, .stored = 10, .raw = 20},
                        {.offset = 14, .stored = 5, .raw = 5, .type = BLOB_TREE}};
    fill(be[0].id, ID_LEN, 1);
    fill(be[1].id, ID_LEN, 2);
    uint8_t pid[ID_LEN];
    fill(pid, ID_LEN, 3);
    idx_group g = {.pack_id = pid, .time = 77, .entries = be, .n = 2};
    char key[80];
    assert_int_equal(idx_write(s, &g, 1, key, &e), 0);
    chunk_index ix;
    idx_init(&ix);
    assert_int_equal(idx_load(s, &ix, &e), 0);
    assert_int_equal(ix.count, 2);
    assert_int_equal(ix.npacks, 1);
    assert_true(ix.packs[0].time == 77);
    assert_int_equal(idx_find(&ix, be[1].id)->type, BLOB_TREE);
    idx_free(&ix);
    /* Manifests: exclusive writes, listing, resolution by id, tag and latest. */
    json_t *m1 = json_pack("{s:I,s:[],s:{s:s}}", "unix_time", (json_int_t)100, "tree", "tags",
                           "type", "pre-deployment");
    json_t *m2 =
        json_pack("{s:I,s:[],s:[s]}", "unix_time", (json_int_t)200, "tree", "tags", "nightly");
    assert_int_equal(snap_write(s, "web", "one", m1, &e), ST_OK);
    assert_int_equal(snap_write(s, "web", "one", m1, &e), ST_EXISTS);
    assert_int_equal(snap_write(s, "web", "two", m2, &e), ST_OK);
    assert_int_equal(snap_write(s, "db", "x", m2, &e), ST_OK);
    snap_list l;
    assert_int_equal(snap_list_read(s, "web", &l, &e), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(snap_resolve(&l, "latest")->id, "two");
    assert_string_equal(snap_resolve(&l, "one")->id, "one");
    assert_string_equal(snap_resolve(&l, "pre-deployment")->id, "one");
    assert_string_equal(snap_resolve(&l, "type=pre-deployment")->id, "one");
    assert_string_equal(snap_resolve(&l, "nightly")->id, "two");
    assert_null(snap_resolve(&l, "nope"));
    snap_list_free(&l);
    assert_int_equal(snap_list_read(s, NULL, &l, &e), 0);
    assert_int_equal(l.n, 3);
    snap_list_free(&l);
    storage_close(s);
    /* The wrong passphrase, or none, does not open it. */
    json_object_set_new(vault, "passphrase", json_string("nope"));
    rerr bad = {0};
    assert_int_equal(storage_open("st", vault, 1, &s, &bad), -1);
    assert_int_equal(bad.kind, E_INVALID);
    json_object_del(vault, "passphrase");
    rerr none = {0};
    assert_int_equal(storage_open("st", vault, 1, &s, &none), -1);
    assert_non_null(strstr(none.msg, "passphrase"));
    json_decref(m1);
    json_decref(m2);
    json_decref(vault);
    remove_tree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunker_bounds_and_determinism),
        cmocka_unit_test(test_chunker_resyncs_after_insert),
        cmocka_unit_test(test_chunker_short_input),
        cmocka_unit_test(test_varints_and_reader),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_seal_and_keys),
        cmocka_unit_test(test_pack_plain),
        cmocka_unit_test(test_pack_encrypted),
        cmocka_unit_test(test_compression_names),
        cmocka_unit_test(test_tree_round_trip),
        cmocka_unit_test(test_tree_scan),
        cmocka_unit_test(test_index_table),
        cmocka_unit_test(test_local_provider),
        cmocka_unit_test(test_storage_index_and_snapshots),
        cmocka_unit_test(test_resolve_per_machine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
