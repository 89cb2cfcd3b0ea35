/* amf_test_util.h - helpers shared by the amf test files. */
#ifndef AMF_TEST_UTIL_H
#define AMF_TEST_UTIL_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "amf.h"

/* Hex text (spaces allowed) to bytes; returns a malloc'd buffer. */
static inline uint8_t *tu_hex(const char *h, size_t *n)
{
    size_t len = strlen(h);
    uint8_t *b = malloc(len / 2 + 1);
    size_t k = 0;
    int half = -1;
    for (size_t i = 0; i < len; i++) {
        char c = h[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            continue;
        if (half < 0) {
            half = d;
        } else {
            b[k++] = (uint8_t)(half << 4 | d);
            half = -1;
        }
    }
    *n = k;
    return b;
}

/* Every proper prefix of buf must ask for more bytes, and leave the
 * decoder's tables as they were: decoding the whole buffer afterwards
 * with the same decoder must give the same value.  The memory the decoder
 * counted for that value is exactly what amf_value_mem finds in it, and
 * the context holds no more than that plus its tables. */
static inline void tu_check_prefixes(amf_encoding enc, const uint8_t *buf, size_t len,
                                     const amf_value *want)
{
    amf_dec *d = amf_dec_new(NULL);
    for (size_t i = 0; i < len; i++) {
        amf_value *v = NULL;
        size_t used = 12345;
        int rc = amf_decode(d, enc, buf, i, &used, &v, NULL);
        cr_assert_eq(rc, SH_EMORE, "prefix %zu of %zu: rc %d", i, len, rc);
        cr_assert_null(v);
        cr_assert_eq(used, 12345);
    }
    amf_value *v = NULL;
    size_t used = 0;
    cr_assert_eq(amf_decode(d, enc, buf, len, &used, &v, NULL), 0);
    cr_assert_eq(used, len);
    if (want)
        cr_assert(amf_equal(v, want));
    cr_assert_eq(amf_dec_last_mem(d), amf_value_mem(v), "counted %zu, holds %zu",
                 amf_dec_last_mem(d), amf_value_mem(v));
    cr_assert_geq(amf_dec_mem(d), amf_dec_last_mem(d));
    amf_unref(v);
    amf_dec_free(d);
}

/* Encodes v with a fresh encoder; returns malloc'd bytes. */
static inline uint8_t *tu_encode(amf_encoding enc, const amf_value *v, size_t *n)
{
    sh_buf b;
    sh_buf_init(&b, 0);
    cr_assert_eq(amf_encode1(enc, v, &b), 0);
    return sh_buf_steal(&b, n);
}

#endif
