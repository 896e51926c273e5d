/*
 * Secrets sealed at rest, the store's side (store_seal.h; the cipher is host/base/seal.c).
 *
 * The key lives in a file outside the store. The table seal_state (migration 7) names the
 * id of the key every sealed value is under; no row means the store's secrets were never
 * sealed (a store made before migration 7, or a new one), and the first process that has a
 * key seals them all in one transaction and writes the row. Rotation writes the new key to
 * KEY.new, re-seals and switches seal_state in one transaction, then renames KEY.new over
 * KEY: a handle loads both files and uses the one seal_state names, so a crash at any point
 * leaves a store that opens, and the next open renames what a crash left behind.
 */
#include "store_seal.h"
#include "engine.h"
#include "seal.h"

#include "util.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


struct store_seal {
    char *path;           /* the key file; NULL: none (a server store opened without one) */
    int credential;       /* path is a systemd credential: read-only, never rotated here */
    int loaded;           /* keys[] read */
    struct seal_key keys[2];
    size_t n;             /* keys[0] is the key seal_state names, the one writes use */
};

/* The tables that hold vaults: their kind (as associated data), whether the row's team is
 * part of its identity, and the column that names the row. */
static const struct sealed_table {
    const char *table, *kind;
    int has_team;
    const char *name_col;
} sealed_tables[] = {
    {"teams", "team", 0, "name"},
    {"regions", "region", 0, "name"},
    {"bridges", "bridge", 0, "name"},
    {"machines", "machine", 1, "name"},
    {"storages", "storage", 1, "name"},
    {"schedules", "schedule", 1, "name"},
    {"machine_groups", "machine group", 1, "name"},
    {"queue_items", "item", 1, "task_id"},
};
#define N_TABLES (sizeof(sealed_tables) / sizeof(sealed_tables[0]))

static int kind_has_team(store_kind kind)
{
    return kind == STORE_MACHINE || kind == STORE_STORAGE || kind == STORE_SCHEDULE ||
           kind == STORE_MACHINE_GROUP;
}

/* A dynamic statement; rows (may be NULL) is left open for the caller. */
static int dyn(store *s, int write, eng_rows *rows, const char *sql, int n,
               const struct eng_val *v, char *err, size_t errlen)
{
    eng_rows tmp;
    eng_rows *r = rows ? rows : &tmp;
    int rc = s->drv->exec(s, -1, sql, write ? ENG_WRITE : 0, n, v, r, NULL, err, errlen);
    if (rc == STORE_OK && rows == NULL)
        eng_done(&tmp);
    return rc;
}

static struct eng_val text_val(const char *t)
{
    return (struct eng_val){.is_null = t == NULL, .is_text = 1, .text = t};
}

/* Reads seal_state's key id into id ("" when there is no row). lock: keep the row from a
 * rotation until the transaction ends (server engines). */
static int state_id(store *s, int lock, char id[SEAL_ID_LEN + 1], char *err, size_t errlen)
{
    eng_rows r;
    id[0] = '\0';
    int rc = dyn(s, 0, &r,
                 lock && s->drv->row_locks ? "SELECT key_id FROM seal_state FOR SHARE"
                                           : "SELECT key_id FROM seal_state",
                 0, NULL, err, errlen);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    if (got == 1 && eng_text(&r, 0) != NULL)
        snprintf(id, SEAL_ID_LEN + 1, "%s", eng_text(&r, 0));
    eng_done(&r);
    return got < 0 ? got : STORE_OK;
}

static int missing_key(const struct store_seal *z, char *err, size_t errlen)
{
    seterr(err, errlen,
           "this store keeps secrets sealed, but no key file is configured; set store.key in "
           "the config to the key file (docs/security.md)");
    (void)z;
    return STORE_ERROR;
}

/* Reads KEY and KEY.new; orders keys[] so that keys[0] has id want (when want is not "").
 * A KEY.new that is the store's key is a rotation a crash cut short: it is finished here.
 * With check, only says whether the keys fit (a host at start: ids computed apart, nothing
 * renamed, nothing kept; the first sealed value loads them for use). */
static int load_keys(store *s, const char *want, int check, char *err, size_t errlen)
{
    struct store_seal *z = s->seal;
    if (z->path == NULL)
        return missing_key(z, err, errlen);
    char *next = xasprintf("%s.new", z->path);
    struct seal_key main_key, new_key;
    char why[600] = "";
    int (*read_key)(const char *, struct seal_key *, char *, size_t) =
        check ? seal_key_read_apart : seal_key_read;
    int have_main = read_key(z->path, &main_key, why, sizeof(why)) == 0;
    int main_errno = errno;
    int have_new = !z->credential && read_key(next, &new_key, NULL, 0) == 0;
    int rc = STORE_OK;
    z->n = 0;
    if (have_new && want[0] && strcmp(new_key.id, want) == 0) {
        z->keys[z->n++] = new_key;
        if (!check && rename(next, z->path) == 0)
            have_main = 0; /* the old key is gone: the rotation is complete */
    }
    if (have_main)
        z->keys[z->n++] = main_key;
    if (z->n == 0) {
        if (main_errno == ENOENT)
            seterr(err, errlen,
                   "cannot read the store's key %s: it does not exist; this store's secrets "
                   "are sealed with key %s: restore that key file (ferry init makes a key "
                   "only for a store without one)",
                   z->path, want[0] ? want : "(unknown)");
        else
            seterr(err, errlen, "%s", why);
        rc = STORE_ERROR;
    } else if (want[0] && strcmp(z->keys[0].id, want) != 0) {
        seterr(err, errlen,
               "wrong key: this store's secrets are sealed with key %s, but %s holds key %s; "
               "use the key file the store was sealed with",
               want, z->path, z->keys[0].id);
        rc = STORE_ERROR;
    }
    explicit_bzero(&main_key, sizeof(main_key));
    explicit_bzero(&new_key, sizeof(new_key));
    free(next);
    z->loaded = rc == STORE_OK && !check;
    if (check) {
        explicit_bzero(z->keys, sizeof(z->keys));
        z->n = 0;
    }
    return rc;
}

/* Makes sure keys[0] is the key the store is sealed under now (read in the caller's
 * transaction, locked against a rotation on server engines): a host that was running while
 * `ferry key rotate` ran picks the new key up here. */
static int write_key(store *s, char *err, size_t errlen)
{
    struct store_seal *z = s->seal;
    char want[SEAL_ID_LEN + 1];
    int rc = state_id(s, 1, want, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (z->loaded && (want[0] == '\0' || strcmp(z->keys[0].id, want) == 0))
        return STORE_OK;
    return load_keys(s, want, 0, err, errlen);
}

/* Keys to open with: loaded once per handle, checked against seal_state. */
static int open_keys(store *s, char *err, size_t errlen)
{
    if (s->seal->loaded)
        return STORE_OK;
    char want[SEAL_ID_LEN + 1];
    int rc = state_id(s, 0, want, err, errlen);
    return rc == STORE_OK ? load_keys(s, want, 0, err, errlen) : rc;
}

static int seal_with(store *s, const struct seal_ident *who, json_t *vault,
                     const json_t *secret_names, char *err, size_t errlen)
{
    if (s->seal == NULL || !seal_vault_has_plain_secret(vault, secret_names))
        return STORE_OK;
    int rc = write_key(s, err, errlen);
    if (rc == STORE_OK && seal_vault(vault, &s->seal->keys[0], who, secret_names, NULL, err,
                                     errlen) != 0)
        rc = STORE_ERROR;
    return rc;
}

int store_seal_resource(store *s, store_kind kind, const char *team, const char *name,
                        json_t *vault, char *err, size_t errlen)
{
    struct seal_ident who = {store_kind_name(kind), kind_has_team(kind) ? team : "", name};
    return seal_with(s, &who, vault, NULL, err, errlen);
}

int store_seal_item(store *s, const char *team, const char *task_id, json_t *vault,
                    const json_t *secret_names, json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (vault == NULL)
        return STORE_OK;
    if (s->seal == NULL || !seal_vault_has_plain_secret(vault, secret_names)) {
        *out = json_incref(vault);
        return STORE_OK;
    }
    struct seal_ident who = {"item", team, task_id};
    json_t *copy = json_deep_copy(vault);
    int rc = seal_with(s, &who, copy, secret_names, err, errlen);
    if (rc == STORE_OK)
        *out = copy;
    else
        json_decref(copy);
    return rc;
}

static int open_with(store *s, const struct seal_ident *who, json_t *vault, char *err,
                     size_t errlen)
{
    if (s->seal == NULL || !seal_vault_has_sealed(vault))
        return STORE_OK;
    int rc = open_keys(s, err, errlen);
    if (rc == STORE_OK &&
        seal_vault_open(vault, s->seal->keys, s->seal->n, who, NULL, err, errlen) != 0)
        rc = STORE_ERROR;
    /* A host that was running while `ferry key rotate` ran holds the old key: read the
     * key files again, once, and open what is left. */
    if (rc != STORE_OK && s->seal->loaded) {
        s->seal->loaded = 0;
        rc = open_keys(s, err, errlen);
        if (rc == STORE_OK &&
            seal_vault_open(vault, s->seal->keys, s->seal->n, who, NULL, err, errlen) != 0)
            rc = STORE_ERROR;
    }
    return rc;
}

int store_seal_open_item(store *s, const char *team, const char *task_id, json_t *vault,
                         char *err, size_t errlen)
{
    struct seal_ident who = {"item", team, task_id};
    return open_with(s, &who, vault, err, errlen);
}

/* The name field of a resource row of each kind. */
static const char *const row_name_field[STORE_KIND_COUNT] = {
    "teamName", "regionName", "bridgeName", "machineName", "storageName", "scheduleName",
    "groupName",
};

int store_resource_reveal(store *s, store_kind kind, json_t *row, char *err, size_t errlen)
{
    if (kind < 0 || kind >= STORE_KIND_COUNT || !json_is_object(row))
        return STORE_OK;
    const char *team = json_string_value(json_object_get(row, "teamName"));
    const char *name = json_string_value(json_object_get(row, row_name_field[kind]));
    struct seal_ident who = {store_kind_name(kind), kind_has_team(kind) ? team : "", name};
    int rc = open_with(s, &who, json_object_get(row, "vault"), err, errlen);
    if (rc == STORE_OK && json_object_get(row, "vaultContent") != NULL)
        rc = open_with(s, &who, json_object_get(row, "vaultContent"), err, errlen);
    return rc;
}

int store_item_reveal(store *s, json_t *row, char *err, size_t errlen)
{
    struct seal_ident who = {"item", json_string_value(json_object_get(row, "teamName")),
                             json_string_value(json_object_get(row, "taskId"))};
    return open_with(s, &who, json_object_get(row, "vaultContent"), err, errlen);
}

const char *store_key_path(const store *s)
{
    return s->seal ? s->seal->path : NULL;
}

/* ---- passes over every vault: sealing an older store, rotating the key ------------------- */

struct pass {
    int rotate;                 /* 0: seal plain secrets (upgrade); 1: re-seal under keys[0] */
    const struct seal_key *key; /* the key to seal with */
    const struct seal_key *old; /* rotate: the keys to open with */
    size_t n_old;
    long changed;               /* values sealed or re-sealed */
    int skipped;                /* upgrade: seal_state had a row already */
};

/* Seals or re-seals one vault (text) of a row; *out the new text when it changed. */
static int pass_row(struct pass *p, const struct sealed_table *t, const char *team,
                    const char *name, const char *text, char **out, char *err, size_t errlen)
{
    struct seal_ident who = {t->kind, t->has_team ? team : "", name};
    json_t *vault = store_vault_parse(text);
    json_t *names = json_array();
    int n_sealed = 0, rc = STORE_OK;
    *out = NULL;
    if (p->rotate) {
        seal_vault_sealed_keys(vault, names);
        if (seal_vault_open(vault, p->old, p->n_old, &who, NULL, err, errlen) != 0)
            rc = STORE_ERROR;
    }
    if (rc == STORE_OK && seal_vault(vault, p->key, &who, names, &n_sealed, err, errlen) != 0)
        rc = STORE_ERROR;
    if (rc == STORE_OK && n_sealed > 0) {
        *out = json_dumps(vault, JSON_COMPACT);
        p->changed += n_sealed;
    }
    json_decref(names);
    json_decref(vault);
    return rc;
}

static int pass_table(store *s, struct pass *p, const struct sealed_table *t, char *err,
                      size_t errlen)
{
    char *select = xasprintf("SELECT %s, %s, vault FROM %s%s", t->has_team ? "team_name" : "''",
                             t->name_col, t->table,
                             p->rotate ? " WHERE vault LIKE '%" SEAL_PREFIX "%'" : "");
    char *update = xasprintf("UPDATE %s SET vault = ?1 WHERE %s = ?2%s", t->table, t->name_col,
                             t->has_team ? " AND team_name = ?3" : "");
    eng_rows r;
    json_t *rows = json_array();
    int rc = dyn(s, 0, &r, select, 0, NULL, err, errlen), got = 0;
    while (rc == STORE_OK && (got = eng_next(&r, err, errlen)) == 1)
        json_array_append_new(rows, json_pack("[s?,s?,s?]", eng_text(&r, 0), eng_text(&r, 1),
                                              eng_text(&r, 2)));
    if (rc == STORE_OK) {
        eng_done(&r);
        rc = got < 0 ? got : STORE_OK;
    }
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        const char *team = json_string_value(json_array_get(row, 0));
        const char *name = json_string_value(json_array_get(row, 1));
        char *text = NULL;
        if (rc == STORE_OK)
            rc = pass_row(p, t, team, name, json_string_value(json_array_get(row, 2)), &text,
                          err, errlen);
        if (rc == STORE_OK && text != NULL) {
            struct eng_val v[3] = {text_val(text), text_val(name), text_val(team)};
            rc = dyn(s, 1, NULL, update, t->has_team ? 3 : 2, v, err, errlen);
        }
        free(text);
    }
    json_decref(rows);
    free(select);
    free(update);
    return rc;
}

static int pass_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct pass *p = ctx;
    char id[SEAL_ID_LEN + 1];
    p->changed = 0;
    /* Processes opening a fresh store at once: one seals, the others find its row. */
    int rc = eng_w(s, NULL, err, errlen, S_MIGRATION_LOCK, "");
    if (rc == STORE_OK)
        rc = state_id(s, 1, id, err, errlen);
    if (rc == STORE_OK && !p->rotate && id[0]) {
        p->skipped = 1; /* another process sealed it first */
        return STORE_OK;
    }
    for (size_t i = 0; rc == STORE_OK && i < N_TABLES; i++)
        rc = pass_table(s, p, &sealed_tables[i], err, errlen);
    struct eng_val v[2] = {text_val(p->key->id), {.num = now_ms()}};
    if (rc == STORE_OK && id[0])
        rc = dyn(s, 1, NULL, "UPDATE seal_state SET key_id = ?1, updated_at = ?2", 2, v, err,
                 errlen);
    else if (rc == STORE_OK)
        rc = dyn(s, 1, NULL, "INSERT INTO seal_state (one, key_id, updated_at) VALUES (1, ?1, ?2)"
                 " ON CONFLICT DO NOTHING",
                 2, v, err, errlen);
    return rc;
}

/* ---- opening and closing ------------------------------------------------------------------ */

static int state_body(store *s, void *ctx, char *err, size_t errlen)
{
    return state_id(s, 0, ctx, err, errlen);
}

/* The key file a handle uses (see store_seal_attach); sets z->path and z->credential. */
static void pick_key_path(struct store_seal *z, const char *sqlite_path, const char *configured)
{
    const char *cred = getenv("CREDENTIALS_DIRECTORY");
    if (cred != NULL && cred[0] != '\0') {
        char *path = xasprintf("%s/ferry.key", cred);
        if (access(path, F_OK) == 0) {
            z->path = path;
            z->credential = 1;
            return;
        }
        free(path);
    }
    if (configured != NULL && configured[0] != '\0') {
        z->path = xstrdup(configured);
    } else if (sqlite_path != NULL) {
        char *copy = xstrdup(sqlite_path);
        z->path = xasprintf("%s/ferry.key", dirname(copy));
        free(copy);
    }
}

/* Seals what a store without seal_state holds, making its key when there is none. */
static int first_seal(store *s, char *err, size_t errlen)
{
    struct store_seal *z = s->seal;
    struct seal_key k;
    if (!z->credential && access(z->path, F_OK) != 0 && errno == ENOENT) {
        if (seal_key_generate(&k, err, errlen) != 0)
            return STORE_ERROR;
        int wrote = seal_key_write(z->path, &k, err, errlen);
        explicit_bzero(&k, sizeof(k));
        if (wrote != 0 && errno != EEXIST)
            return STORE_ERROR; /* EEXIST: another process made it first; read theirs */
    }
    int rc = load_keys(s, "", 0, err, errlen);
    struct pass p = {.rotate = 0, .key = &z->keys[0]};
    if (rc == STORE_OK)
        rc = eng_run(s, 1, pass_body, &p, err, errlen);
    if (p.skipped)
        z->loaded = 0; /* sealed by another process: check its key at first use */
    return rc;
}

/* Refuses an SQLite store that other users may read while it holds sealed secrets. */
static int check_private(store *s, const char *path, char *err, size_t errlen)
{
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    const char *loose = NULL;
    char *names[3] = {0};
    int found[3] = {0};
    unsigned loose_mode = 0;
    for (size_t i = 0; i < 3; i++) {
        struct stat st;
        names[i] = xasprintf("%s%s", path, suffixes[i]);
        if (stat(names[i], &st) != 0)
            continue;
        found[i] = 1;
        if ((st.st_mode & 077) && loose == NULL) {
            loose = names[i];
            loose_mode = (unsigned)(st.st_mode & 07777);
        }
    }
    int rc = STORE_OK;
    for (size_t i = 0; loose != NULL && rc == STORE_OK && i < N_TABLES; i++) {
        char *sql = xasprintf("SELECT 1 FROM %s WHERE vault LIKE '%%" SEAL_PREFIX "%%' LIMIT 1",
                              sealed_tables[i].table);
        eng_rows r;
        rc = dyn(s, 0, &r, sql, 0, NULL, err, errlen);
        int got = rc == STORE_OK ? eng_next(&r, err, errlen) : 0;
        if (rc == STORE_OK)
            eng_done(&r);
        free(sql);
        if (got == 1) {
            /* The files to chmod are listed for this message alone: a buffer for them,
             * zeroed at every open, cost each command 12,600 instructions. */
            char *files = xstrdup("");
            for (size_t k = 0; k < 3; k++) {
                if (!found[k])
                    continue;
                char *more = xasprintf("%s %s", files, names[k]);
                free(files);
                files = more;
            }
            seterr(err, errlen,
                   "store %s holds secrets but other users may read it (mode %04o); run: "
                   "chmod 600%s",
                   loose, loose_mode, files);
            free(files);
            rc = STORE_ERROR;
        }
    }
    for (size_t i = 0; i < 3; i++)
        free(names[i]);
    return rc;
}

int store_seal_attach(store *s, const char *sqlite_path, const struct store_options *opts,
                      char *err, size_t errlen)
{
    struct store_seal *z = calloc(1, sizeof(*z));
    if (z == NULL)
        abort();
    s->seal = z;
    pick_key_path(z, sqlite_path, opts->key_path);
    char id[SEAL_ID_LEN + 1] = "";
    int rc = eng_run(s, 0, state_body, id, err, errlen);
    if (rc == STORE_OK && id[0] == '\0' && z->path != NULL)
        rc = first_seal(s, err, errlen);
    else if (rc == STORE_OK && id[0] != '\0' && !opts->short_lived && z->path != NULL)
        rc = load_keys(s, id, 1, err, errlen); /* a host: a missing or wrong key stops it now */
    if (rc == STORE_OK && sqlite_path != NULL)
        rc = check_private(s, sqlite_path, err, errlen);
    return rc;
}

void store_seal_detach(store *s)
{
    if (s->seal == NULL)
        return;
    free(s->seal->path);
    explicit_bzero(s->seal, sizeof(*s->seal));
    free(s->seal);
    s->seal = NULL;
}

/* ---- rotation ----------------------------------------------------------------------------- */

int store_key_rotate(store *s, long *resealed, char key_id[17], char *err, size_t errlen)
{
    struct store_seal *z = s->seal;
    if (z == NULL || z->path == NULL)
        return missing_key(z, err, errlen);
    if (z->credential) {
        seterr(err, errlen,
               "the key is the systemd credential %s, which ferry does not replace; set "
               "store.key to a key file to rotate it here",
               z->path);
        return STORE_ERROR;
    }
    z->loaded = 0;
    int rc = open_keys(s, err, errlen); /* also finishes a rotation a crash cut short */
    if (rc != STORE_OK)
        return rc;
    char *next = xasprintf("%s.new", z->path);
    struct seal_key k;
    unlink(next); /* left by a rotation that did not commit: not the store's key */
    if (seal_key_generate(&k, err, errlen) != 0 || seal_key_write(next, &k, err, errlen) != 0) {
        free(next);
        return STORE_ERROR;
    }
    struct pass p = {.rotate = 1, .key = &k, .old = z->keys, .n_old = z->n};
    rc = eng_run(s, 1, pass_body, &p, err, errlen);
    if (rc != STORE_OK) {
        unlink(next);
    } else if (rename(next, z->path) != 0) {
        /* The store is under the new key; KEY.new holds it and the next open renames it. */
        seterr(err, errlen, "re-sealed under key %s, but cannot rename %s to %s: %s; run ferry "
               "key rotate again", k.id, next, z->path, strerror(errno));
        rc = STORE_ERROR;
    } else {
        z->keys[0] = k;
        z->n = 1;
        z->loaded = 1;
        if (resealed)
            *resealed = p.changed;
        if (key_id)
            snprintf(key_id, SEAL_ID_LEN + 1, "%s", k.id);
    }
    explicit_bzero(&k, sizeof(k));
    free(next);
    return rc;
}
