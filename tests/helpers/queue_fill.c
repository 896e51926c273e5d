/*
 * Test helper: creates many queue items fast, through the store API (what the CLI uses),
 * in batches of one transaction each.
 *   queue_fill STORE BATCH < SPECS
 * Each line of SPECS is "TEAM MACHINE BRIDGE PRIORITY VAULT-JSON" (the JSON may contain
 * spaces). STORE is an SQLite path, a postgres:// URL or a libpq conninfo. Prints how many
 * items it created; exits 1 with the store's message on the first failure.
 * Built by the tests that need it against the host's objects (see tests/e2e/pg_hosts.sh).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

struct line {
    char team[129], machine[129], bridge[129];
    int priority;
    json_t *vault;
};

static int flush(store *st, struct line *lines, size_t n, long *created)
{
    char err[1024];
    struct store_item_spec *specs = calloc(n ? n : 1, sizeof(*specs));
    if (specs == NULL)
        return 1;
    for (size_t i = 0; i < n; i++)
        specs[i] = (struct store_item_spec){.team = lines[i].team,
                                            .machine = lines[i].machine,
                                            .bridge = lines[i].bridge,
                                            .priority = lines[i].priority,
                                            .vault = lines[i].vault};
    int rc = store_queue_create_batch(st, specs, n, NULL, err, sizeof(err));
    free(specs);
    for (size_t i = 0; i < n; i++)
        json_decref(lines[i].vault);
    if (rc != STORE_OK) {
        fprintf(stderr, "queue_fill: %s\n", err);
        return 1;
    }
    *created += (long)n;
    return 0;
}

int main(int argc, char **argv)
{
    char err[1024], buf[65536];
    if (argc != 3 || atoi(argv[2]) < 1) {
        fprintf(stderr, "usage: queue_fill STORE BATCH < SPECS\n");
        return 2;
    }
    size_t batch = (size_t)atoi(argv[2]), n = 0;
    long created = 0;
    store *st = store_open(argv[1], err, sizeof(err));
    if (st == NULL) {
        fprintf(stderr, "queue_fill: %s\n", err);
        return 1;
    }
    struct line *lines = calloc(batch, sizeof(*lines));
    int failed = lines == NULL;
    while (!failed && fgets(buf, sizeof(buf), stdin) != NULL) {
        struct line *l = &lines[n];
        int used = 0;
        json_error_t jerr;
        if (sscanf(buf, "%128s %128s %128s %d %n", l->team, l->machine, l->bridge, &l->priority,
                   &used) != 4 ||
            (l->vault = json_loads(buf + used, JSON_DISABLE_EOF_CHECK, &jerr)) == NULL) {
            fprintf(stderr, "queue_fill: bad line: %s", buf);
            failed = 1;
            break;
        }
        if (++n == batch) {
            failed = flush(st, lines, n, &created);
            n = 0;
        }
    }
    if (!failed && n > 0)
        failed = flush(st, lines, n, &created);
    free(lines);
    store_close(st);
    printf("%ld\n", created);
    return failed;
}
