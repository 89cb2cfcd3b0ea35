/* test_vectors.c - vectors written by an independent implementation
 * (bytearray-node, see tests/data/amf/README.md): our decoder must read
 * each to the value in its .json file, every prefix must ask for more
 * bytes, and our encoder must give back the same bytes. */
#include <cjson/cJSON.h>
#include <stdio.h>

#include "amf_json.h"
#include "amf_test_util.h"

#ifndef AMF_VECTOR_DIR
#error "AMF_VECTOR_DIR must name tests/data/amf"
#endif

static char *slurp(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", AMF_VECTOR_DIR, name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    b[n] = '\0';
    *len = (size_t)n;
    return b;
}

/* The manifest of vectors: loaded by the suite's .init, freed by its .fini. */
static cJSON *manifest;

static void manifest_load(void)
{
    size_t n;
    char *text = slurp("manifest.json", &n);
    manifest = cJSON_Parse(text);
    free(text);
    cr_assert(cJSON_IsArray(manifest));
    cr_assert_gt(cJSON_GetArraySize(manifest), 60, "expected the generated vectors");
}

static void manifest_free(void)
{
    cJSON_Delete(manifest);
}

TestSuite(vectors, .init = manifest_load, .fini = manifest_free);

static amf_encoding enc_of(const cJSON *e)
{
    return cJSON_GetObjectItem(e, "enc")->valueint == 3 ? AMF_ENC_AMF3 : AMF_ENC_AMF0;
}

static const char *name_of(const cJSON *e)
{
    return cJSON_GetObjectItem(e, "name")->valuestring;
}

/* Vector e's bytes (caller frees). */
static uint8_t *bin_of(const cJSON *e, size_t *len)
{
    return (uint8_t *)slurp(cJSON_GetObjectItem(e, "bin")->valuestring, len);
}

/* Decodes all len bytes of vector e, which must succeed. */
static amf_value *decode_vector(const cJSON *e, const uint8_t *bin, size_t len)
{
    amf_value *v = NULL;
    size_t used = 0;
    cr_assert_eq(amf_decode1(enc_of(e), bin, len, NULL, &used, &v, NULL), 0, "%s", name_of(e));
    cr_assert_eq(used, len, "%s: consumed %zu of %zu", name_of(e), used, len);
    return v;
}

Test(vectors, decode_to_expected_value)
{
    int checked = 0;
    for (cJSON *e = manifest->child; e; e = e->next) {
        const char *name = name_of(e);
        size_t len;
        uint8_t *bin = bin_of(e, &len);
        amf_value *v = NULL;
        size_t used = 0;
        sh_error err = {0};
        int rc = amf_decode1(enc_of(e), bin, len, NULL, &used, &v, &err);
        const cJSON *want_err = cJSON_GetObjectItem(e, "error");
        if (want_err) {
            cr_assert_eq(rc, SH_EUNSUPPORTED, "%s: rc %d", name, rc);
            cr_assert_not_null(err.what);
            free(bin);
            continue;
        }
        cr_assert_eq(rc, 0, "%s: rc %d (%s at %zu)", name, rc, err.what, err.offset);
        cr_assert_eq(used, len, "%s: consumed %zu of %zu", name, used, len);
        size_t jn;
        char *jtext = slurp(cJSON_GetObjectItem(e, "json")->valuestring, &jn);
        amf_value *want = NULL;
        const char *why = NULL;
        cr_assert_eq(amf_json_parse(jtext, &want, &why), 0, "%s: %s", name, why);
        char *got = amf_json_print(v);
        cr_assert(amf_equal(v, want), "%s: got %s want %s", name, got, jtext);
        free(got);
        free(jtext);
        amf_unref(want);
        amf_unref(v);
        free(bin);
        checked++;
    }
    cr_assert_gt(checked, 60);
}

Test(vectors, encoder_reproduces_bytes)
{
    for (cJSON *e = manifest->child; e; e = e->next) {
        if (!cJSON_IsTrue(cJSON_GetObjectItem(e, "canonical")))
            continue;
        size_t len;
        uint8_t *bin = bin_of(e, &len);
        amf_value *v = decode_vector(e, bin, len);
        size_t n;
        uint8_t *out = tu_encode(enc_of(e), v, &n);
        cr_assert_eq(n, len, "%s: %zu bytes, want %zu", name_of(e), n, len);
        cr_assert_arr_eq(out, bin, len, "%s: bytes differ", name_of(e));
        free(out);
        amf_unref(v);
        free(bin);
    }
}

Test(vectors, every_prefix_asks_for_more)
{
    for (cJSON *e = manifest->child; e; e = e->next) {
        if (cJSON_GetObjectItem(e, "error"))
            continue;
        size_t len;
        uint8_t *bin = bin_of(e, &len);
        if (len > 4096) { /* the 70000-byte string: check a spread of prefixes */
            for (size_t i = 0; i < len; i += 997) {
                amf_value *v = NULL;
                size_t used;
                cr_assert_eq(amf_decode1(enc_of(e), bin, i, NULL, &used, &v, NULL), SH_EMORE);
            }
        } else {
            tu_check_prefixes(enc_of(e), bin, len, NULL);
        }
        free(bin);
    }
}

Test(vectors, json_round_trip)
{
    /* value -> JSON -> value is the identity for every vector */
    for (cJSON *e = manifest->child; e; e = e->next) {
        if (cJSON_GetObjectItem(e, "error"))
            continue;
        size_t len;
        uint8_t *bin = bin_of(e, &len);
        amf_value *v = decode_vector(e, bin, len), *back = NULL;
        char *js = amf_json_print(v);
        cr_assert_not_null(js);
        cr_assert_eq(amf_json_parse(js, &back, NULL), 0, "%s", js);
        cr_assert(amf_equal(v, back), "%s", js);
        free(js);
        amf_unref(back);
        amf_unref(v);
        free(bin);
    }
}
