/* sh_rcbuf.h - reference-counted immutable byte buffers and an output queue.
 *
 * One outgoing message (for example a shared-object change already cut into
 * RTMP chunks) is encoded once into an sh_rcbuf and the same buffer is
 * queued to every recipient.  The buffer is freed when its last reference
 * is dropped, i.e. when the last connection has written it or was closed.
 *
 * sh_outq is a connection's queue of pending output: a FIFO of (buffer,
 * offset) slices.  The I/O layer gathers up to N slices into one writev
 * (sh_outq_iov) and tells the queue how many bytes went out
 * (sh_outq_consume).  Single-threaded: refcounts are not atomic.
 */
#ifndef SH_RCBUF_H
#define SH_RCBUF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

typedef struct sh_rcbuf {
    uint32_t refs;   /* private */
    size_t len;      /* read-only after the buffer was shared */
    size_t cap;      /* read-only */
    uint8_t data[];  /* len valid bytes */
} sh_rcbuf;

/* Returns a new buffer with room for cap bytes, len 0, one reference owned
 * by the caller; NULL when out of memory. */
sh_rcbuf *sh_rcbuf_new(size_t cap);
/* New buffer holding a copy of p[0..n). */
sh_rcbuf *sh_rcbuf_copy(const void *p, size_t n);
sh_rcbuf *sh_rcbuf_ref(sh_rcbuf *b);
void sh_rcbuf_unref(sh_rcbuf *b);   /* accepts NULL */

typedef struct sh_outq_item {
    sh_rcbuf *buf;
    size_t off;
} sh_outq_item;

typedef struct sh_outq {
    sh_outq_item *items; /* private ring */
    size_t head;         /* private */
    size_t count;        /* read-only: slices queued */
    size_t cap;          /* private */
    size_t bytes;        /* read-only: bytes not yet written */
    sh_rcbuf *tail;      /* private: the queue's own last buffer, which small
                            copies are appended to (NULL when the last slice
                            is not one) */
} sh_outq;

/* Small copies (sh_outq_push_copy of at most SH_OUTQ_COALESCE bytes) are
 * appended to one buffer the queue owns, so a burst of control messages
 * costs its bytes, not an allocation each. */
#define SH_OUTQ_COALESCE 256
#define SH_OUTQ_TAIL_CAP 2048
/* What one queued slice costs beside its bytes: the ring entry and a share
 * of the buffer's header and allocator overhead.  Used by sh_outq_mem. */
#define SH_OUTQ_SLICE_COST 64

void sh_outq_init(sh_outq *q);
void sh_outq_cleanup(sh_outq *q); /* drops every queued reference */
/* Queues b (the queue takes a new reference of its own). */
int sh_outq_push(sh_outq *q, sh_rcbuf *b);
/* Queues a copy of p[0..n) (appended to the queue's own tail buffer when
 * small, see SH_OUTQ_COALESCE). */
int sh_outq_push_copy(sh_outq *q, const void *p, size_t n);
/* Memory the queue makes its connection hold: the bytes not yet written
 * plus SH_OUTQ_SLICE_COST per slice plus the ring.  Shared buffers count
 * in full on every queue they are in: this bounds what one connection can
 * keep alive, which is what the caps are about. */
static inline size_t sh_outq_mem(const sh_outq *q)
{
    return q->bytes + q->count * SH_OUTQ_SLICE_COST + q->cap * sizeof(*q->items);
}
/* Fills up to max iovecs with the oldest pending bytes; returns how many. */
size_t sh_outq_iov(const sh_outq *q, struct iovec *iov, size_t max);
/* Drops n written bytes from the front. */
void sh_outq_consume(sh_outq *q, size_t n);
/* Frees the ring when nothing is queued (an idle connection then holds
 * none); the next push allocates it again.  Not done by consume, which a
 * busy connection calls every loop turn. */
void sh_outq_trim(sh_outq *q);

#endif
