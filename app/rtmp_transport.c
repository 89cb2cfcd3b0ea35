/* rtmp_transport.c - RTMP over TCP as a transport (app_internal.h).
 *
 * Input: rtmp_conn (sans-I/O) turns bytes into messages and answers
 * protocol control itself.  Commands (types 20 and 17, spec 7.2.1 /
 * 7.2.2) are decoded here: connect becomes an app_connect_req for the
 * session; createStream / deleteStream / closeStream manage stream ids;
 * play and publish are refused with onStatus until media streams exist;
 * every other name is a call for the session.  Shared-object messages
 * (types 19 and 16) go to the session as bodies.
 *
 * Output: commands go out in the message type (20 or 17) the client's
 * connect came in.  A shared message is cut into chunks once per update
 * (rtmp_chunk_shared on RTMP_CSID_SHARED, full headers) and the same
 * buffer is queued to every RTMP recipient: no header state to update.
 *
 * Before connect is accepted the connection runs with tighter limits
 * (preconnect_max_message_size for messages, buffered input and the
 * connect command's AMF); they are raised to the configured ones when the
 * session accepts the client.
 *
 * An HTTP request on the RTMP port (rtmpdump's rtmpt:// does that) gets
 * an HTTP error and is closed, so such clients fail at once instead of
 * retrying a silent socket.
 */
#include "app_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sh_err.h"
#include "sh_log.h"

#define FMS_VERSION "FMS/3,5,7,7009"
/* Messages (beside protocol control) a client may send before its connect
 * is accepted; real clients send one, the connect. */
#define PRECONNECT_MAX_MESSAGES 16

typedef struct rtmp_tr {
    rtmp_conn *rtmp;
    bool amf3_cmds;             /* connect came as type 17 */
    bool sniffed;               /* the first input byte was looked at */
    uint32_t pre_msgs;          /* messages handled before connect was accepted */
    uint8_t *streams;           /* streams[i] != 0: id i+1 in use */
    uint32_t nstreams;
} rtmp_tr;

static rtmp_tr *tr_of(const app_conn *c) { return c->tr_state; }

static void obj_set(amf_value *o, const char *k, amf_value *v)
{
    if (o && v)
        amf_object_set_cstr(o, k, v);
    else
        amf_unref(v);
}

static void safe(char *out, size_t outsz, const char *s)
{
    sh_log_sanitize(out, outsz, s, strlen(s));
}

/* ---- life cycle ---- */

static int tr_open(app_conn *c, const uint8_t *random)
{
    app_server *s = c->srv;
    rtmp_tr *t = calloc(1, sizeof(*t));
    if (!t)
        return SH_ENOMEM;
    rtmp_conn_config cfg = s->rtmp_cfg;
    uint32_t pre = s->cfg->preconnect_max_message_size;
    if (cfg.limits.max_message_size > pre)
        cfg.limits.max_message_size = pre;
    if (cfg.limits.max_buffered > (size_t)pre * 2)
        cfg.limits.max_buffered = (size_t)pre * 2;
    t->rtmp = rtmp_conn_new(&cfg, &c->outq, random, (uint32_t)uv_now(s->loop));
    if (!t->rtmp) {
        free(t);
        return SH_ENOMEM;
    }
    c->tr_state = t;
    return 0;
}

static void tr_close(app_conn *c)
{
    rtmp_tr *t = tr_of(c);
    rtmp_conn_free(t->rtmp);
    free(t->streams);
    free(t);
    c->tr_state = NULL;
}

static bool tr_handshake_done(const app_conn *c) { return rtmp_conn_handshake_done(tr_of(c)->rtmp); }

static size_t tr_input_mem(const app_conn *c)
{
    return sizeof(rtmp_tr) + rtmp_conn_buffered(tr_of(c)->rtmp);
}

/* ---- output ---- */

static int send_cmd_on(app_conn *c, uint32_t sid, const char *name, double txid,
                       const amf_value *cmd_obj, amf_value *const *args, size_t nargs)
{
    rtmp_tr *t = tr_of(c);
    return rtmp_conn_send_cmd(t->rtmp, sid, t->amf3_cmds, name, txid, cmd_obj, args, nargs);
}

static int tr_send(app_conn *c, const app_out *m)
{
    switch (m->kind) {
    case APP_OUT_CALL:
        return send_cmd_on(c, 0, m->name, m->txid, NULL, m->args, m->nargs);
    case APP_OUT_RESULT:
        return send_cmd_on(c, 0, "_result", m->txid, NULL, m->args, m->nargs);
    case APP_OUT_ERROR:
        return send_cmd_on(c, 0, "_error", m->txid, NULL, m->args, m->nargs);
    }
    return SH_EINVAL;
}

static int tr_send_shared(app_conn *c, app_shared *m)
{
    uint8_t want = c->encoding == APP_ENC_AMF3 ? APP_BODY_SO_AMF3 : APP_BODY_SO_AMF0;
    if (m->kind != want)
        return SH_EINVAL;
    uint32_t cs = c->srv->cfg->out_chunk_size;
    sh_rcbuf **f = &m->framed[APP_FRAME_RTMP];
    if (!*f) {
        rtmp_msg rm = {.type = m->kind, .csid = RTMP_CSID_SHARED,
                       .data = m->body->data, .len = m->body->len};
        *f = rtmp_chunk_shared(&rm, cs);
        if (!*f)
            return SH_ENOMEM;
    }
    return rtmp_conn_send_shared(tr_of(c)->rtmp, *f, cs);
}

static int tr_connect_reply(app_conn *c, double txid, bool accepted, const amf_value *info)
{
    rtmp_tr *t = tr_of(c);
    amf_value *inf = (amf_value *)info;
    if (!accepted)
        return send_cmd_on(c, 0, "_error", txid, NULL, &inf, inf ? 1 : 0);
    rtmp_conn_set_limits(t->rtmp, &c->srv->rtmp_cfg.limits);
    int rc = rtmp_conn_send_connect_preamble(t->rtmp);
    amf_value *props = amf_object_new(NULL);
    obj_set(props, "fmsVer", amf_string_cstr(FMS_VERSION));
    obj_set(props, "capabilities", amf_number(31));
    obj_set(props, "mode", amf_number(1));
    if (rc == 0)
        rc = send_cmd_on(c, 0, "_result", txid, props, &inf, inf ? 1 : 0);
    amf_unref(props);
    return rc;
}

static int tr_ping(app_conn *c, uint32_t ts)
{
    return rtmp_conn_send_user_control(tr_of(c)->rtmp, RTMP_UC_PING_REQUEST, ts);
}

static int send_stream_status(app_conn *c, uint32_t sid, const char *level, const char *code,
                              const char *desc, const char *details)
{
    amf_value *info = app_status_info(level, code, desc);
    if (details)
        obj_set(info, "details", amf_string_cstr(details));
    obj_set(info, "clientid", amf_number((double)c->id));
    int rc = send_cmd_on(c, sid, "onStatus", 0, NULL, &info, info ? 1 : 0);
    amf_unref(info);
    return rc;
}

/* Answers for commands this transport handles itself. */
static void reply(app_conn *c, double txid, const amf_value *value)
{
    app_conn_reply_result(c, txid, value);
}

/* ---- connect ---- */

static const char *str_field(const amf_value *obj, const char *key, size_t *len)
{
    const amf_value *v = obj ? amf_object_get(obj, key) : NULL;
    if (!v || amf_type_of(v) != AMF_STRING)
        return NULL;
    return amf_as_string(v, len);
}

static void handle_connect(app_conn *c, const rtmp_msg *m, const rtmp_cmd *cmd)
{
    rtmp_tr *t = tr_of(c);
    if (c->nc_connected) {
        app_conn_abort(c, "second connect on one connection");
        return;
    }
    t->amf3_cmds = m->type == RTMP_MSG_COMMAND_AMF3;
    const amf_value *oe = cmd->cmd_obj ? amf_object_get(cmd->cmd_obj, "objectEncoding") : NULL;
    app_connect_req r = {
        .txid = cmd->txid,
        .encoding = (oe && amf_as_number(oe) == 3) ? APP_ENC_AMF3 : APP_ENC_AMF0,
        .cmd_obj = cmd->cmd_obj, .args = cmd->args, .nargs = cmd->nargs,
    };
    r.app = str_field(cmd->cmd_obj, "app", &r.app_len);
    r.tc_url = str_field(cmd->cmd_obj, "tcUrl", &r.tc_url_len);
    app_session_connect(c, &r);
}

/* ---- streams ---- */

static void handle_create_stream(app_conn *c, const rtmp_cmd *cmd)
{
    rtmp_tr *t = tr_of(c);
    uint32_t max = c->srv->cfg->max_streams;
    if (!t->streams) {
        t->streams = calloc(max, 1);
        if (!t->streams) {
            app_conn_abort(c, "out of memory");
            return;
        }
    }
    for (uint32_t i = 0; i < max; i++) {
        if (t->streams[i])
            continue;
        t->streams[i] = 1;
        t->nstreams++;
        amf_value *id = amf_number((double)(i + 1));
        reply(c, cmd->txid, id);
        amf_unref(id);
        return;
    }
    app_conn_reply_error(c, cmd->txid, "NetConnection.Call.Failed",
                         "Too many streams (max_streams)");
}

static void release_stream_id(app_conn *c, double id)
{
    rtmp_tr *t = tr_of(c);
    if (!t->streams || !(id >= 1) || id > c->srv->cfg->max_streams)
        return;
    uint32_t i = (uint32_t)id - 1;
    if (t->streams[i]) {
        t->streams[i] = 0;
        t->nstreams--;
    }
}

static const char *first_string_arg(const rtmp_cmd *cmd, char *buf, size_t bufsz)
{
    buf[0] = '\0';
    if (cmd->nargs >= 1 && amf_type_of(cmd->args[0]) == AMF_STRING) {
        size_t n;
        const char *s = amf_as_string(cmd->args[0], &n);
        sh_log_sanitize(buf, bufsz, s, n);
    }
    return buf;
}

static void handle_play(app_conn *c, const rtmp_msg *m, const rtmp_cmd *cmd)
{
    char name[256];
    first_string_arg(cmd, name, sizeof(name));
    SH_LOG(SH_LOG_INFO, "conn=%llu play stream=%s sid=%u: not found",
           (unsigned long long)c->id, name, m->stream_id);
    char desc[300];
    snprintf(desc, sizeof(desc), "Failed to play %s; stream not found.", name);
    send_stream_status(c, m->stream_id, "error", "NetStream.Play.StreamNotFound", desc, name);
}

/* Publishing is not built yet: Denied (not BadName, which players and
 * GStreamer read as "the stream already exists"). */
static void handle_publish(app_conn *c, const rtmp_msg *m, const rtmp_cmd *cmd)
{
    char name[256];
    first_string_arg(cmd, name, sizeof(name));
    SH_LOG(SH_LOG_INFO, "conn=%llu publish stream=%s sid=%u: refused",
           (unsigned long long)c->id, name, m->stream_id);
    char desc[300];
    snprintf(desc, sizeof(desc), "Publishing is not supported by this server: %s", name);
    send_stream_status(c, m->stream_id, "error", "NetStream.Publish.Denied", desc, name);
}

/* ---- dispatch ---- */

static bool is(const rtmp_cmd *cmd, const char *name) { return strcmp(cmd->name, name) == 0; }

static void handle_command(app_conn *c, const rtmp_msg *m)
{
    rtmp_cmd cmd;
    sh_error err = {0};
    const amf_limits *lim = c->nc_connected ? &c->srv->amf_limits : &c->srv->amf_limits_pre;
    int rc = rtmp_cmd_decode(m, lim, &cmd, &err);
    if (rc < 0) {
        char why[160];
        snprintf(why, sizeof(why), "bad command message: %s",
                 err.what ? err.what : sh_strerror(rc));
        app_conn_abort(c, why);
        return;
    }
    if (!isfinite(cmd.txid) || cmd.txid < 0)
        cmd.txid = 0;
    /* The name is peer text: sanitised only when it is printed (this is
     * every call's path). */
    if (SH_LOG_DEBUG <= sh_log_get_level()) {
        char name[64];
        safe(name, sizeof(name), cmd.name);
        SH_LOG(SH_LOG_DEBUG, "conn=%llu command %s txid=%.0f sid=%u",
               (unsigned long long)c->id, name, cmd.txid, m->stream_id);
    }

    if (is(&cmd, "connect")) {
        handle_connect(c, m, &cmd);
    } else if (!c->nc_connected) {
        app_session_call(c, &cmd); /* refused there: nothing before connect */
    } else if (is(&cmd, "createStream")) {
        handle_create_stream(c, &cmd);
    } else if (is(&cmd, "deleteStream") || is(&cmd, "closeStream")) {
        double id = m->stream_id;
        if (is(&cmd, "deleteStream") && cmd.nargs >= 1)
            id = amf_as_number(cmd.args[0]);
        release_stream_id(c, id);
    } else if (is(&cmd, "play") || is(&cmd, "play2")) {
        handle_play(c, m, &cmd);
    } else if (is(&cmd, "publish")) {
        handle_publish(c, m, &cmd);
    } else if (is(&cmd, "releaseStream") || is(&cmd, "FCPublish") ||
               is(&cmd, "FCUnpublish") || is(&cmd, "FCSubscribe") ||
               is(&cmd, "FCUnsubscribe") || is(&cmd, "_checkbw")) {
        /* Sent by FFmpeg and librtmp around play/publish; nothing to do. */
        reply(c, cmd.txid, NULL);
    } else if (is(&cmd, "getStreamLength")) {
        amf_value *len = amf_number(0);
        reply(c, cmd.txid, len);
        amf_unref(len);
    } else if (is(&cmd, "receiveAudio") || is(&cmd, "receiveVideo") || is(&cmd, "pause") ||
               is(&cmd, "seek") || is(&cmd, "onBWDone") || is(&cmd, "_onbwcheck") ||
               is(&cmd, "_onbwdone")) {
        /* No media yet: nothing to answer. */
    } else {
        app_session_call(c, &cmd);
    }
    rtmp_cmd_cleanup(&cmd);
}

static void dispatch(app_conn *c, const rtmp_msg *m)
{
    switch (m->type) {
    case RTMP_MSG_USER_CONTROL:
        if (m->len >= 6 && sh_get_u16be(m->data) == RTMP_UC_PING_RESPONSE)
            app_session_pong(c, sh_get_u32be(m->data + 2));
        break;
    case RTMP_MSG_COMMAND_AMF0:
    case RTMP_MSG_COMMAND_AMF3:
        handle_command(c, m);
        break;
    case RTMP_MSG_SO_AMF0:
    case RTMP_MSG_SO_AMF3:
        app_session_so(c, m->type, m->data, m->len);
        break;
    default:
        /* Audio, video, data and aggregate messages: nothing is published
         * or played yet, so they are dropped. */
        SH_LOG(SH_LOG_DEBUG, "conn=%llu message type %u (%zu bytes) ignored",
               (unsigned long long)c->id, m->type, m->len);
        break;
    }
}

/* RTMP starts with version byte 3 (6 for RTMPE); an HTTP request with a
 * method name. */
static bool looks_like_http(const uint8_t *in, size_t len)
{
    static const char *const methods[] = {"GET ", "POST", "HEAD", "PUT ", "OPTI",
                                          "DELE", "PATC", "CONN", "TRAC"};
    if (len < 4)
        return len > 0 && in[0] >= 'A' && in[0] <= 'Z';
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (memcmp(in, methods[i], 4) == 0)
            return true;
    return false;
}

static void refuse_http(app_conn *c)
{
    static const char body[] =
        "This port speaks RTMP (rtmp://). RTMPT (RTMP over HTTP) is not served.\n";
    char resp[512];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     sizeof(body) - 1, body);
    sh_outq_push_copy(&c->outq, resp, (size_t)n);
    app_conn_output(c);
    app_conn_close(c, "HTTP request on the RTMP port");
}

static void tr_feed(app_conn *c, const uint8_t *in, size_t len, size_t *used, uint32_t *budget)
{
    rtmp_tr *t = tr_of(c);
    *used = 0;
    if (!t->sniffed && len > 0) {
        t->sniffed = true;
        if (looks_like_http(in, len)) {
            *used = len;
            refuse_http(c);
            return;
        }
    }
    rtmp_conn_read_begin(t->rtmp);
    while (*used < len && !c->closing && *budget > 0) {
        size_t n = 0;
        rtmp_msg m;
        sh_error err = {0};
        int rc = rtmp_conn_feed(t->rtmp, in + *used, len - *used, &n, &m, &err);
        *used += n;
        if (rc < 0) {
            char why[160];
            snprintf(why, sizeof(why), "%s: %s", rc == SH_ELIMIT ? "limit" : "protocol error",
                     err.what ? err.what : sh_strerror(rc));
            SH_LOG(SH_LOG_DEBUG, "conn=%llu feed error %d at %s", (unsigned long long)c->id,
                   rc, err.where ? err.where : "?");
            app_conn_abort(c, why);
            return;
        }
        if (rc == 0)
            return;
        (*budget)--;
        if (!c->nc_connected && ++t->pre_msgs > PRECONNECT_MAX_MESSAGES) {
            app_conn_abort(c, "limit: too many messages before connect");
            return;
        }
        dispatch(c, &m);
    }
}

const app_transport app_rtmp_transport = {
    .name = "rtmp",
    .frame_slot = APP_FRAME_RTMP,
    .wants_session = true,
    .open = tr_open,
    .feed = tr_feed,
    .send = tr_send,
    .send_shared = tr_send_shared,
    .connect_reply = tr_connect_reply,
    .ping = tr_ping,
    .handshake_done = tr_handshake_done,
    .input_mem = tr_input_mem,
    .close = tr_close,
};
