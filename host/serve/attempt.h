/*
 * Building an attempt for the runner, the same way for `ferry serve` (a claimed item or a
 * nested call) and `ferry run` (one function, here, without the queue): the parameters the
 * function sees, its timeout, the machine it runs for with the item's hooks and SSH key,
 * and the run message a worker executes.
 */
#ifndef FERRY_ATTEMPT_H
#define FERRY_ATTEMPT_H

#include <stdint.h>

#include <jansson.h>

#include "config.h"
#include "descriptor.h"
#include "store.h"

/* What one attempt runs. Everything is borrowed. */
struct attempt_spec {
    const struct ferry_fn *fn; /* the function (registry_fn) */
    const json_t *vault;       /* the vault its parameters come from (item's or call's) */
    const json_t *machine;     /* machine facts (attempt_machine / attempt_local_machine) */
    const json_t *item_vault;  /* the item's own vault: its pre_hook and post_hook, or NULL */
    const char *task_id;       /* host->task_id: the item's id, or ferry run's own */
    int attempt;               /* host->attempt, 1-based */
    int depth;                 /* 0: the item's own attempt; n: a call n levels down */
};

/*
 * The worker's run message for spec (new reference, handed to runner_submit): plugin path,
 * function, parameters, the plugin's config section, the machine with the item's hooks,
 * depth, task and attempt.
 */
json_t *attempt_message(const ferry_config *cfg, const struct attempt_spec *spec);

/*
 * The parameters a function sees: the vault without the keys the host acts on. The
 * informational host keys (description, tags) are passed through too: a backup records
 * them with its snapshot. New reference.
 */
json_t *attempt_params(const json_t *vault);

/* The attempt's timeout: the vault's "timeout", else the function's, else the host's
 * default, never above timeout_max. In ms. */
int64_t attempt_timeout_ms(const ferry_config *cfg, const json_t *vault,
                           const struct ferry_fn *fn);

/*
 * The machine team/name as workers see it, read from the store (new reference): its vault
 * with secrets removed, plus name, team, bridge, local, and the SSH key (the machine's, else
 * its team's, for a remote machine) under the member only the exec service reads. A machine
 * that cannot be read is {"name","team","local":false}.
 */
json_t *attempt_machine(store *st, const char *team, const char *name);

/* This machine, for `ferry run`: {"name","hostname","local":true}. New reference. */
json_t *attempt_local_machine(void);

#endif
