/* Chunk layer tests: hand-built streams for every header type and chunk
 * stream id size, extended timestamps, interleaving, chunk size changes,
 * abort, encoder round trips, every split point, every limit, garbage. */
#include "util.h"

/* ---- a tiny chunk writer for hand-built streams ---- */
typedef struct wr {
    uint8_t b[65536];
    size_t n;
} wr;

static void w8(wr *w, uint8_t v) { w->b[w->n++] = v; }
static void w24(wr *w, uint32_t v) { sh_put_u24be(w->b + w->n, v); w->n += 3; }
static void w32(wr *w, uint32_t v) { sh_put_u32be(w->b + w->n, v); w->n += 4; }
static void wbytes(wr *w, const void *p, size_t n) { memcpy(w->b + w->n, p, n); w->n += n; }

static void wbasic(wr *w, unsigned fmt, uint32_t csid)
{
    if (csid < 64) {
        w8(w, (uint8_t)(fmt << 6 | csid));
    } else if (csid < 320) {
        w8(w, (uint8_t)(fmt << 6));
        w8(w, (uint8_t)(csid - 64));
    } else {
        w8(w, (uint8_t)(fmt << 6 | 1));
        w8(w, (uint8_t)((csid - 64) & 0xFF));
        w8(w, (uint8_t)((csid - 64) >> 8));
    }
}

static void wfmt0(wr *w, uint32_t csid, uint32_t ts, uint32_t len, uint8_t type, uint32_t sid)
{
    wbasic(w, 0, csid);
    w24(w, ts >= 0xFFFFFF ? 0xFFFFFF : ts);
    w24(w, len);
    w8(w, type);
    w8(w, (uint8_t)sid); w8(w, (uint8_t)(sid >> 8)); w8(w, (uint8_t)(sid >> 16)); w8(w, (uint8_t)(sid >> 24));
    if (ts >= 0xFFFFFF)
        w32(w, ts);
}

static void wfmt1(wr *w, uint32_t csid, uint32_t delta, uint32_t len, uint8_t type)
{
    wbasic(w, 1, csid);
    w24(w, delta >= 0xFFFFFF ? 0xFFFFFF : delta);
    w24(w, len);
    w8(w, type);
    if (delta >= 0xFFFFFF)
        w32(w, delta);
}

static void wfmt2(wr *w, uint32_t csid, uint32_t delta)
{
    wbasic(w, 2, csid);
    w24(w, delta >= 0xFFFFFF ? 0xFFFFFF : delta);
    if (delta >= 0xFFFFFF)
        w32(w, delta);
}

static rtmp_chunk_dec *dec_new(void)
{
    rtmp_chunk_dec *d = rtmp_chunk_dec_new(&rtmp_default_limits);
    cr_assert(d);
    return d;
}

/* Feeds p[0..n) to a fresh decoder with limits lim (NULL: the defaults)
 * and chunk size cs (0: the default), in pieces as feed_split cuts them
 * (split, step).  The messages are added to *l; returns feed_split's rc. */
static int decode_with(const rtmp_limits *lim, uint32_t cs, const uint8_t *p, size_t n,
                       size_t split, size_t step, tmsgs *l, sh_error *err)
{
    rtmp_chunk_dec *d = rtmp_chunk_dec_new(lim ? lim : &rtmp_default_limits);
    cr_assert(d);
    if (cs)
        rtmp_chunk_dec_set_chunk_size(d, cs);
    int rc = feed_split(d, p, n, split, step, l, err);
    rtmp_chunk_dec_free(d);
    return rc;
}

/* Decodes a stream in one go and also split at every point and byte by
 * byte, and checks all give the same messages.  Returns the messages. */
static tmsgs decode_all_ways(const uint8_t *p, size_t n, uint32_t chunk_size)
{
    tmsgs ref = {0};
    sh_error err = {0};
    cr_assert_eq(decode_with(NULL, chunk_size, p, n, 0, 0, &ref, &err), 0, "error: %s", err.what);
    for (size_t split = 1; split < n; split++) {
        tmsgs got = {0};
        cr_assert_eq(decode_with(NULL, chunk_size, p, n, split, 0, &got, &err), 0);
        tmsgs_assert_eq(&ref, &got);
        tmsgs_free(&got);
    }
    tmsgs got = {0};
    cr_assert_eq(decode_with(NULL, chunk_size, p, n, 0, 1, &got, &err), 0);
    tmsgs_assert_eq(&ref, &got);
    tmsgs_free(&got);
    return ref;
}

/* A fresh encoder writes m as exactly the n bytes at p. */
static void assert_encodes_to(const rtmp_msg *m, const uint8_t *p, size_t n)
{
    rtmp_chunk_enc *e = rtmp_chunk_enc_new();
    sh_buf out;
    sh_buf_init(&out, 0);
    cr_assert_eq(rtmp_chunk_enc_write(e, m, &out), 0);
    cr_assert_eq(out.len, n);
    cr_assert(memcmp(out.data, p, n) == 0);
    sh_buf_cleanup(&out);
    rtmp_chunk_enc_free(e);
}

Test(chunk, all_header_types)
{
    wr w = {.n = 0};
    wfmt0(&w, 4, 1000, 3, RTMP_MSG_AUDIO, 1);
    wbytes(&w, "abc", 3);
    wfmt2(&w, 4, 20);
    wbytes(&w, "def", 3);
    wbasic(&w, 3, 4); /* new message, same delta */
    wbytes(&w, "ghi", 3);
    wfmt1(&w, 4, 5, 2, RTMP_MSG_VIDEO);
    wbytes(&w, "jk", 2);
    wbasic(&w, 3, 4);
    wbytes(&w, "lm", 2);
    tmsgs l = decode_all_ways(w.b, w.n, 128);
    cr_assert_eq(l.n, 5);
    uint32_t ts[] = {1000, 1020, 1040, 1045, 1050};
    const char *data[] = {"abc", "def", "ghi", "jk", "lm"};
    for (size_t i = 0; i < 5; i++) {
        cr_assert_eq(l.v[i].m.timestamp, ts[i], "msg %zu ts %u", i, l.v[i].m.timestamp);
        cr_assert_eq(l.v[i].m.len, strlen(data[i]));
        cr_assert(memcmp(l.v[i].m.data, data[i], l.v[i].m.len) == 0);
        cr_assert_eq(l.v[i].m.stream_id, 1u);
        cr_assert_eq(l.v[i].m.csid, 4u);
    }
    cr_assert_eq(l.v[0].m.type, RTMP_MSG_AUDIO);
    cr_assert_eq(l.v[3].m.type, RTMP_MSG_VIDEO);
    cr_assert_eq(l.v[4].m.type, RTMP_MSG_VIDEO);
    tmsgs_free(&l);
}

Test(chunk, type3_after_type0_adds_timestamp_field)
{
    /* FFmpeg / librtmp convention: after a type 0 header the delta is its
     * timestamp field. */
    wr w = {.n = 0};
    wfmt0(&w, 3, 40, 1, 20, 0);
    w8(&w, 'x');
    wbasic(&w, 3, 3);
    w8(&w, 'y');
    tmsgs l = decode_all_ways(w.b, w.n, 128);
    cr_assert_eq(l.n, 2);
    cr_assert_eq(l.v[1].m.timestamp, 80u);
    tmsgs_free(&l);
}

Test(chunk, fresh_stream_type1_accepted)
{
    wr w = {.n = 0};
    wfmt1(&w, 2, 7, 6, RTMP_MSG_USER_CONTROL);
    wbytes(&w, "\0\6\0\0\0\1", 6);
    tmsgs l = decode_all_ways(w.b, w.n, 128);
    cr_assert_eq(l.n, 1);
    cr_assert_eq(l.v[0].m.timestamp, 7u);
    cr_assert_eq(l.v[0].m.stream_id, 0u);
    tmsgs_free(&l);
}

Test(chunk, fresh_stream_type2_or_3_rejected)
{
    for (unsigned fmt = 2; fmt <= 3; fmt++) {
        wr w = {.n = 0};
        wbasic(&w, fmt, 5);
        w24(&w, 1);
        w8(&w, 0);
        tmsgs l = {0};
        sh_error err = {0};
        cr_assert_eq(decode_with(NULL, 0, w.b, w.n, 0, 0, &l, &err), SH_EPROTO);
        cr_assert(err.what && err.where);
        tmsgs_free(&l);
    }
}

Test(chunk, csid_sizes)
{
    const uint32_t ids[] = {2, 3, 63, 64, 65, 319, 320, 321, 65599};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        wr w = {.n = 0};
        wfmt0(&w, ids[i], 5, 200, 18, 1);
        uint8_t payload[200];
        for (int k = 0; k < 200; k++)
            payload[k] = (uint8_t)(k + i);
        wbytes(&w, payload, 128);
        wbasic(&w, 3, ids[i]);
        wbytes(&w, payload + 128, 72);
        size_t bh = ids[i] < 64 ? 1 : ids[i] < 320 ? 2 : 3;
        cr_assert_eq(w.n, bh + 11 + 128 + bh + 72);
        tmsgs l = decode_all_ways(w.b, w.n, 128);
        cr_assert_eq(l.n, 1);
        cr_assert_eq(l.v[0].m.csid, ids[i]);
        cr_assert_eq(l.v[0].m.len, 200);
        cr_assert(memcmp(l.v[0].m.data, payload, 200) == 0);

        /* and the encoder writes the same bytes */
        rtmp_msg m = {18, 1, 5, ids[i], payload, 200};
        assert_encodes_to(&m, w.b, w.n);
        tmsgs_free(&l);
    }
}

Test(chunk, extended_timestamp_type0_and_continuations)
{
    const uint32_t ts = 0x01000000;
    uint8_t payload[300];
    for (int k = 0; k < 300; k++)
        payload[k] = (uint8_t)(k * 7);
    /* 2012-spec form: the continuation repeats the extended timestamp. */
    wr w = {.n = 0};
    wfmt0(&w, 6, ts, 300, 9, 1);
    wbytes(&w, payload, 128);
    wbasic(&w, 3, 6);
    w32(&w, ts);
    wbytes(&w, payload + 128, 128);
    wbasic(&w, 3, 6);
    w32(&w, ts);
    wbytes(&w, payload + 256, 44);
    tmsgs a = decode_all_ways(w.b, w.n, 128);
    cr_assert_eq(a.n, 1);
    cr_assert_eq(a.v[0].m.timestamp, ts);
    cr_assert_eq(a.v[0].m.len, 300);
    cr_assert(memcmp(a.v[0].m.data, payload, 300) == 0);

    /* the encoder produces exactly this */
    rtmp_msg m = {9, 1, ts, 6, payload, 300};
    assert_encodes_to(&m, w.b, w.n);

    /* Tolerated: a sender that omits it on continuations (old spec). */
    wr w2 = {.n = 0};
    wfmt0(&w2, 6, ts, 300, 9, 1);
    wbytes(&w2, payload, 128);
    wbasic(&w2, 3, 6);
    wbytes(&w2, payload + 128, 128);
    wbasic(&w2, 3, 6);
    wbytes(&w2, payload + 256, 44);
    tmsgs b = decode_all_ways(w2.b, w2.n, 128);
    tmsgs_assert_eq(&a, &b);
    tmsgs_free(&a);
    tmsgs_free(&b);
}

Test(chunk, extended_timestamp_omitted_short_last_chunk)
{
    /* The last chunk is shorter than 4 bytes and the sender omitted the
     * extended timestamp: the peeked bytes run into the next header. */
    const uint32_t ts = 0x01234567;
    uint8_t payload[130];
    for (int k = 0; k < 130; k++)
        payload[k] = (uint8_t)(0x80 | k);
    wr w = {.n = 0};
    wfmt0(&w, 6, ts, 130, 9, 1);
    wbytes(&w, payload, 128);
    wbasic(&w, 3, 6);
    wbytes(&w, payload + 128, 2);
    wfmt0(&w, 7, 3, 2, 8, 1);
    wbytes(&w, "zz", 2);
    tmsgs l = decode_all_ways(w.b, w.n, 128);
    cr_assert_eq(l.n, 2);
    cr_assert_eq(l.v[0].m.len, 130);
    cr_assert(memcmp(l.v[0].m.data, payload, 130) == 0);
    cr_assert_eq(l.v[1].m.csid, 7u);
    cr_assert_eq(l.v[1].m.timestamp, 3u);
    tmsgs_free(&l);
}

Test(chunk, extended_delta_type3_new_message)
{
    wr w = {.n = 0};
    wfmt0(&w, 5, 10, 1, 8, 1);
    w8(&w, 'a');
    wfmt2(&w, 5, 0x01000000);
    w8(&w, 'b');
    wbasic(&w, 3, 5);
    w32(&w, 0x01000000);
    w8(&w, 'c');
    tmsgs l = decode_all_ways(w.b, w.n, 128);
    cr_assert_eq(l.n, 3);
    cr_assert_eq(l.v[1].m.timestamp, 10u + 0x01000000u);
    cr_assert_eq(l.v[2].m.timestamp, 10u + 2 * 0x01000000u);
    tmsgs_free(&l);
}

Test(chunk, interleaved_streams)
{
    uint8_t a[300], v[200];
    memset(a, 'A', sizeof(a));
    memset(v, 'V', sizeof(v));
    wr w = {.n = 0};
    wfmt0(&w, 4, 0, 300, 8, 1);
    wbytes(&w, a, 128);
    wfmt0(&w, 6, 0, 200, 9, 1);
    wbytes(&w, v, 128);
    wbasic(&w, 3, 4);
    wbytes(&w, a + 128, 128);
    wbasic(&w, 3, 6);
    wbytes(&w, v + 128, 72);
    wbasic(&w, 3, 4);
    wbytes(&w, a + 256, 44);
    tmsgs l = decode_all_ways(w.b, w.n, 128);
    cr_assert_eq(l.n, 2);
    cr_assert_eq(l.v[0].m.csid, 6u);
    cr_assert_eq(l.v[0].m.len, 200);
    cr_assert(memcmp(l.v[0].m.data, v, 200) == 0);
    cr_assert_eq(l.v[1].m.csid, 4u);
    cr_assert_eq(l.v[1].m.len, 300);
    cr_assert(memcmp(l.v[1].m.data, a, 300) == 0);
    tmsgs_free(&l);
}

Test(chunk, set_chunk_size_mid_stream)
{
    uint8_t p[1000];
    for (int k = 0; k < 1000; k++)
        p[k] = (uint8_t)k;
    wr w = {.n = 0};
    wfmt0(&w, 3, 0, 200, 20, 0);
    wbytes(&w, p, 128);
    wbasic(&w, 3, 3);
    wbytes(&w, p + 128, 72);
    size_t first = w.n;
    wfmt0(&w, 3, 0, 1000, 20, 0);
    wbytes(&w, p, 1000); /* one chunk after the size change */

    rtmp_chunk_dec *d = dec_new();
    size_t used;
    rtmp_msg m;
    sh_error err;
    cr_assert_eq(rtmp_chunk_dec_feed(d, w.b, w.n, &used, &m, &err), 1);
    cr_assert_eq(used, first);
    cr_assert_eq(m.len, 200);
    rtmp_chunk_dec_set_chunk_size(d, 4096);
    size_t used2;
    cr_assert_eq(rtmp_chunk_dec_feed(d, w.b + used, w.n - used, &used2, &m, &err), 1);
    cr_assert_eq(used + used2, w.n);
    cr_assert_eq(m.len, 1000);
    cr_assert(memcmp(m.data, p, 1000) == 0);
    rtmp_chunk_dec_free(d);
}

Test(chunk, abort_drops_partial)
{
    uint8_t p[300];
    memset(p, 'p', sizeof(p));
    wr w = {.n = 0};
    wfmt0(&w, 5, 0, 300, 8, 1);
    wbytes(&w, p, 128);
    size_t cut = w.n;
    wfmt0(&w, 5, 7, 3, 8, 1);
    wbytes(&w, "new", 3);
    rtmp_chunk_dec *d = dec_new();
    size_t used;
    rtmp_msg m;
    cr_assert_eq(rtmp_chunk_dec_feed(d, w.b, cut, &used, &m, NULL), 0);
    rtmp_chunk_dec_abort(d, 5);
    rtmp_chunk_dec_abort(d, 77); /* unknown: no effect */
    cr_assert_eq(rtmp_chunk_dec_feed(d, w.b + cut, w.n - cut, &used, &m, NULL), 1);
    cr_assert_eq(m.len, 3);
    cr_assert_eq(m.timestamp, 7u);
    cr_assert(memcmp(m.data, "new", 3) == 0);
    rtmp_chunk_dec_free(d);
}

Test(chunk, zero_length_message)
{
    wr w = {.n = 0};
    wfmt0(&w, 3, 1, 0, 20, 0);
    wfmt0(&w, 3, 2, 1, 20, 0);
    w8(&w, 'z');
    tmsgs l = decode_all_ways(w.b, w.n, 128);
    cr_assert_eq(l.n, 2);
    cr_assert_eq(l.v[0].m.len, 0);
    cr_assert_eq(l.v[1].m.len, 1);
    tmsgs_free(&l);
    /* the encoder writes an empty message as a lone header */
    rtmp_msg m = {20, 0, 1, 3, NULL, 0};
    assert_encodes_to(&m, w.b, 12);
}

/* ---- encoder ---- */

static void random_msgs(uint64_t seed, size_t count, rtmp_msg *ms, uint8_t **bufs)
{
    static const uint32_t csids[] = {2, 3, 4, 8, 63, 64, 300, 320, 65599};
    uint32_t ts[16] = {0};
    for (size_t i = 0; i < count; i++) {
        rtmp_msg *m = &ms[i];
        size_t ci = trand(&seed) % 9;
        m->csid = csids[ci];
        m->type = (uint8_t)(trand(&seed) % 3 == 0 ? 8 : 9 + trand(&seed) % 2);
        m->stream_id = trand(&seed) % 4 == 0 ? trand(&seed) : 1;
        uint32_t r = trand(&seed) % 10;
        if (r < 4)
            ts[ci] += 20; /* repeat deltas: type 3 */
        else if (r < 6)
            ts[ci] += trand(&seed) % 1000;
        else if (r < 7)
            ts[ci] = 0xFFFFF0 + trand(&seed) % 64; /* around the extended boundary */
        else if (r < 8)
            ts[ci] += 0x01000000;
        else if (r < 9)
            ts[ci] -= trand(&seed) % 100; /* backwards: type 0 */
        m->timestamp = ts[ci];
        size_t len = trand(&seed) % 4 == 0 ? trand(&seed) % 5000 : trand(&seed) % 300;
        if (trand(&seed) % 3 == 0 && i > 0)
            len = ms[i - 1].len;
        bufs[i] = malloc(len ? len : 1);
        for (size_t k = 0; k < len; k++)
            bufs[i][k] = (uint8_t)trand(&seed);
        m->data = bufs[i];
        m->len = len;
    }
}

Test(chunk, encoder_decoder_round_trip_random)
{
    const uint32_t sizes[] = {1, 2, 3, 4, 5, 128, 129, 1000, 4096, 65536};
    for (uint64_t seed = 1; seed <= 40; seed++) {
        enum { N = 60 };
        rtmp_msg ms[N];
        uint8_t *bufs[N];
        random_msgs(seed * 7919, N, ms, bufs);
        uint32_t cs = sizes[seed % 10];
        rtmp_chunk_enc *e = rtmp_chunk_enc_new();
        rtmp_chunk_enc_set_chunk_size(e, cs);
        cr_assert_eq(rtmp_chunk_enc_chunk_size(e), cs);
        sh_buf out;
        sh_buf_init(&out, 0);
        for (size_t i = 0; i < N; i++)
            cr_assert_eq(rtmp_chunk_enc_write(e, &ms[i], &out), 0);
        rtmp_limits lim = rtmp_default_limits;
        lim.max_chunk_size = 65536;
        tmsgs got = {0};
        sh_error err = {0};
        size_t step = seed % 3 == 0 ? 1 : seed % 3 == 1 ? 0 : 777;
        cr_assert_eq(decode_with(&lim, cs, out.data, out.len, 0, step, &got, &err), 0,
                     "seed %llu: %s", (unsigned long long)seed, err.what);
        cr_assert_eq(got.n, N);
        for (size_t i = 0; i < N; i++)
            cr_assert(msg_eq(&got.v[i].m, &ms[i]), "seed %llu msg %zu", (unsigned long long)seed, i);
        tmsgs_free(&got);
        sh_buf_cleanup(&out);
        rtmp_chunk_enc_free(e);
        for (size_t i = 0; i < N; i++)
            free(bufs[i]);
    }
}

Test(chunk, encoder_header_compression)
{
    rtmp_chunk_enc *e = rtmp_chunk_enc_new();
    sh_buf out;
    sh_buf_init(&out, 0);
    uint8_t p[10] = {0};
    rtmp_msg m = {8, 1, 100, 4, p, 10};
    cr_assert_eq(rtmp_chunk_enc_write(e, &m, &out), 0);
    cr_assert_eq(out.data[0] >> 6, 0);
    size_t at = out.len;
    m.timestamp = 120; /* new delta, same length and type: type 2 */
    cr_assert_eq(rtmp_chunk_enc_write(e, &m, &out), 0);
    cr_assert_eq(out.data[at] >> 6, 2);
    cr_assert_eq(out.len - at, 1 + 3 + 10);
    at = out.len;
    m.timestamp = 140; /* same delta: type 3 */
    cr_assert_eq(rtmp_chunk_enc_write(e, &m, &out), 0);
    cr_assert_eq(out.data[at] >> 6, 3);
    cr_assert_eq(out.len - at, 1 + 10);
    at = out.len;
    m.len = 5; /* new length: type 1 */
    m.timestamp = 150;
    cr_assert_eq(rtmp_chunk_enc_write(e, &m, &out), 0);
    cr_assert_eq(out.data[at] >> 6, 1);
    at = out.len;
    m.stream_id = 2; /* new message stream: type 0 */
    cr_assert_eq(rtmp_chunk_enc_write(e, &m, &out), 0);
    cr_assert_eq(out.data[at] >> 6, 0);
    at = out.len;
    m.timestamp = 10; /* backwards: type 0 */
    cr_assert_eq(rtmp_chunk_enc_write(e, &m, &out), 0);
    cr_assert_eq(out.data[at] >> 6, 0);

    rtmp_msg bad = {8, 1, 0, 1, p, 1};
    cr_assert_eq(rtmp_chunk_enc_write(e, &bad, &out), SH_EINVAL);
    bad.csid = 65600;
    cr_assert_eq(rtmp_chunk_enc_write(e, &bad, &out), SH_EINVAL);
    sh_buf_cleanup(&out);
    rtmp_chunk_enc_free(e);
}

Test(chunk, shared_equals_write_full)
{
    uint8_t p[9000];
    for (int k = 0; k < 9000; k++)
        p[k] = (uint8_t)(k * 3);
    const uint32_t tss[] = {0, 77, 0xFFFFFF, 0x7FFFFFFF};
    for (size_t t = 0; t < 4; t++) {
        rtmp_msg m = {19, 1, tss[t], 3, p, 9000};
        sh_buf out;
        sh_buf_init(&out, 0);
        cr_assert_eq(rtmp_chunk_write_full(&m, 4096, &out), 0);
        sh_rcbuf *rb = rtmp_chunk_shared(&m, 4096);
        cr_assert(rb);
        cr_assert_eq(rb->len, out.len);
        cr_assert(memcmp(rb->data, out.data, out.len) == 0);
        tmsgs got = {0};
        cr_assert_eq(decode_with(NULL, 4096, rb->data, rb->len, 0, 0, &got, NULL), 0);
        cr_assert_eq(got.n, 1);
        cr_assert(msg_eq(&got.v[0].m, &m));
        tmsgs_free(&got);
        sh_rcbuf_unref(rb);
        sh_buf_cleanup(&out);
    }
}

/* ---- limits ---- */

Test(chunk, limit_message_size)
{
    rtmp_limits lim = rtmp_default_limits;
    lim.max_message_size = 1000;
    for (uint32_t len = 1000; len <= 1001; len++) {
        wr w = {.n = 0};
        wfmt0(&w, 3, 0, len, 20, 0);
        rtmp_chunk_dec *d = rtmp_chunk_dec_new(&lim);
        size_t used;
        rtmp_msg m;
        sh_error err = {0};
        /* only the header: the limit is checked before any payload */
        int rc = rtmp_chunk_dec_feed(d, w.b, w.n, &used, &m, &err);
        if (len == 1000) {
            cr_assert_eq(rc, 0);
        } else {
            cr_assert_eq(rc, SH_ELIMIT);
            cr_assert(err.what);
        }
        rtmp_chunk_dec_free(d);
    }
    /* type 1 headers are checked too */
    wr w = {.n = 0};
    wfmt0(&w, 3, 0, 1, 20, 0);
    w8(&w, 0);
    wfmt1(&w, 3, 0, 1001, 20);
    tmsgs l = {0};
    cr_assert_eq(decode_with(&lim, 0, w.b, w.n, 0, 0, &l, NULL), SH_ELIMIT);
    cr_assert_eq(l.n, 1);
    tmsgs_free(&l);
}

Test(chunk, limit_chunk_streams)
{
    rtmp_limits lim = rtmp_default_limits;
    lim.max_chunk_streams = 5;
    for (uint32_t n = 5; n <= 6; n++) {
        wr w = {.n = 0};
        for (uint32_t i = 0; i < n; i++) {
            wfmt0(&w, 3 + i, 0, 1, 20, 0);
            w8(&w, (uint8_t)i);
        }
        /* reusing a known stream does not count again */
        wfmt0(&w, 3, 0, 1, 20, 0);
        w8(&w, 9);
        tmsgs l = {0};
        sh_error err = {0};
        int rc = decode_with(&lim, 0, w.b, w.n, 0, 0, &l, &err);
        if (n == 5) {
            cr_assert_eq(rc, 0);
            cr_assert_eq(l.n, 6);
        } else {
            cr_assert_eq(rc, SH_ELIMIT);
            cr_assert_eq(l.n, 5);
        }
        tmsgs_free(&l);
    }
}

Test(chunk, limit_buffered_bytes)
{
    rtmp_limits lim = rtmp_default_limits;
    lim.max_buffered = 300;
    for (size_t extra = 0; extra <= 1; extra++) {
        /* two partial messages holding 128 + (172 + extra) bytes */
        wr w = {.n = 0};
        wfmt0(&w, 4, 0, 1000, 8, 1);
        uint8_t z[200] = {0};
        wbytes(&w, z, 128);
        wfmt0(&w, 5, 0, 1000, 8, 1);
        wbytes(&w, z, 128);
        wbasic(&w, 3, 5);
        wbytes(&w, z, 44 + extra);
        tmsgs l = {0};
        sh_error err = {0};
        int rc = decode_with(&lim, 0, w.b, w.n, 0, 0, &l, &err);
        cr_assert_eq(rc, extra ? SH_ELIMIT : 0, "extra %zu rc %d", extra, rc);
        tmsgs_free(&l);
    }
    /* a message that completes releases its bytes */
    wr w = {.n = 0};
    uint8_t z[300] = {0};
    for (int i = 0; i < 10; i++) {
        wfmt0(&w, 4, 0, 250, 8, 1);
        wbytes(&w, z, 128);
        wbasic(&w, 3, 4);
        wbytes(&w, z, 122);
    }
    tmsgs l = {0};
    cr_assert_eq(decode_with(&lim, 0, w.b, w.n, 0, 0, &l, NULL), 0);
    cr_assert_eq(l.n, 10);
    tmsgs_free(&l);
}

Test(chunk, garbage_never_crashes)
{
    uint64_t seed = 0x5eed;
    uint8_t buf[4096];
    int errors = 0;
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = trand(&seed) % sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)trand(&seed);
        /* bias towards plausible headers now and then */
        if (iter % 3 == 0 && n > 0)
            buf[0] = (uint8_t)(buf[0] & 0x3F);
        rtmp_limits lim = rtmp_default_limits;
        lim.max_message_size = 1 + trand(&seed) % 70000;
        uint32_t cs = 1 + trand(&seed) % 300;
        tmsgs l = {0};
        sh_error err = {0};
        size_t step = iter % 2 ? 0 : 1 + trand(&seed) % 17;
        int rc = decode_with(&lim, cs, buf, n, 0, step, &l, &err);
        if (rc < 0) {
            errors++;
            cr_assert(err.what != NULL);
        }
        tmsgs_free(&l);
    }
    cr_assert_gt(errors, 0);
}

Test(chunk, mutated_streams_never_crash)
{
    /* Valid encoder output with a few bytes flipped: reaches deeper states
     * than pure noise. */
    uint64_t seed = 0xC0FFEE;
    for (int iter = 0; iter < 400; iter++) {
        enum { N = 20 };
        rtmp_msg ms[N];
        uint8_t *bufs[N];
        random_msgs(seed + (uint64_t)iter, N, ms, bufs);
        rtmp_chunk_enc *e = rtmp_chunk_enc_new();
        uint32_t cs = 1 + trand(&seed) % 300;
        rtmp_chunk_enc_set_chunk_size(e, cs);
        sh_buf out;
        sh_buf_init(&out, 0);
        for (size_t i = 0; i < N; i++)
            cr_assert_eq(rtmp_chunk_enc_write(e, &ms[i], &out), 0);
        size_t flips = 1 + trand(&seed) % 8;
        for (size_t f = 0; f < flips && out.len; f++)
            out.data[trand(&seed) % out.len] ^= (uint8_t)(1 + trand(&seed) % 255);
        rtmp_limits lim = rtmp_default_limits;
        lim.max_buffered = 1 + trand(&seed) % 20000;
        lim.max_chunk_streams = 1 + trand(&seed) % 10;
        tmsgs l = {0};
        sh_error err = {0};
        int rc = decode_with(&lim, cs, out.data, out.len, 0, iter % 2 ? 0 : 1 + trand(&seed) % 9,
                             &l, &err);
        cr_assert(rc == 0 || (rc < 0 && err.what));
        for (size_t i = 0; i < l.n; i++)
            cr_assert_leq(l.v[i].m.len, RTMP_DEFAULT_MAX_MESSAGE_SIZE);
        tmsgs_free(&l);
        sh_buf_cleanup(&out);
        rtmp_chunk_enc_free(e);
        for (size_t i = 0; i < N; i++)
            free(bufs[i]);
    }
}
