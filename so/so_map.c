/* so_map.c - see so_map.h. */
#include "so_map.h"

#include <stdlib.h>
#include <string.h>

#include "sh_err.h"

static uint32_t hash_bytes(const char *p, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 16777619u;
    }
    return h;
}

void so_map_init(so_map *m)
{
    memset(m, 0, sizeof(*m));
}

void so_map_cleanup(so_map *m)
{
    free(m->ents);
    so_map_init(m);
}

static size_t find_slot(const so_map *m, const char *key, size_t klen, uint32_t h)
{
    size_t mask = m->cap - 1;
    size_t i = h & mask;
    while (m->ents[i].val) {
        const so_map_ent *e = &m->ents[i];
        if (e->hash == h && e->klen == klen && !memcmp(e->key, key, klen))
            return i;
        i = (i + 1) & mask;
    }
    return i;
}

void *so_map_get(const so_map *m, const char *key, size_t klen)
{
    if (!m->cap)
        return NULL;
    size_t i = find_slot(m, key, klen, hash_bytes(key, klen));
    return m->ents[i].val;
}

static int grow(so_map *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 8;
    so_map_ent *n = calloc(ncap, sizeof(*n));
    if (!n)
        return SH_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        so_map_ent *e = &m->ents[i];
        if (!e->val)
            continue;
        size_t j = e->hash & (ncap - 1);
        while (n[j].val)
            j = (j + 1) & (ncap - 1);
        n[j] = *e;
    }
    free(m->ents);
    m->ents = n;
    m->cap = ncap;
    return 0;
}

int so_map_put(so_map *m, const char *key, size_t klen, void *val)
{
    if ((m->count + 1) * 4 > m->cap * 3 && grow(m) < 0)
        return SH_ENOMEM;
    uint32_t h = hash_bytes(key, klen);
    size_t i = find_slot(m, key, klen, h);
    if (!m->ents[i].val)
        m->count++;
    m->ents[i] = (so_map_ent){.key = key, .klen = klen, .hash = h, .val = val};
    return 0;
}

void *so_map_del(so_map *m, const char *key, size_t klen)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    size_t i = find_slot(m, key, klen, hash_bytes(key, klen));
    void *val = m->ents[i].val;
    if (!val)
        return NULL;
    /* backward-shift: move later members of the probe run into the hole */
    size_t hole = i, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!m->ents[j].val)
            break;
        size_t home = m->ents[j].hash & mask;
        /* entry j may move to hole if home is not in (hole, j] cyclically */
        int in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!in_range) {
            m->ents[hole] = m->ents[j];
            hole = j;
        }
    }
    memset(&m->ents[hole], 0, sizeof(m->ents[hole]));
    m->count--;
    return val;
}

void *so_map_next(const so_map *m, size_t *iter)
{
    while (*iter < m->cap) {
        void *v = m->ents[(*iter)++].val;
        if (v)
            return v;
    }
    return NULL;
}
