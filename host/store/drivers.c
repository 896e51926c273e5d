/*
 * The driver table: the one place that lists the store's drivers. store_open picks a row by
 * the shape of a URL (the row without matches() is the default: a file path);
 * store_open_config and the configuration's check of store.driver pick one by name. A new
 * driver is one row here and new files (docs/store-drivers.md).
 */
#include "store.h"

#include <stdio.h>
#include <string.h>

/* The drivers' constructors and URL tests (in their own files). */
store_open_fn store_sqlite_open, store_pg_open;
store_url_fn store_pg_url;

const struct store_driver_entry store_drivers[] = {
    /* The default: anything no other row claims is an SQLite file path. */
    {"sqlite", NULL, store_sqlite_open, "sqlite://", NULL},
    {"postgres", store_pg_url, store_pg_open, NULL, "PostgreSQL (store.conninfo)"},
};

const size_t store_n_drivers = sizeof(store_drivers) / sizeof(store_drivers[0]);

const struct store_driver_entry *store_driver_by_name(const char *name)
{
    for (size_t i = 0; name != NULL && i < store_n_drivers; i++)
        if (strcmp(store_drivers[i].name, name) == 0)
            return &store_drivers[i];
    return NULL;
}

const struct store_driver_entry *store_driver_for_url(const char *url)
{
    const struct store_driver_entry *fallback = NULL;
    for (size_t i = 0; i < store_n_drivers; i++) {
        if (store_drivers[i].matches == NULL)
            fallback = &store_drivers[i];
        else if (store_drivers[i].matches(url))
            return &store_drivers[i];
    }
    return fallback;
}

void store_driver_choices(char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < store_n_drivers && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s\"%s\"",
                                 i == 0 ? "" : i + 1 == store_n_drivers ? " or " : ", ",
                                 store_drivers[i].name);
}
