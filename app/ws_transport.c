/* ws_transport.c - WebSocket (RFC 6455) with the sohub.v1 JSON protocol
 * (docs/websocket.md) as a transport.
 *
 * Upgrade (app_ws_upgrade, called by the HTTP transport for requests to
 * ws_path): GET, HTTP/1.1, Upgrade: websocket, Connection: upgrade,
 * Sec-WebSocket-Version 13, a 16-byte key, the subprotocol sohub.v1, and
 * optionally permessage-deflate (RFC 7692), always agreed with
 * server_no_context_takeover and client_no_context_takeover: every
 * message is compressed on its own, so the server keeps no compression
 * state per connection (one ws_zip per server) and one compressed frame
 * of an update is shared by every recipient, like the RTMP chunks.
 *
 * Input goes through http/ws.h's ws_in (wslay, whose context exists only
 * while input is being taken apart, so idle connections hold none):
 * masking, fragmentation, control frames, close handshake and codes,
 * UTF-8, max_message_size.  Whole text messages are JSON (counted before
 * cJSON parses them) and go to the session like RTMP commands.  Output
 * is framed here with ws_frame: a shared update once per update (and
 * compressed once for the connections that agreed to deflate), queued to
 * each recipient.
 */
#include "app_internal.h"
#include "http.h"

#include <cjson/cJSON.h>
#include <http_parser.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "amf_json.h"
#include "so_json.h"
#include "ws.h"
#include "sh_err.h"
#include "sh_log.h"

#define WS_SUBPROTOCOL "sohub.v1"
/* Messages larger than this are sent compressed (when agreed). */
#define WS_DEFLATE_MIN 256


typedef struct ws_tr {
    ws_in *in;                   /* the reader */
    size_t in_mem;               /* ws_in_mem(in), kept here: the server asks for it
                                    with every queued message (its memory count), and
                                    reading it from ws_in costs a cache miss per
                                    recipient of a fan-out; it changes only on input */
    bool deflate;                /* permessage-deflate agreed */
    bool close_done;             /* a close frame went out */
    char *origin;                /* Origin of the upgrade request (owned, NULL if none) */
    char *path_app;              /* "app/instance" after ws_path (owned, NULL if none) */
} ws_tr;

static ws_tr *tr_of(const app_conn *c) { return c->tr_state; }

/* ---- output ---- */

static ws_zip *zip_of(app_server *s)
{
    if (!s->ws_zip)
        s->ws_zip = ws_zip_new();
    return s->ws_zip;
}

/* A text message for c only (results, calls). */
static int send_text(app_conn *c, const char *text, size_t n)
{
    ws_tr *t = tr_of(c);
    if (t->close_done)
        return SH_ESTATE;
    ws_zip *zip = t->deflate && n >= WS_DEFLATE_MIN ? zip_of(c->srv) : NULL;
    sh_rcbuf *z = zip ? ws_zip_deflate(zip, (const uint8_t *)text, n) : NULL;
    sh_rcbuf *f = z ? ws_frame(WS_OP_TEXT, true, z->data, z->len)
                    : ws_frame(WS_OP_TEXT, false, (const uint8_t *)text, n);
    sh_rcbuf_unref(z);
    if (!f)
        return SH_ENOMEM;
    int rc = sh_outq_push(&c->outq, f);
    sh_rcbuf_unref(f);
    return rc;
}

static int send_json(app_conn *c, cJSON *o)
{
    char *text = amf_json_print_tree(o);
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
    sh_rcbuf *f = ws_frame(WS_OP_CLOSE, false, body, 2 + n);
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
            ws_zip *zip = zip_of(c->srv);
            sh_rcbuf *d = zip ? ws_zip_deflate(zip, m->body->data, m->body->len) : NULL;
            *f = d ? ws_frame(WS_OP_TEXT, true, d->data, d->len) : NULL;
            sh_rcbuf_unref(d);
        } else {
            *f = ws_frame(WS_OP_TEXT, false, m->body->data, m->body->len);
        }
        if (!*f)
            return SH_ENOMEM;
    }
    return sh_outq_push(&c->outq, *f);
}

static int tr_connect_reply(app_conn *c, double txid, bool accepted, const amf_value *info)
{
    if (accepted) /* the pre-connect cap is lifted, as for RTMP */
        ws_in_set_max_message(tr_of(c)->in, c->srv->cfg->max_message_size);
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
    sh_rcbuf *f = ws_frame(WS_OP_PING, false, b, 4);
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

/* The limits a value in a call or result is held to: those of an RTMP
 * client's command values (max_amf_*; max_message_size bytes). */
static so_wire_limits value_limits(const app_config *cfg)
{
    so_wire_limits l = so_wire_default_limits;
    l.max_value = cfg->max_message_size;
    l.amf.max_depth = cfg->max_amf_depth;
    l.amf.max_string = cfg->max_amf_string;
    l.amf.max_elements = cfg->max_amf_elements;
    l.amf.max_total = cfg->max_message_size;
    return l;
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
    so_wire_limits lim = value_limits(c->srv->cfg);
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (so_json_value(e, &lim, &(*out)[*n], NULL) != 0)
            return false;
        (*n)++;
    }
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
            so_wire_limits lim = value_limits(c->srv->cfg);
            args = calloc(1, sizeof(*args));
            if (!args || so_json_value(v, &lim, &args[0], NULL) != 0) {
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
            bad_request(c, "call: needs \"method\" and an \"args\" array of values "
                           "within the AMF limits");
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
    if (amf_json_node_bound(text, n) > cfg->max_amf_elements) {
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

/* ---- input ---- */

/* One feed: the connection and the replies ws_in made so far. */
typedef struct feed_ctx {
    app_conn *c;
    sh_buf replies;
} feed_ctx;

/* Pongs and close frames ws_in made go out before anything queued after
 * them, in the order of the frames they answer. */
static void push_replies(feed_ctx *f)
{
    if (f->replies.len)
        sh_outq_push_copy(&f->c->outq, f->replies.data, f->replies.len);
    sh_buf_reset(&f->replies);
}

static bool on_event(void *ud, ws_in_event ev, const uint8_t *data, size_t len)
{
    feed_ctx *f = ud;
    app_conn *c = f->c;
    ws_tr *t = tr_of(c);
    push_replies(f);
    switch (ev) {
    case WS_IN_TEXT:
        t->in_mem = ws_in_mem(t->in); /* what the reader holds now, mid-feed */
        on_text(c, (const char *)data, len);
        break;
    case WS_IN_BINARY:
        app_conn_close(c, "ws: 1003 binary messages are not part of sohub.v1");
        break;
    case WS_IN_PONG:
        if (len == 4)
            app_session_pong(c, (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 |
                                    (uint32_t)data[2] << 8 | data[3]);
        break;
    case WS_IN_CLOSE:
        /* the reply is on its way; the socket closes once it is out */
        t->close_done = true;
        app_conn_close(c, "peer closed (websocket close)");
        break;
    }
    return !c->closing;
}

static void tr_feed(app_conn *c, const uint8_t *in, size_t len, size_t *used, uint32_t *budget)
{
    ws_tr *t = tr_of(c);
    feed_ctx f = {.c = c};
    sh_buf_init(&f.replies, len + WS_IN_REPLY_SLACK);
    int code = ws_in_feed(t->in, in, len, used, *budget, on_event, &f, &f.replies);
    t->in_mem = ws_in_mem(t->in);
    push_replies(&f);
    sh_buf_cleanup(&f.replies);
    if (*budget)
        (*budget)--;
    if (code && !c->closing) {
        /* ws_in sent the close frame already (1002, 1007, 1009 ...) */
        t->close_done = true;
        char why[64];
        snprintf(why, sizeof(why), "ws: failed with %d", code);
        app_conn_close(c, why);
    }
}

static int tr_open(app_conn *c, const uint8_t *random)
{
    (void)random;
    ws_tr *t = calloc(1, sizeof(*t));
    if (!t)
        return SH_ENOMEM;
    c->tr_state = t;
    return 0;
}

/* The reader, once the upgrade decided about deflate. */
static int ws_start(app_conn *c, bool deflate)
{
    ws_tr *t = tr_of(c);
    ws_zip *zip = deflate ? zip_of(c->srv) : NULL;
    t->deflate = deflate && zip;
    /* until connect is accepted: preconnect_max_message_size, as for RTMP */
    t->in = ws_in_new(c->srv->cfg->preconnect_max_message_size, t->deflate, zip);
    t->in_mem = t->in ? ws_in_mem(t->in) : 0;
    return t->in ? 0 : SH_ENOMEM;
}

static void tr_close(app_conn *c)
{
    ws_tr *t = tr_of(c);
    if (!t)
        return; /* the upgrade could not open it */
    ws_in_free(t->in);
    free(t->origin);
    free(t->path_app);
    free(t);
    c->tr_state = NULL;
}

static size_t tr_input_mem(const app_conn *c)
{
    const ws_tr *t = tr_of(c);
    return t ? sizeof(*t) + t->in_mem : 0;
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

bool app_ws_upgrade(app_conn *c, const app_http_req *r)
{
    const app_config *cfg = c->srv->cfg;
    size_t pl = strlen(cfg->ws_path);
    if (c->listen_kind != APP_LISTEN_HTTP || strncmp(r->path, cfg->ws_path, pl) != 0 ||
        (r->path[pl] != '\0' && r->path[pl] != '/'))
        return false;
    const char *up = app_http_header(r, "Upgrade");
    const char *conn = app_http_header(r, "Connection");
    const char *ver = app_http_header(r, "Sec-WebSocket-Version");
    const char *key = app_http_header(r, "Sec-WebSocket-Key");
    const char *proto = app_http_header(r, "Sec-WebSocket-Protocol");
    const char *ext = app_http_header(r, "Sec-WebSocket-Extensions");
    const char *origin = app_http_header(r, "Origin");
    if (r->method != HTTP_GET || !up || !ws_has_token(up, "websocket") || !conn ||
        !ws_has_token(conn, "upgrade")) {
        app_http_respond(c, r, 426, "text/plain; charset=utf-8",
                         "Upgrade: websocket\r\nConnection: Upgrade\r\n",
                         "This is a WebSocket endpoint (sohub.v1).\n", 41);
        return true;
    }
    if (r->http_major < 1 || (r->http_major == 1 && r->http_minor < 1)) {
        /* RFC 6455 4.1: the opening handshake is an HTTP/1.1 request */
        static const char msg[] = "WebSocket needs HTTP/1.1.\n";
        app_http_respond(c, r, 400, "text/plain; charset=utf-8", NULL, msg, sizeof(msg) - 1);
        return true;
    }
    if (!ver || strcmp(ver, "13") != 0) {
        app_http_respond(c, r, 426, "text/plain; charset=utf-8", "Sec-WebSocket-Version: 13\r\n",
                         "WebSocket version 13 only.\n", 27);
        return true;
    }
    if (!ws_key_ok(key)) {
        app_http_respond(c, r, 400, "text/plain; charset=utf-8", NULL,
                         "Bad Sec-WebSocket-Key.\n", 23);
        return true;
    }
    if (!proto || !ws_has_token(proto, WS_SUBPROTOCOL)) {
        app_http_respond(c, r, 400, "text/plain; charset=utf-8", NULL,
                         "Ask for the subprotocol sohub.v1 (Sec-WebSocket-Protocol).\n", 59);
        return true;
    }
    char accept[64];
    ws_accept_key(key, accept);
    char ext_answer[WS_DEFLATE_ANSWER_MAX];
    bool deflate = cfg->ws_deflate && ws_deflate_answer(ext, ext_answer, sizeof(ext_answer));
    char resp[512];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\nServer: sohub\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                     "Sec-WebSocket-Protocol: " WS_SUBPROTOCOL "\r\n%s%s%s\r\n",
                     accept, deflate ? "Sec-WebSocket-Extensions: " : "",
                     deflate ? ext_answer : "", deflate ? "\r\n" : "");
    /* r (its headers, its path) lives in the HTTP transport's parser,
     * which goes with it: copy what the WebSocket keeps first. */
    bool has_app = r->path[pl] == '/' && r->path[pl + 1];
    char *origin_copy = origin ? strdup(origin) : NULL;
    char *app_copy = has_app ? strdup(r->path + pl + 1) : NULL;
    if ((origin && !origin_copy) || (has_app && !app_copy)) {
        free(origin_copy);
        free(app_copy);
        app_conn_abort(c, "out of memory");
        return true;
    }
    /* From here the connection is a WebSocket: swap the transports. */
    const app_transport *http = c->tr;
    http->close(c);
    r = NULL;
    c->tr = &app_ws_transport;
    if (c->tr->open(c, NULL) != 0 || ws_start(c, deflate) != 0) {
        free(origin_copy);
        free(app_copy);
        app_conn_abort(c, "out of memory");
        return true;
    }
    ws_tr *t = tr_of(c);
    t->origin = origin_copy;
    t->path_app = app_copy;
    sh_outq_push_copy(&c->outq, resp, (size_t)n);
    app_conn_output(c);
    SH_LOG(SH_LOG_DEBUG, "conn=%llu websocket upgrade%s", (unsigned long long)c->id,
           deflate ? " (permessage-deflate)" : "");
    return true;
}
