/*
 * libmicrohttpd, loaded on first use (lazy_lib.h) like libcurl and libpq: only `ferry web`
 * speaks HTTP as a server, so no other command pays for mapping it and its TLS stack. Each
 * wrapper forwards to libmicrohttpd.so.12; when it cannot be loaded, MHD_start_daemon
 * returns NULL and web.c reports lazy_lib_error's line, which names the Debian package.
 */
#include <stdarg.h>
#include <stdint.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "lazy_lib.h"

LAZY_LIB(lazy_mhd_lib, "libmicrohttpd.so.12", "libmicrohttpd12", NULL)

#define MHD(ret, fail, name, params, args) LAZY_FN(lazy_mhd_lib, ret, fail, name, params, args)
#define MHDV(name, params, args)           LAZY_VOID(lazy_mhd_lib, name, params, args)

MHD(struct MHD_Daemon *, NULL, MHD_start_daemon_va,
    (unsigned int flags, uint16_t port, MHD_AcceptPolicyCallback apc, void *apc_cls,
     MHD_AccessHandlerCallback dh, void *dh_cls, va_list ap),
    (flags, port, apc, apc_cls, dh, dh_cls, ap))

struct MHD_Daemon *MHD_start_daemon(unsigned int flags, uint16_t port,
                                    MHD_AcceptPolicyCallback apc, void *apc_cls,
                                    MHD_AccessHandlerCallback dh, void *dh_cls, ...)
{
    va_list ap;
    va_start(ap, dh_cls);
    struct MHD_Daemon *d = MHD_start_daemon_va(flags, port, apc, apc_cls, dh, dh_cls, ap);
    va_end(ap);
    return d;
}

MHDV(MHD_stop_daemon, (struct MHD_Daemon * daemon), (daemon))
MHD(const char *, NULL, MHD_lookup_connection_value,
    (struct MHD_Connection * connection, enum MHD_ValueKind kind, const char *key),
    (connection, kind, key))
MHD(int, 0, MHD_get_connection_values,
    (struct MHD_Connection * connection, enum MHD_ValueKind kind, MHD_KeyValueIterator it,
     void *it_cls),
    (connection, kind, it, it_cls))
MHD(enum MHD_Result, MHD_NO, MHD_queue_response,
    (struct MHD_Connection * connection, unsigned int status_code,
     struct MHD_Response *response),
    (connection, status_code, response))
MHD(struct MHD_Response *, NULL, MHD_create_response_from_callback,
    (uint64_t size, size_t block_size, MHD_ContentReaderCallback crc, void *crc_cls,
     MHD_ContentReaderFreeCallback crfc),
    (size, block_size, crc, crc_cls, crfc))
MHD(struct MHD_Response *, NULL, MHD_create_response_from_buffer,
    (size_t size, void *buffer, enum MHD_ResponseMemoryMode mode), (size, buffer, mode))
MHDV(MHD_destroy_response, (struct MHD_Response * response), (response))
MHD(enum MHD_Result, MHD_NO, MHD_add_response_header,
    (struct MHD_Response * response, const char *header, const char *content),
    (response, header, content))
MHD(enum MHD_Result, MHD_NO, MHD_is_feature_supported, (enum MHD_FEATURE feature), (feature))

/* The two variadic getters: ferry web asks only for what needs no further argument. */
const union MHD_ConnectionInfo *MHD_get_connection_info(struct MHD_Connection *connection,
                                                        enum MHD_ConnectionInfoType info_type,
                                                        ...)
{
    static void *slot;
    const union MHD_ConnectionInfo *(*fn)(struct MHD_Connection *, enum MHD_ConnectionInfoType,
                                          ...);
    *(void **)&fn = lazy_lib_sym(&lazy_mhd_lib, "MHD_get_connection_info", &slot);
    return fn ? fn(connection, info_type) : NULL;
}

const union MHD_DaemonInfo *MHD_get_daemon_info(struct MHD_Daemon *daemon,
                                                enum MHD_DaemonInfoType info_type, ...)
{
    static void *slot;
    const union MHD_DaemonInfo *(*fn)(struct MHD_Daemon *, enum MHD_DaemonInfoType, ...);
    *(void **)&fn = lazy_lib_sym(&lazy_mhd_lib, "MHD_get_daemon_info", &slot);
    return fn ? fn(daemon, info_type) : NULL;
}
