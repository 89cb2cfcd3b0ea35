/* test_chat_client.c - see test_chat_client.h. */
#include "test_chat_client.h"

#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "rtmp.h"

#define CC_MAX_PRIVATES 4096
#define CC_MAX_ANSWERS 256

typedef struct cc_pending {
    double txid;
    cc_answer a;
} cc_pending;

struct cc {
    int fd;
    bool closed;
    sh_outq out;
    rtmp_conn *rc;
    uint8_t in[65536];
    size_t in_len, in_off;
    double next_txid;
    cc_private *priv;
    size_t npriv;
    cc_pending answers[CC_MAX_ANSWERS]; /* answers read while waiting for others */
    size_t nanswers;
    size_t others;
};

static int flush_out(cc *c)
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

static void copy_str(char *dst, size_t sz, const amf_value *v)
{
    dst[0] = '\0';
    size_t n;
    const char *s = v ? amf_as_string(v, &n) : NULL;
    if (!s)
        return;
    if (n >= sz)
        n = sz - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static double num_field(const amf_value *o, const char *k)
{
    const amf_value *v = o ? amf_object_get(o, k) : NULL;
    return v ? amf_as_number(v) : NAN;
}

static void fill_answer(cc_answer *a, const rtmp_cmd *cmd)
{
    memset(a, 0, sizeof(*a));
    a->ok = strcmp(cmd->name, "_result") == 0;
    const amf_value *info = cmd->nargs ? cmd->args[0] : NULL;
    if (info && amf_type_of(info) != AMF_OBJECT)
        info = NULL;
    a->id = num_field(info, "id");
    a->acked = num_field(info, "acked");
    if (info) {
        copy_str(a->status, sizeof(a->status), amf_object_get(info, "status"));
        copy_str(a->code, sizeof(a->code), amf_object_get(info, "code"));
        copy_str(a->desc, sizeof(a->desc), amf_object_get(info, "description"));
    }
}

static void on_private(cc *c, const rtmp_cmd *cmd)
{
    if (c->npriv >= CC_MAX_PRIVATES || cmd->nargs < 1)
        return;
    const amf_value *o = cmd->args[0];
    cc_private *p = &c->priv[c->npriv++];
    memset(p, 0, sizeof(*p));
    p->id = num_field(o, "id");
    p->ts = num_field(o, "ts");
    copy_str(p->from, sizeof(p->from), amf_object_get(o, "from"));
    copy_str(p->to, sizeof(p->to), amf_object_get(o, "to"));
    copy_str(p->text, sizeof(p->text), amf_object_get(o, "text"));
    p->has_extra = amf_object_count(o) != 5;
}

/* Handles one message; returns 1 when it was the answer to want. */
static int handle_msg(cc *c, const rtmp_msg *m, double want, cc_answer *a)
{
    if (m->type != RTMP_MSG_COMMAND_AMF0 && m->type != RTMP_MSG_COMMAND_AMF3)
        return 0;
    rtmp_cmd cmd;
    if (rtmp_cmd_decode(m, NULL, &cmd, NULL) != 0)
        return 0;
    int r = 0;
    if (strcmp(cmd.name, "_result") == 0 || strcmp(cmd.name, "_error") == 0) {
        if (cmd.txid == want) {
            fill_answer(a, &cmd);
            r = 1;
        } else if (c->nanswers < CC_MAX_ANSWERS) {
            c->answers[c->nanswers].txid = cmd.txid;
            fill_answer(&c->answers[c->nanswers].a, &cmd);
            c->nanswers++;
        }
    } else if (strcmp(cmd.name, "chat.onPrivate") == 0) {
        on_private(c, &cmd);
    } else {
        c->others++;
    }
    rtmp_cmd_cleanup(&cmd);
    return r;
}

/* Reads until the answer to want arrives (want < 0: never) or the time is
 * up.  Returns 1 (answer), 0 (time-out), -1 (closed or error). */
static int pump_until(cc *c, double want, cc_answer *a, int timeout_ms)
{
    if (want >= 0) {
        for (size_t i = 0; i < c->nanswers; i++) {
            if (c->answers[i].txid == want) {
                *a = c->answers[i].a;
                c->answers[i] = c->answers[--c->nanswers];
                return 1;
            }
        }
    }
    int64_t end = e2e_now_ms() + timeout_ms;
    for (;;) {
        while (c->in_off < c->in_len) {
            size_t used = 0;
            rtmp_msg m;
            sh_error err = {0};
            int r = rtmp_conn_feed(c->rc, c->in + c->in_off, c->in_len - c->in_off, &used, &m,
                                   &err);
            c->in_off += used;
            if (r < 0) {
                fprintf(stderr, "chat client: feed error %s\n", err.what ? err.what : "?");
                return -1;
            }
            if (r == 1 && handle_msg(c, &m, want, a) == 1) {
                flush_out(c);
                return 1;
            }
            if (r == 0)
                break;
        }
        if (flush_out(c) != 0)
            return -1;
        int left = (int)(end - e2e_now_ms());
        if (left <= 0 || c->closed)
            return c->closed ? -1 : 0;
        struct pollfd pf = {c->fd, POLLIN, 0};
        if (poll(&pf, 1, left) <= 0)
            continue;
        ssize_t n = read(c->fd, c->in, sizeof(c->in));
        if (n <= 0) {
            c->closed = true;
            return -1;
        }
        c->in_len = (size_t)n;
        c->in_off = 0;
    }
}

cc *cc_connect(int port, const char *path, const char *user, const char *token,
               const char *const *extra, char *code, char *desc, size_t sz)
{
    if (code)
        code[0] = '\0';
    if (desc)
        desc[0] = '\0';
    cc *c = calloc(1, sizeof(*c));
    if (!c || !(c->priv = calloc(CC_MAX_PRIVATES, sizeof(*c->priv)))) {
        free(c);
        return NULL;
    }
    sh_outq_init(&c->out);
    c->fd = e2e_tcp_connect(port);
    rtmp_conn_config cfg;
    rtmp_conn_config_default(&cfg, RTMP_ROLE_CLIENT);
    uint8_t rnd[RTMP_HANDSHAKE_SIZE];
    for (size_t i = 0; i < sizeof(rnd); i++)
        rnd[i] = (uint8_t)(i * 13 + 5);
    if (c->fd >= 0)
        c->rc = rtmp_conn_new(&cfg, &c->out, rnd, 1000);
    if (!c->rc || flush_out(c) != 0) {
        cc_close(c);
        return NULL;
    }
    char app[256], tc[512];
    snprintf(app, sizeof(app), "%s", path);
    snprintf(tc, sizeof(tc), "rtmp://127.0.0.1:%d/%s", port, path);
    amf_value *o = amf_object_new(NULL);
    amf_object_set_cstr(o, "app", amf_string_cstr(app));
    amf_object_set_cstr(o, "tcUrl", amf_string_cstr(tc));
    amf_object_set_cstr(o, "objectEncoding", amf_number(0));
    amf_value *args[8];
    size_t nargs = 0;
    if (user || token)
        args[nargs++] = amf_string_cstr(user ? user : "");
    if (token)
        args[nargs++] = amf_string_cstr(token);
    for (size_t i = 0; extra && extra[i] && nargs < 8; i++)
        args[nargs++] = amf_string_cstr(extra[i]);
    /* The connect goes out once the handshake is done: rtmp_conn queues
     * commands sent before that (deferred sends). */
    int r = rtmp_conn_send_cmd(c->rc, 0, false, "connect", 1, o, args, nargs);
    amf_unref(o);
    for (size_t i = 0; i < nargs; i++)
        amf_unref(args[i]);
    c->next_txid = 2;
    cc_answer a;
    if (r != 0 || flush_out(c) != 0 || pump_until(c, 1, &a, 5000) != 1) {
        if (code)
            snprintf(code, sz, "(no answer)");
        cc_close(c);
        return NULL;
    }
    if (!a.ok) {
        if (code)
            snprintf(code, sz, "%s", a.code);
        if (desc)
            snprintf(desc, sz, "%s", a.desc);
        cc_close(c);
        return NULL;
    }
    return c;
}

void cc_close(cc *c)
{
    if (!c)
        return;
    rtmp_conn_free(c->rc);
    sh_outq_cleanup(&c->out);
    if (c->fd >= 0)
        close(c->fd);
    free(c->priv);
    free(c);
}

double cc_call_async(cc *c, const char *method, amf_value *const *args, size_t nargs)
{
    double txid = c->next_txid++;
    if (rtmp_conn_send_cmd(c->rc, 0, false, method, txid, NULL, args, nargs) != 0 ||
        flush_out(c) != 0)
        return -1;
    return txid;
}

int cc_wait(cc *c, double txid, cc_answer *a, int timeout_ms)
{
    return pump_until(c, txid, a, timeout_ms) == 1 ? 0 : -1;
}

int cc_call(cc *c, const char *method, amf_value *const *args, size_t nargs, cc_answer *a)
{
    double txid = cc_call_async(c, method, args, nargs);
    return txid < 0 ? -1 : cc_wait(c, txid, a, 5000);
}

int cc_send(cc *c, const char *to, const char *text, const char *cid, cc_answer *a)
{
    amf_value *args[3] = {amf_string_cstr(to), amf_string_cstr(text),
                          cid ? amf_string_cstr(cid) : NULL};
    int r = cc_call(c, "chat.sendPrivate", args, cid ? 3 : 2, a);
    for (int i = 0; i < 3; i++)
        amf_unref(args[i]);
    return r;
}

int cc_ack(cc *c, double id, cc_answer *a)
{
    amf_value *v = amf_number(id);
    int r = cc_call(c, "chat.ack", &v, 1, a);
    amf_unref(v);
    return r;
}

void cc_pump(cc *c, int ms)
{
    cc_answer a;
    pump_until(c, -1, &a, ms);
}

bool cc_wait_privates(cc *c, size_t n, int timeout_ms)
{
    int64_t end = e2e_now_ms() + timeout_ms;
    while (c->npriv < n) {
        int left = (int)(end - e2e_now_ms());
        if (left <= 0 || c->closed)
            return false;
        cc_pump(c, left < 50 ? left : 50);
    }
    return true;
}

size_t cc_private_count(const cc *c) { return c->npriv; }
const cc_private *cc_private_at(const cc *c, size_t i) { return i < c->npriv ? &c->priv[i] : NULL; }
void cc_clear_privates(cc *c) { c->npriv = 0; }
size_t cc_other_count(const cc *c) { return c->others; }
