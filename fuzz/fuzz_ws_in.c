/* fuzz_ws_in.c - WebSocket input (http/ws.h's ws_in: frame checks, wslay,
 * permessage-deflate, UTF-8).
 *
 * Input: mode byte, a 4-byte seed, then either the raw bytes a client
 * sends (mode bit 1 clear) or frame descriptions the harness turns into
 * masked frames (bit 1 set): per frame a first byte (FIN, RSV, opcode as
 * sent), a control byte (bit 7: leave unmasked; bit 6: compress the
 * payload with ws_zip_deflate; bit 5: a 16-bit length follows, else
 * 8-bit), the length, the payload.  Bit 0: permessage-deflate agreed.
 * Bits 2-3: max_message (16, 300, 4096, 1 MiB); bits 4-5: messages per
 * feed (1, 2, 5, unlimited).
 * The bytes are fed whole, and in pieces whose sizes come from the seed;
 * what a feed leaves (the message budget) is fed again.
 * Properties: both give the same events and replies in the same order and
 * the same final code; text messages are valid UTF-8 and no message
 * passes max_message (also once inflated), pongs hold at most 125 bytes;
 * the replies are well-formed server frames (final, unmasked, no RSV,
 * pong or close, at most 125 bytes, a close carrying no code or a valid
 * one, nothing after the close); a failure's close frame carries its
 * code; the reader holds at most its message cap and one wslay context.
 */
#include <string.h>

#include "fuzz_common.h"
#include "ws.h"

static ws_zip *zip;

typedef struct rec {
    sh_buf log;
    sh_buf *out;
    size_t out_seen;
    size_t max_message;
} rec;

static void log_out(rec *r)
{
    if (r->out->len > r->out_seen) {
        char line[48];
        int n = snprintf(line, sizeof(line), "replies %zu:", r->out->len - r->out_seen);
        sh_buf_append(&r->log, line, (size_t)n);
        sh_buf_append(&r->log, r->out->data + r->out_seen, r->out->len - r->out_seen);
        r->out_seen = r->out->len;
    }
}

static bool on_ev(void *ud, ws_in_event ev, const uint8_t *data, size_t len)
{
    rec *r = ud;
    log_out(r);
    switch (ev) {
    case WS_IN_TEXT:
        FZ_CHECK(len <= r->max_message);
        FZ_CHECK(ws_utf8_valid(data, len));
        break;
    case WS_IN_BINARY:
        FZ_CHECK(len <= r->max_message);
        break;
    case WS_IN_PONG:
        FZ_CHECK(len <= 125);
        break;
    case WS_IN_CLOSE:
        FZ_CHECK(len == 0 || (len >= 1000 && len <= 4999));
        break;
    }
    char head[48];
    int n = snprintf(head, sizeof(head), "ev %d %zu:", (int)ev, len);
    sh_buf_append(&r->log, head, (size_t)n);
    if (data && ev != WS_IN_CLOSE)
        sh_buf_append(&r->log, data, len);
    return true;
}

/* The replies are server frames: final, unmasked, no RSV, pong or close,
 * at most 125 bytes; nothing after a close.  Returns the close code sent
 * (0: none, -1: a close without a code). */
static int check_replies(const uint8_t *p, size_t n)
{
    size_t i = 0;
    int closed = 0;
    while (i < n) {
        FZ_CHECK(!closed);
        FZ_CHECK(n - i >= 2);
        uint8_t op = p[i] & 0x0F;
        FZ_CHECK((p[i] & 0xF0) == 0x80);
        FZ_CHECK(op == WS_OP_PONG || op == WS_OP_CLOSE);
        FZ_CHECK((p[i + 1] & 0x80) == 0);
        size_t len = p[i + 1] & 0x7F;
        FZ_CHECK(len <= 125 && n - i - 2 >= len);
        if (op == WS_OP_CLOSE) {
            FZ_CHECK(len != 1);
            closed = len ? (p[i + 2] << 8 | p[i + 3]) : -1;
            if (len)
                FZ_CHECK((closed >= 1000 && closed <= 1011) || (closed >= 3000 && closed <= 4999));
        }
        i += 2 + len;
    }
    return closed;
}

typedef struct splitter {
    uint32_t x;
    size_t max; /* 0: one piece */
} splitter;

static size_t next_piece(splitter *s, size_t left)
{
    if (s->max == 0)
        return left;
    s->x ^= s->x << 13;
    s->x ^= s->x >> 17;
    s->x ^= s->x << 5;
    size_t k = 1 + s->x % s->max;
    return k < left ? k : left;
}

static int run(const uint8_t *in, size_t n, size_t max_message, bool deflate, uint32_t max_msgs,
               splitter *sp, sh_buf *log)
{
    ws_in *w = ws_in_new(max_message, deflate, zip);
    FZ_CHECK(w);
    size_t idle = ws_in_mem(w);
    sh_buf out;
    sh_buf_init(&out, n + WS_IN_REPLY_SLACK);
    rec r = {.out = &out, .max_message = max_message};
    sh_buf_init(&r.log, SH_BUF_MAX_DEFAULT);
    int code = 0;
    size_t off = 0;
    while (off < n && !code) {
        size_t k = next_piece(sp, n - off), poff = 0;
        for (int guard = 0; poff < k && !code && guard < 1000000; guard++) {
            size_t used = 0;
            code = ws_in_feed(w, in + off + poff, k - poff, &used, max_msgs, on_ev, &r, &out);
            FZ_CHECK(used <= k - poff);
            FZ_CHECK(ws_in_mem(w) <= idle + 16384 + max_message);
            poff += used;
        }
        off += k;
    }
    log_out(&r);
    int sent = check_replies(out.data, out.len);
    if (code && code != 1011)
        FZ_CHECK(sent == code);
    if (code)
        FZ_CHECK(ws_in_closed(w));
    char tail[32];
    int tn = snprintf(tail, sizeof(tail), "code %d", code);
    sh_buf_append(&r.log, tail, (size_t)tn);
    *log = r.log;
    sh_buf_cleanup(&out);
    ws_in_free(w);
    return code;
}

/* Frame descriptions -> masked client frames. */
static size_t build(fz_in *in, uint8_t *out, size_t cap, bool deflate, uint32_t seed)
{
    size_t k = 0;
    uint8_t key[4] = {(uint8_t)seed, (uint8_t)(seed >> 8), (uint8_t)(seed >> 16),
                      (uint8_t)(seed >> 24)};
    while (fz_left(in) >= 2) {
        uint8_t b0 = fz_u8(in), ctl = fz_u8(in);
        size_t len = ctl & 0x20 ? fz_u16(in) : fz_u8(in);
        size_t got;
        const uint8_t *p = fz_take(in, len, &got);
        sh_rcbuf *z = NULL;
        if ((ctl & 0x40) && deflate) {
            z = ws_zip_deflate(zip, p, got);
            FZ_CHECK(z);
            p = z->data;
            got = z->len;
        }
        if (cap - k < 14 + got) {
            sh_rcbuf_unref(z);
            break;
        }
        out[k++] = b0;
        uint8_t m = ctl & 0x80 ? 0 : 0x80;
        if (got < 126) {
            out[k++] = (uint8_t)(m | got);
        } else if (got <= 0xFFFF) {
            out[k++] = m | 126;
            out[k++] = (uint8_t)(got >> 8);
            out[k++] = (uint8_t)got;
        } else {
            out[k++] = m | 127;
            for (int i = 0; i < 8; i++)
                out[k++] = (uint8_t)((uint64_t)got >> (56 - 8 * i));
        }
        if (m) {
            memcpy(out + k, key, 4);
            k += 4;
        }
        for (size_t i = 0; i < got; i++)
            out[k + i] = m ? p[i] ^ key[i & 3] : p[i];
        k += got;
        sh_rcbuf_unref(z);
    }
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    if (!zip) {
        zip = ws_zip_new();
        FZ_CHECK(zip);
    }
    static const size_t maxes[4] = {16, 300, 4096, 1 << 20};
    static const uint32_t budgets[4] = {1, 2, 5, 1000000};
    uint8_t mode = data[0];
    bool deflate = mode & 1;
    size_t max_message = maxes[(mode >> 2) & 3];
    uint32_t max_msgs = budgets[(mode >> 4) & 3];
    uint32_t seed = (uint32_t)data[1] << 24 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 8 |
                    data[4];
    uint8_t *in;
    size_t n;
    if (mode & 2) {
        fz_in fi;
        fz_init(&fi, data + 5, size - 5);
        size_t cap = 2 * size + 65536;
        uint8_t *tmp = malloc(cap);
        FZ_CHECK(tmp);
        n = build(&fi, tmp, cap, deflate, seed);
        in = fz_dup(tmp, n);
        free(tmp);
    } else {
        n = size - 5;
        in = fz_dup(data + 5, n);
    }
    sh_buf whole, split;
    splitter one = {.max = 0};
    splitter many = {.x = seed | 1, .max = 1 + (seed >> 24) % 40};
    int c1 = run(in, n, max_message, deflate, max_msgs, &one, &whole);
    int c2 = run(in, n, max_message, deflate, max_msgs, &many, &split);
    FZ_CHECK(c1 == c2);
    if (whole.len != split.len || memcmp(whole.data, split.data, whole.len) != 0) {
        fprintf(stderr, "whole (%zu bytes) and split (%zu bytes) logs differ\n", whole.len,
                split.len);
        for (int k = 0; k < 2; k++) {
            const sh_buf *b = k ? &split : &whole;
            fprintf(stderr, "%s: ", k ? "split" : "whole");
            for (size_t i = 0; i < b->len && i < 400; i++)
                fprintf(stderr, b->data[i] >= 32 && b->data[i] < 127 ? "%c" : "\\x%02x",
                        b->data[i]);
            fprintf(stderr, "\n");
        }
        FZ_CHECK(!"fed whole and in pieces differ");
    }
    sh_buf_cleanup(&whole);
    sh_buf_cleanup(&split);
    free(in);
    return 0;
}
