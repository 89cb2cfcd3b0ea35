/* so_client.c - see so_client.h. */
#include "so_client.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "harness.h"

#define SOC_MAX_OBJS 32

typedef struct soc_pending {
    char name[128];
    char *key;
    amf_value *value;   /* NULL = remove */
    bool used;
} soc_pending;

struct soc {
    shc *sh;            /* socket, handshake, connect, chunking, reading */
    uint8_t msg_type;
    so_msg **q;
    size_t qhead, qlen, qcap;
    soc_obj objs[SOC_MAX_OBJS];
    size_t nobjs;
    soc_pending *pend;
    size_t npend, cappend;
    unsigned rx16, rx19;
};

/* ---- mirror ---- */

soc_obj *soc_object(soc *c, const char *name)
{
    for (size_t i = 0; i < c->nobjs; i++)
        if (strcmp(c->objs[i].name, name) == 0)
            return &c->objs[i];
    return NULL;
}

static soc_obj *obj_get(soc *c, const char *name)
{
    soc_obj *o = soc_object(c, name);
    if (o || c->nobjs >= SOC_MAX_OBJS)
        return o;
    o = &c->objs[c->nobjs++];
    memset(o, 0, sizeof(*o));
    snprintf(o->name, sizeof(o->name), "%s", name);
    return o;
}

static soc_slot *slot_find(soc_obj *o, const char *key)
{
    for (size_t i = 0; i < o->nslots; i++)
        if (strcmp(o->slots[i].key, key) == 0)
            return &o->slots[i];
    return NULL;
}

static void slot_set(soc_obj *o, const char *key, amf_value *v)
{
    soc_slot *s = slot_find(o, key);
    if (s) {
        amf_unref(s->value);
        s->value = amf_ref(v);
        return;
    }
    if (o->nslots == o->cap) {
        size_t n = o->cap ? o->cap * 2 : 16;
        soc_slot *ns = realloc(o->slots, n * sizeof(*ns));
        if (!ns)
            return;
        o->slots = ns;
        o->cap = n;
    }
    o->slots[o->nslots].key = strdup(key);
    o->slots[o->nslots].value = amf_ref(v);
    o->nslots++;
}

static void slot_remove(soc_obj *o, const char *key)
{
    soc_slot *s = slot_find(o, key);
    if (!s)
        return;
    free(s->key);
    amf_unref(s->value);
    *s = o->slots[--o->nslots];
}

static void obj_clear(soc_obj *o)
{
    for (size_t i = 0; i < o->nslots; i++) {
        free(o->slots[i].key);
        amf_unref(o->slots[i].value);
    }
    o->nslots = 0;
}

uint32_t soc_version(soc *c, const char *name)
{
    soc_obj *o = soc_object(c, name);
    return o ? o->version : 0;
}

amf_value *soc_get(soc *c, const char *name, const char *key)
{
    soc_obj *o = soc_object(c, name);
    soc_slot *s = o ? slot_find(o, key) : NULL;
    return s ? s->value : NULL;
}

double soc_get_num(soc *c, const char *name, const char *key)
{
    amf_value *v = soc_get(c, name, key);
    return v ? amf_as_number(v) : NAN;
}

bool soc_same_state(soc *a, soc *b, const char *name)
{
    soc_obj *x = soc_object(a, name), *y = soc_object(b, name);
    if (!x || !y || x->nslots != y->nslots)
        return false;
    for (size_t i = 0; i < x->nslots; i++) {
        soc_slot *s = slot_find(y, x->slots[i].key);
        if (!s || !amf_equal(s->value, x->slots[i].value))
            return false;
    }
    return true;
}

static void pending_add(soc *c, const char *name, const char *key, amf_value *v)
{
    if (c->npend == c->cappend) {
        size_t n = c->cappend ? c->cappend * 2 : 64;
        soc_pending *np = realloc(c->pend, n * sizeof(*np));
        if (!np)
            return;
        c->pend = np;
        c->cappend = n;
    }
    soc_pending *p = &c->pend[c->npend++];
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->key = strdup(key);
    p->value = v ? amf_ref(v) : NULL;
    p->used = false;
}

/* Success(K): the oldest pending request of K is now the value. */
static void pending_apply(soc *c, soc_obj *o, const char *key)
{
    for (size_t i = 0; i < c->npend; i++) {
        soc_pending *p = &c->pend[i];
        if (p->used || strcmp(p->name, o->name) != 0 || strcmp(p->key, key) != 0)
            continue;
        if (p->value)
            slot_set(o, key, p->value);
        else
            slot_remove(o, key);
        p->used = true;
        free(p->key);
        p->key = NULL;
        amf_unref(p->value);
        p->value = NULL;
        break;
    }
    /* compact the front */
    size_t k = 0;
    while (k < c->npend && c->pend[k].used)
        k++;
    if (k) {
        memmove(c->pend, c->pend + k, (c->npend - k) * sizeof(*c->pend));
        c->npend -= k;
    }
}

static void apply(soc *c, const so_msg *m)
{
    soc_obj *o = obj_get(c, m->name);
    if (!o)
        return;
    o->version = m->version;
    o->persistent = m->persistent;
    for (size_t i = 0; i < m->nevents; i++) {
        const so_event *ev = &m->events[i];
        switch (ev->type) {
        case SO_EV_USE_SUCCESS: o->use_success++; break;
        case SO_EV_CLEAR: o->clears++; obj_clear(o); break;
        case SO_EV_CHANGE:
            for (size_t k = 0; k < ev->nkv; k++) {
                slot_set(o, ev->kv[k].key, ev->kv[k].value);
                o->changes++;
            }
            break;
        case SO_EV_REMOVE: slot_remove(o, ev->kv[0].key); break;
        case SO_EV_SUCCESS:
            o->successes++;
            pending_apply(c, o, ev->kv[0].key);
            break;
        case SO_EV_STATUS:
            snprintf(o->last_status, sizeof(o->last_status), "%s", ev->code ? ev->code : "");
            break;
        case SO_EV_SEND_MESSAGE:
            o->sends++;
            snprintf(o->last_handler, sizeof(o->last_handler), "%s",
                     ev->handler ? ev->handler : "");
            break;
        default: break;
        }
    }
}

/* ---- queue ---- */

static void q_push(soc *c, so_msg *m)
{
    if (c->qhead > 0 && c->qhead == c->qlen) {
        c->qhead = c->qlen = 0;
    }
    if (c->qlen == c->qcap) {
        size_t n = c->qcap ? c->qcap * 2 : 64;
        so_msg **nq = realloc(c->q, n * sizeof(*nq));
        if (!nq) {
            soc_msg_free(m);
            return;
        }
        c->q = nq;
        c->qcap = n;
    }
    c->q[c->qlen++] = m;
}

void soc_msg_free(so_msg *m)
{
    if (!m)
        return;
    so_msg_cleanup(m);
    free(m);
}

void soc_discard(soc *c)
{
    while (c->qhead < c->qlen)
        soc_msg_free(c->q[c->qhead++]);
    c->qhead = c->qlen = 0;
}

/* ---- I/O (through shc) ---- */

/* Takes one event: SO messages go to the mirror and the queue (returns 1),
 * commands are not ours (returns 0). */
static int take(soc *c, shc_event *ev)
{
    if (ev->kind != SHC_EV_SO) {
        shc_event_cleanup(ev);
        return 0;
    }
    so_msg *sm = malloc(sizeof(*sm));
    if (!sm) {
        shc_event_cleanup(ev);
        return 0;
    }
    *sm = ev->so; /* the event's message moves into the queue */
    if (ev->rtmp_type == SO_MSG_AMF3)
        c->rx16++;
    else
        c->rx19++;
    apply(c, sm);
    q_push(c, sm);
    return 1;
}

int soc_pump(soc *c, int timeout_ms)
{
    if (shc_closed(c->sh))
        return -1;
    int got = 0;
    int64_t end = e2e_now_ms() + timeout_ms;
    for (;;) {
        /* Once something came, only what is there already. */
        int left = got ? 0 : (int)(end - e2e_now_ms());
        shc_event ev;
        int r = shc_next(c->sh, left > 0 ? left : 0, &ev);
        if (r < 0)
            return got ? got : -1;
        if (r == 0) {
            if (got || e2e_now_ms() >= end)
                break;
            continue;
        }
        got += take(c, &ev);
    }
    return got;
}

void soc_settle(soc *c, int quiet_ms, int max_ms)
{
    int64_t end = e2e_now_ms() + max_ms;
    while (e2e_now_ms() < end) {
        int g = soc_pump(c, quiet_ms);
        if (g <= 0)
            break;
    }
}

so_msg *soc_next(soc *c, int timeout_ms)
{
    int64_t end = e2e_now_ms() + timeout_ms;
    bool once = false;
    while (c->qhead == c->qlen) {
        int left = (int)(end - e2e_now_ms());
        if ((left <= 0 && once) || shc_closed(c->sh))
            return NULL;
        once = true;
        if (soc_pump(c, left > 0 ? left : 0) < 0)
            return NULL;
    }
    return c->q[c->qhead++];
}

size_t soc_count_events(const so_msg *m, uint8_t type)
{
    size_t n = 0;
    for (size_t i = 0; i < m->nevents; i++)
        n += m->events[i].type == type;
    return n;
}

const so_event *soc_event(const so_msg *m, uint8_t type, size_t i)
{
    for (size_t k = 0; k < m->nevents; k++)
        if (m->events[k].type == type && i-- == 0)
            return &m->events[k];
    return NULL;
}

so_msg *soc_wait_event(soc *c, const char *name, uint8_t type, int timeout_ms)
{
    int64_t end = e2e_now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(end - e2e_now_ms());
        if (left <= 0)
            return NULL;
        so_msg *m = soc_next(c, left);
        if (!m)
            return NULL;
        if (strcmp(m->name, name) == 0 && soc_count_events(m, type) > 0)
            return m;
        soc_msg_free(m);
    }
}

soc *soc_connect(int port, const char *path, int enc, int rcvbuf)
{
    soc *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    signal(SIGPIPE, SIG_IGN); /* a killed server must not kill the test */
    c->msg_type = enc == 3 ? SO_MSG_AMF3 : SO_MSG_AMF0;
    char url[512], err[600];
    snprintf(url, sizeof(url), "rtmp://127.0.0.1:%d/%s", port, path);
    shc_opts o = {.url = url, .amf3 = enc == 3, .timeout_ms = 5000, .rcvbuf = rcvbuf};
    c->sh = shc_connect(&o, err, sizeof(err));
    if (!c->sh) {
        fprintf(stderr, "soc: connect to %s failed: %s\n", url, err);
        free(c);
        return NULL;
    }
    return c;
}

void soc_close(soc *c)
{
    if (!c)
        return;
    shc_close(c->sh);
    soc_discard(c);
    free(c->q);
    for (size_t i = 0; i < c->nobjs; i++) {
        obj_clear(&c->objs[i]);
        free(c->objs[i].slots);
    }
    for (size_t i = 0; i < c->npend; i++) {
        free(c->pend[i].key);
        amf_unref(c->pend[i].value);
    }
    free(c->pend);
    free(c);
}

bool soc_closed(const soc *c) { return shc_closed(c->sh); }
unsigned soc_rx_count(const soc *c, uint8_t type) { return type == SO_MSG_AMF3 ? c->rx16 : c->rx19; }
int soc_fd(const soc *c) { return shc_fd(c->sh); }

/* ---- sending ---- */

int soc_send_body(soc *c, const uint8_t *body, size_t len)
{
    return shc_so_send(c->sh, body, len);
}

static int send_buf(soc *c, sh_buf *b, int rc)
{
    if (rc == 0 && !b->failed)
        rc = soc_send_body(c, b->data, b->len);
    else
        rc = -1;
    sh_buf_cleanup(b);
    return rc;
}

int soc_use(soc *c, const char *name, uint32_t version, bool persistent)
{
    sh_buf b;
    sh_buf_init(&b, 0);
    return send_buf(c, &b, so_wire_client_use(&b, c->msg_type, name, version, persistent));
}

int soc_release(soc *c, const char *name, bool persistent)
{
    sh_buf b;
    sh_buf_init(&b, 0);
    return send_buf(c, &b, so_wire_client_release(&b, c->msg_type, name, soc_version(c, name),
                                                  persistent));
}

int soc_set(soc *c, const char *name, uint32_t version, bool persistent, size_t n,
            const char *const *keys, amf_value *const *values)
{
    sh_buf b;
    sh_buf_init(&b, 0);
    int rc = so_wire_client_request_change(&b, c->msg_type, name, version, persistent, n,
                                           keys, values);
    for (size_t i = 0; rc == 0 && i < n; i++)
        pending_add(c, name, keys[i], values[i]);
    return send_buf(c, &b, rc);
}

int soc_set_num(soc *c, const char *name, uint32_t version, bool persistent,
                const char *key, double v)
{
    amf_value *x = amf_number(v);
    int rc = soc_set(c, name, version, persistent, 1, &key, &x);
    amf_unref(x);
    return rc;
}

int soc_set_str(soc *c, const char *name, uint32_t version, bool persistent,
                const char *key, const char *v)
{
    amf_value *x = amf_string_cstr(v);
    int rc = soc_set(c, name, version, persistent, 1, &key, &x);
    amf_unref(x);
    return rc;
}

int soc_remove(soc *c, const char *name, uint32_t version, bool persistent, const char *key)
{
    sh_buf b;
    sh_buf_init(&b, 0);
    int rc = so_wire_client_request_remove(&b, c->msg_type, name, version, persistent, 1, &key);
    if (rc == 0)
        pending_add(c, name, key, NULL);
    return send_buf(c, &b, rc);
}

int soc_send(soc *c, const char *name, bool persistent, const char *handler,
             size_t nargs, amf_value *const *args)
{
    sh_buf b;
    sh_buf_init(&b, 0);
    return send_buf(c, &b, so_wire_client_send(&b, c->msg_type, name, soc_version(c, name),
                                               persistent, handler, nargs, args));
}
