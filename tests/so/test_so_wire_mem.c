/* test_so_wire_mem.c - so_wire: the memory a decoded message holds
 * (so_kv.value_mem, so_wire_limits.max_memory), values whose AMF0 form
 * would multiply a shared string, and the raw AMF3 value form of type-16
 * messages (so_wire.h). */
#include "so_test_util.h"

/* ---- body builder ---- */

typedef struct body {
    uint8_t b[1 << 18];
    size_t n;
    size_t mark;
} body;

static void put(body *w, const void *p, size_t n)
{
    cr_assert_leq(w->n + n, sizeof(w->b));
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void put_u8(body *w, uint8_t v) { put(w, &v, 1); }

static void put_u16(body *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 2);
}

static void put_u32(body *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 4);
}

static void header(body *w, int lead, const char *name)
{
    w->n = 0;
    if (lead >= 0)
        put_u8(w, (uint8_t)lead);
    put_u16(w, (uint16_t)strlen(name));
    put(w, name, strlen(name));
    put_u32(w, 1);
    put_u32(w, 0);
    put_u32(w, 0);
}

static void event_begin(body *w, uint8_t type)
{
    put_u8(w, type);
    w->mark = w->n;
    put_u32(w, 0);
}

static void event_end(body *w)
{
    uint32_t len = (uint32_t)(w->n - w->mark - 4);
    w->b[w->mark] = (uint8_t)(len >> 24);
    w->b[w->mark + 1] = (uint8_t)(len >> 16);
    w->b[w->mark + 2] = (uint8_t)(len >> 8);
    w->b[w->mark + 3] = (uint8_t)len;
}

static void key(body *w, const char *k)
{
    put_u16(w, (uint16_t)strlen(k));
    put(w, k, strlen(k));
}

static int decode(uint8_t type, const body *w, const so_wire_limits *lim, so_msg *m,
                  sh_error *err)
{
    so_msg_init(m);
    return so_wire_decode(type, w->b, w->n, lim, m, err);
}

/* Every value's value_mem is what it holds. */
static void check_mems(const so_msg *m)
{
    for (size_t i = 0; i < m->nevents; i++)
        for (size_t k = 0; k < m->events[i].nkv; k++)
            if (m->events[i].kv[k].value)
                cr_assert_eq(m->events[i].kv[k].value_mem,
                             amf_value_mem(m->events[i].kv[k].value), "event %zu pair %zu", i,
                             k);
}

/* The message encodes again (AMF0 form) and decodes to equal values. */
static void check_reencodes(const so_msg *m, uint8_t type)
{
    sh_buf b;
    sh_buf_init(&b, 1 << 24);
    cr_assert_eq(so_wire_encode(m, type, &b), 0);
    so_msg back;
    so_msg_init(&back);
    cr_assert_eq(so_wire_decode(type, b.data, b.len, NULL, &back, NULL), 0);
    cr_assert_eq(back.nevents, m->nevents);
    for (size_t i = 0; i < m->nevents; i++) {
        cr_assert_eq(back.events[i].nkv, m->events[i].nkv);
        for (size_t k = 0; k < m->events[i].nkv; k++)
            cr_assert(amf_equal(back.events[i].kv[k].value, m->events[i].kv[k].value));
        cr_assert_eq(back.events[i].nargs, m->events[i].nargs);
        for (size_t k = 0; k < m->events[i].nargs; k++)
            cr_assert(amf_equal(back.events[i].args[k], m->events[i].args[k]));
    }
    so_msg_cleanup(&back);
    sh_buf_cleanup(&b);
}

/* ==== value_mem ==== */

Test(so_wire_mem, value_mem_is_what_the_value_holds)
{
    amf_value *vals[4] = {amf_number(2), amf_string_cstr("some text"), tv_typed(), amf_null()};
    amf_value *arr = amf_strict_array_new();
    for (int i = 0; i < 100; i++)
        amf_array_push(arr, amf_integer(i));
    amf_value *all[5] = {vals[0], vals[1], vals[2], vals[3], arr};
    const char *keys[5] = {"n", "s", "t", "z", "a"};
    for (int type = 16; type <= 19; type += 3) {
        sh_buf b;
        sh_buf_init(&b, 1 << 20);
        cr_assert_eq(so_wire_client_request_change(&b, (uint8_t)type, "o", 1, false, 5, keys, all),
                     0);
        so_msg m;
        so_msg_init(&m);
        cr_assert_eq(so_wire_decode((uint8_t)type, b.data, b.len, NULL, &m, NULL), 0);
        check_mems(&m);
        cr_assert_eq(m.events[0].kv[0].value_mem, 32);
        cr_assert_eq(m.events[0].kv[3].value_mem, 0);
        cr_assert_gt(m.events[0].kv[4].value_mem, 100 * 32);
        so_msg_cleanup(&m);
        sh_buf_cleanup(&b);
    }
    for (int i = 0; i < 5; i++)
        amf_unref(all[i]);
}

/* AMF3 array: one inline string of len bytes, then n - 1 references. */
static void put_refs3(body *w, uint32_t n, size_t len)
{
    uint32_t u = n << 1 | 1;
    put_u8(w, AMF3_ARRAY);
    cr_assert_lt(u, 0x4000);
    put_u8(w, (uint8_t)(u >> 7 | 0x80));
    put_u8(w, u & 0x7f);
    put_u8(w, 0x01);
    put_u8(w, AMF3_STRING);
    uint32_t l = (uint32_t)len << 1 | 1;
    cr_assert_lt(l, 0x200000);
    put_u8(w, (uint8_t)(l >> 14 | 0x80));
    put_u8(w, (uint8_t)((l >> 7 & 0x7f) | 0x80));
    put_u8(w, l & 0x7f);
    for (size_t i = 0; i < len; i++)
        put_u8(w, 's');
    for (uint32_t i = 1; i < n; i++) {
        put_u8(w, AMF3_STRING);
        put_u8(w, 0x00);
    }
}

Test(so_wire_mem, shared_string_value_stays_small)
{
    /* the input as a slot value: 0x11 + 4,000 references to a 64
     * KiB string; it decodes to one string and 4,000 pointers */
    static body w;
    header(&w, -1, "o");
    event_begin(&w, SO_EV_REQUEST_CHANGE);
    key(&w, "k");
    put_u8(&w, AMF0_AVMPLUS);
    put_refs3(&w, 4000, 65536);
    event_end(&w);
    so_msg m;
    cr_assert_eq(decode(SO_MSG_AMF0, &w, NULL, &m, NULL), 0);
    check_mems(&m);
    size_t mem = m.events[0].kv[0].value_mem;
    cr_assert_lt(mem, 65536 + 4096 * 8 + 1024, "holds %zu", mem);
    /* and writing it again keeps it small: AMF0 would repeat the string
     * 4,000 times, so the value goes out as 0x11 + AMF3 */
    sh_buf out;
    sh_buf_init(&out, SH_BUF_MAX_DEFAULT);
    cr_assert_eq(so_wire_event_value(&out, NULL, m.events[0].kv[0].value), 0);
    cr_assert_eq(out.data[0], AMF0_AVMPLUS);
    cr_assert_lt(out.len, 65536 + 4 * 4000);
    amf_value *back = NULL;
    size_t used = 0;
    cr_assert_eq(amf_decode1(AMF_ENC_AMF0, out.data, out.len, NULL, &used, &back, NULL), 0);
    cr_assert(amf_equal(back, m.events[0].kv[0].value));
    amf_unref(back);
    sh_buf_cleanup(&out);
    so_msg_cleanup(&m);
}

Test(so_wire_mem, amf0_form_kept_when_it_fits)
{
    /* a value without shared strings is still written in AMF0 */
    amf_value *o = amf_object_new(NULL);
    amf_object_set_cstr(o, "a", amf_string_cstr("x"));
    amf_object_set_cstr(o, "b", amf_number(1));
    sh_buf out;
    sh_buf_init(&out, 1 << 20);
    cr_assert_eq(so_wire_event_value(&out, NULL, o), 0);
    cr_assert_eq(out.data[0], AMF0_OBJECT);
    sh_buf_cleanup(&out);
    amf_unref(o);
}

/* ==== the message budget ==== */

/* The smallest max_memory w decodes under. */
static size_t message_need(uint8_t type, const body *w)
{
    so_wire_limits lim = so_wire_default_limits;
    size_t lo = 1, hi = (size_t)64 << 20;
    so_msg m;
    lim.max_memory = hi;
    cr_assert_eq(decode(type, w, &lim, &m, NULL), 0);
    so_msg_cleanup(&m);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        lim.max_memory = mid;
        int rc = decode(type, w, &lim, &m, NULL);
        so_msg_cleanup(&m);
        if (rc == 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

Test(so_wire_mem, message_budget_at_and_one_past)
{
    static body w;
    header(&w, -1, "room/object");
    event_begin(&w, SO_EV_USE);
    event_end(&w);
    event_begin(&w, SO_EV_REQUEST_CHANGE);
    for (int i = 0; i < 20; i++) {
        char k[16];
        snprintf(k, sizeof(k), "key%d", i);
        key(&w, k);
        uint8_t str[] = {AMF0_STRING, 0, 5, 'h', 'e', 'l', 'l', 'o'};
        put(&w, str, sizeof(str));
    }
    event_end(&w);
    event_begin(&w, SO_EV_SEND_MESSAGE);
    uint8_t send[] = {AMF0_STRING, 0, 2, 'o', 'n', AMF0_NUMBER, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0};
    put(&w, send, sizeof(send));
    event_end(&w);
    event_begin(&w, SO_EV_REQUEST_REMOVE);
    key(&w, "key3");
    event_end(&w);

    size_t need = message_need(SO_MSG_AMF0, &w);
    /* names, keys, arrays and 20 strings at the least */
    cr_assert_gt(need, 20 * (48 + 32));
    so_wire_limits lim = so_wire_default_limits;
    lim.max_memory = need;
    so_msg m;
    cr_assert_eq(decode(SO_MSG_AMF0, &w, &lim, &m, NULL), 0);
    so_msg_cleanup(&m);
    lim.max_memory = need - 1;
    sh_error err = {0};
    cr_assert_eq(decode(SO_MSG_AMF0, &w, &lim, &m, &err), SH_ELIMIT);
    cr_assert_null(m.events);
    cr_assert(strstr(err.what, "max_memory"), "%s", err.what);
}

Test(so_wire_mem, one_value_within_the_message_budget)
{
    /* 3 values of 65,000 AMF0 nulls, each holding 512 KiB: a message
     * budget for two of them refuses the third */
    static body w;
    header(&w, -1, "o");
    event_begin(&w, SO_EV_REQUEST_CHANGE);
    for (int i = 0; i < 3; i++) {
        char k[8];
        snprintf(k, sizeof(k), "n%d", i);
        key(&w, k);
        uint8_t hdr[] = {AMF0_STRICT_ARRAY, 0x00, 0x00, 0xfd, 0xe8};
        put(&w, hdr, sizeof(hdr));
        for (int j = 0; j < 65000; j++)
            put_u8(&w, AMF0_NULL);
    }
    event_end(&w);
    so_msg m;
    cr_assert_eq(decode(SO_MSG_AMF0, &w, NULL, &m, NULL), 0);
    check_mems(&m);
    size_t one = m.events[0].kv[0].value_mem;
    cr_assert_lt(one, 65536 * 8 + 256);
    so_msg_cleanup(&m);
    so_wire_limits lim = so_wire_default_limits;
    lim.max_memory = 2 * one + 4096;
    sh_error err = {0};
    cr_assert_eq(decode(SO_MSG_AMF0, &w, &lim, &m, &err), SH_ELIMIT);
    /* a value's own budget (amf.max_memory) is one value's, not the message's */
    lim = so_wire_default_limits;
    lim.amf.max_memory = one - 1;
    cr_assert_eq(decode(SO_MSG_AMF0, &w, &lim, &m, &err), SH_ELIMIT);
    lim.amf.max_memory = one + 2048;
    cr_assert_eq(decode(SO_MSG_AMF0, &w, &lim, &m, &err), 0);
    so_msg_cleanup(&m);
}

/* ==== raw AMF3 values in type-16 messages ==== */

/* RequestChange {i: 5 (AMF3 integer), s: "hello", t: pt{x:1,y:"a"},
 * r: "hello" again (a reference into the message's string table), a:
 * [true, null]} in raw AMF3. */
static void raw_amf3_change(body *w, int lead)
{
    header(w, lead, "o");
    event_begin(w, SO_EV_REQUEST_CHANGE);
    key(w, "i");
    uint8_t i5[] = {AMF3_INTEGER, 0x05};
    put(w, i5, sizeof(i5));
    key(w, "s");
    uint8_t hello[] = {AMF3_STRING, 0x0B, 'h', 'e', 'l', 'l', 'o'};
    put(w, hello, sizeof(hello));
    key(w, "t");
    uint8_t typed[] = {0x0A, 0x23, 0x05, 'p', 't', 0x03, 'x', 0x03, 'y',
                       0x04, 0x01, 0x06, 0x03, 'a'};
    put(w, typed, sizeof(typed));
    key(w, "r");
    uint8_t ref[] = {AMF3_STRING, 0x00};
    put(w, ref, sizeof(ref));
    key(w, "a");
    uint8_t arr[] = {AMF3_ARRAY, 0x05, 0x01, AMF3_TRUE, AMF3_NULL};
    put(w, arr, sizeof(arr));
    event_end(w);
}

static void check_raw_change(const so_msg *m)
{
    cr_assert_eq(m->nevents, 1);
    const so_event *ev = &m->events[0];
    cr_assert_eq(ev->type, SO_EV_REQUEST_CHANGE);
    cr_assert_eq(ev->nkv, 5);
    cr_assert_eq(amf_type_of(ev->kv[0].value), AMF_INTEGER);
    cr_assert_eq(amf_as_number(ev->kv[0].value), 5);
    cr_assert_eq(ev->kv[0].value_len, 2);
    cr_assert(amf_is_string(ev->kv[1].value, "hello"));
    amf_value *t = tv_typed();
    cr_assert(amf_equal(ev->kv[2].value, t));
    amf_unref(t);
    cr_assert(amf_is_string(ev->kv[3].value, "hello"));
    cr_assert_eq(ev->kv[3].value, ev->kv[1].value, "the reference is the same value");
    cr_assert_eq(amf_array_len(ev->kv[4].value), 2);
    cr_assert(amf_as_bool(amf_array_at(ev->kv[4].value, 0)));
    check_mems(m);
}

Test(so_wire_mem, raw_amf3_values_after_leading_0_and_3)
{
    static body w;
    for (int lead = 0; lead <= 3; lead += 3) {
        raw_amf3_change(&w, lead);
        so_msg m;
        sh_error err = {0};
        cr_assert_eq(decode(SO_MSG_AMF3, &w, NULL, &m, &err), 0, "lead %d: %s", lead,
                     err.what ? err.what : "");
        check_raw_change(&m);
        check_reencodes(&m, SO_MSG_AMF3);
        check_reencodes(&m, SO_MSG_AMF0);
        so_msg_cleanup(&m);
        /* every truncation of the event is refused, never misread */
        for (size_t cut = w.mark + 4; cut < w.n; cut++) {
            body t = w;
            t.n = cut;
            event_end(&t);
            int rc = decode(SO_MSG_AMF3, &t, NULL, &m, NULL);
            if (rc == 0) {
                /* a cut between two pairs is a valid shorter event */
                cr_assert_lt(m.events[0].nkv, 5);
                check_mems(&m);
            }
            so_msg_cleanup(&m);
        }
    }
}

Test(so_wire_mem, type19_has_only_the_amf0_form)
{
    static body w;
    raw_amf3_change(&w, -1);
    so_msg m;
    sh_error err = {0};
    int rc = decode(SO_MSG_AMF0, &w, NULL, &m, &err);
    cr_assert_lt(rc, 0);
    /* the AMF0 reading's error: 0x04 is AMF0's reserved movieclip marker */
    cr_assert_eq(rc, SH_EUNSUPPORTED, "%d %s", rc, err.what);
    cr_assert_null(m.events);
}

Test(so_wire_mem, forms_are_chosen_per_event)
{
    /* event 1 AMF0 (a number), event 2 raw AMF3, event 3 AMF0 again, and
     * a SendMessage with an AMF0 handler and raw AMF3 arguments (Red5) */
    static body w;
    header(&w, 0, "o");
    event_begin(&w, SO_EV_REQUEST_CHANGE);
    key(&w, "a");
    uint8_t num[] = {AMF0_NUMBER, 0x40, 0x00, 0, 0, 0, 0, 0, 0}; /* 2.0 */
    put(&w, num, sizeof(num));
    event_end(&w);
    event_begin(&w, SO_EV_REQUEST_CHANGE);
    key(&w, "b");
    uint8_t i7[] = {AMF3_INTEGER, 0x07};
    put(&w, i7, sizeof(i7));
    event_end(&w);
    event_begin(&w, SO_EV_REQUEST_CHANGE);
    key(&w, "c");
    uint8_t s[] = {AMF0_STRING, 0, 1, 'c'};
    put(&w, s, sizeof(s));
    event_end(&w);
    event_begin(&w, SO_EV_SEND_MESSAGE);
    uint8_t h[] = {AMF0_STRING, 0, 2, 'o', 'n'};
    put(&w, h, sizeof(h));
    uint8_t args[] = {AMF3_STRING, 0x05, 'h', 'i', AMF3_INTEGER, 0x01};
    put(&w, args, sizeof(args));
    event_end(&w);
    so_msg m;
    sh_error err = {0};
    cr_assert_eq(decode(SO_MSG_AMF3, &w, NULL, &m, &err), 0, "%s", err.what ? err.what : "");
    cr_assert_eq(m.nevents, 4);
    cr_assert_eq(amf_type_of(m.events[0].kv[0].value), AMF_NUMBER);
    cr_assert_eq(amf_type_of(m.events[1].kv[0].value), AMF_INTEGER);
    cr_assert_eq(amf_as_number(m.events[1].kv[0].value), 7);
    cr_assert(amf_is_string(m.events[2].kv[0].value, "c"));
    cr_assert_str_eq(m.events[3].handler, "on");
    cr_assert_eq(m.events[3].nargs, 2);
    cr_assert(amf_is_string(m.events[3].args[0], "hi"));
    cr_assert_eq(amf_as_number(m.events[3].args[1]), 1);
    check_mems(&m);
    check_reencodes(&m, SO_MSG_AMF3);
    so_msg_cleanup(&m);
}

Test(so_wire_mem, neither_form_reports_the_amf0_error)
{
    /* 09 00: AMF0's object-end marker, and an AMF3 array whose U29 refers
     * into an empty object table */
    static body w;
    header(&w, 0, "o");
    event_begin(&w, SO_EV_REQUEST_CHANGE);
    key(&w, "k");
    uint8_t bad[] = {AMF3_ARRAY, 0x00};
    put(&w, bad, sizeof(bad));
    event_end(&w);
    so_msg m;
    sh_error err = {0};
    cr_assert_eq(decode(SO_MSG_AMF3, &w, NULL, &m, &err), SH_EPROTO);
    cr_assert_str_eq(err.what, "AMF0 object-end marker outside an object");
    cr_assert_null(m.events);
    cr_assert_null(m.name);
    /* AMF0 objects nested past max_depth: the limit is what is reported,
     * whatever the AMF3 misreading of the same bytes runs into */
    header(&w, 0, "o");
    event_begin(&w, SO_EV_REQUEST_CHANGE);
    key(&w, "k");
    for (int i = 0; i < 6; i++) {
        uint8_t o[] = {AMF0_OBJECT, 0, 2, 'i', 'n'};
        put(&w, o, sizeof(o));
    }
    put_u8(&w, AMF0_NULL);
    for (int i = 0; i < 6; i++) {
        uint8_t end[] = {0, 0, AMF0_OBJECT_END};
        put(&w, end, sizeof(end));
    }
    event_end(&w);
    so_wire_limits lim = so_wire_default_limits;
    lim.amf.max_depth = 5;
    err = (sh_error){0};
    cr_assert_eq(decode(SO_MSG_AMF3, &w, &lim, &m, &err), SH_ELIMIT);
    cr_assert_str_eq(err.what, "values nested deeper than max_depth");
    lim.amf.max_depth = 6;
    cr_assert_eq(decode(SO_MSG_AMF3, &w, &lim, &m, &err), 0);
    so_msg_cleanup(&m);
}

Test(so_wire_mem, raw_amf3_limits_still_hold)
{
    /* the raw AMF3 reading has the same limits: an AMF3 array of 20
     * elements under max_elements 10 is refused */
    static body w;
    header(&w, 0, "o");
    event_begin(&w, SO_EV_REQUEST_CHANGE);
    key(&w, "k");
    put_u8(&w, AMF3_ARRAY);
    put_u8(&w, 20 << 1 | 1);
    put_u8(&w, 0x01);
    for (int i = 0; i < 20; i++)
        put_u8(&w, AMF3_NULL);
    event_end(&w);
    so_wire_limits lim = so_wire_default_limits;
    so_msg m;
    cr_assert_eq(decode(SO_MSG_AMF3, &w, &lim, &m, NULL), 0);
    cr_assert_eq(amf_array_len(m.events[0].kv[0].value), 20);
    so_msg_cleanup(&m);
    lim.amf.max_elements = 10;
    cr_assert_lt(decode(SO_MSG_AMF3, &w, &lim, &m, NULL), 0);
    cr_assert_null(m.events);
    /* and the memory budget: the reference table spans the message, so
     * the message's budget bounds the raw AMF3 context too */
    static body r;
    header(&r, 0, "o");
    event_begin(&r, SO_EV_REQUEST_CHANGE);
    for (int i = 0; i < 4; i++) {
        char k[4] = {'k', (char)('0' + i), 0, 0};
        key(&r, k);
        put_refs3(&r, 1000, 4000);
    }
    event_end(&r);
    size_t need = message_need(SO_MSG_AMF3, &r);
    lim = so_wire_default_limits;
    lim.max_memory = need;
    cr_assert_eq(decode(SO_MSG_AMF3, &r, &lim, &m, NULL), 0);
    check_mems(&m);
    so_msg_cleanup(&m);
    /* one byte less fails: the raw AMF3 reading runs out of budget (the
     * error reported is the AMF0 reading's, see so_wire.h) */
    lim.max_memory = need - 1;
    cr_assert_lt(decode(SO_MSG_AMF3, &r, &lim, &m, NULL), 0);
    cr_assert_null(m.events);
}
