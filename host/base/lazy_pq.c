/*
 * libpq, loaded on first use (lazy_lib.h): the PQ* functions the PostgreSQL store driver
 * calls, and the rest of the family it may come to call (connecting, plain, prepared and
 * asynchronous queries, pipelines, results, notifications, escaping), each forwarding to
 * libpq.so.5. Commands on an SQLite store never load it.
 *
 * When libpq cannot be loaded, each wrapper returns what libpq itself returns for a missing
 * connection or result (NULL, CONNECTION_BAD, PGRES_FATAL_ERROR, 0, -1), and
 * PQerrorMessage / PQresultErrorMessage return why, naming the package libpq5.
 */
#include <libpq-fe.h>

#include "lazy_lib.h"

LAZY_LIB(lazy_pq_lib, "libpq.so.5", "libpq5", NULL)

#define PQ(ret, fail, name, params, args) LAZY_FN(lazy_pq_lib, ret, fail, name, params, args)
#define PQV(name, params, args)           LAZY_VOID(lazy_pq_lib, name, params, args)

/* --- connections ------------------------------------------------------------------------ */
PQ(PGconn *, NULL, PQconnectdb, (const char *conninfo), (conninfo))
PQ(PGconn *, NULL, PQconnectdbParams,
   (const char *const *keywords, const char *const *values, int expand_dbname),
   (keywords, values, expand_dbname))
PQ(PGconn *, NULL, PQconnectStart, (const char *conninfo), (conninfo))
PQ(PGconn *, NULL, PQconnectStartParams,
   (const char *const *keywords, const char *const *values, int expand_dbname),
   (keywords, values, expand_dbname))
PQ(PostgresPollingStatusType, PGRES_POLLING_FAILED, PQconnectPoll, (PGconn * conn), (conn))
PQ(PGPing, PQPING_NO_ATTEMPT, PQping, (const char *conninfo), (conninfo))
PQ(PGPing, PQPING_NO_ATTEMPT, PQpingParams,
   (const char *const *keywords, const char *const *values, int expand_dbname),
   (keywords, values, expand_dbname))
PQV(PQfinish, (PGconn * conn), (conn))
PQV(PQreset, (PGconn * conn), (conn))
PQ(int, 0, PQresetStart, (PGconn * conn), (conn))
PQ(PostgresPollingStatusType, PGRES_POLLING_FAILED, PQresetPoll, (PGconn * conn), (conn))
PQ(ConnStatusType, CONNECTION_BAD, PQstatus, (const PGconn *conn), (conn))
PQ(PGTransactionStatusType, PQTRANS_UNKNOWN, PQtransactionStatus, (const PGconn *conn), (conn))
PQ(const char *, NULL, PQparameterStatus, (const PGconn *conn, const char *name), (conn, name))
PQ(int, 0, PQserverVersion, (const PGconn *conn), (conn))
PQ(int, 0, PQprotocolVersion, (const PGconn *conn), (conn))
PQ(int, 0, PQbackendPID, (const PGconn *conn), (conn))
PQ(int, -1, PQsocket, (const PGconn *conn), (conn))
PQ(char *, NULL, PQdb, (const PGconn *conn), (conn))
PQ(char *, NULL, PQuser, (const PGconn *conn), (conn))
PQ(char *, NULL, PQhost, (const PGconn *conn), (conn))
PQ(char *, NULL, PQport, (const PGconn *conn), (conn))
PQ(int, 0, PQconnectionNeedsPassword, (const PGconn *conn), (conn))
PQ(int, 0, PQconnectionUsedPassword, (const PGconn *conn), (conn))
PQ(int, -1, PQclientEncoding, (const PGconn *conn), (conn))
PQ(int, -1, PQsetClientEncoding, (PGconn * conn, const char *encoding), (conn, encoding))
PQ(PQnoticeProcessor, NULL, PQsetNoticeProcessor,
   (PGconn * conn, PQnoticeProcessor proc, void *arg), (conn, proc, arg))
PQ(PQnoticeReceiver, NULL, PQsetNoticeReceiver, (PGconn * conn, PQnoticeReceiver proc, void *arg),
   (conn, proc, arg))
PQ(PQconninfoOption *, NULL, PQconninfo, (PGconn * conn), (conn))
PQV(PQconninfoFree, (PQconninfoOption * options), (options))
PQ(int, 0, PQlibVersion, (void), ())
PQ(int, 0, PQisthreadsafe, (void), ())

/* Sets *errmsg to NULL (nothing for PQfreemem) when libpq is missing. */
PQconninfoOption *PQconninfoParse(const char *conninfo, char **errmsg)
{
    static void *slot;
    PQconninfoOption *(*fn)(const char *, char **);
    *(void **)&fn = lazy_lib_sym(&lazy_pq_lib, "PQconninfoParse", &slot);
    if (fn)
        return fn(conninfo, errmsg);
    if (errmsg)
        *errmsg = NULL;
    return NULL;
}

/* Why a connection failed, or why libpq is missing. */
char *PQerrorMessage(const PGconn *conn)
{
    static void *slot;
    char *(*fn)(const PGconn *);
    *(void **)&fn = lazy_lib_sym(&lazy_pq_lib, "PQerrorMessage", &slot);
    return fn ? fn(conn) : (char *)lazy_lib_error(&lazy_pq_lib);
}

/* --- queries ------------------------------------------------------------------------------ */
PQ(PGresult *, NULL, PQexec, (PGconn * conn, const char *query), (conn, query))
PQ(PGresult *, NULL, PQexecParams,
   (PGconn * conn, const char *command, int nParams, const Oid *paramTypes,
    const char *const *paramValues, const int *paramLengths, const int *paramFormats,
    int resultFormat),
   (conn, command, nParams, paramTypes, paramValues, paramLengths, paramFormats, resultFormat))
PQ(PGresult *, NULL, PQprepare,
   (PGconn * conn, const char *stmtName, const char *query, int nParams, const Oid *paramTypes),
   (conn, stmtName, query, nParams, paramTypes))
PQ(PGresult *, NULL, PQexecPrepared,
   (PGconn * conn, const char *stmtName, int nParams, const char *const *paramValues,
    const int *paramLengths, const int *paramFormats, int resultFormat),
   (conn, stmtName, nParams, paramValues, paramLengths, paramFormats, resultFormat))
PQ(PGresult *, NULL, PQdescribePrepared, (PGconn * conn, const char *stmt), (conn, stmt))
PQ(int, 0, PQsendQuery, (PGconn * conn, const char *query), (conn, query))
PQ(int, 0, PQsendQueryParams,
   (PGconn * conn, const char *command, int nParams, const Oid *paramTypes,
    const char *const *paramValues, const int *paramLengths, const int *paramFormats,
    int resultFormat),
   (conn, command, nParams, paramTypes, paramValues, paramLengths, paramFormats, resultFormat))
PQ(int, 0, PQsendPrepare,
   (PGconn * conn, const char *stmtName, const char *query, int nParams, const Oid *paramTypes),
   (conn, stmtName, query, nParams, paramTypes))
PQ(int, 0, PQsendQueryPrepared,
   (PGconn * conn, const char *stmtName, int nParams, const char *const *paramValues,
    const int *paramLengths, const int *paramFormats, int resultFormat),
   (conn, stmtName, nParams, paramValues, paramLengths, paramFormats, resultFormat))
PQ(int, 0, PQsetSingleRowMode, (PGconn * conn), (conn))
PQ(PGresult *, NULL, PQgetResult, (PGconn * conn), (conn))
PQ(int, 0, PQisBusy, (PGconn * conn), (conn))
PQ(int, 0, PQconsumeInput, (PGconn * conn), (conn))
PQ(int, -1, PQsetnonblocking, (PGconn * conn, int arg), (conn, arg))
PQ(int, 0, PQisnonblocking, (const PGconn *conn), (conn))
PQ(int, -1, PQflush, (PGconn * conn), (conn))
PQ(PGnotify *, NULL, PQnotifies, (PGconn * conn), (conn))
PQ(PGcancel *, NULL, PQgetCancel, (PGconn * conn), (conn))
PQV(PQfreeCancel, (PGcancel * cancel), (cancel))
PQ(int, 0, PQcancel, (PGcancel * cancel, char *errbuf, int errbufsize),
   (cancel, errbuf, errbufsize))

/* --- pipelines (libpq 14 and later) ------------------------------------------------------ */
PQ(PGpipelineStatus, PQ_PIPELINE_OFF, PQpipelineStatus, (const PGconn *conn), (conn))
PQ(int, 0, PQenterPipelineMode, (PGconn * conn), (conn))
PQ(int, 0, PQexitPipelineMode, (PGconn * conn), (conn))
PQ(int, 0, PQpipelineSync, (PGconn * conn), (conn))
PQ(int, 0, PQsendFlushRequest, (PGconn * conn), (conn))

/* --- results -------------------------------------------------------------------------------- */
PQ(ExecStatusType, PGRES_FATAL_ERROR, PQresultStatus, (const PGresult *res), (res))
PQ(char *, (char *)"PGRES_FATAL_ERROR", PQresStatus, (ExecStatusType status), (status))
PQ(char *, NULL, PQresultErrorField, (const PGresult *res, int fieldcode), (res, fieldcode))
PQ(int, 0, PQntuples, (const PGresult *res), (res))
PQ(int, 0, PQnfields, (const PGresult *res), (res))
PQ(int, 0, PQbinaryTuples, (const PGresult *res), (res))
PQ(char *, NULL, PQfname, (const PGresult *res, int field_num), (res, field_num))
PQ(int, -1, PQfnumber, (const PGresult *res, const char *field_name), (res, field_name))
PQ(Oid, InvalidOid, PQftype, (const PGresult *res, int field_num), (res, field_num))
PQ(int, 0, PQfformat, (const PGresult *res, int field_num), (res, field_num))
PQ(char *, NULL, PQgetvalue, (const PGresult *res, int tup_num, int field_num),
   (res, tup_num, field_num))
PQ(int, 1, PQgetisnull, (const PGresult *res, int tup_num, int field_num),
   (res, tup_num, field_num))
PQ(int, 0, PQgetlength, (const PGresult *res, int tup_num, int field_num),
   (res, tup_num, field_num))
PQ(char *, NULL, PQcmdStatus, (PGresult * res), (res))
PQ(char *, (char *)"", PQcmdTuples, (PGresult * res), (res))
PQ(Oid, InvalidOid, PQoidValue, (const PGresult *res), (res))
PQ(int, 0, PQnparams, (const PGresult *res), (res))
PQV(PQclear, (PGresult * res), (res))
PQV(PQfreemem, (void *ptr), (ptr))
PQ(PGresult *, NULL, PQmakeEmptyPGresult, (PGconn * conn, ExecStatusType status), (conn, status))

char *PQresultErrorMessage(const PGresult *res)
{
    static void *slot;
    char *(*fn)(const PGresult *);
    *(void **)&fn = lazy_lib_sym(&lazy_pq_lib, "PQresultErrorMessage", &slot);
    return fn ? fn(res) : (char *)lazy_lib_error(&lazy_pq_lib);
}

/* --- escaping ------------------------------------------------------------------------------ */
PQ(char *, NULL, PQescapeLiteral, (PGconn * conn, const char *str, size_t len), (conn, str, len))
PQ(char *, NULL, PQescapeIdentifier, (PGconn * conn, const char *str, size_t len), (conn, str, len))
PQ(size_t, 0, PQescapeStringConn,
   (PGconn * conn, char *to, const char *from, size_t length, int *error),
   (conn, to, from, length, error))
PQ(unsigned char *, NULL, PQescapeByteaConn,
   (PGconn * conn, const unsigned char *from, size_t from_length, size_t *to_length),
   (conn, from, from_length, to_length))
PQ(unsigned char *, NULL, PQunescapeBytea, (const unsigned char *strtext, size_t *retbuflen),
   (strtext, retbuflen))
