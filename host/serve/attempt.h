/*
 * Building an attempt for the runner, the same way for `ferry serve` (a claimed item or a
 * nested call) and `ferry run` (one function, here, without the queue): the parameters the
 * function sees, its timeout, the machine it runs for, the item's hooks and SSH key as
 * explicit fields, and the attempt's identity, as the runner's typed struct attempt_spec
 * (proto.h).
 */
#ifndef FERRY_ATTEMPT_H
#define FERRY_ATTEMPT_H

#include <stdint.h>

#include <jansson.h>

#include "config.h"
#include "descriptor.h"
#include "proto.h"
#include "store.h"

struct registry;

/* What the host knows of one attempt. Everything is borrowed. */
struct attempt_source {
    const struct registry *reg; /* the plugins: where an item's hooks run (may be NULL) */
    const struct ferry_fn *fn;  /* the function (registry_fn) */
    const json_t *vault;        /* the vault its parameters come from (item's or call's) */
    const json_t *item_vault;   /* the item's own vault: pre_hook, post_hook (depth 0 only) */
    const json_t *machine;      /* machine facts, secrets removed (attempt_machine) */
    const char *machine_json;   /* machine as compact JSON when the caller keeps it, or NULL */
    const char *ssh_key;        /* the machine's SSH private key, or NULL */
    const char *task_id;        /* host->task_id: the item's id, or ferry run's own */
    int attempt;                /* host->attempt, 1-based */
    int depth;                  /* 0: the item's own attempt; n: a call n levels down */
};

/* A built attempt: spec for runner_start, and what its pointers own. */
struct attempt_run {
    struct attempt_spec spec; /* points into the members below and into the source */
    json_t *params, *config;
    char *hook_dir;
};

/*
 * Builds the runner's spec for src (run->spec borrows from src, which must outlive it, and
 * from run's own members; free them with attempt_run_free): plugin path, function, the
 * parameters (attempt_params), the plugin's config section, the machine and SSH key, the
 * item's hooks and where they run for the item's own attempt, identity and timeout.
 */
void attempt_build(const ferry_config *cfg, const struct attempt_source *src,
                   struct attempt_run *run);

/* Frees what attempt_build allocated (not run itself). */
void attempt_run_free(struct attempt_run *run);

/*
 * The parameters a function sees: the vault without the keys the host acts on. The
 * informational host keys (description, tags) are passed through too: a backup records
 * them with its snapshot. New reference.
 */
json_t *attempt_params(const json_t *vault);

/* The attempt's timeout: the vault's "timeout", else the function's, else the host's
 * default, never above timeout_max. In ms. */
int64_t attempt_timeout_ms(const ferry_config *cfg, const json_t *vault, const struct ferry_fn *fn);

/*
 * The machine team/name as workers see it, read from the store (new reference): its vault
 * with secrets removed, plus name, team, bridge and local. *ssh_key (may be NULL) receives
 * the SSH key the exec service logs in with (the machine's, else its team's, for a remote
 * machine) as a new reference to a JSON string, or NULL. A machine that cannot be read is
 * {"name","team","local":false}.
 */
json_t *attempt_machine(store *st, const char *team, const char *name, json_t **ssh_key);
/* The same from the machine's row, already read (store_resource_get or _list). The team's
 * row, when a remote machine without a key of its own needs it, is read into *team_row
 * unless it holds it already (the caller frees it; may be reused for machines of the same
 * team). */
json_t *attempt_machine_row(store *st, const char *team, const char *name, const json_t *row,
                            json_t **team_row, json_t **ssh_key);

/* This machine, for `ferry run`: {"name","hostname","local":true}. New reference. */
json_t *attempt_local_machine(void);

/*
 * Machines' facts a host keeps between attempts (serve.c decides when they are stale), by
 * team and name: each with the SSH key the exec service logs in with and the facts already
 * written as compact JSON, which every run message for the machine copies.
 */
struct machine_facts {
    char *team, *name;
    json_t *facts;       /* attempt_machine() */
    const char *ssh_key; /* or NULL */
    char *json;          /* facts as compact JSON, or NULL (the run message writes facts) */
    json_t *key_ref;     /* owns ssh_key */
    uint64_t hash;
};
typedef struct machine_cache machine_cache;
machine_cache *machine_cache_new(void);
/* The machine's entry, or NULL; valid until the next put or clear. */
const struct machine_facts *machine_cache_get(const machine_cache *c, const char *team,
                                              const char *name);
/* Keeps facts and ssh_key (references taken; ssh_key may be NULL); a full cache is emptied
 * first. Returns the new entry. */
const struct machine_facts *machine_cache_put(machine_cache *c, const char *team,
                                              const char *name, json_t *facts, json_t *ssh_key);
void machine_cache_clear(machine_cache *c);
void machine_cache_free(machine_cache *c);

#endif
