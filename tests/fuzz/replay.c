/*
 * Replays one harness's corpus without libFuzzer, for `make check`: feeds every file of
 * tests/fuzz/corpus/NAME/ (NAME from the binary's name, fuzz_NAME; or the directory given as
 * the only argument) to LLVMFuzzerTestOneInput once, in name order, and prints TAP. The
 * binary is built with ASan and UBSan, so a seed that once crashed or hit undefined
 * behaviour aborts the run; the "# replaying" line before each file names the culprit.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    unsigned char *p = malloc(cap);
    size_t got;
    while (p && (got = fread(p + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap)
            p = realloc(p, cap *= 2);
    }
    fclose(f);
    if (p == NULL)
        abort();
    /* An exact-size copy: a read one byte past the input must hit ASan's redzone. */
    unsigned char *exact = malloc(n ? n : 1);
    if (exact == NULL)
        abort();
    if (n)
        memcpy(exact, p, n);
    free(p);
    *len = n;
    return exact;
}

static int regular(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

int main(int argc, char **argv)
{
    char dir[4096];
    if (argc > 1) {
        snprintf(dir, sizeof(dir), "%s", argv[1]);
    } else {
        const char *base = strrchr(argv[0], '/');
        base = base ? base + 1 : argv[0];
        const char *name = strncmp(base, "fuzz_", 5) == 0 ? base + 5 : base;
        const char *root = getenv("FERRY_ROOT");
        snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/%s", root && *root ? root : ".", name);
    }
    struct dirent **names = NULL;
    int n = scandir(dir, &names, regular, alphasort);
    if (n <= 0) {
        printf("1..1\nnot ok 1 - corpus %s: %s\n", dir, n < 0 ? strerror(errno) : "empty");
        return 1;
    }
    printf("1..%d\n", n);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        char path[8192];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
        size_t len = 0;
        unsigned char *data = read_file(path, &len);
        if (data == NULL) {
            printf("not ok %d - %s: %s\n", i + 1, path, strerror(errno));
            failed = 1;
        } else {
            printf("# replaying %s (%zu bytes)\n", path, len);
            fflush(stdout);
            LLVMFuzzerTestOneInput(data, len);
            free(data);
            printf("ok %d - %s\n", i + 1, path);
        }
        fflush(stdout);
        free(names[i]);
    }
    free(names);
    return failed;
}
