/*
 * Reading a plugin's descriptor safely (by its own struct sizes) and turning it into JSON;
 * writing the function reference. Used inside probe and worker processes, never on plugin
 * memory in the host itself.
 */
#ifndef FERRY_DESCRIPTOR_H
#define FERRY_DESCRIPTOR_H

#include <stdint.h>
#include <stdio.h>

#include <ferry/plugin.h>
#include <jansson.h>

/*
 * Checks a plugin descriptor (magic, ABI, sizes, flags, names, parameter tables, defaults)
 * and returns it as JSON (new reference):
 * {"name","version","summary","abi":"1.0","functions":[descriptor, ...]} where each function
 * descriptor is {"name","summary","description","flags":[...],"timeout","params":[...]}.
 * Returns NULL with a one-line reason on the first problem.
 */
json_t *descriptor_read(const ferry_plugin *plugin, char *reason, size_t rlen);

/*
 * A function as the host acts on it: the facts of its JSON descriptor (the form it crosses
 * the probe's pipe in and the CLI prints), read once by descriptor_fn. Strings and desc
 * are borrowed from the descriptor and valid as long as it is (for the registry's, until
 * the next scan).
 */
struct ferry_fn {
    const char *name;
    const char *plugin; /* the plugin's name (registry descriptors only, else NULL) */
    const char *path;   /* the .so it comes from (registry descriptors only, else NULL) */
    unsigned flags;     /* FERRY_FN_* bits (FERRY_FN_IDEMPOTENT …) */
    int64_t timeout_s;  /* the function's default timeout; 0: the host's */
    const json_t *desc; /* the whole descriptor: parameters for validation and redaction */
};

/*
 * The FERRY_FN_* bits a function descriptor names in its "flags" (unknown names are
 * ignored). The one place a flag's name becomes a fact: every "is it idempotent" asks here.
 */
unsigned descriptor_flags(const json_t *fn);

/* Reads a function descriptor's facts into *out. Returns 0, or -1 (out zeroed) when fn is
 * not a function descriptor (NULL, or without a name). */
int descriptor_fn(const json_t *fn, struct ferry_fn *out);

/*
 * Runs the plugin's init (if any) with its config section (borrowed). Returns 0, or -1 with
 * the plugin's own reason.
 */
int descriptor_init(const ferry_plugin *plugin, const ferry_host *host, const json_t *config,
                    char *reason, size_t rlen);

/*
 * Runs the plugin's fini (if any): in a process that ran descriptor_init successfully, once,
 * as it ends normally.
 */
void descriptor_fini(const ferry_plugin *plugin);

/* Finds the function called name in a checked plugin; NULL when absent. */
const ferry_function *descriptor_find(const ferry_plugin *plugin, const char *name);

/* Copies the run pointer out of a function descriptor read by its struct_size. */
ferry_run_fn descriptor_run(const ferry_function *fn);

/* Writes the Markdown function reference for a sorted array of function descriptors. */
void descriptor_write_markdown(const json_t *functions, FILE *out);

/* Writes one function as readable text (for `ferry functions NAME`). */
void descriptor_write_text(const json_t *fn, FILE *out);

#endif
