/*
 * Host liveness for the command line (cli_status.c): `ferry status`, and the warning of
 * create queue-item(s) and queue wait when no live host serves an item's bridge.
 */
#ifndef FERRY_CLI_STATUS_H
#define FERRY_CLI_STATUS_H

#include <stdint.h>

#include "cli.h"

/* Warns on stderr ("ferry: warning: no host is serving bridge B (…)") when no host of
 * bridge is alive (store.h's hosts: a heartbeat within STORE_HOST_ALIVE_MS and not
 * stopped). One read of the hosts table per run, each bridge warned once; silent when the
 * store cannot say, or when FERRY_TEST_NO_HOST_WARNING=off (tests/lib.sh). Never writes to
 * stdout. */
void cli_warn_no_host(cli *c, const char *bridge);
/* The read of cli_warn_no_host alone, for a caller that makes it inside the transaction that
 * writes the item (one transaction fewer); cli_warn_no_host then warns from it. */
void cli_look_for_host(cli *c, const char *bridge);

/* For a run that writes many items (create queue-items): notes an item's bridge, and after
 * the commit warns as above for each bridge noted. */
void cli_note_bridge(const char *bridge);
void cli_warn_no_host_noted(cli *c);

/* An age as people say it: "42 s", "5 min", "3 h", "2 days"; into buf, which it returns. */
const char *cli_age_text(int64_t seconds, char *buf, size_t len);

/* The state word of a host row of store_hosts_list: alive, stale (its heartbeats stopped
 * without a clean stop) or stopped. */
const char *cli_host_state(const json_t *host);

extern const cli_command cli_status_commands[];
extern const cli_command cli_dashboard_commands[]; /* cli_dashboard.c */

#endif
