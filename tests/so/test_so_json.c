/* test_so_json.c - the JSON form of shared-object messages (so/so_json.h):
 * server messages -> JSON -> client decode keep every key, name and value
 * (amf_equal), tagged keys, each cap exactly at and one past its limit,
 * malformed messages, the node pre-count. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amf_json.h"
#include "so_json.h"

/* Values of every kind the mapping has (docs/amf-json.md). */
static const char *const zoo[] = {
    "null", "true", "false", "0", "-1.5", "1e300", "9007199254740993", "\"\"",
    "\"caf\\u00e9 \\u20ac \\ud83d\\ude00\"", "[]", "{}", "[1,[2,[3]],{\"a\":null}]",
    "{\"b\":1,\"a\":2,\"b\":3}",
    "{\"$amf\":\"undefined\"}", "{\"$amf\":\"unsupported\"}",
    "{\"$amf\":\"int\",\"value\":-268435456}", "{\"$amf\":\"int\",\"value\":268435455}",
    "0.30000000000000004", "1.7976931348623157e308", "5e-324", "-2147483649", "2147483648",
    "{\"$amf\":\"number\",\"value\":\"NaN\"}", "{\"$amf\":\"number\",\"value\":\"Infinity\"}",
    "{\"$amf\":\"number\",\"value\":\"-Infinity\"}", "{\"$amf\":\"number\",\"value\":\"-0\"}",
    "{\"$amf\":\"string\",\"hex\":\"6100ff62\"}",
    "{\"$amf\":\"date\",\"ms\":1700000000123,\"tz\":-120}",
    "{\"$amf\":\"date\",\"ms\":{\"$amf\":\"number\",\"value\":\"NaN\"}}",
    "{\"$amf\":\"xmldoc\",\"text\":\"<a b='1'/>\"}", "{\"$amf\":\"xml\",\"text\":\"<x/>\"}",
    "{\"$amf\":\"bytes\",\"hex\":\"00ff7f80\"}", "{\"$amf\":\"bytes\",\"hex\":\"\"}",
    "{\"$amf\":\"object\",\"class\":\"com.example.Item\",\"members\":{\"id\":1,\"t\":\"v\"}}",
    "{\"$amf\":\"object\",\"class\":\"com.example.Mix\",\"dynamic\":true,\"sealed\":1,"
    "\"members\":{\"s\":1,\"d\":2}}",
    "{\"$amf\":\"object\",\"class\":\"flex.messaging.io.ArrayCollection\",\"external\":[1,\"a\"]}",
    "{\"$amf\":\"object\",\"members\":{\"$amf\":\"not a tag\"}}",
    "{\"$amf\":\"ecma\",\"count\":7,\"members\":{\"a\":1}}",
    "{\"$amf\":\"ecma\",\"members\":{\"a\":1},\"dense\":[true,null]}",
    "{\"$amf\":\"vector-int\",\"fixed\":true,\"items\":[-1,2,2147483647]}",
    "{\"$amf\":\"vector-uint\",\"fixed\":false,\"items\":[0,4294967295]}",
    "{\"$amf\":\"vector-double\",\"fixed\":false,\"items\":[0.5,{\"$amf\":\"number\",\"value\":\"-0\"}]}",
    "{\"$amf\":\"vector-object\",\"class\":\"com.T\",\"fixed\":false,\"items\":[null,{\"a\":1}]}",
    "{\"$amf\":\"dict\",\"weak\":true,\"entries\":[[\"k\",1],[{\"$amf\":\"int\",\"value\":2},\"v\"],"
    "[{\"o\":1},[1]]]}",
};
#define NZOO (sizeof(zoo) / sizeof(zoo[0]))

static amf_value *val(const char *json)
{
    amf_value *v = NULL;
    const char *why = NULL;
    cr_assert_eq(amf_json_parse(json, &v, &why), 0, "%s: %s", json, why ? why : "");
    return v;
}

/* Decodes JSON text as a client message; returns the rc. */
static int dec_text(const char *text, const so_wire_limits *lim, so_msg *m, sh_error *e)
{
    so_msg_init(m);
    cJSON *j = cJSON_Parse(text);
    cr_assert_not_null(j, "test JSON does not parse: %.200s", text);
    int rc = so_json_decode(j, lim, m, e);
    cJSON_Delete(j);
    return rc;
}

static void expect_rc(const char *text, const so_wire_limits *lim, int want)
{
    so_msg m;
    sh_error e = {0};
    int rc = dec_text(text, lim, &m, &e);
    cr_expect_eq(rc, want, "%.120s: rc %d (%s), want %d", text, rc, e.what ? e.what : "", want);
    if (want != 0)
        cr_expect_eq(m.nevents, 0, "a refused message leaves m empty");
    so_msg_cleanup(&m);
}

/* ---------------------------------------------------------------- round trips */

/* A server message with every value of the zoo, encoded as the engine
 * does (AMF0 body, then so_json_from_amf0), decoded as a client's: the
 * same keys and values in order. */
Test(so_json, server_body_to_client_decode)
{
    so_msg m;
    so_msg_init(&m);
    m.name = strdup("room/obj \xc3\xa9");
    m.name_len = strlen(m.name);
    m.version = 4294967295u;
    m.persistent = true;
    m.events = calloc(3, sizeof(*m.events));
    m.cap_events = 3;
    so_event *ch = &m.events[m.nevents++];
    ch->type = SO_EV_CHANGE;
    ch->kv = calloc(NZOO, sizeof(*ch->kv));
    for (size_t i = 0; i < NZOO; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%02zu", i);
        ch->kv[i].key = strdup(k);
        ch->kv[i].key_len = strlen(k);
        ch->kv[i].value = val(zoo[i]);
        ch->nkv++;
    }
    so_event *rm = &m.events[m.nevents++];
    rm->type = SO_EV_REMOVE;
    rm->kv = calloc(1, sizeof(*rm->kv));
    rm->kv[0].key = malloc(3);
    memcpy(rm->kv[0].key, "a\0b", 3);
    rm->kv[0].key_len = 3;
    rm->nkv = 1;
    so_event *snd = &m.events[m.nevents++];
    snd->type = SO_EV_SEND_MESSAGE;
    snd->handler = strdup("onMsg");
    snd->handler_len = 5;
    snd->args = calloc(NZOO, sizeof(*snd->args));
    for (size_t i = 0; i < NZOO; i++)
        snd->args[snd->nargs++] = val(zoo[i]);

    sh_buf body;
    sh_buf_init(&body, 1 << 20);
    cr_assert_eq(so_wire_encode(&m, SO_MSG_AMF0, &body), 0);
    sh_rcbuf *json = so_json_from_amf0(body.data, body.len, NULL);
    cr_assert_not_null(json);
    char *text = strndup((const char *)json->data, json->len);

    so_msg back;
    sh_error e = {0};
    cr_assert_eq(dec_text(text, NULL, &back, &e), 0, "%s", e.what ? e.what : "");
    cr_assert_eq(back.name_len, m.name_len);
    cr_assert(memcmp(back.name, m.name, m.name_len) == 0);
    cr_assert_eq(back.version, m.version);
    cr_assert(back.persistent);
    cr_assert_eq(back.nevents, 3);
    /* the server's change and remove read back as the client's requests */
    cr_assert_eq(back.events[0].type, SO_EV_REQUEST_CHANGE);
    cr_assert_eq(back.events[0].nkv, NZOO);
    for (size_t i = 0; i < NZOO; i++) {
        cr_expect_str_eq(back.events[0].kv[i].key, ch->kv[i].key);
        cr_expect(amf_equal(back.events[0].kv[i].value, ch->kv[i].value), "value %s", zoo[i]);
    }
    cr_assert_eq(back.events[1].type, SO_EV_REQUEST_REMOVE);
    cr_assert_eq(back.events[1].kv[0].key_len, 3);
    cr_assert(memcmp(back.events[1].kv[0].key, "a\0b", 3) == 0, "a key with a NUL survives");
    cr_assert_eq(back.events[2].type, SO_EV_SEND_MESSAGE);
    cr_assert_str_eq(back.events[2].handler, "onMsg");
    cr_assert_eq(back.events[2].nargs, NZOO);
    for (size_t i = 0; i < NZOO; i++)
        cr_expect(amf_equal(back.events[2].args[i], snd->args[i]), "arg %s", zoo[i]);

    /* encoding the decoded message again gives the same text */
    for (size_t i = 0; i < back.nevents; i++)
        back.events[i].type = back.events[i].type == SO_EV_REQUEST_CHANGE   ? SO_EV_CHANGE
                              : back.events[i].type == SO_EV_REQUEST_REMOVE ? SO_EV_REMOVE
                                                                            : back.events[i].type;
    sh_buf again;
    sh_buf_init(&again, 1 << 20);
    cr_assert_eq(so_json_encode(&back, &again), 0);
    cr_assert_eq(again.len, json->len);
    cr_assert(memcmp(again.data, json->data, json->len) == 0);

    sh_buf_cleanup(&again);
    so_msg_cleanup(&back);
    free(text);
    sh_rcbuf_unref(json);
    sh_buf_cleanup(&body);
    so_msg_cleanup(&m);
}

Test(so_json, every_event_type_encodes)
{
    static const struct {
        uint8_t type;
        const char *want;
    } cases[] = {
        {SO_EV_USE_SUCCESS, "{\"t\":\"use_success\"}"},
        {SO_EV_CLEAR, "{\"t\":\"clear\"}"},
        {SO_EV_SUCCESS, "{\"t\":\"success\",\"key\":\"k\"}"},
        {SO_EV_REMOVE, "{\"t\":\"remove\",\"key\":\"k\"}"},
        {SO_EV_STATUS, "{\"t\":\"status\",\"code\":\"SharedObject.NoWriteAccess\",\"level\":\"error\"}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        so_msg m;
        so_msg_init(&m);
        m.name = strdup("o");
        m.name_len = 1;
        m.version = 7;
        m.events = calloc(1, sizeof(*m.events));
        m.cap_events = 1;
        so_event *ev = &m.events[m.nevents++];
        ev->type = cases[i].type;
        if (ev->type == SO_EV_SUCCESS || ev->type == SO_EV_REMOVE) {
            ev->kv = calloc(1, sizeof(*ev->kv));
            ev->kv[0].key = strdup("k");
            ev->kv[0].key_len = 1;
            ev->nkv = 1;
        }
        if (ev->type == SO_EV_STATUS) {
            ev->code = strdup("SharedObject.NoWriteAccess");
            ev->level = strdup("error");
        }
        sh_buf out;
        sh_buf_init(&out, 4096);
        cr_assert_eq(so_json_encode(&m, &out), 0);
        char want[256];
        snprintf(want, sizeof(want),
                 "{\"op\":\"so\",\"name\":\"o\",\"version\":7,\"persistent\":false,\"events\":[%s]}",
                 cases[i].want);
        cr_expect_eq(out.len, strlen(want));
        cr_expect(memcmp(out.data, want, out.len) == 0, "%.*s != %s", (int)out.len,
                  (const char *)out.data, want);
        sh_buf_cleanup(&out);
        so_msg_cleanup(&m);
    }
}

/* Keys, names and handlers that are not UTF-8 text without NUL go tagged,
 * and read back byte for byte. */
Test(so_json, tagged_keys_names_handlers)
{
    const char *text =
        "{\"op\":\"so\",\"name\":{\"$amf\":\"string\",\"hex\":\"6e00ff\"},\"version\":3,"
        "\"events\":[{\"t\":\"change\",\"slots\":[[{\"$amf\":\"string\",\"hex\":\"c328\"},1],"
        "[{\"$amf\":\"string\",\"text\":\"plain\"},2]]},"
        "{\"t\":\"remove\",\"key\":{\"$amf\":\"string\",\"hex\":\"00\"}},"
        "{\"t\":\"send\",\"handler\":{\"$amf\":\"string\",\"hex\":\"68ff\"}}]}";
    so_msg m;
    sh_error e = {0};
    cr_assert_eq(dec_text(text, NULL, &m, &e), 0, "%s", e.what ? e.what : "");
    cr_assert_eq(m.name_len, 3);
    cr_assert(memcmp(m.name, "n\0\xff", 3) == 0);
    cr_assert_eq(m.events[0].kv[0].key_len, 2);
    cr_assert(memcmp(m.events[0].kv[0].key, "\xc3\x28", 2) == 0);
    cr_assert_str_eq(m.events[0].kv[1].key, "plain");
    cr_assert_eq(m.events[1].kv[0].key_len, 1);
    cr_assert_eq(m.events[1].kv[0].key[0], 0);
    cr_assert_eq(m.events[2].handler_len, 2);
    cr_assert(memcmp(m.events[2].handler, "h\xff", 2) == 0);

    /* and the encoder tags them again */
    for (size_t i = 0; i < m.nevents; i++)
        if (m.events[i].type == SO_EV_REQUEST_CHANGE)
            m.events[i].type = SO_EV_CHANGE;
        else if (m.events[i].type == SO_EV_REQUEST_REMOVE)
            m.events[i].type = SO_EV_REMOVE;
    sh_buf out;
    sh_buf_init(&out, 4096);
    cr_assert_eq(so_json_encode(&m, &out), 0);
    sh_buf_put_u8(&out, 0);
    const char *o = (const char *)out.data;
    cr_expect(strstr(o, "\"name\":{\"$amf\":\"string\",\"hex\":\"6e00ff\"}"), "%s", o);
    cr_expect(strstr(o, "[{\"$amf\":\"string\",\"hex\":\"c328\"},1]"), "%s", o);
    cr_expect(strstr(o, "[\"plain\",2]"), "%s", o);
    cr_expect(strstr(o, "\"handler\":{\"$amf\":\"string\",\"hex\":\"68ff\"}"), "%s", o);
    sh_buf_cleanup(&out);
    so_msg_cleanup(&m);
}

Test(so_json, defaults_and_unknown_events)
{
    so_msg m;
    sh_error e = {0};
    cr_assert_eq(dec_text("{\"name\":\"o\",\"events\":[{\"t\":\"use\"},{\"t\":\"later\",\"x\":1},"
                          "{\"t\":\"release\"}]}",
                          NULL, &m, &e),
                 0);
    cr_assert_eq(m.version, 0);
    cr_assert(!m.persistent);
    cr_assert_eq(m.flags, 0);
    cr_assert_eq(m.nevents, 3);
    cr_assert_eq(m.events[0].type, SO_EV_USE);
    cr_assert_eq(m.events[1].type, 0, "an unknown event is kept, type 0");
    cr_assert_eq(m.events[2].type, SO_EV_RELEASE);
    so_msg_cleanup(&m);
    cr_assert_eq(dec_text("{\"name\":\"o\",\"persistent\":true,\"version\":12,\"events\":[]}",
                          NULL, &m, &e),
                 0);
    cr_assert(m.persistent);
    cr_assert_eq(m.flags, SO_FLAG_PERSISTENT);
    cr_assert_eq(m.version, 12);
    cr_assert_eq(m.nevents, 0);
    so_msg_cleanup(&m);
}

/* ---------------------------------------------------------------- malformed */

Test(so_json, malformed)
{
    static const char *const bad[] = {
        "[]", "{\"name\":\"o\"}", "{\"name\":\"o\",\"events\":{}}", "{\"events\":[]}",
        "{\"name\":1,\"events\":[]}", "{\"name\":{\"$amf\":\"int\",\"value\":1},\"events\":[]}",
        "{\"name\":\"o\",\"version\":-1,\"events\":[]}",
        "{\"name\":\"o\",\"version\":1.5,\"events\":[]}",
        "{\"name\":\"o\",\"version\":4294967296,\"events\":[]}",
        "{\"name\":\"o\",\"version\":\"1\",\"events\":[]}",
        "{\"name\":\"o\",\"persistent\":1,\"events\":[]}",
        "{\"name\":\"o\",\"events\":[1]}", "{\"name\":\"o\",\"events\":[{}]}",
        "{\"name\":\"o\",\"events\":[{\"t\":5}]}",
        "{\"name\":\"o\",\"events\":[{\"t\":\"change\"}]}",
        "{\"name\":\"o\",\"events\":[{\"t\":\"change\",\"slots\":[]}]}",
        "{\"name\":\"o\",\"events\":[{\"t\":\"change\",\"slots\":[[\"k\"]]}]}",
        "{\"name\":\"o\",\"events\":[{\"t\":\"change\",\"slots\":[[\"k\",1,2]]}]}",
        "{\"name\":\"o\",\"events\":[{\"t\":\"change\",\"slots\":[[1,1]]}]}",
        "{\"name\":\"o\",\"events\":[{\"t\":\"change\",\"slots\":[\"k\"]}]}",
        "{\"name\":\"o\",\"events\":[{\"t\":\"change\",\"slots\":[[\"k\",{\"$amf\":\"nope\"}]]}]}",
        "{\"name\":\"o\",\"events\":[{\"t\":\"change\",\"slots\":[[\"k\",{\"$amf\":\"int\",\"value\":1.5}]]}]}",
        "{\"name\":\"o\",\"events\":[{\"t\":\"remove\"}]}",
        "{\"name\":\"o\",\"events\":[{\"t\":\"remove\",\"key\":null}]}",
        "{\"name\":\"o\",\"events\":[{\"t\":\"send\"}]}",
        "{\"name\":\"o\",\"events\":[{\"t\":\"send\",\"handler\":\"h\",\"args\":{}}]}",
        "{\"name\":\"o\",\"events\":[{\"t\":\"send\",\"handler\":\"h\",\"args\":[{\"$amf\":\"bytes\",\"hex\":\"0\"}]}]}",
        /* a good event, then a bad one: nothing is kept */
        "{\"name\":\"o\",\"events\":[{\"t\":\"change\",\"slots\":[[\"k\",1]]},{\"t\":\"remove\"}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_rc(bad[i], NULL, SH_EPROTO);
}

/* ---------------------------------------------------------------- caps */

static char *events_text(size_t n, const char *event)
{
    size_t el = strlen(event);
    char *t = malloc(64 + n * (el + 1));
    cr_assert_not_null(t);
    size_t k = (size_t)sprintf(t, "{\"name\":\"o\",\"events\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            t[k++] = ',';
        memcpy(t + k, event, el);
        k += el;
    }
    strcpy(t + k, "]}");
    return t;
}

Test(so_json, max_events)
{
    so_wire_limits l = so_wire_default_limits;
    l.max_events = 10;
    char *t = events_text(10, "{\"t\":\"use\"}");
    expect_rc(t, &l, 0);
    free(t);
    t = events_text(11, "{\"t\":\"use\"}");
    expect_rc(t, &l, SH_ELIMIT);
    free(t);
}

Test(so_json, max_pairs_across_events)
{
    so_wire_limits l = so_wire_default_limits;
    l.max_pairs = 4;
    expect_rc("{\"name\":\"o\",\"events\":[{\"t\":\"change\",\"slots\":[[\"a\",1],[\"b\",2]]},"
              "{\"t\":\"remove\",\"key\":\"c\"},{\"t\":\"change\",\"slots\":[[\"d\",1]]}]}",
              &l, 0);
    expect_rc("{\"name\":\"o\",\"events\":[{\"t\":\"change\",\"slots\":[[\"a\",1],[\"b\",2]]},"
              "{\"t\":\"remove\",\"key\":\"c\"},{\"t\":\"remove\",\"key\":\"d\"},"
              "{\"t\":\"remove\",\"key\":\"e\"}]}",
              &l, SH_ELIMIT);
    expect_rc("{\"name\":\"o\",\"events\":[{\"t\":\"change\",\"slots\":[[\"a\",1],[\"b\",2],"
              "[\"c\",3],[\"d\",4],[\"e\",5]]}]}",
              &l, SH_ELIMIT);
}

Test(so_json, max_args)
{
    so_wire_limits l = so_wire_default_limits;
    l.max_args = 3;
    expect_rc("{\"name\":\"o\",\"events\":[{\"t\":\"send\",\"handler\":\"h\",\"args\":[1,2,3]}]}",
              &l, 0);
    expect_rc("{\"name\":\"o\",\"events\":[{\"t\":\"send\",\"handler\":\"h\",\"args\":[1,2,3,4]}]}",
              &l, SH_ELIMIT);
}

/* {"name":"o","events":[{"t":"change","slots":[["k",<value>]]}]} */
static char *change_text(const char *value, const char *key)
{
    size_t n = strlen(value) + strlen(key) + 128;
    char *t = malloc(n);
    snprintf(t, n, "{\"name\":\"o\",\"events\":[{\"t\":\"change\",\"slots\":[[\"%s\",%s]]}]}",
             key, value);
    return t;
}

static char *nested(size_t depth)
{
    char *s = malloc(2 * depth + 2);
    size_t k = 0;
    for (size_t i = 0; i < depth; i++)
        s[k++] = '[';
    s[k++] = '1';
    for (size_t i = 0; i < depth; i++)
        s[k++] = ']';
    s[k] = '\0';
    return s;
}

/* A value is held to the same depth as an RTMP client's value: the
 * deepest one so_wire_decode takes passes, one level more is refused. */
Test(so_json, value_depth_as_rtmp)
{
    so_wire_limits l = so_wire_default_limits;
    l.amf.max_depth = 8;
    size_t ok_depth = 0;
    for (size_t d = 1; d < 20; d++) {
        /* what the AMF0 wire decoder takes under the same limits */
        char *v = nested(d);
        amf_value *av = val(v);
        sh_buf b;
        sh_buf_init(&b, 1 << 16);
        cr_assert_eq(so_wire_event_value(&b, NULL, av), 0);
        amf_dec *dec = amf_dec_new(&l.amf);
        amf_value *back = NULL;
        size_t used;
        bool wire_ok = amf_decode(dec, AMF_ENC_AMF0, b.data, b.len, &used, &back, NULL) == 0;
        amf_unref(back);
        amf_dec_free(dec);
        sh_buf_cleanup(&b);
        amf_unref(av);

        char *t = change_text(v, "k");
        expect_rc(t, &l, wire_ok ? 0 : SH_ELIMIT);
        if (wire_ok)
            ok_depth = d;
        free(t);
        free(v);
    }
    cr_assert(ok_depth >= 7 && ok_depth <= 8, "deepest value taken: %zu", ok_depth);
}

Test(so_json, value_string_and_elements)
{
    so_wire_limits l = so_wire_default_limits;
    l.amf.max_string = 100;
    l.amf.max_elements = 5;
    char s[300];
    memset(s, 'a', sizeof(s));
    char v[400];
    snprintf(v, sizeof(v), "\"%.100s\"", s);
    char *t = change_text(v, "k");
    expect_rc(t, &l, 0);
    free(t);
    snprintf(v, sizeof(v), "\"%.101s\"", s);
    t = change_text(v, "k");
    expect_rc(t, &l, SH_ELIMIT);
    free(t);
    t = change_text("[1,2,3,4,5]", "k");
    expect_rc(t, &l, 0);
    free(t);
    t = change_text("[1,2,3,4,5,6]", "k");
    expect_rc(t, &l, SH_ELIMIT);
    free(t);
    t = change_text("{\"$amf\":\"bytes\",\"hex\":\"" "00000000000000000000000000000000000000000000000000"
                    "00000000000000000000000000000000000000000000000000"
                    "00000000000000000000000000000000000000000000000000"
                    "00000000000000000000000000000000000000000000000000" "00\"}",
                    "k");
    expect_rc(t, &l, SH_ELIMIT); /* 101 bytes */
    free(t);
    /* a handler is a string too */
    snprintf(v, sizeof(v), "{\"name\":\"o\",\"events\":[{\"t\":\"send\",\"handler\":\"%.100s\"}]}", s);
    expect_rc(v, &l, 0);
    snprintf(v, sizeof(v), "{\"name\":\"o\",\"events\":[{\"t\":\"send\",\"handler\":\"%.101s\"}]}", s);
    expect_rc(v, &l, SH_ELIMIT);
}

/* max_value: the wire bytes of one value (an AMF0 string of n bytes
 * takes 3 + n). */
Test(so_json, value_bytes)
{
    so_wire_limits l = so_wire_default_limits;
    l.max_value = 1000;
    char *s = malloc(1100);
    memset(s, 'b', 1100);
    char *v = malloc(1200);
    snprintf(v, 1200, "\"%.997s\"", s);
    char *t = change_text(v, "k");
    expect_rc(t, &l, 0);
    free(t);
    snprintf(v, 1200, "\"%.998s\"", s);
    t = change_text(v, "k");
    expect_rc(t, &l, SH_ELIMIT);
    free(t);
    free(v);
    free(s);
}

Test(so_json, name_and_key_length)
{
    char *k = malloc(70000);
    memset(k, 'k', 70000);
    char *t = malloc(140100);
    snprintf(t, 140100, "{\"name\":\"%.65535s\",\"events\":[{\"t\":\"change\",\"slots\":[[\"%.65535s\",1]]}]}",
             k, k);
    expect_rc(t, NULL, 0);
    snprintf(t, 140100, "{\"name\":\"%.65536s\",\"events\":[]}", k);
    expect_rc(t, NULL, SH_EPROTO);
    snprintf(t, 140100, "{\"name\":\"o\",\"events\":[{\"t\":\"remove\",\"key\":\"%.65536s\"}]}", k);
    expect_rc(t, NULL, SH_EPROTO);
    free(t);
    free(k);
}

Test(so_json, value_null_limits_are_defaults)
{
    cJSON *j = cJSON_Parse("{\"$amf\":\"int\",\"value\":5}");
    amf_value *v = NULL;
    cr_assert_eq(so_json_value(j, NULL, &v, NULL), 0);
    cr_assert_eq(amf_type_of(v), AMF_INTEGER);
    amf_unref(v);
    cJSON_Delete(j);
    j = cJSON_Parse("{\"$amf\":\"int\",\"value\":\"x\"}");
    sh_error e = {0};
    cr_assert_eq(so_json_value(j, NULL, &v, &e), SH_EPROTO);
    cr_assert_null(v);
    cr_assert_not_null(e.what);
    cJSON_Delete(j);
}

Test(so_json, from_amf0_refuses_garbage)
{
    static const uint8_t junk[] = {0x00, 0x05, 'a', 'b'};
    cr_assert_null(so_json_from_amf0(junk, sizeof(junk), NULL));
    cr_assert_null(so_json_from_amf0(junk, 0, NULL));
}

/* ---------------------------------------------------------------- node count */

static size_t tree_nodes(const cJSON *j)
{
    size_t n = 1;
    for (const cJSON *c = j->child; c; c = c->next)
        n += tree_nodes(c);
    return n;
}

Test(so_json, count_nodes_bounds_the_tree)
{
    static const char *const texts[] = {
        "1", "\"\"", "[]", "{}", "[1,2,3]", "{\"a\":1,\"b\":[1,{\"c\":null}]}",
        "[\"a,b[c{d\",\"\\\"],[\",\"\\\\\",[]]", "[[[[[]]]]]", "{\"a\":{\"b\":{\"c\":{}}}}",
        "  [ 1 , 2 ]  ", "[\"\\u005b\\u002c\"]", "[0,0,0,0,0,0,0,0,0,0]",
        "{\"op\":\"so\",\"events\":[{\"t\":\"change\",\"slots\":[[\"k\",[1,2]]]}]}",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        cJSON *j = cJSON_Parse(texts[i]);
        cr_assert_not_null(j, "%s", texts[i]);
        size_t real = tree_nodes(j);
        size_t bound = amf_json_node_bound(texts[i], strlen(texts[i]));
        cr_expect_geq(bound, real, "%s: bound %zu < %zu nodes", texts[i], bound, real);
        cJSON_Delete(j);
    }
    cr_expect_eq(amf_json_node_bound("[1,2,3]", 7), 3 + 1);
    cr_expect_eq(amf_json_node_bound("\"[,{\"", 5), 1, "brackets in a string count nothing");
    cr_expect_eq(amf_json_node_bound("", 0), 1);
}

/* Every JSON value zoo member: the bound holds for the encoded message
 * text the server itself sends. */
Test(so_json, count_nodes_bounds_zoo)
{
    for (size_t i = 0; i < NZOO; i++) {
        cJSON *j = cJSON_Parse(zoo[i]);
        cr_assert_not_null(j);
        cr_expect_geq(amf_json_node_bound(zoo[i], strlen(zoo[i])), tree_nodes(j), "%s", zoo[i]);
        cJSON_Delete(j);
    }
}
