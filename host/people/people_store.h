/*
 * For host/people's own files (tokens.c, audit.c): the pieces they share over the store's
 * engine. Everyone else uses people.h.
 */
#ifndef FERRY_PEOPLE_STORE_H
#define FERRY_PEOPLE_STORE_H

#include "people.h"

/* An ISO 8601 time (new reference), or JSON null for 0. */
json_t *people_time_json(int64_t ms);

/* The actor of s (store_set_actor), or, when none is set, the process's Unix user via
 * "host" with every role. */
void people_actor(store *s, struct principal *p);

/* people_audit_note for a given principal (a token's own use). */
int people_audit_write(store *s, const struct principal *p, const char *action, const char *team,
                       const char *target, const char *details, char *err, size_t errlen);

#endif
