/* fault_abuse.c - thousands of abusive connections while real clients keep
 * working.
 *
 * Abusers (a forked process with one epoll loop; sockets bound to source
 * addresses 127.0.0.2 .. 127.0.0.33 so the default per-address limit and
 * the ephemeral port range are not the bottleneck):
 *   slowloris  connect, send C0, then one byte of C1 per second: the
 *              handshake never ends; the server's handshake_timeout_ms
 *              closes them and they come back;
 *   garbage    random bytes at once, or a correct handshake followed by
 *              random chunk bytes; closed by the server; they come back;
 *   openclose  connect and close at once (reset);
 *   nonreader  a real client (our SO client) with a 4 KiB receive buffer
 *              that subscribes to a busy temporary object and never reads
 *              again;
 * and a "busy" writer (another process) changing that object all the time.
 * Reconnections are paced by a token bucket (--churn per second).
 *
 * Real clients (this process): an echo call and a temporary shared-object
 * change -> Success, one after the other, timed; first quiet, then under
 * abuse, then after it.
 *
 * Checked: every real request is answered (5 s bound) in each phase; the
 * abusers really held the connections they were asked for (server fds);
 * the server's peak RSS stays under a bound derived from its configured
 * caps (not checked in sanitizer builds); its connections and fds return
 * to the baseline once the abusers are gone; it stops cleanly (exit 0).
 * Reported: real clients' p50 / p99 latency quiet vs under abuse; with
 * --strict the p50 under abuse must be within 2x the quiet p50 plus 50 us
 * (timing on a shared machine is noisy: CI only reports it).
 *
 * Options: --slow N (1000), --garbage N (100), --openclose N (50),
 * --nonreaders N (50), --churn N (300 per second), --quiet-ms (2000),
 * --abuse-ms (6000), --strict, --keep. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault_util.h"
#include "harness.h"
#include "so_client.h"
#include "test_chat_client.h"

#define T 5000
#define APP "fault/abuse"
#define NSRC 32

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* The caps this test configures and derives its memory bound from. */
#define CONGESTION_BYTES (128u << 10)
#define MAX_OUTPUT_BYTES (1u << 20)

static volatile sig_atomic_t stop_flag;
static void on_term(int sig)
{
    (void)sig;
    stop_flag = 1;
}

/* ---- the abuser process ---- */

enum { K_SLOW, K_GARBAGE, K_OPENCLOSE, K_NKINDS };
static const char *const kind_names[K_NKINDS] = {"slowloris", "garbage", "openclose"};

typedef struct aconn {
    int fd;
    int kind;
    int state;         /* 0 connecting, 1 connected, 2 handshake sent (garbage/hs) */
    int mode;          /* garbage: 0 random, 1 handshake then random */
    int64_t next_ms;   /* slowloris: next byte; all: give-up time */
    size_t got;        /* bytes read (garbage hs mode: S0S1S2) */
    size_t sent;
} aconn;

typedef struct astats {
    long opened[K_NKINDS], closed_by_server[K_NKINDS], connect_fail[K_NKINDS];
    long bytes_sent, held_max;
    long nonreaders, nonreaders_open_at_end;
} astats;

static int open_nb(int port, unsigned src)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(0x7f000002u + src % NSRC);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static void close_reset(int fd)
{
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(fd);
}

typedef struct abuser {
    int port, ep;
    int want[K_NKINDS];
    int have[K_NKINDS];
    aconn *conns;         /* indexed by fd */
    int maxfd;
    double tokens, churn;
    int64_t last_ms;
    unsigned src;
    uint64_t rng;
    astats st;
} abuser;

static void a_close(abuser *a, int fd, bool reset)
{
    aconn *c = &a->conns[fd];
    epoll_ctl(a->ep, EPOLL_CTL_DEL, fd, NULL);
    a->have[c->kind]--;
    c->fd = -1;
    if (reset)
        close_reset(fd);
    else
        close(fd);
}

static void a_open(abuser *a, int kind, int64_t now)
{
    int fd = open_nb(a->port, a->src++);
    if (fd < 0 || fd >= a->maxfd) {
        if (fd >= 0)
            close(fd);
        a->st.connect_fail[kind]++;
        return;
    }
    aconn *c = &a->conns[fd];
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    c->kind = kind;
    c->mode = (int)(fault_rand(&a->rng) % 2);
    c->next_ms = now + 20000;   /* give up on anything after 20 s */
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.fd = fd};
    epoll_ctl(a->ep, EPOLL_CTL_ADD, fd, &ev);
    a->have[kind]++;
    a->st.opened[kind]++;
}

static void a_send_random(abuser *a, aconn *c, size_t n)
{
    uint8_t buf[8192];
    if (n > sizeof(buf))
        n = sizeof(buf);
    for (size_t i = 0; i < n; i += 8) {
        uint64_t r = fault_rand(&a->rng);
        memcpy(buf + i, &r, n - i < 8 ? n - i : 8);
    }
    ssize_t w = send(c->fd, buf, n, MSG_NOSIGNAL);
    if (w > 0) {
        c->sent += (size_t)w;
        a->st.bytes_sent += w;
    }
}

static void a_event(abuser *a, int fd, uint32_t evs, int64_t now)
{
    aconn *c = &a->conns[fd];
    if (c->fd != fd)
        return;
    if (c->state == 0 && (evs & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            a->st.connect_fail[c->kind]++;
            a_close(a, fd, false);
            return;
        }
        c->state = 1;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = fd};
        epoll_ctl(a->ep, EPOLL_CTL_MOD, fd, &ev);
        if (c->kind == K_OPENCLOSE) {
            a_close(a, fd, true);
            return;
        }
        if (c->kind == K_SLOW) {
            uint8_t c0 = 3;
            send(fd, &c0, 1, MSG_NOSIGNAL);
            c->next_ms = now + 1000;
        } else if (c->mode == 0) {
            a_send_random(a, c, 2048 + fault_rand(&a->rng) % 4096);
        } else {
            uint8_t hs[1537] = {3};
            for (size_t i = 1; i < sizeof(hs); i++)
                hs[i] = (uint8_t)fault_rand(&a->rng);
            send(fd, hs, sizeof(hs), MSG_NOSIGNAL);
        }
        return;
    }
    if (evs & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        uint8_t buf[8192];
        for (int i = 0; i < 8; i++) {
            ssize_t n = recv(fd, buf, sizeof(buf), 0);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                a->st.closed_by_server[c->kind]++;
                a_close(a, fd, true);
                return;
            }
            if (n < 0)
                break;
            c->got += (size_t)n;
        }
        if (c->kind == K_GARBAGE && c->mode == 1 && c->state == 1 && c->got >= 3073) {
            /* C2 (anything), then random chunk bytes. */
            c->state = 2;
            a_send_random(a, c, 1536);
            a_send_random(a, c, 512 + fault_rand(&a->rng) % 4096);
        }
    }
}

static void a_tick(abuser *a, int64_t now)
{
    for (int fd = 0; fd < a->maxfd; fd++) {
        aconn *c = &a->conns[fd];
        if (c->fd != fd)
            continue;
        if (c->kind == K_SLOW && c->state == 1 && now >= c->next_ms && c->sent < 1500) {
            uint8_t b = (uint8_t)fault_rand(&a->rng);
            if (send(fd, &b, 1, MSG_NOSIGNAL) == 1)
                c->sent++;
            c->next_ms = now + 1000;
        } else if (c->kind != K_SLOW && now >= c->next_ms) {
            a_close(a, fd, true);   /* the server kept it 20 s: give up */
        }
    }
}

static int abuser_main(int port, const int want[K_NKINDS], int nonreaders, int churn,
                       uint64_t seed, const char *stats_path, int ready_fd)
{
    signal(SIGTERM, on_term);
    signal(SIGPIPE, SIG_IGN);
    static abuser a;
    a.port = port;
    a.churn = churn;
    a.rng = seed;
    memcpy(a.want, want, sizeof(a.want));
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    a.maxfd = (int)(rl.rlim_cur > 200000 ? 200000 : rl.rlim_cur);
    a.conns = calloc((size_t)a.maxfd, sizeof(aconn));
    a.ep = epoll_create1(0);
    if (!a.conns || a.ep < 0)
        return 1;
    for (int i = 0; i < a.maxfd; i++)
        a.conns[i].fd = -1;

    /* Non-readers first: real clients that subscribe, then stop reading. */
    soc **nr = calloc((size_t)(nonreaders ? nonreaders : 1), sizeof(*nr));
    for (int i = 0; i < nonreaders && !stop_flag; i++) {
        nr[i] = soc_connect(port, APP, 0, 4096);
        if (!nr[i])
            continue;
        soc_use(nr[i], "busy", 0, false);
        soc_msg_free(soc_wait_event(nr[i], "busy", SO_EV_USE_SUCCESS, T));
        a.st.nonreaders++;
    }
    char b = 1;
    if (write(ready_fd, &b, 1) != 1) {
        /* the parent went away */
    }
    a.last_ms = e2e_now_ms();
    /* Open the held connections fast at first (slowloris ramp), then the
     * token bucket paces reconnections. */
    a.tokens = want[K_SLOW] + want[K_GARBAGE] + want[K_OPENCLOSE];
    int64_t hard_end = e2e_now_ms() + 600000;
    bool ramped = false;
    while (!stop_flag && e2e_now_ms() < hard_end) {
        int64_t now = e2e_now_ms();
        a.tokens += (double)(now - a.last_ms) * a.churn / 1000.0;
        if (ramped && a.tokens > a.churn)
            a.tokens = a.churn;   /* at most one second of burst */
        a.last_ms = now;
        /* at most 512 connects per turn, so events keep being served */
        int opened = 0;
        bool more = true;
        while (more && a.tokens >= 1 && opened < 512) {
            more = false;   /* one of each kind in turn: no kind starves the others */
            for (int k = 0; k < K_NKINDS && a.tokens >= 1; k++) {
                if (a.have[k] >= a.want[k])
                    continue;
                a.tokens -= 1;
                opened++;
                a_open(&a, k, now);
                more = true;
            }
        }
        if (!ramped && a.have[K_SLOW] + a.have[K_GARBAGE] + a.have[K_OPENCLOSE] >=
                           a.want[K_SLOW] + a.want[K_GARBAGE] + a.want[K_OPENCLOSE])
            ramped = true;
        struct epoll_event evs[256];
        int n = epoll_wait(a.ep, evs, 256, 10);
        now = e2e_now_ms();
        for (int i = 0; i < n; i++)
            a_event(&a, evs[i].data.fd, evs[i].events, now);
        a_tick(&a, now);
        long held = a.have[K_SLOW] + a.have[K_GARBAGE] + a.have[K_OPENCLOSE] + a.st.nonreaders;
        if (held > a.st.held_max)
            a.st.held_max = held;
    }
    for (int i = 0; i < nonreaders; i++) {
        if (!nr[i])
            continue;
        uint8_t p;
        ssize_t r = recv(soc_fd(nr[i]), &p, 1, MSG_PEEK | MSG_DONTWAIT);
        a.st.nonreaders_open_at_end += r > 0 || (r < 0 && errno == EAGAIN);
        close_reset(soc_fd(nr[i]));
    }
    FILE *f = fopen(stats_path, "w");
    if (f) {
        for (int k = 0; k < K_NKINDS; k++)
            fprintf(f, "%s opened %ld closed_by_server %ld connect_fail %ld\n", kind_names[k],
                    a.st.opened[k], a.st.closed_by_server[k], a.st.connect_fail[k]);
        fprintf(f, "nonreaders %ld open_at_end %ld\n", a.st.nonreaders,
                a.st.nonreaders_open_at_end);
        fprintf(f, "held_max %ld bytes_sent %ld\n", a.st.held_max, a.st.bytes_sent);
        fclose(f);
    }
    return 0;   /* exit closes every socket */
}

/* The busy writer: changes the temporary object "busy" at `rate` per second
 * with 1 KiB values, reading its own answers. */
static int busy_main(int port, int rate)
{
    signal(SIGTERM, on_term);
    soc *c = soc_connect(port, APP, 0, 0);
    if (!c)
        return 1;
    soc_use(c, "busy", 0, false);
    soc_msg_free(soc_wait_event(c, "busy", SO_EV_USE_SUCCESS, T));
    static char val[1024];
    memset(val, 'x', sizeof(val) - 1);
    int64_t start = e2e_now_ms(), end = start + 600000;
    long n = 0;
    while (!stop_flag && !soc_closed(c) && e2e_now_ms() < end) {
        int64_t due = start + n * 1000 / (rate > 0 ? rate : 1);
        if (e2e_now_ms() < due) {
            soc_pump(c, (int)(due - e2e_now_ms()));
            soc_discard(c);
            continue;
        }
        char key[16];
        snprintf(key, sizeof(key), "s%ld", n % 64);
        char num[24];
        int nl = snprintf(num, sizeof(num), "%ld", n);
        memcpy(val, num, (size_t)nl);   /* the value changes every time */
        soc_set_str(c, "busy", soc_version(c, "busy"), false, key, val);
        n++;
        soc_pump(c, 0);
        soc_discard(c);
    }
    soc_close(c);
    return 0;
}

/* ---- real clients ---- */

typedef struct real {
    int64_t phase_start_us, worst_at_us;   /* when the slowest round of a phase began */
    double worst_us;
    cc *call;
    soc *so;
    double txid;
    long failures, requests;
    fault_lat echo, change;
} real;

static int real_open(real *r, int port)
{
    char code[128], desc[256];
    r->call = cc_connect(port, APP, "real", NULL, NULL, code, desc, sizeof(code));
    r->so = soc_connect(port, APP, 0, 0);
    if (!r->call || !r->so)
        return -1;
    soc_use(r->so, "rt", 0, false);
    so_msg *m = soc_wait_event(r->so, "rt", SO_EV_USE_SUCCESS, T);
    soc_msg_free(m);
    return m ? 0 : -1;
}

/* One echo and one change, timed.  Returns 0 or -1 (no answer / wrong). */
static int real_round(real *r, long i)
{
    int rc = 0;
    amf_value *arg = amf_number((double)i);
    int64_t t0 = fault_now_us(), start = t0;
    cc_answer a;
    r->requests++;
    if (cc_call(r->call, "echo", &arg, 1, &a) == 0 && a.ok)
        fault_lat_add(&r->echo, (double)(fault_now_us() - t0));
    else {
        r->failures++;
        rc = -1;
    }
    amf_unref(arg);
    t0 = fault_now_us();
    r->requests++;
    soc_set_num(r->so, "rt", soc_version(r->so, "rt"), false, "n", (double)i);
    so_msg *m = soc_wait_event(r->so, "rt", SO_EV_SUCCESS, T);
    if (m)
        fault_lat_add(&r->change, (double)(fault_now_us() - t0));
    else {
        r->failures++;
        rc = -1;
    }
    soc_msg_free(m);
    double took = (double)(fault_now_us() - start);
    if (took > r->worst_us) {
        r->worst_us = took;
        r->worst_at_us = start - r->phase_start_us;
    }
    return rc;
}

typedef struct sample {
    long rss_max_kb, fds_max;
} sample;

static void sample_server(pid_t pid, sample *s)
{
    long rss = fault_proc_kb(pid, "VmRSS");
    long fds = fault_proc_fds(pid);
    if (rss > s->rss_max_kb)
        s->rss_max_kb = rss;
    if (fds > s->fds_max)
        s->fds_max = fds;
}

/* Runs real rounds for ms (paced: at most one round per pace_us).  Returns
 * failures in this phase. */
static long real_phase(real *r, pid_t srv, int ms, sample *s, int pace_us)
{
    long f0 = r->failures;
    r->phase_start_us = fault_now_us();
    r->worst_us = 0;
    int64_t end = e2e_now_ms() + ms, next_sample = 0;
    long i = 0;
    while (e2e_now_ms() < end && i < 1000000) {
        int64_t t = fault_now_us();
        if (real_round(r, i++) != 0 && r->failures - f0 > 10)
            break;
        if (e2e_now_ms() >= next_sample) {
            sample_server(srv, s);
            next_sample = e2e_now_ms() + 200;
        }
        int64_t left = pace_us - (fault_now_us() - t);
        if (left > 0)
            usleep((useconds_t)left);
    }
    return r->failures - f0;
}

static void print_lat(const char *what, fault_lat *l, double *p50)
{
    *p50 = fault_lat_q(l, 0.5);
    printf("# %s: %zu samples, p50 %.0f us, p90 %.0f us, p99 %.0f us, max %.0f us\n", what, l->n,
           *p50, fault_lat_q(l, 0.9), fault_lat_q(l, 0.99), fault_lat_q(l, 1.0));
}

static pid_t fork_fn(int (*fn)(void *), void *arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t p = fork();
    if (p == 0)
        _exit(fn(arg));
    return p;
}

typedef struct ab_arg {
    int port, nonreaders, churn, ready_fd, busy_rate;
    int want[K_NKINDS];
    uint64_t seed;
    char stats[512];
} ab_arg;

static int ab_entry(void *p)
{
    ab_arg *a = p;
    return abuser_main(a->port, a->want, a->nonreaders, a->churn, a->seed, a->stats, a->ready_fd);
}

static int busy_entry(void *p)
{
    ab_arg *a = p;
    return busy_main(a->port, a->busy_rate);
}

int main(int argc, char **argv)
{
    ab_arg ab = {0};
    ab.want[K_SLOW] = (int)fault_opt_long(argc, argv, "--slow", 1000);
    ab.want[K_GARBAGE] = (int)fault_opt_long(argc, argv, "--garbage", 100);
    ab.want[K_OPENCLOSE] = (int)fault_opt_long(argc, argv, "--openclose", 50);
    ab.nonreaders = (int)fault_opt_long(argc, argv, "--nonreaders", 50);
    ab.churn = (int)fault_opt_long(argc, argv, "--churn", 300);
    ab.busy_rate = (int)fault_opt_long(argc, argv, "--busy-rate", 500);
    int quiet_ms = (int)fault_opt_long(argc, argv, "--quiet-ms", 2000);
    int abuse_ms = (int)fault_opt_long(argc, argv, "--abuse-ms", 6000);
    int pace_us = (int)fault_opt_long(argc, argv, "--pace-us", 2000);
    bool strict = fault_opt_flag(argc, argv, "--strict");
    bool keep = fault_opt_flag(argc, argv, "--keep");
    ab.seed = (uint64_t)fault_opt_long(argc, argv, "--seed", (long)getpid() * 104729);
    long total = (long)ab.want[K_SLOW] + ab.want[K_GARBAGE] + ab.want[K_OPENCLOSE] + ab.nonreaders;
    if (total < 1 || total > 18000 || quiet_ms < 100 || abuse_ms < 100 || abuse_ms > 600000 ||
        quiet_ms > 600000 || ab.churn < 1) {
        fprintf(stderr, "%s: connection counts must add up to 1..18000 (fd limit), times "
                        "100..600000 ms\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    char cfg[1024];
    snprintf(cfg, sizeof(cfg),
             "[server]\n"
             "max_connections = %ld\n"
             "so_congestion_bytes = %u\n"
             "max_output_bytes = %u\n"
             "so_max_updates_per_sec = 0\n",
             total + 1000, CONGESTION_BYTES, MAX_OUTPUT_BYTES);
    const char *extra[] = {"--log-level", "warn", NULL};
    e2e_server srv;
    if (e2e_server_start(&srv, cfg, extra) != 0)
        return 1;
    printf("# fault-abuse: %d slowloris, %d garbage, %d open/close, %d non-readers, churn %d/s, "
           "quiet %d ms, abuse %d ms\n", ab.want[K_SLOW], ab.want[K_GARBAGE],
           ab.want[K_OPENCLOSE], ab.nonreaders, ab.churn, quiet_ms, abuse_ms);
    real r = {0};
    E2E_CHECK(real_open(&r, srv.port) == 0, "real clients connect");
    sample base = {0}, quiet = {0}, abuse = {0}, after = {0};
    sample_server(srv.pid, &base);
    real_phase(&r, srv.pid, 300, &base, pace_us);   /* warm-up */
    fault_lat_free(&r.echo);
    fault_lat_free(&r.change);
    long fq = real_phase(&r, srv.pid, quiet_ms, &quiet, pace_us);
    E2E_CHECK(fq == 0, "quiet: every real request answered (%ld failed)", fq);
    double q_echo, q_change;
    print_lat("quiet echo", &r.echo, &q_echo);
    print_lat("quiet SO change", &r.change, &q_change);
    fault_lat quiet_echo = r.echo, quiet_change = r.change;
    memset(&r.echo, 0, sizeof(r.echo));
    memset(&r.change, 0, sizeof(r.change));

    /* Abuse. */
    int pfd[2];
    if (pipe(pfd) != 0)
        return 1;
    ab.port = srv.port;
    ab.ready_fd = pfd[1];
    char dir[256];
    fault_mkdtemp(dir, sizeof(dir), "abuse");
    snprintf(ab.stats, sizeof(ab.stats), "%s/abuser.txt", dir);
    pid_t busy = fork_fn(busy_entry, &ab);
    pid_t abuser = fork_fn(ab_entry, &ab);
    char b;
    int64_t ramp0 = e2e_now_ms();
    /* Wait for the non-readers, then for the server to hold the target. */
    bool nr_ready = false;
    while (!nr_ready && e2e_now_ms() - ramp0 < 60000) {
        struct pollfd pf = {pfd[0], POLLIN, 0};
        if (poll(&pf, 1, 100) == 1 && read(pfd[0], &b, 1) == 1)
            nr_ready = true;
    }
    long target_fds = base.fds_max + (long)(0.8 * (double)(ab.want[K_SLOW] + ab.nonreaders));
    sample ramp = {0};
    while (e2e_now_ms() - ramp0 < 30000) {
        sample_server(srv.pid, &ramp);
        if (ramp.fds_max >= target_fds)
            break;
        real_round(&r, 0);
        e2e_sleep_ms(50);
    }
    printf("# ramp: %lld ms to %ld server fds (target %ld)\n",
           (long long)(e2e_now_ms() - ramp0), ramp.fds_max, target_fds);
    fault_lat_free(&r.echo);   /* ramp samples are not counted */
    fault_lat_free(&r.change);
    long fa = real_phase(&r, srv.pid, abuse_ms, &abuse, pace_us);
    E2E_CHECK(fa == 0, "under abuse: every real request answered (%ld failed)", fa);
    double a_echo, a_change;
    printf("# abuse: slowest real round %.0f us, %.1f s into the phase\n", r.worst_us,
           (double)r.worst_at_us / 1e6);
    print_lat("abuse echo", &r.echo, &a_echo);
    print_lat("abuse SO change", &r.change, &a_change);
    E2E_CHECK(abuse.fds_max >= target_fds, "the abusers held their connections (server fds "
              "peak %ld, target %ld)", abuse.fds_max, target_fds);
    E2E_CHECK(kill(srv.pid, 0) == 0, "the server is up under abuse");
    long hwm = fault_proc_kb(srv.pid, "VmHWM");
    kill(abuser, SIGTERM);
    kill(busy, SIGTERM);
    int st1 = e2e_wait(abuser, 15000), st2 = e2e_wait(busy, 15000);
    if (st1 == -2)
        kill(abuser, SIGKILL), e2e_wait(abuser, 5000);
    if (st2 == -2)
        kill(busy, SIGKILL), e2e_wait(busy, 5000);
    E2E_CHECK(st1 == 0 && st2 == 0, "abusers stopped (%d, %d)", st1, st2);
    char *stats = e2e_read_file(ab.stats, NULL);
    if (stats) {
        for (char *line = strtok(stats, "\n"); line; line = strtok(NULL, "\n"))
            printf("# abuser: %s\n", line);
        free(stats);
    }
    /* After: back to the baseline. */
    int64_t t_after = e2e_now_ms();
    long fds = -1;
    while (e2e_now_ms() - t_after < 20000) {
        fds = fault_proc_fds(srv.pid);
        if (fds <= base.fds_max + 5)
            break;
        e2e_sleep_ms(100);
    }
    E2E_CHECK(fds <= base.fds_max + 5, "server fds back to the baseline after the abuse (%ld, "
              "baseline %ld, %lld ms)", fds, base.fds_max, (long long)(e2e_now_ms() - t_after));
    long fafter = real_phase(&r, srv.pid, 500, &after, pace_us);
    E2E_CHECK(fafter == 0, "after: every real request answered (%ld failed)", fafter);

    /* Memory: a bound from the configured caps.  Per abusive connection
     * (handshake buffers, connection state) 64 KiB is generous; per
     * non-reader the congestion threshold plus one message per object
     * and its chunk buffers (64 KiB); plus the baseline and 64 MiB. */
    long held = ab.want[K_SLOW] + ab.want[K_GARBAGE] + ab.want[K_OPENCLOSE];
    long bound_kb = base.rss_max_kb + held * 64 + ab.nonreaders * (long)(CONGESTION_BYTES / 1024 + 64) +
                    64 * 1024;
    printf("# server RSS: baseline %ld KiB, quiet max %ld KiB, abuse max %ld KiB (peak VmHWM "
           "%ld KiB), bound %ld KiB; fds peak %ld\n", base.rss_max_kb, quiet.rss_max_kb,
           abuse.rss_max_kb, hwm, bound_kb, abuse.fds_max);
    if (fault_sanitized())
        printf("ok %d - server RSS bound not checked in a sanitizer build # SKIP\n",
               ++e2e_checks);
    else
        E2E_CHECK(hwm > 0 && hwm <= bound_kb, "server peak RSS %ld KiB <= bound %ld KiB", hwm,
                  bound_kb);
    double re = a_echo / q_echo, rc = a_change / q_change;
    printf("# FIGURES abuse: held %ld + %d non-readers, echo p50 quiet %.0f us / abuse %.0f us "
           "(x%.2f), SO change p50 quiet %.0f us / abuse %.0f us (x%.2f), p99 echo %.0f / %.0f "
           "us, peak RSS %ld KiB (baseline %ld), server fds peak %ld\n",
           held, ab.nonreaders, q_echo, a_echo, re, q_change, a_change, rc,
           fault_lat_q(&quiet_echo, 0.99), fault_lat_q(&r.echo, 0.99), hwm, base.rss_max_kb,
           abuse.fds_max);
    if (strict) {
        /* 2x the quiet median, plus 50 us: one scheduler wake-up on a 2-core
         * machine where the abusers share the CPUs with the server and the
         * real clients (quiet medians of 30-100 us make the bare ratio
         * swing with CPU frequency alone). */
        E2E_CHECK(a_echo <= 2.0 * q_echo + 50, "echo p50 under abuse within 2x quiet + 50 us "
                  "(%.0f vs %.0f us, x%.2f)", a_echo, q_echo, re);
        E2E_CHECK(a_change <= 2.0 * q_change + 50, "SO change p50 under abuse within 2x quiet "
                  "+ 50 us (%.0f vs %.0f us, x%.2f)", a_change, q_change, rc);
    } else {
        printf("# latency ratios are reported, not asserted (use --strict)\n");
    }
    cc_close(r.call);
    soc_close(r.so);
    int st = e2e_server_stop(&srv, keep || e2e_failures);
    E2E_CHECK(st == 0, "server stops cleanly after the abuse (status %d)", st);
    fault_lat_free(&r.echo);
    fault_lat_free(&r.change);
    fault_lat_free(&quiet_echo);
    fault_lat_free(&quiet_change);
    fault_rm_rf(dir);
    close(pfd[0]);
    close(pfd[1]);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
