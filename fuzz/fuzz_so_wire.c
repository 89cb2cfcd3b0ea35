/* fuzz_so_wire.c - shared-object message bodies (so_wire_decode), types
 * 19 and 16.
 *
 * Input: mode byte, then the body.  Mode bit 0: type 16 (else 19); bit 1:
 * tight limits.
 * Properties: on failure the message is left empty; a body that decodes
 * encodes again (so_wire_encode, same type) and decodes to the same
 * message: name, version, persistence, and every event with its keys,
 * values (equal in meaning, see fuzz_amf_util.h), handler, arguments,
 * status code and level.
 */
#include <string.h>

#include "fuzz_amf_util.h"
#include "fuzz_common.h"
#include "so_wire.h"

static so_wire_limits tight;

static bool bytes_eq(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static bool str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return (!a || !*a) && (!b || !*b);
    return strcmp(a, b) == 0;
}

static bool small(const amf_value *v)
{
    return fz_amf_tree_size(v, 20000, 0) < 20000;
}

static void check_same(const so_msg *a, const so_msg *b)
{
    FZ_CHECK(bytes_eq(a->name, a->name_len, b->name, b->name_len));
    FZ_CHECK(a->version == b->version && a->persistent == b->persistent);
    FZ_CHECK(a->nevents == b->nevents);
    for (size_t i = 0; i < a->nevents; i++) {
        const so_event *x = &a->events[i], *y = &b->events[i];
        FZ_CHECK(x->type == y->type && x->nkv == y->nkv && x->nargs == y->nargs);
        for (size_t k = 0; k < x->nkv; k++) {
            FZ_CHECK(bytes_eq(x->kv[k].key, x->kv[k].key_len, y->kv[k].key, y->kv[k].key_len));
            FZ_CHECK((x->kv[k].value == NULL) == (y->kv[k].value == NULL));
            if (x->kv[k].value && small(x->kv[k].value))
                FZ_CHECK(fz_amf_same(AMF_ENC_AMF0, x->kv[k].value, y->kv[k].value, 0));
        }
        FZ_CHECK(bytes_eq(x->handler ? x->handler : "", x->handler ? x->handler_len : 0,
                          y->handler ? y->handler : "", y->handler ? y->handler_len : 0));
        for (size_t k = 0; k < x->nargs; k++)
            if (small(x->args[k]))
                FZ_CHECK(fz_amf_same(AMF_ENC_AMF0, x->args[k], y->args[k], 0));
        if (!str_eq(x->code, y->code) || !str_eq(x->level, y->level))
            fprintf(stderr, "status '%s'/'%s' became '%s'/'%s'\n", x->code ? x->code : "",
                    x->level ? x->level : "", y->code ? y->code : "", y->level ? y->level : "");
        FZ_CHECK(str_eq(x->code, y->code) && str_eq(x->level, y->level));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (tight.max_events == 0) {
        tight = so_wire_default_limits;
        tight.max_events = 4;
        tight.max_pairs = 6;
        tight.max_args = 3;
        tight.max_value = 128;
        tight.amf.max_depth = 4;
        tight.amf.max_string = 32;
        tight.amf.max_elements = 8;
        tight.amf.max_refs = 8;
        tight.amf.max_total = 128;
    }
    uint8_t mode = data[0];
    uint8_t type = (mode & 1) ? SO_MSG_AMF3 : SO_MSG_AMF0;
    const so_wire_limits *lim = (mode & 2) ? &tight : NULL;
    /* an empty body arrives as (NULL, 0) from the chunk decoder */
    uint8_t *body = size > 1 ? fz_dup(data + 1, size - 1) : NULL;

    so_msg a;
    so_msg_init(&a);
    sh_error err = {0};
    int rc = so_wire_decode(type, body, size - 1, lim, &a, &err);
    if (rc != 0) {
        FZ_CHECK(rc < 0 && a.events == NULL && a.nevents == 0 && a.name == NULL);
        free(body);
        return 0;
    }
    FZ_CHECK(a.name != NULL && a.name_len <= 65535);
    if (lim)
        FZ_CHECK(a.nevents <= lim->max_events);

    sh_buf out;
    sh_buf_init(&out, 0);
    rc = so_wire_encode(&a, type, &out);
    FZ_CHECK(rc == 0 || rc == SH_EINVAL);
    if (rc == 0) {
        so_msg b;
        so_msg_init(&b);
        rc = so_wire_decode(type, out.data, out.len, NULL, &b, &err);
        if (rc != 0)
            fprintf(stderr, "re-decode: %d %s at %s offset %zu\n", rc, err.what ? err.what : "",
                    err.where ? err.where : "", err.offset);
        FZ_CHECK(rc == 0);
        check_same(&a, &b);
        so_msg_cleanup(&b);
    }
    sh_buf_cleanup(&out);
    so_msg_cleanup(&a);
    free(body);
    return 0;
}
