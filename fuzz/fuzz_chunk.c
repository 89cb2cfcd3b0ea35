/* fuzz_chunk.c - the chunk stream decoder (rtmp_chunk_dec) fed arbitrary
 * bytes, as the connection layer would after the handshake.
 *
 * Input: mode byte, then the stream.  Mode:
 *   bit 0    tight limits (small messages, few chunk streams, little
 *            buffering), so the limit branches are reached
 *   bits 1-7 seed of the split points of the second pass
 * Set Chunk Size (type 1) and Abort (type 2) messages are applied the way
 * rtmp_conn does (chunk size checked against the limit first).
 * Properties: the stream decoded in one piece and decoded in small pieces
 * gives the same messages and the same final result (the decoder's
 * contract); no message exceeds the message size limit; consumed never
 * exceeds the input.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz_common.h"
#include "rtmp.h"

#define MAX_MSGS 512

typedef struct seen {
    uint8_t type;
    uint32_t sid, ts, csid;
    size_t len;
    uint32_t hash;
} seen;

static uint32_t fnv(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static const rtmp_limits tight = {
    .max_chunk_size = 256,
    .max_message_size = 512,
    .max_chunk_streams = 4,
    .max_buffered = 1024,
};

/* Returns the final result (0 when all input was used, else the error);
 * fills log[0..*nlog). */
static int run(const rtmp_limits *lim, const uint8_t *buf, size_t len, uint8_t seed,
               bool split, seen *log, size_t *nlog)
{
    rtmp_chunk_dec *d = rtmp_chunk_dec_new(lim);
    FZ_CHECK(d != NULL);
    uint32_t x = seed * 2654435761u + 1;
    size_t off = 0;
    int result = 0;
    bool stop = false;
    *nlog = 0;
    while (off < len && !stop) {
        size_t n = len - off;
        if (split) {
            x = x * 1103515245u + 12345u;
            size_t step = 1 + (x >> 16) % 23;
            n = step < n ? step : n;
        }
        /* one exact-size copy per piece: reading past it is caught */
        uint8_t *piece = fz_dup(buf + off, n);
        size_t done = 0;
        while (done < n && *nlog < MAX_MSGS) {
            size_t used = 0;
            rtmp_msg m;
            sh_error err = {0};
            int rc = rtmp_chunk_dec_feed(d, piece + done, n - done, &used, &m, &err);
            FZ_CHECK(used <= n - done);
            done += used;
            if (rc < 0) {
                result = rc;
                stop = true;
                break;
            }
            if (rc == 0) {
                FZ_CHECK(done == n);
                break;
            }
            FZ_CHECK(rc == 1);
            FZ_CHECK(m.len <= lim->max_message_size);
            FZ_CHECK(m.len == 0 || m.data != NULL);
            seen *s = &log[(*nlog)++];
            s->type = m.type;
            s->sid = m.stream_id;
            s->ts = m.timestamp;
            s->csid = m.csid;
            s->len = m.len;
            s->hash = fnv(m.data, m.len);
            if (m.type == RTMP_MSG_SET_CHUNK_SIZE && m.len >= 4) {
                uint32_t v = sh_get_u32be(m.data);
                if (v == 0 || v > 0x7FFFFFFF || v > lim->max_chunk_size) {
                    result = SH_ELIMIT;
                    stop = true;
                    break;
                }
                rtmp_chunk_dec_set_chunk_size(d, v);
            } else if (m.type == RTMP_MSG_ABORT && m.len >= 4) {
                rtmp_chunk_dec_abort(d, sh_get_u32be(m.data));
            }
        }
        free(piece);
        off += done;
        if (*nlog >= MAX_MSGS)
            break;
    }
    rtmp_chunk_dec_free(d);
    return result;
}

static seen log_a[MAX_MSGS], log_b[MAX_MSGS];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    const rtmp_limits *lim = (mode & 1) ? &tight : &rtmp_default_limits;
    size_t na = 0, nb = 0;
    int ra = run(lim, data + 1, size - 1, mode >> 1, false, log_a, &na);
    int rb = run(lim, data + 1, size - 1, mode >> 1, true, log_b, &nb);
    if (ra != rb || na != nb)
        fprintf(stderr, "whole: rc %d, %zu messages; split: rc %d, %zu messages\n", ra, na,
                rb, nb);
    FZ_CHECK(ra == rb);
    FZ_CHECK(na == nb);
    for (size_t i = 0; i < na; i++) {
        const seen *a = &log_a[i], *b = &log_b[i];
        bool same = a->type == b->type && a->sid == b->sid && a->ts == b->ts &&
                    a->csid == b->csid && a->len == b->len && a->hash == b->hash;
        if (!same)
            fprintf(stderr, "message %zu: type %u/%u len %zu/%zu ts %u/%u csid %u/%u\n", i,
                    a->type, b->type, a->len, b->len, a->ts, b->ts, a->csid, b->csid);
        FZ_CHECK(same);
    }
    return 0;
}
