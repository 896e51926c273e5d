/*
 * The store's side of sealing secrets at rest (seal.h has the cipher): which key a handle
 * uses, the pass that seals what a store made before migration 7 holds, sealing on write
 * (resources.c, queue.c) and opening where a secret is needed (engine.c for the items a
 * host claims, store_resource_reveal for everything else). For the store's own files.
 */
#ifndef FERRY_STORE_SEAL_H
#define FERRY_STORE_SEAL_H

#include "store.h"

/*
 * Called by store.c once a driver has opened s: picks the key file (opts->key_path, else
 * the systemd credential, else next to the SQLite file sqlite_path; NULL for a server),
 * seals what an older store holds (creating the key file for a store that has none), and
 * refuses an SQLite store whose files other users may read while it holds secrets.
 * long_lived: a host; it checks the key now rather than at the first secret.
 * STORE_OK, or STORE_ERROR with err set (the caller closes s).
 */
int store_seal_attach(store *s, const char *sqlite_path, const struct store_options *opts,
                      char *err, size_t errlen);

/* Frees what store_seal_attach made (store_close). */
void store_seal_detach(store *s);

/*
 * Seals, in place, the secret values of the vault about to be written for resource (kind,
 * team, name); team is ignored for kinds that have none. Inside the write's transaction.
 * STORE_OK, or STORE_ERROR with err set (no key, or the cipher failed).
 */
int store_seal_resource(store *s, store_kind kind, const char *team, const char *name,
                        json_t *vault, char *err, size_t errlen);

/*
 * The vault to write for queue item task_id of team, in *out (a new reference): vault itself
 * when it holds no plain secret (no copy: the hot path of creates), else a sealed copy.
 * secret_names: more secret keys (may be NULL). vault may be NULL (then *out is NULL).
 */
int store_seal_item(store *s, const char *team, const char *task_id, json_t *vault,
                    const json_t *secret_names, json_t **out, char *err, size_t errlen);

/* Opens an item's vault in place, for the host that runs it. STORE_OK or STORE_ERROR. */
int store_seal_open_item(store *s, const char *team, const char *task_id, json_t *vault,
                         char *err, size_t errlen);

#endif
