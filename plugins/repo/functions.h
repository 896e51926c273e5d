/* The repo plugin's queue functions (descriptors defined in functions_*.c). */
#ifndef REPO_FUNCTIONS_H
#define REPO_FUNCTIONS_H

#include <ferry/plugin.h>

#include "machine.h"

extern const ferry_function fn_repo_new;
extern const ferry_function fn_repo_rm;
extern const ferry_function fn_repo_list;
extern const ferry_function fn_repo_up;
extern const ferry_function fn_repo_down;
extern const ferry_function fn_repo_snapshot;
extern const ferry_function fn_repo_push;
extern const ferry_function fn_repo_pull;
extern const ferry_function fn_repo_verify;
extern const ferry_function fn_repo_gc;
extern const ferry_function fn_backup_with_retry;
extern const ferry_function fn_backup_to_secondary;
extern const ferry_function fn_repo_replicate;
extern const ferry_function fn_repo_snapshots; /* functions_browse.c */
extern const ferry_function fn_repo_ls;
extern const ferry_function fn_repo_diff;

/*
 * Starts a repository as repo_up does: the Ferryfile's prep, then (unless prep_only) up,
 * then the running mark. *ran is set when there is a Ferryfile. FERRY_OK, or an outcome
 * with the attempt's error set.
 */
ferry_result repo_start(target *t, const char *repository, int prep_only, int *ran);

#endif
