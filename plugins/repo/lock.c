/* Storage locks: see lock.h. */
#include "lock.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOCK_AAD     "ferry-lock"
#define LOCK_STALE   600 /* seconds without a refresh */
#define LOCK_REFRESH 60

struct lock {
    storage *s;
    char key[64]; /* changes at each refresh (only the refresher writes it once it runs) */
    int written;  /* the lock has been stored once */
    json_t *doc;
    int64_t refreshed;
    /* A thread rewrites the lock every LOCK_REFRESH seconds while it is held, so a holder
     * busy for a long time in one step (a huge scan, a slow upload) never looks stale. */
    pthread_t refresher;
    int refreshing;
    int stop;
    pthread_mutex_t mu;
    pthread_cond_t wake;
};

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/*
 * Writes the lock. A refresh writes it under a new key and then deletes the old one, so the
 * lock is never absent, not even on providers that cannot replace an object in one step
 * (SFTP removes and renames): a collector scanning at any moment sees it.
 */
static int write_lock(lock *l, rerr *e)
{
    json_object_set_new(l->doc, "refreshed", json_integer(now_s()));
    char *text = json_dumps(l->doc, JSON_COMPACT);
    char key[sizeof(l->key)], rnd[33];
    if (l->written) {
        random_hex(rnd, 16);
        snprintf(key, sizeof(key), "locks/%s", rnd);
    } else {
        snprintf(key, sizeof(key), "%s", l->key);
    }
    int rc = stor_put_sealed(l->s, key, LOCK_AAD, text, strlen(text), STOR_PUT_NOSYNC, e);
    free(text);
    if (rc != ST_OK)
        return -1;
    if (l->written) {
        rerr ignore = {0};
        stor_del(l->s, l->key, &ignore);
        memcpy(l->key, key, sizeof(l->key));
    }
    l->written = 1;
    l->refreshed = now_s();
    return 0;
}

static lock *new_lock(storage *s, const char *kind, const char *purpose)
{
    lock *l = xcalloc(1, sizeof(*l));
    l->s = s;
    char rnd[33];
    random_hex(rnd, 16);
    snprintf(l->key, sizeof(l->key), "locks/%s", rnd);
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    l->doc = json_pack("{s:s,s:s,s:i,s:s,s:I}", "kind", kind, "hostname", host, "pid",
                       (int)getpid(), "purpose", purpose, "time", (json_int_t)now_s());
    return l;
}

static void free_lock(lock *l)
{
    json_decref(l->doc);
    free(l);
}

static void *refresher_main(void *arg)
{
    lock *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += LOCK_REFRESH;
        pthread_cond_timedwait(&l->wake, &l->mu, &until);
        if (l->stop)
            break;
        pthread_mutex_unlock(&l->mu);
        rerr ignore = {0};
        write_lock(l, &ignore); /* a failed refresh is tried again a minute later */
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* The lock is held from here on: keep it fresh until lock_release. */
static void start_refresher(lock *l)
{
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->wake, NULL);
    l->refreshing = pthread_create(&l->refresher, NULL, refresher_main, l) == 0;
}

/* Non-zero when a lock document belongs to a live holder. */
static int lock_is_live(const json_t *doc)
{
    int64_t refreshed = json_integer_value(json_object_get(doc, "refreshed"));
    if (refreshed < now_s() - LOCK_STALE) /* not now - refreshed: it may overflow */
        return 0;
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    const char *holder = json_string_value(json_object_get(doc, "hostname"));
    pid_t pid = (pid_t)json_integer_value(json_object_get(doc, "pid"));
    if (holder && strcmp(holder, host) == 0 && pid > 0 && kill(pid, 0) != 0 && errno == ESRCH)
        return 0; /* its process is gone from this host */
    return 1;
}

struct scan_state {
    lock *self;
    int want_exclusive_only;
    int found;
    char *holder;
    size_t holderlen;
    rerr *e;
};

static int scan_one(void *arg, const char *key, uint64_t size)
{
    (void)size;
    struct scan_state *ss = arg;
    if (strcmp(key, ss->self->key) == 0)
        return 0;
    buf plain = {0};
    rerr ignore = {0};
    int rc = stor_get_sealed(ss->self->s, key, LOCK_AAD, &plain, &ignore);
    json_t *doc = rc == ST_OK ? json_loadb((const char *)plain.data, plain.len, 0, NULL) : NULL;
    buf_free(&plain);
    if (doc == NULL)
        return 0; /* removed meanwhile, or unreadable: not a lock anyone holds */
    const char *kind = json_string_value(json_object_get(doc, "kind"));
    int relevant = !ss->want_exclusive_only || (kind && strcmp(kind, "exclusive") == 0);
    if (relevant && lock_is_live(doc)) {
        ss->found = 1;
        if (ss->holder)
            snprintf(ss->holder, ss->holderlen, "%s lock of %s (pid %lld on %s)", kind ? kind : "?",
                     json_string_value(json_object_get(doc, "purpose")),
                     (long long)json_integer_value(json_object_get(doc, "pid")),
                     json_string_value(json_object_get(doc, "hostname")));
    } else if (!lock_is_live(doc)) {
        stor_del(ss->self->s, key, &ignore); /* stale: clean up behind the crashed holder */
    }
    json_decref(doc);
    return ss->found;
}

static int other_locks(lock *l, int exclusive_only, char *holder, size_t holderlen, rerr *e)
{
    struct scan_state ss = {.self = l,
                            .want_exclusive_only = exclusive_only,
                            .holder = holder,
                            .holderlen = holderlen,
                            .e = e};
    if (stor_list(l->s, "locks/", scan_one, &ss, e) != ST_OK)
        return -1;
    return ss.found;
}

int lock_shared(storage *s, const char *purpose, int max_wait, lock_wait_fn wait, void *arg,
                lock **out, rerr *e)
{
    lock *l = new_lock(s, "shared", purpose);
    if (write_lock(l, e) != 0) {
        free_lock(l);
        return -1;
    }
    char holder[512] = "";
    double until = mono_sec() + max_wait;
    for (;;) {
        int busy = other_locks(l, 1, holder, sizeof(holder), e);
        if (busy == 0)
            break;
        if (busy < 0 || mono_sec() > until || (wait && wait(arg, holder) != 0)) {
            if (busy > 0 && mono_sec() > until)
                rerr_set(e, E_TRANSIENT, "storage %s is busy: %s", s->name, holder);
            else if (busy > 0)
                rerr_set(e, E_CANCELLED, "cancelled while waiting for storage %s", s->name);
            lock_release(l);
            return -1;
        }
        struct timespec ts = {0, 500 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (now_s() - l->refreshed >= LOCK_REFRESH && write_lock(l, e) != 0) {
            lock_release(l);
            return -1;
        }
    }
    start_refresher(l);
    *out = l;
    return 0;
}

int lock_exclusive(storage *s, const char *purpose, lock **out, char *holder, size_t holderlen,
                   rerr *e)
{
    lock *l = new_lock(s, "exclusive", purpose);
    if (write_lock(l, e) != 0) {
        free_lock(l);
        return -1;
    }
    int busy = other_locks(l, 0, holder, holderlen, e);
    if (busy != 0) {
        lock_release(l);
        return busy < 0 ? -1 : 1;
    }
    start_refresher(l);
    *out = l;
    return 0;
}

void lock_release(lock *l)
{
    if (l == NULL)
        return;
    if (l->refreshing) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_signal(&l->wake);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->refresher, NULL);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->wake);
    }
    rerr ignore = {0};
    stor_del(l->s, l->key, &ignore);
    free_lock(l);
}
