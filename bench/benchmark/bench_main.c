/* bench_main.c - sohub-benchmark: options, the coordinator that forks the
 * worker processes and drives the phases, and the final report (a human
 * table, or JSON with --json).  See docs/benchmarks.md. */
#include "bench.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const char *bench_scenario_name(bench_scenario s)
{
    switch (s) {
    case BENCH_CONNECT: return "connect";
    case BENCH_IDLE: return "idle";
    case BENCH_FANOUT: return "fanout";
    case BENCH_PERSIST: return "persist";
    case BENCH_CHAT: return "chat";
    case BENCH_API: return "api";
    }
    return "?";
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: sohub-benchmark -u rtmp://HOST[:PORT]/APP[/INSTANCE] SCENARIO [options]\n"
        "       sohub-benchmark --transport ws -u ws://HOST[:PORT]/PATH SCENARIO [options]\n"
        "scenarios:\n"
        "  connect   handshake + connect + _result per second, with latency percentiles\n"
        "  idle      hold N connections; server RSS growth per connection (--pid)\n"
        "  fanout    R rooms x S subscribers x W writers on temporary shared objects\n"
        "  persist   durable changes per second on persistent shared objects\n"
        "  chat      private messages between U users (chat.sendPrivate / chat.onPrivate)\n"
        "  api       W keep-alive HTTP writers on the server API (--api, --api-key) change one\n"
        "            temporary object that S RTMP subscribers use\n"
        "options:\n"
        "  -n, --connections N   connections (connect, idle; default 1000)\n"
        "  -c, --concurrency C   connect: connections in flight; others: setups in flight (default 100)\n"
        "      --keep            connect: keep connections open until the end\n"
        "  -d, --duration S      run time bound in seconds (default 10)\n"
        "      --timeout S       one connection's setup deadline (default 10)\n"
        "      --settle S        idle: wait before reading the server's RSS (default 2)\n"
        "      --pid PID         the server process: idle reads its VmRSS, all report its CPU time\n"
        "  -r, --rooms R         fanout rooms (default 1); persist: the writers over R rooms\n"
        "                        (instances INSTANCE-0 .. INSTANCE-(R-1); RTMP)\n"
        "  -s, --subs S          fanout subscribers per room (default 100)\n"
        "  -w, --writers W       writers per room (fanout, default 1) or in total (persist, default 4;\n"
        "                        api: HTTP connections, default 8)\n"
        "  -U, --users U         chat users (default 100)\n"
        "      --rate X          changes per second per writer; 0 = flat out (default 0)\n"
        "      --window K        outstanding changes per writer (default 1 flat out, 1000 with --rate)\n"
        "  -P, --procs N         worker processes (default 1)\n"
        "      --src-ips M       bind sources to 127.0.0.1 .. 127.0.0.M (default: no bind)\n"
        "      --so-prefix P     shared object name prefix (default \"bench\")\n"
        "      --persistent      fanout: the objects are persistent (stored; clustered)\n"
        "      --sub-ports P,... fanout: subscribers connect round-robin to these ports of the\n"
        "                        URL's host (other nodes of a cluster), writers to the URL's\n"
        "                        port; chat: every user round-robin to these ports\n"
        "      --api URL         api: the admin listener, http://HOST:PORT\n"
        "      --api-key KEY     api: a write API key (default: env SOHUB_API_KEY)\n"
        "      --digest          sign C1 (digest handshake)\n"
        "      --transport T     rtmp (default) or ws: WebSocket with sohub.v1 JSON; the URL is\n"
        "                        then ws://HOST:PORT/PATH, PATH the endpoint (sohub: /ws/APP[/INSTANCE])\n"
        "      --ws-deflate      ws: offer permessage-deflate (default: not offered)\n"
        "      --json            print the result as JSON on stdout\n"
        "  -q, --quiet           no progress line\n");
}

static int parse_url(bench_opts *o, const char *url)
{
    const char *p = url;
    bool ws = o->transport == BENCH_TR_WS;
    if (strncmp(p, ws ? "ws://" : "rtmp://", ws ? 5 : 7) != 0)
        return -1;
    p += ws ? 5 : 7;
    const char *slash = strchr(p, '/');
    if (!slash || slash[1] == 0)
        return -1;
    if (strlen(slash) >= sizeof o->path || strpbrk(slash, " \r\n"))
        return -1;
    snprintf(o->path, sizeof o->path, "%s", slash);
    size_t hostlen = (size_t)(slash - p);
    const char *colon = memchr(p, ':', hostlen);
    o->port = ws ? 80 : 1935;
    if (colon) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (end != slash || port <= 0 || port > 65535)
            return -1;
        o->port = (int)port;
        hostlen = (size_t)(colon - p);
    }
    if (hostlen == 0 || hostlen >= sizeof o->host || strlen(slash + 1) >= sizeof o->app)
        return -1;
    memcpy(o->host, p, hostlen);
    o->host[hostlen] = 0;
    snprintf(o->app, sizeof o->app, "%s", slash + 1);
    size_t al = strlen(o->app);
    if (al > 0 && o->app[al - 1] == '/')
        o->app[al - 1] = 0;
    return 0;
}

static int parse_u32(const char *s, uint32_t max, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > max)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int parse_secs(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= 0) || v > BENCH_MAX_DURATION)
        return -1;
    *out = v;
    return 0;
}

enum { OPT_KEEP = 256, OPT_TIMEOUT, OPT_SETTLE, OPT_PID, OPT_RATE, OPT_WINDOW,
       OPT_SRC, OPT_PREFIX, OPT_DIGEST, OPT_JSON, OPT_API, OPT_API_KEY,
       OPT_TRANSPORT, OPT_WS_DEFLATE, OPT_PERSISTENT, OPT_SUB_PORTS };

/* "http://HOST:PORT[/]" into o->api_host / o->api_port. */
static int parse_api_url(bench_opts *o, const char *url)
{
    if (strncmp(url, "http://", 7) != 0)
        return -1;
    const char *h = url + 7;
    const char *colon = strchr(h, ':');
    if (!colon || colon == h || (size_t)(colon - h) >= sizeof o->api_host)
        return -1;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || (*end && strcmp(end, "/") != 0) || port <= 0 || port > 65535)
        return -1;
    memcpy(o->api_host, h, (size_t)(colon - h));
    o->api_host[colon - h] = 0;
    o->api_port = (int)port;
    return 0;
}

/* "P1,P2,..." into o->sub_ports; -1 when malformed or too many. */
static int parse_ports(const char *text, bench_opts *o)
{
    o->nsub_ports = 0;
    for (const char *p = text; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v <= 0 || v > 65535 || o->nsub_ports == BENCH_MAX_SUB_PORTS ||
            (*end && *end != ','))
            return -1;
        o->sub_ports[o->nsub_ports++] = (uint16_t)v;
        p = *end ? end + 1 : end;
    }
    return o->nsub_ports ? 0 : -1;
}

static int parse_args(bench_opts *o, int argc, char **argv)
{
    static const struct option longs[] = {
        {"url", required_argument, NULL, 'u'},
        {"connections", required_argument, NULL, 'n'},
        {"concurrency", required_argument, NULL, 'c'},
        {"keep", no_argument, NULL, OPT_KEEP},
        {"duration", required_argument, NULL, 'd'},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"settle", required_argument, NULL, OPT_SETTLE},
        {"pid", required_argument, NULL, OPT_PID},
        {"rooms", required_argument, NULL, 'r'},
        {"subs", required_argument, NULL, 's'},
        {"writers", required_argument, NULL, 'w'},
        {"users", required_argument, NULL, 'U'},
        {"rate", required_argument, NULL, OPT_RATE},
        {"window", required_argument, NULL, OPT_WINDOW},
        {"procs", required_argument, NULL, 'P'},
        {"src-ips", required_argument, NULL, OPT_SRC},
        {"so-prefix", required_argument, NULL, OPT_PREFIX},
        {"digest", no_argument, NULL, OPT_DIGEST},
        {"json", no_argument, NULL, OPT_JSON},
        {"api", required_argument, NULL, OPT_API},
        {"api-key", required_argument, NULL, OPT_API_KEY},
        {"transport", required_argument, NULL, OPT_TRANSPORT},
        {"ws-deflate", no_argument, NULL, OPT_WS_DEFLATE},
        {"persistent", no_argument, NULL, OPT_PERSISTENT},
        {"sub-ports", required_argument, NULL, OPT_SUB_PORTS},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->connections = 1000;
    o->concurrency = 100;
    o->duration = 10;
    o->timeout = 10;
    o->settle = 2;
    o->rooms = 1;
    o->subs = 100;
    o->writers = 0;
    o->users = 100;
    o->procs = 1;
    o->so_prefix = "bench";
    bool writers_set = false, transport_set = false;
    uint32_t pid = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "u:n:c:d:r:s:w:U:P:qh", longs, NULL)) != -1) {
        int bad = 0;
        switch (ch) {
        case 'u': o->url = optarg; break;
        case 'n': bad = parse_u32(optarg, BENCH_MAX_CONNECTIONS, &o->connections); break;
        case 'c': bad = parse_u32(optarg, BENCH_MAX_CONNECTIONS, &o->concurrency); break;
        case OPT_KEEP: o->keep = true; break;
        case 'd': bad = parse_secs(optarg, &o->duration); break;
        case OPT_TIMEOUT: bad = parse_secs(optarg, &o->timeout); break;
        case OPT_SETTLE: bad = parse_secs(optarg, &o->settle); break;
        case OPT_PID: bad = parse_u32(optarg, 0x7fffffff, &pid); o->pid = (int)pid; break;
        case 'r': bad = parse_u32(optarg, BENCH_MAX_CONNECTIONS, &o->rooms); break;
        case 's': bad = parse_u32(optarg, BENCH_MAX_CONNECTIONS, &o->subs); break;
        case 'w': bad = parse_u32(optarg, BENCH_MAX_CONNECTIONS, &o->writers); writers_set = true; break;
        case 'U': bad = parse_u32(optarg, BENCH_MAX_CONNECTIONS, &o->users); break;
        case OPT_RATE: {
            char *end;
            o->rate = strtod(optarg, &end);
            bad = end == optarg || *end || !(o->rate >= 0) || o->rate > 1e6;
            break;
        }
        case OPT_WINDOW: bad = parse_u32(optarg, BENCH_MAX_WINDOW, &o->window); break;
        case 'P': bad = parse_u32(optarg, BENCH_MAX_PROCS, &o->procs); break;
        case OPT_SRC: bad = parse_u32(optarg, BENCH_MAX_SRC_IPS, &o->src_ips); break;
        case OPT_PREFIX: o->so_prefix = optarg; break;
        case OPT_DIGEST: o->digest = true; break;
        case OPT_JSON: o->json = true; break;
        case OPT_API: o->api_url = optarg; bad = parse_api_url(o, optarg); break;
        case OPT_API_KEY: o->api_key = optarg; break;
        case OPT_TRANSPORT:
            transport_set = true;
            if (strcmp(optarg, "rtmp") == 0) o->transport = BENCH_TR_RTMP;
            else if (strcmp(optarg, "ws") == 0) o->transport = BENCH_TR_WS;
            else bad = 1;
            break;
        case OPT_WS_DEFLATE: o->ws_deflate = true; break;
        case OPT_PERSISTENT: o->persistent = true; break;
        case OPT_SUB_PORTS: bad = parse_ports(optarg, o); break;
        case 'q': o->quiet = true; break;
        case 'h': usage(stdout); exit(0);
        default: return -1;
        }
        if (bad) {
            fprintf(stderr, "sohub-benchmark: bad value for option: %s\n", optarg);
            return -1;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "sohub-benchmark: give exactly one scenario\n");
        return -1;
    }
    const char *sc = argv[optind];
    if (strcmp(sc, "connect") == 0) o->scenario = BENCH_CONNECT;
    else if (strcmp(sc, "idle") == 0) o->scenario = BENCH_IDLE;
    else if (strcmp(sc, "fanout") == 0) o->scenario = BENCH_FANOUT;
    else if (strcmp(sc, "persist") == 0) o->scenario = BENCH_PERSIST;
    else if (strcmp(sc, "chat") == 0) o->scenario = BENCH_CHAT;
    else if (strcmp(sc, "api") == 0) o->scenario = BENCH_API;
    else {
        fprintf(stderr, "sohub-benchmark: unknown scenario '%s'\n", sc);
        return -1;
    }
    /* a ws:// URL alone picks the WebSocket transport */
    if (!transport_set && o->url && strncmp(o->url, "ws://", 5) == 0)
        o->transport = BENCH_TR_WS;
    if (!o->url || parse_url(o, o->url) < 0) {
        if (o->transport == BENCH_TR_WS)
            fprintf(stderr, "sohub-benchmark: --transport ws needs -u ws://host:port/path\n");
        else
            fprintf(stderr, "sohub-benchmark: -u rtmp://host:port/app/instance is required\n");
        return -1;
    }
    if (o->ws_deflate && o->transport != BENCH_TR_WS) {
        fprintf(stderr, "sohub-benchmark: --ws-deflate is for --transport ws\n");
        return -1;
    }
    if (!writers_set)
        o->writers = o->scenario == BENCH_PERSIST ? 4 : o->scenario == BENCH_API ? 8 : 1;
    if (o->scenario == BENCH_API) {
        if (!o->api_key)
            o->api_key = getenv("SOHUB_API_KEY");
        if (!o->api_url || !o->api_key || !*o->api_key || strpbrk(o->api_key, "\r\n")) {
            fprintf(stderr, "sohub-benchmark: api needs --api http://HOST:PORT and --api-key\n");
            return -1;
        }
        /* the room of the URL's path: APP[/INSTANCE], the instance
         * _definst_ when none is given (as the server does) */
        const char *slash = strchr(o->app, '/');
        size_t al = slash ? (size_t)(slash - o->app) : strlen(o->app);
        if (al == 0 || al >= sizeof o->room_app || (slash && (!slash[1] || strchr(slash + 1, '/')))) {
            fprintf(stderr, "sohub-benchmark: api wants -u rtmp://HOST:PORT/APP[/INSTANCE]\n");
            return -1;
        }
        memcpy(o->room_app, o->app, al);
        o->room_app[al] = 0;
        snprintf(o->room_inst, sizeof o->room_inst, "%s", slash ? slash + 1 : "_definst_");
    }
    if (o->procs == 0)
        o->procs = 1;
    if (o->concurrency == 0)
        o->concurrency = 1;
    if (o->window == 0)
        o->window = o->rate > 0 ? 1000 : 1;
    if (strlen(o->so_prefix) > 60) {
        fprintf(stderr, "sohub-benchmark: --so-prefix too long\n");
        return -1;
    }
    uint64_t total = 0;
    switch (o->scenario) {
    case BENCH_CONNECT: case BENCH_IDLE: total = o->connections; break;
    case BENCH_FANOUT: total = (uint64_t)o->rooms * (o->subs + o->writers); break;
    case BENCH_PERSIST: total = o->writers; break;
    case BENCH_CHAT: total = o->users; break;
    case BENCH_API: total = (uint64_t)o->subs + o->writers; break;
    }
    if (total == 0 || total > BENCH_MAX_CONNECTIONS) {
        fprintf(stderr, "sohub-benchmark: %llu connections (allowed 1..%u)\n",
                (unsigned long long)total, BENCH_MAX_CONNECTIONS);
        return -1;
    }
    if ((o->scenario == BENCH_FANOUT || o->scenario == BENCH_PERSIST ||
         o->scenario == BENCH_API) && o->writers == 0) {
        fprintf(stderr, "sohub-benchmark: %s needs at least one writer\n",
                bench_scenario_name(o->scenario));
        return -1;
    }
    if (o->scenario == BENCH_CHAT && o->users < 2) {
        fprintf(stderr, "sohub-benchmark: chat needs at least two users\n");
        return -1;
    }
    if (o->procs > total)
        o->procs = (uint32_t)total;
    return 0;
}

/* ---- the coordinator ---- */

typedef struct wproc {
    pid_t pid;
    int ctl, rep;
    bool ready, final, eof;
    bench_report last;      /* latest record */
    uint8_t buf[sizeof(bench_report)];
    size_t have;
} wproc;

static long read_rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* utime + stime of a process, in seconds; -1 when unreadable. */
static double read_cpu_s(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (double)(ut + st) / (double)(hz > 0 ? hz : 100);
}

static void send_all(wproc *w, uint32_t n, char cmd)
{
    for (uint32_t i = 0; i < n; i++)
        if (w[i].ctl >= 0 && write(w[i].ctl, &cmd, 1) < 0) {
            close(w[i].ctl);
            w[i].ctl = -1;
        }
}

/* Reads what the workers sent within timeout_ms. */
static void pump_reports(wproc *w, uint32_t n, int timeout_ms)
{
    struct pollfd pfd[BENCH_MAX_PROCS];
    for (uint32_t i = 0; i < n; i++) {
        pfd[i].fd = w[i].eof ? -1 : w[i].rep;
        pfd[i].events = POLLIN;
        pfd[i].revents = 0;
    }
    int r = poll(pfd, n, timeout_ms);
    if (r <= 0)
        return;
    for (uint32_t i = 0; i < n; i++) {
        if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        ssize_t k = read(w[i].rep, w[i].buf + w[i].have, sizeof w[i].buf - w[i].have);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            w[i].eof = true;
            continue;
        }
        w[i].have += (size_t)k;
        if (w[i].have == sizeof w[i].buf) {
            w[i].have = 0;
            memcpy(&w[i].last, w[i].buf, sizeof w[i].last);
            if (w[i].last.magic != BENCH_REPORT_MAGIC) {
                w[i].eof = true;
                continue;
            }
            if (w[i].last.kind == BENCH_REP_READY)
                w[i].ready = true;
            if (w[i].last.kind == BENCH_REP_FINAL)
                w[i].ready = w[i].final = true;
        }
    }
}

static bool all_ready(const wproc *w, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (!w[i].ready && !w[i].eof)
            return false;
    return true;
}

static bool all_final(const wproc *w, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (!w[i].final && !w[i].eof)
            return false;
    return true;
}

static void sum_counts(const wproc *w, uint32_t n, bench_counts *out)
{
    memset(out, 0, sizeof *out);
    for (uint32_t i = 0; i < n; i++) {
        const bench_counts *c = &w[i].last.c;
        out->attempted += c->attempted;
        out->connected += c->connected;
        out->failed += c->failed;
        out->subscribed += c->subscribed;
        out->sent += c->sent;
        out->acked += c->acked;
        out->rejected += c->rejected;
        out->delivered += c->delivered;
        out->server_errors += c->server_errors;
        out->so_status += c->so_status;
        out->closed_by_peer += c->closed_by_peer;
        out->bytes_in += c->bytes_in;
        out->bytes_out += c->bytes_out;
    }
}

typedef struct progress {
    bool on;
    uint64_t start, last_print;
    bench_counts prev;
} progress;

static void progress_tick(progress *p, const bench_opts *o, const wproc *w, uint32_t n,
                          const char *phase)
{
    if (!p->on)
        return;
    uint64_t now = bench_now_us();
    if (now - p->last_print < 1000000)
        return;
    double dt = p->last_print ? (double)(now - p->last_print) / 1e6 : 1.0;
    p->last_print = now;
    bench_counts c;
    sum_counts(w, n, &c);
    fprintf(stderr, "[%6.1fs] %-7s connected %llu failed %llu",
            (double)(now - p->start) / 1e6, phase,
            (unsigned long long)c.connected, (unsigned long long)c.failed);
    if (o->scenario >= BENCH_FANOUT)
        fprintf(stderr, " | sent %llu acked %llu delivered %llu (%.0f/s)",
                (unsigned long long)c.sent, (unsigned long long)c.acked,
                (unsigned long long)c.delivered,
                (double)(c.delivered - p->prev.delivered) / dt);
    fputc('\n', stderr);
    p->prev = c;
}

/* Waits (reading reports) until cond holds or the deadline passes. */
#define WAIT_UNTIL(cond, deadline_us, phase)                                   \
    do {                                                                       \
        while (!(cond) && bench_now_us() < (deadline_us)) {                    \
            pump_reports(w, n, 100);                                           \
            progress_tick(&prog, o, w, n, (phase));                            \
        }                                                                      \
    } while (0)

static void lat_json(cJSON *root, const char *name, const bench_hist *h)
{
    cJSON *l = cJSON_AddObjectToObject(root, name);
    cJSON_AddNumberToObject(l, "count", (double)h->count);
    cJSON_AddNumberToObject(l, "p50", (double)bench_hist_quantile(h, 0.50));
    cJSON_AddNumberToObject(l, "p99", (double)bench_hist_quantile(h, 0.99));
    cJSON_AddNumberToObject(l, "p999", (double)bench_hist_quantile(h, 0.999));
    cJSON_AddNumberToObject(l, "max", (double)h->max);
    cJSON_AddNumberToObject(l, "mean", bench_hist_mean(h));
}

static void lat_line(const char *label, const bench_hist *h)
{
    if (h->count == 0) {
        printf("%-18s (no samples)\n", label);
        return;
    }
    printf("%-18s p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms  (%llu samples)\n",
           label, bench_hist_quantile(h, 0.50) / 1e3, bench_hist_quantile(h, 0.99) / 1e3,
           bench_hist_quantile(h, 0.999) / 1e3, (double)h->max / 1e3,
           (unsigned long long)h->count);
}

int main(int argc, char **argv)
{
    bench_opts opts;
    bench_opts *o = &opts;
    if (parse_args(o, argc, argv) < 0) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (o->scenario == BENCH_IDLE && o->pid > 0 && read_rss_kb(o->pid) < 0) {
        fprintf(stderr, "sohub-benchmark: cannot read /proc/%d/status\n", o->pid);
        return 2;
    }
    long rss_before = o->pid > 0 ? read_rss_kb(o->pid) : -1;
    long rss_after = -1;

    uint32_t n = o->procs;
    wproc w[BENCH_MAX_PROCS];
    memset(w, 0, sizeof w);
    fflush(stdout);
    fflush(stderr);
    for (uint32_t i = 0; i < n; i++) {
        int ctl[2], rep[2];
        if (pipe(ctl) < 0 || pipe(rep) < 0) {
            perror("sohub-benchmark: pipe");
            return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("sohub-benchmark: fork");
            return 1;
        }
        if (pid == 0) {
            close(ctl[1]);
            close(rep[0]);
            for (uint32_t j = 0; j < i; j++) {
                close(w[j].ctl);
                close(w[j].rep);
            }
            _exit(bench_worker_main(o, i, ctl[0], rep[1]));
        }
        close(ctl[0]);
        close(rep[1]);
        w[i].pid = pid;
        w[i].ctl = ctl[1];
        w[i].rep = rep[0];
    }

    progress prog;
    memset(&prog, 0, sizeof prog);
    prog.on = !o->quiet;
    prog.start = bench_now_us();
    prog.last_print = prog.start;

    /* setup: connections made (idle, fanout, persist, chat) */
    uint64_t setup_deadline = bench_now_us() + (uint64_t)((o->timeout + 120) * 1e6);
    WAIT_UNTIL(all_ready(w, n), setup_deadline, "setup");
    uint64_t t_go = bench_now_us();
    double cpu_go = o->pid > 0 ? read_cpu_s(o->pid) : -1;
    uint64_t run_deadline = t_go + (uint64_t)(o->duration * 1e6);
    if (o->scenario == BENCH_IDLE) {
        WAIT_UNTIL(false, t_go + (uint64_t)(o->settle * 1e6), "settle");
        if (o->pid > 0)
            rss_after = read_rss_kb(o->pid);
    } else if (o->scenario == BENCH_CONNECT) {
        send_all(w, n, 'G');
        WAIT_UNTIL(all_final(w, n), run_deadline, "connect");
    } else {
        send_all(w, n, 'G');
        WAIT_UNTIL(false, run_deadline, "run");
    }
    uint64_t t_stop = bench_now_us();
    double cpu_stop = o->pid > 0 ? read_cpu_s(o->pid) : -1;
    send_all(w, n, 'S');
    WAIT_UNTIL(all_final(w, n), bench_now_us() + 15000000, "stop");
    for (uint32_t i = 0; i < n; i++) {
        if (w[i].ctl >= 0)
            close(w[i].ctl);
    }
    /* give the workers a moment to close their sockets, then insist */
    uint64_t reap_deadline = bench_now_us() + 10000000;
    int worker_failures = 0;
    for (uint32_t i = 0; i < n; i++) {
        int st;
        pid_t r;
        while ((r = waitpid(w[i].pid, &st, WNOHANG)) == 0 && bench_now_us() < reap_deadline)
            usleep(10000);
        if (r == 0) {
            kill(w[i].pid, SIGKILL);
            waitpid(w[i].pid, &st, 0);
        }
        if (!w[i].final)
            worker_failures++;
        close(w[i].rep);
    }

    /* aggregate */
    bench_counts c;
    sum_counts(w, n, &c);
    bench_hist clat, lat, lat2;
    bench_hist_init(&clat);
    bench_hist_init(&lat);
    bench_hist_init(&lat2);
    uint64_t first = 0, last = 0;
    const char *first_error = "";
    /* the load generator's own CPU over the run window (connect: go to stop) */
    double client_cpu = 0;
    for (uint32_t i = 0; i < n; i++)
        if (w[i].last.cpu_stop > w[i].last.cpu_go && w[i].last.cpu_go > 0)
            client_cpu += (double)(w[i].last.cpu_stop - w[i].last.cpu_go) / 1e6;
    for (uint32_t i = 0; i < n; i++) {
        bench_hist_merge(&clat, &w[i].last.connect_lat);
        bench_hist_merge(&lat, &w[i].last.lat);
        bench_hist_merge(&lat2, &w[i].last.lat2);
        if (w[i].last.t_first && (first == 0 || w[i].last.t_first < first))
            first = w[i].last.t_first;
        if (w[i].last.t_last > last)
            last = w[i].last.t_last;
        if (!first_error[0] && w[i].last.first_error[0])
            first_error = w[i].last.first_error;
    }
    double setup_s = last > first ? (double)(last - first) / 1e6 : 0;
    double run_s = (double)(t_stop - t_go) / 1e6;
    if (o->scenario == BENCH_CONNECT)
        run_s = setup_s;
    double connect_rate = setup_s > 0 ? (double)c.connected / setup_s : 0;
    double deliver_rate = run_s > 0 ? (double)c.delivered / run_s : 0;
    double ack_rate = run_s > 0 ? (double)c.acked / run_s : 0;
    double sent_rate = run_s > 0 ? (double)c.sent / run_s : 0;
    uint64_t expected = 0;
    switch (o->scenario) {
    case BENCH_CONNECT: case BENCH_IDLE: expected = o->connections; break;
    case BENCH_FANOUT: expected = (uint64_t)o->rooms * (o->subs + o->writers); break;
    case BENCH_PERSIST: expected = o->writers; break;
    case BENCH_CHAT: expected = o->users; break;
    case BENCH_API: expected = (uint64_t)o->subs + o->writers; break;
    }
    /* server CPU over the measured window (connect: the whole run) */
    double server_cpu = cpu_go >= 0 && cpu_stop >= cpu_go ? cpu_stop - cpu_go : -1;
    double rss_per_conn = (rss_before >= 0 && rss_after >= 0 && c.connected > 0)
        ? (double)(rss_after - rss_before) * 1024.0 / (double)c.connected : -1;

    bool ok = c.connected == expected && c.failed == 0 && c.server_errors == 0 &&
              c.so_status == 0 &&
              worker_failures == 0;
    if (o->scenario != BENCH_CONNECT)
        ok = ok && c.closed_by_peer == 0;
    if (o->scenario == BENCH_FANOUT || o->scenario == BENCH_PERSIST)
        ok = ok && c.subscribed == expected && c.acked + c.rejected > 0;
    if (o->scenario == BENCH_FANOUT && o->subs + o->writers > 1)
        ok = ok && c.delivered > 0;
    if (o->scenario == BENCH_CHAT)
        ok = ok && c.acked > 0 && c.delivered > 0;
    if (o->scenario == BENCH_API)
        ok = ok && c.subscribed == o->subs && c.acked > 0 && (o->subs == 0 || c.delivered > 0);

    if (o->json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "scenario", bench_scenario_name(o->scenario));
        cJSON_AddStringToObject(root, "url", o->url);
        cJSON_AddStringToObject(root, "transport", o->transport == BENCH_TR_WS ? "ws" : "rtmp");
        cJSON_AddNumberToObject(root, "procs", n);
        cJSON_AddNumberToObject(root, "expected", (double)expected);
        cJSON_AddNumberToObject(root, "attempted", (double)c.attempted);
        cJSON_AddNumberToObject(root, "connected", (double)c.connected);
        cJSON_AddNumberToObject(root, "failed", (double)c.failed);
        cJSON_AddNumberToObject(root, "setup_seconds", setup_s);
        cJSON_AddNumberToObject(root, "connect_per_second", connect_rate);
        lat_json(root, "connect_latency_us", &clat);
        if (o->scenario == BENCH_IDLE) {
            cJSON_AddNumberToObject(root, "rss_before_kb", (double)rss_before);
            cJSON_AddNumberToObject(root, "rss_after_kb", (double)rss_after);
            cJSON_AddNumberToObject(root, "rss_bytes_per_connection", rss_per_conn);
        }
        if (o->scenario >= BENCH_FANOUT) {
            cJSON_AddNumberToObject(root, "run_seconds", run_s);
            cJSON_AddNumberToObject(root, "subscribed", (double)c.subscribed);
            cJSON_AddNumberToObject(root, "sent", (double)c.sent);
            cJSON_AddNumberToObject(root, "acked", (double)c.acked);
            cJSON_AddNumberToObject(root, "rejected", (double)c.rejected);
            cJSON_AddNumberToObject(root, "delivered", (double)c.delivered);
            cJSON_AddNumberToObject(root, "sent_per_second", sent_rate);
            cJSON_AddNumberToObject(root, "acked_per_second", ack_rate);
            cJSON_AddNumberToObject(root, "deliveries_per_second", deliver_rate);
            lat_json(root, o->scenario == BENCH_PERSIST ? "ack_latency_us" : "delivery_latency_us", &lat);
            if (o->scenario == BENCH_API) {
                cJSON_AddNumberToObject(root, "api_writes_per_second", ack_rate);
                lat_json(root, "answer_latency_us", &lat2);
            }
        }
        if (server_cpu >= 0) {
            cJSON_AddNumberToObject(root, "server_cpu_seconds", server_cpu);
            cJSON_AddNumberToObject(root, "window_seconds", (double)(t_stop - t_go) / 1e6);
        }
        if (o->scenario != BENCH_IDLE)
            cJSON_AddNumberToObject(root, "client_cpu_seconds", client_cpu);
        cJSON_AddNumberToObject(root, "server_errors", (double)c.server_errors);
        cJSON_AddNumberToObject(root, "so_status", (double)c.so_status);
        cJSON_AddNumberToObject(root, "closed_by_peer", (double)c.closed_by_peer);
        cJSON_AddStringToObject(root, "first_error", first_error);
        cJSON_AddBoolToObject(root, "ok", ok);
        char *s = cJSON_Print(root);
        puts(s);
        free(s);
        cJSON_Delete(root);
    } else {
        printf("sohub-benchmark %s  %s  (procs %u, concurrency %u)\n",
               bench_scenario_name(o->scenario), o->url, n, o->concurrency);
        printf("%-18s %llu expected, %llu connected, %llu failed\n", "connections",
               (unsigned long long)expected, (unsigned long long)c.connected,
               (unsigned long long)c.failed);
        printf("%-18s %.3f s, %.1f connect/s\n", "setup", setup_s, connect_rate);
        lat_line("connect latency", &clat);
        if (o->scenario == BENCH_IDLE) {
            if (rss_per_conn >= 0)
                printf("%-18s before %ld kB, after %ld kB: %.0f bytes per connection\n",
                       "server RSS", rss_before, rss_after, rss_per_conn);
            else
                printf("%-18s not measured (give --pid)\n", "server RSS");
        }
        if (o->scenario == BENCH_FANOUT) {
            printf("%-18s %u rooms x %u subscribers x %u writers, %s, window %u, %.2f s\n",
                   "run", o->rooms, o->subs, o->writers,
                   o->rate > 0 ? "paced" : "flat out", o->window, run_s);
            printf("%-18s sent %llu (%.1f/s), acked %llu, overridden %llu\n", "changes",
                   (unsigned long long)c.sent, sent_rate, (unsigned long long)c.acked,
                   (unsigned long long)c.rejected);
            printf("%-18s %llu (%.1f/s)\n", "deliveries", (unsigned long long)c.delivered,
                   deliver_rate);
            lat_line("delivery latency", &lat);
        }
        if (o->scenario == BENCH_PERSIST) {
            printf("%-18s %u writers, window %u, %.2f s\n", "run", o->writers, o->window, run_s);
            printf("%-18s sent %llu, acked %llu (%.1f durable changes/s), overridden %llu\n",
                   "changes", (unsigned long long)c.sent, (unsigned long long)c.acked,
                   ack_rate, (unsigned long long)c.rejected);
            lat_line("ack latency", &lat);
        }
        if (o->scenario == BENCH_API) {
            printf("%-18s %u HTTP writers, %u RTMP subscribers, %s, window %u, %.2f s\n", "run",
                   o->writers, o->subs, o->rate > 0 ? "paced" : "flat out", o->window, run_s);
            printf("%-18s sent %llu, answered 200 %llu (%.1f API writes/s)\n", "writes",
                   (unsigned long long)c.sent, (unsigned long long)c.acked, ack_rate);
            printf("%-18s %llu (%.1f/s)\n", "deliveries", (unsigned long long)c.delivered,
                   deliver_rate);
            lat_line("answer latency", &lat2);
            lat_line("request->delivery", &lat);
        }
        if (o->scenario == BENCH_CHAT) {
            printf("%-18s %u users, window %u, %.2f s\n", "run", o->users, o->window, run_s);
            printf("%-18s sent %llu, answered %llu, delivered %llu (%.1f/s)\n", "messages",
                   (unsigned long long)c.sent, (unsigned long long)c.acked,
                   (unsigned long long)c.delivered, deliver_rate);
            lat_line("delivery latency", &lat);
        }
        if (server_cpu >= 0 && o->scenario != BENCH_IDLE)
            printf("%-18s %.2f s of CPU in %.2f s (%.0f %% of one core)\n", "server CPU",
                   server_cpu, (double)(t_stop - t_go) / 1e6,
                   100.0 * server_cpu / ((double)(t_stop - t_go) / 1e6));
        if (o->scenario != BENCH_IDLE)
            printf("%-18s %.2f s of CPU in %.2f s, all workers (%.0f %% of one core)\n",
                   "client CPU", client_cpu, (double)(t_stop - t_go) / 1e6,
                   100.0 * client_cpu / ((double)(t_stop - t_go) / 1e6));
        if (c.server_errors || c.closed_by_peer || c.so_status)
            printf("%-18s %llu _error answers, %llu shared-object Status events, "
                   "%llu connections closed by the server\n",
                   "errors", (unsigned long long)c.server_errors,
                   (unsigned long long)c.so_status, (unsigned long long)c.closed_by_peer);
        if (first_error[0])
            printf("%-18s %s\n", "first error", first_error);
        if (worker_failures)
            printf("%-18s %d worker(s) sent no final report\n", "workers", worker_failures);
        printf("%-18s %s\n", "result", ok ? "ok" : "FAILED");
    }
    return ok ? 0 : 1;
}
