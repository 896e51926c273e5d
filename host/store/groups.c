/*
 * Machine groups and fan-out over the engine (engine.h), for every driver: what groups.h
 * describes. Resource rows and the CRUD itself are resources.c's (STORE_MACHINE_GROUP is a
 * resource kind like the others); this file holds the checks only a group has, and the
 * life of a group item: its children created with it, and its end when theirs came.
 */
#include "groups.h"

#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MEMBERS 1000

/* ---- the group resource ------------------------------------------------------------------ */

static int member_error(const char *group, const char *msg, char *err, size_t errlen)
{
    seterr(err, errlen, "machine group '%s': %s", group, msg);
    return STORE_ERROR;
}

int group_exists(store *s, const char *team, const char *name)
{
    int64_t one = 0;
    if (eng_scalar(s, &one, NULL, 0, S_RES_EXISTS + STORE_MACHINE_GROUP, "tt", team, name) !=
        STORE_OK)
        return 0;
    return one != 0;
}

/* One member: a machine of the team, not the group itself nor another group. */
static int check_member(store *s, const char *team, const char *group, const char *m,
                        char *err, size_t errlen)
{
    char why[512];
    json_t *row = NULL;
    if (!valid_name(m, why, sizeof(why)))
        return member_error(group, why, err, errlen);
    if (strcmp(m, group) == 0) {
        seterr(err, errlen, "machine group '%s' cannot contain itself", group);
        return STORE_ERROR;
    }
    if (group_exists(s, team, m)) {
        seterr(err, errlen,
               "machine group '%s': '%s' is a machine group; groups cannot contain groups "
               "(list its machines instead)",
               group, m);
        return STORE_ERROR;
    }
    int rc = eng_read_resource(s, STORE_MACHINE, team, m, &row, why, sizeof(why));
    json_decref(row);
    if (rc == STORE_NOT_FOUND)
        seterr(err, errlen, "machine group '%s': member '%s': %s", group, m, why);
    else if (rc != STORE_OK)
        seterr(err, errlen, "%s", why);
    return rc;
}

int group_check_write(store *s, const char *team, const char *name, json_t *vault, int creating,
                      char *err, size_t errlen)
{
    if (creating) {
        json_t *row = NULL;
        if (eng_read_resource(s, STORE_MACHINE, NULL, name, &row, NULL, 0) == STORE_OK) {
            seterr(err, errlen,
                   "a machine named '%s' exists (team '%s'); a machine group cannot take a "
                   "machine's name",
                   name, json_string_value(json_object_get(row, "teamName")));
            json_decref(row);
            return STORE_CONFLICT;
        }
    }
    json_t *members = json_object_get(vault, "members");
    if (!json_is_array(members) || json_array_size(members) == 0)
        return member_error(name,
                            "\"members\" must be a non-empty list of machine names, e.g. "
                            "--members web-01,web-02",
                            err, errlen);
    if (json_array_size(members) > MAX_MEMBERS) {
        seterr(err, errlen, "machine group '%s': at most %d members, not %zu", name, MAX_MEMBERS,
               json_array_size(members));
        return STORE_ERROR;
    }
    size_t i, j;
    json_t *m;
    json_array_foreach (members, i, m) {
        if (!json_is_string(m))
            return member_error(name, "\"members\" must list machine names (strings)", err,
                                errlen);
        for (j = 0; j < i; j++)
            if (json_equal(json_array_get(members, j), m)) {
                seterr(err, errlen, "machine group '%s': member '%s' is listed twice", name,
                       json_string_value(m));
                return STORE_ERROR;
            }
        int rc = check_member(s, team, name, json_string_value(m), err, errlen);
        if (rc != STORE_OK)
            return rc;
    }
    return STORE_OK;
}

int group_name_free(store *s, const char *name, char *err, size_t errlen)
{
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_GROUP_NAME_TAKEN, "t", name);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    if (got == 1) {
        seterr(err, errlen,
               "a machine group named '%s' exists (team '%s'); a machine cannot take a group's "
               "name",
               name, eng_text(&r, 0));
        got = STORE_CONFLICT;
    }
    eng_done(&r);
    return got < 0 || got == STORE_CONFLICT ? got : STORE_OK;
}

int group_machine_in_use(store *s, const char *team, const char *machine, char *err,
                         size_t errlen)
{
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_RES_LIST_IN + STORE_MACHINE_GROUP, "t", team);
    if (rc != STORE_OK)
        return rc;
    char names[600] = "", first[129] = "";
    size_t len = 0;
    int got, n = 0;
    while ((got = eng_next(&r, err, errlen)) == 1) {
        json_t *vault = store_vault_parse(eng_text(&r, 4));
        size_t i;
        json_t *m;
        json_array_foreach (json_object_get(vault, "members"), i, m) {
            if (!json_is_string(m) || strcmp(json_string_value(m), machine) != 0)
                continue;
            if (n++ == 0)
                snprintf(first, sizeof(first), "%s", eng_text(&r, 0));
            if (len < sizeof(names))
                len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s",
                                        len ? ", " : "", eng_text(&r, 0));
        }
        json_decref(vault);
    }
    eng_done(&r);
    if (got < 0)
        return got;
    if (n == 0)
        return STORE_OK;
    seterr(err, errlen,
           "machine '%s' is a member of machine group%s %s; take it out first with: ferry "
           "update machine-group %s %s --remove %s",
           machine, n > 1 ? "s" : "", names, team, first, machine);
    return STORE_CONFLICT;
}

/* ---- fan-out: create --------------------------------------------------------------------- */

/* The group item's "max_parallel" (0: no bound) and "stop_on_failure". */
static int fanout_settings(const json_t *vault, int *max_parallel, int *stop, char *err,
                           size_t errlen)
{
    const json_t *mp = json_object_get(vault, "max_parallel");
    const json_t *sf = json_object_get(vault, "stop_on_failure");
    *max_parallel = 0;
    *stop = 0;
    if (mp && !json_is_null(mp)) {
        if (!json_is_integer(mp) || json_integer_value(mp) < 1 ||
            json_integer_value(mp) > MAX_MEMBERS) {
            seterr(err, errlen, "\"max_parallel\" must be a whole number from 1 to %d",
                   MAX_MEMBERS);
            return STORE_ERROR;
        }
        *max_parallel = (int)json_integer_value(mp);
    }
    if (sf && !json_is_null(sf)) {
        if (!json_is_boolean(sf)) {
            seterr(err, errlen, "\"stop_on_failure\" must be true or false");
            return STORE_ERROR;
        }
        *stop = json_is_true(sf);
    }
    return STORE_OK;
}

/*
 * The machines a group item runs on: the group's members; for a retry of a group parent
 * (link "retry"), only the members whose child of that parent did not complete.
 */
static int fanout_targets(store *s, const struct store_item_spec *sp, json_t **out, char *err,
                          size_t errlen)
{
    json_t *group = NULL;
    int rc = eng_read_resource(s, STORE_MACHINE_GROUP, sp->team, sp->machine, &group, err,
                               errlen);
    if (rc != STORE_OK)
        return rc;
    json_t *members = json_incref(json_object_get(group, "members"));
    json_decref(group);
    if (sp->link_kind && strcmp(sp->link_kind, "retry") == 0 && sp->parent_task_id) {
        eng_rows r;
        json_t *again = json_array();
        int got = 0, children = 0;
        rc = eng_q(s, &r, err, errlen, S_FANOUT_MEMBERS, "t", sp->parent_task_id);
        while (rc == STORE_OK && (got = eng_next(&r, err, errlen)) == 1) {
            children++;
            if (strcmp(eng_text(&r, 3), "COMPLETED") != 0)
                json_array_append_new(again, json_string(eng_text(&r, 2)));
        }
        if (rc == STORE_OK)
            eng_done(&r);
        if (rc == STORE_OK && got < 0)
            rc = got;
        if (rc == STORE_OK && children > 0) {
            json_decref(members);
            members = json_incref(again);
        }
        json_decref(again);
    }
    if (rc == STORE_OK && json_array_size(members) == 0) {
        seterr(err, errlen, "machine group '%s': no member left to run", sp->machine);
        rc = STORE_CONFLICT;
    }
    if (rc == STORE_OK)
        *out = members;
    else
        json_decref(members);
    return rc;
}

int fanout_create(store *s, const struct store_item_spec *sp, int64_t seq, char id[37],
                  int64_t *taken, char *err, size_t errlen)
{
    int max_parallel, stop;
    json_t *members = NULL;
    if (s->drv->may_undo)
        s->drv->may_undo(s); /* a child may fail after the parent was written */
    int rc = fanout_settings(sp->vault, &max_parallel, &stop, err, errlen);
    if (rc == STORE_OK)
        rc = fanout_targets(s, sp, &members, err, errlen);
    if (rc != STORE_OK)
        return rc;
    size_t n = json_array_size(members);
    int64_t *seqs = calloc(n, sizeof(int64_t));
    if (seqs == NULL)
        abort();
    /* The parent: the item as asked, without its dependencies (its children wait for
     * them), PROCESSING from the start and never claimed. */
    struct store_item_spec parent = *sp;
    parent.after = NULL;
    parent.n_after = 0;
    rc = queue_insert_item(s, &parent, seq, id, err, errlen);
    if (rc == STORE_OK)
        rc = eng_w(s, NULL, err, errlen, S_FANOUT_START, "II", seq, sp->now_ms);
    if (rc == STORE_OK) {
        char details[300];
        if (max_parallel)
            snprintf(details, sizeof(details),
                     "machine group %s: %zu members, at most %d at once%s", sp->machine, n,
                     max_parallel, stop ? ", stop on failure" : "");
        else
            snprintf(details, sizeof(details), "machine group %s: %zu members%s", sp->machine,
                     n, stop ? ", stop on failure" : "");
        rc = eng_event(s, seq, "FANOUT", details, 0, sp->now_ms, err, errlen);
    }
    if (rc == STORE_OK)
        rc = queue_next_seqs(s, n, seqs, err, errlen);
    /* Seqs an engine derives from the table (SQLite: max + 1 …) may be taken already by the
     * later items of this call: the children come after them. */
    if (rc == STORE_OK && n > 0 && seqs[0] <= *taken)
        for (size_t i = 0; i < n; i++)
            seqs[i] = *taken + 1 + (int64_t)i;
    if (rc == STORE_OK && n > 0 && seqs[n - 1] > *taken)
        *taken = seqs[n - 1];
    json_t *vault = json_copy(sp->vault ? sp->vault : json_object());
    json_object_del(vault, "max_parallel");
    json_object_del(vault, "stop_on_failure");
    for (size_t i = 0; rc == STORE_OK && i < n; i++) {
        const char *m = json_string_value(json_array_get(members, i));
        json_t *row = NULL;
        eng_rows lock;
        /* As any item's machine: it exists in the team, and stays until the commit. */
        rc = eng_q(s, &lock, err, errlen, S_MACHINE_KEY_SHARE, "t", m);
        if (rc == STORE_OK) {
            eng_done(&lock);
            rc = eng_read_resource(s, STORE_MACHINE, sp->team, m, &row, err, errlen);
        }
        json_decref(row);
        struct store_item_spec child = *sp;
        char child_id[37];
        child.machine = m;
        child.vault = vault;
        child.parent_task_id = id;
        child.link_kind = "member";
        child.schedule_fire_ms = 0;
        child.run_after_ms = max_parallel && (int)i >= max_parallel ? FANOUT_HELD_MS
                                                                    : sp->run_after_ms;
        if (rc == STORE_OK)
            rc = queue_insert_item(s, &child, seqs[i], child_id, err, errlen);
        if (rc == STORE_OK)
            rc = eng_w(s, NULL, err, errlen, S_DEP_INSERT, "II", seq, seqs[i]);
    }
    json_decref(vault);
    json_decref(members);
    free(seqs);
    return rc;
}

/* ---- fan-out: a member's end ------------------------------------------------------------- */

struct member {
    int64_t seq, run_after;
    char task_id[37];
    char *machine, *status, *reason, *bridge;
};

static int is_final(const char *status)
{
    return strcmp(status, "COMPLETED") == 0 || strcmp(status, "FAILED") == 0 ||
           strcmp(status, "CANCELLED") == 0;
}

static void members_free(struct member *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].machine);
        free(m[i].status);
        free(m[i].reason);
        free(m[i].bridge);
    }
    free(m);
}

static int members_read(store *s, const char *parent_id, struct member **out, size_t *n,
                        char *err, size_t errlen)
{
    eng_rows r;
    size_t cap = 16;
    struct member *m = calloc(cap, sizeof(*m));
    if (m == NULL)
        abort();
    *n = 0;
    int rc = eng_q(s, &r, err, errlen, S_FANOUT_MEMBERS, "t", parent_id);
    int got = 0;
    while (rc == STORE_OK && (got = eng_next(&r, err, errlen)) == 1) {
        if (*n == cap) {
            cap *= 2;
            m = realloc(m, cap * sizeof(*m));
            if (m == NULL)
                abort();
        }
        struct member *e = &m[(*n)++];
        e->seq = eng_i64(&r, 0);
        snprintf(e->task_id, sizeof(e->task_id), "%s", eng_text(&r, 1));
        e->machine = xstrdup(eng_text(&r, 2));
        e->status = xstrdup(eng_text(&r, 3));
        e->reason = eng_text(&r, 4) ? xstrdup(eng_text(&r, 4)) : NULL;
        e->run_after = eng_i64(&r, 5);
        e->bridge = xstrdup(eng_text(&r, 6));
    }
    if (rc == STORE_OK)
        eng_done(&r);
    if (rc == STORE_OK && got < 0)
        rc = got;
    *out = m;
    return rc;
}

static void wake_bridge(store *s, struct eng_wake *wake, const char *bridge)
{
    if (wake)
        eng_wake_add(wake, bridge);
    else
        store_notify_after_commit(s, bridge);
}

/* The parent's response vault: every member's task, machine, status and error. */
static json_t *fanout_response(const char *group, const struct member *m, size_t n)
{
    json_t *list = json_array();
    int done = 0, failed = 0, cancelled = 0;
    for (size_t i = 0; i < n; i++) {
        done += strcmp(m[i].status, "COMPLETED") == 0;
        failed += strcmp(m[i].status, "FAILED") == 0;
        cancelled += strcmp(m[i].status, "CANCELLED") == 0;
        const char *status = strcmp(m[i].status, "PENDING") == 0 &&
                                     m[i].run_after >= FANOUT_HELD_MS
                                 ? "WAITING"
                                 : m[i].status;
        json_t *error = json_null();
        if (m[i].reason && strcmp(m[i].status, "COMPLETED") != 0) {
            json_decref(error);
            error = json_string(m[i].reason);
            if (error == NULL)
                error = json_string("(the reason is not UTF-8)");
        }
        json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:o}", "machine", m[i].machine,
                                              "taskId", m[i].task_id, "status", status, "error",
                                              error));
    }
    return json_pack("{s:s,s:i,s:i,s:i,s:i,s:o}", "group", group, "total", (int)n, "completed",
                     done, "failed", failed, "cancelled", cancelled, "members", list);
}

/* Cancels the members that have not started (PENDING), with reason, and their own
 * dependents. */
static int cancel_waiting(store *s, struct member *m, size_t n, const char *reason, int64_t now,
                          char *err, size_t errlen)
{
    int rc = STORE_OK;
    for (size_t i = 0; rc == STORE_OK && i < n; i++) {
        if (strcmp(m[i].status, "PENDING") != 0)
            continue;
        long rows = 0;
        rc = eng_w(s, &rows, err, errlen, S_CANCEL_DEPENDENT, "IIt", m[i].seq, now, reason);
        if (rc != STORE_OK || rows == 0)
            continue;
        free(m[i].status);
        m[i].status = xstrdup("CANCELLED");
        free(m[i].reason);
        m[i].reason = xstrdup(reason);
        rc = eng_event(s, m[i].seq, "CANCELLED", reason, 0, now, err, errlen);
        if (rc == STORE_OK)
            rc = eng_cancel_dependents(s, m[i].seq, m[i].task_id, "CANCELLED", now, err, errlen);
    }
    return rc;
}

/* Releases held members while fewer than max_parallel are under way. */
static int release_held(store *s, struct member *m, size_t n, int max_parallel, int64_t now,
                        struct eng_wake *wake, char *err, size_t errlen)
{
    int active = 0, rc = STORE_OK;
    for (size_t i = 0; i < n; i++)
        active += !is_final(m[i].status) && m[i].run_after < FANOUT_HELD_MS;
    for (size_t i = 0; rc == STORE_OK && i < n && active < max_parallel; i++) {
        if (strcmp(m[i].status, "PENDING") != 0 || m[i].run_after < FANOUT_HELD_MS)
            continue;
        long rows = 0;
        rc = eng_w(s, &rows, err, errlen, S_FANOUT_RELEASE, "II", m[i].seq, now);
        if (rc == STORE_OK && rows > 0) {
            m[i].run_after = now;
            active++;
            wake_bridge(s, wake, m[i].bridge);
            rc = eng_event(s, m[i].seq, "RELEASED", "a max_parallel slot of its group is free",
                           0, now, err, errlen);
        }
    }
    return rc;
}

/* Ends the parent: every member has ended. */
static int settle(store *s, int64_t pseq, const char *pid, const char *group, int cancelling,
                  const struct member *m, size_t n, int64_t now, struct eng_wake *wake,
                  char *err, size_t errlen)
{
    int done = 0;
    char reason[600] = "";
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(m[i].status, "COMPLETED") == 0) {
            done++;
            continue;
        }
        if (len < sizeof(reason))
            len += (size_t)snprintf(reason + len, sizeof(reason) - len, "%s%s %s",
                                    len ? ", " : "", m[i].machine, m[i].status);
    }
    const char *status = cancelling ? "CANCELLED" : done == (int)n ? "COMPLETED" : "FAILED";
    char details[700];
    snprintf(details, sizeof(details), "%d of %zu members completed%s%s", done, n,
             reason[0] ? "; not completed: " : "", reason);
    json_t *response = fanout_response(group, m, n);
    long rows = 0;
    int rc = eng_w(s, &rows, err, errlen, S_FANOUT_SETTLE, "ItjIt", pseq, status, response, now,
                   strcmp(status, "FAILED") == 0 ? details : NULL);
    json_decref(response);
    if (rc != STORE_OK || rows == 0)
        return rc;
    rc = eng_event(s, pseq, status, details, 0, now, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (strcmp(status, "COMPLETED") != 0)
        return eng_cancel_dependents(s, pseq, pid, status, now, err, errlen);
    eng_rows r;
    int got = 0;
    rc = eng_q(s, &r, err, errlen, S_WAKE_DEPENDENTS, "I", pseq);
    while (rc == STORE_OK && (got = eng_next(&r, err, errlen)) == 1)
        wake_bridge(s, wake, eng_text(&r, 0));
    if (rc == STORE_OK)
        eng_done(&r);
    return rc != STORE_OK ? rc : got < 0 ? got : STORE_OK;
}

static int cmp_member_id(const void *a, const void *b)
{
    return strcmp((*(const struct member *const *)a)->task_id,
                  (*(const struct member *const *)b)->task_id);
}

/*
 * Marks noted[i] for each member m[i] whose end the parent has recorded already: one of its
 * MEMBER_ENDED events names the member as "MACHINE: STATUS (task ID)" (the first " (task "
 * of its details: a machine name has no space, a reason comes after).
 */
static int members_noted(store *s, int64_t pseq, const struct member *m, size_t n, char *noted,
                         char *err, size_t errlen)
{
    const struct member **by_id = calloc(n ? n : 1, sizeof(*by_id));
    if (by_id == NULL)
        abort();
    for (size_t i = 0; i < n; i++)
        by_id[i] = &m[i];
    qsort(by_id, n, sizeof(*by_id), cmp_member_id);
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_EVENTS_LIST, "I", pseq);
    int got = 0;
    while (rc == STORE_OK && (got = eng_next(&r, err, errlen)) == 1) {
        const char *action = eng_text(&r, 0), *details = eng_text(&r, 1);
        const char *t = details ? strstr(details, " (task ") : NULL;
        if (action == NULL || strcmp(action, "MEMBER_ENDED") != 0 || t == NULL ||
            strnlen(t + 7, 37) < 37 || t[7 + 36] != ')')
            continue;
        struct member key = {0};
        memcpy(key.task_id, t + 7, 36);
        const struct member *k = &key, **hit = bsearch(&k, by_id, n, sizeof(*by_id),
                                                        cmp_member_id);
        if (hit)
            noted[*hit - m] = 1;
    }
    if (rc == STORE_OK)
        eng_done(&r);
    free(by_id);
    return rc != STORE_OK ? rc : got < 0 ? got : STORE_OK;
}

/* Records a MEMBER_ENDED on the parent for every member that has ended and has none yet:
 * each end once, whether the members ended one by one or several in one statement (the
 * first end's step then sees them all, and the parent may settle in it). */
static int note_ends(store *s, int64_t pseq, const struct member *m, size_t n, int64_t now,
                     char *err, size_t errlen)
{
    char *noted = calloc(n ? n : 1, 1);
    if (noted == NULL)
        abort();
    int rc = members_noted(s, pseq, m, n, noted, err, errlen);
    for (size_t i = 0; rc == STORE_OK && i < n; i++) {
        if (noted[i] || !is_final(m[i].status))
            continue;
        char details[700];
        snprintf(details, sizeof(details), "%s: %s (task %s)%s%.500s", m[i].machine,
                 m[i].status, m[i].task_id, m[i].reason ? ": " : "",
                 m[i].reason ? m[i].reason : "");
        rc = eng_event(s, pseq, "MEMBER_ENDED", details, 0, now, err, errlen);
    }
    free(noted);
    return rc;
}

/*
 * One step of a parent's life, under its row lock: stop or release members, record the
 * ends not recorded yet, then settle the parent when every member has ended, else record
 * its progress.
 */
static int fanout_step(store *s, int64_t pseq, const char *pid, int64_t now,
                       struct eng_wake *wake, char *err, size_t errlen)
{
    eng_rows r;
    int rc = eng_wq(s, &r, err, errlen, S_FANOUT_LOCK, "II", pseq, now);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    int cancelling = got == 1 && strcmp(eng_text(&r, 0), "CANCELLING") == 0;
    json_t *vault = got == 1 ? store_vault_parse(eng_text(&r, 1)) : NULL;
    char group[129];
    snprintf(group, sizeof(group), "%s", got == 1 ? eng_text(&r, 2) : "");
    eng_done(&r);
    if (got != 1) /* settled meanwhile (another host's end), or a failure */
        return got < 0 ? got : STORE_OK;
    int max_parallel = 0, stop = 0;
    fanout_settings(vault, &max_parallel, &stop, NULL, 0);
    json_decref(vault);
    struct member *m = NULL;
    size_t n = 0, ended = 0;
    rc = members_read(s, pid, &m, &n, err, errlen);
    const struct member *failed = NULL;
    for (size_t i = 0; rc == STORE_OK && i < n; i++)
        if (failed == NULL && strcmp(m[i].status, "FAILED") == 0)
            failed = &m[i];
    if (rc == STORE_OK && (cancelling || (stop && failed))) {
        char reason[300];
        if (cancelling)
            snprintf(reason, sizeof(reason), "its group item %s was cancelled", pid);
        else
            snprintf(reason, sizeof(reason), "stop_on_failure: member %s (task %s) FAILED",
                     failed->machine, failed->task_id);
        rc = cancel_waiting(s, m, n, reason, now, err, errlen);
    } else if (rc == STORE_OK && max_parallel) {
        rc = release_held(s, m, n, max_parallel, now, wake, err, errlen);
    }
    if (rc == STORE_OK)
        rc = note_ends(s, pseq, m, n, now, err, errlen);
    for (size_t i = 0; i < n; i++)
        ended += is_final(m[i].status);
    if (rc == STORE_OK && ended == n) {
        rc = settle(s, pseq, pid, group, cancelling, m, n, now, wake, err, errlen);
    } else if (rc == STORE_OK) {
        char message[120];
        snprintf(message, sizeof(message), "%zu of %zu members ended", ended, n);
        json_t *response = fanout_response(group, m, n);
        rc = eng_w(s, NULL, err, errlen, S_FANOUT_PROGRESS, "Iitj", pseq,
                   (int)(ended * 100 / (n ? n : 1)), message, response);
        json_decref(response);
    }
    members_free(m, n);
    return rc;
}

int fanout_member_ended(store *s, int64_t seq, int64_t now, struct eng_wake *wake, char *err,
                        size_t errlen)
{
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_FANOUT_PARENT_OF, "I", seq);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    int64_t pseq = got == 1 ? eng_i64(&r, 0) : 0;
    char pid[37] = "";
    if (got == 1)
        snprintf(pid, sizeof(pid), "%s", eng_text(&r, 1));
    eng_done(&r);
    if (got != 1)
        return got < 0 ? got : STORE_OK;
    return fanout_step(s, pseq, pid, now, wake, err, errlen);
}

static int is_parent(store *s, const char *task_id, int *yes, char *err, size_t errlen)
{
    int64_t one = 0;
    int rc = eng_scalar(s, &one, err, errlen, S_FANOUT_IS_PARENT, "t", task_id);
    *yes = one != 0;
    return rc;
}

int fanout_cancel(store *s, const struct item_ref *r, int force, int64_t now,
                  struct eng_wake *wake, int *handled, char *err, size_t errlen)
{
    int rc = is_parent(s, r->task_id, handled, err, errlen);
    if (rc != STORE_OK || !*handled)
        return rc;
    if (strcmp(r->status, "PROCESSING") == 0) {
        rc = eng_w(s, NULL, err, errlen, S_SET_CANCELLING, "II", r->seq, now);
        if (rc == STORE_OK)
            rc = eng_event(s, r->seq, "CANCEL_REQUESTED",
                           force ? "cancel requested (forced); its members are cancelled"
                                 : "cancel requested; its members are cancelled",
                           0, now, err, errlen);
    }
    struct member *m = NULL;
    size_t n = 0;
    if (rc == STORE_OK)
        rc = members_read(s, r->task_id, &m, &n, err, errlen);
    char reason[200];
    snprintf(reason, sizeof(reason), "its group item %s was cancelled", r->task_id);
    for (size_t i = 0; rc == STORE_OK && i < n; i++) {
        const char *st = m[i].status;
        int now_cancel = strcmp(st, "ASSIGNED") == 0 ||
                         (force && (strcmp(st, "PROCESSING") == 0 ||
                                    strcmp(st, "CANCELLING") == 0));
        if (strcmp(st, "PENDING") == 0) {
            rc = cancel_waiting(s, &m[i], 1, reason, now, err, errlen);
        } else if (now_cancel) {
            rc = eng_w(s, NULL, err, errlen, S_CANCEL_NOW, "IIt", m[i].seq, now, st);
            if (rc == STORE_OK)
                rc = eng_event(s, m[i].seq, "CANCELLED", reason, 0, now, err, errlen);
            if (rc == STORE_OK)
                rc = eng_cancel_dependents(s, m[i].seq, m[i].task_id, "CANCELLED", now, err,
                                           errlen);
        } else if (strcmp(st, "PROCESSING") == 0) {
            rc = eng_w(s, NULL, err, errlen, S_SET_CANCELLING, "II", m[i].seq, now);
            if (rc == STORE_OK)
                rc = eng_event(s, m[i].seq, "CANCEL_REQUESTED", reason, 0, now, err, errlen);
        }
        wake_bridge(s, wake, m[i].bridge);
    }
    members_free(m, n);
    if (rc == STORE_OK)
        rc = fanout_step(s, r->seq, r->task_id, now, wake, err, errlen);
    return rc;
}

int fanout_member_removable(store *s, int64_t seq, const char *task_id, char *err,
                            size_t errlen)
{
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_FANOUT_PARENT_OF, "I", seq);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    if (got == 1) {
        seterr(err, errlen,
               "task %s is a member of group item %s, which has not ended; cancel it (or the "
               "group item) instead",
               task_id, eng_text(&r, 1));
        got = STORE_CONFLICT;
    }
    eng_done(&r);
    return got < 0 || got == STORE_CONFLICT ? got : STORE_OK;
}
