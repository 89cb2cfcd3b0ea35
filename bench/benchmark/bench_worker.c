/* bench_worker.c - one sohub-benchmark worker process: a libuv loop that
 * opens its share of the connections with our own RTMP client
 * (rtmp_conn, client role), or as WebSocket clients speaking sohub.v1
 * JSON (bench_ws.h, --transport ws), and plays the scenario on them.
 * Both transports share everything above the wire: the scenarios, the
 * pacing, the shared-object events (bench_so_event) and the clocks.
 *
 * Output: every connection has an sh_outq; a connection with pending bytes
 * is put on the loop's dirty list, and once per loop turn (uv_prepare and
 * uv_check) each dirty connection is flushed with one uv_try_write /
 * uv_write of up to BENCH_IOV slices.
 *
 * The api scenario's writers are HTTP/1.1 keep-alive connections to the
 * admin listener instead: each change is one POST to the server API, up to
 * `window` of them pipelined, and their answers are read in place
 * (status line and Content-Length, nothing else).
 *
 * Setup is paced: at most `concurrency` connections are between TCP connect
 * and the end of their setup (connect _result, plus UseSuccess where the
 * scenario uses a shared object), so the server's listen backlog is never
 * overrun by this tool.
 */
#include "bench.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <cjson/cJSON.h>

#include "amf.h"
#include "bench_so.h"
#include "bench_ws.h"
#include "rtmp.h"
#include "sh_buf.h"
#include "sh_err.h"
#include "sh_rcbuf.h"
#include "so_json.h"
#include "so_wire.h"

#define BENCH_IOV 64
/* chat.ack calls use transaction ids from here up, sendPrivate below */
#define CHAT_ACK_TXID 1e12
#define BENCH_READ_BUF 65536
/* ws: the largest message the client accepts from the server */
#define BENCH_WS_MAX_MSG (1u << 20)

uint64_t bench_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t bench_cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

enum conn_state {
    ST_TCP,        /* TCP connect in progress */
    ST_HANDSHAKE,  /* RTMP handshake (ws: the HTTP upgrade) in progress */
    ST_CONNECTING, /* connect sent, waiting for _result */
    ST_USING,      /* Use sent, waiting for UseSuccess */
    ST_READY,      /* set up */
};

enum conn_role { ROLE_PLAIN, ROLE_SUB, ROLE_WRITER };

typedef struct worker worker;

/* The WebSocket side of one connection (--transport ws). */
typedef struct wsconn {
    bench_ws_rd rd;       /* server frames */
    sh_buf hs;            /* the upgrade answer while it is incomplete */
    char key[25];         /* Sec-WebSocket-Key */
    bool upgraded;
} wsconn;

typedef struct wconn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    worker *w;
    uint32_t local;       /* index in w->conns */
    uint32_t gidx;        /* global connection index */
    enum conn_state state;
    enum conn_role role;
    rtmp_conn *rc;
    wsconn *ws;           /* --transport ws */
    sh_outq outq;
    uint64_t t_start;
    bool closing, writing, dirty, in_pend, setup_done, connect_sent;
    size_t wbytes;
    struct wconn *dirty_next;
    struct wconn *pend_prev, *pend_next;
    /* scenario state */
    char so_name[96];
    char key[24];
    bool persistent;
    uint16_t port;        /* 0: the URL's; else this port of its host (--sub-ports) */
    uint32_t so_version;
    uint32_t outstanding;
    uint64_t sent_total;
    double txid;
    uint64_t *send_times; /* ring of window entries: ack latency */
    uint32_t st_head, st_count;
    bool stopped;         /* chat: the server refused our call */
    double chat_seen;     /* chat: highest message id received */
    double chat_acked;    /* chat: highest id acknowledged with chat.ack */
    double ack_txid;
    uint32_t wslot;       /* index in w->writers when role == ROLE_WRITER */
    bool http;            /* api: an HTTP writer on the admin listener (rc is NULL) */
    sh_buf hin;           /* api: answer bytes not yet complete */
} wconn;

struct worker {
    const bench_opts *o;
    uint32_t id;
    uv_loop_t loop;
    uv_prepare_t prepare;
    uv_check_t check;
    uv_timer_t house;     /* timeouts, rate-mode sends */
    uv_timer_t progress;
    uv_poll_t ctl;
    int ctl_fd, rep_fd;
    struct sockaddr_in dst;
    struct sockaddr_in api_dst; /* api: the admin listener */
    uint8_t random[RTMP_HANDSHAKE_SIZE];
    uint8_t *rbuf;
    bool rbuf_busy;
    uint32_t total, next, inflight, done, conc;
    uint32_t open_conns;
    wconn **conns;
    wconn *dirty_head;
    wconn *pend_head, *pend_tail;
    wconn **writers;
    uint32_t nwriters;
    bool running, stopped, ready_sent, final_sent, pumping;
    uint64_t t_go;
    uint64_t t_read;      /* time of the read being decoded: one clock read per read */
    uint64_t last_ack;
    sh_buf scratch;
    sh_buf frame;         /* ws: one outgoing frame */
    ws_zip *zip;          /* ws: the inflater when --ws-deflate */
    uint64_t mask_state;  /* ws: masking keys (xorshift64) */
    bench_report rep;
};

/* ---- reporting ---- */

static void report_error(worker *w, const char *fmt, const char *detail)
{
    if (w->rep.first_error[0])
        return;
    snprintf(w->rep.first_error, sizeof w->rep.first_error, fmt, detail ? detail : "");
}

static void send_report(worker *w, uint32_t kind)
{
    if (kind == BENCH_REP_FINAL && w->rep.cpu_go && !w->rep.cpu_stop)
        w->rep.cpu_stop = bench_cpu_us(); /* connect ends before the stop */
    w->rep.magic = BENCH_REPORT_MAGIC;
    w->rep.kind = kind;
    w->rep.worker = w->id;
    w->rep.t_go = w->t_go;
    const uint8_t *p = (const uint8_t *)&w->rep;
    size_t left = sizeof w->rep;
    while (left > 0) {
        ssize_t n = write(w->rep_fd, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* coordinator gone: nothing more to tell */
        }
        p += n;
        left -= (size_t)n;
    }
}

/* ---- output ---- */

static void conn_close(wconn *c);
static void conn_fail(wconn *c, const char *why, const char *detail);
static void worker_pump(worker *w);

static void mark_dirty(wconn *c)
{
    if (c->dirty || c->closing)
        return;
    c->dirty = true;
    c->dirty_next = c->w->dirty_head;
    c->w->dirty_head = c;
}

static size_t outq_bufs(wconn *c, uv_buf_t *bufs)
{
    struct iovec iov[BENCH_IOV];
    size_t n = sh_outq_iov(&c->outq, iov, BENCH_IOV);
    for (size_t i = 0; i < n; i++)
        bufs[i] = uv_buf_init(iov[i].iov_base, (unsigned)iov[i].iov_len);
    return n;
}

static void on_write(uv_write_t *req, int status)
{
    wconn *c = req->data;
    c->writing = false;
    if (c->closing)
        return;
    if (status < 0) {
        conn_fail(c, "write failed: %s", uv_strerror(status));
        return;
    }
    sh_outq_consume(&c->outq, c->wbytes);
    c->w->rep.c.bytes_out += c->wbytes;
    if (c->outq.bytes > 0)
        mark_dirty(c);
}

static void conn_flush(wconn *c)
{
    if (c->closing || c->writing || c->outq.bytes == 0)
        return;
    uv_buf_t bufs[BENCH_IOV];
    size_t n = outq_bufs(c, bufs);
    int r = uv_try_write((uv_stream_t *)&c->tcp, bufs, (unsigned)n);
    if (r > 0) {
        sh_outq_consume(&c->outq, (size_t)r);
        c->w->rep.c.bytes_out += (uint64_t)r;
    } else if (r < 0 && r != UV_EAGAIN) {
        conn_fail(c, "write failed: %s", uv_strerror(r));
        return;
    }
    if (c->outq.bytes == 0)
        return;
    n = outq_bufs(c, bufs);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += bufs[i].len;
    c->wbytes = total;
    c->writing = true;
    c->wreq.data = c;
    r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, (unsigned)n, on_write);
    if (r < 0) {
        c->writing = false;
        conn_fail(c, "write failed: %s", uv_strerror(r));
    }
}

static void flush_all(worker *w)
{
    while (w->dirty_head) {
        wconn *c = w->dirty_head;
        w->dirty_head = c->dirty_next;
        c->dirty = false;
        conn_flush(c);
    }
}

static void on_prepare(uv_prepare_t *h) { flush_all(h->data); }
static void on_check(uv_check_t *h) { flush_all(h->data); }

/* ---- the pending-setup list (for timeouts) ---- */

static void pend_remove(wconn *c)
{
    worker *w = c->w;
    if (!c->in_pend)
        return;
    if (c->pend_prev) c->pend_prev->pend_next = c->pend_next;
    else w->pend_head = c->pend_next;
    if (c->pend_next) c->pend_next->pend_prev = c->pend_prev;
    else w->pend_tail = c->pend_prev;
    c->pend_prev = c->pend_next = NULL;
    c->in_pend = false;
}

static void pend_append(wconn *c)
{
    worker *w = c->w;
    c->pend_prev = w->pend_tail;
    c->pend_next = NULL;
    if (w->pend_tail) w->pend_tail->pend_next = c;
    else w->pend_head = c;
    w->pend_tail = c;
    c->in_pend = true;
}

/* ---- connection lifetime ---- */

static void on_close(uv_handle_t *h)
{
    wconn *c = h->data;
    worker *w = c->w;
    if (c->dirty) { /* not expected (flushes run before close callbacks), but never dangle */
        for (wconn **pp = &w->dirty_head; *pp; pp = &(*pp)->dirty_next)
            if (*pp == c) {
                *pp = c->dirty_next;
                break;
            }
    }
    rtmp_conn_free(c->rc);
    sh_buf_cleanup(&c->hin);
    if (c->ws) {
        bench_ws_rd_cleanup(&c->ws->rd);
        sh_buf_cleanup(&c->ws->hs);
        free(c->ws);
    }
    sh_outq_cleanup(&c->outq);
    free(c->send_times);
    w->conns[c->local] = NULL;
    if (c->role == ROLE_WRITER)
        w->writers[c->wslot] = NULL;
    w->open_conns--;
    free(c);
    if (w->stopped && w->open_conns == 0) {
        if (!uv_is_closing((uv_handle_t *)&w->house)) {
            uv_close((uv_handle_t *)&w->house, NULL);
            uv_close((uv_handle_t *)&w->progress, NULL);
            uv_close((uv_handle_t *)&w->prepare, NULL);
            uv_close((uv_handle_t *)&w->check, NULL);
            uv_close((uv_handle_t *)&w->ctl, NULL);
        }
    }
}

/* Ends the setup of c (ok or not); paces the next connections. */
static void setup_finish(wconn *c, bool ok)
{
    worker *w = c->w;
    if (c->setup_done)
        return;
    c->setup_done = true;
    pend_remove(c);
    w->inflight--;
    w->done++;
    w->rep.t_last = bench_now_us();
    if (ok && w->o->scenario == BENCH_CONNECT && !w->o->keep)
        conn_close(c);
    worker_pump(w);
}

static void conn_close(wconn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (!c->setup_done) {
        /* closed before setup completed: count once as a failure */
        c->setup_done = true;
        pend_remove(c);
        c->w->inflight--;
        c->w->done++;
        c->w->rep.c.failed++;
    }
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void conn_fail(wconn *c, const char *why, const char *detail)
{
    worker *w = c->w;
    if (c->closing)
        return;
    report_error(w, why, detail);
    if (c->setup_done)
        w->rep.c.closed_by_peer++;
    conn_close(c);
    worker_pump(w);
}

/* ---- sending ---- */

static int send_msg(wconn *c, uint8_t type, const uint8_t *data, size_t len)
{
    rtmp_msg m;
    memset(&m, 0, sizeof m);
    m.type = type;
    m.stream_id = 0;
    m.timestamp = 0;
    m.csid = RTMP_CSID_COMMAND;
    m.data = data;
    m.len = len;
    int rc = rtmp_conn_send(c->rc, &m);
    mark_dirty(c);
    return rc;
}

static bool is_ws(const wconn *c) { return c->w->o->transport == BENCH_TR_WS; }

/* ws: one message (text, pong or close) as one masked frame.  The key comes from a
 * cheap generator: it only has to vary (RFC 6455 10.3 asks browsers for
 * unpredictable keys to protect proxies; there is none on loopback). */
static int ws_send(wconn *c, uint8_t opcode, const void *p, size_t n)
{
    worker *w = c->w;
    uint64_t x = w->mask_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    w->mask_state = x;
    uint8_t mask[4] = {(uint8_t)x, (uint8_t)(x >> 8), (uint8_t)(x >> 16), (uint8_t)(x >> 24)};
    sh_buf_reset(&w->frame);
    int rc = bench_ws_put_frame(&w->frame, opcode, p, n, mask);
    if (rc == 0)
        rc = sh_outq_push_copy(&c->outq, w->frame.data, w->frame.len);
    mark_dirty(c);
    return rc;
}

/* ws: the so message with one event (use, or a change of one key). */
static int ws_send_so(wconn *c, uint8_t type, const char *key, amf_value *val)
{
    sh_buf *b = &c->w->scratch;
    sh_buf_reset(b);
    so_kv kv;
    memset(&kv, 0, sizeof kv);
    so_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = type;
    if (key) {
        kv.key = (char *)key;
        kv.key_len = strlen(key);
        kv.value = val;
        ev.kv = &kv;
        ev.nkv = 1;
    }
    so_msg m;
    memset(&m, 0, sizeof m);
    m.name = c->so_name;
    m.name_len = strlen(c->so_name);
    m.version = c->so_version;
    m.persistent = c->persistent;
    m.events = &ev;
    m.nevents = 1;
    int rc = so_json_encode(&m, b);
    return rc ? rc : ws_send(c, WS_OP_TEXT, b->data, b->len);
}

static void send_connect(wconn *c)
{
    const bench_opts *o = c->w->o;
    if (is_ws(c)) {
        /* the app comes from the request path (sohub: /ws/APP/INSTANCE) */
        char msg[128];
        int n;
        if (o->scenario == BENCH_CHAT)
            n = snprintf(msg, sizeof msg, "{\"op\":\"connect\",\"id\":1,\"user\":\"bench_user%u\"}",
                         c->gidx);
        else
            n = snprintf(msg, sizeof msg, "{\"op\":\"connect\",\"id\":1}");
        c->connect_sent = true;
        c->state = ST_CONNECTING;
        if (ws_send(c, WS_OP_TEXT, msg, (size_t)n) < 0)
            conn_fail(c, "cannot send connect%s", NULL);
        return;
    }
    /* persist with -r R: writer i in instance "APP-(i mod R)", so its
     * objects are in one of R rooms */
    char app[600];
    if (o->scenario == BENCH_PERSIST && o->rooms > 1)
        snprintf(app, sizeof app, "%s-%u", o->app, c->gidx % o->rooms);
    else
        snprintf(app, sizeof app, "%s", o->app);
    char tc[1024];
    snprintf(tc, sizeof tc, "rtmp://%s:%d/%s", o->host, o->port, app);
    amf_value *obj = amf_object_new(NULL);
    amf_object_set_cstr(obj, "app", amf_string_cstr(app));
    amf_object_set_cstr(obj, "flashVer", amf_string_cstr("LNX 9,0,124,2"));
    amf_object_set_cstr(obj, "tcUrl", amf_string_cstr(tc));
    amf_object_set_cstr(obj, "fpad", amf_bool(false));
    amf_object_set_cstr(obj, "capabilities", amf_number(15));
    amf_object_set_cstr(obj, "audioCodecs", amf_number(3191));
    amf_object_set_cstr(obj, "videoCodecs", amf_number(252));
    amf_object_set_cstr(obj, "videoFunction", amf_number(1));
    amf_object_set_cstr(obj, "objectEncoding", amf_number(0));
    amf_value *args[1];
    size_t nargs = 0;
    if (o->scenario == BENCH_CHAT) {
        char user[32];
        snprintf(user, sizeof user, "bench_user%u", c->gidx);
        args[nargs++] = amf_string_cstr(user);
    }
    int rc = rtmp_conn_send_cmd(c->rc, 0, false, "connect", 1, obj, args, nargs);
    amf_unref(obj);
    for (size_t i = 0; i < nargs; i++)
        amf_unref(args[i]);
    c->connect_sent = true;
    c->state = ST_CONNECTING;
    mark_dirty(c);
    if (rc < 0)
        conn_fail(c, "cannot encode connect: %s", sh_strerror(rc));
}

static void send_use(wconn *c)
{
    sh_buf *b = &c->w->scratch;
    sh_buf_reset(b);
    if (is_ws(c)) {
        if (ws_send_so(c, SO_EV_USE, NULL, NULL) < 0) {
            conn_fail(c, "cannot send use%s", NULL);
            return;
        }
        c->state = ST_USING;
        return;
    }
    if (so_wire_client_use(b, SO_MSG_AMF0, c->so_name, c->so_version, c->persistent) < 0 ||
        send_msg(c, RTMP_MSG_SO_AMF0, b->data, b->len) < 0) {
        conn_fail(c, "cannot send Use%s", NULL);
        return;
    }
    c->state = ST_USING;
}

static void note_send_time(wconn *c, uint64_t t)
{
    uint32_t cap = c->w->o->window;
    if (!c->send_times || c->st_count == cap)
        return;
    c->send_times[(c->st_head + c->st_count) % cap] = t;
    c->st_count++;
}

static void note_ack(wconn *c)
{
    worker *w = c->w;
    uint32_t cap = w->o->window;
    if (c->outstanding > 0)
        c->outstanding--;
    if (c->st_count > 0) {
        uint64_t t = c->send_times[c->st_head];
        c->st_head = (c->st_head + 1) % cap;
        c->st_count--;
        if (w->running && w->o->scenario == BENCH_API)
            bench_hist_add(&w->rep.lat2, w->t_read > t ? w->t_read - t : 0);
        else if (w->running && w->o->scenario != BENCH_FANOUT && w->o->scenario != BENCH_CHAT)
            bench_hist_add(&w->rep.lat, w->t_read > t ? w->t_read - t : 0);
    }
}

/* One POST of the api scenario: the writer's key set to the send time, in
 * a temporary object (what the subscribers use). */
static int api_send(wconn *c, uint64_t now)
{
    const bench_opts *o = c->w->o;
    char body[160], req[1024];
    int bn = snprintf(body, sizeof body, "{\"persistent\":false,\"set\":{\"%s\":%llu}}",
                      c->key, (unsigned long long)now);
    int n = snprintf(req, sizeof req,
                     "POST /api/v1/apps/%s/instances/%s/objects/%s HTTP/1.1\r\n"
                     "Host: %s:%d\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                     o->room_app, o->room_inst, c->so_name, o->api_host, o->api_port,
                     o->api_key, bn, body);
    if (bn < 0 || (size_t)bn >= sizeof body || n < 0 || (size_t)n >= sizeof req)
        return SH_EINVAL;
    int rc = sh_outq_push_copy(&c->outq, req, (size_t)n);
    mark_dirty(c);
    return rc;
}

static void send_one(wconn *c)
{
    worker *w = c->w;
    uint64_t now = bench_now_us();
    int rc;
    if (c->http) {
        rc = api_send(c, now);
    } else if (w->o->scenario == BENCH_CHAT) {
        char to[32], text[48];
        uint32_t users = w->o->users;
        snprintf(to, sizeof to, "bench_user%u", (c->gidx + 1) % users);
        snprintf(text, sizeof text, "ts:%llu", (unsigned long long)now);
        c->txid += 1;
        if (is_ws(c)) {
            char msg[192];
            int n = snprintf(msg, sizeof msg,
                             "{\"op\":\"call\",\"id\":%.0f,\"method\":\"chat.sendPrivate\","
                             "\"args\":[\"%s\",\"%s\"]}", c->txid, to, text);
            rc = ws_send(c, WS_OP_TEXT, msg, (size_t)n);
            goto sent;
        }
        amf_value *args[2] = { amf_string_cstr(to), amf_string_cstr(text) };
        rc = rtmp_conn_send_cmd(c->rc, 0, false, "chat.sendPrivate", c->txid, NULL, args, 2);
        amf_unref(args[0]);
        amf_unref(args[1]);
        mark_dirty(c);
    } else if (is_ws(c)) {
        /* the same change as the RTMP path: the key set to the send time */
        amf_value *val = amf_number((double)now);
        rc = val ? ws_send_so(c, SO_EV_CHANGE, c->key, val) : SH_ENOMEM;
        amf_unref(val);
    } else {
        sh_buf *b = &w->scratch;
        sh_buf_reset(b);
        const char *keys[1] = { c->key };
        amf_value *vals[1] = { amf_number((double)now) };
        rc = vals[0] ? so_wire_client_request_change(b, SO_MSG_AMF0, c->so_name,
                                                     c->so_version, c->persistent,
                                                     1, keys, vals)
                     : SH_ENOMEM;
        amf_unref(vals[0]);
        if (rc == 0)
            rc = send_msg(c, RTMP_MSG_SO_AMF0, b->data, b->len);
    }
sent:
    if (rc < 0) {
        conn_fail(c, "cannot send: %s", sh_strerror(rc));
        return;
    }
    c->outstanding++;
    c->sent_total++;
    note_send_time(c, now);
    if (w->running)
        w->rep.c.sent++;
}

/* Flat out: keep `window` changes outstanding. */
static void writer_fill(wconn *c)
{
    worker *w = c->w;
    if (!w->running || c->closing || c->stopped || w->o->rate > 0)
        return;
    while (c->outstanding < w->o->window && !c->closing)
        send_one(c);
}

/* Rate mode: catch up to rate * elapsed, never beyond the window. */
static void writer_tick(wconn *c, uint64_t now)
{
    worker *w = c->w;
    if (!w->running || c->closing || c->stopped)
        return;
    uint64_t due = (uint64_t)(w->o->rate * (double)(now - w->t_go) / 1e6) + 1;
    while (c->sent_total < due && c->outstanding < w->o->window && !c->closing)
        send_one(c);
}

/* ---- receiving ---- */

static bool key_is(const bench_so_event *ev, const char *key)
{
    size_t n = strlen(key);
    return ev->key_len == n && memcmp(ev->key, key, n) == 0;
}

static void on_so_event(void *ud, uint32_t version, const bench_so_event *ev)
{
    wconn *c = ud;
    worker *w = c->w;
    c->so_version = version;
    switch (ev->type) {
    case BENCH_SO_USE_SUCCESS:
        if (c->state == ST_USING) {
            c->state = ST_READY;
            w->rep.c.subscribed++;
            setup_finish(c, true);
        }
        break;
    case BENCH_SO_CHANGE:
        if (c->role == ROLE_WRITER && key_is(ev, c->key)) {
            /* our own key coming back: the server overrode our change */
            if (c->outstanding > 0) {
                if (w->running)
                    w->rep.c.rejected++;
                note_ack(c);
                writer_fill(c);
            }
        } else if (ev->has_number && w->running) {
            w->rep.c.delivered++;
            uint64_t now = w->t_read; /* every message of one read arrived together */
            uint64_t sent = (uint64_t)ev->number;
            bench_hist_add(&w->rep.lat, now > sent ? now - sent : 0);
        }
        break;
    case BENCH_SO_SUCCESS:
        if (c->role == ROLE_WRITER && c->outstanding > 0) {
            if (w->running)
                w->rep.c.acked++;
            note_ack(c);
            writer_fill(c);
        }
        break;
    case BENCH_SO_STATUS: {
        char code[64];
        size_t n = ev->key_len < sizeof code - 1 ? ev->key_len : sizeof code - 1;
        memcpy(code, ev->key ? ev->key : "", n);
        code[n] = 0;
        for (size_t i = 0; i < n; i++)
            if (code[i] < 0x20 || code[i] > 0x7e)
                code[i] = '?';
        w->rep.c.so_status++;
        report_error(w, "shared object Status: %s", code);
        if (c->state == ST_USING)
            conn_fail(c, "Use refused: %s", code);
        break;
    }
    default:
        break;
    }
}

/* Best-effort text of an _error's info object, for the report. */
static const char *error_text(const rtmp_cmd *cmd, char *out, size_t outsz)
{
    snprintf(out, outsz, "(no description)");
    for (size_t i = 0; i < cmd->nargs; i++) {
        const amf_value *v = cmd->args[i];
        const char *s = NULL;
        size_t n = 0;
        const amf_value *code = amf_object_get(v, "code");
        const amf_value *desc = amf_object_get(v, "description");
        if (desc)
            s = amf_as_string(desc, &n);
        if (!s && code)
            s = amf_as_string(code, &n);
        if (!s)
            s = amf_as_string(v, &n);
        if (s) {
            size_t k = n < outsz - 1 ? n : outsz - 1;
            memcpy(out, s, k);
            out[k] = 0;
            for (size_t j = 0; j < k; j++)
                if (out[j] < 0x20 || out[j] > 0x7e)
                    out[j] = '?';
            break;
        }
    }
    return out;
}

static void on_connected(wconn *c)
{
    worker *w = c->w;
    w->rep.c.connected++;
    bench_hist_add(&w->rep.connect_lat, bench_now_us() - c->t_start);
    c->state = ST_READY;
    if (w->o->scenario == BENCH_FANOUT || w->o->scenario == BENCH_PERSIST ||
        w->o->scenario == BENCH_API)
        send_use(c);
    else
        setup_finish(c, true);
}

static const uint8_t *find_bytes(const uint8_t *p, size_t n, const void *pat, size_t k)
{
    return n >= k ? memmem(p, n, pat, k) : NULL;
}

static double amf0_f64(const uint8_t *p)
{
    uint64_t u = (uint64_t)sh_get_u32be(p) << 32 | sh_get_u32be(p + 4);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void chat_answered(wconn *c)
{
    worker *w = c->w;
    if (w->running)
        w->rep.c.acked++;
    note_ack(c);
    writer_fill(c);
}

static void chat_received(wconn *c, double id, uint64_t sent)
{
    worker *w = c->w;
    if (id > c->chat_seen)
        c->chat_seen = id;
    if (w->running) {
        w->rep.c.delivered++;
        bench_hist_add(&w->rep.lat, w->t_read > sent ? w->t_read - sent : 0);
    }
}

/* The chat scenario's two hot messages read in place, without building
 * AMF values (the load generator shares the cores with the server): a
 * _result to chat.sendPrivate (AMF0 name, then the txid), and
 * chat.onPrivate, whose object carries id (number) and text ("ts:<us>").
 * Returns false for anything else, which takes the full decoder. */
static bool on_command_fast(wconn *c, const rtmp_msg *m)
{
    static const uint8_t result[] = {2, 0, 7, '_', 'r', 'e', 's', 'u', 'l', 't', 0};
    static const uint8_t onpriv[] = {2, 0, 14, 'c', 'h', 'a', 't', '.', 'o', 'n',
                                     'P', 'r', 'i', 'v', 'a', 't', 'e'};
    static const uint8_t id_key[] = {0, 2, 'i', 'd', 0};
    static const uint8_t text_key[] = {0, 4, 't', 'e', 'x', 't', 2};
    if (c->w->o->scenario != BENCH_CHAT || m->type != RTMP_MSG_COMMAND_AMF0)
        return false;
    const uint8_t *p = m->data;
    size_t n = m->len;
    if (n >= sizeof result + 8 && memcmp(p, result, sizeof result) == 0) {
        double txid = amf0_f64(p + sizeof result);
        if (!(txid > 1 && txid < CHAT_ACK_TXID) || c->state != ST_READY)
            return false;
        chat_answered(c);
        return true;
    }
    if (n < sizeof onpriv || memcmp(p, onpriv, sizeof onpriv) != 0)
        return false;
    const uint8_t *end = p + n;
    const uint8_t *k = find_bytes(p, n, id_key, sizeof id_key);
    const uint8_t *t = find_bytes(p, n, text_key, sizeof text_key);
    if (!k || !t || (size_t)(end - k) < sizeof id_key + 8 || (size_t)(end - t) < sizeof text_key + 2)
        return false;
    const uint8_t *s = t + sizeof text_key + 2;
    size_t sl = sh_get_u16be(t + sizeof text_key);
    if ((size_t)(end - s) < sl || sl <= 3 || sl >= 40 || memcmp(s, "ts:", 3) != 0)
        return false;
    uint64_t sent = 0;
    for (size_t i = 3; i < sl; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        sent = sent * 10 + (uint64_t)(s[i] - '0');
    }
    chat_received(c, amf0_f64(k + sizeof id_key), sent);
    return true;
}

static void on_command(wconn *c, const rtmp_msg *m)
{
    if (on_command_fast(c, m))
        return;
    worker *w = c->w;
    rtmp_cmd cmd;
    sh_error err;
    memset(&cmd, 0, sizeof cmd);
    memset(&err, 0, sizeof err);
    int rc = rtmp_cmd_decode(m, &amf_default_limits, &cmd, &err);
    if (rc < 0) {
        conn_fail(c, "bad command from server: %s", err.what ? err.what : sh_strerror(rc));
        return;
    }
    char text[128];
    if (strcmp(cmd.name, "_result") == 0 || strcmp(cmd.name, "_error") == 0) {
        bool ok = cmd.name[1] == 'r';
        if (cmd.txid == 1 && c->state == ST_CONNECTING) {
            if (ok) {
                on_connected(c);
            } else {
                w->rep.c.server_errors++;
                conn_fail(c, "connect refused: %s", error_text(&cmd, text, sizeof text));
            }
        } else if (w->o->scenario == BENCH_CHAT && cmd.txid >= CHAT_ACK_TXID) {
            if (!ok)
                report_error(w, "server answered _error to chat.ack: %s",
                             error_text(&cmd, text, sizeof text));
        } else if (w->o->scenario == BENCH_CHAT && cmd.txid > 1) {
            if (ok) {
                chat_answered(c);
            } else {
                w->rep.c.server_errors++;
                c->stopped = true;
                report_error(w, "server answered _error to chat.sendPrivate: %s",
                             error_text(&cmd, text, sizeof text));
                note_ack(c);
            }
        }
    } else if (strcmp(cmd.name, "chat.onPrivate") == 0) {
        /* chat.onPrivate({id, from, to, text, ts}); a bare text argument
         * is accepted too */
        for (size_t i = 0; i < cmd.nargs; i++) {
            const amf_value *a = cmd.args[i];
            const amf_value *t = amf_object_get(a, "text");
            const amf_value *id = amf_object_get(a, "id");
            double idv = id ? amf_as_number(id) : 0;
            if (idv > c->chat_seen)
                c->chat_seen = idv;
            size_t n;
            const char *s = amf_as_string(t ? t : a, &n);
            if (s && n > 3 && n < 40 && memcmp(s, "ts:", 3) == 0) {
                char num[40];
                memcpy(num, s + 3, n - 3);
                num[n - 3] = 0;
                chat_received(c, idv, strtoull(num, NULL, 10));
                break;
            }
        }
    }
    rtmp_cmd_cleanup(&cmd);
}

static void on_message(wconn *c, const rtmp_msg *m)
{
    switch (m->type) {
    case RTMP_MSG_COMMAND_AMF0:
    case RTMP_MSG_COMMAND_AMF3:
        on_command(c, m);
        break;
    case RTMP_MSG_SO_AMF0:
    case RTMP_MSG_SO_AMF3: {
        const char *name;
        size_t name_len;
        int rc = bench_so_decode(m->data, m->len, m->type == RTMP_MSG_SO_AMF3,
                                 &name, &name_len, on_so_event, c);
        if (rc < 0)
            conn_fail(c, "bad shared object message: %s", sh_strerror(rc));
        break;
    }
    default:
        break; /* pings are answered inside rtmp_conn; media is ignored */
    }
}

/* Content-Length of the header block h[0..n), -1 when absent or bad. */
static long api_content_length(const char *h, size_t n)
{
    static const char name[] = "\r\ncontent-length:";
    size_t k = sizeof name - 1;
    for (size_t i = 0; i + k <= n; i++) {
        if (strncasecmp(h + i, name, k) != 0)
            continue;
        long v = 0;
        size_t j = i + k;
        while (j < n && h[j] == ' ')
            j++;
        if (j >= n || h[j] < '0' || h[j] > '9')
            return -1;
        while (j < n && h[j] >= '0' && h[j] <= '9' && v < (1L << 30))
            v = v * 10 + (h[j++] - '0');
        return v;
    }
    return -1;
}

/* The answers in bytes just read: each complete one is one acknowledged
 * write (200) or an error; the writer then sends its next. */
static void api_read(wconn *c, const uint8_t *p, size_t n)
{
    worker *w = c->w;
    if (sh_buf_append(&c->hin, p, n) < 0) {
        conn_fail(c, "api: an answer larger than %s", "1 MiB");
        return;
    }
    size_t off = 0;
    while (!c->closing) {
        const char *s = (const char *)c->hin.data + off;
        size_t left = c->hin.len - off;
        const char *eoh = left >= 4 ? memmem(s, left, "\r\n\r\n", 4) : NULL;
        if (!eoh)
            break;
        size_t hl = (size_t)(eoh - s) + 4;
        long cl = api_content_length(s, hl);
        if (cl < 0 || left < 12 || memcmp(s, "HTTP/1.1 ", 9) != 0) {
            conn_fail(c, "api: a malformed answer%s", "");
            return;
        }
        if (left < hl + (size_t)cl)
            break;
        int status = atoi(s + 9);
        if (status == 200) {
            if (w->running)
                w->rep.c.acked++;
        } else {
            char text[96];
            size_t tl = (size_t)cl < sizeof text - 1 ? (size_t)cl : sizeof text - 1;
            memcpy(text, s + hl, tl);
            text[tl] = 0;
            for (size_t i = 0; i < tl; i++)
                if (text[i] < 0x20 || text[i] > 0x7e)
                    text[i] = '?';
            w->rep.c.server_errors++;
            if (!w->rep.first_error[0])
                snprintf(w->rep.first_error, sizeof w->rep.first_error, "api: HTTP %d %s",
                         status, text);
        }
        off += hl + (size_t)cl;
        note_ack(c);
    }
    if (off) {
        memmove(c->hin.data, c->hin.data + off, c->hin.len - off);
        c->hin.len -= off;
    }
    writer_fill(c);
}

/* ---- receiving over WebSocket ---- */

static void printable(char *s)
{
    for (; *s; s++)
        if (*s < 0x20 || *s > 0x7e)
            *s = '?';
}

/* Text of a result's value for the report: its description or code. */
static const char *json_error_text(const cJSON *v, char *out, size_t outsz)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(v, "description");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(v, "code");
    const char *s = cJSON_IsString(d) ? d->valuestring
                    : cJSON_IsString(k) ? k->valuestring
                    : cJSON_IsString(v) ? v->valuestring : "(no description)";
    snprintf(out, outsz, "%s", s);
    printable(out);
    return out;
}

/* The rare messages (connect's result, chat calls and results) through
 * cJSON; the shared-object messages never come here. */
static void ws_on_json(wconn *c, const char *text, size_t n)
{
    worker *w = c->w;
    cJSON *j = cJSON_ParseWithLength(text, n);
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(j, "op");
    if (!j || !cJSON_IsString(op)) {
        cJSON_Delete(j);
        conn_fail(c, "bad JSON message from the server%s", NULL);
        return;
    }
    char msg[128];
    const cJSON *idj = cJSON_GetObjectItemCaseSensitive(j, "id");
    double id = cJSON_IsNumber(idj) ? idj->valuedouble : 0;
    if (strcmp(op->valuestring, "result") == 0) {
        bool ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "ok"));
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "value");
        if (id == 1 && c->state == ST_CONNECTING) {
            if (ok) {
                on_connected(c);
            } else {
                w->rep.c.server_errors++;
                conn_fail(c, "connect refused: %s", json_error_text(v, msg, sizeof msg));
            }
        } else if (w->o->scenario == BENCH_CHAT && id >= CHAT_ACK_TXID) {
            if (!ok)
                report_error(w, "server answered an error to chat.ack: %s",
                             json_error_text(v, msg, sizeof msg));
        } else if (w->o->scenario == BENCH_CHAT && id > 1) {
            if (ok) {
                chat_answered(c);
            } else {
                w->rep.c.server_errors++;
                c->stopped = true;
                report_error(w, "server answered an error to chat.sendPrivate: %s",
                             json_error_text(v, msg, sizeof msg));
                note_ack(c);
            }
        }
    } else if (strcmp(op->valuestring, "call") == 0) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "method");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(j, "args");
        if (cJSON_IsString(m) && strcmp(m->valuestring, "chat.onPrivate") == 0) {
            const cJSON *a;
            cJSON_ArrayForEach(a, args) {
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(a, "text");
                const cJSON *mid = cJSON_GetObjectItemCaseSensitive(a, "id");
                double idv = cJSON_IsNumber(mid) ? mid->valuedouble : 0;
                if (idv > c->chat_seen)
                    c->chat_seen = idv;
                const char *s = cJSON_IsString(t) ? t->valuestring
                                : cJSON_IsString(a) ? a->valuestring : NULL;
                if (s && strncmp(s, "ts:", 3) == 0) {
                    chat_received(c, idv, strtoull(s + 3, NULL, 10));
                    break;
                }
            }
        }
    }
    cJSON_Delete(j);
}

static bool ws_on_msg(void *ud, uint8_t opcode, const uint8_t *p, size_t n)
{
    wconn *c = ud;
    switch (opcode) {
    case WS_OP_TEXT: {
        const char *name;
        size_t name_len;
        int rc = bench_ws_so_decode((const char *)p, n, &name, &name_len, on_so_event, c);
        if (rc == 1)
            ws_on_json(c, (const char *)p, n);
        else if (rc < 0)
            conn_fail(c, "bad so message from the server%s", NULL);
        break;
    }
    case WS_OP_PING:
        if (ws_send(c, WS_OP_PONG, p, n) < 0)
            conn_fail(c, "cannot send a pong%s", NULL);
        break;
    case WS_OP_CLOSE: {
        char why[160];
        unsigned code = n >= 2 ? (unsigned)p[0] << 8 | p[1] : 0;
        size_t k = n > 2 ? n - 2 : 0;
        if (k > 100)
            k = 100;
        snprintf(why, sizeof why, "%u %.*s", code, (int)k, n > 2 ? (const char *)p + 2 : "");
        printable(why);
        /* answer the close, then drop the connection */
        ws_send(c, WS_OP_CLOSE, p, n >= 2 ? 2 : 0);
        conn_flush(c);
        conn_fail(c, c->setup_done ? "server closed the WebSocket: %s"
                                   : "server closed the WebSocket during setup: %s", why);
        break;
    }
    case WS_OP_PONG:
        break;
    default:
        conn_fail(c, "binary message from the server%s", NULL);
        break;
    }
    return !c->closing;
}

/* Bytes from the server: the upgrade answer first, then frames. */
static void ws_on_read(wconn *c, const uint8_t *p, size_t n)
{
    wsconn *ws = c->ws;
    if (!ws->upgraded) {
        /* the answer is small and comes once: always gathered in hs */
        if (sh_buf_append(&ws->hs, p, n)) {
            conn_fail(c, "upgrade answer too long%s", NULL);
            return;
        }
        const uint8_t *b = ws->hs.data;
        size_t bn = ws->hs.len;
        char why[128];
        bool deflate;
        int hl = bench_ws_response(b, bn, ws->key, c->w->o->ws_deflate, &deflate, why,
                                   sizeof why);
        if (hl == 0)
            return;
        if (hl < 0) {
            conn_fail(c, "%s", why);
            return;
        }
        ws->upgraded = true;
        send_connect(c);
        if (c->closing)
            return;
        /* what came after the answer is frames already */
        size_t rest = bn - (size_t)hl;
        int rc = 0;
        const char *fwhy = NULL;
        if (rest > 0) {
            /* the reader copies what it keeps, so hs can go afterwards */
            rc = bench_ws_rd_feed(&ws->rd, b + hl, rest, ws_on_msg, c, &fwhy);
        }
        sh_buf_cleanup(&ws->hs);
        if (rc < 0)
            conn_fail(c, "bad frame from the server: %s", fwhy);
        return;
    }
    const char *why = NULL;
    int rc = bench_ws_rd_feed(&ws->rd, p, n, ws_on_msg, c, &why);
    if (rc < 0)
        conn_fail(c, "bad frame from the server: %s", why);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    wconn *c = h->data;
    worker *w = c->w;
    /* one read buffer for the whole loop: rtmp_conn_feed consumes every
     * byte it is given, so the buffer is free again after each read */
    if (w->rbuf_busy) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    w->rbuf_busy = true;
    buf->base = (char *)w->rbuf;
    buf->len = BENCH_READ_BUF;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    wconn *c = s->data;
    worker *w = c->w;
    if (buf->base == (char *)w->rbuf)
        w->rbuf_busy = false;
    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_ENOBUFS)
            return;
        conn_fail(c, c->setup_done ? "server closed the connection: %s"
                                   : "server closed the connection during setup: %s",
                  uv_strerror((int)nread));
        return;
    }
    w->rep.c.bytes_in += (uint64_t)nread;
    w->t_read = bench_now_us();
    if (c->http) {
        api_read(c, (const uint8_t *)buf->base, (size_t)nread);
        return;
    }
    const uint8_t *p = (const uint8_t *)buf->base;
    size_t left = (size_t)nread;
    if (c->ws) {
        ws_on_read(c, p, left);
        if (!c->closing && c->outq.bytes > 0)
            mark_dirty(c);
        return;
    }
    while (!c->closing) {
        size_t used = 0;
        rtmp_msg m;
        sh_error err;
        memset(&err, 0, sizeof err);
        int rc = rtmp_conn_feed(c->rc, p, left, &used, &m, &err);
        if (used > left)
            used = left;
        p += used;
        left -= used;
        if (rc < 0) {
            conn_fail(c, "protocol error: %s", err.what ? err.what : sh_strerror(rc));
            return;
        }
        if (!c->connect_sent && rtmp_conn_handshake_done(c->rc))
            send_connect(c);
        if (rc == 1)
            on_message(c, &m);
        else
            break;
    }
    if (!c->closing && c->outq.bytes > 0)
        mark_dirty(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    wconn *c = req->data;
    worker *w = c->w;
    if (c->closing)
        return;
    if (status < 0) {
        conn_fail(c, "TCP connect failed: %s", uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (c->http) {
        sh_buf_init(&c->hin, 1 << 20);
        c->state = ST_READY;
        w->rep.c.connected++;
        bench_hist_add(&w->rep.connect_lat, bench_now_us() - c->t_start);
        int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        if (r < 0)
            conn_fail(c, "read start failed: %s", uv_strerror(r));
        else
            setup_finish(c, true);
        return;
    }
    if (is_ws(c)) {
        c->ws = calloc(1, sizeof *c->ws);
        if (!c->ws) {
            conn_fail(c, "out of memory%s", NULL);
            return;
        }
        bench_ws_rd_init(&c->ws->rd, BENCH_WS_MAX_MSG, w->zip);
        sh_buf_init(&c->ws->hs, BENCH_WS_MAX_RESPONSE);
        /* the key only has to be fresh per connection: the worker's
         * random bytes mixed with the connection index */
        uint8_t k[16];
        for (int i = 0; i < 16; i++)
            k[i] = (uint8_t)(w->random[i] ^ (c->gidx >> (8 * (i & 3))));
        bench_ws_make_key(k, c->ws->key);
        sh_buf req;
        sh_buf_init(&req, 4096);
        int rc = bench_ws_request(&req, w->o->host, w->o->port, w->o->path, c->ws->key,
                                  w->o->ws_deflate);
        if (rc == 0)
            rc = sh_outq_push_copy(&c->outq, req.data, req.len);
        sh_buf_cleanup(&req);
        if (rc < 0) {
            conn_fail(c, "cannot queue the upgrade request%s", NULL);
            return;
        }
        c->state = ST_HANDSHAKE;
        mark_dirty(c);
        int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        if (r < 0)
            conn_fail(c, "read start failed: %s", uv_strerror(r));
        return;
    }
    rtmp_conn_config cfg;
    rtmp_conn_config_default(&cfg, RTMP_ROLE_CLIENT);
    cfg.client_digest = w->o->digest;
    c->rc = rtmp_conn_new(&cfg, &c->outq, w->random, (uint32_t)(bench_now_us() / 1000));
    if (!c->rc) {
        conn_fail(c, "out of memory%s", NULL);
        return;
    }
    c->state = ST_HANDSHAKE;
    mark_dirty(c);
    int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (r < 0)
        conn_fail(c, "read start failed: %s", uv_strerror(r));
}

static void conn_plan(wconn *c)
{
    const bench_opts *o = c->w->o;
    c->role = ROLE_PLAIN;
    switch (o->scenario) {
    case BENCH_FANOUT: {
        uint32_t per = o->subs + o->writers;
        uint32_t room = c->gidx / per, slot = c->gidx % per;
        snprintf(c->so_name, sizeof c->so_name, "%s_room%u", o->so_prefix, room);
        c->persistent = o->persistent;
        if (slot < o->writers) {
            c->role = ROLE_WRITER;
            snprintf(c->key, sizeof c->key, "w%u", slot);
        } else {
            c->role = ROLE_SUB;
            if (o->nsub_ports)
                c->port = o->sub_ports[(slot - o->writers) % o->nsub_ports];
        }
        break;
    }
    case BENCH_API:
        snprintf(c->so_name, sizeof c->so_name, "%s_api", o->so_prefix);
        if (c->gidx < o->writers) {
            c->role = ROLE_WRITER;
            c->http = true;
            snprintf(c->key, sizeof c->key, "w%u", c->gidx);
        } else {
            c->role = ROLE_SUB;
        }
        break;
    case BENCH_PERSIST:
        snprintf(c->so_name, sizeof c->so_name, "%s_persist%u", o->so_prefix, c->gidx);
        snprintf(c->key, sizeof c->key, "k");
        c->persistent = true;
        c->role = ROLE_WRITER;
        break;
    case BENCH_CHAT:
        c->role = ROLE_WRITER;
        if (o->nsub_ports) /* users spread over the nodes */
            c->port = o->sub_ports[c->gidx % o->nsub_ports];
        break;
    default:
        break;
    }
}

/* api with two or more processes: worker 0 has every HTTP writer, the
 * others share the subscribers, so the writers' pace is not tied to the
 * loop that reads a thousand subscriber sockets. */
static bool api_split(const bench_opts *o)
{
    return o->scenario == BENCH_API && o->procs >= 2 && o->subs >= o->procs - 1;
}

static int conn_start(worker *w)
{
    const bench_opts *o = w->o;
    uint32_t local = w->next++;
    wconn *c = calloc(1, sizeof *c);
    if (!c)
        return SH_ENOMEM;
    c->w = w;
    c->local = local;
    c->gidx = api_split(o) ? (w->id == 0 ? local : o->writers + local * (o->procs - 1) + w->id - 1)
                           : local * o->procs + w->id;
    c->t_start = bench_now_us();
    c->txid = 1;
    sh_outq_init(&c->outq);
    conn_plan(c);
    if (c->role == ROLE_WRITER) {
        c->send_times = calloc(o->window, sizeof *c->send_times);
        c->wslot = w->nwriters;
        w->writers[w->nwriters++] = c;
    }
    w->conns[local] = c;
    w->open_conns++;
    w->inflight++;
    w->rep.c.attempted++;
    if (w->rep.t_first == 0)
        w->rep.t_first = c->t_start;
    pend_append(c);
    uv_tcp_init(&w->loop, &c->tcp);
    c->tcp.data = c;
    int r = 0;
    if (o->src_ips > 0) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            r = -errno;
        } else {
            int one = 1;
#ifdef IP_BIND_ADDRESS_NO_PORT
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
            (void)one;
            struct sockaddr_in src;
            memset(&src, 0, sizeof src);
            src.sin_family = AF_INET;
            src.sin_addr.s_addr = htonl(0x7f000001u + c->gidx % o->src_ips);
            if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0 ||
                (r = uv_tcp_open(&c->tcp, fd)) < 0) {
                if (r == 0)
                    r = -errno;
                close(fd);
            }
        }
    }
    if (r == 0) {
        struct sockaddr_in dst = c->http ? w->api_dst : w->dst;
        if (c->port)
            dst.sin_port = htons(c->port);
        c->creq.data = c;
        r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&dst, on_connect);
    }
    if (r < 0) {
        conn_fail(c, "cannot start a connection: %s", uv_strerror(r));
        return r;
    }
    return 0;
}

/* Starts connections while the plan and the pacing allow it; tells the
 * coordinator when the setup phase is over. */
static void worker_pump(worker *w)
{
    const bench_opts *o = w->o;
    if (w->pumping) /* a connection failed inside conn_start: the outer call goes on */
        return;
    w->pumping = true;
    bool may_start = !w->stopped && (o->scenario != BENCH_CONNECT || w->running);
    while (may_start && w->next < w->total && w->inflight < w->conc)
        conn_start(w);
    w->pumping = false;
    if (w->done == w->total && !w->stopped) {
        if (o->scenario == BENCH_CONNECT) {
            if (w->running && !w->final_sent) {
                w->final_sent = true;
                send_report(w, BENCH_REP_FINAL);
            }
        } else if (!w->ready_sent) {
            w->ready_sent = true;
            send_report(w, BENCH_REP_READY);
        }
    }
}

/* ---- control ---- */

static void worker_stop(worker *w)
{
    if (w->stopped)
        return;
    w->running = false;
    w->stopped = true;
    w->rep.t_stop = bench_now_us();
    w->rep.cpu_stop = bench_cpu_us();
    if (!w->final_sent) {
        w->final_sent = true;
        send_report(w, BENCH_REP_FINAL);
    }
    for (uint32_t i = 0; i < w->next; i++)
        if (w->conns[i])
            conn_close(w->conns[i]);
    if (w->open_conns == 0) {
        uv_close((uv_handle_t *)&w->house, NULL);
        uv_close((uv_handle_t *)&w->progress, NULL);
        uv_close((uv_handle_t *)&w->prepare, NULL);
        uv_close((uv_handle_t *)&w->check, NULL);
        uv_close((uv_handle_t *)&w->ctl, NULL);
    }
}

static void worker_go(worker *w)
{
    if (w->running || w->stopped)
        return;
    w->running = true;
    w->t_go = bench_now_us();
    w->rep.cpu_go = bench_cpu_us();
    if (w->o->scenario == BENCH_CONNECT) {
        worker_pump(w);
        return;
    }
    for (uint32_t i = 0; i < w->nwriters; i++) {
        wconn *c = w->writers[i];
        if (c && !c->closing && c->state == ST_READY)
            writer_fill(c);
    }
}

static void on_ctl(uv_poll_t *h, int status, int events)
{
    worker *w = h->data;
    (void)events;
    char cmd[16];
    ssize_t n = status < 0 ? 0 : read(w->ctl_fd, cmd, sizeof cmd);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) { /* coordinator gone */
        worker_stop(w);
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (cmd[i] == 'G')
            worker_go(w);
        else if (cmd[i] == 'S')
            worker_stop(w);
    }
}

/* chat: acknowledge what was received, at most once per timer tick, so
 * the server can drop delivered messages from its store */
static void chat_ack(wconn *c)
{
    if (c->closing || c->state != ST_READY || c->chat_seen <= c->chat_acked)
        return;
    c->ack_txid = c->ack_txid < CHAT_ACK_TXID ? CHAT_ACK_TXID : c->ack_txid + 1;
    if (is_ws(c)) {
        char msg[128];
        int n = snprintf(msg, sizeof msg,
                         "{\"op\":\"call\",\"id\":%.0f,\"method\":\"chat.ack\",\"args\":[%.0f]}",
                         c->ack_txid, c->chat_seen);
        if (ws_send(c, WS_OP_TEXT, msg, (size_t)n) < 0) {
            conn_fail(c, "cannot send chat.ack%s", NULL);
            return;
        }
        c->chat_acked = c->chat_seen;
        return;
    }
    amf_value *arg = amf_number(c->chat_seen);
    int rc = arg ? rtmp_conn_send_cmd(c->rc, 0, false, "chat.ack", c->ack_txid, NULL, &arg, 1)
                 : SH_ENOMEM;
    amf_unref(arg);
    if (rc < 0) {
        conn_fail(c, "cannot send chat.ack: %s", sh_strerror(rc));
        return;
    }
    c->chat_acked = c->chat_seen;
    mark_dirty(c);
}

static void on_house(uv_timer_t *t)
{
    worker *w = t->data;
    uint64_t now = bench_now_us();
    uint64_t limit = (uint64_t)(w->o->timeout * 1e6);
    static const char *const waiting[] = {
        [ST_TCP] = "TCP connect", [ST_HANDSHAKE] = "the RTMP handshake",
        [ST_CONNECTING] = "connect _result", [ST_USING] = "UseSuccess", [ST_READY] = "?",
    };
    static const char *const waiting_ws[] = {
        [ST_TCP] = "TCP connect", [ST_HANDSHAKE] = "the WebSocket upgrade",
        [ST_CONNECTING] = "connect's result", [ST_USING] = "use_success", [ST_READY] = "?",
    };
    const char *const *wt = w->o->transport == BENCH_TR_WS ? waiting_ws : waiting;
    while (w->pend_head && now - w->pend_head->t_start > limit)
        conn_fail(w->pend_head, "setup timed out waiting for %s", wt[w->pend_head->state]);
    if (w->o->scenario == BENCH_CHAT && now - w->last_ack > 100000) {
        w->last_ack = now;
        for (uint32_t i = 0; i < w->nwriters; i++)
            if (w->writers[i])
                chat_ack(w->writers[i]);
    }
    if (w->running && w->o->rate > 0) {
        for (uint32_t i = 0; i < w->nwriters; i++) {
            wconn *c = w->writers[i];
            if (c && c->state == ST_READY)
                writer_tick(c, now);
        }
    }
}

static void on_progress(uv_timer_t *t)
{
    worker *w = t->data;
    if (!w->stopped)
        send_report(w, BENCH_REP_PROGRESS);
}

int bench_worker_main(const bench_opts *o, uint32_t id, int ctl_fd, int rep_fd)
{
    worker *w = calloc(1, sizeof *w);
    if (!w)
        return 1;
    w->o = o;
    w->id = id;
    w->ctl_fd = ctl_fd;
    w->rep_fd = rep_fd;
    bench_hist_init(&w->rep.connect_lat);
    bench_hist_init(&w->rep.lat);
    bench_hist_init(&w->rep.lat2);
    sh_buf_init(&w->scratch, 1 << 20);
    sh_buf_init(&w->frame, 1 << 20);
    w->rbuf = malloc(BENCH_READ_BUF);

    uint32_t n = 0;
    switch (o->scenario) {
    case BENCH_CONNECT:
    case BENCH_IDLE: n = o->connections; break;
    case BENCH_FANOUT: n = o->rooms * (o->subs + o->writers); break;
    case BENCH_API: n = o->subs + o->writers; break;
    case BENCH_PERSIST: n = o->writers; break;
    case BENCH_CHAT: n = o->users; break;
    }
    if (api_split(o))
        w->total = id == 0 ? o->writers : (o->subs - (id - 1) + o->procs - 2) / (o->procs - 1);
    else
        w->total = n > id ? (n - id + o->procs - 1) / o->procs : 0;
    w->conc = (o->concurrency + o->procs - 1) / o->procs;
    if (w->conc == 0)
        w->conc = 1;
    w->conns = calloc(w->total ? w->total : 1, sizeof *w->conns);
    w->writers = calloc(w->total ? w->total : 1, sizeof *w->writers);
    if (!w->rbuf || !w->conns || !w->writers)
        return 1;

    FILE *rnd = fopen("/dev/urandom", "rb");
    if (!rnd || fread(w->random, 1, sizeof w->random, rnd) != sizeof w->random) {
        for (size_t i = 0; i < sizeof w->random; i++)
            w->random[i] = (uint8_t)(i * 131 + id * 7 + o->seed);
    }
    if (rnd)
        fclose(rnd);
    memcpy(&w->mask_state, w->random + 16, sizeof w->mask_state);
    w->mask_state |= 1; /* never 0: xorshift would stay there */
    if (o->transport == BENCH_TR_WS && o->ws_deflate) {
        w->zip = ws_zip_new();
        if (!w->zip)
            return 1;
    }

    w->dst.sin_family = AF_INET;
    w->dst.sin_port = htons((uint16_t)o->port);
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(o->host, NULL, &hints, &ai) != 0 || !ai) {
        fprintf(stderr, "sohub-benchmark: cannot resolve %s\n", o->host);
        return 1;
    }
    w->dst.sin_addr = ((struct sockaddr_in *)ai->ai_addr)->sin_addr;
    freeaddrinfo(ai);
    if (o->scenario == BENCH_API) {
        ai = NULL;
        if (getaddrinfo(o->api_host, NULL, &hints, &ai) != 0 || !ai) {
            fprintf(stderr, "sohub-benchmark: cannot resolve %s\n", o->api_host);
            return 1;
        }
        w->api_dst.sin_family = AF_INET;
        w->api_dst.sin_port = htons((uint16_t)o->api_port);
        w->api_dst.sin_addr = ((struct sockaddr_in *)ai->ai_addr)->sin_addr;
        freeaddrinfo(ai);
    }

    uv_loop_init(&w->loop);
    uv_prepare_init(&w->loop, &w->prepare);
    w->prepare.data = w;
    uv_prepare_start(&w->prepare, on_prepare);
    uv_check_init(&w->loop, &w->check);
    w->check.data = w;
    uv_check_start(&w->check, on_check);
    uv_timer_init(&w->loop, &w->house);
    w->house.data = w;
    uv_timer_start(&w->house, on_house, 1, o->rate > 0 ? 1 : 50);
    uv_timer_init(&w->loop, &w->progress);
    w->progress.data = w;
    uv_timer_start(&w->progress, on_progress, 1000, 1000);
    uv_poll_init(&w->loop, &w->ctl, ctl_fd);
    w->ctl.data = w;
    uv_poll_start(&w->ctl, UV_READABLE, on_ctl);

    if (o->scenario == BENCH_CONNECT) {
        w->ready_sent = true;
        send_report(w, BENCH_REP_READY);
        if (w->total == 0) {
            w->final_sent = true;
            send_report(w, BENCH_REP_FINAL);
        }
    } else {
        worker_pump(w);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    sh_buf_cleanup(&w->scratch);
    sh_buf_cleanup(&w->frame);
    ws_zip_free(w->zip);
    free(w->rbuf);
    free(w->conns);
    free(w->writers);
    free(w);
    return 0;
}
