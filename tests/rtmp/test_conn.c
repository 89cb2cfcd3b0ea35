/* rtmp_conn tests: a client conn and a server conn wired together in
 * memory. */
#include "util.h"

typedef struct side {
    rtmp_conn *c;
    sh_outq q;
    tmsgs got;
    int err;
} side;

static void side_init(side *s, const rtmp_conn_config *cfg, uint8_t seed)
{
    memset(s, 0, sizeof(*s));
    sh_outq_init(&s->q);
    uint8_t rnd[RTMP_HANDSHAKE_SIZE];
    for (size_t i = 0; i < sizeof(rnd); i++)
        rnd[i] = (uint8_t)(i * 31 + seed);
    s->c = rtmp_conn_new(cfg, &s->q, rnd, 1000);
    cr_assert(s->c);
}

static void side_cleanup(side *s)
{
    rtmp_conn_free(s->c);
    sh_outq_cleanup(&s->q);
    tmsgs_free(&s->got);
}

/* Moves pending output of `from` into `to`, in pieces of at most `step`
 * bytes (0 = all).  Returns the bytes moved. */
static size_t move(side *from, side *to, size_t step)
{
    size_t moved = 0;
    while (from->q.bytes > 0) {
        struct iovec iov[1];
        size_t n = sh_outq_iov(&from->q, iov, 1);
        cr_assert_eq(n, 1);
        size_t len = iov[0].iov_len;
        if (step && len > step)
            len = step;
        uint8_t *tmp = malloc(len);
        memcpy(tmp, iov[0].iov_base, len);
        sh_outq_consume(&from->q, len);
        size_t at = 0;
        for (int guard = 0; guard < 100000 && at <= len; guard++) {
            size_t used = 0;
            rtmp_msg m;
            sh_error err = {0};
            int rc = rtmp_conn_feed(to->c, tmp + at, len - at, &used, &m, &err);
            at += used;
            if (rc < 0) {
                to->err = rc;
                break;
            }
            if (rc == 1) {
                tmsgs_push(&to->got, &m);
                continue;
            }
            cr_assert_eq(at, len);
            break;
        }
        free(tmp);
        moved += len;
        if (to->err)
            break;
    }
    return moved;
}

static void pump(side *a, side *b, size_t step)
{
    for (int i = 0; i < 100; i++) {
        size_t n = move(a, b, step) + move(b, a, step);
        if (n == 0)
            break;
    }
}

static void pair_init(side *cl, side *sv, bool digest)
{
    rtmp_conn_config cc, sc;
    rtmp_conn_config_default(&cc, RTMP_ROLE_CLIENT);
    rtmp_conn_config_default(&sc, RTMP_ROLE_SERVER);
    cc.client_digest = digest;
    side_init(cl, &cc, 1);
    side_init(sv, &sc, 2);
}

static const tmsg *find_type(const tmsgs *l, uint8_t type, size_t nth)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].m.type == type && nth-- == 0)
            return &l->v[i];
    return NULL;
}

Test(conn, defaults)
{
    rtmp_conn_config c;
    rtmp_conn_config_default(&c, RTMP_ROLE_SERVER);
    cr_assert_eq(c.out_chunk_size, 4096);
    cr_assert_eq(c.window_ack_size, 2500000);
    cr_assert_eq(c.limits.max_chunk_size, RTMP_DEFAULT_MAX_CHUNK_SIZE);
    rtmp_conn_config_default(&c, RTMP_ROLE_CLIENT);
    cr_assert_eq(c.role, RTMP_ROLE_CLIENT);
    cr_assert_eq(c.out_chunk_size, 4096);
}

Test(conn, handshake_completes)
{
    for (int digest = 0; digest <= 1; digest++) {
        for (size_t step = 0; step <= 1000; step += 333) {
            side cl, sv;
            pair_init(&cl, &sv, digest);
            cr_assert(!rtmp_conn_handshake_done(cl.c));
            cr_assert_eq(cl.q.bytes, 1 + RTMP_HANDSHAKE_SIZE, "client queues C0+C1 at once");
            pump(&cl, &sv, step);
            cr_assert_eq(cl.err, 0);
            cr_assert_eq(sv.err, 0);
            cr_assert(rtmp_conn_handshake_done(cl.c));
            cr_assert(rtmp_conn_handshake_done(sv.c));
            cr_assert_eq(rtmp_conn_handshake_kind(sv.c), digest ? 1 : 0);
            cr_assert_eq(rtmp_conn_out_chunk_size(cl.c), 4096);
            /* the client announced its chunk size: no message surfaced */
            cr_assert_eq(sv.got.n, 0);
            cr_assert_eq(cl.got.n, 0);
            cr_assert_geq(rtmp_conn_bytes_in(sv.c), 1 + 2 * RTMP_HANDSHAKE_SIZE);
            side_cleanup(&cl);
            side_cleanup(&sv);
        }
    }
}

Test(conn, sends_before_handshake_are_deferred)
{
    side cl, sv;
    pair_init(&cl, &sv, false);
    uint8_t big[10000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)i;
    rtmp_msg m = {RTMP_MSG_COMMAND_AMF0, 0, 0, RTMP_CSID_COMMAND, big, sizeof(big)};
    cr_assert_eq(rtmp_conn_send(cl.c, &m), 0);
    cr_assert_eq(cl.q.bytes, 1 + RTMP_HANDSHAKE_SIZE, "nothing but C0+C1 before the handshake");
    pump(&cl, &sv, 0);
    cr_assert_eq(sv.err, 0);
    cr_assert_eq(sv.got.n, 1);
    cr_assert(msg_eq(&sv.got.v[0].m, &m));
    side_cleanup(&cl);
    side_cleanup(&sv);
}

Test(conn, preamble_applied_by_client)
{
    side cl, sv;
    pair_init(&cl, &sv, false);
    pump(&cl, &sv, 0);
    cr_assert_eq(rtmp_conn_out_chunk_size(sv.c), RTMP_DEFAULT_CHUNK_SIZE);
    cr_assert_eq(rtmp_conn_send_connect_preamble(sv.c), 0);
    cr_assert_eq(rtmp_conn_out_chunk_size(sv.c), 4096);
    /* the preamble bytes: Window Ack Size, Set Peer Bandwidth, Set Chunk Size */
    struct iovec iov[8];
    size_t n = sh_outq_iov(&sv.q, iov, 8);
    sh_buf all;
    sh_buf_init(&all, 0);
    for (size_t i = 0; i < n; i++)
        sh_buf_append(&all, iov[i].iov_base, iov[i].iov_len);
    rtmp_chunk_dec *d = rtmp_chunk_dec_new(NULL);
    tmsgs pre = {0};
    cr_assert_eq(feed_split(d, all.data, all.len, 0, 0, &pre, NULL), 0);
    cr_assert_eq(pre.n, 3);
    cr_assert_eq(pre.v[0].m.type, RTMP_MSG_WINDOW_ACK_SIZE);
    cr_assert_eq(sh_get_u32be(pre.v[0].m.data), 2500000u);
    cr_assert_eq(pre.v[1].m.type, RTMP_MSG_SET_PEER_BW);
    cr_assert_eq(pre.v[1].m.len, 5);
    cr_assert_eq(sh_get_u32be(pre.v[1].m.data), 2500000u);
    cr_assert_eq(pre.v[1].m.data[4], 2);
    cr_assert_eq(pre.v[2].m.type, RTMP_MSG_SET_CHUNK_SIZE);
    cr_assert_eq(sh_get_u32be(pre.v[2].m.data), 4096u);
    for (size_t i = 0; i < 3; i++)
        cr_assert_eq(pre.v[i].m.csid, RTMP_CSID_CONTROL);
    tmsgs_free(&pre);
    rtmp_chunk_dec_free(d);
    sh_buf_cleanup(&all);

    /* a big message in 4096-byte chunks decodes on the client */
    uint8_t big[20000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i ^ 0x55);
    rtmp_msg m = {RTMP_MSG_DATA_AMF0, 1, 5, 5, big, sizeof(big)};
    cr_assert_eq(rtmp_conn_send(sv.c, &m), 0);
    pump(&cl, &sv, 0);
    cr_assert_eq(cl.err, 0);
    cr_assert_eq(sv.err, 0);
    cr_assert_eq(cl.got.n, 1, "control messages stay inside; got %zu", cl.got.n);
    cr_assert(msg_eq(&cl.got.v[0].m, &m));
    /* the client answered Set Peer Bandwidth with its Window Ack Size */
    cr_assert_eq(rtmp_conn_peer_window(sv.c), 2500000u);
    cr_assert_eq(rtmp_conn_peer_window(cl.c), 2500000u);
    cr_assert_eq(sv.got.n, 0);
    side_cleanup(&cl);
    side_cleanup(&sv);
}

Test(conn, ping_answered_and_response_reported)
{
    side cl, sv;
    pair_init(&cl, &sv, true);
    pump(&cl, &sv, 0);
    cr_assert_eq(rtmp_conn_send_user_control(sv.c, RTMP_UC_PING_REQUEST, 123456), 0);
    pump(&cl, &sv, 7);
    cr_assert_eq(cl.got.n, 0, "ping request is handled inside");
    const tmsg *r = find_type(&sv.got, RTMP_MSG_USER_CONTROL, 0);
    cr_assert(r);
    cr_assert_eq(r->m.len, 6);
    cr_assert_eq(sh_get_u16be(r->m.data), RTMP_UC_PING_RESPONSE);
    cr_assert_eq(sh_get_u32be(r->m.data + 2), 123456u);
    /* other user control events go to the caller */
    cr_assert_eq(rtmp_conn_send_user_control(sv.c, RTMP_UC_STREAM_BEGIN, 1), 0);
    pump(&cl, &sv, 0);
    cr_assert_eq(cl.got.n, 1);
    cr_assert_eq(sh_get_u16be(cl.got.v[0].m.data), RTMP_UC_STREAM_BEGIN);
    side_cleanup(&cl);
    side_cleanup(&sv);
}

Test(conn, acks_after_window)
{
    side cl, sv;
    rtmp_conn_config cc, sc;
    rtmp_conn_config_default(&cc, RTMP_ROLE_CLIENT);
    rtmp_conn_config_default(&sc, RTMP_ROLE_SERVER);
    sc.window_ack_size = 5000;
    side_init(&cl, &cc, 3);
    side_init(&sv, &sc, 4);
    pump(&cl, &sv, 0);
    cr_assert_eq(rtmp_conn_send_connect_preamble(sv.c), 0);
    pump(&cl, &sv, 0);
    cr_assert_eq(rtmp_conn_peer_window(cl.c), 5000u);
    cr_assert_eq(rtmp_conn_peer_window(sv.c), 5000u, "client answered with Window Ack Size");
    uint64_t before = rtmp_conn_acks_received(sv.c);
    uint8_t p[1000] = {0};
    rtmp_msg m = {RTMP_MSG_AUDIO, 1, 0, 4, p, sizeof(p)};
    for (int i = 0; i < 30; i++) {
        m.timestamp = (uint32_t)i * 20;
        cr_assert_eq(rtmp_conn_send(sv.c, &m), 0);
        pump(&cl, &sv, 0);
    }
    uint64_t acks = rtmp_conn_acks_received(sv.c) - before;
    cr_assert_geq(acks, 5, "acks %llu", (unsigned long long)acks);
    cr_assert_leq(acks, 7);
    cr_assert_gt(rtmp_conn_peer_ack(sv.c), 25000u);
    cr_assert_leq(rtmp_conn_peer_ack(sv.c), (uint32_t)rtmp_conn_bytes_in(cl.c));
    /* acks do not surface as messages */
    cr_assert_null(find_type(&sv.got, RTMP_MSG_ACK, 0));
    cr_assert_eq(cl.got.n, 30);
    side_cleanup(&cl);
    side_cleanup(&sv);
}

Test(conn, set_chunk_size_limits)
{
    const struct { uint32_t v; int rc; } cases[] = {
        {1, 0},
        {RTMP_DEFAULT_MAX_CHUNK_SIZE, 0},
        {RTMP_DEFAULT_MAX_CHUNK_SIZE + 1, SH_ELIMIT},
        {0, SH_EPROTO},
        {0x80000000u, SH_EPROTO},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        side cl, sv;
        pair_init(&cl, &sv, false);
        pump(&cl, &sv, 0);
        uint8_t b[4];
        sh_put_u32be(b, cases[i].v);
        rtmp_msg m = {RTMP_MSG_SET_CHUNK_SIZE, 0, 0, 2, b, 4};
        cr_assert_eq(rtmp_conn_send(cl.c, &m), 0);
        pump(&cl, &sv, 0);
        cr_assert_eq(sv.err, cases[i].rc, "value %u: rc %d", cases[i].v, sv.err);
        side_cleanup(&cl);
        side_cleanup(&sv);
    }
}

Test(conn, client_chunk_size_one_and_back)
{
    side cl, sv;
    pair_init(&cl, &sv, false);
    pump(&cl, &sv, 0);
    cr_assert_eq(rtmp_conn_set_out_chunk_size(cl.c, 1), 0);
    uint8_t p[50];
    memset(p, 'q', sizeof(p));
    rtmp_msg m = {RTMP_MSG_COMMAND_AMF0, 0, 0, 3, p, sizeof(p)};
    cr_assert_eq(rtmp_conn_send(cl.c, &m), 0);
    cr_assert_eq(rtmp_conn_set_out_chunk_size(cl.c, 60000), 0);
    cr_assert_eq(rtmp_conn_send(cl.c, &m), 0);
    pump(&cl, &sv, 3);
    cr_assert_eq(sv.err, 0);
    cr_assert_eq(sv.got.n, 2);
    cr_assert(msg_eq(&sv.got.v[0].m, &m));
    cr_assert(msg_eq(&sv.got.v[1].m, &m));
    cr_assert_eq(rtmp_conn_set_out_chunk_size(cl.c, 0), SH_EINVAL);
    side_cleanup(&cl);
    side_cleanup(&sv);
}

Test(conn, shared_buffers_leave_header_state_alone)
{
    side cl, sv;
    pair_init(&cl, &sv, false);
    pump(&cl, &sv, 0);
    cr_assert_eq(rtmp_conn_send_connect_preamble(sv.c), 0);
    uint8_t a[100], b[7000];
    memset(a, 'a', sizeof(a));
    memset(b, 'b', sizeof(b));
    rtmp_msg ma = {RTMP_MSG_COMMAND_AMF0, 0, 0, 3, a, sizeof(a)};
    rtmp_msg mb = {RTMP_MSG_SO_AMF0, 0, 0, RTMP_CSID_SHARED, b, sizeof(b)};
    uint32_t cs = rtmp_conn_out_chunk_size(sv.c);
    cr_assert_eq(rtmp_conn_send(sv.c, &ma), 0);
    sh_rcbuf *sb = rtmp_chunk_shared(&mb, cs);
    cr_assert(sb);
    cr_assert_eq(rtmp_conn_send_shared(sv.c, sb, cs), 0);
    cr_assert_eq(rtmp_conn_send_shared(sv.c, sb, cs), 0);
    /* commands on their own chunk stream keep compressing against ma */
    cr_assert_eq(rtmp_conn_send(sv.c, &ma), 0);
    cr_assert_eq(rtmp_conn_send(sv.c, &ma), 0);
    sh_rcbuf *wrong = rtmp_chunk_shared(&mb, 128);
    cr_assert_eq(rtmp_conn_send_shared(sv.c, wrong, 128), SH_EINVAL, "cut with another chunk size");
    sh_rcbuf_unref(wrong);
    pump(&cl, &sv, 0);
    cr_assert_eq(cl.err, 0);
    cr_assert_eq(cl.got.n, 5);
    cr_assert(msg_eq(&cl.got.v[0].m, &ma));
    cr_assert(msg_eq(&cl.got.v[1].m, &mb));
    cr_assert(msg_eq(&cl.got.v[2].m, &mb));
    cr_assert(msg_eq(&cl.got.v[3].m, &ma));
    cr_assert(msg_eq(&cl.got.v[4].m, &ma));
    sh_rcbuf_unref(sb);
    side_cleanup(&cl);
    side_cleanup(&sv);
}

Test(conn, abort_and_bad_control)
{
    side cl, sv;
    pair_init(&cl, &sv, false);
    pump(&cl, &sv, 0);
    /* a short Set Chunk Size is a protocol error */
    uint8_t b[2] = {0, 1};
    rtmp_msg m = {RTMP_MSG_SET_CHUNK_SIZE, 0, 0, 2, b, 2};
    cr_assert_eq(rtmp_conn_send(cl.c, &m), 0);
    pump(&cl, &sv, 0);
    cr_assert_eq(sv.err, SH_EPROTO);
    side_cleanup(&cl);
    side_cleanup(&sv);
}

Test(conn, garbage_after_handshake)
{
    uint64_t seed = 42;
    for (int iter = 0; iter < 200; iter++) {
        side cl, sv;
        pair_init(&cl, &sv, iter % 2);
        pump(&cl, &sv, 0);
        uint8_t junk[2000];
        size_t n = 1 + trand(&seed) % sizeof(junk);
        for (size_t i = 0; i < n; i++)
            junk[i] = (uint8_t)trand(&seed);
        cr_assert_eq(sh_outq_push_copy(&cl.q, junk, n), 0);
        pump(&cl, &sv, 1 + trand(&seed) % 64);
        side_cleanup(&cl);
        side_cleanup(&sv);
    }
}

Test(conn, handshake_tail_and_first_chunk_in_one_buffer)
{
    side cl, sv;
    pair_init(&cl, &sv, true);
    uint8_t p[300];
    memset(p, 'c', sizeof(p));
    rtmp_msg m = {RTMP_MSG_COMMAND_AMF0, 0, 0, 3, p, sizeof(p)};
    cr_assert_eq(rtmp_conn_send(cl.c, &m), 0);
    move(&cl, &sv, 0);          /* C0 C1 */
    move(&sv, &cl, 0);          /* S0 S1 S2 -> client queues C2, Set Chunk Size, message */
    cr_assert(rtmp_conn_handshake_done(cl.c));
    sh_buf all;
    sh_buf_init(&all, 0);
    struct iovec iov[16];
    size_t n = sh_outq_iov(&cl.q, iov, 16);
    for (size_t i = 0; i < n; i++)
        sh_buf_append(&all, iov[i].iov_base, iov[i].iov_len);
    sh_outq_consume(&cl.q, cl.q.bytes);
    cr_assert_gt(all.len, RTMP_HANDSHAKE_SIZE);
    size_t used = 0;
    rtmp_msg got;
    sh_error err = {0};
    cr_assert_eq(rtmp_conn_feed(sv.c, all.data, all.len, &used, &got, &err), 1);
    cr_assert_eq(used, all.len);
    cr_assert(msg_eq(&got, &m));
    cr_assert(rtmp_conn_handshake_done(sv.c));
    sh_buf_cleanup(&all);
    side_cleanup(&cl);
    side_cleanup(&sv);
}
