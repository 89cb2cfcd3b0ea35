/* so_glue.c - see so_glue.h: the shared-object engine on the server's loop. */
#include "so_glue.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sh_err.h"
#include "sh_log.h"
#include "sh_mem.h"
#include "so_json.h"

/* ---- the routing store: one so_store for the engine, SQLite or memory
 * per application ---- */

typedef struct glue_store {
    so_store base;          /* ops = &glue_store_ops */
    const app_config *cfg;  /* borrowed, immutable: safe on the worker thread */
    so_store *sql;          /* NULL when no application uses SQLite */
    so_store *mem;
} glue_store;

static const so_store_ops glue_store_ops;

/* The [app] section of room "app/instance" (NULL when none applies). */
static const app_app_config *room_app(const app_config *cfg, const char *room)
{
    const char *slash = strchr(room, '/');
    size_t len = slash ? (size_t)(slash - room) : strlen(room);
    char name[APP_NAME_MAX + 1];
    if (len > APP_NAME_MAX)
        len = APP_NAME_MAX;
    memcpy(name, room, len);
    name[len] = '\0';
    return app_config_find_app(cfg, name);
}

/* The backend of room "app/instance". */
static so_store *glue_route(glue_store *s, const char *room)
{
    const app_app_config *a = s->sql ? room_app(s->cfg, room) : NULL;
    if (!s->sql || (a && a->store == APP_STORE_MEMORY))
        return s->mem;
    return s->sql;
}

static int glue_store_open(const char *spec, const so_store_options *opts, so_store **out)
{
    (void)spec;
    (void)opts;
    (void)out;
    return SH_EUNSUPPORTED; /* built by glue_store_new only */
}

static int glue_store_load_room(so_store *st, const char *room, const so_store_visitor *v)
{
    glue_store *s = (glue_store *)st;
    return so_store_load_room(glue_route(s, room), room, v);
}

/* Writes the ops of b that belong to `target`, as one batch (borrowing the
 * op contents: the sub-batch only holds shallow copies). */
static int write_part(glue_store *s, const so_store_batch *b, so_store *target)
{
    so_store_op *ops = malloc(b->nops * sizeof(*ops));
    if (!ops)
        return SH_ENOMEM;
    so_store_batch part = {.seq = b->seq, .ops = ops};
    for (size_t i = 0; i < b->nops; i++)
        if (glue_route(s, b->ops[i].room) == target)
            ops[part.nops++] = b->ops[i];
    int rc = part.nops ? so_store_write_batch(target, &part) : 0;
    free(ops);
    return rc;
}

static int glue_store_write_batch(so_store *st, const so_store_batch *b)
{
    glue_store *s = (glue_store *)st;
    if (b->nops == 0)
        return 0;
    so_store *first = glue_route(s, b->ops[0].room);
    bool mixed = false;
    for (size_t i = 1; i < b->nops && !mixed; i++)
        mixed = glue_route(s, b->ops[i].room) != first;
    if (!mixed)
        return so_store_write_batch(first, b);
    /* Memory ops cannot fail for I/O reasons; the SQLite part is the one
     * transaction that matters. */
    int rc = s->sql ? write_part(s, b, s->sql) : 0;
    int rc2 = write_part(s, b, s->mem);
    return rc < 0 ? rc : rc2;
}

/* The store's usage, each application counted from the backend that
 * serves it now. */
typedef struct glue_usage {
    glue_store *s;
    so_store *from;
    so_store_usage_fn fn;
    void *ud;
} glue_usage;

static int glue_usage_routed(void *ud, const char *app, uint64_t objects, uint64_t bytes)
{
    glue_usage *u = ud;
    return glue_route(u->s, app) == u->from ? u->fn(u->ud, app, objects, bytes) : 0;
}

static int glue_store_usage(so_store *st, so_store_usage_fn fn, void *ud)
{
    glue_store *s = (glue_store *)st;
    glue_usage u = {.s = s, .from = s->mem, .fn = fn, .ud = ud};
    int rc = so_store_usage(s->mem, glue_usage_routed, &u);
    if (rc == 0 && s->sql) {
        u.from = s->sql;
        rc = so_store_usage(s->sql, glue_usage_routed, &u);
    }
    return rc;
}

static void glue_store_close(so_store *st)
{
    glue_store *s = (glue_store *)st;
    so_store_close(s->sql);
    so_store_close(s->mem);
    free(s);
}

static const so_store_ops glue_store_ops = {
    .name = "sohub-router",
    .open = glue_store_open,
    .load_room = glue_store_load_room,
    .write_batch = glue_store_write_batch,
    .close = glue_store_close,
    .usage = glue_store_usage,
};

/* SQLite is needed unless every name a client can reach uses memory. */
static bool need_sqlite(const app_config *cfg)
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

static glue_store *glue_store_new(const app_config *cfg, char *path, size_t pathsz,
                                  char *err, size_t errsz)
{
    glue_store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    s->base.ops = &glue_store_ops;
    s->cfg = cfg;
    so_store_options opts = {.sync_full = cfg->store_sync_full, .busy_timeout_ms = 0};
    int rc = so_store_open(&so_store_memory_ops, "", &opts, &s->mem);
    if (rc < 0) {
        snprintf(err, errsz, "memory store: %s", sh_strerror(rc));
        free(s);
        return NULL;
    }
    path[0] = '\0';
    if (need_sqlite(cfg)) {
        snprintf(path, pathsz, "%s/sohub.db", cfg->data_dir);
        rc = so_store_open(&so_store_sqlite_ops, path, &opts, &s->sql);
        if (rc < 0) {
            snprintf(err, errsz, "cannot open the shared-object store %s: %s", path,
                     sh_strerror(rc));
            so_store_close(s->mem);
            free(s);
            return NULL;
        }
    }
    return s;
}

/* ---- the glue ---- */

struct app_so_glue {
    app_server *srv;            /* borrowed */
    const app_config *cfg;      /* borrowed */
    uv_loop_t *loop;
    so_engine *eng;
    glue_store *store;          /* owned until closed at shutdown */
    so_effects fx;              /* scratch list, empty between calls */
    size_t congestion_bytes;

    /* grouped commits */
    uv_check_t check;
    uv_timer_t timer;
    uv_timer_t unload_timer;    /* so_engine_unload_idle every so_unload_idle_s */
    uv_work_t work;
    so_store_batch *inflight;   /* batch being written by the worker */
    uint64_t inflight_t0;       /* uv_hrtime when it was taken */
    int inflight_status;
    bool busy;
    bool started_once;
    uint64_t last_start;
    uint32_t commit_interval_ms;
    uint32_t fail_streak;       /* batches failed in a row (back-off, logging) */
    uint64_t fail_logged;       /* loop time of the last "still failing" line */
    bool shutting_down;
    bool handles_closed;
    uint64_t taken;             /* batches taken so far */
    uint64_t done;              /* batches handed back so far */
    struct glue_waiter *waiters; /* app_so_when_durable, oldest first */
    struct glue_waiter **waiters_tail;
    char **loads;               /* rooms the engine asked for (load_room) */
    size_t nloads, caploads;

    app_so_glue_stats st;
    so_wire_limits wire_limits; /* the engine's: JSON messages are decoded under them */
};

static int hook_message(void *ud, app_conn *c, uint8_t kind, const uint8_t *body, size_t len);

/* The glue is the ud of the server's SO hooks; the hook function tells
 * that the hooks are ours. */
app_so_glue *app_so_glue_of(const app_server *srv)
{
    const app_so_hooks *h = app_server_so_hooks(srv);
    return h && h->on_message == hook_message ? h->ud : NULL;
}

so_engine *app_so_engine(app_so_glue *g) { return g ? g->eng : NULL; }

void app_so_glue_get_stats(const app_so_glue *g, app_so_glue_stats *st) { *st = g->st; }

char *app_so_room_of(const app_conn *c, char *buf, size_t bufsz)
{
    snprintf(buf, bufsz, "%s/%s", app_conn_app_name(c), app_conn_instance(c));
    return buf;
}

/* What APP_SLOT_SO of a connection holds (owned by the glue). */
typedef struct glue_client {
    so_client *sc;
    bool congested;     /* mirrors what the engine was told */
} glue_client;

/* ---- delivery ---- */

bool app_so_store_ok(const app_so_glue *g)
{
    return g->store && g->fail_streak == 0;
}

bool app_so_conn_congested(const app_conn *c)
{
    const glue_client *gc = app_conn_get_data(c, APP_SLOT_SO);
    return gc && gc->congested;
}

static void mark_congested(app_so_glue *g, app_conn *c)
{
    glue_client *gc = app_conn_get_data(c, APP_SLOT_SO);
    if (!gc || gc->congested)
        return;
    so_effects none;
    so_effects_init(&none);
    (void)so_client_set_congested(g->eng, gc->sc, true, &none); /* makes no effects */
    so_effects_cleanup(&none);
    gc->congested = true;
    g->st.congested++;
    SH_LOG(SH_LOG_DEBUG, "conn=%llu so: congested (out_bytes=%zu), per-change messages paused",
           (unsigned long long)app_conn_id(c), app_conn_out_bytes(c));
}

int app_so_deliver(app_so_glue *g, so_effects *fx)
{
    for (size_t i = 0; i < fx->len; i++) {
        const so_effect *f = &fx->items[i];
        if (f->nto == 0)
            continue;
        app_shared m = {.kind = f->msg_type, .body = f->body};
        g->st.effects++;
        for (size_t k = 0; k < f->nto; k++) {
            app_conn *c = f->to[k];
            if (!app_conn_connected(c))
                continue;
            /* Queued even past the threshold: see the header comment. */
            int rc = app_conn_send_shared(c, &m);
            if (rc < 0) {
                /* A subscriber must never silently miss an update: if the
                 * send failed and the connection is still open (it is
                 * closed already when a cap refused it), close it; the
                 * client resynchronises when it comes back (rule 1). */
                if (app_conn_connected(c)) {
                    char why[96];
                    snprintf(why, sizeof(why), "could not queue a shared-object update: %s",
                             sh_strerror(rc));
                    SH_LOG(SH_LOG_WARN, "conn=%llu %s", (unsigned long long)app_conn_id(c), why);
                    app_conn_close(c, why);
                }
                continue;
            }
            g->st.sends++;
            if (app_conn_out_bytes(c) > g->congestion_bytes)
                mark_congested(g, c);
        }
        app_shared_cleanup(&m);
    }
    so_effects_clear(fx);
    return 0;
}

/* ---- clients ---- */

/* Access lists of a client from its application's section. */
static int apply_access(app_so_glue *g, app_conn *c, so_client *sc)
{
    const app_app_config *ac = app_conn_app_config(c);
    if (!ac)
        return so_client_set_access(g->eng, sc, "/", "/");
    /* The config documents an empty list as "nothing"; the engine reads
     * "" as everything and ";" as nothing. */
    const char *rd = *ac->read_access ? ac->read_access : ";";
    const char *wr = *ac->write_access ? ac->write_access : ";";
    return so_client_set_access(g->eng, sc, rd, wr);
}



so_client *app_so_client_of(app_so_glue *g, app_conn *c, int *err)
{
    glue_client *gc = app_conn_get_data(c, APP_SLOT_SO);
    if (gc)
        return gc->sc;
    if (!app_conn_connected(c)) {
        *err = SH_ESTATE;
        return NULL;
    }
    char room[2 * APP_NAME_MAX + 2];
    app_so_room_of(c, room, sizeof(room));
    int ce = app_conn_object_encoding(c);
    amf_encoding enc = ce == APP_ENC_JSON ? SO_ENC_JSON : ce == APP_ENC_AMF3 ? AMF_ENC_AMF3
                                                                             : AMF_ENC_AMF0;
    gc = calloc(1, sizeof(*gc));
    if (!gc) {
        *err = SH_ENOMEM;
        return NULL;
    }
    int rc = 0;
    so_client *sc = so_client_register(g->eng, c, enc, room, &rc);
    if (!sc) {
        free(gc);
        *err = rc < 0 ? rc : SH_ENOMEM;
        SH_LOG(SH_LOG_WARN, "conn=%llu so: cannot register in room %s: %s",
               (unsigned long long)app_conn_id(c), room, sh_strerror(*err));
        return NULL;
    }
    if (app_conn_app_config(c)) {
        rc = apply_access(g, c, sc);
        if (rc < 0) {
            so_client_unregister(g->eng, sc);
            free(gc);
            *err = rc;
            return NULL;
        }
    }
    gc->sc = sc;
    app_conn_set_data(c, APP_SLOT_SO, gc);
    SH_LOG(SH_LOG_DEBUG, "conn=%llu so: client %llu registered in room %s encoding=%d",
           (unsigned long long)app_conn_id(c), (unsigned long long)so_client_id(sc), room,
           enc == SO_ENC_JSON ? 74 : enc == AMF_ENC_AMF3 ? 3 : 0);
    return sc;
}

/* ---- grouped commits ---- */

/* app_so_when_durable: fires once batch number `target` is back (the batch
 * that holds the writes made before the call), or as soon as a commit
 * attempt finds nothing pending and nothing in flight. */
typedef struct glue_waiter {
    struct glue_waiter *next;
    uint64_t target;
    app_so_durable_fn fn;
    void *ud;
} glue_waiter;

int app_so_when_durable(app_so_glue *g, app_so_durable_fn fn, void *ud)
{
    glue_waiter *w = calloc(1, sizeof(*w));
    if (!w)
        return SH_ENOMEM;
    w->target = g->taken + 1;
    w->fn = fn;
    w->ud = ud;
    if (!g->waiters_tail)
        g->waiters_tail = &g->waiters;
    *g->waiters_tail = w;
    g->waiters_tail = &w->next;
    return 0;
}

/* Runs the waiters whose batch is back (all of them when all is true). */
static void waiters_fire(app_so_glue *g, bool all, int status)
{
    glue_waiter **pp = &g->waiters;
    while (*pp) {
        glue_waiter *w = *pp;
        if (!all && w->target > g->done) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        if (!*pp)
            g->waiters_tail = pp;
        w->fn(w->ud, status);
        free(w);
    }
}

static void commit_kick(app_so_glue *g);

static void on_work(uv_work_t *req)
{
    app_so_glue *g = req->data;
    g->inflight_status = so_store_write_batch(&g->store->base, g->inflight);
}

static void final_flush(app_so_glue *g);

static void on_after_work(uv_work_t *req, int status)
{
    app_so_glue *g = req->data;
    so_store_batch *b = g->inflight;
    int st = status < 0 ? SH_EIO : g->inflight_status;
    g->inflight = NULL;
    g->busy = false;
    g->st.batches++;
    app_histo_add(&g->st.commit_seconds, (double)(uv_hrtime() - g->inflight_t0) / 1e9);
    if (st < 0) {
        g->st.batch_failures++;
        uint64_t now = uv_now(g->loop);
        if (g->fail_streak++ == 0 || now - g->fail_logged >= 10000) {
            g->fail_logged = now;
            SH_LOG(SH_LOG_WARN, "so: store batch %llu (%zu ops) failed: %s (%u in a row); "
                   "retried with the next batch", (unsigned long long)b->seq, b->nops,
                   sh_strerror(st), g->fail_streak);
        }
    } else if (g->fail_streak) {
        SH_LOG(SH_LOG_WARN, "so: store writes work again after %u failed batches",
               g->fail_streak);
        g->fail_streak = 0;
    }
    int rc = so_engine_batch_done(g->eng, b, st, &g->fx);
    if (rc < 0)
        SH_LOG(SH_LOG_ERROR, "so: batch_done: %s", sh_strerror(rc));
    app_so_deliver(g, &g->fx);
    g->done++;
    waiters_fire(g, false, st);
    if (g->shutting_down)
        final_flush(g);
    else
        commit_kick(g);
}

static void on_timer(uv_timer_t *t) { commit_kick(t->data); }

/* While the store keeps failing (a full disk), a batch that nobody waits
 * for (no held answer: only the rewrites a failed batch queues) is retried
 * after 10 ms, 20 ms, ... up to 1 s instead of back to back; without the
 * pause the loop and the worker would spin on rewrites that fail.  A batch
 * that holds a client's answer goes at once, so writers still learn of
 * the failure without delay. */
static uint64_t retry_delay_ms(uint32_t streak)
{
    if (streak == 0)
        return 0;
    uint64_t d = (uint64_t)10 << (streak > 7 ? 7 : streak - 1);
    return d > 1000 ? 1000 : d;
}

static void commit_kick(app_so_glue *g)
{
    if (g->busy || !g->store || g->shutting_down)
        return;
    uint64_t now = uv_now(g->loop);
    uint64_t wait = g->commit_interval_ms;
    uint64_t retry = so_engine_held_count(g->eng) ? 0 : retry_delay_ms(g->fail_streak);
    if (retry > wait)
        wait = retry;
    if (wait && g->started_once && now - g->last_start < wait) {
        if (!uv_is_active((uv_handle_t *)&g->timer))
            uv_timer_start(&g->timer, on_timer, wait - (now - g->last_start), 0);
        return;
    }
    so_store_batch *b = so_engine_take_batch(g->eng);
    if (!b) {
        if (g->waiters)
            waiters_fire(g, true, 0); /* nothing pending, nothing in flight */
        return;
    }
    g->taken++;
    g->inflight = b;
    g->inflight_t0 = uv_hrtime();
    g->busy = true;
    g->started_once = true;
    g->last_start = now;
    g->work.data = g;
    int rc = uv_queue_work(g->loop, &g->work, on_work, on_after_work);
    if (rc < 0) {
        /* No thread pool: write here rather than lose the batch. */
        SH_LOG(SH_LOG_WARN, "so: uv_queue_work: %s; writing on the loop", uv_strerror(rc));
        on_work(&g->work);
        on_after_work(&g->work, 0);
    }
}

/* so_hooks.load_room: the room is read at the next loop turn, never
 * inside the engine's call. */
static void hook_load_room(void *ud, const char *room)
{
    app_so_glue *g = ud;
    char *r = strdup(room);
    if (!r || sh_array_grow((void **)&g->loads, &g->caploads, g->nloads + 1,
                            sizeof(*g->loads), 8) < 0) {
        /* Out of memory: the room stays loading, and what its clients
         * send is refused once the engine's bounds are reached. */
        free(r);
        SH_LOG(SH_LOG_ERROR, "so: out of memory asking for room %s", room);
        return;
    }
    g->loads[g->nloads++] = r;
}

/* Answers the loads asked for (still read on this thread). */
static void serve_loads(app_so_glue *g)
{
    while (g->nloads) {
        char *room = g->loads[0];
        memmove(g->loads, g->loads + 1, --g->nloads * sizeof(*g->loads));
        so_store_batch *img = NULL;
        int st = g->store ? so_store_load_image(&g->store->base, room, &img) : SH_ESTATE;
        if (st < 0)
            SH_LOG(SH_LOG_ERROR, "so: cannot load room %s: %s", room, sh_strerror(st));
        so_engine_room_loaded(g->eng, room, st, img, &g->fx);
        app_so_deliver(g, &g->fx);
        so_store_batch_free(img);
        free(room);
    }
}

static void on_check(uv_check_t *h)
{
    serve_loads(h->data);
    commit_kick(h->data);
}

static int usage_add(void *ud, const char *app, uint64_t objects, uint64_t bytes)
{
    return so_engine_usage_add(ud, app, objects, bytes);
}

static void on_unload_timer(uv_timer_t *t)
{
    app_so_glue *g = t->data;
    size_t n = so_engine_unload_idle(g->eng);
    if (n)
        SH_LOG(SH_LOG_INFO, "so: %zu idle rooms left memory (read from the store when next used)", n);
}

static void close_handles(app_so_glue *g)
{
    if (g->handles_closed)
        return;
    g->handles_closed = true;
    uv_close((uv_handle_t *)&g->check, NULL);
    uv_close((uv_handle_t *)&g->timer, NULL);
    uv_close((uv_handle_t *)&g->unload_timer, NULL);
}

/* Shutdown, nothing in flight: write what is pending synchronously, close
 * the store.  No client is left to answer. */
static void final_flush(app_so_glue *g)
{
    if (!g->store)
        return;
    size_t n = 0;
    int last = 0;
    so_store_batch *b;
    while ((b = so_engine_take_batch(g->eng)) != NULL) {
        int st = so_store_write_batch(&g->store->base, b);
        last = st;
        if (st < 0)
            SH_LOG(SH_LOG_ERROR, "so: final store batch failed: %s", sh_strerror(st));
        n++;
        (void)so_engine_batch_done(g->eng, b, st, &g->fx);
        so_effects_clear(&g->fx);
        if (st < 0 || n > 4)
            break; /* a failed batch schedules a rewrite: try a few times only */
    }
    so_store_close(&g->store->base);
    g->store = NULL;
    waiters_fire(g, true, last);
    SH_LOG(SH_LOG_INFO, "so: store closed (%llu messages, %llu batches, %llu congestion events)",
           (unsigned long long)g->st.messages, (unsigned long long)g->st.batches,
           (unsigned long long)g->st.congested);
}

/* ---- server hooks ---- */

static int hook_message(void *ud, app_conn *c, uint8_t kind, const uint8_t *body, size_t len)
{
    app_so_glue *g = ud;
    int rc = 0;
    so_client *sc = app_so_client_of(g, c, &rc);
    if (!sc)
        return rc < 0 ? rc : SH_ESTATE;
    sh_error e = {0};
    g->st.messages++;
    rc = so_engine_handle(g->eng, sc, kind, body, len, uv_now(g->loop), &g->fx, &e);
    app_so_deliver(g, &g->fx);
    if (rc < 0)
        SH_LOG(SH_LOG_DEBUG, "conn=%llu so: message refused: %s (%s)",
               (unsigned long long)app_conn_id(c), e.what ? e.what : sh_strerror(rc),
               e.where ? e.where : "?");
    return rc;
}

/* A JSON client's "op":"so" object: decoded under the engine's wire
 * caps, then handled like an RTMP client's message. */
static int hook_json(void *ud, app_conn *c, const void *json)
{
    app_so_glue *g = ud;
    int rc = 0;
    so_client *sc = app_so_client_of(g, c, &rc);
    if (!sc)
        return rc < 0 ? rc : SH_ESTATE;
    so_msg m;
    so_msg_init(&m);
    sh_error e = {0};
    rc = so_json_decode(json, &g->wire_limits, &m, &e);
    if (rc < 0) {
        SH_LOG(SH_LOG_DEBUG, "conn=%llu so: JSON message refused: %s",
               (unsigned long long)app_conn_id(c), e.what ? e.what : sh_strerror(rc));
        return rc;
    }
    g->st.messages++;
    rc = so_engine_handle_msg(g->eng, sc, &m, uv_now(g->loop), &g->fx);
    so_msg_cleanup(&m);
    app_so_deliver(g, &g->fx);
    return rc;
}

static void hook_disconnect(void *ud, app_conn *c)
{
    app_so_glue *g = ud;
    glue_client *gc = app_conn_get_data(c, APP_SLOT_SO);
    if (!gc)
        return;
    app_conn_set_data(c, APP_SLOT_SO, NULL);
    so_client_unregister(g->eng, gc->sc);
    free(gc);
}

static void hook_drain(void *ud, app_conn *c)
{
    app_so_glue *g = ud;
    glue_client *gc = app_conn_get_data(c, APP_SLOT_SO);
    /* A Use answered without its state (the engine's reply budget) leaves
     * the client behind as well: its UseSuccess made this drain come. */
    if (!gc || (!gc->congested && !so_client_is_behind(gc->sc)))
        return;
    gc->congested = false;
    /* Paced: about one congestion threshold of catch-up per drain (at
     * least one object), so a client's memory stays near its threshold
     * plus one object's state however many objects it uses. */
    int rc = so_client_catch_up(g->eng, gc->sc, g->congestion_bytes, &g->fx);
    if (g->fx.len)
        SH_LOG(SH_LOG_DEBUG, "conn=%llu so: drained, catching up (%zu messages%s)",
               (unsigned long long)app_conn_id(c), g->fx.len,
               rc > 0 ? ", more at the next drain" : "");
    app_so_deliver(g, &g->fx);
    if (rc < 0) {
        /* Left behind without a catch-up, the client would show stale
         * state forever: close it, it resynchronises when it comes back. */
        SH_LOG(SH_LOG_WARN, "conn=%llu so: catch-up failed: %s",
               (unsigned long long)app_conn_id(c), sh_strerror(rc));
        app_conn_close(c, "shared-object catch-up failed");
        return;
    }
    if (so_client_is_behind(gc->sc))
        mark_congested(g, c); /* objects left: paused until the next drain */
}

static void hook_shutdown(void *ud)
{
    app_so_glue *g = ud;
    g->shutting_down = true;
    close_handles(g);
    if (!g->busy)
        final_flush(g);
    /* else on_after_work finishes the job */
}

/* ---- creation ---- */

static void engine_config(const app_config *cfg, so_config *sc, uint32_t *interval)
{
    so_config_default(sc);
    app_app_config d;
    app_app_config_defaults(&d);
    bool use_defaults = true; /* names without a section get the defaults */
    for (size_t i = 0; i < cfg->napps; i++)
        if (strcmp(cfg->apps[i].name, "*") == 0)
            use_defaults = false;
    uint32_t hist = 0, per_conn = 0, slots = 0, iv = UINT32_MAX;
    if (use_defaults) {
        hist = d.history_depth;
        per_conn = d.max_so_per_conn;
        slots = d.max_so_slots;
        iv = d.commit_interval_ms;
    }
    /* One engine serves every application: its limits are the largest any
     * application allows (the smallest commit interval); each room then
     * takes its own application's slots, objects per client and conflict
     * mode (room_settings).  History depth stays engine-wide. */
    for (size_t i = 0; i < cfg->napps; i++) {
        const app_app_config *a = &cfg->apps[i];
        if (a->history_depth > hist) hist = a->history_depth;
        if (a->max_so_per_conn > per_conn) per_conn = a->max_so_per_conn;
        if (a->max_so_slots > slots) slots = a->max_so_slots;
        if (a->commit_interval_ms < iv) iv = a->commit_interval_ms;
    }
    app_app_config_cleanup(&d);
    sc->history_depth = hist;
    sc->max_objects_per_client = per_conn;
    sc->max_slots_per_object = slots;
    sc->max_updates_per_sec = cfg->so_max_updates_per_sec;
    /* Replies split so that each message (events plus a header of at most
     * 271 bytes) stays within the largest message the server accepts: a
     * peer on the same defaults, sohub's client library included, takes
     * every Use reply however large the object. */
    sc->max_body_bytes = cfg->max_message_size - 512;
    /* quotas of rooms without a section; room_settings gives the others */
    sc->max_persistent_objects = d.max_persistent_objects;
    sc->max_persistent_bytes = d.max_persistent_bytes;
    sc->wire.amf.max_depth = cfg->max_amf_depth;
    sc->wire.amf.max_string = cfg->max_amf_string;
    sc->wire.amf.max_elements = cfg->max_amf_elements;
    *interval = iv == UINT32_MAX ? 0 : iv;
}

/* so_hooks.room_settings: each room follows its application's section. */
static void room_settings(void *ud, const char *room, so_room_settings *s)
{
    const app_so_glue *g = ud;
    const app_app_config *a = room_app(g->cfg, room);
    if (!a)
        return;
    s->conflict = a->conflict == APP_CONFLICT_LWW ? SO_CONFLICT_LWW : SO_CONFLICT_REJECT;
    s->max_slots_per_object = a->max_so_slots;
    s->max_objects_per_client = a->max_so_per_conn;
    s->max_persistent_objects = a->max_persistent_objects;
    s->max_persistent_bytes = a->max_persistent_bytes;
}

static void reaccess(app_conn *c, void *ud)
{
    app_so_glue *g = ud;
    glue_client *gc = app_conn_get_data(c, APP_SLOT_SO);
    if (gc && apply_access(g, c, gc->sc) < 0)
        app_conn_close(c, "cannot apply the reloaded access lists");
}

/* A configuration reload: new rooms follow the new [app] sections (loaded
 * rooms keep theirs until they leave memory), every client gets its new
 * access lists now, congestion and rate follow [server].  Store routing
 * stays as it started (store is fixed until a restart). */
static void on_reconfigure(app_server *s, const app_config *old_cfg, const app_config *new_cfg,
                           void *ud)
{
    (void)old_cfg;
    app_so_glue *g = ud;
    g->cfg = new_cfg;
    g->congestion_bytes = (size_t)new_cfg->so_congestion_bytes;
    so_engine_set_rate(g->eng, new_cfg->so_max_updates_per_sec);
    app_server_each_conn(s, reaccess, g);
}

app_so_glue *app_so_glue_new(app_server *srv, char *err, size_t errsz)
{
    const app_config *cfg = app_server_config(srv);
    app_so_glue *g = calloc(1, sizeof(*g));
    if (!g) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    g->srv = srv;
    g->cfg = cfg;
    g->loop = app_server_loop(srv);
    g->congestion_bytes = (size_t)cfg->so_congestion_bytes;
    so_effects_init(&g->fx);
    static const double commit_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                           0.05, 0.1, 0.25, 0.5, 1, 2.5};
    app_histo_init(&g->st.commit_seconds, commit_bounds,
                   sizeof(commit_bounds) / sizeof(commit_bounds[0]));
    char path[4096];
    g->store = glue_store_new(cfg, path, sizeof(path), err, errsz);
    if (!g->store) {
        free(g);
        return NULL;
    }
    so_config sc;
    engine_config(cfg, &sc, &g->commit_interval_ms);
    g->wire_limits = sc.wire;
    g->eng = so_engine_new(&sc, true);
    int urc = g->eng ? so_store_usage(&g->store->base, usage_add, g->eng) : SH_ENOMEM;
    if (urc < 0) {
        snprintf(err, errsz, "cannot read the shared-object store's usage: %s",
                 sh_strerror(urc));
        so_engine_free(g->eng);
        so_store_close(&g->store->base);
        free(g);
        return NULL;
    }
    so_hooks hooks = {.room_settings = room_settings, .load_room = hook_load_room, .ud = g};
    so_engine_set_hooks(g->eng, &hooks);
    uv_check_init(g->loop, &g->check);
    g->check.data = g;
    uv_check_start(&g->check, on_check);
    uv_timer_init(g->loop, &g->timer);
    g->timer.data = g;
    uv_timer_init(g->loop, &g->unload_timer);
    g->unload_timer.data = g;
    if (cfg->so_unload_idle_s) {
        uint64_t ms = (uint64_t)cfg->so_unload_idle_s * 1000;
        uv_timer_start(&g->unload_timer, on_unload_timer, ms, ms);
        uv_unref((uv_handle_t *)&g->unload_timer); /* never keeps the loop alive */
    }
    app_so_hooks h = {
        .on_message = hook_message,
        .on_json = hook_json,
        .on_disconnect = hook_disconnect,
        .on_drain = hook_drain,
        .on_shutdown = hook_shutdown,
        .ud = g,
    };
    app_server_set_so_hooks(srv, &h);
    app_server_on_reconfigure(srv, on_reconfigure, g);
    SH_LOG(SH_LOG_INFO, "so: engine ready (store %s%s, commit_interval_ms=%u, "
           "congestion_bytes=%zu, history_depth=%u)",
           path[0] ? path : "memory", path[0] ? (cfg->store_sync_full ? " sync=full" : " sync=normal") : "",
           g->commit_interval_ms, g->congestion_bytes, sc.history_depth);
    return g;
}

void app_so_glue_free(app_so_glue *g)
{
    if (!g)
        return;
    if (!g->handles_closed) {
        /* The loop never ran the shutdown hook (error path): let it close
         * our handles before their memory goes. */
        close_handles(g);
        uv_run(g->loop, UV_RUN_NOWAIT);
    }
    waiters_fire(g, true, SH_ESTATE);
    so_engine_free(g->eng);
    for (size_t i = 0; i < g->nloads; i++)
        free(g->loads[i]);
    free(g->loads);
    if (g->store)
        so_store_close(&g->store->base);
    so_effects_cleanup(&g->fx);
    free(g);
}
