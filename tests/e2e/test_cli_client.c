/* test_cli_client.c - the client library of sohub-cli (app/cli/client.h)
 * used in-process against the real server: URL parsing, connect with a
 * user name, calls, shared-object events in both encodings, server calls
 * kept in order while waiting for an answer, and a rejected connect that
 * carries the server's description. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "harness.h"

static void test_url(void)
{
    shc_url u;
    char err[256];
    E2E_CHECK(shc_url_parse("rtmp://example.org/chat", &u, err, sizeof err) == 0 &&
                  !strcmp(u.host, "example.org") && u.port == 1935 && !strcmp(u.name, "chat") &&
                  !strcmp(u.instance, "_definst_") && !strcmp(u.app, "chat/_definst_"),
              "host, default port, default instance");
    E2E_CHECK(shc_url_parse("rtmp://[::1]:1940/auction/room7?x=1", &u, err, sizeof err) == 0 &&
                  !strcmp(u.host, "::1") && u.port == 1940 && !strcmp(u.instance, "room7") &&
                  !strcmp(u.app, "auction/room7?x=1") &&
                  !strcmp(u.tc_url, "rtmp://[::1]:1940/auction/room7?x=1"),
              "IPv6 host, port, instance and query (%s)", u.tc_url);
    E2E_CHECK(shc_url_parse("http://x/y", &u, err, sizeof err) < 0 && strstr(err, "rtmp://"),
              "another scheme is refused");
    E2E_CHECK(shc_url_parse("rtmp://host:99999/a", &u, err, sizeof err) < 0, "bad port refused");
    E2E_CHECK(shc_url_parse("rtmp://host/", &u, err, sizeof err) < 0, "no application refused");
}

static shc *connect_as(int port, const char *app, const char *user, bool amf3, char *err,
                       size_t errsz)
{
    char url[256];
    snprintf(url, sizeof url, "rtmp://127.0.0.1:%d/%s", port, app);
    shc_opts o = {.url = url, .user = user, .amf3 = amf3, .timeout_ms = 5000};
    return shc_connect(&o, err, errsz);
}

static void test_calls_and_events(int port, bool amf3)
{
    char err[512];
    shc *a = connect_as(port, "chat", "alice", amf3, err, sizeof err);
    shc *b = connect_as(port, "chat", "bob", amf3, err, sizeof err);
    E2E_CHECK(a && b, "[amf%d] alice and bob connected (%s)", amf3 ? 3 : 0, a && b ? "" : err);
    if (!a || !b)
        goto out;
    amf_value *v = amf_string_cstr("ping");
    double t = shc_call_send(a, "echo", &v, 1, true);
    amf_unref(v);
    rtmp_cmd ans;
    E2E_CHECK(t > 0 && shc_call_wait(a, t, 3000, &ans) == 1 && !strcmp(ans.name, "_result") &&
                  ans.nargs == 1 && amf_is_string(ans.args[0], "ping"),
              "[amf%d] echo answered", amf3 ? 3 : 0);
    if (t > 0)
        rtmp_cmd_cleanup(&ans);

    /* bob subscribes to the room; alice posts; bob gets a Change. */
    sh_buf body;
    sh_buf_init(&body, 1 << 20);
    so_wire_client_use(&body, shc_so_type(b), "room", 0, true);
    shc_so_send(b, body.data, body.len);
    sh_buf_cleanup(&body);
    shc_event ev;
    bool use_ok = false;
    for (int i = 0; i < 20 && !use_ok; i++) {
        if (shc_next(b, 200, &ev) != 1)
            continue;
        if (ev.kind == SHC_EV_SO && ev.so.nevents && ev.so.events[0].type == SO_EV_USE_SUCCESS)
            use_ok = true;
        shc_event_cleanup(&ev);
    }
    E2E_CHECK(use_ok, "[amf%d] UseSuccess for room", amf3 ? 3 : 0);
    v = amf_string_cstr(amf3 ? "via amf3" : "via amf0");
    t = shc_call_send(a, "room.post", &v, 1, true);
    amf_unref(v);
    if (t > 0 && shc_call_wait(a, t, 3000, &ans) == 1)
        rtmp_cmd_cleanup(&ans);
    /* A private message to bob while bob waits for an answer of his own:
     * the onPrivate must be kept for shc_next, in order. */
    amf_value *pm[2] = {amf_string_cstr("bob"), amf_string_cstr("psst")};
    t = shc_call_send(a, "chat.sendPrivate", pm, 2, true);
    amf_unref(pm[0]);
    amf_unref(pm[1]);
    if (t > 0 && shc_call_wait(a, t, 3000, &ans) == 1)
        rtmp_cmd_cleanup(&ans);
    v = amf_null();
    t = shc_call_send(b, "echo", &v, 1, true);
    amf_unref(v);
    E2E_CHECK(t > 0 && shc_call_wait(b, t, 3000, &ans) == 1, "[amf%d] bob's own call answered",
              amf3 ? 3 : 0);
    if (t > 0)
        rtmp_cmd_cleanup(&ans);
    E2E_CHECK(shc_has_pending(b), "[amf%d] events that came meanwhile are held", amf3 ? 3 : 0);
    bool change = false, priv = false;
    for (int i = 0; i < 20 && !(change && priv); i++) {
        if (shc_next(b, 200, &ev) != 1)
            continue;
        if (ev.kind == SHC_EV_SO && ev.so.nevents && ev.so.events[0].type == SO_EV_CHANGE &&
            ev.so.events[0].nkv == 1 &&
            amf_is_string(amf_object_get(ev.so.events[0].kv[0].value, "text"),
                          amf3 ? "via amf3" : "via amf0"))
            change = true;
        if (ev.kind == SHC_EV_CMD && !strcmp(ev.cmd.name, "chat.onPrivate"))
            priv = true;
        shc_event_cleanup(&ev);
    }
    E2E_CHECK(change, "[amf%d] bob got the room Change", amf3 ? 3 : 0);
    E2E_CHECK(priv, "[amf%d] bob got chat.onPrivate", amf3 ? 3 : 0);
out:
    shc_close(a);
    shc_close(b);
}

int main(void)
{
    test_url();
    e2e_server srv;
    if (e2e_server_start(&srv, "[app chat]\n[app locked]\nauth = token\nsecret = x\n", NULL) != 0)
        return 1;
    test_calls_and_events(srv.port, false);
    test_calls_and_events(srv.port, true);
    char err[512];
    shc *c = connect_as(srv.port, "locked", "alice", false, err, sizeof err);
    E2E_CHECK(!c && strstr(err, "connect rejected") && strstr(err, "Missing token"),
              "rejected connect: %s", err);
    shc_close(c);
    c = connect_as(srv.port, "not-declared", NULL, false, err, sizeof err);
    E2E_CHECK(!c && strstr(err, "connect rejected"), "an application the config does not serve: %s",
              err);
    shc_close(c);
    int st = e2e_server_stop(&srv, e2e_failures > 0);
    E2E_CHECK(st == 0, "server exits 0 (%d)", st);
    if (e2e_failures)
        e2e_log_dump(&srv);
    c = connect_as(srv.port, "chat", NULL, false, err, sizeof err);
    E2E_CHECK(!c && strstr(err, "cannot connect"), "server gone: %s", err);
    shc_close(c);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
