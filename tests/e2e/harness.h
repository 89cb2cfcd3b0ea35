/* harness.h - end-to-end test harness: runs the real sohub-server binary.
 *
 * e2e_server_start() makes a temporary directory (data dir, log, port file,
 * optional config), starts `sohub-server --listen 127.0.0.1:0 --port-file F
 * --data-dir D [--config C] [extra args]` with its stderr in the log, and
 * waits (bounded) until the port file appears.  e2e_server_stop() sends
 * SIGTERM, waits (bounded, then SIGKILL) and returns the exit status, which
 * a clean shutdown makes 0 (and which catches sanitizer reports).
 *
 * The server binary comes from $SOHUB_SERVER (set by tests/e2e/meson.build).
 *
 * Cluster mode (SOHUB_E2E_CLUSTER=N, 2..E2E_MAX_NODES; issue 15): the same
 * calls start a redis-server of the test's own (free loopback port,
 * appendonly with appendfsync always), N sohub-server nodes sharing it
 * (the test's config text plus a [cluster] section naming that Redis and
 * the node) and HAProxy in TCP mode with `balance roundrobin` in front of
 * them: `port` is HAProxy's, so successive connections of one test land
 * on successive nodes.  The cluster's durable state lives in the data
 * directory as the SQLite file does on one node: DATA/redis (Redis' files)
 * and DATA/nK (node K's data directory).  A start given `--data-dir DATA`
 * of an earlier server reuses that Redis if it still runs, or starts it
 * again from its AOF; the Redis is stopped when the directory holding it
 * is removed (e2e_server_stop with keep false) or when the test exits.
 * Log checks look at every node's log; stop answers the worst status of
 * the nodes.  Without redis-server or haproxy the start exits the test
 * with E2E_SKIP.  Tests that signal or wait for the server themselves use
 * e2e_server_kill() and e2e_server_wait(), which reach every node.
 * Every wait here is bounded in time; tests print TAP-like lines and exit
 * non-zero when a check failed, 77 to be skipped.
 */
#ifndef E2E_HARNESS_H
#define E2E_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define E2E_SKIP 77

#define E2E_MAX_NODES 8

typedef struct e2e_server {
    pid_t pid;              /* the server; in cluster mode the first node */
    int port;               /* where clients connect (cluster: HAProxy) */
    char dir[256];
    char log_path[320];     /* cluster: the first node's; see e2e_log_read */
    char port_path[320];
    char config_path[320];  /* the test's own config text */
    char data_dir[320];     /* cluster: the data directory in use */
    /* cluster mode only (nodes == 0 on one node) */
    int nodes;
    pid_t node_pid[E2E_MAX_NODES];
    int node_port[E2E_MAX_NODES];
    char node_log[E2E_MAX_NODES][320];
    pid_t lb_pid;           /* HAProxy */
    int redis_port;
} e2e_server;

/* The number of nodes SOHUB_E2E_CLUSTER asks for; 0 for one server. */
int e2e_cluster_nodes(void);

/* Starts the server.  config_text: INI text written to a file and passed
 * with --config (NULL = none).  extra: NULL-terminated extra arguments (may
 * be NULL).  Returns 0, or -1 with a message printed. */
int e2e_server_start(e2e_server *s, const char *config_text, const char *const *extra);
/* SIGTERM, wait up to 10 s, SIGKILL after that.  Returns the exit status
 * (0..255), 128+signal when killed by a signal, -1 on error.  Removes the
 * temporary directory unless keep is true. */
int e2e_server_stop(e2e_server *s, bool keep);
/* Sends sig to the server (every node in cluster mode; not to Redis, which
 * stands for the disk).  Returns 0 or -1. */
int e2e_server_kill(e2e_server *s, int sig);
/* Waits up to timeout_ms for the server (every node) to exit; returns as
 * e2e_wait, the worst status of the nodes in cluster mode.  Processes that
 * exited are forgotten (pid 0), so a later e2e_server_stop leaves them. */
int e2e_server_wait(e2e_server *s, int timeout_ms);
/* Cluster mode: how many subscribers Redis has on channel (PUBSUB NUMSUB),
 * to wait for a node to have told Redis something; -1 on one server or
 * when Redis does not answer within a second. */
int e2e_cluster_subscribers(const e2e_server *s, const char *channel);
/* The server log (every node's, one after the other); caller frees.  NULL
 * when there is none. */
char *e2e_log_read(const e2e_server *s);
/* True when the server log contains needle. */
bool e2e_log_contains(const e2e_server *s, const char *needle);
/* Waits up to timeout_ms for needle to appear in the log. */
bool e2e_log_wait(const e2e_server *s, const char *needle, int timeout_ms);
/* Prints the server log to stderr (for failures). */
void e2e_log_dump(const e2e_server *s);

/* Reads a whole file (NUL-terminated, caller frees); NULL when unreadable. */
char *e2e_read_file(const char *path, size_t *len);
int64_t e2e_now_ms(void);
void e2e_sleep_ms(int ms);

/* Runs argv[0] (searched in PATH) with stdout and stderr into out_path
 * (NULL = /dev/null), stdin from /dev/null, killing it after timeout_ms.
 * Returns its exit status, 128+signal when it died of a signal, -2 when it
 * was killed for the time-out, -1 when it could not run.  *elapsed_ms (may
 * be NULL) gets its run time. */
int e2e_run(const char *const argv[], const char *out_path, int timeout_ms, int *elapsed_ms);
/* Starts argv in the background (output into out_path); returns the pid. */
pid_t e2e_spawn(const char *const argv[], const char *out_path);
/* Waits up to timeout_ms for pid; returns as e2e_run (-2: still running). */
int e2e_wait(pid_t pid, int timeout_ms);
/* True when `name` is an executable in PATH. */
bool e2e_have(const char *name);

/* ---- a raw TCP client for abuse tests ---- */
/* Connects to 127.0.0.1:port (blocking socket).  Returns fd or -1. */
int e2e_tcp_connect(int port);
/* Sends all n bytes.  Returns 0 or -1. */
int e2e_send_all(int fd, const void *p, size_t n);
/* Receives exactly n bytes within timeout_ms.  Returns 0 or -1. */
int e2e_recv_exact(int fd, void *p, size_t n, int timeout_ms);
/* Reads and drops input until the peer closes (returns ms it took) or
 * timeout_ms passes (returns -1). */
int e2e_wait_closed(int fd, int timeout_ms);
/* Does a simple (version 3, no digest) client handshake.  Returns 0 or -1. */
int e2e_raw_handshake(int fd);
/* Sends one message as chunks of chunk_size on csid (< 64) with a type 0
 * header.  Returns 0 or -1. */
int e2e_raw_send_msg(int fd, uint32_t csid, uint8_t type, uint32_t sid, const uint8_t *body,
                     size_t len, uint32_t chunk_size);

/* ---- minimal AMF0 writer for hand-made commands ---- */
typedef struct e2e_amf {
    uint8_t buf[1 << 17];
    size_t len;
} e2e_amf;
void e2e_amf_str(e2e_amf *a, const char *s);
void e2e_amf_num(e2e_amf *a, double d);
void e2e_amf_null(e2e_amf *a);
void e2e_amf_obj_begin(e2e_amf *a);
void e2e_amf_obj_key(e2e_amf *a, const char *k);  /* follow with a value */
void e2e_amf_obj_end(e2e_amf *a);

/* ---- checks ---- */
extern int e2e_failures;
extern int e2e_checks;
#define E2E_CHECK(cond, ...)                                                     \
    do {                                                                          \
        e2e_checks++;                                                             \
        if (cond) {                                                               \
            printf("ok %d - ", e2e_checks);                                       \
        } else {                                                                  \
            e2e_failures++;                                                       \
            printf("not ok %d - %s:%d: (%s) ", e2e_checks, __FILE__, __LINE__, #cond); \
        }                                                                         \
        printf(__VA_ARGS__);                                                      \
        printf("\n");                                                             \
        fflush(stdout);                                                           \
    } while (0)

#endif
