/*
 * People: who acts on ferry (users, their tokens and roles, the Unix user of the CLI), what
 * each role may do, and the audit trail of every change (issue 16, docs/people.md).
 *
 * Interface declared by the lead in s7-base so that the web, the CLI and the store code
 * against one set of names; the people engineer (branch s7-people) implements it and owns
 * its wording from then on.
 */
#ifndef FERRY_PEOPLE_H
#define FERRY_PEOPLE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct store store;

/* Roles, ordered: each includes what the ones below it may do. */
enum people_role {
    ROLE_NONE = 0,
    ROLE_VIEWER = 1,   /* reads */
    ROLE_OPERATOR = 2, /* creates, retries, cancels items; toggles schedules */
    ROLE_ADMIN = 3,    /* manages machines, storages, schedules, users; sees secrets */
};

/* Who acts, and from where. */
struct principal {
    char user[128];      /* ferry user name; the Unix user name for the CLI on the store */
    char team[64];       /* the token's team; "" = every team (the CLI on the store) */
    enum people_role role;
    int64_t token_id;    /* 0 for the CLI */
    char via[8];         /* "cli" or "api" */
    char address[64];    /* the API client's address; "" for the CLI */
};

/* "viewer", "operator", "admin" <-> role; people_role_parse returns ROLE_NONE when unknown. */
const char *people_role_name(enum people_role r);
enum people_role people_role_parse(const char *name);

/* The CLI working on the store directly: admin of every team, named by its Unix user. */
void principal_cli(struct principal *p);

/*
 * Checks a bearer token from the API (address: the client's). STORE_OK with *p filled;
 * STORE_NOT_FOUND for an unknown, malformed or revoked token (the caller answers 401).
 * Records the token's use (last used time, and an audit row).
 */
int people_authenticate(store *s, const char *token, const char *address, struct principal *p,
                        char *err, size_t errlen);

/* Whether p may act on team with at least role need: 0 yes; 403 (another team) or 401. */
int people_allowed(const struct principal *p, const char *team, enum people_role need);

/*
 * Every change made through s from now on is recorded as done by p (audit log, and the
 * item's timeline for queue changes). p is copied; NULL clears it (changes are then
 * recorded as the CLI's Unix user).
 */
void store_set_actor(store *s, const struct principal *p);

#endif
