/* Command message tests (types 20 and 17). */
#include "util.h"

static amf_value *connect_obj(void)
{
    amf_value *o = amf_object_new(NULL);
    cr_assert(o);
    cr_assert_eq(amf_object_set_cstr(o, "app", amf_string_cstr("live")), 0);
    cr_assert_eq(amf_object_set_cstr(o, "objectEncoding", amf_number(3)), 0);
    cr_assert_eq(amf_object_set_cstr(o, "fpad", amf_bool(false)), 0);
    return o;
}

static void check_decoded(const rtmp_cmd *c, const amf_value *obj, amf_value *const *args, size_t nargs)
{
    cr_assert_str_eq(c->name, "connect");
    cr_assert_eq(c->txid, 1.0);
    cr_assert(amf_equal(c->cmd_obj, obj));
    cr_assert_eq(c->nargs, nargs);
    for (size_t i = 0; i < nargs; i++)
        cr_assert(amf_equal(c->args[i], args[i]), "arg %zu", i);
}

Test(cmd, round_trip_amf0_and_amf3)
{
    amf_value *obj = connect_obj();
    amf_value *args[3] = {amf_string_cstr("arg"), amf_number(5), connect_obj()};
    for (int amf3 = 0; amf3 <= 1; amf3++) {
        sh_buf b;
        sh_buf_init(&b, 0);
        cr_assert_eq(rtmp_cmd_encode(&b, amf3, "connect", 1, obj, args, 3), 0);
        if (amf3)
            cr_assert_eq(b.data[0], 0, "type 17 body starts with the format byte");
        else
            cr_assert_eq(b.data[0], AMF0_STRING);
        rtmp_msg m = {amf3 ? RTMP_MSG_COMMAND_AMF3 : RTMP_MSG_COMMAND_AMF0, 0, 0, 3, b.data, b.len};
        rtmp_cmd c;
        sh_error err = {0};
        cr_assert_eq(rtmp_cmd_decode(&m, NULL, &c, &err), 0, "%s", err.what);
        check_decoded(&c, obj, args, 3);
        rtmp_cmd_cleanup(&c);

        /* every truncated body is refused (never "need more": the message is whole) */
        for (size_t n = 0; n < b.len; n++) {
            rtmp_msg t = m;
            t.len = n;
            int rc = rtmp_cmd_decode(&t, NULL, &c, &err);
            if (rc == 0)
                rtmp_cmd_cleanup(&c); /* a prefix that ends on a value boundary is valid */
            else
                cr_assert(rc != SH_EMORE && rc < 0);
        }
        sh_buf_cleanup(&b);
    }
    amf_unref(obj);
    for (int i = 0; i < 3; i++)
        amf_unref(args[i]);
}

Test(cmd, type17_variants)
{
    sh_buf b;
    sh_buf_init(&b, 0);
    amf_value *obj = connect_obj();
    cr_assert_eq(rtmp_cmd_encode(&b, false, "connect", 1, obj, NULL, 0), 0);
    /* leading 3, and no leading byte at all */
    for (int lead = -1; lead <= 3; lead += 4) {
        sh_buf t;
        sh_buf_init(&t, 0);
        if (lead >= 0)
            sh_buf_put_u8(&t, (uint8_t)lead);
        sh_buf_append(&t, b.data, b.len);
        rtmp_msg m = {RTMP_MSG_COMMAND_AMF3, 0, 0, 3, t.data, t.len};
        rtmp_cmd c;
        cr_assert_eq(rtmp_cmd_decode(&m, NULL, &c, NULL), 0, "lead %d", lead);
        check_decoded(&c, obj, NULL, 0);
        rtmp_cmd_cleanup(&c);
        sh_buf_cleanup(&t);
    }
    /* an argument switched to AMF3 with 0x11 */
    sh_buf t;
    sh_buf_init(&t, 0);
    sh_buf_put_u8(&t, 0);
    sh_buf_append(&t, b.data, b.len);
    const uint8_t amf3_str[] = {AMF0_AVMPLUS, AMF3_STRING, (3 << 1) | 1, 'a', 'b', 'c'};
    sh_buf_append(&t, amf3_str, sizeof(amf3_str));
    rtmp_msg m = {RTMP_MSG_COMMAND_AMF3, 0, 0, 3, t.data, t.len};
    rtmp_cmd c;
    sh_error err = {0};
    cr_assert_eq(rtmp_cmd_decode(&m, NULL, &c, &err), 0, "%s", err.what);
    cr_assert_eq(c.nargs, 1);
    cr_assert(amf_is_string(c.args[0], "abc"));
    rtmp_cmd_cleanup(&c);
    sh_buf_cleanup(&t);
    sh_buf_cleanup(&b);
    amf_unref(obj);
}

Test(cmd, name_only_and_errors)
{
    sh_buf b;
    sh_buf_init(&b, 0);
    amf_value *s = amf_string_cstr("onBWDone");
    cr_assert_eq(amf_encode1(AMF_ENC_AMF0, s, &b), 0);
    rtmp_msg m = {RTMP_MSG_COMMAND_AMF0, 0, 0, 3, b.data, b.len};
    rtmp_cmd c;
    cr_assert_eq(rtmp_cmd_decode(&m, NULL, &c, NULL), 0);
    cr_assert_str_eq(c.name, "onBWDone");
    cr_assert_eq(c.txid, 0.0);
    cr_assert_eq(amf_type_of(c.cmd_obj), AMF_NULL);
    cr_assert_eq(c.nargs, 0);
    rtmp_cmd_cleanup(&c);
    amf_unref(s);
    sh_buf_cleanup(&b);

    /* the name must be a string */
    const uint8_t num[] = {AMF0_NUMBER, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0};
    rtmp_msg bad = {RTMP_MSG_COMMAND_AMF0, 0, 0, 3, num, sizeof(num)};
    sh_error err = {0};
    cr_assert_eq(rtmp_cmd_decode(&bad, NULL, &c, &err), SH_EPROTO);
    cr_assert(err.what);
    /* wrong message type */
    bad.type = RTMP_MSG_AUDIO;
    cr_assert_eq(rtmp_cmd_decode(&bad, NULL, &c, &err), SH_EINVAL);
    /* empty body */
    rtmp_msg empty = {RTMP_MSG_COMMAND_AMF0, 0, 0, 3, NULL, 0};
    cr_assert_lt(rtmp_cmd_decode(&empty, NULL, &c, &err), 0);
}

Test(cmd, argument_limit)
{
    for (size_t n = RTMP_MAX_CMD_ARGS; n <= RTMP_MAX_CMD_ARGS + 1; n++) {
        amf_value *args[RTMP_MAX_CMD_ARGS + 1];
        for (size_t i = 0; i < n; i++)
            args[i] = amf_number((double)i);
        sh_buf b;
        sh_buf_init(&b, 0);
        cr_assert_eq(rtmp_cmd_encode(&b, false, "many", 2, NULL, args, n), 0);
        rtmp_msg m = {RTMP_MSG_COMMAND_AMF0, 0, 0, 3, b.data, b.len};
        rtmp_cmd c;
        int rc = rtmp_cmd_decode(&m, NULL, &c, NULL);
        if (n == RTMP_MAX_CMD_ARGS) {
            cr_assert_eq(rc, 0);
            cr_assert_eq(c.nargs, n);
            cr_assert_eq(amf_as_number(c.args[n - 1]), (double)(n - 1));
            rtmp_cmd_cleanup(&c);
        } else {
            cr_assert_eq(rc, SH_ELIMIT);
        }
        for (size_t i = 0; i < n; i++)
            amf_unref(args[i]);
        sh_buf_cleanup(&b);
    }
}

/* Over a pair of connections. */
Test(cmd, conn_send_cmd_round_trip)
{
    sh_outq qc, qs;
    sh_outq_init(&qc);
    sh_outq_init(&qs);
    rtmp_conn_config cc, sc;
    rtmp_conn_config_default(&cc, RTMP_ROLE_CLIENT);
    rtmp_conn_config_default(&sc, RTMP_ROLE_SERVER);
    uint8_t rnd[RTMP_HANDSHAKE_SIZE] = {1, 2, 3};
    rtmp_conn *cl = rtmp_conn_new(&cc, &qc, rnd, 0);
    rtmp_conn *sv = rtmp_conn_new(&sc, &qs, rnd, 0);
    amf_value *obj = connect_obj();
    amf_value *arg = amf_string_cstr("arg");
    cr_assert_eq(rtmp_conn_send_cmd(cl, 0, false, "connect", 1, obj, &arg, 1), 0);
    cr_assert_eq(rtmp_conn_send_cmd(cl, 1, true, "connect", 1, obj, &arg, 1), 0);
    size_t got = 0;
    for (int round = 0; round < 10; round++) {
        sh_outq *qs_[2] = {&qc, &qs};
        rtmp_conn *to[2] = {sv, cl};
        for (int k = 0; k < 2; k++) {
            while (qs_[k]->bytes) {
                struct iovec iov;
                sh_outq_iov(qs_[k], &iov, 1);
                size_t len = iov.iov_len, at = 0;
                uint8_t *tmp = malloc(len);
                memcpy(tmp, iov.iov_base, len);
                sh_outq_consume(qs_[k], len);
                while (at < len) {
                    size_t used;
                    rtmp_msg m;
                    sh_error err = {0};
                    int rc = rtmp_conn_feed(to[k], tmp + at, len - at, &used, &m, &err);
                    cr_assert_geq(rc, 0, "%s", err.what);
                    at += used;
                    if (rc == 1) {
                        cr_assert_eq(k, 0);
                        cr_assert_eq(m.type, got == 0 ? RTMP_MSG_COMMAND_AMF0 : RTMP_MSG_COMMAND_AMF3);
                        cr_assert_eq(m.stream_id, (uint32_t)got);
                        cr_assert_eq(m.csid, RTMP_CSID_COMMAND);
                        rtmp_cmd c;
                        cr_assert_eq(rtmp_cmd_decode(&m, &amf_default_limits, &c, &err), 0);
                        check_decoded(&c, obj, &arg, 1);
                        rtmp_cmd_cleanup(&c);
                        got++;
                    }
                }
                free(tmp);
            }
        }
    }
    cr_assert_eq(got, 2);
    amf_unref(obj);
    amf_unref(arg);
    rtmp_conn_free(cl);
    rtmp_conn_free(sv);
    sh_outq_cleanup(&qc);
    sh_outq_cleanup(&qs);
}
