/* chat_store.c - see chat_store.h. */
#include "chat_store.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sh_err.h"

enum { W_MSG, W_USER, W_DELETE, W_BEGIN, W_COMMIT, W_ROLLBACK, W_COUNT };
enum { R_USER, R_MSGS, R_COUNT };

struct chat_store {
    sqlite3 *wdb;
    sqlite3 *rdb;
    bool own;           /* opened by chat_store_open: closed with the store */
    sqlite3_stmt *w[W_COUNT];
    sqlite3_stmt *r[R_COUNT];
};

static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS chat_users("
    " app TEXT NOT NULL, user TEXT NOT NULL,"
    " last_id INTEGER NOT NULL, acked INTEGER NOT NULL,"
    " PRIMARY KEY(app, user)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS chat_messages("
    " app TEXT NOT NULL, recipient TEXT NOT NULL, id INTEGER NOT NULL,"
    " sender TEXT NOT NULL, ts INTEGER NOT NULL, text TEXT NOT NULL,"
    " PRIMARY KEY(app, recipient, id)) WITHOUT ROWID;";

static const char *const wsql[W_COUNT] = {
    [W_MSG] = "INSERT OR REPLACE INTO chat_messages(app, recipient, id, sender, ts, text)"
              " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [W_USER] = "INSERT INTO chat_users(app, user, last_id, acked) VALUES(?1, ?2, ?3, ?4)"
               " ON CONFLICT(app, user) DO UPDATE SET last_id = excluded.last_id,"
               " acked = excluded.acked",
    [W_DELETE] = "DELETE FROM chat_messages WHERE app = ?1 AND recipient = ?2 AND id <= ?3",
    [W_BEGIN] = "BEGIN IMMEDIATE",
    [W_COMMIT] = "COMMIT",
    [W_ROLLBACK] = "ROLLBACK",
};

static const char *const rsql[R_COUNT] = {
    [R_USER] = "SELECT last_id, acked FROM chat_users WHERE app = ?1 AND user = ?2",
    [R_MSGS] = "SELECT id, sender, ts, text FROM chat_messages"
               " WHERE app = ?1 AND recipient = ?2 AND id > ?3 ORDER BY id LIMIT ?4",
};

static int fail(char *err, size_t errsz, sqlite3 *db, const char *what)
{
    if (err && errsz)
        snprintf(err, errsz, "%s: %s", what, db ? sqlite3_errmsg(db) : "cannot allocate");
    return SH_EIO;
}

void chat_store_close(chat_store *s)
{
    if (!s)
        return;
    for (int i = 0; i < W_COUNT; i++)
        sqlite3_finalize(s->w[i]);
    for (int i = 0; i < R_COUNT; i++)
        sqlite3_finalize(s->r[i]);
    if (s->own) {
        sqlite3_close(s->wdb);
        sqlite3_close(s->rdb);
    }
    free(s);
}

/* Each connection is used by one thread at a time (the writer by the one
 * batch in flight, or by the loop when none is; the reader by the loop),
 * handed over through libuv's queue, so SQLite's per-connection mutex is
 * not needed (NOMUTEX: "multi-thread" mode). */
static int open_conn(const char *path, const char *sync, sqlite3 **db)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, db, flags, NULL) != SQLITE_OK)
        return SH_EIO;
    sqlite3_busy_timeout(*db, 5000);
    if (sqlite3_exec(*db, "PRAGMA journal_mode=WAL;", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(*db, sync, NULL, NULL, NULL) != SQLITE_OK)
        return SH_EIO;
    return 0;
}

/* Schema on the writer, statements on both. */
static int prepare(chat_store *s, char *err, size_t errsz)
{
    if (sqlite3_exec(s->wdb, schema_sql, NULL, NULL, NULL) != SQLITE_OK)
        return fail(err, errsz, s->wdb, "chat schema");
    for (int i = 0; i < W_COUNT; i++)
        if (sqlite3_prepare_v2(s->wdb, wsql[i], -1, &s->w[i], NULL) != SQLITE_OK)
            return fail(err, errsz, s->wdb, "chat statement");
    for (int i = 0; i < R_COUNT; i++)
        if (sqlite3_prepare_v2(s->rdb, rsql[i], -1, &s->r[i], NULL) != SQLITE_OK)
            return fail(err, errsz, s->rdb, "chat statement");
    return 0;
}

int chat_store_open(const char *path, chat_store **out, char *err, size_t errsz)
{
    *out = NULL;
    chat_store *s = calloc(1, sizeof(*s));
    if (!s)
        return fail(err, errsz, NULL, "chat store");
    s->own = true;
    int rc = 0;
    if (open_conn(path, "PRAGMA synchronous=FULL;", &s->wdb) != 0)
        rc = fail(err, errsz, s->wdb, path);
    else if (open_conn(path, "PRAGMA synchronous=NORMAL;", &s->rdb) != 0)
        rc = fail(err, errsz, s->rdb, path);
    else
        rc = prepare(s, err, errsz);
    if (rc) {
        chat_store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

int chat_store_attach(sqlite3 *wdb, sqlite3 *rdb, chat_store **out, char *err, size_t errsz)
{
    *out = NULL;
    chat_store *s = calloc(1, sizeof(*s));
    if (!s)
        return fail(err, errsz, NULL, "chat store");
    s->wdb = wdb;
    s->rdb = rdb;
    int rc = prepare(s, err, errsz);
    if (rc) {
        chat_store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : SH_EIO;
}

static int write_op(chat_store *s, const chat_store_op *op)
{
    sqlite3_stmt *st;
    if (op->is_msg) {
        st = s->w[W_MSG];
        sqlite3_bind_text(st, 1, op->app, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, op->user, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)op->id);
        sqlite3_bind_text(st, 4, op->sender, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, op->ts);
        sqlite3_bind_text(st, 6, op->text, (int)op->text_len, SQLITE_STATIC);
        return step_done(st);
    }
    st = s->w[W_USER];
    sqlite3_bind_text(st, 1, op->app, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)op->last_id);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)op->acked);
    int rc = step_done(st);
    if (rc || op->acked == 0)
        return rc;
    st = s->w[W_DELETE];
    sqlite3_bind_text(st, 1, op->app, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)op->acked);
    return step_done(st);
}

int chat_store_apply(chat_store *s, const chat_store_op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (write_op(s, &ops[i]) != 0)
            return SH_EIO;
    return 0;
}

int chat_store_write(chat_store *s, const chat_store_op *ops, size_t n)
{
    if (step_done(s->w[W_BEGIN]) != 0)
        return SH_EIO;
    if (chat_store_apply(s, ops, n) != 0) {
        step_done(s->w[W_ROLLBACK]);
        return SH_EIO;
    }
    if (step_done(s->w[W_COMMIT]) != 0) {
        step_done(s->w[W_ROLLBACK]);
        return SH_EIO;
    }
    return 0;
}

int chat_store_load_user(chat_store *s, const char *app, const char *user, uint64_t *last_id,
                         uint64_t *acked)
{
    sqlite3_stmt *st = s->r[R_USER];
    sqlite3_bind_text(st, 1, app, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    *last_id = *acked = 0;
    if (rc == SQLITE_ROW) {
        sqlite3_int64 a = sqlite3_column_int64(st, 0), b = sqlite3_column_int64(st, 1);
        *last_id = a > 0 ? (uint64_t)a : 0;
        *acked = b > 0 ? (uint64_t)b : 0;
        if (*acked > *last_id)
            *acked = *last_id;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : SH_EIO;
}

int chat_store_count_unacked(chat_store *s, uint64_t *n)
{
    sqlite3_stmt *st = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(s->rdb, "SELECT COALESCE(SUM(MAX(last_id - acked, 0)), 0)"
                           " FROM chat_users", -1, &st, NULL) != SQLITE_OK)
        return SH_EIO;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        sqlite3_int64 v = sqlite3_column_int64(st, 0);
        *n = v > 0 ? (uint64_t)v : 0;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : SH_EIO;
}

int chat_store_load_messages(chat_store *s, const char *app, const char *user, uint64_t after,
                             size_t max, chat_store_msg_fn fn, void *ud)
{
    sqlite3_stmt *st = s->r[R_MSGS];
    sqlite3_bind_text(st, 1, app, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)after);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)(max > INT32_MAX ? INT32_MAX : max));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sqlite3_int64 id = sqlite3_column_int64(st, 0);
        const char *sender = (const char *)sqlite3_column_text(st, 1);
        sqlite3_int64 ts = sqlite3_column_int64(st, 2);
        const char *text = (const char *)sqlite3_column_text(st, 3);
        int tlen = sqlite3_column_bytes(st, 3);
        if (fn(ud, id > 0 ? (uint64_t)id : 0, sender ? sender : "", ts, text ? text : "",
               tlen > 0 ? (size_t)tlen : 0)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : SH_EIO;
}

void chat_store_msgs_free(chat_store_msg *m, size_t n)
{
    for (size_t i = 0; m && i < n; i++) {
        free(m[i].sender);
        free(m[i].text);
    }
    free(m);
}

typedef struct page {
    chat_store_msg *m;
    size_t n, cap;
    int rc;
} page;

static int page_add(void *ud, uint64_t id, const char *sender, int64_t ts, const char *text,
                    size_t text_len)
{
    page *p = ud;
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 16;
        chat_store_msg *a = realloc(p->m, nc * sizeof(*a));
        if (!a)
            return p->rc = SH_ENOMEM, 1;
        p->m = a;
        p->cap = nc;
    }
    chat_store_msg *x = &p->m[p->n];
    x->id = id;
    x->ts = ts;
    x->text_len = text_len;
    x->sender = strdup(sender);
    x->text = malloc(text_len + 1);
    if (!x->sender || !x->text) {
        free(x->sender);
        free(x->text);
        return p->rc = SH_ENOMEM, 1;
    }
    memcpy(x->text, text, text_len);
    x->text[text_len] = '\0';
    p->n++;
    return 0;
}

int chat_store_read_page(chat_store *s, const char *app, const char *user, uint64_t after,
                         size_t max, chat_store_msg **out, size_t *n)
{
    page p = {0};
    int rc = chat_store_load_messages(s, app, user, after, max, page_add, &p);
    if (rc == 0)
        rc = p.rc;
    if (rc < 0) {
        chat_store_msgs_free(p.m, p.n);
        *out = NULL;
        *n = 0;
        return rc;
    }
    *out = p.m;
    *n = p.n;
    return 0;
}
