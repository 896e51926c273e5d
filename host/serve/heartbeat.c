/*
 * The host's heartbeat row (heartbeat.h). A failed write is logged and tried again at the
 * next tick: a store that refuses it must not stop the host.
 */
#include "heartbeat.h"

#include "hosts.h"
#include "log.h"
#include "util.h"

static int64_t started_ms, last_mono = -HEARTBEAT_MS;

void heartbeat_tick(store *s, const char *owner, const char *bridge, int running, int64_t mono)
{
    if (mono - last_mono >= HEARTBEAT_MS)
        heartbeat_beat(s, owner, bridge, running, mono);
}

void heartbeat_beat(store *s, const char *owner, const char *bridge, int running, int64_t mono)
{
    last_mono = mono;
    if (started_ms == 0)
        started_ms = now_ms();
    char err[512];
    if (store_host_beat(s, owner, bridge, FERRY_VERSION, started_ms, running, now_ms(), err,
                        sizeof(err)) != 0)
        hlog(LOG_WARN, "host heartbeat not recorded: %s", err);
}

void heartbeat_stopped(store *s, const char *owner)
{
    char err[512];
    if (store_host_stopped(s, owner, now_ms(), err, sizeof(err)) != 0)
        hlog(LOG_WARN, "host stop not recorded: %s", err);
}
