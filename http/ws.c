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

/* A cursor over one offer (RFC 7692 5, 7): it moves only on success. */
typedef struct offer_rd {
    const char *p, *end;
} offer_rd;

static void skip_blanks(offer_rd *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t'))
        r->p++;
}

static bool tchar(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* A token (RFC 7230 3.2.6) into *t, *tn; false when there is none. */
static bool read_token(offer_rd *r, const char **t, size_t *tn)
{
    skip_blanks(r);
    const char *s = r->p;
    while (r->p < r->end && tchar(*r->p))
        r->p++;
    *t = s;
    *tn = (size_t)(r->p - s);
    skip_blanks(r);
    return *tn > 0;
}

/* A window size value, a token or a quoted string: 8..15 without a
 * leading zero (7.1.2); -1 when it is not one. */
static int window_bits(offer_rd *r)
{
    skip_blanks(r);
    bool quoted = r->p < r->end && *r->p == '"';
    if (quoted)
        r->p++;
    const char *s = r->p;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
        r->p++;
    size_t n = (size_t)(r->p - s);
    if (quoted) {
        if (r->p == r->end || *r->p != '"')
            return -1;
        r->p++;
    }
    skip_blanks(r);
    if (n == 0 || n > 2 || s[0] == '0')
        return -1;
    int v = n == 1 ? s[0] - '0' : (s[0] - '0') * 10 + (s[1] - '0');
    return v >= 8 && v <= 15 ? v : -1;
}

static bool is_name(const char *t, size_t n, const char *name)
{
    return n == strlen(name) && strncasecmp(t, name, n) == 0;
}

/* One offer "permessage-deflate; p1; p2=v" (p .. end).  True when a
 * server compressing with a full window (15 bits) and no context can
 * accept it; *server_bits: the offer asked for server_max_window_bits
 * (then the answer must carry it). */
static bool offer_ok(const char *p, const char *end, bool *server_bits)
{
    enum { SNCT = 1, CNCT = 2, SMWB = 4, CMWB = 8 };
    offer_rd r = {p, end};
    const char *t;
    size_t tn;
    if (!read_token(&r, &t, &tn) || !is_name(t, tn, "permessage-deflate"))
        return false;
    unsigned seen = 0;
    *server_bits = false;
    while (r.p < r.end) {
        if (*r.p != ';' || (r.p++, !read_token(&r, &t, &tn)))
            return false;
        bool value = r.p < r.end && *r.p == '=';
        if (value)
            r.p++;
        unsigned bit;
        if (is_name(t, tn, "server_no_context_takeover") ||
            is_name(t, tn, "client_no_context_takeover")) {
            bit = t[0] == 's' || t[0] == 'S' ? SNCT : CNCT;
            if (value)
                return false; /* 7.1.1: these take no value */
        } else if (is_name(t, tn, "server_max_window_bits")) {
            bit = SMWB;
            /* 7.1.2.1: a value is required; we compress with 15 bits */
            if (!value || window_bits(&r) != 15)
                return false;
            *server_bits = true;
        } else if (is_name(t, tn, "client_max_window_bits")) {
            bit = CMWB;
            /* 7.1.2.2: optional value; any fits the 15-bit inflater */
            if (value && window_bits(&r) < 0)
                return false;
        } else {
            return false; /* 7: a parameter not defined for an offer */
        }
        if (seen & bit)
            return false; /* 7: the same parameter twice */
        seen |= bit;
    }
    return true;
}

bool ws_deflate_answer(const char *ext, char *out, size_t outsz)
{
    for (const char *p = ext; p && *p;) {
        const char *e = strchr(p, ',');
        if (!e)
            e = p + strlen(p);
        bool server_bits;
        if (offer_ok(p, e, &server_bits)) {
            int n = snprintf(out, outsz,
                             "permessage-deflate; server_no_context_takeover; "
                             "client_no_context_takeover%s",
                             server_bits ? "; server_max_window_bits=15" : "");
            return n > 0 && (size_t)n < outsz;
        }
        p = *e ? e + 1 : NULL;
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

/* Every frame header, and every control frame whole, is gathered in
 * stage[] and checked here before wslay reads it (RFC 6455 5.2, 5.5,
 * RFC 7692 6.1):
 *  - so a broken header gets its exact close code: wslay 1.1.1 closes
 *    without a code (and its caller sees a callback failure) for a long
 *    or fragmented control frame or a length not in its shortest form,
 *    and accepts a close frame with a 1-byte payload;
 *  - so a message longer than max_message is refused at its header, not
 *    at its first payload byte (wslay waits for one);
 *  - so wslay reads a control frame in one piece: it checks the UTF-8 of
 *    a close reason chunk by chunk, skipping two bytes of every chunk.
 * Data payloads go to wslay straight from the caller's bytes. */
#define WS_STAGE_MAX (2 + 4 + 125)

struct ws_in {
    wslay_event_context_ptr ctx; /* only while a frame or message is unfinished */
    size_t max_message;
    bool deflate;
    ws_zip *zip;                 /* borrowed */
    bool closed;                 /* a close frame went out */
    int fail;                    /* a close code this side decided */
    bool stop;                   /* the callback asked to stop */
    bool peer_closed;            /* the peer's close frame came */
    /* the header scanner */
    uint8_t stage[WS_STAGE_MAX]; /* a header, or a whole control frame */
    uint8_t st_len;              /* bytes in stage */
    uint8_t st_need;             /* bytes the staged unit has in all (0: not known yet) */
    uint8_t st_off;              /* of a ready unit, bytes handed to wslay */
    bool st_ready;               /* stage holds a checked unit */
    uint64_t pay_left;           /* payload bytes of the current data frame not yet handed */
    bool msg_open;               /* a data message's last frame has not come */
    uint64_t msg_bytes;          /* payload bytes of the current data message */
    /* the message being assembled (wslay's callbacks) */
    bool frame_data;             /* the frame being read belongs to a data message */
    bool msg_rsv1;
    uint8_t msg_opcode;
    sh_buf msg;
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

/* Header checks that need only the first two bytes; 0 or a close code. */
static int check_head(const ws_in *w, uint8_t b0, uint8_t b1)
{
    bool fin = b0 & 0x80;
    uint8_t rsv = (b0 >> 4) & 7, op = b0 & 0x0F, len7 = b1 & 0x7F;
    if (!(b1 & 0x80))
        return 1002; /* 5.1: a client masks every frame */
    if ((op > WS_OP_BINARY && op < WS_OP_CLOSE) || op > WS_OP_PONG)
        return 1002; /* 5.2: reserved opcodes */
    if (rsv & 3)
        return 1002; /* RSV2, RSV3: no extension defines them */
    if (rsv && !(w->deflate && (op == WS_OP_TEXT || op == WS_OP_BINARY)))
        return 1002; /* RSV1: permessage-deflate, on a message's first frame only */
    if (op >= WS_OP_CLOSE)
        return !fin || len7 > 125 || (op == WS_OP_CLOSE && len7 == 1) ? 1002 : 0; /* 5.5, 5.5.1 */
    if (op == WS_OP_CONT ? !w->msg_open : w->msg_open)
        return 1002; /* 5.4: a continuation starts nothing; a message finishes first */
    return 0;
}

/* The payload length of the staged header (complete). */
static uint64_t staged_length(const ws_in *w)
{
    uint8_t len7 = w->stage[1] & 0x7F;
    if (len7 < 126)
        return len7;
    uint64_t n = 0;
    for (int i = 0; i < (len7 == 126 ? 2 : 8); i++)
        n = n << 8 | w->stage[2 + i];
    return n;
}

/* Checks of a complete header; 0 or a close code. */
static int check_length(ws_in *w)
{
    uint8_t len7 = w->stage[1] & 0x7F, op = w->stage[0] & 0x0F;
    uint64_t n = staged_length(w);
    if ((len7 == 126 && n < 126) || (len7 == 127 && (n <= 0xFFFF || n >> 63)))
        return 1002; /* 5.2: the minimal number of bytes, most significant bit 0 */
    if (op >= WS_OP_CLOSE)
        return 0;
    uint64_t total = op == WS_OP_CONT ? w->msg_bytes : 0;
    if (n > w->max_message || total > w->max_message - n)
        return 1009;
    return 0;
}

/* Moves input bytes into stage until a unit (a data frame's header, or a
 * whole control frame) is there and checked.  Returns true when one is
 * ready; false when the input ran out or a check failed (w->fail). */
static bool stage_unit(ws_in *w)
{
    while (!w->st_ready && w->in_off < w->in_len) {
        if (w->st_need == 0) {
            /* the first two bytes tell how long the header is */
            w->stage[w->st_len++] = w->in[w->in_off++];
            if (w->st_len < 2)
                continue;
            int code = check_head(w, w->stage[0], w->stage[1]);
            if (code) {
                fail_with(w, code);
                return false;
            }
            uint8_t len7 = w->stage[1] & 0x7F;
            w->st_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
            if ((w->stage[0] & 0x0F) >= WS_OP_CLOSE)
                w->st_need += len7; /* a control frame is staged whole */
        } else {
            size_t n = w->st_need - w->st_len;
            if (n > w->in_len - w->in_off)
                n = w->in_len - w->in_off;
            memcpy(w->stage + w->st_len, w->in + w->in_off, n);
            w->st_len += (uint8_t)n;
            w->in_off += n;
        }
        if (w->st_need && w->st_len == w->st_need) {
            int code = check_length(w);
            if (code) {
                fail_with(w, code);
                return false;
            }
            uint8_t op = w->stage[0] & 0x0F;
            if (op < WS_OP_CLOSE) {
                uint64_t n = staged_length(w);
                bool fin = w->stage[0] & 0x80;
                w->msg_bytes = op == WS_OP_CONT ? w->msg_bytes + n : n;
                w->msg_open = !fin;
                w->pay_left = n;
            }
            w->st_ready = true;
            w->st_off = 0;
        }
    }
    return w->st_ready;
}

/* wslay reads through here: the staged unit, then a data frame's payload
 * from the caller's bytes.  One frame's bytes at most per call, so
 * wslay's buffer never holds the start of the next frame. */
static ssize_t cb_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    (void)flags;
    ws_in *w = ud;
    size_t n = 0;
    if (w->stop || w->fail) {
        /* nothing more is read */
    } else if (w->st_ready) {
        n = (size_t)(w->st_len - w->st_off);
        if (n > len)
            n = len;
        memcpy(buf, w->stage + w->st_off, n);
        w->st_off += (uint8_t)n;
        if (w->st_off == w->st_len)
            w->st_ready = false, w->st_len = w->st_need = w->st_off = 0;
    } else if (w->pay_left) {
        n = w->in_len - w->in_off;
        if (n > len)
            n = len;
        if (n > w->pay_left)
            n = (size_t)w->pay_left;
        memcpy(buf, w->in + w->in_off, n);
        w->in_off += n;
        w->pay_left -= n;
    } else if (w->msgs_left && stage_unit(w)) {
        return cb_recv(ctx, buf, len, flags, ud);
    }
    if (n == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
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
    w->frame_data = a->opcode <= WS_OP_BINARY;
    if (a->opcode == WS_OP_TEXT || a->opcode == WS_OP_BINARY) {
        w->msg_opcode = a->opcode;
        w->msg_rsv1 = (a->rsv & WSLAY_RSV1_BIT) != 0;
        sh_buf_reset(&w->msg);
    }
}

/* Data frames arrive in no-buffering mode: their payload is collected
 * here as it comes (the scanner checked the size against the same cap);
 * control frames are buffered by wslay. */
static void cb_frame_chunk(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_chunk_arg *a, void *ud)
{
    (void)ctx;
    ws_in *w = ud;
    if (w->frame_data && a->data_length && sh_buf_append(&w->msg, a->data, a->data_length))
        fail_with(w, 1009);
}

/* Calls fn, the replies to the frames before this event sent first, so a
 * caller that queues out before acting keeps the order of the peer's
 * frames (a ping before a message is answered before the message). */
static void deliver(ws_in *w, ws_in_event ev, const uint8_t *p, size_t n)
{
    if (wslay_event_send(w->ctx) != 0) {
        w->stop = true;
        return;
    }
    if (!w->fn(w->ud, ev, p, n))
        w->stop = true;
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
    deliver(w, w->msg_opcode == WS_OP_TEXT ? WS_IN_TEXT : WS_IN_BINARY, p, n);
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
    case WS_OP_PING:
        /* its pong goes out now: a failure later in this feed makes wslay
         * drop control frames still queued before its close */
        if (wslay_event_send(w->ctx) != 0)
            w->stop = true;
        break;
    case WS_OP_PONG:
        deliver(w, WS_IN_PONG, a->msg, a->msg_length);
        break;
    case WS_OP_CLOSE:
        /* wslay queued the reply (deliver sends it) */
        w->peer_closed = true;
        deliver(w, WS_IN_CLOSE, NULL, a->status_code);
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

/* Between frames, with no message unfinished: the context and the
 * message buffer go, so an idle reader holds only the struct. */
static void go_idle(ws_in *w)
{
    if (w->ctx) {
        wslay_event_context_free(w->ctx);
        w->ctx = NULL;
    }
    sh_buf_cleanup(&w->msg);
    sh_buf_init(&w->msg, w->max_message);
}

void ws_in_set_max_message(ws_in *w, size_t max_message)
{
    w->max_message = max_message;
    if (w->ctx)
        wslay_event_config_set_max_recv_msg_length(w->ctx, max_message < 125 ? 125 : max_message);
    if (w->msg.len == 0) {
        sh_buf_cleanup(&w->msg);
        sh_buf_init(&w->msg, max_message);
    }
    /* else the message in progress keeps the cap it started with; the
     * buffer is made again with the new one when the reader goes idle */
}

void ws_in_free(ws_in *w)
{
    if (!w)
        return;
    if (w->ctx)
        wslay_event_context_free(w->ctx);
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
        /* the scanner caps data messages; control frames take up to 125 */
        wslay_event_config_set_max_recv_msg_length(w->ctx,
                                                    w->max_message < 125 ? 125 : w->max_message);
        if (w->deflate)
            wslay_event_config_set_allowed_rsv_bits(w->ctx, WSLAY_RSV1_BIT);
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
        /* out of memory, or out's maximum: no close frame can be trusted */
        w->closed = true;
        if (!w->fail)
            w->fail = 1011;
        return w->fail;
    }
    if (wslay_event_get_close_sent(w->ctx)) {
        w->closed = true;
        if (!w->fail && !w->peer_closed)
            w->fail = wslay_event_get_status_code_sent(w->ctx);
        go_idle(w);
        return w->fail;
    }
    if (w->st_len == 0 && w->pay_left == 0 && !w->msg_open && !wslay_event_want_write(w->ctx))
        go_idle(w);
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
