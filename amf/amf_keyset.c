/* amf_keyset.c - numbered byte strings found by their bytes (amf_int.h). */
#include <stdlib.h>
#include <string.h>

#include "amf_int.h"

/* The buffer moved: every key of the index points into the old one. */
static int reindex(amf_keyset *s)
{
    sh_map_clear(&s->idx);
    for (uint32_t i = 0; i < s->n; i++) {
        int rc = sh_map_put(&s->idx, s->buf + s->off[i], s->off[i + 1] - s->off[i],
                            sh_map_box(i));
        if (rc)
            return rc; /* records left out are only found no more */
    }
    return 0;
}

char *amf_keyset_grow(amf_keyset *s, size_t kn)
{
    if (kn > SIZE_MAX / 2 - s->len)
        return NULL;
    size_t cap = s->cap ? s->cap : 256;
    while (cap - s->len < kn)
        cap *= 2;
    char *p = realloc(s->buf, cap);
    if (!p)
        return NULL;
    s->buf = p;
    s->cap = cap;
    return reindex(s) ? NULL : s->buf + s->len;
}

uint32_t amf_keyset_intern(amf_keyset *s, size_t kn, bool *added)
{
    *added = false;
    if (s->n + 2 > s->offcap &&
        (s->n >= UINT32_MAX - 2 ||
         amf_grow((void **)&s->off, &s->offcap, s->n + 2, sizeof(*s->off), 16)))
        return UINT32_MAX;
    s->off[s->n] = s->len;
    int rc;
    void *v = sh_map_get_or_put(&s->idx, s->buf + s->len, kn, sh_map_box(s->n), &rc);
    if (v)
        return (uint32_t)sh_map_unbox(v);
    if (rc)
        return UINT32_MAX;
    *added = true;
    s->len += kn;
    s->off[++s->n] = s->len;
    return s->n - 1;
}

uint32_t amf_keyset_find(const amf_keyset *s, const void *k, size_t kn)
{
    void *v = sh_map_get(&s->idx, k, kn);
    return v ? (uint32_t)sh_map_unbox(v) : UINT32_MAX;
}

void amf_keyset_truncate(amf_keyset *s, uint32_t n)
{
    if (n >= s->n)
        return;
    if (n == 0) {
        sh_map_clear(&s->idx);
    } else {
        for (uint32_t i = n; i < s->n; i++)
            sh_map_del(&s->idx, s->buf + s->off[i], s->off[i + 1] - s->off[i]);
    }
    s->n = n;
    s->len = s->off[n];
}

void amf_keyset_cleanup(amf_keyset *s)
{
    free(s->buf);
    free(s->off);
    sh_map_cleanup(&s->idx);
    memset(s, 0, sizeof(*s));
}
