/*
 * The host configuration (libconfig). One file, found as: --config FILE, else $FERRY_CONFIG,
 * else the first that exists of PREFIX/etc/ferry/ferry.conf (beside an installed
 * PREFIX/bin/ferry), /etc/ferry/ferry.conf and conf/ferry.conf; no file at all is an error
 * (CONFIG_NOT_FOUND) rather than a store made up in the current directory. Every key has a
 * default; an unknown key, a reserved key that does nothing yet, or a wrong type is an error
 * naming the file and line. Relative paths in a file are resolved against the directory
 * that holds the file.
 */
#ifndef FERRY_CONFIG_H
#define FERRY_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

/* Limits of one attempt: memory (MiB, resident, the attempt's processes together), CPU time
 * (seconds, all its processes) and processes at once; 0 = none. function: NULL for the
 * defaults, else the function the override is for. */
struct ferry_limits {
    char *function;
    int memory_mb, cpu_seconds, processes;
};

typedef struct ferry_config {
    char *path; /* the file that was read */

    char *bridge;    /* bridge this host serves */
    char *log_level; /* debug, info, warn, error */
    char *log_format; /* "text" or "json" */

    char *store_driver;      /* "sqlite" or "postgres" */
    char *store_path;        /* SQLite database file */
    char *store_conninfo;    /* PostgreSQL conninfo or URL */
    char *store_synchronous; /* SQLite: "full" or "normal" */
    char *store_key;         /* the sealing key file; "" = the default (store_seal.c) */

    char *plugin_dir;

    int workers;          /* attempts that may run at once */
    int worker_max_jobs;  /* a worker process is replaced after this many attempts */
    int worker_memory_mb; /* address-space limit per worker; 0 = none */
    int prefork;          /* worker processes started ahead of need */
    int worker_pipeline;  /* attempts queued per worker behind the running one; 0 = none */
    char *worker_path;    /* PATH of the workers' scrubbed environment */
    char *worker_pass_env; /* further variables let through, space-separated names */
    char *worker_run_as;   /* "FUNCTION=USER ..." (least privilege, host/priv) */
    char *priv_socket;     /* ferry-priv's socket */
    int ssh_allow_command_options; /* ssh_options may run commands on the bridge */

    int timeout_default; /* seconds, when neither the vault nor the function sets one */
    int timeout_max;     /* seconds; longer requests are capped */
    int grace_seconds;   /* between SIGTERM and SIGKILL, and for shutdown */

    int retry_max;        /* max_retries when the vault gives none */
    int retry_delay;      /* seconds before the first retry */
    double retry_backoff; /* multiplier per further retry */
    int retry_max_delay;  /* cap, seconds */
    double retry_jitter;  /* 0..1: fraction of the delay randomised */

    int lease_seconds; /* claim lease; renewed by heartbeat at a third of it */
    int poll_ms;       /* safety-net poll when no wake-up arrives */

    char *smtp_url; /* "smtp://host:port"; empty: email notifications unavailable */
    char *smtp_from;
    char *smtp_username;
    char *smtp_password;
    char *smtp_tls;                /* "auto", "required" or "none" */
    char *notify_webhook_secret;   /* signs webhooks when the item has no secret; "" none */
    int notify_allow_link_local;   /* notification URLs may reach 169.254/16, fe80::/10 ... */

    int vault_max_bytes;

    /* ferry web (host/web/) */
    char *web_listen;   /* "ADDR:PORT" */
    char *web_tls_cert; /* PEM files; both "" = plain HTTP */
    char *web_tls_key;
    int web_max_body;        /* bytes */
    int web_max_header;      /* bytes */
    int web_rate_limit;      /* requests per token per minute */
    int web_timeout;         /* seconds */
    int web_max_connections; /* at once */
    int web_store_handles;   /* store connections kept open */
    char *people_command_role; /* role an item that runs commands needs: "operator", "admin" */

    int history_keep_days; /* ended items older than this are pruned once a day; 0 = never */

    json_t *plugin_sections; /* object: plugin name -> its section as JSON */

    /* Limits per attempt (limits.*; 0 = none), and per-function overrides
     * (limits.functions.NAME.*; -1 = the default's). */
    struct ferry_limits limits;
    struct ferry_limits *fn_limits;
    size_t n_fn_limits;
} ferry_config;

/* config_load's answer when no file was named and none of the usual places has one. */
#define CONFIG_NOT_FOUND -2

/*
 * Loads the configuration. explicit_path is --config (may be NULL). Returns 0; -1 with err
 * naming the file and line ("conf/ferry.conf:12: unknown key 'store.drvier'"); or
 * CONFIG_NOT_FOUND with err naming every place looked at. On success the caller frees *cfg
 * with config_free; on failure nothing is left to free.
 */
int config_load(const char *explicit_path, ferry_config *cfg, char *err, size_t errlen);

/* Frees everything config_load allocated. */
void config_free(ferry_config *cfg);

/* Returns the plugin's section as a new JSON object ({} when absent). */
json_t *config_plugin_section(const ferry_config *cfg, const char *plugin);

/* One key of the configuration table, for the man page (ferry.conf(5)); all static. */
struct config_key_doc {
    const char *path, *type, *default_value, *doc;
    int quoted; /* the default is a string: shown in quotes */
};
/* The i-th key of the table (from 0): 0 with *out filled, -1 past the last one. */
int config_key_doc(size_t i, struct config_key_doc *out);

/* Writes docs/configuration.md: every key, its type, default and meaning. */
void config_write_reference(FILE *out);

#endif
