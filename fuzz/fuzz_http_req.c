/* fuzz_http_req.c - HTTP/1.1 requests (http/http_req.h).
 *
 * Input: mode byte, a 4-byte seed, then the bytes a client sends (any
 * number of pipelined requests).  Mode bits 0-1 pick the limits (tight,
 * the server's defaults, the admin listener's with a body).  The bytes are
 * parsed once fed whole and once fed in pieces whose sizes come from the
 * seed, each piece offered again after every request that ends inside it.
 * Properties: both give the same requests (method, target, path, query,
 * headers, body, version, keep-alive, upgrade) and the same ending (the
 * same error status, or the same unfinished state); used never passes
 * what was offered and a 0 answer takes everything; an error is one of
 * 400, 413, 414, 431; every request is within the caps (target, header
 * count, body) and its decoded path holds no NUL; what the parser holds
 * (http_req_parser_mem) never passes its caps.
 */
#include <string.h>

#include "fuzz_common.h"
#include "http_req.h"
#include "sh_buf.h"

static const http_limits limit_sets[4] = {
    {.max_target = 64, .max_header_bytes = 256, .max_body = 0},
    {.max_target = 4096, .max_header_bytes = 16384, .max_body = 0},
    {.max_target = 128, .max_header_bytes = 1024, .max_body = 300},
    {.max_target = 8192, .max_header_bytes = 65536, .max_body = 1 << 20},
};

typedef struct splitter {
    uint32_t x;
    size_t max;       /* 0: one piece */
} splitter;

static size_t next_piece(splitter *s, size_t left)
{
    if (s->max == 0)
        return left;
    s->x ^= s->x << 13;
    s->x ^= s->x >> 17;
    s->x ^= s->x << 5;
    size_t k = 1 + s->x % s->max;
    return k < left ? k : left;
}

static void log_str(sh_buf *log, const char *s)
{
    sh_buf_append(log, s, strlen(s) + 1);
}

static void log_request(sh_buf *log, const http_request *r, const http_limits *lim)
{
    FZ_CHECK(strlen(r->target) <= (lim->max_target > 8192 ? 8192 : lim->max_target));
    FZ_CHECK(r->nheaders <= HTTP_REQ_MAX_HEADERS);
    FZ_CHECK(r->body_len <= lim->max_body);
    FZ_CHECK(r->path && r->query && r->method_name);
    char head[64];
    snprintf(head, sizeof(head), "req %d %u.%u ka=%d up=%d h=%zu b=%zu", r->method,
             r->http_major, r->http_minor, r->keep_alive, r->upgrade, r->nheaders, r->body_len);
    log_str(log, head);
    log_str(log, r->target);
    log_str(log, r->path);
    log_str(log, r->query);
    for (size_t i = 0; i < r->nheaders; i++) {
        log_str(log, r->hname[i]);
        log_str(log, r->hvalue[i]);
    }
    if (r->body_len)
        sh_buf_append(log, r->body, r->body_len);
}

static void run(const http_limits *lim, const uint8_t *d, size_t n, splitter *sp, sh_buf *log)
{
    http_req_parser *p = http_req_parser_new(lim);
    FZ_CHECK(p);
    size_t base = http_req_parser_mem(p);
    size_t target = lim->max_target > 8192 ? 8192 : lim->max_target;
    size_t bound = base + lim->max_header_bytes + target + 2 * HTTP_REQ_MAX_HEADERS + 8 +
                   (size_t)lim->max_body + 1;
    size_t off = 0;
    bool done = false;
    while (off < n && !done) {
        size_t k = next_piece(sp, n - off);
        size_t poff = 0;
        for (int guard = 0; guard < 100000; guard++) {
            size_t used = 0;
            int status = 0;
            http_request r;
            sh_error e = {0};
            int rc = http_req_parser_feed(p, d + off + poff, k - poff, &used, &r, &status, &e);
            FZ_CHECK(used <= k - poff);
            FZ_CHECK(http_req_parser_mem(p) <= bound);
            if (rc < 0) {
                FZ_CHECK(status == 400 || status == 413 || status == 414 || status == 431);
                FZ_CHECK(e.what != NULL);
                char line[32];
                snprintf(line, sizeof(line), "error %d", status);
                log_str(log, line);
                done = true;
                break;
            }
            if (rc == 0) {
                FZ_CHECK(used == k - poff);
                break;
            }
            log_request(log, &r, lim);
            poff += used;
            if (r.upgrade) {
                log_str(log, "upgrade");
                done = true;
                break;
            }
            if (poff == k)
                break;
        }
        off += k;
    }
    if (!done) {
        log_str(log, http_req_parser_busy(p) ? "end busy" : "end idle");
    }
    http_req_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    const http_limits *lim = &limit_sets[data[0] & 3];
    uint32_t seed = (uint32_t)data[1] << 24 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 8 |
                    data[4];
    size_t n = size - 5;
    uint8_t *d = fz_dup(data + 5, n);
    sh_buf whole, split;
    sh_buf_init(&whole, SH_BUF_MAX_DEFAULT);
    sh_buf_init(&split, SH_BUF_MAX_DEFAULT);
    splitter one = {.max = 0};
    splitter many = {.x = seed | 1, .max = 1 + (seed >> 24) % 64};
    run(lim, d, n, &one, &whole);
    run(lim, d, n, &many, &split);
    if (whole.len != split.len || memcmp(whole.data, split.data, whole.len) != 0) {
        fprintf(stderr, "whole: %.*s\nsplit: %.*s\n", (int)whole.len, (const char *)whole.data,
                (int)split.len, (const char *)split.data);
        FZ_CHECK(!"fed whole and in pieces differ");
    }
    sh_buf_cleanup(&whole);
    sh_buf_cleanup(&split);
    free(d);
    return 0;
}
