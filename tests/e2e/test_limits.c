/* test_limits.c - misbehaving clients are closed, one at a time, each with
 * a log line naming the reason, while a well-behaved librtmp client that
 * is connected the whole time keeps working (it completes a call after each
 * incident): garbage bytes, a handshake that stops halfway (time-out), an
 * oversized message, too many chunk streams, a client that never reads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness.h"
#include "lrtmp.h"

static const char config[] =
    "# limits small enough to hit from a test\n"
    "[server]\n"
    "handshake_timeout_ms = 500\n"
    "max_message_size = 65536\n"
    "max_chunk_streams = 4\n"
    "max_output_bytes = 65536\n"
    "messages_per_read = 2\n"
    "max_buffered_bytes = 40000\n";

static double txid = 10;

static void good_client_works(e2e_lr *s, const char *after)
{
    e2e_lr_answer a;
    int rc = s ? e2e_lr_call(s, "echo", txid++, after, &a, 5000) : -1;
    E2E_CHECK(rc == 0 && strcmp(a.name, "_result") == 0 && strcmp(a.value, after) == 0,
              "the other client still gets answers after: %s", after);
}

static void send_connect(int fd)
{
    static e2e_amf a;
    a.len = 0;
    e2e_amf_str(&a, "connect");
    e2e_amf_num(&a, 1);
    e2e_amf_obj_begin(&a);
    e2e_amf_obj_key(&a, "app");
    e2e_amf_str(&a, "e2e");
    e2e_amf_obj_key(&a, "tcUrl");
    e2e_amf_str(&a, "rtmp://127.0.0.1/e2e");
    e2e_amf_obj_end(&a);
    e2e_raw_send_msg(fd, 3, 20, 0, a.buf, a.len, 128);
}

int main(void)
{
    e2e_server srv;
    if (e2e_server_start(&srv, config, NULL) != 0)
        return 1;
    e2e_lr *good = e2e_lr_connect(srv.port, "e2e");
    E2E_CHECK(good != NULL, "well-behaved librtmp client connects");
    good_client_works(good, "start");

    /* 0. a burst of 40 calls in one write: handled 2 per turn (fairness
     * budget), all of them, in order */
    int fd = e2e_tcp_connect(srv.port);
    E2E_CHECK(e2e_raw_handshake(fd) == 0, "burst: handshake done");
    send_connect(fd);
    static e2e_amf burst, one;
    burst.len = 0;
    for (int i = 0; i < 40; i++) {
        one.len = 0;
        e2e_amf_str(&one, "echo");
        e2e_amf_num(&one, 100 + i);
        e2e_amf_null(&one);
        e2e_amf_str(&one, "burst");
        /* header type 0 on csid 3, body < 128 bytes: one chunk each */
        uint8_t h[12] = {3, 0, 0, 0, 0, 0, (uint8_t)one.len, 20, 0, 0, 0, 0};
        memcpy(burst.buf + burst.len, h, 12);
        memcpy(burst.buf + burst.len + 12, one.buf, one.len);
        burst.len += 12 + one.len;
    }
    e2e_send_all(fd, burst.buf, burst.len);
    E2E_CHECK(e2e_log_wait(&srv, "command echo txid=139", 5000), "burst: all 40 calls handled");
    E2E_CHECK(e2e_log_contains(&srv, "bytes deferred"), "burst: the read budget deferred input");
    close(fd);
    good_client_works(good, "burst");

    /* 1. garbage instead of a handshake */
    fd = e2e_tcp_connect(srv.port);
    char junk[2000];
    memset(junk, 'z', sizeof(junk));
    e2e_send_all(fd, junk, sizeof(junk));
    int ms = e2e_wait_closed(fd, 3000);
    close(fd);
    E2E_CHECK(ms >= 0 && ms < 400, "garbage: connection closed at once (%d ms)", ms);
    E2E_CHECK(e2e_log_wait(&srv, "protocol error", 2000), "garbage: log names the reason");
    good_client_works(good, "garbage");

    /* 1b. an HTTP request (rtmpdump's rtmpt://) gets an HTTP error, then
     * the connection closes: such clients fail at once. */
    fd = e2e_tcp_connect(srv.port);
    memcpy(junk, "GET / HTTP/1.1\r\nHost: example\r\n\r\n", 34);
    e2e_send_all(fd, junk, sizeof(junk));
    char resp[17] = {0};
    int got = e2e_recv_exact(fd, resp, 16, 3000);
    ms = e2e_wait_closed(fd, 3000);
    close(fd);
    E2E_CHECK(got == 0 && strncmp(resp, "HTTP/1.1 400 ", 13) == 0,
              "http: answered with an HTTP error (%s)", resp);
    E2E_CHECK(ms >= 0 && ms < 400, "http: connection closed at once (%d ms)", ms);
    E2E_CHECK(e2e_log_wait(&srv, "HTTP request on the RTMP port", 2000),
              "http: log names the reason");
    good_client_works(good, "http");

    /* 2. handshake stops halfway: closed by handshake_timeout_ms */
    fd = e2e_tcp_connect(srv.port);
    uint8_t half[1 + 700];
    memset(half, 0, sizeof(half));
    half[0] = 3;
    e2e_send_all(fd, half, sizeof(half));
    ms = e2e_wait_closed(fd, 5000);
    close(fd);
    E2E_CHECK(ms >= 300 && ms < 5000, "half handshake: closed after the time-out (%d ms)", ms);
    E2E_CHECK(e2e_log_wait(&srv, "handshake_timeout_ms passed during handshake", 2000),
              "half handshake: log names the reason");
    good_client_works(good, "half handshake");

    /* 3. a message longer than max_message_size */
    fd = e2e_tcp_connect(srv.port);
    E2E_CHECK(e2e_raw_handshake(fd) == 0, "oversized: handshake done");
    uint8_t hdr[12] = {3, 0, 0, 0, 0x10, 0, 0, 20, 0, 0, 0, 0}; /* 1 MiB command */
    uint8_t body[128];
    memset(body, 0x05, sizeof(body));
    e2e_send_all(fd, hdr, sizeof(hdr));
    e2e_send_all(fd, body, sizeof(body));
    ms = e2e_wait_closed(fd, 3000);
    close(fd);
    E2E_CHECK(ms >= 0, "oversized: connection closed (%d ms)", ms);
    E2E_CHECK(e2e_log_wait(&srv, "reason=\"limit", 2000), "oversized: log names a limit");
    good_client_works(good, "oversized message");

    /* 4. partial messages on more chunk streams than max_chunk_streams */
    fd = e2e_tcp_connect(srv.port);
    E2E_CHECK(e2e_raw_handshake(fd) == 0, "chunk streams: handshake done");
    for (uint8_t cs = 4; cs < 20; cs++) {
        uint8_t h[12] = {cs, 0, 0, 0, 0, 0x03, 0xe8, 20, 0, 0, 0, 0}; /* 1000-byte message */
        if (e2e_send_all(fd, h, sizeof(h)) != 0 || e2e_send_all(fd, body, sizeof(body)) != 0)
            break;
    }
    ms = e2e_wait_closed(fd, 3000);
    close(fd);
    E2E_CHECK(ms >= 0, "chunk streams: connection closed (%d ms)", ms);
    good_client_works(good, "too many chunk streams");

    /* 4b. more bytes in a partial message than max_buffered_bytes */
    fd = e2e_tcp_connect(srv.port);
    E2E_CHECK(e2e_raw_handshake(fd) == 0, "partial bytes: handshake done");
    {
        uint8_t scs[4] = {0, 1, 0, 0}; /* Set Chunk Size 65536 */
        e2e_raw_send_msg(fd, 2, 1, 0, scs, 4, 128);
        uint8_t h[12] = {3, 0, 0, 0, 0, 0xea, 0x60, 20, 0, 0, 0, 0}; /* 60000-byte message */
        static uint8_t part[50000];
        memset(part, 0x05, sizeof(part));
        e2e_send_all(fd, h, sizeof(h));
        e2e_send_all(fd, part, sizeof(part));
    }
    ms = e2e_wait_closed(fd, 3000);
    close(fd);
    E2E_CHECK(ms >= 0, "partial bytes: connection closed (%d ms)", ms);
    good_client_works(good, "too many buffered bytes");

    /* 5. a client that calls but never reads: closed at max_output_bytes */
    fd = e2e_tcp_connect(srv.port);
    E2E_CHECK(e2e_raw_handshake(fd) == 0, "slow reader: handshake done");
    struct timeval tv = {3, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    send_connect(fd);
    uint8_t scs[4] = {0, 1, 0, 0}; /* Set Chunk Size 65536 */
    e2e_raw_send_msg(fd, 2, 1, 0, scs, 4, 128);
    static e2e_amf call;
    char *big = malloc(30001);
    memset(big, 'x', 30000);
    big[30000] = '\0';
    int sent = 0;
    int64_t end = e2e_now_ms() + 15000;
    for (int i = 0; i < 3000 && e2e_now_ms() < end; i++) {
        call.len = 0;
        e2e_amf_str(&call, "echo");
        e2e_amf_num(&call, 2 + i);
        e2e_amf_null(&call);
        e2e_amf_str(&call, big);
        if (e2e_raw_send_msg(fd, 3, 20, 0, call.buf, call.len, 65536) != 0)
            break;
        sent++;
    }
    free(big);
    ms = e2e_wait_closed(fd, 5000);
    close(fd);
    E2E_CHECK(ms >= 0, "slow reader: closed after %d calls (%d ms)", sent, ms);
    E2E_CHECK(e2e_log_wait(&srv, "max_output_bytes", 2000), "slow reader: log names the cap");
    good_client_works(good, "slow reader");

    e2e_lr_close(good);
    int st = e2e_server_stop(&srv, e2e_failures > 0);
    E2E_CHECK(st == 0, "server exits 0 on SIGTERM (status %d)", st);
    if (e2e_failures)
        e2e_log_dump(&srv);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
