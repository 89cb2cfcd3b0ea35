/* bench.h - sohub-benchmark: shared types of the coordinator (bench_main.c)
 * and the worker processes (bench_worker.c).
 *
 * Process model: the coordinator forks --procs workers.  Each worker runs
 * one libuv loop with its share of the connections (connection index i
 * belongs to worker i % procs) and talks to the coordinator over two
 * pipes: one control byte stream down ('G' go, 'S' stop) and fixed-size
 * bench_report records up (progress once a second, READY when its
 * connections are set up, FINAL at the end).  All times are CLOCK_MONOTONIC
 * microseconds, which every process on the machine shares, so a writer in
 * one worker and a subscriber in another measure latency on one clock.
 */
#ifndef BENCH_H
#define BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "bench_hist.h"

typedef enum bench_scenario {
    BENCH_CONNECT,
    BENCH_IDLE,
    BENCH_FANOUT,
    BENCH_PERSIST,
    BENCH_CHAT,
    BENCH_API,
} bench_scenario;

/* How the connections talk to the server: RTMP (rtmp://, the default) or
 * WebSocket with the sohub.v1 JSON protocol (ws://, docs/websocket.md). */
typedef enum bench_transport {
    BENCH_TR_RTMP,
    BENCH_TR_WS,
} bench_transport;

/* Caps: every run is bounded in count and time. */
#define BENCH_MAX_CONNECTIONS 200000u
#define BENCH_MAX_PROCS 64u
#define BENCH_MAX_SRC_IPS 250u
#define BENCH_MAX_DURATION 3600.0
#define BENCH_MAX_WINDOW 4096u
#define BENCH_MAX_SUB_PORTS 16u

typedef struct bench_opts {
    bench_scenario scenario;
    bench_transport transport;
    const char *url;
    char host[256];
    int port;
    char app[512];        /* connect's "app": the URL path without its leading '/' */
    char path[512];       /* ws: the request path, with its leading '/' */
    bool ws_deflate;      /* ws: offer permessage-deflate */
    uint32_t connections; /* connect, idle */
    uint32_t concurrency; /* connect: connections in flight; others: handshakes in flight */
    bool keep;            /* connect: hold connections until the end */
    double duration;      /* seconds */
    double timeout;       /* seconds: one connection's setup deadline */
    double settle;        /* idle: seconds to wait before reading RSS */
    int pid;              /* idle: server pid to read VmRSS of */
    uint32_t rooms, subs, writers, users;
    double rate;          /* changes (or messages) per second per writer; 0 = flat out */
    uint32_t window;      /* outstanding changes per writer */
    uint32_t procs;
    uint32_t src_ips;     /* 0 = do not bind; n = 127.0.0.1 .. 127.0.0.n */
    const char *so_prefix;
    bool persistent;      /* fanout: the rooms' objects are persistent */
    /* fanout: subscriber k of a room connects to sub_ports[k % nsub_ports]
     * on the URL's host (other nodes of a cluster); writers to the URL's
     * port.  0 ports: everyone to the URL's. */
    uint16_t sub_ports[BENCH_MAX_SUB_PORTS];
    uint32_t nsub_ports;
    /* api: the admin listener ("http://HOST:PORT"), the API key, and the
     * room the subscribers are in, split for the API's path */
    const char *api_url;
    char api_host[256];
    int api_port;
    const char *api_key;
    char room_app[256], room_inst[256];
    bool digest;
    bool json;
    bool quiet;
    uint64_t seed;
} bench_opts;

enum { BENCH_REP_PROGRESS = 1, BENCH_REP_READY = 2, BENCH_REP_FINAL = 3 };

/* Counters a worker reports; the coordinator sums them. */
typedef struct bench_counts {
    uint64_t attempted;   /* connections started */
    uint64_t connected;   /* connect _result received */
    uint64_t failed;      /* refused, timed out, closed, _error */
    uint64_t subscribed;  /* UseSuccess received */
    uint64_t sent;        /* changes / messages sent in the run window */
    uint64_t acked;       /* Success (or call _result) received for them */
    uint64_t rejected;    /* Change for the writer's own key, or Status */
    uint64_t delivered;   /* Change events / onPrivate received in the window */
    uint64_t server_errors; /* _error answers to calls */
    uint64_t so_status;   /* shared-object Status events (errors, limits) */
    uint64_t closed_by_peer;
    uint64_t bytes_in, bytes_out;
} bench_counts;

#define BENCH_REPORT_MAGIC 0x53484252u /* "SHBR" */
#define BENCH_ERRMSG 160

typedef struct bench_report {
    uint32_t magic;
    uint32_t kind;
    uint32_t worker;
    uint32_t pad;
    uint64_t t_first;     /* first connection start (us, monotonic) */
    uint64_t t_last;      /* last connection done */
    uint64_t t_go, t_stop;
    uint64_t cpu_go, cpu_stop; /* the worker's own CPU time (us) at go and stop */
    bench_counts c;
    char first_error[BENCH_ERRMSG]; /* first failure reason seen, "" if none */
    bench_hist connect_lat;  /* TCP connect start -> connect _result */
    bench_hist lat;          /* scenario latency: delivery / ack */
    bench_hist lat2;         /* api: request sent -> answer received */
} bench_report;

/* Runs one worker to completion; returns the process exit code. */
int bench_worker_main(const bench_opts *o, uint32_t worker, int ctl_fd, int rep_fd);

uint64_t bench_now_us(void);
/* CPU time the calling process has used, in microseconds. */
uint64_t bench_cpu_us(void);
const char *bench_scenario_name(bench_scenario s);

#endif
