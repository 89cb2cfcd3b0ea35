/* test_app_api.c - the application interface of app.h, in process: an
 * application registered with app_server_add_app() accepts or rejects
 * connects (NetConnection.Connect.Rejected with its description), its
 * methods answer calls, methods of one application are invisible to
 * another, the server calls a method on the client (app_conn_call) and gets
 * the client's _result back, on_disconnect runs once per accepted client,
 * and a pending call is failed when the client goes away.  A connect left
 * pending (app_verdict.pending) is answered only when the application
 * decides (app_conn_accept): accepted, or rejected with its description;
 * one that goes away while pending gets on_disconnect.
 * The server runs on its own loop in a thread; librtmp is the client. */
#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "harness.h"
#include "lrtmp.h"
#include "sh_log.h"

static atomic_int n_connect, n_reject, n_disconnect, n_call_ok, n_call_failed;
static char call_answer[64];
static app_server *srv;
static uv_async_t stop_async;

/* Connects left pending (users "later", "nope", "gone"), decided by the
 * timer 150 ms after the first of them. */
static app_conn *waiting[4];
static size_t nwaiting;
static uv_timer_t decide_timer;
static atomic_int n_pending, n_pending_gone;

static void on_decide(uv_timer_t *t)
{
    (void)t;
    for (size_t i = 0; i < nwaiting; i++) {
        app_conn *c = waiting[i];
        app_verdict v = {0};
        if (strcmp(app_conn_user(c), "gone") == 0)
            continue; /* never decided: the client leaves first */
        if (strcmp(app_conn_user(c), "nope") == 0) {
            v.reject = true;
            snprintf(v.description, sizeof(v.description), "decided later: no");
        } else {
            atomic_fetch_add(&n_connect, 1);
        }
        app_conn_accept(c, &v);
        app_conn_accept(c, &v); /* a second decision does nothing */
    }
}

static void api_connect(app_app *a, app_conn *c, const app_connect_info *info, app_verdict *v,
                        void *ud)
{
    (void)a;
    (void)ud;
    if (!strcmp(info->user, "later") || !strcmp(info->user, "nope") ||
        !strcmp(info->user, "gone")) {
        app_conn_set_data(c, APP_SLOT_APP, (void *)"api-state");
        waiting[nwaiting++] = c;
        v->pending = true;
        atomic_fetch_add(&n_pending, 1);
        if (!uv_is_active((uv_handle_t *)&decide_timer))
            uv_timer_start(&decide_timer, on_decide, 150, 0);
        return;
    }
    if (strcmp(info->user, "mallory") == 0) {
        v->reject = true;
        snprintf(v->description, sizeof(v->description), "go away %s", info->user);
        atomic_fetch_add(&n_reject, 1);
        return;
    }
    app_conn_set_data(c, APP_SLOT_APP, (void *)"api-state");
    atomic_fetch_add(&n_connect, 1);
}

static void api_disconnect(app_app *a, app_conn *c, const char *reason, void *ud)
{
    (void)a;
    (void)reason;
    (void)ud;
    for (size_t i = 0; i < nwaiting; i++)
        if (waiting[i] == c) {
            if (strcmp(app_conn_user(c), "gone") == 0)
                atomic_fetch_add(&n_pending_gone, 1);
            waiting[i] = waiting[--nwaiting];
            break;
        }
    if (app_conn_get_data(c, APP_SLOT_APP))
        atomic_fetch_add(&n_disconnect, 1);
}

static void on_client_answer(app_conn *c, bool ok, amf_value *const *args, size_t nargs,
                             void *ud)
{
    (void)c;
    (void)ud;
    if (ok) {
        size_t n = 0;
        const char *s = nargs >= 1 ? amf_as_string(args[0], &n) : NULL;
        snprintf(call_answer, sizeof(call_answer), "%.*s", s ? (int)n : 0, s ? s : "");
        atomic_fetch_add(&n_call_ok, 1);
    } else {
        atomic_fetch_add(&n_call_failed, 1);
    }
}

/* upper(s): answers s in upper case, then calls the client's whoAreYou. */
static int method_upper(app_conn *c, const rtmp_cmd *cmd, void *ud)
{
    (void)ud;
    size_t n = 0;
    const char *s = cmd->nargs ? amf_as_string(cmd->args[0], &n) : NULL;
    if (!s)
        return app_conn_reply_error(c, cmd->txid, "NetConnection.Call.BadValue",
                                    "upper wants a string");
    char buf[128];
    size_t i;
    for (i = 0; i < n && i + 1 < sizeof(buf); i++)
        buf[i] = (char)toupper((unsigned char)s[i]);
    buf[i] = '\0';
    amf_value *v = amf_string_cstr(buf);
    int rc = app_conn_reply_result(c, cmd->txid, v);
    amf_unref(v);
    amf_value *q = amf_string_cstr("question");
    app_conn_call(c, "whoAreYou", &q, 1, on_client_answer, NULL);
    amf_unref(q);
    return rc;
}

static void on_stop(uv_async_t *h)
{
    app_server_stop(srv, "test done");
    uv_close((uv_handle_t *)h, NULL);
    uv_close((uv_handle_t *)&decide_timer, NULL);
}

static void *server_thread(void *arg)
{
    (void)arg;
    app_server_run(srv);
    return NULL;
}

int main(void)
{
    static app_config cfg;
    char err[256];
    app_config_init(&cfg);
    app_config_set_server(&cfg, "listen", "127.0.0.1:0", err, sizeof(err));
    app_config_set_server(&cfg, "log_level", "warn", err, sizeof(err));
    E2E_CHECK(app_config_validate(&cfg, err, sizeof(err)) == 0, "config valid");
    sh_log_set_level(SH_LOG_WARN);

    static uv_loop_t loop;
    uv_loop_init(&loop);
    srv = app_server_new(&cfg, &loop);
    E2E_CHECK(srv != NULL, "server created");
    app_app_ops ops = {.on_connect = api_connect, .on_disconnect = api_disconnect};
    app_app *api = app_server_add_app(srv, "api", &ops, NULL);
    E2E_CHECK(api != NULL, "application registered");
    E2E_CHECK(app_server_add_app(srv, "api", &ops, NULL) == NULL, "a name registers once");
    E2E_CHECK(app_method_register(srv, api, "upper", method_upper, NULL) == 0,
              "method registered");
    E2E_CHECK(app_server_start(srv) == 0, "server listening on port %d", app_server_port(srv));
    uv_async_init(&loop, &stop_async, on_stop);
    uv_timer_init(&loop, &decide_timer);
    pthread_t th;
    pthread_create(&th, NULL, server_thread, NULL);
    int port = app_server_port(srv);

    /* rejected by on_connect */
    e2e_lr *bad = e2e_lr_connect(port, "api?user=mallory");
    e2e_lr_answer a;
    int rc = bad ? e2e_lr_wait(bad, 1, &a, 5000) : -1;
    E2E_CHECK(rc == 0 && strcmp(a.name, "_error") == 0, "rejected connect gets _error");
    E2E_CHECK(strcmp(a.value, "NetConnection.Connect.Rejected") == 0, "code %s", a.value);
    E2E_CHECK(strcmp(a.desc, "go away mallory") == 0, "description from on_connect: %s",
              a.desc);
    e2e_lr_close(bad);

    /* accepted; method, server-to-client call and its answer */
    e2e_lr *good = e2e_lr_connect(port, "api?user=alice&token=t0k");
    rc = good ? e2e_lr_call(good, "upper", 2, "shout", &a, 5000) : -1;
    E2E_CHECK(rc == 0 && strcmp(a.name, "_result") == 0 && strcmp(a.value, "SHOUT") == 0,
              "application method answers (%s %s)", a.name, a.value);
    double txid = -1;
    char arg[64] = "";
    rc = good ? e2e_lr_wait_invoke(good, "whoAreYou", &txid, arg, sizeof(arg), 5000) : -1;
    E2E_CHECK(rc == 0 && txid > 0 && strcmp(arg, "question") == 0,
              "client receives the server's call (txid %.0f, arg %s)", txid, arg);
    if (good)
        e2e_lr_send(good, "_result", txid, "alice here");
    rc = good ? e2e_lr_call(good, "echo", 3, "sync", &a, 5000) : -1;
    E2E_CHECK(rc == 0, "built-in echo still reachable from the application");
    E2E_CHECK(atomic_load(&n_call_ok) == 1 && strcmp(call_answer, "alice here") == 0,
              "server call got the client's _result (%s)", call_answer);

    /* A second call the client never answers fails when it disconnects. */
    rc = good ? e2e_lr_call(good, "upper", 4, "again", &a, 5000) : -1;
    E2E_CHECK(rc == 0 && strcmp(a.value, "AGAIN") == 0, "second method call");
    e2e_lr_close(good);

    /* Another application does not see "upper". */
    e2e_lr *other = e2e_lr_connect(port, "other");
    rc = other ? e2e_lr_call(other, "upper", 2, "x", &a, 5000) : -1;
    E2E_CHECK(rc == 0 && strcmp(a.name, "_error") == 0 &&
                  strcmp(a.value, "NetConnection.Call.Failed") == 0,
              "method of another application is not found (%s %s)", a.name, a.value);
    e2e_lr_close(other);

    for (int i = 0; i < 100 && atomic_load(&n_disconnect) < 1; i++)
        e2e_sleep_ms(20);

    /* Connects left pending: "gone" leaves before any decision, "later"
     * is accepted and "nope" rejected once the timer decides. */
    e2e_lr *gone = e2e_lr_connect(port, "api?user=gone");
    int64_t t0 = e2e_now_ms();
    e2e_lr *later = e2e_lr_connect(port, "api?user=later");
    e2e_lr *nope = e2e_lr_connect(port, "api?user=nope");
    E2E_CHECK(gone && later && nope, "three clients send connect");
    for (int i = 0; i < 100 && atomic_load(&n_pending) < 3; i++)
        e2e_sleep_ms(5);
    E2E_CHECK(atomic_load(&n_pending) == 3, "their connects are pending");
    e2e_lr_close(gone);
    rc = later ? e2e_lr_wait(later, 1, &a, 5000) : -1;
    int64_t waited = e2e_now_ms() - t0;
    E2E_CHECK(rc == 0 && strcmp(a.name, "_result") == 0 && waited >= 100,
              "the pending connect is answered _result once the application decides "
              "(after %lld ms)", (long long)waited);
    rc = later ? e2e_lr_call(later, "upper", 2, "now", &a, 5000) : -1;
    E2E_CHECK(rc == 0 && strcmp(a.value, "NOW") == 0, "the client accepted later is served");
    rc = nope ? e2e_lr_wait(nope, 1, &a, 5000) : -1;
    E2E_CHECK(rc == 0 && strcmp(a.name, "_error") == 0 && strcmp(a.desc, "decided later: no") == 0,
              "a pending connect rejected later gets _error with its description (%s)",
              a.desc);
    e2e_lr_close(later);
    e2e_lr_close(nope);
    for (int i = 0; i < 100 && atomic_load(&n_disconnect) < 4; i++)
        e2e_sleep_ms(20);
    E2E_CHECK(atomic_load(&n_pending_gone) == 1, "on_disconnect for the connect that went "
              "away while pending");

    uv_async_send(&stop_async);
    pthread_join(th, NULL);
    E2E_CHECK(atomic_load(&n_reject) == 1, "one rejection by on_connect");
    E2E_CHECK(atomic_load(&n_connect) == 2, "two accepted connects (one at once, one later)");
    E2E_CHECK(atomic_load(&n_disconnect) == 4, "on_disconnect once for each connection accepted "
              "or left pending (%d)", atomic_load(&n_disconnect));
    E2E_CHECK(atomic_load(&n_call_failed) == 2, "unanswered calls failed at disconnect (the "
              "second from the client accepted later)");
    app_server_free(srv);
    E2E_CHECK(uv_loop_close(&loop) == 0, "every handle closed");
    app_config_cleanup(&cfg);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
