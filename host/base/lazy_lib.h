/*
 * Libraries loaded on first use. Most commands of this one binary never speak HTTP, SMTP or
 * PostgreSQL, yet linking libcurl and libpq makes every start pay for mapping and relocating
 * some thirty shared objects (their TLS, Kerberos, LDAP and SSH stacks). So the host does
 * not link them: lazy_curl.c and lazy_pq.c define the curl_* and PQ* functions the host
 * calls, and each forwards to the real one in a library opened (RTLD_NOW | RTLD_LOCAL) the
 * first time any of them is called, once per process, thread-safely.
 *
 * A library that cannot be opened does not crash anything: every wrapper returns the value
 * its library documents for a failure (NULL, CONNECTION_BAD, CURLE_FAILED_INIT …), and the
 * library's own error text functions (PQerrorMessage, curl_easy_strerror) answer with
 * lazy_lib_error's one line, which names the Debian package to install.
 */
#ifndef FERRY_LAZY_LIB_H
#define FERRY_LAZY_LIB_H

#include <pthread.h>
#include <stddef.h>

struct lazy_lib {
    const char *soname;  /* "libpq.so.5" */
    const char *package; /* the Debian package that installs it: "libpq5" */
    /* Called once right after a successful dlopen (curl_global_init), or NULL. */
    void (*after_load)(void *handle);
    /* The library's own trampoline for pthread_once (which passes no argument): it calls
     * lazy_lib_open on this struct. Defined with LAZY_LIB. */
    void (*open_once)(void);
    pthread_once_t once;        /* PTHREAD_ONCE_INIT */
    pthread_mutex_t error_lock; /* PTHREAD_MUTEX_INITIALIZER: guards error after loading */
    void *handle;               /* NULL until loaded, or when it could not be */
    char error[512];            /* why it could not be loaded ("" when loaded) */
};

/*
 * Defines struct lazy_lib var for soname from package, with its pthread_once trampoline.
 */
#define LAZY_LIB(var, soname, package, after_load)                                                 \
    static void var##_open_once(void);                                                             \
    struct lazy_lib var = {soname,                                                                 \
                           package,                                                                \
                           after_load,                                                             \
                           var##_open_once,                                                        \
                           PTHREAD_ONCE_INIT,                                                      \
                           PTHREAD_MUTEX_INITIALIZER,                                              \
                           NULL,                                                                   \
                           ""};                                                                    \
    static void var##_open_once(void)                                                              \
    {                                                                                              \
        lazy_lib_open(&var);                                                                       \
    }

/* Opens lib now (the trampoline's work; call lazy_lib_load instead). */
void lazy_lib_open(struct lazy_lib *lib);

/* Opens lib if this is the first call for it. Returns 0, or -1 with the reason in err (may
 * be NULL): "cannot load libpq.so.5 (install the Debian package libpq5): …". */
int lazy_lib_load(struct lazy_lib *lib, char *err, size_t errlen);

/*
 * The address of symbol name in lib, loading lib first; *slot caches it for the next call
 * (one slot per wrapper, read and written atomically). NULL when the library cannot be
 * loaded or lacks the symbol (an older version): lazy_lib_error then says which.
 */
void *lazy_lib_sym(struct lazy_lib *lib, const char *name, void **slot);

/* Why the last load or lookup in lib failed: a static one-line text for error functions. */
const char *lazy_lib_error(struct lazy_lib *lib);

/* 1 when lib is loaded in this process (for tests and diagnostics), without loading it. */
int lazy_lib_loaded(struct lazy_lib *lib);

/* The libraries the host loads this way (lazy_curl.c, lazy_pq.c, lazy_crypto.c, lazy_m.c). */
extern struct lazy_lib lazy_curl_lib;
extern struct lazy_lib lazy_pq_lib;
extern struct lazy_lib lazy_crypto_lib;
extern struct lazy_lib lazy_m_lib;

/*
 * Defines a wrapper `ret name params` that forwards args to lib's symbol of the same name,
 * or returns fail when it cannot. LAZY_VOID is the same for a function without a result.
 */
#define LAZY_FN(lib, ret, fail, name, params, args)                                                \
    ret name params                                                                                \
    {                                                                                              \
        static void *slot;                                                                         \
        ret(*fn) params;                                                                           \
        *(void **)&fn = lazy_lib_sym(&(lib), #name, &slot);                                        \
        return fn ? fn args : (fail);                                                              \
    }
#define LAZY_VOID(lib, name, params, args)                                                         \
    void name params                                                                               \
    {                                                                                              \
        static void *slot;                                                                         \
        void(*fn) params;                                                                          \
        *(void **)&fn = lazy_lib_sym(&(lib), #name, &slot);                                        \
        if (fn)                                                                                    \
            fn args;                                                                               \
    }

#endif
