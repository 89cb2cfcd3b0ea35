/* fuzz_conn.c - a server-role rtmp_conn fed a valid simple handshake
 * (C0 C1 C2, made here) followed by arbitrary bytes: the chunk layer,
 * protocol control, user control and acknowledgements as a server sees
 * them.
 *
 * Input: mode byte, then the bytes after the handshake.  Mode:
 *   bit 0    tight limits (small messages, chunk sizes, few chunk streams)
 *   bits 1-7 feed split size (bits % 13 gives 1 << n), so every state is
 *            also entered from a partial read
 * Like the server, the harness answers commands it can decode (connect
 * gets the connect preamble and a _result that echoes the arguments; any
 * other command an _error) and changes its out chunk size once, so the
 * output paths run on peer-chosen values.  The output queue is drained
 * after every call.
 * Properties: consumed never exceeds what was fed, 0 consumes everything,
 * returned messages respect the message size limit.
 */
#include <string.h>

#include "fuzz_common.h"
#include "rtmp.h"

#define HS RTMP_HANDSHAKE_SIZE

static void on_command(rtmp_conn *c, const rtmp_msg *m, bool *changed_chunk)
{
    rtmp_cmd cmd;
    sh_error err = {0};
    if (rtmp_cmd_decode(m, NULL, &cmd, &err) != 0)
        return;
    bool amf3 = m->type == RTMP_MSG_COMMAND_AMF3;
    if (strcmp(cmd.name, "connect") == 0) {
        FZ_CHECK(rtmp_conn_send_connect_preamble(c) == 0);
        (void)rtmp_conn_send_cmd(c, 0, amf3, "_result", cmd.txid, cmd.cmd_obj, cmd.args,
                                 cmd.nargs);
    } else {
        amf_value *info = amf_string_cstr(cmd.name);
        FZ_CHECK(info != NULL);
        FZ_CHECK(rtmp_conn_send_cmd(c, m->stream_id, amf3, "_error", cmd.txid, NULL,
                                    &info, 1) == 0);
        amf_unref(info);
    }
    if (!*changed_chunk) {
        FZ_CHECK(rtmp_conn_set_out_chunk_size(c, 128 + (uint32_t)cmd.nargs * 1000) == 0);
        *changed_chunk = true;
    }
    rtmp_cmd_cleanup(&cmd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    size_t split = (size_t)1 << ((mode >> 1) % 13);

    rtmp_conn_config cfg;
    rtmp_conn_config_default(&cfg, RTMP_ROLE_SERVER);
    if (mode & 1) {
        cfg.limits.max_chunk_size = 512;
        cfg.limits.max_message_size = 1024;
        cfg.limits.max_chunk_streams = 3;
        cfg.limits.max_buffered = 2048;
        cfg.window_ack_size = 4096;
    }
    sh_outq q;
    sh_outq_init(&q);
    uint8_t random[HS];
    memset(random, 0x5A, sizeof(random));
    rtmp_conn *c = rtmp_conn_new(&cfg, &q, random, 1234);
    FZ_CHECK(c != NULL);

    /* valid simple handshake, then the fuzz bytes */
    size_t len = 1 + 2 * (size_t)HS + (size - 1);
    uint8_t *buf = malloc(len);
    FZ_CHECK(buf != NULL);
    buf[0] = 3;
    memset(buf + 1, 0, 2 * (size_t)HS);
    memcpy(buf + 1 + 2 * (size_t)HS, data + 1, size - 1);

    bool changed_chunk = false;
    size_t off = 0;
    int rc = 0;
    while (off < len) {
        size_t n = len - off < split ? len - off : split;
        if (off < 1 + 2 * (size_t)HS)
            n = 1 + 2 * (size_t)HS - off; /* the handshake in one piece (fuzz_handshake splits it) */
        uint8_t *piece = fz_dup(buf + off, n);
        size_t done = 0;
        while (done < n) {
            size_t used = 0;
            rtmp_msg m;
            sh_error err = {0};
            rc = rtmp_conn_feed(c, piece + done, n - done, &used, &m, &err);
            FZ_CHECK(used <= n - done);
            done += used;
            sh_outq_consume(&q, q.bytes);
            if (rc < 0)
                break;
            if (rc == 0) {
                FZ_CHECK(done == n);
                break;
            }
            FZ_CHECK(rc == 1);
            FZ_CHECK(m.len <= cfg.limits.max_message_size);
            if (m.type == RTMP_MSG_COMMAND_AMF0 || m.type == RTMP_MSG_COMMAND_AMF3)
                on_command(c, &m, &changed_chunk);
            sh_outq_consume(&q, q.bytes);
        }
        free(piece);
        off += done;
        if (rc < 0)
            break;
    }
    if (off >= 1 + 2 * (size_t)HS)
        FZ_CHECK(rtmp_conn_handshake_done(c));
    rtmp_conn_free(c);
    sh_outq_cleanup(&q);
    free(buf);
    return 0;
}
