/*
 * A store-level micro benchmark of the host's hot path, without hosts or workers: enqueue
 * N no-op items in batches, then drain them with store_claim_items (the start folded in,
 * up to BATCH items per call) and store_finish_many (all COMPLETED), one transaction each.
 * Prints items/s for the enqueue and for claim+finish. Not part of make check.
 *
 *   store_bench STORE [N] [BATCH] [MACHINES] [full|normal]
 *
 * STORE is an SQLite path or a postgres:// URL (an empty scratch database: the bench
 * creates its own region, bridge, team and machines under fresh names). Build against the
 * host's objects like tests/helpers/queue_fill.c:
 *   cc -std=gnu11 -O2 -D_GNU_SOURCE $(for d in host/?*; do echo -I$d; done) -Isdk/include \
 *      $(pkg-config --cflags jansson sqlite3 libpq libconfig) -o build/store_bench \
 *      tests/helpers/store_bench.c build/libferry.a \
 *      $(pkg-config --libs jansson libconfig libcurl sqlite3 libpq libzstd libcrypto) -ldl -lpthread -lm
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store.h"
#include "util.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU time of this process: on a shared machine the fairer figure. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "store_bench: %s: %s\n", what, err);
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: store_bench STORE [N] [BATCH] [MACHINES] [full|normal]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 100000;
    int batch = argc > 3 ? atoi(argv[3]) : 1024;
    int machines = argc > 4 ? atoi(argv[4]) : 64;
    struct store_options opts = {.synchronous_normal = argc <= 5 || strcmp(argv[5], "full") != 0};
    char err[512], sfx[16], region[32], bridge[32], team[32], name[64];
    snprintf(sfx, sizeof(sfx), "%x", (unsigned)(now_ms() & 0xffffff));
    snprintf(region, sizeof(region), "r%s", sfx);
    snprintf(bridge, sizeof(bridge), "b%s", sfx);
    snprintf(team, sizeof(team), "T%s", sfx);
    store *st = store_open_opts(argv[1], &opts, err, sizeof(err));
    if (st == NULL)
        die("open", err);
    if (store_region_create(st, region, NULL, NULL, err, sizeof(err)) ||
        store_bridge_create(st, region, bridge, NULL, NULL, err, sizeof(err)) ||
        store_team_create(st, team, NULL, NULL, err, sizeof(err)))
        die("setup", err);
    json_t *mv = json_pack("{s:s,s:i}", "connection", "local", "concurrency", 100000);
    for (int m = 0; m < machines; m++) {
        snprintf(name, sizeof(name), "m%s_%d", sfx, m);
        if (store_machine_create(st, team, bridge, name, mv, NULL, err, sizeof(err)))
            die("machine", err);
    }
    json_decref(mv);

    json_t *vault = json_pack("{s:s}", "function", "noop");
    if (n < 1 || batch < 1 || batch > 1024 || machines < 1 || machines > 100000)
        die("arguments", "N >= 1, BATCH 1-1024, MACHINES 1-100000");
    char(*names)[64] = calloc((size_t)machines, 64);
    struct store_item_spec *specs = calloc(1000, sizeof(*specs));
    for (int m = 0; m < machines; m++)
        snprintf(names[m], 64, "m%s_%d", sfx, m);
    double t0 = now_s(), c0 = cpu_s();
    for (int done = 0; done < n;) {
        int k = n - done < 1000 ? n - done : 1000;
        for (int i = 0; i < k; i++)
            specs[i] = (struct store_item_spec){.team = team,
                                                .machine = names[(done + i) % machines],
                                                .bridge = bridge,
                                                .vault = vault};
        if (store_queue_create_batch(st, specs, (size_t)k, NULL, err, sizeof(err)))
            die("enqueue", err);
        done += k;
    }
    double t1 = now_s(), c1 = cpu_s();
    printf("enqueue: %d items in %.2f s: %.0f items/s (this process's CPU: %.2f s, %.0f items/s)\n",
           n, t1 - t0, n / (t1 - t0), c1 - c0, n / (c1 - c0));

    struct store_finish *fin = calloc((size_t)batch, sizeof(*fin));
    int *rcs = calloc((size_t)batch, sizeof(int));
    long drained = 0, claims = 0;
    double claim_s = 0, finish_s = 0;
    for (;;) {
        struct store_item *items;
        size_t got;
        double a = now_s();
        if (store_claim_items(st, bridge, "bench", 60000, batch, 1, now_ms(), &items, &got, err,
                              sizeof(err)))
            die("claim", err);
        double b = now_s();
        claim_s += b - a;
        if (got == 0)
            break;
        claims++;
        for (size_t i = 0; i < got; i++)
            fin[i] = (struct store_finish){items[i].task_id, items[i].token,
                                           {.kind = STORE_OUTCOME_COMPLETED}};
        if (store_finish_many(st, fin, got, rcs, now_ms(), err, sizeof(err)))
            die("finish", err);
        finish_s += now_s() - b;
        for (size_t i = 0; i < got; i++)
            if (rcs[i] != STORE_OK)
                die("finish", "an entry was refused");
        drained += (long)got;
        store_items_free(items, got);
    }
    double t2 = now_s(), c2 = cpu_s();
    printf("claim+finish: %ld items in %ld claims, %.2f s (claim %.2f s, finish %.2f s): "
           "%.0f items/s (this process's CPU: %.2f s, %.0f items/s)\n",
           drained, claims, t2 - t1, claim_s, finish_s, drained / (t2 - t1), c2 - c1,
           drained / (c2 - c1));
    free(fin), free(rcs), free(specs), free(names);
    json_decref(vault);
    store_close(st);
    return drained == n ? 0 : 1;
}
