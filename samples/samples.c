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
