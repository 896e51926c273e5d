/*
 * Machine groups and fan-out, for every driver (over engine.h). For the store's own files
 * only; callers use store.h (STORE_MACHINE_GROUP, store_machine_group_create, and queue
 * items whose machine is a group). docs/machines.md "Groups and fan-out" says what a user
 * sees.
 *
 * A group is a resource of a team (table machine_groups, migration 3) whose vault holds
 * "members": names of machines of the same team. An item created for a group (create
 * queue-item, create queue-items, a schedule's fire, a retry) is a parent: it is inserted
 * and set PROCESSING at once, without a lease, so no host ever claims it, and one child
 * item per member is created in the same transaction (link_kind "member", parent_task_id
 * the parent's id, the parent's function, vault, priority and bridge). The parent is
 * `after` every child, so a child's end finds its parent through the dependents check the
 * end makes anyway (finish.c calls fanout_member_ended only for items with dependents).
 *
 * "max_parallel": N in the vault creates the children past the first N held (run_after far
 * in the future); each end releases as many as fit. "stop_on_failure": true cancels the
 * children not started yet once one FAILED. The last end settles the parent, once, under
 * its row lock: COMPLETED when every child completed, CANCELLED when the parent was
 * cancelled, else FAILED; its response vault lists every member.
 */
#ifndef FERRY_GROUPS_H
#define FERRY_GROUPS_H

#include "engine.h"

/* run_after of a child waiting for a max_parallel slot: 9999-12-31T23:59:59Z. */
#define FANOUT_HELD_MS INT64_C(253402300799000)

/* Checks a group's vault before it is written (create: also that no machine has its
 * name): "members" a non-empty list of distinct machines of the team, no group. */
int group_check_write(store *s, const char *team, const char *name, json_t *vault, int creating,
                      char *err, size_t errlen);

/* CONFLICT when a group of any team is named name (a new machine must not take it). */
int group_name_free(store *s, const char *name, char *err, size_t errlen);

/* CONFLICT naming the groups of team that list machine (it cannot be removed then). */
int group_machine_in_use(store *s, const char *team, const char *machine, char *err,
                         size_t errlen);

/* 1 when team has a group named name, 0 when not (or on a failure: the caller's own
 * not-found message stands). */
int group_exists(store *s, const char *team, const char *name);

/* Creates the parent item sp describes (seq, id) and one child per member, in the caller's
 * transaction. *taken: the highest item seq the caller took already (children get higher
 * ones); updated. */
int fanout_create(store *s, const struct store_item_spec *sp, int64_t seq, char id[37],
                  int64_t *taken, char *err, size_t errlen);

/* An item that has dependents ended (or was cancelled): when it is a group member, its
 * parent releases held members, stops the rest after a failure, or settles. wake (may be
 * NULL: wake at once) gathers the bridges to wake after the commit. */
int fanout_member_ended(store *s, int64_t seq, int64_t now, struct eng_wake *wake, char *err,
                        size_t errlen);

/* Cancels a group parent (PROCESSING or CANCELLING) and its members; *handled is 0 when
 * the item is not a group parent (nothing done). */
int fanout_cancel(store *s, const struct item_ref *r, int force, int64_t now,
                  struct eng_wake *wake, int *handled, char *err, size_t errlen);

/* CONFLICT when seq is a member of a group parent that has not ended. */
int fanout_member_removable(store *s, int64_t seq, const char *task_id, char *err,
                            size_t errlen);

/* queue.c, for fanout_create: one item inserted as create does it, and item seqs. */
int queue_insert_item(store *s, const struct store_item_spec *sp, int64_t seq, char id[37],
                      char *err, size_t errlen);
int queue_next_seqs(store *s, size_t n, int64_t *seqs, char *err, size_t errlen);

#endif
