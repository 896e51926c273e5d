/*
 * Benchmark driver for the queue: talks to the store API directly.
 *   bench_queue enqueue DB N            N single-item creates (one commit each): items/s
 *   bench_queue fill DB N FUNCTION M    N items for machines m0..m(M-1), batches of 1000
 *   bench_queue latency DB N FILE       creates N fx_stamp items one at a time with an idle
 *                                       host running; prints enqueue-to-start p50/p90/p99
 * The DB must exist with team Ops, bridge local and machines m0…; see tests/bench/run.sh.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store.h"
#include "util.h"

static store *open_store(const char *db)
{
    char err[512];
    store *st = store_open(db, err, sizeof(err));
    if (st == NULL) {
        fprintf(stderr, "bench: %s\n", err);
        exit(1);
    }
    return st;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int enqueue(const char *db, long n)
{
    store *st = open_store(db);
    char err[512];
    json_t *vault = json_pack("{s:s}", "function", "fx_noop");
    int64_t t0 = mono_us();
    for (long i = 0; i < n; i++) {
        struct store_item_spec spec = {.team = "Ops", .machine = "m0", .bridge = "local",
                                       .vault = vault};
        if (store_queue_create(st, &spec, NULL, NULL, err, sizeof(err)) != STORE_OK) {
            fprintf(stderr, "bench: %s\n", err);
            return 1;
        }
    }
    double secs = (double)(mono_us() - t0) / 1e6;
    printf("%.0f\n", (double)n / secs);
    json_decref(vault);
    store_close(st);
    return 0;
}

static int fill(const char *db, long n, const char *function, long machines)
{
    store *st = open_store(db);
    char err[512];
    json_t *vault = json_pack("{s:s}", "function", function);
    const long batch = 1000;
    struct store_item_spec *specs = calloc((size_t)batch, sizeof(*specs));
    char (*names)[24] = calloc((size_t)machines, 24);
    for (long m = 0; m < machines; m++)
        snprintf(names[m], 24, "m%ld", m);
    int64_t t0 = mono_us();
    for (long done = 0; done < n;) {
        long k = n - done < batch ? n - done : batch;
        for (long i = 0; i < k; i++)
            specs[i] = (struct store_item_spec){.team = "Ops", .machine = names[(done + i) % machines],
                                                .bridge = "local", .vault = vault,
                                                .priority = (int)((done + i) % 5) + 1,
                                                .idempotent = 1};
        if (store_queue_create_batch(st, specs, (size_t)k, NULL, err, sizeof(err)) != STORE_OK) {
            fprintf(stderr, "bench: %s\n", err);
            return 1;
        }
        done += k;
    }
    double secs = (double)(mono_us() - t0) / 1e6;
    printf("%.0f\n", (double)n / secs);
    free(specs);
    free(names);
    json_decref(vault);
    store_close(st);
    return 0;
}

/* Reads the last start stamp (µs, CLOCK_REALTIME) the fixture wrote for label. */
static int64_t read_stamp(const char *file, long label)
{
    FILE *f = fopen(file, "r");
    if (f == NULL)
        return 0;
    char line[256];
    int64_t found = 0;
    while (fgets(line, sizeof(line), f)) {
        long l;
        long long us;
        if (sscanf(line, "%ld %lld", &l, &us) == 2 && l == label)
            found = us;
    }
    fclose(f);
    return found;
}

static int latency(const char *db, long n, const char *file)
{
    store *st = open_store(db);
    char err[512];
    int64_t *lat = calloc((size_t)n, sizeof(*lat));
    for (long i = 0; i < n; i++) {
        json_t *vault = json_pack("{s:s,s:s,s:I}", "function", "fx_stamp", "file", file, "label",
                                  (json_int_t)i);
        struct store_item_spec spec = {.team = "Ops", .machine = "m0", .bridge = "local",
                                       .vault = vault};
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t t0 = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
        if (store_queue_create(st, &spec, NULL, NULL, err, sizeof(err)) != STORE_OK) {
            fprintf(stderr, "bench: %s\n", err);
            return 1;
        }
        json_decref(vault);
        int64_t stamp = 0, give_up = mono_ms() + 10000;
        while ((stamp = read_stamp(file, i)) == 0 && mono_ms() < give_up)
            poll(NULL, 0, 1);
        lat[i] = stamp ? stamp - t0 : 10000000;
        poll(NULL, 0, 20); /* let the host go idle again */
    }
    qsort(lat, (size_t)n, sizeof(*lat), cmp_i64);
    printf("%.2f %.2f %.2f\n", (double)lat[n / 2] / 1000.0, (double)lat[n * 9 / 10] / 1000.0,
           (double)lat[(n * 99) / 100] / 1000.0);
    free(lat);
    store_close(st);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "enqueue") == 0)
        return enqueue(argv[2], atol(argv[3]));
    if (argc >= 6 && strcmp(argv[1], "fill") == 0)
        return fill(argv[2], atol(argv[3]), argv[4], atol(argv[5]));
    if (argc >= 5 && strcmp(argv[1], "latency") == 0)
        return latency(argv[2], atol(argv[3]), argv[4]);
    fprintf(stderr, "usage: bench_queue enqueue DB N | fill DB N FUNCTION MACHINES | "
                    "latency DB N FILE\n");
    return 2;
}
