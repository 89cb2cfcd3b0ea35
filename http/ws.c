/* ws.c - see ws.h. */
#include "ws.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wslay/wslay.h>
#include <zlib.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
/* What a wslay event context costs (measured: ~8.8 KB). */
#define WS_CTX_COST 9216

/* ---------------------------------------------------------------- handshake */

bool ws_has_token(const char *list, const char *token)
{
    size_t tl = strlen(token);
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *q = e;
        while (q > p && (q[-1] == ' ' || q[-1] == '\t'))
            q--;
        if ((size_t)(q - p) == tl && strncasecmp(p, token, tl) == 0)
            return true;
        p = e;
    }
    return false;
}

bool ws_key_ok(const char *key)
{
    uint8_t raw[24];
    if (!key || strlen(key) != 24 || key[22] != '=' || key[23] != '=')
        return false;
    for (int i = 0; i < 22; i++) {
        char ch = key[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '+' || ch == '/'))
            return false;
    }
    return EVP_DecodeBlock(raw, (const unsigned char *)key, 24) == 18; /* 16 bytes + padding */
}

void ws_accept_key(const char *key, char *out)
{
    char kg[64];
    snprintf(kg, sizeof(kg), "%.24s%s", key, WS_GUID);
    uint8_t sha[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)kg, strlen(kg), sha);
    EVP_EncodeBlock((unsigned char *)out, sha, SHA_DIGEST_LENGTH);
}

/* One offer "permessage-deflate; p1; p2=v" (n bytes at p). */
static bool offer_ok(const char *p, size_t n)
{
    char offer[256];
    if (n >= sizeof(offer))
        return false;
    memcpy(offer, p, n);
    offer[n] = '\0';
    char *save = NULL;
    char *tok = strtok_r(offer, ";", &save);
    while (tok && (*tok == ' ' || *tok == '\t'))
        tok++;
    if (!tok || strncasecmp(tok, "permessage-deflate", 18) != 0)
        return false;
    for (char *prm = tok + 18; *prm; prm++)
        if (*prm != ' ' && *prm != '\t')
            return false; /* "permessage-deflatex" */
    for (char *prm = strtok_r(NULL, ";", &save); prm; prm = strtok_r(NULL, ";", &save)) {
        while (*prm == ' ' || *prm == '\t')
            prm++;
        if (strncasecmp(prm, "server_max_window_bits", 22) == 0) {
            /* we compress with a 32 KB window: only 15 (or none) fits */
            const char *eq = strchr(prm, '=');
            if (!eq || atoi(eq + 1 + (eq[1] == '"')) != 15)
                return false;
        } else if (strncasecmp(prm, "client_max_window_bits", 22) != 0 &&
                   strncasecmp(prm, "server_no_context_takeover", 26) != 0 &&
                   strncasecmp(prm, "client_no_context_takeover", 26) != 0) {
            return false; /* a parameter we do not know: decline this offer */
        }
    }
    return true;
}

bool ws_deflate_offered(const char *ext)
{
    for (const char *p = ext; p && *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (offer_ok(p, n))
            return true;
        p = e ? e + 1 : NULL;
    }
    return false;
}

/* ---------------------------------------------------------------- output */

size_t ws_frame_header(uint8_t *h, uint8_t opcode, bool rsv1, size_t len)
{
    h[0] = (uint8_t)(0x80 | (rsv1 ? 0x40 : 0) | opcode);
    if (len < 126) {
        h[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xFFFF) {
        h[1] = 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

sh_rcbuf *ws_frame(uint8_t opcode, bool rsv1, const uint8_t *payload, size_t n)
{
    uint8_t h[10];
    size_t hl = ws_frame_header(h, opcode, rsv1, n);
    sh_rcbuf *b = sh_rcbuf_new(hl + n);
    if (!b)
        return NULL;
    memcpy(b->data, h, hl);
    if (n)
        memcpy(b->data + hl, payload, n);
    b->len = hl + n;
    return b;
}

struct ws_zip {
    z_stream def;
    z_stream inf;
    bool def_ok, inf_ok;
};

ws_zip *ws_zip_new(void)
{
    ws_zip *z = calloc(1, sizeof(*z));
    if (!z)
        return NULL;
    z->def_ok = deflateInit2(&z->def, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8,
                             Z_DEFAULT_STRATEGY) == Z_OK;
    z->inf_ok = inflateInit2(&z->inf, -15) == Z_OK;
    if (!z->def_ok || !z->inf_ok) {
        ws_zip_free(z);
        return NULL;
    }
    return z;
}

void ws_zip_free(ws_zip *z)
{
    if (!z)
        return;
    if (z->def_ok)
        deflateEnd(&z->def);
    if (z->inf_ok)
        inflateEnd(&z->inf);
    free(z);
}

sh_rcbuf *ws_zip_deflate(ws_zip *z, const uint8_t *p, size_t n)
{
    z_stream *s = &z->def;
    deflateReset(s);
    size_t cap = deflateBound(s, (uLong)n) + 16;
    sh_rcbuf *b = sh_rcbuf_new(cap);
    if (!b)
        return NULL;
    s->next_in = (Bytef *)p;
    s->avail_in = (uInt)n;
    s->next_out = b->data;
    s->avail_out = (uInt)cap;
    int rc = deflate(s, Z_SYNC_FLUSH);
    if (rc != Z_OK || s->avail_in != 0 || cap - s->avail_out < 4) {
        sh_rcbuf_unref(b);
        return NULL;
    }
    b->len = cap - s->avail_out - 4;
    return b;
}

int ws_zip_inflate(ws_zip *z, const uint8_t *p, size_t n, sh_buf *out)
{
    z_stream *s = &z->inf;
    inflateReset(s);
    static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
    uint8_t chunk[16384];
    for (int pass = 0; pass < 2; pass++) {
        s->next_in = pass ? (Bytef *)tail : (Bytef *)p;
        s->avail_in = pass ? 4 : (uInt)n;
        while (s->avail_in > 0) {
            s->next_out = chunk;
            s->avail_out = sizeof(chunk);
            int rc = inflate(s, Z_SYNC_FLUSH);
            if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
                return SH_EPROTO;
            size_t got = sizeof(chunk) - s->avail_out;
            if (got && sh_buf_append(out, chunk, got))
                return SH_ELIMIT;
            if (rc == Z_STREAM_END)
                return pass == 0 && s->avail_in ? SH_EPROTO : 0;
            if (rc == Z_BUF_ERROR && got == 0)
                break;
        }
    }
    return 0;
}

bool ws_utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((b & 0xE0) == 0xC0) {
            len = 2, cp = b & 0x1F, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            len = 3, cp = b & 0x0F, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            len = 4, cp = b & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* ---------------------------------------------------------------- input */

struct ws_in {
    wslay_event_context_ptr ctx; /* only while input is being taken apart */
    size_t max_message;
    bool deflate;
    ws_zip *zip;                 /* borrowed */
    bool closed;                 /* a close frame went out */
    bool in_frame;               /* wslay reported a frame start, not its end */
    bool in_msg;                 /* a fragmented data message is in progress */
    bool frame_data;             /* the frame being read belongs to a data message */
    bool msg_rsv1;
    uint8_t msg_opcode;
    uint64_t fed;                /* bytes given to the current context */
    uint64_t parsed;             /* of those, bytes wslay reported as frames */
    int fail;                    /* a close code this side decided */
    bool stop;                   /* the callback asked to stop */
    bool peer_closed;            /* the peer's close frame came */
    sh_buf msg;                  /* the data message being assembled */
    /* during ws_in_feed */
    const uint8_t *in;
    size_t in_len, in_off;
    uint32_t msgs_left;
    ws_in_fn fn;
    void *ud;
    sh_buf *out;
};

static void fail_with(ws_in *w, int code)
{
    if (!w->fail) {
        w->fail = code;
        wslay_event_queue_close(w->ctx, (uint16_t)code, NULL, 0);
    }
}

static ssize_t cb_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    (void)flags;
    ws_in *w = ud;
    size_t left = w->in_len - w->in_off;
    if (left == 0 || w->msgs_left == 0 || w->stop || w->fail) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = left < len ? left : len;
    memcpy(buf, w->in + w->in_off, n);
    w->in_off += n;
    w->fed += n;
    return (ssize_t)n;
}

static ssize_t cb_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud)
{
    (void)flags;
    ws_in *w = ud;
    if (sh_buf_append(w->out, data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void cb_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *a, void *ud)
{
    (void)ctx;
    ws_in *w = ud;
    uint64_t pl = a->payload_length;
    w->parsed += 2 + (pl > 0xFFFF ? 8 : pl > 125 ? 2 : 0) + 4; /* client frames are masked */
    w->in_frame = true;
    w->frame_data = a->opcode <= WS_OP_BINARY;
    if (a->opcode == WS_OP_TEXT || a->opcode == WS_OP_BINARY) {
        w->msg_opcode = a->opcode;
        w->msg_rsv1 = (a->rsv & WSLAY_RSV1_BIT) != 0;
        sh_buf_reset(&w->msg);
        w->in_msg = !a->fin;
    } else if (a->opcode == WS_OP_CONT) {
        w->in_msg = !a->fin;
    }
}

/* Data frames arrive in no-buffering mode: their payload is collected
 * here as it comes (wslay checked the size against the same cap); control
 * frames are buffered by wslay. */
static void cb_frame_chunk(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_chunk_arg *a, void *ud)
{
    (void)ctx;
    ws_in *w = ud;
    w->parsed += a->data_length;
    if (w->frame_data && a->data_length && sh_buf_append(&w->msg, a->data, a->data_length))
        fail_with(w, 1009);
}

static void cb_frame_end(wslay_event_context_ptr ctx, void *ud)
{
    (void)ctx;
    ((ws_in *)ud)->in_frame = false;
}

static void on_data(ws_in *w)
{
    const uint8_t *p = w->msg.data;
    size_t n = w->msg.len;
    sh_buf plain;
    sh_buf_init(&plain, w->max_message);
    if (w->msg_rsv1) {
        int rc = ws_zip_inflate(w->zip, p, n, &plain);
        if (rc) {
            sh_buf_cleanup(&plain);
            fail_with(w, rc == SH_ELIMIT ? 1009 : 1007);
            return;
        }
        p = plain.data;
        n = plain.len;
        if (w->msg_opcode == WS_OP_TEXT && !ws_utf8_valid(p, n)) {
            sh_buf_cleanup(&plain);
            fail_with(w, 1007);
            return;
        }
    }
    if (w->msgs_left)
        w->msgs_left--;
    if (!w->fn(w->ud, w->msg_opcode == WS_OP_TEXT ? WS_IN_TEXT : WS_IN_BINARY, p, n))
        w->stop = true;
    sh_buf_cleanup(&plain);
}

static void cb_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
                   void *ud)
{
    (void)ctx;
    ws_in *w = ud;
    if (w->stop || w->fail)
        return;
    switch (a->opcode) {
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        on_data(w);
        sh_buf_reset(&w->msg);
        w->msg_opcode = 0;
        break;
    case WS_OP_PONG:
        if (!w->fn(w->ud, WS_IN_PONG, a->msg, a->msg_length))
            w->stop = true;
        break;
    case WS_OP_CLOSE:
        /* wslay queues the reply; it goes out below */
        w->peer_closed = true;
        if (!w->fn(w->ud, WS_IN_CLOSE, NULL, a->status_code))
            w->stop = true;
        break;
    default:
        break;
    }
}

static const struct wslay_event_callbacks callbacks = {
    .recv_callback = cb_recv,
    .send_callback = cb_send,
    .on_frame_recv_start_callback = cb_frame_start,
    .on_frame_recv_chunk_callback = cb_frame_chunk,
    .on_frame_recv_end_callback = cb_frame_end,
    .on_msg_recv_callback = cb_msg,
};

ws_in *ws_in_new(size_t max_message, bool deflate, ws_zip *zip)
{
    ws_in *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->max_message = max_message;
    w->deflate = deflate && zip;
    w->zip = zip;
    sh_buf_init(&w->msg, max_message);
    return w;
}

static void ctx_free(ws_in *w)
{
    if (w->ctx) {
        wslay_event_context_free(w->ctx);
        w->ctx = NULL;
    }
}

void ws_in_free(ws_in *w)
{
    if (!w)
        return;
    ctx_free(w);
    sh_buf_cleanup(&w->msg);
    free(w);
}

int ws_in_feed(ws_in *w, const uint8_t *in, size_t len, size_t *used, uint32_t max_msgs,
               ws_in_fn fn, void *ud, sh_buf *out)
{
    *used = 0;
    if (w->closed) {
        *used = len; /* after a close frame went out nothing more is read */
        return w->fail;
    }
    if (!w->ctx) {
        if (wslay_event_context_server_init(&w->ctx, &callbacks, w) != 0)
            return 1011;
        wslay_event_config_set_no_buffering(w->ctx, 1);
        wslay_event_config_set_max_recv_msg_length(w->ctx, w->max_message);
        if (w->deflate)
            wslay_event_config_set_allowed_rsv_bits(w->ctx, WSLAY_RSV1_BIT);
        w->fed = w->parsed = 0;
    }
    w->in = in;
    w->in_len = len;
    w->in_off = 0;
    w->msgs_left = max_msgs;
    w->fn = fn;
    w->ud = ud;
    w->out = out;
    w->stop = false;
    int rc = wslay_event_recv(w->ctx);
    int src = wslay_event_send(w->ctx);
    *used = w->in_off;
    w->in = NULL;
    w->out = NULL;
    if (rc != 0 || src != 0) {
        w->closed = true;
        return w->fail ? w->fail : 1011;
    }
    if (wslay_event_get_close_sent(w->ctx)) {
        w->closed = true;
        if (!w->fail && !w->peer_closed)
            w->fail = wslay_event_get_status_code_sent(w->ctx);
        ctx_free(w);
        return w->fail;
    }
    /* Nothing half-read: drop the context until more input comes. */
    if (!w->in_frame && !w->in_msg && w->parsed == w->fed && !wslay_event_want_write(w->ctx))
        ctx_free(w);
    return 0;
}

bool ws_in_closed(const ws_in *w)
{
    return w->closed;
}

size_t ws_in_mem(const ws_in *w)
{
    return sizeof(*w) + w->msg.cap + (w->ctx ? WS_CTX_COST : 0);
}
