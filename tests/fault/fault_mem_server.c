/* fault_mem_server.c - what a connection can make the server hold, measured
 * as the real server's peak RSS (VmHWM).  Each case is a small input that
 * once made a connection hold tens of MB:
 *   ackflood-pre   Window Ack Size 1, then 1.6 MB of one-byte type-3 chunk
 *                  headers (zero-length messages), never reading, before
 *                  connect (4 connections);
 *   ackflood       the same after an accepted connect;
 *   nonreader      send_timeout_ms closes a client whose output stalls;
 *   budget         several clients that never read pile up output: past
 *                  max_client_memory the one holding the most is closed.
 * A well-behaved librtmp client must keep getting answers throughout.
 * Only 127.0.0.1; every wait bounded. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fault_util.h"
#include "harness.h"
#include "lrtmp.h"

#define FLOOD_BYTES (1600 * 1024)
#define NBUDGET 12

static double txid = 10;

/* Resets the peak RSS of pid to its current RSS (writing 5 to
 * /proc/PID/clear_refs), so each case measures its own peak.  Returns the
 * new VmHWM. */
static long reset_hwm(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)pid);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
    return fault_proc_kb(pid, "VmHWM");
}

/* User + system CPU ticks of pid (/proc/PID/stat), -1 when unknown. */
static long cpu_ticks(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char *txt = e2e_read_file(path, NULL);
    long ut = -1, st = -1;
    const char *p = txt ? strrchr(txt, ')') : NULL;
    if (p)
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &ut, &st);
    free(txt);
    return ut < 0 ? -1 : ut + st;
}

static void good_client_works(e2e_lr *s, const char *after)
{
    e2e_lr_answer a;
    int rc = s ? e2e_lr_call(s, "echo", txid++, after, &a, 5000) : -1;
    E2E_CHECK(rc == 0 && strcmp(a.name, "_result") == 0 && strcmp(a.value, after) == 0,
              "the other client still gets answers after: %s", after);
}

static int small_rcvbuf_connect(int port)
{
    int fd = e2e_tcp_connect(port);
    if (fd >= 0) {
        int one = 4096;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &one, sizeof(one));
    }
    return fd;
}

/* body as chunks of 128 bytes on csid 3 (type 0 header, then type 3
 * headers), in one buffer so it goes out in one send. */
static size_t chunked(uint8_t *out, uint8_t type, const uint8_t *body, size_t len)
{
    size_t o = 0;
    uint8_t h[12] = {0x03, 0, 0, 0, (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len,
                     type, 0, 0, 0, 0};
    memcpy(out, h, sizeof(h));
    o = sizeof(h);
    for (size_t i = 0; i < len; i += 128) {
        if (i)
            out[o++] = 0xC3;
        size_t k = len - i < 128 ? len - i : 128;
        memcpy(out + o, body + i, k);
        o += k;
    }
    return o;
}

static int send_connect(int fd, const char *app)
{
    static e2e_amf a;
    a.len = 0;
    e2e_amf_str(&a, "connect");
    e2e_amf_num(&a, 1);
    e2e_amf_obj_begin(&a);
    e2e_amf_obj_key(&a, "app");
    e2e_amf_str(&a, app);
    e2e_amf_obj_end(&a);
    return e2e_raw_send_msg(fd, 3, 20, 0, a.buf, a.len, 128);
}

/* Sends what is left of buf without blocking; returns bytes sent, -1 when
 * the connection is gone. */
static long send_some(int fd, const uint8_t *buf, size_t len)
{
    ssize_t n = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    return n;
}

/* The ack flood on n connections: handshake, [connect,] Window Ack Size
 * 1, a zero-length message header on csid 3, then `bytes` of 0xC3 (each
 * a type-3 header completing another zero-length message).  Never reads.
 * Returns how many connections the server closed within the time. */
static int ack_flood(int port, int n, bool connect, long *peak_kb, pid_t pid)
{
    int fds[16];
    static uint8_t flood[64 * 1024];
    memset(flood, 0xC3, sizeof(flood));
    for (int i = 0; i < n; i++) {
        fds[i] = small_rcvbuf_connect(port);
        if (fds[i] < 0 || e2e_raw_handshake(fds[i]) != 0)
            return -1;
        if (connect)
            send_connect(fds[i], "flood");
        uint8_t w[4] = {0, 0, 0, 1};
        e2e_raw_send_msg(fds[i], 2, 5, 0, w, 4, 128);
        /* type 0 header, csid 3, type 18, length 0 */
        uint8_t h[12] = {0x03, 0, 0, 0, 0, 0, 0, 18, 0, 0, 0, 0};
        e2e_send_all(fds[i], h, sizeof(h));
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    }
    long sent[16] = {0};
    bool gone[16] = {false};
    int64_t end = e2e_now_ms() + 20000;
    for (;;) {
        bool busy = false;
        for (int i = 0; i < n; i++) {
            if (gone[i] || sent[i] >= FLOOD_BYTES)
                continue;
            busy = true;
            size_t want = (size_t)(FLOOD_BYTES - sent[i]);
            long k = send_some(fds[i], flood, want < sizeof(flood) ? want : sizeof(flood));
            if (k < 0)
                gone[i] = true;
            else
                sent[i] += k;
        }
        long kb = fault_proc_kb(pid, "VmHWM");
        if (kb > *peak_kb)
            *peak_kb = kb;
        if (!busy || e2e_now_ms() > end)
            break;
        e2e_sleep_ms(1);
    }
    printf("# flood: sent %ld %ld %ld %ld bytes\n", sent[0], sent[1], n > 2 ? sent[2] : 0, n > 3 ? sent[3] : 0);
    /* The server works through the flood at its message budget per loop
     * turn: wait (bounded) until every connection is closed or the server
     * took all the bytes and went quiet, then read the high-water mark. */
    int closed = 0, quiet = 0;
    long last_ticks = -1;
    bool dead[16] = {false};
    end = e2e_now_ms() + 15000;
    while (e2e_now_ms() < end && closed < n) {
        for (int i = 0; i < n; i++) {
            if (dead[i])
                continue;
            struct pollfd p = {.fd = fds[i], .events = POLLIN};
            char tmp[4096];
            if (gone[i]) {
                dead[i] = true;
            } else if (poll(&p, 1, 0) == 1) {
                ssize_t r = recv(fds[i], tmp, sizeof(tmp), MSG_DONTWAIT);
                dead[i] = r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
            }
            closed += dead[i];
        }
        /* Quiet: no CPU used by the server for 300 ms. */
        long ticks = cpu_ticks(pid);
        if (ticks == last_ticks && ++quiet >= 15)
            break;
        if (ticks != last_ticks)
            quiet = 0;
        last_ticks = ticks;
        e2e_sleep_ms(20);
    }
    e2e_sleep_ms(300);
    long kb = fault_proc_kb(pid, "VmHWM");
    if (kb > *peak_kb)
        *peak_kb = kb;
    for (int i = 0; i < n; i++)
        close(fds[i]);
    return closed;
}

int main(int argc, char **argv)
{
    /* --baseline: without the keys older servers do not know, to measure
     * a build from before these bounds existed. */
    bool baseline = fault_opt_flag(argc, argv, "--baseline");
    if (fault_sanitized()) {
        printf("# memory figures mean nothing under sanitizers: skipped\n1..0\n");
        return E2E_SKIP;
    }
    e2e_server srv;
    const char *config =
        "[server]\n"
        "send_timeout_ms = 1500\n"
        "max_client_memory = 16m\n"
        "max_output_bytes = 8m\n";
    if (e2e_server_start(&srv, baseline ? "[server]\nmax_output_bytes = 8m\n" : config, NULL) != 0)
        return 1;
    e2e_lr *good = e2e_lr_connect(srv.port, "good");
    E2E_CHECK(good != NULL, "well-behaved librtmp client connects");
    good_client_works(good, "start");
    long base = reset_hwm(srv.pid);
    printf("# server VmHWM at start: %ld KiB\n", base);

    /* 1. ack flood before connect: at most 16 messages before connect. */
    long peak = base;
    int closed = ack_flood(srv.port, 4, false, &peak, srv.pid);
    printf("# ackflood-pre: peak %ld KiB (+%ld)\n", peak, peak - base);
    E2E_CHECK(closed == 4, "ackflood-pre: the 4 connections were closed (%d)", closed);
    E2E_CHECK(e2e_log_wait(&srv, "too many messages before connect", 2000),
              "ackflood-pre: the log says why");
    E2E_CHECK(peak - base < 16 * 1024, "ackflood-pre: peak RSS grew by %ld KiB (bound 16 MiB)",
              peak - base);
    good_client_works(good, "ackflood-pre");

    /* 2. the same after connect: acknowledgements are bounded by input,
     * one per read at most, so the flood costs little output. */
    base = reset_hwm(srv.pid);
    peak = base;
    ack_flood(srv.port, 4, true, &peak, srv.pid);
    printf("# ackflood: peak %ld KiB (+%ld)\n", peak, peak - base);
    E2E_CHECK(peak - base < 16 * 1024, "ackflood: peak RSS grew by %ld KiB (bound 16 MiB)",
              peak - base);
    good_client_works(good, "ackflood");

    /* 3. a client whose output makes no progress is closed after
     * send_timeout_ms: echo calls with 32 KB arguments, never read. */
    int fd = small_rcvbuf_connect(srv.port);
    E2E_CHECK(fd >= 0 && e2e_raw_handshake(fd) == 0 && send_connect(fd, "nonreader") == 0,
              "nonreader: connects");
    static e2e_amf a;
    char *arg = malloc(32 * 1024 + 1);
    memset(arg, 'x', 32 * 1024);
    arg[32 * 1024] = '\0';
    a.len = 0;
    e2e_amf_str(&a, "echo");
    e2e_amf_num(&a, 5);
    e2e_amf_null(&a);
    e2e_amf_str(&a, arg);
    free(arg);
    static uint8_t call[40 * 1024];
    size_t call_len = chunked(call, 20, a.buf, a.len);
    /* 200 answers of 32 KB: more than the kernel buffers take, less than
     * max_output_bytes. */
    for (int i = 0; i < 200; i++)
        e2e_send_all(fd, call, call_len);
    E2E_CHECK(e2e_log_wait(&srv, "send_timeout_ms passed", 6000),
              "nonreader: closed by send_timeout_ms");
    close(fd);
    good_client_works(good, "nonreader");

    /* 4. server-wide budget: 12 clients that never read, each piling up
     * ~10 MB of echo answers (beyond what the kernel buffers take: ~6 MB
     * each queued in the server, ~75 MB together, budget 16 MB). */
    base = reset_hwm(srv.pid);
    int fds[NBUDGET];
    for (int i = 0; i < NBUDGET; i++) {
        fds[i] = small_rcvbuf_connect(srv.port);
        if (fds[i] >= 0 && e2e_raw_handshake(fds[i]) == 0)
            send_connect(fds[i], "budget");
    }
    /* Blocking sends: the server keeps reading while its output piles up;
     * a send fails once the server closed that client. */
    bool open_fd[NBUDGET];
    for (int i = 0; i < NBUDGET; i++)
        open_fd[i] = true;
    for (int round = 0; round < 330; round++)
        for (int i = 0; i < NBUDGET; i++)
            if (open_fd[i] && e2e_send_all(fds[i], call, call_len) != 0)
                open_fd[i] = false;
    bool evicted = e2e_log_wait(&srv, "over max_client_memory", 5000);
    peak = fault_proc_kb(srv.pid, "VmHWM");
    printf("# budget: peak %ld KiB (+%ld)\n", peak, peak - base);
    E2E_CHECK(evicted,
              "budget: the server closed the biggest clients over max_client_memory");
    E2E_CHECK(peak - base < 40 * 1024, "budget: peak RSS grew by %ld KiB (bound 40 MiB)",
              peak - base);
    for (int i = 0; i < NBUDGET; i++)
        close(fds[i]);
    good_client_works(good, "budget");

    e2e_lr_close(good);
    int st = e2e_server_stop(&srv, e2e_failures > 0);
    E2E_CHECK(st == 0, "server exits 0 (%d)", st);
    if (e2e_failures)
        e2e_log_dump(&srv);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
