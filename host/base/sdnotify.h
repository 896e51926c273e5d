/*
 * systemd's notification protocol (sd_notify(3)), written out: one datagram to the
 * AF_UNIX socket named by $NOTIFY_SOCKET. With Type=notify the host says READY=1 once it
 * serves, WATCHDOG=1 while its loop turns (WatchdogSec=), STOPPING=1 when it stops. Outside
 * systemd ($NOTIFY_SOCKET unset) every call does nothing. See docs/operations.md.
 */
#ifndef FERRY_SDNOTIFY_H
#define FERRY_SDNOTIFY_H

#include <stdint.h>

/* Sends state ("READY=1", ...). Returns 1 when sent, 0 without $NOTIFY_SOCKET, -1 on error. */
int sdnotify(const char *state);

/* Called from each turn of the host's loop with the monotonic clock (ms): sends WATCHDOG=1
 * when half of $WATCHDOG_USEC has passed since the last one (nothing without a watchdog). */
void sdnotify_watchdog(int64_t now_ms);

#endif
