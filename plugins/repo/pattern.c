/* Exclude patterns in gitignore's syntax (the subset pattern.h lists). */
#include "pattern.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define PATTERN_MAX 4096

typedef struct compiled {
    char *glob;   /* without '!', the leading '/' and the trailing '/' */
    int negate;   /* '!' */
    int dir_only; /* trailing '/' */
    int anchored; /* a '/' at the start or in the middle: matched against the whole path */
} compiled;

struct pattern_set {
    compiled *p;
    size_t n;
};

/* The matcher's answers; the two aborts prune hopeless retries (as git's wildmatch does). */
enum { NOMATCH = 0, MATCH = 1, ABORT_ALL = -1, ABORT_TO_STARSTAR = -2 };

/* Matches a bracket class at p (just after '[') against ch; *end receives the byte after ']'.
 * Returns 1 / 0, or -1 for an unterminated class. */
static int match_class(const char *p, unsigned char ch, const char **end)
{
    int negate = *p == '!' || *p == '^';
    if (negate)
        p++;
    int found = 0;
    int first = 1;
    for (; *p && (*p != ']' || first); p++, first = 0) {
        unsigned char lo = (unsigned char)*p;
        if (lo == '\\' && p[1])
            lo = (unsigned char)*++p;
        unsigned char hi = lo;
        if (p[1] == '-' && p[2] && p[2] != ']') {
            p += 2;
            hi = (unsigned char)*p;
            if (hi == '\\' && p[1])
                hi = (unsigned char)*++p;
        }
        if (ch >= lo && ch <= hi)
            found = 1;
    }
    if (*p != ']')
        return -1;
    *end = p + 1;
    return ch != '/' && found != negate;
}

/* Does pattern p (whose first byte is start's, for "**" at a component's start) match s? */
static int wild(const char *start, const char *p, const char *s)
{
    for (; *p; p++, s++) {
        if (*p == '*') {
            int double_star = p[1] == '*' && (p == start || p[-1] == '/');
            if (double_star) {
                const char *after = p + 2;
                while (*after == '*')
                    after++;
                if (*after == '\0')
                    return MATCH; /* a final slash and two stars (or the two alone): all below */
                if (*after == '/') {
                    /* two stars and a slash: zero or more whole directories, then the rest */
                    for (const char *t = s;;) {
                        int r = wild(start, after + 1, t);
                        if (r == MATCH || r == ABORT_ALL)
                            return r;
                        t = strchr(t, '/');
                        if (t == NULL)
                            return ABORT_ALL;
                        t++;
                    }
                }
            }
            while (p[1] == '*')
                p++;
            if (p[1] == '\0')
                return strchr(s, '/') ? ABORT_TO_STARSTAR : MATCH;
            for (const char *t = s;; t++) {
                int r = wild(start, p + 1, t);
                if (r != NOMATCH)
                    return r;
                if (*t == '\0')
                    return ABORT_ALL;
                if (*t == '/')
                    return ABORT_TO_STARSTAR;
            }
        }
        if (*s == '\0')
            return ABORT_ALL;
        if (*p == '?') {
            if (*s == '/')
                return NOMATCH;
            continue;
        }
        if (*p == '[') {
            const char *end = NULL;
            int r = match_class(p + 1, (unsigned char)*s, &end);
            if (r <= 0)
                return NOMATCH;
            p = end - 1;
            continue;
        }
        if (*p == '\\' && p[1])
            p++;
        if (*p != *s)
            return NOMATCH;
    }
    return *s == '\0' ? MATCH : NOMATCH;
}

int pattern_glob(const char *pattern, const char *text)
{
    return wild(pattern, pattern, text) == MATCH;
}

/* Why a glob is malformed, or NULL. */
static const char *glob_problem(const char *g)
{
    for (const char *p = g; *p; p++) {
        if (*p == '\\') {
            if (p[1] == '\0')
                return "ends with a backslash";
            p++;
        } else if (*p == '[') {
            const char *end;
            if (match_class(p + 1, 'a', &end) < 0)
                return "has an unterminated [";
            p = end - 1;
        }
    }
    return NULL;
}

pattern_set *pattern_compile(const char *const *patterns, size_t n, char *err, size_t errlen)
{
    pattern_set *ps = xcalloc(1, sizeof(*ps));
    ps->p = xcalloc(n ? n : 1, sizeof(*ps->p));
    for (size_t i = 0; i < n; i++) {
        const char *text = patterns[i];
        const char *why = NULL;
        compiled *c = &ps->p[ps->n];
        size_t len = text ? strlen(text) : 0;
        if (len == 0 || len > PATTERN_MAX) {
            why = len ? "is longer than 4096 bytes" : "is empty";
        } else {
            const char *p = text;
            if (*p == '!') {
                c->negate = 1;
                p++;
            }
            len = strlen(p);
            if (len > 0 && p[len - 1] == '/' && (len < 2 || p[len - 2] != '\\')) {
                c->dir_only = 1;
                len--;
            }
            if (len > 0 && p[0] == '/') {
                c->anchored = 1;
                p++;
                len--;
            }
            c->glob = xmalloc(len + 1);
            memcpy(c->glob, p, len);
            c->glob[len] = '\0';
            if (memchr(c->glob, '/', len))
                c->anchored = 1;
            if (len == 0)
                why = "matches nothing (a lone \"!\" or \"/\")";
            else
                why = glob_problem(c->glob);
        }
        if (why) {
            if (err)
                snprintf(err, errlen, "exclude pattern %zu (\"%.80s\") %s", i + 1, text ? text : "",
                         why);
            ps->n++;
            pattern_free(ps);
            return NULL;
        }
        ps->n++;
    }
    return ps;
}

void pattern_free(pattern_set *ps)
{
    if (ps == NULL)
        return;
    for (size_t i = 0; i < ps->n; i++)
        free(ps->p[i].glob);
    free(ps->p);
    free(ps);
}

int pattern_excluded(const pattern_set *ps, const char *path, int is_dir)
{
    if (ps == NULL)
        return 0;
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    for (size_t i = ps->n; i-- > 0;) {
        const compiled *c = &ps->p[i];
        if (c->dir_only && !is_dir)
            continue;
        if (pattern_glob(c->glob, c->anchored ? path : base))
            return !c->negate;
    }
    return 0;
}
