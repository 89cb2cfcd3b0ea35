/* so_store_sqlite.c - SQLite backend of so_store.
 *
 * One file, WAL journal, synchronous NORMAL (or FULL by option).  Two
 * connections: the writer (write_batch) and the reader (load_room, usage),
 * each used by one thread at a time; WAL lets the reader run while the
 * writer commits.  One transaction per batch, prepared statements kept for
 * the life of the store.
 *
 * Schema:
 *   objects(room TEXT, name TEXT, version INTEGER, PRIMARY KEY(room, name))
 *   slots(room TEXT, name TEXT, key BLOB, version INTEGER, value BLOB,
 *         PRIMARY KEY(room, name, key))
 * Keys are BLOBs because SO keys are arbitrary bytes; values hold the exact
 * wire form described in so_store.h (AMF0, or 0x11 + AMF3).
 */
#include "so_store.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

enum { ST_OBJ_UPSERT, ST_SLOT_UPSERT, ST_SLOT_DELETE, ST_SLOT_CLEAR, ST_OBJ_DELETE,
       ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_COUNT };

typedef struct sql_store {
    so_store base;
    char *path;
    sqlite3 *wdb;
    sqlite3 *rdb;
    sqlite3_stmt *st[ST_COUNT];
    sqlite3_stmt *load_objs;
    sqlite3_stmt *load_slots;
} sql_store;

static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS objects("
    " room TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,"
    " PRIMARY KEY(room, name));"
    "CREATE TABLE IF NOT EXISTS slots("
    " room TEXT NOT NULL, name TEXT NOT NULL, key BLOB NOT NULL,"
    " version INTEGER NOT NULL, value BLOB NOT NULL,"
    " PRIMARY KEY(room, name, key));";

static const char *const stmt_sql[ST_COUNT] = {
    [ST_OBJ_UPSERT] = "INSERT INTO objects(room, name, version) VALUES(?1, ?2, ?3)"
                      " ON CONFLICT(room, name) DO UPDATE SET version = excluded.version",
    [ST_SLOT_UPSERT] = "INSERT INTO slots(room, name, key, version, value)"
                       " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(room, name, key)"
                       " DO UPDATE SET version = excluded.version, value = excluded.value",
    [ST_SLOT_DELETE] = "DELETE FROM slots WHERE room = ?1 AND name = ?2 AND key = ?3",
    [ST_SLOT_CLEAR] = "DELETE FROM slots WHERE room = ?1 AND name = ?2",
    [ST_OBJ_DELETE] = "DELETE FROM objects WHERE room = ?1 AND name = ?2",
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
};

static void sql_close(so_store *s)
{
    sql_store *q = (sql_store *)s;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(q->st[i]);
    sqlite3_finalize(q->load_objs);
    sqlite3_finalize(q->load_slots);
    sqlite3_close(q->wdb);
    sqlite3_close(q->rdb);
    free(q->path);
    free(q);
}

/* Each connection is used by one thread at a time (the writer by the one
 * batch in flight, the reader by the one read job in flight, or by the
 * loop at start and shutdown when nothing is in flight), handed over
 * through libuv's queue, so SQLite's per-connection mutex is not needed
 * (NOMUTEX: "multi-thread" mode). */
static int open_conn(const char *path, const so_store_options *opts, sqlite3 **db)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, db, flags, NULL) != SQLITE_OK)
        return SH_EIO;
    sqlite3_busy_timeout(*db, opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms : 5000);
    const char *sync = opts->sync_full ? "PRAGMA synchronous=FULL;" : "PRAGMA synchronous=NORMAL;";
    if (sqlite3_exec(*db, "PRAGMA journal_mode=WAL;", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(*db, sync, NULL, NULL, NULL) != SQLITE_OK)
        return SH_EIO;
    return 0;
}

static int sql_open(const char *spec, const so_store_options *opts, so_store **out)
{
    if (!spec || !*spec)
        return SH_EINVAL;
    sql_store *q = calloc(1, sizeof(*q));
    if (!q)
        return SH_ENOMEM;
    q->base.ops = &so_store_sqlite_ops;
    q->path = strdup(spec);
    int rc = q->path ? 0 : SH_ENOMEM;
    if (rc == 0)
        rc = open_conn(spec, opts, &q->wdb);
    if (rc == 0 && sqlite3_exec(q->wdb, schema_sql, NULL, NULL, NULL) != SQLITE_OK)
        rc = SH_EIO;
    if (rc == 0)
        rc = open_conn(spec, opts, &q->rdb);
    for (int i = 0; rc == 0 && i < ST_COUNT; i++)
        if (sqlite3_prepare_v2(q->wdb, stmt_sql[i], -1, &q->st[i], NULL) != SQLITE_OK)
            rc = SH_EIO;
    if (rc == 0 &&
        (sqlite3_prepare_v2(q->rdb, "SELECT name, version FROM objects WHERE room = ?1",
                            -1, &q->load_objs, NULL) != SQLITE_OK ||
         sqlite3_prepare_v2(q->rdb, "SELECT name, key, version, value FROM slots"
                            " WHERE room = ?1 ORDER BY name", -1, &q->load_slots, NULL) != SQLITE_OK))
        rc = SH_EIO;
    if (rc < 0) {
        sql_close(&q->base);
        return rc;
    }
    *out = &q->base;
    return 0;
}

static int step_done(sqlite3_stmt *st)
{
    int r = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return r == SQLITE_DONE ? 0 : SH_EIO;
}

static int apply_op(sql_store *q, const so_store_op *op)
{
    sqlite3_stmt *st;
    switch (op->kind) {
    case SO_STORE_OBJECT: st = q->st[ST_OBJ_UPSERT]; break;
    case SO_STORE_SET: st = q->st[ST_SLOT_UPSERT]; break;
    case SO_STORE_DELETE: st = q->st[ST_SLOT_DELETE]; break;
    case SO_STORE_CLEAR: st = q->st[ST_SLOT_CLEAR]; break;
    case SO_STORE_DROP: st = q->st[ST_OBJ_DELETE]; break;
    default: return SH_EINVAL;
    }
    sqlite3_bind_text(st, 1, op->room, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->name, -1, SQLITE_STATIC);
    switch (op->kind) {
    case SO_STORE_OBJECT:
        sqlite3_bind_int64(st, 3, op->version);
        break;
    case SO_STORE_SET:
        sqlite3_bind_blob(st, 3, op->key, (int)op->key_len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, op->version);
        sqlite3_bind_blob(st, 5, op->value ? (const void *)op->value : "",
                          (int)op->value_len, SQLITE_STATIC);
        break;
    case SO_STORE_DELETE:
        sqlite3_bind_blob(st, 3, op->key, (int)op->key_len, SQLITE_STATIC);
        break;
    case SO_STORE_DROP: {
        /* the slots go too */
        sqlite3_stmt *cl = q->st[ST_SLOT_CLEAR];
        sqlite3_bind_text(cl, 1, op->room, -1, SQLITE_STATIC);
        sqlite3_bind_text(cl, 2, op->name, -1, SQLITE_STATIC);
        if (step_done(cl) < 0) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return SH_EIO;
        }
        break;
    }
    default:
        break;
    }
    return step_done(st);
}

int so_store_sqlite_apply(so_store *s, const so_store_batch *b)
{
    sql_store *q = (sql_store *)s;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < b->nops; i++)
        rc = apply_op(q, &b->ops[i]);
    return rc;
}

static int sql_write_batch(so_store *s, const so_store_batch *b)
{
    sql_store *q = (sql_store *)s;
    if (b->nops == 0)
        return 0;
    if (step_done(q->st[ST_BEGIN]) < 0)
        return SH_EIO;
    int rc = so_store_sqlite_apply(s, b);
    if (rc == 0)
        rc = step_done(q->st[ST_COMMIT]);
    if (rc < 0)
        step_done(q->st[ST_ROLLBACK]);
    return rc;
}

static int sql_load_room(so_store *s, const char *room, const so_store_visitor *v)
{
    sql_store *q = (sql_store *)s;
    int rc = 0, r;
    sqlite3_stmt *st = q->load_objs;
    sqlite3_bind_text(st, 1, room, -1, SQLITE_TRANSIENT);
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW)
        rc = v->object(v->ud, (const char *)sqlite3_column_text(st, 0),
                       (uint32_t)sqlite3_column_int64(st, 1));
    if (rc == 0 && r != SQLITE_DONE)
        rc = SH_EIO;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc < 0)
        return rc;
    st = q->load_slots;
    sqlite3_bind_text(st, 1, room, -1, SQLITE_TRANSIENT);
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW) {
        const void *key = sqlite3_column_blob(st, 1);
        size_t key_len = (size_t)sqlite3_column_bytes(st, 1);
        const void *val = sqlite3_column_blob(st, 3);
        size_t val_len = (size_t)sqlite3_column_bytes(st, 3);
        rc = v->slot(v->ud, (const char *)sqlite3_column_text(st, 0),
                     key ? key : "", key_len, (uint32_t)sqlite3_column_int64(st, 2),
                     val ? val : (const void *)"", val_len);
    }
    if (rc == 0 && r != SQLITE_DONE)
        rc = SH_EIO;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* Runs one "SELECT app, n" query and hands each row to fn as objects
 * (count_objects) or bytes. */
static int usage_query(sql_store *q, const char *sql, bool count_objects,
                       so_store_usage_fn fn, void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(q->rdb, sql, -1, &st, NULL) != SQLITE_OK)
        return SH_EIO;
    int rc = 0, r;
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW) {
        const char *app = (const char *)sqlite3_column_text(st, 0);
        uint64_t n = (uint64_t)sqlite3_column_int64(st, 1);
        rc = fn(ud, app ? app : "", count_objects ? n : 0, count_objects ? 0 : n);
    }
    if (rc == 0 && r != SQLITE_DONE)
        rc = SH_EIO;
    sqlite3_finalize(st);
    return rc;
}

/* The application of a room is the text before its first '/'. */
#define APP_OF_ROOM "substr(room, 1, instr(room || '/', '/') - 1)"

static int sql_usage(so_store *s, so_store_usage_fn fn, void *ud)
{
    sql_store *q = (sql_store *)s;
    int rc = usage_query(q, "SELECT " APP_OF_ROOM ", COUNT(*) FROM objects GROUP BY 1",
                         true, fn, ud);
    if (rc == 0)
        rc = usage_query(q, "SELECT " APP_OF_ROOM ", SUM(length(key) + length(value))"
                            " FROM slots GROUP BY 1", false, fn, ud);
    return rc;
}

struct sqlite3 *so_store_sqlite_db(so_store *s, bool writer)
{
    sql_store *q = (sql_store *)s;
    return writer ? q->wdb : q->rdb;
}

const char *so_store_sqlite_path(so_store *s)
{
    return ((sql_store *)s)->path;
}

const so_store_ops so_store_sqlite_ops = {
    .name = "sqlite",
    .open = sql_open,
    .load_room = sql_load_room,
    .write_batch = sql_write_batch,
    .close = sql_close,
    .usage = sql_usage,
};
