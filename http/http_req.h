/* http_req.h - HTTP/1.1 request parsing under caps (sans-I/O).
 *
 * http-parser (Debian's libhttp-parser) reads the bytes; this module
 * keeps what a request may make the server hold within named caps, all
 * checked in the parser's callbacks before a byte is kept: the request
 * target (max_target), the header bytes (max_header_bytes, names and
 * values together) and count (HTTP_REQ_MAX_HEADERS), the body
 * (max_body).  One request at a time: the parser stops after each whole
 * request, so pipelined requests wait until the caller took the first.
 * Nothing here reads a socket or a clock.
 */
#ifndef HTTP_REQ_H
#define HTTP_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sh_err.h"

#define HTTP_REQ_MAX_HEADERS 64

typedef struct http_limits {
    uint32_t max_target;        /* bytes of the request target (at most 8192) */
    uint32_t max_header_bytes;  /* header names and values together */
    uint64_t max_body;          /* 0: requests carry no body */
} http_limits;

/* One parsed request; every pointer is borrowed from the parser and
 * valid until its next feed. */
typedef struct http_request {
    int method;                  /* enum http_method */
    const char *method_name;     /* "GET", ... */
    const char *target;          /* the request target as sent */
    const char *path;            /* its path, percent-decoded; never holds NUL */
    const char *query;           /* its query without '?', raw ("" when none) */
    size_t nheaders;
    const char *hname[HTTP_REQ_MAX_HEADERS];   /* as sent */
    const char *hvalue[HTTP_REQ_MAX_HEADERS];  /* without surrounding blanks */
    const uint8_t *body;
    size_t body_len;
    uint8_t http_major, http_minor; /* the version: HTTP/1.1 is 1, 1 */
    bool keep_alive;             /* the client keeps the connection */
    bool upgrade;                /* an Upgrade request: the bytes after it are another protocol's */
} http_request;

/* Percent-decodes src[0..n) into dst (room for n + 1, NUL-terminated):
 * the one decoder of request paths and query values.  False when an
 * escape is bad or decodes to NUL. */
bool http_pct_decode(const char *src, size_t n, char *dst);

typedef struct http_req_parser http_req_parser;

/* lim is copied.  NULL when out of memory. */
http_req_parser *http_req_parser_new(const http_limits *lim);
void http_req_parser_free(http_req_parser *p);   /* accepts NULL */

/* Feeds bytes.  Returns 1 with *req filled when a whole request was
 * parsed (*used: bytes up to its end; call again with the rest), 0 when
 * every byte was used without completing one, or a negative code when
 * the request is malformed or breaks a cap: *status is then the HTTP
 * status to answer (400, 413, 414, 431) and err says why.  After an
 * upgrade request, or an error, the parser takes nothing more. */
int http_req_parser_feed(http_req_parser *p, const uint8_t *in, size_t len, size_t *used,
                         http_request *req, int *status, sh_error *err);
/* True while a request has begun and is not complete. */
bool http_req_parser_busy(const http_req_parser *p);
/* Bytes the parser holds (for memory accounting). */
size_t http_req_parser_mem(const http_req_parser *p);

/* Value of header name (case-insensitive), NULL when absent. */
const char *http_request_header(const http_request *r, const char *name);

#endif
