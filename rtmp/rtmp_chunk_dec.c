/* rtmp_chunk_dec.c - chunk stream decoder (spec 5.3), sans-I/O.
 *
 * Input may arrive split anywhere: a chunk header is collected byte by byte
 * in a small staging area (at most 3 + 11 + 4 bytes), payload bytes are
 * copied into the message buffer of their chunk stream.  The same bytes
 * split differently always give the same messages.
 *
 * Timestamps: a type 0 header carries the absolute time, types 1 and 2 a
 * delta added to the previous time of the chunk stream, and a type 3 header
 * that starts a new message adds the stored delta again.  As in FFmpeg and
 * librtmp, the "delta" remembered after a type 0 header is its timestamp
 * field, so the two encoders and this decoder agree.
 *
 * Extended timestamp on type 3 chunks: the 2012 spec (and FFmpeg, librtmp)
 * repeat it on every type 3 chunk of a stream whose last header carried
 * one; some peers do not.  Like SRS we read the 4 bytes and, when they are
 * not the expected value, treat them as payload: they are kept in a small
 * replay area and parsed again as the bytes that follow the basic header.
 *
 * Limits are checked on the header, before any payload is awaited or
 * buffered: message length, number of chunk streams, and the bytes held in
 * partial messages of all streams.  Message buffers grow as chunks arrive,
 * never from a claimed length alone.
 */
#include "rtmp.h"

#include <stdlib.h>
#include <string.h>

#define MAX_HDR (3 + 11 + 4)
/* A message buffer bigger than this is released after its message was
 * handed out, so idle chunk streams do not pin large buffers (smaller ones
 * go once the input is used up: release_idle). */
#define KEEP_BUF_MAX ((size_t)64 << 10)

typedef struct dec_cs {
    uint32_t csid;
    bool has_hdr;        /* a header was seen: types 1-3 may follow */
    bool partial;        /* a message is being collected */
    bool ext;            /* the last header carried an extended timestamp */
    uint8_t type;
    uint32_t sid, len, ts, delta;
    uint32_t ext_val;    /* the extended timestamp field last read */
    uint8_t *buf;        /* owned */
    size_t cap;
    uint32_t have;
} dec_cs;

enum { ST_HDR, ST_PAYLOAD };

struct rtmp_chunk_dec {
    rtmp_limits lim;
    uint32_t chunk_size;
    dec_cs *cs;          /* owned, ncs used */
    size_t ncs, cs_cap;
    size_t buffered;     /* bytes held in partial messages */
    int state;
    uint8_t hdr[MAX_HDR];
    size_t hdr_len;
    size_t cur;          /* index of the chunk stream being read */
    uint32_t chunk_left; /* payload bytes left in the current chunk */
    uint8_t replay[8];   /* bytes to parse again before new input */
    size_t replay_len;
    size_t returned;     /* index of the stream whose message was returned, or SIZE_MAX */
    uint64_t offset;     /* bytes consumed so far (for error reports) */
};

rtmp_chunk_dec *rtmp_chunk_dec_new(const rtmp_limits *limits)
{
    rtmp_chunk_dec *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->lim = limits ? *limits : rtmp_default_limits;
    d->chunk_size = RTMP_DEFAULT_CHUNK_SIZE;
    d->state = ST_HDR;
    d->returned = SIZE_MAX;
    return d;
}

void rtmp_chunk_dec_free(rtmp_chunk_dec *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->ncs; i++)
        free(d->cs[i].buf);
    free(d->cs);
    free(d);
}

void rtmp_chunk_dec_set_limits(rtmp_chunk_dec *d, const rtmp_limits *limits)
{
    d->lim = *limits;
}

void rtmp_chunk_dec_set_chunk_size(rtmp_chunk_dec *d, uint32_t size)
{
    if (size > 0)
        d->chunk_size = size;
}

static void cs_drop_partial(rtmp_chunk_dec *d, dec_cs *c)
{
    if (c->partial) {
        d->buffered -= c->have;
        c->partial = false;
        c->have = 0;
    }
}

void rtmp_chunk_dec_abort(rtmp_chunk_dec *d, uint32_t csid)
{
    for (size_t i = 0; i < d->ncs; i++) {
        if (d->cs[i].csid != csid)
            continue;
        /* A chunk of this stream being read right now cannot be aborted
         * (abort arrives as a whole message, between chunks). */
        if (d->state == ST_PAYLOAD && d->cur == i)
            return;
        cs_drop_partial(d, &d->cs[i]);
        return;
    }
}

static dec_cs *cs_find(rtmp_chunk_dec *d, uint32_t csid)
{
    for (size_t i = 0; i < d->ncs; i++)
        if (d->cs[i].csid == csid)
            return &d->cs[i];
    return NULL;
}

static int cs_add(rtmp_chunk_dec *d, uint32_t csid, sh_error *err)
{
    if (d->ncs >= d->lim.max_chunk_streams)
        return SH_FAIL(err, SH_ELIMIT, "chunk: too many chunk streams", d->offset);
    if (d->ncs == d->cs_cap) {
        /* Most connections use two chunk streams (control, commands). */
        size_t ncap = d->cs_cap ? d->cs_cap * 2 : 2;
        dec_cs *n = realloc(d->cs, ncap * sizeof(*n));
        if (!n)
            return SH_FAIL(err, SH_ENOMEM, "chunk: out of memory", d->offset);
        d->cs = n;
        d->cs_cap = ncap;
    }
    memset(&d->cs[d->ncs], 0, sizeof(d->cs[0]));
    d->cs[d->ncs].csid = csid;
    d->ncs++;
    return 0;
}

/* Basic header (5.3.1.1): returns its size, 0 if more bytes are needed. */
static size_t basic_hdr(const uint8_t *h, size_t n, uint32_t *csid)
{
    if (n < 1)
        return 0;
    uint32_t low = h[0] & 0x3F;
    if (low >= 2) {
        *csid = low;
        return 1;
    }
    if (low == 0) {
        if (n < 2)
            return 0;
        *csid = 64 + (uint32_t)h[1];
        return 2;
    }
    if (n < 3)
        return 0;
    *csid = 64 + (uint32_t)h[1] + ((uint32_t)h[2] << 8);
    return 3;
}

static const uint8_t msg_hdr_size[4] = {11, 7, 3, 0};

/* How many header bytes the staged bytes call for (grows as more is known).
 * Checks the message length against the limit as soon as it is visible. */
static int hdr_need(rtmp_chunk_dec *d, size_t *need, sh_error *err)
{
    uint32_t csid = 0;
    size_t bh = basic_hdr(d->hdr, d->hdr_len, &csid);
    if (!bh) {
        *need = d->hdr_len + 1;
        return 0;
    }
    unsigned fmt = d->hdr[0] >> 6;
    size_t mh = msg_hdr_size[fmt];
    if (d->hdr_len < bh + mh) {
        *need = bh + mh;
        return 0;
    }
    const uint8_t *m = d->hdr + bh;
    if (fmt <= 1) {
        uint32_t len = sh_get_u24be(m + 3);
        if (len > d->lim.max_message_size)
            return SH_FAIL(err, SH_ELIMIT, "chunk: message larger than the limit", d->offset);
    }
    bool ext;
    if (fmt < 3) {
        ext = sh_get_u24be(m) == 0xFFFFFF;
    } else {
        dec_cs *c = cs_find(d, csid);
        if (!c || !c->has_hdr)
            return SH_FAIL(err, SH_EPROTO, "chunk: type 3 header on a new chunk stream", d->offset);
        ext = c->ext;
    }
    *need = bh + mh + (ext ? 4 : 0);
    return 0;
}

/* Payload size of the next chunk of stream c. */
static uint32_t next_chunk(const rtmp_chunk_dec *d, const dec_cs *c)
{
    uint32_t left = c->len - c->have;
    return left < d->chunk_size ? left : d->chunk_size;
}

/* Applies a type 0, 1 or 2 message header m (spec 5.3.1.2) to c: length
 * and type (0, 1), message stream id (0, little endian), and the absolute
 * timestamp (0) or delta (1, 2) `field`. */
static void cs_apply_header(dec_cs *c, unsigned fmt, const uint8_t *m, uint32_t len,
                            uint32_t field)
{
    if (fmt <= 1) {
        c->len = len;
        c->type = m[6];
    }
    if (fmt == 0) {
        c->sid = (uint32_t)m[7] | (uint32_t)m[8] << 8 | (uint32_t)m[9] << 16 |
                 (uint32_t)m[10] << 24;
        c->ts = field;
    } else {
        c->ts += field;
    }
    c->delta = field;
    c->has_hdr = true;
}

/* An empty message still gets a valid data pointer, so consumers never do
 * arithmetic on NULL (found by fuzz_conn). */
static const uint8_t dec_no_bytes[1];

static void msg_out(rtmp_chunk_dec *d, size_t idx, rtmp_msg *msg)
{
    dec_cs *c = &d->cs[idx];
    msg->type = c->type;
    msg->stream_id = c->sid;
    msg->timestamp = c->ts;
    msg->csid = c->csid;
    msg->data = c->buf ? c->buf : dec_no_bytes;
    msg->len = c->len;
    d->buffered -= c->have;
    c->partial = false;
    c->have = 0;
    d->returned = idx;
}

/* The staged header is complete: apply it.  Returns 1 when it completes a
 * zero-length message, 0 to go on with the payload, negative on error. */
static int hdr_apply(rtmp_chunk_dec *d, rtmp_msg *msg, sh_error *err)
{
    uint32_t csid = 0;
    size_t bh = basic_hdr(d->hdr, d->hdr_len, &csid);
    unsigned fmt = d->hdr[0] >> 6;
    const uint8_t *m = d->hdr + bh;
    dec_cs *c = cs_find(d, csid);
    if (!c) {
        if (fmt >= 2)
            return SH_FAIL(err, SH_EPROTO, "chunk: type 2 header on a new chunk stream", d->offset);
        int rc = cs_add(d, csid, err);
        if (rc)
            return rc;
        c = &d->cs[d->ncs - 1];
    }
    size_t idx = (size_t)(c - d->cs);
    bool new_msg = true;

    if (fmt < 3) {
        uint32_t field = sh_get_u24be(m);
        c->ext = field == 0xFFFFFF;
        if (c->ext) {
            c->ext_val = sh_get_u32be(m + msg_hdr_size[fmt]);
            field = c->ext_val;
        }
        /* A new header in the middle of a message: the partial one is
         * dropped (tolerated, as SRS does). */
        cs_drop_partial(d, c);
        cs_apply_header(c, fmt, m, sh_get_u24be(m + 3), field);
    } else {
        if (c->ext) {
            uint32_t v = sh_get_u32be(d->hdr + bh);
            if (v != c->ext_val) {
                /* Not an extended timestamp: the 4 bytes are payload. */
                if (d->replay_len + 4 > sizeof(d->replay))
                    return SH_FAIL(err, SH_EPROTO, "chunk: bad extended timestamps", d->offset);
                memmove(d->replay + 4, d->replay, d->replay_len);
                memcpy(d->replay, d->hdr + bh, 4);
                d->replay_len += 4;
            }
        }
        if (c->partial) {
            new_msg = false;
        } else {
            c->ts += c->delta;
        }
    }
    d->hdr_len = 0;
    d->cur = idx;
    if (new_msg) {
        c->partial = true;
        c->have = 0;
        if (c->len == 0) {
            msg_out(d, idx, msg);
            return 1;
        }
    }
    d->chunk_left = next_chunk(d, c);
    d->state = ST_PAYLOAD;
    return 0;
}

static int payload_add(rtmp_chunk_dec *d, dec_cs *c, const uint8_t *p, size_t n, sh_error *err)
{
    if (n > d->lim.max_buffered || d->buffered > d->lim.max_buffered - n)
        return SH_FAIL(err, SH_ELIMIT, "chunk: too many bytes in partial messages", d->offset);
    size_t need = (size_t)c->have + n;
    if (need > c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 256;
        if (ncap < need)
            ncap = need;
        if (ncap > c->len)
            ncap = c->len;
        uint8_t *nb = realloc(c->buf, ncap);
        if (!nb)
            return SH_FAIL(err, SH_ENOMEM, "chunk: out of memory", d->offset);
        c->buf = nb;
        c->cap = ncap;
    }
    memcpy(c->buf + c->have, p, n);
    c->have += (uint32_t)n;
    d->buffered += n;
    return 0;
}

/* Parses bytes from src; *used counts what was taken.  Returns 1 with a
 * message, 0 when src is used up, negative on error. */
static int dec_step(rtmp_chunk_dec *d, const uint8_t *src, size_t n, size_t *used,
                    rtmp_msg *msg, sh_error *err)
{
    size_t u = 0;
    int rc = 0;
    while (rc == 0 && u < n) {
        if (d->state == ST_HDR) {
            size_t need = 0;
            rc = hdr_need(d, &need, err);
            if (rc)
                break;
            if (d->hdr_len < need) {
                size_t take = need - d->hdr_len;
                if (take > n - u)
                    take = n - u;
                memcpy(d->hdr + d->hdr_len, src + u, take);
                d->hdr_len += take;
                u += take;
                d->offset += take;
                continue; /* recompute: the header may call for more */
            }
            rc = hdr_apply(d, msg, err);
            if (rc || d->replay_len)
                break; /* a message, an error, or bytes to parse again first */
        } else {
            dec_cs *c = &d->cs[d->cur];
            size_t take = d->chunk_left;
            if (take > n - u)
                take = n - u;
            rc = payload_add(d, c, src + u, take, err);
            if (rc)
                break;
            u += take;
            d->offset += take;
            d->chunk_left -= (uint32_t)take;
            if (d->chunk_left == 0) {
                d->state = ST_HDR;
                if (c->have == c->len) {
                    msg_out(d, d->cur, msg);
                    rc = 1;
                }
            }
        }
    }
    /* A header may be complete with no byte left to read (type 3 without
     * extended timestamp ends a chunk exactly at the input's end). */
    if (rc == 0 && u == n && d->state == ST_HDR && d->hdr_len > 0 && !d->replay_len) {
        size_t need = 0;
        rc = hdr_need(d, &need, err);
        if (rc == 0 && d->hdr_len >= need)
            rc = hdr_apply(d, msg, err);
    }
    *used = u;
    return rc;
}

/* All input is used and no message is out: the buffers of streams with
 * no partial message are released, so an idle connection holds none (one
 * allocation per read and stream is the price while it is busy). */
static void release_idle(rtmp_chunk_dec *d)
{
    for (size_t i = 0; i < d->ncs; i++) {
        dec_cs *c = &d->cs[i];
        if (c->buf && !c->partial) {
            free(c->buf);
            c->buf = NULL;
            c->cap = 0;
        }
    }
}

/* The common case taken in one step: between chunks, the input holds a
 * whole chunk with a 1-byte basic header and no extended timestamp, and
 * that chunk is a whole message (no partial message on its stream).
 * Applies the header exactly as hdr_apply would and copies the payload as
 * payload_add would.  Returns 1 with *msg and *used set, 0 when the bytes
 * need the general path (nothing changed then). */
static int fast_msg(rtmp_chunk_dec *d, const uint8_t *p, size_t n, size_t *used, rtmp_msg *msg)
{
    if (n < 1)
        return 0;
    unsigned fmt = p[0] >> 6;
    uint32_t csid = p[0] & 0x3F;
    size_t hl = 1 + msg_hdr_size[fmt];
    if (csid < 2 || n < hl)
        return 0;
    dec_cs *c = cs_find(d, csid);
    if (fmt == 0) {
        if (!c && (d->ncs >= d->lim.max_chunk_streams || d->ncs == d->cs_cap))
            return 0; /* cs_add's limit check and growth stay in one place */
    } else if (!c || !c->has_hdr) {
        return 0;
    }
    if (c && (c->partial || (fmt == 3 && c->ext)))
        return 0;
    const uint8_t *m = p + 1;
    uint32_t field = 0, mlen = c ? c->len : 0;
    if (fmt < 3) {
        field = sh_get_u24be(m);
        if (field == 0xFFFFFF)
            return 0;
    }
    if (fmt <= 1) {
        mlen = sh_get_u24be(m + 3);
        if (mlen > d->lim.max_message_size)
            return 0;
    }
    if (mlen == 0 || mlen > d->chunk_size || n - hl < mlen)
        return 0;
    if (mlen > d->lim.max_buffered || d->buffered > d->lim.max_buffered - mlen)
        return 0;
    if (!c) {
        if (cs_add(d, csid, NULL) != 0)
            return 0;
        c = &d->cs[d->ncs - 1];
    }
    if (mlen > c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 256;
        if (ncap < mlen)
            ncap = mlen;
        uint8_t *nb = realloc(c->buf, ncap);
        if (!nb)
            return 0;
        c->buf = nb;
        c->cap = ncap;
    }
    if (fmt < 3) {
        c->ext = false;
        cs_apply_header(c, fmt, m, mlen, field);
    } else {
        c->ts += c->delta;
    }
    memcpy(c->buf, p + hl, mlen);
    c->have = 0;
    c->partial = false;
    d->offset += hl + mlen;
    *used = hl + mlen;
    msg->type = c->type;
    msg->stream_id = c->sid;
    msg->timestamp = c->ts;
    msg->csid = c->csid;
    msg->data = c->buf ? c->buf : dec_no_bytes;
    msg->len = c->len;
    d->returned = (size_t)(c - d->cs);
    return 1;
}

int rtmp_chunk_dec_feed(rtmp_chunk_dec *d, const uint8_t *in, size_t len,
                        size_t *consumed, rtmp_msg *msg, sh_error *err)
{
    *consumed = 0;
    if (d->returned != SIZE_MAX) {
        dec_cs *c = &d->cs[d->returned];
        if (c->cap > KEEP_BUF_MAX && !c->partial) {
            free(c->buf);
            c->buf = NULL;
            c->cap = 0;
        }
        d->returned = SIZE_MAX;
    }
    for (;;) {
        size_t used = 0;
        int rc;
        if (d->replay_len) {
            /* Replayed bytes were counted as consumed when first read. */
            uint8_t tmp[sizeof(d->replay)];
            size_t n = d->replay_len;
            memcpy(tmp, d->replay, n);
            d->replay_len = 0;
            uint64_t off = d->offset;
            rc = dec_step(d, tmp, n, &used, msg, err);
            d->offset = off; /* already counted */
            if (used < n) {
                /* keep what was not parsed yet, after any new replay bytes */
                memcpy(d->replay + d->replay_len, tmp + used, n - used);
                d->replay_len += n - used;
            }
        } else {
            if (*consumed == len) {
                release_idle(d);
                return 0;
            }
            if (d->state == ST_HDR && d->hdr_len == 0 &&
                fast_msg(d, in + *consumed, len - *consumed, &used, msg)) {
                *consumed += used;
                return 1;
            }
            rc = dec_step(d, in + *consumed, len - *consumed, &used, msg, err);
            *consumed += used;
        }
        if (rc)
            return rc;
    }
}

size_t rtmp_chunk_dec_mem(const rtmp_chunk_dec *d)
{
    size_t n = sizeof(*d) + d->cs_cap * sizeof(*d->cs);
    for (size_t i = 0; i < d->ncs; i++)
        n += d->cs[i].cap;
    return n;
}
