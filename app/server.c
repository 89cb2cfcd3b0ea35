/* server.c - the socket side of sohub-server: listen, accept, read, write,
 * timers, caps and shutdown.  It knows no protocol: a connection's
 * transport (c->tr) turns bytes into messages and messages into bytes,
 * and session.c decides what a client may do (app_internal.h).
 *
 * Output: a transport queues bytes in c->outq and calls app_conn_output(),
 * the one place that applies max_output_bytes and the server-wide client
 * memory budget and marks the connection dirty.  Dirty connections are
 * flushed once per loop turn (uv_check after the I/O phase, uv_prepare
 * before it for timer/write-callback output) with ONE writev per
 * connection carrying up to APP_WRITE_IOV_MAX slices of its sh_outq, made
 * at once with uv_try_write.  Only bytes the socket does not take go out
 * through a uv_write; its slices stay in the queue (holding their sh_rcbuf
 * references) until the write callback consumes them.  A queue that
 * empties after having data tells the session (app_session_drained: the
 * shared-object engine's rule 7), whatever queued the data.
 *
 * Memory: each connection's cost (its output queue with per-slice
 * overhead, its transport's partial input, deferred input) is summed in
 * s->mem_total.  Past max_client_memory the connection holding the most
 * is closed, as Redis does with maxmemory-clients.  A connection whose
 * queued output makes no progress for send_timeout_ms is closed (nginx's
 * send_timeout).
 *
 * Closing: app_conn_close() (flush first, bounded by a grace time) and
 * app_conn_abort() (at once) only mark the connection; the teardown runs
 * from the flush pass, never inside another callback's stack, so callers
 * (applications, the SO engine) never see a connection vanish under them.
 * Memory is freed in the uv_close callback.
 */
#include "app_internal.h"
#include "http.h"
#include "tls.h"
#include "metrics.h"
#include "ws.h"

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

/* The queue the socket writes from: the TLS layer's ciphertext, or the
 * transport's bytes themselves. */
static sh_outq *conn_wq(app_conn *c) { return c->tls ? app_tls_out(c->tls) : &c->outq; }

/* Bytes queued and not yet written, both sides of TLS. */
static size_t conn_pending(const app_conn *c)
{
    return c->outq.bytes + (c->tls ? app_tls_out(c->tls)->bytes : 0);
}

/* ---- memory accounting ---- */

/* What the input side holds (unread backlog, the transport's partial
 * messages).  It changes only when bytes are read or messages handled, so
 * it is counted then and kept in c->mem_in: the output path, which runs
 * once per recipient of every update, adds only the queues. */
static size_t conn_mem_in(const app_conn *c)
{
    size_t n = c->backlog ? c->backlog_len : 0;
    if (c->tr_state && c->tr->input_mem)
        n += c->tr->input_mem(c);
    return n;
}

static inline size_t conn_mem_out(const app_conn *c)
{
    return sh_outq_mem(&c->outq) + (c->tls ? app_tls_mem(c->tls) : 0);
}

static inline void mem_set(app_conn *c, size_t m)
{
    app_server *s = c->srv;
    s->mem_total = s->mem_total - c->mem_counted + m;
    c->mem_counted = m;
}

/* Brings c's share of s->mem_total up to date.  A closing connection
 * counts nothing: its memory goes with its teardown. */
static void mem_update(app_conn *c)
{
    c->mem_in = c->closing ? 0 : conn_mem_in(c);
    mem_set(c, c->closing ? 0 : c->mem_in + conn_mem_out(c));
}

/* The same after output only: the input side is as last counted. */
static inline void mem_update_out(app_conn *c)
{
    mem_set(c, c->mem_in + conn_mem_out(c));
}

static void mem_evict(app_server *s);

void app_conn_abort(app_conn *c, const char *reason)
{
    if (c->torn)
        return;
    set_reason(c, reason);
    if (!c->closing)
        uv_read_stop((uv_stream_t *)&c->tcp);
    c->closing = true;
    c->hard = true;
    mem_update(c);
    app_conn_mark_dirty(c);
}

void app_conn_close(app_conn *c, const char *reason)
{
    if (c->torn || c->closing)
        return;
    set_reason(c, reason);
    if (c->tr_state && c->tr->closing)
        c->tr->closing(c, reason_of(c));
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->closing = true;
    c->close_deadline = now_ms(c->srv) + APP_CLOSE_GRACE_MS;
    mem_update(c);
    app_conn_mark_dirty(c);
}

int app_conn_output(app_conn *c)
{
    if (c->torn)
        return SH_ESTATE;
    app_server *s = c->srv;
    size_t pending = conn_pending(c);
    if (pending > s->cfg->max_output_bytes) {
        char why[96];
        snprintf(why, sizeof(why), "output queue over max_output_bytes (%zu bytes)", pending);
        s->st.closed[APP_CLOSE_OUTPUT_CAP]++;
        app_conn_abort(c, why);
        return SH_ELIMIT;
    }
    if (pending > 0) {
        if (!c->had_output)
            c->t_out_progress = now_ms(s); /* the clock starts with the first byte */
        c->had_output = true;
        app_conn_mark_dirty(c);
    }
    if (!c->closing) {
        mem_update_out(c);
        if (s->cfg->max_client_memory && s->mem_total > s->cfg->max_client_memory) {
            mem_evict(s);
            if (c->closing)
                return SH_ELIMIT;
        }
    }
    return 0;
}

/* Over the server's client memory: close the connection that holds the
 * most (one per call; each call comes with new output or input). */
static void mem_evict(app_server *s)
{
    app_conn *big = NULL;
    for (app_conn *c = s->conns; c; c = c->next)
        if (!c->closing && (!big || c->mem_counted > big->mem_counted))
            big = c;
    if (!big)
        return;
    char why[160];
    snprintf(why, sizeof(why), "clients hold %zu bytes, over max_client_memory; this one held "
             "the most (%zu bytes)", s->mem_total, big->mem_counted);
    SH_LOG(SH_LOG_WARN, "conn=%llu closed: %s", (unsigned long long)big->id, why);
    s->st.closed[APP_CLOSE_MEMORY]++;
    app_conn_abort(big, why);
}

/* ---- teardown ---- */

static void finish_stop(app_server *s);

static void on_conn_closed(uv_handle_t *h)
{
    app_conn *c = h->data;
    app_server *s = c->srv;
    sh_outq_cleanup(&c->outq);
    app_tls_free(c->tls);
    if (c->tr_state)
        c->tr->close(c);
    app_session_free(c);
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

static void held_forget(app_conn *c);

static void conn_teardown(app_conn *c)
{
    app_server *s = c->srv;
    if (c->torn)
        return;
    held_forget(c);
    c->closing = true;
    mem_update(c);
    c->torn = true;
    ip_count_del(s, c->ip);
    sh_map_del_ptr(&s->conns_by_id, sh_map_box(c->id));
    s->st.bytes_in += c->bytes_in;
    s->st.bytes_out += c->bytes_out;
    list_remove_dirty(s, c);
    list_remove_backlog(s, c);
    app_session_end(c, reason_of(c));
    SH_LOG(SH_LOG_INFO, "conn=%llu disconnect peer=%s transport=%s app=%s instance=%s "
           "reason=\"%s\" duration_ms=%llu bytes_in=%llu bytes_out=%llu",
           (unsigned long long)c->id, c->peer, c->tr->name,
           c->app_name[0] ? c->app_name : "-", c->instance[0] ? c->instance : "-",
           reason_of(c), (unsigned long long)(now_ms(s) - c->t_accept),
           (unsigned long long)c->bytes_in, (unsigned long long)c->bytes_out);
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

/* Bytes went out: progress for send_timeout_ms, memory given back. */
static void conn_wrote(app_conn *c, size_t n)
{
    sh_outq_consume(conn_wq(c), n);
    c->bytes_out += n;
    if (n)
        c->t_out_progress = now_ms(c->srv);
    mem_update_out(c);
}

/* The queue is empty after a write: tell the session once per burst. */
static void conn_drained(app_conn *c)
{
    if (!c->had_output)
        return;
    c->had_output = false;
    if (c->nc_connected && !c->closing)
        app_session_drained(c);
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
    conn_wrote(c, c->write_bytes);
    c->write_bytes = 0;
    if (conn_pending(c) > 0 || c->closing)
        app_conn_mark_dirty(c);
    else
        conn_drained(c);
}

static size_t conn_bufs(app_conn *c, uv_buf_t *bufs, size_t *total)
{
    struct iovec iov[APP_WRITE_IOV_MAX];
    size_t n = sh_outq_iov(conn_wq(c), iov, APP_WRITE_IOV_MAX);
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
    const char *why = NULL;
    if (c->tls && app_tls_write(c->tls, &c->outq, &why) != 0) {
        app_conn_abort(c, why);
        conn_teardown(c);
        return;
    }
    uv_buf_t bufs[APP_WRITE_IOV_MAX];
    size_t total = 0;
    for (;;) {
        if (conn_wq(c)->bytes == 0) {
            if (c->outq.bytes > 0)
                return; /* plaintext waits for the TLS handshake */
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
        conn_wrote(c, (size_t)rc);
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

/* ---- reading ---- */

/* Feeds in[0..len) to the transport until it is used up, the connection
 * closes, or the per-callback message budget is spent.  Returns bytes
 * consumed. */
static size_t conn_process(app_conn *c, const uint8_t *in, size_t len)
{
    uint32_t budget = c->srv->cfg->messages_per_read;
    size_t used = 0;
    c->tr->feed(c, in, len, &used, &budget);
    if (!c->closing) {
        mem_update(c);      /* the input side changes here, and only here */
        app_conn_output(c); /* replies the transport made by itself */
    }
    return used;
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
    c->bytes_in += (uint64_t)nread;
    const uint8_t *data = (const uint8_t *)buf->base;
    size_t len = (size_t)nread;
    if (c->tls) {
        /* decrypt: the transport sees plaintext (at most ~64 KB per read) */
        const char *why = NULL;
        sh_buf_reset(&s->tls_plain);
        int trc = app_tls_read(c->tls, data, len, &s->tls_plain, &why);
        app_conn_output(c); /* handshake or alert bytes */
        if (trc != 0) {
            app_conn_abort(c, why);
            return;
        }
        data = s->tls_plain.data;
        len = s->tls_plain.len;
        if (len == 0)
            return;
    }
    size_t used = conn_process(c, data, len);
    if (used < len && !c->closing) {
        /* Budget spent: keep the rest and stop reading until it is used. */
        size_t rest = len - used;
        c->backlog = malloc(rest);
        if (!c->backlog) {
            app_conn_abort(c, "out of memory");
            return;
        }
        memcpy(c->backlog, data + used, rest);
        c->backlog_len = rest;
        c->backlog_off = 0;
        uv_read_stop(st);
        SH_LOG(SH_LOG_DEBUG, "conn=%llu read budget spent, %zu bytes deferred",
               (unsigned long long)c->id, rest);
        c->in_backlog = true;
        c->backlog_next = s->backlog_head;
        s->backlog_head = c;
        uv_idle_start(&s->idle, on_idle);
        mem_update(c);
    }
}

void app_conn_hold_input(app_conn *c)
{
    if (c->input_held || c->closing || c->torn)
        return;
    c->input_held = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->held_next = c->srv->held_head;
    c->srv->held_head = c;
}

static void on_idle(uv_idle_t *h);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

void app_server_release_input(app_server *s)
{
    app_conn *list = s->held_head;
    s->held_head = NULL;
    while (list) {
        app_conn *c = list;
        list = c->held_next;
        c->held_next = NULL;
        c->input_held = false;
        if (c->closing || c->torn)
            continue;
        if (c->backlog) {
            /* input a read brought and the hold left: handled first */
            if (!c->in_backlog) {
                c->in_backlog = true;
                c->backlog_next = s->backlog_head;
                s->backlog_head = c;
                uv_idle_start(&s->idle, on_idle);
            }
        } else {
            uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        }
    }
}

/* Takes c out of the held list (it is being torn down). */
static void held_forget(app_conn *c)
{
    if (!c->input_held)
        return;
    for (app_conn **pp = &c->srv->held_head; *pp; pp = &(*pp)->held_next)
        if (*pp == c) {
            *pp = c->held_next;
            break;
        }
    c->input_held = false;
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
        if (c->closing || c->torn || c->input_held)
            continue; /* held: app_server_release_input queues it again */
        size_t used = conn_process(c, c->backlog + c->backlog_off,
                                   c->backlog_len - c->backlog_off);
        c->backlog_off += used;
        if (c->closing)
            continue;
        if (c->backlog_off < c->backlog_len) {
            if (!c->input_held) {
                c->in_backlog = true;
                c->backlog_next = s->backlog_head;
                s->backlog_head = c;
            }
        } else {
            free(c->backlog);
            c->backlog = NULL;
            c->backlog_len = c->backlog_off = 0;
            mem_update(c);
            if (!c->input_held)
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

/* RTMP_HANDSHAKE_SIZE random bytes for a new transport, taken from a pool
 * refilled by one getrandom (the handshake's random bytes are filler, not
 * key material). */
static const uint8_t *conn_random(app_server *s)
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

/* Makes c (its tcp handle open, nothing else set) a connection of
 * listener l: caps, transport, the lists, reading.  c is freed (through
 * its handle's close) when it is refused or memory runs out. */
static void conn_adopt(app_server *s, app_listener *l, app_conn *c)
{
    c->id = ++s->next_id;
    c->tr = l->tr;
    c->listen_kind = l->kind;
    if (l->tls && !(c->tls = app_tls_new(s->tls_ctx))) {
        SH_LOG(SH_LOG_ERROR, "conn=%llu out of memory (TLS)", (unsigned long long)c->id);
        uv_close((uv_handle_t *)&c->tcp, on_reject_closed);
        return;
    }
    peer_name(&c->tcp, c->ip, sizeof(c->ip), c->peer, sizeof(c->peer));
    const char *refuse = NULL;
    s->st.accepted[l->kind < 4 ? l->kind : 0]++;
    if (s->nconns >= s->cfg->max_connections)
        refuse = "max_connections reached", s->st.dropped[APP_DROP_MAX_CONNECTIONS]++;
    else if (count_ip(s, c->ip) >= s->cfg->max_connections_per_ip)
        refuse = "max_connections_per_ip reached", s->st.dropped[APP_DROP_PER_IP]++;
    else if (s->cfg->max_client_memory && s->mem_total > s->cfg->max_client_memory)
        refuse = "clients hold more than max_client_memory", s->st.dropped[APP_DROP_MEMORY]++;
    if (refuse) {
        SH_LOG(SH_LOG_WARN, "conn=%llu refused peer=%s transport=%s reason=\"%s\"",
               (unsigned long long)c->id, c->peer, c->tr->name, refuse);
        app_tls_free(c->tls);
        uv_close((uv_handle_t *)&c->tcp, on_reject_closed);
        return;
    }
    c->tcp.data = c;
    c->srv = s;
    c->t_accept = c->t_last_rx = c->t_out_progress = now_ms(s);
    c->rtt_ms = -1;
    c->next_txid = 1;
    sh_outq_init(&c->outq);
    if (c->tr->open(c, conn_random(s)) != 0 || ip_count_add(s, c->ip) != 0) {
        if (c->tr_state)
            c->tr->close(c);
        SH_LOG(SH_LOG_ERROR, "conn=%llu out of memory", (unsigned long long)c->id);
        sh_outq_cleanup(&c->outq);
        app_tls_free(c->tls);
        uv_close((uv_handle_t *)&c->tcp, on_reject_closed);
        return;
    }
    if (sh_map_put_ptr(&s->conns_by_id, sh_map_box(c->id), c) != 0) {
        SH_LOG(SH_LOG_ERROR, "conn=%llu out of memory", (unsigned long long)c->id);
        ip_count_del(s, c->ip);
        if (c->tr_state)
            c->tr->close(c);
        sh_outq_cleanup(&c->outq);
        app_tls_free(c->tls);
        uv_close((uv_handle_t *)&c->tcp, on_reject_closed);
        return;
    }
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    uv_tcp_nodelay(&c->tcp, 1);
    SH_LOG(SH_LOG_INFO, "conn=%llu accepted peer=%s transport=%s", (unsigned long long)c->id,
           c->peer, c->tr->name);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc < 0)
        app_conn_abort(c, uv_strerror(rc));
    else
        app_conn_output(c); /* what the transport queued at open */
}

static void on_connection(uv_stream_t *server, int status)
{
    app_listener *l = server->data;
    app_server *s = l->srv;
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
    conn_adopt(s, l, c);
}

int app_server_adopt(app_server *s, int kind, uv_os_sock_t fd)
{
    app_listener *l = kind == APP_LISTEN_RTMP   ? &s->rtmp
                      : kind == APP_LISTEN_HTTP ? &s->http
                      : kind == APP_LISTEN_ADMIN ? &s->admin
                                                 : NULL;
    if (!l || s->stopping)
        return SH_EINVAL;
    app_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return SH_ENOMEM;
    uv_tcp_init(s->loop, &c->tcp);
    int rc = uv_tcp_open(&c->tcp, fd);
    if (rc < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_reject_closed);
        return rc;
    }
    conn_adopt(s, l, c);
    return 0;
}

/* ---- timers: handshake, idle, ping, send time-out, close grace ---- */

/* Returns true when it closed c. */
static bool conn_timers(app_conn *c, uint64_t now)
{
    const app_config *cfg = c->srv->cfg;
    if (c->torn)
        return false;
    if (!c->writing) {
        sh_outq_trim(&c->outq); /* idle connections hold no output ring */
        if (c->tls)
            sh_outq_trim(app_tls_out(c->tls));
        mem_update(c);
    }
    if (c->closing) {
        if (!c->hard && now >= c->close_deadline) {
            app_conn_abort(c, NULL);
            return true;
        }
        return false;
    }
    const char *why = c->tr->expired ? c->tr->expired(c, now) : NULL;
    if (why) {
        app_conn_abort(c, why);
        return true;
    }
    if (c->tr->wants_session && !c->nc_connected &&
        now - c->t_accept >= cfg->handshake_timeout_ms) {
        c->srv->st.closed[APP_CLOSE_HANDSHAKE]++;
        app_conn_abort(c, c->tr->handshake_done(c) ? "handshake_timeout_ms passed before connect"
                                                   : "handshake_timeout_ms passed during handshake");
        return true;
    }
    if (c->tls && !app_tls_handshake_done(c->tls) &&
        now - c->t_accept >= cfg->http_request_timeout_ms) {
        app_conn_abort(c, "TLS handshake not done within http_request_timeout_ms");
        return true;
    }
    if (conn_pending(c) > 0 && now - c->t_out_progress >= cfg->send_timeout_ms) {
        c->srv->st.closed[APP_CLOSE_SEND_TIMEOUT]++;
        app_conn_abort(c, "send_timeout_ms passed without the client taking any output");
        return true;
    }
    uint64_t quiet = now - c->t_last_rx;
    if (quiet >= cfg->idle_timeout_ms) {
        c->srv->st.closed[APP_CLOSE_IDLE]++;
        app_conn_abort(c, "idle_timeout_ms passed");
        return true;
    }
    if (c->nc_connected && quiet >= cfg->ping_interval_ms &&
        (!c->ping_outstanding || now - c->t_ping_sent >= cfg->ping_interval_ms)) {
        c->ping_ts = (uint32_t)now;
        c->t_ping_sent = now;
        c->ping_outstanding = true;
        if (c->tr->ping(c, c->ping_ts) == 0)
            app_conn_output(c);
    }
    return false;
}

void app_session_pong(app_conn *c, uint32_t ts)
{
    if (c->ping_outstanding && ts == c->ping_ts) {
        c->ping_outstanding = false;
        c->rtt_ms = (int64_t)(now_ms(c->srv) - c->t_ping_sent);
        SH_LOG(SH_LOG_DEBUG, "conn=%llu ping rtt_ms=%lld", (unsigned long long)c->id,
               (long long)c->rtt_ms);
    }
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
    if (s->cfg->max_client_memory && s->mem_total > s->cfg->max_client_memory)
        mem_evict(s);
}

/* Event-loop lag: how late a timer due every APP_LAG_PERIOD_MS fires. */
static const double lag_bounds[] = {0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1,
                                    0.25, 0.5, 1, 2.5};

static void on_lag(uv_timer_t *t)
{
    app_server *s = t->data;
    uint64_t now = uv_now(s->loop);
    double late = now > s->lag_expected ? (double)(now - s->lag_expected) / 1000.0 : 0;
    app_histo_add(s->lag, late);
    s->lag_expected = now + APP_LAG_PERIOD_MS;
}

static uint64_t tick_interval(const app_config *cfg)
{
    uint64_t m = cfg->handshake_timeout_ms;
    if (cfg->ping_interval_ms < m)
        m = cfg->ping_interval_ms;
    if (cfg->idle_timeout_ms < m)
        m = cfg->idle_timeout_ms;
    if (cfg->send_timeout_ms < m)
        m = cfg->send_timeout_ms;
    m /= 4;
    if (m < 10)
        m = 10;
    if (m > 1000)
        m = 1000;
    return m;
}

/* ---- lifecycle ---- */

static void derive_limits(app_server *s);

typedef struct app_reconf_entry {
    struct app_reconf_entry *next;
    app_reconfigure_fn fn;
    void *ud;
} app_reconf_entry;

void app_server_set_reload(app_server *s, app_reload_fn fn, void *ud)
{
    s->reload = fn;
    s->reload_ud = ud;
}

int app_server_on_reconfigure(app_server *s, app_reconfigure_fn fn, void *ud)
{
    app_reconf_entry *e = calloc(1, sizeof(*e));
    if (!e)
        return SH_ENOMEM;
    e->fn = fn;
    e->ud = ud;
    app_reconf_entry **pp = &s->reconf;
    while (*pp)
        pp = &(*pp)->next;
    *pp = e;
    return 0;
}

void app_server_each_conn(app_server *s, void (*fn)(app_conn *c, void *ud), void *ud)
{
    for (app_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->nc_connected && !c->closing)
            fn(c, ud);
    }
}

void app_server_reconfigure(app_server *s, const app_config *cfg)
{
    const app_config *old = s->cfg;
    s->cfg = cfg;
    derive_limits(s);
    sh_log_set_level((sh_log_level)cfg->log_level_num);
    if (s->tls_ctx && (strcmp(old->tls_cert, cfg->tls_cert) || strcmp(old->tls_key, cfg->tls_key))) {
        char err[512];
        app_tls_ctx *x = app_tls_ctx_new(cfg->tls_cert, cfg->tls_key, err, sizeof(err));
        if (x) {
            /* sessions made with the old context keep it alive (OpenSSL counts) */
            app_tls_ctx_free(s->tls_ctx);
            s->tls_ctx = x;
            SH_LOG(SH_LOG_INFO, "reload: new TLS certificate in use for new connections");
        } else {
            SH_LOG(SH_LOG_ERROR, "reload: %s: the certificate in use is kept", err);
        }
    }
    size_t closed = 0;
    for (app_conn *c = s->conns; c; c = c->next) {
        if (!c->nc_connected || c->closing)
            continue;
        const app_app_config *a = app_config_find_app(cfg, c->app_name);
        if (!a && cfg->napps > 0) {
            app_conn_close(c, "application no longer served (configuration reloaded)");
            closed++;
            continue;
        }
        c->app_cfg = a;
    }
    if (closed)
        SH_LOG(SH_LOG_WARN, "reload: %zu connections of applications no longer served closed",
               closed);
    for (app_reconf_entry *e = s->reconf; e; e = e->next)
        e->fn(s, old, cfg, e->ud);
}

static void on_sighup(uv_signal_t *h, int signum)
{
    (void)signum;
    app_server *s = h->data;
    if (s->stopping)
        return;
    if (!s->reload) {
        SH_LOG(SH_LOG_WARN, "SIGHUP: nothing to reload (no configuration file)");
        return;
    }
    s->reload(s, s->reload_ud);
}

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
    close_if_active((uv_handle_t *)&s->lag_timer);
    close_if_active((uv_handle_t *)&s->prepare);
    close_if_active((uv_handle_t *)&s->check);
    close_if_active((uv_handle_t *)&s->idle);
    close_if_active((uv_handle_t *)&s->sigint);
    close_if_active((uv_handle_t *)&s->sigterm);
    close_if_active((uv_handle_t *)&s->sighup);
    SH_LOG(SH_LOG_INFO, "stopped");
}

static void listener_close(app_listener *l)
{
    if (l->active) {
        uv_close((uv_handle_t *)&l->tcp, NULL);
        l->active = false;
    }
}

void app_server_stop(app_server *s, const char *reason)
{
    if (s->stopping)
        return;
    s->stopping = true;
    listener_close(&s->rtmp);
    listener_close(&s->http);
    listener_close(&s->https);
    listener_close(&s->admin);
    for (app_conn *c = s->conns; c; c = c->next)
        app_conn_close(c, reason);
    if (s->nconns == 0 && s->nclosing == 0)
        finish_stop(s);
}

/* What the server keeps derived from its config: the limits new RTMP
 * connections and command decoders get. */
static void derive_limits(app_server *s)
{
    const app_config *cfg = s->cfg;
    rtmp_conn_config_default(&s->rtmp_cfg, RTMP_ROLE_SERVER);
    /* Until connect is accepted a client gets the tighter limits; the
     * RTMP transport raises them to these once it is. */
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
    s->amf_limits_pre = s->amf_limits;
    s->amf_limits_pre.max_total = cfg->preconnect_max_message_size;
    if (s->amf_limits_pre.max_string > cfg->preconnect_max_message_size)
        s->amf_limits_pre.max_string = cfg->preconnect_max_message_size;
    if (s->amf_limits_pre.max_elements > cfg->preconnect_max_message_size)
        s->amf_limits_pre.max_elements = cfg->preconnect_max_message_size;
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
    s->lag = calloc(1, sizeof(*s->lag));
    if (!s->slab || !s->rnd_pool || !s->lag) {
        free(s->slab);
        free(s->rnd_pool);
        free(s->lag);
        free(s);
        return NULL;
    }
    derive_limits(s);
    app_histo_init(s->lag, lag_bounds, sizeof(lag_bounds) / sizeof(lag_bounds[0]));
    s->rtmp = (app_listener){.srv = s, .tr = &app_rtmp_transport, .kind = APP_LISTEN_RTMP};
    s->http = (app_listener){.srv = s, .tr = &app_http_transport, .kind = APP_LISTEN_HTTP};
    s->admin = (app_listener){.srv = s, .tr = &app_http_transport, .kind = APP_LISTEN_ADMIN};
    s->https = (app_listener){.srv = s, .tr = &app_http_transport, .kind = APP_LISTEN_HTTP,
                              .tls = true};
    sh_buf_init(&s->tls_plain, APP_READ_SLAB + 65536);
    if (app_session_register_builtin(s) != 0) {
        app_server_free(s);
        return NULL;
    }
    return s;
}

/* The RTMP port on the first line; "http PORT" and "admin PORT" lines
 * follow for the listeners that are on. */
static int write_port_file(const char *path, int port, int http, int admin, int https)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -errno;
    fprintf(f, "%d\n", port);
    if (http)
        fprintf(f, "http %d\n", http);
    if (admin)
        fprintf(f, "admin %d\n", admin);
    if (https)
        fprintf(f, "https %d\n", https);
    if (fclose(f) != 0)
        return -errno;
    if (rename(tmp, path) != 0)
        return -errno;
    return 0;
}

/* Binds l to host:port; l->port gets the bound port. */
static int listener_start(app_server *s, app_listener *l, const char *host, int port,
                          const char *what)
{
    struct sockaddr_storage addr;
    int rc;
    if (strchr(host, ':'))
        rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
    else
        rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (rc < 0) {
        SH_LOG(SH_LOG_ERROR, "%s: bad address %s: %s", what, host, uv_strerror(rc));
        return rc;
    }
    uv_tcp_init(s->loop, &l->tcp);
    l->tcp.data = l;
    rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection);
    if (rc < 0) {
        SH_LOG(SH_LOG_ERROR, "%s on %s:%d: %s", what, host, port, uv_strerror(rc));
        uv_close((uv_handle_t *)&l->tcp, NULL);
        return rc;
    }
    l->active = true;
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&bound, &blen);
    l->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    if (strchr(host, ':'))
        SH_LOG(SH_LOG_INFO, "%s: listening on [%s]:%d", what, host, l->port);
    else
        SH_LOG(SH_LOG_INFO, "%s: listening on %s:%d", what, host, l->port);
    return 0;
}

static void loop_start(app_server *s, bool signals);

int app_server_start(app_server *s)
{
    const app_config *cfg = s->cfg;
    int rc = listener_start(s, &s->rtmp, cfg->listen_host, cfg->listen_port, "rtmp");
    if (rc == 0 && cfg->http_listen && *cfg->http_listen)
        rc = listener_start(s, &s->http, cfg->http_host, cfg->http_port, "http");
    if (rc == 0 && cfg->admin_listen && *cfg->admin_listen)
        rc = listener_start(s, &s->admin, cfg->admin_host, cfg->admin_port, "admin");
    if (rc == 0 && cfg->https_listen && *cfg->https_listen) {
        char err[512];
        s->tls_ctx = app_tls_ctx_new(cfg->tls_cert, cfg->tls_key, err, sizeof(err));
        if (!s->tls_ctx) {
            SH_LOG(SH_LOG_ERROR, "https_listen: %s", err);
            rc = SH_EINVAL;
        } else {
            rc = listener_start(s, &s->https, cfg->https_host, cfg->https_port, "https");
        }
    }
    if (rc < 0)
        return rc;
    loop_start(s, true);
    if (cfg->port_file) {
        rc = write_port_file(cfg->port_file, s->rtmp.port, s->http.port, s->admin.port,
                             s->https.port);
        if (rc < 0) {
            SH_LOG(SH_LOG_ERROR, "port file %s: %s", cfg->port_file, strerror(-rc));
            return rc;
        }
    }
    return 0;
}

int app_server_start_unbound(app_server *s)
{
    loop_start(s, false);
    return 0;
}

/* The timers and per-turn handles of a started server; signals when
 * asked (SIGINT and SIGTERM stop it, SIGHUP reloads). */
static void loop_start(app_server *s, bool signals)
{
    const app_config *cfg = s->cfg;
    uv_timer_init(s->loop, &s->tick);
    s->tick.data = s;
    uint64_t iv = tick_interval(cfg);
    uv_timer_start(&s->tick, on_tick, iv, iv);
    uv_timer_init(s->loop, &s->lag_timer);
    s->lag_timer.data = s;
    s->lag_expected = uv_now(s->loop) + APP_LAG_PERIOD_MS;
    uv_timer_start(&s->lag_timer, on_lag, APP_LAG_PERIOD_MS, APP_LAG_PERIOD_MS);
    uv_unref((uv_handle_t *)&s->lag_timer);
    uv_prepare_init(s->loop, &s->prepare);
    s->prepare.data = s;
    uv_prepare_start(&s->prepare, on_prepare);
    uv_check_init(s->loop, &s->check);
    s->check.data = s;
    uv_check_start(&s->check, on_check);
    uv_idle_init(s->loop, &s->idle);
    s->idle.data = s;
    s->started = true;
    if (!signals)
        return;
    uv_signal_init(s->loop, &s->sigint);
    s->sigint.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_init(s->loop, &s->sigterm);
    s->sigterm.data = s;
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_signal_init(s->loop, &s->sighup);
    s->sighup.data = s;
    uv_signal_start(&s->sighup, on_sighup, SIGHUP);
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
    sh_map_cleanup(&s->conns_by_id);
    free(s->lag);
    for (app_reconf_entry *e = s->reconf; e;) {
        app_reconf_entry *n = e->next;
        free(e);
        e = n;
    }
    app_session_registry_free(s);
    app_http_handlers_free(s);
    ws_zip_free(s->ws_zip);
    app_tls_ctx_free(s->tls_ctx);
    sh_buf_cleanup(&s->tls_plain);
    free(s->slab);
    free(s->rnd_pool);
    free(s);
}

/* ---- accessors ---- */

uv_loop_t *app_server_loop(const app_server *s) { return s->loop; }

void *app_server_ext(const app_server *s, app_ext which)
{
    return (unsigned)which < APP_EXT_COUNT ? s->ext[which] : NULL;
}

void app_server_set_ext(app_server *s, app_ext which, void *p)
{
    if ((unsigned)which < APP_EXT_COUNT)
        s->ext[which] = p;
}
const app_config *app_server_config(const app_server *s) { return s->cfg; }
int app_server_port(const app_server *s) { return s->rtmp.port; }

int app_server_http_port(const app_server *s, app_listen_kind kind)
{
    const app_listener *l = kind == APP_LISTEN_HTTP ? &s->http : kind == APP_LISTEN_ADMIN ? &s->admin
                            : kind == APP_LISTEN_HTTPS ? &s->https : &s->rtmp;
    return l->active ? l->port : 0;
}
size_t app_server_conn_count(const app_server *s) { return s->nconns; }
size_t app_conn_out_bytes(const app_conn *c) { return conn_pending(c); }
const char *app_conn_transport(const app_conn *c) { return c->tr->name; }

int app_tr_index(const app_transport *t)
{
    return t == &app_rtmp_transport ? APP_TR_RTMP : t == &app_ws_transport ? APP_TR_WS
                                                                            : APP_TR_HTTP;
}

app_conn *app_server_conn_by_id(const app_server *s, uint64_t id)
{
    return sh_map_get_ptr(&s->conns_by_id, sh_map_box(id));
}

void app_shared_cleanup(app_shared *m)
{
    for (size_t i = 0; i < APP_FRAME_SLOTS; i++) {
        sh_rcbuf_unref(m->framed[i]);
        m->framed[i] = NULL;
    }
}

int app_conn_send_shared(app_conn *c, app_shared *m)
{
    if (c->closing)
        return SH_ESTATE;
    int rc = c->tr->send_shared(c, m);
    if (rc < 0)
        return rc;
    return app_conn_output(c);
}
