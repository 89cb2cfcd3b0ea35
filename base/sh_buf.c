#include "sh_buf.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "sh_err.h"

void sh_buf_init(sh_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : SH_BUF_MAX_DEFAULT;
    b->failed = false;
}

void sh_buf_cleanup(sh_buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}

void sh_buf_reset(sh_buf *b)
{
    b->len = 0;
    b->failed = false;
}

int sh_buf_reserve(sh_buf *b, size_t extra)
{
    if (b->failed)
        return SH_ELIMIT;
    if (extra > b->max || b->len > b->max - extra) {
        b->failed = true;
        return SH_ELIMIT;
    }
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max)
        cap = b->max;
    uint8_t *p = realloc(b->data, cap);
    if (!p) {
        b->failed = true;
        return SH_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int sh_buf_append(sh_buf *b, const void *p, size_t n)
{
    int rc = sh_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int sh_buf_put_u8(sh_buf *b, uint8_t v) { return sh_buf_append(b, &v, 1); }

int sh_buf_put_u16be(sh_buf *b, uint16_t v)
{
    uint8_t t[2];
    sh_put_u16be(t, v);
    return sh_buf_append(b, t, 2);
}

int sh_buf_put_u24be(sh_buf *b, uint32_t v)
{
    uint8_t t[3];
    sh_put_u24be(t, v);
    return sh_buf_append(b, t, 3);
}

int sh_buf_put_u32be(sh_buf *b, uint32_t v)
{
    uint8_t t[4];
    sh_put_u32be(t, v);
    return sh_buf_append(b, t, 4);
}

int sh_buf_put_u32le(sh_buf *b, uint32_t v)
{
    uint8_t t[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return sh_buf_append(b, t, 4);
}

int sh_buf_put_f64be(sh_buf *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    uint8_t t[8];
    for (int i = 0; i < 8; i++)
        t[i] = (uint8_t)(u >> (56 - 8 * i));
    return sh_buf_append(b, t, 8);
}

void sh_buf_rollback(sh_buf *b, sh_buf_pos pos)
{
    if (b->len > pos.len)
        b->len = pos.len;
    b->failed = pos.failed;
}

void sh_buf_advance(sh_buf *b, size_t n)
{
    assert(n <= b->cap - b->len);
    b->len += n;
}

uint8_t *sh_buf_steal(sh_buf *b, size_t *len)
{
    uint8_t *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

int sh_rd_u8(sh_rd *r, uint8_t *v)
{
    if (sh_rd_left(r) < 1)
        return SH_EMORE;
    *v = *r->p++;
    return 0;
}

int sh_rd_u16be(sh_rd *r, uint16_t *v)
{
    if (sh_rd_left(r) < 2)
        return SH_EMORE;
    *v = sh_get_u16be(r->p);
    r->p += 2;
    return 0;
}

int sh_rd_u24be(sh_rd *r, uint32_t *v)
{
    if (sh_rd_left(r) < 3)
        return SH_EMORE;
    *v = sh_get_u24be(r->p);
    r->p += 3;
    return 0;
}

int sh_rd_u32be(sh_rd *r, uint32_t *v)
{
    if (sh_rd_left(r) < 4)
        return SH_EMORE;
    *v = sh_get_u32be(r->p);
    r->p += 4;
    return 0;
}

int sh_rd_u32le(sh_rd *r, uint32_t *v)
{
    if (sh_rd_left(r) < 4)
        return SH_EMORE;
    *v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
         (uint32_t)r->p[3] << 24;
    r->p += 4;
    return 0;
}

int sh_rd_f64be(sh_rd *r, double *v)
{
    if (sh_rd_left(r) < 8)
        return SH_EMORE;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = u << 8 | r->p[i];
    memcpy(v, &u, 8);
    r->p += 8;
    return 0;
}

int sh_rd_bytes(sh_rd *r, size_t n, const uint8_t **p)
{
    if (sh_rd_left(r) < n)
        return SH_EMORE;
    *p = r->p;
    r->p += n;
    return 0;
}
