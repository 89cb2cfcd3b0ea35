/* amf_json.c - AMF value <-> JSON (the mapping is docs/amf-json.md). */
#include "amf_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sh_map.h"

#define TAG "$amf"

/* ---- helpers ---- */

static bool utf8_plain(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        unsigned c = *p;
        if (c == 0)
            return false;
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t len;
        unsigned min;
        if ((c & 0xe0) == 0xc0) {
            len = 2;
            min = 0x80;
            c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            min = 0x800;
            c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            min = 0x10000;
            c &= 0x07;
        } else {
            return false;
        }
        if ((size_t)(end - p) < len)
            return false;
        for (size_t i = 1; i < len; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            c = c << 6 | (p[i] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
        p += len;
    }
    return true;
}

static char *hex_of(const char *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char *s = malloc(2 * n + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = digits[(unsigned char)p[i] >> 4];
        s[2 * i + 1] = digits[(unsigned char)p[i] & 15];
    }
    s[2 * n] = '\0';
    return s;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes a hex string; returns malloc'd bytes (n in *len) or NULL. */
static char *bytes_of_hex(const char *s, size_t *len, bool *bad)
{
    size_t n = strlen(s);
    *bad = n % 2 != 0;
    if (*bad)
        return NULL;
    char *b = malloc(n / 2 + 1);
    if (!b)
        return NULL;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            *bad = true;
            free(b);
            return NULL;
        }
        b[i] = (char)(hi << 4 | lo);
    }
    *len = n / 2;
    return b;
}

static cJSON *tagged(const char *tag)
{
    cJSON *o = cJSON_CreateObject();
    if (o && !cJSON_AddStringToObject(o, TAG, tag)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* A double as JSON: a plain number when JSON can carry it exactly. */
static cJSON *num_json(double d)
{
    const char *special = isnan(d) ? "NaN"
                          : isinf(d) ? (d > 0 ? "Infinity" : "-Infinity")
                          : (d == 0 && signbit(d)) ? "-0"
                                                   : NULL;
    if (!special)
        return cJSON_CreateNumber(d);
    cJSON *o = tagged("number");
    if (o && !cJSON_AddStringToObject(o, "value", special)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static bool add(cJSON *o, const char *k, cJSON *item)
{
    if (!item)
        return false;
    if (!cJSON_AddItemToObject(o, k, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

/* text or hex field for strings / XML */
static bool add_text(cJSON *o, const char *p, size_t n)
{
    if (utf8_plain(p, n))
        return add(o, "text", cJSON_CreateString(p));
    char *h = hex_of(p, n);
    bool ok = h && add(o, "hex", cJSON_CreateString(h));
    free(h);
    return ok;
}

/* ---- value -> JSON ---- */

static cJSON *to_json(const amf_value *v, int depth, size_t *budget);

static cJSON *members_json(const amf_value *v, int depth, size_t *budget)
{
    cJSON *m = cJSON_CreateObject();
    if (!m)
        return NULL;
    for (size_t i = 0; i < amf_object_count(v); i++) {
        const char *k;
        size_t kn;
        amf_value *e = amf_object_at(v, i, &k, &kn);
        /* keys with a NUL cannot be JSON object keys here: cut at the NUL */
        if (!add(m, k, to_json(e, depth + 1, budget))) {
            cJSON_Delete(m);
            return NULL;
        }
    }
    return m;
}

static cJSON *items_json(const amf_value *v, int depth, size_t *budget)
{
    cJSON *a = cJSON_CreateArray();
    if (!a)
        return NULL;
    for (size_t i = 0; i < amf_array_len(v); i++) {
        cJSON *e = to_json(amf_array_at(v, i), depth + 1, budget);
        if (!e || !cJSON_AddItemToArray(a, e)) {
            cJSON_Delete(e);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

static cJSON *object_json(const amf_value *v, int depth, size_t *budget)
{
    const char *cls = amf_object_class(v);
    bool dyn = amf_object_dynamic(v);
    size_t n = amf_object_count(v), sealed = amf_object_sealed_count(v);
    bool plain = !*cls && dyn && sealed == 0 && !amf_object_externalizable(v) &&
                 !amf_object_get(v, TAG);
    if (plain)
        return members_json(v, depth, budget);
    cJSON *o = tagged("object");
    if (!o)
        return NULL;
    bool ok = true;
    if (*cls)
        ok = add(o, "class", cJSON_CreateString(cls));
    if (ok && amf_object_externalizable(v))
        ok = add(o, "external", to_json(amf_object_external_value(v), depth + 1, budget));
    else if (ok) {
        if (dyn != !*cls)
            ok = add(o, "dynamic", cJSON_CreateBool(dyn));
        if (ok && sealed != (dyn ? 0 : n))
            ok = add(o, "sealed", cJSON_CreateNumber((double)sealed));
        if (ok)
            ok = add(o, "members", members_json(v, depth, budget));
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *vector_json(const amf_value *v, int depth, size_t *budget)
{
    amf_type t = amf_type_of(v);
    cJSON *o = tagged(t == AMF_VECTOR_INT      ? "vector-int"
                      : t == AMF_VECTOR_UINT   ? "vector-uint"
                      : t == AMF_VECTOR_DOUBLE ? "vector-double"
                                               : "vector-object");
    if (!o)
        return NULL;
    bool ok = true;
    if (t == AMF_VECTOR_OBJECT && *amf_vector_type_name(v))
        ok = add(o, "class", cJSON_CreateString(amf_vector_type_name(v)));
    ok = ok && add(o, "fixed", cJSON_CreateBool(amf_vector_fixed(v)));
    cJSON *items = NULL;
    if (ok && t == AMF_VECTOR_OBJECT) {
        items = items_json(v, depth, budget);
    } else if (ok && *budget < amf_vector_len(v)) {
        items = NULL;
    } else if (ok && (items = cJSON_CreateArray())) {
        *budget -= amf_vector_len(v);
        for (size_t i = 0; i < amf_vector_len(v); i++) {
            cJSON *e = num_json(amf_vector_number_at(v, i));
            if (!e || !cJSON_AddItemToArray(items, e)) {
                cJSON_Delete(e);
                cJSON_Delete(items);
                items = NULL;
                break;
            }
        }
    }
    if (!ok || !add(o, "items", items)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *pair_json(const amf_value *k, const amf_value *e, int depth, size_t *budget)
{
    cJSON *pair = cJSON_CreateArray();
    cJSON *jk = to_json(k, depth + 1, budget);
    if (!pair || !jk || !cJSON_AddItemToArray(pair, jk)) {
        cJSON_Delete(jk);
        cJSON_Delete(pair);
        return NULL;
    }
    cJSON *je = to_json(e, depth + 1, budget);
    if (!je || !cJSON_AddItemToArray(pair, je)) {
        cJSON_Delete(je);
        cJSON_Delete(pair);
        return NULL;
    }
    return pair;
}

static cJSON *dict_json(const amf_value *v, int depth, size_t *budget)
{
    cJSON *entries = cJSON_CreateArray();
    for (size_t i = 0; entries && i < amf_dict_count(v); i++) {
        amf_value *k;
        amf_value *e = amf_dict_at(v, i, &k);
        cJSON *pair = pair_json(k, e, depth, budget);
        if (!pair || !cJSON_AddItemToArray(entries, pair)) {
            cJSON_Delete(pair);
            cJSON_Delete(entries);
            entries = NULL;
        }
    }
    cJSON *o = entries ? tagged("dict") : NULL;
    if (!o) {
        cJSON_Delete(entries);
        return NULL;
    }
    if (!add(o, "weak", cJSON_CreateBool(amf_dict_weak_keys(v)))) {
        cJSON_Delete(entries);
        cJSON_Delete(o);
        return NULL;
    }
    if (!add(o, "entries", entries)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *to_json(const amf_value *v, int depth, size_t *budget)
{
    if (!v || depth > AMF_ENC_MAX_DEPTH || *budget == 0)
        return NULL;
    /* a value costs 1, plus 1 per 64 bytes of text or bytes */
    size_t cost = 1, tn = 0;
    if (amf_as_string(v, &tn))
        cost += tn / 64;
    if (*budget < cost)
        return NULL;
    *budget -= cost;
    size_t n;
    const char *s;
    cJSON *o;
    switch (amf_type_of(v)) {
    case AMF_UNDEFINED: return tagged("undefined");
    case AMF_UNSUPPORTED: return tagged("unsupported");
    case AMF_NULL: return cJSON_CreateNull();
    case AMF_BOOLEAN: return cJSON_CreateBool(amf_as_bool(v));
    case AMF_NUMBER: return num_json(amf_as_number(v));
    case AMF_INTEGER:
        o = tagged("int");
        if (o && !add(o, "value", cJSON_CreateNumber(amf_as_number(v)))) {
            cJSON_Delete(o);
            return NULL;
        }
        return o;
    case AMF_STRING:
        s = amf_as_string(v, &n);
        if (utf8_plain(s, n))
            return cJSON_CreateString(s);
        o = tagged("string");
        break;
    case AMF_XML_DOCUMENT:
        o = tagged("xmldoc");
        break;
    case AMF_XML:
        o = tagged("xml");
        break;
    case AMF_BYTE_ARRAY: {
        s = amf_as_string(v, &n);
        o = tagged("bytes");
        char *h = hex_of(s, n);
        if (!o || !h || !add(o, "hex", cJSON_CreateString(h))) {
            cJSON_Delete(o);
            o = NULL;
        }
        free(h);
        return o;
    }
    case AMF_DATE:
        o = tagged("date");
        if (o && (!add(o, "ms", num_json(amf_date_ms(v))) ||
                  !add(o, "tz", cJSON_CreateNumber(amf_date_tz(v))))) {
            cJSON_Delete(o);
            return NULL;
        }
        return o;
    case AMF_OBJECT: return object_json(v, depth, budget);
    case AMF_STRICT_ARRAY: return items_json(v, depth, budget);
    case AMF_ECMA_ARRAY:
        o = tagged("ecma");
        if (o && ((amf_ecma_array_has_count(v) &&
                   !add(o, "count", cJSON_CreateNumber(amf_ecma_array_count(v)))) ||
                  !add(o, "members", members_json(v, depth, budget)) ||
                  (amf_array_len(v) && !add(o, "dense", items_json(v, depth, budget))))) {
            cJSON_Delete(o);
            return NULL;
        }
        return o;
    case AMF_VECTOR_INT:
    case AMF_VECTOR_UINT:
    case AMF_VECTOR_DOUBLE:
    case AMF_VECTOR_OBJECT: return vector_json(v, depth, budget);
    case AMF_DICTIONARY: return dict_json(v, depth, budget);
    default: return NULL;
    }
    /* string (not plain), xmldoc, xml */
    s = amf_as_string(v, &n);
    if (o && !add_text(o, s, n)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* ---- expanded size, before building anything ----
 * Sizes of shared values are remembered (pointer -> size), so a graph with
 * references is measured in time linear in its own size. */

/* Expanded cost as to_json counts it, saturating at limit + 1. */
static size_t expanded(const amf_value *v, sh_map *m, size_t limit, int depth)
{
    size_t n = 0;
    if (depth > AMF_ENC_MAX_DEPTH)
        return limit + 1; /* to_json refuses it anyway */
    if (amf_as_string(v, &n))
        return 1 + n / 64;
    amf_type t = amf_type_of(v);
    if (t != AMF_OBJECT && t != AMF_ECMA_ARRAY && t != AMF_STRICT_ARRAY &&
        t != AMF_VECTOR_INT && t != AMF_VECTOR_UINT && t != AMF_VECTOR_DOUBLE &&
        t != AMF_VECTOR_OBJECT && t != AMF_DICTIONARY)
        return 1;
    void *known = sh_map_get_ptr(m, v);
    if (known)
        return (size_t)sh_map_unbox(known);
    size_t total = 1;
#define ADD(x) (total = total + (x) > limit ? limit + 1 : total + (x))
    if (t == AMF_VECTOR_INT || t == AMF_VECTOR_UINT || t == AMF_VECTOR_DOUBLE)
        ADD(amf_vector_len(v));
    if (amf_object_externalizable(v))
        ADD(expanded(amf_object_external_value(v), m, limit, depth + 1));
    for (size_t i = 0; total <= limit && i < amf_object_count(v); i++)
        ADD(expanded(amf_object_at(v, i, NULL, NULL), m, limit, depth + 1));
    for (size_t i = 0; total <= limit && i < amf_array_len(v); i++)
        ADD(expanded(amf_array_at(v, i), m, limit, depth + 1));
    for (size_t i = 0; total <= limit && i < amf_dict_count(v); i++) {
        amf_value *k;
        amf_value *e = amf_dict_at(v, i, &k);
        ADD(expanded(k, m, limit, depth + 1));
        ADD(expanded(e, m, limit, depth + 1));
    }
#undef ADD
    (void)sh_map_put_ptr(m, v, sh_map_box(total)); /* a failed store only costs time */
    return total;
}

cJSON *amf_json_from_value(const amf_value *v)
{
    sh_map m = {0}; /* value -> sh_map_box(size) */
    size_t need = expanded(v, &m, AMF_JSON_MAX_NODES, 0);
    sh_map_cleanup(&m);
    if (need > AMF_JSON_MAX_NODES)
        return NULL;
    size_t budget = AMF_JSON_MAX_NODES;
    return to_json(v, 0, &budget);
}

/* cJSON 1.7 prints a number with 15 significant digits whenever that
 * reads back within a relative DBL_EPSILON of it, which is often another
 * double: 0.1 + 0.2 prints as 0.3, DBL_MAX as a number past it.  So every
 * number that is not a small integer (which cJSON prints exactly) becomes
 * raw text with the fewest digits that read back as the same double. */
static bool exact_numbers(cJSON *j, int depth)
{
    if (depth > AMF_ENC_MAX_DEPTH + 8)
        return false;
    for (cJSON *c = j; c; c = c->next) {
        if (cJSON_IsNumber(c)) {
            double d = c->valuedouble;
            if (!isfinite(d) || (d >= -2147483648.0 && d <= 2147483647.0 && d == (int)d))
                continue;
            char buf[40];
            if (d == trunc(d) && fabs(d) <= 9007199254740992.0) {
                /* an exact integer (a chat id) as digits, never "1.8e+15" */
                snprintf(buf, sizeof(buf), "%.0f", d);
            } else {
                for (int prec = 15; prec <= 17; prec++) {
                    snprintf(buf, sizeof(buf), "%.*g", prec, d);
                    if (strtod(buf, NULL) == d)
                        break;
                }
            }
            char *text = strdup(buf);
            if (!text)
                return false;
            c->type = cJSON_Raw;
            c->valuestring = text;
        } else if (c->child && !exact_numbers(c->child, depth + 1)) {
            return false;
        }
    }
    return true;
}

char *amf_json_print_tree(cJSON *j)
{
    return j && exact_numbers(j, 0) ? cJSON_PrintUnformatted(j) : NULL;
}

char *amf_json_print(const amf_value *v)
{
    cJSON *j = amf_json_from_value(v);
    if (!j)
        return NULL;
    char *s = amf_json_print_tree(j);
    cJSON_Delete(j);
    return s;
}

/* ---- JSON -> value ---- */

typedef struct jctx {
    const char *why;
    const cJSON *at;
    int depth;
} jctx;

static int bad(jctx *c, const cJSON *at, const char *why)
{
    c->why = why;
    c->at = at;
    return SH_EINVAL;
}

static int from_json(jctx *c, const cJSON *j, amf_value **out);

static int need_num(jctx *c, const cJSON *j, double *d)
{
    if (cJSON_IsNumber(j)) {
        *d = j->valuedouble;
        return 0;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, TAG);
    const cJSON *val = cJSON_GetObjectItemCaseSensitive(j, "value");
    if (cJSON_IsObject(j) && cJSON_IsString(t) && strcmp(t->valuestring, "number") == 0) {
        if (cJSON_IsNumber(val)) {
            *d = val->valuedouble;
            return 0;
        }
        if (cJSON_IsString(val)) {
            const char *s = val->valuestring;
            if (!strcmp(s, "NaN"))
                *d = NAN;
            else if (!strcmp(s, "Infinity"))
                *d = INFINITY;
            else if (!strcmp(s, "-Infinity"))
                *d = -INFINITY;
            else if (!strcmp(s, "-0"))
                *d = -0.0;
            else
                return bad(c, val, "number value must be a number, NaN, Infinity, -Infinity or -0");
            return 0;
        }
    }
    return bad(c, j, "expected a number");
}

static int need_int(jctx *c, const cJSON *j, double lo, double hi, double *d)
{
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || j->valuedouble < lo ||
        j->valuedouble > hi)
        return bad(c, j, "expected an integer in range");
    *d = j->valuedouble;
    return 0;
}

static int opt_bool(jctx *c, const cJSON *o, const char *k, bool dflt, bool *b)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!j) {
        *b = dflt;
        return 0;
    }
    if (!cJSON_IsBool(j))
        return bad(c, j, "expected true or false");
    *b = cJSON_IsTrue(j);
    return 0;
}

static int opt_str(jctx *c, const cJSON *o, const char *k, const char **s)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
    *s = "";
    if (!j)
        return 0;
    if (!cJSON_IsString(j))
        return bad(c, j, "expected a string");
    *s = j->valuestring;
    return 0;
}

/* "text" or "hex" of string-like tags; *buf is malloc'd when from hex */
static int text_or_hex(jctx *c, const cJSON *o, const char **p, size_t *n, char **buf)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "hex");
    *buf = NULL;
    if (cJSON_IsString(t)) {
        *p = t->valuestring;
        *n = strlen(*p);
        return 0;
    }
    if (cJSON_IsString(h)) {
        bool isbad;
        *buf = bytes_of_hex(h->valuestring, n, &isbad);
        if (!*buf)
            return isbad ? bad(c, h, "hex must be an even number of hex digits") : SH_ENOMEM;
        *p = *buf;
        return 0;
    }
    return bad(c, o, "needs a \"text\" or \"hex\" string");
}

static int add_members(jctx *c, const cJSON *m, amf_value *v)
{
    if (!m)
        return 0;
    if (!cJSON_IsObject(m))
        return bad(c, m, "members must be a JSON object");
    for (const cJSON *e = m->child; e; e = e->next) {
        amf_value *x;
        int rc = from_json(c, e, &x);
        if (rc)
            return rc;
        if ((rc = amf_object_add(v, e->string, strlen(e->string), x)))
            return rc;
    }
    return 0;
}

static int push_items(jctx *c, const cJSON *a, amf_value *v)
{
    if (!a)
        return 0;
    if (!cJSON_IsArray(a))
        return bad(c, a, "expected a JSON array");
    for (const cJSON *e = a->child; e; e = e->next) {
        amf_value *x;
        int rc = from_json(c, e, &x);
        if (rc)
            return rc;
        if ((rc = amf_array_push(v, x)))
            return rc;
    }
    return 0;
}

static int tagged_object(jctx *c, const cJSON *j, amf_value **out)
{
    const char *cls;
    int rc = opt_str(c, j, "class", &cls);
    if (rc)
        return rc;
    const cJSON *ext = cJSON_GetObjectItemCaseSensitive(j, "external");
    if (ext) {
        amf_value *inner;
        if ((rc = from_json(c, ext, &inner)))
            return rc;
        *out = amf_object_new_external(cls, inner);
        return *out ? 0 : bad(c, j, "externalizable class not known to the codec");
    }
    bool dyn;
    if ((rc = opt_bool(c, j, "dynamic", !*cls, &dyn)))
        return rc;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "members");
    size_t n = cJSON_IsObject(m) ? (size_t)cJSON_GetArraySize(m) : 0;
    double sealed = dyn ? 0 : (double)n;
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "sealed");
    if (s && (rc = need_int(c, s, 0, (double)n, &sealed)))
        return rc;
    amf_value *v = amf_object_new(*cls ? cls : NULL);
    if (!v)
        return SH_ENOMEM;
    /* sealed members first (object not dynamic), then dynamic ones */
    amf_object_set_dynamic(v, false);
    size_t i = 0;
    if (m && !cJSON_IsObject(m))
        rc = bad(c, m, "members must be a JSON object");
    for (const cJSON *e = m ? m->child : NULL; !rc && e; e = e->next, i++) {
        if (i == (size_t)sealed && dyn)
            amf_object_set_dynamic(v, true);
        amf_value *x;
        if (!(rc = from_json(c, e, &x)))
            rc = amf_object_add(v, e->string, strlen(e->string), x);
    }
    if (!rc && dyn)
        amf_object_set_dynamic(v, true);
    if (rc) {
        amf_unref(v);
        return rc;
    }
    *out = v;
    return 0;
}

static int tagged_vector(jctx *c, const cJSON *j, amf_type t, amf_value **out)
{
    bool fixed;
    const char *cls;
    int rc = opt_bool(c, j, "fixed", false, &fixed);
    if (!rc)
        rc = opt_str(c, j, "class", &cls);
    if (rc)
        return rc;
    amf_value *v = amf_vector_new(t, fixed, cls);
    if (!v)
        return SH_ENOMEM;
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "items");
    if (t == AMF_VECTOR_OBJECT) {
        rc = push_items(c, items, v);
    } else if (items && !cJSON_IsArray(items)) {
        rc = bad(c, items, "items must be a JSON array");
    } else {
        for (const cJSON *e = items ? items->child : NULL; !rc && e; e = e->next) {
            double d;
            if (!(rc = need_num(c, e, &d)) && amf_vector_push_number(v, d))
                rc = bad(c, e, "number does not fit the vector's element type");
        }
    }
    if (rc) {
        amf_unref(v);
        return rc;
    }
    *out = v;
    return 0;
}

static int tagged_dict(jctx *c, const cJSON *j, amf_value **out)
{
    bool weak;
    int rc = opt_bool(c, j, "weak", false, &weak);
    if (rc)
        return rc;
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(j, "entries");
    if (en && !cJSON_IsArray(en))
        return bad(c, en, "entries must be a JSON array of [key, value] pairs");
    amf_value *v = amf_dict_new(weak);
    if (!v)
        return SH_ENOMEM;
    for (const cJSON *e = en ? en->child : NULL; !rc && e; e = e->next) {
        if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2) {
            rc = bad(c, e, "a dict entry must be [key, value]");
            break;
        }
        amf_value *k, *x;
        if ((rc = from_json(c, e->child, &k)))
            break;
        if ((rc = from_json(c, e->child->next, &x))) {
            amf_unref(k);
            break;
        }
        rc = amf_dict_add(v, k, x);
    }
    if (rc) {
        amf_unref(v);
        return rc;
    }
    *out = v;
    return 0;
}

static int tagged_value(jctx *c, const cJSON *j, const char *tag, amf_value **out)
{
    double d, tz;
    int rc;
    amf_value *v = NULL;
    if (!strcmp(tag, "undefined")) {
        v = amf_undefined();
    } else if (!strcmp(tag, "unsupported")) {
        v = amf_unsupported();
    } else if (!strcmp(tag, "null")) {
        v = amf_null();
    } else if (!strcmp(tag, "number")) {
        if ((rc = need_num(c, j, &d)))
            return rc;
        v = amf_number(d);
    } else if (!strcmp(tag, "int")) {
        if ((rc = need_int(c, cJSON_GetObjectItemCaseSensitive(j, "value"), INT32_MIN, INT32_MAX, &d)))
            return rc;
        v = amf_integer((int32_t)d);
    } else if (!strcmp(tag, "date")) {
        const cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "ms");
        const cJSON *z = cJSON_GetObjectItemCaseSensitive(j, "tz");
        if (!ms)
            return bad(c, j, "date needs \"ms\"");
        tz = 0;
        if ((rc = need_num(c, ms, &d)) || (z && (rc = need_int(c, z, INT16_MIN, INT16_MAX, &tz))))
            return rc;
        v = amf_date(d, (int16_t)tz);
    } else if (!strcmp(tag, "string") || !strcmp(tag, "xml") || !strcmp(tag, "xmldoc") ||
               !strcmp(tag, "bytes")) {
        const char *p;
        size_t n;
        char *buf;
        if ((rc = text_or_hex(c, j, &p, &n, &buf)))
            return rc;
        v = !strcmp(tag, "string") ? amf_string(p, n)
            : !strcmp(tag, "xml")  ? amf_xml(p, n)
            : !strcmp(tag, "xmldoc") ? amf_xml_document(p, n)
                                     : amf_byte_array(p, n);
        free(buf);
    } else if (!strcmp(tag, "object")) {
        return tagged_object(c, j, out);
    } else if (!strcmp(tag, "ecma")) {
        v = amf_ecma_array_new();
        if (!v)
            return SH_ENOMEM;
        const cJSON *cnt = cJSON_GetObjectItemCaseSensitive(j, "count");
        if ((cnt && (rc = need_int(c, cnt, 0, UINT32_MAX, &d))) ||
            (rc = add_members(c, cJSON_GetObjectItemCaseSensitive(j, "members"), v)) ||
            (rc = push_items(c, cJSON_GetObjectItemCaseSensitive(j, "dense"), v))) {
            amf_unref(v);
            return rc;
        }
        if (cnt)
            amf_ecma_array_set_count(v, (uint32_t)d);
    } else if (!strcmp(tag, "vector-int")) {
        return tagged_vector(c, j, AMF_VECTOR_INT, out);
    } else if (!strcmp(tag, "vector-uint")) {
        return tagged_vector(c, j, AMF_VECTOR_UINT, out);
    } else if (!strcmp(tag, "vector-double")) {
        return tagged_vector(c, j, AMF_VECTOR_DOUBLE, out);
    } else if (!strcmp(tag, "vector-object")) {
        return tagged_vector(c, j, AMF_VECTOR_OBJECT, out);
    } else if (!strcmp(tag, "dict")) {
        return tagged_dict(c, j, out);
    } else {
        return bad(c, j, "unknown $amf tag");
    }
    if (!v)
        return SH_ENOMEM;
    *out = v;
    return 0;
}

static int from_json(jctx *c, const cJSON *j, amf_value **out)
{
    if (++c->depth > AMF_ENC_MAX_DEPTH)
        return bad(c, j, "JSON nested too deeply");
    int rc = 0;
    amf_value *v = NULL;
    if (cJSON_IsNull(j)) {
        v = amf_null();
    } else if (cJSON_IsBool(j)) {
        v = amf_bool(cJSON_IsTrue(j));
    } else if (cJSON_IsNumber(j)) {
        v = amf_number(j->valuedouble);
    } else if (cJSON_IsString(j)) {
        v = amf_string_cstr(j->valuestring);
    } else if (cJSON_IsArray(j)) {
        if ((v = amf_strict_array_new()) && (rc = push_items(c, j, v))) {
            amf_unref(v);
            v = NULL;
        }
    } else if (cJSON_IsObject(j)) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, TAG);
        if (t) {
            if (!cJSON_IsString(t))
                rc = bad(c, t, "$amf must be a string");
            else
                rc = tagged_value(c, j, t->valuestring, &v);
        } else if ((v = amf_object_new(NULL)) && (rc = add_members(c, j, v))) {
            amf_unref(v);
            v = NULL;
        }
    } else {
        rc = bad(c, j, "not a JSON value");
    }
    c->depth--;
    if (rc)
        return rc;
    if (!v)
        return SH_ENOMEM;
    *out = v;
    return 0;
}

int amf_json_to_value(const cJSON *j, amf_value **out, const char **why, const cJSON **at)
{
    jctx c = {"out of memory", j, 0};
    int rc = from_json(&c, j, out);
    if (rc) {
        if (why)
            *why = rc == SH_ENOMEM ? "out of memory" : c.why;
        if (at)
            *at = c.at;
    }
    return rc;
}

int amf_json_parse(const char *text, amf_value **out, const char **why)
{
    cJSON *j = cJSON_Parse(text);
    if (!j) {
        if (why)
            *why = "invalid JSON";
        return SH_EINVAL;
    }
    int rc = amf_json_to_value(j, out, why, NULL);
    cJSON_Delete(j);
    return rc;
}

size_t amf_json_node_bound(const char *s, size_t n)
{
    size_t nodes = 1;
    bool str = false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                str = false;
        } else if (ch == '"') {
            str = true;
        } else if (ch == ',' || ch == '[' || ch == '{') {
            nodes++;
        }
    }
    return nodes;
}
