/* netconn.c - NetConnection and NetStream commands (spec 7.2.1, 7.2.2).
 *
 * connect: parse app / instance / query, pick the application, run the
 * authenticator and on_connect, then answer like FMS (Window Ack Size, Set
 * Peer Bandwidth, Set Chunk Size, _result) or _error + close.  Replies go
 * out in the message type (20 or 17) the command came in.
 * createStream / deleteStream / closeStream manage stream ids per
 * connection; play and publish answer with an error onStatus until media
 * streams exist; other names go to the method registry and unknown ones get
 * _error NetConnection.Call.Failed, never silence.
 */
#include "app_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sh_err.h"
#include "sh_log.h"

#define FMS_VERSION "FMS/3,5,7,7009"
#define DEFAULT_INSTANCE "_definst_"

/* ---- amf helpers (NULL-tolerant: a failed allocation leaves a field out) ---- */

static void obj_set(amf_value *o, const char *k, amf_value *v)
{
    if (o && v)
        amf_object_set_cstr(o, k, v);
    else
        amf_unref(v);
}

static amf_value *status_info(const char *level, const char *code, const char *desc)
{
    amf_value *o = amf_object_new(NULL);
    obj_set(o, "level", amf_string_cstr(level));
    obj_set(o, "code", amf_string_cstr(code));
    obj_set(o, "description", amf_string_cstr(desc));
    return o;
}

static const char *str_field(const amf_value *obj, const char *key, size_t *len)
{
    const amf_value *v = obj ? amf_object_get(obj, key) : NULL;
    if (!v || amf_type_of(v) != AMF_STRING)
        return NULL;
    return amf_as_string(v, len);
}

static void safe(char *out, size_t outsz, const char *s)
{
    sh_log_sanitize(out, outsz, s, strlen(s));
}

/* ---- sending helpers ---- */

static int send_cmd_on(app_conn *c, uint32_t sid, bool amf3, const char *name, double txid,
                       const amf_value *cmd_obj, amf_value *const *args, size_t nargs)
{
    if (c->closing)
        return SH_ESTATE;
    int rc = rtmp_conn_send_cmd(c->rtmp, sid, amf3, name, txid, cmd_obj, args, nargs);
    if (rc < 0) {
        SH_LOG(SH_LOG_WARN, "conn=%llu cannot send %s: %s", (unsigned long long)c->id, name,
               sh_strerror(rc));
        return rc;
    }
    if (c->outq.bytes > c->srv->cfg->max_output_bytes) {
        app_conn_abort(c, "output queue over max_output_bytes");
        return SH_ELIMIT;
    }
    app_conn_mark_dirty(c);
    return 0;
}

static int reply_result_on(app_conn *c, bool amf3, double txid, const amf_value *value)
{
    if (txid == 0)
        return 0;
    amf_value *v = value ? amf_ref((amf_value *)value) : amf_null();
    int rc = send_cmd_on(c, 0, amf3, "_result", txid, NULL, &v, v ? 1 : 0);
    amf_unref(v);
    return rc;
}

static int reply_error_on(app_conn *c, bool amf3, double txid, const char *code,
                          const char *desc)
{
    if (txid == 0)
        return 0;
    amf_value *info = status_info("error", code, desc);
    int rc = send_cmd_on(c, 0, amf3, "_error", txid, NULL, &info, info ? 1 : 0);
    amf_unref(info);
    return rc;
}

int app_conn_reply_result(app_conn *c, double txid, const amf_value *value)
{
    return reply_result_on(c, c->amf3_cmds, txid, value);
}

int app_conn_reply_error(app_conn *c, double txid, const char *code, const char *description)
{
    return reply_error_on(c, c->amf3_cmds, txid, code, description);
}

static int send_stream_status(app_conn *c, uint32_t sid, bool amf3, const char *level,
                              const char *code, const char *desc, const char *details)
{
    amf_value *info = status_info(level, code, desc);
    if (details)
        obj_set(info, "details", amf_string_cstr(details));
    obj_set(info, "clientid", amf_number((double)c->id));
    int rc = send_cmd_on(c, sid, amf3, "onStatus", 0, NULL, &info, info ? 1 : 0);
    amf_unref(info);
    return rc;
}

/* ---- server -> client calls ---- */

int app_conn_call(app_conn *c, const char *method, amf_value *const *args, size_t nargs,
                  app_call_cb cb, void *ud)
{
    if (c->closing || !c->nc_connected)
        return SH_ESTATE;
    double txid = 0;
    if (cb) {
        if (c->ncalls >= c->srv->cfg->max_pending_calls)
            return SH_ELIMIT;
        app_pending_call *n = realloc(c->calls, (c->ncalls + 1) * sizeof(*n));
        if (!n)
            return SH_ENOMEM;
        c->calls = n;
        txid = c->next_txid++;
        c->calls[c->ncalls++] = (app_pending_call){txid, cb, ud};
    }
    int rc = send_cmd_on(c, 0, c->amf3_cmds, method, txid, NULL, args, nargs);
    if (rc < 0 && cb)
        c->ncalls--; /* the entry just added; cb is not called */
    return rc;
}

static void answer_call(app_conn *c, const rtmp_cmd *cmd, bool ok)
{
    for (size_t i = 0; i < c->ncalls; i++) {
        if (c->calls[i].txid != cmd->txid)
            continue;
        app_pending_call pc = c->calls[i];
        c->calls[i] = c->calls[--c->ncalls];
        pc.cb(c, ok, cmd->args, cmd->nargs, pc.ud);
        return;
    }
    SH_LOG(SH_LOG_DEBUG, "conn=%llu %s for unknown transaction %.0f",
           (unsigned long long)c->id, ok ? "_result" : "_error", cmd->txid);
}

void app_netconn_fail_calls(app_conn *c)
{
    while (c->ncalls > 0) {
        app_pending_call pc = c->calls[--c->ncalls];
        pc.cb(c, false, NULL, 0, pc.ud);
    }
}

void app_netconn_free(app_conn *c)
{
    free(c->calls);
    c->calls = NULL;
    free(c->streams);
    c->streams = NULL;
}

/* ---- connect ---- */

static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n > APP_NAME_MAX || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.'))
            return false;
    }
    return true;
}

/* Value of key= in a query "a=1&b=2" (copied, sanitised), "" when absent. */
static void query_get(const char *q, const char *key, char *out, size_t outsz)
{
    size_t klen = strlen(key);
    out[0] = '\0';
    while (q && *q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > klen && strncmp(q, key, klen) == 0 && q[klen] == '=') {
            sh_log_sanitize(out, outsz, q + klen + 1, len - klen - 1);
            return;
        }
        q = amp ? amp + 1 : NULL;
    }
}

typedef struct connect_parse {
    char app[APP_NAME_MAX + 1];
    char instance[APP_NAME_MAX + 1];
    char tc_url[512];
    char query[512];
    char user[APP_NAME_MAX + 1];
    char token[512];
    const char *error;
} connect_parse;

/* Splits "app[/instance][?query]" (from the app field or a tcUrl path). */
static void split_path(const char *p, size_t n, connect_parse *out, bool want_app)
{
    const char *q = memchr(p, '?', n);
    if (q) {
        if (!out->query[0])
            sh_log_sanitize(out->query, sizeof(out->query), q + 1, n - (size_t)(q - p) - 1);
        n = (size_t)(q - p);
    }
    while (n > 0 && p[n - 1] == '/')
        n--;
    const char *slash = memchr(p, '/', n);
    size_t alen = slash ? (size_t)(slash - p) : n;
    if (want_app) {
        if (!name_ok(p, alen)) {
            out->error = "Invalid application name";
            return;
        }
        memcpy(out->app, p, alen);
        out->app[alen] = '\0';
    }
    if (slash && !out->instance[0]) {
        const char *ip = slash + 1;
        size_t ilen = n - alen - 1;
        if (!name_ok(ip, ilen)) {
            out->error = "Invalid application instance name";
            return;
        }
        memcpy(out->instance, ip, ilen);
        out->instance[ilen] = '\0';
    }
}

static void parse_connect(const rtmp_cmd *cmd, connect_parse *out)
{
    memset(out, 0, sizeof(*out));
    size_t alen = 0, tlen = 0;
    const char *app = str_field(cmd->cmd_obj, "app", &alen);
    const char *tc = str_field(cmd->cmd_obj, "tcUrl", &tlen);
    if (tc)
        sh_log_sanitize(out->tc_url, sizeof(out->tc_url), tc, tlen);
    if (app && alen > 0) {
        split_path(app, alen, out, true);
        if (out->error)
            return;
    }
    /* tcUrl: scheme://host[:port]/app[/instance][?query] */
    if (tc) {
        const char *p = tc, *end = tc + tlen;
        const char *sep = NULL;
        for (const char *x = p; x + 2 < end; x++)
            if (x[0] == ':' && x[1] == '/' && x[2] == '/') {
                sep = x + 3;
                break;
            }
        if (sep) {
            const char *path = memchr(sep, '/', (size_t)(end - sep));
            if (path && path + 1 < end)
                split_path(path + 1, (size_t)(end - path - 1), out, !out->app[0]);
            if (out->error)
                return;
        }
    }
    if (!out->app[0]) {
        out->error = "Missing application name";
        return;
    }
    if (!out->instance[0])
        snprintf(out->instance, sizeof(out->instance), "%s", DEFAULT_INSTANCE);
    query_get(out->query, "user", out->user, sizeof(out->user));
    query_get(out->query, "token", out->token, sizeof(out->token));
    /* FMS-style credentials as extra connect arguments: user, token. */
    size_t si = 0;
    for (size_t i = 0; i < cmd->nargs && si < 2; i++) {
        size_t n;
        if (amf_type_of(cmd->args[i]) != AMF_STRING)
            continue;
        const char *s = amf_as_string(cmd->args[i], &n);
        if (si == 0 && !out->user[0])
            sh_log_sanitize(out->user, sizeof(out->user), s, n);
        else if (si == 1 && !out->token[0])
            sh_log_sanitize(out->token, sizeof(out->token), s, n);
        si++;
    }
}

static void connect_reject(app_conn *c, bool amf3, double txid, const char *desc)
{
    amf_value *info = status_info("error", "NetConnection.Connect.Rejected", desc);
    send_cmd_on(c, 0, amf3, "_error", txid, NULL, &info, info ? 1 : 0);
    amf_unref(info);
    char why[300];
    snprintf(why, sizeof(why), "connect rejected: %s", desc);
    app_conn_close(c, why);
}

static void handle_connect(app_conn *c, const rtmp_msg *m, const rtmp_cmd *cmd)
{
    bool amf3 = m->type == RTMP_MSG_COMMAND_AMF3;
    if (c->nc_connected) {
        app_conn_abort(c, "second connect on one connection");
        return;
    }
    connect_parse p;
    parse_connect(cmd, &p);
    const amf_value *oe = cmd->cmd_obj ? amf_object_get(cmd->cmd_obj, "objectEncoding") : NULL;
    int enc = (oe && amf_as_number(oe) == 3) ? 3 : 0;
    if (p.error) {
        /* The query may carry a token: never log it. */
        SH_LOG(SH_LOG_INFO, "conn=%llu connect refused peer=%s: %s tcUrl=%.*s",
               (unsigned long long)c->id, c->peer, p.error,
               (int)strcspn(p.tc_url, "?"), p.tc_url);
        connect_reject(c, amf3, cmd->txid, p.error);
        return;
    }
    snprintf(c->app_name, sizeof(c->app_name), "%s", p.app);
    snprintf(c->instance, sizeof(c->instance), "%s", p.instance);
    snprintf(c->user, sizeof(c->user), "%s", p.user);
    c->object_encoding = enc;
    c->amf3_cmds = amf3;

    const app_app_config *acfg = NULL;
    app_app *a = app_server_resolve_app(c->srv, p.app, &acfg);
    if (!a) {
        connect_reject(c, amf3, cmd->txid, "Application not found");
        return;
    }
    c->app_cfg = acfg;
    app_connect_info info = {
        .app = p.app, .instance = p.instance, .tc_url = p.tc_url, .query = p.query,
        .user = p.user, .token = p.token, .object_encoding = enc,
        .cmd_obj = cmd->cmd_obj, .args = cmd->args, .nargs = cmd->nargs,
    };
    app_verdict v = {0};
    app_server *s = c->srv;
    if (acfg && acfg->auth != APP_AUTH_NONE) {
        if (s->auth)
            s->auth(s, c, acfg, &info, &v, s->auth_ud);
        else
            v = (app_verdict){.reject = true, .description = "Authentication not available"};
    }
    if (!v.reject && a->ops.on_connect)
        a->ops.on_connect(a, c, &info, &v, a->ud);
    if (v.reject) {
        char d[256];
        safe(d, sizeof(d), v.description[0] ? v.description : "Rejected");
        SH_LOG(SH_LOG_INFO, "conn=%llu connect rejected peer=%s app=%s instance=%s: %s",
               (unsigned long long)c->id, c->peer, c->app_name, c->instance, d);
        connect_reject(c, amf3, cmd->txid, d);
        return;
    }
    c->app = a;
    c->nc_connected = true;

    int rc = rtmp_conn_send_connect_preamble(c->rtmp);
    amf_value *props = amf_object_new(NULL);
    obj_set(props, "fmsVer", amf_string_cstr(FMS_VERSION));
    obj_set(props, "capabilities", amf_number(31));
    obj_set(props, "mode", amf_number(1));
    amf_value *inf = status_info("status", "NetConnection.Connect.Success",
                                 "Connection succeeded.");
    obj_set(inf, "objectEncoding", amf_number(enc));
    if (rc == 0)
        rc = send_cmd_on(c, 0, amf3, "_result", cmd->txid, props, &inf, inf ? 1 : 0);
    amf_unref(props);
    amf_unref(inf);
    SH_LOG(SH_LOG_INFO, "conn=%llu connect peer=%s app=%s instance=%s encoding=%d%s%s",
           (unsigned long long)c->id, c->peer, c->app_name, c->instance, enc,
           c->user[0] ? " user=" : "", c->user);
    if (rc < 0) {
        app_conn_abort(c, "cannot send connect reply");
        return;
    }
    if (s->have_so && s->so.on_connect) {
        rc = s->so.on_connect(s->so.ud, c);
        if (rc < 0)
            app_conn_abort(c, "shared-object engine refused the client");
    }
    for (app_observer_entry *o = s->observers; o && !c->closing; o = o->next)
        if (o->ops.on_connect)
            o->ops.on_connect(c, &info, o->ud);
}

/* ---- streams ---- */

static void handle_create_stream(app_conn *c, bool amf3, const rtmp_cmd *cmd)
{
    uint32_t max = c->srv->cfg->max_streams;
    if (!c->streams) {
        c->streams = calloc(max, 1);
        if (!c->streams) {
            app_conn_abort(c, "out of memory");
            return;
        }
    }
    for (uint32_t i = 0; i < max; i++) {
        if (c->streams[i])
            continue;
        c->streams[i] = 1;
        c->nstreams++;
        amf_value *id = amf_number((double)(i + 1));
        reply_result_on(c, amf3, cmd->txid, id);
        amf_unref(id);
        return;
    }
    reply_error_on(c, amf3, cmd->txid, "NetConnection.Call.Failed",
                   "Too many streams (max_streams)");
}

static void release_stream_id(app_conn *c, double id)
{
    if (!c->streams || !(id >= 1) || id > c->srv->cfg->max_streams)
        return;
    uint32_t i = (uint32_t)id - 1;
    if (c->streams[i]) {
        c->streams[i] = 0;
        c->nstreams--;
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

static void handle_play(app_conn *c, const rtmp_msg *m, bool amf3, const rtmp_cmd *cmd)
{
    char name[256];
    first_string_arg(cmd, name, sizeof(name));
    SH_LOG(SH_LOG_INFO, "conn=%llu play stream=%s sid=%u: not found",
           (unsigned long long)c->id, name, m->stream_id);
    char desc[300];
    snprintf(desc, sizeof(desc), "Failed to play %s; stream not found.", name);
    send_stream_status(c, m->stream_id, amf3, "error", "NetStream.Play.StreamNotFound", desc,
                       name);
}

static void handle_publish(app_conn *c, const rtmp_msg *m, bool amf3, const rtmp_cmd *cmd)
{
    char name[256];
    first_string_arg(cmd, name, sizeof(name));
    SH_LOG(SH_LOG_INFO, "conn=%llu publish stream=%s sid=%u: refused",
           (unsigned long long)c->id, name, m->stream_id);
    char desc[300];
    snprintf(desc, sizeof(desc), "Publishing is not supported: %s", name);
    send_stream_status(c, m->stream_id, amf3, "error", "NetStream.Publish.BadName", desc, name);
}

/* ---- methods ---- */

static app_method_entry *find_method(app_server *s, app_app *app, const char *name)
{
    app_method_entry *global = NULL;
    for (app_method_entry *e = s->methods; e; e = e->next) {
        if (strcmp(e->name, name) != 0)
            continue;
        if (e->app == app && app)
            return e;
        if (!e->app)
            global = e;
    }
    return global;
}

static void call_method(app_conn *c, bool amf3, const rtmp_cmd *cmd)
{
    app_method_entry *e = find_method(c->srv, c->app, cmd->name);
    char name[128], desc[200];
    if (!e) {
        safe(name, sizeof(name), cmd->name);
        SH_LOG(SH_LOG_DEBUG, "conn=%llu unknown method %s", (unsigned long long)c->id, name);
        snprintf(desc, sizeof(desc), "Method not found (%s).", name);
        reply_error_on(c, amf3, cmd->txid, "NetConnection.Call.Failed", desc);
        return;
    }
    /* Replies of the method go out in the connect encoding; for a client
     * mixing 20 and 17 that is what FMS does too. */
    int rc = e->fn(c, cmd, e->ud);
    if (rc < 0 && !c->closing) {
        safe(name, sizeof(name), cmd->name);
        snprintf(desc, sizeof(desc), "Method %s failed: %s", name, sh_strerror(rc));
        reply_error_on(c, amf3, cmd->txid, "NetConnection.Call.Failed", desc);
    }
}

/* echo(args...): answers with its first argument (null when none).  Lets
 * clients and tests measure a full command round trip. */
static int method_echo(app_conn *c, const rtmp_cmd *cmd, void *ud)
{
    (void)ud;
    return app_conn_reply_result(c, cmd->txid, cmd->nargs ? cmd->args[0] : NULL);
}

int app_netconn_register_builtin(app_server *s)
{
    return app_method_register(s, NULL, "echo", method_echo, NULL);
}

/* ---- dispatch ---- */

static bool is(const rtmp_cmd *cmd, const char *name) { return strcmp(cmd->name, name) == 0; }

void app_netconn_command(app_conn *c, const rtmp_msg *m)
{
    rtmp_cmd cmd;
    sh_error err = {0};
    int rc = rtmp_cmd_decode(m, &c->srv->amf_limits, &cmd, &err);
    if (rc < 0) {
        char why[160];
        snprintf(why, sizeof(why), "bad command message: %s",
                 err.what ? err.what : sh_strerror(rc));
        app_conn_abort(c, why);
        return;
    }
    bool amf3 = m->type == RTMP_MSG_COMMAND_AMF3;
    if (!isfinite(cmd.txid) || cmd.txid < 0)
        cmd.txid = 0;
    /* The name is peer text: sanitised only when it is printed (this is
     * every call's path). */
    char name[64];
    if (SH_LOG_DEBUG <= sh_log_get_level()) {
        safe(name, sizeof(name), cmd.name);
        SH_LOG(SH_LOG_DEBUG, "conn=%llu command %s txid=%.0f sid=%u",
               (unsigned long long)c->id, name, cmd.txid, m->stream_id);
    }

    if (is(&cmd, "connect")) {
        handle_connect(c, m, &cmd);
    } else if (!c->nc_connected) {
        char why[96];
        safe(name, sizeof(name), cmd.name);
        snprintf(why, sizeof(why), "command %s before connect", name);
        app_conn_abort(c, why);
    } else if (is(&cmd, "_result") || is(&cmd, "_error")) {
        answer_call(c, &cmd, is(&cmd, "_result"));
    } else if (is(&cmd, "createStream")) {
        handle_create_stream(c, amf3, &cmd);
    } else if (is(&cmd, "deleteStream") || is(&cmd, "closeStream")) {
        double id = m->stream_id;
        if (is(&cmd, "deleteStream") && cmd.nargs >= 1)
            id = amf_as_number(cmd.args[0]);
        release_stream_id(c, id);
    } else if (is(&cmd, "play") || is(&cmd, "play2")) {
        handle_play(c, m, amf3, &cmd);
    } else if (is(&cmd, "publish")) {
        handle_publish(c, m, amf3, &cmd);
    } else if (is(&cmd, "releaseStream") || is(&cmd, "FCPublish") ||
               is(&cmd, "FCUnpublish") || is(&cmd, "FCSubscribe") ||
               is(&cmd, "FCUnsubscribe") || is(&cmd, "_checkbw")) {
        /* Sent by FFmpeg and librtmp around play/publish; nothing to do. */
        reply_result_on(c, amf3, cmd.txid, NULL);
    } else if (is(&cmd, "getStreamLength")) {
        amf_value *len = amf_number(0);
        reply_result_on(c, amf3, cmd.txid, len);
        amf_unref(len);
    } else if (is(&cmd, "receiveAudio") || is(&cmd, "receiveVideo") || is(&cmd, "pause") ||
               is(&cmd, "seek") || is(&cmd, "onBWDone") || is(&cmd, "_onbwcheck") ||
               is(&cmd, "_onbwdone")) {
        /* No media yet: nothing to answer. */
    } else {
        call_method(c, amf3, &cmd);
    }
    rtmp_cmd_cleanup(&cmd);
}
