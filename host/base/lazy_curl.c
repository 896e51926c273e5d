/*
 * libcurl, loaded on first use (lazy_lib.h): the curl_* functions the host calls (the
 * plugins' http service in httpc.c, notifications in notify.c), each forwarding to
 * libcurl.so.4. The first call also runs curl_global_init, once, so no command pays for
 * libcurl unless it makes a request.
 */
#define CURL_DISABLE_TYPECHECK /* the real prototypes, not gcc's checking macros */
#include <curl/curl.h>
#include <dlfcn.h>
#include <stdarg.h>

#include "lazy_lib.h"

static void global_init(void *handle)
{
    CURLcode (*init)(long);
    *(void **)&init = dlsym(handle, "curl_global_init");
    if (init)
        init(CURL_GLOBAL_DEFAULT);
}

LAZY_LIB(lazy_curl_lib, "libcurl.so.4", "libcurl4", global_init)

/* The library initialises itself on first use (global_init above). */
CURLcode curl_global_init(long flags)
{
    (void)flags;
    return lazy_lib_load(&lazy_curl_lib, NULL, 0) == 0 ? CURLE_OK : CURLE_FAILED_INIT;
}

/* The process keeps libcurl until it exits: nothing to undo. */
void curl_global_cleanup(void)
{
}

LAZY_FN(lazy_curl_lib, CURL *, NULL, curl_easy_init, (void), ())
LAZY_VOID(lazy_curl_lib, curl_easy_cleanup, (CURL * curl), (curl))
LAZY_VOID(lazy_curl_lib, curl_easy_reset, (CURL * curl), (curl))
LAZY_FN(lazy_curl_lib, CURLcode, CURLE_FAILED_INIT, curl_easy_perform, (CURL * curl), (curl))
LAZY_FN(lazy_curl_lib, struct curl_slist *, NULL, curl_slist_append,
        (struct curl_slist * list, const char *text), (list, text))
LAZY_VOID(lazy_curl_lib, curl_slist_free_all, (struct curl_slist * list), (list))
LAZY_FN(lazy_curl_lib, char *, NULL, curl_easy_escape, (CURL * curl, const char *s, int len),
        (curl, s, len))
LAZY_FN(lazy_curl_lib, char *, NULL, curl_easy_unescape,
        (CURL * curl, const char *s, int len, int *outlen), (curl, s, len, outlen))
LAZY_VOID(lazy_curl_lib, curl_free, (void *p), (p))

/* When libcurl is missing, the text of any error is why (CURLE_FAILED_INIT comes first). */
const char *curl_easy_strerror(CURLcode code)
{
    static void *slot;
    const char *(*fn)(CURLcode);
    *(void **)&fn = lazy_lib_sym(&lazy_curl_lib, "curl_easy_strerror", &slot);
    return fn ? fn(code) : lazy_lib_error(&lazy_curl_lib);
}

char *curl_version(void)
{
    static void *slot;
    char *(*fn)(void);
    *(void **)&fn = lazy_lib_sym(&lazy_curl_lib, "curl_version", &slot);
    return fn ? fn() : (char *)"libcurl not loaded";
}

/*
 * curl_easy_setopt takes one argument after the option, whose type the option's number
 * says (curl.h's CURLOPTTYPE_* ranges, the way libcurl itself reads it): a long, an object
 * or function pointer, or a curl_off_t.
 */
CURLcode curl_easy_setopt(CURL *curl, CURLoption option, ...)
{
    static void *slot;
    CURLcode (*fn)(CURL *, CURLoption, ...);
    *(void **)&fn = lazy_lib_sym(&lazy_curl_lib, "curl_easy_setopt", &slot);
    if (fn == NULL)
        return CURLE_FAILED_INIT;
    va_list ap;
    va_start(ap, option);
    CURLcode rc;
    if (option < CURLOPTTYPE_OBJECTPOINT)
        rc = fn(curl, option, va_arg(ap, long));
    else if (option < CURLOPTTYPE_OFF_T)
        rc = fn(curl, option, va_arg(ap, void *));
    else if (option < CURLOPTTYPE_BLOB)
        rc = fn(curl, option, va_arg(ap, curl_off_t));
    else
        rc = fn(curl, option, va_arg(ap, void *));
    va_end(ap);
    return rc;
}

/* curl_easy_getinfo's one argument after the info is always a pointer. */
CURLcode curl_easy_getinfo(CURL *curl, CURLINFO info, ...)
{
    static void *slot;
    CURLcode (*fn)(CURL *, CURLINFO, ...);
    *(void **)&fn = lazy_lib_sym(&lazy_curl_lib, "curl_easy_getinfo", &slot);
    if (fn == NULL)
        return CURLE_FAILED_INIT;
    va_list ap;
    va_start(ap, info);
    CURLcode rc = fn(curl, info, va_arg(ap, void *));
    va_end(ap);
    return rc;
}
