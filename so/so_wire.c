/* so_wire.c - shared-object message codec; contract in so_wire.h. */
#include "so_wire.h"

#include <stdlib.h>
#include <string.h>

const so_wire_limits so_wire_default_limits = {
    .max_events = SO_WIRE_DEFAULT_MAX_EVENTS,
    .max_pairs = SO_WIRE_DEFAULT_MAX_PAIRS,
    .max_args = SO_WIRE_DEFAULT_MAX_ARGS,
    .max_value = SO_WIRE_DEFAULT_MAX_VALUE,
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

/* ---------------------------------------------------------------- decode */

typedef struct dec_ctx {
    const so_wire_limits *lim;
    amf_dec *amf;
    sh_error *err;
    const uint8_t *base;   /* start of the body, for error offsets */
    uint32_t pairs;        /* pairs seen so far in the message */
} dec_ctx;

static char *dup_bytes(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        if (n)
            memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static size_t off_of(const dec_ctx *c, const uint8_t *p)
{
    return (size_t)(p - c->base);
}

/* Reads a u16-length string inside [r->p, r->end); SH_EPROTO when it
 * overruns the event. */
static int rd_str(dec_ctx *c, sh_rd *r, char **out, size_t *out_len)
{
    uint16_t n;
    const uint8_t *p;
    if (sh_rd_u16be(r, &n) < 0 || sh_rd_bytes(r, n, &p) < 0)
        return SH_FAIL(c->err, SH_EPROTO, "string overruns its event", off_of(c, r->p));
    *out = dup_bytes(p, n);
    if (!*out)
        return SH_FAIL(c->err, SH_ENOMEM, "out of memory", off_of(c, r->p));
    if (out_len)
        *out_len = n;
    return 0;
}

/* Decodes one AMF0 value (0x11 switches to AMF3) from inside the event. */
static int rd_value(dec_ctx *c, sh_rd *r, amf_value **v, size_t *used)
{
    size_t consumed = 0;
    sh_error e = {0};
    amf_dec_reset(c->amf);
    int rc = amf_decode(c->amf, AMF_ENC_AMF0, r->p, sh_rd_left(r), &consumed, v, &e);
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
    r->p += consumed;
    *used = consumed;
    return 0;
}

static int dec_pairs(dec_ctx *c, sh_rd *r, so_event *ev)
{
    size_t cap = 0;
    while (sh_rd_left(r) > 0) {
        if (c->pairs >= c->lim->max_pairs)
            return SH_FAIL(c->err, SH_ELIMIT, "too many pairs in one message", off_of(c, r->p));
        if (ev->nkv == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            so_kv *nkv = realloc(ev->kv, ncap * sizeof(*nkv));
            if (!nkv)
                return SH_FAIL(c->err, SH_ENOMEM, "out of memory", off_of(c, r->p));
            ev->kv = nkv;
            cap = ncap;
        }
        so_kv *kv = &ev->kv[ev->nkv];
        memset(kv, 0, sizeof(*kv));
        int rc = rd_str(c, r, &kv->key, &kv->key_len);
        if (rc < 0)
            return rc;
        ev->nkv++; /* counted now so cleanup frees the key */
        c->pairs++;
        rc = rd_value(c, r, &kv->value, &kv->value_len);
        if (rc < 0)
            return rc;
    }
    if (ev->nkv == 0)
        return SH_FAIL(c->err, SH_EPROTO, "change event without a pair", off_of(c, r->p));
    return 0;
}

static int dec_key(dec_ctx *c, sh_rd *r, so_event *ev)
{
    ev->kv = calloc(1, sizeof(*ev->kv));
    if (!ev->kv)
        return SH_FAIL(c->err, SH_ENOMEM, "out of memory", off_of(c, r->p));
    int rc = rd_str(c, r, &ev->kv[0].key, &ev->kv[0].key_len);
    if (rc < 0)
        return rc;
    ev->nkv = 1;
    return 0;
}

static int dec_send(dec_ctx *c, sh_rd *r, so_event *ev)
{
    amf_value *h = NULL;
    size_t used;
    int rc = rd_value(c, r, &h, &used);
    if (rc < 0)
        return rc;
    size_t hl;
    const char *hs = amf_type_of(h) == AMF_STRING ? amf_as_string(h, &hl) : NULL;
    if (!hs) {
        amf_unref(h);
        return SH_FAIL(c->err, SH_EPROTO, "send-message handler is not a string", off_of(c, r->p));
    }
    ev->handler = dup_bytes((const uint8_t *)hs, hl);
    ev->handler_len = hl;
    amf_unref(h);
    if (!ev->handler)
        return SH_FAIL(c->err, SH_ENOMEM, "out of memory", off_of(c, r->p));
    size_t cap = 0;
    while (sh_rd_left(r) > 0) {
        if (ev->nargs >= c->lim->max_args)
            return SH_FAIL(c->err, SH_ELIMIT, "too many send-message arguments", off_of(c, r->p));
        if (ev->nargs == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            amf_value **na = realloc(ev->args, ncap * sizeof(*na));
            if (!na)
                return SH_FAIL(c->err, SH_ENOMEM, "out of memory", off_of(c, r->p));
            ev->args = na;
            cap = ncap;
        }
        rc = rd_value(c, r, &ev->args[ev->nargs], &used);
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

static int dec_event(dec_ctx *c, uint8_t type, const uint8_t *p, size_t n, so_event *ev)
{
    sh_rd r;
    sh_rd_init(&r, p, n);
    ev->type = type;
    switch (type) {
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
    m->name = dup_bytes(name, nlen);
    if (!m->name)
        return SH_FAIL(c->err, SH_ENOMEM, "out of memory", sh_rd_offset(r));
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
        if (m->nevents == m->cap_events) {
            size_t ncap = m->cap_events ? m->cap_events * 2 : 4;
            so_event *ne = realloc(m->events, ncap * sizeof(*ne));
            if (!ne)
                return SH_FAIL(c->err, SH_ENOMEM, "out of memory", at);
            m->events = ne;
            m->cap_events = ncap;
        }
        so_event *ev = &m->events[m->nevents++];
        memset(ev, 0, sizeof(*ev));
        int rc = dec_event(c, type, ebody, elen, ev);
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
    amf_limits al = c.lim->amf;
    if (al.max_total == 0 || al.max_total > c.lim->max_value)
        al.max_total = c.lim->max_value;
    c.amf = amf_dec_new(&al);
    if (!c.amf)
        return SH_FAIL(err, SH_ENOMEM, "out of memory", 0);
    sh_rd r;
    sh_rd_init(&r, body, len);
    int rc = dec_body(&c, msg_type, &r, m);
    amf_dec_free(c.amf);
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
     * vectors, dictionaries, XML ...). */
    sh_buf tmp;
    sh_buf_init(&tmp, SH_BUF_MAX_DEFAULT);
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
