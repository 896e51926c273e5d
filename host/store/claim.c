/*
 * How a claim works, for every driver (over engine.h).
 *
 * A host asks for up to max_n items of its bridge. The ready items (PENDING, run_after
 * come, every `after` dependency COMPLETED) are taken in claim order (priority, created,
 * seq) when their machine has a free slot: a machine runs `concurrency` items at once
 * (vault "concurrency", default 1), counted across every bridge. Taking items greedily in
 * claim order is exactly the model the conformance suite checks: a machine's slots are
 * used up only by its own earlier items.
 *
 * Cost: the items claimed, not the depth of the queue. A first chunk of the ready items in
 * claim order is usually enough. When it is not (its items belong to machines that are
 * full: a busy machine's backlog at the head of the queue), walking on would read every
 * queued item of those machines; the claim goes by machine instead (pick_by_machine):
 * one index seek per machine with PENDING items, one for each machine's next ready item,
 * and a merge of those in claim order, which picks what the walk would. The machines new
 * to a step are looked up together: a few statements, whatever their number. Without row
 * locks the whole pass is one statement (S_CLAIM_FREE_HEADS: the free machines' heads and
 * slots), and a claim right after one that found the head held goes by machine from the
 * start (head_held): the same picks, without reading the held head again. Such a claim
 * leaves on its handle which machines it left full (struct claim_memory): until something
 * but claims and ends writes, the next claim looks only at the machines whose items ended
 * or that it left with a free slot (S_CLAIM_NAMED_HEADS), not at every machine of the
 * bridge. The ends are those the handle wrote, which the store tells it of (claim_ended);
 * only after an end of an item it did not take does it check the active items of every
 * machine, in one walk of an index.
 *
 * Concurrent claims. Under SQLite one writer at a time makes the select-then-update atomic.
 * Where the engine has row locks (PostgreSQL), locking items alone cannot keep a machine's
 * limit: two hosts claiming at once would each skip the other's locked row and take the
 * *next* item of the same machine. So the unit a claim locks is the machine: its row is
 * locked skipping rows locked by others (a machine another host is claiming for counts as
 * full, never waited for), and only then are its active items counted again, in a new
 * statement whose snapshot sees every claim committed before the lock was granted. The
 * picked items are then locked the same way and marked in one statement, so an item a CLI
 * is cancelling at that instant is left out rather than waited for. Since other hosts'
 * machines are full, such a claim goes by machine from the start, over the heads of the
 * machines with a free slot, found and locked in one statement
 * (S_CLAIM_FREE_HEADS_LOCKED) and counted again in a second; a claim of structs then
 * marks, writes the events and reads back in one more (S_CLAIM_TAKE).
 *
 * The picks are marked ASSIGNED (or, with the start folded in, PROCESSING) with a fresh
 * claim token each (the claim's random prefix and the item's seq), their events written
 * and the items read back, in a few set-based statements whatever the number of items
 * (the picks travel as one JSON array parameter): one transaction, no per-item savepoints.
 */
#include "engine.h"

#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    char machine[129];
    uint64_t hash; /* of machine: a look-up compares names only when their hashes match */
    int free;
    /* Set when the by-machine merge has read the machine's next items: as many as it and the
     * claim may still take, so never more in this claim. */
    int next_read;
    int taken;    /* items of the machine this claim took */
    int64_t conc; /* its concurrency, where the heads' statement gave it (else 0) */
    /* Its head (seq 0: none known) when that is its first PENDING item, ready: its head
     * until anything but claims writes, once it comes (claim_memory). */
    int64_t head_seq, head_priority, head_created, head_run_after;
};

/* A machine and a count: its active items (claim_memory's held), or its concurrency and
 * its head where known (open). */
struct held {
    char machine[129];
    int64_t n;
    int64_t seq, priority, created, run_after; /* open: the slot's head (seq 0: unknown) */
    int64_t ended; /* held: its items this handle ended since the claim (claim_ended) */
};

/* An item this handle's claims took and it has not ended yet: which machine an end frees. */
struct held_item {
    uint64_t hash; /* of task_id */
    char task_id[37];
    char machine[129];
};

/* At most this many held_items are kept (a host holds its slots' worth; the rest are items
 * that left it some other way, such as a lease that expired): past it they are dropped,
 * and an end of one of them is then an unknown one. 4096 of 176 bytes: 704 KiB at most. */
#define HELD_ITEMS_MAX 4096

/*
 * What a claim by machine from the start leaves known on its handle where one writer holds
 * the store (no row locks): every machine with PENDING items on the bridge either had no
 * free slot after it (a machine's slots, counted across every bridge, are its concurrency
 * less its active items) or is one of open. Until anything else writes (s->writes, the
 * other connections' data_version, a new item: newest), a machine leaves that state only
 * when one of its active items ends (a retry goes PENDING too): its count in held goes
 * down. So the next claim looks only at open and those machines (remembered), not at
 * every machine of the bridge, and takes what the full pass would: every other machine is
 * still full, or still has no PENDING item there. A claim that failed, a batch rolled back
 * or a commit that failed forgets it: an end undone may leave a remembered head waiting on
 * its dependency again.
 *
 * The ends need not be read back either: the store tells the claim of each end this handle
 * makes (claim_ended), and the claim knows which machine each item it took is on (items).
 * So while every end since the last claim was of an item it knows (!unsure), the active
 * items per machine are those it left less those ended, and the next claim reads only the
 * newest item's seq instead of every active item.
 */
struct claim_memory {
    char bridge[129];
    int64_t version, newest; /* store_data_version (-1: nothing known), the newest item's seq */
    uint64_t writes;         /* s->writes */
    struct held *held;       /* machines with active items after the claim, by name */
    size_t n_held;
    struct held *open; /* machines with PENDING items and a free slot, by name */
    size_t n_open;
    /* The items this handle took and has not ended, whatever the memory holds otherwise
     * (version -1 included), and whether an end since the last claim was of another item. */
    struct held_item *items;
    size_t n_items, cap_items;
    int unsure;
};

/* Copies a machine's name into a buffer of 129 (names are shorter: valid_name). */
static void copy_machine(char dst[129], const char *src)
{
    size_t len = strnlen(src, 128);
    memcpy(dst, src, len);
    dst[len] = '\0';
}


struct claim {
    const char *bridge, *owner;
    int64_t now, lease_ms;
    int max_n, start;
    int check_held; /* went by machine from the start on head_held: still_held after */
    int remember;   /* went by machine from the start without row locks: claim_memory after */
    int64_t version, newest;
    struct held *active; /* S_CLAIM_ACTIVE: the active items per machine before the picks */
    size_t n_active;
    struct slot *slots;
    size_t n_slots, cap_slots;
    int64_t *picked; /* seqs, in claim order */
    size_t n_picked, cap_picked;
    /* Outputs: rows (JSON) or items (typed), whichever the caller asked for. */
    int typed;
    json_t *rows;
    struct store_item *items;
    size_t n_items;
};

/* The slot of machine in this claim, or NULL when it was not looked up yet. */
static struct slot *slot_of(struct claim *cl, const char *machine)
{
    uint64_t hash = fnv1a(FNV1A_BASIS, machine);
    for (size_t i = cl->n_slots; i > 0; i--)
        if (cl->slots[i - 1].hash == hash && strcmp(cl->slots[i - 1].machine, machine) == 0)
            return &cl->slots[i - 1];
    return NULL;
}

static struct slot *slot_add(struct claim *cl, const char *machine)
{
    if (cl->n_slots == cl->cap_slots) {
        cl->cap_slots = cl->cap_slots ? cl->cap_slots * 2 : 16;
        cl->slots = realloc(cl->slots, cl->cap_slots * sizeof(*cl->slots));
        if (cl->slots == NULL)
            abort();
    }
    struct slot *slot = &cl->slots[cl->n_slots++];
    copy_machine(slot->machine, machine);
    slot->hash = fnv1a(FNV1A_BASIS, slot->machine);
    slot->free = 0;
    slot->next_read = 0;
    slot->taken = 0;
    slot->conc = slot->head_seq = 0;
    return slot;
}

/* Runs a statement over the machines of names (a JSON array) and, for each row, sets the
 * slot of the machine in column 0: its free count from column 1 (or 1 when there is
 * none: a locked machine keeps its count), remembering in column 2 whether it exists. */
static int machines_query(store *s, struct claim *cl, int id, json_t *names, json_t *found,
                          char *err, size_t errlen)
{
    eng_rows r;
    char *text = json_dumps(names, JSON_COMPACT);
    int rc = eng_q(s, &r, err, errlen, id, "t", text);
    free(text);
    if (rc != STORE_OK)
        return rc;
    int got;
    while ((got = eng_next(&r, err, errlen)) == 1) {
        struct slot *slot = slot_of(cl, eng_text(&r, 0));
        if (slot == NULL)
            continue;
        if (id == S_MACHINE_SLOTS) {
            int64_t free_slots = eng_i64(&r, 1);
            slot->free = free_slots > 0 ? (int)free_slots : 0;
            if (eng_i64(&r, 2) > 0 && slot->free > 0)
                json_array_append_new(found, json_string(slot->machine));
        } else {
            json_array_append_new(found, json_string(slot->machine));
        }
    }
    eng_done(&r);
    return got < 0 ? got : STORE_OK;
}

/*
 * Looks up how many more items each new machine of a chunk may start in this claim, in a
 * few statements for the whole chunk. With row locks, the machines with free slots are
 * then locked (skipping those another claim holds: they count as full) and counted again,
 * in a new statement whose snapshot sees every claim committed before the locks.
 */
static int lookup_machines(store *s, struct claim *cl, json_t *names, char *err, size_t errlen)
{
    json_t *free_ones = json_array(), *locked = json_array();
    int rc = machines_query(s, cl, S_MACHINE_SLOTS, names, free_ones, err, errlen);
    if (rc == STORE_OK && s->drv->row_locks && json_array_size(free_ones) > 0) {
        size_t i;
        json_t *name;
        json_array_foreach (free_ones, i, name)
            slot_of(cl, json_string_value(name))->free = 0; /* until locked */
        rc = machines_query(s, cl, S_MACHINE_LOCK, free_ones, locked, err, errlen);
        json_t *ignore = json_array();
        if (rc == STORE_OK && json_array_size(locked) > 0)
            rc = machines_query(s, cl, S_MACHINE_SLOTS, locked, ignore, err, errlen);
        json_decref(ignore);
    }
    json_decref(free_ones);
    json_decref(locked);
    return rc;
}

static void add_pick(struct claim *cl, int64_t seq)
{
    if (cl->n_picked == cl->cap_picked) {
        cl->cap_picked = cl->cap_picked ? cl->cap_picked * 2 : 64;
        cl->picked = realloc(cl->picked, cl->cap_picked * sizeof(*cl->picked));
        if (cl->picked == NULL)
            abort();
    }
    cl->picked[cl->n_picked++] = seq;
}

/* A ready item a scan found: its claim order key and machine. */
struct cand {
    int64_t seq, priority, created;
    char machine[129];
};

/* Reads the row the cursor is on into c. */
static void read_cand(eng_rows *r, struct cand *c)
{
    c->seq = eng_i64(r, 0);
    copy_machine(c->machine, eng_text(r, 1));
    c->priority = eng_i64(r, 2);
    c->created = eng_i64(r, 3);
}

/* Reads the rows (seq, machine, priority, created) of an open scan into a new array. */
static int read_cands(eng_rows *r, struct cand **out, size_t *n, char *err, size_t errlen)
{
    size_t cap = 0;
    int got;
    *out = NULL;
    *n = 0;
    while ((got = eng_next(r, err, errlen)) == 1) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            *out = realloc(*out, cap * sizeof(**out));
            if (*out == NULL)
                abort();
        }
        read_cand(r, &(*out)[(*n)++]);
    }
    eng_done(r);
    return got < 0 ? got : STORE_OK;
}

/* Adds a slot for each machine of c[0..n) not seen yet in this claim and looks the new
 * ones up, in a few statements together. */
static int lookup_new(store *s, struct claim *cl, const struct cand *c, size_t n, char *err,
                      size_t errlen)
{
    json_t *names = json_array();
    for (size_t i = 0; i < n; i++)
        if (slot_of(cl, c[i].machine) == NULL) {
            slot_add(cl, c[i].machine);
            json_array_append_new(names, json_string(c[i].machine));
        }
    int rc = json_array_size(names) > 0 ? lookup_machines(s, cl, names, err, errlen) : STORE_OK;
    json_decref(names);
    return rc;
}

/* Takes the candidate seq when its machine's slot (NULL: not looked up) has one left; 1
 * when taken. */
static int take(struct claim *cl, struct slot *slot, int64_t seq)
{
    if ((int)cl->n_picked >= cl->max_n || slot == NULL || slot->free <= 0)
        return 0;
    slot->free--;
    slot->taken++;
    add_pick(cl, seq);
    return 1;
}

static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    if (x->created != y->created)
        return x->created < y->created ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * The first pass: the bridge's ready items in claim order, taking each whose machine has a
 * slot, a window of rows at a time (as many as picks are missing, at least 16: their
 * machines are looked up together), up to a chunk. Enough whenever the head of the queue
 * is claimable, and then only about as many rows are read as items are claimed. *more is
 * set when the whole chunk, or a window that took nothing, was read without filling the
 * claim; key then holds its last row.
 */
static int pick_head(store *s, struct claim *cl, int64_t key[3], int *more, char *err,
                     size_t errlen)
{
    int budget = cl->max_n * 2 + 16, got = 0;
    size_t n = 0, taken = 0, cap = 0;
    eng_rows r;
    /* Grown a window at a time: room for the whole budget up front (a host asks for up to
     * all its slots) cost a one-item claim an eighth of its instructions, zeroing it. */
    struct cand *c = NULL;
    *more = 0;
    int rc = eng_q(s, &r, err, errlen, S_CLAIM_SCAN, "tIi", cl->bridge, cl->now, budget);
    int opened = rc == STORE_OK, cut = 0;
    while (rc == STORE_OK && (int)cl->n_picked < cl->max_n) {
        int missing = cl->max_n - (int)cl->n_picked;
        size_t window = n + (size_t)(missing > 16 ? missing : 16), picked = cl->n_picked;
        if (window > (size_t)budget)
            window = (size_t)budget;
        if (window > cap && (c = realloc(c, (cap = window) * sizeof(*c))) == NULL)
            abort();
        while (n < window && (got = eng_next(&r, err, errlen)) == 1)
            read_cand(&r, &c[n++]);
        rc = got < 0 ? got : lookup_new(s, cl, c + taken, n - taken, err, errlen);
        for (; rc == STORE_OK && taken < n; taken++)
            take(cl, slot_of(cl, c[taken].machine), c[taken].seq);
        if (got != 1)
            break;
        /* A whole window of full machines: the head is a busy machine's backlog, and the
         * by-machine pass goes on from here for less than reading on would cost. */
        if (cl->n_picked == picked) {
            cut = 1;
            break;
        }
    }
    if (opened)
        eng_done(&r);
    *more = rc == STORE_OK && (cut || (got == 0 && (int)n == budget)) &&
            (int)cl->n_picked < cl->max_n;
    if (n > 0) {
        key[0] = c[n - 1].priority;
        key[1] = c[n - 1].created;
        key[2] = c[n - 1].seq;
    }
    free(c);
    return rc;
}

/* The first limit ready items of after's machine after it in claim order, in no order. */
static int next_items(store *s, struct claim *cl, const struct cand *after, int limit,
                      struct cand **c, size_t *n, char *err, size_t errlen)
{
    eng_rows r;
    json_t *one = json_pack("[s]", after->machine);
    char *text = json_dumps(one, JSON_COMPACT);
    int rc = eng_q(s, &r, err, errlen, S_CLAIM_HEADS, "tIIIIti", cl->bridge, cl->now,
                   after->priority, after->created, after->seq, text, limit);
    free(text);
    json_decref(one);
    *c = NULL;
    *n = 0;
    return rc != STORE_OK ? rc : read_cands(&r, c, n, err, errlen);
}

/* Without row locks: the heads after key of the machines with PENDING items on the bridge
 * and a free slot, in one statement (S_CLAIM_FREE_HEADS, or S_CLAIM_NAMED_HEADS for the
 * machines of names, a JSON array), which also gives each new machine its slot (a machine
 * without a ready head too); a machine this claim already found full is left out. */
static int free_heads(store *s, struct claim *cl, const int64_t key[3], const char *names,
                      struct cand **c, size_t *n, char *err, size_t errlen)
{
    eng_rows r;
    size_t cap = 0;
    *c = NULL;
    *n = 0;
    int rc = names ? eng_q(s, &r, err, errlen, S_CLAIM_NAMED_HEADS, "tIIIIt", cl->bridge, cl->now,
                           key[0], key[1], key[2], names)
                   : eng_q(s, &r, err, errlen, S_CLAIM_FREE_HEADS, "tIIII", cl->bridge, cl->now,
                           key[0], key[1], key[2]);
    if (rc != STORE_OK)
        return rc;
    int got, known = cl->n_slots > 0; /* each machine comes once: only those may be known */
    while ((got = eng_next(&r, err, errlen)) == 1) {
        struct slot *slot = known ? slot_of(cl, eng_text(&r, 1)) : NULL;
        if (slot == NULL) {
            slot = slot_add(cl, eng_text(&r, 1));
            slot->free = (int)eng_i64(&r, 4);
            slot->conc = eng_i64(&r, 5);
        } else if (slot->free <= 0) {
            continue;
        }
        if (eng_null(&r, 0))
            continue; /* a free slot, and no item ready after key */
        if (eng_i64(&r, 6) != 0) {
            slot->head_seq = eng_i64(&r, 0);
            slot->head_priority = eng_i64(&r, 2);
            slot->head_created = eng_i64(&r, 3);
            slot->head_run_after = eng_i64(&r, 7);
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            *c = realloc(*c, cap * sizeof(**c));
            if (*c == NULL)
                abort();
        }
        read_cand(&r, &(*c)[(*n)++]);
    }
    eng_done(&r);
    return got < 0 ? got : STORE_OK;
}

/* With row locks, from the start of the queue: the heads of the machines with a free slot,
 * as many as the claim may take, their machines locked in the same statement
 * (S_CLAIM_FREE_HEADS_LOCKED, skipping those other claims hold: a host whose fair share is
 * small leaves the rest to the others), then counted again in a new statement, whose
 * snapshot sees every claim committed before the locks, as lookup_machines does. */
static int free_heads_locked(store *s, struct claim *cl, struct cand **c, size_t *n, char *err,
                             size_t errlen)
{
    eng_rows r;
    int rc =
        eng_q(s, &r, err, errlen, S_CLAIM_FREE_HEADS_LOCKED, "tIi", cl->bridge, cl->now, cl->max_n);
    if (rc == STORE_OK)
        rc = read_cands(&r, c, n, err, errlen);
    json_t *locked = json_array(), *ignore = json_array();
    for (size_t i = 0; i < *n; i++)
        if (slot_of(cl, (*c)[i].machine) == NULL) {
            slot_add(cl, (*c)[i].machine);
            json_array_append_new(locked, json_string((*c)[i].machine));
        }
    if (rc == STORE_OK && *n > 0)
        rc = machines_query(s, cl, S_MACHINE_SLOTS, locked, ignore, err, errlen);
    json_decref(locked);
    json_decref(ignore);
    return rc;
}

/* Inserts cand into c[from..*n) (in claim order), growing c. */
static void merge_in(struct cand **c, size_t *n, size_t from, const struct cand *cand)
{
    size_t at = from;
    while (at < *n && cand_cmp(&(*c)[at], cand) < 0)
        at++;
    *c = realloc(*c, (*n + 1) * sizeof(**c));
    if (*c == NULL)
        abort();
    memmove(&(*c)[at + 1], &(*c)[at], (*n - at) * sizeof(**c));
    (*c)[at] = *cand;
    (*n)++;
}

static int merge_heads(store *s, struct claim *cl, struct cand *c, size_t n, char *err,
                       size_t errlen);

/*
 * The second pass, when the head of the queue belongs to machines that are full: walking
 * on in claim order would read every queued item of those machines (a claim would cost as
 * much as the queue is deep). Instead, per machine: the machines with PENDING items on
 * the bridge (one index seek each), the first ready item after key of each (one seek
 * each), and a merge of those heads in claim order. A machine is looked up when its head
 * comes near the front of the merge (so that, with row locks, only the machines the claim
 * may use are locked); when its head is taken and it has slots left, its next items join
 * the merge, as many as it and the claim may still take, in one statement: each of them is
 * taken unless the machine or the claim is full by then. The picks are those walking on
 * would make, from any key: from the start (key 0) it is the whole claim. Without row locks,
 * names (a JSON array, else NULL) limits the pass to those machines: the others are full.
 */
static int pick_by_machine(store *s, struct claim *cl, const int64_t key[3], const char *names,
                           char *err, size_t errlen)
{
    struct cand *c = NULL;
    size_t n = 0;
    int rc = STORE_OK;
    if (!s->drv->row_locks)
        rc = free_heads(s, cl, key, names, &c, &n, err, errlen);
    else
        rc = free_heads_locked(s, cl, &c, &n, err, errlen);
    return rc == STORE_OK ? merge_heads(s, cl, c, n, err, errlen) : (free(c), rc);
}

/* pick_by_machine's merge of the heads c[0..n) (taken over). */
static int merge_heads(store *s, struct claim *cl, struct cand *c, size_t n, char *err,
                       size_t errlen)
{
    int rc = STORE_OK;
    if (n > 1)
        qsort(c, n, sizeof(*c), cand_cmp);
    for (size_t i = 0; rc == STORE_OK && i < n && (int)cl->n_picked < cl->max_n; i++) {
        struct slot *slot = slot_of(cl, c[i].machine);
        if (slot == NULL) {
            size_t window = (size_t)(cl->max_n - (int)cl->n_picked);
            rc = lookup_new(s, cl, &c[i], n - i < window ? n - i : window, err, errlen);
            slot = slot_of(cl, c[i].machine); /* lookup_new moved the slots */
        }
        if (rc != STORE_OK || !take(cl, slot, c[i].seq) || slot->free <= 0)
            continue;
        int missing = cl->max_n - (int)cl->n_picked;
        int limit = slot->free < missing ? slot->free : missing;
        if (slot->next_read || limit <= 0)
            continue;
        struct cand *next = NULL;
        size_t got = 0;
        slot->next_read = 1;
        rc = next_items(s, cl, &c[i], limit, &next, &got, err, errlen);
        for (size_t k = 0; k < got; k++)
            merge_in(&c, &n, i + 1, &next[k]);
        free(next);
    }
    free(c);
    return rc;
}

/*
 * Set (per thread) when this thread's last claim found the head of its queue held by full
 * machines. Without row locks its next claim then goes by machine from the start, which
 * alone picks what the walk would (the first pass only spares it when the head is
 * claimable), and skips a first pass that would most likely read a window of items of
 * full machines again: a host draining a busy backlog finds it so at every turn. The hint
 * only chooses the cheaper way to the same picks. It ends when the first ready item the
 * claim did not take has a free slot on its machine (a claim that stopped at max_n), or
 * when nothing is left: the next claim then reads the head first again.
 */
static _Thread_local int head_held;

/* After a claim by machine from the start, once its picks are marked (no longer PENDING):
 * head_held is 1 when the first ready item left is on a machine the claim found full (a
 * machine without a slot here had none free). One row read, whatever the claim took. */
static int still_held(store *s, struct claim *cl, char *err, size_t errlen)
{
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_CLAIM_SCAN, "tIi", cl->bridge, cl->now, 1);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    head_held = 0;
    if (got == 1) {
        struct slot *slot = slot_of(cl, eng_text(&r, 1));
        head_held = slot == NULL || slot->free <= 0;
    }
    eng_done(&r);
    return got < 0 ? got : STORE_OK;
}

static int held_cmp(const void *a, const void *b)
{
    return strcmp(((const struct held *)a)->machine, ((const struct held *)b)->machine);
}

/* A machine's name (the key, as held keeps it: its first 128 bytes) against an entry. */
static int held_key_cmp(const void *key, const void *entry)
{
    return strncmp(key, ((const struct held *)entry)->machine, 128);
}

/* The entry of machine in h[0..n) (by name), or NULL. The name is compared where it is,
 * not copied into a key entry first: a claim looks machines up about six times an item. */
static struct held *held_find(struct held *h, size_t n, const char *machine)
{
    return n ? bsearch(machine, h, n, sizeof(*h), held_key_cmp) : NULL;
}

/* Appends an entry. The array doubles when full (its room is the power of two at or above
 * *n, as only held_add fills it): a reallocation an entry cost a claim 2% of its store
 * instructions, the entries being 176 bytes. */
static void held_add(struct held **h, size_t *n, const char *machine, int64_t count)
{
    if ((*n & (*n - 1)) == 0) {
        *h = realloc(*h, (*n ? 2 * *n : 1) * sizeof(**h));
        if (*h == NULL)
            abort();
    }
    memset(&(*h)[*n], 0, sizeof(**h));
    copy_machine((*h)[*n].machine, machine);
    (*h)[(*n)++].n = count;
}

/* The newest item's seq and the active items of each machine (S_CLAIM_ACTIVE), into cl. */
static int read_active(store *s, struct claim *cl, char *err, size_t errlen)
{
    eng_rows r;
    free(cl->active);
    cl->active = NULL;
    cl->n_active = 0;
    cl->newest = 0;
    int rc = eng_q(s, &r, err, errlen, S_CLAIM_ACTIVE, "");
    if (rc != STORE_OK)
        return rc;
    int got;
    while ((got = eng_next(&r, err, errlen)) == 1) {
        if (eng_null(&r, 0))
            cl->newest = eng_i64(&r, 1);
        else
            held_add(&cl->active, &cl->n_active, eng_text(&r, 0), eng_i64(&r, 1));
    }
    eng_done(&r);
    if (cl->n_active > 1) /* qsort's base must not be NULL, even for no element */
        qsort(cl->active, cl->n_active, sizeof(*cl->active), held_cmp);
    return got < 0 ? got : STORE_OK;
}

/* Without reading them: the active items of each machine, those the last claim left less
 * those this handle ended since (claim_memory), and the newest item's seq, into cl. Only
 * while nothing else wrote (remembered) and every end was of an item the claim took. */
static int known_active(store *s, struct claim *cl, char *err, size_t errlen)
{
    const struct claim_memory *m = s->claim_memory;
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_CLAIM_NEWEST, "");
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    cl->newest = got == 1 ? eng_i64(&r, 0) : 0;
    eng_done(&r);
    if (got < 0)
        return got;
    /* Copied whole, in name order (as read_active sorts them), into room held_add can grow:
     * added one by one they cost the claim as much as reading them. */
    size_t room = 1;
    while (room < m->n_held)
        room *= 2;
    free(cl->active);
    cl->active = malloc(room * sizeof(*cl->active));
    if (cl->active == NULL)
        abort();
    cl->n_active = 0;
    for (size_t i = 0; i < m->n_held; i++)
        if (m->held[i].n > m->held[i].ended) {
            cl->active[cl->n_active] = m->held[i];
            cl->active[cl->n_active].n -= m->held[i].ended;
            cl->active[cl->n_active++].ended = 0;
        }
    return STORE_OK;
}

/* Whether the handle's claim_memory still tells every machine that may have a free slot
 * (struct claim_memory): nothing but claims and ends wrote since, through this handle or
 * another (data_version), on the same bridge. The newest item is checked once read. */
static int remembered(store *s, const struct claim *cl)
{
    const struct claim_memory *m = s->claim_memory;
    return m != NULL && m->version != -1 && m->version == cl->version && m->writes == s->writes &&
           strcmp(m->bridge, cl->bridge) == 0;
}

/* The handle's claim_memory, made empty (nothing known) when there is none. */
static struct claim_memory *memory_of(store *s)
{
    if (s->claim_memory == NULL) {
        s->claim_memory = calloc(1, sizeof(*s->claim_memory));
        if (s->claim_memory == NULL)
            abort();
        s->claim_memory->version = -1;
    }
    return s->claim_memory;
}

static struct held_item *item_find(struct claim_memory *m, const char *task_id)
{
    uint64_t hash = fnv1a(FNV1A_BASIS, task_id);
    for (size_t i = 0; i < m->n_items; i++)
        if (m->items[i].hash == hash && strcmp(m->items[i].task_id, task_id) == 0)
            return &m->items[i];
    return NULL;
}

/* Adds an item the claim took to the memory's items. */
static void item_add(struct claim_memory *m, const char *task_id, const char *machine)
{
    if (task_id == NULL || machine == NULL || strlen(task_id) > 36) {
        m->unsure = 1; /* an end of it would not be known */
        return;
    }
    if (m->n_items == HELD_ITEMS_MAX) {
        m->n_items = 0;
        m->unsure = 1;
    }
    if (m->n_items == m->cap_items) {
        m->cap_items = m->cap_items ? m->cap_items * 2 : 64;
        m->items = realloc(m->items, m->cap_items * sizeof(*m->items));
        if (m->items == NULL)
            abort();
    }
    struct held_item *it = &m->items[m->n_items++];
    strcpy(it->task_id, task_id);
    it->hash = fnv1a(FNV1A_BASIS, it->task_id);
    copy_machine(it->machine, machine);
}

/* After a claim that succeeded: the items it took join the memory's items. */
static void remember_items(store *s, const struct claim *cl)
{
    if (s->drv->row_locks)
        return; /* nothing is remembered where claims lock rows */
    struct claim_memory *m = memory_of(s);
    if (cl->typed)
        for (size_t i = 0; i < cl->n_items; i++)
            item_add(m, cl->items[i].task_id, cl->items[i].machine);
    for (size_t i = 0; !cl->typed && i < json_array_size(cl->rows); i++) {
        json_t *row = json_array_get(cl->rows, i);
        item_add(m, json_string_value(json_object_get(row, "taskId")),
                 json_string_value(json_object_get(row, "machineName")));
    }
}

void claim_ended(store *s, const struct store_finish *f, size_t n, const int *rcs, int rc)
{
    struct claim_memory *m = s->claim_memory;
    if (m == NULL)
        return;
    if (rc != STORE_OK) { /* some may have ended, which ones is not known */
        claim_forget(s);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct held_item *it = item_find(m, f[i].task_id);
        /* Refused (not held): nothing changed, and the item is no longer this handle's. */
        int ended = rcs == NULL || rcs[i] == STORE_OK;
        struct held *h = it && ended ? held_find(m->held, m->n_held, it->machine) : NULL;
        if (h != NULL)
            h->ended++;
        else if (ended)
            m->unsure = 1;
        if (it != NULL)
            *it = m->items[--m->n_items];
    }
}

/* Appends head to c (room for it made by the caller). */
static void cand_add(struct cand *c, size_t *n, const struct held *head)
{
    struct cand *to = &c[(*n)++];
    to->seq = head->seq;
    to->priority = head->priority;
    to->created = head->created;
    copy_machine(to->machine, head->machine);
}

/*
 * Without row locks, once claim_memory holds (remembered, cl->active read): the pass by
 * machine from the start over the machines that may have a free slot, those it left open
 * and those with fewer active items than it left. An open machine whose head it knows
 * (its first PENDING item, ready, not taken) keeps that head while its active items did
 * not go down (a retry goes back ahead of it) and it is still ready at this claim's now:
 * its slots are its concurrency less its active items, with no statement. The others go
 * through S_CLAIM_NAMED_HEADS together.
 */
static int pick_remembered(store *s, struct claim *cl, char *err, size_t errlen)
{
    const struct claim_memory *m = s->claim_memory;
    json_t *names = json_array();
    struct cand *c = malloc((m->n_open ? m->n_open : 1) * sizeof(*c)), *more = NULL;
    size_t n = 0, n_more = 0;
    if (c == NULL)
        abort();
    for (size_t i = 0; i < m->n_open; i++) {
        const struct held *o = &m->open[i];
        struct held *now = held_find(cl->active, cl->n_active, o->machine);
        struct held *was = held_find(m->held, m->n_held, o->machine);
        int64_t active = now ? now->n : 0;
        if (o->seq == 0 || o->run_after > cl->now || active < (was ? was->n : 0)) {
            json_array_append_new(names, json_string(o->machine));
            continue;
        }
        struct slot *slot = slot_add(cl, o->machine);
        slot->conc = o->n;
        slot->free = o->n - active > 0 ? (int)(o->n - active) : 0;
        slot->head_seq = o->seq;
        slot->head_priority = o->priority;
        slot->head_created = o->created;
        slot->head_run_after = o->run_after;
        if (slot->free > 0)
            cand_add(c, &n, o);
    }
    for (size_t i = 0; i < m->n_held; i++) {
        struct held *now = held_find(cl->active, cl->n_active, m->held[i].machine);
        if ((now == NULL || now->n < m->held[i].n) &&
            held_find(m->open, m->n_open, m->held[i].machine) == NULL)
            json_array_append_new(names, json_string(m->held[i].machine));
    }
    int rc = STORE_OK;
    if (json_array_size(names) > 0) {
        int64_t key[3] = {0, 0, 0};
        char *text = json_dumps(names, JSON_COMPACT);
        rc = free_heads(s, cl, key, text, &more, &n_more, err, errlen);
        free(text);
        if (n_more > 0 && (c = realloc(c, (n + n_more) * sizeof(*c))) == NULL)
            abort();
        if (n_more > 0)
            memcpy(c + n, more, n_more * sizeof(*c));
        n += n_more;
        free(more);
    }
    json_decref(names);
    if (rc != STORE_OK) {
        free(c);
        return rc;
    }
    return merge_heads(s, cl, c, n, err, errlen);
}

/* After a claim by machine from the start (cl->remember), what it leaves known: the active
 * items it read and took, per machine, and the machines it left with a free slot (every
 * slot it has came from the heads' statement: a machine with PENDING items). */
static void remember(store *s, struct claim *cl)
{
    struct claim_memory *m = memory_of(s);
    m->unsure = 0; /* the counts are the store's again */
    copy_machine(m->bridge, cl->bridge);
    m->version = cl->version;
    m->newest = cl->newest;
    m->writes = s->writes;
    free(m->held);
    m->held = cl->active;
    m->n_held = cl->n_active;
    cl->active = NULL;
    cl->n_active = 0;
    size_t sorted = m->n_held;
    m->n_open = 0;
    for (size_t i = 0; i < cl->n_slots; i++) {
        const struct slot *slot = &cl->slots[i];
        struct held *h = held_find(m->held, sorted, slot->machine);
        if (slot->free > 0) {
            held_add(&m->open, &m->n_open, slot->machine, slot->conc);
            struct held *o = &m->open[m->n_open - 1];
            o->seq = slot->taken == 0 ? slot->head_seq : 0; /* taken: the next is unknown */
            o->priority = slot->head_priority;
            o->created = slot->head_created;
            o->run_after = slot->head_run_after;
        }
        if (slot->taken > 0 && h != NULL)
            h->n += slot->taken;
        else if (slot->taken > 0)
            held_add(&m->held, &m->n_held, slot->machine, slot->taken);
    }
    if (m->n_held > 1) /* qsort's base must not be NULL, even for no element */
        qsort(m->held, m->n_held, sizeof(*m->held), held_cmp);
    if (m->n_open > 1)
        qsort(m->open, m->n_open, sizeof(*m->open), held_cmp);
}

void claim_forget(store *s)
{
    if (s->claim_memory == NULL)
        return;
    free(s->claim_memory->held);
    free(s->claim_memory->open);
    free(s->claim_memory->items);
    free(s->claim_memory);
    s->claim_memory = NULL;
}

/* Picks the claim's items. Where the engine locks rows, hosts claim side by side and every
 * other host's machines count as full: the head of the queue is mostly their backlog, and
 * the first pass would look up window after window of full machines before the by-machine
 * pass. The claim goes by machine from the start instead, over the machines with a free
 * slot: the same picks. Without row locks, the head first unless head_held says otherwise. */
static int pick_items(store *s, struct claim *cl, char *err, size_t errlen)
{
    int64_t key[3] = {0, 0, 0};
    int more = 0, rc;
    if (s->drv->row_locks)
        return pick_by_machine(s, cl, key, NULL, err, errlen);
    cl->version = store_data_version(s);
    int known = remembered(s, cl);
    if (known || head_held) {
        cl->check_held = 1; /* still_held, once the picks are marked */
        rc = known && !s->claim_memory->unsure ? known_active(s, cl, err, errlen)
                                               : read_active(s, cl, err, errlen);
        if (rc == STORE_OK && known && !s->claim_memory->unsure &&
            cl->newest != s->claim_memory->newest)
            rc = read_active(s, cl, err, errlen); /* a new item: the whole pass reads them */
        if (rc != STORE_OK)
            return rc;
        cl->remember = cl->version != -1;
        if (!known || cl->newest != s->claim_memory->newest)
            return pick_by_machine(s, cl, key, NULL, err, errlen);
        return pick_remembered(s, cl, err, errlen);
    }
    rc = pick_head(s, cl, key, &more, err, errlen);
    head_held = rc == STORE_OK && more;
    return rc == STORE_OK && more ? pick_by_machine(s, cl, key, NULL, err, errlen) : rc;
}

static int seq_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The picks as a JSON array of seqs, in seq order: the order in which S_CLAIM_EVENTS writes
 * their events, by going through the array rather than sorting. New string. */
static char *picks_json(const struct claim *cl)
{
    char *t = malloc(cl->n_picked * (I64_DECIMAL_MAX + 1) + 3), *at = t;
    int64_t *seqs = malloc((cl->n_picked ? cl->n_picked : 1) * sizeof(*seqs));
    if (t == NULL || seqs == NULL)
        abort();
    memcpy(seqs, cl->picked, cl->n_picked * sizeof(*seqs));
    if (cl->n_picked > 1)
        qsort(seqs, cl->n_picked, sizeof(*seqs), seq_cmp);
    *at++ = '[';
    for (size_t i = 0; i < cl->n_picked; i++) {
        char digits[I64_DECIMAL_MAX], *d = i64_decimal(seqs[i], digits);
        if (i > 0)
            *at++ = ',';
        size_t n = (size_t)(digits + sizeof(digits) - d);
        memcpy(at, d, n);
        at += n;
    }
    *at++ = ']';
    *at = '\0';
    free(seqs);
    return t;
}

/* A claimed item read back and its seq. */
struct claimed {
    int64_t seq;
    struct store_item it;
};

/* Claim order (priority, created, seq). */
static int claimed_cmp(const void *a, const void *b)
{
    const struct claimed *x = a, *y = b;
    if (x->it.priority != y->it.priority)
        return x->it.priority < y->it.priority ? -1 : 1;
    if (x->it.created_ms != y->it.created_ms)
        return x->it.created_ms < y->it.created_ms ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Reads the claimed items back, in claim order, as rows or structs. */
static int read_claimed(store *s, struct claim *cl, const char *picks, char *err, size_t errlen)
{
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, cl->typed ? S_CLAIM_READ_TYPED : S_CLAIM_READ, "t", picks);
    if (rc != STORE_OK)
        return rc;
    if (!cl->typed)
        return eng_item_rows(s, &r, cl->now, ENG_STALE_DEFAULT_MS, 1, &cl->rows, err, errlen);
    /* The rows come in no order (a sort of whole rows cost SQLite half the read): the
     * items are put in claim order here. */
    store_items_free(cl->items, cl->n_items);
    cl->items = NULL;
    cl->n_items = 0;
    struct claimed *c = calloc(cl->n_picked ? cl->n_picked : 1, sizeof(*c));
    if (c == NULL)
        abort();
    size_t n = 0;
    int got;
    while ((got = eng_next(&r, err, errlen)) == 1 && n < cl->n_picked) {
        c[n].seq = eng_i64(&r, 0);
        eng_item_struct(&r, 1, &c[n++].it);
    }
    eng_done(&r);
    qsort(c, n, sizeof(*c), claimed_cmp);
    cl->items = calloc(n ? n : 1, sizeof(*cl->items));
    if (cl->items == NULL)
        abort();
    for (size_t i = 0; i < n; i++)
        cl->items[i] = c[i].it;
    cl->n_items = n;
    free(c);
    return got < 0 ? got : STORE_OK;
}

/* Marks the picks (picks_json) claimed (those nobody else holds locked at this instant),
 * keeping in cl->picked only the seqs the engine says it changed. */
static int mark_claimed(store *s, struct claim *cl, const char *picks, char *err, size_t errlen)
{
    eng_rows r;
    char prefix[37];
    uuid_v4(prefix);
    prefix[24] = '\0'; /* "xxxxxxxx-xxxx-4xxx-yxxx-": the item's seq completes the token */
    if (!s->drv->row_locks) {
        /* One writer: every pick read in this transaction is still PENDING, and the
         * statement returns nothing (the driver's S_CLAIM_ASSIGN); what it changed is all. */
        long changed = 0;
        int rc = cl->n_picked == 1
                     ? eng_w(s, &changed, err, errlen, S_CLAIM_ASSIGN_ONE, "ItIIit", cl->picked[0],
                             cl->owner, cl->now + cl->lease_ms, cl->now, cl->start, prefix)
                     : eng_w(s, &changed, err, errlen, S_CLAIM_ASSIGN, "ttIIit", picks, cl->owner,
                             cl->now + cl->lease_ms, cl->now, cl->start, prefix);
        if (rc == STORE_OK && changed != (long)cl->n_picked) {
            seterr(err, errlen, "claim: %ld of %zu picked items changed", changed, cl->n_picked);
            rc = STORE_ERROR;
        }
        return rc;
    }
    int rc = eng_wq(s, &r, err, errlen, S_CLAIM_ASSIGN, "ttIIit", picks, cl->owner,
                    cl->now + cl->lease_ms, cl->now, cl->start, prefix);
    if (rc != STORE_OK)
        return rc;
    size_t n = 0;
    int got;
    while ((got = eng_next(&r, err, errlen)) == 1 && n < cl->n_picked)
        cl->picked[n++] = eng_i64(&r, 0);
    eng_done(&r);
    cl->n_picked = n;
    return got < 0 ? got : STORE_OK;
}

/* Where the engine locks rows, a claim of structs marks the picks, writes their events and
 * reads them back in one statement (S_CLAIM_TAKE): those nobody else holds locked. */
static int take_typed(store *s, struct claim *cl, const char *until, char *err, size_t errlen)
{
    eng_rows r;
    char *picks = picks_json(cl), prefix[37];
    uuid_v4(prefix);
    prefix[24] = '\0';
    int rc = eng_wq(s, &r, err, errlen, S_CLAIM_TAKE, "ttIIitt", picks, cl->owner,
                    cl->now + cl->lease_ms, cl->now, cl->start, prefix, until);
    free(picks);
    if (rc != STORE_OK)
        return rc;
    store_items_free(cl->items, cl->n_items);
    cl->items = calloc(cl->n_picked ? cl->n_picked : 1, sizeof(*cl->items));
    if (cl->items == NULL)
        abort();
    int got;
    for (cl->n_items = 0; (got = eng_next(&r, err, errlen)) == 1 && cl->n_items < cl->n_picked;)
        eng_item_struct(&r, 0, &cl->items[cl->n_items++]); /* in claim order (ORDER BY) */
    eng_done(&r);
    cl->n_picked = cl->n_items;
    return got < 0 ? got : STORE_OK;
}

/* Claims the picks, writes their events and reads them back. */
static int assign(store *s, struct claim *cl, char *err, size_t errlen)
{
    char until[32];
    if (s->drv->row_locks && cl->typed) {
        iso8601_ms(cl->now + cl->lease_ms, until);
        return take_typed(s, cl, until, err, errlen);
    }
    char *claimed = picks_json(cl);
    size_t picked = cl->n_picked;
    int rc = mark_claimed(s, cl, claimed, err, errlen);
    if (rc != STORE_OK || cl->n_picked == 0) {
        free(claimed);
        return rc;
    }
    if (cl->n_picked != picked) { /* some were left out (row locks): the claimed ones */
        free(claimed);
        claimed = picks_json(cl);
    }
    iso8601_ms(cl->now + cl->lease_ms, until);
    rc = eng_w(s, NULL, err, errlen, S_CLAIM_EVENTS, "ttIti", claimed, cl->owner, cl->now, until,
               cl->start);
    if (rc == STORE_OK)
        rc = read_claimed(s, cl, claimed, err, errlen);
    free(claimed);
    return rc;
}

static int claim_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct claim *cl = ctx;
    cl->n_picked = cl->n_slots = 0;
    cl->check_held = cl->remember = 0;
    int rc = pick_items(s, cl, err, errlen);
    if (rc == STORE_OK && cl->n_picked > 0)
        rc = assign(s, cl, err, errlen);
    if (rc == STORE_OK && cl->check_held)
        rc = still_held(s, cl, err, errlen);
    if (rc != STORE_OK || cl->n_picked > 0)
        return rc;
    if (rc == STORE_OK && !cl->typed) {
        json_decref(cl->rows);
        cl->rows = json_array();
    }
    if (rc == STORE_OK && cl->typed) {
        store_items_free(cl->items, cl->n_items);
        cl->items = NULL;
        cl->n_items = 0;
    }
    return rc;
}

static int run_claim(store *s, struct claim *cl, char *err, size_t errlen)
{
    int rc = eng_run(s, ENG_WRITE_HELD, claim_body, cl, err, errlen);
    if (rc == STORE_OK && cl->remember)
        remember(s, cl);
    else if (rc == STORE_OK && s->claim_memory != NULL)
        s->claim_memory->version = -1; /* no machine known, the items still */
    else
        claim_forget(s);
    if (rc == STORE_OK)
        remember_items(s, cl);
    free(cl->slots);
    free(cl->picked);
    free(cl->active);
    if (rc != STORE_OK) {
        json_decref(cl->rows);
        cl->rows = NULL;
        store_items_free(cl->items, cl->n_items);
        cl->items = NULL;
        cl->n_items = 0;
    }
    return rc;
}

int store_claim_rows(store *s, const char *bridge, const char *owner, int64_t lease_ms, int max_n,
                     int64_t now, json_t **items, char *err, size_t errlen)
{
    struct claim cl = {
        .bridge = bridge, .owner = owner, .now = now, .lease_ms = lease_ms, .max_n = max_n};
    int rc = run_claim(s, &cl, err, errlen);
    *items = cl.rows;
    return rc;
}

int store_claim_typed(store *s, const char *bridge, const char *owner, int64_t lease_ms, int max_n,
                      int start, int64_t now, struct store_item **items, size_t *n, char *err,
                      size_t errlen)
{
    struct claim cl = {.bridge = bridge,
                       .owner = owner,
                       .now = now,
                       .lease_ms = lease_ms,
                       .max_n = max_n,
                       .start = start != 0,
                       .typed = 1};
    int rc = run_claim(s, &cl, err, errlen);
    *items = cl.items;
    *n = cl.n_items;
    return rc;
}
