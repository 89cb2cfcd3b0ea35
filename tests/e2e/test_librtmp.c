/* test_librtmp.c - librtmp (a real client) against sohub-server: handshake,
 * connect, a call answered with _result, an unknown method answered with
 * _error NetConnection.Call.Failed, a clean server shutdown. */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "lrtmp.h"

int main(void)
{
    e2e_server srv;
    if (e2e_server_start(&srv, NULL, NULL) != 0)
        return 1;
    e2e_lr *s = e2e_lr_connect(srv.port, "e2e/room1/stream");
    E2E_CHECK(s != NULL, "librtmp connects (handshake + connect)");
    if (s) {
        e2e_lr_answer a;
        int rc = e2e_lr_call(s, "echo", 2, "hello sohub", &a, 5000);
        E2E_CHECK(rc == 0, "echo call answered");
        E2E_CHECK(strcmp(a.name, "_result") == 0, "echo answer is _result (got %s)", a.name);
        E2E_CHECK(strcmp(a.value, "hello sohub") == 0, "echo returns its argument (got '%s')",
                  a.value);

        rc = e2e_lr_call(s, "noSuchMethod", 3, NULL, &a, 5000);
        E2E_CHECK(rc == 0, "unknown method answered");
        E2E_CHECK(strcmp(a.name, "_error") == 0, "unknown method gets _error (got %s)", a.name);
        E2E_CHECK(strcmp(a.value, "NetConnection.Call.Failed") == 0,
                  "code NetConnection.Call.Failed (got %s)", a.value);
        E2E_CHECK(strstr(a.desc, "noSuchMethod") != NULL, "description names the method (%s)",
                  a.desc);

        /* A second call on the same connection still works. */
        rc = e2e_lr_call(s, "echo", 4, "again", &a, 5000);
        E2E_CHECK(rc == 0 && strcmp(a.value, "again") == 0, "second echo answered");
        e2e_lr_close(s);
    }
    E2E_CHECK(e2e_log_wait(&srv, "app=e2e instance=room1", 3000),
              "server log names app and instance");
    E2E_CHECK(e2e_log_wait(&srv, "disconnect peer=127.0.0.1:", 3000),
              "server logs the disconnect");
    int st = e2e_server_stop(&srv, e2e_failures > 0);
    E2E_CHECK(st == 0, "server exits 0 on SIGTERM (status %d)", st);
    if (e2e_failures)
        e2e_log_dump(&srv);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
