/* util.h - helpers shared by the rtmp unit tests. */
#ifndef RTMP_TEST_UTIL_H
#define RTMP_TEST_UTIL_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "rtmp.h"

/* A decoded message with its own copy of the bytes. */
typedef struct tmsg {
    rtmp_msg m;
    uint8_t *data;
} tmsg;

typedef struct tmsgs {
    tmsg *v;
    size_t n, cap;
} tmsgs;

static inline void tmsgs_push(tmsgs *l, const rtmp_msg *m)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
        cr_assert(l->v);
    }
    tmsg *t = &l->v[l->n++];
    t->m = *m;
    t->data = malloc(m->len ? m->len : 1);
    cr_assert(t->data);
    if (m->len)
        memcpy(t->data, m->data, m->len);
    t->m.data = t->data;
}

static inline void tmsgs_free(tmsgs *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].data);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static inline bool msg_eq(const rtmp_msg *a, const rtmp_msg *b)
{
    return a->type == b->type && a->stream_id == b->stream_id && a->timestamp == b->timestamp &&
           a->csid == b->csid && a->len == b->len &&
           (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static inline void tmsgs_assert_eq(const tmsgs *a, const tmsgs *b)
{
    cr_assert_eq(a->n, b->n, "message count %zu != %zu", a->n, b->n);
    for (size_t i = 0; i < a->n; i++)
        cr_assert(msg_eq(&a->v[i].m, &b->v[i].m), "message %zu differs", i);
}

/* Feeds p[0..n) to d in pieces of `step` bytes (0 = all at once), except
 * that the first piece ends at `split` when split > 0.  Returns the first
 * error code, or 0. */
static inline int feed_split(rtmp_chunk_dec *d, const uint8_t *p, size_t n, size_t split,
                             size_t step, tmsgs *out, sh_error *err)
{
    size_t off = 0;
    while (off < n) {
        size_t piece = n - off;
        if (split && off < split)
            piece = split - off;
        else if (step && piece > step)
            piece = step;
        /* Copy the piece to its own allocation so an over-read past it is
         * caught by the sanitizer. */
        uint8_t *tmp = malloc(piece);
        cr_assert(tmp);
        memcpy(tmp, p + off, piece);
        size_t at = 0;
        for (int guard = 0; guard < 1000000; guard++) {
            size_t used = 0;
            rtmp_msg m;
            int rc = rtmp_chunk_dec_feed(d, tmp + at, piece - at, &used, &m, err);
            cr_assert_leq(used, piece - at);
            at += used;
            if (rc < 0) {
                free(tmp);
                return rc;
            }
            if (rc == 1) {
                tmsgs_push(out, &m);
                continue;
            }
            cr_assert_eq(at, piece, "rc 0 must consume everything");
            break;
        }
        free(tmp);
        off += piece;
    }
    return 0;
}

/* Deterministic PRNG (xorshift) for reproducible tests. */
static inline uint32_t trand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return (uint32_t)(x >> 16);
}

#endif
