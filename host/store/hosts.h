/*
 * Hosts and their heartbeats, and the aggregate reads of `ferry web` (metrics, its summary,
 * its event stream). Store migration 6 adds the hosts table and the index on finished_at
 * these reads use; every read here goes through an index, so that it costs the same with
 * a million items in the store (docs/benchmarks.md, "ferry web").
 *
 * Conventions are store.h's: STORE_OK or a negative status with err set; JSON outputs are
 * new references.
 */
#ifndef FERRY_STORE_HOSTS_H
#define FERRY_STORE_HOSTS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct store store;

/* A host is alive while its last heartbeat is at most this old and it has not stopped. */
#define STORE_HOST_ALIVE_MS 30000

/* Records host_id's heartbeat (creating its row): its bridge, version, start and running
 * attempts, seen at now. */
int store_host_beat(store *s, const char *host_id, const char *bridge, const char *version,
                    int64_t started_ms, int running, int64_t now, char *err, size_t errlen);

/* Marks host_id stopped at now (a clean shutdown). */
int store_host_stopped(store *s, const char *host_id, int64_t now, char *err, size_t errlen);

/* Lists the hosts, last seen first: [{"hostId","bridgeName","version","startedTime",
 * "lastSeenTime","lastSeenAgeSeconds","runningAttempts","alive","stoppedTime"}]. */
int store_hosts_list(store *s, int64_t now, json_t **rows, char *err, size_t errlen);

/* The host of bridge that says whether it is served, into *host: an alive one if any, else
 * the one last seen, as {"hostId","lastSeenAgeSeconds","alive","stoppedTime"} (the fields
 * of a store_hosts_list row); NULL when no host of it has a row. For the warning after a
 * create (cli_warn_no_host), which needs no other bridge's hosts. */
int store_bridge_host(store *s, const char *bridge, int64_t now, json_t **host, char *err,
                      size_t errlen);

/* The figures of /metrics that are read afresh at each scrape, into *out:
 * {"depth":[[bridge,status,priority,count]…] (items not yet ended),
 *  "oldestPendingMs":ms or 0, "hostsAlive":n, "scheduleDelays":[[team,schedule,ms]…]}. */
int store_web_gauges(store *s, int64_t now, json_t **out, char *err, size_t errlen);

/* Histogram bounds of store_web_ended, ms. */
#define STORE_WEB_BUCKETS 10
extern const int64_t store_web_bucket_ms[STORE_WEB_BUCKETS];

/* The ended items (COMPLETED, FAILED, CANCELLED) with lo_ms <= finished_at < hi_ms, added
 * up by function and status in one indexed query (qi_finished): [[function, status, count,
 * timed (those with a start), sum of run times ms, count with run time <= each bound of
 * store_web_bucket_ms …]…]. */
int store_web_ended(store *s, int64_t lo_ms, int64_t hi_ms, json_t **rows, char *err,
                    size_t errlen);

/* Items that changed after since_ms (created, active with an update, or ended), of team
 * (NULL: every team), oldest change first, at most limit: [{"taskId","status","priority",
 * "function","teamName","machineName","bridgeName","progress","updatedTime","updatedTimeMs"}]. */
int store_web_changes(store *s, int64_t since_ms, const char *team, int limit, json_t **rows,
                      char *err, size_t errlen);

#endif
