/*
 * Waiting for a queue item while saying what it does (cli_wait.c): `create queue-item
 * --wait`, `queue wait` and `queue trace --follow` (docs/cli.md, "Waiting").
 */
#ifndef FERRY_CLI_WAIT_H
#define FERRY_CLI_WAIT_H

#include <stdio.h>

#include "cli.h"

/* The exit status of a wait stopped by Ctrl-C (SIGINT): 128 + 2, as shells report it. The
 * item is not cancelled. */
#define EXIT_INTERRUPTED 130

/* What a wait shows. */
struct cli_wait {
    const char *task;    /* task id or unique prefix */
    long timeout_s;      /* give up after this many seconds; 0: never */
    int print_id;        /* first of all, "Task ID: <the whole id>" on stderr */
    int status_line;     /* on stderr: one line redrawn in place on a terminal, else a line per
                          * change of status, percent or message, and the end */
    int follow;          /* print the item's timeline events as they are written */
    FILE *events_out;    /* where followed events go */
    size_t events_shown; /* events already shown (they are not printed again) */
};

enum cli_wait_end {
    CLI_WAIT_ENDED,       /* the item is COMPLETED, FAILED or CANCELLED */
    CLI_WAIT_TIMEOUT,     /* timeout_s ran out; the item goes on */
    CLI_WAIT_INTERRUPTED, /* SIGINT: "stopped waiting" was printed (cli_fail, exit 130) */
    CLI_WAIT_ERROR,       /* the store failed; the error was printed (cli_fail) */
};

/*
 * Waits until task ends, the timeout runs out or SIGINT arrives, showing it as w says. It
 * sleeps on the store's wake-ups for the item's bridge (store_wait_fd) and, between them,
 * reads the item again only when the store may have changed (store_data_version; every
 * 250 ms where the driver cannot tell). *row receives the item as last read (a new
 * reference, NULL on CLI_WAIT_ERROR). The store must be open (cli_store).
 */
enum cli_wait_end cli_wait_item(cli *c, struct cli_wait *w, json_t **row);

/* Whether status is one an item ends in (COMPLETED, FAILED, CANCELLED). */
int cli_status_final(const char *status);

#endif
