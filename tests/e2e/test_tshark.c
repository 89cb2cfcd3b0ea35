/* test_tshark.c - a capture of real sessions (ffmpeg, rtmpdump, librtmp)
 * with sohub-server decodes in Wireshark's RTMP dissector with zero
 * malformed frames.  Needs root (capture on lo); skipped otherwise. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "lrtmp.h"

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

int main(void)
{
    if (!e2e_have("tshark") || geteuid() != 0) {
        printf("1..0 # SKIP needs tshark and root\n");
        return E2E_SKIP;
    }
    e2e_server srv;
    if (e2e_server_start(&srv, NULL, NULL) != 0)
        return 1;
    char filter[64], pcap[400], capout[400], decoded[400], url[128], decode_as[64];
    snprintf(filter, sizeof(filter), "tcp port %d", srv.port);
    snprintf(pcap, sizeof(pcap), "%s/session.pcap", srv.dir);
    snprintf(capout, sizeof(capout), "%s/capture.out", srv.dir);
    snprintf(decoded, sizeof(decoded), "%s/decoded.txt", srv.dir);
    snprintf(url, sizeof(url), "rtmp://127.0.0.1:%d/app/missing", srv.port);
    snprintf(decode_as, sizeof(decode_as), "tcp.port==%d,rtmpt", srv.port);

    const char *cap[] = {"tshark", "-i", "lo", "-f", filter, "-w", pcap, "-q", NULL};
    pid_t cpid = e2e_spawn(cap, capout);
    E2E_CHECK(cpid > 0, "capture started");
    bool ready = false;
    for (int i = 0; i < 500 && !ready; i++) {
        struct stat st;
        ready = stat(pcap, &st) == 0 && st.st_size > 0;
        if (!ready)
            e2e_sleep_ms(20);
    }
    E2E_CHECK(ready, "capture file created");
    e2e_sleep_ms(500);

    if (e2e_have("ffmpeg")) {
        const char *av[] = {"ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
                            "-i", url, "-f", "null", "-", NULL};
        e2e_run(av, NULL, 30000, NULL);
    }
    if (e2e_have("rtmpdump")) {
        const char *av[] = {"rtmpdump", "-q", "-r", url, "-o", "/dev/null", "-m", "20", NULL};
        e2e_run(av, NULL, 30000, NULL);
    }
    e2e_lr *s = e2e_lr_connect(srv.port, "app");
    E2E_CHECK(s != NULL, "librtmp connects");
    if (s) {
        e2e_lr_answer a;
        E2E_CHECK(e2e_lr_call(s, "echo", 2, "captured", &a, 5000) == 0, "echo answered");
        E2E_CHECK(e2e_lr_call(s, "nope", 3, NULL, &a, 5000) == 0, "unknown method answered");
        e2e_lr_close(s);
    }
    e2e_sleep_ms(700);
    kill(cpid, SIGINT);
    int crc = e2e_wait(cpid, 10000);
    if (crc == -2) {
        kill(cpid, SIGKILL);
        e2e_wait(cpid, 3000);
    }
    E2E_CHECK(crc == 0, "capture stopped cleanly (%d)", crc);

    const char *rd[] = {"tshark", "-n", "-r", pcap, "-d", decode_as, "-o",
                        "rtmpt.max_packet_size:1048576", NULL};
    int rrc = e2e_run(rd, decoded, 60000, NULL);
    E2E_CHECK(rrc == 0, "tshark read the capture (%d)", rrc);
    char *txt = e2e_read_file(decoded, NULL);
    E2E_CHECK(txt != NULL, "decoded output present");
    if (txt) {
        E2E_CHECK(count(txt, "RTMP") >= 10, "RTMP frames decoded (%d)", count(txt, "RTMP"));
        E2E_CHECK(strstr(txt, "connect") != NULL, "a connect frame");
        E2E_CHECK(strstr(txt, "_result") != NULL, "a _result frame");
        E2E_CHECK(strstr(txt, "_error") != NULL, "an _error frame");
        E2E_CHECK(strstr(txt, "onStatus") != NULL, "an onStatus frame");
        E2E_CHECK(strstr(txt, "Malformed") == NULL, "no malformed frame");
        E2E_CHECK(strstr(txt, "Handshake") != NULL || strstr(txt, "C0+C1") != NULL,
                  "handshake frames");
        if (e2e_failures)
            fprintf(stderr, "---- tshark ----\n%s\n", txt);
    }
    free(txt);
    int st = e2e_server_stop(&srv, e2e_failures > 0);
    E2E_CHECK(st == 0, "server exits 0 on SIGTERM (status %d)", st);
    if (e2e_failures)
        e2e_log_dump(&srv);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
