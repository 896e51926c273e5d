/*
 * Benchmark driver for the queue: talks to the store API directly.
 *   bench_queue enqueue DB N            N single-item creates (one commit each): items/s
 *   bench_queue fill DB N FUNCTION M [FILE]
 *                                       N items for machines m0..m(M-1), batches of 1000;
 *                                       with FILE, item i's vault also has "file": FILE and
 *                                       "label": i (for fx_stamp: who ran, how often)
 *   bench_queue latency DB N FILE [PID] creates N fx_stamp items one at a time with an idle
 *                                       host running (after 5 uncounted warm-up items);
 *                                       prints enqueue-to-start p50/p90/p99 (ms) and, with
 *                                       PID, the host's VmRSS and VmHWM (KiB) right after
 *                                       the warm-up: "p50 p90 p99 rss hwm"
 *   bench_queue turns DB SLOTS          the host's store work in a drain, without workers: each
 *                                       turn, in one transaction, ends every item claimed by
 *                                       the turn before (COMPLETED) and claims up to SLOTS
 *                                       items (started), until nothing is left; prints
 *                                       "items turns cpu_us_per_item". Deterministic: run it
 *                                       under callgrind to compare instruction counts
 *   bench_queue turns DB SLOTS HELD     the same with up to HELD items held, as a host whose
 *                                       workers keep a pipeline: each turn ends the SLOTS
 *                                       oldest held items and claims up to HELD held again
 *                                       (a drain at w=2, pipeline 32: 20 64; most machines
 *                                       then hold an item at the head of the queue)
 *   bench_queue run LIMIT CMD [ARGS...]  runs CMD with its stdout on /dev/null, killed after
 *                                       LIMIT s (SIGTERM, then SIGKILL 5 s later), sampling
 *                                       its VmHWM every 20 ms; prints "wall_s hwm_kib
 *                                       maxrss_kib status": the last VmHWM seen of CMD itself,
 *                                       the peak RSS of the largest process of its tree
 *                                       (wait4: catches short commands), its exit code
 *                                       (128+N for signal N, 124 when the limit hit)
 * The DB must exist with team Ops, bridge local and machines m0…; see tests/bench/run.sh.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
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

static int fill(const char *db, long n, const char *function, long machines, const char *file)
{
    store *st = open_store(db);
    char err[512];
    json_t *vault = json_pack("{s:s}", "function", function);
    json_t **labelled = NULL;
    if (file != NULL) {
        labelled = calloc(1000, sizeof(*labelled));
        for (int i = 0; i < 1000; i++)
            labelled[i] = json_pack("{s:s,s:s,s:I}", "function", function, "file", file,
                                    "label", (json_int_t)0);
    }
    const long batch = 1000;
    struct store_item_spec *specs = calloc((size_t)batch, sizeof(*specs));
    char (*names)[24] = calloc((size_t)machines, 24);
    for (long m = 0; m < machines; m++)
        snprintf(names[m], 24, "m%ld", m);
    int64_t t0 = mono_us();
    for (long done = 0; done < n;) {
        long k = n - done < batch ? n - done : batch;
        for (long i = 0; i < k; i++) {
            json_t *v = vault;
            if (labelled != NULL) {
                v = labelled[i];
                json_object_set_new(v, "label", json_integer((json_int_t)(done + i)));
            }
            specs[i] = (struct store_item_spec){.team = "Ops", .machine = names[(done + i) % machines],
                                                .bridge = "local", .vault = v,
                                                .priority = (int)((done + i) % 5) + 1,
                                                .idempotent = 1};
        }
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
    if (labelled != NULL) {
        for (int i = 0; i < 1000; i++)
            json_decref(labelled[i]);
        free(labelled);
    }
    store_close(st);
    return 0;
}

/* The stamps fx_stamp appends ("label start_us", CLOCK_REALTIME), read as the file grows. */
struct stamps {
    const char *file;
    long offset;
};

/* The start stamp of label, or 0 when it has not run yet. */
static int64_t read_stamp(struct stamps *sf, long label)
{
    FILE *f = fopen(sf->file, "r");
    if (f == NULL)
        return 0;
    int64_t found = 0;
    if (fseek(f, sf->offset, SEEK_SET) == 0) {
        char line[256];
        while (found == 0 && fgets(line, sizeof(line), f) && strchr(line, '\n') != NULL) {
            long l;
            long long us;
            sf->offset = ftell(f);
            if (sscanf(line, "%ld %lld", &l, &us) == 2 && l == label)
                found = us;
        }
    }
    fclose(f);
    return found;
}

static int64_t real_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Creates one fx_stamp item labelled label and waits up to 10 s for it to start: the
 * enqueue-to-start time in µs (the clock is read before the create), -1 if it never did. */
static int64_t one_item(store *st, struct stamps *sf, long label)
{
    char err[512];
    json_t *vault = json_pack("{s:s,s:s,s:I}", "function", "fx_stamp", "file", sf->file, "label",
                              (json_int_t)label);
    struct store_item_spec spec = {.team = "Ops", .machine = "m0", .bridge = "local",
                                   .vault = vault};
    int64_t t0 = real_us();
    if (store_queue_create(st, &spec, NULL, NULL, err, sizeof(err)) != STORE_OK) {
        fprintf(stderr, "bench: %s\n", err);
        exit(1);
    }
    json_decref(vault);
    int64_t stamp = 0, give_up = mono_ms() + 10000;
    while ((stamp = read_stamp(sf, label)) == 0 && mono_ms() < give_up)
        poll(NULL, 0, 1);
    return stamp ? stamp - t0 : -1;
}

/* VmRSS and VmHWM of pid, KiB (0 when unreadable). */
static void rss_of(const char *pid, long *rss, long *hwm)
{
    char path[64], line[256];
    *rss = *hwm = 0;
    snprintf(path, sizeof(path), "/proc/%s/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f)) {
        sscanf(line, "VmRSS: %ld", rss);
        sscanf(line, "VmHWM: %ld", hwm);
    }
    fclose(f);
}

static int latency(const char *db, long n, const char *file, const char *pid)
{
    store *st = open_store(db);
    struct stamps sf = {.file = file};
    /* Warm-up: the host has started and run something before anything is counted. */
    for (long i = 0; i < 5; i++)
        if (one_item(st, &sf, -1 - i) < 0) {
            fprintf(stderr, "bench: the host did not start a warm-up item within 10 s\n");
            return 1;
        }
    poll(NULL, 0, 200);
    long rss = 0, hwm = 0;
    if (pid != NULL)
        rss_of(pid, &rss, &hwm);
    int64_t *lat = calloc((size_t)n, sizeof(*lat));
    long lost = 0;
    for (long i = 0; i < n; i++) {
        lat[i] = one_item(st, &sf, i);
        if (lat[i] < 0) {
            lat[i] = 10000000;
            lost++;
        }
        poll(NULL, 0, 20); /* let the host go idle again */
    }
    if (lost)
        fprintf(stderr, "bench: %ld of %ld items did not start within 10 s\n", lost, n);
    qsort(lat, (size_t)n, sizeof(*lat), cmp_i64);
    printf("%.2f %.2f %.2f %ld %ld\n", (double)lat[n / 2] / 1000.0,
           (double)lat[n * 9 / 10] / 1000.0, (double)lat[(n * 99) / 100] / 1000.0, rss, hwm);
    free(lat);
    store_close(st);
    return 0;
}

static int run(long limit_s, char **cmd)
{
    int64_t t0 = mono_us();
    pid_t pid = fork();
    if (pid < 0) {
        perror("bench: fork");
        return 1;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, STDOUT_FILENO); /* stdout is this program's answer */
        execvp(cmd[0], cmd);
        fprintf(stderr, "bench: cannot run %s: %s\n", cmd[0], strerror(errno));
        _exit(127);
    }
    char spid[32];
    snprintf(spid, sizeof(spid), "%d", (int)pid);
    long hwm = 0, rss, h;
    int status = 0, timed_out = 0;
    struct rusage ru = {0};
    int64_t deadline = mono_ms() + limit_s * 1000, kill_at = 0;
    for (;;) {
        pid_t r = wait4(pid, &status, WNOHANG, &ru);
        if (r == pid || (r < 0 && errno != EINTR))
            break;
        rss_of(spid, &rss, &h);
        if (h > hwm)
            hwm = h;
        if (!timed_out && mono_ms() > deadline) {
            timed_out = 1;
            kill(pid, SIGTERM);
            kill_at = mono_ms() + 5000;
        } else if (timed_out && kill_at && mono_ms() > kill_at) {
            kill(pid, SIGKILL);
            kill_at = 0;
        }
        poll(NULL, 0, 20);
    }
    int code = timed_out ? 124
               : WIFEXITED(status) ? WEXITSTATUS(status)
                                   : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    printf("%.3f %ld %ld %d\n", (double)(mono_us() - t0) / 1e6, hwm, ru.ru_maxrss, code);
    return 0;
}

static int turns(const char *db, int slots, int held_max)
{
    store *st = open_store(db);
    char err[512];
    struct store_item *held = calloc((size_t)held_max, sizeof(*held)), *items = NULL;
    size_t n_held = 0, n = 0;
    long done = 0, turns = 0;
    struct store_finish *fin = calloc((size_t)slots, sizeof(*fin));
    int *rcs = calloc((size_t)slots, sizeof(int));
    json_t *response = json_object();
    if (held == NULL || fin == NULL || rcs == NULL)
        abort();
    double cpu0 = (double)clock() / CLOCKS_PER_SEC;
    for (;;) {
        if (store_begin(st, err, sizeof(err)) != STORE_OK)
            break;
        size_t ends = n_held < (size_t)slots ? n_held : (size_t)slots;
        for (size_t i = 0; i < ends; i++)
            fin[i] = (struct store_finish){.task_id = held[i].task_id,
                                           .token = held[i].token,
                                           .outcome = {.kind = STORE_OUTCOME_COMPLETED,
                                                       .response = response}};
        if (ends > 0 && store_finish_many(st, fin, ends, rcs, now_ms(), err, sizeof(err)) != STORE_OK)
            break;
        done += (long)ends;
        struct store_item *gone = malloc((ends ? ends : 1) * sizeof(*gone));
        if (gone == NULL)
            abort();
        memcpy(gone, held, ends * sizeof(*held)); /* the oldest held ones end */
        store_items_free(gone, ends);
        memmove(held, held + ends, (n_held - ends) * sizeof(*held));
        n_held -= ends;
        if (store_claim_items(st, "local", "bench:turns", 60000, held_max - (int)n_held, 1,
                              now_ms(), &items, &n, err, sizeof(err)) != STORE_OK ||
            store_commit(st, err, sizeof(err)) != STORE_OK)
            break;
        turns++;
        memcpy(held + n_held, items, n * sizeof(*items));
        n_held += n;
        free(items);
        items = NULL;
        if (n_held == 0)
            break;
    }
    double cpu = (double)clock() / CLOCKS_PER_SEC - cpu0;
    printf("%ld %ld %.1f\n", done, turns, done ? cpu * 1e6 / (double)done : 0);
    json_decref(response);
    store_items_free(held, n_held);
    free(fin);
    free(rcs);
    store_close(st);
    return n_held == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "turns") == 0 && atoi(argv[3]) > 0)
        return turns(argv[2], atoi(argv[3]),
                     argc >= 5 && atoi(argv[4]) > atoi(argv[3]) ? atoi(argv[4]) : atoi(argv[3]));
    if (argc >= 4 && strcmp(argv[1], "run") == 0 && atol(argv[2]) > 0)
        return run(atol(argv[2]), argv + 3);
    if (argc >= 4 && strcmp(argv[1], "enqueue") == 0)
        return enqueue(argv[2], atol(argv[3]));
    if (argc >= 6 && strcmp(argv[1], "fill") == 0)
        return fill(argv[2], atol(argv[3]), argv[4], atol(argv[5]), argc >= 7 ? argv[6] : NULL);
    if (argc >= 5 && strcmp(argv[1], "latency") == 0 && atol(argv[3]) > 0)
        return latency(argv[2], atol(argv[3]), argv[4], argc >= 6 ? argv[5] : NULL);
    fprintf(stderr, "usage: bench_queue enqueue DB N | fill DB N FUNCTION MACHINES [FILE] | "
                    "latency DB N FILE [PID] | run LIMIT CMD...\n");
    return 2;
}
