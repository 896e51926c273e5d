/*
 * Package managers for os_update: one table of operations per manager (pkg_apt.c,
 * pkg_dnf.c), all run on the machine through the exec service.
 *
 * A package entry, as plan() produces and os_update reports it:
 *   {"name": "openssl", "old_version": "3.0.11-1~deb12u2" | null (newly pulled in),
 *    "new_version": "3.0.17-1~deb12u2", "origin": "Debian-Security:12/stable-security",
 *    "security": true}
 */
#ifndef FERRY_OPS_PKG_H
#define FERRY_OPS_PKG_H

#include "ops.h"

/* What os_update was asked to update. */
typedef struct pkg_request {
    int all, security, critical; /* the classes named in "packages" */
    json_t *names;               /* the package names in "packages" (array, borrowed) */
    const char *sudo;            /* "" as root, "sudo -n " otherwise */
} pkg_request;

typedef struct pkg_manager {
    const char *name; /* "apt", "dnf" or "yum" */
    /* Refreshes the package lists (apt-get update, dnf makecache). */
    ferry_result (*refresh)(ferry_ctx *ctx, const pkg_request *req);
    /*
     * Works out, without changing anything, what the update would install: appends package
     * entries to packages, and the names asked for that are not installed to missing.
     */
    ferry_result (*plan)(ferry_ctx *ctx, const pkg_request *req, json_t *packages, json_t *missing);
    /* Installs the plan (packages as plan() made them). */
    ferry_result (*apply)(ferry_ctx *ctx, const pkg_request *req, const json_t *packages);
    /* Fills versions ({"name": "version"}) with the installed versions of the names. */
    ferry_result (*installed)(ferry_ctx *ctx, const pkg_request *req, const json_t *names,
                              json_t *versions);
    /* Shell command that prints "yes" when the machine wants a reboot, else "no". */
    const char *reboot_check;
} pkg_manager;

extern const pkg_manager pkg_apt;
extern const pkg_manager pkg_dnf;
extern const pkg_manager pkg_yum;

/*
 * Runs a package manager command (what names it in the trace) with a non-interactive
 * environment; logs the output's tail at info level when log_output is set. Returns the
 * exec result (new reference) or NULL with the error set (unreachable machine).
 */
json_t *pkg_exec(ferry_ctx *ctx, const char *what, const char *command, int log_output);

/* Sets the error from a failed package manager command: RETRY when the package database
 * was locked by another process, else FAIL. */
ferry_result pkg_failed(ferry_ctx *ctx, const char *what, const json_t *res);

/* The "name" members of a package list, as a new array. */
json_t *pkg_names(const json_t *packages);

/* Parses "name<TAB>version" lines into versions ({"name": "version"}). */
void pkg_parse_versions(const char *out, json_t *versions);

#endif
