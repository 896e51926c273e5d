/* The dashboard's files built into ferry (host/web/assets.c, the table scripts/web_assets.sh
 * generates from host/web/assets/): each file is served at its path with its type and its
 * bytes exactly as in the tree; nothing else is found. Runs from the source tree's root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "assets.h"

/* The file's bytes, or NULL; *len its size. */
static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0, got;
    do {
        if (n == cap && (buf = realloc(buf, cap = cap ? cap * 2 : 65536)) == NULL)
            break;
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    *len = n;
    return buf;
}

static void test_files_as_in_the_tree(void **state)
{
    (void)state;
    const struct {
        const char *path, *file, *type;
    } want[] = {{"/", "host/web/assets/index.html", "text/html; charset=utf-8"},
                {"/index.html", "host/web/assets/index.html", "text/html; charset=utf-8"},
                {"/app.js", "host/web/assets/app.js", "text/javascript; charset=utf-8"},
                {"/app.css", "host/web/assets/app.css", "text/css; charset=utf-8"},
                {"/favicon.svg", "host/web/assets/favicon.svg", "image/svg+xml"}};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct web_asset *a = web_asset_find(want[i].path);
        assert_non_null(a);
        assert_string_equal(a->content_type, want[i].type);
        size_t len = 0;
        unsigned char *disk = slurp(want[i].file, &len);
        assert_non_null(disk);
        assert_int_equal(a->len, len);
        assert_memory_equal(a->data, disk, len);
        assert_int_equal(a->data[a->len], 0); /* a NUL after the bytes, not counted */
        free(disk);
    }
}

static void test_nothing_else(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "/x",
                         "app.js",
                         "/app.js/",
                         "/APP.JS",
                         "/app.js?v=1",
                         "//app.js",
                         "/../host/web/assets/app.js",
                         "/assets/app.js",
                         "/index.htm",
                         "/api/v1/queue",
                         NULL};
    for (size_t i = 0; bad[i]; i++)
        assert_null(web_asset_find(bad[i]));
    assert_null(web_asset_find(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files_as_in_the_tree),
        cmocka_unit_test(test_nothing_else),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
