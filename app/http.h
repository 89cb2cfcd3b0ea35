/* http.h - HTTP/1.1 on the server's listeners (http_transport.c).
 *
 * A connection accepted on an HTTP listener starts with the HTTP
 * transport: requests are parsed by http/http_req.c (on Debian's
 * libhttp-parser) under caps checked before anything is buffered
 * (request target, header bytes and count, body bytes), one request at
 * a time, keep-alive as the client asks.  A request goes to the first
 * handler whose prefix matches its path; built in: the WebSocket upgrade
 * at ws_path (the connection then switches to the WebSocket transport,
 * ws_transport.c) and, when no handler answered, static files: web_root
 * on the public listeners, admin_root (the admin page, with headers that
 * keep it from being framed or loading anything from elsewhere) on the
 * admin listener.  Other modules (the admin API) add handlers with
 * app_server_add_http_handler().
 *
 * Everything here runs on the loop thread.
 */
#ifndef APP_HTTP_H
#define APP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app.h"
#include "http_req.h"

/* Which listener a connection came in on. */
typedef enum app_listen_kind {
    APP_LISTEN_RTMP = 0,
    APP_LISTEN_HTTP = 1,      /* web pages and WebSocket (http_listen) */
    APP_LISTEN_ADMIN = 2,     /* operators and backends (admin_listen) */
    APP_LISTEN_HTTPS = 3,     /* only for app_server_http_port: https_listen's
                                 connections are APP_LISTEN_HTTP ones over TLS */
} app_listen_kind;

/* A parsed request (http/http_req.h), borrowed by handlers for the
 * call; app_conn_listener() tells which listener it came in on. */
typedef http_request app_http_req;

app_listen_kind app_conn_listener(const app_conn *c);
#define app_http_header http_request_header

/* Queues a whole response: status line, Content-Type (NULL: none),
 * Content-Length, the extra header lines (each ending in \r\n, may be
 * NULL), then body (left out for HEAD).  Closes after it when the
 * request did not ask for keep-alive or status >= 400 came from a
 * malformed request.  Returns 0 or a negative code. */
int app_http_respond(app_conn *c, const app_http_req *r, int status, const char *ctype,
                     const char *extra_headers, const void *body, size_t len);
/* A response that comes later (a write that must be stored first): the
 * handler calls app_http_defer and returns true; the connection takes no
 * further request (input waits, up to a cap) until
 * app_http_respond_later answers.  The connection may be gone by then:
 * the answer is dropped (SH_ESTATE). */
typedef struct app_http_later {
    uint64_t conn_id;
    bool keep_alive;
    bool head;
} app_http_later;
void app_http_defer(app_conn *c, const app_http_req *r, app_http_later *out);
int app_http_respond_later(app_server *s, const app_http_later *l, int status,
                           const char *ctype, const char *extra_headers, const void *body,
                           size_t len);

/* A small JSON error body {"error":{"code":CODE,"message":MSG}}. */
int app_http_error(app_conn *c, const app_http_req *r, int status, const char *code,
                   const char *message);

/* A handler answers (app_http_respond...) and returns true, or returns
 * false to let the next handler try.  r is borrowed for the call. */
typedef bool (*app_http_handler_fn)(app_conn *c, const app_http_req *r, void *ud);
/* Registers fn for paths starting with prefix on the listeners in mask
 * (bits 1 << app_listen_kind).  Before app_server_start.  Handlers are
 * tried in registration order, after the WebSocket upgrade and before
 * the static files.  Returns 0 or SH_ENOMEM. */
int app_server_add_http_handler(app_server *s, unsigned mask, const char *prefix,
                                app_http_handler_fn fn, void *ud);

/* The port an HTTP listener is bound to (0 when it is off). */
int app_server_http_port(const app_server *s, app_listen_kind kind);

#endif
