/* test_amf_mem.c - what decoded values cost in memory, and the decoder's
 * memory budget (amf.h: amf_value_mem, amf_dec_mem, max_memory).
 *
 * References must never multiply memory: an AMF3 string reference is the
 * same value again, objects of one traits share their class name, and
 * null / undefined / booleans / "" are singletons.  What cannot be shared
 * (member names copied into a container) is counted.  The budget holds
 * exactly: a decode that needs N bytes passes with max_memory = N and
 * fails with N - 1, before anything past the budget is allocated. */
#include <stdio.h>

#include "amf_test_util.h"

/* ---- a little AMF writer for inputs our encoder would never make ---- */

typedef struct wb {
    uint8_t *p;
    size_t n, cap;
} wb;

static void wb_put(wb *w, const void *p, size_t n)
{
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2;
        w->p = realloc(w->p, w->cap);
        cr_assert_not_null(w->p);
    }
    memcpy(w->p + w->n, p, n);
    w->n += n;
}

static void wb_u8(wb *w, uint8_t b) { wb_put(w, &b, 1); }

static void wb_u29(wb *w, uint32_t v)
{
    if (v < 0x80) {
        wb_u8(w, (uint8_t)v);
    } else if (v < 0x4000) {
        wb_u8(w, (uint8_t)(v >> 7 | 0x80));
        wb_u8(w, v & 0x7f);
    } else if (v < 0x200000) {
        wb_u8(w, (uint8_t)(v >> 14 | 0x80));
        wb_u8(w, (uint8_t)((v >> 7 & 0x7f) | 0x80));
        wb_u8(w, v & 0x7f);
    } else {
        wb_u8(w, (uint8_t)(v >> 22 | 0x80));
        wb_u8(w, (uint8_t)((v >> 15 & 0x7f) | 0x80));
        wb_u8(w, (uint8_t)((v >> 8 & 0x7f) | 0x80));
        wb_u8(w, v & 0xff);
    }
}

/* An AMF3 inline string body (U29S + bytes) of n copies of c. */
static void wb_str3(wb *w, size_t n, char c)
{
    wb_u29(w, (uint32_t)n << 1 | 1);
    for (size_t i = 0; i < n; i++)
        wb_u8(w, (uint8_t)c);
}

/* AMF3 array of n elements: one inline string of len bytes, then n - 1
 * references to it (06 00). */
static wb string_refs3(uint32_t n, size_t len)
{
    wb w = {0};
    wb_u8(&w, AMF3_ARRAY);
    wb_u29(&w, n << 1 | 1);
    wb_u8(&w, 0x01); /* no associative part */
    wb_u8(&w, AMF3_STRING);
    wb_str3(&w, len, 's');
    for (uint32_t i = 1; i < n; i++) {
        wb_u8(&w, AMF3_STRING);
        wb_u8(&w, 0x00);
    }
    return w;
}

/* Decodes all of w with a fresh decoder under max_memory (0 = default);
 * returns rc, the value in *out (may be NULL), the context's memory. */
static int dec_budget(amf_encoding enc, const wb *w, size_t max_memory, amf_value **out,
                      size_t *mem, sh_error *err)
{
    amf_limits lim = amf_default_limits;
    lim.max_memory = max_memory;
    amf_dec *d = amf_dec_new(&lim);
    cr_assert_not_null(d);
    size_t used = 0;
    amf_value *v = NULL;
    int rc = amf_decode(d, enc, w->p, w->n, &used, &v, err);
    if (rc == 0) {
        cr_assert_eq(used, w->n);
        cr_assert_eq(amf_dec_last_mem(d), amf_value_mem(v));
    }
    if (mem)
        *mem = amf_dec_mem(d);
    cr_assert_leq(amf_dec_mem(d), max_memory ? max_memory : amf_limits_memory(&lim));
    amf_dec_free(d);
    if (out)
        *out = v;
    else
        amf_unref(v);
    return rc;
}

/* ==== the cost model ==== */

Test(mem, block_model)
{
    cr_assert_eq(amf_mem_block(0), 0);
    cr_assert_eq(amf_mem_block(1), 32);
    cr_assert_eq(amf_mem_block(24), 32);
    cr_assert_eq(amf_mem_block(25), 48);
    cr_assert_eq(amf_mem_block(100), 112);
    cr_assert_eq(amf_mem_block(65536), 65552);
}

Test(mem, figures_of_built_values)
{
    /* singletons cost nothing and are the same value every time */
    cr_assert_eq(amf_null(), amf_null());
    cr_assert_eq(amf_bool(true), amf_bool(true));
    cr_assert_eq(amf_string("", 0), amf_string_cstr(""));
    cr_assert_eq(amf_value_mem(amf_null()), 0);
    cr_assert_eq(amf_value_mem(amf_undefined()), 0);
    cr_assert_eq(amf_value_mem(amf_bool(false)), 0);
    cr_assert_eq(amf_value_mem(amf_string("", 0)), 0);
    /* a scalar is one 24-byte block (32 with the allocator's header) */
    amf_value *n = amf_number(1.5);
    cr_assert_eq(amf_value_mem(n), 32);
    /* a string keeps its bytes and a NUL in the same block */
    amf_value *s = amf_string("0123456789", 10);
    cr_assert_eq(amf_value_mem(s), amf_mem_block(24 + 11));
    /* an array counts its element array at its capacity; a value it
     * holds twice counts once */
    amf_value *a = amf_strict_array_new();
    size_t empty = amf_value_mem(a);
    cr_assert_gt(empty, 0);
    amf_array_push(a, amf_ref(s));
    amf_array_push(a, amf_ref(s));
    amf_array_push(a, n);
    amf_array_push(a, amf_null());
    cr_assert_eq(amf_value_mem(a), empty + amf_mem_block(4 * sizeof(void *)) +
                                        amf_value_mem(s) + 32);
    amf_unref(s);
    amf_unref(a);
}

Test(mem, a_null_array_costs_a_pointer_per_element)
{
    /* the case of issue 12: a strict array of 65,000 AMF0 nulls used to
     * cost a 32-byte block per null as well */
    wb w = {0};
    uint8_t hdr[] = {AMF0_STRICT_ARRAY, 0x00, 0x00, 0xfd, 0xe8}; /* 65000 */
    wb_put(&w, hdr, sizeof hdr);
    for (int i = 0; i < 65000; i++)
        wb_u8(&w, AMF0_NULL);
    amf_value *v = NULL;
    cr_assert_eq(dec_budget(AMF_ENC_AMF0, &w, 0, &v, NULL, NULL), 0);
    cr_assert_eq(amf_array_len(v), 65000);
    cr_assert_eq(amf_array_at(v, 0), amf_array_at(v, 64999));
    size_t mem = amf_value_mem(v);
    /* the element array doubles from 16: 65536 pointers */
    cr_assert_eq(mem, amf_value_mem(amf_strict_array_new()) + amf_mem_block(65536 * 8));
    cr_assert_lt(mem, 65000 * 9);
    amf_unref(v);
    free(w.p);
}

/* ==== references never multiply memory ==== */

Test(mem, amf3_string_references_are_the_same_value)
{
    /* the case of issue 12: 4,000 references to one 64 KiB string (about
     * 72 KB of input) used to decode to 4,000 copies (256 MiB) */
    wb w = string_refs3(4001, 65536);
    amf_value *v = NULL;
    size_t ctx = 0;
    cr_assert_eq(dec_budget(AMF_ENC_AMF3, &w, 0, &v, &ctx, NULL), 0);
    cr_assert_eq(amf_array_len(v), 4001);
    amf_value *first = amf_array_at(v, 0);
    for (size_t i = 1; i < 4001; i++)
        cr_assert_eq(amf_array_at(v, i), first, "element %zu is a copy", i);
    size_t mem = amf_value_mem(v);
    cr_assert_eq(mem, amf_value_mem(amf_strict_array_new()) + amf_mem_block(4096 * 8) +
                          amf_mem_block(24 + 65536 + 1));
    cr_assert_lt(mem, 65536 + 4096 * 8 + 1024);
    /* the string is not copied into the table as well */
    cr_assert_lt(ctx - mem, 1024, "tables hold %zu", ctx - mem);
    amf_unref(v);
    free(w.p);
}

Test(mem, reference_to_a_key_becomes_one_shared_value)
{
    /* {key: 1} then two references to "key" as values: the key bytes are
     * in the table; the first use as a value makes one value, the second
     * shares it */
    wb w = {0};
    wb_u8(&w, AMF3_ARRAY);
    wb_u29(&w, 3 << 1 | 1);
    wb_u8(&w, 0x01);
    uint8_t obj[] = {AMF3_OBJECT, 0x0b, 0x01}; /* anonymous dynamic, class "" */
    wb_put(&w, obj, sizeof obj);
    wb_str3(&w, 3, 'k');
    uint8_t one[] = {AMF3_INTEGER, 0x01, 0x01}; /* 1, end of dynamic members */
    wb_put(&w, one, sizeof one);
    uint8_t refs[] = {AMF3_STRING, 0x00, AMF3_STRING, 0x00};
    wb_put(&w, refs, sizeof refs);
    amf_value *v = NULL;
    cr_assert_eq(dec_budget(AMF_ENC_AMF3, &w, 0, &v, NULL, NULL), 0);
    cr_assert(amf_is_string(amf_array_at(v, 1), "kkk"));
    cr_assert_eq(amf_array_at(v, 1), amf_array_at(v, 2));
    amf_unref(v);
    /* Across calls of one context: the key comes in one call, the
     * references in the next.  That call failing (truncated) drops the
     * value it made for the key, so the retry counts it again. */
    amf_dec *d = amf_dec_new(NULL);
    size_t used;
    amf_value *x = NULL;
    uint8_t keyed[] = {AMF3_OBJECT, 0x0b, 0x01, 0x07, 'k', 'k', 'k', AMF3_NULL, 0x01};
    cr_assert_eq(amf_decode(d, AMF_ENC_AMF3, keyed, sizeof keyed, &used, &x, NULL), 0);
    amf_unref(x);
    uint8_t two[] = {AMF3_ARRAY, 0x05, 0x01, AMF3_STRING, 0x00, AMF3_STRING, 0x00};
    size_t before = amf_dec_mem(d);
    cr_assert_eq(amf_decode(d, AMF_ENC_AMF3, two, sizeof two - 1, &used, &x, NULL), SH_EMORE);
    cr_assert_leq(amf_dec_mem(d) - before, 256, "only table growth may remain");
    cr_assert_eq(amf_decode(d, AMF_ENC_AMF3, two, sizeof two, &used, &x, NULL), 0);
    cr_assert_eq(amf_dec_last_mem(d), amf_value_mem(x));
    cr_assert_eq(amf_array_at(x, 0), amf_array_at(x, 1));
    amf_unref(x);
    amf_dec_free(d);
    free(w.p);
}

Test(mem, objects_of_one_traits_share_their_class_name)
{
    /* [obj of class C (64 KiB name), 999 objects with a traits reference] */
    wb w = {0};
    wb_u8(&w, AMF3_ARRAY);
    wb_u29(&w, 1000 << 1 | 1);
    wb_u8(&w, 0x01);
    wb_u8(&w, AMF3_OBJECT);
    wb_u8(&w, 0x03); /* inline traits, not dynamic, 0 sealed */
    wb_str3(&w, 65536, 'C');
    for (int i = 1; i < 1000; i++) {
        wb_u8(&w, AMF3_OBJECT);
        wb_u8(&w, 0x01); /* traits reference 0 */
    }
    amf_value *v = NULL;
    cr_assert_eq(dec_budget(AMF_ENC_AMF3, &w, 0, &v, NULL, NULL), 0);
    cr_assert_eq(amf_object_class(amf_array_at(v, 0)), amf_object_class(amf_array_at(v, 999)));
    cr_assert_eq(amf_object_class_len(amf_array_at(v, 999)), 65536);
    cr_assert_lt(amf_value_mem(v), 65536 + 1000 * 200);
    amf_unref(v);
    free(w.p);
}

Test(mem, vector_type_name_is_shared)
{
    /* two Vector.<C> whose element type names are one table string */
    wb w = {0};
    wb_u8(&w, AMF3_ARRAY);
    wb_u29(&w, 2 << 1 | 1);
    wb_u8(&w, 0x01);
    uint8_t vec[] = {AMF3_VECTOR_OBJECT, 0x01, 0x00}; /* 0 elements, not fixed */
    wb_put(&w, vec, sizeof vec);
    wb_str3(&w, 5, 'T');
    wb_put(&w, vec, sizeof vec);
    wb_u8(&w, 0x00); /* type name: reference 0 */
    amf_value *v = NULL;
    cr_assert_eq(dec_budget(AMF_ENC_AMF3, &w, 0, &v, NULL, NULL), 0);
    cr_assert_str_eq(amf_vector_type_name(amf_array_at(v, 1)), "TTTTT");
    cr_assert_eq(amf_vector_type_name(amf_array_at(v, 0)), amf_vector_type_name(amf_array_at(v, 1)));
    amf_unref(v);
    free(w.p);
}

Test(mem, copied_member_names_are_counted)
{
    /* a member name cannot be shared (keys live in the object): 16
     * members named by references to one 64 KiB string hold 16 copies,
     * and the budget sees them */
    wb w = {0};
    uint8_t obj[] = {AMF3_OBJECT, 0x0b, 0x01};
    wb_put(&w, obj, sizeof obj);
    wb_str3(&w, 65536, 'k');
    wb_u8(&w, AMF3_NULL);
    for (int i = 1; i < 16; i++) {
        wb_u8(&w, 0x00); /* name: reference 0 */
        wb_u8(&w, AMF3_NULL);
    }
    wb_u8(&w, 0x01); /* end of dynamic members */
    amf_value *v = NULL;
    size_t ctx = 0;
    cr_assert_eq(dec_budget(AMF_ENC_AMF3, &w, 0, &v, &ctx, NULL), 0);
    cr_assert_eq(amf_object_count(v), 16);
    cr_assert_geq(amf_value_mem(v), 16 * 65537);
    amf_unref(v);
    sh_error err = {0};
    cr_assert_eq(dec_budget(AMF_ENC_AMF3, &w, 8 * 65536, NULL, NULL, &err), SH_ELIMIT);
    cr_assert_not_null(strstr(err.what, "max_memory"), "%s", err.what);
    free(w.p);
}

Test(mem, amf0_reference_costs_a_pointer)
{
    /* [o, ref o, ref o]: one object */
    uint8_t b[] = {AMF0_STRICT_ARRAY, 0, 0, 0, 3, AMF0_OBJECT, 0, 1, 'a', AMF0_NUMBER,
                   0, 0, 0, 0, 0, 0, 0, 0, 0, 0, AMF0_OBJECT_END, AMF0_REFERENCE, 0, 1,
                   AMF0_REFERENCE, 0, 1};
    wb w = {b, sizeof b, sizeof b};
    amf_value *v = NULL;
    cr_assert_eq(dec_budget(AMF_ENC_AMF0, &w, 0, &v, NULL, NULL), 0);
    cr_assert_eq(amf_array_at(v, 0), amf_array_at(v, 2));
    size_t one = amf_value_mem(amf_array_at(v, 0));
    /* a strict array's first element array holds max(count, 4) */
    cr_assert_eq(amf_value_mem(v), amf_value_mem(amf_strict_array_new()) +
                                       amf_mem_block(4 * 8) + one);
    amf_unref(v);
}

/* ==== the budget ==== */

/* The smallest budget w decodes under (with a fresh decoder). */
static size_t needed(amf_encoding enc, const wb *w)
{
    size_t mem = 0;
    cr_assert_eq(dec_budget(enc, w, SIZE_MAX, NULL, &mem, NULL), 0);
    return mem;
}

static void at_and_one_past(amf_encoding enc, const wb *w, const char *what)
{
    size_t need = needed(enc, w);
    sh_error err = {0};
    cr_assert_eq(dec_budget(enc, w, need, NULL, NULL, &err), 0, "%s: at %zu: %s", what, need,
                 err.what ? err.what : "");
    err = (sh_error){0};
    size_t mem = 0;
    cr_assert_eq(dec_budget(enc, w, need - 1, NULL, &mem, &err), SH_ELIMIT, "%s: at %zu - 1",
                 what, need);
    cr_assert_eq(err.code, SH_ELIMIT);
    cr_assert_str_eq(err.what, "decoded values would hold more than max_memory");
    cr_assert_leq(mem, need - 1);
}

Test(budget, exactly_at_and_one_past)
{
    wb a = string_refs3(500, 1000);
    at_and_one_past(AMF_ENC_AMF3, &a, "string references");
    free(a.p);

    /* every kind of block: AMF0 typed object with a long string, a
     * number, a date, nested arrays, an 0x11 switch to an AMF3 vector */
    amf_value *o = amf_object_new("com.example.Item");
    amf_object_set_cstr(o, "name", amf_string_cstr("a name that is not short at all"));
    amf_object_set_cstr(o, "n", amf_number(3));
    amf_object_set_cstr(o, "when", amf_date(1e12, 60));
    amf_value *arr = amf_strict_array_new();
    for (int i = 0; i < 40; i++)
        amf_array_push(arr, amf_integer(i));
    amf_object_set_cstr(o, "list", arr);
    amf_value *vec = amf_vector_new(AMF_VECTOR_INT, false, NULL);
    for (int i = 0; i < 20; i++)
        amf_vector_push_number(vec, i);
    amf_value *holder = amf_object_new(NULL);
    amf_object_set_cstr(holder, "item", o);
    amf_object_set_cstr(holder, "vec", vec);
    for (int enc = 0; enc <= 3; enc += 3) {
        wb w = {0};
        w.p = tu_encode((amf_encoding)enc, holder, &w.n);
        at_and_one_past((amf_encoding)enc, &w, enc ? "amf3 object" : "amf0 object");
        free(w.p);
    }
    amf_unref(holder);
}

Test(budget, every_prefix_of_the_budget_fails_cleanly)
{
    /* every budget below what a value needs fails with SH_ELIMIT, never
     * goes past it, and leaks nothing (ASan in CI) */
    wb w = {0};
    wb_u8(&w, AMF3_ARRAY);
    wb_u29(&w, 4 << 1 | 1);
    wb_str3(&w, 1, 'k'); /* associative "k": */
    wb_u8(&w, AMF3_STRING);
    wb_str3(&w, 40, 'v');
    wb_u8(&w, 0x01);
    uint8_t rest[] = {AMF3_STRING, 0x00, AMF3_STRING, 0x02, AMF3_DOUBLE, 0, 0, 0, 0, 0, 0,
                      0, 0, AMF3_OBJECT, 0x03, 0x00};
    wb_put(&w, rest, sizeof rest);
    size_t need = needed(AMF_ENC_AMF3, &w);
    for (size_t b = 1; b < need; b++) { /* (0 would mean the default) */
        size_t mem = 0;
        cr_assert_eq(dec_budget(AMF_ENC_AMF3, &w, b, NULL, &mem, NULL), SH_ELIMIT, "budget %zu", b);
        cr_assert_leq(mem, b);
    }
    free(w.p);
}

Test(budget, spans_a_context_until_reset)
{
    /* one context (a command body): the values of every call add up;
     * a reset forgets them but keeps the tables' capacity */
    wb w = string_refs3(100, 2000);
    size_t one = needed(AMF_ENC_AMF3, &w);
    amf_limits lim = amf_default_limits;
    lim.max_memory = one + one / 2;
    amf_dec *d = amf_dec_new(&lim);
    size_t used;
    amf_value *v = NULL;
    cr_assert_eq(amf_decode(d, AMF_ENC_AMF3, w.p, w.n, &used, &v, NULL), 0);
    cr_assert_eq(amf_dec_mem(d), one);
    amf_unref(v);
    /* the values are the caller's, but the context still counts them */
    cr_assert_eq(amf_decode(d, AMF_ENC_AMF3, w.p, w.n, &used, &v, NULL), SH_ELIMIT);
    cr_assert_eq(amf_dec_mem(d), one);
    amf_dec_reset(d);
    size_t tables = amf_dec_mem(d);
    cr_assert_lt(tables, one - 2000);
    cr_assert_eq(amf_decode(d, AMF_ENC_AMF3, w.p, w.n, &used, &v, NULL), 0);
    cr_assert_eq(amf_dec_mem(d), one, "tables reused, not grown again");
    cr_assert_eq(amf_dec_last_mem(d), amf_value_mem(v));
    amf_unref(v);
    /* a lower budget set on the context applies to the next call */
    amf_dec_reset(d);
    amf_dec_set_max_memory(d, tables);
    cr_assert_eq(amf_decode(d, AMF_ENC_AMF3, w.p, w.n, &used, &v, NULL), SH_ELIMIT);
    amf_dec_free(d);
    free(w.p);
}

Test(budget, default_follows_max_total)
{
    amf_limits lim = amf_default_limits;
    cr_assert_eq(amf_limits_memory(&lim), AMF_MEMORY_PER_BYTE * AMF_DEFAULT_MAX_TOTAL);
    lim.max_total = 1 << 20;
    cr_assert_eq(amf_limits_memory(&lim), (size_t)16 << 20);
    lim.max_memory = 12345;
    cr_assert_eq(amf_limits_memory(&lim), 12345);
    cr_assert_eq(amf_limits_memory(NULL), amf_limits_memory(&amf_default_limits));
}
