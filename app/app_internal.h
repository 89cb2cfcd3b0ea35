/* app_internal.h - structures shared by server.c and netconn.c only.
 * Applications use app.h; nothing here is a contract. */
#ifndef APP_INTERNAL_H
#define APP_INTERNAL_H

#include "app.h"
#include "sh_map.h"

#define APP_WRITE_IOV_MAX 64
#define APP_READ_SLAB (64 * 1024)
#define APP_CLOSE_GRACE_MS 1000
#define APP_REASON_MAX 159          /* bytes of a close reason kept for the log */
#define APP_RANDOM_POOL (RTMP_HANDSHAKE_SIZE * 32)

typedef struct app_pending_call {
    double txid;
    app_call_cb cb;
    void *ud;
} app_pending_call;

struct app_conn {
    uv_tcp_t tcp;               /* first (a refused conn is freed as its handle); tcp.data = this */

    /* What a fan-out touches per recipient, together in few cache lines. */
    app_server *srv;
    sh_outq outq;
    rtmp_conn *rtmp;
    app_conn *dirty_next;
    bool dirty;
    bool nc_connected;
    bool closing;               /* no more input handled, no more output queued */
    bool hard;                  /* close without flushing */
    bool torn;                  /* teardown done, uv_close called */
    bool writing;               /* a uv_write is in flight */
    bool had_output;            /* for on_drain */
    void *slots[APP_SLOT_COUNT]; /* the SO glue reads its slot on every drain */

    uint64_t id;
    char ip[48];
    char peer[64];

    /* lifecycle */
    char *reason;               /* owned, set once when closing starts (NULL before) */
    uint64_t close_deadline;
    size_t write_bytes;         /* of the uv_write in flight (its request is malloc'd) */

    /* intrusive lists */
    app_conn *prev, *next;      /* all connections */
    app_conn *backlog_next;
    bool in_backlog;
    uint8_t *backlog;           /* unprocessed input after the budget ran out */
    size_t backlog_len, backlog_off;

    /* timing (uv_now) */
    uint64_t t_accept;
    uint64_t t_last_rx;
    uint64_t t_ping_sent;
    uint32_t ping_ts;
    bool ping_outstanding;
    int64_t rtt_ms;

    /* NetConnection (nc_connected is with the hot fields above) */
    bool amf3_cmds;             /* connect came as type 17 */
    int object_encoding;
    char app_name[APP_NAME_MAX + 1];
    char instance[APP_NAME_MAX + 1];
    char user[APP_NAME_MAX + 1];
    app_app *app;
    const app_app_config *app_cfg;
    uint8_t *streams;           /* streams[i] != 0: id i+1 in use */
    uint32_t nstreams;
    double next_txid;
    app_pending_call *calls;
    size_t ncalls;
};

typedef struct app_method_entry {
    struct app_method_entry *next;
    app_app *app;               /* NULL = server-wide */
    char *name;
    app_method_fn fn;
    void *ud;
} app_method_entry;

struct app_app {
    app_app *next;
    char name[APP_NAME_MAX + 1];
    app_app_ops ops;
    void *ud;
};

typedef struct app_observer_entry {
    struct app_observer_entry *next;
    app_observer ops;
    void *ud;
} app_observer_entry;

typedef struct app_shutdown_entry {
    struct app_shutdown_entry *next;
    app_shutdown_fn fn;
    void *ud;
} app_shutdown_entry;

struct app_server {
    const app_config *cfg;
    uv_loop_t *loop;
    uv_tcp_t listener;
    bool listening;
    uv_timer_t tick;
    uv_prepare_t prepare;
    uv_check_t check;
    uv_idle_t idle;
    uv_signal_t sigint, sigterm;
    bool started;
    bool stopping;
    bool stopped;               /* handles closed */
    int port;

    rtmp_conn_config rtmp_cfg;
    amf_limits amf_limits;

    app_conn *conns;            /* all connections */
    size_t nconns;              /* in the list */
    sh_map ip_counts;           /* source address -> live connections
                                   (app_ip_count, server.c) */
    size_t nclosing;            /* torn down, close callback pending */
    uint64_t next_id;
    app_conn *dirty_head;
    app_conn *backlog_head;
    uint8_t *slab;
    bool slab_busy;
    /* Handshake random bytes: one getrandom per APP_RANDOM_POOL bytes
     * instead of one per accepted connection. */
    uint8_t *rnd_pool;
    size_t rnd_left;

    app_app *apps;
    app_app *default_app;       /* serves names no one registered */
    app_method_entry *methods;
    app_shutdown_entry *shutdown;
    app_so_hooks so;
    bool have_so;
    app_auth_fn auth;
    void *auth_ud;
    app_observer_entry *observers; /* in registration order */
};

/* netconn.c */
void app_netconn_command(app_conn *c, const rtmp_msg *m);
void app_netconn_fail_calls(app_conn *c);
void app_netconn_free(app_conn *c);
int app_netconn_register_builtin(app_server *s);

/* server.c */
void app_conn_abort(app_conn *c, const char *reason);
void app_conn_mark_dirty(app_conn *c);
app_app *app_server_resolve_app(app_server *s, const char *name,
                                const app_app_config **cfg);

#endif
