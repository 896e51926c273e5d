/*
 * Storage locks: objects "locks/<random>" that say who uses a storage. Pushes, pulls and
 * verifies hold a shared lock; the garbage collector deletes data only while it holds the
 * one exclusive lock and no other live lock exists. A lock is live while its holder
 * refreshes it (a thread does, every minute, until lock_release); one not refreshed for 10 minutes,
 * or whose holder process is gone from this host, is stale and ignored, so a crashed job never
 * blocks backups for long.
 *
 * Protocol: a shared holder writes its lock, then waits while a live exclusive lock exists;
 * the collector writes its exclusive lock, then gives up (and removes it) if any other live
 * lock exists. Whichever writes second sees the other, so a push never uses data that a
 * collection is deleting.
 */
#ifndef REPO_LOCK_H
#define REPO_LOCK_H

#include "storage.h"

typedef struct lock lock;

/* Called about every half second while waiting; non-zero stops the wait (cancelled). */
typedef int (*lock_wait_fn)(void *arg, const char *holder);

/*
 * Takes a shared lock. Waits up to max_wait seconds while an exclusive lock is held, then
 * fails with E_TRANSIENT ("storage busy"). purpose is recorded for operators ("push web").
 */
int lock_shared(storage *s, const char *purpose, int max_wait, lock_wait_fn wait, void *arg,
                lock **out, rerr *e);
/*
 * Tries the exclusive lock: 0 with *out set; 1 when another live lock exists (its
 * description in holder); -1 with e set on a storage error.
 */
int lock_exclusive(storage *s, const char *purpose, lock **out, char *holder, size_t holderlen,
                   rerr *e);
/* Removes the lock and frees it (NULL is fine). */
void lock_release(lock *l);

#endif
