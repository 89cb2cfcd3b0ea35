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
 * without the key.  The tests check this code against published vectors. */

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
    for (size_t i = 0; i < (n & 7); i++)
        last |= (uint64_t)p[i] << (8 * i);
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

/* The slot holding the key, or the empty slot that ends its probe run;
 * *steps = slots examined.  byptr: pointer keys (identity). */
static inline size_t find(const sh_map *m, const void *key, uint32_t klen, uint32_t h,
                          bool byptr, size_t *steps)
{
    size_t mask = m->cap - 1, i = h & mask, n = 1;
    for (; m->ents[i].val; i = (i + 1) & mask, n++) {
        const sh_map_ent *e = &m->ents[i];
        if (byptr ? e->key == key
                  : e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
            break;
    }
    *steps = n;
    return i;
}

/* Doubles the table (or makes the first one, taking the seed). */
static int grow(sh_map *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 8;
    if (ncap > SIZE_MAX / sizeof(sh_map_ent))
        return SH_ENOMEM;
    sh_map_ent *n = calloc(ncap, sizeof(*n));
    if (!n)
        return SH_ENOMEM;
    if (!m->ents) {
        m->k0 = g_seed[0];
        m->k1 = g_seed[1];
    }
    for (size_t i = 0; i < m->cap; i++) {
        const sh_map_ent *e = &m->ents[i];
        if (!e->val)
            continue;
        size_t j = e->hash & (ncap - 1);
        for (m->probes++; n[j].val; m->probes++)
            j = (j + 1) & (ncap - 1);
        n[j] = *e;
    }
    free(m->ents);
    m->ents = n;
    m->cap = ncap;
    return 0;
}

static inline bool need_grow(const sh_map *m)
{
    return (m->count + 1) * 4 > m->cap * 3;
}

static inline void put_at(sh_map *m, size_t i, const void *key, uint32_t klen, uint32_t h,
                          void *val)
{
    if (!m->ents[i].val)
        m->count++;
    m->ents[i] = (sh_map_ent){.key = key, .val = val, .klen = klen, .hash = h};
}

/* Empties slot i, then moves later members of its probe run back into the
 * hole while that keeps each of them at or after its home slot. */
static void del_at(sh_map *m, size_t i)
{
    size_t mask = m->cap - 1, hole = i, j = i;
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
    memset(&m->ents[hole], 0, sizeof(m->ents[hole]));
    m->count--;
}

static inline uint32_t hash_bytes(const sh_map *m, const void *key, size_t klen)
{
    return (uint32_t)siphash13(m->k0, m->k1, key, klen);
}

static inline uint32_t hash_ptr(const sh_map *m, const void *key)
{
    return (uint32_t)siphash13_u64(m->k0, m->k1, (uint64_t)(uintptr_t)key);
}

/* Grows the table when one more entry would pass 3/4, then finds key's
 * slot (its own or the empty one that ends its run).  SIZE_MAX when the
 * table cannot grow. */
static inline size_t insert_slot(sh_map *m, const void *key, uint32_t klen, bool byptr,
                                 uint32_t *h)
{
    if (need_grow(m) && grow(m) < 0)
        return SIZE_MAX;
    *h = byptr ? hash_ptr(m, key) : hash_bytes(m, key, klen);
    size_t steps, i = find(m, key, klen, *h, byptr, &steps);
    m->probes += steps;
    return i;
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
    uint32_t h = byptr ? hash_ptr(m, key) : hash_bytes(m, key, klen);
    size_t steps, i = find(m, key, klen, h, byptr, &steps);
    m->probes += steps;
    void *val = m->ents[i].val;
    if (val)
        del_at(m, i);
    return val;
}

void *sh_map_get(const sh_map *m, const void *key, size_t klen)
{
    if (!m->count || klen > UINT32_MAX)
        return NULL;
    size_t steps;
    return m->ents[find(m, key, (uint32_t)klen, hash_bytes(m, key, klen), false, &steps)].val;
}

int sh_map_put(sh_map *m, const void *key, size_t klen, void *val)
{
    if (klen > UINT32_MAX || !val)
        return SH_EINVAL;
    uint32_t h;
    size_t i = insert_slot(m, key, (uint32_t)klen, false, &h);
    if (i == SIZE_MAX)
        return SH_ENOMEM;
    put_at(m, i, key, (uint32_t)klen, h, val);
    return 0;
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
    if (!m->count)
        return NULL;
    size_t steps;
    return m->ents[find(m, key, 0, hash_ptr(m, key), true, &steps)].val;
}

int sh_map_put_ptr(sh_map *m, const void *key, void *val)
{
    if (!val)
        return SH_EINVAL;
    uint32_t h;
    size_t i = insert_slot(m, key, 0, true, &h);
    if (i == SIZE_MAX)
        return SH_ENOMEM;
    put_at(m, i, key, 0, h, val);
    return 0;
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

/* The walk goes downward from an empty slot (there is one: the table is at
 * most 3/4 full), wrapping around.  Deleting slot i moves members of the run
 * above i, which ends at the next empty slot, at the latest the start; so
 * they all come from slots already walked and land in slots already walked:
 * nothing is skipped or seen twice. */
size_t sh_map_sweep(sh_map *m, bool (*drop)(void *val, void *ctx), void *ctx)
{
    if (!m->count)
        return 0;
    size_t mask = m->cap - 1, start = 0, n = 0;
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
