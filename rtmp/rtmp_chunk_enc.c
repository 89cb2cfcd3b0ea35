/* rtmp_chunk_enc.c - chunk stream encoder (spec 5.3).
 *
 * The stateful encoder remembers, per chunk stream id, the last header it
 * wrote and picks the smallest header that lets the peer rebuild the new
 * one: type 0 when the message stream changes or time goes backwards,
 * type 1 when length or type change, type 2 when only the delta changes,
 * type 3 when everything repeats.  After a type 0 header the remembered
 * delta is its timestamp field (the FFmpeg / librtmp convention the
 * decoder follows too).
 *
 * Extended timestamps (spec 5.3.1.3): a field value >= 0xFFFFFF is written
 * as 0xFFFFFF plus 4 bytes, and those 4 bytes are repeated on every type 3
 * chunk that follows while that header is in effect (2012 spec, FFmpeg).
 *
 * The stateless form (rtmp_chunk_write_full / rtmp_chunk_shared) always
 * starts with a type 0 header, so one encoding can be queued to any number
 * of connections that use the same out chunk size.
 */
#include "rtmp_int.h"
#include "sh_mem.h"

#include <stdlib.h>
#include <string.h>

typedef struct enc_cs {
    uint32_t csid;
    uint8_t type;
    bool ext;
    uint32_t sid, len, ts, delta;
    uint32_t ext_val;
} enc_cs;

struct rtmp_chunk_enc {
    uint32_t chunk_size;
    enc_cs *cs;      /* owned */
    size_t n, cap;
};

rtmp_chunk_enc *rtmp_chunk_enc_new(void)
{
    rtmp_chunk_enc *e = calloc(1, sizeof(*e));
    if (e)
        e->chunk_size = RTMP_DEFAULT_CHUNK_SIZE;
    return e;
}

void rtmp_chunk_enc_free(rtmp_chunk_enc *e)
{
    if (!e)
        return;
    free(e->cs);
    free(e);
}

void rtmp_chunk_enc_set_chunk_size(rtmp_chunk_enc *e, uint32_t size)
{
    if (size > 0)
        e->chunk_size = size;
}

uint32_t rtmp_chunk_enc_chunk_size(const rtmp_chunk_enc *e)
{
    return e->chunk_size;
}

static size_t basic_size(uint32_t csid)
{
    return csid < 64 ? 1 : csid < 320 ? 2 : 3;
}

static uint8_t *put_basic(uint8_t *p, unsigned fmt, uint32_t csid)
{
    if (csid < 64) {
        *p++ = (uint8_t)(fmt << 6 | csid);
    } else if (csid < 320) {
        *p++ = (uint8_t)(fmt << 6);
        *p++ = (uint8_t)(csid - 64);
    } else {
        *p++ = (uint8_t)(fmt << 6 | 1);
        *p++ = (uint8_t)((csid - 64) & 0xFF);
        *p++ = (uint8_t)((csid - 64) >> 8);
    }
    return p;
}

static const uint8_t msg_hdr_size[4] = {11, 7, 3, 0};

/* One message's chunks, first header of type fmt.  `field` is the
 * timestamp (type 0) or delta (types 1, 2) of the header, or for type 3
 * the extended value in effect (only used when ext). */
typedef struct chunk_plan {
    unsigned fmt;
    bool ext;
    uint32_t field;
} chunk_plan;

static size_t plan_size(const rtmp_msg *m, const chunk_plan *pl, uint32_t chunk_size)
{
    size_t bh = basic_size(m->csid), x = pl->ext ? 4 : 0;
    size_t nchunks = m->len == 0 ? 1 : (m->len + chunk_size - 1) / chunk_size;
    return bh + msg_hdr_size[pl->fmt] + x + m->len + (nchunks - 1) * (bh + x);
}

static void plan_write(uint8_t *p, const rtmp_msg *m, const chunk_plan *pl, uint32_t chunk_size)
{
    p = put_basic(p, pl->fmt, m->csid);
    if (pl->fmt <= 2) {
        sh_put_u24be(p, pl->ext ? 0xFFFFFF : pl->field);
        p += 3;
    }
    if (pl->fmt <= 1) {
        sh_put_u24be(p, (uint32_t)m->len);
        p[3] = m->type;
        p += 4;
    }
    if (pl->fmt == 0) {
        p[0] = (uint8_t)m->stream_id;
        p[1] = (uint8_t)(m->stream_id >> 8);
        p[2] = (uint8_t)(m->stream_id >> 16);
        p[3] = (uint8_t)(m->stream_id >> 24);
        p += 4;
    }
    if (pl->ext) {
        sh_put_u32be(p, pl->field);
        p += 4;
    }
    size_t off = 0;
    for (;;) {
        size_t k = m->len - off < chunk_size ? m->len - off : chunk_size;
        if (k)
            memcpy(p, m->data + off, k);
        p += k;
        off += k;
        if (off >= m->len)
            break;
        p = put_basic(p, 3, m->csid);
        if (pl->ext) {
            sh_put_u32be(p, pl->field);
            p += 4;
        }
    }
}

static int msg_check(const rtmp_msg *m, uint32_t chunk_size)
{
    if (!m || m->csid < 2 || m->csid > 65599 || m->len > 0xFFFFFF || chunk_size == 0 ||
        (m->len && !m->data))
        return SH_EINVAL;
    return 0;
}

static int plan_append(const rtmp_msg *m, const chunk_plan *pl, uint32_t chunk_size, sh_buf *out)
{
    size_t n = plan_size(m, pl, chunk_size);
    int rc = sh_buf_reserve(out, n);
    if (rc)
        return rc;
    plan_write(out->data + out->len, m, pl, chunk_size);
    sh_buf_advance(out, n);
    return 0;
}

static chunk_plan full_plan(const rtmp_msg *m)
{
    chunk_plan pl = {0, m->timestamp >= 0xFFFFFF, m->timestamp};
    return pl;
}

int rtmp_chunk_write_full(const rtmp_msg *m, uint32_t chunk_size, sh_buf *out)
{
    int rc = msg_check(m, chunk_size);
    if (rc)
        return rc;
    chunk_plan pl = full_plan(m);
    return plan_append(m, &pl, chunk_size, out);
}

sh_rcbuf *rtmp_chunk_shared(const rtmp_msg *m, uint32_t chunk_size)
{
    if (msg_check(m, chunk_size))
        return NULL;
    chunk_plan pl = full_plan(m);
    size_t n = plan_size(m, &pl, chunk_size);
    sh_rcbuf *b = sh_rcbuf_new(n);
    if (!b)
        return NULL;
    plan_write(b->data, m, &pl, chunk_size);
    b->len = n;
    return b;
}

static enc_cs *enc_find(rtmp_chunk_enc *e, uint32_t csid, bool *fresh)
{
    *fresh = false;
    for (size_t i = 0; i < e->n; i++)
        if (e->cs[i].csid == csid)
            return &e->cs[i];
    /* most connections use two chunk streams (control, commands) */
    if (sh_array_grow((void **)&e->cs, &e->cap, e->n + 1, sizeof(*e->cs), 2))
        return NULL;
    enc_cs *c = &e->cs[e->n++];
    memset(c, 0, sizeof(*c));
    c->csid = csid;
    *fresh = true;
    return c;
}

static void enc_remember_full(enc_cs *c, const rtmp_msg *m)
{
    c->sid = m->stream_id;
    c->len = (uint32_t)m->len;
    c->type = m->type;
    c->ts = m->timestamp;
    c->delta = m->timestamp;
    c->ext = m->timestamp >= 0xFFFFFF;
    c->ext_val = m->timestamp;
}

/* Picks the header for m against the state of its chunk stream. */
static int enc_plan(rtmp_chunk_enc *e, const rtmp_msg *m, enc_cs **cp, bool *fresh,
                    chunk_plan *pl)
{
    int rc = msg_check(m, e->chunk_size);
    if (rc)
        return rc;
    enc_cs *c = enc_find(e, m->csid, fresh);
    if (!c)
        return SH_ENOMEM;
    *cp = c;
    if (*fresh || c->sid != m->stream_id || m->timestamp < c->ts) {
        *pl = full_plan(m);
        return 0;
    }
    uint32_t delta = m->timestamp - c->ts;
    if (c->len != m->len || c->type != m->type)
        *pl = (chunk_plan){1, delta >= 0xFFFFFF, delta};
    else if (c->delta != delta)
        *pl = (chunk_plan){2, delta >= 0xFFFFFF, delta};
    else
        *pl = (chunk_plan){3, c->ext, c->ext_val};
    return 0;
}

/* The header was written: remember it. */
static void enc_commit(enc_cs *c, const rtmp_msg *m, const chunk_plan *pl)
{
    if (pl->fmt == 0) {
        enc_remember_full(c, m);
        return;
    }
    c->len = (uint32_t)m->len;
    c->type = m->type;
    if (pl->fmt != 3) {
        c->delta = pl->field;
        c->ext = pl->ext;
        c->ext_val = pl->field;
    }
    c->ts = m->timestamp;
}

int rtmp_chunk_enc_write(rtmp_chunk_enc *e, const rtmp_msg *m, sh_buf *out)
{
    enc_cs *c;
    bool fresh;
    chunk_plan pl;
    int rc = enc_plan(e, m, &c, &fresh, &pl);
    if (rc)
        return rc;
    rc = plan_append(m, &pl, e->chunk_size, out);
    if (rc) {
        if (fresh)
            e->n--;
        return rc;
    }
    enc_commit(c, m, &pl);
    return 0;
}

int rtmp_chunk_enc_write_rc(rtmp_chunk_enc *e, const rtmp_msg *m, sh_rcbuf **out)
{
    enc_cs *c;
    bool fresh;
    chunk_plan pl;
    *out = NULL;
    int rc = enc_plan(e, m, &c, &fresh, &pl);
    if (rc)
        return rc;
    size_t n = plan_size(m, &pl, e->chunk_size);
    sh_rcbuf *b = sh_rcbuf_new(n);
    if (!b) {
        if (fresh)
            e->n--;
        return SH_ENOMEM;
    }
    plan_write(b->data, m, &pl, e->chunk_size);
    b->len = n;
    enc_commit(c, m, &pl);
    *out = b;
    return 0;
}

int rtmp_chunk_enc_write_small(rtmp_chunk_enc *e, const rtmp_msg *m, uint8_t *dst, size_t cap,
                               size_t *n)
{
    enc_cs *c;
    bool fresh;
    chunk_plan pl;
    int rc = enc_plan(e, m, &c, &fresh, &pl);
    if (rc)
        return rc;
    size_t need = plan_size(m, &pl, e->chunk_size);
    if (need > cap) {
        if (fresh)
            e->n--;
        return SH_ELIMIT;
    }
    plan_write(dst, m, &pl, e->chunk_size);
    enc_commit(c, m, &pl);
    *n = need;
    return 0;
}
