/*
 * Regression tests for hard links whose first link changes while a push runs (issue 13): the
 * tree names the first link of a multiply-linked file as the data holder and the others as
 * hard links to it. When that first link vanishes, or is replaced by a directory, a FIFO or
 * another file between the scan and the read, the push used to keep hard links to a path that
 * is no regular file of the snapshot, and every restore of it failed. The race is made
 * deterministic with backup.c's test-only hook backup_test_after_scan, which runs after the
 * scan and before any file is read. Each case pushes with the real repo_backup into a local
 * storage, restores with the real repo_restore, and checks every surviving link's content
 * byte for byte and which of them share an inode. The plugin's sources are compiled in, as in
 * test_repo_restore.c.
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "repo_backup_unity.h"
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

/* Large enough for several chunks, so a wrong holder cannot pass by accident. */
#define DATA_LEN ((size_t)3 << 20)

/* What the hook does to the source directory between the scan and the read. */
enum race {
    RACE_NONE,
    RACE_REMOVE_FIRST,       /* a removed */
    RACE_DIR_FIRST,          /* a replaced by a directory */
    RACE_FIFO_FIRST,         /* a replaced by a FIFO (an open without O_NONBLOCK would hang) */
    RACE_SOCKET_FIRST,       /* a replaced by a socket (its open fails with ENXIO) */
    RACE_OTHER_FILE_FIRST,   /* a renamed over by another regular file */
    RACE_REMOVE_FIRST_TWO,   /* a and b removed: c holds the data */
    RACE_DIR_FIRST_REMOVE_B, /* a a directory, b removed */
    RACE_REMOVE_B            /* b removed (a is gone already) */
};

static enum race the_race;

static void write_data(const char *path, uint8_t seed)
{
    uint8_t *d = xmalloc(DATA_LEN);
    uint32_t x = 2463534242u ^ seed;
    for (size_t i = 0; i < DATA_LEN; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        d[i] = (uint8_t)x;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, d, DATA_LEN), (ssize_t)DATA_LEN);
    close(fd);
    free(d);
}

/* Non-zero when path holds exactly what write_data(seed) wrote. */
static int holds(const char *path, uint8_t seed)
{
    char want[600];
    snprintf(want, sizeof(want), "%s.want", path);
    write_data(want, seed);
    char *cmd = xasprintf("cmp -s '%s' '%s'", path, want);
    int same = system(cmd) == 0;
    free(cmd);
    unlink(want);
    return same;
}

static void on_after_scan(const char *src)
{
    char a[512], b[512], tmp[512];
    snprintf(a, sizeof(a), "%s/a", src);
    snprintf(b, sizeof(b), "%s/b", src);
    snprintf(tmp, sizeof(tmp), "%s/.tmp", src);
    switch (the_race) {
    case RACE_NONE:
        break;
    case RACE_REMOVE_FIRST:
        assert_int_equal(unlink(a), 0);
        break;
    case RACE_DIR_FIRST:
        assert_int_equal(unlink(a), 0);
        assert_int_equal(mkdir(a, 0755), 0);
        break;
    case RACE_FIFO_FIRST:
        assert_int_equal(unlink(a), 0);
        assert_int_equal(mkfifo(a, 0644), 0);
        break;
    case RACE_SOCKET_FIRST: {
        assert_int_equal(unlink(a), 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        assert_true(strlen(a) < sizeof(sa.sun_path));
        memcpy(sa.sun_path, a, strlen(a) + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(fd); /* the socket file stays */
        break;
    }
    case RACE_OTHER_FILE_FIRST:
        write_data(tmp, 2);
        assert_int_equal(rename(tmp, a), 0);
        break;
    case RACE_REMOVE_FIRST_TWO:
        assert_int_equal(unlink(a), 0);
        assert_int_equal(unlink(b), 0);
        break;
    case RACE_DIR_FIRST_REMOVE_B:
        assert_int_equal(unlink(a), 0);
        assert_int_equal(mkdir(a, 0755), 0);
        assert_int_equal(unlink(b), 0);
        break;
    case RACE_REMOVE_B:
        assert_int_equal(unlink(b), 0);
        break;
    }
}

typedef struct fixture {
    char *dir, *src, *store;
    json_t *vault;
    storage *s;
} fixture;

/* A storage and a source directory: a, b, c and d/e links of one file, and z alone. With
 * as_snapshot the source lies where repo_snapshot puts local snapshots. */
static void fixture_open(fixture *f, int as_snapshot)
{
    char tmpl[] = "/tmp/test_hardlink.XXXXXX";
    f->dir = xstrdup(mkdtemp(tmpl));
    f->store = xasprintf("%s/store", f->dir);
    if (as_snapshot) {
        char *snaps = xasprintf("%s/snapshots", f->dir), *repo = xasprintf("%s/r", snaps);
        assert_int_equal(mkdir(snaps, 0755), 0);
        assert_int_equal(mkdir(repo, 0755), 0);
        f->src = xasprintf("%s/s1", repo);
        free(snaps);
        free(repo);
    } else {
        f->src = xasprintf("%s/src", f->dir);
    }
    assert_int_equal(mkdir(f->src, 0755), 0);
    char a[512], p[512];
    snprintf(a, sizeof(a), "%s/a", f->src);
    write_data(a, 1);
    const char *others[] = {"b", "c", "d/e"};
    snprintf(p, sizeof(p), "%s/d", f->src);
    assert_int_equal(mkdir(p, 0755), 0);
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s/%s", f->src, others[i]);
        assert_int_equal(link(a, p), 0);
    }
    snprintf(p, sizeof(p), "%s/z", f->src);
    write_data(p, 3);
    f->vault = json_pack("{s:s,s:s}", "provider", "local", "path", f->store);
    rerr e = {0};
    assert_int_equal(storage_open("st", f->vault, 1, &f->s, &e), 0);
}

static void fixture_close(fixture *f)
{
    storage_close(f->s);
    json_decref(f->vault);
    char *cmd = xasprintf("rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(f->dir);
    free(f->src);
    free(f->store);
}

static void push(fixture *f, const char *id, int as_snapshot, enum race race)
{
    backup_req req = {.repository = "r",
                      .source = f->src,
                      .source_is_snapshot = as_snapshot,
                      .snapshot_id = id,
                      .hostname = "h",
                      .machine = "m",
                      .level = 1,
                      .verify = 1,
                      .threads = 2};
    the_race = race;
    backup_test_after_scan = on_after_scan;
    json_t *result = NULL;
    rerr e = {0};
    int rc = repo_backup(f->s, &req, NULL, &result, &e);
    backup_test_after_scan = NULL;
    if (rc != 0)
        fail_msg("push %s failed: %s", id, e.msg);
    json_decref(result);
}

/* Restores snapshot id into <dir>/<id>.out; returns that path (to free). */
static char *pull(fixture *f, const char *id)
{
    char *dest = xasprintf("%s/%s.out", f->dir, id);
    restore_req req = {.repository = "r", .point = id, .dest = dest, .verify = 1, .threads = 2};
    json_t *result = NULL;
    rerr e = {0};
    if (repo_restore(f->s, &req, NULL, &result, &e) != 0)
        fail_msg("the snapshot %s cannot be restored: %s", id, e.msg);
    json_decref(result);
    return dest;
}

/* What a restored entry must be: absent, or a regular file with write_data(seed)'s bytes,
 * linked to the other entries of the same group (group 0: no link expected). */
typedef struct expect {
    const char *path;
    int present;
    uint8_t seed;
    int group;
} expect;

static void check(const char *dest, const expect *want, size_t n)
{
    struct stat st[8];
    for (size_t i = 0; i < n; i++) {
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", dest, want[i].path);
        if (!want[i].present) {
            if (lstat(p, &st[i]) == 0)
                fail_msg("%s was restored but had vanished from the source", want[i].path);
            continue;
        }
        if (lstat(p, &st[i]) != 0 || !S_ISREG(st[i].st_mode))
            fail_msg("%s is not restored as a regular file", want[i].path);
        if (!holds(p, want[i].seed))
            fail_msg("%s does not hold its content", want[i].path);
        for (size_t j = 0; j < i; j++) {
            if (!want[j].present)
                continue;
            int linked = st[i].st_ino == st[j].st_ino;
            int should = want[i].group && want[i].group == want[j].group;
            if (linked != should)
                fail_msg("%s and %s: %s", want[i].path, want[j].path,
                         should ? "not hard-linked" : "hard-linked but should not be");
        }
    }
}

/* Pushes with race, restores, checks that a is as first_present says and that b, c, d/e that
 * survive are one inode holding the original data; z is untouched throughout. */
static void run_case(enum race race, int as_snapshot, int a_present, uint8_t a_seed, int a_group,
                     int b_present)
{
    fixture f;
    fixture_open(&f, as_snapshot);
    push(&f, "s1", as_snapshot, race);
    char *dest = pull(&f, "s1");
    expect want[] = {{"a", a_present, a_seed, a_group},
                     {"b", b_present, 1, 1},
                     {"c", 1, 1, 1},
                     {"d/e", 1, 1, 1},
                     {"z", 1, 3, 0}};
    check(dest, want, sizeof(want) / sizeof(want[0]));
    free(dest);
    fixture_close(&f);
}

static void test_no_race(void **state)
{
    (void)state;
    run_case(RACE_NONE, 0, 1, 1, 1, 1);
}

static void test_first_removed(void **state)
{
    (void)state;
    run_case(RACE_REMOVE_FIRST, 0, 0, 0, 0, 1);
}

static void test_first_removed_local_snapshot(void **state)
{
    (void)state;
    run_case(RACE_REMOVE_FIRST, 1, 0, 0, 0, 1);
}

static void test_first_replaced_by_directory(void **state)
{
    (void)state;
    run_case(RACE_DIR_FIRST, 0, 0, 0, 0, 1);
}

static void test_first_replaced_by_fifo(void **state)
{
    (void)state;
    run_case(RACE_FIFO_FIRST, 1, 0, 0, 0, 1);
}

static void test_first_replaced_by_socket(void **state)
{
    (void)state;
    run_case(RACE_SOCKET_FIRST, 0, 0, 0, 0, 1);
}

/* a is stored with its new content, on its own; the other links keep the old one together. */
static void test_first_replaced_by_other_file(void **state)
{
    (void)state;
    run_case(RACE_OTHER_FILE_FIRST, 0, 1, 2, 0, 1);
}

/* The next link vanished too: the one after it holds the data. */
static void test_first_two_removed(void **state)
{
    (void)state;
    run_case(RACE_REMOVE_FIRST_TWO, 0, 0, 0, 0, 0);
    run_case(RACE_DIR_FIRST_REMOVE_B, 1, 0, 0, 0, 0);
}

/* A second push takes the unchanged files over from the first unread: a first link that
 * vanishes then is still a file of the snapshot, as scanned. The third push's first link (b,
 * a hard link in the second snapshot, so read) vanishes before it is read. */
static void test_second_push(void **state)
{
    (void)state;
    fixture f;
    fixture_open(&f, 0);
    push(&f, "s1", 0, RACE_NONE);
    push(&f, "s2", 0, RACE_REMOVE_FIRST);
    char *dest = pull(&f, "s2");
    expect reused[] = {
        {"a", 1, 1, 1}, {"b", 1, 1, 1}, {"c", 1, 1, 1}, {"d/e", 1, 1, 1}, {"z", 1, 3, 0}};
    check(dest, reused, 5);
    free(dest);
    push(&f, "s3", 0, RACE_REMOVE_B);
    dest = pull(&f, "s3");
    expect promoted[] = {
        {"a", 0, 0, 0}, {"b", 0, 0, 0}, {"c", 1, 1, 1}, {"d/e", 1, 1, 1}, {"z", 1, 3, 0}};
    check(dest, promoted, 5);
    free(dest);
    fixture_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_race),
        cmocka_unit_test(test_first_removed),
        cmocka_unit_test(test_first_removed_local_snapshot),
        cmocka_unit_test(test_first_replaced_by_directory),
        cmocka_unit_test(test_first_replaced_by_socket),
        cmocka_unit_test(test_first_replaced_by_other_file),
        cmocka_unit_test(test_first_two_removed),
        cmocka_unit_test(test_second_push),
        cmocka_unit_test(test_first_replaced_by_fifo), /* last: hangs without O_NONBLOCK */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
