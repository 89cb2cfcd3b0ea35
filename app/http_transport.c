/* http_transport.c - HTTP/1.1 requests as a transport (http.h).
 *
 * http-parser does the parsing; this file keeps the caps (checked in the
 * parser callbacks, before a byte is buffered: request target
 * http_max_target, header bytes http_max_header_bytes and at most
 * APP_HTTP_MAX_HEADERS headers, body http_max_body), hands one complete
 * request at a time to the handlers (the parser is paused between
 * requests, so pipelined requests wait their turn and count against the
 * read's message budget), and writes responses into the connection's
 * output queue.  A request must be complete within http_request_timeout_ms
 * of its first byte.
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
    http_parser p;
    app_listen_kind kind;
    bool in_request;            /* a request's first byte came */
    bool complete;              /* a whole request is parsed, not yet handled */
    bool in_value;              /* the last header callback was a value */
    bool close_after;           /* answer, then close */
    int status_err;             /* a cap broke: answer this status */
    const char *err_text;
    uint64_t t_start;           /* loop time of the request's first byte */
    /* the request being built: one arena for target, names, values */
    sh_buf arena;
    size_t target_off, target_len;
    size_t hname_off[APP_HTTP_MAX_HEADERS], hname_len[APP_HTTP_MAX_HEADERS];
    size_t hval_off[APP_HTTP_MAX_HEADERS], hval_len[APP_HTTP_MAX_HEADERS];
    size_t nheaders;
    size_t header_bytes;
    sh_buf body;
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

int app_http_respond(app_conn *c, const app_http_req *r, int status, const char *ctype,
                     const char *extra_headers, const void *body, size_t len)
{
    http_tr *t = tr_of(c);
    bool keep = r && r->keep_alive && !t->close_after;
    char head[1024];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nServer: sohub\r\n%s%s%sContent-Length: %zu\r\n%s%s\r\n",
                     status, status_text(status), ctype ? "Content-Type: " : "",
                     ctype ? ctype : "", ctype ? "\r\n" : "", len,
                     keep ? "" : "Connection: close\r\n", extra_headers ? extra_headers : "");
    if (n < 0 || (size_t)n >= sizeof(head))
        return SH_EINVAL;
    int rc = sh_outq_push_copy(&c->outq, head, (size_t)n);
    bool head_only = r && r->method == HTTP_HEAD;
    if (rc == 0 && len && !head_only)
        rc = sh_outq_push_copy(&c->outq, body, len);
    if (rc == 0)
        rc = app_conn_output(c);
    if (!keep)
        t->close_after = true;
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

const char *app_http_header(const app_http_req *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->hname[i], name) == 0)
            return r->hvalue[i];
    return NULL;
}

/* ---- parser callbacks: every cap is checked before bytes are kept ---- */

static app_conn *conn_of(http_parser *p) { return p->data; }

static int cap_fail(app_conn *c, int status, const char *why)
{
    http_tr *t = tr_of(c);
    t->status_err = status;
    t->err_text = why;
    return 1; /* stops the parser */
}

static int on_begin(http_parser *p)
{
    app_conn *c = conn_of(p);
    http_tr *t = tr_of(c);
    if (!t->in_request) {
        t->in_request = true;
        t->t_start = uv_now(c->srv->loop);
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    app_conn *c = conn_of(p);
    http_tr *t = tr_of(c);
    if (t->target_len + n > c->srv->cfg->http_max_target)
        return cap_fail(c, 414, "request target longer than http_max_target");
    if (t->target_len == 0)
        t->target_off = t->arena.len;
    if (sh_buf_append(&t->arena, at, n))
        return cap_fail(c, 431, "request header too large");
    t->target_len += n;
    return 0;
}

static int header_bytes(app_conn *c, size_t n)
{
    http_tr *t = tr_of(c);
    if (n > c->srv->cfg->http_max_header_bytes ||
        t->header_bytes > c->srv->cfg->http_max_header_bytes - n)
        return cap_fail(c, 431, "request headers larger than http_max_header_bytes");
    t->header_bytes += n;
    return 0;
}

static int on_hfield(http_parser *p, const char *at, size_t n)
{
    app_conn *c = conn_of(p);
    http_tr *t = tr_of(c);
    if (header_bytes(c, n))
        return 1;
    if (t->in_value || t->nheaders == 0) {
        if (t->nheaders >= APP_HTTP_MAX_HEADERS)
            return cap_fail(c, 431, "more than 64 request headers");
        /* the previous value (or the target) ends with a NUL */
        if (sh_buf_put_u8(&t->arena, 0))
            return cap_fail(c, 431, "request header too large");
        t->hname_off[t->nheaders] = t->arena.len;
        t->hname_len[t->nheaders] = 0;
        t->hval_len[t->nheaders] = 0;
        t->nheaders++;
        t->in_value = false;
    }
    if (sh_buf_append(&t->arena, at, n))
        return cap_fail(c, 431, "request header too large");
    t->hname_len[t->nheaders - 1] += n;
    return 0;
}

static int on_hvalue(http_parser *p, const char *at, size_t n)
{
    app_conn *c = conn_of(p);
    http_tr *t = tr_of(c);
    if (header_bytes(c, n) || t->nheaders == 0)
        return 1;
    size_t i = t->nheaders - 1;
    if (!t->in_value) {
        /* the name gets its NUL; the value starts after it */
        if (sh_buf_put_u8(&t->arena, 0))
            return cap_fail(c, 431, "request header too large");
        t->hval_off[i] = t->arena.len;
        t->in_value = true;
    }
    if (sh_buf_append(&t->arena, at, n))
        return cap_fail(c, 431, "request header too large");
    t->hval_len[i] += n;
    return 0;
}

static int on_headers_done(http_parser *p)
{
    app_conn *c = conn_of(p);
    http_tr *t = tr_of(c);
    uint64_t max = t->kind == APP_LISTEN_ADMIN ? c->srv->cfg->http_max_body : 0;
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > max)
        return cap_fail(c, 413, "request body larger than allowed here");
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    app_conn *c = conn_of(p);
    http_tr *t = tr_of(c);
    uint64_t max = t->kind == APP_LISTEN_ADMIN ? c->srv->cfg->http_max_body : 0;
    if (n > max || t->body.len > max - n)
        return cap_fail(c, 413, "request body larger than allowed here");
    if (sh_buf_append(&t->body, at, n))
        return cap_fail(c, 413, "request body too large");
    return 0;
}

static int on_complete(http_parser *p)
{
    app_conn *c = conn_of(p);
    tr_of(c)->complete = true;
    http_parser_pause(p, 1); /* one request at a time */
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_begin,
    .on_url = on_url,
    .on_header_field = on_hfield,
    .on_header_value = on_hvalue,
    .on_headers_complete = on_headers_done,
    .on_body = on_body,
    .on_message_complete = on_complete,
};

/* ---- requests ---- */

static void req_reset(http_tr *t)
{
    sh_buf_reset(&t->arena);
    sh_buf_reset(&t->body);
    t->target_len = 0;
    t->nheaders = 0;
    t->header_bytes = 0;
    t->in_value = false;
    t->in_request = false;
    t->complete = false;
}

static int hexv(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch |= 0x20;
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* Percent-decodes src[0..n) into dst (room for n + 1); false when an
 * escape is bad or decodes to NUL. */
static bool pct_decode(const char *src, size_t n, char *dst)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = src[i];
        if (ch == '%') {
            if (i + 2 >= n)
                return false;
            int a = hexv((unsigned char)src[i + 1]), b = hexv((unsigned char)src[i + 2]);
            if (a < 0 || b < 0 || (a == 0 && b == 0))
                return false;
            ch = (char)(a << 4 | b);
            i += 2;
        }
        dst[j++] = ch;
    }
    dst[j] = '\0';
    return true;
}

/* Fills r from the parsed request; path/query live in pathbuf. */
static bool req_fill(app_conn *c, app_http_req *r, char *pathbuf, size_t pathsz)
{
    http_tr *t = tr_of(c);
    /* NUL-terminate the last header value and the target */
    if (sh_buf_put_u8(&t->arena, 0))
        return false;
    memset(r, 0, sizeof(*r));
    r->listener = t->kind;
    r->method = t->p.method;
    r->method_name = http_method_str((enum http_method)t->p.method);
    r->keep_alive = http_should_keep_alive(&t->p) != 0;
    r->upgrade = t->p.upgrade != 0;
    char *base = (char *)t->arena.data;
    /* the target was followed by the first header name: copy it out */
    size_t tl = t->target_len < pathsz / 2 ? t->target_len : pathsz / 2 - 1;
    char *target = pathbuf + pathsz / 2;
    memcpy(target, base + t->target_off, tl);
    target[tl] = '\0';
    r->target = target;
    for (size_t i = 0; i < t->nheaders; i++) {
        base[t->hname_off[i] + t->hname_len[i]] = '\0';
        r->hname[i] = base + t->hname_off[i];
        char *v = t->hval_len[i] ? base + t->hval_off[i] : base + t->hname_off[i] + t->hname_len[i];
        size_t vl = t->hval_len[i];
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        while (vl && (*v == ' ' || *v == '\t')) {
            v++;
            vl--;
        }
        v[vl] = '\0';
        r->hvalue[i] = v;
    }
    r->nheaders = t->nheaders;
    r->body = t->body.data;
    r->body_len = t->body.len;
    /* path and query from the target ("/p?q", or "http://h/p?q") */
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(target, tl, r->method == HTTP_CONNECT, &u) != 0 ||
        !(u.field_set & (1u << UF_PATH)))
        return false;
    const char *p = target + u.field_data[UF_PATH].off;
    size_t pl = u.field_data[UF_PATH].len;
    if (!pct_decode(p, pl, pathbuf))
        return false;
    r->path = pathbuf;
    if (u.field_set & (1u << UF_QUERY)) {
        target[u.field_data[UF_QUERY].off + u.field_data[UF_QUERY].len] = '\0';
        r->query = target + u.field_data[UF_QUERY].off;
    } else {
        r->query = "";
    }
    return true;
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

static bool serve_static(app_conn *c, const app_http_req *r, void *ud)
{
    (void)ud;
    const app_config *cfg = c->srv->cfg;
    if (!cfg->web_root || !*cfg->web_root || r->listener != APP_LISTEN_HTTP)
        return false;
    if (r->method != HTTP_GET && r->method != HTTP_HEAD) {
        app_http_respond(c, r, 405, "text/plain; charset=utf-8", "Allow: GET, HEAD\r\n",
                         "Method not allowed\n", 19);
        return true;
    }
    if (!path_safe(r->path)) {
        app_http_respond(c, r, 400, "text/plain; charset=utf-8", NULL, "Bad path\n", 9);
        return true;
    }
    char root[PATH_MAX], full[PATH_MAX], real[PATH_MAX];
    if (!realpath(cfg->web_root, root))
        return false;
    size_t pl = strlen(r->path);
    int n = snprintf(full, sizeof(full), "%s%s%s", root, r->path,
                     pl && r->path[pl - 1] == '/' ? "index.html" : "");
    struct stat st;
    if (n < 0 || (size_t)n >= sizeof(full) || !realpath(full, real) || stat(real, &st) != 0) {
        app_http_respond(c, r, 404, "text/plain; charset=utf-8", NULL, "Not found\n", 10);
        return true;
    }
    if (S_ISDIR(st.st_mode)) {
        /* a directory without its slash: send the browser to it */
        char loc[PATH_MAX + 32];
        snprintf(loc, sizeof(loc), "Location: %s/\r\n", r->path);
        app_http_respond(c, r, 301, NULL, loc, NULL, 0);
        return true;
    }
    size_t rl = strlen(root);
    if (strncmp(real, root, rl) != 0 || real[rl] != '/' || !S_ISREG(st.st_mode)) {
        app_http_respond(c, r, 404, "text/plain; charset=utf-8", NULL, "Not found\n", 10);
        return true;
    }
    if ((uint64_t)st.st_size > cfg->http_max_file) {
        app_http_respond(c, r, 403, "text/plain; charset=utf-8", NULL,
                         "File larger than http_max_file\n", 31);
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
        app_http_respond(c, r, 304, NULL, hdr, NULL, 0);
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
        app_http_respond(c, r, 500, "text/plain; charset=utf-8", NULL, "Read error\n", 11);
        return true;
    }
    app_http_respond(c, r, 200, mime_of(real), hdr, buf, got);
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
        if (!(h->mask & (1u << r->listener)) || strncmp(r->path, h->prefix, strlen(h->prefix)))
            continue;
        if (h->fn(c, r, h->ud))
            return;
    }
    if (serve_static(c, r, NULL))
        return;
    app_http_respond(c, r, 404, "text/plain; charset=utf-8", NULL, "Not found\n", 10);
}

/* A cap broke or the request is malformed: answer and close. */
static void refuse(app_conn *c, int status, const char *why)
{
    http_tr *t = tr_of(c);
    t->close_after = true;
    char body[160];
    int n = snprintf(body, sizeof(body), "%s\n", why);
    app_http_respond(c, NULL, status, "text/plain; charset=utf-8", NULL, body,
                     n > 0 ? (size_t)n : 0);
    char reason[200];
    snprintf(reason, sizeof(reason), "http %d: %s", status, why);
    app_conn_close(c, reason);
}

static void tr_feed(app_conn *c, const uint8_t *in, size_t len, size_t *used, uint32_t *budget)
{
    http_tr *t = tr_of(c);
    *used = 0;
    while (*used < len && !c->closing && *budget > 0) {
        size_t n = http_parser_execute(&t->p, &settings, (const char *)in + *used, len - *used);
        *used += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&t->p);
        if (t->status_err) {
            refuse(c, t->status_err, t->err_text);
            return;
        }
        if (e != HPE_OK && e != HPE_PAUSED) {
            refuse(c, 400, http_errno_description(e));
            return;
        }
        if (!t->complete) {
            if (n == 0 && !t->p.upgrade)
                return; /* needs more bytes */
            if (!t->p.upgrade)
                continue;
        }
        /* one whole request */
        (*budget)--;
        app_http_req r;
        char pathbuf[2 * 8192 + 8];
        if (!req_fill(c, &r, pathbuf, sizeof(pathbuf))) {
            refuse(c, 400, "Bad request target");
            return;
        }
        bool upgrade = t->p.upgrade;
        handle_request(c, &r);
        if (c->tr != &app_http_transport)
            return; /* switched transports: the rest of the input is theirs */
        if (upgrade || t->close_after) {
            app_conn_close(c, upgrade ? "http: upgrade refused" : "http: done");
            return;
        }
        req_reset(t);
        http_parser_pause(&t->p, 0);
    }
}

static const char *tr_expired(app_conn *c, uint64_t now)
{
    http_tr *t = tr_of(c);
    if (t->in_request && now - t->t_start >= c->srv->cfg->http_request_timeout_ms)
        return "http_request_timeout_ms passed before the request was complete";
    return NULL;
}

static int tr_open(app_conn *c, const uint8_t *random)
{
    (void)random;
    http_tr *t = calloc(1, sizeof(*t));
    if (!t)
        return SH_ENOMEM;
    http_parser_init(&t->p, HTTP_REQUEST);
    t->p.data = c;
    t->kind = c->listen_kind;
    sh_buf_init(&t->arena, c->srv->cfg->http_max_header_bytes + c->srv->cfg->http_max_target + 64);
    sh_buf_init(&t->body, c->srv->cfg->http_max_body + 1);
    c->tr_state = t;
    return 0;
}

static void tr_close(app_conn *c)
{
    http_tr *t = tr_of(c);
    sh_buf_cleanup(&t->arena);
    sh_buf_cleanup(&t->body);
    free(t);
    c->tr_state = NULL;
}

static size_t tr_input_mem(const app_conn *c)
{
    const http_tr *t = tr_of(c);
    return sizeof(*t) + t->arena.cap + t->body.cap;
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
