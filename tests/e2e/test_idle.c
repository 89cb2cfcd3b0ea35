/* test_idle.c - pings, idle time-out and connection caps:
 * a librtmp client that answers pings stays connected past idle_timeout_ms
 * and gets an RTT measured; a raw client that never says anything after
 * connect is closed by idle_timeout_ms; connections over
 * max_connections_per_ip are refused while the others keep working. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "lrtmp.h"

static const char config[] =
    "[server]\n"
    "ping_interval_ms = 150\n"
    "idle_timeout_ms = 1200\n"
    "max_connections_per_ip = 3\n";

int main(void)
{
    e2e_server srv;
    if (e2e_server_start(&srv, config, NULL) != 0)
        return 1;
    e2e_lr *good = e2e_lr_connect(srv.port, "e2e");
    E2E_CHECK(good != NULL, "librtmp client connects");

    /* A raw client that completes the handshake and then stays silent. */
    int quiet = e2e_tcp_connect(srv.port);
    E2E_CHECK(e2e_raw_handshake(quiet) == 0, "silent client: handshake done");
    static e2e_amf a;
    e2e_amf_str(&a, "connect");
    e2e_amf_num(&a, 1);
    e2e_amf_obj_begin(&a);
    e2e_amf_obj_key(&a, "app");
    e2e_amf_str(&a, "e2e");
    e2e_amf_obj_end(&a);
    e2e_raw_send_msg(quiet, 3, 20, 0, a.buf, a.len, 128);

    /* Third connection is allowed, the fourth from this address is not. */
    int third = e2e_tcp_connect(srv.port);
    int fourth = e2e_tcp_connect(srv.port);
    int ms = fourth >= 0 ? e2e_wait_closed(fourth, 3000) : -1;
    E2E_CHECK(ms >= 0, "fourth connection from one address closed (%d ms)", ms);
    E2E_CHECK(e2e_log_wait(&srv, "max_connections_per_ip reached", 2000),
              "log names max_connections_per_ip");
    if (fourth >= 0)
        close(fourth);
    close(third);

    /* The librtmp client keeps calling (and so answers pings) for 2.4 s. */
    int ok = 0;
    for (int i = 0; i < 12; i++) {
        e2e_lr_answer ans;
        if (good && e2e_lr_call(good, "echo", 10 + i, "tick", &ans, 3000) == 0 &&
            strcmp(ans.value, "tick") == 0)
            ok++;
        e2e_sleep_ms(200);
    }
    E2E_CHECK(ok == 12, "active client answered 12/12 calls past idle_timeout_ms (%d)", ok);
    E2E_CHECK(e2e_log_contains(&srv, "ping rtt_ms="), "ping round trip measured");

    ms = e2e_wait_closed(quiet, 3000);
    close(quiet);
    E2E_CHECK(ms >= 0, "silent client was closed");
    E2E_CHECK(e2e_log_wait(&srv, "idle_timeout_ms passed", 2000), "log names idle_timeout_ms");

    /* Stop the server while the client is still connected. */
    int64_t t0 = e2e_now_ms();
    int st = e2e_server_stop(&srv, e2e_failures > 0);
    int took = (int)(e2e_now_ms() - t0);
    E2E_CHECK(st == 0, "server exits 0 on SIGTERM with a client connected (status %d)", st);
    E2E_CHECK(took < 3000, "shutdown took %d ms", took);
    e2e_lr_close(good);
    if (e2e_failures)
        e2e_log_dump(&srv);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
