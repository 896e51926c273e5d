/*
 * The driver table: the one place that lists the store's drivers. store_open picks a row by
 * the shape of a URL (the last row is the default: a file path); store_open_config and the
 * configuration's check of store.driver pick one by name. A new driver is one row here and
 * new files (docs/store-drivers.md).
 */
#include "store.h"

#include <string.h>

const struct store_driver_entry store_drivers[] = {
    {"postgres", store_pg_url, store_pg_open, NULL},
    /* The default, last: anything no other row claims is an SQLite file path. */
    {"sqlite", NULL, store_sqlite_open, "sqlite://"},
};

const size_t store_n_drivers = sizeof(store_drivers) / sizeof(store_drivers[0]);

const struct store_driver_entry *store_driver_by_name(const char *name)
{
    for (size_t i = 0; name != NULL && i < store_n_drivers; i++)
        if (strcmp(store_drivers[i].name, name) == 0)
            return &store_drivers[i];
    return NULL;
}
