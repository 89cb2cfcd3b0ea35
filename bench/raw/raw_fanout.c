/* raw_fanout.c - sohub-raw-fanout: the fan-out ceiling of this machine.
 *
 * A deliberately minimal RTMP "server" for sohub-benchmark's fanout
 * scenario.  It does only what the benchmark client needs to see valid
 * RTMP and valid shared-object messages, with the cheapest possible work
 * per byte, so that the ratio sohub / raw tells how much of the kernel's
 * loopback capacity sohub leaves on the table:
 *   - handshake: S0 + a fixed S1 + S2 = echo of C1; C2 is skipped unread;
 *   - connect: fixed Window Ack Size, Set Peer Bandwidth, Set Chunk Size
 *     4096, then a fixed _result (only the transaction id is patched in);
 *     every other command is ignored;
 *   - SO Use: the connection joins the room of that name; a UseSuccess is
 *     sent back; Release leaves the room;
 *   - SO RequestChange: the (key, value) bytes of the request are copied
 *     unparsed into ONE Change message, chunked once into ONE refcounted
 *     buffer, and that buffer is queued to every other member of the room;
 *     the writer gets a Success for the first key of the request.
 * Output: each connection has an sh_outq; after every epoll_wait batch
 * each connection with pending output gets one writev of up to IOV_MAX
 * slices.  Not parsed: AMF values, anything but the first key of a
 * request, chunk stream ids above 63, protocol control other than Set
 * Chunk Size.  This is not a server; it is a measuring stick.
 *
 * usage: sohub-raw-fanout [--listen HOST:PORT] [--port-file FILE]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "sh_buf.h"
#include "sh_map.h"
#include "sh_rcbuf.h"

#define RAW_HS 1536
#define RAW_OUT_CHUNK 4096u
#define RAW_MAX_MSG (1u << 20)          /* largest message accepted */
#define RAW_MAX_IN ((size_t)2 << 20)    /* bytes buffered per connection */
#define RAW_MAX_OUT ((size_t)64 << 20)  /* unsent bytes before a client is dropped */
#define RAW_READ_MAX (256 * 1024)       /* bytes read per connection per wakeup */
#define RAW_CSIDS 64

typedef struct raw_room raw_room;

typedef struct raw_cs {
    uint32_t ts, len, sid, have;
    uint8_t type;
    bool ext;
    uint8_t *buf;
} raw_cs;

typedef struct raw_conn {
    int fd;
    int state;             /* 0: want C0C1, 1: want C2, 2: chunks */
    bool dirty, want_out, dead;
    struct raw_conn *dirty_next;
    uint8_t *in;
    size_t in_len, in_cap;
    uint32_t in_chunk;
    raw_cs cs[RAW_CSIDS];
    sh_outq out;
    raw_room *room;
    uint32_t room_idx;
} raw_conn;

struct raw_room {
    char *name;            /* the rooms map's key */
    size_t name_len;
    uint32_t version;
    raw_conn **subs;
    uint32_t nsubs, cap;
};

static sh_map rooms;       /* name -> raw_room (names come from clients) */
static raw_conn *dirty_head;
static int epfd;
static sh_rcbuf *canned_s0s1;
static sh_rcbuf *canned_preamble;
static volatile sig_atomic_t quit;

static void on_signal(int s) { (void)s; quit = 1; }

/* ---- output ---- */

static void mark_dirty(raw_conn *c)
{
    if (c->dirty || c->dead)
        return;
    c->dirty = true;
    c->dirty_next = dirty_head;
    dirty_head = c;
}

static void conn_kill(raw_conn *c);

/* Cuts a message into chunks of RAW_OUT_CHUNK on chunk stream 3 (type 0
 * header first, type 3 continuations). */
static sh_rcbuf *chunk_message(uint8_t type, const uint8_t *body, size_t len)
{
    size_t nchunks = len ? (len + RAW_OUT_CHUNK - 1) / RAW_OUT_CHUNK : 1;
    sh_rcbuf *b = sh_rcbuf_new(12 + len + (nchunks - 1));
    if (!b)
        return NULL;
    uint8_t *p = b->data;
    *p++ = 0x03; /* fmt 0, csid 3 */
    sh_put_u24be(p, 0); p += 3;
    sh_put_u24be(p, (uint32_t)len); p += 3;
    *p++ = type;
    memset(p, 0, 4); p += 4; /* message stream 0 (little endian) */
    size_t off = 0;
    while (off < len) {
        size_t n = len - off < RAW_OUT_CHUNK ? len - off : RAW_OUT_CHUNK;
        if (off > 0)
            *p++ = 0xC3; /* fmt 3, csid 3 */
        memcpy(p, body + off, n);
        p += n;
        off += n;
    }
    b->len = (size_t)(p - b->data);
    return b;
}

static void queue_buf(raw_conn *c, sh_rcbuf *b)
{
    if (c->dead)
        return;
    if (sh_outq_push(&c->out, b) < 0 || c->out.bytes > RAW_MAX_OUT) {
        conn_kill(c);
        return;
    }
    mark_dirty(c);
}

static void flush(raw_conn *c)
{
    struct iovec iov[IOV_MAX];
    while (c->out.bytes > 0) {
        size_t n = sh_outq_iov(&c->out, iov, IOV_MAX);
        ssize_t w = writev(c->fd, iov, (int)n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (!c->want_out) {
                    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
                    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                    c->want_out = true;
                }
                return;
            }
            conn_kill(c);
            return;
        }
        sh_outq_consume(&c->out, (size_t)w);
        size_t total = 0;
        for (size_t i = 0; i < n; i++)
            total += iov[i].iov_len;
        if ((size_t)w < total)
            continue; /* the kernel took less; try once more, then EAGAIN */
    }
    if (c->want_out) {
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = false;
    }
}

/* ---- rooms ---- */

static raw_room *room_get(const uint8_t *name, size_t n)
{
    raw_room *r = sh_map_get(&rooms, name, n);
    if (r)
        return r;
    r = calloc(1, sizeof *r);
    if (!r || !(r->name = malloc(n ? n : 1))) {
        free(r);
        return NULL;
    }
    memcpy(r->name, name, n);
    r->name_len = n;
    if (sh_map_put(&rooms, r->name, n, r) != 0) {
        free(r->name);
        free(r);
        return NULL;
    }
    return r;
}

static void room_leave(raw_conn *c)
{
    raw_room *r = c->room;
    if (!r)
        return;
    raw_conn *last = r->subs[--r->nsubs];
    r->subs[c->room_idx] = last;
    last->room_idx = c->room_idx;
    c->room = NULL;
}

static int room_join(raw_room *r, raw_conn *c)
{
    if (c->room == r)
        return 0;
    room_leave(c);
    if (r->nsubs == r->cap) {
        uint32_t cap = r->cap ? r->cap * 2 : 16;
        raw_conn **s = realloc(r->subs, cap * sizeof *s);
        if (!s)
            return -1;
        r->subs = s;
        r->cap = cap;
    }
    c->room = r;
    c->room_idx = r->nsubs;
    r->subs[r->nsubs++] = c;
    return 0;
}

/* ---- messages ---- */

static void so_header(sh_buf *b, const raw_room *r, uint32_t flags)
{
    sh_buf_put_u16be(b, (uint16_t)r->name_len);
    sh_buf_append(b, r->name, r->name_len);
    sh_buf_put_u32be(b, r->version);
    sh_buf_put_u32be(b, flags);
    sh_buf_put_u32be(b, 0);
}

static void send_body(raw_conn *c, uint8_t type, sh_buf *b)
{
    if (b->failed) {
        conn_kill(c);
        return;
    }
    sh_rcbuf *m = chunk_message(type, b->data, b->len);
    if (!m) {
        conn_kill(c);
        return;
    }
    queue_buf(c, m);
    sh_rcbuf_unref(m);
}

static void amf_str(sh_buf *b, const char *s)
{
    size_t n = strlen(s);
    sh_buf_put_u8(b, 0x02);
    sh_buf_put_u16be(b, (uint16_t)n);
    sh_buf_append(b, s, n);
}

static void amf_key(sh_buf *b, const char *s)
{
    size_t n = strlen(s);
    sh_buf_put_u16be(b, (uint16_t)n);
    sh_buf_append(b, s, n);
}

static void on_connect_cmd(raw_conn *c, double txid)
{
    sh_buf b;
    sh_buf_init(&b, 4096);
    amf_str(&b, "_result");
    sh_buf_put_u8(&b, 0x00);
    sh_buf_put_f64be(&b, txid);
    sh_buf_put_u8(&b, 0x03);
    amf_key(&b, "fmsVer"); amf_str(&b, "FMS/3,5,7,7009");
    amf_key(&b, "capabilities"); sh_buf_put_u8(&b, 0x00); sh_buf_put_f64be(&b, 31);
    amf_key(&b, ""); sh_buf_put_u8(&b, 0x09);
    sh_buf_put_u8(&b, 0x03);
    amf_key(&b, "level"); amf_str(&b, "status");
    amf_key(&b, "code"); amf_str(&b, "NetConnection.Connect.Success");
    amf_key(&b, "description"); amf_str(&b, "Connection succeeded.");
    amf_key(&b, "objectEncoding"); sh_buf_put_u8(&b, 0x00); sh_buf_put_f64be(&b, 0);
    amf_key(&b, ""); sh_buf_put_u8(&b, 0x09);
    queue_buf(c, canned_preamble);
    send_body(c, 20, &b);
    sh_buf_cleanup(&b);
}

static void on_command(raw_conn *c, const uint8_t *p, size_t n)
{
    static const char name[] = "connect";
    if (n < 3 + 7 + 9 || p[0] != 0x02 || sh_get_u16be(p + 1) != 7 ||
        memcmp(p + 3, name, 7) != 0 || p[10] != 0x00)
        return; /* only connect is answered */
    sh_rd r;
    double txid;
    sh_rd_init(&r, p + 11, 8);
    sh_rd_f64be(&r, &txid);
    on_connect_cmd(c, txid);
}

static void on_so(raw_conn *c, const uint8_t *body, size_t len)
{
    sh_rd r;
    sh_rd_init(&r, body, len);
    uint16_t nn;
    const uint8_t *name;
    uint32_t version, flags, reserved;
    if (sh_rd_u16be(&r, &nn) < 0 || sh_rd_bytes(&r, nn, &name) < 0 ||
        sh_rd_u32be(&r, &version) < 0 || sh_rd_u32be(&r, &flags) < 0 ||
        sh_rd_u32be(&r, &reserved) < 0) {
        conn_kill(c);
        return;
    }
    while (sh_rd_left(&r) > 0 && !c->dead) {
        uint8_t type;
        uint32_t elen;
        const uint8_t *ev;
        if (sh_rd_u8(&r, &type) < 0 || sh_rd_u32be(&r, &elen) < 0 ||
            sh_rd_bytes(&r, elen, &ev) < 0) {
            conn_kill(c);
            return;
        }
        if (type == 1) { /* Use */
            raw_room *room = room_get(name, nn);
            if (!room || room_join(room, c) < 0) {
                conn_kill(c);
                return;
            }
            sh_buf b;
            sh_buf_init(&b, 1 << 17);
            so_header(&b, room, flags & 2);
            sh_buf_put_u8(&b, 11);
            sh_buf_put_u32be(&b, 0);
            send_body(c, 19, &b);
            sh_buf_cleanup(&b);
        } else if (type == 2) { /* Release */
            room_leave(c);
        } else if (type == 3 && c->room && elen >= 2) { /* RequestChange */
            raw_room *room = c->room;
            room->version++;
            /* one Change for everybody else, built and chunked once */
            sh_buf b;
            sh_buf_init(&b, RAW_MAX_MSG + 4096);
            so_header(&b, room, flags & 2);
            sh_buf_put_u8(&b, 4);
            sh_buf_put_u32be(&b, elen);
            sh_buf_append(&b, ev, elen);
            sh_rcbuf *change = b.failed ? NULL : chunk_message(19, b.data, b.len);
            sh_buf_cleanup(&b);
            if (!change) {
                conn_kill(c);
                return;
            }
            for (uint32_t i = 0; i < room->nsubs; i++)
                if (room->subs[i] != c)
                    queue_buf(room->subs[i], change);
            sh_rcbuf_unref(change);
            /* Success for the first key */
            uint16_t kn = sh_get_u16be(ev);
            if ((size_t)kn + 2 <= elen) {
                sh_buf s;
                sh_buf_init(&s, 1 << 17);
                so_header(&s, room, flags & 2);
                sh_buf_put_u8(&s, 5);
                sh_buf_put_u32be(&s, (uint32_t)kn + 2);
                sh_buf_put_u16be(&s, kn);
                sh_buf_append(&s, ev + 2, kn);
                send_body(c, 19, &s);
                sh_buf_cleanup(&s);
            }
        }
    }
}

static void on_message(raw_conn *c, uint8_t type, const uint8_t *p, size_t n)
{
    switch (type) {
    case 1: /* Set Chunk Size */
        if (n >= 4) {
            uint32_t sz = sh_get_u32be(p) & 0x7fffffffu;
            if (sz == 0 || sz > RAW_MAX_MSG) {
                conn_kill(c);
                return;
            }
            c->in_chunk = sz;
        }
        break;
    case 20:
        on_command(c, p, n);
        break;
    case 19:
        on_so(c, p, n);
        break;
    default:
        break;
    }
}

/* ---- input ---- */

/* Parses one chunk at p[0..n).  Returns bytes used, 0 when more input is
 * needed, -1 on a protocol error. */
static ssize_t parse_chunk(raw_conn *c, const uint8_t *p, size_t n)
{
    if (n < 1)
        return 0;
    uint8_t fmt = p[0] >> 6;
    uint32_t csid = p[0] & 0x3f;
    if (csid < 2 || csid >= RAW_CSIDS)
        return -1;
    raw_cs *s = &c->cs[csid];
    static const size_t hlen[4] = { 11, 7, 3, 0 };
    size_t need = 1 + hlen[fmt];
    if (n < need)
        return 0;
    const uint8_t *h = p + 1;
    uint32_t ts = 0;
    bool ext = s->ext;
    if (fmt <= 2) {
        ts = sh_get_u24be(h);
        ext = ts == 0xFFFFFF;
    }
    if (ext)
        need += 4;
    if (n < need)
        return 0;
    if (s->have == 0) {
        if (fmt <= 1) {
            uint32_t len = sh_get_u24be(h + 3);
            if (len > RAW_MAX_MSG)
                return -1;
            s->len = len;
            s->type = h[6];
        }
        s->ext = ext;
    } else if (fmt != 3) {
        return -1; /* a new header in the middle of a message */
    }
    uint32_t left = s->len - s->have;
    uint32_t take = left < c->in_chunk ? left : c->in_chunk;
    if (n < need + take)
        return 0;
    if (s->have == 0 && take == s->len) {
        /* whole message in one chunk: no copy */
        on_message(c, s->type, p + need, take);
        return (ssize_t)(need + take);
    }
    if (!s->buf) {
        s->buf = malloc(RAW_MAX_MSG);
        if (!s->buf)
            return -1;
    }
    memcpy(s->buf + s->have, p + need, take);
    s->have += take;
    if (s->have == s->len) {
        s->have = 0;
        on_message(c, s->type, s->buf, s->len);
    }
    return (ssize_t)(need + take);
}

static void handle_input(raw_conn *c)
{
    size_t off = 0;
    while (!c->dead) {
        const uint8_t *p = c->in + off;
        size_t n = c->in_len - off;
        if (c->state == 0) {
            if (n < 1 + RAW_HS)
                break;
            queue_buf(c, canned_s0s1);
            if (!c->dead && sh_outq_push_copy(&c->out, p + 1, RAW_HS) < 0)
                conn_kill(c);
            mark_dirty(c);
            off += 1 + RAW_HS;
            c->state = 1;
        } else if (c->state == 1) {
            if (n < RAW_HS)
                break;
            off += RAW_HS;
            c->state = 2;
        } else {
            ssize_t used = parse_chunk(c, p, n);
            if (used < 0) {
                conn_kill(c);
                return;
            }
            if (used == 0)
                break;
            off += (size_t)used;
        }
    }
    if (c->dead)
        return;
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}

static void on_readable(raw_conn *c)
{
    size_t got = 0;
    while (got < RAW_READ_MAX && !c->dead) {
        if (c->in_cap - c->in_len < 65536) {
            size_t cap = c->in_cap ? c->in_cap * 2 : 65536 + 4096;
            if (cap > RAW_MAX_IN) {
                conn_kill(c);
                return;
            }
            uint8_t *in = realloc(c->in, cap);
            if (!in) {
                conn_kill(c);
                return;
            }
            c->in = in;
            c->in_cap = cap;
        }
        ssize_t r = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            break;
        if (r <= 0) {
            conn_kill(c);
            return;
        }
        c->in_len += (size_t)r;
        got += (size_t)r;
        handle_input(c);
        if ((size_t)r < 65536)
            break;
    }
}

/* ---- connection lifetime ---- */

static raw_conn **graveyard;
static size_t ngrave, grave_cap;

static void conn_free(raw_conn *c)
{
    sh_outq_cleanup(&c->out);
    for (int i = 0; i < RAW_CSIDS; i++)
        free(c->cs[i].buf);
    free(c->in);
    free(c);
}

/* Marks c dead and closes its socket; the memory goes after the current
 * batch (it may still be on the dirty list or in this batch's events). */
static void conn_kill(raw_conn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    room_leave(c);
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (ngrave == grave_cap) {
        size_t cap = grave_cap ? grave_cap * 2 : 1024;
        raw_conn **g = realloc(graveyard, cap * sizeof *g);
        if (!g)
            return; /* leaked on purpose rather than risk a use after free */
        graveyard = g;
        grave_cap = cap;
    }
    graveyard[ngrave++] = c;
}

static void on_accept(int lfd)
{
    for (int i = 0; i < 256; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        raw_conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->in_chunk = 128;
        sh_outq_init(&c->out);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
        }
    }
}

static sh_rcbuf *make_preamble(void)
{
    sh_buf b;
    sh_buf_init(&b, 256);
    /* Window Ack Size 2500000, Set Peer Bandwidth 2500000 dynamic,
     * Set Chunk Size 4096: chunk stream 2, message stream 0 */
    sh_buf_put_u8(&b, 0x02); sh_buf_put_u24be(&b, 0); sh_buf_put_u24be(&b, 4);
    sh_buf_put_u8(&b, 5); sh_buf_put_u32le(&b, 0); sh_buf_put_u32be(&b, 2500000);
    sh_buf_put_u8(&b, 0x02); sh_buf_put_u24be(&b, 0); sh_buf_put_u24be(&b, 5);
    sh_buf_put_u8(&b, 6); sh_buf_put_u32le(&b, 0); sh_buf_put_u32be(&b, 2500000);
    sh_buf_put_u8(&b, 2);
    sh_buf_put_u8(&b, 0x02); sh_buf_put_u24be(&b, 0); sh_buf_put_u24be(&b, 4);
    sh_buf_put_u8(&b, 1); sh_buf_put_u32le(&b, 0); sh_buf_put_u32be(&b, RAW_OUT_CHUNK);
    sh_rcbuf *r = b.failed ? NULL : sh_rcbuf_copy(b.data, b.len);
    sh_buf_cleanup(&b);
    return r;
}

static sh_rcbuf *make_s0s1(void)
{
    sh_rcbuf *b = sh_rcbuf_new(1 + RAW_HS);
    if (!b)
        return NULL;
    b->data[0] = 3;
    memset(b->data + 1, 0, 8); /* time 0, zero: a simple handshake */
    for (size_t i = 9; i < 1 + RAW_HS; i++)
        b->data[i] = (uint8_t)(i * 167 + 13);
    b->len = 1 + RAW_HS;
    return b;
}

int main(int argc, char **argv)
{
    const char *listen_at = "127.0.0.1:1936";
    const char *port_file = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
            listen_at = argv[++i];
        else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc)
            port_file = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--listen HOST:PORT] [--port-file FILE]\n", argv[0]);
            return 2;
        }
    }
    char host[64];
    const char *colon = strrchr(listen_at, ':');
    if (!colon || (size_t)(colon - listen_at) >= sizeof host) {
        fprintf(stderr, "sohub-raw-fanout: bad --listen %s\n", listen_at);
        return 2;
    }
    memcpy(host, listen_at, (size_t)(colon - listen_at));
    host[colon - listen_at] = 0;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "sohub-raw-fanout: bad address %s\n", host);
        return 2;
    }
    uint8_t seed[16];
    if (getrandom(seed, sizeof seed, 0) != (ssize_t)sizeof seed) {
        perror("sohub-raw-fanout: getrandom");
        return 1;
    }
    sh_hash_set_seed(seed); /* room names come from clients */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    canned_s0s1 = make_s0s1();
    canned_preamble = make_preamble();
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4096) < 0) {
        perror("sohub-raw-fanout: listen");
        return 1;
    }
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    if (port_file) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%u\n", ntohs(sa.sin_port)) < 0 || fclose(f) != 0 ||
            rename(tmp, port_file) < 0) {
            perror("sohub-raw-fanout: port file");
            return 1;
        }
    }
    fprintf(stderr, "sohub-raw-fanout: listening on %s:%u\n", host, ntohs(sa.sin_port));
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
    struct epoll_event evs[512];
    while (!quit) {
        int n = epoll_wait(epfd, evs, 512, 500);
        for (int i = 0; i < n; i++) {
            raw_conn *c = evs[i].data.ptr;
            if (!c) {
                on_accept(lfd);
                continue;
            }
            if (c->dead)
                continue;
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                on_readable(c);
            if (!c->dead && (evs[i].events & EPOLLOUT))
                mark_dirty(c);
        }
        while (dirty_head) {
            raw_conn *c = dirty_head;
            dirty_head = c->dirty_next;
            c->dirty = false;
            if (!c->dead)
                flush(c);
        }
        for (size_t i = 0; i < ngrave; i++)
            conn_free(graveyard[i]);
        ngrave = 0;
    }
    close(lfd);
    close(epfd);
    return 0;
}
