/* http_transport.c - HTTP/1.1 requests as a transport (http.h).
 *
 * http/http_req.c parses requests under their caps (http_max_target,
 * http_max_header_bytes and 64 headers, http_max_body on the admin
 * listener only, none on the public one) one at a time; this file hands
 * each to the handlers (counted against the read's message budget) and
 * writes responses into the connection's output queue.  A request must
 * be complete within http_request_timeout_ms of its first byte.
 */
#include "app_internal.h"
#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sh_err.h"
#include "sh_log.h"

typedef struct http_tr {
    http_req_parser *parser;
    bool close_after;           /* answer, then close */
    bool held;                  /* a deferred answer is pending: input waits */
    sh_buf stash;               /* input that came meanwhile (capped) */
    bool in_request;            /* a request's first byte came */
    uint64_t t_start;           /* loop time of the request's first byte */
} http_tr;

static http_tr *tr_of(const app_conn *c) { return c->tr_state; }

/* ---- handlers ---- */

typedef struct http_handler {
    struct http_handler *next;
    unsigned mask;
    char *prefix;
    app_http_handler_fn fn;
    void *ud;
} http_handler;

int app_server_add_http_handler(app_server *s, unsigned mask, const char *prefix,
                                app_http_handler_fn fn, void *ud)
{
    http_handler *h = calloc(1, sizeof(*h));
    if (!h || !(h->prefix = strdup(prefix))) {
        free(h);
        return SH_ENOMEM;
    }
    h->mask = mask;
    h->fn = fn;
    h->ud = ud;
    http_handler **pp = (http_handler **)&s->http_handlers;
    while (*pp)
        pp = &(*pp)->next;
    *pp = h;
    return 0;
}

void app_http_handlers_free(app_server *s)
{
    for (http_handler *h = s->http_handlers; h;) {
        http_handler *n = h->next;
        free(h->prefix);
        free(h);
        h = n;
    }
    s->http_handlers = NULL;
}

/* ---- responses ---- */

static const char *status_text(int st)
{
    switch (st) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

/* A response head under construction: pieces appended while they fit
 * (built by hand: snprintf was a tenth of an API write's cost). */
typedef struct head_buf {
    char b[1024];
    size_t n;
    bool overflow;
} head_buf;

static void head_put(head_buf *h, const char *s)
{
    size_t k = strlen(s);
    if (k > sizeof(h->b) - h->n) {
        h->overflow = true;
        return;
    }
    memcpy(h->b + h->n, s, k);
    h->n += k;
}

static void head_put_uint(head_buf *h, uint64_t v)
{
    char d[24];
    size_t i = sizeof(d);
    d[--i] = '\0';
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    head_put(h, d + i);
}

static int respond(app_conn *c, bool keep_alive, bool head_only, int status, const char *ctype,
                   const char *extra_headers, const void *body, size_t len)
{
    http_tr *t = tr_of(c);
    bool keep = keep_alive && !t->close_after;
    head_buf h = {.n = 0};
    head_put(&h, "HTTP/1.1 ");
    head_put_uint(&h, status > 0 && status < 1000 ? (uint64_t)status : 500);
    head_put(&h, " ");
    head_put(&h, status_text(status));
    head_put(&h, "\r\nServer: sohub\r\n");
    if (ctype) {
        head_put(&h, "Content-Type: ");
        head_put(&h, ctype);
        head_put(&h, "\r\n");
    }
    head_put(&h, "Content-Length: ");
    head_put_uint(&h, len);
    head_put(&h, keep ? "\r\n" : "\r\nConnection: close\r\n");
    if (extra_headers)
        head_put(&h, extra_headers);
    head_put(&h, "\r\n");
    if (h.overflow) {
        /* the extra header lines did not fit: an answer without them, then
         * close, rather than none (the client would wait for ever) */
        static const char msg[] = "Response headers too long\n";
        if (!extra_headers)
            return SH_EINVAL; /* cannot happen: the fixed lines fit */
        t->close_after = true;
        return respond(c, false, head_only, 500, "text/plain; charset=utf-8", NULL, msg,
                       sizeof(msg) - 1);
    }
    int rc = sh_outq_push_copy(&c->outq, h.b, h.n);
    if (rc == 0 && len && !head_only)
        rc = sh_outq_push_copy(&c->outq, body, len);
    if (rc == 0)
        rc = app_conn_output(c);
    if (!keep)
        t->close_after = true;
    return rc;
}

int app_http_respond(app_conn *c, const app_http_req *r, int status, const char *ctype,
                     const char *extra_headers, const void *body, size_t len)
{
    return respond(c, r && r->keep_alive, r && r->method == HTTP_HEAD, status, ctype,
                   extra_headers, body, len);
}

void app_http_defer(app_conn *c, const app_http_req *r, app_http_later *out)
{
    http_tr *t = tr_of(c);
    t->held = true;
    *out = (app_http_later){app_conn_id(c), r->keep_alive, r->method == HTTP_HEAD};
}

static void tr_feed(app_conn *c, const uint8_t *in, size_t len, size_t *used, uint32_t *budget);

int app_http_respond_later(app_server *s, const app_http_later *l, int status,
                           const char *ctype, const char *extra_headers, const void *body,
                           size_t len)
{
    app_conn *c = app_server_conn_by_id(s, l->conn_id);
    if (!c || c->closing || c->tr != &app_http_transport)
        return SH_ESTATE;
    http_tr *t = tr_of(c);
    t->held = false;
    int rc = respond(c, l->keep_alive, l->head, status, ctype, extra_headers, body, len);
    if (t->close_after) {
        app_conn_close(c, "http: done");
        return rc;
    }
    if (t->stash.len) {
        /* the requests that waited: taken now, in order */
        sh_buf in = t->stash;
        sh_buf_init(&t->stash, in.max);
        size_t used = 0;
        uint32_t budget = s->cfg->messages_per_read;
        tr_feed(c, in.data, in.len, &used, &budget);
        if (used < in.len && !c->closing)
            sh_buf_append(&t->stash, in.data + used, in.len - used);
        sh_buf_cleanup(&in);
    }
    return rc;
}

int app_http_error(app_conn *c, const app_http_req *r, int status, const char *code,
                   const char *message)
{
    char body[512];
    char safe_msg[300];
    /* message is ours (never peer text with quotes): keep it JSON-safe anyway */
    size_t j = 0;
    for (size_t i = 0; message[i] && j + 1 < sizeof(safe_msg); i++)
        if (message[i] != '"' && message[i] != '\\' && (unsigned char)message[i] >= 0x20)
            safe_msg[j++] = message[i];
    safe_msg[j] = '\0';
    int n = snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}\n",
                     code, safe_msg);
    return app_http_respond(c, r, status, "application/json", NULL, body,
                            n > 0 ? (size_t)n : 0);
}

app_listen_kind app_conn_listener(const app_conn *c)
{
    return (app_listen_kind)c->listen_kind;
}

/* ---- static files ---- */

static const char *mime_of(const char *path)
{
    static const struct { const char *ext, *type; } types[] = {
        {".html", "text/html; charset=utf-8"}, {".htm", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"}, {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"}, {".json", "application/json"},
        {".map", "application/json"}, {".ts", "text/plain; charset=utf-8"},
        {".txt", "text/plain; charset=utf-8"}, {".md", "text/plain; charset=utf-8"},
        {".svg", "image/svg+xml"}, {".png", "image/png"}, {".jpg", "image/jpeg"},
        {".jpeg", "image/jpeg"}, {".gif", "image/gif"}, {".webp", "image/webp"},
        {".ico", "image/x-icon"}, {".woff2", "font/woff2"}, {".wasm", "application/wasm"},
    };
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash))
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (strcasecmp(dot, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}

/* True when no segment of path is "." or ".." and it holds no
 * backslash: then web_root + path cannot leave web_root by name (links
 * are checked with realpath below). */
static bool path_safe(const char *path)
{
    if (path[0] != '/' || strchr(path, '\\'))
        return false;
    for (const char *s = path; *s;) {
        while (*s == '/')
            s++;
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return false;
        s += n;
    }
    return true;
}

static void http_date(time_t t, char *out, size_t sz)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, sz, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* What a listener serves from disk: the directory (a config key, "" =
 * nothing) and the header lines every answer from it carries. */
typedef struct static_site {
    const char *root;
    const char *headers;
} static_site;

/* The admin page shows and spends an API key: it is never framed by
 * another page, loads nothing from elsewhere (no inline script either),
 * sends no Referer, and its files are taken for the type they are served
 * as. */
#define ADMIN_PAGE_HEADERS                                                                   \
    "Content-Security-Policy: default-src 'self'; base-uri 'none'; form-action 'self'; "     \
    "frame-ancestors 'none'\r\n"                                                             \
    "X-Frame-Options: DENY\r\n"                                                              \
    "Referrer-Policy: no-referrer\r\n"                                                       \
    "X-Content-Type-Options: nosniff\r\n"

/* web_root on http_listen / https_listen, admin_root on admin_listen. */
static bool static_site_of(const app_conn *c, static_site *out)
{
    const app_config *cfg = c->srv->cfg;
    switch (app_conn_listener(c)) {
    case APP_LISTEN_HTTP:
        *out = (static_site){cfg->web_root, ""};
        break;
    case APP_LISTEN_ADMIN:
        *out = (static_site){cfg->admin_root, ADMIN_PAGE_HEADERS};
        break;
    default:
        return false;
    }
    return out->root && *out->root;
}

/* app_http_respond with the site's headers before extra (may be NULL). */
static void static_respond(app_conn *c, const app_http_req *r, const static_site *site,
                           int status, const char *ctype, const char *extra, const void *body,
                           size_t len)
{
    char hdr[3 * PATH_MAX + 1024];
    snprintf(hdr, sizeof(hdr), "%s%s", site->headers, extra ? extra : "");
    app_http_respond(c, r, status, ctype, hdr, body, len);
}

#define STATIC_TEXT(c, r, site, status, text)                                                \
    static_respond(c, r, site, status, "text/plain; charset=utf-8", NULL, text,              \
                   sizeof(text) - 1)

/* The file of r->path under site->root: GET and HEAD, index.html for a
 * directory, ETag / Last-Modified and 304, nothing outside the root by
 * name (path_safe) or by a link (realpath).  False when the site's root
 * cannot be resolved (the request then gets the plain 404). */
static bool serve_static(app_conn *c, const app_http_req *r, const static_site *site)
{
    const app_config *cfg = c->srv->cfg;
    if (r->method != HTTP_GET && r->method != HTTP_HEAD) {
        static_respond(c, r, site, 405, "text/plain; charset=utf-8", "Allow: GET, HEAD\r\n",
                       "Method not allowed\n", 19);
        return true;
    }
    if (!path_safe(r->path)) {
        STATIC_TEXT(c, r, site, 400, "Bad path\n");
        return true;
    }
    char root[PATH_MAX], full[PATH_MAX], real[PATH_MAX];
    if (!realpath(site->root, root))
        return false;
    size_t pl = strlen(r->path);
    int n = snprintf(full, sizeof(full), "%s%s%s", root, r->path,
                     pl && r->path[pl - 1] == '/' ? "index.html" : "");
    struct stat st;
    if (n < 0 || (size_t)n >= sizeof(full) || !realpath(full, real) || stat(real, &st) != 0) {
        STATIC_TEXT(c, r, site, 404, "Not found\n");
        return true;
    }
    size_t rl = strlen(root);
    if (strncmp(real, root, rl) != 0 || real[rl] != '/') {
        STATIC_TEXT(c, r, site, 404, "Not found\n");
        return true;
    }
    if (S_ISDIR(st.st_mode)) {
        /* a directory without its slash: send the browser to it.  The
         * path is decoded and may hold any byte but NUL (CR and LF
         * included): percent-encoded again for the header */
        static const char hex[] = "0123456789ABCDEF";
        char loc[32 + 3 * PATH_MAX];
        size_t k = (size_t)snprintf(loc, sizeof(loc), "Location: ");
        for (const unsigned char *p = (const unsigned char *)r->path; *p && k + 8 < sizeof(loc); p++) {
            if (isalnum(*p) || strchr("/-._~", *p)) {
                loc[k++] = (char)*p;
            } else {
                loc[k++] = '%';
                loc[k++] = hex[*p >> 4];
                loc[k++] = hex[*p & 15];
            }
        }
        memcpy(loc + k, "/\r\n", 4); /* with its NUL */
        static_respond(c, r, site, 301, NULL, loc, NULL, 0);
        return true;
    }
    if (!S_ISREG(st.st_mode)) {
        STATIC_TEXT(c, r, site, 404, "Not found\n");
        return true;
    }
    if ((uint64_t)st.st_size > cfg->http_max_file) {
        STATIC_TEXT(c, r, site, 403, "File larger than http_max_file\n");
        return true;
    }
    char etag[64], lm[64], hdr[256];
    snprintf(etag, sizeof(etag), "\"%llx-%llx\"", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec * 1000000000ull +
                 (unsigned long long)st.st_mtim.tv_nsec);
    http_date(st.st_mtime, lm, sizeof(lm));
    snprintf(hdr, sizeof(hdr), "ETag: %s\r\nLast-Modified: %s\r\nCache-Control: no-cache\r\n",
             etag, lm);
    const char *inm = app_http_header(r, "If-None-Match");
    const char *ims = app_http_header(r, "If-Modified-Since");
    if ((inm && strstr(inm, etag)) || (!inm && ims && strcmp(ims, lm) == 0)) {
        static_respond(c, r, site, 304, NULL, hdr, NULL, 0);
        return true;
    }
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    char *buf = fd >= 0 ? malloc((size_t)st.st_size + 1) : NULL;
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);
        if (k <= 0 && errno != EINTR)
            break;
        if (k > 0)
            got += (size_t)k;
    }
    if (fd >= 0)
        close(fd);
    if (!buf || got != (size_t)st.st_size) {
        free(buf);
        STATIC_TEXT(c, r, site, 500, "Read error\n");
        return true;
    }
    static_respond(c, r, site, 200, mime_of(real), hdr, buf, got);
    free(buf);
    return true;
}

/* ---- dispatch ---- */

static void handle_request(app_conn *c, const app_http_req *r)
{
    if (SH_LOG_DEBUG <= sh_log_get_level()) {
        char safe_path[200];
        sh_log_sanitize(safe_path, sizeof(safe_path), r->path, strlen(r->path));
        SH_LOG(SH_LOG_DEBUG, "conn=%llu http %s %s", (unsigned long long)c->id, r->method_name,
               safe_path);
    }
    if (app_ws_upgrade(c, r))
        return;
    for (http_handler *h = c->srv->http_handlers; h; h = h->next) {
        if (!(h->mask & (1u << c->listen_kind)) || strncmp(r->path, h->prefix, strlen(h->prefix)))
            continue;
        if (h->fn(c, r, h->ud))
            return;
    }
    static_site site;
    if (static_site_of(c, &site) && serve_static(c, r, &site))
        return;
    app_http_respond(c, r, 404, "text/plain; charset=utf-8", NULL, "Not found\n", 10);
}

/* The error code of a refused request's status, for the JSON answers of
 * the admin listener (the server API's error form, docs/api.md). */
static const char *refusal_code(int status)
{
    switch (status) {
    case 413: return "too_large";
    case 414: return "uri_too_long";
    case 431: return "headers_too_large";
    default: return "bad_request";
    }
}

/* A cap broke or the request is malformed: answer and close.  The admin
 * listener answers in the API's JSON error form, the others in text. */
static void refuse(app_conn *c, int status, const char *why)
{
    http_tr *t = tr_of(c);
    t->close_after = true;
    if (c->listen_kind == APP_LISTEN_ADMIN) {
        app_http_error(c, NULL, status, refusal_code(status), why);
    } else {
        char body[160];
        int n = snprintf(body, sizeof(body), "%s\n", why);
        app_http_respond(c, NULL, status, "text/plain; charset=utf-8", NULL, body,
                         n > 0 ? (size_t)n : 0);
    }
    char reason[200];
    snprintf(reason, sizeof(reason), "http %d: %s", status, why);
    app_conn_close(c, reason);
}

static void tr_feed(app_conn *c, const uint8_t *in, size_t len, size_t *used, uint32_t *budget)
{
    http_tr *t = tr_of(c);
    *used = 0;
    if (t->held) {
        /* an answer is pending: keep the input (bounded) until it goes */
        if (sh_buf_append(&t->stash, in, len)) {
            app_conn_abort(c, "http: too much input while an answer is pending");
            return;
        }
        *used = len;
        return;
    }
    while (*used < len && !c->closing && *budget > 0 && !t->held) {
        if (!t->in_request) {
            t->in_request = true;
            t->t_start = uv_now(c->srv->loop);
        }
        size_t n = 0;
        int status = 0;
        sh_error err = {0};
        app_http_req r;
        int rc = http_req_parser_feed(t->parser, in + *used, len - *used, &n, &r, &status, &err);
        *used += n;
        if (rc < 0) {
            refuse(c, status ? status : 400, err.what ? err.what : "http: bad request");
            return;
        }
        if (rc == 0) {
            t->in_request = http_req_parser_busy(t->parser);
            return; /* needs more bytes */
        }
        (*budget)--;
        t->in_request = false;
        handle_request(c, &r);
        if (c->tr != &app_http_transport)
            return; /* switched transports: the rest of the input is theirs */
        if (t->held) {
            /* deferred: the rest waits in the stash */
            if (*used < len && sh_buf_append(&t->stash, in + *used, len - *used))
                app_conn_abort(c, "http: too much input while an answer is pending");
            *used = len;
            return;
        }
        if (r.upgrade || t->close_after) {
            app_conn_close(c, r.upgrade ? "http: upgrade refused" : "http: done");
            return;
        }
    }
}

static const char *tr_expired(app_conn *c, uint64_t now)
{
    http_tr *t = tr_of(c);
    if (t->in_request && http_req_parser_busy(t->parser) &&
        now - t->t_start >= c->srv->cfg->http_request_timeout_ms)
        return "http_request_timeout_ms passed before the request was complete";
    return NULL;
}

static int tr_open(app_conn *c, const uint8_t *random)
{
    (void)random;
    const app_config *cfg = c->srv->cfg;
    http_tr *t = calloc(1, sizeof(*t));
    if (!t)
        return SH_ENOMEM;
    http_limits lim = {
        .max_target = cfg->http_max_target,
        .max_header_bytes = cfg->http_max_header_bytes,
        .max_body = c->listen_kind == APP_LISTEN_ADMIN ? cfg->http_max_body : 0,
    };
    t->parser = http_req_parser_new(&lim);
    sh_buf_init(&t->stash, (size_t)lim.max_header_bytes + lim.max_target + lim.max_body + 4096);
    if (!t->parser) {
        free(t);
        return SH_ENOMEM;
    }
    c->tr_state = t;
    return 0;
}

static void tr_close(app_conn *c)
{
    http_tr *t = tr_of(c);
    http_req_parser_free(t->parser);
    sh_buf_cleanup(&t->stash);
    free(t);
    c->tr_state = NULL;
}

static size_t tr_input_mem(const app_conn *c)
{
    const http_tr *t = tr_of(c);
    return sizeof(*t) + http_req_parser_mem(t->parser) + t->stash.cap;
}

static bool tr_handshake_done(const app_conn *c)
{
    (void)c;
    return true;
}

static int tr_no_send(app_conn *c, const app_out *m)
{
    (void)c;
    (void)m;
    return SH_ESTATE;
}

static int tr_no_shared(app_conn *c, app_shared *m)
{
    (void)c;
    (void)m;
    return SH_ESTATE;
}

static int tr_no_reply(app_conn *c, double txid, bool accepted, const amf_value *info)
{
    (void)c;
    (void)txid;
    (void)accepted;
    (void)info;
    return SH_ESTATE;
}

static int tr_no_ping(app_conn *c, uint32_t ts)
{
    (void)c;
    (void)ts;
    return SH_ESTATE;
}

const app_transport app_http_transport = {
    .name = "http",
    .frame_slot = APP_FRAME_SLOTS,
    .wants_session = false,
    .open = tr_open,
    .feed = tr_feed,
    .send = tr_no_send,
    .send_shared = tr_no_shared,
    .connect_reply = tr_no_reply,
    .ping = tr_no_ping,
    .handshake_done = tr_handshake_done,
    .expired = tr_expired,
    .input_mem = tr_input_mem,
    .close = tr_close,
};
