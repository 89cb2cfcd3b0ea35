/* fuzz_amf.h - the body of the AMF0 and AMF3 decoder targets.
 *
 * Input: one mode byte, then AMF bytes.  Mode bit 0 selects tight limits
 * (so the limit branches are reached with small inputs); the rest of the
 * mode byte picks a split point for the prefix property.
 *
 * Values are decoded one after another with ONE decoder (as a command
 * body is), until the input ends or is refused.  For each value:
 *  - the context never holds more than its memory budget (amf_dec_mem),
 *    whether the decode succeeded or failed; the first value's counted
 *    memory is exactly what amf_value_mem finds in it, a later one's at
 *    most that (it may share what earlier values built);
 *  - a strict prefix of its bytes must give SH_EMORE (sans-I/O contract),
 *  - it must encode again in the same format, the encoding must decode to
 *    an equal value (amf_equal) using all of its bytes, and encoding that
 *    value again must give the same bytes (the encoder is stable).
 */
#ifndef FUZZ_AMF_H
#define FUZZ_AMF_H

#include <stdbool.h>
#include <string.h>

#include "amf.h"
#include "fuzz_amf_util.h"
#include "fuzz_common.h"

static const amf_limits fz_amf_tight = {
    .max_depth = 4,
    .max_string = 16,
    .max_elements = 8,
    .max_refs = 8,
    .max_total = 256,
    .max_memory = 1500, /* a few containers: the budget is reached often */
};

/* Re-encodes v and checks the round trip; returns nothing, aborts on a
 * broken property. */
static void fz_amf_roundtrip(amf_encoding enc, const amf_value *v)
{
    sh_buf b1, b2;
    sh_buf_init(&b1, 0);
    sh_buf_init(&b2, 0);
    amf_enc *e = amf_enc_new();
    FZ_CHECK(e != NULL);
    int rc = amf_encode(e, enc, v, &b1);
    /* AMF0 cannot carry member names above 65535 bytes (amf.h): the only
     * refusal a decoded value may meet. */
    FZ_CHECK(rc == 0 || rc == SH_EINVAL);
    if (rc == 0) {
        /* v may refer to objects an earlier value of its context decoded
         * (the table spans the context), which nested no deeper there;
         * written alone they are inline, so the encoding may nest deeper
         * than the input did, though never deeper than the encoder
         * writes. */
        amf_limits back = amf_default_limits;
        back.max_depth = AMF_ENC_MAX_DEPTH;
        amf_value *v2 = NULL;
        size_t used = 0;
        sh_error err = {0};
        rc = amf_decode1(enc, b1.data, b1.len, &back, &used, &v2, &err);
        if (rc != 0)
            fprintf(stderr, "re-decode failed: %d %s at %s offset %zu\n", rc,
                    err.what ? err.what : "", err.where ? err.where : "", err.offset);
        FZ_CHECK(rc == 0);
        FZ_CHECK(used == b1.len);
        if (fz_amf_tree_size(v, 20000, 0) < 20000 && !fz_amf_same(enc, v, v2, 0)) {
            fprintf(stderr, "decoded:    ");
            fz_amf_dump(v, 0);
            fprintf(stderr, "\nre-decoded: ");
            fz_amf_dump(v2, 0);
            fprintf(stderr, "\n");
            fz_hex("encoding", b1.data, b1.len);
            FZ_CHECK(!"decode(encode(v)) equals v");
        }
        amf_enc_reset(e);
        rc = amf_encode(e, enc, v2, &b2);
        FZ_CHECK(rc == 0);
        if (b2.len != b1.len || memcmp(b1.data, b2.data, b1.len) != 0) {
            fz_hex("first encoding ", b1.data, b1.len);
            fz_hex("second encoding", b2.data, b2.len);
            FZ_CHECK(!"encode(decode(encode(v))) equals encode(v)");
        }
        amf_unref(v2);
    }
    amf_enc_free(e);
    sh_buf_cleanup(&b1);
    sh_buf_cleanup(&b2);
}

static int fz_amf_run(amf_encoding enc, const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    const amf_limits *lim = (mode & 1) ? &fz_amf_tight : NULL;
    uint8_t *buf = fz_dup(data + 1, size - 1);
    size_t len = size - 1, off = 0;

    amf_dec *d = amf_dec_new(lim);
    FZ_CHECK(d != NULL);
    for (int i = 0; i < 64 && off < len; i++) {
        amf_value *v = NULL;
        size_t used = 0;
        sh_error err = {0};
        int rc = amf_decode(d, enc, buf + off, len - off, &used, &v, &err);
        FZ_CHECK(amf_dec_mem(d) <= amf_limits_memory(lim));
        if (rc != 0) {
            FZ_CHECK(rc < 0 && v == NULL);
            break;
        }
        size_t mem = amf_value_mem(v);
        if (i == 0 && amf_dec_last_mem(d) != mem)
            fprintf(stderr, "counted %zu, value holds %zu\n", amf_dec_last_mem(d), mem);
        FZ_CHECK(i == 0 ? amf_dec_last_mem(d) == mem : amf_dec_last_mem(d) <= mem);
        FZ_CHECK(amf_dec_last_mem(d) <= amf_dec_mem(d));
        FZ_CHECK(v != NULL && used > 0 && used <= len - off);
        if (used > 1 && i == 0) {
            /* Prefix property, with a fresh decoder (tables as before). */
            size_t cut = 1 + (size_t)(mode >> 1) % (used - 1);
            uint8_t *pre = fz_dup(buf + off, cut);
            amf_value *pv = NULL;
            size_t pused = 0;
            int prc = amf_decode1(enc, pre, cut, lim, &pused, &pv, NULL);
            if (prc != SH_EMORE)
                fprintf(stderr, "prefix %zu of %zu gave %d\n", cut, used, prc);
            FZ_CHECK(prc == SH_EMORE && pv == NULL);
            free(pre);
        }
        fz_amf_roundtrip(enc, v);
        amf_unref(v);
        off += used;
    }
    amf_dec_free(d);
    free(buf);
    return 0;
}

#endif
