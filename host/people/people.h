/*
 * People: who acts on ferry (users, their tokens and roles, the Unix user of the CLI), what
 * each role may do, and the audit trail of every change (issue 16, docs/people.md).
 *
 * Declared by the lead in s7-base so that the web, the CLI and the store code against one
 * set of names; implemented in people.c (roles, principals, the actor), tokens.c (users and
 * tokens over the store's engine) and audit.c (the audit log).
 *
 * Conventions are the store's (store.h): STORE_OK or a negative STORE_* status, a one-line
 * message in err (may be NULL), JSON outputs are new references the caller frees.
 */
#ifndef FERRY_PEOPLE_H
#define FERRY_PEOPLE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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
    char via[8];         /* "cli", "api" (or "host" for a process that set no actor) */
    char address[64];    /* the API client's address; "" for the CLI */
};

/* "viewer", "operator", "admin" <-> role; people_role_parse returns ROLE_NONE when unknown
 * (and for "none"). people_role_name never returns NULL ("none" for ROLE_NONE). */
const char *people_role_name(enum people_role r);
enum people_role people_role_parse(const char *name);

/* The CLI working on the store directly: admin of every team, named by its Unix user
 * (getpwuid(geteuid()), or "uid N" when the user has no name). */
void principal_cli(struct principal *p);
/* The name of uid as getpwuid answers it from /etc/passwd, given the texts of
 * nsswitch.conf and of /etc/passwd (both are changed): 1 with it in out, when the switch has
 * passwd read "files" first and a plain line of the file names uid; else 0, and only
 * getpwuid can say (principal_cli asks it then). */
int people_user_from_files(char *nsswitch, char *passwd, uid_t uid, char *out, size_t outlen);

/*
 * Checks a bearer token from the API (address: the client's, may be NULL). STORE_OK with *p
 * filled (via "api"); STORE_NOT_FOUND for an unknown, malformed, truncated or revoked token
 * or one whose user was removed (the caller answers 401; err says which, for the server's
 * log, never the token itself). The token is compared by its SHA-256 in constant time.
 * Records the token's use: its last used time and address, and an audit row "token.use"
 * when it was not used from that address in the last minute (so a dashboard polling every
 * second does not flood the log); a revoked token's use is audited as "token.refused" (as
 * rarely). STORE_ERROR when libcrypto cannot be loaded (err names the package).
 */
int people_authenticate(store *s, const char *token, const char *address, struct principal *p,
                        char *err, size_t errlen);

/*
 * Whether p may act on team with at least role need: 0 yes; 401 when p is NULL or has no
 * role; 403 when p's role is below need or p is bound to another team. team NULL means
 * data of no team (regions, bridges): a team's token may read it (need <= ROLE_VIEWER) but
 * only the CLI on the store (team "") may change it. (Users, tokens and the audit log of
 * every team are the CLI's too: a token reads the audit rows of its own team.)
 */
int people_allowed(const struct principal *p, const char *team, enum people_role need);

/*
 * The role an item needs to be created (or retried): ROLE_OPERATOR, or command_role when
 * that is higher and the item runs arbitrary commands: its function's descriptor carries
 * the "runs_commands" flag (script, run_tests, conditional), or its vault gives a
 * pre_hook or post_hook. fn may be NULL (a function the caller's plugin directory does
 * not know, as the CLI's checks warn): then only the vault decides, so the web server
 * should read the plugin directory the hosts run. command_role ROLE_NONE means
 * ROLE_OPERATOR. The one place this is decided.
 */
enum people_role people_item_role(const json_t *fn, const json_t *vault,
                                  enum people_role command_role);

/*
 * The role a schedule vault patch (RFC 7396, as `update schedule-vault` merges it) needs:
 * ROLE_OPERATOR when it only turns the schedule on or off ("enabled", "disabled_until"),
 * else ROLE_ADMIN (a replaced vault, or any other key: cron, machine, queue_config …).
 */
enum people_role people_schedule_patch_role(const json_t *patch);

struct ferry_config;
/* The configuration's people.command_role as a role (ROLE_OPERATOR when unset), for
 * people_item_role. */
enum people_role people_command_role(const struct ferry_config *cfg);

/*
 * Every change made through s from now on is recorded as done by p (audit log, and the
 * item's timeline for queue changes). p is copied; NULL clears it: changes are then
 * recorded in the audit log as the process's Unix user via "host" (the host's schedule
 * fires, fallbacks), and item events carry no actor.
 */
void store_set_actor(store *s, const struct principal *p);

/* ---- users and tokens (tokens.c) ----------------------------------------------------------- */

/* A token as printed once: "fy1_" and 64 hex digits (32 random bytes), and its NUL. */
#define PEOPLE_TOKEN_LEN 68
#define PEOPLE_TOKEN_PREFIX "fy1_"

/* Creates user NAME (valid_name). CONFLICT when it exists or existed (names of removed
 * users are not reused, so the audit log's names keep one meaning). *row (may be NULL):
 * {"userName","createdTime","createdBy","tokens"}. Audited as "user.create". */
int people_user_create(store *s, const char *name, json_t **row, char *err, size_t errlen);

/* Removes user NAME and revokes its tokens, in one transaction (audited "user.delete");
 * its row stays for the audit log. NOT_FOUND when there is no such user. */
int people_user_delete(store *s, const char *name, char *err, size_t errlen);

/* Lists the users (not removed ones), by name: rows as people_user_create's. */
int people_user_list(store *s, json_t **rows, char *err, size_t errlen);

/*
 * Creates a token for user (who must exist) on team (which must exist) with role (viewer,
 * operator or admin). token receives the token text, which is nowhere else: only its
 * SHA-256 is stored. *row (may be NULL): the token's row (people_token_list) without the
 * token. Audited as "token.create" (target: the token's id).
 */
int people_token_create(store *s, const char *user, const char *team, enum people_role role,
                        char token[PEOPLE_TOKEN_LEN + 1], json_t **row, char *err,
                        size_t errlen);

/* Lists tokens (of user, or all when NULL), by id: {"tokenId","userName","teamName","role",
 * "createdTime","createdBy","lastUsedTime","lastUsedAddress","revoked","revokedTime",
 * "revokedBy"}; never the token or its hash. */
int people_token_list(store *s, const char *user, json_t **rows, char *err, size_t errlen);

/* Revokes token id (audited "token.revoke"); NOT_FOUND when no such token, CONFLICT when it
 * was revoked already. *row (may be NULL): its row after. */
int people_token_revoke(store *s, int64_t id, json_t **row, char *err, size_t errlen);

/* ---- the audit log (audit.c) --------------------------------------------------------------- */

/*
 * For the store's own mutation functions, inside their transaction: writes one audit row
 * for the actor (store_set_actor): action ("queue.create", "machine.update" …), the team
 * it concerns (NULL: none), its target (task id, resource or token id; may be NULL) and
 * details (short text; never a vault's values). Fails the change when the row cannot be
 * written.
 */
int people_audit_note(store *s, const char *action, const char *team, const char *target,
                      const char *details, char *err, size_t errlen);

struct store_item_spec;
/*
 * The audit rows of n items created in one call (task_ids: their new ids): one row per team
 * and action ("queue.create", "queue.retry", "queue.fallback", "queue.call",
 * "schedule.fire"), the task id its target when it stands for one item, else its details
 * count them.
 */
int people_audit_items(store *s, const struct store_item_spec *specs, size_t n,
                       char (*task_ids)[37], char *err, size_t errlen);

/* The audit row of a change to item seq (its team and task id read from the store). */
int people_audit_item(store *s, const char *action, int64_t seq, const char *details, char *err,
                      size_t errlen);

/* The audit row of a change to a resource: action "<kind>.<verb>" ("machine.create",
 * "schedule.update", "machine-group.delete"); patch (may be NULL), the vault given to an
 * update: its top-level keys (never their values) go into the details. */
int people_audit_resource(store *s, int kind, const char *verb, const char *team,
                          const char *name, const json_t *patch, char *err, size_t errlen);

/* Filters for people_audit_list; zero/NULL fields do not filter. */
struct people_audit_filter {
    const char *user;   /* the actor's name */
    const char *team;   /* the team the change concerned */
    const char *action; /* "queue.cancel", or a family: "queue" matches "queue.*" */
    const char *target; /* a task id, resource name or token id */
    int64_t since_ms, until_ms;
    int limit;          /* 0: STORE_DEFAULT_RECORDS; at most STORE_MAX_RECORDS */
};

/*
 * Lists audit rows, newest first, into *rows: {"id","time","timeMs","user","via","address",
 * "tokenId","action","team","target","details"}. *truncated (may be NULL) is set when
 * more rows matched than the limit.
 */
int people_audit_list(store *s, const struct people_audit_filter *f, json_t **rows,
                      int *truncated, char *err, size_t errlen);

#endif
