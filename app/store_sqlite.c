/* store_sqlite.c - the SQLite backend of the store module (store.h).
 *
 * One file, DATA_DIR/sohub.db, in WAL mode, with two connections opened
 * by the shared-object store (so_store_sqlite.c): the writer, used by the
 * write job in flight, and the reader, used by the read job in flight,
 * each on one of libuv's worker threads (or on the loop at start and
 * shutdown, when nothing is in flight).  Chat's statements are prepared
 * on the same two connections (chat_store_attach), so one transaction
 * writes a round's shared-object and chat operations together.
 *
 * Durability per round: synchronous = FULL when the round holds chat
 * operations (a "queued" answer promises the message is on disk) or the
 * server runs with store_sync = full; NORMAL otherwise (a confirmed
 * change survives a crash of the process).  The pragma is set between
 * transactions, only when it changes.
 *
 * Where shared objects go: applications configured with store = memory
 * keep them in a memory so_store (written after the SQLite transaction,
 * in the same job); when every application a client can reach uses
 * memory, no shared object goes to SQLite.  Chat always uses the file.
 * The routing follows the configuration the server started with.
 */
#include "store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sh_err.h"
#include "sh_log.h"

enum { TX_BEGIN, TX_COMMIT, TX_ROLLBACK, TX_READ_BEGIN, TX_READ_END, TX_COUNT };
enum { SYNC_UNSET, SYNC_NORMAL, SYNC_FULL };

typedef struct sql_backend {
    app_store_backend base;
    uv_loop_t *loop;
    const app_config *cfg;   /* the config at start: routing */
    so_store *sql;           /* the file's shared-object tables and both connections */
    so_store *mem;           /* applications with store = memory */
    bool so_in_sql;          /* some application keeps its objects in the file */
    chat_store *chat;        /* chat's statements on the same connections */
    sqlite3_stmt *tx[TX_COUNT];
    bool sync_full;          /* store_sync = full */
    int sync_now;            /* the writer's synchronous setting */

    /* the write job in flight */
    uv_work_t wwork;
    const app_store_round *wround;
    int wstatus;
    app_store_write_done wdone;
    void *wud;

    /* the read job in flight */
    uv_work_t rwork;
    app_store_read *rlist;
    app_store_read_done rdone;
    void *rud;
} sql_backend;

/* ---- routing of shared objects ---- */


static so_store *route(const sql_backend *q, const char *room)
{
    if (!q->so_in_sql)
        return q->mem;
    const app_app_config *a = app_config_find_room_app(q->cfg, room);
    return a && a->store == APP_STORE_MEMORY ? q->mem : q->sql;
}

/* SQLite keeps shared objects unless every name a client can reach uses
 * memory. */
static bool so_in_sql(const app_config *cfg)
{
    bool star_memory = false;
    for (size_t i = 0; i < cfg->napps; i++) {
        const app_app_config *a = &cfg->apps[i];
        if (a->store != APP_STORE_MEMORY)
            return true;
        if (strcmp(a->name, "*") == 0)
            star_memory = true;
    }
    /* Without an [app *] section built-in applications (chat, samples)
     * are served with the defaults, which use SQLite. */
    return !star_memory;
}

/* ---- writes ---- */

static int step(sqlite3_stmt *st)
{
    int r = sqlite3_step(st);
    sqlite3_reset(st);
    return r == SQLITE_DONE || r == SQLITE_ROW ? 0 : SH_EIO;
}

static int set_sync(sql_backend *q, int want)
{
    if (q->sync_now == want)
        return 0;
    sqlite3 *w = so_store_sqlite_db(q->sql, true);
    const char *sql = want == SYNC_FULL ? "PRAGMA synchronous=FULL;" : "PRAGMA synchronous=NORMAL;";
    if (sqlite3_exec(w, sql, NULL, NULL, NULL) != SQLITE_OK)
        return SH_EIO;
    q->sync_now = want;
    return 0;
}

/* The round: the shared-object ops that go to SQLite and the chat ops in
 * one transaction, then the memory store's ops. */
static int write_round(sql_backend *q, const app_store_round *r)
{
    const so_store_batch *b = r->so;
    size_t nops = b ? b->nops : 0;
    so_store_op *ops = nops ? malloc(nops * sizeof(*ops)) : NULL;
    if (nops && !ops)
        return SH_ENOMEM;
    /* Shallow copies: the parts borrow the round's op contents. */
    so_store_batch in_sql = {.seq = b ? b->seq : 0, .ops = ops};
    so_store_batch in_mem = {.seq = in_sql.seq, .ops = ops ? ops + nops : NULL};
    for (size_t i = 0; i < nops; i++)
        if (route(q, b->ops[i].room) == q->sql)
            ops[in_sql.nops++] = b->ops[i];
    /* memory ops fill the array from its end, kept in order below */
    size_t nmem = 0;
    for (size_t i = nops; i-- > 0;)
        if (route(q, b->ops[i].room) != q->sql)
            ops[nops - ++nmem] = b->ops[i];
    in_mem.ops = ops ? ops + nops - nmem : NULL;
    in_mem.nops = nmem;
    int rc = 0;
    if (in_sql.nops || r->nchat) {
        rc = set_sync(q, r->nchat || q->sync_full ? SYNC_FULL : SYNC_NORMAL);
        if (rc == 0)
            rc = step(q->tx[TX_BEGIN]);
        if (rc == 0) {
            if (in_sql.nops)
                rc = so_store_sqlite_apply(q->sql, &in_sql);
            if (rc == 0 && r->nchat)
                rc = chat_store_apply(q->chat, r->chat, r->nchat);
            if (rc == 0)
                rc = step(q->tx[TX_COMMIT]);
            if (rc < 0)
                step(q->tx[TX_ROLLBACK]);
        }
    }
    /* Memory ops cannot fail for I/O reasons; the SQLite transaction is
     * the one that matters. */
    int rc2 = nmem ? so_store_write_batch(q->mem, &in_mem) : 0;
    free(ops);
    return rc < 0 ? rc : rc2;
}

static void write_work(uv_work_t *w)
{
    sql_backend *q = w->data;
    q->wstatus = write_round(q, q->wround);
}

static void write_after(uv_work_t *w, int status)
{
    sql_backend *q = w->data;
    int st = status < 0 ? SH_EIO : q->wstatus;
    q->wround = NULL;
    q->wdone(q->wud, st);
}

static int sql_write(app_store_backend *be, const app_store_round *r, app_store_write_done done,
                     void *ud)
{
    sql_backend *q = (sql_backend *)be;
    q->wround = r;
    q->wdone = done;
    q->wud = ud;
    q->wwork.data = q;
    return uv_queue_work(q->loop, &q->wwork, write_work, write_after) == 0 ? 0 : SH_EIO;
}

static int sql_write_now(app_store_backend *be, const app_store_round *r)
{
    return write_round((sql_backend *)be, r);
}

/* ---- reads ---- */

static void read_one(sql_backend *q, app_store_read *r)
{
    switch (r->kind) {
    case APP_READ_ROOM:
        r->status = so_store_load_image(route(q, r->a), r->a, &r->image);
        break;
    case APP_READ_CHAT_USER:
        r->status = chat_store_load_user(q->chat, r->a, r->b, &r->last_id, &r->acked);
        break;
    case APP_READ_CHAT_PAGE:
        r->status = chat_store_read_page(q->chat, r->a, r->b, r->after, r->max, &r->msgs,
                                         &r->nmsgs);
        break;
    }
}

/* One read transaction for the whole job: one snapshot, one read lock. */
static void read_work(uv_work_t *w)
{
    sql_backend *q = w->data;
    bool tx = step(q->tx[TX_READ_BEGIN]) == 0;
    for (app_store_read *r = q->rlist; r; r = r->next)
        read_one(q, r);
    if (tx)
        step(q->tx[TX_READ_END]);
}

static void read_after(uv_work_t *w, int status)
{
    sql_backend *q = w->data;
    if (status < 0)
        for (app_store_read *r = q->rlist; r; r = r->next)
            r->status = SH_EIO;
    q->rlist = NULL;
    q->rdone(q->rud);
}

static int sql_read(app_store_backend *be, app_store_read *list, app_store_read_done done,
                    void *ud)
{
    sql_backend *q = (sql_backend *)be;
    q->rlist = list;
    q->rdone = done;
    q->rud = ud;
    q->rwork.data = q;
    return uv_queue_work(q->loop, &q->rwork, read_work, read_after) == 0 ? 0 : SH_EIO;
}

/* ---- start-up figures ---- */

/* The usage of each application, from the backend that serves it. */
typedef struct usage_ctx {
    sql_backend *q;
    so_store *from;
    so_store_usage_fn fn;
    void *ud;
} usage_ctx;

static int usage_routed(void *ud, const char *app, uint64_t objects, uint64_t bytes)
{
    usage_ctx *u = ud;
    return route(u->q, app) == u->from ? u->fn(u->ud, app, objects, bytes) : 0;
}

static int sql_usage(app_store_backend *be, so_store_usage_fn fn, void *ud)
{
    sql_backend *q = (sql_backend *)be;
    usage_ctx u = {.q = q, .from = q->mem, .fn = fn, .ud = ud};
    int rc = so_store_usage(q->mem, usage_routed, &u);
    if (rc == 0 && q->so_in_sql) {
        u.from = q->sql;
        rc = so_store_usage(q->sql, usage_routed, &u);
    }
    return rc;
}

static int sql_chat_unacked(app_store_backend *be, uint64_t *n)
{
    return chat_store_count_unacked(((sql_backend *)be)->chat, n);
}

/* ---- life ---- */

static void sql_close(app_store_backend *be)
{
    sql_backend *q = (sql_backend *)be;
    for (int i = 0; i < TX_COUNT; i++)
        sqlite3_finalize(q->tx[i]);
    chat_store_close(q->chat);
    so_store_close(q->sql);
    so_store_close(q->mem);
    free(q);
}

static const app_store_backend_ops sql_ops = {
    .name = "sqlite",
    .read = sql_read,
    .write = sql_write,
    .write_now = sql_write_now,
    .usage = sql_usage,
    .chat_unacked = sql_chat_unacked,
    .close = sql_close,
};

app_store_backend *app_store_sqlite_new(uv_loop_t *loop, const app_config *cfg, char *err,
                                        size_t errsz)
{
    sql_backend *q = calloc(1, sizeof(*q));
    if (!q) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    q->base.ops = &sql_ops;
    q->loop = loop;
    q->cfg = cfg;
    q->sync_full = cfg->store_sync_full;
    q->so_in_sql = so_in_sql(cfg);
    so_store_options opts = {.sync_full = cfg->store_sync_full, .busy_timeout_ms = 0};
    char path[4096];
    snprintf(path, sizeof(path), "%s/sohub.db", cfg->data_dir);
    int rc = so_store_open(&so_store_memory_ops, "", &opts, &q->mem);
    if (rc < 0) {
        snprintf(err, errsz, "memory store: %s", sh_strerror(rc));
        goto fail;
    }
    rc = so_store_open(&so_store_sqlite_ops, path, &opts, &q->sql);
    if (rc < 0) {
        snprintf(err, errsz, "cannot open the store %s: %s", path, sh_strerror(rc));
        goto fail;
    }
    sqlite3 *w = so_store_sqlite_db(q->sql, true), *r = so_store_sqlite_db(q->sql, false);
    char cerr[256];
    if (chat_store_attach(w, r, &q->chat, cerr, sizeof(cerr)) != 0) {
        snprintf(err, errsz, "cannot open the chat tables in %s: %s", path, cerr);
        goto fail;
    }
    static const char *const tx_sql[TX_COUNT] = {
        [TX_BEGIN] = "BEGIN IMMEDIATE", [TX_COMMIT] = "COMMIT", [TX_ROLLBACK] = "ROLLBACK",
        [TX_READ_BEGIN] = "BEGIN", [TX_READ_END] = "COMMIT",
    };
    for (int i = 0; i < TX_COUNT; i++) {
        sqlite3 *db = i >= TX_READ_BEGIN ? r : w;
        if (sqlite3_prepare_v2(db, tx_sql[i], -1, &q->tx[i], NULL) != SQLITE_OK) {
            snprintf(err, errsz, "%s: %s", path, sqlite3_errmsg(db));
            goto fail;
        }
    }
    q->sync_now = cfg->store_sync_full ? SYNC_FULL : SYNC_NORMAL; /* as opened */
    SH_LOG(SH_LOG_INFO, "store: %s (WAL; synchronous %s, FULL for rounds with chat); shared "
           "objects %s", path, cfg->store_sync_full ? "FULL" : "NORMAL",
           q->so_in_sql ? "in the file, or in memory for store = memory" : "in memory");
    return &q->base;
fail:
    sql_close(&q->base);
    return NULL;
}
