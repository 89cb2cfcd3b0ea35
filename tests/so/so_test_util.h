/* so_test_util.h - helpers shared by the so/ unit tests: building client
 * bodies, collecting the messages an effect list sends to one client, and
 * a tiny client-side model that applies Change / Remove / Clear. */
#ifndef SO_TEST_UTIL_H
#define SO_TEST_UTIL_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "so.h"

/* Values built from AMF3 bytes, so the tests need no constructor beyond amf.h. */
static inline amf_value *tv_amf3(const uint8_t *p, size_t n)
{
    amf_dec *d = amf_dec_new(NULL);
    amf_value *v = NULL;
    size_t used = 0;
    int rc = amf_decode(d, AMF_ENC_AMF3, p, n, &used, &v, NULL);
    amf_dec_free(d);
    cr_assert_eq(rc, 0, "amf3 decode of test value failed: %d", rc);
    cr_assert_eq(used, n);
    return v;
}

/* ByteArray [1,2,3,0,255] */
static inline amf_value *tv_bytes(void)
{
    static const uint8_t b[] = {0x0C, 0x0B, 1, 2, 3, 0, 255};
    return tv_amf3(b, sizeof(b));
}

/* Typed object of class "pt" with sealed members x=1 (int), y="a" */
static inline amf_value *tv_typed(void)
{
    static const uint8_t b[] = {
        0x0A, 0x23, 0x05, 'p', 't', 0x03, 'x', 0x03, 'y', /* traits: 2 sealed, not dynamic */
        0x04, 0x01, 0x06, 0x03, 'a'};
    return tv_amf3(b, sizeof(b));
}

/* Vector.<int> [1, -2] */
static inline amf_value *tv_vec(void)
{
    static const uint8_t b[] = {0x0D, 0x05, 0x00, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFE};
    return tv_amf3(b, sizeof(b));
}

/* ---- a client: engine handle + model ---- */

typedef struct tkv {
    char *key;
    amf_value *v;
} tkv;

typedef struct tclient {
    so_client *c;
    amf_encoding enc;
    uint32_t version;       /* last header version seen */
    tkv kv[256];
    size_t n;
    size_t msgs;            /* messages received */
    size_t success, status, use_success, clears, sends;
    char last_status[128];
    char last_handler[64];
} tclient;

static inline tkv *model_find(tclient *t, const char *k)
{
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->kv[i].key, k))
            return &t->kv[i];
    return NULL;
}

static inline void model_clear(tclient *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->kv[i].key);
        amf_unref(t->kv[i].v);
    }
    t->n = 0;
}

static inline void model_set(tclient *t, const char *k, amf_value *v)
{
    tkv *e = model_find(t, k);
    if (!e) {
        cr_assert_lt(t->n, 256);
        e = &t->kv[t->n++];
        e->key = strdup(k);
        e->v = NULL;
    }
    amf_unref(e->v);
    e->v = amf_ref(v);
}

static inline void model_del(tclient *t, const char *k)
{
    tkv *e = model_find(t, k);
    if (e) {
        free(e->key);
        amf_unref(e->v);
        *e = t->kv[--t->n];
    }
}

static inline void model_apply(tclient *t, const so_msg *m)
{
    t->msgs++;
    t->version = m->version;
    for (size_t i = 0; i < m->nevents; i++) {
        const so_event *ev = &m->events[i];
        switch (ev->type) {
        case SO_EV_CHANGE:
            for (size_t k = 0; k < ev->nkv; k++)
                model_set(t, ev->kv[k].key, ev->kv[k].value);
            break;
        case SO_EV_REMOVE:
            model_del(t, ev->kv[0].key);
            break;
        case SO_EV_CLEAR:
            t->clears++;
            model_clear(t);
            break;
        case SO_EV_SUCCESS:
            t->success++;
            break;
        case SO_EV_USE_SUCCESS:
            t->use_success++;
            break;
        case SO_EV_STATUS:
            t->status++;
            snprintf(t->last_status, sizeof(t->last_status), "%s", ev->code);
            break;
        case SO_EV_SEND_MESSAGE:
            t->sends++;
            snprintf(t->last_handler, sizeof(t->last_handler), "%s", ev->handler);
            break;
        default:
            break;
        }
    }
}

/* Delivers every effect in fx addressed to t (decoding each body), and
 * returns how many messages t got.  Checks the message type matches t's
 * encoding. */
static inline size_t deliver(tclient *t, const so_effects *fx)
{
    size_t got = 0;
    for (size_t i = 0; i < fx->len; i++) {
        const so_effect *f = &fx->items[i];
        for (size_t k = 0; k < f->nto; k++) {
            if (f->to[k] != t)
                continue;
            cr_assert_eq(f->msg_type, t->enc == AMF_ENC_AMF3 ? SO_MSG_AMF3 : SO_MSG_AMF0);
            so_msg m;
            so_msg_init(&m);
            sh_error err = {0};
            int rc = so_wire_decode(f->msg_type, f->body->data, f->body->len, NULL, &m, &err);
            cr_assert_eq(rc, 0, "engine output does not decode: %d %s", rc, err.what);
            model_apply(t, &m);
            so_msg_cleanup(&m);
            got++;
        }
    }
    return got;
}

/* Decodes the first message for t in fx into *m (caller cleans up);
 * false when there is none. */
static inline bool first_msg(void *t, const so_effects *fx, size_t nth, so_msg *m)
{
    for (size_t i = 0; i < fx->len; i++)
        for (size_t k = 0; k < fx->items[i].nto; k++)
            if (fx->items[i].to[k] == t && nth-- == 0) {
                so_msg_init(m);
                int rc = so_wire_decode(fx->items[i].msg_type, fx->items[i].body->data,
                                        fx->items[i].body->len, NULL, m, NULL);
                cr_assert_eq(rc, 0);
                return true;
            }
    return false;
}

static inline size_t count_for(void *t, const so_effects *fx)
{
    size_t n = 0;
    for (size_t i = 0; i < fx->len; i++)
        for (size_t k = 0; k < fx->items[i].nto; k++)
            n += fx->items[i].to[k] == t;
    return n;
}

/* Compares t's model with the object's slots. */
static inline void assert_model_eq(tclient *t, const so_object *o)
{
    cr_assert_eq(t->n, so_object_slot_count(o), "model has %zu slots, object %zu",
                 t->n, so_object_slot_count(o));
    for (size_t i = 0; i < t->n; i++) {
        amf_value *v = so_object_get(o, t->kv[i].key, strlen(t->kv[i].key));
        cr_assert_not_null(v, "slot %s missing", t->kv[i].key);
        cr_assert(amf_equal(v, t->kv[i].v), "slot %s differs", t->kv[i].key);
    }
}

/* ---- a store under the engine ----
 * An engine made by t_engine_new with a store reads it through a load
 * hook that records the rooms asked for; t_loads answers them from the
 * store (the worker step, inline).  The request helpers below call it
 * after each call, so a room is loaded before the next call unless a test
 * holds the loads back with t_hold_loads. */

typedef struct t_loader {
    so_store *s;        /* NULL: the engine is not durable */
    char *rooms[64];    /* asked for, not answered yet */
    size_t n;
    bool hold;          /* t_loads does nothing while set */
} t_loader;
static t_loader t_ld;

static inline void t_load_hook(void *ud, const char *room)
{
    (void)ud;
    cr_assert_lt(t_ld.n, 64);
    t_ld.rooms[t_ld.n++] = strdup(room);
}

/* Answers every load asked for (effects of what waited go to fx, NULL:
 * dropped), unless they are held. */
static inline void t_loads(so_engine *e, so_effects *fx)
{
    while (!t_ld.hold && t_ld.n) {
        char *room = t_ld.rooms[0];
        memmove(t_ld.rooms, t_ld.rooms + 1, --t_ld.n * sizeof(t_ld.rooms[0]));
        so_store_batch *img = NULL;
        int st = so_store_load_image(t_ld.s, room, &img);
        so_effects scratch;
        so_effects_init(&scratch);
        cr_assert_eq(so_engine_room_loaded(e, room, st, img, fx ? fx : &scratch), st);
        so_effects_cleanup(&scratch);
        so_store_batch_free(img);
        free(room);
    }
}

static inline void t_hold_loads(bool hold)
{
    t_ld.hold = hold;
}

/* Hooks for an engine of t_engine_new: the test's hooks plus the load
 * hook when it has a store. */
static inline void t_set_hooks(so_engine *e, so_hooks h)
{
    if (t_ld.s)
        h.load_room = t_load_hook;
    so_engine_set_hooks(e, &h);
}

typedef struct t_opened {
    so_object *o;
    int err;
    int calls;
} t_opened;

static inline void t_open_cb(void *ud, so_object *o, int err)
{
    t_opened *r = ud;
    r->o = o;
    r->err = err;
    r->calls++;
}

/* so_engine_object_open for any room: the asynchronous form, its load
 * answered at once. */
static inline so_object *t_open(so_engine *e, const char *room, const char *name,
                                bool persistent, int *err)
{
    t_opened r = {0};
    int rc = so_engine_object_open_async(e, room, name, persistent, t_open_cb, &r);
    if (rc == 0)
        t_loads(e, NULL);
    cr_assert(rc < 0 || r.calls == 1, "the open was answered once");
    if (err)
        *err = rc < 0 ? rc : r.err;
    return r.o;
}

/* ---- client requests ---- */

static inline uint8_t mt_of(const tclient *t)
{
    return t->enc == AMF_ENC_AMF3 ? SO_MSG_AMF3 : SO_MSG_AMF0;
}

static inline int t_send_body(so_engine *e, tclient *t, sh_buf *b, uint64_t now, so_effects *fx)
{
    cr_assert(!b->failed);
    int rc = so_engine_handle(e, t->c, mt_of(t), b->data, b->len, now, fx, NULL);
    sh_buf_cleanup(b);
    t_loads(e, fx);
    return rc;
}

static inline int t_use(so_engine *e, tclient *t, const char *name, uint32_t v,
                        bool persistent, so_effects *fx)
{
    sh_buf b;
    sh_buf_init(&b, SH_BUF_MAX_DEFAULT);
    so_wire_client_use(&b, mt_of(t), name, v, persistent);
    return t_send_body(e, t, &b, 0, fx);
}

static inline int t_release(so_engine *e, tclient *t, const char *name, so_effects *fx)
{
    sh_buf b;
    sh_buf_init(&b, SH_BUF_MAX_DEFAULT);
    so_wire_client_release(&b, mt_of(t), name, t->version, false);
    return t_send_body(e, t, &b, 0, fx);
}

/* RequestChange of n keys to numbers, with header version hv. */
static inline int t_set_num(so_engine *e, tclient *t, const char *name, uint32_t hv,
                            size_t n, const char *const *keys, const double *nums,
                            uint64_t now, so_effects *fx)
{
    amf_value *vals[64];
    cr_assert_leq(n, 64);
    for (size_t i = 0; i < n; i++)
        vals[i] = amf_number(nums[i]);
    sh_buf b;
    sh_buf_init(&b, SH_BUF_MAX_DEFAULT);
    so_wire_client_request_change(&b, mt_of(t), name, hv, false, n, keys, vals);
    for (size_t i = 0; i < n; i++)
        amf_unref(vals[i]);
    return t_send_body(e, t, &b, now, fx);
}

/* The single-write helpers advance this clock one second per call, so the
 * update-rate cap never interferes with tests that are not about it. */
static uint64_t t_clock = 1000;

static inline int t_set1(so_engine *e, tclient *t, const char *name, uint32_t hv,
                         const char *key, double num, so_effects *fx)
{
    return t_set_num(e, t, name, hv, 1, &key, &num, t_clock += 1000, fx);
}

static inline int t_setv(so_engine *e, tclient *t, const char *name, uint32_t hv,
                         const char *key, amf_value *v, so_effects *fx)
{
    sh_buf b;
    sh_buf_init(&b, SH_BUF_MAX_DEFAULT);
    so_wire_client_request_change(&b, mt_of(t), name, hv, false, 1, &key, &v);
    return t_send_body(e, t, &b, t_clock += 1000, fx);
}

static inline int t_remove(so_engine *e, tclient *t, const char *name, uint32_t hv,
                           const char *key, so_effects *fx)
{
    sh_buf b;
    sh_buf_init(&b, SH_BUF_MAX_DEFAULT);
    so_wire_client_request_remove(&b, mt_of(t), name, hv, false, 1, &key);
    return t_send_body(e, t, &b, t_clock += 1000, fx);
}

static inline void t_register(so_engine *e, tclient *t, amf_encoding enc, const char *room)
{
    memset(t, 0, sizeof(*t));
    t->enc = enc;
    int err = 0;
    t->c = so_client_register(e, t, enc, room, &err);
    cr_assert_not_null(t->c, "register failed: %d", err);
    t_loads(e, NULL);
}

static inline void t_unregister(so_engine *e, tclient *t)
{
    so_client_unregister(e, t->c);
    t->c = NULL;
    model_clear(t);
}

/* ---- set-up and checks shared by the engine and store tests ---- */

static inline int t_usage_add(void *ud, const char *app, uint64_t objects, uint64_t bytes)
{
    return so_engine_usage_add(ud, app, objects, bytes);
}

/* An engine, durable when store is given: its usage read for the quotas
 * and its rooms loaded from it (t_loads). */
static inline so_engine *t_engine_new(const so_config *cfg, so_store *store)
{
    so_engine *e = so_engine_new(cfg, store != NULL);
    cr_assert_not_null(e);
    for (size_t i = 0; i < t_ld.n; i++)
        free(t_ld.rooms[i]);
    t_ld = (t_loader){.s = store};
    if (store) {
        int rc = so_store_usage(store, t_usage_add, e);
        cr_assert(rc == 0 || rc == SH_EUNSUPPORTED, "usage: %d", rc);
        t_set_hooks(e, (so_hooks){0});
    }
    return e;
}

/* A test's tear-down: unregisters a and b where they are still registered,
 * then frees e (NULL is fine). */
static inline void t_engine_free(so_engine *e, tclient *a, tclient *b)
{
    if (a->c)
        t_unregister(e, a);
    if (b->c)
        t_unregister(e, b);
    so_engine_free(e);
}

/* The nth message fx holds for t exists and its event i has this type. */
static inline void expect_nth_event(void *t, const so_effects *fx, size_t nth, size_t i,
                                    so_event_type type, const char *why)
{
    so_msg m;
    cr_assert(first_msg(t, fx, nth, &m), "no message %zu for the client", nth);
    cr_assert_gt(m.nevents, i, "message %zu has only %zu events", nth, m.nevents);
    cr_assert_eq(m.events[i].type, type, "event %zu: type %u, want %u (%s)", i,
                 (unsigned)m.events[i].type, (unsigned)type, why ? why : "");
    so_msg_cleanup(&m);
}

/* The first message fx holds for t starts with Status `code`. */
static inline void expect_status(void *t, const so_effects *fx, const char *code)
{
    so_msg m;
    cr_assert(first_msg(t, fx, 0, &m), "no answer for %s", code);
    cr_assert_eq(m.events[0].type, SO_EV_STATUS);
    cr_assert_str_eq(m.events[0].code, code);
    so_msg_cleanup(&m);
}

#endif
