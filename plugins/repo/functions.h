/* The repo plugin's queue functions (descriptors defined in functions_*.c). */
#ifndef REPO_FUNCTIONS_H
#define REPO_FUNCTIONS_H

#include <ferry/plugin.h>

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

#endif
