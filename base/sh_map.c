/* sh_map.c - see sh_map.h. */
#include "sh_map.h"

#include <stdlib.h>
#include <string.h>

#include "sh_err.h"

/* ---- SipHash-1-3 ----
 * From "SipHash: a fast short-input PRF" (Aumasson, Bernstein, 2012).  The
 * state is four 64-bit words: the two key halves xored with four constants
 * (the ASCII of "somepseudorandomlygeneratedbytes").  The message is taken
 * as little-endian 64-bit words; the last word holds the 0..7 bytes left
 * over and, in its top byte, the message length modulo 256.  Each word is
 * xored into v3, stirred by c rounds, then xored into v0.  At the end v2 is
 * xored with 0xff, d rounds run, and the four words are xored together.
 * SipHash-c-d with c = 1, d = 3 is what Python and Rust hash with: hash
 * flooding needs colliding keys the attacker can predict, and none are known
 * without the key.  tests/base checks this code against the outputs of
 * independent implementations. */

static uint64_t g_seed[2]; /* the all-zero seed until sh_hash_set_seed */

static inline uint64_t rotl64(uint64_t x, unsigned b)
{
    return x << b | x >> (64 - b);
}

static inline uint64_t load_le64(const uint8_t *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
           (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
           (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

typedef struct sip {
    uint64_t v0, v1, v2, v3;
} sip;

static inline void sip_round(sip *s)
{
    s->v0 += s->v1;
    s->v1 = rotl64(s->v1, 13) ^ s->v0;
    s->v0 = rotl64(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl64(s->v3, 16) ^ s->v2;
    s->v0 += s->v3;
    s->v3 = rotl64(s->v3, 21) ^ s->v0;
    s->v2 += s->v1;
    s->v1 = rotl64(s->v1, 17) ^ s->v2;
    s->v2 = rotl64(s->v2, 32);
}

static inline sip sip_start(uint64_t k0, uint64_t k1)
{
    return (sip){k0 ^ 0x736f6d6570736575ull, k1 ^ 0x646f72616e646f6dull,
                 k0 ^ 0x6c7967656e657261ull, k1 ^ 0x7465646279746573ull};
}

/* One message word, one compression round (c = 1). */
static inline void sip_word(sip *s, uint64_t m)
{
    s->v3 ^= m;
    sip_round(s);
    s->v0 ^= m;
}

static inline uint64_t sip_end(sip *s)
{
    s->v2 ^= 0xff;
    sip_round(s);
    sip_round(s);
    sip_round(s);
    return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

static inline uint64_t siphash13(uint64_t k0, uint64_t k1, const void *data, size_t n)
{
    const uint8_t *p = data;
    sip s = sip_start(k0, k1);
    for (size_t left = n; left >= 8; left -= 8, p += 8)
        sip_word(&s, load_le64(p));
    uint64_t last = (uint64_t)n << 56;
    switch (n & 7) {
    case 7: last |= (uint64_t)p[6] << 48; /* fall through */
    case 6: last |= (uint64_t)p[5] << 40; /* fall through */
    case 5: last |= (uint64_t)p[4] << 32; /* fall through */
    case 4: last |= (uint64_t)p[3] << 24; /* fall through */
    case 3: last |= (uint64_t)p[2] << 16; /* fall through */
    case 2: last |= (uint64_t)p[1] << 8;  /* fall through */
    case 1: last |= (uint64_t)p[0]; break;
    default: break;
    }
    sip_word(&s, last);
    return sip_end(&s);
}

/* A pointer key: the SipHash of its value as 8 little-endian bytes. */
static inline uint64_t siphash13_u64(uint64_t k0, uint64_t k1, uint64_t x)
{
    sip s = sip_start(k0, k1);
    sip_word(&s, x);
    sip_word(&s, (uint64_t)8 << 56);
    return sip_end(&s);
}

void sh_hash_set_seed(const uint8_t seed[16])
{
    g_seed[0] = load_le64(seed);
    g_seed[1] = load_le64(seed + 8);
}

uint64_t sh_siphash13(const uint8_t key[16], const void *p, size_t n)
{
    return siphash13(load_le64(key), load_le64(key + 8), p, n);
}

/* ---- the table ---- */

#define FIRST_CAP 8  /* the first table */
#define SMALL_CAP 16 /* tables up to this size are not hashed (sh_map.h) */

static inline bool is_small(const sh_map *m)
{
    return m->cap <= SMALL_CAP;
}

static inline uint32_t hash_bytes(const sh_map *m, const void *key, size_t klen)
{
    return (uint32_t)siphash13(m->k0, m->k1, key, klen);
}

static inline uint32_t hash_ptr(const sh_map *m, const void *key)
{
    return (uint32_t)siphash13_u64(m->k0, m->k1, (uint64_t)(uintptr_t)key);
}

static inline uint32_t hash_of(const sh_map *m, const void *key, uint32_t klen, bool byptr)
{
    return byptr ? hash_ptr(m, key) : hash_bytes(m, key, klen);
}

void sh_map_init(sh_map *m)
{
    memset(m, 0, sizeof(*m));
}

void sh_map_cleanup(sh_map *m)
{
    free(m->ents);
    sh_map_init(m);
}

void sh_map_clear(sh_map *m)
{
    if (m->count == 0)
        return;
    if (m->cap >= 256 && m->count * 8 < m->cap) {
        free(m->ents); /* the next put starts small again */
        m->ents = NULL;
        m->cap = 0;
    } else {
        memset(m->ents, 0, m->cap * sizeof(*m->ents));
    }
    m->count = 0;
}

static inline bool same_key(const sh_map_ent *e, const void *key, uint32_t klen, bool byptr)
{
    return byptr ? e->key == key
                 : e->klen == klen && (klen == 0 || memcmp(e->key, key, klen) == 0);
}

/* The slot holding the key, or else the empty slot where it would go (in a
 * small table: slot count; in a hashed one: the end of the key's probe
 * run, and *h is the key's hash).  *steps = entries examined.  byptr:
 * pointer keys (identity).  The small case is inline; the hashed one a
 * call, which keeps the callers' frames light. */
static size_t find_hashed(const sh_map *m, const void *key, uint32_t klen, bool byptr,
                          uint32_t *h, size_t *steps)
{
    *h = hash_of(m, key, klen, byptr);
    size_t mask = m->cap - 1, i = *h & mask, n = 1;
    for (; m->ents[i].val; i = (i + 1) & mask, n++)
        if (m->ents[i].hash == *h && same_key(&m->ents[i], key, klen, byptr))
            break;
    *steps = n;
    return i;
}

static inline size_t find(const sh_map *m, const void *key, uint32_t klen, bool byptr,
                          uint32_t *h, size_t *steps)
{
    if (!is_small(m))
        return find_hashed(m, key, klen, byptr, h, steps);
    size_t i = 0;
    while (i < m->count && !same_key(&m->ents[i], key, klen, byptr))
        i++;
    *h = 0; /* computed if the table grows */
    *steps = i + 1;
    return i;
}

/* Doubles the table, or makes the first one, taking the seed.  A small
 * table keeps its entries in order; the first hashed one hashes them. */
static int grow(sh_map *m, bool byptr)
{
    size_t ncap = m->cap ? m->cap * 2 : FIRST_CAP;
    if (ncap > SIZE_MAX / sizeof(sh_map_ent))
        return SH_ENOMEM;
    sh_map_ent *n = calloc(ncap, sizeof(*n));
    if (!n)
        return SH_ENOMEM;
    if (!m->ents) {
        m->k0 = g_seed[0];
        m->k1 = g_seed[1];
    }
    if (ncap <= SMALL_CAP) {
        if (m->count)
            memcpy(n, m->ents, m->count * sizeof(*n));
        m->probes += m->count;
    } else {
        bool was_small = is_small(m);
        for (size_t i = 0; i < m->cap; i++) {
            sh_map_ent *e = &m->ents[i];
            if (!e->val)
                continue;
            if (was_small)
                e->hash = hash_of(m, e->key, e->klen, byptr);
            size_t j = e->hash & (ncap - 1);
            for (m->probes++; n[j].val; m->probes++)
                j = (j + 1) & (ncap - 1);
            n[j] = *e;
        }
    }
    free(m->ents);
    m->ents = n;
    m->cap = ncap;
    return 0;
}

static inline void put_at(sh_map *m, size_t i, const void *key, uint32_t klen, uint32_t h,
                          void *val)
{
    if (!m->ents[i].val)
        m->count++;
    m->ents[i] = (sh_map_ent){.key = key, .val = val, .klen = klen, .hash = h};
}

/* Empties slot i.  Small table: the last entry moves into the hole.
 * Hashed: later members of the probe run move back into the hole while
 * that keeps each of them at or after its home slot. */
static void del_at(sh_map *m, size_t i)
{
    size_t hole = i;
    if (is_small(m)) {
        hole = m->count - 1;
        m->ents[i] = m->ents[hole];
        m->probes++;
    } else {
        size_t mask = m->cap - 1, j = i;
        for (;;) {
            j = (j + 1) & mask;
            m->probes++;
            if (!m->ents[j].val)
                break;
            size_t home = m->ents[j].hash & mask;
            /* j stays when its home lies cyclically in (hole, j] */
            bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
            if (!stays) {
                m->ents[hole] = m->ents[j];
                hole = j;
            }
        }
    }
    memset(&m->ents[hole], 0, sizeof(m->ents[hole]));
    m->count--;
}

static inline void *get(const sh_map *m, const void *key, uint32_t klen, bool byptr)
{
    if (!m->count)
        return NULL;
    uint32_t h;
    size_t steps;
    return m->ents[find(m, key, klen, byptr, &h, &steps)].val;
}

/* Grows the table when one more entry would pass 3/4 of it, then finds
 * key's slot.  SIZE_MAX when the table cannot grow. */
static inline size_t insert_slot(sh_map *m, const void *key, uint32_t klen, bool byptr,
                                 uint32_t *h)
{
    if ((m->count + 1) * 4 > m->cap * 3 && grow(m, byptr) < 0)
        return SIZE_MAX;
    size_t steps, i = find(m, key, klen, byptr, h, &steps);
    m->probes += steps;
    return i;
}

static inline int put(sh_map *m, const void *key, uint32_t klen, bool byptr, void *val)
{
    uint32_t h;
    size_t i = insert_slot(m, key, klen, byptr, &h);
    if (i == SIZE_MAX)
        return SH_ENOMEM;
    put_at(m, i, key, klen, h, val);
    return 0;
}

static inline void *get_or_put(sh_map *m, const void *key, uint32_t klen, bool byptr,
                               void *val, int *rc)
{
    uint32_t h;
    size_t i = insert_slot(m, key, klen, byptr, &h);
    if (i == SIZE_MAX) {
        *rc = SH_ENOMEM;
        return NULL;
    }
    *rc = 0;
    if (m->ents[i].val)
        return m->ents[i].val;
    put_at(m, i, key, klen, h, val);
    return NULL;
}

static inline void *del(sh_map *m, const void *key, uint32_t klen, bool byptr)
{
    if (!m->count)
        return NULL;
    uint32_t h;
    size_t steps, i = find(m, key, klen, byptr, &h, &steps);
    m->probes += steps;
    void *val = m->ents[i].val;
    if (val)
        del_at(m, i);
    return val;
}

void *sh_map_get(const sh_map *m, const void *key, size_t klen)
{
    return klen > UINT32_MAX ? NULL : get(m, key, (uint32_t)klen, false);
}

int sh_map_put(sh_map *m, const void *key, size_t klen, void *val)
{
    if (klen > UINT32_MAX || !val)
        return SH_EINVAL;
    return put(m, key, (uint32_t)klen, false, val);
}

void *sh_map_get_or_put(sh_map *m, const void *key, size_t klen, void *val, int *rc)
{
    if (klen > UINT32_MAX || !val) {
        *rc = SH_EINVAL;
        return NULL;
    }
    return get_or_put(m, key, (uint32_t)klen, false, val, rc);
}

void *sh_map_del(sh_map *m, const void *key, size_t klen)
{
    return klen > UINT32_MAX ? NULL : del(m, key, (uint32_t)klen, false);
}

void *sh_map_get_ptr(const sh_map *m, const void *key)
{
    return get(m, key, 0, true);
}

int sh_map_put_ptr(sh_map *m, const void *key, void *val)
{
    return val ? put(m, key, 0, true, val) : SH_EINVAL;
}

void *sh_map_get_or_put_ptr(sh_map *m, const void *key, void *val, int *rc)
{
    if (!val) {
        *rc = SH_EINVAL;
        return NULL;
    }
    return get_or_put(m, key, 0, true, val, rc);
}

void *sh_map_del_ptr(sh_map *m, const void *key)
{
    return del(m, key, 0, true);
}

void *sh_map_next(const sh_map *m, size_t *iter)
{
    while (*iter < m->cap) {
        void *v = m->ents[(*iter)++].val;
        if (v)
            return v;
    }
    return NULL;
}

/* Small table: the walk goes down from the last entry, so the entry a
 * deletion moves into the hole was walked already.  Hashed: the walk goes
 * down from an empty slot (there is one: the table is at most 3/4 full),
 * wrapping around.  Deleting slot i moves members of the run above i, which
 * ends at the next empty slot, at the latest the start; so they all come
 * from slots already walked and land in slots already walked.  Either way
 * nothing is skipped or seen twice. */
size_t sh_map_sweep(sh_map *m, bool (*drop)(void *val, void *ctx), void *ctx)
{
    if (!m->count)
        return 0;
    size_t n = 0;
    if (is_small(m)) {
        for (size_t i = m->count; i-- > 0;) {
            if (drop(m->ents[i].val, ctx)) {
                del_at(m, i);
                n++;
            }
        }
        return n;
    }
    size_t mask = m->cap - 1, start = 0;
    while (m->ents[start].val)
        start++;
    for (size_t k = 1; k < m->cap; k++) {
        size_t i = (start - k) & mask;
        void *v = m->ents[i].val;
        if (v && drop(v, ctx)) {
            del_at(m, i);
            n++;
        }
    }
    return n;
}
