/* fuzz_amf_util.h - AMF helpers for the fuzz targets: a bounded size of
 * a value graph, equality of meaning across an encode / decode trip, and
 * dumps for failure reports. */
#ifndef FUZZ_AMF_UTIL_H
#define FUZZ_AMF_UTIL_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "amf.h"
#include "fuzz_common.h"

/* Expanded size of a value graph (shared sub-values counted each time
 * they are reached), stopping at `budget`.  amf_equal walks the expanded
 * tree, so a small input made of nested references can cost 2^depth. */
static inline size_t fz_amf_tree_size(const amf_value *v, size_t budget, unsigned depth)
{
    if (!v || budget == 0 || depth > 300)
        return budget ? 1 : 0;
    size_t used = 1;
    size_t n;
    switch (amf_type_of(v)) {
    case AMF_OBJECT:
        if (amf_object_externalizable(v)) {
            used += fz_amf_tree_size(amf_object_external_value(v), budget - used, depth + 1);
            break;
        }
        /* fall through */
    case AMF_ECMA_ARRAY:
        n = amf_object_count(v);
        for (size_t i = 0; i < n && used < budget; i++) {
            const char *k;
            size_t kl;
            used += fz_amf_tree_size(amf_object_at(v, i, &k, &kl), budget - used, depth + 1);
        }
        if (amf_type_of(v) == AMF_OBJECT)
            break;
        /* ECMA arrays may have a dense part */
        /* fall through */
    case AMF_STRICT_ARRAY:
    case AMF_VECTOR_OBJECT:
        n = amf_array_len(v);
        for (size_t i = 0; i < n && used < budget; i++)
            used += fz_amf_tree_size(amf_array_at(v, i), budget - used, depth + 1);
        break;
    case AMF_DICTIONARY:
        n = amf_dict_count(v);
        for (size_t i = 0; i < n && used < budget; i++) {
            amf_value *key = NULL;
            amf_value *val = amf_dict_at(v, i, &key);
            used += fz_amf_tree_size(key, budget - used, depth + 1);
            if (used < budget)
                used += fz_amf_tree_size(val, budget - used, depth + 1);
        }
        break;
    default:
        break;
    }
    return used < budget ? used : budget;
}

static inline bool fz_num_same(double a, double b)
{
    return a == b || (a != a && b != b);
}

static inline bool fz_amf_same(amf_encoding enc, const amf_value *a, const amf_value *b,
                        unsigned depth);

/* Entry i of an ECMA array seen as AMF0 writes it: the dense part first,
 * as keys "0", "1", ..., then the named members. */
static inline amf_value *fz_amf0_ecma_at(const amf_value *a, size_t i, char *num, size_t numsz,
                                  const char **key, size_t *key_len)
{
    size_t dense = amf_array_len(a);
    if (i < dense) {
        *key_len = (size_t)snprintf(num, numsz, "%zu", i);
        *key = num;
        return amf_array_at(a, i);
    }
    return amf_object_at(a, i - dense, key, key_len);
}

/* AMF0 has no dense part: amf.h says the encoder writes dense entries as
 * keys "0", "1", ... first, so compare the arrays in that form. */
static inline bool fz_amf0_ecma_same(const amf_value *a, const amf_value *b, unsigned depth)
{
    size_t n = amf_array_len(a) + amf_object_count(a);
    if (n != amf_array_len(b) + amf_object_count(b))
        return false;
    for (size_t i = 0; i < n; i++) {
        char na[32], nb[32];
        const char *ka, *kb;
        size_t la, lb;
        amf_value *va = fz_amf0_ecma_at(a, i, na, sizeof(na), &ka, &la);
        amf_value *vb = fz_amf0_ecma_at(b, i, nb, sizeof(nb), &kb, &lb);
        if (la != lb || memcmp(ka, kb, la) != 0 ||
            !fz_amf_same(AMF_ENC_AMF0, va, vb, depth + 1))
            return false;
    }
    return true;
}

/* Equality of meaning after an encode / decode trip in format enc: like
 * amf_equal, except where amf.h documents a change of form.  AMF0 writes
 * AMF_INTEGER as a number and the dense part of an ECMA array as keys
 * "0", "1", ....  Returns false on the first difference. */
static inline bool fz_amf_same(amf_encoding enc, const amf_value *a, const amf_value *b,
                        unsigned depth)
{
    if (a == b)
        return true;
    if (!a || !b || depth > 300)
        return false;
    amf_type ta = amf_type_of(a), tb = amf_type_of(b);
    if (enc == AMF_ENC_AMF0 && ta == AMF_INTEGER && tb == AMF_NUMBER)
        return fz_num_same(amf_as_number(a), amf_as_number(b));
    if (ta != tb)
        return false;
    size_t n, al, bl;
    const char *as, *bs;
    switch (ta) {
    case AMF_OBJECT:
        if (strcmp(amf_object_class(a), amf_object_class(b)) != 0 ||
            amf_object_dynamic(a) != amf_object_dynamic(b) ||
            amf_object_sealed_count(a) != amf_object_sealed_count(b) ||
            amf_object_externalizable(a) != amf_object_externalizable(b))
            return false;
        if (amf_object_externalizable(a))
            return fz_amf_same(enc, amf_object_external_value(a),
                               amf_object_external_value(b), depth + 1);
        /* fall through */
    case AMF_ECMA_ARRAY:
        if (ta == AMF_ECMA_ARRAY && amf_ecma_array_count(a) != amf_ecma_array_count(b))
            return false;
        if (ta == AMF_ECMA_ARRAY && enc == AMF_ENC_AMF0)
            return fz_amf0_ecma_same(a, b, depth);
        n = amf_object_count(a);
        if (n != amf_object_count(b))
            return false;
        for (size_t i = 0; i < n; i++) {
            amf_value *ma = amf_object_at(a, i, &as, &al);
            amf_value *mb = amf_object_at(b, i, &bs, &bl);
            if (al != bl || memcmp(as, bs, al) != 0 || !fz_amf_same(enc, ma, mb, depth + 1))
                return false;
        }
        if (ta == AMF_OBJECT)
            return true;
        /* fall through */
    case AMF_STRICT_ARRAY:
    case AMF_VECTOR_OBJECT:
        n = amf_array_len(a);
        if (n != amf_array_len(b))
            return false;
        if (ta == AMF_VECTOR_OBJECT &&
            (amf_vector_fixed(a) != amf_vector_fixed(b) ||
             strcmp(amf_vector_type_name(a), amf_vector_type_name(b)) != 0))
            return false;
        for (size_t i = 0; i < n; i++)
            if (!fz_amf_same(enc, amf_array_at(a, i), amf_array_at(b, i), depth + 1))
                return false;
        return true;
    case AMF_DICTIONARY:
        n = amf_dict_count(a);
        if (n != amf_dict_count(b) || amf_dict_weak_keys(a) != amf_dict_weak_keys(b))
            return false;
        for (size_t i = 0; i < n; i++) {
            amf_value *ka = NULL, *kb = NULL;
            amf_value *va = amf_dict_at(a, i, &ka);
            amf_value *vb = amf_dict_at(b, i, &kb);
            if (!fz_amf_same(enc, ka, kb, depth + 1) || !fz_amf_same(enc, va, vb, depth + 1))
                return false;
        }
        return true;
    default:
        /* scalars, strings, vectors of numbers: amf_equal is exact */
        return amf_equal(a, b);
    }
}

/* Prints a value (for failure reports only). */
static inline void fz_amf_dump(const amf_value *v, unsigned depth)
{
    if (depth > 12) {
        fprintf(stderr, "...");
        return;
    }
    amf_type t = amf_type_of(v);
    fprintf(stderr, "%s", amf_type_name(t));
    size_t n, sl;
    const char *s;
    switch (t) {
    case AMF_NUMBER:
    case AMF_INTEGER:
    case AMF_DATE:
        fprintf(stderr, "(%.17g)", amf_as_number(v));
        break;
    case AMF_BOOLEAN:
        fprintf(stderr, "(%d)", amf_as_bool(v));
        break;
    case AMF_STRING:
    case AMF_XML:
    case AMF_XML_DOCUMENT:
    case AMF_BYTE_ARRAY:
        s = amf_as_string(v, &sl);
        fprintf(stderr, "[%zu]\"%.*s\"", sl, (int)(sl > 40 ? 40 : sl), s ? s : "");
        break;
    case AMF_OBJECT:
    case AMF_ECMA_ARRAY:
        if (t == AMF_OBJECT)
            fprintf(stderr, "<%s dyn=%d sealed=%zu ext=%d>", amf_object_class(v),
                    amf_object_dynamic(v), amf_object_sealed_count(v),
                    amf_object_externalizable(v));
        else
            fprintf(stderr, "<count=%u has=%d>", amf_ecma_array_count(v),
                    amf_ecma_array_has_count(v));
        if (t == AMF_OBJECT && amf_object_externalizable(v)) {
            fprintf(stderr, "{");
            fz_amf_dump(amf_object_external_value(v), depth + 1);
            fprintf(stderr, "}");
            break;
        }
        n = amf_object_count(v);
        fprintf(stderr, "{");
        for (size_t i = 0; i < n; i++) {
            const char *k;
            size_t kl;
            amf_value *m = amf_object_at(v, i, &k, &kl);
            fprintf(stderr, "%s\"%.*s\":", i ? ", " : "", (int)kl, k);
            fz_amf_dump(m, depth + 1);
        }
        fprintf(stderr, "}");
        if (t == AMF_OBJECT)
            break;
        /* fall through */
    case AMF_STRICT_ARRAY:
    case AMF_VECTOR_OBJECT:
        n = amf_array_len(v);
        fprintf(stderr, "[");
        for (size_t i = 0; i < n; i++) {
            fprintf(stderr, "%s", i ? ", " : "");
            fz_amf_dump(amf_array_at(v, i), depth + 1);
        }
        fprintf(stderr, "]");
        break;
    case AMF_VECTOR_INT:
    case AMF_VECTOR_UINT:
    case AMF_VECTOR_DOUBLE:
        n = amf_vector_len(v);
        fprintf(stderr, "[");
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, "%s%.17g", i ? ", " : "", amf_vector_number_at(v, i));
        fprintf(stderr, "]");
        break;
    case AMF_DICTIONARY:
        n = amf_dict_count(v);
        fprintf(stderr, "{");
        for (size_t i = 0; i < n; i++) {
            amf_value *k = NULL;
            amf_value *m = amf_dict_at(v, i, &k);
            fprintf(stderr, "%s", i ? ", " : "");
            fz_amf_dump(k, depth + 1);
            fprintf(stderr, "=>");
            fz_amf_dump(m, depth + 1);
        }
        fprintf(stderr, "}");
        break;
    default:
        break;
    }
}

static inline void fz_hex(const char *label, const uint8_t *p, size_t n)
{
    fprintf(stderr, "%s (%zu bytes):", label, n);
    for (size_t i = 0; i < n && i < 256; i++)
        fprintf(stderr, " %02x", p[i]);
    fprintf(stderr, "%s\n", n > 256 ? " ..." : "");
}

#endif
