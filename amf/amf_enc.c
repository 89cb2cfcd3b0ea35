/* amf_enc.c - AMF0 and AMF3 encoder with reference tables.
 *
 * References are emitted for the same value met twice (pointer identity:
 * AMF0 objects and arrays, AMF3 object-table values), for AMF3 strings with
 * the same bytes, and for AMF3 traits with the same class, flags and
 * sealed member names.  The tables hold a reference to every value they
 * index, so a value freed between two calls of one context cannot be
 * mistaken for a new one at the same address.  Lookups are hashed; reset
 * only bumps a generation number.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "amf_int.h"

/* ---- a tiny open-addressing index: hash -> entry number ---- */

typedef struct hslot {
    uint32_t gen, idx;
} hslot;

typedef struct hmap {
    hslot *s;
    uint32_t cap; /* power of two or 0 */
    uint32_t gen;
} hmap;

typedef bool (*hmap_eq)(const void *ctx, uint32_t idx, const void *key);

static uint32_t hmap_find(const hmap *h, uint32_t hash, hmap_eq eq, const void *ctx,
                          const void *key)
{
    if (!h->cap)
        return UINT32_MAX;
    for (uint32_t i = hash & (h->cap - 1);; i = (i + 1) & (h->cap - 1)) {
        if (h->s[i].gen != h->gen)
            return UINT32_MAX;
        if (eq(ctx, h->s[i].idx, key))
            return h->s[i].idx;
    }
}

static void hmap_put(hmap *h, uint32_t hash, uint32_t idx)
{
    uint32_t i = hash & (h->cap - 1);
    while (h->s[i].gen == h->gen)
        i = (i + 1) & (h->cap - 1);
    h->s[i].gen = h->gen;
    h->s[i].idx = idx;
}

static void hmap_clear(hmap *h)
{
    if (++h->gen == 0) {
        if (h->cap)
            memset(h->s, 0, (size_t)h->cap * sizeof *h->s);
        h->gen = 1;
    }
}

/* Makes room for n entries (load <= 1/2); rehash() re-enters them. */
static int hmap_fit(hmap *h, uint32_t n, bool *rebuilt)
{
    *rebuilt = false;
    if ((uint64_t)n * 2 <= h->cap)
        return 0;
    uint64_t cap = h->cap ? (uint64_t)h->cap * 2 : 32;
    while (cap < (uint64_t)n * 2)
        cap *= 2;
    if (cap > UINT32_MAX / 2)
        return SH_ENOMEM;
    hslot *s = calloc((size_t)cap, sizeof *s);
    if (!s)
        return SH_ENOMEM;
    free(h->s);
    h->s = s;
    h->cap = (uint32_t)cap;
    h->gen = 1;
    *rebuilt = true;
    return 0;
}

static uint32_t hash_ptr(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 32;
    return (uint32_t)x;
}

static uint32_t hash_bytes(uint32_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

#define HASH_SEED 2166136261u

/* ---- tables ---- */

typedef struct otab { /* values by identity */
    amf_value **v;
    uint8_t *done; /* 0 while the value is being written (cycle check) */
    uint32_t n, cap;
    hmap h;
} otab;

typedef struct str_ent {
    size_t off;
    uint32_t len, hash;
} str_ent;

typedef struct trait_ent {
    const amf_value *obj; /* held through the object table */
    uint32_t hash;
} trait_ent;

struct amf_enc {
    otab o0, o3;
    str_ent *st;
    uint32_t nst, capst;
    char *sb;
    size_t sblen, sbcap;
    hmap hs;
    trait_ent *tt;
    uint32_t ntt, captt;
    hmap ht;
    uint32_t depth;
};

static bool otab_eq(const void *ctx, uint32_t idx, const void *key)
{
    return ((const otab *)ctx)->v[idx] == key;
}

static uint32_t otab_find(const otab *t, const amf_value *v)
{
    return hmap_find(&t->h, hash_ptr(v), otab_eq, t, v);
}

static int otab_add(otab *t, const amf_value *v)
{
    if (t->n == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 16;
        amf_value **nv = realloc(t->v, (size_t)cap * sizeof *nv);
        if (!nv)
            return SH_ENOMEM;
        t->v = nv;
        uint8_t *nd = realloc(t->done, cap);
        if (!nd)
            return SH_ENOMEM;
        t->done = nd;
        t->cap = cap;
    }
    bool rebuilt;
    if (hmap_fit(&t->h, t->n + 1, &rebuilt))
        return SH_ENOMEM;
    if (rebuilt)
        for (uint32_t i = 0; i < t->n; i++)
            hmap_put(&t->h, hash_ptr(t->v[i]), i);
    t->v[t->n] = amf_ref((amf_value *)(uintptr_t)v);
    t->done[t->n] = 0;
    hmap_put(&t->h, hash_ptr(v), t->n);
    t->n++;
    return 0;
}

static void otab_truncate(otab *t, uint32_t n)
{
    if (t->n == n)
        return;
    while (t->n > n)
        amf_unref(t->v[--t->n]);
    hmap_clear(&t->h);
    for (uint32_t i = 0; i < t->n; i++)
        hmap_put(&t->h, hash_ptr(t->v[i]), i);
}

typedef struct skey {
    const char *p;
    uint32_t n;
} skey;

static bool str_eq(const void *ctx, uint32_t idx, const void *key)
{
    const amf_enc *e = ctx;
    const skey *k = key;
    return e->st[idx].len == k->n && memcmp(e->sb + e->st[idx].off, k->p, k->n) == 0;
}

static bool trait_eq(const void *ctx, uint32_t idx, const void *key)
{
    const amf_cont *a = amf_cont_of(((const amf_enc *)ctx)->tt[idx].obj);
    const amf_cont *b = amf_cont_of(key);
    const uint8_t f = AMF_F_DYNAMIC | AMF_F_EXTERNAL;
    if ((a->h.flags & f) != (b->h.flags & f) || a->cls_len != b->cls_len ||
        (a->cls_len && memcmp(a->cls, b->cls, a->cls_len) != 0))
        return false;
    uint32_t sa = (a->h.flags & AMF_F_EXTERNAL) ? 0 : a->sealed;
    uint32_t sb = (b->h.flags & AMF_F_EXTERNAL) ? 0 : b->sealed;
    if (sa != sb)
        return false;
    for (uint32_t i = 0; i < sa; i++)
        if (a->m[i].klen != b->m[i].klen ||
            memcmp(a->kbuf + a->m[i].koff, b->kbuf + b->m[i].koff, a->m[i].klen) != 0)
            return false;
    return true;
}

static uint32_t trait_hash(const amf_cont *c)
{
    uint32_t h = hash_bytes(HASH_SEED, c->cls ? c->cls : "", c->cls_len);
    uint8_t f = c->h.flags & (AMF_F_DYNAMIC | AMF_F_EXTERNAL);
    h = hash_bytes(h, &f, 1);
    if (!(c->h.flags & AMF_F_EXTERNAL))
        for (uint32_t i = 0; i < c->sealed; i++)
            h = hash_bytes(h * 31, c->kbuf + c->m[i].koff, c->m[i].klen);
    return h;
}

amf_enc *amf_enc_new(void) { return calloc(1, sizeof(amf_enc)); }

static void truncate_all(amf_enc *e, uint32_t n0, uint32_t n3, uint32_t nst, size_t sblen,
                         uint32_t ntt)
{
    otab_truncate(&e->o0, n0);
    otab_truncate(&e->o3, n3);
    if (e->nst != nst) {
        e->nst = nst;
        e->sblen = sblen;
        hmap_clear(&e->hs);
        for (uint32_t i = 0; i < e->nst; i++)
            hmap_put(&e->hs, e->st[i].hash, i);
    }
    if (e->ntt != ntt) {
        e->ntt = ntt;
        hmap_clear(&e->ht);
        for (uint32_t i = 0; i < e->ntt; i++)
            hmap_put(&e->ht, e->tt[i].hash, i);
    }
}

void amf_enc_reset(amf_enc *e)
{
    if (!e)
        return;
    truncate_all(e, 0, 0, 0, 0, 0);
}

void amf_enc_free(amf_enc *e)
{
    if (!e)
        return;
    amf_enc_reset(e);
    free(e->o0.v);
    free(e->o0.done);
    free(e->o0.h.s);
    free(e->o3.v);
    free(e->o3.done);
    free(e->o3.h.s);
    free(e->st);
    free(e->sb);
    free(e->hs.s);
    free(e->tt);
    free(e->ht.s);
    free(e);
}

/* ---- output helpers (sh_buf failures are sticky; checked at the end) ---- */

static inline void put_u8(sh_buf *b, uint8_t x)
{
    if (b->len < b->cap && !b->failed)
        b->data[b->len++] = x;
    else
        sh_buf_put_u8(b, x);
}

static void put_u29(sh_buf *b, uint32_t v)
{
    uint8_t t[4];
    size_t n;
    v &= 0x1fffffff;
    if (v < 0x80) {
        t[0] = (uint8_t)v;
        n = 1;
    } else if (v < 0x4000) {
        t[0] = (uint8_t)(v >> 7 | 0x80);
        t[1] = (uint8_t)(v & 0x7f);
        n = 2;
    } else if (v < 0x200000) {
        t[0] = (uint8_t)(v >> 14 | 0x80);
        t[1] = (uint8_t)((v >> 7 & 0x7f) | 0x80);
        t[2] = (uint8_t)(v & 0x7f);
        n = 3;
    } else {
        t[0] = (uint8_t)(v >> 22 | 0x80);
        t[1] = (uint8_t)((v >> 15 & 0x7f) | 0x80);
        t[2] = (uint8_t)((v >> 8 & 0x7f) | 0x80);
        t[3] = (uint8_t)v;
        n = 4;
    }
    sh_buf_append(b, t, n);
}

#define U29_MAX 0x1fffffffu

/* ====================================================================
 * AMF3
 * ==================================================================== */

static int enc3(amf_enc *e, const amf_value *v, sh_buf *b);

/* U29S (amf3 spec 1.3.2): "" is never a reference and never entered. */
static int str3(amf_enc *e, const char *s, uint32_t n, sh_buf *b)
{
    if (n == 0) {
        put_u8(b, 0x01);
        return 0;
    }
    skey k = {s, n};
    uint32_t h = hash_bytes(HASH_SEED, s, n);
    uint32_t i = hmap_find(&e->hs, h, str_eq, e, &k);
    if (i != UINT32_MAX) {
        put_u29(b, i << 1);
        return 0;
    }
    if (n > U29_MAX >> 1)
        return SH_EINVAL;
    if (e->nst < (U29_MAX >> 1)) {
        if (e->nst == e->capst) {
            uint32_t cap = e->capst ? e->capst * 2 : 32;
            str_ent *ns = realloc(e->st, (size_t)cap * sizeof *ns);
            if (!ns)
                return SH_ENOMEM;
            e->st = ns;
            e->capst = cap;
        }
        if (e->sbcap - e->sblen < n) {
            size_t cap = e->sbcap ? e->sbcap : 1024;
            while (cap - e->sblen < n)
                cap *= 2;
            char *q = realloc(e->sb, cap);
            if (!q)
                return SH_ENOMEM;
            e->sb = q;
            e->sbcap = cap;
        }
        bool rebuilt;
        if (hmap_fit(&e->hs, e->nst + 1, &rebuilt))
            return SH_ENOMEM;
        if (rebuilt)
            for (uint32_t j = 0; j < e->nst; j++)
                hmap_put(&e->hs, e->st[j].hash, j);
        memcpy(e->sb + e->sblen, s, n);
        e->st[e->nst] = (str_ent){e->sblen, n, h};
        e->sblen += n;
        hmap_put(&e->hs, h, e->nst);
        e->nst++;
    }
    put_u29(b, n << 1 | 1);
    sh_buf_append(b, s, n);
    return 0;
}

/* Writes a reference when v was met before; otherwise enters it.
 * Returns 1 when a reference was written. */
static int obj_ref(otab *t, const amf_value *v, sh_buf *b, bool amf0)
{
    uint32_t i = otab_find(t, v);
    if (i != UINT32_MAX) {
        if (!t->done[i])
            return SH_EINVAL; /* the value contains itself */
        if (!amf0) {
            if (i <= U29_MAX >> 1) {
                put_u29(b, i << 1);
                return 1;
            }
        } else if (i <= 0xffff) {
            put_u8(b, AMF0_REFERENCE);
            sh_buf_put_u16be(b, (uint16_t)i);
            return 1;
        }
    }
    return otab_add(t, v);
}

static void obj_done(otab *t, const amf_value *v)
{
    uint32_t i = otab_find(t, v);
    if (i != UINT32_MAX)
        t->done[i] = 1;
}

static int depth_in(amf_enc *e)
{
    return ++e->depth > AMF_ENC_MAX_DEPTH ? SH_ELIMIT : 0;
}

static int enc3_traits(amf_enc *e, const amf_value *v, sh_buf *b)
{
    const amf_cont *c = amf_cont_of(v);
    bool ext = v->flags & AMF_F_EXTERNAL, dyn = v->flags & AMF_F_DYNAMIC;
    uint32_t h = trait_hash(c);
    uint32_t i = hmap_find(&e->ht, h, trait_eq, e, v);
    if (i != UINT32_MAX && i <= U29_MAX >> 2) {
        put_u29(b, i << 2 | 1);
        return 0;
    }
    uint32_t sealed = ext ? 0 : c->sealed;
    if (sealed > U29_MAX >> 4)
        return SH_EINVAL;
    if (e->ntt == e->captt) {
        uint32_t cap = e->captt ? e->captt * 2 : 16;
        trait_ent *nt = realloc(e->tt, (size_t)cap * sizeof *nt);
        if (!nt)
            return SH_ENOMEM;
        e->tt = nt;
        e->captt = cap;
    }
    bool rebuilt;
    if (hmap_fit(&e->ht, e->ntt + 1, &rebuilt))
        return SH_ENOMEM;
    if (rebuilt)
        for (uint32_t j = 0; j < e->ntt; j++)
            hmap_put(&e->ht, e->tt[j].hash, j);
    e->tt[e->ntt] = (trait_ent){v, h};
    hmap_put(&e->ht, h, e->ntt);
    e->ntt++;
    put_u29(b, sealed << 4 | (dyn ? 8u : 0u) | (ext ? 4u : 0u) | 3u);
    int rc = str3(e, c->cls ? c->cls : "", c->cls_len, b);
    for (uint32_t k = 0; !rc && k < sealed; k++)
        rc = str3(e, c->kbuf + c->m[k].koff, c->m[k].klen, b);
    return rc;
}

static int enc3_pairs(amf_enc *e, const amf_cont *c, uint32_t from, sh_buf *b)
{
    for (uint32_t i = from; i < c->nm; i++) {
        if (c->m[i].klen == 0)
            return SH_EINVAL; /* "" ends the list in AMF3 */
        int rc = str3(e, c->kbuf + c->m[i].koff, c->m[i].klen, b);
        if (!rc)
            rc = enc3(e, c->m[i].v, b);
        if (rc)
            return rc;
    }
    put_u8(b, 0x01);
    return 0;
}

static int enc3_object(amf_enc *e, const amf_value *v, sh_buf *b)
{
    const amf_cont *c = amf_cont_of(v);
    int rc = enc3_traits(e, v, b);
    if (rc)
        return rc;
    if (v->flags & AMF_F_EXTERNAL)
        return c->ne ? enc3(e, c->e[0], b) : SH_EINVAL;
    uint32_t sealed = c->sealed < c->nm ? c->sealed : c->nm;
    for (uint32_t i = 0; i < sealed; i++)
        if ((rc = enc3(e, c->m[i].v, b)))
            return rc;
    if (v->flags & AMF_F_DYNAMIC)
        return enc3_pairs(e, c, sealed, b);
    return 0;
}

static int enc3_cont_body(amf_enc *e, const amf_value *v, sh_buf *b)
{
    const amf_cont *c = amf_cont_of(v);
    int rc = 0;
    switch ((amf_type)v->type) {
    case AMF_OBJECT: return enc3_object(e, v, b);
    case AMF_STRICT_ARRAY:
    case AMF_ECMA_ARRAY:
        if (c->ne > U29_MAX >> 1)
            return SH_EINVAL;
        put_u29(b, c->ne << 1 | 1);
        if (v->type == AMF_ECMA_ARRAY)
            rc = enc3_pairs(e, c, 0, b);
        else
            put_u8(b, 0x01);
        for (uint32_t i = 0; !rc && i < c->ne; i++)
            rc = enc3(e, c->e[i], b);
        return rc;
    case AMF_VECTOR_INT:
    case AMF_VECTOR_UINT:
    case AMF_VECTOR_DOUBLE:
        if (c->nn > U29_MAX >> 1)
            return SH_EINVAL;
        put_u29(b, c->nn << 1 | 1);
        put_u8(b, (v->flags & AMF_F_FIXED) ? 1 : 0);
        for (uint32_t i = 0; i < c->nn; i++) {
            double x = c->nums[i];
            if (v->type == AMF_VECTOR_DOUBLE)
                sh_buf_put_f64be(b, x);
            else if (v->type == AMF_VECTOR_INT)
                sh_buf_put_u32be(b, (uint32_t)(int32_t)x);
            else
                sh_buf_put_u32be(b, (uint32_t)x);
        }
        return 0;
    case AMF_VECTOR_OBJECT:
        if (c->ne > U29_MAX >> 1)
            return SH_EINVAL;
        put_u29(b, c->ne << 1 | 1);
        put_u8(b, (v->flags & AMF_F_FIXED) ? 1 : 0);
        rc = str3(e, c->cls ? c->cls : "", c->cls_len, b);
        for (uint32_t i = 0; !rc && i < c->ne; i++)
            rc = enc3(e, c->e[i], b);
        return rc;
    case AMF_DICTIONARY:
        if (c->ne / 2 > U29_MAX >> 1)
            return SH_EINVAL;
        put_u29(b, (c->ne / 2) << 1 | 1);
        put_u8(b, (v->flags & AMF_F_WEAK) ? 1 : 0);
        for (uint32_t i = 0; !rc && i < c->ne; i++)
            rc = enc3(e, c->e[i], b);
        return rc;
    default: return SH_EINVAL;
    }
}

static int enc3(amf_enc *e, const amf_value *v, sh_buf *b)
{
    if (!v)
        return SH_EINVAL;
    int rc;
    switch ((amf_type)v->type) {
    case AMF_UNDEFINED:
    case AMF_UNSUPPORTED: put_u8(b, AMF3_UNDEFINED); return 0;
    case AMF_NULL: put_u8(b, AMF3_NULL); return 0;
    case AMF_BOOLEAN: put_u8(b, v->u.b ? AMF3_TRUE : AMF3_FALSE); return 0;
    case AMF_INTEGER:
        if (v->u.i >= -(1 << 28) && v->u.i < (1 << 28)) {
            put_u8(b, AMF3_INTEGER);
            put_u29(b, (uint32_t)v->u.i);
            return 0;
        }
        put_u8(b, AMF3_DOUBLE);
        sh_buf_put_f64be(b, v->u.i);
        return 0;
    case AMF_NUMBER:
        put_u8(b, AMF3_DOUBLE);
        sh_buf_put_f64be(b, v->u.d);
        return 0;
    case AMF_STRING:
        put_u8(b, AMF3_STRING);
        return str3(e, v->u.s.p, v->u.s.n, b);
    default: break;
    }
    /* everything else goes through the object table */
    static const uint8_t marker[] = {
        [AMF_XML_DOCUMENT] = AMF3_XML_DOC, [AMF_XML] = AMF3_XML, [AMF_DATE] = AMF3_DATE,
        [AMF_OBJECT] = AMF3_OBJECT, [AMF_ECMA_ARRAY] = AMF3_ARRAY,
        [AMF_STRICT_ARRAY] = AMF3_ARRAY, [AMF_BYTE_ARRAY] = AMF3_BYTE_ARRAY,
        [AMF_VECTOR_INT] = AMF3_VECTOR_INT, [AMF_VECTOR_UINT] = AMF3_VECTOR_UINT,
        [AMF_VECTOR_DOUBLE] = AMF3_VECTOR_DOUBLE, [AMF_VECTOR_OBJECT] = AMF3_VECTOR_OBJECT,
        [AMF_DICTIONARY] = AMF3_DICTIONARY,
    };
    if (v->type >= sizeof marker)
        return SH_EINVAL;
    put_u8(b, marker[v->type]);
    if ((rc = obj_ref(&e->o3, v, b, false)))
        return rc < 0 ? rc : 0;
    switch ((amf_type)v->type) {
    case AMF_XML_DOCUMENT:
    case AMF_XML:
    case AMF_BYTE_ARRAY:
        if (v->u.s.n > U29_MAX >> 1)
            return SH_EINVAL;
        put_u29(b, v->u.s.n << 1 | 1);
        sh_buf_append(b, v->u.s.p, v->u.s.n);
        break;
    case AMF_DATE:
        put_u8(b, 0x01);
        sh_buf_put_f64be(b, v->u.d);
        break;
    default:
        if ((rc = depth_in(e)) || (rc = enc3_cont_body(e, v, b)))
            return rc;
        e->depth--;
    }
    obj_done(&e->o3, v);
    return 0;
}

/* ====================================================================
 * AMF0
 * ==================================================================== */

static int enc0(amf_enc *e, const amf_value *v, sh_buf *b);

static int key0(const char *k, uint32_t n, sh_buf *b)
{
    if (n > 0xffff)
        return SH_EINVAL;
    sh_buf_put_u16be(b, (uint16_t)n);
    sh_buf_append(b, k, n);
    return 0;
}

static int props0(amf_enc *e, const amf_cont *c, sh_buf *b)
{
    for (uint32_t i = 0; i < c->nm; i++) {
        int rc = key0(c->kbuf + c->m[i].koff, c->m[i].klen, b);
        if (!rc)
            rc = enc0(e, c->m[i].v, b);
        if (rc)
            return rc;
    }
    static const uint8_t end[3] = {0, 0, AMF0_OBJECT_END};
    sh_buf_append(b, end, 3);
    return 0;
}

static int enc0_cont(amf_enc *e, const amf_value *v, sh_buf *b)
{
    const amf_cont *c = amf_cont_of(v);
    int rc = 0;
    switch ((amf_type)v->type) {
    case AMF_OBJECT:
        if (c->cls_len) {
            put_u8(b, AMF0_TYPED_OBJECT);
            if ((rc = key0(c->cls, c->cls_len, b)))
                return rc;
        } else {
            put_u8(b, AMF0_OBJECT);
        }
        return props0(e, c, b);
    case AMF_ECMA_ARRAY:
        put_u8(b, AMF0_ECMA_ARRAY);
        sh_buf_put_u32be(b, amf_ecma_array_count(v));
        return props0(e, c, b);
    case AMF_STRICT_ARRAY:
        put_u8(b, AMF0_STRICT_ARRAY);
        sh_buf_put_u32be(b, c->ne);
        for (uint32_t i = 0; !rc && i < c->ne; i++)
            rc = enc0(e, c->e[i], b);
        return rc;
    default: return SH_EINVAL;
    }
}

/* AMF0 objects are either anonymous and fully dynamic, or typed and fully
 * sealed; ECMA arrays have no dense part.  Anything else goes through the
 * AMF3 switch so that it decodes back to the same value. */
static bool amf0_can_carry(const amf_value *v)
{
    const amf_cont *c = amf_cont_of(v);
    if (v->type == AMF_ECMA_ARRAY)
        return c->ne == 0;
    if (v->flags & AMF_F_EXTERNAL)
        return false;
    if (c->cls_len == 0)
        return (v->flags & AMF_F_DYNAMIC) && c->sealed == 0;
    return !(v->flags & AMF_F_DYNAMIC);
}

static int enc0(amf_enc *e, const amf_value *v, sh_buf *b)
{
    if (!v)
        return SH_EINVAL;
    int rc;
    switch ((amf_type)v->type) {
    case AMF_UNDEFINED: put_u8(b, AMF0_UNDEFINED); return 0;
    case AMF_NULL: put_u8(b, AMF0_NULL); return 0;
    case AMF_UNSUPPORTED: put_u8(b, AMF0_UNSUPPORTED); return 0;
    case AMF_BOOLEAN:
        put_u8(b, AMF0_BOOLEAN);
        put_u8(b, v->u.b ? 1 : 0);
        return 0;
    case AMF_NUMBER:
    case AMF_INTEGER:
        put_u8(b, AMF0_NUMBER);
        sh_buf_put_f64be(b, v->type == AMF_NUMBER ? v->u.d : (double)v->u.i);
        return 0;
    case AMF_STRING:
        if (v->u.s.n <= 0xffff) {
            put_u8(b, AMF0_STRING);
            sh_buf_put_u16be(b, (uint16_t)v->u.s.n);
        } else {
            put_u8(b, AMF0_LONG_STRING);
            sh_buf_put_u32be(b, v->u.s.n);
        }
        sh_buf_append(b, v->u.s.p, v->u.s.n);
        return 0;
    case AMF_XML_DOCUMENT:
        put_u8(b, AMF0_XML_DOCUMENT);
        sh_buf_put_u32be(b, v->u.s.n);
        sh_buf_append(b, v->u.s.p, v->u.s.n);
        return 0;
    case AMF_DATE:
        put_u8(b, AMF0_DATE);
        sh_buf_put_f64be(b, v->u.d);
        sh_buf_put_u16be(b, (uint16_t)v->tz);
        return 0;
    case AMF_OBJECT:
    case AMF_ECMA_ARRAY:
        if (!amf0_can_carry(v))
            break;
        /* fall through */
    case AMF_STRICT_ARRAY:
        if ((rc = obj_ref(&e->o0, v, b, true)))
            return rc < 0 ? rc : 0;
        if ((rc = depth_in(e)) || (rc = enc0_cont(e, v, b)))
            return rc;
        e->depth--;
        obj_done(&e->o0, v);
        return 0;
    default: break;
    }
    /* AMF3-only values: avmplus-object-marker (amf0 spec 3.1) */
    put_u8(b, AMF0_AVMPLUS);
    return enc3(e, v, b);
}

int amf_encode(amf_enc *e, amf_encoding enc, const amf_value *v, sh_buf *out)
{
    if (!e || !v || !out || (enc != AMF_ENC_AMF0 && enc != AMF_ENC_AMF3))
        return SH_EINVAL;
    sh_buf_pos start = sh_buf_mark(out);
    uint32_t n0 = e->o0.n, n3 = e->o3.n, nst = e->nst, ntt = e->ntt;
    size_t sblen = e->sblen;
    e->depth = 0;
    int rc = enc == AMF_ENC_AMF3 ? enc3(e, v, out) : enc0(e, v, out);
    if (!rc && out->failed && !start.failed)
        rc = SH_ELIMIT;
    if (rc) {
        truncate_all(e, n0, n3, nst, sblen, ntt);
        sh_buf_rollback(out, start); /* drop the partial value */
    }
    return rc;
}

int amf_encode1(amf_encoding enc, const amf_value *v, sh_buf *out)
{
    amf_enc *e = amf_enc_new();
    if (!e)
        return SH_ENOMEM;
    int rc = amf_encode(e, enc, v, out);
    amf_enc_free(e);
    return rc;
}
