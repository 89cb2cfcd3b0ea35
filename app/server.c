/* server.c - the libuv side of sohub-server: listen, accept, read, write,
 * timers, caps and shutdown.  Protocol work is done by rtmp_conn (sans-I/O);
 * NetConnection commands by netconn.c.
 *
 * Output: anything that queues bytes for a client marks the connection
 * dirty.  Dirty connections are flushed once per loop turn (uv_check after
 * the I/O phase, uv_prepare before it for timer/write-callback output) with
 * ONE writev per connection carrying up to APP_WRITE_IOV_MAX slices of its
 * sh_outq, made at once with uv_try_write.  Only bytes the socket does not
 * take go out through a uv_write; its slices stay in the queue (holding
 * their sh_rcbuf references) until the write callback consumes them.
 *
 * Closing: app_conn_close() (flush first, bounded by a grace time) and
 * app_conn_abort() (at once) only mark the connection; the teardown runs
 * from the flush pass, never inside another callback's stack, so callers
 * (applications, the SO engine) never see a connection vanish under them.
 * Memory is freed in the uv_close callback.
 */
#include "app_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sh_err.h"
#include "sh_log.h"
#include "sh_mem.h"

/* ---- small helpers ---- */

static uint64_t now_ms(app_server *s) { return uv_now(s->loop); }

static void list_remove_backlog(app_server *s, app_conn *c)
{
    if (!c->in_backlog)
        return;
    for (app_conn **pp = &s->backlog_head; *pp; pp = &(*pp)->backlog_next) {
        if (*pp == c) {
            *pp = c->backlog_next;
            break;
        }
    }
    c->in_backlog = false;
    c->backlog_next = NULL;
}

static void list_remove_dirty(app_server *s, app_conn *c)
{
    if (!c->dirty)
        return;
    for (app_conn **pp = &s->dirty_head; *pp; pp = &(*pp)->dirty_next) {
        if (*pp == c) {
            *pp = c->dirty_next;
            break;
        }
    }
    c->dirty = false;
    c->dirty_next = NULL;
}

void app_conn_mark_dirty(app_conn *c)
{
    if (c->dirty || c->torn)
        return;
    c->dirty = true;
    c->dirty_next = c->srv->dirty_head;
    c->srv->dirty_head = c;
}

/* The reason is allocated only when a connection starts closing, so an
 * open connection carries no room for it. */
static void set_reason(app_conn *c, const char *reason)
{
    if (c->reason)
        return;
    const char *r = reason ? reason : "closed";
    size_t n = strlen(r);
    c->reason = sh_memdup0(r, n < APP_REASON_MAX ? n : APP_REASON_MAX);
}

static const char *reason_of(const app_conn *c) { return c->reason ? c->reason : "closed"; }

void app_conn_abort(app_conn *c, const char *reason)
{
    if (c->torn)
        return;
    set_reason(c, reason);
    if (!c->closing)
        uv_read_stop((uv_stream_t *)&c->tcp);
    c->closing = true;
    c->hard = true;
    app_conn_mark_dirty(c);
}

void app_conn_close(app_conn *c, const char *reason)
{
    if (c->torn || c->closing)
        return;
    set_reason(c, reason);
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->closing = true;
    c->close_deadline = now_ms(c->srv) + APP_CLOSE_GRACE_MS;
    app_conn_mark_dirty(c);
}

/* Output queued: check the cap, schedule the write. */
static int conn_queued(app_conn *c)
{
    if (c->outq.bytes > c->srv->cfg->max_output_bytes) {
        char why[96];
        snprintf(why, sizeof(why), "output queue over max_output_bytes (%zu bytes)",
                 c->outq.bytes);
        app_conn_abort(c, why);
        return SH_ELIMIT;
    }
    if (c->outq.bytes > 0) {
        c->had_output = true;
        app_conn_mark_dirty(c);
    }
    return 0;
}

/* ---- teardown ---- */

static void finish_stop(app_server *s);

static void on_conn_closed(uv_handle_t *h)
{
    app_conn *c = h->data;
    app_server *s = c->srv;
    sh_outq_cleanup(&c->outq);
    rtmp_conn_free(c->rtmp);
    app_netconn_free(c);
    free(c->backlog);
    free(c->reason);
    free(c);
    s->nclosing--;
    if (s->stopping && s->nconns == 0 && s->nclosing == 0)
        finish_stop(s);
}

/* Live connections per source address, so the per-address cap costs
 * O(1) per accept however many connections the server holds.  One node per
 * address (it holds the map's key), freed when its count drops to zero. */
typedef struct app_ip_count {
    size_t n;
    char ip[48];
} app_ip_count;

static size_t count_ip(app_server *s, const char *ip)
{
    app_ip_count *e = sh_map_get(&s->ip_counts, ip, strlen(ip));
    return e ? e->n : 0;
}

static int ip_count_add(app_server *s, const char *ip)
{
    app_ip_count *e = sh_map_get(&s->ip_counts, ip, strlen(ip));
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e)
            return SH_ENOMEM;
        snprintf(e->ip, sizeof(e->ip), "%s", ip);
        if (sh_map_put(&s->ip_counts, e->ip, strlen(e->ip), e) != 0) {
            free(e);
            return SH_ENOMEM;
        }
    }
    e->n++;
    return 0;
}

static void ip_count_del(app_server *s, const char *ip)
{
    app_ip_count *e = sh_map_get(&s->ip_counts, ip, strlen(ip));
    if (e && --e->n == 0) {
        sh_map_del(&s->ip_counts, e->ip, strlen(e->ip));
        free(e);
    }
}

static void conn_teardown(app_conn *c)
{
    app_server *s = c->srv;
    if (c->torn)
        return;
    c->torn = true;
    ip_count_del(s, c->ip);
    list_remove_dirty(s, c);
    list_remove_backlog(s, c);
    if (c->nc_connected) {
        if (s->have_so && s->so.on_disconnect)
            s->so.on_disconnect(s->so.ud, c);
        if (c->app && c->app->ops.on_disconnect)
            c->app->ops.on_disconnect(c->app, c, reason_of(c), c->app->ud);
        for (app_observer_entry *o = s->observers; o; o = o->next)
            if (o->ops.on_disconnect)
                o->ops.on_disconnect(c, o->ud);
    }
    app_netconn_fail_calls(c);
    SH_LOG(SH_LOG_INFO, "conn=%llu disconnect peer=%s app=%s instance=%s reason=\"%s\" "
           "duration_ms=%llu bytes_in=%llu",
           (unsigned long long)c->id, c->peer, c->app_name[0] ? c->app_name : "-",
           c->instance[0] ? c->instance : "-", reason_of(c),
           (unsigned long long)(now_ms(s) - c->t_accept),
           (unsigned long long)(c->rtmp ? rtmp_conn_bytes_in(c->rtmp) : 0));
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    s->nclosing++;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

/* ---- writing ---- */

static void conn_flush(app_conn *c);

/* The queue is empty after a write: tell the SO layer once per burst. */
static void conn_drained(app_conn *c)
{
    if (!c->had_output)
        return;
    c->had_output = false;
    app_server *s = c->srv;
    if (s->have_so && s->so.on_drain && c->nc_connected)
        s->so.on_drain(s->so.ud, c);
}

/* The write request exists only while a uv_write is in flight (the rare
 * path: most flushes are taken whole by uv_try_write), so an idle
 * connection does not carry one.  libuv runs this callback, with
 * UV_ECANCELED if need be, before the handle's close callback. */
static void on_write(uv_write_t *req, int status)
{
    app_conn *c = req->data;
    free(req);
    c->writing = false;
    if (c->torn)
        return; /* the queue is dropped in the close callback */
    if (status < 0) {
        char why[96];
        snprintf(why, sizeof(why), "write error: %s", uv_strerror(status));
        app_conn_abort(c, why);
        return;
    }
    sh_outq_consume(&c->outq, c->write_bytes);
    c->write_bytes = 0;
    if (c->outq.bytes > 0 || c->closing)
        app_conn_mark_dirty(c);
    else
        conn_drained(c);
}

static size_t conn_bufs(app_conn *c, uv_buf_t *bufs, size_t *total)
{
    struct iovec iov[APP_WRITE_IOV_MAX];
    size_t n = sh_outq_iov(&c->outq, iov, APP_WRITE_IOV_MAX);
    *total = 0;
    for (size_t i = 0; i < n; i++) {
        bufs[i] = uv_buf_init(iov[i].iov_base, (unsigned)iov[i].iov_len);
        *total += iov[i].iov_len;
    }
    return n;
}

static void conn_write_failed(app_conn *c, int rc)
{
    char why[96];
    snprintf(why, sizeof(why), "write error: %s", uv_strerror(rc));
    app_conn_abort(c, why);
    conn_teardown(c);
}

/* One writev straight from the loop turn (uv_try_write): no write request,
 * no callback pass, no poll registration while the socket takes it all.
 * Only what the socket refuses goes through uv_write and its callback. */
static void conn_flush(app_conn *c)
{
    if (c->torn)
        return;
    if (c->closing && c->hard) {
        conn_teardown(c);
        return;
    }
    if (c->writing)
        return;
    uv_buf_t bufs[APP_WRITE_IOV_MAX];
    size_t total = 0;
    for (;;) {
        if (c->outq.bytes == 0) {
            if (c->closing)
                conn_teardown(c);
            else
                conn_drained(c);
            return;
        }
        size_t n = conn_bufs(c, bufs, &total);
        int rc = uv_try_write((uv_stream_t *)&c->tcp, bufs, (unsigned)n);
        if (rc == UV_EAGAIN)
            rc = 0;
        if (rc < 0) {
            conn_write_failed(c, rc);
            return;
        }
        sh_outq_consume(&c->outq, (size_t)rc);
        if ((size_t)rc < total)
            break; /* the socket is full: the rest waits for writability */
    }
    size_t n = conn_bufs(c, bufs, &total);
    uv_write_t *req = malloc(sizeof(*req));
    if (!req) {
        conn_write_failed(c, UV_ENOMEM);
        return;
    }
    req->data = c;
    int rc = uv_write(req, (uv_stream_t *)&c->tcp, bufs, (unsigned)n, on_write);
    if (rc < 0) {
        free(req);
        conn_write_failed(c, rc);
        return;
    }
    c->writing = true;
    c->write_bytes = total;
}

static void flush_dirty(app_server *s)
{
    /* Bounded: each connection is popped once per pass; teardown callbacks
     * may mark others dirty, which are then handled in the same pass. */
    while (s->dirty_head) {
        app_conn *c = s->dirty_head;
        s->dirty_head = c->dirty_next;
        c->dirty = false;
        c->dirty_next = NULL;
        conn_flush(c);
    }
}

static void on_prepare(uv_prepare_t *h) { flush_dirty(h->data); }
static void on_check(uv_check_t *h) { flush_dirty(h->data); }

/* ---- reading and dispatch ---- */

static void dispatch_user_control(app_conn *c, const rtmp_msg *m)
{
    if (m->len < 6)
        return;
    uint16_t ev = sh_get_u16be(m->data);
    if (ev != RTMP_UC_PING_RESPONSE)
        return;
    uint32_t ts = sh_get_u32be(m->data + 2);
    if (c->ping_outstanding && ts == c->ping_ts) {
        c->ping_outstanding = false;
        c->rtt_ms = (int64_t)(now_ms(c->srv) - c->t_ping_sent);
        SH_LOG(SH_LOG_DEBUG, "conn=%llu ping rtt_ms=%lld", (unsigned long long)c->id,
               (long long)c->rtt_ms);
    }
}

static void dispatch(app_conn *c, const rtmp_msg *m)
{
    app_server *s = c->srv;
    switch (m->type) {
    case RTMP_MSG_USER_CONTROL:
        dispatch_user_control(c, m);
        break;
    case RTMP_MSG_COMMAND_AMF0:
    case RTMP_MSG_COMMAND_AMF3:
        app_netconn_command(c, m);
        break;
    case RTMP_MSG_SO_AMF0:
    case RTMP_MSG_SO_AMF3:
        if (!c->nc_connected) {
            app_conn_abort(c, "shared-object message before connect");
            break;
        }
        if (s->have_so && s->so.on_message) {
            int rc = s->so.on_message(s->so.ud, c, m);
            if (rc < 0) {
                char why[96];
                snprintf(why, sizeof(why), "shared-object message refused: %s",
                         sh_strerror(rc));
                app_conn_abort(c, why);
            }
        } else {
            SH_LOG(SH_LOG_DEBUG, "conn=%llu shared-object message ignored (engine not enabled)",
                   (unsigned long long)c->id);
        }
        break;
    default:
        /* Audio, video, data and aggregate messages: nothing is published
         * or played yet, so they are dropped. */
        SH_LOG(SH_LOG_DEBUG, "conn=%llu message type %u (%zu bytes) ignored",
               (unsigned long long)c->id, m->type, m->len);
        break;
    }
}

/* Feeds in[0..len) until it is used up, the connection closes, or the
 * per-callback message budget is spent.  Returns bytes consumed. */
static size_t conn_process(app_conn *c, const uint8_t *in, size_t len)
{
    size_t off = 0;
    uint32_t budget = c->srv->cfg->messages_per_read;
    uint32_t handled = 0;
    while (off < len && !c->closing) {
        if (handled >= budget)
            break;
        size_t used = 0;
        rtmp_msg m;
        sh_error err = {0};
        int rc = rtmp_conn_feed(c->rtmp, in + off, len - off, &used, &m, &err);
        off += used;
        if (rc < 0) {
            char why[160];
            snprintf(why, sizeof(why), "%s: %s", rc == SH_ELIMIT ? "limit" : "protocol error",
                     err.what ? err.what : sh_strerror(rc));
            SH_LOG(SH_LOG_DEBUG, "conn=%llu feed error %d at %s", (unsigned long long)c->id,
                   rc, err.where ? err.where : "?");
            app_conn_abort(c, why);
            break;
        }
        if (rc == 0)
            break;
        handled++;
        dispatch(c, &m);
    }
    if (!c->closing)
        conn_queued(c);
    return off;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    app_conn *c = h->data;
    app_server *s = c->srv;
    if (s->slab_busy) {
        *buf = uv_buf_init(NULL, 0); /* cannot happen: reads are serial */
        return;
    }
    s->slab_busy = true;
    *buf = uv_buf_init((char *)s->slab, APP_READ_SLAB);
}

static void on_idle(uv_idle_t *h);

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    app_conn *c = st->data;
    app_server *s = c->srv;
    if (buf->base == (char *)s->slab)
        s->slab_busy = false;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        if (nread == UV_EOF)
            app_conn_abort(c, "peer closed");
        else if (nread == UV_ENOBUFS)
            app_conn_abort(c, "no read buffer");
        else {
            char why[96];
            snprintf(why, sizeof(why), "read error: %s", uv_strerror((int)nread));
            app_conn_abort(c, why);
        }
        return;
    }
    c->t_last_rx = now_ms(s);
    size_t used = conn_process(c, (const uint8_t *)buf->base, (size_t)nread);
    if (used < (size_t)nread && !c->closing) {
        /* Budget spent: keep the rest and stop reading until it is used. */
        size_t rest = (size_t)nread - used;
        c->backlog = malloc(rest);
        if (!c->backlog) {
            app_conn_abort(c, "out of memory");
            return;
        }
        memcpy(c->backlog, buf->base + used, rest);
        c->backlog_len = rest;
        c->backlog_off = 0;
        uv_read_stop(st);
        SH_LOG(SH_LOG_DEBUG, "conn=%llu read budget spent, %zu bytes deferred",
               (unsigned long long)c->id, rest);
        c->in_backlog = true;
        c->backlog_next = s->backlog_head;
        s->backlog_head = c;
        uv_idle_start(&s->idle, on_idle);
    }
}

static void backlog_run(app_server *s)
{
    app_conn *list = s->backlog_head;
    s->backlog_head = NULL;
    while (list) {
        app_conn *c = list;
        list = c->backlog_next;
        c->backlog_next = NULL;
        c->in_backlog = false;
        if (c->closing || c->torn)
            continue;
        size_t used = conn_process(c, c->backlog + c->backlog_off,
                                   c->backlog_len - c->backlog_off);
        c->backlog_off += used;
        if (c->closing)
            continue;
        if (c->backlog_off < c->backlog_len) {
            c->in_backlog = true;
            c->backlog_next = s->backlog_head;
            s->backlog_head = c;
        } else {
            free(c->backlog);
            c->backlog = NULL;
            c->backlog_len = c->backlog_off = 0;
            uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        }
    }
    if (!s->backlog_head)
        uv_idle_stop(&s->idle);
}

static void on_idle(uv_idle_t *h) { backlog_run(h->data); }

/* ---- accept ---- */

static void peer_name(uv_tcp_t *t, char *ip, size_t ipsz, char *peer, size_t peersz)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    snprintf(ip, ipsz, "?");
    snprintf(peer, peersz, "?");
    if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, ipsz);
        snprintf(peer, peersz, "%s:%d", ip, ntohs(a->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, ipsz);
        snprintf(peer, peersz, "[%s]:%d", ip, ntohs(a->sin6_port));
    }
}

/* RTMP_HANDSHAKE_SIZE bytes for S1, taken from a pool refilled by one
 * getrandom (the handshake's random bytes are filler, not key material). */
static const uint8_t *handshake_random(app_server *s)
{
    if (s->rnd_left < RTMP_HANDSHAKE_SIZE) {
        if (uv_random(NULL, NULL, s->rnd_pool, APP_RANDOM_POOL, 0, NULL) != 0)
            memset(s->rnd_pool, 0x5a, APP_RANDOM_POOL);
        s->rnd_left = APP_RANDOM_POOL;
    }
    s->rnd_left -= RTMP_HANDSHAKE_SIZE;
    return s->rnd_pool + s->rnd_left;
}

static void on_reject_closed(uv_handle_t *h) { free(h); }

static void on_connection(uv_stream_t *server, int status)
{
    app_server *s = server->data;
    if (status < 0) {
        SH_LOG(SH_LOG_WARN, "accept error: %s", uv_strerror(status));
        return;
    }
    if (s->stopping)
        return;
    app_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        SH_LOG(SH_LOG_ERROR, "accept: out of memory");
        return;
    }
    uv_tcp_init(s->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_reject_closed);
        return;
    }
    c->id = ++s->next_id;
    peer_name(&c->tcp, c->ip, sizeof(c->ip), c->peer, sizeof(c->peer));
    const char *refuse = NULL;
    if (s->nconns >= s->cfg->max_connections)
        refuse = "max_connections reached";
    else if (count_ip(s, c->ip) >= s->cfg->max_connections_per_ip)
        refuse = "max_connections_per_ip reached";
    if (refuse) {
        SH_LOG(SH_LOG_WARN, "conn=%llu refused peer=%s reason=\"%s\"",
               (unsigned long long)c->id, c->peer, refuse);
        uv_close((uv_handle_t *)&c->tcp, on_reject_closed);
        return;
    }
    c->tcp.data = c;
    c->srv = s;
    c->t_accept = c->t_last_rx = now_ms(s);
    c->rtt_ms = -1;
    c->next_txid = 1;
    sh_outq_init(&c->outq);
    c->rtmp = rtmp_conn_new(&s->rtmp_cfg, &c->outq, handshake_random(s), (uint32_t)now_ms(s));
    if (!c->rtmp || ip_count_add(s, c->ip) != 0) {
        rtmp_conn_free(c->rtmp);
        SH_LOG(SH_LOG_ERROR, "conn=%llu out of memory", (unsigned long long)c->id);
        sh_outq_cleanup(&c->outq);
        uv_close((uv_handle_t *)&c->tcp, on_reject_closed);
        return;
    }
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    uv_tcp_nodelay(&c->tcp, 1);
    SH_LOG(SH_LOG_INFO, "conn=%llu accepted peer=%s", (unsigned long long)c->id, c->peer);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc < 0)
        app_conn_abort(c, uv_strerror(rc));
}

/* ---- timers: handshake, idle, ping, close grace ---- */

/* Returns true when it closed c. */
static bool conn_timers(app_conn *c, uint64_t now)
{
    const app_config *cfg = c->srv->cfg;
    if (c->torn)
        return false;
    if (!c->writing)
        sh_outq_trim(&c->outq); /* idle connections hold no output ring */
    if (c->closing) {
        if (!c->hard && now >= c->close_deadline) {
            app_conn_abort(c, NULL);
            return true;
        }
        return false;
    }
    if (!c->nc_connected && now - c->t_accept >= cfg->handshake_timeout_ms) {
        app_conn_abort(c, rtmp_conn_handshake_done(c->rtmp)
                              ? "handshake_timeout_ms passed before connect"
                              : "handshake_timeout_ms passed during handshake");
        return true;
    }
    uint64_t quiet = now - c->t_last_rx;
    if (quiet >= cfg->idle_timeout_ms) {
        app_conn_abort(c, "idle_timeout_ms passed");
        return true;
    }
    if (c->nc_connected && quiet >= cfg->ping_interval_ms &&
        (!c->ping_outstanding || now - c->t_ping_sent >= cfg->ping_interval_ms)) {
        c->ping_ts = (uint32_t)now;
        c->t_ping_sent = now;
        c->ping_outstanding = true;
        if (rtmp_conn_send_user_control(c->rtmp, RTMP_UC_PING_REQUEST, c->ping_ts) == 0)
            conn_queued(c);
    }
    return false;
}

/* Connections one tick may close.  Thousands of handshakes timing out
 * together would otherwise be closed (and logged) in one callback and
 * stall every other client; past this, the tick comes back after 1 ms,
 * letting I/O run in between. */
#define APP_TICK_CLOSE_BUDGET 256

static void on_tick(uv_timer_t *t)
{
    app_server *s = t->data;
    uint64_t now = now_ms(s);
    unsigned closed = 0;
    for (app_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (conn_timers(c, now) && ++closed >= APP_TICK_CLOSE_BUDGET) {
            uv_timer_start(t, on_tick, 1, uv_timer_get_repeat(t));
            return;
        }
    }
}

static uint64_t tick_interval(const app_config *cfg)
{
    uint64_t m = cfg->handshake_timeout_ms;
    if (cfg->ping_interval_ms < m)
        m = cfg->ping_interval_ms;
    if (cfg->idle_timeout_ms < m)
        m = cfg->idle_timeout_ms;
    m /= 4;
    if (m < 10)
        m = 10;
    if (m > 1000)
        m = 1000;
    return m;
}

/* ---- lifecycle ---- */

static void on_signal(uv_signal_t *h, int signum)
{
    app_server *s = h->data;
    SH_LOG(SH_LOG_INFO, "signal %d: shutting down", signum);
    app_server_stop(s, "server shutdown");
}

static void close_if_active(uv_handle_t *h)
{
    if (h->type != UV_UNKNOWN_HANDLE && !uv_is_closing(h))
        uv_close(h, NULL);
}

static void finish_stop(app_server *s)
{
    if (s->stopped)
        return;
    s->stopped = true;
    if (s->have_so && s->so.on_shutdown)
        s->so.on_shutdown(s->so.ud);
    for (app_shutdown_entry *e = s->shutdown; e; e = e->next)
        e->fn(s, e->ud);
    close_if_active((uv_handle_t *)&s->tick);
    close_if_active((uv_handle_t *)&s->prepare);
    close_if_active((uv_handle_t *)&s->check);
    close_if_active((uv_handle_t *)&s->idle);
    close_if_active((uv_handle_t *)&s->sigint);
    close_if_active((uv_handle_t *)&s->sigterm);
    SH_LOG(SH_LOG_INFO, "stopped");
}

void app_server_stop(app_server *s, const char *reason)
{
    if (s->stopping)
        return;
    s->stopping = true;
    if (s->listening) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        s->listening = false;
    }
    for (app_conn *c = s->conns; c; c = c->next)
        app_conn_close(c, reason);
    if (s->nconns == 0 && s->nclosing == 0)
        finish_stop(s);
}

app_server *app_server_new(const app_config *cfg, uv_loop_t *loop)
{
    app_server *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->cfg = cfg;
    s->loop = loop ? loop : uv_default_loop();
    s->slab = malloc(APP_READ_SLAB);
    s->rnd_pool = malloc(APP_RANDOM_POOL);
    if (!s->slab || !s->rnd_pool) {
        free(s->slab);
        free(s->rnd_pool);
        free(s);
        return NULL;
    }
    rtmp_conn_config_default(&s->rtmp_cfg, RTMP_ROLE_SERVER);
    s->rtmp_cfg.limits.max_chunk_size = cfg->max_chunk_size;
    s->rtmp_cfg.limits.max_message_size = cfg->max_message_size;
    s->rtmp_cfg.limits.max_chunk_streams = cfg->max_chunk_streams;
    s->rtmp_cfg.limits.max_buffered = (size_t)cfg->max_buffered_bytes;
    s->rtmp_cfg.out_chunk_size = cfg->out_chunk_size;
    s->rtmp_cfg.window_ack_size = cfg->window_ack_size;
    s->amf_limits = amf_default_limits;
    s->amf_limits.max_depth = cfg->max_amf_depth;
    s->amf_limits.max_string = cfg->max_amf_string;
    s->amf_limits.max_elements = cfg->max_amf_elements;
    s->amf_limits.max_total = cfg->max_message_size;
    if (app_netconn_register_builtin(s) != 0) {
        app_server_free(s);
        return NULL;
    }
    return s;
}

static int write_port_file(const char *path, int port)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -errno;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0)
        return -errno;
    if (rename(tmp, path) != 0)
        return -errno;
    return 0;
}

int app_server_start(app_server *s)
{
    const app_config *cfg = s->cfg;
    struct sockaddr_storage addr;
    int rc;
    if (strchr(cfg->listen_host, ':'))
        rc = uv_ip6_addr(cfg->listen_host, cfg->listen_port, (struct sockaddr_in6 *)&addr);
    else
        rc = uv_ip4_addr(cfg->listen_host, cfg->listen_port, (struct sockaddr_in *)&addr);
    if (rc < 0) {
        SH_LOG(SH_LOG_ERROR, "listen: bad address %s: %s", cfg->listen, uv_strerror(rc));
        return rc;
    }
    uv_tcp_init(s->loop, &s->listener);
    s->listener.data = s;
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
    if (rc < 0) {
        SH_LOG(SH_LOG_ERROR, "listen on %s: %s", cfg->listen, uv_strerror(rc));
        uv_close((uv_handle_t *)&s->listener, NULL);
        return rc;
    }
    s->listening = true;
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &blen);
    s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);

    uv_timer_init(s->loop, &s->tick);
    s->tick.data = s;
    uint64_t iv = tick_interval(cfg);
    uv_timer_start(&s->tick, on_tick, iv, iv);
    uv_prepare_init(s->loop, &s->prepare);
    s->prepare.data = s;
    uv_prepare_start(&s->prepare, on_prepare);
    uv_check_init(s->loop, &s->check);
    s->check.data = s;
    uv_check_start(&s->check, on_check);
    uv_idle_init(s->loop, &s->idle);
    s->idle.data = s;
    uv_signal_init(s->loop, &s->sigint);
    s->sigint.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_init(s->loop, &s->sigterm);
    s->sigterm.data = s;
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    s->started = true;

    if (strchr(cfg->listen_host, ':'))
        SH_LOG(SH_LOG_INFO, "listening on [%s]:%d", cfg->listen_host, s->port);
    else
        SH_LOG(SH_LOG_INFO, "listening on %s:%d", cfg->listen_host, s->port);
    if (cfg->port_file) {
        rc = write_port_file(cfg->port_file, s->port);
        if (rc < 0) {
            SH_LOG(SH_LOG_ERROR, "port file %s: %s", cfg->port_file, strerror(-rc));
            return rc;
        }
    }
    return 0;
}

int app_server_run(app_server *s)
{
    return uv_run(s->loop, UV_RUN_DEFAULT);
}

void app_server_free(app_server *s)
{
    if (!s)
        return;
    app_ip_count *ipc;
    for (size_t it = 0; (ipc = sh_map_next(&s->ip_counts, &it)) != NULL;)
        free(ipc);
    sh_map_cleanup(&s->ip_counts);
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
    free(s->slab);
    free(s->rnd_pool);
    free(s);
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

/* Which application serves `name`, and with which config section:
 * a registered application of that name; else, for a name with its own
 * [app NAME] section, or when the config declares no names at all or has
 * [app *], a registered "*" application or the built-in open one. */
app_app *app_server_resolve_app(app_server *s, const char *name, const app_app_config **cfg)
{
    *cfg = app_config_find_app(s->cfg, name);
    app_app *a = app_server_find_app(s, name);
    if (a)
        return a;
    if (!*cfg && s->cfg->napps > 0)
        return NULL;
    a = app_server_find_app(s, "*");
    if (a)
        return a;
    if (!s->default_app)
        s->default_app = app_new("*", NULL, NULL);
    return s->default_app;
}

/* ---- accessors ---- */

uv_loop_t *app_server_loop(const app_server *s) { return s->loop; }
const app_config *app_server_config(const app_server *s) { return s->cfg; }
int app_server_port(const app_server *s) { return s->port; }
size_t app_server_conn_count(const app_server *s) { return s->nconns; }

uint64_t app_conn_id(const app_conn *c) { return c->id; }
app_server *app_conn_server(const app_conn *c) { return c->srv; }
const char *app_conn_peer(const app_conn *c) { return c->peer; }
const char *app_conn_app_name(const app_conn *c) { return c->app_name; }
const char *app_conn_instance(const app_conn *c) { return c->instance; }
const char *app_conn_user(const app_conn *c) { return c->user; }
app_app *app_conn_app(const app_conn *c) { return c->app; }
const app_app_config *app_conn_app_config(const app_conn *c) { return c->app_cfg; }
int app_conn_object_encoding(const app_conn *c) { return c->object_encoding; }
bool app_conn_connected(const app_conn *c) { return c->nc_connected && !c->closing; }
int64_t app_conn_rtt_ms(const app_conn *c) { return c->rtt_ms; }
size_t app_conn_out_bytes(const app_conn *c) { return c->outq.bytes; }
rtmp_conn *app_conn_rtmp(app_conn *c) { return c->rtmp; }

void *app_conn_get_data(const app_conn *c, app_slot slot)
{
    return (unsigned)slot < APP_SLOT_COUNT ? c->slots[slot] : NULL;
}

void app_conn_set_data(app_conn *c, app_slot slot, void *p)
{
    if ((unsigned)slot < APP_SLOT_COUNT)
        c->slots[slot] = p;
}

int app_conn_send_msg(app_conn *c, const rtmp_msg *m)
{
    if (c->closing)
        return SH_ESTATE;
    int rc = rtmp_conn_send(c->rtmp, m);
    if (rc < 0)
        return rc;
    return conn_queued(c);
}

int app_conn_send_shared(app_conn *c, sh_rcbuf *chunks)
{
    if (c->closing)
        return SH_ESTATE;
    int rc = rtmp_conn_send_shared(c->rtmp, chunks);
    if (rc < 0)
        return rc;
    return conn_queued(c);
}

int app_conn_send_cmd(app_conn *c, const char *name, double txid,
                      amf_value *const *args, size_t nargs)
{
    if (c->closing)
        return SH_ESTATE;
    int rc = rtmp_conn_send_cmd(c->rtmp, 0, c->amf3_cmds, name, txid, NULL, args, nargs);
    if (rc < 0)
        return rc;
    return conn_queued(c);
}
