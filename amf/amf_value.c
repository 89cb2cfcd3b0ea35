/* amf_value.c - the AMF value model: construction, inspection, equality. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "amf_int.h"
#include "sh_map.h"

const amf_limits amf_default_limits = {
    .max_depth = AMF_DEFAULT_MAX_DEPTH,
    .max_string = AMF_DEFAULT_MAX_STRING,
    .max_elements = AMF_DEFAULT_MAX_ELEMENTS,
    .max_refs = AMF_DEFAULT_MAX_REFS,
    .max_total = AMF_DEFAULT_MAX_TOTAL,
    .max_memory = 0, /* AMF_MEMORY_PER_BYTE x max_total */
};

size_t amf_limits_memory(const amf_limits *l)
{
    if (!l)
        l = &amf_default_limits;
    if (l->max_memory)
        return l->max_memory;
    return l->max_total > SIZE_MAX / AMF_MEMORY_PER_BYTE ? SIZE_MAX
                                                         : l->max_total * AMF_MEMORY_PER_BYTE;
}

size_t amf_mem_block(size_t n) { return amf_mem_block_(n); }

/* The singletons (refs 0, amf_is_static).  Never written: amf_ref and
 * amf_unref leave them alone, and no setter applies to these types. */
static amf_value s_undefined = {.refs = 0, .type = AMF_UNDEFINED};
static amf_value s_null = {.refs = 0, .type = AMF_NULL};
static amf_value s_unsupported = {.refs = 0, .type = AMF_UNSUPPORTED};
static amf_value s_false = {.refs = 0, .type = AMF_BOOLEAN, .u.b = false};
static amf_value s_true = {.refs = 0, .type = AMF_BOOLEAN, .u.b = true};
static char s_empty_bytes[1];
static amf_value s_empty = {.refs = 0, .type = AMF_STRING, .u.s = {s_empty_bytes, 0}};

static amf_value *scalar_new(amf_type t)
{
    amf_value *v = malloc(sizeof *v);
    if (!v)
        return NULL;
    memset(v, 0, sizeof *v);
    v->refs = 1;
    v->type = (uint8_t)t;
    return v;
}

amf_value *amf_undefined(void) { return &s_undefined; }
amf_value *amf_null(void) { return &s_null; }
amf_value *amf_unsupported(void) { return &s_unsupported; }
amf_value *amf_bool(bool b) { return b ? &s_true : &s_false; }

amf_value *amf_number(double d)
{
    amf_value *v = scalar_new(AMF_NUMBER);
    if (v)
        v->u.d = d;
    return v;
}

amf_value *amf_integer(int32_t i)
{
    amf_value *v = scalar_new(AMF_INTEGER);
    if (v)
        v->u.i = i;
    return v;
}

amf_value *amf_date(double ms, int16_t tz_minutes)
{
    amf_value *v = scalar_new(AMF_DATE);
    if (v) {
        v->u.d = ms;
        v->tz = tz_minutes;
    }
    return v;
}

amf_value *amf_bytes_new(amf_type t, const void *p, size_t n)
{
    if (n > UINT32_MAX || n > SIZE_MAX - sizeof(amf_value) - 1)
        return NULL;
    if (n == 0 && t == AMF_STRING)
        return &s_empty;
    return amf_bytes_alloc(t, p, n);
}

amf_value *amf_bytes_alloc(amf_type t, const void *p, size_t n)
{
    amf_value *v = malloc(sizeof *v + n + 1);
    if (!v)
        return NULL;
    memset(v, 0, sizeof *v);
    v->refs = 1;
    v->type = (uint8_t)t;
    v->u.s.p = (char *)(v + 1);
    v->u.s.n = (uint32_t)n;
    if (n)
        memcpy(v->u.s.p, p, n);
    v->u.s.p[n] = '\0';
    return v;
}

amf_value *amf_string(const char *s, size_t n) { return amf_bytes_new(AMF_STRING, s, n); }
amf_value *amf_string_cstr(const char *s) { return amf_string(s, strlen(s)); }
amf_value *amf_xml_document(const char *s, size_t n) { return amf_bytes_new(AMF_XML_DOCUMENT, s, n); }
amf_value *amf_xml(const char *s, size_t n) { return amf_bytes_new(AMF_XML, s, n); }
amf_value *amf_byte_array(const void *p, size_t n) { return amf_bytes_new(AMF_BYTE_ARRAY, p, n); }

amf_value *amf_cont_new(amf_type t)
{
    amf_cont *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->h.refs = 1;
    c->h.type = (uint8_t)t;
    return &c->h;
}

void amf_cont_set_class_value(amf_cont *c, amf_value *s)
{
    amf_value *old = c->clsv;
    c->clsv = s && s->u.s.n ? amf_ref(s) : NULL;
    c->cls = c->clsv ? c->clsv->u.s.p : NULL;
    c->cls_len = c->clsv ? c->clsv->u.s.n : 0;
    amf_unref(old);
}

int amf_cont_set_class(amf_cont *c, const char *s, size_t n)
{
    if (n > UINT32_MAX - 1)
        return SH_EINVAL;
    amf_value *v = amf_bytes_new(AMF_STRING, s, n);
    if (!v)
        return SH_ENOMEM;
    amf_cont_set_class_value(c, v);
    amf_unref(v);
    return 0;
}

amf_value *amf_object_new(const char *class_name)
{
    amf_value *v = amf_cont_new(AMF_OBJECT);
    if (!v)
        return NULL;
    size_t n = class_name ? strlen(class_name) : 0;
    if (n == 0)
        v->flags |= AMF_F_DYNAMIC;
    else if (amf_cont_set_class(amf_cont_of(v), class_name, n)) {
        amf_unref(v);
        return NULL;
    }
    return v;
}

amf_value *amf_ecma_array_new(void) { return amf_cont_new(AMF_ECMA_ARRAY); }
amf_value *amf_strict_array_new(void) { return amf_cont_new(AMF_STRICT_ARRAY); }

static const char *const external_classes[] = {
    "flex.messaging.io.ArrayCollection",
    "flex.messaging.io.ObjectProxy",
    "mx.collections.ArrayList",
};

bool amf_external_class_known(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof external_classes / sizeof *external_classes; i++)
        if (strlen(external_classes[i]) == len && memcmp(external_classes[i], name, len) == 0)
            return true;
    return false;
}

amf_value *amf_object_new_external(const char *class_name, amf_value *inner)
{
    if (!class_name || !inner || !amf_external_class_known(class_name, strlen(class_name))) {
        amf_unref(inner);
        return NULL;
    }
    amf_value *v = amf_object_new(class_name);
    if (!v || amf_cont_push(amf_cont_of(v), inner, 1)) {
        amf_unref(v);
        return NULL;
    }
    v->flags |= AMF_F_EXTERNAL;
    return v;
}

amf_value *amf_vector_new(amf_type type, bool fixed, const char *type_name)
{
    if (type != AMF_VECTOR_INT && type != AMF_VECTOR_UINT && type != AMF_VECTOR_DOUBLE &&
        type != AMF_VECTOR_OBJECT)
        return NULL;
    amf_value *v = amf_cont_new(type);
    if (!v)
        return NULL;
    if (fixed)
        v->flags |= AMF_F_FIXED;
    if (type == AMF_VECTOR_OBJECT && type_name && *type_name &&
        amf_cont_set_class(amf_cont_of(v), type_name, strlen(type_name))) {
        amf_unref(v);
        return NULL;
    }
    return v;
}

amf_value *amf_dict_new(bool weak_keys)
{
    amf_value *v = amf_cont_new(AMF_DICTIONARY);
    if (v && weak_keys)
        v->flags |= AMF_F_WEAK;
    return v;
}

/* ---- growth ---- */

int amf_grow(void **p, uint32_t *cap, uint32_t need, size_t elem, uint32_t hint)
{
    if (need <= *cap)
        return 0;
    uint64_t n = amf_grow_cap(*cap, need, hint);
    if (n > UINT32_MAX || n > SIZE_MAX / elem)
        return SH_ENOMEM;
    void *q = realloc(*p, (size_t)n * elem);
    if (!q)
        return SH_ENOMEM;
    *p = q;
    *cap = (uint32_t)n;
    return 0;
}

int amf_cont_push(amf_cont *c, amf_value *v, uint32_t hint)
{
    if (c->ne == UINT32_MAX || amf_grow((void **)&c->e, &c->ecap, c->ne + 1, sizeof *c->e, hint)) {
        amf_unref(v);
        return SH_ENOMEM;
    }
    c->e[c->ne++] = v;
    return 0;
}

int amf_cont_push_num(amf_cont *c, double x, uint32_t hint)
{
    if (c->nn == UINT32_MAX || amf_grow((void **)&c->nums, &c->ncap, c->nn + 1, sizeof *c->nums, hint))
        return SH_ENOMEM;
    c->nums[c->nn++] = x;
    return 0;
}

/* First key-buffer size for a container expecting `hint` members. */
static uint32_t key_hint(uint32_t hint) { return hint > 64 ? 64 * 16 : hint * 16; }

size_t amf_cont_member_mem(const amf_cont *c, size_t kn, uint32_t hint)
{
    if (kn >= UINT32_MAX - c->klen - 1)
        return SIZE_MAX;
    size_t m = amf_grow_mem(c->mcap, c->nm + 1, sizeof *c->m, hint);
    size_t k = amf_grow_mem(c->kcap, c->klen + (uint32_t)kn + 1, 1, key_hint(hint));
    return m > SIZE_MAX - k ? SIZE_MAX : m + k;
}

int amf_cont_add_member(amf_cont *c, const char *k, size_t kn, amf_value *v, uint32_t hint)
{
    if (kn >= UINT32_MAX - c->klen - 1 || c->nm == UINT32_MAX)
        goto fail;
    uint32_t khint = key_hint(hint);
    if (amf_grow((void **)&c->m, &c->mcap, c->nm + 1, sizeof *c->m, hint) ||
        amf_grow((void **)&c->kbuf, &c->kcap, c->klen + (uint32_t)kn + 1, 1, khint))
        goto fail;
    amf_member *m = &c->m[c->nm++];
    m->koff = c->klen;
    m->klen = (uint32_t)kn;
    m->v = v;
    if (kn)
        memcpy(c->kbuf + c->klen, k, kn);
    c->kbuf[c->klen + kn] = '\0';
    c->klen += (uint32_t)kn + 1;
    if (c->h.type == AMF_OBJECT && !(c->h.flags & AMF_F_DYNAMIC))
        c->sealed = c->nm;
    return 0;
fail:
    amf_unref(v);
    return SH_ENOMEM;
}

/* ---- members ---- */

static bool has_members(const amf_value *v)
{
    return v && (v->type == AMF_OBJECT || v->type == AMF_ECMA_ARRAY);
}

static bool key_eq(const amf_cont *c, const amf_member *m, const char *k, size_t kn)
{
    return m->klen == kn && memcmp(c->kbuf + m->koff, k, kn) == 0;
}

int amf_object_add(amf_value *obj, const char *key, size_t key_len, amf_value *v)
{
    if (!has_members(obj) || !v || (obj->flags & AMF_F_EXTERNAL)) {
        amf_unref(v);
        return v ? SH_EINVAL : SH_ENOMEM;
    }
    return amf_cont_add_member(amf_cont_of(obj), key, key_len, v, 4);
}

int amf_object_set(amf_value *obj, const char *key, size_t key_len, amf_value *v)
{
    if (has_members(obj) && v && !(obj->flags & AMF_F_EXTERNAL)) {
        amf_cont *c = amf_cont_of(obj);
        for (uint32_t i = 0; i < c->nm; i++) {
            if (key_eq(c, &c->m[i], key, key_len)) {
                amf_unref(c->m[i].v);
                c->m[i].v = v;
                return 0;
            }
        }
    }
    return amf_object_add(obj, key, key_len, v);
}

int amf_object_set_cstr(amf_value *obj, const char *key, amf_value *v)
{
    return amf_object_set(obj, key, strlen(key), v);
}

amf_value *amf_object_get(const amf_value *obj, const char *key)
{
    if (!has_members(obj))
        return NULL;
    const amf_cont *c = amf_cont_of(obj);
    size_t kn = strlen(key);
    for (uint32_t i = 0; i < c->nm; i++)
        if (key_eq(c, &c->m[i], key, kn))
            return c->m[i].v;
    return NULL;
}

size_t amf_object_count(const amf_value *obj)
{
    return has_members(obj) ? amf_cont_of(obj)->nm : 0;
}

amf_value *amf_object_at(const amf_value *obj, size_t i, const char **key, size_t *key_len)
{
    if (!has_members(obj) || i >= amf_cont_of(obj)->nm)
        return NULL;
    const amf_cont *c = amf_cont_of(obj);
    if (key)
        *key = c->kbuf + c->m[i].koff;
    if (key_len)
        *key_len = c->m[i].klen;
    return c->m[i].v;
}

const char *amf_object_class(const amf_value *obj)
{
    if (!obj || obj->type != AMF_OBJECT)
        return "";
    const amf_cont *c = amf_cont_of(obj);
    return c->cls ? c->cls : "";
}

size_t amf_object_class_len(const amf_value *obj)
{
    return obj && obj->type == AMF_OBJECT ? amf_cont_of(obj)->cls_len : 0;
}

bool amf_object_dynamic(const amf_value *obj)
{
    return obj && obj->type == AMF_OBJECT && (obj->flags & AMF_F_DYNAMIC);
}

size_t amf_object_sealed_count(const amf_value *obj)
{
    return obj && obj->type == AMF_OBJECT ? amf_cont_of(obj)->sealed : 0;
}

int amf_object_set_dynamic(amf_value *obj, bool dynamic)
{
    if (!obj || obj->type != AMF_OBJECT || (obj->flags & AMF_F_EXTERNAL))
        return SH_EINVAL;
    if (dynamic) {
        obj->flags |= AMF_F_DYNAMIC;
    } else {
        obj->flags &= (uint8_t)~AMF_F_DYNAMIC;
        amf_cont_of(obj)->sealed = amf_cont_of(obj)->nm;
    }
    return 0;
}

bool amf_object_externalizable(const amf_value *obj)
{
    return obj && obj->type == AMF_OBJECT && (obj->flags & AMF_F_EXTERNAL);
}

amf_value *amf_object_external_value(const amf_value *obj)
{
    if (!amf_object_externalizable(obj) || amf_cont_of(obj)->ne < 1)
        return NULL;
    return amf_cont_of(obj)->e[0];
}

/* ---- arrays, vectors, dictionaries ---- */

static bool has_dense(const amf_value *v)
{
    return v && (v->type == AMF_STRICT_ARRAY || v->type == AMF_ECMA_ARRAY ||
                 v->type == AMF_VECTOR_OBJECT);
}

int amf_array_push(amf_value *arr, amf_value *v)
{
    if (!has_dense(arr) || !v) {
        amf_unref(v);
        return v ? SH_EINVAL : SH_ENOMEM;
    }
    return amf_cont_push(amf_cont_of(arr), v, 4);
}

size_t amf_array_len(const amf_value *arr) { return has_dense(arr) ? amf_cont_of(arr)->ne : 0; }

amf_value *amf_array_at(const amf_value *arr, size_t i)
{
    if (!has_dense(arr) || i >= amf_cont_of(arr)->ne)
        return NULL;
    return amf_cont_of(arr)->e[i];
}

bool amf_ecma_array_has_count(const amf_value *arr)
{
    return arr && arr->type == AMF_ECMA_ARRAY && (arr->flags & AMF_F_COUNT);
}

uint32_t amf_ecma_array_count(const amf_value *arr)
{
    if (!arr || arr->type != AMF_ECMA_ARRAY)
        return 0;
    const amf_cont *c = amf_cont_of(arr);
    if (arr->flags & AMF_F_COUNT)
        return c->count;
    uint64_t n = (uint64_t)c->nm + c->ne;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

void amf_ecma_array_set_count(amf_value *arr, uint32_t count)
{
    if (!arr || arr->type != AMF_ECMA_ARRAY)
        return;
    arr->flags |= AMF_F_COUNT;
    amf_cont_of(arr)->count = count;
}

static bool is_num_vector(const amf_value *v)
{
    return v && (v->type == AMF_VECTOR_INT || v->type == AMF_VECTOR_UINT ||
                 v->type == AMF_VECTOR_DOUBLE);
}

bool amf_vector_fixed(const amf_value *vec)
{
    return vec && (is_num_vector(vec) || vec->type == AMF_VECTOR_OBJECT) &&
           (vec->flags & AMF_F_FIXED);
}

const char *amf_vector_type_name(const amf_value *vec)
{
    if (!vec || vec->type != AMF_VECTOR_OBJECT || !amf_cont_of(vec)->cls)
        return "";
    return amf_cont_of(vec)->cls;
}

size_t amf_vector_len(const amf_value *vec)
{
    if (is_num_vector(vec))
        return amf_cont_of(vec)->nn;
    if (vec && vec->type == AMF_VECTOR_OBJECT)
        return amf_cont_of(vec)->ne;
    return 0;
}

int amf_vector_push_number(amf_value *vec, double x)
{
    if (!is_num_vector(vec))
        return SH_EINVAL;
    if (vec->type == AMF_VECTOR_INT && !(x >= INT32_MIN && x <= INT32_MAX && x == floor(x)))
        return SH_EINVAL;
    if (vec->type == AMF_VECTOR_UINT && !(x >= 0 && x <= UINT32_MAX && x == floor(x)))
        return SH_EINVAL;
    return amf_cont_push_num(amf_cont_of(vec), x, 4);
}

double amf_vector_number_at(const amf_value *vec, size_t i)
{
    if (!is_num_vector(vec) || i >= amf_cont_of(vec)->nn)
        return NAN;
    return amf_cont_of(vec)->nums[i];
}

bool amf_dict_weak_keys(const amf_value *d)
{
    return d && d->type == AMF_DICTIONARY && (d->flags & AMF_F_WEAK);
}

int amf_dict_add(amf_value *d, amf_value *key, amf_value *v)
{
    if (!d || d->type != AMF_DICTIONARY || !key || !v) {
        amf_unref(key);
        amf_unref(v);
        return (key && v) ? SH_EINVAL : SH_ENOMEM;
    }
    amf_cont *c = amf_cont_of(d);
    if (amf_cont_push(c, key, 8)) {
        amf_unref(v);
        return SH_ENOMEM;
    }
    if (amf_cont_push(c, v, 8)) {
        amf_unref(c->e[--c->ne]);
        return SH_ENOMEM;
    }
    return 0;
}

size_t amf_dict_count(const amf_value *d)
{
    return d && d->type == AMF_DICTIONARY ? amf_cont_of(d)->ne / 2 : 0;
}

amf_value *amf_dict_at(const amf_value *d, size_t i, amf_value **key)
{
    if (!d || d->type != AMF_DICTIONARY || i >= amf_cont_of(d)->ne / 2)
        return NULL;
    const amf_cont *c = amf_cont_of(d);
    if (key)
        *key = c->e[2 * i];
    return c->e[2 * i + 1];
}

/* ---- inspection ---- */

amf_type amf_type_of(const amf_value *v) { return v ? (amf_type)v->type : AMF_UNDEFINED; }

const char *amf_type_name(amf_type t)
{
    static const char *const names[] = {
        [AMF_UNDEFINED] = "undefined", [AMF_NULL] = "null", [AMF_BOOLEAN] = "boolean",
        [AMF_NUMBER] = "number", [AMF_INTEGER] = "integer", [AMF_STRING] = "string",
        [AMF_XML_DOCUMENT] = "xml-document", [AMF_XML] = "xml", [AMF_DATE] = "date",
        [AMF_OBJECT] = "object", [AMF_ECMA_ARRAY] = "ecma-array",
        [AMF_STRICT_ARRAY] = "strict-array", [AMF_BYTE_ARRAY] = "byte-array",
        [AMF_VECTOR_INT] = "vector-int", [AMF_VECTOR_UINT] = "vector-uint",
        [AMF_VECTOR_DOUBLE] = "vector-double", [AMF_VECTOR_OBJECT] = "vector-object",
        [AMF_DICTIONARY] = "dictionary", [AMF_UNSUPPORTED] = "unsupported",
    };
    if ((unsigned)t >= sizeof names / sizeof *names || !names[t])
        return "?";
    return names[t];
}

double amf_as_number(const amf_value *v)
{
    if (!v)
        return NAN;
    switch (v->type) {
    case AMF_NUMBER:
    case AMF_DATE: return v->u.d;
    case AMF_INTEGER: return v->u.i;
    default: return NAN;
    }
}

bool amf_as_bool(const amf_value *v) { return v && v->type == AMF_BOOLEAN && v->u.b; }

const char *amf_as_string(const amf_value *v, size_t *len)
{
    if (!v || !amf_type_is_bytes((amf_type)v->type))
        return NULL;
    if (len)
        *len = v->u.s.n;
    return v->u.s.p;
}

bool amf_is_string(const amf_value *v, const char *s)
{
    return v && v->type == AMF_STRING && strlen(s) == v->u.s.n &&
           memcmp(v->u.s.p, s, v->u.s.n) == 0;
}

double amf_date_ms(const amf_value *v) { return v && v->type == AMF_DATE ? v->u.d : NAN; }
int16_t amf_date_tz(const amf_value *v) { return v && v->type == AMF_DATE ? v->tz : 0; }

/* ---- reference counting ---- */

amf_value *amf_ref(amf_value *v)
{
    if (v && !amf_is_static(v))
        v->refs++;
    return v;
}

static void cont_free(amf_cont *c)
{
    for (uint32_t i = 0; i < c->nm; i++)
        amf_unref(c->m[i].v);
    for (uint32_t i = 0; i < c->ne; i++)
        amf_unref(c->e[i]);
    free(c->m);
    free(c->kbuf);
    free(c->e);
    free(c->nums);
    amf_unref(c->clsv);
    free(c);
}

void amf_unref(amf_value *v)
{
    if (!v || amf_is_static(v) || --v->refs > 0)
        return;
    if (amf_type_is_cont((amf_type)v->type))
        cont_free(amf_cont_of(v));
    else
        free(v);
}

/* ---- equality ----
 * Decoded values can share sub-values (references), so a small input can
 * be a graph whose expanded tree is exponential ("billion laughs").  To
 * stay polynomial, pairs of shared containers already found equal are
 * remembered and not walked again; values reachable twice are shared
 * (refs > 1) or hang below a shared one.  Shared values are immutable, so
 * the memo stays true during the call. */

typedef struct eq_memo {
    amf_keyset pairs; /* (a, b) pointer pairs, as bytes */
    bool off;         /* allocation failed: compare without memo */
} eq_memo;

static bool memo_has(const eq_memo *m, const void *a, const void *b)
{
    const void *pair[2] = {a, b};
    return amf_keyset_find(&m->pairs, pair, sizeof(pair)) != UINT32_MAX;
}

static void memo_put(eq_memo *m, const void *a, const void *b)
{
    if (m->off)
        return;
    const void *pair[2] = {a, b};
    char *p = amf_keyset_reserve(&m->pairs, sizeof(pair));
    bool added;
    if (p)
        memcpy(p, pair, sizeof(pair));
    if (!p || amf_keyset_intern(&m->pairs, sizeof(pair), &added) == UINT32_MAX)
        m->off = true;
}

static bool eq(const amf_value *a, const amf_value *b, eq_memo *m);

static bool num_eq(double a, double b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    return a == b && signbit(a) == signbit(b);
}

static bool cont_eq(const amf_cont *a, const amf_cont *b, eq_memo *m)
{
    if (a->cls_len != b->cls_len || (a->cls_len && memcmp(a->cls, b->cls, a->cls_len) != 0))
        return false;
    if (a->nm != b->nm || a->ne != b->ne || a->nn != b->nn)
        return false;
    bool shared = a->h.refs > 1 || b->h.refs > 1;
    if (shared && memo_has(m, a, b))
        return true;
    for (uint32_t i = 0; i < a->nm; i++) {
        const amf_member *x = &a->m[i], *y = &b->m[i];
        if (x->klen != y->klen || memcmp(a->kbuf + x->koff, b->kbuf + y->koff, x->klen) != 0 ||
            !eq(x->v, y->v, m))
            return false;
    }
    for (uint32_t i = 0; i < a->ne; i++)
        if (!eq(a->e[i], b->e[i], m))
            return false;
    for (uint32_t i = 0; i < a->nn; i++)
        if (!num_eq(a->nums[i], b->nums[i]))
            return false;
    if (shared)
        memo_put(m, a, b);
    return true;
}

static bool eq(const amf_value *a, const amf_value *b, eq_memo *m)
{
    if (a == b)
        return true;
    if (!a || !b || a->type != b->type)
        return false;
    const uint8_t cmpflags = AMF_F_DYNAMIC | AMF_F_EXTERNAL | AMF_F_FIXED | AMF_F_WEAK;
    switch ((amf_type)a->type) {
    case AMF_UNDEFINED:
    case AMF_NULL:
    case AMF_UNSUPPORTED: return true;
    case AMF_BOOLEAN: return a->u.b == b->u.b;
    case AMF_INTEGER: return a->u.i == b->u.i;
    case AMF_NUMBER: return num_eq(a->u.d, b->u.d);
    case AMF_DATE: return num_eq(a->u.d, b->u.d) && a->tz == b->tz;
    case AMF_STRING:
    case AMF_XML:
    case AMF_XML_DOCUMENT:
    case AMF_BYTE_ARRAY:
        return a->u.s.n == b->u.s.n && memcmp(a->u.s.p, b->u.s.p, a->u.s.n) == 0;
    case AMF_ECMA_ARRAY:
        if (amf_ecma_array_count(a) != amf_ecma_array_count(b))
            return false;
        return cont_eq(amf_cont_of(a), amf_cont_of(b), m);
    case AMF_OBJECT:
        if (amf_cont_of(a)->sealed != amf_cont_of(b)->sealed)
            return false;
        /* fall through */
    default:
        if ((a->flags & cmpflags) != (b->flags & cmpflags))
            return false;
        return cont_eq(amf_cont_of(a), amf_cont_of(b), m);
    }
}

bool amf_equal(const amf_value *a, const amf_value *b)
{
    eq_memo m = {0};
    bool r = eq(a, b, &m);
    amf_keyset_cleanup(&m.pairs);
    return r;
}

/* ---- memory ----
 * The walk counts each block once: a value reachable twice is shared
 * (refs > 1) or hangs below a shared one, so only shared values are
 * remembered.  If the set cannot grow, shared values are counted again
 * (an overestimate, never an underestimate). */

typedef struct ptr_set {
    sh_map m;        /* pointer -> itself */
    bool off;        /* allocation failed: count shared values again */
} ptr_set;

/* Adds q; false when it was there already. */
static bool set_add(ptr_set *s, const void *q)
{
    if (s->off)
        return true;
    int rc = 0;
    if (sh_map_get_or_put_ptr(&s->m, q, (void *)q, &rc))
        return false;
    if (rc < 0)
        s->off = true; /* an overestimate from here, never an underestimate */
    return true;
}

static size_t add_sat(size_t a, size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }

static size_t mem_of(const amf_value *v, ptr_set *seen);

/* v's own blocks and, through mem_of, what it holds. */
static size_t mem_node(const amf_value *v, ptr_set *seen)
{
    amf_type t = (amf_type)v->type;
    if (amf_type_is_bytes(t))
        return amf_mem_bytes(v->u.s.n);
    if (!amf_type_is_cont(t))
        return AMF_MEM_SCALAR;
    const amf_cont *c = amf_cont_of(v);
    size_t n = AMF_MEM_CONT;
    n = add_sat(n, amf_mem_block_((size_t)c->mcap * sizeof *c->m));
    n = add_sat(n, amf_mem_block_(c->kcap));
    n = add_sat(n, amf_mem_block_((size_t)c->ecap * sizeof *c->e));
    n = add_sat(n, amf_mem_block_((size_t)c->ncap * sizeof *c->nums));
    n = add_sat(n, mem_of(c->clsv, seen));
    for (uint32_t i = 0; i < c->nm; i++)
        n = add_sat(n, mem_of(c->m[i].v, seen));
    for (uint32_t i = 0; i < c->ne; i++)
        n = add_sat(n, mem_of(c->e[i], seen));
    return n;
}

static size_t mem_of(const amf_value *v, ptr_set *seen)
{
    if (!v || amf_is_static(v))
        return 0;
    if (v->refs > 1 && !set_add(seen, v))
        return 0;
    return mem_node(v, seen);
}

size_t amf_value_mem(const amf_value *v)
{
    ptr_set seen = {.off = false};
    sh_map_init(&seen.m);
    /* the root is reached once, however many references others hold to
     * it (a value inside it that leads back to it is a cycle: counted
     * once more, then found in the set) */
    size_t n = !v || amf_is_static(v) ? 0 : mem_node(v, &seen);
    sh_map_cleanup(&seen.m);
    return n;
}
