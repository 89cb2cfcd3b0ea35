/* test_sohub_client.c - sohub's own RTMP client side (rtmp_conn in client
 * role, digest handshake) against the sohub-server binary, for what the
 * stock clients do not send: an AMF3 client (type 17 commands,
 * objectEncoding 3) gets type 17 replies and objectEncoding 3 in the
 * connect info; createStream ids are capped by max_streams; play and
 * publish get error onStatus on their stream; a command before connect
 * closes the connection. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "amf.h"
#include "harness.h"
#include "rtmp.h"

typedef struct client {
    int fd;
    sh_outq out;
    rtmp_conn *rc;
    uint8_t in[65536];
    size_t in_len, in_off;
} client;

static int client_flush(client *c)
{
    struct iovec iov[16];
    while (c->out.bytes > 0) {
        size_t n = sh_outq_iov(&c->out, iov, 16);
        size_t total = 0;
        for (size_t i = 0; i < n; i++) {
            if (e2e_send_all(c->fd, iov[i].iov_base, iov[i].iov_len) != 0)
                return -1;
            total += iov[i].iov_len;
        }
        sh_outq_consume(&c->out, total);
    }
    return 0;
}

static int client_open(client *c, int port)
{
    memset(c, 0, sizeof(*c));
    c->fd = e2e_tcp_connect(port);
    if (c->fd < 0)
        return -1;
    sh_outq_init(&c->out);
    rtmp_conn_config cfg;
    rtmp_conn_config_default(&cfg, RTMP_ROLE_CLIENT);
    cfg.client_digest = true;
    uint8_t rnd[RTMP_HANDSHAKE_SIZE];
    for (size_t i = 0; i < sizeof(rnd); i++)
        rnd[i] = (uint8_t)(i * 31 + 7);
    c->rc = rtmp_conn_new(&cfg, &c->out, rnd, 1000);
    return c->rc ? client_flush(c) : -1;
}

static void client_close(client *c)
{
    rtmp_conn_free(c->rc);
    sh_outq_cleanup(&c->out);
    if (c->fd >= 0)
        close(c->fd);
}

/* Next message the caller must handle (control messages are handled by
 * rtmp_conn).  Returns 1 with *m, 0 when the peer closed, -1 on error or
 * time-out. */
static int client_next(client *c, rtmp_msg *m, int timeout_ms)
{
    int64_t end = e2e_now_ms() + timeout_ms;
    for (;;) {
        if (c->in_off < c->in_len) {
            size_t used = 0;
            sh_error err = {0};
            int r = rtmp_conn_feed(c->rc, c->in + c->in_off, c->in_len - c->in_off, &used, m,
                                   &err);
            c->in_off += used;
            if (client_flush(c) != 0)
                return -1;
            if (r < 0) {
                fprintf(stderr, "client: feed error %s\n", err.what ? err.what : "?");
                return -1;
            }
            if (r == 1)
                return 1;
        }
        int left = (int)(end - e2e_now_ms());
        if (left <= 0)
            return -1;
        struct pollfd pf = {c->fd, POLLIN, 0};
        if (poll(&pf, 1, left) <= 0)
            continue;
        ssize_t n = read(c->fd, c->in, sizeof(c->in));
        if (n <= 0)
            return 0;
        c->in_len = (size_t)n;
        c->in_off = 0;
    }
}

/* Waits for the command answering txid (or, txid < 0, the next onStatus);
 * returns the decoded command in *cmd (caller cleans up) and its message
 * type and stream id. */
static int client_wait_cmd(client *c, double txid, rtmp_cmd *cmd, uint8_t *type, uint32_t *sid)
{
    for (int i = 0; i < 100; i++) {
        rtmp_msg m;
        if (client_next(c, &m, 5000) != 1)
            return -1;
        if (m.type != RTMP_MSG_COMMAND_AMF0 && m.type != RTMP_MSG_COMMAND_AMF3)
            continue;
        if (rtmp_cmd_decode(&m, NULL, cmd, NULL) != 0)
            return -1;
        bool match = txid < 0 ? strcmp(cmd->name, "onStatus") == 0
                              : (cmd->txid == txid && (strcmp(cmd->name, "_result") == 0 ||
                                                       strcmp(cmd->name, "_error") == 0));
        if (match) {
            *type = m.type;
            *sid = m.stream_id;
            return 0;
        }
        rtmp_cmd_cleanup(cmd);
    }
    return -1;
}

static bool field_is(const amf_value *obj, const char *key, const char *want)
{
    return obj && amf_is_string(amf_object_get(obj, key), want);
}

static int send_connect(client *c, bool amf3, const char *app)
{
    amf_value *o = amf_object_new(NULL);
    amf_object_set_cstr(o, "app", amf_string_cstr(app));
    amf_object_set_cstr(o, "tcUrl", amf_string_cstr("rtmp://127.0.0.1/whatever"));
    amf_object_set_cstr(o, "objectEncoding", amf_number(amf3 ? 3 : 0));
    int r = rtmp_conn_send_cmd(c->rc, 0, amf3, "connect", 1, o, NULL, 0);
    amf_unref(o);
    return r == 0 ? client_flush(c) : -1;
}

static int send_call(client *c, uint32_t sid, bool amf3, const char *name, double txid,
                     const char *arg)
{
    amf_value *a = arg ? amf_string_cstr(arg) : NULL;
    int r = rtmp_conn_send_cmd(c->rc, sid, amf3, name, txid, NULL, &a, a ? 1 : 0);
    amf_unref(a);
    return r == 0 ? client_flush(c) : -1;
}

int main(void)
{
    e2e_server srv;
    if (e2e_server_start(&srv, "[server]\nmax_streams = 2\n", NULL) != 0)
        return 1;
    client c;
    rtmp_cmd cmd;
    uint8_t type = 0;
    uint32_t sid = 0;

    E2E_CHECK(client_open(&c, srv.port) == 0, "AMF3 client: connected (digest handshake)");
    E2E_CHECK(send_connect(&c, true, "amf3app/roomA?token=abc") == 0, "connect sent as type 17");
    int r = client_wait_cmd(&c, 1, &cmd, &type, &sid);
    E2E_CHECK(r == 0 && strcmp(cmd.name, "_result") == 0, "connect answered with _result");
    if (r == 0) {
        E2E_CHECK(type == RTMP_MSG_COMMAND_AMF3, "reply is type 17 like the request (%u)", type);
        E2E_CHECK(field_is(cmd.cmd_obj, "fmsVer", "FMS/3,5,7,7009"), "fmsVer");
        const amf_value *info = cmd.nargs ? cmd.args[0] : NULL;
        E2E_CHECK(field_is(info, "code", "NetConnection.Connect.Success"), "Connect.Success");
        E2E_CHECK(info && amf_as_number(amf_object_get(info, "objectEncoding")) == 3,
                  "objectEncoding 3 in the info");
        rtmp_cmd_cleanup(&cmd);
    }
    E2E_CHECK(e2e_log_wait(&srv, "app=amf3app instance=roomA encoding=3", 3000),
              "server parsed app, instance and encoding");

    E2E_CHECK(send_call(&c, 0, true, "echo", 2, "three") == 0, "echo sent as type 17");
    r = client_wait_cmd(&c, 2, &cmd, &type, &sid);
    E2E_CHECK(r == 0 && type == RTMP_MSG_COMMAND_AMF3 && cmd.nargs == 1 &&
                  amf_is_string(cmd.args[0], "three"),
              "echo answered in type 17");
    if (r == 0)
        rtmp_cmd_cleanup(&cmd);

    /* createStream: ids 1 and 2, then the cap */
    double ids[3] = {0};
    for (int i = 0; i < 3; i++) {
        send_call(&c, 0, false, "createStream", 10 + i, NULL);
        r = client_wait_cmd(&c, 10 + i, &cmd, &type, &sid);
        if (r == 0) {
            ids[i] = strcmp(cmd.name, "_result") == 0 && cmd.nargs ? amf_as_number(cmd.args[0])
                                                                   : -1;
            rtmp_cmd_cleanup(&cmd);
        }
    }
    E2E_CHECK(ids[0] == 1 && ids[1] == 2, "createStream gives ids 1 and 2");
    E2E_CHECK(ids[2] == -1, "third createStream refused by max_streams");
    send_call(&c, 0, false, "deleteStream", 0, NULL); /* no id: ignored */
    {
        amf_value *id = amf_number(2);
        rtmp_conn_send_cmd(c.rc, 0, false, "deleteStream", 0, NULL, &id, 1);
        amf_unref(id);
        client_flush(&c);
    }
    send_call(&c, 0, false, "createStream", 20, NULL);
    r = client_wait_cmd(&c, 20, &cmd, &type, &sid);
    E2E_CHECK(r == 0 && cmd.nargs && amf_as_number(cmd.args[0]) == 2,
              "deleteStream frees the id for reuse");
    if (r == 0)
        rtmp_cmd_cleanup(&cmd);

    send_call(&c, 1, false, "play", 0, "nothing-here");
    r = client_wait_cmd(&c, -1, &cmd, &type, &sid);
    E2E_CHECK(r == 0 && sid == 1 && cmd.nargs &&
                  field_is(cmd.args[0], "code", "NetStream.Play.StreamNotFound") &&
                  field_is(cmd.args[0], "level", "error"),
              "play: onStatus StreamNotFound on stream 1");
    if (r == 0)
        rtmp_cmd_cleanup(&cmd);
    send_call(&c, 2, false, "publish", 0, "mine");
    r = client_wait_cmd(&c, -1, &cmd, &type, &sid);
    E2E_CHECK(r == 0 && sid == 2 && cmd.nargs &&
                  field_is(cmd.args[0], "code", "NetStream.Publish.Denied"),
              "publish: onStatus BadName on stream 2");
    if (r == 0)
        rtmp_cmd_cleanup(&cmd);
    client_close(&c);

    /* A command before connect closes the connection. */
    E2E_CHECK(client_open(&c, srv.port) == 0, "second client connected");
    send_call(&c, 0, false, "echo", 2, "too early");
    rtmp_msg m;
    int n;
    for (n = 0; n < 20 && (r = client_next(&c, &m, 3000)) == 1; n++) {
    }
    E2E_CHECK(r == 0, "closed by the server");
    E2E_CHECK(e2e_log_wait(&srv, "command echo before connect", 2000), "log names the reason");
    client_close(&c);

    /* An invalid application name is rejected. */
    E2E_CHECK(client_open(&c, srv.port) == 0, "third client connected");
    send_connect(&c, false, "../etc");
    r = client_wait_cmd(&c, 1, &cmd, &type, &sid);
    E2E_CHECK(r == 0 && strcmp(cmd.name, "_error") == 0 && cmd.nargs &&
                  field_is(cmd.args[0], "code", "NetConnection.Connect.Rejected"),
              "bad application name: Connect.Rejected");
    if (r == 0)
        rtmp_cmd_cleanup(&cmd);
    client_close(&c);

    int st = e2e_server_stop(&srv, e2e_failures > 0);
    E2E_CHECK(st == 0, "server exits 0 on SIGTERM (status %d)", st);
    if (e2e_failures)
        e2e_log_dump(&srv);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
