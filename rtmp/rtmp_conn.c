/* rtmp_conn.c - one RTMP connection: handshake, then the chunk layer, with
 * protocol control (spec 5.4) and the ping user control events handled
 * inside.  Output goes to the sh_outq the caller gave us; nothing here
 * does I/O.
 *
 * Sends made before the handshake is complete (a client may queue its
 * connect right after rtmp_conn_new) are kept in order and written once
 * the handshake bytes are out, so they never land between C1 and C2.
 *
 * Acknowledgement: once the peer announced a window (Window Ack Size, at
 * least RTMP_MIN_PEER_WINDOW), an Acknowledgement carrying the count of
 * bytes received so far goes out when another window's worth has arrived,
 * checked when the input given is used up: at most one per batch.
 *
 * Output this connection makes by itself (handshake, acknowledgements,
 * Ping Responses, at most RTMP_MAX_PINGS_PER_READ per read) is bounded by
 * its input, so a peer that sends and never reads fills nothing but the
 * output queue, whose owner caps it.
 */
#include "rtmp_int.h"
#include "sh_mem.h"

#include <stdlib.h>
#include <string.h>

typedef enum pend_kind { PEND_MSG, PEND_CHUNK_SIZE } pend_kind;

typedef struct pend_op {
    pend_kind kind;
    rtmp_msg msg;        /* PEND_MSG: data owned (copied) */
    uint32_t size;       /* PEND_CHUNK_SIZE */
} pend_op;

struct rtmp_conn {
    rtmp_conn_config cfg;
    sh_outq *out;            /* borrowed */
    rtmp_hs *hs;             /* owned until the handshake is done */
    bool hs_done;
    rtmp_chunk_dec *dec;
    rtmp_chunk_enc *enc;
    uint32_t out_chunk_size; /* size in effect once pending ops are written */
    uint64_t bytes_in;
    uint64_t acked_at;       /* bytes_in when we last sent an Acknowledgement */
    uint32_t peer_window;    /* from the peer's Window Ack Size (raised to
                                RTMP_MIN_PEER_WINDOW); 0 = none */
    uint32_t out_window;     /* last Window Ack Size we sent; 0 = none */
    int last_limit_type;     /* of the last Set Peer Bandwidth applied, -1 none */
    uint32_t peer_ack;       /* last sequence number the peer acknowledged */
    uint64_t acks_received;
    uint32_t pings_left;     /* Ping Responses this read may still produce */
    pend_op *pend;           /* owned */
    size_t npend, pend_cap;
    int hs_kind;             /* kept once the handshake state is freed */
};

/* ---- output ---- */

/* Control messages and small commands are appended to the queue's own
 * buffer (no allocation each); larger ones get a buffer of their size. */
static int conn_write_msg(rtmp_conn *c, const rtmp_msg *m)
{
    if (m->len <= 64) {
        uint8_t tmp[128];
        size_t n = 0;
        int rc = rtmp_chunk_enc_write_small(c->enc, m, tmp, sizeof(tmp), &n);
        if (rc == 0)
            return sh_outq_push_copy(c->out, tmp, n);
        if (rc != SH_ELIMIT)
            return rc;
    }
    sh_rcbuf *b;
    int rc = rtmp_chunk_enc_write_rc(c->enc, m, &b);
    if (rc)
        return rc;
    rc = sh_outq_push(c->out, b);
    sh_rcbuf_unref(b);
    return rc;
}

static int conn_write_chunk_size(rtmp_conn *c, uint32_t size)
{
    uint8_t b[4];
    sh_put_u32be(b, size);
    rtmp_msg m = {RTMP_MSG_SET_CHUNK_SIZE, 0, 0, RTMP_CSID_CONTROL, b, 4};
    int rc = conn_write_msg(c, &m);
    if (rc == 0)
        rtmp_chunk_enc_set_chunk_size(c->enc, size);
    return rc;
}

static int pend_push(rtmp_conn *c, pend_op op)
{
    if (sh_array_grow((void **)&c->pend, &c->pend_cap, c->npend + 1, sizeof(*c->pend), 4))
        return SH_ENOMEM;
    c->pend[c->npend++] = op;
    return 0;
}

static void pend_free(pend_op *op)
{
    if (op->kind == PEND_MSG)
        free((void *)op->msg.data);
}

static int pend_flush(rtmp_conn *c)
{
    int rc = 0;
    for (size_t i = 0; i < c->npend; i++) {
        pend_op *op = &c->pend[i];
        if (rc == 0)
            rc = op->kind == PEND_MSG ? conn_write_msg(c, &op->msg)
                                      : conn_write_chunk_size(c, op->size);
        pend_free(op);
    }
    c->npend = 0;
    return rc;
}

int rtmp_conn_send(rtmp_conn *c, const rtmp_msg *m)
{
    if (c->hs_done)
        return conn_write_msg(c, m);
    if (!m || m->len > 0xFFFFFF || (m->len && !m->data))
        return SH_EINVAL;
    pend_op op = {.kind = PEND_MSG, .msg = *m};
    if (m->len) {
        uint8_t *copy = malloc(m->len);
        if (!copy)
            return SH_ENOMEM;
        memcpy(copy, m->data, m->len);
        op.msg.data = copy;
    } else {
        op.msg.data = NULL;
    }
    int rc = pend_push(c, op);
    if (rc)
        pend_free(&op);
    return rc;
}

int rtmp_conn_send_shared(rtmp_conn *c, sh_rcbuf *chunks, uint32_t chunk_size)
{
    if (!chunks || chunk_size != c->out_chunk_size)
        return SH_EINVAL;
    if (!c->hs_done || c->npend)
        return SH_ESTATE;
    return sh_outq_push(c->out, chunks);
}

void rtmp_conn_read_begin(rtmp_conn *c)
{
    c->pings_left = RTMP_MAX_PINGS_PER_READ;
}

void rtmp_conn_set_limits(rtmp_conn *c, const rtmp_limits *limits)
{
    c->cfg.limits = *limits;
    rtmp_chunk_dec_set_limits(c->dec, limits);
}

size_t rtmp_conn_buffered(const rtmp_conn *c)
{
    return rtmp_chunk_dec_mem(c->dec);
}

uint32_t rtmp_conn_out_chunk_size(const rtmp_conn *c)
{
    return c->out_chunk_size;
}

int rtmp_conn_set_out_chunk_size(rtmp_conn *c, uint32_t size)
{
    if (size < 1 || size > 0x7FFFFFFF)
        return SH_EINVAL;
    int rc;
    if (c->hs_done) {
        rc = conn_write_chunk_size(c, size);
    } else {
        pend_op op = {.kind = PEND_CHUNK_SIZE, .size = size};
        rc = pend_push(c, op);
    }
    if (rc == 0)
        c->out_chunk_size = size;
    return rc;
}

static int send_u32(rtmp_conn *c, uint8_t type, uint32_t v)
{
    uint8_t b[4];
    sh_put_u32be(b, v);
    rtmp_msg m = {type, 0, 0, RTMP_CSID_CONTROL, b, 4};
    return rtmp_conn_send(c, &m);
}

static int send_window(rtmp_conn *c, uint32_t w)
{
    int rc = send_u32(c, RTMP_MSG_WINDOW_ACK_SIZE, w);
    if (rc == 0)
        c->out_window = w;
    return rc;
}

int rtmp_conn_send_connect_preamble(rtmp_conn *c)
{
    int rc = send_window(c, c->cfg.window_ack_size);
    if (rc)
        return rc;
    uint8_t b[5];
    sh_put_u32be(b, c->cfg.window_ack_size);
    b[4] = 2; /* dynamic */
    rtmp_msg m = {RTMP_MSG_SET_PEER_BW, 0, 0, RTMP_CSID_CONTROL, b, 5};
    rc = rtmp_conn_send(c, &m);
    if (rc)
        return rc;
    return rtmp_conn_set_out_chunk_size(c, c->cfg.out_chunk_size);
}

int rtmp_conn_send_user_control(rtmp_conn *c, uint16_t event, uint32_t v1)
{
    uint8_t b[6];
    sh_put_u16be(b, event);
    sh_put_u32be(b + 2, v1);
    rtmp_msg m = {RTMP_MSG_USER_CONTROL, 0, 0, RTMP_CSID_CONTROL, b, 6};
    return rtmp_conn_send(c, &m);
}

/* ---- life cycle ---- */

rtmp_conn *rtmp_conn_new(const rtmp_conn_config *cfg, sh_outq *out,
                         const uint8_t *random, uint32_t epoch_ms)
{
    if (!cfg || !out || cfg->out_chunk_size < 1 || cfg->out_chunk_size > 0x7FFFFFFF)
        return NULL;
    rtmp_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->cfg = *cfg;
    c->out = out;
    c->last_limit_type = -1;
    c->pings_left = RTMP_MAX_PINGS_PER_READ;
    c->out_chunk_size = RTMP_DEFAULT_CHUNK_SIZE;
    c->hs = rtmp_hs_new(cfg->role, random, epoch_ms,
                        cfg->role == RTMP_ROLE_CLIENT && cfg->client_digest);
    c->dec = rtmp_chunk_dec_new(&cfg->limits);
    c->enc = rtmp_chunk_enc_new();
    if (!c->hs || !c->dec || !c->enc)
        goto fail;
    if (cfg->role == RTMP_ROLE_CLIENT) {
        sh_buf hs;
        sh_buf_init(&hs, 0);
        int rc = rtmp_hs_client_start(c->hs, &hs);
        if (rc == 0)
            rc = sh_outq_push_copy(out, hs.data, hs.len);
        sh_buf_cleanup(&hs);
        if (rc)
            goto fail;
        /* A client announces its own chunk size as soon as it may. */
        if (cfg->out_chunk_size != RTMP_DEFAULT_CHUNK_SIZE &&
            rtmp_conn_set_out_chunk_size(c, cfg->out_chunk_size))
            goto fail;
    }
    return c;
fail:
    rtmp_conn_free(c);
    return NULL;
}

void rtmp_conn_free(rtmp_conn *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->npend; i++)
        pend_free(&c->pend[i]);
    free(c->pend);
    rtmp_hs_free(c->hs);
    rtmp_chunk_dec_free(c->dec);
    rtmp_chunk_enc_free(c->enc);
    free(c);
}

bool rtmp_conn_handshake_done(const rtmp_conn *c)
{
    return c->hs_done;
}

uint64_t rtmp_conn_bytes_in(const rtmp_conn *c)
{
    return c->bytes_in;
}

int rtmp_conn_handshake_kind(const rtmp_conn *c)
{
    return c->hs_done ? c->hs_kind : -1;
}

uint32_t rtmp_conn_peer_ack(const rtmp_conn *c)
{
    return c->peer_ack;
}

uint64_t rtmp_conn_acks_received(const rtmp_conn *c)
{
    return c->acks_received;
}

uint32_t rtmp_conn_peer_window(const rtmp_conn *c)
{
    return c->peer_window;
}

/* ---- input ---- */

static int maybe_ack(rtmp_conn *c)
{
    if (!c->hs_done || c->peer_window == 0 || c->bytes_in - c->acked_at < c->peer_window)
        return 0;
    c->acked_at = c->bytes_in;
    return send_u32(c, RTMP_MSG_ACK, (uint32_t)c->bytes_in);
}

static int on_set_peer_bw(rtmp_conn *c, const rtmp_msg *m, sh_error *err)
{
    if (m->len < 5)
        return SH_FAIL(err, SH_EPROTO, "conn: short Set Peer Bandwidth", 0);
    uint32_t bw = sh_get_u32be(m->data);
    int type = m->data[4];
    uint32_t w = bw;
    if (type == 1 && c->out_window && c->out_window < bw)
        w = c->out_window; /* soft: the smaller of the two */
    else if (type == 2 && c->last_limit_type >= 0 && c->last_limit_type != 0)
        return 0;          /* dynamic after a non-hard limit: ignored */
    if (type <= 1)
        c->last_limit_type = type;
    else if (c->last_limit_type < 0)
        c->last_limit_type = 0; /* a first dynamic limit counts as hard */
    if (w != c->out_window && w > 0)
        return send_window(c, w);
    return 0;
}

/* Returns 1 when the message was handled here, 0 when the caller gets it. */
static int on_message(rtmp_conn *c, const rtmp_msg *m, sh_error *err)
{
    switch (m->type) {
    case RTMP_MSG_SET_CHUNK_SIZE: {
        if (m->len < 4)
            return SH_FAIL(err, SH_EPROTO, "conn: short Set Chunk Size", 0);
        uint32_t v = sh_get_u32be(m->data);
        if (v == 0 || v > 0x7FFFFFFF)
            return SH_FAIL(err, SH_EPROTO, "conn: Set Chunk Size out of range", 0);
        if (v > c->cfg.limits.max_chunk_size)
            return SH_FAIL(err, SH_ELIMIT, "conn: Set Chunk Size above the limit", 0);
        rtmp_chunk_dec_set_chunk_size(c->dec, v);
        return 1;
    }
    case RTMP_MSG_ABORT:
        if (m->len < 4)
            return SH_FAIL(err, SH_EPROTO, "conn: short Abort", 0);
        rtmp_chunk_dec_abort(c->dec, sh_get_u32be(m->data));
        return 1;
    case RTMP_MSG_ACK:
        if (m->len < 4)
            return SH_FAIL(err, SH_EPROTO, "conn: short Acknowledgement", 0);
        c->peer_ack = sh_get_u32be(m->data);
        c->acks_received++;
        return 1;
    case RTMP_MSG_WINDOW_ACK_SIZE:
        if (m->len < 4)
            return SH_FAIL(err, SH_EPROTO, "conn: short Window Ack Size", 0);
        c->peer_window = sh_get_u32be(m->data);
        if (c->peer_window && c->peer_window < RTMP_MIN_PEER_WINDOW)
            c->peer_window = RTMP_MIN_PEER_WINDOW;
        c->acked_at = c->bytes_in;
        return 1;
    case RTMP_MSG_SET_PEER_BW: {
        int rc = on_set_peer_bw(c, m, err);
        return rc ? rc : 1;
    }
    case RTMP_MSG_USER_CONTROL: {
        if (m->len < 2)
            return SH_FAIL(err, SH_EPROTO, "conn: short user control", 0);
        uint16_t ev = sh_get_u16be(m->data);
        if (ev == RTMP_UC_PING_REQUEST) {
            if (m->len < 6)
                return SH_FAIL(err, SH_EPROTO, "conn: short Ping Request", 0);
            if (c->pings_left == 0)
                return 1; /* a flood: the rest of this read goes unanswered */
            c->pings_left--;
            int rc = rtmp_conn_send_user_control(c, RTMP_UC_PING_RESPONSE,
                                                 sh_get_u32be(m->data + 2));
            return rc ? rc : 1;
        }
        return 0; /* Ping Response and stream events go to the caller */
    }
    default:
        return 0;
    }
}

int rtmp_conn_feed(rtmp_conn *c, const uint8_t *in, size_t len,
                   size_t *consumed, rtmp_msg *msg, sh_error *err)
{
    size_t used = 0;
    *consumed = 0;
    if (!c->hs_done) {
        sh_buf hs_out;
        sh_buf_init(&hs_out, 0);
        int rc = rtmp_hs_feed(c->hs, in, len, &used, &hs_out, err);
        c->bytes_in += used;
        *consumed = used;
        if (rc == 0 || rc == SH_EMORE) {
            int prc = sh_outq_push_copy(c->out, hs_out.data, hs_out.len);
            if (prc)
                rc = SH_FAIL(err, prc, "conn: output queue", 0);
        }
        sh_buf_cleanup(&hs_out);
        if (rc == SH_EMORE)
            return 0;
        if (rc < 0)
            return rc;
        c->hs_done = true;
        c->hs_kind = rtmp_hs_kind(c->hs);
        rtmp_hs_free(c->hs); /* ~6 KB we no longer need */
        c->hs = NULL;
        rc = pend_flush(c);
        if (rc)
            return SH_FAIL(err, rc, "conn: output queue", 0);
    }
    for (;;) {
        int rc = rtmp_chunk_dec_feed(c->dec, in + *consumed, len - *consumed, &used, msg, err);
        *consumed += used;
        c->bytes_in += used;
        if (rc < 0)
            return rc;
        if (rc == 0) {
            /* One Acknowledgement at most per batch of input, however
             * many windows it covered: it carries the total anyway. */
            int arc = maybe_ack(c);
            return arc ? SH_FAIL(err, arc, "conn: output queue", 0) : 0;
        }
        rc = on_message(c, msg, err);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return 1;
    }
}

