/* test_ws.c - http/ws.h: the handshake helpers, frame headers at the
 * length boundaries, permessage-deflate both ways and its cap, UTF-8 edge
 * cases, and ws_in: the same messages fed whole, split anywhere or byte
 * by byte; each broken header's close code; the budget; replies in order;
 * the wslay context freed when idle. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ws.h"

/* ---------------------------------------------------------------- handshake */

Test(ws, tokens)
{
    cr_expect(ws_has_token("Upgrade", "upgrade"));
    cr_expect(ws_has_token("keep-alive, Upgrade", "upgrade"));
    cr_expect(ws_has_token(" a ,\tb\t, c ", "b"));
    cr_expect(!ws_has_token("upgrades", "upgrade"));
    cr_expect(!ws_has_token("", "upgrade"));
    cr_expect(!ws_has_token(NULL, "upgrade"));
    cr_expect(!ws_has_token("up grade", "upgrade"));
}

Test(ws, keys)
{
    cr_expect(ws_key_ok("dGhlIHNhbXBsZSBub25jZQ=="));
    cr_expect(!ws_key_ok("dGhlIHNhbXBsZSBub25jZQ="), "23 characters");
    cr_expect(!ws_key_ok("dGhlIHNhbXBsZSBub25jZQ==="));
    cr_expect(!ws_key_ok("dGhlIHNhbXBsZSBub25j!Q=="));
    cr_expect(!ws_key_ok("dGhlIHNhbXBsZSBub25jZQAA"), "no padding: 18 bytes");
    cr_expect(!ws_key_ok(NULL));
    char out[32];
    ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out);
    cr_expect_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "RFC 6455 1.3's example");
}

Test(ws, deflate_answer)
{
    static const struct {
        const char *offer;
        const char *answer; /* NULL: declined */
    } cases[] = {
        {"permessage-deflate", "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
        {"Permessage-Deflate; client_max_window_bits",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
        {"permessage-deflate; client_max_window_bits=8",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
        {"permessage-deflate; client_max_window_bits=\"15\"",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
        {"permessage-deflate; server_max_window_bits=15",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=15"},
        {"permessage-deflate;server_no_context_takeover;client_no_context_takeover",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
        {"x-other, permessage-deflate; server_max_window_bits=9, permessage-deflate",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
        {"permessage-deflate; server_max_window_bits=9", NULL},
        {"permessage-deflate; server_max_window_bits", NULL},
        {"permessage-deflate; client_max_window_bits=7", NULL},
        {"permessage-deflate; client_max_window_bits=16", NULL},
        {"permessage-deflate; client_max_window_bits=015", NULL},
        {"permessage-deflate; client_max_window_bits=\"15", NULL},
        {"permessage-deflate; server_no_context_takeover=1", NULL},
        {"permessage-deflate; client_no_context_takeover; client_no_context_takeover", NULL},
        {"permessage-deflate; unknown", NULL},
        {"permessage-deflate;", NULL},
        {"permessage-deflatex", NULL},
        {"x-webkit-deflate-frame", NULL},
        {"", NULL},
        {NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[WS_DEFLATE_ANSWER_MAX] = "untouched";
        bool ok = ws_deflate_answer(cases[i].offer, out, sizeof(out));
        if (cases[i].answer) {
            cr_expect(ok, "%s: agreed", cases[i].offer);
            cr_expect_str_eq(out, cases[i].answer, "%s", cases[i].offer);
        } else {
            cr_expect(!ok, "%s: declined", cases[i].offer ? cases[i].offer : "(none)");
        }
    }
}

/* ---------------------------------------------------------------- frames */

Test(ws, frame_header_lengths)
{
    static const struct {
        size_t len;
        size_t hl;
        uint8_t b1;
    } cases[] = {{0, 2, 0},       {1, 2, 1},       {125, 2, 125},     {126, 4, 126},
                 {127, 4, 126},   {65535, 4, 126}, {65536, 10, 127},  {(size_t)1 << 32, 10, 127}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t h[10];
        size_t hl = ws_frame_header(h, WS_OP_TEXT, false, cases[i].len);
        cr_expect_eq(hl, cases[i].hl, "length %zu", cases[i].len);
        cr_expect_eq(h[0], 0x81, "FIN, text, no RSV");
        cr_expect_eq(h[1], cases[i].b1, "no mask bit, length form");
        uint64_t n = h[1] & 0x7F;
        if (hl == 4)
            n = (uint64_t)h[2] << 8 | h[3];
        if (hl == 10) {
            n = 0;
            for (int k = 0; k < 8; k++)
                n = n << 8 | h[2 + k];
        }
        cr_expect_eq(n, cases[i].len);
    }
    uint8_t h[10];
    ws_frame_header(h, WS_OP_PING, true, 3);
    cr_expect_eq(h[0], 0x80 | 0x40 | WS_OP_PING);
}

Test(ws, frame_whole)
{
    uint8_t payload[300];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)i;
    sh_rcbuf *f = ws_frame(WS_OP_BINARY, false, payload, sizeof(payload));
    cr_assert_not_null(f);
    cr_expect_eq(f->len, 4 + sizeof(payload));
    cr_expect(memcmp(f->data + 4, payload, sizeof(payload)) == 0);
    sh_rcbuf_unref(f);
    f = ws_frame(WS_OP_CLOSE, false, NULL, 0);
    cr_expect_eq(f->len, 2);
    cr_expect_eq(f->data[0], 0x88);
    sh_rcbuf_unref(f);
}

/* ---------------------------------------------------------------- deflate */

static uint8_t *pattern(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n ? n : 1);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = seed % 2 ? (uint8_t)(x >> 16) : (uint8_t)"sohub shared objects "[i % 21];
    }
    return p;
}

/* zlib by itself, as a peer would: raw inflate of payload + 00 00 ff ff. */
static size_t peer_inflate(const uint8_t *p, size_t n, uint8_t *out, size_t cap)
{
    z_stream s = {0};
    cr_assert_eq(inflateInit2(&s, -15), Z_OK);
    uint8_t *in = malloc(n + 4);
    memcpy(in, p, n);
    memcpy(in + n, "\x00\x00\xff\xff", 4);
    s.next_in = in;
    s.avail_in = (uInt)(n + 4);
    s.next_out = out;
    s.avail_out = (uInt)cap;
    int rc = inflate(&s, Z_SYNC_FLUSH);
    cr_assert(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR, "zlib: %d", rc);
    size_t got = cap - s.avail_out;
    inflateEnd(&s);
    free(in);
    return got;
}

Test(ws, deflate_round_trip)
{
    ws_zip *z = ws_zip_new();
    cr_assert_not_null(z);
    static const size_t sizes[] = {0, 1, 100, 4096, 16384, 16385, 100000, 1 << 20};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        for (unsigned seed = 1; seed <= 2; seed++) {
            size_t n = sizes[k];
            uint8_t *p = pattern(n, seed);
            sh_rcbuf *d = ws_zip_deflate(z, p, n);
            cr_assert_not_null(d);
            /* an independent inflater reads it */
            uint8_t *back = malloc(n + 16);
            cr_expect_eq(peer_inflate(d->data, d->len, back, n + 16), n, "size %zu", n);
            cr_expect(memcmp(back, p, n) == 0);
            free(back);
            /* and ours, twice (no context is kept) */
            for (int again = 0; again < 2; again++) {
                sh_buf out;
                sh_buf_init(&out, n);
                cr_expect_eq(ws_zip_inflate(z, d->data, d->len, &out), 0, "size %zu", n);
                cr_expect_eq(out.len, n);
                cr_expect(n == 0 || memcmp(out.data, p, n) == 0);
                sh_buf_cleanup(&out);
            }
            sh_rcbuf_unref(d);
            free(p);
        }
    }
    ws_zip_free(z);
    ws_zip_free(NULL);
}

Test(ws, inflate_cap_and_errors)
{
    ws_zip *z = ws_zip_new();
    size_t n = 200000;
    uint8_t *p = pattern(n, 2);
    sh_rcbuf *d = ws_zip_deflate(z, p, n);
    sh_buf out;
    sh_buf_init(&out, n);
    cr_expect_eq(ws_zip_inflate(z, d->data, d->len, &out), 0, "exactly the cap");
    sh_buf_cleanup(&out);
    sh_buf_init(&out, n - 1);
    cr_expect_eq(ws_zip_inflate(z, d->data, d->len, &out), SH_ELIMIT, "one byte over the cap");
    cr_expect_leq(out.len, n - 1);
    sh_buf_cleanup(&out);
    sh_rcbuf_unref(d);
    free(p);

    sh_buf_init(&out, 1000);
    static const uint8_t reserved_block[] = {0x07, 0x00};
    cr_expect_eq(ws_zip_inflate(z, reserved_block, sizeof(reserved_block), &out), SH_EPROTO);
    sh_buf_reset(&out);
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff};
    cr_expect_eq(ws_zip_inflate(z, junk, sizeof(junk), &out), SH_EPROTO);
    /* a stream ended with BFINAL, then more bytes */
    z_stream s = {0};
    deflateInit2(&s, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
    uint8_t buf[256];
    s.next_in = (Bytef *)"hello";
    s.avail_in = 5;
    s.next_out = buf;
    s.avail_out = sizeof(buf);
    deflate(&s, Z_FINISH);
    size_t fl = sizeof(buf) - s.avail_out;
    deflateEnd(&s);
    sh_buf_reset(&out);
    cr_expect_eq(ws_zip_inflate(z, buf, fl, &out), 0, "a final block alone is fine");
    cr_expect_eq(out.len, 5);
    buf[fl] = 'x';
    sh_buf_reset(&out);
    cr_expect_eq(ws_zip_inflate(z, buf, fl + 1, &out), SH_EPROTO, "bytes after the final block");
    /* after errors the state is good again */
    sh_rcbuf *ok = ws_zip_deflate(z, (const uint8_t *)"again", 5);
    sh_buf_reset(&out);
    cr_expect_eq(ws_zip_inflate(z, ok->data, ok->len, &out), 0);
    cr_expect_eq(out.len, 5);
    sh_rcbuf_unref(ok);
    sh_buf_cleanup(&out);
    ws_zip_free(z);
}

/* ---------------------------------------------------------------- UTF-8 */

Test(ws, utf8)
{
    static const struct {
        const char *s;
        size_t n;
        bool ok;
    } cases[] = {
        {"", 0, true},
        {"\x7f", 1, true},                      {"\xc2\x80", 2, true},
        {"\xdf\xbf", 2, true},                  {"\xe0\xa0\x80", 3, true},
        {"\xed\x9f\xbf", 3, true},              {"\xee\x80\x80", 3, true},
        {"\xef\xbf\xbf", 3, true},              {"\xf0\x90\x80\x80", 4, true},
        {"\xf4\x8f\xbf\xbf", 4, true},          {"a\0b", 3, true},
        {"\x80", 1, false},                     {"\xbf", 1, false},
        {"\xc0\x80", 2, false},                 {"\xc1\xbf", 2, false},
        {"\xe0\x9f\xbf", 3, false},             {"\xf0\x8f\xbf\xbf", 4, false},
        {"\xed\xa0\x80", 3, false},             {"\xed\xbf\xbf", 3, false},
        {"\xf4\x90\x80\x80", 4, false},         {"\xf5\x80\x80\x80", 4, false},
        {"\xf8\x88\x80\x80\x80", 5, false},     {"\xfe", 1, false},
        {"\xff", 1, false},                     {"\xc2", 1, false},
        {"\xe2\x82", 2, false},                 {"\xf0\x9f\x98", 3, false},
        {"\xc2\x41", 2, false},                 {"\xe2\x28\xa1", 3, false},
        {"ok\xf0\x9f\x98\x80ok", 8, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_expect_eq(ws_utf8_valid((const uint8_t *)cases[i].s, cases[i].n), cases[i].ok,
                     "case %zu", i);
}

/* ---------------------------------------------------------------- ws_in */

/* A client frame (masked). */
static size_t cframe(uint8_t *out, uint8_t opcode, bool fin, uint8_t rsv, const void *payload,
                     size_t n)
{
    const uint8_t *p = payload;
    size_t k = 0;
    out[k++] = (uint8_t)((fin ? 0x80 : 0) | rsv << 4 | opcode);
    if (n < 126) {
        out[k++] = (uint8_t)(0x80 | n);
    } else if (n <= 0xFFFF) {
        out[k++] = 0x80 | 126;
        out[k++] = (uint8_t)(n >> 8);
        out[k++] = (uint8_t)n;
    } else {
        out[k++] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            out[k++] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    }
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    memcpy(out + k, key, 4);
    k += 4;
    for (size_t i = 0; i < n; i++)
        out[k + i] = p[i] ^ key[i & 3];
    return k + n;
}

/* What ws_in reported, as text: one line per event, with the replies
 * that were in out when it came. */
typedef struct rec {
    sh_buf log;
    sh_buf *out;
    size_t out_seen;     /* out bytes already logged */
    int stop_after;      /* > 0: return false after that many events */
    int events;
} rec;

static void log_out(rec *r)
{
    if (r->out && r->out->len > r->out_seen) {
        char line[64];
        int n = snprintf(line, sizeof(line), "replies %zu:", r->out->len - r->out_seen);
        sh_buf_append(&r->log, line, (size_t)n);
        sh_buf_append(&r->log, r->out->data + r->out_seen, r->out->len - r->out_seen);
        sh_buf_put_u8(&r->log, '\n');
        r->out_seen = r->out->len;
    }
}

static bool on_ev(void *ud, ws_in_event ev, const uint8_t *data, size_t len)
{
    rec *r = ud;
    log_out(r);
    static const char *const names[] = {"text", "binary", "pong", "close"};
    char head[64];
    int n = snprintf(head, sizeof(head), "%s %zu:", names[ev], len);
    sh_buf_append(&r->log, head, (size_t)n);
    if (data && ev != WS_IN_CLOSE)
        sh_buf_append(&r->log, data, len);
    sh_buf_put_u8(&r->log, '\n');
    r->events++;
    return !(r->stop_after && r->events >= r->stop_after);
}

/* Feeds in[0..n) in pieces of at most step bytes (0: whole); returns the
 * log and the final code. */
static int run(const uint8_t *in, size_t n, size_t step, size_t max_message, bool deflate,
               ws_zip *zip, sh_buf *log, bool *idle_after)
{
    ws_in *w = ws_in_new(max_message, deflate, zip);
    cr_assert_not_null(w);
    size_t idle = ws_in_mem(w);
    sh_buf out;
    sh_buf_init(&out, n + WS_IN_REPLY_SLACK);
    rec r = {.out = &out};
    sh_buf_init(&r.log, 1 << 24);
    int code = 0;
    size_t off = 0;
    while (off < n && !code) {
        size_t k = step && n - off > step ? step : n - off;
        size_t used = 0;
        code = ws_in_feed(w, in + off, k, &used, 1000000, on_ev, &r, &out);
        cr_assert(code || used == k, "a feed without a budget takes everything");
        off += k;
    }
    log_out(&r);
    if (idle_after)
        *idle_after = ws_in_mem(w) == idle;
    *log = r.log;
    sh_buf_cleanup(&out);
    ws_in_free(w);
    return code;
}

static size_t close_frame(uint8_t *out, uint16_t code, const char *reason)
{
    uint8_t p[128];
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    size_t rl = reason ? strlen(reason) : 0;
    if (rl)
        memcpy(p + 2, reason, rl); /* memcpy's source may not be NULL, even for 0 bytes */
    return cframe(out, WS_OP_CLOSE, true, 0, p, 2 + rl);
}

/* A session of every kind of frame. */
static size_t session(uint8_t *buf, ws_zip *zip)
{
    size_t k = 0;
    k += cframe(buf + k, WS_OP_TEXT, true, 0, "hello", 5);
    k += cframe(buf + k, WS_OP_PING, true, 0, "p1", 2);
    k += cframe(buf + k, WS_OP_TEXT, false, 0, "frag", 4);
    k += cframe(buf + k, WS_OP_PING, true, 0, "", 0);
    k += cframe(buf + k, WS_OP_CONT, false, 0, "", 0);
    k += cframe(buf + k, WS_OP_PONG, true, 0, "pp", 2);
    k += cframe(buf + k, WS_OP_CONT, true, 0, "mented \xc3\xa9", 9);
    uint8_t big[70000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)('a' + i % 26);
    k += cframe(buf + k, WS_OP_TEXT, true, 0, big, 126);
    k += cframe(buf + k, WS_OP_TEXT, true, 0, big, 65536);
    if (zip) {
        sh_rcbuf *d = ws_zip_deflate(zip, big, 5000);
        k += cframe(buf + k, WS_OP_TEXT, false, 4, d->data, 10);
        k += cframe(buf + k, WS_OP_PING, true, 0, "zz", 2);
        k += cframe(buf + k, WS_OP_CONT, true, 0, d->data + 10, d->len - 10);
        sh_rcbuf_unref(d);
    }
    k += cframe(buf + k, WS_OP_BINARY, true, 0, "\x00\x01", 2);
    k += close_frame(buf + k, 1000, "bye \xc3\xa9");
    return k;
}

Test(ws, in_same_messages_however_split)
{
    ws_zip *zip = ws_zip_new();
    uint8_t *buf = malloc(1 << 18);
    for (int z = 0; z < 2; z++) {
        size_t n = session(buf, z ? zip : NULL);
        sh_buf whole;
        bool idle;
        cr_assert_eq(run(buf, n, 0, 1 << 20, z, zip, &whole, &idle), 0);
        const char *w = (const char *)whole.data;
        cr_assert(whole.len > 0);
        cr_expect(memmem(w, whole.len, "text 5:hello\n", 13), "first message");
        cr_expect(memmem(w, whole.len, "text 13:fragmented \xc3\xa9\n", 22), "fragmented message");
        cr_expect(memmem(w, whole.len, "pong 2:pp\n", 10));
        cr_expect(memmem(w, whole.len, "binary 2:", 9));
        cr_expect(memmem(w, whole.len, "close 1000:", 11));
        /* the pong for p1 is out before the fragmented message comes */
        const char *pong = memmem(w, whole.len, "\x8a\x02p1", 4);
        const char *frag = memmem(w, whole.len, "text 13:", 8);
        cr_expect(pong && frag && pong < frag, "replies come before later messages");
        if (z)
            cr_expect(memmem(w, whole.len, "text 5000:", 10), "compressed message");
        for (size_t step = 1; step < 300; step += (step < 20 ? 1 : 37)) {
            sh_buf part;
            cr_assert_eq(run(buf, n, step, 1 << 20, z, zip, &part, NULL), 0);
            cr_expect_eq(part.len, whole.len, "pieces of %zu: %zu vs %zu", step, part.len,
                         whole.len);
            cr_expect(part.len == whole.len && memcmp(part.data, whole.data, whole.len) == 0,
                      "pieces of %zu give the same events and replies", step);
            sh_buf_cleanup(&part);
        }
        sh_buf_cleanup(&whole);
    }
    free(buf);
    ws_zip_free(zip);
}

/* One frame (or a few) that must fail with code, fed whole and byte by
 * byte; the close frame with that code is the last thing in out. */
static void expect_fail(const uint8_t *in, size_t n, size_t max_message, bool deflate, int want,
                        const char *what)
{
    ws_zip *zip = deflate ? ws_zip_new() : NULL;
    for (size_t step = 0; step <= 1; step++) {
        ws_in *w = ws_in_new(max_message, deflate, zip);
        sh_buf out;
        sh_buf_init(&out, n + WS_IN_REPLY_SLACK);
        rec r = {.out = &out};
        sh_buf_init(&r.log, 1 << 20);
        int code = 0;
        size_t off = 0;
        while (off < n && !code) {
            size_t k = step && n - off > step ? step : n - off;
            size_t used;
            code = ws_in_feed(w, in + off, k, &used, 1000, on_ev, &r, &out);
            off += k;
        }
        cr_expect_eq(code, want, "%s (step %zu): code %d", what, step, code);
        cr_expect(ws_in_closed(w), "%s: closed", what);
        cr_assert_geq(out.len, 4, "%s: a close frame", what);
        const uint8_t *c = out.data + out.len - 4;
        cr_expect(c[0] == 0x88 && c[1] == 2 && (c[2] << 8 | c[3]) == want,
                  "%s: the close frame carries %d", what, want);
        size_t used = 0;
        cr_expect_eq(ws_in_feed(w, (const uint8_t *)"x", 1, &used, 1, on_ev, &r, &out), want);
        cr_expect_eq(used, 1, "after the close everything is dropped");
        sh_buf_cleanup(&r.log);
        sh_buf_cleanup(&out);
        ws_in_free(w);
    }
    ws_zip_free(zip);
}

Test(ws, in_header_errors)
{
    uint8_t b[200000];
    size_t k;
    uint8_t payload[200];
    memset(payload, 'x', sizeof(payload));

    k = cframe(b, WS_OP_TEXT, true, 0, "abc", 3);
    b[1] &= 0x7F; /* unmasked, same bytes */
    expect_fail(b, 2 + 4 + 3, 1000, false, 1002, "unmasked frame");
    for (uint8_t op = 3; op < 16; op++) {
        if (op >= WS_OP_CLOSE && op <= WS_OP_PONG)
            continue;
        k = cframe(b, op, true, 0, "abc", 3);
        expect_fail(b, k, 1000, false, 1002, "reserved opcode");
    }
    for (uint8_t rsv = 1; rsv < 8; rsv++) {
        k = cframe(b, WS_OP_TEXT, true, rsv, "abc", 3);
        expect_fail(b, k, 1000, false, 1002, "RSV without an extension");
        if (rsv != 4) {
            k = cframe(b, WS_OP_TEXT, true, rsv, "abc", 3);
            expect_fail(b, k, 1000, true, 1002, "RSV2/RSV3 with deflate");
        }
    }
    k = cframe(b, WS_OP_PING, true, 4, "a", 1);
    expect_fail(b, k, 1000, true, 1002, "RSV1 on a ping");
    k = cframe(b, WS_OP_TEXT, false, 4, "a", 1);
    k += cframe(b + k, WS_OP_CONT, true, 4, "a", 1);
    expect_fail(b, k, 1000, true, 1002, "RSV1 on a continuation");
    k = cframe(b, WS_OP_PING, true, 0, payload, 126);
    expect_fail(b, k, 1000, false, 1002, "ping of 126 bytes");
    k = cframe(b, WS_OP_PING, false, 0, "a", 1);
    expect_fail(b, k, 1000, false, 1002, "fragmented ping");
    k = cframe(b, WS_OP_CLOSE, true, 0, "\x03", 1);
    expect_fail(b, k, 1000, false, 1002, "close with 1 byte");
    k = close_frame(b, 999, NULL);
    expect_fail(b, k, 1000, false, 1002, "close code 999");
    k = close_frame(b, 1005, NULL);
    expect_fail(b, k, 1000, false, 1002, "close code 1005");
    k = close_frame(b, 1000, "\xed\xa0\x80");
    expect_fail(b, k, 1000, false, 1007, "close reason not UTF-8");
    k = cframe(b, WS_OP_CONT, true, 0, "a", 1);
    expect_fail(b, k, 1000, false, 1002, "continuation first");
    k = cframe(b, WS_OP_TEXT, false, 0, "a", 1);
    k += cframe(b + k, WS_OP_TEXT, true, 0, "a", 1);
    expect_fail(b, k, 1000, false, 1002, "new message inside one");
    /* lengths not in the shortest form */
    uint8_t nm[] = {0x81, 0x80 | 126, 0, 5, 1, 2, 3, 4, 'a', 'b', 'c', 'd', 'e'};
    expect_fail(nm, sizeof(nm), 1000, false, 1002, "16-bit form for 5 bytes");
    uint8_t nm64[] = {0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 1, 2, 3, 4};
    expect_fail(nm64, sizeof(nm64), 1000, false, 1002, "64-bit form for 256 bytes");
    uint8_t hi[] = {0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    expect_fail(hi, sizeof(hi), 1000, false, 1002, "64-bit length with the top bit");
    /* the message cap, at the header (no payload sent) */
    uint8_t huge[] = {0x81, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4};
    expect_fail(huge, sizeof(huge), 1000, false, 1009, "4 GiB claimed");
    k = cframe(b, WS_OP_TEXT, true, 0, payload, 101);
    expect_fail(b, k, 100, false, 1009, "one byte over max_message");
    k = cframe(b, WS_OP_TEXT, false, 0, payload, 60);
    k += cframe(b + k, WS_OP_CONT, true, 0, payload, 41);
    expect_fail(b, k, 100, false, 1009, "fragments one byte over max_message");
    k = cframe(b, WS_OP_TEXT, true, 0, "a\xed\xa0\x80", 4);
    expect_fail(b, k, 1000, false, 1007, "text not UTF-8");
    /* compressed */
    ws_zip *zip = ws_zip_new();
    uint8_t *zeros = calloc(1, 5000);
    sh_rcbuf *d = ws_zip_deflate(zip, zeros, 5000);
    k = cframe(b, WS_OP_TEXT, true, 4, d->data, d->len);
    expect_fail(b, k, 4999, true, 1009, "inflates one byte over max_message");
    sh_rcbuf_unref(d);
    free(zeros);
    k = cframe(b, WS_OP_TEXT, true, 4, "\x07\x00", 2);
    expect_fail(b, k, 1000, true, 1007, "bad DEFLATE data");
    d = ws_zip_deflate(zip, (const uint8_t *)"a\xed\xa0\x80", 4);
    k = cframe(b, WS_OP_TEXT, true, 4, d->data, d->len);
    expect_fail(b, k, 1000, true, 1007, "inflates to bad UTF-8");
    sh_rcbuf_unref(d);
    ws_zip_free(zip);
}

Test(ws, in_caps_exact)
{
    uint8_t b[400];
    uint8_t payload[200];
    memset(payload, 'x', sizeof(payload));
    size_t k = cframe(b, WS_OP_TEXT, true, 0, payload, 100);
    sh_buf log;
    cr_expect_eq(run(b, k, 0, 100, false, NULL, &log, NULL), 0, "exactly max_message");
    cr_expect(memmem(log.data, log.len, "text 100:", 9));
    sh_buf_cleanup(&log);
    k = cframe(b, WS_OP_TEXT, false, 0, payload, 60);
    k += cframe(b + k, WS_OP_CONT, true, 0, payload, 40);
    cr_expect_eq(run(b, k, 1, 100, false, NULL, &log, NULL), 0, "fragments adding to the cap");
    sh_buf_cleanup(&log);
    k = cframe(b, WS_OP_PING, true, 0, payload, 125);
    cr_expect_eq(run(b, k, 0, 100, false, NULL, &log, NULL), 0, "a ping of 125 bytes");
    cr_expect(memmem(log.data, log.len, "replies 127:\x8a\x7d", 14), "its pong");
    sh_buf_cleanup(&log);
}

/* At most max_msgs messages per feed; the rest waits for the next call. */
Test(ws, in_budget)
{
    uint8_t b[200];
    size_t k = 0;
    k += cframe(b + k, WS_OP_TEXT, true, 0, "one", 3);
    k += cframe(b + k, WS_OP_TEXT, true, 0, "two", 3);
    k += cframe(b + k, WS_OP_TEXT, true, 0, "three", 5);
    ws_in *w = ws_in_new(1000, false, NULL);
    sh_buf out;
    sh_buf_init(&out, 1000);
    rec r = {.out = &out};
    sh_buf_init(&r.log, 1000);
    size_t off = 0, used = 0;
    int calls = 0;
    while (off < k && calls < 10) {
        cr_assert_eq(ws_in_feed(w, b + off, k - off, &used, 1, on_ev, &r, &out), 0);
        off += used;
        calls++;
        cr_expect_eq(r.events, calls, "one message per feed");
    }
    cr_expect_eq(off, k);
    cr_expect_eq(r.events, 3);
    cr_expect(memmem(r.log.data, r.log.len, "text 3:one\ntext 3:two\ntext 5:three\n", 35));
    /* a callback that stops the feed: used stops too */
    rec r2 = {.out = &out, .stop_after = 1};
    sh_buf_init(&r2.log, 1000);
    ws_in *w2 = ws_in_new(1000, false, NULL);
    cr_assert_eq(ws_in_feed(w2, b, k, &used, 100, on_ev, &r2, &out), 0);
    cr_expect_eq(r2.events, 1);
    cr_expect_lt(used, k);
    ws_in_free(w2);
    sh_buf_cleanup(&r2.log);
    sh_buf_cleanup(&r.log);
    sh_buf_cleanup(&out);
    ws_in_free(w);
}

/* The wslay context (and the message buffer) exist only while a frame or
 * message is unfinished: ws_in_mem drops back to the idle size. */
Test(ws, in_idle_memory)
{
    ws_in *w = ws_in_new(1 << 20, false, NULL);
    size_t idle = ws_in_mem(w);
    cr_expect_lt(idle, 1024, "an idle reader is small (%zu bytes)", idle);
    uint8_t *b = malloc(300000);
    uint8_t *payload = malloc(200000);
    memset(payload, 'q', 200000);
    size_t k = cframe(b, WS_OP_TEXT, true, 0, payload, 200000);
    sh_buf out;
    sh_buf_init(&out, 1 << 20);
    rec r = {.out = &out};
    sh_buf_init(&r.log, 1 << 20);
    size_t used;
    cr_assert_eq(ws_in_feed(w, b, 1000, &used, 10, on_ev, &r, &out), 0);
    cr_expect_gt(ws_in_mem(w), idle, "mid-frame it holds the context");
    cr_assert_eq(ws_in_feed(w, b + 1000, k - 1000, &used, 10, on_ev, &r, &out), 0);
    cr_expect_eq(r.events, 1);
    cr_expect_eq(ws_in_mem(w), idle, "after the message: back to %zu (is %zu)", idle,
                 ws_in_mem(w));
    /* half a header, a fragment, a control frame staged: not idle */
    k = cframe(b, WS_OP_TEXT, false, 0, "ab", 2);
    cr_assert_eq(ws_in_feed(w, b, k, &used, 10, on_ev, &r, &out), 0);
    cr_expect_gt(ws_in_mem(w), idle, "an unfinished message keeps it");
    k = cframe(b, WS_OP_CONT, true, 0, "cd", 2);
    cr_assert_eq(ws_in_feed(w, b, k, &used, 10, on_ev, &r, &out), 0);
    cr_expect_eq(ws_in_mem(w), idle);
    k = cframe(b, WS_OP_PING, true, 0, "abcdef", 6);
    cr_assert_eq(ws_in_feed(w, b, 5, &used, 10, on_ev, &r, &out), 0);
    cr_expect_eq(used, 5);
    cr_expect_gt(ws_in_mem(w), idle, "half a ping keeps it");
    cr_assert_eq(ws_in_feed(w, b + 5, k - 5, &used, 10, on_ev, &r, &out), 0);
    cr_expect_eq(ws_in_mem(w), idle);
    free(b);
    free(payload);
    sh_buf_cleanup(&r.log);
    sh_buf_cleanup(&out);
    ws_in_free(w);
    ws_in_free(NULL);
}

/* Many pongs from one feed fit in the room the header promises. */
Test(ws, in_reply_room)
{
    uint8_t *b = malloc(200 * 131);
    uint8_t payload[125];
    memset(payload, 'p', sizeof(payload));
    size_t k = 0;
    for (int i = 0; i < 200; i++)
        k += cframe(b + k, WS_OP_PING, true, 0, payload, 125);
    sh_buf log;
    cr_assert_eq(run(b, k, 0, 1000, false, NULL, &log, NULL), 0);
    size_t pongs = 0;
    for (const uint8_t *p = log.data; (p = memmem(p, log.len - (size_t)(p - log.data),
                                                    "\x8a\x7d", 2)) != NULL; p += 2)
        pongs++;
    cr_expect_geq(pongs, 200, "200 pongs (%zu)", pongs);
    sh_buf_cleanup(&log);
    free(b);
}
