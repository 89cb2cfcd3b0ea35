/* samples.c - registration and settings of the sample applications. */
#include "samples.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "samples_int.h"
#include "sh_log.h"
#include "sh_mem.h"

/* ---- settings ---- */

static const samples_settings samples_defaults = {
    .chat_room_size = 50,
    .chat_max_text = 2000,
    .auction_admin = "admin",
    .auction_min_increment = 1,
    .auction_snipe_window_ms = 10000,
    .auction_snipe_extend_ms = 10000,
    .auction_max_items = 256,
    .slideshow_presenter = "",
};

static int set_u32(uint32_t *dst, const char *v, uint64_t lo, uint64_t hi)
{
    char *e = NULL;
    unsigned long long n = strtoull(v, &e, 10);
    if (!*v || *e || n < lo || n > hi)
        return -1;
    *dst = (uint32_t)n;
    return 0;
}

static int set_name(char *dst, const char *v)
{
    if (strlen(v) >= SAMPLES_NAME_MAX)
        return -1;
    snprintf(dst, SAMPLES_NAME_MAX, "%s", v);
    return 0;
}

static int load_key(samples_settings *s, const char *sec, const char *k, const char *v)
{
    if (!strcmp(sec, "chat")) {
        if (!strcmp(k, "room_size"))
            return set_u32(&s->chat_room_size, v, 1, 10000);
        if (!strcmp(k, "max_text"))
            return set_u32(&s->chat_max_text, v, 1, 60000);
    } else if (!strcmp(sec, "auction")) {
        if (!strcmp(k, "admin"))
            return set_name(s->auction_admin, v);
        if (!strcmp(k, "min_increment")) {
            char *e = NULL;
            double d = strtod(v, &e);
            if (!*v || *e || !(d > 0) || d > 1e12)
                return -1;
            s->auction_min_increment = d;
            return 0;
        }
        if (!strcmp(k, "snipe_window_ms"))
            return set_u32(&s->auction_snipe_window_ms, v, 0, 86400000);
        if (!strcmp(k, "snipe_extend_ms"))
            return set_u32(&s->auction_snipe_extend_ms, v, 0, 86400000);
        if (!strcmp(k, "max_items"))
            return set_u32(&s->auction_max_items, v, 1, 100000);
    } else if (!strcmp(sec, "slideshow")) {
        if (!strcmp(k, "presenter"))
            return set_name(s->slideshow_presenter, v);
    }
    return -2;
}

int samples_settings_load(samples_settings *s, const app_config *cfg, char *err, size_t errsz)
{
    *s = samples_defaults;
    for (size_t i = 0; i < cfg->nsample_settings; i++) {
        const app_config_setting *e = &cfg->sample_settings[i];
        int r = load_key(s, e->section, e->key, e->value);
        if (r < 0) {
            snprintf(err, errsz, "%s:%d: [sample %s] %s = %s: %s",
                     cfg->config_path ? cfg->config_path : "config", e->line, e->section,
                     e->key, e->value, r == -2 ? "unknown key" : "bad value");
            return SH_EINVAL;
        }
    }
    return 0;
}

/* ---- helpers ---- */

int64_t samples_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

so_object *samples_open(app_server *srv, const char *room, const char *name, bool persistent,
                        bool server_only)
{
    so_engine *e = app_so_engine(app_so_glue_of(srv));
    if (!e)
        return NULL;
    int err = 0;
    so_object *o = so_engine_object_open(e, room, name, persistent, &err);
    if (!o) {
        SH_LOG(SH_LOG_WARN, "samples: cannot open %s in %s: %s", name, room, sh_strerror(err));
        return NULL;
    }
    if (server_only)
        so_object_set_server_only(o, true);
    return o;
}

static void reject_text(app_verdict *v, const char *what)
{
    v->reject = true;
    snprintf(v->description, sizeof(v->description), "The %s is not available.", what);
}

void samples_wait(samples_waiting *w, app_conn *c, app_verdict *v, const char *what)
{
    if (sh_array_grow((void **)&w->c, &w->cap, w->n + 1, sizeof(*w->c), 4) < 0) {
        reject_text(v, what);
        return;
    }
    w->c[w->n++] = c;
    v->pending = true;
}

void samples_wait_done(samples_waiting *w, bool ok, const char *what)
{
    /* Taken off w first: answering may end a connection, whose
     * on_disconnect then finds nothing to forget. */
    samples_waiting now = *w;
    *w = (samples_waiting){0};
    app_verdict v = {0};
    if (!ok)
        reject_text(&v, what);
    for (size_t i = 0; i < now.n; i++)
        app_conn_accept(now.c[i], &v);
    free(now.c);
}

void samples_wait_forget(samples_waiting *w, app_conn *c)
{
    for (size_t i = 0; i < w->n; i++)
        if (w->c[i] == c) {
            memmove(&w->c[i], &w->c[i + 1], (w->n - i - 1) * sizeof(*w->c));
            w->n--;
            return;
        }
}

void samples_wait_cleanup(samples_waiting *w)
{
    free(w->c);
    *w = (samples_waiting){0};
}

void samples_deliver(app_server *srv, so_effects *fx)
{
    app_so_glue *g = app_so_glue_of(srv);
    if (g)
        app_so_deliver(g, fx);
    else
        so_effects_clear(fx);
}

amf_value *samples_str(const char *s) { return amf_string_cstr(s ? s : ""); }

void samples_accept(app_conn *c, app_verdict *v, void *p, size_t *nconns, const char *what)
{
    if (!p) {
        reject_text(v, what);
        return;
    }
    (*nconns)++;
    app_conn_set_data(c, APP_SLOT_APP, p);
}

void *samples_detach(app_conn *c)
{
    void *p = app_conn_get_data(c, APP_SLOT_APP);
    app_conn_set_data(c, APP_SLOT_APP, NULL);
    return p;
}

/* ---- writes every node of a cluster may be making at once ---- */

int samples_changes_add(samples_changes *ch, const char *key, size_t klen, amf_value *v)
{
    if (ch->n >= SAMPLES_CHANGES_MAX) {
        amf_unref(v);
        return SH_ELIMIT;
    }
    char *k = sh_memdup0(key, klen);
    if (!k) {
        amf_unref(v);
        return SH_ENOMEM;
    }
    ch->ch[ch->n++] = (so_change){.key = k, .klen = klen, .v = v};
    return 0;
}

static void changes_clear(samples_changes *ch)
{
    for (size_t i = 0; i < ch->n; i++) {
        free((char *)ch->ch[i].key);
        amf_unref(ch->ch[i].v);
    }
    ch->n = 0;
}

typedef struct cas_op {
    struct cas_op *next;        /* in ctx.waiting while it waits to catch up */
    app_server *srv;
    so_object *o;               /* a handle of its own: the object stays */
    samples_build_fn build;
    samples_done_fn done;
    void *ud;
    uint32_t wait_version;      /* another node wrote this version: build again once here */
    uint64_t deadline;          /* loop ms: give up catching up then */
    unsigned tries;
} cas_op;

typedef struct poll_fn {
    void (*fn)(void *ud);
    void *ud;
} poll_fn;

/* One server per process: the samples' timers and waiting writes. */
static struct {
    app_server *srv;
    uv_timer_t wait_timer;      /* runs while writes wait to catch up */
    uv_timer_t poll_timer;
    bool started, stopping;
    cas_op *waiting;
    poll_fn polls[8];
    size_t npolls;
} ctx;

static so_engine *ctx_engine(app_server *srv) { return app_so_engine(app_so_glue_of(srv)); }

static void cas_finish(cas_op *op, int status)
{
    op->done(op->ud, status, op->o);
    so_engine *e = ctx_engine(op->srv);
    if (e)
        so_engine_object_close(e, op->o);
    free(op);
}

static void cas_attempt(cas_op *op);
static void on_wait_timer(uv_timer_t *t);

/* so_write_fn of one attempt. */
static void cas_written(void *ud, int status, uint32_t version)
{
    cas_op *op = ud;
    if (status != SH_EEXIST || ctx.stopping) {
        cas_finish(op, status);
        return;
    }
    /* another node wrote first: decide again on what it wrote */
    if (++op->tries >= SAMPLES_CAS_TRIES) {
        SH_LOG(SH_LOG_WARN, "samples: %s: gave up after %u conflicting writes",
               so_object_name(op->o), op->tries);
        cas_finish(op, SH_EIO);
        return;
    }
    op->wait_version = version;
    cas_attempt(op);
}

static void cas_wait(cas_op *op)
{
    op->next = ctx.waiting;
    ctx.waiting = op;
    if (!uv_is_active((uv_handle_t *)&ctx.wait_timer))
        uv_timer_start(&ctx.wait_timer, on_wait_timer, 5, 5);
}

static void cas_attempt(cas_op *op)
{
    so_engine *e = ctx_engine(op->srv);
    if (ctx.stopping) {
        cas_finish(op, SH_ESTATE);
        return;
    }
    if (so_object_version(op->o) < op->wait_version) {
        if (uv_now(app_server_loop(op->srv)) >= op->deadline) {
            SH_LOG(SH_LOG_WARN, "samples: %s: this node did not reach version %u in time",
                   so_object_name(op->o), op->wait_version);
            cas_finish(op, SH_EIO);
            return;
        }
        cas_wait(op);
        return;
    }
    samples_changes ch = {.n = 0};
    int rc = op->build(op->ud, op->o, &ch);
    if (rc == 0) {
        so_effects fx;
        so_effects_init(&fx);
        so_write_opts w = {.expect_version = so_object_version(op->o), .done = cas_written,
                           .ud = op};
        rc = so_object_write(e, op->o, ch.ch, ch.n, &w, &fx);
        samples_deliver(op->srv, &fx);
        so_effects_cleanup(&fx);
    }
    changes_clear(&ch);
    if (rc != SO_WRITE_PENDING)
        cas_finish(op, rc);
}

static void on_wait_timer(uv_timer_t *t)
{
    (void)t;
    cas_op *list = ctx.waiting;
    ctx.waiting = NULL;
    while (list) {
        cas_op *op = list;
        list = op->next;
        cas_attempt(op); /* may wait again */
    }
    if (!ctx.waiting)
        uv_timer_stop(&ctx.wait_timer);
}

int samples_cas(app_server *srv, const char *room, so_object *o, samples_build_fn build,
                samples_done_fn done, void *ud)
{
    so_engine *e = ctx_engine(srv);
    cas_op *op = calloc(1, sizeof(*op));
    if (!op || !e)
        goto fail;
    int err = 0;
    op->o = so_engine_object_open(e, room, so_object_name(o), so_object_persistent(o), &err);
    if (!op->o)
        goto fail;
    op->srv = srv;
    op->build = build;
    op->done = done;
    op->ud = ud;
    op->deadline = uv_now(app_server_loop(srv)) + SAMPLES_CAS_WAIT_MS;
    cas_attempt(op);
    return 0;
fail:
    free(op);
    return SH_ENOMEM;
}

static void on_poll_timer(uv_timer_t *t)
{
    (void)t;
    for (size_t i = 0; i < ctx.npolls; i++)
        ctx.polls[i].fn(ctx.polls[i].ud);
}

int samples_on_poll(void (*fn)(void *ud), void *ud)
{
    if (ctx.npolls >= sizeof(ctx.polls) / sizeof(ctx.polls[0]))
        return SH_ELIMIT;
    ctx.polls[ctx.npolls++] = (poll_fn){fn, ud};
    return 0;
}

/* The server stops: the writes that wait to catch up end with SH_ESTATE
 * (those in flight get it from the cluster when it is freed). */
static void ctx_shutdown(app_server *s, void *ud)
{
    (void)s;
    (void)ud;
    ctx.stopping = true;
    while (ctx.waiting) {
        cas_op *op = ctx.waiting;
        ctx.waiting = op->next;
        cas_finish(op, SH_ESTATE);
    }
    uv_close((uv_handle_t *)&ctx.wait_timer, NULL);
    uv_close((uv_handle_t *)&ctx.poll_timer, NULL);
}

static int ctx_start(app_server *srv)
{
    if (ctx.started)
        return 0;
    ctx.srv = srv;
    uv_timer_init(app_server_loop(srv), &ctx.wait_timer);
    uv_timer_init(app_server_loop(srv), &ctx.poll_timer);
    uv_unref((uv_handle_t *)&ctx.wait_timer);
    uv_unref((uv_handle_t *)&ctx.poll_timer);
    uv_timer_start(&ctx.poll_timer, on_poll_timer, SAMPLES_POLL_MS, SAMPLES_POLL_MS);
    ctx.started = true;
    return app_server_on_shutdown(srv, ctx_shutdown, NULL);
}

/* ---- registration ---- */

int samples_register(app_server *srv)
{
    static samples_settings settings; /* lives as long as the process */
    char err[512] = "";
    int rc = samples_settings_load(&settings, app_server_config(srv), err, sizeof(err));
    if (rc < 0) {
        SH_LOG(SH_LOG_ERROR, "samples: %s; samples not served", err);
        return rc;
    }
    if (!app_so_glue_of(srv)) {
        SH_LOG(SH_LOG_ERROR, "samples: no shared-object engine; samples not served");
        return SH_ESTATE;
    }
    if ((rc = ctx_start(srv)) < 0) {
        SH_LOG(SH_LOG_ERROR, "samples: %s; samples not served", sh_strerror(rc));
        return rc;
    }
    int first = 0;
    if ((rc = sample_chat_register(srv, &settings)) < 0) {
        SH_LOG(SH_LOG_ERROR, "samples: chat: %s", sh_strerror(rc));
        first = rc;
    }
    if ((rc = sample_auction_register(srv, &settings)) < 0) {
        SH_LOG(SH_LOG_ERROR, "samples: auction: %s", sh_strerror(rc));
        first = first ? first : rc;
    }
    if ((rc = sample_slideshow_register(srv, &settings)) < 0) {
        SH_LOG(SH_LOG_ERROR, "samples: slideshow: %s", sh_strerror(rc));
        first = first ? first : rc;
    }
    if (!first)
        SH_LOG(SH_LOG_INFO, "samples: chat (room_size=%u), auction (admin=%s), slideshow "
               "(presenter=%s) registered", settings.chat_room_size, settings.auction_admin,
               settings.slideshow_presenter[0] ? settings.slideshow_presenter : "first user");
    return first;
}
