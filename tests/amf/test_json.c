/* test_json.c - the JSON form of AMF values (docs/amf-json.md). */
#include <math.h>

#include "amf_json.h"
#include "amf_test_util.h"

static void print_is(amf_value *v, const char *want)
{
    char *s = amf_json_print(v);
    cr_assert_not_null(s);
    cr_assert_str_eq(s, want);
    amf_value *back = NULL;
    const char *why = NULL;
    cr_assert_eq(amf_json_parse(s, &back, &why), 0, "%s: %s", s, why);
    cr_assert(amf_equal(v, back), "%s does not parse back to the same value", s);
    amf_unref(back);
    free(s);
    amf_unref(v);
}

Test(json, plain_values)
{
    print_is(amf_null(), "null");
    print_is(amf_bool(true), "true");
    print_is(amf_number(1.5), "1.5");
    print_is(amf_number(1796553434155510.0), "1796553434155510");
    print_is(amf_number(-9007199254740992.0), "-9007199254740992");
    print_is(amf_number(1e300), "1e+300");
    print_is(amf_string_cstr("h\xc3\xa9"), "\"h\xc3\xa9\"");
    amf_value *o = amf_object_new(NULL);
    amf_object_set_cstr(o, "a", amf_strict_array_new());
    print_is(o, "{\"a\":[]}");
}

Test(json, tagged_values)
{
    print_is(amf_undefined(), "{\"$amf\":\"undefined\"}");
    print_is(amf_unsupported(), "{\"$amf\":\"unsupported\"}");
    print_is(amf_integer(-7), "{\"$amf\":\"int\",\"value\":-7}");
    print_is(amf_number(NAN), "{\"$amf\":\"number\",\"value\":\"NaN\"}");
    print_is(amf_number(-INFINITY), "{\"$amf\":\"number\",\"value\":\"-Infinity\"}");
    print_is(amf_number(-0.0), "{\"$amf\":\"number\",\"value\":\"-0\"}");
    print_is(amf_string("a\0b", 3), "{\"$amf\":\"string\",\"hex\":\"610062\"}");
    print_is(amf_string("\xff", 1), "{\"$amf\":\"string\",\"hex\":\"ff\"}");
    print_is(amf_date(5, -60), "{\"$amf\":\"date\",\"ms\":5,\"tz\":-60}");
    print_is(amf_xml("<a/>", 4), "{\"$amf\":\"xml\",\"text\":\"<a/>\"}");
    print_is(amf_xml_document("<a/>", 4), "{\"$amf\":\"xmldoc\",\"text\":\"<a/>\"}");
    print_is(amf_byte_array("\x00\xff", 2), "{\"$amf\":\"bytes\",\"hex\":\"00ff\"}");
}

Test(json, containers)
{
    amf_value *t = amf_object_new("com.T");
    amf_object_set_cstr(t, "s", amf_null());
    amf_object_set_dynamic(t, true);
    amf_object_set_cstr(t, "d", amf_null());
    print_is(t, "{\"$amf\":\"object\",\"class\":\"com.T\",\"dynamic\":true,\"sealed\":1,"
                "\"members\":{\"s\":null,\"d\":null}}");
    amf_value *typed = amf_object_new("com.T");
    amf_object_set_cstr(typed, "s", amf_null());
    print_is(typed, "{\"$amf\":\"object\",\"class\":\"com.T\",\"members\":{\"s\":null}}");
    amf_value *anon = amf_object_new(NULL);
    amf_object_set_cstr(anon, "$amf", amf_null()); /* a real member called $amf */
    print_is(anon, "{\"$amf\":\"object\",\"members\":{\"$amf\":null}}");
    amf_value *e = amf_ecma_array_new();
    amf_object_set_cstr(e, "k", amf_null());
    amf_array_push(e, amf_bool(false));
    amf_ecma_array_set_count(e, 9);
    print_is(e, "{\"$amf\":\"ecma\",\"count\":9,\"members\":{\"k\":null},\"dense\":[false]}");
    amf_value *v = amf_vector_new(AMF_VECTOR_INT, true, NULL);
    amf_vector_push_number(v, -1);
    print_is(v, "{\"$amf\":\"vector-int\",\"fixed\":true,\"items\":[-1]}");
    amf_value *vo = amf_vector_new(AMF_VECTOR_OBJECT, false, "com.T");
    amf_array_push(vo, amf_null());
    print_is(vo, "{\"$amf\":\"vector-object\",\"class\":\"com.T\",\"fixed\":false,\"items\":[null]}");
    amf_value *d = amf_dict_new(true);
    amf_dict_add(d, amf_integer(1), amf_string_cstr("one"));
    print_is(d, "{\"$amf\":\"dict\",\"weak\":true,\"entries\":[[{\"$amf\":\"int\",\"value\":1},\"one\"]]}");
    print_is(amf_object_new_external("flex.messaging.io.ArrayCollection", amf_strict_array_new()),
             "{\"$amf\":\"object\",\"class\":\"flex.messaging.io.ArrayCollection\",\"external\":[]}");
}

Test(json, bad_input)
{
    const char *bad[] = {
        "{\"$amf\":\"nope\"}",
        "{\"$amf\":1}",
        "{\"$amf\":\"int\",\"value\":1.5}",
        "{\"$amf\":\"int\"}",
        "{\"$amf\":\"date\"}",
        "{\"$amf\":\"date\",\"ms\":1,\"tz\":99999}",
        "{\"$amf\":\"bytes\",\"hex\":\"abc\"}",
        "{\"$amf\":\"bytes\",\"hex\":\"zz\"}",
        "{\"$amf\":\"vector-uint\",\"items\":[-1]}",
        "{\"$amf\":\"dict\",\"entries\":[[1]]}",
        "{\"$amf\":\"object\",\"class\":\"Unknown\",\"external\":null}",
        "{\"$amf\":\"number\",\"value\":\"big\"}",
        "[1,",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        amf_value *v = NULL;
        const char *why = NULL;
        cr_assert_eq(amf_json_parse(bad[i], &v, &why), SH_EINVAL, "%s", bad[i]);
        cr_assert_not_null(why);
        cr_assert_null(v);
    }
}

/* A small input whose expanded tree is huge ("billion laughs"): level i
 * (object index i) is the AMF3 array [level i+1, level i+1]; the innermost
 * level is ["x", "x"].  The first element is written inline, the second
 * as a reference. */
static uint8_t *laughs(size_t *n)
{
    enum { LEVELS = 60 };
    uint8_t *b = malloc(1024);
    size_t k = 0;
    for (int i = 0; i < LEVELS; i++) {
        b[k++] = AMF3_ARRAY;
        b[k++] = 0x05; /* 2 dense elements */
        b[k++] = 0x01; /* no associative part */
    }
    const uint8_t xx[] = {AMF3_STRING, 0x03, 'x', AMF3_STRING, 0x00};
    memcpy(b + k, xx, sizeof xx);
    k += sizeof xx;
    for (int i = LEVELS - 2; i >= 0; i--) {
        b[k++] = AMF3_ARRAY;
        b[k++] = (uint8_t)((i + 1) << 1); /* reference to object i+1 */
    }
    *n = k;
    return b;
}

Test(json, shared_graph_is_bounded)
{
    size_t n;
    uint8_t *b = laughs(&n);
    amf_value *v = NULL, *w = NULL;
    size_t used;
    cr_assert_eq(amf_decode1(AMF_ENC_AMF3, b, n, NULL, &used, &v, NULL), 0);
    cr_assert_eq(used, n);
    /* equality of two decodes is quick despite the 2^60 expanded size */
    cr_assert_eq(amf_decode1(AMF_ENC_AMF3, b, n, NULL, &used, &w, NULL), 0);
    cr_assert(amf_equal(v, w));
    /* re-encoding keeps the references */
    size_t en;
    uint8_t *e = tu_encode(AMF_ENC_AMF3, v, &en);
    cr_assert_eq(en, n);
    cr_assert_arr_eq(e, b, n);
    free(e);
    /* and JSON, which has no references, refuses instead of expanding */
    cr_assert_null(amf_json_from_value(v));
    amf_unref(v);
    amf_unref(w);
    free(b);
}
