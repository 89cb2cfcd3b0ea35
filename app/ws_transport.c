/* ws_transport.c - WebSocket (RFC 6455) with the sohub.v1 JSON protocol
 * (docs/websocket.md) as a transport.
 *
 * Upgrade (app_ws_upgrade, called by the HTTP transport for requests to
 * ws_path): GET, HTTP/1.1, Upgrade: websocket, Connection: upgrade,
 * Sec-WebSocket-Version 13, a 16-byte key, the subprotocol sohub.v1, and
 * optionally permessage-deflate (RFC 7692), which is always agreed with
 * server_no_context_takeover and client_no_context_takeover: every
 * message is compressed on its own, so the server keeps no compression
 * state per connection and one compressed frame of an update is shared
 * by every recipient, like the RTMP chunks.
 *
 * Input is read with wslay (libwslay): framing, masking (client frames
 * must be masked), fragmentation, control frames, close handshake and
 * codes, UTF-8 of text messages (of compressed ones after inflating
 * here), the message size cap (max_message_size, 1009).  A wslay context
 * costs ~9 KB, so it exists only while input is being taken apart: it is
 * freed whenever no frame or fragmented message is in progress and wslay
 * holds no unparsed byte (counted from the frame headers it reports), so
 * an idle connection holds none.  Messages are assembled here in an
 * sh_buf that grows with the bytes that really arrive.
 *
 * Output is framed here (server frames are unmasked and need no state):
 * a shared update is framed once per update (and compressed once for the
 * connections that agreed to deflate) and the same buffer is queued to
 * each recipient; pongs and the close reply that wslay queues are sent
 * through its send callback straight into the output queue.
 */
#include "app_internal.h"
#include "http.h"

#include <cjson/cJSON.h>
#include <http_parser.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wslay/wslay.h>
#include <zlib.h>

#include "amf_json.h"
#include "sh_err.h"
#include "sh_log.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_SUBPROTOCOL "sohub.v1"
/* Messages larger than this are sent compressed (when agreed). */
#define WS_DEFLATE_MIN 256

enum { OP_CONT = 0, OP_TEXT = 1, OP_BINARY = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };

typedef struct ws_tr {
    wslay_event_context_ptr ctx; /* only while input is being taken apart */
    const uint8_t *in;           /* during tr_feed */
    size_t in_len, in_off;
    uint32_t *budget;
    bool deflate;                /* permessage-deflate agreed */
    bool in_frame;               /* wslay reported a frame start, not its end */
    bool in_msg;                 /* a fragmented data message is in progress */
    bool msg_rsv1;               /* the message being received is compressed */
    bool frame_data;             /* the frame being read belongs to a data message */
    uint8_t msg_opcode;
    bool close_done;             /* a close frame went out */
    uint64_t fed;                /* bytes given to the current wslay context */
    uint64_t parsed;             /* of those, bytes wslay reported as frames */
    sh_buf msg;                  /* the data message being assembled */
    char *origin;                /* Origin of the upgrade request (owned, NULL if none) */
    char *path_app;              /* "app/instance" after ws_path (owned, NULL if none) */
} ws_tr;

static ws_tr *tr_of(const app_conn *c) { return c->tr_state; }

/* ---- framing (server -> client) ---- */

static size_t frame_header(uint8_t *h, uint8_t opcode, bool rsv1, size_t len)
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

/* Raw DEFLATE of p[0..n) as one RFC 7692 message (the final empty block's
 * 00 00 ff ff left off); the stream is shared and reset per message. */
static sh_rcbuf *deflate_msg(app_server *s, const uint8_t *p, size_t n)
{
    z_stream *z = s->ws_deflater;
    if (!z) {
        z = calloc(1, sizeof(*z));
        if (!z || deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8,
                               Z_DEFAULT_STRATEGY) != Z_OK) {
            free(z);
            return NULL;
        }
        s->ws_deflater = z;
    }
    deflateReset(z);
    size_t cap = deflateBound(z, (uLong)n) + 16;
    sh_rcbuf *b = sh_rcbuf_new(cap);
    if (!b)
        return NULL;
    z->next_in = (Bytef *)p;
    z->avail_in = (uInt)n;
    z->next_out = b->data;
    z->avail_out = (uInt)cap;
    int rc = deflate(z, Z_SYNC_FLUSH);
    if (rc != Z_OK || z->avail_in != 0 || cap - z->avail_out < 4) {
        sh_rcbuf_unref(b);
        return NULL;
    }
    b->len = cap - z->avail_out - 4;
    return b;
}

/* One frame of opcode carrying body[0..n), compressed when rsv1; in one
 * new buffer. */
static sh_rcbuf *frame_of(uint8_t opcode, bool rsv1, const uint8_t *body, size_t n)
{
    uint8_t h[10];
    size_t hl = frame_header(h, opcode, rsv1, n);
    sh_rcbuf *b = sh_rcbuf_new(hl + n);
    if (!b)
        return NULL;
    memcpy(b->data, h, hl);
    if (n)
        memcpy(b->data + hl, body, n);
    b->len = hl + n;
    return b;
}

/* A text message for c only (results, calls). */
static int send_text(app_conn *c, const char *text, size_t n)
{
    ws_tr *t = tr_of(c);
    if (t->close_done)
        return SH_ESTATE;
    sh_rcbuf *z = t->deflate && n >= WS_DEFLATE_MIN ? deflate_msg(c->srv, (const uint8_t *)text, n)
                                                     : NULL;
    sh_rcbuf *f = z ? frame_of(OP_TEXT, true, z->data, z->len)
                    : frame_of(OP_TEXT, false, (const uint8_t *)text, n);
    sh_rcbuf_unref(z);
    if (!f)
        return SH_ENOMEM;
    int rc = sh_outq_push(&c->outq, f);
    sh_rcbuf_unref(f);
    return rc;
}

static int send_json(app_conn *c, cJSON *o)
{
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text)
        return SH_ENOMEM;
    int rc = send_text(c, text, strlen(text));
    free(text);
    return rc;
}

static void send_close(app_conn *c, uint16_t code, const char *reason)
{
    ws_tr *t = tr_of(c);
    if (t->close_done)
        return;
    t->close_done = true;
    uint8_t body[2 + 123];
    size_t n = strlen(reason);
    if (n > 123)
        n = 123;
    body[0] = (uint8_t)(code >> 8);
    body[1] = (uint8_t)code;
    /* reason is ours, but keep it valid UTF-8 whatever it holds */
    for (size_t i = 0; i < n; i++)
        body[2 + i] = (uint8_t)reason[i] < 0x80 ? (uint8_t)reason[i] : '?';
    sh_rcbuf *f = frame_of(OP_CLOSE, false, body, 2 + n);
    if (f) {
        sh_outq_push(&c->outq, f);
        sh_rcbuf_unref(f);
    }
}

/* ---- output of the session ---- */

static cJSON *args_json(amf_value *const *args, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) {
        cJSON *v = amf_json_from_value(args[i]);
        if (!v) {
            cJSON_Delete(a);
            return NULL;
        }
        cJSON_AddItemToArray(a, v);
    }
    return a;
}

static int tr_send(app_conn *c, const app_out *m)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return SH_ENOMEM;
    if (m->kind == APP_OUT_CALL) {
        cJSON *args = args_json(m->args, m->nargs);
        if (!args) {
            cJSON_Delete(o);
            return SH_ENOMEM;
        }
        cJSON_AddStringToObject(o, "op", "call");
        if (m->txid != 0)
            cJSON_AddNumberToObject(o, "id", m->txid);
        cJSON_AddStringToObject(o, "method", m->name);
        cJSON_AddItemToObject(o, "args", args);
    } else {
        cJSON *v = m->nargs ? amf_json_from_value(m->args[0]) : cJSON_CreateNull();
        if (!v) {
            cJSON_Delete(o);
            return SH_ENOMEM;
        }
        cJSON_AddStringToObject(o, "op", "result");
        cJSON_AddNumberToObject(o, "id", m->txid);
        cJSON_AddBoolToObject(o, "ok", m->kind == APP_OUT_RESULT);
        cJSON_AddItemToObject(o, "value", v);
    }
    return send_json(c, o);
}

static int tr_send_shared(app_conn *c, app_shared *m)
{
    ws_tr *t = tr_of(c);
    if (m->kind != APP_BODY_JSON)
        return SH_EINVAL;
    if (t->close_done)
        return SH_ESTATE;
    bool z = t->deflate && m->body->len >= WS_DEFLATE_MIN;
    sh_rcbuf **f = &m->framed[z ? APP_FRAME_WS_DEFLATE : APP_FRAME_WS];
    if (!*f) {
        if (z) {
            sh_rcbuf *d = deflate_msg(c->srv, m->body->data, m->body->len);
            *f = d ? frame_of(OP_TEXT, true, d->data, d->len) : NULL;
            sh_rcbuf_unref(d);
        } else {
            *f = frame_of(OP_TEXT, false, m->body->data, m->body->len);
        }
        if (!*f)
            return SH_ENOMEM;
    }
    return sh_outq_push(&c->outq, *f);
}

static int tr_connect_reply(app_conn *c, double txid, bool accepted, const amf_value *info)
{
    app_out m = {.kind = accepted ? APP_OUT_RESULT : APP_OUT_ERROR, .txid = txid,
                 .args = (amf_value *const *)&info, .nargs = info ? 1 : 0};
    return tr_send(c, &m);
}

static int tr_ping(app_conn *c, uint32_t ts)
{
    ws_tr *t = tr_of(c);
    if (t->close_done)
        return SH_ESTATE;
    uint8_t b[4] = {(uint8_t)(ts >> 24), (uint8_t)(ts >> 16), (uint8_t)(ts >> 8), (uint8_t)ts};
    sh_rcbuf *f = frame_of(OP_PING, false, b, 4);
    if (!f)
        return SH_ENOMEM;
    int rc = sh_outq_push(&c->outq, f);
    sh_rcbuf_unref(f);
    return rc;
}

/* app_conn_close: a close frame goes out first, with a code that says why. */
static void tr_closing(app_conn *c, const char *reason)
{
    uint16_t code = 1000;
    if (strncmp(reason, "connect rejected", 16) == 0)
        code = 4403;
    else if (strcmp(reason, "server shutdown") == 0)
        code = 1001;
    else if (strncmp(reason, "ws: ", 4) == 0)
        code = (uint16_t)atoi(reason + 4);
    if (code < 1000)
        code = 1000;
    send_close(c, code, reason);
}

/* ---- input: JSON messages ---- */

/* A bound on the nodes cJSON would build from text (each value, member
 * and element is one): counted before parsing, so a small message cannot
 * make a large tree (2 bytes of "[0,0,..." would be ~64 bytes each). */
static size_t json_nodes(const char *s, size_t n)
{
    size_t nodes = 1;
    bool str = false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                str = false;
        } else if (ch == '"') {
            str = true;
        } else if (ch == ',' || ch == '[' || ch == '{') {
            nodes++;
        }
    }
    return nodes;
}

static void bad_request(app_conn *c, const char *why)
{
    char reason[160];
    snprintf(reason, sizeof(reason), "ws: 4400 %s", why);
    app_conn_close(c, reason);
}

static double num_member(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble > 0 ? v->valuedouble
                                                                               : 0;
}

static const char *str_member(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* JSON array -> owned AMF values; false on a bad value or too many. */
static bool args_of(app_conn *c, const cJSON *a, amf_value ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!a)
        return true;
    if (!cJSON_IsArray(a))
        return false;
    int k = cJSON_GetArraySize(a);
    if (k > RTMP_MAX_CMD_ARGS)
        return false;
    if (k == 0)
        return true;
    *out = calloc((size_t)k, sizeof(**out));
    if (!*out)
        return false;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (amf_json_to_value(e, &(*out)[*n], NULL, NULL) != 0)
            return false;
        (*n)++;
    }
    (void)c;
    return true;
}

static void free_args(amf_value **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        amf_unref(v[i]);
    free(v);
}

static void op_connect(app_conn *c, const cJSON *j)
{
    ws_tr *t = tr_of(c);
    amf_value **args;
    size_t nargs;
    if (!args_of(c, cJSON_GetObjectItemCaseSensitive(j, "args"), &args, &nargs)) {
        free_args(args, nargs);
        bad_request(c, "connect: bad args");
        return;
    }
    const char *app = str_member(j, "app");
    if (!app)
        app = t->path_app;
    const char *tc = str_member(j, "tcUrl");
    app_connect_req r = {
        .txid = num_member(j, "id"),
        .app = app, .app_len = app ? strlen(app) : 0,
        .tc_url = tc, .tc_url_len = tc ? strlen(tc) : 0,
        .user = str_member(j, "user"), .token = str_member(j, "token"),
        .origin = t->origin,
        .encoding = APP_ENC_JSON,
        .args = args, .nargs = nargs,
    };
    app_session_connect(c, &r);
    free_args(args, nargs);
}

static void op_call(app_conn *c, const cJSON *j, bool result)
{
    rtmp_cmd cmd = {.txid = num_member(j, "id")};
    amf_value **args = NULL;
    size_t nargs = 0;
    if (result) {
        const cJSON *ok = cJSON_GetObjectItemCaseSensitive(j, "ok");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "value");
        cmd.name = (char *)(cJSON_IsTrue(ok) ? "_result" : "_error");
        if (v) {
            args = calloc(1, sizeof(*args));
            if (!args || amf_json_to_value(v, &args[0], NULL, NULL) != 0) {
                free(args);
                bad_request(c, "result: bad value");
                return;
            }
            nargs = 1;
        }
    } else {
        cmd.name = (char *)str_member(j, "method");
        if (!cmd.name || !*cmd.name || !args_of(c, cJSON_GetObjectItemCaseSensitive(j, "args"),
                                              &args, &nargs)) {
            free_args(args, nargs);
            bad_request(c, "call: needs \"method\" and an \"args\" array");
            return;
        }
    }
    cmd.args = args;
    cmd.nargs = nargs;
    app_session_call(c, &cmd);
    free_args(args, nargs);
}

static void on_text(app_conn *c, const char *text, size_t n)
{
    const app_config *cfg = c->srv->cfg;
    if (json_nodes(text, n) > cfg->max_amf_elements) {
        bad_request(c, "message has more JSON values than max_amf_elements");
        return;
    }
    cJSON *j = cJSON_ParseWithLength(text, n);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        bad_request(c, "not a JSON object");
        return;
    }
    const char *op = str_member(j, "op");
    if (!op) {
        bad_request(c, "no \"op\"");
    } else if (strcmp(op, "connect") == 0) {
        op_connect(c, j);
    } else if (!c->nc_connected) {
        app_conn_close(c, "ws: 1008 connect first");
    } else if (strcmp(op, "call") == 0) {
        op_call(c, j, false);
    } else if (strcmp(op, "result") == 0) {
        op_call(c, j, true);
    } else if (strcmp(op, "so") == 0) {
        app_session_so_json(c, j);
    } else {
        bad_request(c, "unknown op");
    }
    cJSON_Delete(j);
}

/* Inflates a compressed message (RFC 7692: append 00 00 ff ff) with the
 * server's one inflater, capped at max_message_size.  Returns 0, or the
 * close code to fail with. */
static int inflate_msg(app_conn *c, const sh_buf *in, sh_buf *out)
{
    app_server *s = c->srv;
    z_stream *z = s->ws_inflater;
    if (!z) {
        z = calloc(1, sizeof(*z));
        if (!z || inflateInit2(z, -15) != Z_OK) {
            free(z);
            return 1011;
        }
        s->ws_inflater = z;
    }
    inflateReset(z);
    static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
    uint8_t chunk[16384];
    for (int pass = 0; pass < 2; pass++) {
        z->next_in = pass ? (Bytef *)tail : (Bytef *)in->data;
        z->avail_in = pass ? 4 : (uInt)in->len;
        while (z->avail_in > 0) {
            z->next_out = chunk;
            z->avail_out = sizeof(chunk);
            int rc = inflate(z, Z_SYNC_FLUSH);
            if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
                return 1007;
            size_t got = sizeof(chunk) - z->avail_out;
            if (got && sh_buf_append(out, chunk, got))
                return 1009;
            if (rc == Z_STREAM_END || (rc == Z_BUF_ERROR && got == 0))
                break;
        }
    }
    return 0;
}

static bool utf8_valid(const uint8_t *p, size_t n)
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
        if ((b & 0xE0) == 0xC0) { len = 2; cp = b & 0x1F; min = 0x80; }
        else if ((b & 0xF0) == 0xE0) { len = 3; cp = b & 0x0F; min = 0x800; }
        else if ((b & 0xF8) == 0xF0) { len = 4; cp = b & 0x07; min = 0x10000; }
        else return false;
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

static void on_data_msg(app_conn *c)
{
    ws_tr *t = tr_of(c);
    if (t->msg_opcode != OP_TEXT) {
        app_conn_close(c, "ws: 1003 binary messages are not part of sohub.v1");
        return;
    }
    if (t->msg_rsv1) {
        sh_buf plain;
        sh_buf_init(&plain, c->srv->cfg->max_message_size);
        int code = inflate_msg(c, &t->msg, &plain);
        if (code == 0 && !utf8_valid(plain.data, plain.len))
            code = 1007;
        if (code) {
            sh_buf_cleanup(&plain);
            char why[64];
            snprintf(why, sizeof(why), "ws: %d %s", code,
                     code == 1009 ? "message too big once inflated"
                                  : code == 1007 ? "bad compressed data or UTF-8"
                                                 : "inflate failed");
            app_conn_close(c, why);
            return;
        }
        on_text(c, (const char *)plain.data, plain.len);
        sh_buf_cleanup(&plain);
    } else {
        on_text(c, (const char *)t->msg.data, t->msg.len);
    }
}

/* ---- wslay callbacks ---- */

static ssize_t cb_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    (void)flags;
    app_conn *c = ud;
    ws_tr *t = tr_of(c);
    size_t left = t->in_len - t->in_off;
    if (left == 0 || *t->budget == 0 || c->closing) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = left < len ? left : len;
    memcpy(buf, t->in + t->in_off, n);
    t->in_off += n;
    t->fed += n;
    return (ssize_t)n;
}

static ssize_t cb_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud)
{
    (void)flags;
    app_conn *c = ud;
    if (sh_outq_push_copy(&c->outq, data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void cb_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *a, void *ud)
{
    (void)ctx;
    app_conn *c = ud;
    ws_tr *t = tr_of(c);
    uint64_t pl = a->payload_length;
    t->parsed += 2 + (pl > 0xFFFF ? 8 : pl > 125 ? 2 : 0) + 4; /* client frames are masked */
    t->in_frame = true;
    t->frame_data = a->opcode == OP_TEXT || a->opcode == OP_BINARY || a->opcode == OP_CONT;
    if (a->opcode == OP_TEXT || a->opcode == OP_BINARY) {
        t->msg_opcode = a->opcode;
        t->msg_rsv1 = (a->rsv & WSLAY_RSV1_BIT) != 0;
        sh_buf_reset(&t->msg);
        t->in_msg = !a->fin;
    } else if (a->opcode == OP_CONT) {
        t->in_msg = !a->fin;
    }
}

static void cb_frame_chunk(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_chunk_arg *a, void *ud)
{
    (void)ctx;
    app_conn *c = ud;
    ws_tr *t = tr_of(c);
    t->parsed += a->data_length;
}

static void cb_frame_end(wslay_event_context_ptr ctx, void *ud)
{
    (void)ctx;
    app_conn *c = ud;
    tr_of(c)->in_frame = false;
}

/* Data frames arrive in no-buffering mode: their payload is collected
 * here, as it comes; control frames are buffered by wslay. */
static void cb_data_chunk(wslay_event_context_ptr ctx,
                          const struct wslay_event_on_frame_recv_chunk_arg *a, void *ud)
{
    cb_frame_chunk(ctx, a, ud);
    app_conn *c = ud;
    ws_tr *t = tr_of(c);
    if (t->frame_data && a->data_length && sh_buf_append(&t->msg, a->data, a->data_length)) {
        /* cannot happen: wslay checked the size against the same cap */
        app_conn_abort(c, "ws: message buffer");
    }
}

static void cb_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
                   void *ud)
{
    (void)ctx;
    app_conn *c = ud;
    ws_tr *t = tr_of(c);
    if (c->closing)
        return;
    switch (a->opcode) {
    case OP_TEXT:
    case OP_BINARY:
        if (*t->budget > 0)
            (*t->budget)--;
        on_data_msg(c);
        sh_buf_reset(&t->msg);
        t->msg_opcode = 0;
        break;
    case OP_PONG:
        if (a->msg_length == 4)
            app_session_pong(c, (uint32_t)a->msg[0] << 24 | (uint32_t)a->msg[1] << 16 |
                                    (uint32_t)a->msg[2] << 8 | a->msg[3]);
        break;
    case OP_CLOSE:
        /* wslay queued the close reply; the socket closes once it is out */
        tr_of(c)->close_done = true;
        app_conn_close(c, "peer closed (websocket close)");
        break;
    default:
        break;
    }
}

static const struct wslay_event_callbacks callbacks = {
    .recv_callback = cb_recv,
    .send_callback = cb_send,
    .on_frame_recv_start_callback = cb_frame_start,
    .on_frame_recv_chunk_callback = cb_data_chunk,
    .on_frame_recv_end_callback = cb_frame_end,
    .on_msg_recv_callback = cb_msg,
};

/* ---- the transport ---- */

static int ctx_new(app_conn *c)
{
    ws_tr *t = tr_of(c);
    if (wslay_event_context_server_init(&t->ctx, &callbacks, c) != 0)
        return SH_ENOMEM;
    wslay_event_config_set_no_buffering(t->ctx, 1);
    wslay_event_config_set_max_recv_msg_length(t->ctx, c->srv->cfg->max_message_size);
    if (t->deflate)
        wslay_event_config_set_allowed_rsv_bits(t->ctx, WSLAY_RSV1_BIT);
    t->fed = t->parsed = 0;
    return 0;
}

static void ctx_free(ws_tr *t)
{
    if (t->ctx) {
        wslay_event_context_free(t->ctx);
        t->ctx = NULL;
    }
}

static void tr_feed(app_conn *c, const uint8_t *in, size_t len, size_t *used, uint32_t *budget)
{
    ws_tr *t = tr_of(c);
    *used = 0;
    if (t->close_done && !t->ctx) {
        *used = len; /* after our close frame nothing more is read */
        return;
    }
    if (!t->ctx && ctx_new(c) != 0) {
        app_conn_abort(c, "out of memory");
        return;
    }
    t->in = in;
    t->in_len = len;
    t->in_off = 0;
    t->budget = budget;
    int rc = wslay_event_recv(t->ctx);
    int src = rc == 0 ? wslay_event_send(t->ctx) : 0;
    *used = t->in_off;
    t->in = NULL;
    if (c->closing)
        return;
    if (rc != 0 || src != 0) {
        app_conn_abort(c, "ws: connection failed");
        return;
    }
    if (wslay_event_get_close_sent(t->ctx)) {
        /* wslay answered a protocol error (1002, 1007, 1009 ...) or the
         * peer's close: the socket closes once that frame is out */
        char why[64];
        snprintf(why, sizeof(why), "ws: closed with %u",
                 (unsigned)wslay_event_get_status_code_sent(t->ctx));
        t->close_done = true;
        app_conn_close(c, why);
        return;
    }
    /* Nothing half-read: drop the context until more input comes. */
    if (!t->in_frame && !t->in_msg && t->parsed == t->fed && !wslay_event_want_write(t->ctx))
        ctx_free(t);
}

static int tr_open(app_conn *c, const uint8_t *random)
{
    (void)random;
    ws_tr *t = calloc(1, sizeof(*t));
    if (!t)
        return SH_ENOMEM;
    sh_buf_init(&t->msg, c->srv->cfg->max_message_size);
    c->tr_state = t;
    return 0;
}

static void tr_close(app_conn *c)
{
    ws_tr *t = tr_of(c);
    ctx_free(t);
    sh_buf_cleanup(&t->msg);
    free(t->origin);
    free(t->path_app);
    free(t);
    c->tr_state = NULL;
}

static size_t tr_input_mem(const app_conn *c)
{
    const ws_tr *t = tr_of(c);
    return sizeof(*t) + t->msg.cap + (t->ctx ? 9 * 1024 : 0);
}

static bool tr_handshake_done(const app_conn *c)
{
    (void)c;
    return true;
}

const app_transport app_ws_transport = {
    .name = "ws",
    .frame_slot = APP_FRAME_WS,
    .wants_session = true,
    .open = tr_open,
    .feed = tr_feed,
    .send = tr_send,
    .send_shared = tr_send_shared,
    .connect_reply = tr_connect_reply,
    .ping = tr_ping,
    .closing = tr_closing,
    .handshake_done = tr_handshake_done,
    .input_mem = tr_input_mem,
    .close = tr_close,
};

/* ---- the upgrade ---- */

/* True when the comma-separated list has token (case-insensitive). */
static bool has_token(const char *list, const char *token)
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

/* True when some offer in Sec-WebSocket-Extensions is permessage-deflate
 * with parameters this server can agree to (any client_max_window_bits
 * and server_max_window_bits of 15 or none: the server compresses with a
 * full window and without context takeover, which every client reads). */
static bool deflate_offered(const char *ext)
{
    for (const char *p = ext; p && *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char offer[256];
        if (n < sizeof(offer)) {
            memcpy(offer, p, n);
            offer[n] = '\0';
            char *save = NULL;
            char *tok = strtok_r(offer, ";", &save);
            while (tok && (*tok == ' ' || *tok == '\t'))
                tok++;
            if (tok && strncasecmp(tok, "permessage-deflate", 18) == 0) {
                bool ok = true;
                for (char *prm = strtok_r(NULL, ";", &save); prm; prm = strtok_r(NULL, ";", &save)) {
                    while (*prm == ' ' || *prm == '\t')
                        prm++;
                    if (strncasecmp(prm, "server_max_window_bits", 22) == 0) {
                        const char *eq = strchr(prm, '=');
                        ok = ok && eq && atoi(eq + 1 + (eq[1] == '"')) == 15;
                    } else if (strncasecmp(prm, "client_max_window_bits", 22) != 0 &&
                               strncasecmp(prm, "server_no_context_takeover", 26) != 0 &&
                               strncasecmp(prm, "client_no_context_takeover", 26) != 0) {
                        ok = false;
                    }
                }
                if (ok)
                    return true;
            }
        }
        p = e ? e + 1 : NULL;
    }
    return false;
}

static bool key_ok(const char *key)
{
    uint8_t raw[32];
    size_t n = key ? strlen(key) : 0;
    if (n != 24)
        return false;
    return EVP_DecodeBlock(raw, (const unsigned char *)key, 24) == 18; /* 16 bytes + padding */
}

bool app_ws_upgrade(app_conn *c, const app_http_req *r)
{
    const app_config *cfg = c->srv->cfg;
    size_t pl = strlen(cfg->ws_path);
    if (r->listener != APP_LISTEN_HTTP || strncmp(r->path, cfg->ws_path, pl) != 0 ||
        (r->path[pl] != '\0' && r->path[pl] != '/'))
        return false;
    const char *up = app_http_header(r, "Upgrade");
    const char *conn = app_http_header(r, "Connection");
    const char *ver = app_http_header(r, "Sec-WebSocket-Version");
    const char *key = app_http_header(r, "Sec-WebSocket-Key");
    const char *proto = app_http_header(r, "Sec-WebSocket-Protocol");
    const char *ext = app_http_header(r, "Sec-WebSocket-Extensions");
    const char *origin = app_http_header(r, "Origin");
    if (r->method != HTTP_GET || !up || !has_token(up, "websocket") || !conn ||
        !has_token(conn, "upgrade")) {
        app_http_respond(c, r, 426, "text/plain; charset=utf-8",
                         "Upgrade: websocket\r\nConnection: Upgrade\r\n",
                         "This is a WebSocket endpoint (sohub.v1).\n", 41);
        return true;
    }
    if (!ver || strcmp(ver, "13") != 0) {
        app_http_respond(c, r, 426, "text/plain; charset=utf-8", "Sec-WebSocket-Version: 13\r\n",
                         "WebSocket version 13 only.\n", 27);
        return true;
    }
    if (!key_ok(key)) {
        app_http_respond(c, r, 400, "text/plain; charset=utf-8", NULL,
                         "Bad Sec-WebSocket-Key.\n", 23);
        return true;
    }
    if (!proto || !has_token(proto, WS_SUBPROTOCOL)) {
        app_http_respond(c, r, 400, "text/plain; charset=utf-8", NULL,
                         "Ask for the subprotocol sohub.v1 (Sec-WebSocket-Protocol).\n", 59);
        return true;
    }
    /* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) */
    char kg[64];
    snprintf(kg, sizeof(kg), "%s%s", key, WS_GUID);
    uint8_t sha[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)kg, strlen(kg), sha);
    char accept[64];
    EVP_EncodeBlock((unsigned char *)accept, sha, SHA_DIGEST_LENGTH);
    bool deflate = cfg->ws_deflate && deflate_offered(ext);
    char resp[512];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\nServer: sohub\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                     "Sec-WebSocket-Protocol: " WS_SUBPROTOCOL "\r\n%s\r\n",
                     accept,
                     deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                               "server_no_context_takeover; client_no_context_takeover\r\n"
                             : "");
    /* The header values live in the HTTP transport's buffers, which its
     * close frees: copy what the WebSocket keeps first. */
    char *origin_copy = origin ? strdup(origin) : NULL;
    char *path_copy = r->path[pl] == '/' && r->path[pl + 1] ? strdup(r->path + pl + 1) : NULL;
    /* From here the connection is a WebSocket: swap the transports. */
    const app_transport *http = c->tr;
    http->close(c);
    c->tr = &app_ws_transport;
    if (c->tr->open(c, NULL) != 0) {
        free(origin_copy);
        free(path_copy);
        app_conn_abort(c, "out of memory");
        return true;
    }
    ws_tr *t = tr_of(c);
    t->deflate = deflate;
    t->origin = origin_copy;
    t->path_app = path_copy;
    sh_outq_push_copy(&c->outq, resp, (size_t)n);
    app_conn_output(c);
    SH_LOG(SH_LOG_DEBUG, "conn=%llu websocket upgrade%s", (unsigned long long)c->id,
           deflate ? " (permessage-deflate)" : "");
    return true;
}
