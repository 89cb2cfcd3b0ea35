/* amf_enc.c - AMF0 and AMF3 encoder with reference tables.
 *
 * References are emitted for the same value met twice (pointer identity:
 * AMF0 objects and arrays, AMF3 object-table values), for AMF3 strings with
 * the same bytes, and for AMF3 traits with the same class, flags and
 * sealed member names.  The tables hold a reference to every value they
 * index, so a value freed between two calls of one context cannot be
 * mistaken for a new one at the same address.  Lookups go through sh_map
 * (seeded: the strings come from peers); reset costs what the last value
 * entered.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "amf_int.h"

/* ---- tables ---- */

typedef struct otab { /* values by identity */
    amf_value **v;
    uint8_t *done; /* 0 while the value is being written (cycle check) */
    uint32_t n, cap;
    sh_map idx;    /* value -> sh_map_box(position in v) */
} otab;

struct amf_enc {
    otab o0, o3;
    amf_keyset strs;   /* AMF3 string table */
    amf_keyset traits; /* AMF3 traits table, by trait_sig */
    uint32_t depth;
};

/* Makes room for one more value. */
static int otab_room(otab *t)
{
    if (t->n < t->cap)
        return 0;
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
    return 0;
}

static void otab_truncate(otab *t, uint32_t n)
{
    if (t->n <= n)
        return;
    if (n == 0)
        sh_map_clear(&t->idx);
    else
        for (uint32_t i = n; i < t->n; i++)
            sh_map_del_ptr(&t->idx, t->v[i]);
    while (t->n > n)
        amf_unref(t->v[--t->n]);
}

static void otab_cleanup(otab *t)
{
    free(t->v);
    free(t->done);
    sh_map_cleanup(&t->idx);
}

/* The bytes that identify a trait (amf3 spec 3.12): the dynamic and
 * externalizable flags, the class name and the sealed member names, each
 * name after its length (one byte below 0x80, else 0x80 and four bytes) so
 * that two different traits never give the same bytes.  trait_sig_len says
 * how many; trait_sig writes them. */
static uint64_t sig_len_bytes(uint32_t n)
{
    return n < 0x80 ? 1 : 5;
}

static char *sig_name(char *p, const char *s, uint32_t n)
{
    if (n < 0x80) {
        *p++ = (char)n;
    } else {
        *p++ = (char)0x80;
        memcpy(p, &n, 4);
        p += 4;
    }
    if (n)
        memcpy(p, s, n);
    return p + n;
}

static uint64_t trait_sig_len(const amf_cont *c, uint32_t sealed)
{
    uint64_t n = 1 + sig_len_bytes(c->cls_len) + c->cls_len;
    for (uint32_t i = 0; i < sealed; i++)
        n += sig_len_bytes(c->m[i].klen) + c->m[i].klen;
    return n;
}

static void trait_sig(const amf_cont *c, uint32_t sealed, char *p)
{
    *p++ = (char)(c->h.flags & (AMF_F_DYNAMIC | AMF_F_EXTERNAL));
    p = sig_name(p, c->cls, c->cls_len);
    for (uint32_t i = 0; i < sealed; i++)
        p = sig_name(p, c->kbuf + c->m[i].koff, c->m[i].klen);
}

amf_enc *amf_enc_new(void) { return calloc(1, sizeof(amf_enc)); }

static void truncate_all(amf_enc *e, uint32_t n0, uint32_t n3, uint32_t nst, uint32_t ntt)
{
    otab_truncate(&e->o0, n0);
    otab_truncate(&e->o3, n3);
    amf_keyset_truncate(&e->strs, nst);
    amf_keyset_truncate(&e->traits, ntt);
}

void amf_enc_reset(amf_enc *e)
{
    if (!e)
        return;
    truncate_all(e, 0, 0, 0, 0);
}

void amf_enc_free(amf_enc *e)
{
    if (!e)
        return;
    amf_enc_reset(e);
    otab_cleanup(&e->o0);
    otab_cleanup(&e->o3);
    amf_keyset_cleanup(&e->strs);
    amf_keyset_cleanup(&e->traits);
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

/* U29S (amf3 spec 1.3.2): "" is never a reference and never entered.  The
 * string is copied to the table's tail first, so that one hash both finds
 * it and, when new, enters it. */
static int str3(amf_enc *e, const char *s, uint32_t n, sh_buf *b)
{
    if (n == 0) {
        put_u8(b, 0x01);
        return 0;
    }
    if (n > U29_MAX >> 1)
        return SH_EINVAL;
    uint32_t i;
    bool added = false;
    if (e->strs.n < (U29_MAX >> 1)) {
        char *t = amf_keyset_reserve(&e->strs, n);
        if (!t)
            return SH_ENOMEM;
        memcpy(t, s, n);
        if ((i = amf_keyset_intern(&e->strs, n, &added)) == UINT32_MAX)
            return SH_ENOMEM;
    } else {
        i = amf_keyset_find(&e->strs, s, n); /* full: no more references to give */
    }
    if (i != UINT32_MAX && !added) {
        put_u29(b, i << 1);
        return 0;
    }
    put_u29(b, n << 1 | 1);
    sh_buf_append(b, s, n);
    return 0;
}

/* Writes a reference when v was met before; otherwise enters it.  *pos is
 * its place in the table (for obj_done).  Returns 1 when a reference was
 * written.  A value met again past the last index a reference can name is
 * written out again, not entered again: the decoder numbers that copy too,
 * but every index from there on is past the limit, so no reference we
 * write is affected. */
static int obj_ref(otab *t, const amf_value *v, sh_buf *b, bool amf0, uint32_t *pos)
{
    if (otab_room(t))
        return SH_ENOMEM;
    int rc;
    void *x = sh_map_get_or_put_ptr(&t->idx, v, sh_map_box(t->n), &rc);
    if (rc)
        return rc;
    if (!x) {
        t->v[t->n] = amf_ref((amf_value *)(uintptr_t)v);
        t->done[t->n] = 0;
        *pos = t->n++;
        return 0;
    }
    uint32_t i = (uint32_t)sh_map_unbox(x);
    *pos = i;
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
    return 0;
}

static int depth_in(amf_enc *e)
{
    return ++e->depth > AMF_ENC_MAX_DEPTH ? SH_ELIMIT : 0;
}

static int enc3_traits(amf_enc *e, const amf_value *v, sh_buf *b)
{
    const amf_cont *c = amf_cont_of(v);
    bool ext = v->flags & AMF_F_EXTERNAL, dyn = v->flags & AMF_F_DYNAMIC;
    uint32_t sealed = ext ? 0 : c->sealed;
    uint64_t siglen = trait_sig_len(c, sealed);
    char *sig = siglen <= SIZE_MAX / 2 ? amf_keyset_reserve(&e->traits, (size_t)siglen) : NULL;
    if (!sig)
        return SH_ENOMEM;
    trait_sig(c, sealed, sig);
    bool added;
    uint32_t i = amf_keyset_intern(&e->traits, (size_t)siglen, &added);
    if (i == UINT32_MAX)
        return SH_ENOMEM;
    if (!added && i <= U29_MAX >> 2) {
        put_u29(b, i << 2 | 1);
        return 0;
    }
    if (sealed > U29_MAX >> 4)
        return SH_EINVAL;
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
    uint32_t pos;
    if ((rc = obj_ref(&e->o3, v, b, false, &pos)))
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
    e->o3.done[pos] = 1;
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
    uint32_t pos;
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
        if ((rc = obj_ref(&e->o0, v, b, true, &pos)))
            return rc < 0 ? rc : 0;
        if ((rc = depth_in(e)) || (rc = enc0_cont(e, v, b)))
            return rc;
        e->depth--;
        e->o0.done[pos] = 1;
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
    uint32_t n0 = e->o0.n, n3 = e->o3.n, nst = e->strs.n, ntt = e->traits.n;
    e->depth = 0;
    int rc = enc == AMF_ENC_AMF3 ? enc3(e, v, out) : enc0(e, v, out);
    if (!rc && out->failed && !start.failed)
        rc = SH_ELIMIT;
    if (rc) {
        truncate_all(e, n0, n3, nst, ntt);
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
