/*
 * Host liveness for the command line (cli_status.c): `ferry status`, and the warning of
 * create queue-item(s) and queue wait when no live host serves an item's bridge.
 */
#ifndef FERRY_CLI_STATUS_H
#define FERRY_CLI_STATUS_H

#include "cli.h"

/* Warns on stderr ("ferry: warning: no host is serving bridge B (…)") when no host of
 * bridge is alive (store.h's hosts: a heartbeat within STORE_HOST_ALIVE_MS and not
 * stopped). One read of the hosts table per run, each bridge warned once; silent when the
 * store cannot say, or when FERRY_TEST_NO_HOST_WARNING=off (tests/lib.sh). Never writes to
 * stdout. */
void cli_warn_no_host(cli *c, const char *bridge);

/* For a run that writes many items (create queue-items): notes an item's bridge, and after
 * the commit warns as above for each bridge noted. */
void cli_note_bridge(const char *bridge);
void cli_warn_no_host_noted(cli *c);

extern const cli_command cli_status_commands[];

#endif
