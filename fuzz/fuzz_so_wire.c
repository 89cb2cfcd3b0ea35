/* fuzz_so_wire.c - shared-object message bodies (so_wire_decode), types
 * 19 and 16.
 *
 * Input: mode byte, then the body.  Mode bit 0: type 16 (else 19); bit 1:
 * tight limits.
 * Properties: on failure the message is left empty; a body that decodes
 * holds no more memory than the budget by our own accounting (name, keys
 * and every value, values shared between raw AMF3 values once), and each
 * value's value_mem is what amf_value_mem finds in it; it encodes again
 * (so_wire_encode, same type) and decodes to the same message: name,
 * version, persistence, and every event with its keys, values (equal in
 * meaning, see fuzz_amf_util.h), handler, arguments, status code and
 * level.
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

/* What the decoded message holds by the amf_mem_block model, a lower
 * bound of what so_wire counted (arrays, tables and transient values
 * come on top): the name, the keys, and every value, with the blocks
 * values share counted once: through one array holding them all, less
 * what the same array holding nulls (which cost nothing) takes. */
static size_t held(const so_msg *m)
{
    size_t n = amf_mem_block(m->name_len + 1);
    amf_value *all = amf_strict_array_new(), *frame = amf_strict_array_new();
    FZ_CHECK(all && frame);
    for (size_t i = 0; i < m->nevents; i++) {
        const so_event *ev = &m->events[i];
        for (size_t k = 0; k < ev->nkv; k++) {
            n += amf_mem_block(ev->kv[k].key_len + 1);
            if (!ev->kv[k].value)
                continue;
            FZ_CHECK(ev->kv[k].value_mem == amf_value_mem(ev->kv[k].value));
            FZ_CHECK(amf_array_push(all, amf_ref(ev->kv[k].value)) == 0);
            FZ_CHECK(amf_array_push(frame, amf_null()) == 0);
        }
        for (size_t k = 0; k < ev->nargs; k++) {
            FZ_CHECK(amf_array_push(all, amf_ref(ev->args[k])) == 0);
            FZ_CHECK(amf_array_push(frame, amf_null()) == 0);
        }
    }
    n += amf_value_mem(all) - amf_value_mem(frame);
    amf_unref(all);
    amf_unref(frame);
    return n;
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
        tight.max_memory = 3000; /* a few values: the budget is reached often */
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
    size_t h = held(&a);
    if (h > (lim ? lim : &so_wire_default_limits)->max_memory)
        fprintf(stderr, "message holds %zu\n", h);
    FZ_CHECK(h <= (lim ? lim : &so_wire_default_limits)->max_memory);

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
