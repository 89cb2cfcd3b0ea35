#include "sh_rcbuf.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "sh_err.h"

sh_rcbuf *sh_rcbuf_new(size_t cap)
{
    if (cap > SIZE_MAX - sizeof(sh_rcbuf))
        return NULL;
    sh_rcbuf *b = malloc(sizeof(*b) + cap);
    if (!b)
        return NULL;
    b->refs = 1;
    b->len = 0;
    b->cap = cap;
    return b;
}

sh_rcbuf *sh_rcbuf_copy(const void *p, size_t n)
{
    sh_rcbuf *b = sh_rcbuf_new(n);
    if (b) {
        if (n)
            memcpy(b->data, p, n);
        b->len = n;
    }
    return b;
}

sh_rcbuf *sh_rcbuf_ref(sh_rcbuf *b)
{
    b->refs++;
    return b;
}

void sh_rcbuf_unref(sh_rcbuf *b)
{
    if (b && --b->refs == 0)
        free(b);
}

void sh_outq_init(sh_outq *q)
{
    memset(q, 0, sizeof(*q));
}

void sh_outq_cleanup(sh_outq *q)
{
    /* q->tail, when set, is one of the queued slices. */
    for (size_t i = 0; i < q->count; i++)
        sh_rcbuf_unref(q->items[(q->head + i) & (q->cap - 1)].buf);
    free(q->items);
    memset(q, 0, sizeof(*q));
}

/* cap is a power of two (8, doubled), so ring positions are masked, not
 * divided: the writev path computes one per queued slice. */
static int outq_grow(sh_outq *q)
{
    size_t ncap = q->cap ? q->cap * 2 : 8;
    sh_outq_item *n = malloc(ncap * sizeof(*n));
    if (!n)
        return SH_ENOMEM;
    for (size_t i = 0; i < q->count; i++)
        n[i] = q->items[(q->head + i) & (q->cap - 1)];
    free(q->items);
    q->items = n;
    q->cap = ncap;
    q->head = 0;
    return 0;
}

int sh_outq_push(sh_outq *q, sh_rcbuf *b)
{
    if (b->len == 0)
        return 0;
    if (q->count == q->cap && outq_grow(q))
        return SH_ENOMEM;
    q->items[(q->head + q->count) & (q->cap - 1)] = (sh_outq_item){sh_rcbuf_ref(b), 0};
    q->count++;
    q->bytes += b->len;
    q->tail = NULL; /* the last slice is no longer the queue's own */
    return 0;
}

int sh_outq_push_copy(sh_outq *q, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    /* Appending never moves bytes already queued: a write in flight
     * points at them, and only at the length it was given. */
    if (q->tail && q->tail->cap - q->tail->len >= n) {
        memcpy(q->tail->data + q->tail->len, p, n);
        q->tail->len += n;
        q->bytes += n;
        return 0;
    }
    sh_rcbuf *b = sh_rcbuf_new(n <= SH_OUTQ_COALESCE ? SH_OUTQ_TAIL_CAP : n);
    if (!b)
        return SH_ENOMEM;
    memcpy(b->data, p, n);
    b->len = n;
    int rc = sh_outq_push(q, b);
    sh_rcbuf_unref(b);
    if (rc == 0 && n <= SH_OUTQ_COALESCE)
        q->tail = b; /* only the queue holds it now */
    return rc;
}

size_t sh_outq_iov(const sh_outq *q, struct iovec *iov, size_t max)
{
    size_t n = q->count < max ? q->count : max;
    for (size_t i = 0; i < n; i++) {
        const sh_outq_item *it = &q->items[(q->head + i) & (q->cap - 1)];
        iov[i].iov_base = it->buf->data + it->off;
        iov[i].iov_len = it->buf->len - it->off;
    }
    return n;
}

void sh_outq_consume(sh_outq *q, size_t n)
{
    assert(n <= q->bytes);
    q->bytes -= n;
    while (n > 0) {
        sh_outq_item *it = &q->items[q->head];
        size_t left = it->buf->len - it->off;
        if (n < left) {
            it->off += n;
            return;
        }
        n -= left;
        if (it->buf == q->tail)
            q->tail = NULL;
        sh_rcbuf_unref(it->buf);
        q->head = (q->head + 1) & (q->cap - 1);
        q->count--;
    }
}

void sh_outq_trim(sh_outq *q)
{
    if (q->count != 0)
        return;
    free(q->items);
    q->items = NULL;
    q->cap = 0;
    q->head = 0;
}
