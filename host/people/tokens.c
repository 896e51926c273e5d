/*
 * Users and their API tokens over the store's engine (engine.h), for every driver: create,
 * list, remove and revoke, and people_authenticate. A token is 32 random bytes from the
 * kernel, printed once as "fy1_" and 64 hex digits; the store keeps only its SHA-256, which
 * a token of that entropy makes as good as a slow password hash. Every change writes its
 * audit row in its own transaction (audit.c).
 */
#include "people.h"
#include "people_store.h"

#include "engine.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

/* A token's use is written (last used, audit row) at most once a minute per address. */
#define TOKEN_USE_EVERY_MS 60000

/* Whether text has a token's shape: the prefix and exactly 64 lowercase hex digits. */
static int token_shape_ok(const char *text)
{
    size_t plen = strlen(PEOPLE_TOKEN_PREFIX);
    if (text == NULL || strlen(text) != PEOPLE_TOKEN_LEN ||
        strncmp(text, PEOPLE_TOKEN_PREFIX, plen) != 0)
        return 0;
    for (const char *c = text + plen; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return 0;
    return 1;
}

static json_t *user_row_at(eng_rows *r, int with_tokens)
{
    json_t *row = json_pack("{s:s,s:o,s:s}", "userName", eng_text(r, 0), "createdTime",
                            people_time_json(eng_i64(r, 1)), "createdBy", eng_text(r, 2));
    json_object_set_new(row, "tokens", json_integer(with_tokens ? eng_i64(r, 3) : 0));
    return row;
}

/* The row of a token (S_TOKEN_* columns); never the token or its hash. */
static json_t *token_row_at(eng_rows *r)
{
    const char *addr = eng_text(r, 7), *by = eng_text(r, 9);
    return json_pack("{s:I,s:s,s:s,s:s,s:o,s:s,s:o,s:o,s:b,s:o,s:o}", "tokenId",
                     (json_int_t)eng_i64(r, 0), "userName", eng_text(r, 1), "teamName",
                     eng_text(r, 2), "role", eng_text(r, 3), "createdTime",
                     people_time_json(eng_i64(r, 4)), "createdBy", eng_text(r, 5),
                     "lastUsedTime", people_time_json(eng_i64(r, 6)), "lastUsedAddress",
                     addr ? json_string(addr) : json_null(), "revoked", !eng_null(r, 8),
                     "revokedTime", people_time_json(eng_i64(r, 8)), "revokedBy",
                     by ? json_string(by) : json_null());
}

struct people_ctx {
    const char *name, *team, *hash, *address;
    enum people_role role;
    int64_t id, now;
    struct principal who; /* authenticate: the token's principal */
    int refused;          /* authenticate: a revoked token or a removed user's */
    int touch;            /* authenticate: its use is to be written */
    json_t *out;
};

/* Reads one row of a query (query: statement id, one text or integer key) with make, into
 * c->out. NOT_FOUND (err unset) when there is none. */
static int read_one(store *s, struct people_ctx *c, int id, json_t *(*make)(eng_rows *), char *err,
                    size_t errlen)
{
    eng_rows r;
    int rc = id == S_USER_GET ? eng_q(s, &r, err, errlen, id, "t", c->name)
                              : eng_q(s, &r, err, errlen, id, "I", c->id);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    if (got == 1) {
        json_decref(c->out);
        c->out = make(&r);
    }
    eng_done(&r);
    return got < 0 ? got : got == 1 ? STORE_OK : STORE_NOT_FOUND;
}

static json_t *user_get_row(eng_rows *r)
{
    json_t *row = user_row_at(r, 0);
    if (!eng_null(r, 3))
        json_object_set_new(row, "removedTime", people_time_json(eng_i64(r, 3)));
    return row;
}

/* ---- users ------------------------------------------------------------------------------- */

static int user_create_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct people_ctx *c = ctx;
    struct principal me;
    long rows = 0;
    people_actor(s, &me);
    int rc = read_one(s, c, S_USER_GET, user_get_row, err, errlen);
    if (rc == STORE_OK) {
        if (json_object_get(c->out, "removedTime"))
            seterr(err, errlen, "user '%s' was removed; names of removed users are not reused "
                                "(the audit log names them)", c->name);
        else
            seterr(err, errlen, "user '%s' already exists", c->name);
        return STORE_CONFLICT;
    }
    if (rc != STORE_NOT_FOUND)
        return rc;
    rc = eng_w(s, &rows, err, errlen, S_USER_INSERT, "tIt", c->name, c->now, me.user);
    if (rc == STORE_OK && rows == 0) {
        seterr(err, errlen, "user '%s' already exists", c->name);
        return STORE_CONFLICT;
    }
    if (rc == STORE_OK)
        rc = people_audit_note(s, "user.create", NULL, c->name, NULL, err, errlen);
    if (rc == STORE_OK)
        rc = read_one(s, c, S_USER_GET, user_get_row, err, errlen);
    return rc;
}

int people_user_create(store *s, const char *name, json_t **row, char *err, size_t errlen)
{
    char why[256];
    if (!valid_name(name, why, sizeof(why))) {
        seterr(err, errlen, "user name: %s", why);
        return STORE_ERROR;
    }
    struct people_ctx c = {.name = name, .now = now_ms()};
    int rc = eng_run(s, 1, user_create_body, &c, err, errlen);
    return eng_take_json(c.out, row, rc);
}

static int user_missing(const char *name, char *err, size_t errlen)
{
    seterr(err, errlen, "no user named '%s'; create it with: ferry create user %s", name, name);
    return STORE_NOT_FOUND;
}

static int user_delete_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct people_ctx *c = ctx;
    struct principal me;
    long rows = 0, revoked = 0;
    char details[64];
    people_actor(s, &me);
    int rc = eng_w(s, &rows, err, errlen, S_USER_DELETE, "tIt", c->name, c->now, me.user);
    if (rc == STORE_OK && rows == 0)
        return user_missing(c->name, err, errlen);
    if (rc == STORE_OK)
        rc = eng_w(s, &revoked, err, errlen, S_TOKENS_REVOKE_USER, "tIt", c->name, c->now,
                   me.user);
    snprintf(details, sizeof(details), "%ld tokens revoked", revoked);
    if (rc == STORE_OK)
        rc = people_audit_note(s, "user.delete", NULL, c->name, details, err, errlen);
    return rc;
}

int people_user_delete(store *s, const char *name, char *err, size_t errlen)
{
    struct people_ctx c = {.name = name, .now = now_ms()};
    return eng_run(s, 1, user_delete_body, &c, err, errlen);
}

static int user_list_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct people_ctx *c = ctx;
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_USERS_LIST, "");
    if (rc != STORE_OK)
        return rc;
    json_t *rows = json_array();
    int got;
    while ((got = eng_next(&r, err, errlen)) == 1)
        json_array_append_new(rows, user_row_at(&r, 1));
    eng_done(&r);
    json_decref(c->out);
    c->out = rows;
    return got < 0 ? got : STORE_OK;
}

int people_user_list(store *s, json_t **rows, char *err, size_t errlen)
{
    struct people_ctx c = {0};
    int rc = eng_run(s, 0, user_list_body, &c, err, errlen);
    return eng_take_json(c.out, rows, rc);
}

/* ---- tokens ------------------------------------------------------------------------------ */

/* NOT_FOUND unless user exists and was not removed. */
static int need_user(store *s, struct people_ctx *c, char *err, size_t errlen)
{
    int rc = read_one(s, c, S_USER_GET, user_get_row, err, errlen);
    if (rc == STORE_OK && json_object_get(c->out, "removedTime"))
        rc = STORE_NOT_FOUND;
    if (rc == STORE_NOT_FOUND)
        return user_missing(c->name, err, errlen);
    return rc;
}

static int token_create_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct people_ctx *c = ctx;
    struct principal me;
    eng_rows r;
    char target[32], details[200];
    people_actor(s, &me);
    int rc = need_user(s, c, err, errlen);
    if (rc == STORE_OK)
        rc = eng_need(s, STORE_TEAM, NULL, c->team, err, errlen);
    if (rc == STORE_OK)
        rc = eng_wq(s, &r, err, errlen, S_TOKEN_INSERT, "ttttIt", c->name, c->team,
                    people_role_name(c->role), c->hash, c->now, me.user);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    c->id = got == 1 ? eng_i64(&r, 0) : 0;
    eng_done(&r);
    if (got != 1) {
        if (got == 0)
            seterr(err, errlen, "the new token's id was not returned");
        return got < 0 ? got : STORE_ERROR;
    }
    snprintf(target, sizeof(target), "%lld", (long long)c->id);
    snprintf(details, sizeof(details), "user %s, role %s", c->name, people_role_name(c->role));
    rc = people_audit_note(s, "token.create", c->team, target, details, err, errlen);
    return rc != STORE_OK ? rc : read_one(s, c, S_TOKEN_GET, token_row_at, err, errlen);
}

int people_token_create(store *s, const char *user, const char *team, enum people_role role,
                        char token[PEOPLE_TOKEN_LEN + 1], json_t **row, char *err,
                        size_t errlen)
{
    unsigned char raw[32];
    char hash[65];
    token[0] = '\0';
    if (row)
        *row = NULL;
    if (role < ROLE_VIEWER || role > ROLE_ADMIN) {
        seterr(err, errlen, "a token's role is viewer, operator or admin");
        return STORE_ERROR;
    }
    if (user == NULL || team == NULL) {
        seterr(err, errlen, "a token needs a user and a team");
        return STORE_ERROR;
    }
    if (people_random(raw, sizeof(raw), err, errlen) != 0)
        return STORE_ERROR;
    char *p = token + snprintf(token, PEOPLE_TOKEN_LEN + 1, "%s", PEOPLE_TOKEN_PREFIX);
    for (size_t i = 0; i < sizeof(raw); i++)
        p += snprintf(p, 3, "%02x", raw[i]);
    explicit_bzero(raw, sizeof(raw));
    if (people_sha256_hex(token, hash, err, errlen) != 0) {
        explicit_bzero(token, PEOPLE_TOKEN_LEN + 1);
        token[0] = '\0';
        return STORE_ERROR;
    }
    struct people_ctx c = {.name = user, .team = team, .role = role, .hash = hash,
                           .now = now_ms()};
    int rc = eng_run(s, 1, token_create_body, &c, err, errlen);
    if (rc != STORE_OK)
        explicit_bzero(token, PEOPLE_TOKEN_LEN + 1);
    return eng_take_json(c.out, row, rc);
}

static int token_list_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct people_ctx *c = ctx;
    eng_rows r;
    int rc = c->name ? need_user(s, c, err, errlen) : STORE_OK;
    if (rc == STORE_OK)
        rc = c->name ? eng_q(s, &r, err, errlen, S_TOKENS_LIST_USER, "t", c->name)
                     : eng_q(s, &r, err, errlen, S_TOKENS_LIST, "");
    if (rc != STORE_OK)
        return rc;
    json_t *rows = json_array();
    int got;
    while ((got = eng_next(&r, err, errlen)) == 1)
        json_array_append_new(rows, token_row_at(&r));
    eng_done(&r);
    json_decref(c->out);
    c->out = rows;
    return got < 0 ? got : STORE_OK;
}

int people_token_list(store *s, const char *user, json_t **rows, char *err, size_t errlen)
{
    struct people_ctx c = {.name = user};
    int rc = eng_run(s, 0, token_list_body, &c, err, errlen);
    return eng_take_json(c.out, rows, rc);
}

static int token_revoke_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct people_ctx *c = ctx;
    struct principal me;
    char target[32], details[200];
    long rows = 0;
    people_actor(s, &me);
    int rc = read_one(s, c, S_TOKEN_GET, token_row_at, err, errlen);
    if (rc == STORE_NOT_FOUND)
        seterr(err, errlen, "no token with id %lld; see ferry list tokens", (long long)c->id);
    if (rc != STORE_OK)
        return rc;
    if (json_is_true(json_object_get(c->out, "revoked"))) {
        seterr(err, errlen, "token %lld was revoked already", (long long)c->id);
        return STORE_CONFLICT;
    }
    rc = eng_w(s, &rows, err, errlen, S_TOKEN_REVOKE, "IIt", c->id, c->now, me.user);
    snprintf(target, sizeof(target), "%lld", (long long)c->id);
    snprintf(details, sizeof(details), "user %s",
             json_string_value(json_object_get(c->out, "userName")));
    if (rc == STORE_OK)
        rc = people_audit_note(s, "token.revoke",
                               json_string_value(json_object_get(c->out, "teamName")), target,
                               details, err, errlen);
    return rc != STORE_OK ? rc : read_one(s, c, S_TOKEN_GET, token_row_at, err, errlen);
}

int people_token_revoke(store *s, int64_t id, json_t **row, char *err, size_t errlen)
{
    struct people_ctx c = {.id = id, .now = now_ms()};
    int rc = eng_run(s, 1, token_revoke_body, &c, err, errlen);
    return eng_take_json(c.out, row, rc);
}

/* ---- authenticate ------------------------------------------------------------------------ */

/* Finds the token by its hash and fills c->who; notes whether it is refused and whether its
 * use is to be written. NOT_FOUND when no token has that hash. */
static int token_find_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct people_ctx *c = ctx;
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_TOKEN_BY_HASH, "t", c->hash);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    const char *stored = got == 1 ? eng_text(&r, 10) : NULL;
    if (got == 1 && stored != NULL && strlen(stored) == 64 &&
        people_equal_ct(stored, c->hash, 64)) {
        struct principal *p = &c->who;
        memset(p, 0, sizeof(*p));
        snprintf(p->user, sizeof(p->user), "%s", eng_text(&r, 1));
        snprintf(p->team, sizeof(p->team), "%s", eng_text(&r, 2));
        p->role = people_role_parse(eng_text(&r, 3));
        p->token_id = eng_i64(&r, 0);
        snprintf(p->via, sizeof(p->via), "api");
        snprintf(p->address, sizeof(p->address), "%s", c->address ? c->address : "");
        c->refused = !eng_null(&r, 8) || !eng_null(&r, 11) || p->role == ROLE_NONE;
        /* Written at most once a minute per address, refused uses too: a client retrying a
         * revoked token in a loop cannot flood the audit log. */
        const char *last_addr = eng_text(&r, 7);
        c->touch = eng_null(&r, 6) || c->now - eng_i64(&r, 6) >= TOKEN_USE_EVERY_MS ||
                   last_addr == NULL || strcmp(last_addr, p->address) != 0;
    } else if (got >= 0) {
        got = STORE_NOT_FOUND;
    }
    eng_done(&r);
    return got < 0 ? got : STORE_OK;
}

/* Writes the token's use: last used time and address, and its audit row. */
static int token_touch_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct people_ctx *c = ctx;
    char target[32];
    snprintf(target, sizeof(target), "%lld", (long long)c->who.token_id);
    int rc = eng_w(s, NULL, err, errlen, S_TOKEN_TOUCH, "IIt", c->who.token_id, c->now,
                   c->who.address);
    if (rc == STORE_OK && c->refused)
        rc = people_audit_write(s, &c->who, "token.refused", c->who.team, target,
                                "revoked token, or its user was removed", err, errlen);
    else if (rc == STORE_OK)
        rc = people_audit_write(s, &c->who, "token.use", c->who.team, target, NULL, err, errlen);
    return rc;
}

int people_authenticate(store *s, const char *token, const char *address, struct principal *p,
                        char *err, size_t errlen)
{
    char hash[65];
    memset(p, 0, sizeof(*p));
    if (!token_shape_ok(token)) {
        seterr(err, errlen, "not a ferry token (%s and 64 hex digits)", PEOPLE_TOKEN_PREFIX);
        return STORE_NOT_FOUND;
    }
    if (people_sha256_hex(token, hash, err, errlen) != 0)
        return STORE_ERROR;
    struct people_ctx c = {.hash = hash, .address = address, .now = now_ms()};
    int rc = eng_run(s, 0, token_find_body, &c, err, errlen);
    if (rc == STORE_NOT_FOUND)
        seterr(err, errlen, "unknown token");
    if (rc == STORE_OK && c.touch)
        rc = eng_run(s, 1, token_touch_body, &c, err, errlen);
    if (rc == STORE_OK && c.refused) {
        seterr(err, errlen, "token %lld is revoked (or its user was removed)",
               (long long)c.who.token_id);
        rc = STORE_NOT_FOUND;
    }
    if (rc == STORE_OK)
        *p = c.who;
    return rc;
}
