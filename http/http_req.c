/* http_req.c - see http_req.h. */
#include "http_req.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sh_buf.h"

#define TARGET_MAX 8192

struct http_req_parser {
    http_parser p;
    http_limits lim;
    bool in_request;            /* a request's first byte came */
    bool complete;              /* a whole request is parsed */
    bool in_value;              /* the last header callback was a value */
    bool head_done;             /* the request's head is complete (body or end next) */
    bool dead;                  /* after an error or an upgrade */
    int status;                 /* a cap broke: answer this */
    const char *why;
    /* the request being built: one arena for target, names, values */
    sh_buf arena;
    size_t target_off, target_len;
    size_t hname_off[HTTP_REQ_MAX_HEADERS], hname_len[HTTP_REQ_MAX_HEADERS];
    size_t hval_off[HTTP_REQ_MAX_HEADERS], hval_len[HTTP_REQ_MAX_HEADERS];
    size_t nheaders;
    size_t header_bytes;
    sh_buf body;
    char target[TARGET_MAX + 1];  /* the target, NUL-terminated */
    char path[TARGET_MAX + 1];    /* its decoded path */
};

static http_req_parser *of(http_parser *p) { return p->data; }

static int cap_fail(http_req_parser *r, int status, const char *why)
{
    r->status = status;
    r->why = why;
    return 1; /* stops the parser */
}

/* ---- callbacks: every cap is checked before bytes are kept ---- */

static int on_begin(http_parser *p)
{
    of(p)->in_request = true;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    http_req_parser *r = of(p);
    if (r->target_len + n > r->lim.max_target)
        return cap_fail(r, 414, "http: request target longer than http_max_target");
    if (r->target_len == 0)
        r->target_off = r->arena.len;
    if (sh_buf_append(&r->arena, at, n))
        return cap_fail(r, 431, "http: request header too large");
    r->target_len += n;
    return 0;
}

static int header_bytes(http_req_parser *r, size_t n)
{
    if (n > r->lim.max_header_bytes || r->header_bytes > r->lim.max_header_bytes - n)
        return cap_fail(r, 431, "http: request headers larger than http_max_header_bytes");
    r->header_bytes += n;
    return 0;
}

static int on_hfield(http_parser *p, const char *at, size_t n)
{
    http_req_parser *r = of(p);
    if (header_bytes(r, n))
        return 1;
    if (r->in_value || r->nheaders == 0) {
        if (r->nheaders >= HTTP_REQ_MAX_HEADERS)
            return cap_fail(r, 431, "http: more than 64 request headers");
        /* the previous value (or the target) ends with a NUL */
        if (sh_buf_put_u8(&r->arena, 0))
            return cap_fail(r, 431, "http: request header too large");
        r->hname_off[r->nheaders] = r->arena.len;
        r->hname_len[r->nheaders] = 0;
        r->hval_len[r->nheaders] = 0;
        r->hval_off[r->nheaders] = 0;
        r->nheaders++;
        r->in_value = false;
    }
    if (sh_buf_append(&r->arena, at, n))
        return cap_fail(r, 431, "http: request header too large");
    r->hname_len[r->nheaders - 1] += n;
    return 0;
}

static int on_hvalue(http_parser *p, const char *at, size_t n)
{
    http_req_parser *r = of(p);
    if (header_bytes(r, n) || r->nheaders == 0)
        return 1;
    size_t i = r->nheaders - 1;
    if (!r->in_value) {
        /* the name gets its NUL; the value starts after it */
        if (sh_buf_put_u8(&r->arena, 0))
            return cap_fail(r, 431, "http: request header too large");
        r->hval_off[i] = r->arena.len;
        r->in_value = true;
    }
    if (sh_buf_append(&r->arena, at, n))
        return cap_fail(r, 431, "http: request header too large");
    r->hval_len[i] += n;
    return 0;
}

static int on_headers_done(http_parser *p)
{
    http_req_parser *r = of(p);
    r->head_done = true;
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > r->lim.max_body)
        return cap_fail(r, 413, "http: request body larger than allowed here");
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    http_req_parser *r = of(p);
    if (n > r->lim.max_body || r->body.len > r->lim.max_body - n)
        return cap_fail(r, 413, "http: request body larger than allowed here");
    if (sh_buf_append(&r->body, at, n))
        return cap_fail(r, 413, "http: request body too large");
    return 0;
}

static int on_complete(http_parser *p)
{
    of(p)->complete = true;
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

/* ---- the request ---- */

static void req_reset(http_req_parser *r)
{
    sh_buf_reset(&r->arena);
    sh_buf_reset(&r->body);
    r->target_len = 0;
    r->nheaders = 0;
    r->header_bytes = 0;
    r->in_value = false;
    r->in_request = false;
    r->head_done = false;
    r->complete = false;
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

bool http_pct_decode(const char *src, size_t n, char *dst)
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

/* Fills q from the parsed request: NUL-terminates names and values in the
 * arena, copies the target out, decodes the path. */
static bool req_fill(http_req_parser *r, http_request *q)
{
    if (sh_buf_put_u8(&r->arena, 0) || r->target_len == 0)
        return false;
    memset(q, 0, sizeof(*q));
    q->method = r->p.method;
    q->method_name = http_method_str((enum http_method)r->p.method);
    q->http_major = (uint8_t)r->p.http_major;
    q->http_minor = (uint8_t)r->p.http_minor;
    q->keep_alive = http_should_keep_alive(&r->p) != 0;
    q->upgrade = r->p.upgrade != 0;
    char *base = (char *)r->arena.data;
    memcpy(r->target, base + r->target_off, r->target_len);
    r->target[r->target_len] = '\0';
    q->target = r->target;
    for (size_t i = 0; i < r->nheaders; i++) {
        base[r->hname_off[i] + r->hname_len[i]] = '\0';
        q->hname[i] = base + r->hname_off[i];
        char *v = r->hval_off[i] ? base + r->hval_off[i] : base + r->hname_off[i] + r->hname_len[i];
        size_t vl = r->hval_len[i];
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        while (vl && (*v == ' ' || *v == '\t')) {
            v++;
            vl--;
        }
        v[vl] = '\0';
        q->hvalue[i] = v;
    }
    q->nheaders = r->nheaders;
    q->body = r->body.data;
    q->body_len = r->body.len;
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(r->target, r->target_len, q->method == HTTP_CONNECT, &u) != 0 ||
        !(u.field_set & (1u << UF_PATH)))
        return false;
    if (!http_pct_decode(r->target + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len, r->path))
        return false;
    q->path = r->path;
    if (u.field_set & (1u << UF_QUERY)) {
        /* the target copy may be cut after its query (a fragment goes) */
        r->target[u.field_data[UF_QUERY].off + u.field_data[UF_QUERY].len] = '\0';
        q->query = r->target + u.field_data[UF_QUERY].off;
    } else {
        q->query = "";
    }
    return true;
}

/* ---- the parser ---- */

/* How many bytes the next http_parser_execute may take.  http-parser
 * hands a span (the target, a header name or value) to its callback at
 * the span's end, or at the end of the bytes it was given: a cap checked
 * there is seen at a place that depends on how the input was split, and a
 * request both too long and malformed further on would get 414 or 400 by
 * chance.  So while the head is read a piece never goes past the byte
 * that could break a cap (a new header name starts at most every 3
 * bytes, "X:\n"): the first problem in byte order decides, however the
 * bytes come.  Requests far from the caps go in few pieces. */
static size_t piece_len(const http_req_parser *r, size_t left)
{
    if (r->head_done)
        return left;
    size_t room = r->lim.max_target - r->target_len;
    size_t hroom = r->lim.max_header_bytes - r->header_bytes;
    if (hroom < room)
        room = hroom;
    size_t names = HTTP_REQ_MAX_HEADERS - r->nheaders;
    if (3 * names < room + 1)
        room = names ? 3 * names - 1 : 0;
    return left < room + 1 ? left : room + 1;
}

http_req_parser *http_req_parser_new(const http_limits *lim)
{
    http_req_parser *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->lim = *lim;
    if (r->lim.max_target > TARGET_MAX)
        r->lim.max_target = TARGET_MAX;
    http_parser_init(&r->p, HTTP_REQUEST);
    r->p.data = r;
    sh_buf_init(&r->arena, (size_t)r->lim.max_header_bytes + r->lim.max_target + 2 * HTTP_REQ_MAX_HEADERS + 8);
    sh_buf_init(&r->body, r->lim.max_body + 1);
    return r;
}

void http_req_parser_free(http_req_parser *r)
{
    if (!r)
        return;
    sh_buf_cleanup(&r->arena);
    sh_buf_cleanup(&r->body);
    free(r);
}

int http_req_parser_feed(http_req_parser *r, const uint8_t *in, size_t len, size_t *used,
                         http_request *req, int *status, sh_error *err)
{
    *used = 0;
    *status = 0;
    if (r->dead)
        return SH_FAIL(err, SH_ESTATE, "http: the parser took its last request", 0);
    if (r->complete) {
        /* the previous request was handed out: go on with the next */
        req_reset(r);
        http_parser_pause(&r->p, 0);
    }
    size_t off = 0;
    while (off < len) {
        size_t k = piece_len(r, len - off);
        size_t n = http_parser_execute(&r->p, &settings, (const char *)in + off, k);
        off += n;
        if (n < k || r->status || r->complete || HTTP_PARSER_ERRNO(&r->p) != HPE_OK)
            break;
    }
    *used = off;
    enum http_errno e = HTTP_PARSER_ERRNO(&r->p);
    if (r->status) {
        r->dead = true;
        *status = r->status;
        return SH_FAIL(err, SH_ELIMIT, r->why, 0);
    }
    if (e != HPE_OK && e != HPE_PAUSED) {
        r->dead = true;
        *status = 400;
        return SH_FAIL(err, SH_EPROTO, http_errno_description(e), 0);
    }
    /* an upgrade request ends with its body too (http-parser calls
     * on_message_complete for it before it stops) */
    if (!r->complete)
        return 0;
    if (!req_fill(r, req)) {
        r->dead = true;
        *status = 400;
        return SH_FAIL(err, SH_EPROTO, "http: bad request target", 0);
    }
    r->complete = true;
    if (req->upgrade)
        r->dead = true; /* the bytes after it are another protocol's */
    return 1;
}

bool http_req_parser_busy(const http_req_parser *r)
{
    return r->in_request && !r->complete;
}

size_t http_req_parser_mem(const http_req_parser *r)
{
    return sizeof(*r) + r->arena.cap + r->body.cap;
}

const char *http_request_header(const http_request *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->hname[i], name) == 0)
            return r->hvalue[i];
    return NULL;
}
