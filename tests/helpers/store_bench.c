/*
 * A store-level micro benchmark of the host's hot path, without hosts or workers: enqueue
 * N no-op items in batches, then drain them with store_claim_items (the start folded in,
 * up to BATCH items per call) and store_finish_many (all COMPLETED), one transaction each.
 * Prints items/s for the enqueue and for claim+finish. Not part of make check.
 *
 *   store_bench STORE [N] [BATCH] [MACHINES] [full|normal] [HOSTS]
 *
 * With HOSTS > 1 the drain runs in that many processes at once, each with its own handle
 * and lease owner, as hosts of one bridge do; the bench then checks that every item
 * completed exactly once (all COMPLETED, no entry refused, and none of the newest 10,000
 * retried).
 * STORE is an SQLite path or a postgres:// URL (an empty scratch database: the bench
 * creates its own region, bridge, team and machines under fresh names). Build it against the
 * host's library (after make all):
 *   cc -std=gnu11 -O2 -D_GNU_SOURCE -Ihost -Ihost/base -Ihost/store -Isdk/include \
 *      $(pkg-config --cflags jansson sqlite3 libpq libconfig) -o build/store_bench \
 *      tests/helpers/store_bench.c build/libferry.a \
 *      $(pkg-config --libs jansson libconfig libcurl sqlite3 libpq libzstd libcrypto) \
 *      -ldl -lpthread -lm
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

/* Claims (start folded in) and finishes COMPLETED until the bridge has nothing ready;
 * returns how many items it ended. */
static long drain(store *st, const char *bridge, const char *owner, int batch, long *claims,
                  double *claim_s, double *finish_s)
{
    char err[512];
    struct store_finish *fin = calloc((size_t)batch, sizeof(*fin));
    int *rcs = calloc((size_t)batch, sizeof(int));
    long drained = 0;
    for (;;) {
        struct store_item *items;
        size_t got;
        double a = now_s();
        if (store_claim_items(st, bridge, owner, 60000, batch, 1, now_ms(), &items, &got, err,
                              sizeof(err)))
            die("claim", err);
        double b = now_s();
        *claim_s += b - a;
        if (got == 0) {
            /* Nothing ready for this host: done when the bridge has nothing left, else
             * another host holds the machines at this instant (look again soon, without
             * loading the server with counts). */
            usleep(5000);
            static const char *const pending[] = {"PENDING"};
            struct store_queue_filter f = {.bridge = bridge, .statuses = pending, .n_statuses = 1};
            int64_t left = 0;
            if (store_queue_count(st, &f, &left, err, sizeof(err)))
                die("count", err);
            store_items_free(items, got);
            if (left == 0)
                break;
            continue;
        }
        (*claims)++;
        for (size_t i = 0; i < got; i++)
            fin[i] = (struct store_finish){items[i].task_id, items[i].token,
                                           {.kind = STORE_OUTCOME_COMPLETED}};
        if (store_finish_many(st, fin, got, rcs, now_ms(), err, sizeof(err)))
            die("finish", err);
        *finish_s += now_s() - b;
        for (size_t i = 0; i < got; i++)
            if (rcs[i] != STORE_OK)
                die("finish", "an entry was refused");
        drained += (long)got;
        store_items_free(items, got);
    }
    free(fin);
    free(rcs);
    return drained;
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

    int hosts = argc > 6 ? atoi(argv[6]) : 1;
    if (hosts < 1 || hosts > 64)
        die("arguments", "HOSTS 1-64");
    long drained = 0, claims = 0;
    double claim_s = 0, finish_s = 0;
    if (hosts == 1) {
        drained = drain(st, bridge, "bench", batch, &claims, &claim_s, &finish_s);
    } else {
        store_close(st);
        for (int h = 0; h < hosts; h++) {
            if (fork() == 0) {
                char owner[32];
                snprintf(owner, sizeof(owner), "bench%d", h);
                store *mine = store_open_opts(argv[1], &opts, err, sizeof(err));
                if (mine == NULL)
                    die("open", err);
                long c = 0;
                double a = 0, b = 0;
                drain(mine, bridge, owner, batch, &c, &a, &b);
                store_close(mine);
                _exit(0);
            }
        }
        int status, bad = 0;
        while (wait(&status) > 0)
            bad |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
        if (bad)
            die("drain", "a host process failed");
        st = store_open_opts(argv[1], &opts, err, sizeof(err));
        if (st == NULL)
            die("open", err);
        json_t *counts = NULL;
        if (store_queue_counts(st, bridge, &counts, err, sizeof(err)))
            die("counts", err);
        drained = (long)json_integer_value(json_object_get(counts, "COMPLETED"));
        json_decref(counts);
        /* Exactly once: every item completed on its first and only attempt. */
        struct store_queue_filter f = {.bridge = bridge, .max_records = STORE_MAX_RECORDS};
        json_t *rows = NULL;
        if (store_queue_list(st, &f, &rows, err, sizeof(err)))
            die("list", err);
        size_t i;
        json_t *row;
        json_array_foreach (rows, i, row)
            if (json_integer_value(json_object_get(row, "retryCount")) != 0)
                die("exactly once", "an item ran more than once");
        json_decref(rows);
    }
    double t2 = now_s(), c2 = cpu_s();
    if (hosts > 1)
        printf("claim+finish: %ld items by %d hosts, exactly once, in %.2f s: %.0f items/s\n",
               drained, hosts, t2 - t1, drained / (t2 - t1));
    else
        printf("claim+finish: %ld items in %ld claims, %.2f s (claim %.2f s, finish %.2f s): "
               "%.0f items/s (this process's CPU: %.2f s, %.0f items/s)\n",
               drained, claims, t2 - t1, claim_s, finish_s, drained / (t2 - t1), c2 - c1,
               drained / (c2 - c1));
    free(specs), free(names);
    json_decref(vault);
    store_close(st);
    return drained == n ? 0 : 1;
}
