/* The host's commits made durable off its loop; see durable.h. */
#include "durable.h"

#include "store.h"
#include "util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct durable {
    store *st;   /* deferred (store_defer_sync); NULL: nothing to do */
    int evfd;    /* the thread's "a sync ended" */
    int fail;    /* FERRY_TEST_SYNC_FAIL */
    pthread_t thread;
    /* The loop's own: commits made, the last one known durable. */
    uint64_t committed, level;
    /* Shared with the thread, under mu: the commit the loop asks to be synced, the last
     * one a sync of the thread started for, and made durable. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t want, started, synced;
    int stop;
    int failed;       /* a sync of the thread failed: why in thread_error */
    char thread_error[512];
    char error[512]; /* the loop's copy */
};

/* note_later: the loop's own sync, whose note for other processes durable_note writes. */
static int sync_log(const durable *d, int note_later, char *err, size_t errlen)
{
    if (d->fail) {
        snprintf(err, errlen, "FERRY_TEST_SYNC_FAIL: the sync of the store's log fails");
        return -1;
    }
    int rc = note_later ? store_sync_first(d->st, err, errlen) : store_sync(d->st, err, errlen);
    return rc == STORE_OK ? 0 : -1;
}

static void *sync_thread(void *arg)
{
    durable *d = arg;
    pthread_mutex_lock(&d->mu);
    while (!d->stop && !d->failed) {
        if (d->want <= d->started) {
            pthread_cond_wait(&d->cv, &d->mu);
            continue;
        }
        uint64_t target = d->started = d->want;
        pthread_mutex_unlock(&d->mu);
        char err[sizeof(d->thread_error)];
        int rc = sync_log(d, 0, err, sizeof(err));
        pthread_mutex_lock(&d->mu);
        if (rc != 0) {
            d->failed = 1;
            memcpy(d->thread_error, err, sizeof(err));
        } else if (target > d->synced)
            d->synced = target;
        uint64_t one = 1;
        if (write(d->evfd, &one, sizeof(one)) < 0) {
            /* Only a counter at its maximum refuses: the loop is woken already. */
        }
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

durable *durable_new(store *st)
{
    durable *d = calloc(1, sizeof(*d));
    if (d == NULL)
        abort();
    d->st = st;
    d->evfd = -1;
    const char *fail = getenv("FERRY_TEST_SYNC_FAIL");
    d->fail = fail != NULL && strcmp(fail, "1") == 0;
    if (st == NULL)
        return d;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    d->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    /* The thread takes no signal (thread_start_quiet): the loop reads them. */
    int started = d->evfd >= 0 && thread_start_quiet(&d->thread, sync_thread, d) == 0;
    if (!started) {
        /* No thread: every commit is synced in the loop, as it comes. */
        if (d->evfd >= 0)
            close(d->evfd);
        d->evfd = -1;
    }
    return d;
}

void durable_free(durable *d)
{
    if (d == NULL)
        return;
    durable_note(d);
    if (d->evfd >= 0) {
        pthread_mutex_lock(&d->mu);
        d->stop = 1;
        pthread_cond_signal(&d->cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->thread, NULL);
        close(d->evfd);
    }
    if (d->st != NULL) {
        pthread_cond_destroy(&d->cv);
        pthread_mutex_destroy(&d->mu);
    }
    free(d);
}

/* Takes in what the thread did: how far its syncs got, and its failure. */
static void take_thread_state(durable *d)
{
    if (d->evfd < 0)
        return;
    pthread_mutex_lock(&d->mu);
    uint64_t synced = d->synced;
    if (d->failed && d->error[0] == '\0')
        memcpy(d->error, d->thread_error, sizeof(d->error));
    pthread_mutex_unlock(&d->mu);
    if (synced > d->level)
        d->level = synced;
}

/* Syncs in the calling thread everything committed so far; note_later: see durable_note. */
static int sync_here(durable *d, int note_later)
{
    take_thread_state(d);
    if (d->error[0] != '\0')
        return -1;
    uint64_t target = d->committed;
    char err[sizeof(d->error)] = "";
    if (sync_log(d, note_later, err, sizeof(err)) != 0) {
        memcpy(d->error, err, sizeof(err));
        return -1;
    }
    d->level = target;
    return 0;
}

uint64_t durable_committed(durable *d, int now)
{
    uint64_t n = ++d->committed;
    if (d->st == NULL) {
        d->level = n;
        return n;
    }
    if (d->evfd < 0) {
        sync_here(d, 0);
        return n;
    }
    pthread_mutex_lock(&d->mu);
    int busy = d->started > d->synced && !d->failed;
    if (!now || busy) {
        d->want = n;
        pthread_cond_signal(&d->cv);
    }
    pthread_mutex_unlock(&d->mu);
    if (now && !busy)
        sync_here(d, 1);
    return n;
}

uint64_t durable_level(const durable *d)
{
    return d->level;
}

int durable_pending(const durable *d)
{
    return d->level < d->committed;
}

int durable_fd(const durable *d)
{
    return d->evfd;
}

void durable_done(durable *d)
{
    uint64_t count;
    if (d->evfd >= 0 && read(d->evfd, &count, sizeof(count)) == (ssize_t)sizeof(count))
        take_thread_state(d);
}

int durable_wait(durable *d)
{
    if (d == NULL)
        return 0;
    take_thread_state(d);
    if (d->error[0] != '\0')
        return -1;
    if (d->st == NULL || d->level >= d->committed)
        return 0;
    return sync_here(d, 0);
}

int durable_sync(durable *d)
{
    if (d == NULL || d->st == NULL)
        return 0;
    return sync_here(d, 0);
}

void durable_note(durable *d)
{
    if (d != NULL && d->st != NULL)
        store_sync_note(d->st);
}

const char *durable_error(const durable *d)
{
    return d != NULL && d->error[0] != '\0' ? d->error : NULL;
}
