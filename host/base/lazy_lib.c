/* Libraries loaded on first use: see lazy_lib.h. */
#include "lazy_lib.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

void lazy_lib_open(struct lazy_lib *lib)
{
    void *h = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        const char *why = dlerror();
        snprintf(lib->error, sizeof(lib->error),
                 "cannot load %s (install the Debian package %s): %s", lib->soname, lib->package,
                 why ? why : "unknown error");
        return;
    }
    if (lib->after_load)
        lib->after_load(h);
    __atomic_store_n(&lib->handle, h, __ATOMIC_RELEASE);
}

int lazy_lib_load(struct lazy_lib *lib, char *err, size_t errlen)
{
    if (__atomic_load_n(&lib->handle, __ATOMIC_ACQUIRE) == NULL)
        pthread_once(&lib->once, lib->open_once);
    if (__atomic_load_n(&lib->handle, __ATOMIC_ACQUIRE) != NULL)
        return 0;
    /* Not util.c's seterr: test binaries that compile the repo plugin's sources (which
     * bring their own util functions) link this file, and must not pull util.o in. */
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", lib->error);
    return -1;
}

void *lazy_lib_sym(struct lazy_lib *lib, const char *name, void **slot)
{
    void *fn = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (fn != NULL)
        return fn;
    if (lazy_lib_load(lib, NULL, 0) != 0)
        return NULL;
    fn = dlsym(lib->handle, name);
    if (fn == NULL) {
        /* Written under the lock so a reader of error never sees half a message. */
        pthread_mutex_lock(&lib->error_lock);
        snprintf(lib->error, sizeof(lib->error),
                 "%s has no %s: it is older than ferry needs (upgrade the Debian package %s)",
                 lib->soname, name, lib->package);
        pthread_mutex_unlock(&lib->error_lock);
        return NULL;
    }
    __atomic_store_n(slot, fn, __ATOMIC_RELEASE);
    return fn;
}

const char *lazy_lib_error(struct lazy_lib *lib)
{
    return lib->error[0] ? lib->error : "no error";
}

int lazy_lib_loaded(struct lazy_lib *lib)
{
    return __atomic_load_n(&lib->handle, __ATOMIC_ACQUIRE) != NULL;
}
