/* test_amf.c - AMF codec: hand-worked vectors from the specs (amf0 spec
 * section 2, amf3 spec section 3), round trips, the encoder's choices and
 * references, limits, and garbage. */
#include <math.h>
#include <stdio.h>

#include "amf_test_util.h"

/* ---- helpers ---- */

typedef struct hv {
    const char *name;
    amf_encoding enc;
    const char *hex;
    bool canonical; /* our encoder writes exactly these bytes */
} hv;

static amf_value *dec_hex(amf_encoding enc, const char *hex, int want_rc, size_t *used_out)
{
    size_t n;
    uint8_t *b = tu_hex(hex, &n);
    amf_value *v = NULL;
    size_t used = 0;
    sh_error err = {0};
    int rc = amf_decode1(enc, b, n, NULL, &used, &v, &err);
    cr_assert_eq(rc, want_rc, "%s: rc %d want %d (%s)", hex, rc, want_rc,
                 err.what ? err.what : "-");
    if (rc == 0) {
        cr_assert_eq(used, n, "%s: consumed %zu of %zu", hex, used, n);
        tu_check_prefixes(enc, b, n, v);
    } else if (rc != SH_EMORE) {
        cr_assert_not_null(err.what);
        cr_assert_not_null(err.where);
        cr_assert_eq(err.code, rc);
        cr_assert_leq(err.offset, n);
    }
    if (used_out)
        *used_out = used;
    free(b);
    return v;
}

/* Decodes all n bytes at b with a fresh decoder, which must succeed
 * (caller unrefs the value). */
static amf_value *dec_all(amf_encoding enc, const uint8_t *b, size_t n)
{
    amf_value *v = NULL;
    size_t used = 0;
    cr_assert_eq(amf_decode1(enc, b, n, NULL, &used, &v, NULL), 0);
    cr_assert_eq(used, n);
    return v;
}

/* The n bytes at b decode to a value equal to want. */
static void assert_decodes_to(amf_encoding enc, const uint8_t *b, size_t n, const amf_value *want)
{
    amf_value *back = dec_all(enc, b, n);
    cr_assert(amf_equal(back, want));
    amf_unref(back);
}

static void check_enc(amf_encoding enc, const amf_value *v, const char *hex)
{
    size_t n, wn;
    uint8_t *want = tu_hex(hex, &wn);
    uint8_t *got = tu_encode(enc, v, &n);
    char gh[2048] = "";
    for (size_t i = 0; i < n && i < 1000; i++)
        snprintf(gh + 2 * i, 3, "%02x", got[i]);
    cr_assert(n == wn && memcmp(got, want, n) == 0, "encoded %s, want %s", gh, hex);
    free(want);
    free(got);
}

/* decode hex, compare to want (taken), re-encode when canonical */
static void expect(amf_encoding enc, const char *hex, amf_value *want, bool canonical)
{
    amf_value *v = dec_hex(enc, hex, 0, NULL);
    cr_assert(amf_equal(v, want), "%s: decoded value differs", hex);
    if (canonical)
        check_enc(enc, v, hex);
    /* and round trip through our own encoding */
    size_t n;
    uint8_t *b = tu_encode(enc, v, &n);
    assert_decodes_to(enc, b, n, want);
    free(b);
    amf_unref(v);
    amf_unref(want);
}

static amf_value *obj1(const char *cls, const char *k, amf_value *v)
{
    amf_value *o = amf_object_new(cls);
    amf_object_set_cstr(o, k, v);
    return o;
}

/* ==== AMF0, every marker ==== */

Test(amf0, scalars)
{
    expect(AMF_ENC_AMF0, "00 3ff0000000000000", amf_number(1), true);
    expect(AMF_ENC_AMF0, "00 7ff8000000000000", amf_number(NAN), true);
    expect(AMF_ENC_AMF0, "01 01", amf_bool(true), true);
    expect(AMF_ENC_AMF0, "01 00", amf_bool(false), true);
    expect(AMF_ENC_AMF0, "01 07", amf_bool(true), false); /* any non-zero is true */
    expect(AMF_ENC_AMF0, "02 0003 616263", amf_string_cstr("abc"), true);
    expect(AMF_ENC_AMF0, "02 0000", amf_string_cstr(""), true);
    expect(AMF_ENC_AMF0, "05", amf_null(), true);
    expect(AMF_ENC_AMF0, "06", amf_undefined(), true);
    expect(AMF_ENC_AMF0, "0d", amf_unsupported(), true);
    /* long string with short content: same string, written back short */
    expect(AMF_ENC_AMF0, "0c 00000002 6869", amf_string_cstr("hi"), false);
    expect(AMF_ENC_AMF0, "0f 00000003 3c613e", amf_xml_document("<a>", 3), true);
}

Test(amf0, date_keeps_time_zone)
{
    amf_value *v = dec_hex(AMF_ENC_AMF0, "0b 3ff0000000000000 ffc4", 0, NULL);
    cr_assert_eq(amf_type_of(v), AMF_DATE);
    cr_assert_eq(amf_date_ms(v), 1.0);
    cr_assert_eq(amf_date_tz(v), -60);
    check_enc(AMF_ENC_AMF0, v, "0b 3ff0000000000000 ffc4");
    amf_unref(v);
}

Test(amf0, objects)
{
    expect(AMF_ENC_AMF0, "03 0001 61 00 3ff0000000000000 0000 09",
           obj1(NULL, "a", amf_number(1)), true);
    expect(AMF_ENC_AMF0, "03 0000 09", amf_object_new(NULL), true);
    /* an empty key followed by a value (not object-end) is a member */
    expect(AMF_ENC_AMF0, "03 0000 05 0000 09", obj1(NULL, "", amf_null()), true);
    /* typed object: sealed members, class kept */
    amf_value *v = dec_hex(AMF_ENC_AMF0, "10 0003 466f6f 0001 78 01 00 0000 09", 0, NULL);
    cr_assert_str_eq(amf_object_class(v), "Foo");
    cr_assert(!amf_object_dynamic(v));
    cr_assert_eq(amf_object_sealed_count(v), 1);
    check_enc(AMF_ENC_AMF0, v, "10 0003 466f6f 0001 78 01 00 0000 09");
    amf_unref(v);
}

Test(amf0, arrays)
{
    amf_value *strict = amf_strict_array_new();
    amf_array_push(strict, amf_number(1));
    amf_array_push(strict, amf_string_cstr("a"));
    expect(AMF_ENC_AMF0, "0a 00000002 00 3ff0000000000000 02 0001 61", strict, true);
    /* the ECMA count field is kept as read, even when it is "wrong" */
    amf_value *v = dec_hex(AMF_ENC_AMF0, "08 00000005 0001 30 02 0001 78 0000 09", 0, NULL);
    cr_assert_eq(amf_type_of(v), AMF_ECMA_ARRAY);
    cr_assert(amf_ecma_array_has_count(v));
    cr_assert_eq(amf_ecma_array_count(v), 5);
    cr_assert(amf_is_string(amf_object_get(v, "0"), "x"));
    check_enc(AMF_ENC_AMF0, v, "08 00000005 0001 30 02 0001 78 0000 09");
    amf_unref(v);
    /* a new ECMA array writes its number of entries */
    amf_value *e = amf_ecma_array_new();
    amf_object_set_cstr(e, "k", amf_null());
    check_enc(AMF_ENC_AMF0, e, "08 00000001 0001 6b 05 0000 09");
    amf_unref(e);
}

Test(amf0, reference_is_the_same_value)
{
    /* [obj, ref 1]: the array is reference 0, the object 1 */
    const char *hex = "0a 00000002 03 0001 61 05 0000 09 07 0001";
    amf_value *v = dec_hex(AMF_ENC_AMF0, hex, 0, NULL);
    cr_assert_eq(amf_array_len(v), 2);
    cr_assert_eq(amf_array_at(v, 0), amf_array_at(v, 1), "same amf_value");
    check_enc(AMF_ENC_AMF0, v, hex); /* the encoder writes the reference back */
    amf_unref(v);
    dec_hex(AMF_ENC_AMF0, "07 0000", SH_EPROTO, NULL);
    dec_hex(AMF_ENC_AMF0, "0a 00000001 07 0000", SH_EUNSUPPORTED, NULL); /* cycle */
}

Test(amf0, avmplus_switch)
{
    amf_value *i = dec_hex(AMF_ENC_AMF0, "11 04 05", 0, NULL);
    cr_assert_eq(amf_type_of(i), AMF_INTEGER);
    check_enc(AMF_ENC_AMF0, i, "00 4014000000000000"); /* AMF0 writes numbers */
    amf_unref(i);
    expect(AMF_ENC_AMF0, "11 0c 05 0102", amf_byte_array("\x01\x02", 2), true);
    expect(AMF_ENC_AMF0, "11 0b 07 3c613e", amf_xml("<a>", 3), true);
    /* an object member switched to AMF3 */
    expect(AMF_ENC_AMF0, "03 0001 62 11 0c 03 ff 0000 09",
           obj1(NULL, "b", amf_byte_array("\xff", 1)), true);
}

Test(amf0, bad_markers)
{
    dec_hex(AMF_ENC_AMF0, "04", SH_EUNSUPPORTED, NULL); /* movieclip */
    dec_hex(AMF_ENC_AMF0, "0e", SH_EUNSUPPORTED, NULL); /* recordset */
    dec_hex(AMF_ENC_AMF0, "09", SH_EPROTO, NULL);
    dec_hex(AMF_ENC_AMF0, "12", SH_EPROTO, NULL);
    dec_hex(AMF_ENC_AMF0, "ff", SH_EPROTO, NULL);
    dec_hex(AMF_ENC_AMF0, "03 0001 61 04", SH_EUNSUPPORTED, NULL);
    dec_hex(AMF_ENC_AMF0, "", SH_EMORE, NULL);
}

Test(amf0, long_string_choice)
{
    size_t n = 65536;
    char *s = malloc(n);
    memset(s, 'x', n);
    for (size_t len = 65535; len <= 65536; len++) {
        amf_value *v = amf_string(s, len);
        size_t bn;
        uint8_t *b = tu_encode(AMF_ENC_AMF0, v, &bn);
        if (len == 65535) {
            cr_assert_eq(b[0], AMF0_STRING);
            cr_assert_eq(bn, 3 + len);
        } else {
            cr_assert_eq(b[0], AMF0_LONG_STRING);
            cr_assert_eq(bn, 5 + len);
        }
        assert_decodes_to(AMF_ENC_AMF0, b, bn, v);
        amf_unref(v);
        free(b);
    }
    free(s);
}

/* ==== AMF3, every marker ==== */

Test(amf3, scalars_and_integers)
{
    expect(AMF_ENC_AMF3, "00", amf_undefined(), true);
    expect(AMF_ENC_AMF3, "01", amf_null(), true);
    expect(AMF_ENC_AMF3, "02", amf_bool(false), true);
    expect(AMF_ENC_AMF3, "03", amf_bool(true), true);
    expect(AMF_ENC_AMF3, "04 00", amf_integer(0), true);
    expect(AMF_ENC_AMF3, "04 7f", amf_integer(127), true);
    expect(AMF_ENC_AMF3, "04 8100", amf_integer(128), true);
    expect(AMF_ENC_AMF3, "04 ff7f", amf_integer(16383), true);
    expect(AMF_ENC_AMF3, "04 818000", amf_integer(16384), true);
    expect(AMF_ENC_AMF3, "04 ffff7f", amf_integer(2097151), true);
    expect(AMF_ENC_AMF3, "04 80c08000", amf_integer(2097152), true);
    expect(AMF_ENC_AMF3, "04 bfffffff", amf_integer((1 << 28) - 1), true);
    expect(AMF_ENC_AMF3, "04 c0808000", amf_integer(-(1 << 28)), true);
    expect(AMF_ENC_AMF3, "04 ffffffff", amf_integer(-1), true);
    expect(AMF_ENC_AMF3, "05 3ff8000000000000", amf_number(1.5), true);
    expect(AMF_ENC_AMF3, "05 8000000000000000", amf_number(-0.0), true);
    expect(AMF_ENC_AMF3, "06 07 616263", amf_string_cstr("abc"), true);
    expect(AMF_ENC_AMF3, "06 01", amf_string_cstr(""), true);
    expect(AMF_ENC_AMF3, "07 07 3c613e", amf_xml_document("<a>", 3), true);
    expect(AMF_ENC_AMF3, "0b 07 3c613e", amf_xml("<a>", 3), true);
    expect(AMF_ENC_AMF3, "08 01 3ff0000000000000", amf_date(1, 0), true);
    expect(AMF_ENC_AMF3, "0c 07 010203", amf_byte_array("\x01\x02\x03", 3), true);
}

Test(amf3, encoder_number_choice)
{
    /* integers that do not fit 29 bits become doubles; numbers stay doubles */
    amf_value *a = amf_integer(1 << 28), *b = amf_integer(-(1 << 28) - 1), *c = amf_number(1);
    check_enc(AMF_ENC_AMF3, a, "05 41b0000000000000");
    check_enc(AMF_ENC_AMF3, b, "05 c1b0000001000000");
    check_enc(AMF_ENC_AMF3, c, "05 3ff0000000000000");
    amf_unref(a);
    amf_unref(b);
    amf_unref(c);
}

Test(amf3, string_references)
{
    amf_value *a = amf_strict_array_new();
    amf_array_push(a, amf_string_cstr("ab"));
    amf_array_push(a, amf_string_cstr("ab"));
    amf_array_push(a, amf_string_cstr(""));
    amf_array_push(a, amf_string_cstr(""));
    expect(AMF_ENC_AMF3, "09 09 01 06 05 6162 06 00 06 01 06 01", a, true);
    dec_hex(AMF_ENC_AMF3, "06 00", SH_EPROTO, NULL);
}

Test(amf3, arrays)
{
    amf_value *m = amf_ecma_array_new();
    amf_object_set_cstr(m, "a", amf_integer(1));
    amf_array_push(m, amf_integer(2));
    expect(AMF_ENC_AMF3, "09 03 03 61 04 01 01 04 02", m, true);
    expect(AMF_ENC_AMF3, "09 01 01", amf_strict_array_new(), true);
    /* an associative-only array */
    amf_value *assoc = amf_ecma_array_new();
    amf_object_set_cstr(assoc, "k", amf_null());
    expect(AMF_ENC_AMF3, "09 01 03 6b 01 01", assoc, true);
}

Test(amf3, typed_object_sealed_and_dynamic)
{
    /* traits: 1 sealed member, dynamic, inline (0x1b); class "Foo" */
    const char *hex = "0a 1b 07 466f6f 03 78 04 01 03 79 04 02 01";
    amf_value *want = amf_object_new("Foo");
    amf_object_set_cstr(want, "x", amf_integer(1));
    amf_object_set_dynamic(want, true);
    amf_object_set_cstr(want, "y", amf_integer(2));
    cr_assert_eq(amf_object_sealed_count(want), 1);
    amf_value *v = dec_hex(AMF_ENC_AMF3, hex, 0, NULL);
    cr_assert(amf_object_dynamic(v));
    cr_assert_eq(amf_object_sealed_count(v), 1);
    cr_assert_str_eq(amf_object_class(v), "Foo");
    amf_unref(v);
    expect(AMF_ENC_AMF3, hex, want, true);
}

Test(amf3, trait_and_object_references)
{
    /* [Foo{x:1}, Foo{x:2} (traits ref 0), ref to object 1] */
    const char *hex = "09 07 01 0a 13 07 466f6f 03 78 04 01 0a 01 04 02 0a 02";
    amf_value *v = dec_hex(AMF_ENC_AMF3, hex, 0, NULL);
    cr_assert_eq(amf_array_len(v), 3);
    cr_assert_eq(amf_array_at(v, 0), amf_array_at(v, 2));
    cr_assert_str_eq(amf_object_class(amf_array_at(v, 1)), "Foo");
    cr_assert_eq(amf_as_number(amf_object_get(amf_array_at(v, 1), "x")), 2);
    check_enc(AMF_ENC_AMF3, v, hex);
    amf_unref(v);
    dec_hex(AMF_ENC_AMF3, "0a 01", SH_EPROTO, NULL);         /* no traits yet */
    dec_hex(AMF_ENC_AMF3, "0a 00", SH_EPROTO, NULL);         /* no objects yet */
    dec_hex(AMF_ENC_AMF3, "09 03 01 09 00", SH_EUNSUPPORTED, NULL); /* cycle */
}

Test(amf3, encoder_emits_references)
{
    /* the same object twice, two objects with the same traits, a repeated
     * string and a repeated date */
    amf_value *shared = obj1("Foo", "x", amf_integer(1));
    amf_value *d = amf_date(0, 0);
    amf_value *a = amf_strict_array_new();
    amf_array_push(a, amf_ref(shared));
    amf_array_push(a, obj1("Foo", "x", amf_string_cstr("x")));
    amf_array_push(a, amf_ref(shared));
    amf_array_push(a, amf_ref(d));
    amf_array_push(a, amf_ref(d));
    check_enc(AMF_ENC_AMF3, a,
              "09 0b 01 0a 13 07 466f6f 03 78 04 01 0a 01 06 02 0a 02 08 01 0000000000000000 08 06");
    /* AMF0 reference for the repeated object */
    amf_value *b = amf_strict_array_new();
    amf_value *o = obj1(NULL, "a", amf_null());
    amf_array_push(b, amf_ref(o));
    amf_array_push(b, amf_ref(o));
    check_enc(AMF_ENC_AMF0, b, "0a 00000002 03 0001 61 05 0000 09 07 0001");
    amf_unref(a);
    amf_unref(b);
    amf_unref(o);
    amf_unref(shared);
    amf_unref(d);
}

Test(amf3, vectors)
{
    amf_value *vi = amf_vector_new(AMF_VECTOR_INT, false, NULL);
    amf_vector_push_number(vi, -1);
    amf_vector_push_number(vi, INT32_MIN);
    expect(AMF_ENC_AMF3, "0d 05 00 ffffffff 80000000", vi, true);
    amf_value *vu = amf_vector_new(AMF_VECTOR_UINT, true, NULL);
    amf_vector_push_number(vu, 4294967295.0);
    expect(AMF_ENC_AMF3, "0e 03 01 ffffffff", vu, true);
    amf_value *vd = amf_vector_new(AMF_VECTOR_DOUBLE, false, NULL);
    amf_vector_push_number(vd, 1);
    expect(AMF_ENC_AMF3, "0f 03 00 3ff0000000000000", vd, true);
    amf_value *vo = amf_vector_new(AMF_VECTOR_OBJECT, false, "Foo");
    amf_array_push(vo, amf_null());
    amf_array_push(vo, amf_string_cstr("a"));
    cr_assert_str_eq(amf_vector_type_name(vo), "Foo");
    expect(AMF_ENC_AMF3, "10 05 00 07 466f6f 01 06 03 61", vo, true);
    /* push refuses values outside the element type */
    amf_value *t = amf_vector_new(AMF_VECTOR_UINT, false, NULL);
    cr_assert_eq(amf_vector_push_number(t, -1), SH_EINVAL);
    cr_assert_eq(amf_vector_push_number(t, 0.5), SH_EINVAL);
    amf_unref(t);
    /* a claimed length beyond the bytes: more needed, nothing allocated */
    dec_hex(AMF_ENC_AMF3, "0d 8f51 00", SH_EMORE, NULL);
    dec_hex(AMF_ENC_AMF3, "0d 8fffff7f 00", SH_ELIMIT, NULL);
}

Test(amf3, dictionary)
{
    amf_value *d = amf_dict_new(true);
    amf_dict_add(d, amf_string_cstr("k"), amf_integer(1));
    amf_dict_add(d, amf_integer(2), amf_string_cstr("v"));
    amf_value *k;
    cr_assert_eq(amf_dict_count(d), 2);
    cr_assert_eq(amf_as_number(amf_dict_at(d, 0, &k)), 1);
    cr_assert(amf_is_string(k, "k"));
    expect(AMF_ENC_AMF3, "11 05 01 06 03 6b 04 01 04 02 06 03 76", d, true);
}

Test(amf3, externalizable)
{
    amf_value *inner = obj1(NULL, "a", amf_integer(1));
    amf_value *proxy = amf_object_new_external("flex.messaging.io.ObjectProxy", inner);
    cr_assert(amf_object_externalizable(proxy));
    expect(AMF_ENC_AMF3,
           "0a 07 3b 666c65782e6d6573736167696e672e696f2e4f626a65637450726f7879 0a 0b 01 03 61 04 01 01",
           proxy, true);
    amf_value *list = amf_strict_array_new();
    amf_array_push(list, amf_integer(5));
    expect(AMF_ENC_AMF3,
           "0a 07 31 6d782e636f6c6c656374696f6e732e41727261794c697374 09 03 01 04 05",
           amf_object_new_external("mx.collections.ArrayList", list), true);
    /* AMF0 writes externalizable objects through the AMF3 switch */
    amf_value *again = amf_object_new_external("mx.collections.ArrayList", amf_strict_array_new());
    check_enc(AMF_ENC_AMF0, again,
              "11 0a 07 31 6d782e636f6c6c656374696f6e732e41727261794c697374 09 01 01");
    amf_unref(again);
    /* a class the codec cannot read */
    dec_hex(AMF_ENC_AMF3, "0a 07 07 466f6f 01", SH_EUNSUPPORTED, NULL);
    cr_assert_null(amf_object_new_external("Foo", amf_null()));
}

Test(amf3, bad_markers)
{
    dec_hex(AMF_ENC_AMF3, "12", SH_EPROTO, NULL);
    dec_hex(AMF_ENC_AMF3, "ff", SH_EPROTO, NULL);
    dec_hex(AMF_ENC_AMF3, "09 03 01 12", SH_EPROTO, NULL);
}

/* ==== round trips of built values, both encodings ==== */

static amf_value *everything(void)
{
    amf_value *root = amf_object_new(NULL);
    amf_object_set_cstr(root, "undef", amf_undefined());
    amf_object_set_cstr(root, "null", amf_null());
    amf_object_set_cstr(root, "t", amf_bool(true));
    amf_object_set_cstr(root, "num", amf_number(-2.5e-7));
    amf_object_set_cstr(root, "inf", amf_number(INFINITY));
    amf_object_set_cstr(root, "str", amf_string_cstr("h\xc3\xa9llo"));
    amf_object_set_cstr(root, "bin", amf_string("a\0b", 3));
    amf_object_set_cstr(root, "xmldoc", amf_xml_document("<r/>", 4));
    amf_object_set_cstr(root, "date", amf_date(1700000000123.0, 0));
    amf_value *typed = obj1("com.example.T", "s", amf_string_cstr("sealed"));
    amf_object_set_dynamic(typed, true);
    amf_object_set_cstr(typed, "d", amf_string_cstr("dynamic"));
    amf_object_set_cstr(root, "typed", typed);
    amf_value *ecma = amf_ecma_array_new();
    amf_object_set_cstr(ecma, "x", amf_number(1));
    amf_object_set_cstr(root, "ecma", ecma);
    amf_value *arr = amf_strict_array_new();
    amf_array_push(arr, amf_number(1));
    amf_array_push(arr, amf_strict_array_new());
    amf_object_set_cstr(root, "arr", arr);
    return root;
}

static amf_value *everything3(void)
{
    amf_value *root = everything();
    amf_object_set_cstr(root, "int", amf_integer(-12345));
    amf_object_set_cstr(root, "xml", amf_xml("<x/>", 4));
    amf_object_set_cstr(root, "bytes", amf_byte_array("\0\1\2", 3));
    amf_value *vi = amf_vector_new(AMF_VECTOR_INT, true, NULL);
    amf_vector_push_number(vi, -5);
    amf_object_set_cstr(root, "vi", vi);
    amf_value *vu = amf_vector_new(AMF_VECTOR_UINT, false, NULL);
    amf_vector_push_number(vu, 7);
    amf_object_set_cstr(root, "vu", vu);
    amf_value *vd = amf_vector_new(AMF_VECTOR_DOUBLE, false, NULL);
    amf_vector_push_number(vd, NAN);
    amf_object_set_cstr(root, "vd", vd);
    amf_value *vo = amf_vector_new(AMF_VECTOR_OBJECT, false, "com.example.T");
    amf_array_push(vo, obj1("com.example.T", "s", amf_null()));
    amf_object_set_cstr(root, "vo", vo);
    amf_value *d = amf_dict_new(false);
    amf_dict_add(d, amf_object_new(NULL), amf_bool(false));
    amf_object_set_cstr(root, "dict", d);
    amf_value *mixed = amf_ecma_array_new();
    amf_object_set_cstr(mixed, "k", amf_string_cstr("v"));
    amf_array_push(mixed, amf_integer(3));
    amf_object_set_cstr(root, "mixed", mixed);
    amf_object_set_cstr(root, "ext",
                        amf_object_new_external("flex.messaging.io.ArrayCollection",
                                                amf_strict_array_new()));
    return root;
}

static void round_trip(amf_encoding enc, amf_value *v)
{
    size_t n;
    uint8_t *b = tu_encode(enc, v, &n);
    amf_value *back = dec_all(enc, b, n);
    cr_assert(amf_equal(v, back));
    tu_check_prefixes(enc, b, n, v);
    /* and our bytes are canonical: encoding the decoded value gives them again */
    size_t n2;
    uint8_t *b2 = tu_encode(enc, back, &n2);
    cr_assert_eq(n2, n);
    cr_assert_arr_eq(b2, b, n);
    free(b2);
    amf_unref(back);
    free(b);
    amf_unref(v);
}

Test(roundtrip, amf0_every_type)
{
    round_trip(AMF_ENC_AMF0, everything());
    amf_value *u = amf_strict_array_new();
    amf_array_push(u, amf_unsupported());
    amf_array_push(u, amf_date(-1, 120));
    round_trip(AMF_ENC_AMF0, u);
    /* AMF3-only values inside AMF0 go through 0x11 and come back the same */
    amf_value *v = everything3();
    /* except integers, which AMF0 writes as numbers */
    amf_object_set_cstr(v, "int", amf_number(-12345));
    round_trip(AMF_ENC_AMF0, v);
}

Test(roundtrip, amf3_every_type)
{
    round_trip(AMF_ENC_AMF3, everything3());
}

Test(roundtrip, shared_values_stay_shared)
{
    for (int enc = 0; enc <= 3; enc += 3) {
        amf_value *o = obj1(NULL, "a", amf_number(1));
        amf_value *arr = amf_strict_array_new();
        amf_array_push(arr, amf_ref(o));
        amf_array_push(arr, amf_ref(o));
        size_t n;
        uint8_t *b = tu_encode((amf_encoding)enc, arr, &n);
        amf_value *back = dec_all((amf_encoding)enc, b, n);
        cr_assert_eq(amf_array_at(back, 0), amf_array_at(back, 1));
        amf_unref(back);
        free(b);
        amf_unref(arr);
        amf_unref(o);
    }
}

/* ==== contexts: tables across calls, reset, rollback ==== */

Test(context, tables_span_calls_until_reset)
{
    amf_enc *e = amf_enc_new();
    sh_buf out;
    sh_buf_init(&out, 0);
    amf_value *s = amf_string_cstr("hello");
    cr_assert_eq(amf_encode(e, AMF_ENC_AMF3, s, &out), 0);
    cr_assert_eq(amf_encode(e, AMF_ENC_AMF3, s, &out), 0);
    uint8_t want[] = {0x06, 0x0b, 'h', 'e', 'l', 'l', 'o', 0x06, 0x00};
    cr_assert_eq(out.len, sizeof want);
    cr_assert_arr_eq(out.data, want, sizeof want);
    amf_dec *d = amf_dec_new(NULL);
    size_t used;
    amf_value *v1, *v2, *v3;
    cr_assert_eq(amf_decode(d, AMF_ENC_AMF3, want, 7, &used, &v1, NULL), 0);
    /* a truncated value in between changes nothing */
    cr_assert_eq(amf_decode(d, AMF_ENC_AMF3, (const uint8_t *)"\x06\x07x", 3, &used, &v3, NULL),
                 SH_EMORE);
    cr_assert_eq(amf_decode(d, AMF_ENC_AMF3, want + 7, 2, &used, &v2, NULL), 0);
    cr_assert(amf_equal(v1, v2));
    /* a value cut short after it entered a string leaves no entry behind */
    amf_dec *d2 = amf_dec_new(NULL);
    const uint8_t cut[] = {0x09, 0x05, 0x01, 0x06, 0x07, 'a', 'b', 'c', 0x06};
    cr_assert_eq(amf_decode(d2, AMF_ENC_AMF3, cut, sizeof cut, &used, &v3, NULL), SH_EMORE);
    cr_assert_eq(amf_decode(d2, AMF_ENC_AMF3, want + 7, 2, &used, &v3, NULL), SH_EPROTO);
    amf_dec_free(d2);
    /* after reset the reference no longer resolves */
    amf_dec_reset(d);
    sh_error err;
    cr_assert_eq(amf_decode(d, AMF_ENC_AMF3, want + 7, 2, &used, &v3, &err), SH_EPROTO);
    amf_enc_reset(e);
    sh_buf_reset(&out);
    cr_assert_eq(amf_encode(e, AMF_ENC_AMF3, s, &out), 0);
    cr_assert_eq(out.len, 7);
    amf_unref(v1);
    amf_unref(v2);
    amf_unref(s);
    amf_dec_free(d);
    amf_enc_free(e);
    sh_buf_cleanup(&out);
}

Test(context, encoder_refuses_cycles_and_rolls_back)
{
    amf_value *o = amf_object_new(NULL);
    amf_object_set_cstr(o, "self", amf_ref(o));
    sh_buf out;
    sh_buf_init(&out, 0);
    sh_buf_put_u8(&out, 0xaa);
    amf_enc *e = amf_enc_new();
    cr_assert_eq(amf_encode(e, AMF_ENC_AMF3, o, &out), SH_EINVAL);
    cr_assert_eq(out.len, 1, "partial output removed");
    cr_assert_eq(amf_encode(e, AMF_ENC_AMF0, o, &out), SH_EINVAL);
    cr_assert_eq(out.len, 1);
    /* break the cycle so the value can be freed */
    amf_object_set_cstr(o, "self", amf_null());
    cr_assert_eq(amf_encode(e, AMF_ENC_AMF3, o, &out), 0);
    /* the failed attempts left no table entries: o is written inline */
    cr_assert_eq(out.data[1], AMF3_OBJECT);
    cr_assert_eq(out.data[2], 0x0b);
    amf_enc_free(e);
    sh_buf_cleanup(&out);
    amf_unref(o);
    /* and an encoding over the buffer's maximum fails cleanly */
    sh_buf small;
    sh_buf_init(&small, 4);
    amf_value *s = amf_string_cstr("too long for four bytes");
    cr_assert_eq(amf_encode1(AMF_ENC_AMF0, s, &small), SH_ELIMIT);
    cr_assert_eq(small.len, 0);
    cr_assert(!small.failed);
    sh_buf_cleanup(&small);
    amf_unref(s);
}

/* Tables well past the encoder's small size, and a string buffer that
 * moves several times (its index is rebuilt): every repeat is still a
 * reference.  A value that fails in between takes back only its own
 * entries, even when the tables held many before it. */
Test(context, large_tables_keep_references)
{
    enum { N = 3000, C = 40 };
    char s[32];
    amf_value *strs = amf_strict_array_new();
    for (int i = 0; i < 2 * N; i++) {
        snprintf(s, sizeof s, "string number %d", i % N);
        amf_array_push(strs, amf_string_cstr(s));
    }
    amf_value *objs = amf_strict_array_new();
    for (int i = 0; i < 2 * C; i++) {
        snprintf(s, sizeof s, "cls%d", i % C);
        amf_value *o = amf_object_new(s); /* typed: its member is sealed */
        amf_object_set_cstr(o, "a", amf_integer(1));
        amf_array_push(objs, o);
    }
    /* the traits table alone: each class first inline (marker, traits
     * U29, class name, "a" inline then as reference 1, the integer), then
     * as a trait reference (1 byte up to index 31, then 2) */
    size_t n;
    uint8_t *b = tu_encode(AMF_ENC_AMF3, objs, &n);
    size_t want = 4;
    for (int i = 0; i < C; i++) {
        snprintf(s, sizeof s, "cls%d", i);
        want += 1 + 1 + 1 + strlen(s) + (i == 0 ? 2 : 1) + 2;
        want += 1 + (i < 32 ? 1 : 2) + 2;
    }
    cr_assert_eq(n, want, "repeated classes are trait references (%zu bytes, want %zu)", n, want);
    amf_value *back = dec_all(AMF_ENC_AMF3, b, n);
    cr_assert(amf_equal(objs, back));
    amf_unref(back);
    free(b);

    /* strings, in a context kept for what follows: array header 4; a
     * string: marker, U29 length, bytes; a repeat: marker and the U29
     * reference (1 byte up to index 63, then 2) */
    amf_enc *e = amf_enc_new();
    sh_buf out;
    sh_buf_init(&out, 0);
    cr_assert_eq(amf_encode(e, AMF_ENC_AMF3, strs, &out), 0);
    want = 4;
    for (int i = 0; i < N; i++) {
        snprintf(s, sizeof s, "string number %d", i);
        want += 2 + strlen(s) + 1 + (i < 64 ? 1 : 2);
    }
    cr_assert_eq(out.len, want, "repeats are references (%zu bytes, want %zu)", out.len, want);
    back = dec_all(AMF_ENC_AMF3, out.data, out.len);
    cr_assert(amf_equal(strs, back));
    amf_unref(back);

    /* a failure after entering strings and an object */
    amf_value *bad = amf_object_new(NULL);
    amf_object_set_cstr(bad, "fresh key", amf_string_cstr("fresh value"));
    amf_object_set_cstr(bad, "self", amf_ref(bad));
    size_t before = out.len;
    cr_assert_eq(amf_encode(e, AMF_ENC_AMF3, bad, &out), SH_EINVAL);
    cr_assert_eq(out.len, before);
    amf_object_set_cstr(bad, "self", amf_null());
    amf_unref(bad);
    amf_value *fresh = amf_string_cstr("fresh value"), *old = amf_string_cstr("string number 5");
    cr_assert_eq(amf_encode(e, AMF_ENC_AMF3, fresh, &out), 0);
    cr_assert_eq(out.data[before + 1], 11 << 1 | 1, "rolled back: written inline");
    before = out.len;
    cr_assert_eq(amf_encode(e, AMF_ENC_AMF3, old, &out), 0);
    cr_assert_eq(out.len - before, 2);
    cr_assert_eq(out.data[before + 1], 5 << 1, "kept: reference 5");
    amf_unref(fresh);
    amf_unref(old);
    amf_unref(strs);
    amf_unref(objs);
    amf_enc_free(e);
    sh_buf_cleanup(&out);
}

/* ==== limits: each at the limit passes, one past fails ==== */

static int dec_lim(amf_encoding enc, const amf_limits *lim, const uint8_t *b, size_t n)
{
    amf_value *v = NULL;
    size_t used;
    int rc = amf_decode1(enc, b, n, lim, &used, &v, NULL);
    amf_unref(v);
    return rc;
}

/* Encodes v with a fresh encoder, drops v, and decodes the bytes under
 * lim; returns the decoder's rc. */
static int reencode_lim(amf_encoding enc, const amf_limits *lim, amf_value *v)
{
    size_t n;
    uint8_t *b = tu_encode(enc, v, &n);
    amf_unref(v);
    int rc = dec_lim(enc, lim, b, n);
    free(b);
    return rc;
}

/* n strict arrays, each inside the next. */
static amf_value *nested_arrays(uint32_t n)
{
    amf_value *v = amf_strict_array_new();
    for (uint32_t i = 1; i < n; i++) {
        amf_value *outer = amf_strict_array_new();
        amf_array_push(outer, v);
        v = outer;
    }
    return v;
}

Test(limits, depth)
{
    amf_limits lim = amf_default_limits;
    lim.max_depth = 5;
    for (int enc = 0; enc <= 3; enc += 3) {
        for (uint32_t depth = 5; depth <= 6; depth++) {
            amf_value *v = nested_arrays(depth);
            cr_assert_eq(reencode_lim((amf_encoding)enc, &lim, v), depth == 5 ? 0 : SH_ELIMIT);
        }
    }
    /* the encoder's own cap */
    amf_value *v = nested_arrays(AMF_ENC_MAX_DEPTH + 2);
    sh_buf out;
    sh_buf_init(&out, 0);
    cr_assert_eq(amf_encode1(AMF_ENC_AMF0, v, &out), SH_ELIMIT);
    sh_buf_cleanup(&out);
    amf_unref(v);
}

Test(limits, string_length)
{
    amf_limits lim = amf_default_limits;
    lim.max_string = 100;
    char s[101];
    memset(s, 'a', sizeof s);
    for (int enc = 0; enc <= 3; enc += 3) {
        for (size_t len = 100; len <= 101; len++) {
            amf_value *vals[3] = {amf_string(s, len), amf_xml_document(s, len),
                                  amf_byte_array(s, len)};
            for (int k = 0; k < 3; k++) {
                size_t n;
                uint8_t *b = tu_encode((amf_encoding)enc, vals[k], &n);
                int rc = dec_lim((amf_encoding)enc, &lim, b, n);
                cr_assert_eq(rc, len == 100 ? 0 : SH_ELIMIT, "enc %d kind %d len %zu", enc, k, len);
                /* the limit is checked before the bytes are awaited */
                if (len == 101)
                    cr_assert_eq(dec_lim((amf_encoding)enc, &lim, b, n - 50), SH_ELIMIT);
                free(b);
                amf_unref(vals[k]);
            }
        }
    }
}

Test(limits, elements)
{
    amf_limits lim = amf_default_limits;
    lim.max_elements = 10;
    for (int enc = 0; enc <= 3; enc += 3) {
        for (int count = 10; count <= 11; count++) {
            amf_value *arr = amf_strict_array_new();
            amf_value *obj = amf_object_new(NULL);
            amf_value *vec = amf_vector_new(AMF_VECTOR_DOUBLE, false, NULL);
            amf_value *dict = amf_dict_new(false);
            for (int i = 0; i < count; i++) {
                char k[8];
                snprintf(k, sizeof k, "k%d", i);
                amf_array_push(arr, amf_null());
                amf_object_set_cstr(obj, k, amf_null());
                amf_vector_push_number(vec, i);
                amf_dict_add(dict, amf_integer(i), amf_null());
            }
            amf_value *all[] = {arr, obj, vec, dict};
            for (int k = 0; k < 4; k++)
                cr_assert_eq(reencode_lim((amf_encoding)enc, &lim, all[k]),
                             count == 10 ? 0 : SH_ELIMIT, "enc %d kind %d count %d", enc, k, count);
        }
    }
    /* a huge claimed count is refused at once, however few bytes follow */
    lim = amf_default_limits;
    uint8_t big0[] = {AMF0_STRICT_ARRAY, 0xff, 0xff, 0xff, 0xff, 0x05};
    cr_assert_eq(dec_lim(AMF_ENC_AMF0, &lim, big0, sizeof big0), SH_ELIMIT);
    uint8_t big3[] = {AMF3_ARRAY, 0xff, 0xff, 0xff, 0xff, 0x01};
    cr_assert_eq(dec_lim(AMF_ENC_AMF3, &lim, big3, sizeof big3), SH_ELIMIT);
}

Test(limits, reference_tables)
{
    amf_limits lim = amf_default_limits;
    lim.max_refs = 4;
    for (int total = 4; total <= 5; total++) {
        /* AMF3 strings: `total` distinct strings */
        amf_value *a = amf_strict_array_new();
        for (int i = 0; i < total; i++) {
            char s[4] = {'s', (char)('0' + i), 0, 0};
            amf_array_push(a, amf_string_cstr(s));
        }
        /* AMF3 object table: the array + total-1 byte arrays = total */
        amf_value *o = amf_strict_array_new();
        for (int i = 0; i < total - 1; i++)
            amf_array_push(o, amf_byte_array("x", 1));
        /* AMF0 table: the array + total-1 objects */
        amf_value *z = amf_strict_array_new();
        for (int i = 0; i < total - 1; i++)
            amf_array_push(z, amf_object_new(NULL));
        int want = total == 4 ? 0 : SH_ELIMIT;
        cr_assert_eq(reencode_lim(AMF_ENC_AMF3, &lim, a), want, "strings %d", total);
        cr_assert_eq(reencode_lim(AMF_ENC_AMF3, &lim, o), want, "objects %d", total);
        cr_assert_eq(reencode_lim(AMF_ENC_AMF0, &lim, z), want, "amf0 refs %d", total);
        /* (the traits table cannot fill before the object table: every
         * traits entry comes with its object) */
    }
}

Test(limits, total_bytes)
{
    amf_value *s = amf_string_cstr("0123456789");
    size_t n;
    uint8_t *b = tu_encode(AMF_ENC_AMF0, s, &n); /* 13 bytes */
    amf_limits lim = amf_default_limits;
    lim.max_total = n;
    cr_assert_eq(dec_lim(AMF_ENC_AMF0, &lim, b, n), 0);
    lim.max_total = n - 1;
    cr_assert_eq(dec_lim(AMF_ENC_AMF0, &lim, b, n), SH_ELIMIT);
    /* a prefix within max_total still just asks for more */
    cr_assert_eq(dec_lim(AMF_ENC_AMF0, &lim, b, n - 2), SH_EMORE);
    free(b);
    amf_unref(s);
}

/* ==== garbage never crashes ==== */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static void try_decode(amf_encoding enc, const uint8_t *b, size_t n)
{
    amf_dec *d = amf_dec_new(NULL);
    size_t off = 0;
    for (int k = 0; k < 8 && off < n; k++) {
        amf_value *v = NULL;
        size_t used = 0;
        sh_error err = {0};
        int rc = amf_decode(d, enc, b + off, n - off, &used, &v, &err);
        if (rc) {
            cr_assert_null(v);
            cr_assert(rc == SH_EMORE || rc == SH_EPROTO || rc == SH_ELIMIT ||
                      rc == SH_EUNSUPPORTED, "rc %d", rc);
            break;
        }
        cr_assert(used > 0 && used <= n - off);
        /* whatever decodes must encode */
        sh_buf out;
        sh_buf_init(&out, 0);
        int erc = amf_encode1(enc, v, &out);
        cr_assert(erc == 0 || erc == SH_EINVAL, "encode rc %d", erc);
        sh_buf_cleanup(&out);
        amf_unref(v);
        off += used;
    }
    amf_dec_free(d);
}

Test(garbage, random_bytes)
{
    uint8_t buf[96];
    for (int i = 0; i < 4000; i++) {
        size_t n = next_rand() % sizeof buf;
        for (size_t k = 0; k < n; k++) {
            uint32_t r = next_rand();
            /* bias towards small bytes so markers and short lengths are common */
            buf[k] = (uint8_t)((r & 0x300) ? r % 20 : r);
        }
        try_decode(AMF_ENC_AMF0, buf, n);
        try_decode(AMF_ENC_AMF3, buf, n);
    }
}

Test(garbage, mutated_valid_values)
{
    amf_value *vals[2] = {everything(), everything3()};
    for (int w = 0; w < 2; w++) {
        for (int enc = 0; enc <= 3; enc += 3) {
            size_t n;
            uint8_t *b = tu_encode((amf_encoding)enc, vals[w], &n);
            uint8_t *m = malloc(n);
            for (int i = 0; i < 1000; i++) {
                memcpy(m, b, n);
                for (int k = 0; k < 3; k++)
                    m[next_rand() % n] = (uint8_t)next_rand();
                try_decode((amf_encoding)enc, m, n);
            }
            free(m);
            free(b);
        }
        amf_unref(vals[w]);
    }
}
