/* so_wire.c - shared-object message codec; contract in so_wire.h. */
#include "so_wire.h"

#include "sh_mem.h"

#include <stdlib.h>
#include <string.h>

const so_wire_limits so_wire_default_limits = {
    .max_events = SO_WIRE_DEFAULT_MAX_EVENTS,
    .max_pairs = SO_WIRE_DEFAULT_MAX_PAIRS,
    .max_args = SO_WIRE_DEFAULT_MAX_ARGS,
    .max_value = SO_WIRE_DEFAULT_MAX_VALUE,
    .max_memory = SO_WIRE_DEFAULT_MAX_MEMORY,
    .amf = {
        .max_depth = AMF_DEFAULT_MAX_DEPTH,
        .max_string = AMF_DEFAULT_MAX_STRING,
        .max_elements = AMF_DEFAULT_MAX_ELEMENTS,
        .max_refs = AMF_DEFAULT_MAX_REFS,
        .max_total = SO_WIRE_DEFAULT_MAX_VALUE,
    },
};

const char *so_event_name(uint8_t type)
{
    static const char *const names[] = {
        "unknown", "use", "release", "request-change", "change", "success",
        "send-message", "status", "clear", "remove", "request-remove",
        "use-success",
    };
    return type < sizeof(names) / sizeof(names[0]) ? names[type] : "unknown";
}

void so_msg_init(so_msg *m)
{
    memset(m, 0, sizeof(*m));
}

static void event_cleanup(so_event *ev)
{
    for (size_t i = 0; i < ev->nkv; i++) {
        free(ev->kv[i].key);
        amf_unref(ev->kv[i].value);
    }
    free(ev->kv);
    free(ev->handler);
    for (size_t i = 0; i < ev->nargs; i++)
        amf_unref(ev->args[i]);
    free(ev->args);
    free(ev->code);
    free(ev->level);
    memset(ev, 0, sizeof(*ev));
}

void so_msg_cleanup(so_msg *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nevents; i++)
        event_cleanup(&m->events[i]);
    free(m->events);
    free(m->name);
    so_msg_init(m);
}

static int event_copy(so_event *d, const so_event *s)
{
    d->type = s->type;
    if (s->nkv) {
        if (!(d->kv = calloc(s->nkv, sizeof(*d->kv))))
            return SH_ENOMEM;
        for (size_t i = 0; i < s->nkv; i++, d->nkv++) {
            d->kv[i] = s->kv[i];
            if (!(d->kv[i].key = sh_memdup0(s->kv[i].key, s->kv[i].key_len))) {
                d->kv[i].value = NULL;
                return SH_ENOMEM;
            }
            if (d->kv[i].value)
                amf_ref(d->kv[i].value);
        }
    }
    if (s->handler) {
        if (!(d->handler = sh_memdup0(s->handler, s->handler_len)))
            return SH_ENOMEM;
        d->handler_len = s->handler_len;
    }
    if (s->nargs) {
        if (!(d->args = calloc(s->nargs, sizeof(*d->args))))
            return SH_ENOMEM;
        for (; d->nargs < s->nargs; d->nargs++)
            d->args[d->nargs] = amf_ref(s->args[d->nargs]);
    }
    if ((s->code && !(d->code = sh_memdup0(s->code, strlen(s->code)))) ||
        (s->level && !(d->level = sh_memdup0(s->level, strlen(s->level)))))
        return SH_ENOMEM;
    return 0;
}

int so_msg_copy(so_msg *dst, const so_msg *src)
{
    so_msg_init(dst);
    dst->name_len = src->name_len;
    dst->version = src->version;
    dst->persistent = src->persistent;
    dst->flags = src->flags;
    int rc = (dst->name = sh_memdup0(src->name ? src->name : "", src->name_len)) ? 0 : SH_ENOMEM;
    if (rc == 0 && src->nevents && !(dst->events = calloc(src->nevents, sizeof(*dst->events))))
        rc = SH_ENOMEM;
    if (rc == 0)
        dst->cap_events = src->nevents;
    for (size_t i = 0; rc == 0 && i < src->nevents; i++) {
        dst->nevents++;
        rc = event_copy(&dst->events[i], &src->events[i]);
    }
    if (rc < 0)
        so_msg_cleanup(dst);
    return rc;
}

/* ---------------------------------------------------------------- decode */

/* Memory: c->own counts what the message holds outside the raw-AMF3
 * context (names, keys, arrays, values of the AMF0 form); the decoders
 * count their own tables, and amf3 its values too.  The sum never passes
 * c->budget: each allocation here is checked first, and each value is
 * decoded with what is left as the decoder's budget. */
typedef struct dec_ctx {
    const so_wire_limits *lim;
    amf_limits al;         /* limits of one value */
    amf_dec *amf;          /* AMF0 form: a fresh context per value */
    amf_dec *amf3;         /* raw AMF3 form: one context for the message */
    amf_encoding form;     /* of the event being read */
    sh_error *err;
    const uint8_t *base;   /* start of the body, for error offsets */
    uint32_t pairs;        /* pairs seen so far in the message */
    size_t budget, own;
} dec_ctx;

static size_t off_of(const dec_ctx *c, const uint8_t *p)
{
    return (size_t)(p - c->base);
}

static size_t msg_mem(const dec_ctx *c)
{
    return c->own + amf_dec_mem(c->amf) + amf_dec_mem(c->amf3);
}

static int charge(dec_ctx *c, size_t n, const uint8_t *at)
{
    size_t used = msg_mem(c);
    if (used > c->budget || n > c->budget - used)
        return SH_FAIL(c->err, SH_ELIMIT, "message would hold more than max_memory",
                       off_of(c, at));
    c->own += n;
    return 0;
}

/* Copies n bytes (NUL-terminated), counted. */
static int dup_bytes(dec_ctx *c, const uint8_t *p, size_t n, char **out)
{
    int rc = charge(c, amf_mem_block(n + 1), p);
    if (rc < 0)
        return rc;
    char *s = malloc(n + 1);
    if (!s)
        return SH_FAIL(c->err, SH_ENOMEM, "out of memory", off_of(c, p));
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    *out = s;
    return 0;
}

/* Makes room for one more element in *arr (doubling from 4), counted. */
static int grow(dec_ctx *c, void **arr, size_t *cap, size_t n, size_t elem, const uint8_t *at)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 4;
    int rc = charge(c, amf_mem_block(ncap * elem) - amf_mem_block(*cap * elem), at);
    if (rc < 0)
        return rc;
    void *q = realloc(*arr, ncap * elem);
    if (!q)
        return SH_FAIL(c->err, SH_ENOMEM, "out of memory", off_of(c, at));
    *arr = q;
    *cap = ncap;
    return 0;
}

/* Reads a u16-length string inside [r->p, r->end); SH_EPROTO when it
 * overruns the event. */
static int rd_str(dec_ctx *c, sh_rd *r, char **out, size_t *out_len)
{
    uint16_t n;
    const uint8_t *p;
    if (sh_rd_u16be(r, &n) < 0 || sh_rd_bytes(r, n, &p) < 0)
        return SH_FAIL(c->err, SH_EPROTO, "string overruns its event", off_of(c, r->p));
    int rc = dup_bytes(c, p, n, out);
    if (rc == 0 && out_len)
        *out_len = n;
    return rc;
}

/* Decodes one value from inside the event, in the event's form: AMF0 (an
 * 0x11 marker switches that value to AMF3) in a context of its own, or
 * raw AMF3 in the message's context.  *used: its wire bytes; *mem: the
 * memory it holds (amf_value_mem). */
static int rd_value_as(dec_ctx *c, sh_rd *r, amf_encoding form, amf_value **v, size_t *used,
                       size_t *mem)
{
    amf_dec *d;
    if (form == AMF_ENC_AMF0) {
        d = c->amf; /* reset after each value: a context of its own */
    } else {
        if (!c->amf3 && !(c->amf3 = amf_dec_new(&c->al)))
            return SH_FAIL(c->err, SH_ENOMEM, "out of memory", off_of(c, r->p));
        d = c->amf3;
    }
    /* the value's own budget, within what the message has left */
    size_t total = msg_mem(c);
    size_t max = amf_dec_mem(d) + (total < c->budget ? c->budget - total : 0);
    size_t own = amf_limits_memory(&c->al);
    amf_dec_set_max_memory(d, max < own ? max : own);
    size_t consumed = 0;
    sh_error e = {0};
    int rc = amf_decode(d, form, r->p, sh_rd_left(r), &consumed, v, &e);
    if (rc == SH_EMORE)
        return SH_FAIL(c->err, SH_EPROTO, "value overruns its event", off_of(c, r->p));
    if (rc < 0) {
        if (c->err) {
            c->err->code = rc;
            c->err->what = e.what ? e.what : "bad AMF value";
            c->err->where = e.where ? e.where : SH_HERE;
            c->err->offset = off_of(c, r->p) + e.offset;
        }
        return rc;
    }
    if (consumed > c->lim->max_value) {
        amf_unref(*v);
        *v = NULL;
        return SH_FAIL(c->err, SH_ELIMIT, "value larger than max_value", off_of(c, r->p));
    }
    if (form == AMF_ENC_AMF0) {
        /* the value is the message's now; the context keeps its tables */
        *mem = amf_dec_last_mem(d);
        amf_dec_reset(d);
        c->own += *mem;
    } else {
        *mem = amf_value_mem(*v); /* may share blocks with earlier values */
    }
    r->p += consumed;
    *used = consumed;
    return 0;
}

static int rd_value(dec_ctx *c, sh_rd *r, amf_value **v, size_t *used, size_t *mem)
{
    return rd_value_as(c, r, c->form, v, used, mem);
}

static int dec_pairs(dec_ctx *c, sh_rd *r, so_event *ev)
{
    size_t cap = 0;
    while (sh_rd_left(r) > 0) {
        if (c->pairs >= c->lim->max_pairs)
            return SH_FAIL(c->err, SH_ELIMIT, "too many pairs in one message", off_of(c, r->p));
        int rc = grow(c, (void **)&ev->kv, &cap, ev->nkv, sizeof(*ev->kv), r->p);
        if (rc < 0)
            return rc;
        so_kv *kv = &ev->kv[ev->nkv];
        memset(kv, 0, sizeof(*kv));
        rc = rd_str(c, r, &kv->key, &kv->key_len);
        if (rc < 0)
            return rc;
        ev->nkv++; /* counted now so cleanup frees the key */
        c->pairs++;
        rc = rd_value(c, r, &kv->value, &kv->value_len, &kv->value_mem);
        if (rc < 0)
            return rc;
    }
    if (ev->nkv == 0)
        return SH_FAIL(c->err, SH_EPROTO, "change event without a pair", off_of(c, r->p));
    return 0;
}

static int dec_key(dec_ctx *c, sh_rd *r, so_event *ev)
{
    int rc = charge(c, amf_mem_block(sizeof(*ev->kv)), r->p);
    if (rc < 0)
        return rc;
    ev->kv = calloc(1, sizeof(*ev->kv));
    if (!ev->kv)
        return SH_FAIL(c->err, SH_ENOMEM, "out of memory", off_of(c, r->p));
    rc = rd_str(c, r, &ev->kv[0].key, &ev->kv[0].key_len);
    if (rc < 0)
        return rc;
    ev->nkv = 1;
    return 0;
}

static int dec_send(dec_ctx *c, sh_rd *r, so_event *ev)
{
    amf_value *h = NULL;
    size_t used, mem;
    /* Red5 writes the handler as an AMF0 string even before raw AMF3
     * arguments; 0x02 is no AMF3 string marker, so this cannot mislead */
    amf_encoding hform = sh_rd_left(r) > 0 && *r->p == AMF0_STRING ? AMF_ENC_AMF0 : c->form;
    int rc = rd_value_as(c, r, hform, &h, &used, &mem);
    if (rc < 0)
        return rc;
    if (hform == AMF_ENC_AMF0)
        c->own -= mem; /* dropped below */
    size_t hl;
    const char *hs = amf_type_of(h) == AMF_STRING ? amf_as_string(h, &hl) : NULL;
    if (!hs) {
        amf_unref(h);
        return SH_FAIL(c->err, SH_EPROTO, "send-message handler is not a string", off_of(c, r->p));
    }
    rc = dup_bytes(c, (const uint8_t *)hs, hl, &ev->handler);
    ev->handler_len = hl;
    amf_unref(h);
    if (rc < 0)
        return rc;
    size_t cap = 0;
    while (sh_rd_left(r) > 0) {
        if (ev->nargs >= c->lim->max_args)
            return SH_FAIL(c->err, SH_ELIMIT, "too many send-message arguments", off_of(c, r->p));
        rc = grow(c, (void **)&ev->args, &cap, ev->nargs, sizeof(*ev->args), r->p);
        if (rc < 0)
            return rc;
        rc = rd_value(c, r, &ev->args[ev->nargs], &used, &mem);
        if (rc < 0)
            return rc;
        ev->nargs++;
    }
    return 0;
}

static int dec_status(dec_ctx *c, sh_rd *r, so_event *ev)
{
    int rc = rd_str(c, r, &ev->code, NULL);
    if (rc < 0)
        return rc;
    return rd_str(c, r, &ev->level, NULL);
}

static int dec_event_as(dec_ctx *c, const uint8_t *p, size_t n, so_event *ev)
{
    sh_rd r;
    sh_rd_init(&r, p, n);
    switch (ev->type) {
    case SO_EV_REQUEST_CHANGE:
    case SO_EV_CHANGE:
        return dec_pairs(c, &r, ev);
    case SO_EV_SUCCESS:
    case SO_EV_REMOVE:
    case SO_EV_REQUEST_REMOVE:
        return dec_key(c, &r, ev);
    case SO_EV_SEND_MESSAGE:
        return dec_send(c, &r, ev);
    case SO_EV_STATUS:
        return dec_status(c, &r, ev);
    default:
        /* Use, Release, Clear, UseSuccess carry nothing; unknown types are
         * kept with their type only.  Any body bytes are skipped. */
        return 0;
    }
}

/* Reads one event.  Its values are read as AMF0 first; in a type-16
 * message an event that does not read whole that way is read again with
 * raw AMF3 values (see so_wire.h).  When both fail, the AMF0 reading's
 * error is reported: how far a misreading gets says nothing, so one
 * fixed choice keeps reports reproducible. */
static int dec_event(dec_ctx *c, uint8_t msg_type, uint8_t type, const uint8_t *p, size_t n,
                     so_event *ev)
{
    sh_error *caller = c->err, first = {0}, second = {0};
    size_t own = c->own;
    uint32_t pairs = c->pairs;
    ev->type = type;
    c->form = AMF_ENC_AMF0;
    c->err = &first;
    int rc = dec_event_as(c, p, n, ev);
    bool values = type == SO_EV_REQUEST_CHANGE || type == SO_EV_CHANGE ||
                  type == SO_EV_SEND_MESSAGE;
    if (rc < 0 && rc != SH_ENOMEM && msg_type == SO_MSG_AMF3 && values) {
        event_cleanup(ev);
        ev->type = type;
        c->own = own;
        c->pairs = pairs;
        c->form = AMF_ENC_AMF3;
        c->err = &second;
        if (dec_event_as(c, p, n, ev) == 0)
            rc = 0;
    }
    c->err = caller;
    if (rc < 0 && caller)
        *caller = first;
    return rc;
}

static int dec_body(dec_ctx *c, uint8_t msg_type, sh_rd *r, so_msg *m)
{
    if (msg_type == SO_MSG_AMF3) {
        uint8_t lead;
        if (sh_rd_u8(r, &lead) < 0)
            return SH_FAIL(c->err, SH_EMORE, "truncated header", 0);
        if (lead != 0 && lead != 3)
            return SH_FAIL(c->err, SH_EPROTO, "bad type-16 leading byte", 0);
    } else if (msg_type != SO_MSG_AMF0) {
        return SH_FAIL(c->err, SH_EINVAL, "not a shared-object message type", 0);
    }
    uint16_t nlen;
    const uint8_t *name;
    uint32_t flags, reserved;
    if (sh_rd_u16be(r, &nlen) < 0 || sh_rd_bytes(r, nlen, &name) < 0 ||
        sh_rd_u32be(r, &m->version) < 0 || sh_rd_u32be(r, &flags) < 0 ||
        sh_rd_u32be(r, &reserved) < 0)
        return SH_FAIL(c->err, SH_EMORE, "truncated header", sh_rd_offset(r));
    int rc = dup_bytes(c, name, nlen, &m->name);
    if (rc < 0)
        return rc;
    m->name_len = nlen;
    m->flags = flags;
    m->persistent = (flags & SO_FLAG_PERSISTENT) != 0;

    while (sh_rd_left(r) > 0) {
        uint8_t type;
        uint32_t elen;
        const uint8_t *ebody;
        size_t at = sh_rd_offset(r);
        if (sh_rd_u8(r, &type) < 0 || sh_rd_u32be(r, &elen) < 0 ||
            sh_rd_bytes(r, elen, &ebody) < 0)
            return SH_FAIL(c->err, SH_EMORE, "truncated event", at);
        if (m->nevents >= c->lim->max_events)
            return SH_FAIL(c->err, SH_ELIMIT, "too many events in one message", at);
        rc = grow(c, (void **)&m->events, &m->cap_events, m->nevents, sizeof(*m->events),
                  c->base + at);
        if (rc < 0)
            return rc;
        so_event *ev = &m->events[m->nevents++];
        memset(ev, 0, sizeof(*ev));
        rc = dec_event(c, msg_type, type, ebody, elen, ev);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int so_wire_decode(uint8_t msg_type, const uint8_t *body, size_t len,
                   const so_wire_limits *limits, so_msg *m, sh_error *err)
{
    dec_ctx c = {
        .lim = limits ? limits : &so_wire_default_limits,
        .err = err,
        .base = body,
    };
    c.al = c.lim->amf;
    if (c.al.max_total == 0 || c.al.max_total > c.lim->max_value)
        c.al.max_total = c.lim->max_value;
    c.budget = c.lim->max_memory;
    c.amf = amf_dec_new(&c.al);
    if (!c.amf)
        return SH_FAIL(err, SH_ENOMEM, "out of memory", 0);
    sh_rd r;
    sh_rd_init(&r, body, len);
    int rc = dec_body(&c, msg_type, &r, m);
    amf_dec_free(c.amf);
    amf_dec_free(c.amf3);
    if (rc < 0)
        so_msg_cleanup(m);
    return rc;
}

/* ---------------------------------------------------------------- encode */

static int buf_rc(const sh_buf *out)
{
    return out->failed ? SH_ENOMEM : 0;
}

int so_wire_put_header(sh_buf *out, uint8_t msg_type, const char *name,
                       size_t name_len, uint32_t version, bool persistent)
{
    if (name_len > UINT16_MAX)
        return SH_EINVAL;
    if (msg_type == SO_MSG_AMF3)
        sh_buf_put_u8(out, 0);
    sh_buf_put_u16be(out, (uint16_t)name_len);
    sh_buf_append(out, name, name_len);
    sh_buf_put_u32be(out, version);
    sh_buf_put_u32be(out, persistent ? SO_FLAG_PERSISTENT : 0);
    sh_buf_put_u32be(out, 0);
    return buf_rc(out);
}

int so_wire_event_begin(sh_buf *out, uint8_t type, size_t *mark)
{
    sh_buf_put_u8(out, type);
    *mark = out->len;
    sh_buf_put_u32be(out, 0);
    return buf_rc(out);
}

int so_wire_event_end(sh_buf *out, size_t mark)
{
    if (out->failed)
        return SH_ENOMEM;
    size_t n = out->len - mark - 4;
    if (n > UINT32_MAX)
        return SH_ELIMIT;
    sh_put_u32be(out->data + mark, (uint32_t)n);
    return 0;
}

int so_wire_event_key(sh_buf *out, const char *key, size_t key_len)
{
    if (key_len > UINT16_MAX)
        return SH_EINVAL;
    sh_buf_put_u16be(out, (uint16_t)key_len);
    sh_buf_append(out, key, key_len);
    return buf_rc(out);
}

/* Values AMF0 always carries exactly: no need to check the round trip. */
static bool amf0_exact_scalar(amf_type t)
{
    return t == AMF_NUMBER || t == AMF_BOOLEAN || t == AMF_STRING || t == AMF_NULL ||
           t == AMF_UNDEFINED || t == AMF_DATE;
}

static int enc_value(amf_enc *enc, amf_encoding how, const amf_value *v, sh_buf *out)
{
    if (!enc)
        return amf_encode1(how, v, out);
    amf_enc_reset(enc);
    return amf_encode(enc, how, v, out);
}

/* True when bytes decode (AMF0) to a value equal to v. */
static bool amf0_round_trips(const uint8_t *p, size_t n, const amf_value *v)
{
    amf_dec *d = amf_dec_new(NULL);
    if (!d)
        return false;
    amf_value *back = NULL;
    size_t used = 0;
    bool ok = amf_decode(d, AMF_ENC_AMF0, p, n, &used, &back, NULL) == 0 && used == n &&
              amf_equal(back, v);
    amf_unref(back);
    amf_dec_free(d);
    return ok;
}

int so_wire_event_value(sh_buf *out, amf_enc *enc, const amf_value *v)
{
    if (amf0_exact_scalar(amf_type_of(v))) {
        int rc = enc_value(enc, AMF_ENC_AMF0, v, out);
        return rc < 0 ? rc : buf_rc(out);
    }
    /* AMF0 when it carries v exactly (it keeps what AMF3 would lose: date
     * time zones, ECMA counts, the unsupported marker); otherwise the whole
     * value as 0x11 + AMF3 (integers, sealed/dynamic traits, byte arrays,
     * vectors, dictionaries, XML ...).  AMF0 has no string references: a
     * value sharing one string many times (as AMF3 input may) would be
     * written out in full, so the AMF0 attempt may take at most twice the
     * memory the value holds (every value without shared strings fits:
     * each node's AMF0 form is smaller than its block plus the pointer to
     * it) and AMF3, which keeps the sharing, is used past that. */
    size_t mem = amf_value_mem(v);
    size_t cap = mem > (SH_BUF_MAX_DEFAULT - 4096) / 2 ? SH_BUF_MAX_DEFAULT : 2 * mem + 4096;
    sh_buf tmp;
    sh_buf_init(&tmp, cap);
    int rc = enc_value(enc, AMF_ENC_AMF0, v, &tmp);
    if (rc == 0 && !tmp.failed && amf0_round_trips(tmp.data, tmp.len, v)) {
        rc = sh_buf_append(out, tmp.data, tmp.len);
    } else {
        sh_buf_put_u8(out, AMF0_AVMPLUS);
        rc = enc_value(enc, AMF_ENC_AMF3, v, out);
    }
    sh_buf_cleanup(&tmp);
    return rc < 0 ? rc : buf_rc(out);
}

int so_wire_put_empty(sh_buf *out, uint8_t type)
{
    sh_buf_put_u8(out, type);
    sh_buf_put_u32be(out, 0);
    return buf_rc(out);
}

int so_wire_put_key(sh_buf *out, uint8_t type, const char *key, size_t key_len)
{
    size_t mark;
    int rc = so_wire_event_begin(out, type, &mark);
    if (rc == 0)
        rc = so_wire_event_key(out, key, key_len);
    if (rc == 0)
        rc = so_wire_event_end(out, mark);
    return rc;
}

int so_wire_put_status(sh_buf *out, const char *code, const char *level)
{
    size_t mark;
    int rc = so_wire_event_begin(out, SO_EV_STATUS, &mark);
    if (rc == 0)
        rc = so_wire_event_key(out, code, strlen(code));
    if (rc == 0)
        rc = so_wire_event_key(out, level, strlen(level));
    if (rc == 0)
        rc = so_wire_event_end(out, mark);
    return rc;
}

int so_wire_put_pairs(sh_buf *out, uint8_t type, amf_enc *enc, size_t n,
                      const char *const *keys, const size_t *key_lens,
                      amf_value *const *values)
{
    size_t mark;
    int rc = so_wire_event_begin(out, type, &mark);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = so_wire_event_key(out, keys[i], key_lens ? key_lens[i] : strlen(keys[i]));
        if (rc == 0)
            rc = so_wire_event_value(out, enc, values[i]);
    }
    if (rc == 0)
        rc = so_wire_event_end(out, mark);
    return rc;
}

int so_wire_put_send(sh_buf *out, amf_enc *enc, const char *handler,
                     size_t handler_len, size_t nargs, amf_value *const *args)
{
    size_t mark;
    int rc = so_wire_event_begin(out, SO_EV_SEND_MESSAGE, &mark);
    if (rc < 0)
        return rc;
    amf_value *h = amf_string(handler, handler_len);
    if (!h)
        return SH_ENOMEM;
    rc = so_wire_event_value(out, enc, h);
    amf_unref(h);
    for (size_t i = 0; rc == 0 && i < nargs; i++)
        rc = so_wire_event_value(out, enc, args[i]);
    if (rc == 0)
        rc = so_wire_event_end(out, mark);
    return rc;
}

static int encode_event(sh_buf *out, amf_enc *enc, const so_event *ev)
{
    size_t mark;
    int rc = so_wire_event_begin(out, ev->type, &mark);
    switch (ev->type) {
    case SO_EV_REQUEST_CHANGE:
    case SO_EV_CHANGE:
        for (size_t i = 0; rc == 0 && i < ev->nkv; i++) {
            rc = so_wire_event_key(out, ev->kv[i].key, ev->kv[i].key_len);
            if (rc == 0)
                rc = so_wire_event_value(out, enc, ev->kv[i].value);
        }
        break;
    case SO_EV_SUCCESS:
    case SO_EV_REMOVE:
    case SO_EV_REQUEST_REMOVE:
        if (rc == 0 && ev->nkv > 0)
            rc = so_wire_event_key(out, ev->kv[0].key, ev->kv[0].key_len);
        break;
    case SO_EV_SEND_MESSAGE:
        if (rc == 0) {
            amf_value *h = amf_string(ev->handler ? ev->handler : "", ev->handler_len);
            if (!h)
                return SH_ENOMEM;
            rc = so_wire_event_value(out, enc, h);
            amf_unref(h);
        }
        for (size_t i = 0; rc == 0 && i < ev->nargs; i++)
            rc = so_wire_event_value(out, enc, ev->args[i]);
        break;
    case SO_EV_STATUS:
        if (rc == 0)
            rc = so_wire_event_key(out, ev->code ? ev->code : "", ev->code ? strlen(ev->code) : 0);
        if (rc == 0)
            rc = so_wire_event_key(out, ev->level ? ev->level : "", ev->level ? strlen(ev->level) : 0);
        break;
    default:
        break;
    }
    if (rc == 0)
        rc = so_wire_event_end(out, mark);
    return rc;
}

int so_wire_encode(const so_msg *m, uint8_t msg_type, sh_buf *out)
{
    int rc = so_wire_put_header(out, msg_type, m->name ? m->name : "", m->name_len,
                                m->version, m->persistent);
    if (rc < 0)
        return rc;
    amf_enc *enc = amf_enc_new();
    if (!enc)
        return SH_ENOMEM;
    for (size_t i = 0; rc == 0 && i < m->nevents; i++)
        rc = encode_event(out, enc, &m->events[i]);
    amf_enc_free(enc);
    return rc;
}

/* ---------------------------------------------------------------- client helpers */

int so_wire_client_use(sh_buf *out, uint8_t msg_type, const char *name,
                       uint32_t version, bool persistent)
{
    int rc = so_wire_put_header(out, msg_type, name, strlen(name), version, persistent);
    return rc < 0 ? rc : so_wire_put_empty(out, SO_EV_USE);
}

int so_wire_client_release(sh_buf *out, uint8_t msg_type, const char *name,
                           uint32_t version, bool persistent)
{
    int rc = so_wire_put_header(out, msg_type, name, strlen(name), version, persistent);
    return rc < 0 ? rc : so_wire_put_empty(out, SO_EV_RELEASE);
}

int so_wire_client_request_change(sh_buf *out, uint8_t msg_type, const char *name,
                                  uint32_t version, bool persistent, size_t n,
                                  const char *const *keys, amf_value *const *values)
{
    int rc = so_wire_put_header(out, msg_type, name, strlen(name), version, persistent);
    return rc < 0 ? rc : so_wire_put_pairs(out, SO_EV_REQUEST_CHANGE, NULL, n, keys, NULL, values);
}

int so_wire_client_request_remove(sh_buf *out, uint8_t msg_type, const char *name,
                                  uint32_t version, bool persistent, size_t n,
                                  const char *const *keys)
{
    int rc = so_wire_put_header(out, msg_type, name, strlen(name), version, persistent);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = so_wire_put_key(out, SO_EV_REQUEST_REMOVE, keys[i], strlen(keys[i]));
    return rc;
}

int so_wire_client_send(sh_buf *out, uint8_t msg_type, const char *name,
                        uint32_t version, bool persistent, const char *handler,
                        size_t nargs, amf_value *const *args)
{
    int rc = so_wire_put_header(out, msg_type, name, strlen(name), version, persistent);
    return rc < 0 ? rc : so_wire_put_send(out, NULL, handler, strlen(handler), nargs, args);
}
