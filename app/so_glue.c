/* so_glue.c - see so_glue.h: the shared-object engine on the server's loop. */
#include "so_glue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sh_err.h"
#include "sh_log.h"
#include "sh_mem.h"
#include "so_json.h"
#include "store.h"
#include "cluster.h"
#include "cluster_so.h"


/* ---- the glue ---- */

struct app_so_glue {
    app_server *srv;            /* borrowed */
    const app_config *cfg;      /* borrowed */
    uv_loop_t *loop;
    so_engine *eng;
    app_store *store;           /* borrowed: the server's store module */
    so_effects fx;              /* scratch list, empty between calls */
    size_t congestion_bytes;

    /* grouped commits (the store module's rounds) */
    uv_timer_t unload_timer;    /* so_engine_unload_idle every so_unload_idle_s */
    so_store_batch *inflight;   /* the batch of the round in flight */
    uint64_t inflight_t0;       /* uv_hrtime when it was taken */
    uint32_t commit_interval_ms;
    bool store_stopped;         /* the store wrote its last round */
    int last_status;            /* of the last round that held a batch */
    bool handles_closed;
    uint64_t taken;             /* batches taken so far */
    uint64_t done;              /* batches handed back so far */
    struct glue_waiter *waiters; /* app_so_when_durable, oldest first */
    struct glue_waiter **waiters_tail;

    app_cluster_so *cso;        /* clustered applications' objects; NULL without a cluster */
    struct {
        app_so_applied_fn fn;
        void *ud;
    } applied[8];               /* app_so_on_applied */
    size_t napplied;
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
struct app_cluster_so *app_so_glue_cluster(const app_so_glue *g) { return g->cso; }
const so_wire_limits *app_so_wire_limits(const app_so_glue *g) { return &g->wire_limits; }

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
    return app_store_ok(g->store);
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

/* ---- the store module's source: one batch per round ---- */

/* Pending changes wait for the commit interval; while rounds keep failing,
 * a batch that holds nobody's answer (only the rewrites a failed batch
 * queues) also waits for the store's back-off.  With nothing pending and
 * nothing in flight, every durability waiter is answered. */
static int64_t src_wait_ms(void *ud, uint32_t fail_streak)
{
    app_so_glue *g = ud;
    if (!so_engine_has_batch(g->eng)) {
        if (g->waiters && !g->inflight)
            waiters_fire(g, true, 0);
        return -1;
    }
    uint64_t wait = g->commit_interval_ms;
    uint64_t retry = so_engine_held_count(g->eng) ? 0 : app_store_retry_delay_ms(fail_streak);
    return (int64_t)(retry > wait ? retry : wait);
}

static void src_take(void *ud, app_store_round *r)
{
    app_so_glue *g = ud;
    so_store_batch *b = so_engine_take_batch(g->eng);
    if (!b)
        return;
    g->taken++;
    g->inflight = b;
    g->inflight_t0 = uv_hrtime();
    r->so = b;
}

static void src_done(void *ud, const app_store_round *r, int status)
{
    (void)r;
    app_so_glue *g = ud;
    so_store_batch *b = g->inflight;
    if (!b)
        return; /* a round of other sources only */
    g->inflight = NULL;
    g->st.batches++;
    app_histo_add(&g->st.commit_seconds, (double)(uv_hrtime() - g->inflight_t0) / 1e9);
    if (status < 0)
        g->st.batch_failures++;
    g->last_status = status;
    int rc = so_engine_batch_done(g->eng, b, status, &g->fx);
    if (rc < 0)
        SH_LOG(SH_LOG_ERROR, "so: batch_done: %s", sh_strerror(rc));
    app_so_deliver(g, &g->fx);
    g->done++;
    waiters_fire(g, false, status);
}

/* Shutdown: the store wrote what it could; what still waits is answered
 * with the last round's status. */
static void src_stopped(void *ud)
{
    app_so_glue *g = ud;
    g->store_stopped = true;
    waiters_fire(g, true, so_engine_has_batch(g->eng) ? SH_ESTATE : g->last_status);
    SH_LOG(SH_LOG_INFO, "so: stopped (%llu messages, %llu batches, %llu congestion events)",
           (unsigned long long)g->st.messages, (unsigned long long)g->st.batches,
           (unsigned long long)g->st.congested);
}

/* ---- loads ---- */

static void on_room_read(void *ud, const char *room, int status, so_store_batch *image)
{
    app_so_glue *g = ud;
    if (status < 0)
        SH_LOG(SH_LOG_ERROR, "so: cannot load room %s: %s", room, sh_strerror(status));
    so_engine_room_loaded(g->eng, room, status, image, &g->fx);
    app_so_deliver(g, &g->fx);
    so_store_batch_free(image);
}

/* so_hooks.load_room: read by the store module, answered on a later loop
 * turn. */
static void hook_load_room(void *ud, const char *room)
{
    app_so_glue *g = ud;
    if (app_cluster_so_room_clustered(g->cso, room)) {
        app_cluster_so_load_room(g->cso, room); /* from Redis (cluster_so.c) */
        return;
    }
    if (app_store_load_room(g->store, room, on_room_read, g) < 0)
        /* Out of memory: the room stays loading, and what its clients
         * send is refused once the engine's bounds are reached. */
        SH_LOG(SH_LOG_ERROR, "so: out of memory asking for room %s", room);
}

static int hook_propose(void *ud, const so_proposal *p)
{
    app_so_glue *g = ud;
    return g->cso ? app_cluster_so_propose(g->cso, p) : SH_ESTATE;
}

static int hook_propose_send(void *ud, const char *room, const char *name, size_t nlen,
                             const uint8_t *ev, size_t len)
{
    app_so_glue *g = ud;
    return g->cso ? app_cluster_so_propose_send(g->cso, room, name, nlen, ev, len) : SH_ESTATE;
}

static void hook_room_ready(void *ud, const char *room)
{
    app_so_glue *g = ud;
    if (g->cso)
        app_cluster_so_room_ready(g->cso, room);
}

static void hook_temp_use(void *ud, const char *room, const char *name, bool used)
{
    app_so_glue *g = ud;
    if (g->cso)
        app_cluster_so_temp_use(g->cso, room, name, used);
}

static void hook_room_unloaded(void *ud, const char *room)
{
    app_so_glue *g = ud;
    if (g->cso)
        app_cluster_so_room_unloaded(g->cso, room);
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
    uv_close((uv_handle_t *)&g->unload_timer, NULL);
    app_cluster_so_shutdown(g->cso);
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
    app_cluster_so_client_gone(g->cso, gc->sc);
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

/* Every connection is gone; the store module writes what is pending
 * (its shutdown hook runs after this one). */
static void hook_shutdown(void *ud)
{
    close_handles(ud);
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
    s->clustered = app_cluster_so_room_clustered(g->cso, room);
    const app_app_config *a = app_config_find_room_app(g->cfg, room);
    /* Presence is derived state: each node's server code keeps its own
     * `presence` object as a mirror of what Redis holds (app/chat), so
     * that temporary object stays on the node. */
    char app[APP_NAME_MAX + 1];
    size_t alen = so_store_app_len(room);
    snprintf(app, sizeof(app), "%.*s", (int)(alen < sizeof(app) ? alen : sizeof(app) - 1), room);
    s->local_name = app_presence_on(g->srv, app, a) ? "presence" : NULL;
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
    g->store = app_store_of(srv);
    if (!g->store) {
        snprintf(err, errsz, "no store module (app_store_new first)");
        free(g);
        return NULL;
    }
    so_config sc;
    engine_config(cfg, &sc, &g->commit_interval_ms);
    g->wire_limits = sc.wire;
    g->eng = so_engine_new(&sc, true);
    int urc = g->eng ? app_store_usage(g->store, usage_add, g->eng) : SH_ENOMEM;
    app_store_source src = {.wait_ms = src_wait_ms, .take = src_take, .done = src_done,
                            .stopped = src_stopped, .ud = g};
    if (urc == 0)
        urc = app_store_add_source(g->store, &src);
    if (urc < 0) {
        snprintf(err, errsz, "cannot read the shared-object store's usage: %s",
                 sh_strerror(urc));
        so_engine_free(g->eng);
        free(g);
        return NULL;
    }
    g->cso = app_cluster_so_new(srv, g->eng, g);
    if (!g->cso && app_cluster_of(srv)) {
        snprintf(err, errsz, "cannot set up clustered shared objects: out of memory");
        so_engine_free(g->eng);
        free(g);
        return NULL;
    }
    so_hooks hooks = {.room_settings = room_settings, .load_room = hook_load_room,
                      .propose = hook_propose,
                      .propose_send = hook_propose_send, .room_ready = hook_room_ready,
                      .room_unloaded = hook_room_unloaded, .temp_use = hook_temp_use,
                      .ud = g};
    so_engine_set_hooks(g->eng, &hooks);
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
    SH_LOG(SH_LOG_INFO, "so: engine ready (commit_interval_ms=%u, congestion_bytes=%zu, "
           "history_depth=%u)", g->commit_interval_ms, g->congestion_bytes, sc.history_depth);
    return g;
}

int app_so_on_applied(app_so_glue *g, app_so_applied_fn fn, void *ud)
{
    if (g->napplied >= sizeof(g->applied) / sizeof(g->applied[0]))
        return SH_ELIMIT;
    g->applied[g->napplied].fn = fn;
    g->applied[g->napplied++].ud = ud;
    return 0;
}

void app_so_applied(app_so_glue *g, const char *room, const char *name, size_t nlen)
{
    for (size_t i = 0; i < g->napplied; i++)
        g->applied[i].fn(g->applied[i].ud, room, name, nlen);
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
    app_cluster_so_free(g->cso);
    so_engine_free(g->eng);
    so_store_batch_free(g->inflight); /* the loop never ran its round's end */
    so_effects_cleanup(&g->fx);
    free(g);
}
