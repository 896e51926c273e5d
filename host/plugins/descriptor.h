/*
 * Reading a plugin's descriptor safely (by its own struct sizes) and turning it into JSON;
 * writing the function reference. Used inside probe and worker processes, never on plugin
 * memory in the host itself.
 */
#ifndef FERRY_DESCRIPTOR_H
#define FERRY_DESCRIPTOR_H

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
