/*
 * Exclude patterns for pushes (repo_push's "exclude"), in a documented subset of gitignore's
 * syntax (docs/repositories.md, "Excluding files"):
 *
 *   *        any run of bytes except '/'          ?      one byte except '/'
 *   [abc] [a-z] [!a-z] [^a-z]  one byte of (not of) the class, never '/'
 *   **       at the start followed by a slash: in any directory; after a slash at the
 *            end: everything inside; between two slashes: zero or more directories;
 *            any other "**" is "*"
 *   \x       the byte x itself (\*, \?, \[, \!, \\)
 *   leading /        anchored: matched against the whole path from the pushed root
 *   / in the middle  anchored too; a pattern without a slash (a trailing one aside)
 *                    matches the last name at any depth
 *   trailing /       matches directories only
 *   leading !        negation: a later "!" pattern re-includes what an earlier one excluded;
 *                    the last pattern that matches decides. A file inside an excluded
 *                    directory cannot be re-included (the directory is not read at all).
 *
 * Paths are relative to the pushed directory, without a leading slash; names are bytes.
 */
#ifndef REPO_PATTERN_H
#define REPO_PATTERN_H

#include <stddef.h>

typedef struct pattern_set pattern_set;

/*
 * Compiles n patterns. Returns a new set (pattern_free), or NULL with a one-line reason in
 * err (errlen bytes) naming the bad pattern: empty, a lone "!" or "/", an unterminated "[",
 * a trailing backslash, a NUL-free text of at most 4096 bytes.
 */
pattern_set *pattern_compile(const char *const *patterns, size_t n, char *err, size_t errlen);
void pattern_free(pattern_set *ps);

/*
 * Non-zero when path (relative, "a/b/c") is excluded: the last pattern that matches it is not
 * a negation. is_dir says whether it is a directory (for trailing-slash patterns). The caller
 * does not descend into an excluded directory. A NULL set excludes nothing.
 */
int pattern_excluded(const pattern_set *ps, const char *path, int is_dir);

/* Non-zero when the glob pattern (no anchoring or negation: the matcher alone) matches text. */
int pattern_glob(const char *pattern, const char *text);

#endif
