/*
 * The script function's text helpers (script_text.c): what travels to the machine and what
 * comes back from it. Pure functions of their inputs, apart from script_read_file().
 */
#ifndef FERRY_OPS_SCRIPT_H
#define FERRY_OPS_SCRIPT_H

#include <stddef.h>

#include <jansson.h>

/* The largest script, inline or from a file: the default vault limit (vault.max_bytes). */
#define SCRIPT_MAX_BYTES (1024 * 1024)

/* A byte buffer that grows (malloc'd data, len bytes, NUL-terminated for convenience). */
typedef struct script_buf {
    char *data;
    size_t len;
} script_buf;

void script_buf_add(script_buf *b, const void *p, size_t n);
void script_buf_free(script_buf *b);

/* Standard base64 of n bytes, as a malloc'd NUL-terminated string. */
char *script_base64(const void *p, size_t n);

/*
 * Decodes base64 text (whitespace ignored) into out. Returns 0, or -1 when text is not
 * base64 (out then holds what was decoded so far; the caller frees it either way).
 */
int script_unbase64(const char *text, script_buf *out);

/*
 * Masks secrets in text (len bytes, may hold any byte): every occurrence of each string of
 * secrets (a NULL-terminated list; strings shorter than 4 bytes are left alone, as the host
 * does) becomes "********", the longest first. The first skip bytes of text are dropped from
 * the result, and with them a secret's tail that a cut at the start of text may have left
 * (a match that begins inside them is masked and dropped too). Returns a malloc'd buffer.
 */
script_buf script_mask(const char *text, size_t len, const char *const *secrets, size_t skip);

/*
 * The text as a JSON string: its last max bytes, starting at a character, with every byte
 * that is not part of valid UTF-8 (and NUL) replaced by U+FFFD, so that the result and the
 * trace stay valid JSON whatever a script prints. Returns a new reference.
 */
json_t *script_text_json(const char *text, size_t len, size_t max);

/*
 * Reads the script file name on the bridge: a name relative to one of dirs (tried in order),
 * or an absolute path inside one of them, after symlinks are resolved (what was opened is
 * checked, not what the name says). dirs is a JSON array of strings or one string. Returns
 * 0 with the content in out and the resolved path in *path (malloc'd); else -1 with a
 * one-line reason in err and *invalid set when the parameter is at fault (a missing file, a
 * name outside the directories, a file too big) rather than the bridge (a read error).
 */
int script_read_file(const char *name, const json_t *dirs, script_buf *out, char **path,
                     int *invalid, char *err, size_t errlen);

#endif
