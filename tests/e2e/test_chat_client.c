/* test_chat_client.c - see test_chat_client.h. */
#include "test_chat_client.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "harness.h"

#define CC_MAX_ANSWERS 256

typedef struct cc_pending {
    double txid;
    cc_answer a;
} cc_pending;

struct cc {
    shc *sh;            /* socket, handshake, connect, chunking, reading */
    cc_private *priv;
    size_t npriv, cappriv;
    bool broken;        /* a message could not be kept: stop reading */
    cc_pending answers[CC_MAX_ANSWERS]; /* answers read while waiting for others */
    size_t nanswers;
    size_t others;
};

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

/* Keeps one chat.onPrivate.  The caller checked npriv < CC_MAX_PRIVATES.
 * Returns 0, or -1 when it cannot be kept (the client is then broken). */
static int on_private(cc *c, const rtmp_cmd *cmd)
{
    if (c->npriv == c->cappriv) {
        size_t cap = c->cappriv ? c->cappriv * 2 : 256;
        cc_private *np = realloc(c->priv, cap * sizeof(*np));
        if (!np)
            return -1;
        c->priv = np;
        c->cappriv = cap;
    }
    const amf_value *o = cmd->nargs ? cmd->args[0] : NULL;
    size_t n = 0;
    const amf_value *t = o ? amf_object_get(o, "text") : NULL;
    const char *s = t && amf_type_of(t) == AMF_STRING ? amf_as_string(t, &n) : NULL;
    if (!s)
        n = 0;
    cc_private *p = &c->priv[c->npriv];
    memset(p, 0, sizeof(*p));
    if (!(p->text = malloc(n + 1)))
        return -1;
    if (n)
        memcpy(p->text, s, n);
    p->text[n] = '\0';
    c->npriv++;
    p->id = num_field(o, "id");
    p->ts = num_field(o, "ts");
    copy_str(p->from, sizeof(p->from), o ? amf_object_get(o, "from") : NULL);
    copy_str(p->to, sizeof(p->to), o ? amf_object_get(o, "to") : NULL);
    p->has_extra = !o || amf_object_count(o) != 5;
    return 0;
}

/* Handles one event; returns 1 when it was the answer to want, -1 when a
 * private message could not be kept. */
static int handle_event(cc *c, const shc_event *ev, double want, cc_answer *a)
{
    if (ev->kind != SHC_EV_CMD)
        return 0;
    const rtmp_cmd *cmd = &ev->cmd;
    if (strcmp(cmd->name, "_result") == 0 || strcmp(cmd->name, "_error") == 0) {
        if (cmd->txid == want) {
            fill_answer(a, cmd);
            return 1;
        }
        if (c->nanswers < CC_MAX_ANSWERS) {
            c->answers[c->nanswers].txid = cmd->txid;
            fill_answer(&c->answers[c->nanswers].a, cmd);
            c->nanswers++;
        }
    } else if (strcmp(cmd->name, "chat.onPrivate") == 0) {
        if (on_private(c, cmd) != 0) {
            printf("# cc: cannot keep a private message (out of memory)\n");
            c->broken = true;
            return -1;
        }
    } else {
        c->others++;
    }
    return 0;
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
        if (c->broken)
            return -1;
        if (c->npriv >= CC_MAX_PRIVATES) {
            /* Back-pressure: read nothing more until the test clears. */
            if (want < 0)
                return 0;
            printf("# cc: %d private messages kept while waiting for an answer\n",
                   CC_MAX_PRIVATES);
            return -1;
        }
        int left = (int)(end - e2e_now_ms());
        shc_event ev;
        int r = shc_next(c->sh, left > 0 ? left : 0, &ev);
        if (r < 0)
            return -1;
        if (r == 1) {
            int hit = handle_event(c, &ev, want, a);
            shc_event_cleanup(&ev);
            if (hit)
                return hit;
        } else if (left <= 0) {
            return 0;
        }
    }
}

static cc *connect_opts(int port, const char *path, const char *user, const char *token,
                        const char *const *extra, int rcvbuf, char *code, char *desc, size_t sz);

cc *cc_connect(int port, const char *path, const char *user, const char *token,
               const char *const *extra, char *code, char *desc, size_t sz)
{
    return connect_opts(port, path, user, token, extra, 0, code, desc, sz);
}

cc *cc_connect_rcvbuf(int port, const char *path, const char *user, int rcvbuf)
{
    return connect_opts(port, path, user, NULL, NULL, rcvbuf, NULL, NULL, 0);
}

static cc *connect_opts(int port, const char *path, const char *user, const char *token,
                        const char *const *extra, int rcvbuf, char *code, char *desc, size_t sz)
{
    if (code)
        code[0] = '\0';
    if (desc)
        desc[0] = '\0';
    cc *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    char url[1024], err[600];
    snprintf(url, sizeof(url), "rtmp://127.0.0.1:%d/%s", port, path);
    shc_opts o = {.url = url, .user = user, .token = token, .extra_args = extra,
                  .timeout_ms = 5000, .rcvbuf = rcvbuf};
    shc_refusal why;
    c->sh = shc_connect_ex(&o, &why, err, sizeof(err));
    if (!c->sh) {
        if (code)
            snprintf(code, sz, "%s", why.refused ? why.code : "(no answer)");
        if (desc && why.refused)
            snprintf(desc, sz, "%s", why.description);
        cc_close(c);
        return NULL;
    }
    return c;
}

void cc_close(cc *c)
{
    if (!c)
        return;
    shc_close(c->sh);
    cc_clear_privates(c);
    free(c->priv);
    free(c);
}

double cc_call_async(cc *c, const char *method, amf_value *const *args, size_t nargs)
{
    return shc_call_send(c->sh, method, args, nargs, true);
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
        if (left <= 0 || shc_closed(c->sh) || c->broken || c->npriv >= CC_MAX_PRIVATES)
            return false;
        cc_pump(c, left < 50 ? left : 50);
    }
    return true;
}

size_t cc_private_count(const cc *c) { return c->npriv; }
const cc_private *cc_private_at(const cc *c, size_t i) { return i < c->npriv ? &c->priv[i] : NULL; }
void cc_clear_privates(cc *c)
{
    for (size_t i = 0; i < c->npriv; i++)
        free(c->priv[i].text);
    c->npriv = 0;
}
size_t cc_other_count(const cc *c) { return c->others; }

bool cc_wait_offline(const e2e_server *s, const char *app, const char *user, int timeout_ms)
{
    if (!s->nodes)
        return true;
    char chan[300];
    snprintf(chan, sizeof(chan), "sohub:chat:{%zu:%s:%s}:c", strlen(app), app, user);
    int64_t end = e2e_now_ms() + timeout_ms;
    int n;
    while ((n = e2e_cluster_subscribers(s, chan)) != 0 && e2e_now_ms() < end)
        e2e_sleep_ms(20);
    return n == 0;
}
