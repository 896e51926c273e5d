/*
 * The host's commits made durable off its loop. The host's store handle commits without a
 * sync (store_defer_sync); one thread of this module fdatasyncs the store's log when asked,
 * while the loop goes on reading the workers' results and writing the next ends into the
 * open batch. Commits are numbered as the host makes them (durable_committed): a sync that
 * starts after commit n returned covers it and every commit before. The loop polls
 * durable_fd and learns with durable_done how far the syncs got; what must not leave the
 * process before commit n is on disk waits until then (runner_hold, durable_wait).
 *
 * A failed sync is fatal: what it covered may not be on disk, and nothing that depends on
 * it may run (durable_error; the host stops).
 */
#ifndef FERRY_DURABLE_H
#define FERRY_DURABLE_H

#include <stdint.h>

typedef struct durable durable;

struct store;
/* st: a handle whose commits are synced with store_sync (store_defer_sync said so); NULL:
 * commits are durable at commit (nothing to do, no thread). Tests: FERRY_TEST_SYNC_FAIL=1
 * makes every sync fail. */
durable *durable_new(struct store *st);
/* Stops the thread (after the sync it runs) and frees d. NULL is accepted. */
void durable_free(durable *d);

/*
 * The host committed: returns the commit's number. now: sync it in the calling thread when
 * no sync runs (an idle host, whose item would only wait for the thread's hop); else the
 * thread syncs it. The calling thread's sync leaves its note for other processes (their
 * read barrier's) to durable_note.
 */
uint64_t durable_committed(durable *d, int now);
/* Writes the note a sync of durable_committed left: after the run messages that waited for
 * the sync are written, and before the loop sleeps. */
void durable_note(durable *d);
/* The last commit known durable. */
uint64_t durable_level(const durable *d);
/* 1 while a commit is not known durable yet (the thread syncs it), else 0. */
int durable_pending(const durable *d);
/* Readable when a sync of the thread ended; -1 without a thread. */
int durable_fd(const durable *d);
/* After durable_fd was readable: takes in how far the thread's syncs got. */
void durable_done(durable *d);
/* Makes every commit so far durable before returning (in this thread). 0, or -1 when a
 * sync failed. d NULL: 0 (commits are durable at commit). */
int durable_wait(durable *d);
/* Syncs the log now, whoever wrote what it holds: before the host acts on what another
 * host of the store committed, which that host syncs off its own loop. 0, or -1 when the
 * sync failed. d NULL: 0. */
int durable_sync(durable *d);
/* Why a sync failed (valid until durable_free), or NULL while none did (or d is NULL). */
const char *durable_error(const durable *d);

#endif
