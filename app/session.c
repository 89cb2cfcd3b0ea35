/* session.c - who a client is and what it may do, whatever its transport.
 *
 * connect: parse app / instance / query (one parser for every transport:
 * the URL part through http_parser_parse_url), pick the application, run
 * the authenticator and on_connect, answer through the transport, then
 * hand the client to the shared-object engine and the observers.
 * Calls: client -> server calls go to the method registry (unknown names
 * get NetConnection.Call.Failed, never silence); server -> client calls
 * keep their callbacks here until the client answers.  Everything sent
 * goes through c->tr->send and ends in app_conn_output().
 */
#include "app_internal.h"

#include <http_parser.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sh_err.h"
#include "sh_log.h"

#define DEFAULT_INSTANCE "_definst_"

/* ---- amf helpers (NULL-tolerant: a failed allocation leaves a field out) ---- */

static void obj_set(amf_value *o, const char *k, amf_value *v)
{
    if (o && v)
        amf_object_set_cstr(o, k, v);
    else
        amf_unref(v);
}

amf_value *app_status_info(const char *level, const char *code, const char *desc)
{
    amf_value *o = amf_object_new(NULL);
    obj_set(o, "level", amf_string_cstr(level));
    obj_set(o, "code", amf_string_cstr(code));
    obj_set(o, "description", amf_string_cstr(desc));
    return o;
}

static void safe(char *out, size_t outsz, const char *s)
{
    sh_log_sanitize(out, outsz, s, strlen(s));
}

/* ---- sending ---- */

static int conn_send(app_conn *c, const app_out *m)
{
    if (c->closing)
        return SH_ESTATE;
    int rc = c->tr->send(c, m);
    if (rc < 0) {
        SH_LOG(SH_LOG_WARN, "conn=%llu cannot send %s: %s", (unsigned long long)c->id,
               m->kind == APP_OUT_CALL ? m->name : m->kind == APP_OUT_RESULT ? "_result" : "_error",
               sh_strerror(rc));
        return rc;
    }
    return app_conn_output(c);
}

int app_conn_reply_result(app_conn *c, double txid, const amf_value *value)
{
    if (txid == 0)
        return 0;
    amf_value *v = value ? amf_ref((amf_value *)value) : amf_null();
    app_out m = {.kind = APP_OUT_RESULT, .txid = txid, .args = &v, .nargs = v ? 1 : 0};
    int rc = conn_send(c, &m);
    amf_unref(v);
    return rc;
}

int app_conn_reply_error(app_conn *c, double txid, const char *code, const char *description)
{
    if (txid == 0)
        return 0;
    amf_value *info = app_status_info("error", code, description);
    app_out m = {.kind = APP_OUT_ERROR, .txid = txid, .args = &info, .nargs = info ? 1 : 0};
    int rc = conn_send(c, &m);
    amf_unref(info);
    return rc;
}

int app_conn_send_cmd(app_conn *c, const char *name, double txid,
                      amf_value *const *args, size_t nargs)
{
    app_out m = {.kind = APP_OUT_CALL, .name = name, .txid = txid, .args = args, .nargs = nargs};
    return conn_send(c, &m);
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
    int rc = app_conn_send_cmd(c, method, txid, args, nargs);
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

static void fail_calls(app_conn *c)
{
    while (c->ncalls > 0) {
        app_pending_call pc = c->calls[--c->ncalls];
        pc.cb(c, false, NULL, 0, pc.ud);
    }
}

void app_session_free(app_conn *c)
{
    free(c->calls);
    c->calls = NULL;
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

/* Splits "app[/instance][?query]" (from the app field or a URL's path). */
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

/* The path-and-query part of a URL "scheme://host[:port]/path[?query]"
 * without its leading '/'; false when u is not such a URL. */
static bool url_path(const char *u, size_t n, const char **p, size_t *len)
{
    struct http_parser_url pu;
    http_parser_url_init(&pu);
    if (http_parser_parse_url(u, n, 0, &pu) != 0 || !(pu.field_set & (1u << UF_PATH)))
        return false;
    size_t off = pu.field_data[UF_PATH].off;
    size_t end = off + pu.field_data[UF_PATH].len;
    if (pu.field_set & (1u << UF_QUERY))
        end = pu.field_data[UF_QUERY].off + pu.field_data[UF_QUERY].len;
    if (off < end && u[off] == '/')
        off++;
    *p = u + off;
    *len = end - off;
    return true;
}

static void parse_connect(const app_connect_req *r, connect_parse *out)
{
    memset(out, 0, sizeof(*out));
    if (r->tc_url)
        sh_log_sanitize(out->tc_url, sizeof(out->tc_url), r->tc_url, r->tc_url_len);
    if (r->app && r->app_len > 0) {
        split_path(r->app, r->app_len, out, true);
        if (out->error)
            return;
    }
    const char *path;
    size_t plen;
    if (r->tc_url && url_path(r->tc_url, r->tc_url_len, &path, &plen) && plen > 0) {
        split_path(path, plen, out, !out->app[0]);
        if (out->error)
            return;
    }
    if (!out->app[0]) {
        out->error = "Missing application name";
        return;
    }
    if (!out->instance[0])
        snprintf(out->instance, sizeof(out->instance), "%s", DEFAULT_INSTANCE);
    if (r->user)
        safe(out->user, sizeof(out->user), r->user);
    if (r->token)
        safe(out->token, sizeof(out->token), r->token);
    if (!out->user[0])
        query_get(out->query, "user", out->user, sizeof(out->user));
    if (!out->token[0])
        query_get(out->query, "token", out->token, sizeof(out->token));
    /* FMS-style credentials as extra connect arguments: user, token. */
    size_t si = 0;
    for (size_t i = 0; i < r->nargs && si < 2; i++) {
        size_t n;
        if (amf_type_of(r->args[i]) != AMF_STRING)
            continue;
        const char *s = amf_as_string(r->args[i], &n);
        if (si == 0 && !out->user[0])
            sh_log_sanitize(out->user, sizeof(out->user), s, n);
        else if (si == 1 && !out->token[0])
            sh_log_sanitize(out->token, sizeof(out->token), s, n);
        si++;
    }
}

/* origins: "" or "*" = any; else a comma-separated list of exact
 * origins ("https://example.org, http://127.0.0.1:8080"). */
static bool origin_allowed(const char *origins, const char *origin)
{
    if (!origins || !*origins || strcmp(origins, "*") == 0)
        return true;
    size_t ol = strlen(origin);
    for (const char *p = origins; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ')
            e++;
        if ((size_t)(e - p) == ol && strncasecmp(p, origin, ol) == 0)
            return true;
        p = e;
    }
    return false;
}

static void connect_reject(app_conn *c, double txid, int kind, const char *desc)
{
    c->srv->st.refused[kind]++;
    amf_value *info = app_status_info("error", "NetConnection.Connect.Rejected", desc);
    if (!c->closing && c->tr->connect_reply(c, txid, false, info) == 0)
        app_conn_output(c);
    amf_unref(info);
    char why[300];
    snprintf(why, sizeof(why), "connect rejected: %s", desc);
    app_conn_close(c, why);
}

/* The connect was decided (at once, or later by app_conn_accept). */
static void connect_decided(app_conn *c, app_app *a, double txid, const app_connect_info *info,
                            const app_verdict *v, int why)
{
    app_server *s = c->srv;
    if (v->reject) {
        char d[256];
        safe(d, sizeof(d), v->description[0] ? v->description : "Rejected");
        SH_LOG(SH_LOG_INFO, "conn=%llu connect rejected peer=%s app=%s instance=%s: %s",
               (unsigned long long)c->id, c->peer, c->app_name, c->instance, d);
        connect_reject(c, txid, why, d);
        return;
    }
    if (!c->app_attached) {
        c->app = a;
        a->nconns++;
        c->app_attached = true;
    }
    s->st.connects[app_tr_index(c->tr)]++;
    c->nc_connected = true;

    amf_value *inf = app_status_info("status", "NetConnection.Connect.Success",
                                     "Connection succeeded.");
    obj_set(inf, "objectEncoding", amf_number(c->encoding == APP_ENC_AMF3 ? 3 : 0));
    obj_set(inf, "clientId", amf_number((double)c->id));
    int rc = c->tr->connect_reply(c, txid, true, inf);
    amf_unref(inf);
    if (rc == 0)
        rc = app_conn_output(c);
    SH_LOG(SH_LOG_INFO, "conn=%llu connect peer=%s transport=%s app=%s instance=%s encoding=%s%s%s",
           (unsigned long long)c->id, c->peer, c->tr->name, c->app_name, c->instance,
           c->encoding == APP_ENC_JSON ? "json" : c->encoding == APP_ENC_AMF3 ? "3" : "0",
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
            o->ops.on_connect(c, info, o->ud);
}

void app_conn_accept(app_conn *c, const app_verdict *v)
{
    if (!c->connect_pending)
        return;
    c->connect_pending = false;
    if (c->closing)
        return;
    app_verdict ok = {0};
    app_connect_info info = {
        .app = c->app_name, .instance = c->instance, .tc_url = "", .query = "",
        .user = c->user, .token = "", .object_encoding = c->encoding,
    };
    connect_decided(c, c->app, c->connect_txid, &info, v ? v : &ok, APP_REFUSE_APPLICATION);
}

void app_session_connect(app_conn *c, const app_connect_req *r)
{
    if (c->nc_connected || c->connect_pending) {
        app_conn_abort(c, "second connect on one connection");
        return;
    }
    connect_parse p;
    parse_connect(r, &p);
    if (p.error) {
        /* The query may carry a token: never log it. */
        SH_LOG(SH_LOG_INFO, "conn=%llu connect refused peer=%s: %s tcUrl=%.*s",
               (unsigned long long)c->id, c->peer, p.error,
               (int)strcspn(p.tc_url, "?"), p.tc_url);
        connect_reject(c, r->txid, APP_REFUSE_BAD_REQUEST, p.error);
        return;
    }
    snprintf(c->app_name, sizeof(c->app_name), "%s", p.app);
    snprintf(c->instance, sizeof(c->instance), "%s", p.instance);
    snprintf(c->user, sizeof(c->user), "%s", p.user);
    c->encoding = r->encoding;

    const app_app_config *acfg = NULL;
    app_app *a = app_server_resolve_app(c->srv, p.app, &acfg);
    if (!a) {
        SH_LOG(SH_LOG_INFO, "conn=%llu connect refused peer=%s app=%s: not served",
               (unsigned long long)c->id, c->peer, c->app_name);
        connect_reject(c, r->txid, APP_REFUSE_NOT_FOUND, "Application not found");
        return;
    }
    c->app_cfg = acfg;
    app_connect_info info = {
        .app = p.app, .instance = p.instance, .tc_url = p.tc_url, .query = p.query,
        .user = p.user, .token = p.token, .object_encoding = r->encoding,
        .cmd_obj = r->cmd_obj, .args = r->args, .nargs = r->nargs,
    };
    app_verdict v = {0};
    app_server *s = c->srv;
    int why = APP_REFUSE_APPLICATION;
    if (r->origin && acfg && !origin_allowed(acfg->origins, r->origin)) {
        v = (app_verdict){.reject = true, .description = "Origin not allowed"};
        why = APP_REFUSE_ORIGIN;
    } else if (acfg && acfg->max_connections && a->nconns >= acfg->max_connections) {
        v = (app_verdict){.reject = true,
                          .description = "Too many connections to this application"};
        why = APP_REFUSE_APP_FULL;
    }
    if (!v.reject && acfg && acfg->auth != APP_AUTH_NONE) {
        if (s->auth)
            s->auth(s, c, acfg, &info, &v, s->auth_ud);
        else
            v = (app_verdict){.reject = true, .description = "Authentication not available"};
        why = APP_REFUSE_AUTH;
    }
    if (!v.reject) {
        why = APP_REFUSE_APPLICATION;
        if (a->ops.on_connect)
            a->ops.on_connect(a, c, &info, &v, a->ud);
    }
    if (!v.reject && v.pending) {
        /* The application answers later (app_conn_accept); it holds the
         * connection from now on, so it counts and gets on_disconnect. */
        c->app = a;
        a->nconns++;
        c->app_attached = true;
        c->connect_pending = true;
        c->connect_txid = r->txid;
        SH_LOG(SH_LOG_DEBUG, "conn=%llu connect pending app=%s instance=%s",
               (unsigned long long)c->id, c->app_name, c->instance);
        return;
    }
    connect_decided(c, a, r->txid, &info, &v, why);
}

void app_session_end(app_conn *c, const char *reason)
{
    app_server *s = c->srv;
    if (c->nc_connected) {
        if (s->have_so && s->so.on_disconnect)
            s->so.on_disconnect(s->so.ud, c);
        if (c->app && c->app->ops.on_disconnect)
            c->app->ops.on_disconnect(c->app, c, reason, c->app->ud);
        for (app_observer_entry *o = s->observers; o; o = o->next)
            if (o->ops.on_disconnect)
                o->ops.on_disconnect(c, o->ud);
        if (c->app && c->app->nconns)
            c->app->nconns--;
    } else if (c->app_attached) {
        /* left pending by on_connect, never accepted */
        c->connect_pending = false;
        if (c->app->ops.on_disconnect)
            c->app->ops.on_disconnect(c->app, c, reason, c->app->ud);
        if (c->app->nconns)
            c->app->nconns--;
    }
    fail_calls(c);
}

/* ---- shared objects ---- */

void app_session_so(app_conn *c, uint8_t kind, const uint8_t *body, size_t len)
{
    app_server *s = c->srv;
    if (!c->nc_connected) {
        app_conn_abort(c, "shared-object message before connect");
        return;
    }
    if (!s->have_so || !s->so.on_message) {
        SH_LOG(SH_LOG_DEBUG, "conn=%llu shared-object message ignored (engine not enabled)",
               (unsigned long long)c->id);
        return;
    }
    int rc = s->so.on_message(s->so.ud, c, kind, body, len);
    if (rc < 0) {
        char why[96];
        snprintf(why, sizeof(why), "shared-object message refused: %s", sh_strerror(rc));
        app_conn_abort(c, why);
    }
}

void app_session_so_json(app_conn *c, const void *json)
{
    app_server *s = c->srv;
    if (!c->nc_connected) {
        app_conn_abort(c, "shared-object message before connect");
        return;
    }
    if (!s->have_so || !s->so.on_json)
        return;
    int rc = s->so.on_json(s->so.ud, c, json);
    if (rc < 0) {
        char why[96];
        snprintf(why, sizeof(why), "ws: 4400 shared-object message refused: %s",
                 sh_strerror(rc));
        app_conn_close(c, why);
    }
}

void app_session_drained(app_conn *c)
{
    app_server *s = c->srv;
    if (s->have_so && s->so.on_drain)
        s->so.on_drain(s->so.ud, c);
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

void app_session_call(app_conn *c, const rtmp_cmd *cmd)
{
    char name[128], desc[200];
    if (!c->nc_connected) {
        char why[160];
        safe(name, sizeof(name), cmd->name);
        snprintf(why, sizeof(why), "command %.64s before connect", name);
        app_conn_abort(c, why);
        return;
    }
    bool result = strcmp(cmd->name, "_result") == 0;
    if (result || strcmp(cmd->name, "_error") == 0) {
        answer_call(c, cmd, result);
        return;
    }
    app_method_entry *e = find_method(c->srv, c->app, cmd->name);
    if (!e) {
        safe(name, sizeof(name), cmd->name);
        SH_LOG(SH_LOG_DEBUG, "conn=%llu unknown method %s", (unsigned long long)c->id, name);
        snprintf(desc, sizeof(desc), "Method not found (%s).", name);
        app_conn_reply_error(c, cmd->txid, "NetConnection.Call.Failed", desc);
        return;
    }
    int rc = e->fn(c, cmd, e->ud);
    if (rc < 0 && !c->closing) {
        safe(name, sizeof(name), cmd->name);
        snprintf(desc, sizeof(desc), "Method %s failed: %s", name, sh_strerror(rc));
        app_conn_reply_error(c, cmd->txid, "NetConnection.Call.Failed", desc);
    }
}

/* echo(args...): answers with its first argument (null when none).  Lets
 * clients and tests measure a full command round trip. */
static int method_echo(app_conn *c, const rtmp_cmd *cmd, void *ud)
{
    (void)ud;
    return app_conn_reply_result(c, cmd->txid, cmd->nargs ? cmd->args[0] : NULL);
}

int app_session_register_builtin(app_server *s)
{
    return app_method_register(s, NULL, "echo", method_echo, NULL);
}

/* ---- registries ---- */

int app_server_on_shutdown(app_server *s, app_shutdown_fn fn, void *ud)
{
    app_shutdown_entry *e = calloc(1, sizeof(*e));
    if (!e)
        return SH_ENOMEM;
    e->fn = fn;
    e->ud = ud;
    e->next = s->shutdown; /* reverse order of registration */
    s->shutdown = e;
    return 0;
}

int app_server_add_observer(app_server *s, const app_observer *ops, void *ud)
{
    app_observer_entry *e = calloc(1, sizeof(*e));
    if (!e)
        return SH_ENOMEM;
    e->ops = *ops;
    e->ud = ud;
    app_observer_entry **tail = &s->observers;
    while (*tail)
        tail = &(*tail)->next;
    *tail = e;
    return 0;
}

void app_server_set_so_hooks(app_server *s, const app_so_hooks *hooks)
{
    if (hooks) {
        s->so = *hooks;
        s->have_so = true;
    } else {
        memset(&s->so, 0, sizeof(s->so));
        s->have_so = false;
    }
}

const app_so_hooks *app_server_so_hooks(const app_server *s)
{
    return s->have_so ? &s->so : NULL;
}

void app_server_set_authenticator(app_server *s, app_auth_fn fn, void *ud)
{
    s->auth = fn;
    s->auth_ud = ud;
}

static app_app *app_new(const char *name, const app_app_ops *ops, void *ud)
{
    if (!name || !*name || strlen(name) > APP_NAME_MAX)
        return NULL;
    app_app *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    snprintf(a->name, sizeof(a->name), "%s", name);
    if (ops)
        a->ops = *ops;
    a->ud = ud;
    return a;
}

app_app *app_server_add_app(app_server *s, const char *name, const app_app_ops *ops, void *ud)
{
    if (app_server_find_app(s, name))
        return NULL;
    app_app *a = app_new(name, ops, ud);
    if (!a)
        return NULL;
    a->next = s->apps;
    s->apps = a;
    return a;
}

app_app *app_server_find_app(app_server *s, const char *name)
{
    for (app_app *a = s->apps; a; a = a->next)
        if (strcmp(a->name, name) == 0)
            return a;
    return NULL;
}

const char *app_app_name(const app_app *a) { return a->name; }

void app_app_keep_presence(app_app *a) { a->presence = true; }

bool app_presence_on(app_server *s, const char *app_name, const app_app_config *a)
{
    if (a && a->presence)
        return true;
    const app_app *r = app_name ? app_server_find_app(s, app_name) : NULL;
    return r && r->presence;
}

int app_method_register(app_server *s, app_app *app, const char *name,
                        app_method_fn fn, void *ud)
{
    if (!name || !*name || !fn)
        return SH_EINVAL;
    for (app_method_entry *m = s->methods; m; m = m->next)
        if (m->app == app && strcmp(m->name, name) == 0)
            return SH_EEXIST;
    app_method_entry *m = calloc(1, sizeof(*m));
    if (!m || !(m->name = strdup(name))) {
        free(m);
        return SH_ENOMEM;
    }
    m->app = app;
    m->fn = fn;
    m->ud = ud;
    m->next = s->methods;
    s->methods = m;
    return 0;
}

/* Which application serves `name`, and with which config section.  With
 * no [app] section at all every name is served (open access, loopback
 * trials): a registered application of that name, else a registered "*"
 * application or the built-in open one.  Once the config declares any
 * application, only declared names are served (their own section or
 * [app *]), registered ones (samples, ...) included: a name without a
 * section is refused even when code registered it. */
app_app *app_server_resolve_app(app_server *s, const char *name, const app_app_config **cfg)
{
    *cfg = app_config_find_app(s->cfg, name);
    if (!*cfg && s->cfg->napps > 0)
        return NULL;
    app_app *a = app_server_find_app(s, name);
    if (a)
        return a;
    a = app_server_find_app(s, "*");
    if (a)
        return a;
    if (!s->default_app)
        s->default_app = app_new("*", NULL, NULL);
    return s->default_app;
}

void app_session_registry_free(app_server *s)
{
    for (app_app *a = s->apps; a;) {
        app_app *n = a->next;
        if (a->ops.on_free)
            a->ops.on_free(a, a->ud);
        free(a);
        a = n;
    }
    if (s->default_app) {
        if (s->default_app->ops.on_free)
            s->default_app->ops.on_free(s->default_app, s->default_app->ud);
        free(s->default_app);
    }
    for (app_method_entry *m = s->methods; m;) {
        app_method_entry *n = m->next;
        free(m->name);
        free(m);
        m = n;
    }
    for (app_shutdown_entry *e = s->shutdown; e;) {
        app_shutdown_entry *n = e->next;
        free(e);
        e = n;
    }
    for (app_observer_entry *o = s->observers; o;) {
        app_observer_entry *n = o->next;
        free(o);
        o = n;
    }
}

/* ---- accessors ---- */

uint64_t app_conn_id(const app_conn *c) { return c->id; }
app_server *app_conn_server(const app_conn *c) { return c->srv; }
const char *app_conn_peer(const app_conn *c) { return c->peer; }
const char *app_conn_app_name(const app_conn *c) { return c->app_name; }
const char *app_conn_instance(const app_conn *c) { return c->instance; }
const char *app_conn_user(const app_conn *c) { return c->user; }
app_app *app_conn_app(const app_conn *c) { return c->app; }
const app_app_config *app_conn_app_config(const app_conn *c) { return c->app_cfg; }
int app_conn_object_encoding(const app_conn *c) { return c->encoding; }
bool app_conn_connected(const app_conn *c) { return c->nc_connected && !c->closing; }
int64_t app_conn_rtt_ms(const app_conn *c) { return c->rtt_ms; }

bool app_user_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > APP_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

void *app_conn_get_data(const app_conn *c, app_slot slot)
{
    return (unsigned)slot < APP_SLOT_COUNT ? c->slots[slot] : NULL;
}

void app_conn_set_data(app_conn *c, app_slot slot, void *p)
{
    if ((unsigned)slot < APP_SLOT_COUNT)
        c->slots[slot] = p;
}
