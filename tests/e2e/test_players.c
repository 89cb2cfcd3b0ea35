/* test_players.c - ffmpeg and rtmpdump asking for a stream that does not
 * exist: each must end within seconds with the stream-not-found error
 * (digest / simple handshake, connect, createStream, play), not a time-out.
 * argv[1] selects the client: "ffmpeg" or "rtmpdump". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define CLIENT_TIMEOUT_MS 30000
#define FAST_MS 10000

int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "ffmpeg";
    if (!e2e_have(which)) {
        printf("1..0 # SKIP %s not installed\n", which);
        return E2E_SKIP;
    }
    e2e_server srv;
    if (e2e_server_start(&srv, NULL, NULL) != 0)
        return 1;
    char url[128], out[400];
    snprintf(url, sizeof(url), "rtmp://127.0.0.1:%d/app/missing", srv.port);
    snprintf(out, sizeof(out), "%s/%s.out", srv.dir, which);
    int elapsed = 0, rc;
    if (strcmp(which, "ffmpeg") == 0) {
        const char *av[] = {"ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "info",
                            "-i", url, "-f", "null", "-", NULL};
        rc = e2e_run(av, out, CLIENT_TIMEOUT_MS, &elapsed);
    } else {
        const char *av[] = {"rtmpdump", "-r", url, "-o", "/dev/null", "-m", "20", NULL};
        rc = e2e_run(av, out, CLIENT_TIMEOUT_MS, &elapsed);
    }
    char *txt = e2e_read_file(out, NULL);
    E2E_CHECK(rc != -2, "%s ended by itself (elapsed %d ms)", which, elapsed);
    E2E_CHECK(rc != 0 && rc != -1, "%s exit status is an error (%d)", which, rc);
    E2E_CHECK(elapsed < FAST_MS, "%s failed fast (%d ms)", which, elapsed);
    E2E_CHECK(txt && (strstr(txt, "StreamNotFound") || strstr(txt, "stream not found")),
              "%s reports the stream-not-found error",
              which);
    E2E_CHECK(e2e_log_wait(&srv, "play stream=missing", 3000), "server log shows the play");
    E2E_CHECK(e2e_log_wait(&srv, "connect peer=127.0.0.1", 3000),
              "server log shows the connect");
    if (e2e_failures)
        fprintf(stderr, "---- %s output ----\n%s\n", which, txt ? txt : "(none)");
    free(txt);
    int st = e2e_server_stop(&srv, e2e_failures > 0);
    E2E_CHECK(st == 0, "server exits 0 on SIGTERM (status %d)", st);
    if (e2e_failures)
        e2e_log_dump(&srv);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
