/* rtmp_cmd.c - command message bodies (spec 7.1.1, 7.2) to and from AMF.
 *
 * Type 20 bodies are AMF0 values: name (string), transaction id (number),
 * command object (object or null), then arguments.  Type 17 bodies start
 * with one format byte (0, or 3 as Red5 accepts) and continue as AMF0
 * values, any of which may switch to AMF3 with the 0x11 marker (the AMF0
 * decoder handles that switch).  A type 17 body that starts directly with
 * an AMF0 string marker is accepted too.
 *
 * We write type 17 bodies as the 0 byte followed by AMF0 values; our AMF0
 * encoder switches to AMF3 by itself for values only AMF3 can carry.
 * Every decoder we know of (FFmpeg, librtmp, Red5, Flash) accepts this.
 */
#include "rtmp.h"

#include <stdlib.h>
#include <string.h>

void rtmp_cmd_cleanup(rtmp_cmd *c)
{
    if (!c)
        return;
    free(c->name);
    amf_unref(c->cmd_obj);
    for (size_t i = 0; i < c->nargs; i++)
        amf_unref(c->args[i]);
    free(c->args);
    memset(c, 0, sizeof(*c));
}

static int cmd_value(amf_dec *d, const uint8_t *p, size_t n, size_t *off, amf_value **v,
                     sh_error *err)
{
    size_t used = 0;
    int rc = amf_decode(d, AMF_ENC_AMF0, p + *off, n - *off, &used, v, err);
    if (rc == SH_EMORE)
        return SH_FAIL(err, SH_EPROTO, "command: truncated value", *off);
    if (rc < 0) {
        if (err)
            err->offset += *off;
        return rc;
    }
    *off += used;
    return 0;
}

int rtmp_cmd_decode(const rtmp_msg *m, const amf_limits *limits, rtmp_cmd *out, sh_error *err)
{
    memset(out, 0, sizeof(*out));
    if (m->type != RTMP_MSG_COMMAND_AMF0 && m->type != RTMP_MSG_COMMAND_AMF3)
        return SH_FAIL(err, SH_EINVAL, "command: not a command message", 0);
    static const uint8_t none[1];
    const uint8_t *p = m->data ? m->data : none; /* no arithmetic on NULL */
    size_t n = m->len, off = 0;
    if (m->type == RTMP_MSG_COMMAND_AMF3 && n > 0 && (p[0] == 0 || p[0] == 3))
        off = 1;

    amf_dec *d = amf_dec_new(limits);
    if (!d)
        return SH_FAIL(err, SH_ENOMEM, "command: out of memory", 0);
    amf_value *v = NULL;
    int rc = cmd_value(d, p, n, &off, &v, err);
    if (rc)
        goto fail;
    size_t slen = 0;
    const char *s = amf_type_of(v) == AMF_STRING ? amf_as_string(v, &slen) : NULL;
    if (!s || memchr(s, 0, slen)) {
        rc = SH_FAIL(err, SH_EPROTO, "command: name is not a string", 0);
        goto fail;
    }
    out->name = malloc(slen + 1);
    if (!out->name) {
        rc = SH_FAIL(err, SH_ENOMEM, "command: out of memory", 0);
        goto fail;
    }
    memcpy(out->name, s, slen);
    out->name[slen] = '\0';
    amf_unref(v);
    v = NULL;

    /* Some senders stop after the name (no transaction id, no object). */
    if (off < n) {
        rc = cmd_value(d, p, n, &off, &v, err);
        if (rc)
            goto fail;
        amf_type t = amf_type_of(v);
        if (t != AMF_NUMBER && t != AMF_INTEGER) {
            rc = SH_FAIL(err, SH_EPROTO, "command: transaction id is not a number", off);
            goto fail;
        }
        out->txid = amf_as_number(v);
        amf_unref(v);
        v = NULL;
    }
    if (off < n) {
        rc = cmd_value(d, p, n, &off, &out->cmd_obj, err);
        if (rc)
            goto fail;
    } else {
        out->cmd_obj = amf_null();
        if (!out->cmd_obj) {
            rc = SH_FAIL(err, SH_ENOMEM, "command: out of memory", 0);
            goto fail;
        }
    }
    while (off < n) {
        if (out->nargs >= RTMP_MAX_CMD_ARGS) {
            rc = SH_FAIL(err, SH_ELIMIT, "command: too many arguments", off);
            goto fail;
        }
        if (!out->args) {
            out->args = calloc(RTMP_MAX_CMD_ARGS, sizeof(*out->args));
            if (!out->args) {
                rc = SH_FAIL(err, SH_ENOMEM, "command: out of memory", off);
                goto fail;
            }
        }
        rc = cmd_value(d, p, n, &off, &out->args[out->nargs], err);
        if (rc)
            goto fail;
        out->nargs++;
    }
    amf_dec_free(d);
    return 0;
fail:
    amf_unref(v);
    amf_dec_free(d);
    rtmp_cmd_cleanup(out);
    return rc;
}

int rtmp_cmd_encode(sh_buf *out, bool amf3, const char *name, double txid,
                    const amf_value *cmd_obj, amf_value *const *args, size_t nargs)
{
    if (!out || !name || (nargs && !args))
        return SH_EINVAL;
    amf_enc *e = amf_enc_new();
    if (!e)
        return SH_ENOMEM;
    int rc = 0;
    if (amf3)
        rc = sh_buf_put_u8(out, 0);
    amf_value *tmp = NULL;
    if (rc == 0) {
        tmp = amf_string_cstr(name);
        rc = tmp ? amf_encode(e, AMF_ENC_AMF0, tmp, out) : SH_ENOMEM;
        amf_unref(tmp);
    }
    if (rc == 0) {
        tmp = amf_number(txid);
        rc = tmp ? amf_encode(e, AMF_ENC_AMF0, tmp, out) : SH_ENOMEM;
        amf_unref(tmp);
    }
    if (rc == 0) {
        if (cmd_obj) {
            rc = amf_encode(e, AMF_ENC_AMF0, cmd_obj, out);
        } else {
            tmp = amf_null();
            rc = tmp ? amf_encode(e, AMF_ENC_AMF0, tmp, out) : SH_ENOMEM;
            amf_unref(tmp);
        }
    }
    for (size_t i = 0; rc == 0 && i < nargs; i++) {
        if (args[i]) {
            rc = amf_encode(e, AMF_ENC_AMF0, args[i], out);
        } else {
            tmp = amf_null();
            rc = tmp ? amf_encode(e, AMF_ENC_AMF0, tmp, out) : SH_ENOMEM;
            amf_unref(tmp);
        }
    }
    amf_enc_free(e);
    if (rc == 0 && out->failed)
        rc = SH_ENOMEM;
    return rc;
}

/* ---- commands ---- */

int rtmp_conn_send_cmd(rtmp_conn *c, uint32_t sid, bool amf3, const char *name,
                       double txid, const amf_value *cmd_obj,
                       amf_value *const *args, size_t nargs)
{
    sh_buf body;
    sh_buf_init(&body, (size_t)0xFFFFFF);
    int rc = rtmp_cmd_encode(&body, amf3, name, txid, cmd_obj, args, nargs);
    if (rc == 0) {
        rtmp_msg m = {amf3 ? RTMP_MSG_COMMAND_AMF3 : RTMP_MSG_COMMAND_AMF0, sid, 0,
                      RTMP_CSID_COMMAND, body.data, body.len};
        rc = rtmp_conn_send(c, &m);
    }
    sh_buf_cleanup(&body);
    return rc;
}
