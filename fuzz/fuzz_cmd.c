/* fuzz_cmd.c - command message bodies (rtmp_cmd_decode), types 20 and 17.
 *
 * Input: mode byte, then the body.  Mode bit 0: type 17 (else 20); bit 1:
 * tight AMF limits.
 * Property: a body that decodes encodes again (rtmp_cmd_encode, same
 * type) and decodes to the same command: same name, transaction id,
 * command object and arguments (equal in meaning; the AMF0 writer turns
 * AMF3 integers into numbers, see fuzz_amf_util.h).
 */
#include <string.h>

#include "fuzz_amf_util.h"
#include "fuzz_common.h"
#include "rtmp.h"

static const amf_limits tight = {
    .max_depth = 4,
    .max_string = 32,
    .max_elements = 8,
    .max_refs = 8,
    .max_total = 512,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    bool amf3 = mode & 1;
    const amf_limits *lim = (mode & 2) ? &tight : NULL;
    /* an empty body arrives as (NULL, 0) from the chunk decoder */
    uint8_t *body = size > 1 ? fz_dup(data + 1, size - 1) : NULL;
    rtmp_msg m = {amf3 ? RTMP_MSG_COMMAND_AMF3 : RTMP_MSG_COMMAND_AMF0, 0, 0,
                  RTMP_CSID_COMMAND, body, size - 1};
    rtmp_cmd a;
    sh_error err = {0};
    int rc = rtmp_cmd_decode(&m, lim, &a, &err);
    if (rc != 0) {
        FZ_CHECK(rc < 0 && a.name == NULL && a.args == NULL && a.cmd_obj == NULL);
        free(body);
        return 0;
    }
    FZ_CHECK(a.name != NULL && a.cmd_obj != NULL && a.nargs <= RTMP_MAX_CMD_ARGS);
    FZ_CHECK(strlen(a.name) <= size);

    sh_buf out;
    sh_buf_init(&out, 0);
    rc = rtmp_cmd_encode(&out, amf3, a.name, a.txid, a.cmd_obj, a.args, a.nargs);
    FZ_CHECK(rc == 0 || rc == SH_EINVAL);
    if (rc == 0) {
        rtmp_msg m2 = m;
        m2.data = out.data;
        m2.len = out.len;
        rtmp_cmd b;
        rc = rtmp_cmd_decode(&m2, NULL, &b, &err);
        if (rc != 0)
            fprintf(stderr, "re-decode: %d %s at %s\n", rc, err.what ? err.what : "",
                    err.where ? err.where : "");
        FZ_CHECK(rc == 0);
        FZ_CHECK(strcmp(a.name, b.name) == 0);
        FZ_CHECK(a.txid == b.txid || (a.txid != a.txid && b.txid != b.txid));
        FZ_CHECK(a.nargs == b.nargs);
        bool small = fz_amf_tree_size(a.cmd_obj, 20000, 0) < 20000;
        for (size_t i = 0; small && i < a.nargs; i++)
            small = fz_amf_tree_size(a.args[i], 20000, 0) < 20000;
        if (small) {
            FZ_CHECK(fz_amf_same(AMF_ENC_AMF0, a.cmd_obj, b.cmd_obj, 0));
            for (size_t i = 0; i < a.nargs; i++)
                FZ_CHECK(fz_amf_same(AMF_ENC_AMF0, a.args[i], b.args[i], 0));
        }
        rtmp_cmd_cleanup(&b);
    }
    sh_buf_cleanup(&out);
    rtmp_cmd_cleanup(&a);
    free(body);
    return 0;
}
