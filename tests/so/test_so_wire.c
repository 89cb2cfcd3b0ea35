/* Unit tests of the shared-object wire codec (so_wire.h). */
#include "so_test_util.h"

/* A hand-written type-19 body: name "ab", version 7, persistent, events
 * Use, RequestChange("k" = 1.0), RequestRemove("z"), SendMessage("hi", true). */
static const uint8_t vec19[] = {
    0x00, 0x02, 'a', 'b',
    0x00, 0x00, 0x00, 0x07,
    0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x00,
    0x03, 0x00, 0x00, 0x00, 0x0C, 0x00, 0x01, 'k', 0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0,
    0x0A, 0x00, 0x00, 0x00, 0x03, 0x00, 0x01, 'z',
    0x06, 0x00, 0x00, 0x00, 0x07, 0x02, 0x00, 0x02, 'h', 'i', 0x01, 0x01,
};

static void check_vec(const so_msg *m)
{
    cr_assert_str_eq(m->name, "ab");
    cr_assert_eq(m->name_len, 2);
    cr_assert_eq(m->version, 7);
    cr_assert(m->persistent);
    cr_assert_eq(m->nevents, 4);
    cr_assert_eq(m->events[0].type, SO_EV_USE);
    cr_assert_eq(m->events[1].type, SO_EV_REQUEST_CHANGE);
    cr_assert_eq(m->events[1].nkv, 1);
    cr_assert_str_eq(m->events[1].kv[0].key, "k");
    cr_assert_eq(amf_as_number(m->events[1].kv[0].value), 1.0);
    cr_assert_eq(m->events[1].kv[0].value_len, 9);
    cr_assert_eq(m->events[2].type, SO_EV_REQUEST_REMOVE);
    cr_assert_str_eq(m->events[2].kv[0].key, "z");
    cr_assert_eq(m->events[3].type, SO_EV_SEND_MESSAGE);
    cr_assert_str_eq(m->events[3].handler, "hi");
    cr_assert_eq(m->events[3].nargs, 1);
    cr_assert(amf_as_bool(m->events[3].args[0]));
}

Test(so_wire, decode_vector_type19)
{
    so_msg m;
    so_msg_init(&m);
    cr_assert_eq(so_wire_decode(SO_MSG_AMF0, vec19, sizeof(vec19), NULL, &m, NULL), 0);
    check_vec(&m);
    /* re-encoding gives the same bytes */
    sh_buf b;
    sh_buf_init(&b, 1 << 20);
    cr_assert_eq(so_wire_encode(&m, SO_MSG_AMF0, &b), 0);
    cr_assert_eq(b.len, sizeof(vec19));
    cr_assert_arr_eq(b.data, vec19, sizeof(vec19));
    sh_buf_cleanup(&b);
    so_msg_cleanup(&m);
}

/* A copy lives on its own: same content, strings its own, values shared. */
Test(so_wire, msg_copy_is_independent)
{
    so_msg m, c;
    so_msg_init(&m);
    cr_assert_eq(so_wire_decode(SO_MSG_AMF0, vec19, sizeof(vec19), NULL, &m, NULL), 0);
    cr_assert_eq(so_msg_copy(&c, &m), 0);
    cr_assert_neq(c.name, m.name);
    cr_assert_neq(c.events[1].kv[0].key, m.events[1].kv[0].key);
    cr_assert_eq(c.events[1].kv[0].value, m.events[1].kv[0].value, "values are shared");
    so_msg_cleanup(&m);
    check_vec(&c);
    sh_buf a;
    sh_buf_init(&a, SH_BUF_MAX_DEFAULT);
    cr_assert_eq(so_wire_encode(&c, SO_MSG_AMF0, &a), 0);
    cr_assert_eq(a.len, sizeof(vec19));
    cr_assert_eq(memcmp(a.data, vec19, a.len), 0, "encodes to the original body");
    sh_buf_cleanup(&a);
    so_msg_cleanup(&c);
}

Test(so_wire, type16_leading_byte)
{
    uint8_t body[sizeof(vec19) + 1];
    for (int lead = 0; lead < 5; lead++) {
        body[0] = (uint8_t)lead;
        memcpy(body + 1, vec19, sizeof(vec19));
        so_msg m;
        so_msg_init(&m);
        sh_error err = {0};
        int rc = so_wire_decode(SO_MSG_AMF3, body, sizeof(body), NULL, &m, &err);
        if (lead == 0 || lead == 3) {
            cr_assert_eq(rc, 0);
            check_vec(&m);
            sh_buf b;
            sh_buf_init(&b, 1 << 20);
            cr_assert_eq(so_wire_encode(&m, SO_MSG_AMF3, &b), 0);
            cr_assert_eq(b.data[0], 0, "type 16 is written with a 0 leading byte");
            cr_assert_arr_eq(b.data + 1, vec19, sizeof(vec19));
            sh_buf_cleanup(&b);
        } else {
            cr_assert_eq(rc, SH_EPROTO);
            cr_assert_not_null(err.what);
        }
        so_msg_cleanup(&m);
    }
}

Test(so_wire, flags_bit_two_only)
{
    uint8_t body[sizeof(vec19)];
    memcpy(body, vec19, sizeof(body));
    body[11] = 0x30; /* 48: other bits, not persistent */
    so_msg m;
    so_msg_init(&m);
    cr_assert_eq(so_wire_decode(SO_MSG_AMF0, body, sizeof(body), NULL, &m, NULL), 0);
    cr_assert_not(m.persistent);
    cr_assert_eq(m.flags, 0x30);
    so_msg_cleanup(&m);
}

/* Every truncated prefix is either a valid shorter message (ends on an
 * event boundary) or SH_EMORE / SH_EPROTO; never a crash.  Each prefix is
 * copied into a buffer of exactly its size so ASan sees over-reads. */
Test(so_wire, truncated_prefixes)
{
    static const size_t bounds[] = {16, 21, 38, 46, sizeof(vec19)};
    for (size_t n = 0; n < sizeof(vec19); n++) {
        uint8_t *p = malloc(n ? n : 1);
        memcpy(p, vec19, n);
        so_msg m;
        so_msg_init(&m);
        int rc = so_wire_decode(SO_MSG_AMF0, p, n, NULL, &m, NULL);
        bool boundary = false;
        for (size_t i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++)
            boundary |= bounds[i] == n;
        if (boundary)
            cr_assert_eq(rc, 0, "prefix %zu", n);
        else
            cr_assert(rc == SH_EMORE || rc == SH_EPROTO, "prefix %zu gave %d", n, rc);
        so_msg_cleanup(&m);
        free(p);
    }
}

Test(so_wire, every_value_type_round_trips_both_msg_types)
{
    amf_value *vals[] = {
        amf_number(3.5), amf_bool(true), amf_string_cstr("héllo"), amf_null(),
        amf_undefined(), tv_bytes(), tv_typed(), tv_vec(), amf_date(1e12, 0),
    };
    size_t n = sizeof(vals) / sizeof(vals[0]);
    const char *keys[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i"};
    for (int k = 0; k < 2; k++) {
        uint8_t mt = k ? SO_MSG_AMF3 : SO_MSG_AMF0;
        sh_buf b;
        sh_buf_init(&b, 1 << 20);
        cr_assert_eq(so_wire_client_request_change(&b, mt, "room/obj", 42, true, n, keys, vals), 0);
        so_msg m;
        so_msg_init(&m);
        sh_error err = {0};
        cr_assert_eq(so_wire_decode(mt, b.data, b.len, NULL, &m, &err), 0, "%s", err.what);
        cr_assert_str_eq(m.name, "room/obj");
        cr_assert_eq(m.version, 42);
        cr_assert_eq(m.nevents, 1);
        cr_assert_eq(m.events[0].nkv, n);
        for (size_t i = 0; i < n; i++) {
            cr_assert_str_eq(m.events[0].kv[i].key, keys[i]);
            cr_assert(amf_equal(m.events[0].kv[i].value, vals[i]), "value %zu", i);
        }
        so_msg_cleanup(&m);
        sh_buf_cleanup(&b);
    }
    for (size_t i = 0; i < n; i++)
        amf_unref(vals[i]);
}

Test(so_wire, server_events_round_trip)
{
    sh_buf b;
    sh_buf_init(&b, 1 << 20);
    amf_value *v = amf_number(9);
    const char *k = "key";
    so_wire_put_header(&b, SO_MSG_AMF0, "o", 1, 5, false);
    so_wire_put_empty(&b, SO_EV_USE_SUCCESS);
    so_wire_put_empty(&b, SO_EV_CLEAR);
    so_wire_put_pairs(&b, SO_EV_CHANGE, NULL, 1, &k, NULL, &v);
    so_wire_put_key(&b, SO_EV_SUCCESS, "s", 1);
    so_wire_put_key(&b, SO_EV_REMOVE, "r", 1);
    so_wire_put_status(&b, "SharedObject.NoWriteAccess", "error");
    so_wire_put_send(&b, NULL, "h", 1, 1, &v);
    cr_assert_not(b.failed);
    so_msg m;
    so_msg_init(&m);
    cr_assert_eq(so_wire_decode(SO_MSG_AMF0, b.data, b.len, NULL, &m, NULL), 0);
    cr_assert_eq(m.nevents, 7);
    cr_assert_eq(m.events[0].type, SO_EV_USE_SUCCESS);
    cr_assert_eq(m.events[1].type, SO_EV_CLEAR);
    cr_assert_eq(m.events[2].type, SO_EV_CHANGE);
    cr_assert_eq(amf_as_number(m.events[2].kv[0].value), 9);
    cr_assert_str_eq(m.events[3].kv[0].key, "s");
    cr_assert_eq(m.events[4].type, SO_EV_REMOVE);
    cr_assert_str_eq(m.events[5].code, "SharedObject.NoWriteAccess");
    cr_assert_str_eq(m.events[5].level, "error");
    cr_assert_str_eq(m.events[6].handler, "h");
    /* encode again, identical */
    sh_buf b2;
    sh_buf_init(&b2, 1 << 20);
    cr_assert_eq(so_wire_encode(&m, SO_MSG_AMF0, &b2), 0);
    cr_assert_eq(b2.len, b.len);
    cr_assert_arr_eq(b2.data, b.data, b.len);
    sh_buf_cleanup(&b2);
    so_msg_cleanup(&m);
    sh_buf_cleanup(&b);
    amf_unref(v);
}

Test(so_wire, unknown_event_kept_and_skipped)
{
    uint8_t body[] = {0x00, 0x01, 'x', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
                      0x63, 0, 0, 0, 2, 0xAA, 0xBB, /* type 99, 2 bytes */
                      0x01, 0, 0, 0, 0};
    so_msg m;
    so_msg_init(&m);
    cr_assert_eq(so_wire_decode(SO_MSG_AMF0, body, sizeof(body), NULL, &m, NULL), 0);
    cr_assert_eq(m.nevents, 2);
    cr_assert_eq(m.events[0].type, 99);
    cr_assert_eq(m.events[1].type, SO_EV_USE);
    so_msg_cleanup(&m);
}

Test(so_wire, malformed_events)
{
    /* value overruns its event: RequestChange length 4 but the number needs 9 */
    uint8_t a[] = {0, 1, 'x', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
                   0x03, 0, 0, 0, 4, 0, 1, 'k', 0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0};
    /* RequestRemove with an empty body */
    uint8_t b[] = {0, 1, 'x', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x0A, 0, 0, 0, 0};
    /* SendMessage whose handler is a number */
    uint8_t c[] = {0, 1, 'x', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
                   0x06, 0, 0, 0, 9, 0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0};
    /* RequestChange with no pair */
    uint8_t d[] = {0, 1, 'x', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x03, 0, 0, 0, 0};
    /* event length beyond the body */
    uint8_t e[] = {0, 1, 'x', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xFF, 0xFF, 0xFF, 0xFF};
    struct { const uint8_t *p; size_t n; int want; } cases[] = {
        {a, sizeof(a), SH_EPROTO}, {b, sizeof(b), SH_EPROTO}, {c, sizeof(c), SH_EPROTO},
        {d, sizeof(d), SH_EPROTO}, {e, sizeof(e), SH_EMORE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        so_msg m;
        so_msg_init(&m);
        sh_error err = {0};
        int rc = so_wire_decode(SO_MSG_AMF0, cases[i].p, cases[i].n, NULL, &m, &err);
        cr_assert_eq(rc, cases[i].want, "case %zu: %d", i, rc);
        cr_assert_not_null(err.what, "case %zu has a description", i);
        cr_assert_null(m.events);
        cr_assert_null(m.name);
    }
}

Test(so_wire, limits)
{
    so_wire_limits lim = so_wire_default_limits;
    lim.max_events = 3;
    lim.max_pairs = 2;
    lim.max_args = 1;
    lim.max_value = 8;
    sh_buf b;
    sh_buf_init(&b, 1 << 20);
    so_msg m;
    so_msg_init(&m);
    sh_error err;
    /* 3 events ok, 4 refused */
    so_wire_put_header(&b, SO_MSG_AMF0, "x", 1, 1, false);
    for (int i = 0; i < 3; i++)
        so_wire_put_empty(&b, SO_EV_USE);
    cr_assert_eq(so_wire_decode(SO_MSG_AMF0, b.data, b.len, &lim, &m, &err), 0);
    so_msg_cleanup(&m);
    so_wire_put_empty(&b, SO_EV_USE);
    cr_assert_eq(so_wire_decode(SO_MSG_AMF0, b.data, b.len, &lim, &m, &err), SH_ELIMIT);
    /* pairs */
    sh_buf_reset(&b);
    amf_value *vals[3] = {amf_bool(true), amf_bool(true), amf_bool(true)};
    const char *keys[3] = {"a", "b", "c"};
    so_wire_client_request_change(&b, SO_MSG_AMF0, "x", 1, false, 2, keys, vals);
    cr_assert_eq(so_wire_decode(SO_MSG_AMF0, b.data, b.len, &lim, &m, &err), 0);
    so_msg_cleanup(&m);
    sh_buf_reset(&b);
    so_wire_client_request_change(&b, SO_MSG_AMF0, "x", 1, false, 3, keys, vals);
    cr_assert_eq(so_wire_decode(SO_MSG_AMF0, b.data, b.len, &lim, &m, &err), SH_ELIMIT);
    /* args */
    sh_buf_reset(&b);
    so_wire_client_send(&b, SO_MSG_AMF0, "x", 1, false, "h", 1, vals);
    cr_assert_eq(so_wire_decode(SO_MSG_AMF0, b.data, b.len, &lim, &m, &err), 0);
    so_msg_cleanup(&m);
    sh_buf_reset(&b);
    so_wire_client_send(&b, SO_MSG_AMF0, "x", 1, false, "h", 2, vals);
    cr_assert_eq(so_wire_decode(SO_MSG_AMF0, b.data, b.len, &lim, &m, &err), SH_ELIMIT);
    /* value bytes: a 9-byte number passes max_value 9, not 8 */
    sh_buf_reset(&b);
    amf_value *num = amf_number(1);
    so_wire_client_request_change(&b, SO_MSG_AMF0, "x", 1, false, 1, keys, &num);
    int rc = so_wire_decode(SO_MSG_AMF0, b.data, b.len, &lim, &m, &err);
    cr_assert(rc == SH_ELIMIT || rc == SH_EPROTO, "rc %d", rc);
    so_msg_cleanup(&m);
    lim.max_value = 9;
    lim.amf.max_total = 9;
    cr_assert_eq(so_wire_decode(SO_MSG_AMF0, b.data, b.len, &lim, &m, &err), 0);
    so_msg_cleanup(&m);
    amf_unref(num);
    for (int i = 0; i < 3; i++)
        amf_unref(vals[i]);
    sh_buf_cleanup(&b);
}

/* Random garbage and random mutations of valid bodies never crash. */
Test(so_wire, garbage_never_crashes)
{
    uint32_t seed = 12345;
    uint8_t buf[256];
    for (int iter = 0; iter < 20000; iter++) {
        size_t n;
        if (iter % 2) {
            n = sizeof(vec19);
            memcpy(buf, vec19, n);
            for (int k = 0; k < 3; k++) {
                seed = seed * 1103515245u + 12345u;
                buf[(seed >> 8) % n] = (uint8_t)(seed >> 16);
            }
        } else {
            seed = seed * 1103515245u + 12345u;
            n = (seed >> 8) % sizeof(buf);
            for (size_t i = 0; i < n; i++) {
                seed = seed * 1103515245u + 12345u;
                buf[i] = (uint8_t)(seed >> 16);
            }
        }
        uint8_t *p = malloc(n ? n : 1);
        memcpy(p, buf, n);
        so_msg m;
        so_msg_init(&m);
        int rc = so_wire_decode(iter % 3 ? SO_MSG_AMF0 : SO_MSG_AMF3, p, n, NULL, &m, NULL);
        cr_assert(rc <= 0);
        so_msg_cleanup(&m);
        free(p);
    }
}
