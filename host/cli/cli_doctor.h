/*
 * `ferry doctor` (cli_doctor.c): the checks and how each reports its line.
 */
#ifndef FERRY_CLI_DOCTOR_H
#define FERRY_CLI_DOCTOR_H

#include "cli.h"

enum doctor_status { DOCTOR_OK, DOCTOR_WARN, DOCTOR_FAIL };

/* One run of the checks: the command, the reported checks (a JSON array) and the count of
 * each status. */
struct doctor {
    cli *c;
    json_t *checks;
    int count[3];
};

/* Reports one check: printed at once as "STATUS  CHECK: MESSAGE; fix: FIX" (text), kept for
 * the JSON answer either way. fix may be NULL; newlines in the message become blanks. */
void doctor_report(struct doctor *d, enum doctor_status status, const char *check, const char *fix,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* --storages: each storage listed through the repo plugin (cli_doctor_storage.c). */
void doctor_storages(struct doctor *d);

#endif
