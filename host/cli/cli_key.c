/*
 * `ferry key …`: the key that seals the store's secrets at rest (docs/security.md).
 */
#include <stdio.h>

#include "cli.h"
#include "store.h"

/* Re-seals every secret of the store under a new key (store_key_rotate). */
static int cmd_key_rotate(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    char err[1024], id[17] = "";
    long resealed = 0;
    if (store_key_rotate(c->st, &resealed, id, err, sizeof(err)) != STORE_OK)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    char msg[1400];
    snprintf(msg, sizeof(msg), "re-sealed %ld secret values under key %s (%s); the old key is gone",
             resealed, id, store_key_path(c->st));
    if (c->json)
        cli_print_ok(c,
                     json_pack("{s:s,s:I,s:s}", "keyId", id, "resealed", (json_int_t)resealed,
                               "keyFile", store_key_path(c->st)),
                     msg);
    else
        printf("%s\n", msg);
    return EXIT_OK;
}

static const cli_opt none[] = {{NULL, 0, NULL, 0, NULL}};

const cli_command cli_key_commands[] = {
    {"key", "rotate", NULL, 0, 0, none, cmd_key_rotate,
     "re-seal every secret of the store under a new key, in one transaction"},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL},
};
