/*
 * What the man pages (cli_man.c) and the shell completions (cli_complete.c) share: both are
 * written from the command tables for `ferry help --man` and `ferry help --completion`.
 */
#ifndef FERRY_CLI_MAN_H
#define FERRY_CLI_MAN_H

#include <stdio.h>

#include "cli.h"

/* The global options (--config, --output, --help, --version), ended by {NULL}. */
extern const cli_opt cli_global_opts[];

/* Writes the completion script for shell ("bash" or "zsh") to out. Returns EXIT_OK, or
 * EXIT_USAGE (said on stderr) for another shell. */
int cli_write_completion(const char *shell, FILE *out);

#endif
