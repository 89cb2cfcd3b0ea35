/* amf_int.h - private layout of amf_value, shared by the value model, the
 * decoder and the encoder.  Nothing outside amf/ includes this.
 *
 * Scalars are one small block; strings carry their bytes in the same block
 * (one malloc per string).  Containers (objects, arrays, vectors,
 * dictionaries) are an amf_cont whose first member is the amf_value header,
 * so a container pointer and its header pointer are the same address.
 * null, undefined, true, false, unsupported and the empty string are
 * static singletons, marked by a reference count of 0 (no live allocated
 * value has one): never allocated, never freed, their count is never
 * touched, so they cost no memory and are safe to share between threads.
 *
 * Memory is counted with one model everywhere (amf_mem_block): the
 * decoder's budget, amf_value_mem and the shared-object engine's limits
 * add up the same figures.
 */
#ifndef AMF_INT_H
#define AMF_INT_H

#include "amf.h"
#include "sh_map.h"

enum {
    AMF_F_DYNAMIC = 1u << 0,  /* object: has dynamic members */
    AMF_F_EXTERNAL = 1u << 1, /* object: externalizable, e[0] is the wrapped value */
    AMF_F_FIXED = 1u << 2,    /* vector: fixed length */
    AMF_F_WEAK = 1u << 3,     /* dictionary: weak keys */
    AMF_F_COUNT = 1u << 4,    /* ECMA array: count field present */
    AMF_F_BUSY = 1u << 5,     /* being decoded / encoded (cycle detection) */
};

struct amf_value {
    uint32_t refs;
    uint8_t type;  /* amf_type */
    uint8_t flags;
    int16_t tz;    /* date: AMF0 time-zone minutes */
    union {
        bool b;
        int32_t i;
        double d;  /* number, date milliseconds */
        struct {
            char *p;    /* NUL-terminated, points into the same block */
            uint32_t n;
        } s;
    } u;
};

typedef struct amf_member {
    uint32_t koff, klen; /* key bytes in the container's kbuf (NUL-terminated) */
    amf_value *v;
} amf_member;

typedef struct amf_cont {
    amf_value h;
    char *cls;         /* class / vector element type, NUL-terminated, NULL = "";
                        * the bytes of clsv */
    uint32_t cls_len;
    amf_value *clsv;   /* AMF_STRING owning cls; shared by every object decoded
                        * with the same AMF3 traits, so a class name costs once */
    uint32_t sealed;   /* object: leading members that are sealed */
    uint32_t count;    /* ECMA array: count field (AMF_F_COUNT) */
    amf_member *m;     /* members: objects, ECMA arrays (assoc part) */
    uint32_t nm, mcap;
    char *kbuf;        /* member keys */
    uint32_t klen, kcap;
    amf_value **e;     /* dense part, object vector, dictionary (k,v pairs), external value */
    uint32_t ne, ecap;
    double *nums;      /* numeric vectors */
    uint32_t nn, ncap;
} amf_cont;

static inline amf_cont *amf_cont_of(const amf_value *v) { return (amf_cont *)(uintptr_t)v; }

static inline bool amf_is_static(const amf_value *v) { return v->refs == 0; }

static inline bool amf_type_is_cont(amf_type t)
{
    return t == AMF_OBJECT || t == AMF_ECMA_ARRAY || t == AMF_STRICT_ARRAY ||
           t == AMF_VECTOR_INT || t == AMF_VECTOR_UINT || t == AMF_VECTOR_DOUBLE ||
           t == AMF_VECTOR_OBJECT || t == AMF_DICTIONARY;
}

static inline bool amf_type_is_bytes(amf_type t)
{
    return t == AMF_STRING || t == AMF_XML || t == AMF_XML_DOCUMENT || t == AMF_BYTE_ARRAY;
}

/* The memory model (see amf_mem_block in amf.h): n bytes asked of malloc
 * take n plus an 8-byte header, rounded up to 16, at least 32. */
static inline size_t amf_mem_block_(size_t n)
{
    if (n == 0)
        return 0;
    if (n > SIZE_MAX - 32)
        return SIZE_MAX;
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

/* What one value block costs: a scalar, a string of n bytes, a container
 * header (its arrays are counted apart, at their capacity). */
#define AMF_MEM_SCALAR amf_mem_block_(sizeof(amf_value))
#define AMF_MEM_CONT amf_mem_block_(sizeof(amf_cont))
static inline size_t amf_mem_bytes(size_t n)
{
    /* amf_mem_block_(sizeof(amf_value) + n + 1), which is never under 32;
     * n is at most UINT32_MAX (amf_bytes_new), so this cannot wrap */
    return (sizeof(amf_value) + n + 1 + 8 + 15) & ~(size_t)15;
}

/* Internal constructors used by the decoder.  amf_bytes_new returns the
 * "" singleton for an empty string; amf_bytes_alloc always allocates
 * (n <= UINT32_MAX). */
amf_value *amf_bytes_new(amf_type t, const void *p, size_t n);
amf_value *amf_bytes_alloc(amf_type t, const void *p, size_t n);
amf_value *amf_cont_new(amf_type t);
int amf_cont_set_class(amf_cont *c, const char *s, size_t n);
/* Makes the string value s (borrowed: a reference is taken) the class. */
void amf_cont_set_class_value(amf_cont *c, amf_value *s);
/* Appends, growing the array by doubling; the first growth reserves `hint`
 * (the caller passes min(claimed count, a small cap)). */
int amf_cont_push(amf_cont *c, amf_value *v, uint32_t hint);
int amf_cont_push_num(amf_cont *c, double x, uint32_t hint);
int amf_cont_add_member(amf_cont *c, const char *k, size_t kn, amf_value *v, uint32_t hint);

/* Makes room for `need` elements of `elem` bytes in *p (capacity *cap):
 * doubles, starting at max(hint, 4); overflow-checked.  0 or SH_ENOMEM. */
int amf_grow(void **p, uint32_t *cap, uint32_t need, size_t elem, uint32_t hint);
/* The capacity amf_grow chooses for `need` (> cap) elements. */
static inline uint64_t amf_grow_cap(uint32_t cap, uint32_t need, uint32_t hint)
{
    uint64_t n = cap ? (uint64_t)cap * 2 : (hint > 4 ? hint : 4);
    return n < need ? need : n;
}
/* Memory that amf_grow(cap -> room for need) adds (0 when it fits). */
static inline size_t amf_grow_mem(uint32_t cap, uint32_t need, size_t elem, uint32_t hint)
{
    if (need <= cap)
        return 0;
    uint64_t n = amf_grow_cap(cap, need, hint);
    if (n > SIZE_MAX / elem)
        return SIZE_MAX;
    return amf_mem_block_((size_t)n * elem) - amf_mem_block_((size_t)cap * elem);
}
/* Memory amf_cont_push / amf_cont_add_member (same hint) would add to c. */
static inline size_t amf_cont_push_mem(const amf_cont *c, uint32_t hint)
{
    return c->ne < c->ecap ? 0 : amf_grow_mem(c->ecap, c->ne + 1, sizeof *c->e, hint);
}
size_t amf_cont_member_mem(const amf_cont *c, size_t kn, uint32_t hint);

/* ---- amf_keyset (amf_keyset.c): byte strings numbered 0, 1, 2 ... ----
 * The encoder's string and trait tables and amf_equal's memo.  Records are
 * copied into one buffer and found through an sh_map whose keys point into
 * it; when the buffer moves the index is rebuilt (the buffer doubles, so
 * that costs O(1) per byte overall).  A zeroed keyset is empty. */
typedef struct amf_keyset {
    char *buf;
    size_t len, cap;    /* bytes of records / allocated */
    size_t *off;        /* record i is buf[off[i] .. off[i + 1]) */
    uint32_t n, offcap; /* records; off has offcap entries, n + 1 used */
    sh_map idx;         /* record bytes -> sh_map_box(number) */
} amf_keyset;

/* Room for kn bytes at the tail (buf + len), where a record is built in
 * place before amf_keyset_intern; NULL when out of memory. */
char *amf_keyset_grow(amf_keyset *s, size_t kn);
static inline char *amf_keyset_reserve(amf_keyset *s, size_t kn)
{
    return s->cap - s->len >= kn ? s->buf + s->len : amf_keyset_grow(s, kn);
}
/* The number of the record equal to the kn bytes at the tail; when there is
 * none they become record s->n and *added is set.  UINT32_MAX when out of
 * memory (nothing added). */
uint32_t amf_keyset_intern(amf_keyset *s, size_t kn, bool *added);
/* The number of the record equal to k[0..kn), or UINT32_MAX. */
uint32_t amf_keyset_find(const amf_keyset *s, const void *k, size_t kn);
/* Forgets records n and above. */
void amf_keyset_truncate(amf_keyset *s, uint32_t n);
void amf_keyset_cleanup(amf_keyset *s);

#endif
