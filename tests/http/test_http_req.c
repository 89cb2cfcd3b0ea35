/* test_http_req.c - http/http_req.h: requests under caps, exactly at and
 * one past each limit; every truncated prefix asks for more; split at
 * every byte gives the same request; pipelining; percent escapes; header
 * trimming; upgrades. */
#include <criterion/criterion.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_req.h"

static const http_limits lim_default = {
    .max_target = 4096, .max_header_bytes = 16384, .max_body = 1 << 20};

/* A copy of what a request said, to compare requests parsed apart. */
typedef struct seen {
    int method;
    char target[9000], path[9000], query[9000];
    size_t nheaders;
    char hname[HTTP_REQ_MAX_HEADERS][256], hvalue[HTTP_REQ_MAX_HEADERS][1024];
    char body[4096];
    size_t body_len;
    bool keep_alive, upgrade;
    int major, minor;
} seen;

static void copy_req(seen *s, const http_request *r)
{
    memset(s, 0, sizeof(*s));
    s->method = r->method;
    snprintf(s->target, sizeof(s->target), "%s", r->target);
    snprintf(s->path, sizeof(s->path), "%s", r->path);
    snprintf(s->query, sizeof(s->query), "%s", r->query);
    s->nheaders = r->nheaders;
    for (size_t i = 0; i < r->nheaders; i++) {
        snprintf(s->hname[i], sizeof(s->hname[i]), "%s", r->hname[i]);
        snprintf(s->hvalue[i], sizeof(s->hvalue[i]), "%s", r->hvalue[i]);
    }
    cr_assert_leq(r->body_len, sizeof(s->body));
    if (r->body_len)
        memcpy(s->body, r->body, r->body_len);
    s->body_len = r->body_len;
    s->keep_alive = r->keep_alive;
    s->upgrade = r->upgrade;
    s->major = r->http_major;
    s->minor = r->http_minor;
}

static bool same(const seen *a, const seen *b)
{
    if (a->method != b->method || strcmp(a->target, b->target) || strcmp(a->path, b->path) ||
        strcmp(a->query, b->query) || a->nheaders != b->nheaders || a->body_len != b->body_len ||
        memcmp(a->body, b->body, a->body_len) || a->keep_alive != b->keep_alive ||
        a->upgrade != b->upgrade || a->major != b->major || a->minor != b->minor)
        return false;
    for (size_t i = 0; i < a->nheaders; i++)
        if (strcmp(a->hname[i], b->hname[i]) || strcmp(a->hvalue[i], b->hvalue[i]))
            return false;
    return true;
}

/* Parses one whole request from text in one feed. */
static int parse_one(const http_limits *lim, const char *text, size_t len, seen *out, int *status)
{
    http_req_parser *p = http_req_parser_new(lim);
    cr_assert_not_null(p);
    size_t used = 0;
    http_request r;
    sh_error e = {0};
    int rc = http_req_parser_feed(p, (const uint8_t *)text, len, &used, &r, status, &e);
    if (rc == 1)
        copy_req(out, &r);
    if (rc < 0)
        cr_assert_not_null(e.what, "an error says why");
    http_req_parser_free(p);
    return rc;
}

static const char *const valid[] = {
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /x/y%20z?q=1&r=%41 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Empty:\r\n\r\n",
    "HEAD /a HTTP/1.0\r\n\r\n",
    "POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "GET /t HTTP/1.1\r\nName:   spaced value \t \r\nConnection: close\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET http://example.org/abs/path?x#frag HTTP/1.1\r\nHost: example.org\r\n\r\n",
    "GET /up HTTP/1.1\r\nUpgrade: x\r\nConnection: upgrade\r\nContent-Length: 3\r\n\r\nabc",
};
#define NVALID (sizeof(valid) / sizeof(valid[0]))

Test(http_req, valid_whole)
{
    for (size_t i = 0; i < NVALID; i++) {
        seen s;
        int st = 0;
        int rc = parse_one(&lim_default, valid[i], strlen(valid[i]), &s, &st);
        cr_expect_eq(rc, 1, "request %zu: rc %d status %d", i, rc, st);
    }
}

Test(http_req, fields)
{
    seen s;
    int st;
    cr_assert_eq(parse_one(&lim_default, valid[1], strlen(valid[1]), &s, &st), 1);
    cr_expect_eq(s.method, HTTP_GET);
    cr_expect_str_eq(s.target, "/x/y%20z?q=1&r=%41");
    cr_expect_str_eq(s.path, "/x/y z", "the path is percent-decoded");
    cr_expect_str_eq(s.query, "q=1&r=%41", "the query stays raw");
    cr_expect_eq(s.nheaders, 3);
    cr_expect_str_eq(s.hname[2], "X-Empty");
    cr_expect_str_eq(s.hvalue[2], "", "an empty value");
    cr_expect(s.keep_alive);
    cr_expect(!s.upgrade);
    cr_expect(s.major == 1 && s.minor == 1);

    cr_assert_eq(parse_one(&lim_default, valid[6], strlen(valid[6]), &s, &st), 1);
    cr_expect_str_eq(s.hvalue[0], "spaced value", "blanks around a value are trimmed");
    cr_expect(!s.keep_alive, "Connection: close");

    cr_assert_eq(parse_one(&lim_default, valid[2], strlen(valid[2]), &s, &st), 1);
    cr_expect(!s.keep_alive, "HTTP/1.0 without keep-alive");
    cr_expect(s.major == 1 && s.minor == 0);

    cr_assert_eq(parse_one(&lim_default, valid[4], strlen(valid[4]), &s, &st), 1);
    cr_expect_eq(s.body_len, 5);
    cr_expect(memcmp(s.body, "abcde", 5) == 0, "chunked body joined");

    cr_assert_eq(parse_one(&lim_default, valid[8], strlen(valid[8]), &s, &st), 1);
    cr_expect_str_eq(s.path, "/abs/path");
    cr_expect_str_eq(s.query, "x", "the fragment is not part of the query");
}

Test(http_req, header_lookup)
{
    http_req_parser *p = http_req_parser_new(&lim_default);
    size_t used;
    http_request r;
    int st;
    cr_assert_eq(http_req_parser_feed(p, (const uint8_t *)valid[5], strlen(valid[5]), &used, &r,
                                      &st, NULL),
                 1);
    cr_expect_str_eq(http_request_header(&r, "upgrade"), "websocket");
    cr_expect_str_eq(http_request_header(&r, "SEC-WEBSOCKET-VERSION"), "13");
    cr_expect_null(http_request_header(&r, "Origin"));
    cr_expect(r.upgrade);
    cr_expect_eq(used, strlen(valid[5]));
    /* after an upgrade the parser takes nothing more */
    cr_expect_lt(http_req_parser_feed(p, (const uint8_t *)"x", 1, &used, &r, &st, NULL), 0);
    http_req_parser_free(p);
}

/* Every proper prefix asks for more (0, all bytes used, busy once a byte
 * came), never fails. */
Test(http_req, truncated_prefixes)
{
    for (size_t i = 0; i < NVALID; i++) {
        size_t n = strlen(valid[i]);
        for (size_t k = 0; k < n; k++) {
            http_req_parser *p = http_req_parser_new(&lim_default);
            size_t used = 99999;
            http_request r;
            int st = 0;
            int rc = http_req_parser_feed(p, (const uint8_t *)valid[i], k, &used, &r, &st, NULL);
            cr_expect_eq(rc, 0, "request %zu, prefix %zu: rc %d", i, k, rc);
            cr_expect_eq(used, k);
            cr_expect_eq(http_req_parser_busy(p), k > 0);
            http_req_parser_free(p);
        }
    }
}

/* Fed in two pieces split at every byte, and one byte at a time: the same
 * request as fed whole. */
Test(http_req, split_everywhere)
{
    for (size_t i = 0; i < NVALID; i++) {
        size_t n = strlen(valid[i]);
        seen whole, part;
        int st;
        cr_assert_eq(parse_one(&lim_default, valid[i], n, &whole, &st), 1);
        for (size_t cut = 0; cut <= n; cut++) {
            http_req_parser *p = http_req_parser_new(&lim_default);
            size_t used = 0;
            http_request r;
            int rc = http_req_parser_feed(p, (const uint8_t *)valid[i], cut, &used, &r, &st, NULL);
            if (rc == 0)
                rc = http_req_parser_feed(p, (const uint8_t *)valid[i] + cut, n - cut, &used, &r,
                                          &st, NULL);
            cr_assert_eq(rc, 1, "request %zu cut at %zu", i, cut);
            copy_req(&part, &r);
            cr_expect(same(&whole, &part), "request %zu cut at %zu differs", i, cut);
            http_req_parser_free(p);
        }
        http_req_parser *p = http_req_parser_new(&lim_default);
        int rc = 0;
        http_request r;
        for (size_t k = 0; k < n && rc == 0; k++) {
            size_t used;
            rc = http_req_parser_feed(p, (const uint8_t *)valid[i] + k, 1, &used, &r, &st, NULL);
            cr_assert_eq(used, 1);
        }
        cr_assert_eq(rc, 1);
        copy_req(&part, &r);
        cr_expect(same(&whole, &part), "request %zu byte by byte differs", i);
        http_req_parser_free(p);
    }
}

Test(http_req, pipelined)
{
    const char *two = "GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
                      "POST /two HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
                      "GET /three HTTP/1.1\r\n";
    size_t n = strlen(two), off = 0, used;
    http_req_parser *p = http_req_parser_new(&lim_default);
    http_request r;
    int st;
    cr_assert_eq(http_req_parser_feed(p, (const uint8_t *)two, n, &used, &r, &st, NULL), 1);
    cr_expect_str_eq(r.path, "/one");
    cr_expect_eq(used, strlen("GET /one HTTP/1.1\r\nHost: a\r\n\r\n"), "used ends at the request");
    off += used;
    cr_assert_eq(http_req_parser_feed(p, (const uint8_t *)two + off, n - off, &used, &r, &st, NULL),
                 1);
    cr_expect_str_eq(r.path, "/two");
    cr_expect_eq(r.body_len, 3);
    cr_expect(memcmp(r.body, "xyz", 3) == 0);
    off += used;
    cr_assert_eq(http_req_parser_feed(p, (const uint8_t *)two + off, n - off, &used, &r, &st, NULL),
                 0, "the third is unfinished");
    cr_expect_eq(off + used, n);
    cr_expect(http_req_parser_busy(p));
    const char *rest = "\r\n";
    cr_assert_eq(http_req_parser_feed(p, (const uint8_t *)rest, 2, &used, &r, &st, NULL), 1);
    cr_expect_str_eq(r.path, "/three");
    http_req_parser_free(p);
}

static void expect_status(const http_limits *lim, const char *text, size_t len, int want)
{
    seen s;
    int st = 0;
    int rc = parse_one(lim, text, len, &s, &st);
    if (want == 0) {
        cr_expect_eq(rc, 1, "want a request, got rc %d status %d", rc, st);
    } else {
        cr_expect_lt(rc, 0, "want status %d, got rc %d", want, rc);
        cr_expect_eq(st, want, "status %d, want %d", st, want);
    }
}

/* "GET /aaaa HTTP/1.1\r\n\r\n" with a target of exactly n bytes. */
static char *target_req(size_t n)
{
    char *t = malloc(n + 64);
    t[0] = '/';
    memset(t + 1, 'a', n - 1);
    t[n] = '\0';
    char *req = malloc(n + 64);
    sprintf(req, "GET %s HTTP/1.1\r\n\r\n", t);
    free(t);
    return req;
}

Test(http_req, cap_target)
{
    http_limits lim = lim_default;
    lim.max_target = 100;
    char *at = target_req(100), *over = target_req(101);
    expect_status(&lim, at, strlen(at), 0);
    expect_status(&lim, over, strlen(over), 414);
    free(at);
    free(over);
    /* the hard maximum: a larger setting is cut to 8192 */
    lim.max_target = 100000;
    at = target_req(8192);
    over = target_req(8193);
    expect_status(&lim, at, strlen(at), 0);
    expect_status(&lim, over, strlen(over), 414);
    free(at);
    free(over);
}

/* One header "X: vvv" whose name and value add up to n bytes. */
static char *header_req(size_t n)
{
    char *req = malloc(n + 64);
    cr_assert_not_null(req);
    size_t k = (size_t)sprintf(req, "GET / HTTP/1.1\r\nX: ");
    memset(req + k, 'v', n - 1);
    k += n - 1;
    strcpy(req + k, "\r\n\r\n");
    return req;
}

Test(http_req, cap_header_bytes)
{
    http_limits lim = lim_default;
    lim.max_header_bytes = 1000;
    char *at = header_req(1000), *over = header_req(1001);
    expect_status(&lim, at, strlen(at), 0);
    expect_status(&lim, over, strlen(over), 431);
    free(at);
    free(over);
}

static char *many_headers(size_t n)
{
    char *req = malloc(64 + n * 16);
    cr_assert_not_null(req);
    size_t k = (size_t)sprintf(req, "GET / HTTP/1.1\r\n");
    for (size_t i = 0; i < n; i++)
        k += (size_t)sprintf(req + k, "H%zu: v\r\n", i);
    strcpy(req + k, "\r\n");
    return req;
}

Test(http_req, cap_header_count)
{
    char *at = many_headers(HTTP_REQ_MAX_HEADERS), *over = many_headers(HTTP_REQ_MAX_HEADERS + 1);
    expect_status(&lim_default, at, strlen(at), 0);
    expect_status(&lim_default, over, strlen(over), 431);
    free(at);
    free(over);
}

Test(http_req, cap_body)
{
    http_limits lim = lim_default;
    lim.max_body = 10;
    const char *at = "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
    const char *over = "POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n";
    const char *chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "a\r\n0123456789\r\n1\r\nx\r\n0\r\n\r\n";
    const char *chunked_at = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n";
    expect_status(&lim, at, strlen(at), 0);
    expect_status(&lim, over, strlen(over), 413);
    expect_status(&lim, chunked, strlen(chunked), 413);
    expect_status(&lim, chunked_at, strlen(chunked_at), 0);
    lim.max_body = 0;
    expect_status(&lim, "POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 39, 413);
    expect_status(&lim, "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 38, 0);
}

/* What the parser holds stays within its caps, whatever it is fed. */
Test(http_req, memory_bounded)
{
    http_limits lim = {.max_target = 512, .max_header_bytes = 2048, .max_body = 1000};
    http_req_parser *p = http_req_parser_new(&lim);
    size_t empty = http_req_parser_mem(p);
    char *body = malloc(4000);
    size_t k = (size_t)sprintf(body, "POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
    memset(body + k, 'b', 1000);
    size_t used;
    http_request r;
    int st;
    cr_assert_eq(http_req_parser_feed(p, (const uint8_t *)body, k + 1000, &used, &r, &st, NULL), 1);
    size_t full = http_req_parser_mem(p);
    cr_expect_leq(full, empty + 2048 + 512 + 2 * HTTP_REQ_MAX_HEADERS + 8 + 1001 + 64,
                  "mem %zu from %zu", full, empty);
    free(body);
    http_req_parser_free(p);
}

Test(http_req, percent_escapes)
{
    static const struct {
        const char *target;
        const char *path; /* NULL: refused with 400 */
    } cases[] = {
        {"/%41%42", "/AB"},   {"/a%2fb", "/a/b"}, {"/%e2%82%ac", "/\xe2\x82\xac"},
        {"/%zz", NULL},       {"/%4", NULL},      {"/%", NULL},
        {"/a%00b", NULL},     {"/%g1", NULL},     {"/%2", NULL},
        {"/ok%20", "/ok "},   {"/%7E", "/~"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char req[256];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\n\r\n", cases[i].target);
        seen s;
        int st = 0;
        int rc = parse_one(&lim_default, req, strlen(req), &s, &st);
        if (cases[i].path) {
            cr_expect_eq(rc, 1, "%s", cases[i].target);
            if (rc == 1)
                cr_expect_str_eq(s.path, cases[i].path);
        } else {
            cr_expect(rc < 0 && st == 400, "%s: rc %d status %d", cases[i].target, rc, st);
        }
    }
}

Test(http_req, garbage)
{
    static const char *const bad[] = {
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls\r\n\r\n", "GET\r\n\r\n",
        "GET / HTTP/9.9x\r\n\r\n", "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        "GET / HTTP/1.1\r\n: novalue\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        seen s;
        int st = 0;
        int rc = parse_one(&lim_default, bad[i], strlen(bad[i]), &s, &st);
        cr_expect(rc < 0 && st == 400, "garbage %zu: rc %d status %d", i, rc, st);
    }
}

Test(http_req, dead_after_error)
{
    http_req_parser *p = http_req_parser_new(&lim_default);
    size_t used;
    http_request r;
    int st;
    cr_assert_lt(http_req_parser_feed(p, (const uint8_t *)"BAD\r\n\r\n", 7, &used, &r, &st, NULL), 0);
    cr_expect_lt(http_req_parser_feed(p, (const uint8_t *)valid[0], strlen(valid[0]), &used, &r,
                                      &st, NULL),
                 0, "nothing is taken after an error");
    http_req_parser_free(p);
    http_req_parser_free(NULL);
}
