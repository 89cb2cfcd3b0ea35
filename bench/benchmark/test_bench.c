/* test_bench.c - unit tests of the benchmark's histogram and its
 * zero-allocation shared-object reader. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amf.h"
#include "bench_hist.h"
#include "bench_so.h"
#include "so_wire.h"

Test(hist, buckets_cover_values_in_order)
{
    unsigned prev = 0;
    for (uint64_t v = 0; v < 200000; v += (v < 100 ? 1 : v / 50)) {
        unsigned b = bench_hist_bucket(v);
        uint64_t lo, hi;
        bench_hist_bucket_range(b, &lo, &hi);
        cr_assert(lo <= v && v <= hi, "v=%llu in [%llu,%llu]", (unsigned long long)v,
                  (unsigned long long)lo, (unsigned long long)hi);
        cr_assert(b >= prev);
        /* relative width at most 1/16 */
        cr_assert(hi - lo <= lo / 16 + 1);
        prev = b;
    }
    cr_assert_eq(bench_hist_bucket(UINT64_MAX), BENCH_HIST_BUCKETS - 1);
}

Test(hist, quantiles_of_a_uniform_run)
{
    static bench_hist h;
    bench_hist_init(&h);
    for (uint64_t v = 1; v <= 10000; v++)
        bench_hist_add(&h, v);
    cr_assert_eq(h.count, 10000);
    cr_assert_eq(h.min, 1);
    cr_assert_eq(h.max, 10000);
    uint64_t p50 = bench_hist_quantile(&h, 0.5);
    uint64_t p99 = bench_hist_quantile(&h, 0.99);
    cr_assert(p50 >= 5000 * 15 / 16 && p50 <= 5000 * 17 / 16, "p50 %llu", (unsigned long long)p50);
    cr_assert(p99 >= 9900 * 15 / 16 && p99 <= 10000, "p99 %llu", (unsigned long long)p99);
    cr_assert_eq(bench_hist_quantile(&h, 1.0), 10000);
    cr_assert_eq(bench_hist_quantile(&h, 0.0), 1);
}

Test(hist, merge_adds_counts)
{
    static bench_hist a, b;
    bench_hist_init(&a);
    bench_hist_init(&b);
    cr_assert_eq(bench_hist_quantile(&a, 0.5), 0);
    bench_hist_add(&a, 10);
    bench_hist_add(&b, 1000);
    bench_hist_add(&b, 3);
    bench_hist_merge(&a, &b);
    cr_assert_eq(a.count, 3);
    cr_assert_eq(a.min, 3);
    cr_assert_eq(a.max, 1000);
    cr_assert_eq(a.sum, 1013);
    cr_assert_eq(bench_hist_quantile(&a, 0.5), 10);
}

typedef struct seen {
    int n;
    uint8_t types[8];
    double numbers[8];
    bool has_number[8];
    char keys[8][16];
    uint32_t version;
} seen;

static void visit(void *ud, uint32_t version, const bench_so_event *ev)
{
    seen *s = ud;
    cr_assert(s->n < 8);
    s->version = version;
    s->types[s->n] = ev->type;
    s->has_number[s->n] = ev->has_number;
    s->numbers[s->n] = ev->number;
    size_t k = ev->key_len < 15 ? ev->key_len : 15;
    if (ev->key)
        memcpy(s->keys[s->n], ev->key, k);
    s->keys[s->n][k] = 0;
    s->n++;
}

/* A server-side Change with two pairs (a number and a string) plus a
 * Success, written with so_wire. */
static void make_change(sh_buf *b, uint8_t msg_type)
{
    size_t mark;
    amf_value *num = amf_number(1234567.0);
    amf_value *str = amf_string_cstr("hello");
    cr_assert_eq(so_wire_put_header(b, msg_type, "room", 4, 42, false), 0);
    cr_assert_eq(so_wire_event_begin(b, SO_EV_CHANGE, &mark), 0);
    so_wire_event_key(b, "w0", 2);
    so_wire_event_value(b, NULL, num);
    so_wire_event_key(b, "s", 1);
    so_wire_event_value(b, NULL, str);
    cr_assert_eq(so_wire_event_end(b, mark), 0);
    cr_assert_eq(so_wire_put_key(b, SO_EV_SUCCESS, "w0", 2), 0);
    amf_unref(num);
    amf_unref(str);
}

Test(so, reads_change_pairs_and_success)
{
    for (int t = 0; t < 2; t++) {
        uint8_t type = t ? SO_MSG_AMF3 : SO_MSG_AMF0;
        sh_buf b;
        sh_buf_init(&b, 4096);
        make_change(&b, type);
        seen s;
        memset(&s, 0, sizeof s);
        const char *name;
        size_t nl;
        cr_assert_eq(bench_so_decode(b.data, b.len, type == SO_MSG_AMF3, &name, &nl, visit, &s), 0);
        cr_assert_eq(nl, 4);
        cr_assert(memcmp(name, "room", 4) == 0);
        cr_assert_eq(s.version, 42);
        cr_assert_eq(s.n, 3);
        cr_assert_eq(s.types[0], BENCH_SO_CHANGE);
        cr_assert_str_eq(s.keys[0], "w0");
        cr_assert(s.has_number[0]);
        cr_assert_eq(s.numbers[0], 1234567.0);
        cr_assert_str_eq(s.keys[1], "s");
        cr_assert(!s.has_number[1]);
        cr_assert_eq(s.types[2], BENCH_SO_SUCCESS);
        cr_assert_str_eq(s.keys[2], "w0");
        sh_buf_cleanup(&b);
    }
}

Test(so, every_truncation_is_refused)
{
    sh_buf b;
    sh_buf_init(&b, 4096);
    make_change(&b, SO_MSG_AMF0);
    /* cut inside the header or an event: never a crash, never success
     * (cuts exactly between events are valid shorter messages) */
    for (size_t n = 0; n < b.len; n++) {
        seen s;
        memset(&s, 0, sizeof s);
        const char *name;
        size_t nl;
        int rc = bench_so_decode(b.data, n, false, &name, &nl, visit, &s);
        if (n < 14)
            cr_assert(rc < 0, "cut at %zu", n);
        else
            cr_assert(rc <= 0);
    }
    sh_buf_cleanup(&b);
}

/* ---- WebSocket client side (bench_ws.h) ---- */

#include "bench_ws.h"
#include "so_json.h"

static const uint8_t key_bytes[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static void answer(sh_buf *b, const char *key, const char *accept_override, const char *proto,
                   const char *ext)
{
    char accept[64];
    ws_accept_key(key, accept);
    char text[1024];
    snprintf(text, sizeof text,
             "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: %s\r\n%s%s%s%s%s\r\n",
             accept_override ? accept_override : accept, proto ? "Sec-WebSocket-Protocol: " : "",
             proto ? proto : "", proto ? "\r\n" : "", ext ? ext : "", ext ? "\r\n" : "");
    sh_buf_append(b, text, strlen(text));
}

Test(ws, key_request_and_answer)
{
    char key[25];
    bench_ws_make_key(key_bytes, key);
    cr_assert(ws_key_ok(key), "%s", key);
    cr_assert_str_eq(key, "AQIDBAUGBwgJCgsMDQ4PEA==");
    sh_buf req;
    sh_buf_init(&req, 4096);
    cr_assert_eq(bench_ws_request(&req, "127.0.0.1", 8080, "/ws/bench", key, false), 0);
    sh_buf_put_u8(&req, 0);
    const char *r = (const char *)req.data;
    cr_assert(strncmp(r, "GET /ws/bench HTTP/1.1\r\n", 24) == 0);
    cr_assert(strstr(r, "Host: 127.0.0.1:8080\r\n"));
    cr_assert(strstr(r, "Sec-WebSocket-Protocol: sohub.v1\r\n"));
    cr_assert(strstr(r, "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n"));
    cr_assert(!strstr(r, "Extensions"));
    cr_assert(strcmp(r + strlen(r) - 4, "\r\n\r\n") == 0);
    sh_buf_cleanup(&req);

    sh_buf b;
    sh_buf_init(&b, 4096);
    answer(&b, key, NULL, "sohub.v1", NULL);
    sh_buf_append(&b, "\x81\x02hi", 4); /* a frame right behind the answer */
    char why[128];
    bool deflate = true;
    for (size_t n = 0; n < b.len - 4; n++)
        cr_assert_eq(bench_ws_response(b.data, n, key, false, &deflate, why, sizeof why), 0,
                     "cut at %zu", n);
    int hl = bench_ws_response(b.data, b.len, key, false, &deflate, why, sizeof why);
    cr_assert_eq(hl, (int)b.len - 4);
    cr_assert(!deflate);
    sh_buf_cleanup(&b);
}

Test(ws, refused_answers)
{
    char key[25], why[128];
    bool deflate;
    bench_ws_make_key(key_bytes, key);
    struct {
        const char *accept, *proto, *ext;
        bool offered;
    } cases[] = {
        {"xxxxxxxxxxxxxxxxxxxxxxxxxxx=", "sohub.v1", NULL, false}, /* wrong accept */
        {NULL, NULL, NULL, false},                                   /* no subprotocol */
        {NULL, "other", NULL, false},
        {NULL, "sohub.v1", "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover",
         false},                                                      /* not offered */
        {NULL, "sohub.v1", "Sec-WebSocket-Extensions: permessage-deflate", true}, /* context kept */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sh_buf b;
        sh_buf_init(&b, 4096);
        answer(&b, key, cases[i].accept, cases[i].proto, cases[i].ext);
        cr_assert(bench_ws_response(b.data, b.len, key, cases[i].offered, &deflate, why,
                                    sizeof why) < 0, "case %zu", i);
        sh_buf_cleanup(&b);
    }
    const char *refused = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    cr_assert(bench_ws_response((const uint8_t *)refused, strlen(refused), key, false, &deflate,
                                why, sizeof why) < 0);
    cr_assert(strstr(why, "400"), "%s", why);
    /* agreed deflate */
    sh_buf b;
    sh_buf_init(&b, 4096);
    answer(&b, key, NULL, "sohub.v1",
           "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
           "client_no_context_takeover");
    cr_assert(bench_ws_response(b.data, b.len, key, true, &deflate, why, sizeof why) > 0);
    cr_assert(deflate);
    sh_buf_cleanup(&b);
}

Test(ws, client_frames_are_masked)
{
    static uint8_t payload[70000];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7);
    const uint8_t mask[4] = {0xa1, 0x02, 0xff, 0x40};
    size_t sizes[] = {0, 1, 125, 126, 65535, 65536, sizeof payload};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        sh_buf b;
        sh_buf_init(&b, 1 << 20);
        cr_assert_eq(bench_ws_put_frame(&b, WS_OP_TEXT, payload, n, mask), 0);
        cr_assert_eq(b.data[0], 0x81);
        cr_assert(b.data[1] & 0x80, "MASK bit");
        size_t hl = n < 126 ? 2 : n <= 0xffff ? 4 : 10;
        size_t len = b.data[1] & 0x7f;
        if (len == 126)
            len = (size_t)b.data[2] << 8 | b.data[3];
        else if (len == 127)
            len = (size_t)sh_get_u32be(b.data + 2) << 32 | sh_get_u32be(b.data + 6);
        cr_assert_eq(len, n);
        cr_assert_eq(b.len, hl + 4 + n);
        cr_assert(memcmp(b.data + hl, mask, 4) == 0);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq((uint8_t)(b.data[hl + 4 + i] ^ mask[i & 3]), payload[i]);
        sh_buf_cleanup(&b);
    }
}

typedef struct got {
    int n;
    uint8_t ops[16];
    char text[16][160];
} got;

static bool on_msg(void *ud, uint8_t op, const uint8_t *p, size_t n)
{
    got *g = ud;
    cr_assert(g->n < 16);
    g->ops[g->n] = op;
    size_t k = n < 159 ? n : 159;
    memcpy(g->text[g->n], p, k);
    g->text[g->n][k] = 0;
    g->n++;
    return true;
}

static void put_rc(sh_buf *b, sh_rcbuf *f)
{
    sh_buf_append(b, f->data, f->len);
    sh_rcbuf_unref(f);
}

/* What a server writes: a text message, a ping, a text message in three
 * fragments with a pong between them, a 300-byte text, a close. */
static void server_stream(sh_buf *b)
{
    static char big[301];
    memset(big, 'x', 300);
    big[0] = '{';
    put_rc(b, ws_frame(WS_OP_TEXT, false, (const uint8_t *)"{\"op\":\"a\"}", 10));
    put_rc(b, ws_frame(WS_OP_PING, false, (const uint8_t *)"\0\0\0\1", 4));
    uint8_t h[10];
    size_t hl = ws_frame_header(h, WS_OP_TEXT, false, 3);
    h[0] &= 0x7f; /* not final */
    sh_buf_append(b, h, hl);
    sh_buf_append(b, "abc", 3);
    put_rc(b, ws_frame(WS_OP_PONG, false, NULL, 0));
    hl = ws_frame_header(h, WS_OP_CONT, false, 2);
    h[0] &= 0x7f;
    sh_buf_append(b, h, hl);
    sh_buf_append(b, "de", 2);
    put_rc(b, ws_frame(WS_OP_CONT, false, (const uint8_t *)"f", 1));
    put_rc(b, ws_frame(WS_OP_TEXT, false, (const uint8_t *)big, 300));
    put_rc(b, ws_frame(WS_OP_CLOSE, false, (const uint8_t *)"\x03\xe8", 2));
}

static void check_stream(const got *g)
{
    cr_assert_eq(g->n, 6);
    cr_assert_eq(g->ops[0], WS_OP_TEXT);
    cr_assert_str_eq(g->text[0], "{\"op\":\"a\"}");
    cr_assert_eq(g->ops[1], WS_OP_PING);
    cr_assert_eq(g->ops[2], WS_OP_PONG);
    cr_assert_eq(g->ops[3], WS_OP_TEXT);
    cr_assert_str_eq(g->text[3], "abcdef");
    cr_assert_eq(g->ops[4], WS_OP_TEXT);
    cr_assert_eq(strlen(g->text[4]), 159);
    cr_assert_eq(g->ops[5], WS_OP_CLOSE);
}

Test(ws, reader_every_split)
{
    sh_buf s;
    sh_buf_init(&s, 1 << 16);
    server_stream(&s);
    for (size_t cut = 0; cut <= s.len; cut++) {
        bench_ws_rd r;
        bench_ws_rd_init(&r, 4096, NULL);
        got g;
        memset(&g, 0, sizeof g);
        const char *why = NULL;
        cr_assert_eq(bench_ws_rd_feed(&r, s.data, cut, on_msg, &g, &why), 0, "%s", why);
        cr_assert_eq(bench_ws_rd_feed(&r, s.data + cut, s.len - cut, on_msg, &g, &why), 0);
        check_stream(&g);
        cr_assert_eq(r.part.len, 0);
        bench_ws_rd_cleanup(&r);
    }
    /* byte by byte */
    bench_ws_rd r;
    bench_ws_rd_init(&r, 4096, NULL);
    got g;
    memset(&g, 0, sizeof g);
    for (size_t i = 0; i < s.len; i++)
        cr_assert_eq(bench_ws_rd_feed(&r, s.data + i, 1, on_msg, &g, NULL), 0);
    check_stream(&g);
    bench_ws_rd_cleanup(&r);
    sh_buf_cleanup(&s);
}

Test(ws, reader_refuses_what_no_server_sends)
{
    static const struct {
        const char *bytes;
        size_t n;
    } bad[] = {
        {"\x81\x82\0\0\0\0hi", 8},   /* masked */
        {"\xa1\x02hi", 4},           /* RSV2 */
        {"\xc1\x02hi", 4},           /* RSV1 without deflate */
        {"\x09\x00", 2},             /* fragmented ping */
        {"\x80\x01x", 3},            /* continuation without a start */
        {"\x83\x01x", 3},            /* opcode 3 */
        {"\x01\x01x\x81\x01y", 6},   /* new message inside a fragmented one */
        {"\x81\x7e\x10\x00", 4},     /* 4096 bytes > max 1000 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bench_ws_rd r;
        bench_ws_rd_init(&r, 1000, NULL);
        got g;
        memset(&g, 0, sizeof g);
        const char *why = NULL;
        int rc = bench_ws_rd_feed(&r, (const uint8_t *)bad[i].bytes, bad[i].n, on_msg, &g, &why);
        cr_assert(rc < 0, "case %zu: rc %d", i, rc);
        cr_assert(why != NULL, "case %zu", i);
        bench_ws_rd_cleanup(&r);
    }
    /* a ping of 126 bytes (control frames carry at most 125) */
    uint8_t ping[4 + 126] = {0x89, 0x7e, 0x00, 0x7e};
    bench_ws_rd r;
    bench_ws_rd_init(&r, 1000, NULL);
    got g;
    memset(&g, 0, sizeof g);
    cr_assert(bench_ws_rd_feed(&r, ping, sizeof ping, on_msg, &g, NULL) < 0);
    cr_assert_eq(g.n, 0);
    bench_ws_rd_cleanup(&r);
}

static bool stop_at_first(void *ud, uint8_t op, const uint8_t *p, size_t n)
{
    (void)op, (void)p, (void)n;
    (*(int *)ud)++;
    return false;
}

Test(ws, reader_stops_and_inflates)
{
    sh_buf s;
    sh_buf_init(&s, 1 << 16);
    server_stream(&s);
    bench_ws_rd r;
    bench_ws_rd_init(&r, 4096, NULL);
    int calls = 0;
    cr_assert_eq(bench_ws_rd_feed(&r, s.data, s.len, stop_at_first, &calls, NULL), 1);
    cr_assert_eq(calls, 1);
    bench_ws_rd_cleanup(&r);
    sh_buf_cleanup(&s);

    /* a compressed message (RSV1), as sohub sends one over 256 bytes */
    ws_zip *z = ws_zip_new();
    char text[600];
    for (size_t i = 0; i < sizeof text - 1; i++)
        text[i] = "{\"op\":\"so\"}"[i % 11];
    text[sizeof text - 1] = 0;
    sh_rcbuf *d = ws_zip_deflate(z, (const uint8_t *)text, strlen(text));
    cr_assert(d && d->len < strlen(text));
    sh_rcbuf *f = ws_frame(WS_OP_TEXT, true, d->data, d->len);
    bench_ws_rd_init(&r, 4096, z);
    got g;
    memset(&g, 0, sizeof g);
    for (size_t cut = 0; cut < f->len; cut += 7)
        cr_assert_eq(bench_ws_rd_feed(&r, f->data + cut, cut + 7 < f->len ? 7 : f->len - cut,
                                      on_msg, &g, NULL), 0);
    cr_assert_eq(g.n, 1);
    cr_assert(strncmp(g.text[0], text, 159) == 0);
    bench_ws_rd_cleanup(&r);
    sh_rcbuf_unref(f);
    sh_rcbuf_unref(d);
    ws_zip_free(z);
}

Test(ws, so_json_reads_what_the_server_writes)
{
    /* the server's JSON is made from the AMF0 body (so_json_from_amf0):
     * both readers must see the same events */
    sh_buf b;
    sh_buf_init(&b, 4096);
    make_change(&b, SO_MSG_AMF0);
    sh_rcbuf *j = so_json_from_amf0(b.data, b.len, NULL);
    cr_assert(j);
    seen s;
    memset(&s, 0, sizeof s);
    const char *name;
    size_t nl;
    cr_assert_eq(bench_ws_so_decode((const char *)j->data, j->len, &name, &nl, visit, &s), 0,
                 "%.*s", (int)j->len, j->data);
    cr_assert_eq(nl, 4);
    cr_assert(memcmp(name, "room", 4) == 0);
    cr_assert_eq(s.version, 42);
    cr_assert_eq(s.n, 3);
    cr_assert_eq(s.types[0], BENCH_SO_CHANGE);
    cr_assert_str_eq(s.keys[0], "w0");
    cr_assert(s.has_number[0]);
    cr_assert_eq(s.numbers[0], 1234567.0);
    cr_assert_str_eq(s.keys[1], "s");
    cr_assert(!s.has_number[1]);
    cr_assert_eq(s.types[2], BENCH_SO_SUCCESS);
    cr_assert_str_eq(s.keys[2], "w0");
    /* every cut is refused, never read past */
    for (size_t n = 0; n < j->len; n++) {
        seen t;
        memset(&t, 0, sizeof t);
        char *copy = malloc(n ? n : 1);
        memcpy(copy, j->data, n);
        cr_assert(bench_ws_so_decode(copy, n, &name, &nl, visit, &t) < 0, "cut at %zu", n);
        free(copy);
    }
    sh_rcbuf_unref(j);
    sh_buf_cleanup(&b);
}

Test(ws, so_json_any_member_order)
{
    static const char *const msgs[] = {
        /* events before version and op, t after slots, spaces */
        " { \"events\" : [ {\"slots\":[[\"w1\", -2.5e3 ]],\"t\":\"change\"} , {\"t\":\"use_success\"}],"
        " \"version\": 7, \"name\":\"r\\\"x\", \"op\":\"so\", \"persistent\": true }",
        "{\"op\":\"so\",\"name\":\"r\\\"x\",\"version\":7,\"persistent\":false,\"events\":"
        "[{\"t\":\"change\",\"slots\":[[\"w1\",-2500]]},{\"t\":\"use_success\"}]}",
    };
    for (size_t i = 0; i < 2; i++) {
        seen s;
        memset(&s, 0, sizeof s);
        const char *name;
        size_t nl;
        cr_assert_eq(bench_ws_so_decode(msgs[i], strlen(msgs[i]), &name, &nl, visit, &s), 0,
                     "msg %zu", i);
        cr_assert_eq(s.n, 2);
        cr_assert_eq(s.version, 7);
        cr_assert_str_eq(s.keys[0], "w1");
        cr_assert(s.has_number[0]);
        cr_assert_eq(s.numbers[0], -2500.0);
        cr_assert_eq(s.types[1], BENCH_SO_USE_SUCCESS);
        cr_assert_eq(nl, 4);
    }
    /* not so: left to the slow path, nothing visited */
    const char *res = "{\"events\":[{\"t\":\"change\"}],\"op\":\"result\",\"id\":1,\"ok\":true,"
                      "\"value\":{\"code\":\"NetConnection.Connect.Success\",\"n\":[1,{}]}}";
    seen s;
    memset(&s, 0, sizeof s);
    const char *name;
    size_t nl;
    cr_assert_eq(bench_ws_so_decode(res, strlen(res), &name, &nl, visit, &s), 1);
    cr_assert_eq(s.n, 0);
    /* status, 16-digit and fractional numbers, a tagged value skipped */
    const char *st = "{\"op\":\"so\",\"version\":1,\"events\":[{\"t\":\"status\",\"code\":"
                     "\"SharedObject.NoWriteAccess\",\"level\":\"error\"},{\"t\":\"change\","
                     "\"slots\":[[\"a\",1234567890123456],[\"b\",0.5],[\"c\",{\"$amf\":\"date\","
                     "\"ms\":1}],[\"d\",null]]}]}";
    memset(&s, 0, sizeof s);
    cr_assert_eq(bench_ws_so_decode(st, strlen(st), &name, &nl, visit, &s), 0);
    cr_assert_eq(s.n, 5);
    cr_assert_eq(s.types[0], BENCH_SO_STATUS);
    cr_assert_str_eq(s.keys[0], "SharedObject.No");
    cr_assert_eq(s.numbers[1], 1234567890123456.0);
    cr_assert_eq(s.numbers[2], 0.5);
    cr_assert(!s.has_number[3] && !s.has_number[4]);
    /* malformed */
    static const char *const bad[] = {"", "[]", "{\"op\":\"so\",}", "{\"op\":so}",
                                      "{\"op\":\"so\",\"events\":[{\"t\":\"change\",\"slots\":[[1]]}]}",
                                      "{\"op\":\"so\"} x", "{\"a\":01}", "{\"a\":1.}",
                                      "{\"a\":\"\x01\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert(bench_ws_so_decode(bad[i], strlen(bad[i]), &name, &nl, visit, &s) < 0,
                  "bad %zu", i);
}

/* The fan-out's two messages take the literal fast path; the same text
 * with an escape in the name takes the general walk: same events. */
Test(ws, so_json_fast_path_agrees)
{
    sh_buf b;
    sh_buf_init(&b, 4096);
    size_t mark;
    amf_value *num = amf_number(4412345678.0);
    cr_assert_eq(so_wire_put_header(&b, SO_MSG_AMF0, "fan1_room0", 10, 77, false), 0);
    cr_assert_eq(so_wire_event_begin(&b, SO_EV_CHANGE, &mark), 0);
    so_wire_event_key(&b, "w0", 2);
    so_wire_event_value(&b, NULL, num);
    cr_assert_eq(so_wire_event_end(&b, mark), 0);
    amf_unref(num);
    sh_rcbuf *change = so_json_from_amf0(b.data, b.len, NULL);
    sh_buf_reset(&b);
    cr_assert_eq(so_wire_put_header(&b, SO_MSG_AMF0, "fan1_room0", 10, 78, false), 0);
    cr_assert_eq(so_wire_put_key(&b, SO_EV_SUCCESS, "w0", 2), 0);
    sh_rcbuf *success = so_json_from_amf0(b.data, b.len, NULL);
    sh_buf_cleanup(&b);
    cr_assert(change && success);
    sh_rcbuf *msgs[2] = {change, success};
    for (int m = 0; m < 2; m++) {
        /* the message is not NUL-terminated: a copy that is */
        size_t n = msgs[m]->len;
        char text[512];
        cr_assert_lt(n, sizeof text);
        memcpy(text, msgs[m]->data, n);
        text[n] = '\0';
        /* the escaped twin: "fan1_room0" -> "fan1_r\u006fom0" */
        char twin[512];
        const char *at = strstr(text, "fan1_room0");
        cr_assert(at);
        size_t pre = (size_t)(at - text);
        int tn = snprintf(twin, sizeof twin, "%.*sfan1_r\\u006fom0%s", (int)pre, text, at + 10);
        seen a, e;
        memset(&a, 0, sizeof a);
        memset(&e, 0, sizeof e);
        const char *name;
        size_t nl;
        cr_assert_eq(bench_ws_so_decode(text, n, &name, &nl, visit, &a), 0, "%.*s", (int)n, text);
        cr_assert_eq(nl, 10);
        cr_assert_eq(bench_ws_so_decode(twin, (size_t)tn, &name, &nl, visit, &e), 0, "%s", twin);
        cr_assert_eq(a.n, 1);
        cr_assert_eq(e.n, 1);
        cr_assert_eq(a.version, 77 + m);
        cr_assert_eq(e.version, a.version);
        cr_assert_eq(a.types[0], m ? BENCH_SO_SUCCESS : BENCH_SO_CHANGE);
        cr_assert_eq(e.types[0], a.types[0]);
        cr_assert_str_eq(a.keys[0], "w0");
        cr_assert_str_eq(e.keys[0], "w0");
        cr_assert_eq(a.has_number[0], !m);
        cr_assert_eq(e.has_number[0], !m);
        if (!m) {
            cr_assert_eq(a.numbers[0], 4412345678.0);
            cr_assert_eq(e.numbers[0], 4412345678.0);
        }
        for (size_t k = 0; k < n; k++) {
            seen t;
            memset(&t, 0, sizeof t);
            char *copy = malloc(k ? k : 1);
            memcpy(copy, text, k);
            cr_assert(bench_ws_so_decode(copy, k, &name, &nl, visit, &t) < 0, "cut at %zu", k);
            free(copy);
        }
    }
    sh_rcbuf_unref(change);
    sh_rcbuf_unref(success);
}
