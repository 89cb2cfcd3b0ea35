/* client.c - see client.h. */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "sh_rcbuf.h"

#define SHC_RBUF 65536

struct shc {
    int fd;
    shc_url url;
    bool amf3;
    rtmp_conn *rc;
    sh_outq out;
    bool closed;
    bool broken;              /* input can no longer be trusted: nothing more is read */
    char err[512];
    double next_txid;
    shc_event *q;             /* ring of held events */
    size_t qhead, qlen, qcap;
    uint8_t in[SHC_RBUF];
    size_t in_off, in_len;
};

int64_t shc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void shc_event_cleanup(shc_event *ev)
{
    if (!ev)
        return;
    if (ev->kind == SHC_EV_SO)
        so_msg_cleanup(&ev->so);
    else if (ev->kind == SHC_EV_CMD)
        rtmp_cmd_cleanup(&ev->cmd);
    ev->kind = 0;
}

/* ---- URL ---- */

int shc_url_parse(const char *url, shc_url *u, char *err, size_t errsz)
{
    memset(u, 0, sizeof(*u));
    if (!url)
        url = SHC_DEFAULT_URL;
    const char *p = url;
    if (strncmp(p, "rtmp://", 7) != 0) {
        snprintf(err, errsz, "bad URL '%s': it must start with rtmp://", url);
        return -1;
    }
    p += 7;
    const char *slash = strchr(p, '/');
    const char *hend = slash ? slash : p + strlen(p);
    const char *colon = NULL;
    if (*p == '[') { /* [v6]:port */
        const char *rb = memchr(p, ']', (size_t)(hend - p));
        if (!rb) {
            snprintf(err, errsz, "bad URL '%s': unclosed '['", url);
            return -1;
        }
        snprintf(u->host, sizeof(u->host), "%.*s", (int)(rb - p - 1), p + 1);
        colon = rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(p, ':', (size_t)(hend - p));
        size_t hl = (size_t)((colon ? colon : hend) - p);
        if (hl == 0 || hl >= sizeof(u->host)) {
            snprintf(err, errsz, "bad URL '%s': no host", url);
            return -1;
        }
        memcpy(u->host, p, hl);
        u->host[hl] = '\0';
    }
    u->port = SHC_DEFAULT_PORT;
    if (colon) {
        char *e = NULL;
        long port = strtol(colon + 1, &e, 10);
        if (e != hend || port <= 0 || port > 65535) {
            snprintf(err, errsz, "bad URL '%s': bad port", url);
            return -1;
        }
        u->port = (int)port;
    }
    const char *path = slash ? slash + 1 : "";
    size_t plen = strcspn(path, "?");
    const char *is = memchr(path, '/', plen);
    size_t alen = is ? (size_t)(is - path) : plen;
    if (alen == 0 || alen >= sizeof(u->name)) {
        snprintf(err, errsz, "bad URL '%s': no application name (rtmp://host:port/APP[/INSTANCE])",
                 url);
        return -1;
    }
    memcpy(u->name, path, alen);
    u->name[alen] = '\0';
    if (is && plen - alen > 1) {
        size_t il = plen - alen - 1;
        if (il >= sizeof(u->instance)) {
            snprintf(err, errsz, "bad URL '%s': instance name too long", url);
            return -1;
        }
        memcpy(u->instance, is + 1, il);
        u->instance[il] = '\0';
    } else {
        snprintf(u->instance, sizeof(u->instance), "_definst_");
    }
    snprintf(u->app, sizeof(u->app), "%s/%s%s", u->name, u->instance, path + plen);
    snprintf(u->tc_url, sizeof(u->tc_url), "rtmp://%.*s/%s", (int)(hend - p), p, u->app);
    return 0;
}

/* ---- socket ---- */

static int tcp_open(const shc_url *u, int timeout_ms, int rcvbuf, char *err, size_t errsz)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", u->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(u->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errsz, "cannot resolve %s: %s", u->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1, last = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        if (rcvbuf > 0) /* before connect: it bounds the advertised window */
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
        int fl = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (r != 0 && errno == EINPROGRESS) {
            struct pollfd pf = {fd, POLLOUT, 0};
            r = poll(&pf, 1, timeout_ms);
            if (r == 0) {
                last = ETIMEDOUT;
                r = -1;
            } else if (r > 0) {
                int soerr = 0;
                socklen_t sl = sizeof(soerr);
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                last = soerr;
                r = soerr ? -1 : 0;
            } else {
                last = errno;
            }
        } else if (r != 0) {
            last = errno;
        }
        if (r != 0) {
            close(fd);
            fd = -1;
            continue;
        }
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct timeval tv = {10, 0}; /* a peer that stops reading cannot block us forever */
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, errsz, "cannot connect to %s:%d: %s", u->host, u->port,
                 last == ETIMEDOUT ? "timed out" : strerror(last));
    return fd;
}

static int flush_out(shc *c)
{
    while (c->out.bytes > 0) {
        struct iovec iov[64];
        size_t n = sh_outq_iov(&c->out, iov, 64);
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = n};
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(c->err, sizeof(c->err), "write failed: %s",
                     w < 0 ? strerror(errno) : "connection closed");
            c->closed = true;
            return -1;
        }
        sh_outq_consume(&c->out, (size_t)w);
    }
    return 0;
}

/* ---- events ---- */

/* A message could not be decoded or held: handing out the ones after it
 * would hide a gap, so nothing more is read; the reason is kept for
 * shc_error. */
static void fail(shc *c, const char *fmt, const char *what)
{
    snprintf(c->err, sizeof(c->err), fmt, what);
    c->closed = true;
    c->broken = true;
}

/* Holds ev (taking it).  The caller checked c->qlen < SHC_MAX_HELD.  On
 * allocation failure the event cannot be kept, so the connection is
 * failed: returns -1. */
static int queue_push(shc *c, shc_event *ev)
{
    if (c->qlen == c->qcap) {
        size_t ncap = c->qcap ? c->qcap * 2 : 16;
        shc_event *nq = ncap <= SHC_MAX_HELD ? malloc(ncap * sizeof(*nq)) : NULL;
        if (!nq) {
            shc_event_cleanup(ev);
            fail(c, "%s", "cannot hold an event (out of memory); connection closed");
            return -1;
        }
        for (size_t i = 0; i < c->qlen; i++)
            nq[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = nq;
        c->qcap = ncap;
        c->qhead = 0;
    }
    c->q[(c->qhead + c->qlen) % c->qcap] = *ev;
    c->qlen++;
    return 0;
}

static bool queue_pop(shc *c, shc_event *ev)
{
    if (!c->qlen)
        return false;
    *ev = c->q[c->qhead];
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
    return true;
}

/* Turns a message into an event.  Returns 1 (event), 0 (not an event:
 * control, audio, video ...), -1 when it cannot be decoded: skipping it
 * would hide it from the caller, so the connection is failed. */
static int to_event(shc *c, const rtmp_msg *m, shc_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->rtmp_type = m->type;
    sh_error e = {0};
    if (m->type == RTMP_MSG_COMMAND_AMF0 || m->type == RTMP_MSG_COMMAND_AMF3) {
        if (rtmp_cmd_decode(m, NULL, &ev->cmd, &e) != 0) {
            rtmp_cmd_cleanup(&ev->cmd);
            fail(c, "undecodable command from the server (%s); connection closed",
                 e.what ? e.what : "?");
            return -1;
        }
        ev->kind = SHC_EV_CMD;
        return 1;
    }
    if (m->type == SO_MSG_AMF0 || m->type == SO_MSG_AMF3) {
        so_msg_init(&ev->so);
        if (so_wire_decode(m->type, m->data, m->len, NULL, &ev->so, &e) != 0) {
            so_msg_cleanup(&ev->so);
            fail(c, "undecodable shared-object message from the server (%s); connection closed",
                 e.what ? e.what : "?");
            return -1;
        }
        ev->kind = SHC_EV_SO;
        return 1;
    }
    return 0;
}

/* Reads once (waiting up to timeout_ms) and decodes what is buffered.
 * Returns 1 with *ev, 0 when nothing came, -1 when closed. */
static int read_event(shc *c, int timeout_ms, shc_event *ev)
{
    if (c->broken)
        return -1; /* nothing after a lost message or a protocol error */
    int64_t end = timeout_ms < 0 ? INT64_MAX : shc_now_ms() + timeout_ms;
    for (;;) {
        while (c->in_off < c->in_len) {
            size_t used = 0;
            rtmp_msg m;
            sh_error e = {0};
            int r = rtmp_conn_feed(c->rc, c->in + c->in_off, c->in_len - c->in_off, &used, &m,
                                   &e);
            c->in_off += used;
            if (r < 0) {
                snprintf(c->err, sizeof(c->err), "protocol error from the server: %s",
                         e.what ? e.what : sh_strerror(r));
                c->closed = true;
                c->broken = true;
                return -1;
            }
            int k = r == 1 ? to_event(c, &m, ev) : 0;
            if (k < 0)
                return -1;
            if (k == 1) {
                flush_out(c);
                return 1;
            }
            if (r == 0)
                break;
        }
        if (flush_out(c) != 0)
            return -1;
        if (c->closed)
            return -1;
        int64_t left = end - shc_now_ms();
        if (left < 0)
            left = 0;
        struct pollfd pf = {c->fd, POLLIN, 0};
        int pr = poll(&pf, 1, left > 1000000 ? 1000000 : (int)left);
        if (pr < 0 && errno == EINTR)
            return 0; /* let the caller look at its signals */
        if (pr <= 0) {
            if (left == 0)
                return 0;
            continue;
        }
        ssize_t n = read(c->fd, c->in, sizeof(c->in));
        if (n < 0 && errno == EINTR)
            return 0;
        if (n <= 0) {
            snprintf(c->err, sizeof(c->err), "connection closed by the server");
            c->closed = true;
            return -1;
        }
        c->in_len = (size_t)n;
        c->in_off = 0;
    }
}

int shc_next(shc *c, int timeout_ms, shc_event *ev)
{
    if (queue_pop(c, ev))
        return 1;
    return read_event(c, timeout_ms, ev);
}

bool shc_has_pending(const shc *c) { return c->qlen > 0 || c->in_off < c->in_len; }
size_t shc_held(const shc *c) { return c->qlen; }

static bool is_answer(const shc_event *ev, double txid)
{
    return ev->kind == SHC_EV_CMD && ev->cmd.txid == txid &&
           (strcmp(ev->cmd.name, "_result") == 0 || strcmp(ev->cmd.name, "_error") == 0);
}

int shc_call_wait(shc *c, double txid, int timeout_ms, rtmp_cmd *answer)
{
    /* Already held? */
    for (size_t i = 0; i < c->qlen; i++) {
        shc_event *ev = &c->q[(c->qhead + i) % c->qcap];
        if (is_answer(ev, txid)) {
            *answer = ev->cmd;
            for (size_t k = i; k + 1 < c->qlen; k++)
                c->q[(c->qhead + k) % c->qcap] = c->q[(c->qhead + k + 1) % c->qcap];
            c->qlen--;
            return 1;
        }
    }
    int64_t end = timeout_ms < 0 ? INT64_MAX : shc_now_ms() + timeout_ms;
    for (;;) {
        if (c->qlen >= SHC_MAX_HELD)
            return SHC_EHELD; /* back-pressure: read no more until they are taken */
        int64_t left = end - shc_now_ms();
        if (left <= 0)
            return 0;
        shc_event ev;
        int r = read_event(c, left > 1000000 ? 1000000 : (int)left, &ev);
        if (r < 0)
            return -1;
        if (r == 0)
            continue;
        if (is_answer(&ev, txid)) {
            *answer = ev.cmd;
            return 1;
        }
        if (queue_push(c, &ev) != 0)
            return -1;
    }
}

/* ---- connect ---- */

static void fill_random(uint8_t *p, size_t n)
{
    FILE *f = fopen("/dev/urandom", "rb");
    size_t got = f ? fread(p, 1, n, f) : 0;
    if (f)
        fclose(f);
    for (size_t i = got; i < n; i++)
        p[i] = (uint8_t)(rand() & 0xff);
}

static const char *str_member(const amf_value *o, const char *k)
{
    const amf_value *v = o && amf_type_of(o) == AMF_OBJECT ? amf_object_get(o, k) : NULL;
    size_t n;
    const char *s = v && amf_type_of(v) == AMF_STRING ? amf_as_string(v, &n) : NULL;
    return s ? s : "";
}

shc *shc_connect(const shc_opts *o, char *err, size_t errsz)
{
    return shc_connect_ex(o, NULL, err, errsz);
}

static void copy_member(char *dst, size_t sz, const amf_value *o, const char *k)
{
    snprintf(dst, sz, "%s", str_member(o, k));
}

shc *shc_connect_ex(const shc_opts *o, shc_refusal *why, char *err, size_t errsz)
{
    if (why)
        memset(why, 0, sizeof(*why));
    shc *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    c->fd = -1;
    sh_outq_init(&c->out);
    c->amf3 = o->amf3;
    int tmo = o->timeout_ms > 0 ? o->timeout_ms : 10000;
    if (shc_url_parse(o->url, &c->url, err, errsz) != 0)
        goto fail;
    c->fd = tcp_open(&c->url, tmo, o->rcvbuf, err, errsz);
    if (c->fd < 0)
        goto fail;
    rtmp_conn_config cfg;
    rtmp_conn_config_default(&cfg, RTMP_ROLE_CLIENT);
    uint8_t rnd[RTMP_HANDSHAKE_SIZE];
    fill_random(rnd, sizeof(rnd));
    c->rc = rtmp_conn_new(&cfg, &c->out, rnd, 0);
    if (!c->rc) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    amf_value *obj = amf_object_new(NULL);
    amf_object_set_cstr(obj, "app", amf_string_cstr(c->url.app));
    amf_object_set_cstr(obj, "flashVer", amf_string_cstr("sohub-cli/0.1"));
    amf_object_set_cstr(obj, "tcUrl", amf_string_cstr(c->url.tc_url));
    amf_object_set_cstr(obj, "fpad", amf_bool(false));
    amf_object_set_cstr(obj, "objectEncoding", amf_number(o->amf3 ? 3 : 0));
    amf_value *args[2 + SHC_MAX_EXTRA_ARGS];
    size_t nargs = 0;
    if (o->user || o->token)
        args[nargs++] = amf_string_cstr(o->user ? o->user : "");
    if (o->token)
        args[nargs++] = amf_string_cstr(o->token);
    for (size_t i = 0; o->extra_args && o->extra_args[i] && i < SHC_MAX_EXTRA_ARGS; i++)
        args[nargs++] = amf_string_cstr(o->extra_args[i]);
    /* connect is always AMF0 (as Flash sends it); queued until the
     * handshake is done. */
    int r = rtmp_conn_send_cmd(c->rc, 0, false, "connect", 1, obj, args, nargs);
    amf_unref(obj);
    for (size_t i = 0; i < nargs; i++)
        amf_unref(args[i]);
    c->next_txid = 2;
    if (r != 0 || flush_out(c) != 0) {
        snprintf(err, errsz, "cannot send connect: %s", c->err[0] ? c->err : sh_strerror(r));
        goto fail;
    }
    rtmp_cmd ans;
    r = shc_call_wait(c, 1, tmo, &ans);
    if (r <= 0) {
        if (r == 0)
            snprintf(err, errsz, "no answer to connect from %s:%d within %d ms", c->url.host,
                     c->url.port, tmo);
        else
            snprintf(err, errsz, "connect to %s:%d failed: %s", c->url.host, c->url.port,
                     c->err);
        goto fail;
    }
    const amf_value *info = ans.nargs ? ans.args[0] : NULL;
    if (strcmp(ans.name, "_result") != 0) {
        const char *d = str_member(info, "description");
        snprintf(err, errsz, "connect rejected (%s): %s", str_member(info, "code"),
                 *d ? d : "no description");
        if (why) {
            why->refused = true;
            copy_member(why->code, sizeof(why->code), info, "code");
            copy_member(why->description, sizeof(why->description), info, "description");
        }
        rtmp_cmd_cleanup(&ans);
        goto fail;
    }
    rtmp_cmd_cleanup(&ans);
    return c;
fail:
    shc_close(c);
    return NULL;
}

void shc_close(shc *c)
{
    if (!c)
        return;
    shc_event ev;
    while (queue_pop(c, &ev))
        shc_event_cleanup(&ev);
    free(c->q);
    rtmp_conn_free(c->rc);
    sh_outq_cleanup(&c->out);
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

int shc_fd(const shc *c) { return c->fd; }
const shc_url *shc_url_of(const shc *c) { return &c->url; }
const char *shc_error(const shc *c) { return c->err[0] ? c->err : "unknown error"; }
bool shc_closed(const shc *c) { return c->closed; }
uint8_t shc_so_type(const shc *c) { return c->amf3 ? SO_MSG_AMF3 : SO_MSG_AMF0; }

/* ---- sending ---- */

double shc_call_send(shc *c, const char *method, amf_value *const *args, size_t nargs,
                     bool want_answer)
{
    if (c->closed)
        return -1;
    double txid = want_answer ? c->next_txid++ : 0;
    if (rtmp_conn_send_cmd(c->rc, 0, c->amf3, method, txid, NULL, args, nargs) != 0 ||
        flush_out(c) != 0)
        return -1;
    return txid;
}

int shc_so_send(shc *c, const uint8_t *body, size_t len)
{
    if (c->closed)
        return -1;
    rtmp_msg m = {
        .type = shc_so_type(c),
        .stream_id = 0,
        .timestamp = 0,
        .csid = RTMP_CSID_COMMAND,
        .data = body,
        .len = len,
    };
    if (rtmp_conn_send(c->rc, &m) != 0)
        return -1;
    return flush_out(c);
}
