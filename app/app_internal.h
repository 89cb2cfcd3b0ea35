/* app_internal.h - what server.c, session.c and the transports share.
 * Applications use app.h; nothing here is a contract.
 *
 * A connection (app_conn) is three things, each in its own file:
 *   server.c   the socket: accept, reads with a message budget, ONE output
 *              queue (sh_outq) flushed with one writev per loop turn, every
 *              cap on what the connection makes the server hold, timers,
 *              teardown.  It knows no protocol.
 *   a transport  how bytes become messages and messages bytes: RTMP over
 *              TCP (rtmp_transport.c); WebSocket and others later.  It owns
 *              its protocol state (c->tr_state) and writes into c->outq.
 *   session.c  who the client is and what it may do: the connect decision
 *              (application, authentication, on_connect, observers, the SO
 *              engine), calls both ways, the per-connection slots.  It never
 *              sees bytes of a protocol, only decoded requests and values.
 * Data runs one way: socket -> transport -> session -> engine, and
 * engine/session -> transport framing -> outq -> socket.  Every path that
 * queues output ends in app_conn_output(), which applies the caps and
 * schedules the write, so every byte is counted the same way.
 */
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

/* ---- what a session sends through its transport ---- */

typedef enum app_out_kind {
    APP_OUT_CALL,     /* a call of a client method: name, txid (0 = no answer), args */
    APP_OUT_RESULT,   /* answer to the client's call txid: args[0] is the value */
    APP_OUT_ERROR,    /* error answer to txid: args[0] is {level, code, description} */
} app_out_kind;

typedef struct app_out {
    app_out_kind kind;
    const char *name;          /* APP_OUT_CALL */
    double txid;
    amf_value *const *args;    /* borrowed */
    size_t nargs;
} app_out;

/* ---- transports ---- */

/* Where each transport keeps its frame of an app_shared. */
enum { APP_FRAME_RTMP = 0, APP_FRAME_WS = 1, APP_FRAME_WS_DEFLATE = 2 };

typedef struct app_transport {
    const char *name;          /* "rtmp", "ws", "http" (logs, listings) */
    bool wants_session;        /* a client must connect within handshake_timeout_ms */
    /* Sets up c->tr_state.  random: RTMP_HANDSHAKE_SIZE fresh bytes. */
    unsigned frame_slot;       /* its index in app_shared.framed */
    int (*open)(app_conn *c, const uint8_t *random);
    /* Bytes read from the socket: handles complete messages (at most
     * *budget of them, decrementing it) and sets *used.  On a protocol
     * error it closes c itself (app_conn_abort) and returns. */
    void (*feed)(app_conn *c, const uint8_t *in, size_t len, size_t *used, uint32_t *budget);
    /* Queues a call, result or error for the client. */
    int (*send)(app_conn *c, const app_out *m);
    /* Queues a shared message (framing it first if m has no frame for
     * this transport yet). */
    int (*send_shared)(app_conn *c, app_shared *m);
    /* Answers the client's connect: accepted (info is the status object
     * to send) or refused (info {level, code, description}). */
    int (*connect_reply)(app_conn *c, double txid, bool accepted, const amf_value *info);
    /* A keep-alive / round-trip probe carrying ts (answered through
     * app_session_pong). */
    int (*ping)(app_conn *c, uint32_t ts);
    /* app_conn_close() is starting a graceful close: the transport may
     * queue a last word (a WebSocket close frame).  May be NULL. */
    void (*closing)(app_conn *c, const char *reason);
    /* A time-out of the transport's own (an HTTP request that takes too
     * long): the reason to close c, or NULL.  May be NULL. */
    const char *(*expired)(app_conn *c, uint64_t now);
    /* True once the transport's own handshake is done (for the log line
     * of a handshake time-out). */
    bool (*handshake_done)(const app_conn *c);
    /* Memory held for partial input (counted against the caps). */
    size_t (*input_mem)(const app_conn *c);
    void (*close)(app_conn *c);
} app_transport;

extern const app_transport app_rtmp_transport;
extern const app_transport app_http_transport;
extern const app_transport app_ws_transport;

struct app_conn {
    uv_tcp_t tcp;               /* first (a refused conn is freed as its handle); tcp.data = this */

    /* What a fan-out touches per recipient, together in few cache lines. */
    app_server *srv;
    sh_outq outq;
    const app_transport *tr;
    void *tr_state;             /* owned by the transport */
    app_conn *dirty_next;
    bool dirty;
    bool nc_connected;
    bool closing;               /* no more input handled, no more output queued */
    bool hard;                  /* close without flushing */
    bool torn;                  /* teardown done, uv_close called */
    bool writing;               /* a uv_write is in flight */
    bool had_output;            /* for on_drain */
    void *slots[APP_SLOT_COUNT]; /* the SO glue reads its slot on every drain */

    struct app_tls *tls;        /* between socket and transport, NULL for plain TCP */
    uint64_t id;
    uint8_t listen_kind;        /* app_listen_kind of the listener it came in on */
    char ip[48];
    char peer[64];

    /* lifecycle */
    char *reason;               /* owned, set once when closing starts (NULL before) */
    uint64_t close_deadline;
    size_t write_bytes;         /* of the uv_write in flight (its request is malloc'd) */
    size_t mem_counted;         /* what this connection adds to the server's total */
    size_t mem_in;               /* input side of mem_counted, as last counted */

    /* intrusive lists */
    app_conn *prev, *next;      /* all connections */
    app_conn *backlog_next;
    bool in_backlog;
    app_conn *held_next;        /* app_conn_hold_input: the server's held list */
    bool input_held;
    uint8_t *backlog;           /* unprocessed input after the budget ran out */
    size_t backlog_len, backlog_off;

    /* timing (uv_now) and counters */
    uint64_t t_accept;
    uint64_t t_last_rx;
    uint64_t t_out_progress;    /* last time queued output got written (or the queue was empty) */
    uint64_t t_ping_sent;
    uint32_t ping_ts;
    bool ping_outstanding;
    int64_t rtt_ms;
    uint64_t bytes_in, bytes_out;

    /* session */
    int encoding;               /* APP_ENC_* */
    char app_name[APP_NAME_MAX + 1];
    char instance[APP_NAME_MAX + 1];
    char user[APP_NAME_MAX + 1];
    app_app *app;
    const app_app_config *app_cfg;
    bool app_attached;          /* on_connect accepted it or left it pending:
                                 * on_disconnect is owed */
    bool connect_pending;       /* waiting for app_conn_accept */
    double connect_txid;        /* of the pending connect */
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
    size_t nconns;              /* accepted connections (max_connections of its section) */
    bool presence;              /* app_app_keep_presence */
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

/* Counters of the socket side and the session (rendered by api.c). */
enum { APP_TR_RTMP = 0, APP_TR_WS, APP_TR_HTTP, APP_TR_COUNT };
enum {
    APP_REFUSE_BAD_REQUEST = 0, /* unparsable connect (names) */
    APP_REFUSE_NOT_FOUND,       /* application not served */
    APP_REFUSE_AUTH,            /* the authenticator said no */
    APP_REFUSE_ORIGIN,          /* [app] origins */
    APP_REFUSE_APP_FULL,        /* [app] max_connections */
    APP_REFUSE_APPLICATION,     /* the application's on_connect said no */
    APP_REFUSE_COUNT
};
enum {
    APP_DROP_MAX_CONNECTIONS = 0, APP_DROP_PER_IP, APP_DROP_MEMORY, APP_DROP_COUNT
};
enum {
    APP_CLOSE_OUTPUT_CAP = 0, APP_CLOSE_MEMORY, APP_CLOSE_SEND_TIMEOUT, APP_CLOSE_IDLE,
    APP_CLOSE_HANDSHAKE, APP_CLOSE_COUNT
};
typedef struct app_stats {
    uint64_t accepted[4];                 /* TCP connections by app_listen_kind */
    uint64_t dropped[APP_DROP_COUNT];     /* refused at accept */
    uint64_t connects[APP_TR_COUNT];      /* sessions accepted, by transport */
    uint64_t refused[APP_REFUSE_COUNT];   /* connects refused, by reason */
    uint64_t closed[APP_CLOSE_COUNT];     /* connections the server closed, by cause */
    uint64_t bytes_in, bytes_out;         /* of closed connections (live ones are added at scrape) */
} app_stats;

/* Index of a transport in the counters above. */
int app_tr_index(const app_transport *t);

/* A listening socket and the transport its connections start with. */
typedef struct app_listener {
    uv_tcp_t tcp;
    app_server *srv;
    const app_transport *tr;
    uint8_t kind;               /* app_listen_kind */
    bool tls;                   /* connections get an app_tls (s->tls_ctx) */
    bool active;
    int port;
} app_listener;

struct app_server {
    const app_config *cfg;
    uv_loop_t *loop;
    app_listener rtmp;
    app_listener http;          /* http_listen: pages and WebSocket */
    app_listener admin;         /* admin_listen */
    app_listener https;         /* https_listen: http_listen's job over TLS */
    struct app_tls_ctx *tls_ctx;
    sh_buf tls_plain;           /* one read's plaintext (reads are serial) */
    void *http_handlers;        /* http_transport.c's list */
    struct ws_zip *ws_zip;      /* one per server: no context is kept */
    uv_timer_t tick;
    uv_prepare_t prepare;
    uv_check_t check;
    uv_idle_t idle;
    uv_signal_t sigint, sigterm, sighup;
    app_reload_fn reload;
    void *reload_ud;
    struct app_reconf_entry *reconf;  /* in registration order */
    bool started;
    bool stopping;
    bool stopped;               /* handles closed */

    rtmp_conn_config rtmp_cfg;
    amf_limits amf_limits;      /* commands of connected clients */
    amf_limits amf_limits_pre;  /* the connect command: tighter (before the client is known) */

    app_conn *conns;            /* all connections */
    size_t nconns;              /* in the list */
    sh_map ip_counts;           /* source address -> live connections
                                   (app_ip_count, server.c) */
    size_t nclosing;            /* torn down, close callback pending */
    size_t mem_total;           /* sum of mem_counted over connections */
    uint64_t next_id;
    app_conn *dirty_head;
    app_conn *backlog_head;
    app_conn *held_head;        /* input held (app_conn_hold_input) */
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
    void *ext[APP_EXT_COUNT];
    app_stats st;
    sh_map conns_by_id;         /* connection id (boxed) -> app_conn */
    uv_timer_t lag_timer;       /* event-loop lag, every APP_LAG_PERIOD_MS */
    uint64_t lag_expected;
    struct app_histo *lag;      /* owned */
};

#define APP_LAG_PERIOD_MS 100

/* The live connection with this id, NULL when it is gone. */
app_conn *app_server_conn_by_id(const app_server *s, uint64_t id);

/* A server without listeners, for a harness that hands it connections
 * itself (fuzz/fuzz_api.c): app_server_start's timers and per-turn
 * flush, no socket bound, no signal taken.  Stop, run and free it as
 * any server.  Returns 0. */
int app_server_start_unbound(app_server *s);
/* Takes fd, a connected stream socket (any family: a socketpair end
 * does), as a connection accepted on the listener of kind (an unbound
 * one will do: its transport and caps apply), exactly as an accept would.
 * Returns 0 (the server owns fd from then on, also when a cap refuses
 * the connection), or SH_EINVAL (no such listener kind, or the server is
 * stopping), SH_ENOMEM or a libuv code (fd not usable): fd stays the
 * caller's. */
int app_server_adopt(app_server *s, int kind, uv_os_sock_t fd);

/* ---- server.c (the socket side) ---- */

/* Output was queued on c (by its transport, for any reason): applies
 * max_output_bytes and the server's client memory budget, marks c for the
 * flush of this loop turn.  Returns 0, or SH_ELIMIT when c was closed for
 * it.  Every path that queues output ends here. */
int app_conn_output(app_conn *c);
void app_conn_abort(app_conn *c, const char *reason);
void app_conn_mark_dirty(app_conn *c);

/* ---- session.c ---- */

/* A connect request, whatever the transport. */
typedef struct app_connect_req {
    double txid;
    const char *app;             /* "APP[/INSTANCE][?QUERY]" as the client gave it */
    size_t app_len;
    const char *tc_url;          /* "scheme://host[:port]/APP[/INSTANCE][?QUERY]", may be NULL */
    size_t tc_url_len;
    const char *user;            /* given on their own (NULL: from the query or args) */
    const char *token;
    const char *origin;          /* Origin of a browser's WebSocket (NULL otherwise) */
    int encoding;                /* APP_ENC_* */
    const amf_value *cmd_obj;    /* borrowed; may be NULL */
    amf_value *const *args;      /* borrowed extra arguments */
    size_t nargs;
} app_connect_req;

/* Decides a connect: application, authentication, on_connect; answers
 * through the transport (connect_reply) and, when accepted, runs the SO
 * hook and the observers; refused clients are closed. */
void app_session_connect(app_conn *c, const app_connect_req *r);
/* A call from a connected client (method registry, or an answer to a
 * server->client call when the name is _result / _error).  cmd borrowed. */
void app_session_call(app_conn *c, const rtmp_cmd *cmd);
/* A shared-object message from the client: kind APP_BODY_SO_AMF0/AMF3 with
 * the message body.  Closes c when the engine refuses it. */
void app_session_so(app_conn *c, uint8_t kind, const uint8_t *body, size_t len);
/* A shared-object message of a JSON client ("op":"so" object, a cJSON
 * node borrowed for the call).  Closes c when the engine refuses it. */
void app_session_so_json(app_conn *c, const void *json);
/* The answer to a ping with ts arrived. */
void app_session_pong(app_conn *c, uint32_t ts);
/* c's output queue became empty after having data. */
void app_session_drained(app_conn *c);
/* c is going away: SO hook, application, observers, pending calls. */
void app_session_end(app_conn *c, const char *reason);
void app_session_free(app_conn *c);
void app_session_registry_free(app_server *s);
/* {level, code, description} (owned; NULL on ENOMEM). */
amf_value *app_status_info(const char *level, const char *code, const char *desc);
int app_session_register_builtin(app_server *s);
app_app *app_server_resolve_app(app_server *s, const char *name,
                                const app_app_config **cfg);

/* ---- http_transport.c, ws_transport.c ---- */
struct http_request;
/* A request to ws_path: answers it (101, or an error) and returns true;
 * false when the path is not the WebSocket endpoint. */
bool app_ws_upgrade(app_conn *c, const struct http_request *r);
void app_http_handlers_free(app_server *s);

#endif
