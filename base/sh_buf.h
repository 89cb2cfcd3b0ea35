/* sh_buf.h - growable byte buffer with a hard maximum, and a bounded reader.
 *
 * sh_buf owns its bytes.  Every append checks the maximum first; once an
 * append fails the buffer's `failed` flag sticks, so a writer can do a run
 * of appends and check once at the end (curl's dynbuf habit).
 *
 * sh_rd is a cursor over borrowed bytes: every read checks the remaining
 * length first and moves only on success.
 */
#ifndef SH_BUF_H
#define SH_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sh_buf {
    uint8_t *data;   /* read-only for users; NULL until the first append */
    size_t len;      /* read-only */
    size_t cap;      /* private */
    size_t max;      /* private: hard maximum of len */
    bool failed;     /* read-only: sticky, set when an append failed */
} sh_buf;

#define SH_BUF_MAX_DEFAULT ((size_t)64 << 20)

void sh_buf_init(sh_buf *b, size_t max);
void sh_buf_cleanup(sh_buf *b);           /* frees the bytes; b can be reused after init */
void sh_buf_reset(sh_buf *b);             /* len = 0, failed = false, keeps memory */
int sh_buf_reserve(sh_buf *b, size_t extra);
int sh_buf_append(sh_buf *b, const void *p, size_t n);
int sh_buf_put_u8(sh_buf *b, uint8_t v);
int sh_buf_put_u16be(sh_buf *b, uint16_t v);
int sh_buf_put_u24be(sh_buf *b, uint32_t v);
int sh_buf_put_u32be(sh_buf *b, uint32_t v);
int sh_buf_put_u32le(sh_buf *b, uint32_t v);
int sh_buf_put_f64be(sh_buf *b, double v);
/* A saved position: sh_buf_rollback() drops everything appended since
 * sh_buf_mark() and restores the failed flag, so an encoder can undo a
 * value it could not finish. */
typedef struct sh_buf_pos {
    size_t len;
    bool failed;
} sh_buf_pos;
static inline sh_buf_pos sh_buf_mark(const sh_buf *b) { return (sh_buf_pos){b->len, b->failed}; }
void sh_buf_rollback(sh_buf *b, sh_buf_pos pos);
/* After sh_buf_reserve(b, n) succeeded and the caller wrote n bytes at
 * b->data + b->len, counts them in. */
void sh_buf_advance(sh_buf *b, size_t n);
/* Takes the bytes out of b (caller owns them, free()); b is left empty. */
uint8_t *sh_buf_steal(sh_buf *b, size_t *len);

typedef struct sh_rd {
    const uint8_t *p;
    const uint8_t *end;
    const uint8_t *start; /* for offsets in error reports */
} sh_rd;

static inline void sh_rd_init(sh_rd *r, const void *p, size_t n)
{
    static const uint8_t none[1];
    if (!p) /* (NULL, 0): keep the cursor arithmetic defined */
        p = none;
    r->start = r->p = (const uint8_t *)p;
    r->end = r->p + n;
}
static inline size_t sh_rd_left(const sh_rd *r) { return (size_t)(r->end - r->p); }
static inline size_t sh_rd_offset(const sh_rd *r) { return (size_t)(r->p - r->start); }

/* Each returns 0 or SH_EMORE (too few bytes; the cursor does not move). */
int sh_rd_u8(sh_rd *r, uint8_t *v);
int sh_rd_u16be(sh_rd *r, uint16_t *v);
int sh_rd_u24be(sh_rd *r, uint32_t *v);
int sh_rd_u32be(sh_rd *r, uint32_t *v);
int sh_rd_u32le(sh_rd *r, uint32_t *v);
int sh_rd_f64be(sh_rd *r, double *v);
/* Points *p at the next n bytes (borrowed from the input) and skips them. */
int sh_rd_bytes(sh_rd *r, size_t n, const uint8_t **p);

/* Big-endian helpers over raw memory. */
static inline uint16_t sh_get_u16be(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t sh_get_u24be(const uint8_t *p) { return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2]; }
static inline uint32_t sh_get_u32be(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static inline void sh_put_u16be(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void sh_put_u24be(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 16); p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)v; }
static inline void sh_put_u32be(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }

#endif
