/*
 * Roles, principals and the actor of a store handle (people.h): what each role may do, and
 * who the store records as acting. Users and tokens are tokens.c's, the audit log audit.c's.
 */
#include "people.h"

#include "config.h"
#include "descriptor.h"
#include "store.h"
#include "util.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const role_names[] = {
    [ROLE_NONE] = "none",
    [ROLE_VIEWER] = "viewer",
    [ROLE_OPERATOR] = "operator",
    [ROLE_ADMIN] = "admin",
};

const char *people_role_name(enum people_role r)
{
    return (unsigned)r <= ROLE_ADMIN ? role_names[r] : "none";
}

enum people_role people_role_parse(const char *name)
{
    for (int r = ROLE_VIEWER; name != NULL && r <= ROLE_ADMIN; r++)
        if (strcmp(name, role_names[r]) == 0)
            return (enum people_role)r;
    return ROLE_NONE;
}

/*
 * Whether nsswitch.conf (its text) has one passwd line, naming "files" first with no action
 * after it: then getpwuid answers a uid that /etc/passwd names from there. 0 otherwise.
 */
static int passwd_files_first(char *nsswitch)
{
    const char *services = NULL;
    for (char *line = nsswitch, *next; line != NULL; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        line[strcspn(line, "#")] = '\0';
        line += strspn(line, " \t");
        if (strncmp(line, "passwd", 6) != 0 || line[6 + strspn(line + 6, " \t")] != ':')
            continue;
        if (services != NULL)
            return 0;
        services = strchr(line, ':') + 1;
    }
    if (services == NULL)
        return 0;
    services += strspn(services, " \t");
    size_t after = 5 + strspn(services + 5, " \t");
    return strncmp(services, "files", 5) == 0 && (after > 5 || services[5] == '\0') &&
           services[after] != '[';
}

/* Whether text starts with a number of 1 to 10 digits ended by ':'. */
static int plain_number_field(const char *text)
{
    size_t digits = strspn(text, "0123456789");
    return digits > 0 && digits <= 10 && text[digits] == ':';
}

/*
 * The name of uid in /etc/passwd's text as getpwuid's "files" source finds it: the first
 * line of seven fields with that uid. 1 with the name in out. 0 when no line names uid, or
 * when one before it is not a plain entry (a NIS "+" or "-" line, a blank, a field count
 * other than seven, a uid or gid that is not a number): those are getpwuid's to read.
 */
static int passwd_files_name(char *passwd, uid_t uid, char *out, size_t outlen)
{
    for (char *line = passwd, *next; line != NULL && *line != '\0'; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        if (*line == '\0' || *line == '#')
            continue;
        char *field[7];
        size_t n = 0;
        for (char *f = line; f != NULL && n < 8; n++) {
            if (n < 7)
                field[n] = f;
            f = strchr(f, ':');
            f = f != NULL ? f + 1 : NULL;
        }
        if (n != 7 || field[1] == line + 1 || strchr("+- \t", *line) != NULL ||
            !plain_number_field(field[2]) || !plain_number_field(field[3]))
            return 0;
        if (strtoull(field[2], NULL, 10) != (unsigned long long)uid)
            continue;
        field[1][-1] = '\0';
        snprintf(out, outlen, "%s", line);
        return 1;
    }
    return 0;
}

int people_user_from_files(char *nsswitch, char *passwd, uid_t uid, char *out, size_t outlen)
{
    return passwd_files_first(nsswitch) && passwd_files_name(passwd, uid, out, outlen) &&
           *out != '\0';
}

/* The name of uid from /etc/passwd where nsswitch.conf has getpwuid read it first: what
 * getpwuid answers, without its two tries of nscd's socket and its own parse of the switch
 * (a create queue-item: 11 system calls and 16,000 instructions fewer; alone in a fresh
 * process 0.02 ms against getpwuid's 0.1). 1 with the name in out, else 0 and the caller
 * asks getpwuid. */
static int user_from_files(uid_t uid, char *out, size_t outlen)
{
    char err[256];
    char *nsswitch = read_file_capped("/etc/nsswitch.conf", 8192, NULL, err, sizeof(err));
    char *passwd = nsswitch ? read_file_capped("/etc/passwd", 64 << 10, NULL, err, sizeof(err))
                            : NULL; /* longer: getpwuid reads it */
    int found = passwd && people_user_from_files(nsswitch, passwd, uid, out, outlen);
    free(nsswitch);
    free(passwd);
    return found;
}

void principal_cli(struct principal *p)
{
    /* The name of the effective user, looked up once per thread and user id: a host or a
     * bench writes an actor into every item it creates, and each lookup read the passwd
     * database (about 6% of an item's create). user_from_files or getpwuid_r, and a per-thread
     * copy: the web server may call this from several threads. */
    static _Thread_local struct {
        int known;
        uid_t uid;
        char user[sizeof(p->user)];
    } me;
    uid_t uid = geteuid();
    memset(p, 0, sizeof(*p));
    if (!me.known || me.uid != uid) {
        struct passwd pw, *found = NULL;
        char buf[4096];
        if (user_from_files(uid, me.user, sizeof(me.user)))
            ; /* named */
        else if (getpwuid_r(uid, &pw, buf, sizeof(buf), &found) == 0 && found != NULL &&
                 found->pw_name != NULL && *found->pw_name != '\0')
            snprintf(me.user, sizeof(me.user), "%s", found->pw_name);
        else
            snprintf(me.user, sizeof(me.user), "uid %u", (unsigned)uid);
        me.uid = uid;
        me.known = 1;
    }
    snprintf(p->user, sizeof(p->user), "%s", me.user);
    p->role = ROLE_ADMIN;
    snprintf(p->via, sizeof(p->via), "cli");
}

int people_allowed(const struct principal *p, const char *team, enum people_role need)
{
    if (p == NULL || p->role == ROLE_NONE)
        return 401;
    if (p->role < need)
        return 403;
    if (p->team[0] == '\0') /* every team: the CLI on the store */
        return 0;
    if (team == NULL) /* no team's data: readable by every team, changed only by the CLI */
        return need <= ROLE_VIEWER ? 0 : 403;
    return strcmp(p->team, team) == 0 ? 0 : 403;
}

/* The host-owned vault keys that run a command on the machine (docs/machines.md). */
static const char *const command_keys[] = {"pre_hook", "post_hook"};

enum people_role people_item_role(const json_t *fn, const json_t *vault,
                                  enum people_role command_role)
{
    enum people_role need = ROLE_OPERATOR;
    int commands = fn != NULL && (descriptor_flags(fn) & FERRY_FN_RUNS_COMMANDS) != 0;
    for (size_t i = 0; !commands && i < sizeof(command_keys) / sizeof(*command_keys); i++) {
        const json_t *v = json_object_get(vault, command_keys[i]);
        commands = v != NULL && !json_is_null(v);
    }
    if (commands && command_role > need)
        need = command_role;
    return need;
}

/* The schedule vault keys that turn a schedule on or off (docs/schedules.md). */
static const char *const toggle_keys[] = {"enabled", "disabled_until"};

enum people_role people_schedule_patch_role(const json_t *patch)
{
    const char *key;
    const json_t *v;
    if (!json_is_object(patch) || json_object_size(patch) == 0)
        return ROLE_ADMIN;
    json_object_foreach ((json_t *)patch, key, v) {
        size_t k = 0;
        while (k < sizeof(toggle_keys) / sizeof(*toggle_keys) && strcmp(key, toggle_keys[k]) != 0)
            k++;
        if (k == sizeof(toggle_keys) / sizeof(*toggle_keys))
            return ROLE_ADMIN;
    }
    (void)v;
    return ROLE_OPERATOR;
}

enum people_role people_command_role(const struct ferry_config *cfg)
{
    enum people_role r = cfg ? people_role_parse(cfg->people_command_role) : ROLE_NONE;
    return r > ROLE_OPERATOR ? r : ROLE_OPERATOR;
}

void store_set_actor(store *s, const struct principal *p)
{
    free(s->actor);
    free(s->actor_label);
    s->actor = NULL;
    s->actor_label = NULL;
    if (p == NULL)
        return;
    s->actor = malloc(sizeof(*p));
    if (s->actor == NULL)
        abort();
    *s->actor = *p;
    /* Fixed-size members may lack their NUL when a caller filled them byte by byte. */
    s->actor->user[sizeof(p->user) - 1] = '\0';
    s->actor->team[sizeof(p->team) - 1] = '\0';
    s->actor->via[sizeof(p->via) - 1] = '\0';
    s->actor->address[sizeof(p->address) - 1] = '\0';
    s->actor_label = p->address[0] ? xasprintf("%s (%s %s)", s->actor->user,
                                                     s->actor->via, s->actor->address)
                                   : xasprintf("%s (%s)", s->actor->user, s->actor->via);
}
