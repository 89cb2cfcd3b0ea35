/* ws_rtmp_peer.c - an RTMP shared-object client driven line by line, for
 * the WebSocket interop test (test_ws_interop.py): the Python test speaks
 * WebSocket itself and has this program play the RTMP side, so values
 * are compared as AMF values (amf_equal), not as text.
 *
 * usage: ws_rtmp_peer PORT APP/INSTANCE ENCODING(0|3)
 * Commands on stdin, one per line; one answer line each on stdout
 * ("ok", or "fail WHY"); values are JSON in the mapping of
 * docs/amf-json.md, on the rest of the line:
 *   use NAME                          subscribe, wait for UseSuccess
 *   set NAME KEY VALUE                request a change, wait for its Success
 *   expect NAME KEY VALUE MS          wait until the slot is amf_equal to VALUE
 *   send NAME HANDLER [ARGS...]       SendMessage with these arguments
 *   expect_send NAME HANDLER MS [ARGS...]  wait for a SendMessage to
 *                                     HANDLER with amf_equal arguments
 *   quit
 * Between commands the connection is read, so the mirror stays current.
 * Built on tests/e2e/so_client.h; every wait is bounded. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "amf_json.h"
#include "harness.h"
#include "so_client.h"

static soc *c;

static void answer(const char *fmt, const char *a)
{
    printf(fmt, a ? a : "");
    printf("\n");
    fflush(stdout);
}

/* Next space-separated word of *p (modified in place). */
static char *word(char **p)
{
    while (**p == ' ')
        (*p)++;
    if (!**p)
        return NULL;
    char *w = *p;
    while (**p && **p != ' ')
        (*p)++;
    if (**p)
        *(*p)++ = '\0';
    return w;
}

static amf_value *parse(const char *json, const char **why)
{
    amf_value *v = NULL;
    if (amf_json_parse(json, &v, why) != 0)
        return NULL;
    return v;
}

/* "[a,b,...]" -> values (owned); n elements. */
static amf_value **parse_args(const char *json, size_t *n, const char **why)
{
    amf_value *arr = parse(json, why);
    *n = 0;
    if (!arr || amf_type_of(arr) != AMF_STRICT_ARRAY) {
        amf_unref(arr);
        *why = "arguments are a JSON array";
        return NULL;
    }
    size_t k = amf_array_len(arr);
    amf_value **v = calloc(k + 1, sizeof(*v));
    for (size_t i = 0; i < k; i++)
        v[i] = amf_ref(amf_array_at(arr, i));
    *n = k;
    amf_unref(arr);
    return v;
}

static void free_args(amf_value **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        amf_unref(v[i]);
    free(v);
}

static void cmd_use(char *rest)
{
    char *name = word(&rest);
    soc_use(c, name, 0, false);
    so_msg *m = soc_wait_event(c, name, SO_EV_USE_SUCCESS, 5000);
    answer(m ? "ok" : "fail no UseSuccess", NULL);
    soc_msg_free(m);
}

static void cmd_set(char *rest)
{
    char *name = word(&rest), *key = word(&rest);
    const char *why = NULL;
    amf_value *v = key ? parse(rest, &why) : NULL;
    if (!v) {
        answer("fail %s", why ? why : "usage");
        return;
    }
    const char *keys[1] = {key};
    soc_set(c, name, soc_version(c, name), false, 1, keys, &v);
    int64_t end = e2e_now_ms() + 5000;
    bool ok = false;
    while (!ok && e2e_now_ms() < end) {
        so_msg *m = soc_next(c, 100);
        for (size_t i = 0; m && i < m->nevents; i++)
            if (m->events[i].type == SO_EV_SUCCESS && strcmp(m->name, name) == 0 &&
                strcmp(m->events[i].kv[0].key, key) == 0)
                ok = true;
        soc_msg_free(m);
    }
    answer(ok ? "ok" : "fail no Success", NULL);
    amf_unref(v);
}

static void cmd_expect(char *rest)
{
    char *name = word(&rest), *key = word(&rest);
    char *json = NULL;
    /* VALUE is everything up to the last word, which is MS */
    char *last = strrchr(rest, ' ');
    if (!key || !last) {
        answer("fail usage", NULL);
        return;
    }
    *last = '\0';
    int ms = atoi(last + 1);
    json = rest;
    const char *why = NULL;
    amf_value *want = parse(json, &why);
    if (!want) {
        answer("fail %s", why);
        return;
    }
    int64_t end = e2e_now_ms() + ms;
    amf_value *got = NULL;
    for (;;) {
        got = soc_get(c, name, key);
        if ((got && amf_equal(got, want)) || e2e_now_ms() >= end)
            break;
        soc_pump(c, 50);
    }
    if (got && amf_equal(got, want)) {
        answer("ok", NULL);
    } else {
        char *s = got ? amf_json_print(got) : NULL;
        answer("fail got %s", s ? s : "nothing");
        free(s);
    }
    amf_unref(want);
}

static void cmd_send(char *rest)
{
    char *name = word(&rest), *handler = word(&rest);
    const char *why = NULL;
    size_t n = 0;
    amf_value **args = handler ? parse_args(*rest ? rest : "[]", &n, &why) : NULL;
    if (!args) {
        answer("fail %s", why ? why : "usage");
        return;
    }
    int rc = soc_send(c, name, false, handler, n, args);
    answer(rc == 0 ? "ok" : "fail send", NULL);
    free_args(args, n);
}

static void cmd_expect_send(char *rest)
{
    char *name = word(&rest), *handler = word(&rest), *ms = word(&rest);
    const char *why = NULL;
    size_t n = 0;
    amf_value **want = ms ? parse_args(*rest ? rest : "[]", &n, &why) : NULL;
    if (!want) {
        answer("fail %s", why ? why : "usage");
        return;
    }
    int64_t end = e2e_now_ms() + atoi(ms);
    const char *res = "fail no SendMessage";
    char detail[256] = "";
    while (e2e_now_ms() < end && res[0] == 'f') {
        so_msg *m = soc_wait_event(c, name, SO_EV_SEND_MESSAGE, (int)(end - e2e_now_ms()));
        if (!m)
            break;
        for (size_t i = 0; i < m->nevents; i++) {
            const so_event *ev = &m->events[i];
            if (ev->type != SO_EV_SEND_MESSAGE || strcmp(ev->handler, handler) != 0)
                continue;
            bool same = ev->nargs == n;
            for (size_t k = 0; same && k < n; k++) {
                same = amf_equal(ev->args[k], want[k]);
                if (!same) {
                    char *g = amf_json_print(ev->args[k]);
                    snprintf(detail, sizeof(detail), " (argument %zu: got %.200s)", k,
                             g ? g : "?");
                    free(g);
                }
            }
            res = same ? "ok" : "fail arguments differ";
        }
        soc_msg_free(m);
    }
    printf("%s%s\n", res, detail);
    fflush(stdout);
    free_args(want, n);
}

/* Reads one line from stdin, reading the connection while it waits. */
static bool next_line(char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        struct pollfd p = {.fd = 0, .events = POLLIN};
        int r = poll(&p, 1, 20);
        if (r > 0) {
            char ch;
            ssize_t k = read(0, &ch, 1);
            if (k <= 0)
                return false;
            if (ch == '\n') {
                buf[n] = '\0';
                return true;
            }
            if (n + 1 < cap)
                buf[n++] = ch;
        } else if (soc_pump(c, 0) < 0) {
            return false;
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: ws_rtmp_peer PORT APP/INSTANCE ENCODING\n");
        return 2;
    }
    c = soc_connect(atoi(argv[1]), argv[2], atoi(argv[3]), 0);
    if (!c) {
        answer("fail connect", NULL);
        return 1;
    }
    answer("ok", NULL);
    static char line[1 << 20];
    while (next_line(line, sizeof(line))) {
        char *rest = line;
        char *cmd = word(&rest);
        if (!cmd)
            continue;
        if (!strcmp(cmd, "quit"))
            break;
        else if (!strcmp(cmd, "use"))
            cmd_use(rest);
        else if (!strcmp(cmd, "set"))
            cmd_set(rest);
        else if (!strcmp(cmd, "expect"))
            cmd_expect(rest);
        else if (!strcmp(cmd, "send"))
            cmd_send(rest);
        else if (!strcmp(cmd, "expect_send"))
            cmd_expect_send(rest);
        else
            answer("fail unknown command %s", cmd);
    }
    soc_close(c);
    return 0;
}
