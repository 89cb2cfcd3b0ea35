/* app.h - the sohub server as seen by applications and by the
 * shared-object engine.
 *
 * Roles:
 *   app_server  one libuv loop, its listeners and connections (server.c).
 *   app_conn    one client connection, whatever its transport (RTMP now;
 *               WebSocket and others go the same way).  Owned by the
 *               server; the pointer stays valid until the on_disconnect
 *               callbacks of that connection have returned, never after.
 *   app_app     an application: a name ("chat", "samples.counter", or "*"
 *               for any name) with callbacks and methods.  A client picks
 *               one with the `app` part of its connect URL
 *               rtmp://host[:port]/APP[/INSTANCE][?query].
 *
 * How applications plug in (samples, chat, token auth):
 *   app_app_ops ops = { .on_connect = my_connect, .on_disconnect = my_bye };
 *   app_app *a = app_server_add_app(srv, "chat", &ops, my_state);
 *   app_method_register(srv, a, "sendMessage", my_send, my_state);
 * Registration happens before app_server_run().  With no config file and
 * no registered applications every name is served by the built-in open
 * application ("*").  A config file's [app NAME] sections declare which
 * names are served; app_conn_app_config() gives the section of a client.
 *
 * How the shared-object engine plugs in: app_server_set_so_hooks().  Every
 * shared-object message from a connected client goes to hooks.on_message;
 * while no hooks are set such messages are logged at debug level and
 * ignored.  The engine sends with app_conn_send_shared() (one encoded body,
 * framed once per transport and queued to many connections), watches
 * app_conn_out_bytes() and gets hooks.on_drain when a connection's queue
 * empties (slow-subscriber handling), and hooks.on_shutdown to flush its
 * stores before the process exits.
 *
 * Threading: everything runs on the server's loop thread.  No function here
 * may be called from another thread.
 */
#ifndef APP_H
#define APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "amf.h"
#include "config.h"
#include "rtmp.h"
#include "sh_rcbuf.h"

typedef struct app_server app_server;
typedef struct app_conn app_conn;
typedef struct app_app app_app;

/* How a client's values travel: RTMP objectEncoding 0 (AMF0) or 3 (AMF3),
 * or JSON (WebSocket clients). */
enum { APP_ENC_AMF0 = 0, APP_ENC_AMF3 = 3, APP_ENC_JSON = 74 };

/* Kinds of message bodies the engine makes for clients: a shared-object
 * message body of RTMP type 19 (AMF0) or 16 (AMF3), or a JSON text. */
enum { APP_BODY_SO_AMF0 = 19, APP_BODY_SO_AMF3 = 16, APP_BODY_JSON = 1 };

/* ---- server ---- */

/* Creates a server for cfg (borrowed: must outlive the server and stay
 * unchanged) on loop (borrowed; NULL = uv_default_loop()).  Does not listen
 * yet.  Returns NULL on failure. */
app_server *app_server_new(const app_config *cfg, uv_loop_t *loop);
/* Binds and listens on cfg->listen, writes cfg->port_file, starts timers and
 * signal handlers (SIGINT, SIGTERM).  Returns 0 or a negative libuv code. */
int app_server_start(app_server *s);
/* Runs the loop until app_server_stop() (or a signal) and every handle is
 * closed.  Returns 0 on a clean shutdown. */
int app_server_run(app_server *s);
/* Starts a clean shutdown: stop accepting, close every connection (reason
 * given), run shutdown hooks.  Safe to call more than once and from any
 * callback on the loop. */
void app_server_stop(app_server *s, const char *reason);
/* Frees the server after app_server_run() returned.  Accepts NULL. */
void app_server_free(app_server *s);

uv_loop_t *app_server_loop(const app_server *s);

/* Server-wide modules that find each other through the server. */
typedef enum app_ext {
    APP_EXT_SO = 0,     /* app_so_glue */
    APP_EXT_CHAT,       /* app/chat */
    APP_EXT_API,        /* app/api.c */
    APP_EXT_CLUSTER,    /* app/cluster.c */
    APP_EXT_STORE,      /* app/store.c */
    APP_EXT_COUNT
} app_ext;
void *app_server_ext(const app_server *s, app_ext which);
void app_server_set_ext(app_server *s, app_ext which, void *p);
const app_config *app_server_config(const app_server *s);
/* The bound port (after app_server_start). */
int app_server_port(const app_server *s);
size_t app_server_conn_count(const app_server *s);

/* ---- reconfiguration (SIGHUP) ----
 * SIGHUP runs the reload function (main.c sets it: it reads the config
 * file again and calls app_server_reconfigure, or keeps the config in
 * use when the new one is bad).  app_server_reconfigure swaps the config
 * (cfg borrowed: it must outlive the server, as the first one; configs
 * that were in use are never freed while the server runs, so a pointer
 * taken from one stays valid), re-derives the server's limits, re-points
 * every connected client at its application's new section (clients of an
 * application no longer served are closed), then runs the reconfigure
 * hooks of the modules in registration order. */
typedef void (*app_reload_fn)(app_server *s, void *ud);
void app_server_set_reload(app_server *s, app_reload_fn fn, void *ud);
void app_server_reconfigure(app_server *s, const app_config *cfg);
typedef void (*app_reconfigure_fn)(app_server *s, const app_config *old_cfg,
                                   const app_config *new_cfg, void *ud);
int app_server_on_reconfigure(app_server *s, app_reconfigure_fn fn, void *ud);
/* Calls fn for every connection that is connected (loop thread). */
void app_server_each_conn(app_server *s, void (*fn)(app_conn *c, void *ud), void *ud);

/* Functions run at shutdown after every connection was closed, in reverse
 * order of registration (stores flush here).  Returns 0 or SH_ENOMEM. */
typedef void (*app_shutdown_fn)(app_server *s, void *ud);
int app_server_on_shutdown(app_server *s, app_shutdown_fn fn, void *ud);

/* ---- connect information given to applications ---- */
typedef struct app_connect_info {
    const char *app;         /* application name (validated: [A-Za-z0-9_.-]) */
    const char *instance;    /* instance name, "_definst_" by default */
    const char *tc_url;      /* sanitised copy of tcUrl ("" when absent) */
    const char *query;       /* text after '?' in app or tcUrl, "" when none */
    const char *user;        /* value of user= in the query, or the first
                                string connect argument; "" when none */
    const char *token;       /* value of token= in the query, or the second
                                string connect argument; "" when none */
    int object_encoding;     /* APP_ENC_AMF0, APP_ENC_AMF3 or APP_ENC_JSON */
    const amf_value *cmd_obj;      /* borrowed connect command object */
    amf_value *const *args;        /* borrowed extra connect arguments */
    size_t nargs;
} app_connect_info;

/* ---- applications ---- */

/* What on_connect decides. */
typedef struct app_verdict {
    bool reject;
    /* on_connect only: decide later with app_conn_accept (the
     * application waits for something, e.g. its objects' room to load). */
    bool pending;
    char description[256];   /* sent in NetConnection.Connect.Rejected */
} app_verdict;

typedef struct app_app_ops {
    /* Called for connect; leave v->reject false to accept.  The client gets
     * _result (accepted) or _error + close (rejected) afterwards, so do not
     * send to c from here (app_conn_call refuses); send from an observer's
     * on_connect (app_server_add_observer), which runs after the _result.
     * Store per-connection state with app_conn_set_data(c, APP_SLOT_APP, p)
     * and free it in on_disconnect. */
    void (*on_connect)(app_app *a, app_conn *c, const app_connect_info *info,
                       app_verdict *v, void *ud);
    /* Called once for every connection on_connect accepted or left
     * pending, when it goes away (also after a pending connect was
     * rejected). */
    void (*on_disconnect)(app_app *a, app_conn *c, const char *reason, void *ud);
    /* Called when the server is freed. */
    void (*on_free)(app_app *a, void *ud);
} app_app_ops;

/* Registers an application under name ("*" = any name not registered
 * otherwise).  ops is copied; ud is borrowed (freed by on_free if needed).
 * Registering a name twice replaces nothing: returns NULL. */
app_app *app_server_add_app(app_server *s, const char *name, const app_app_ops *ops, void *ud);
/* The application's instances keep the `presence` object (app/chat, as
 * with presence = true in its section) whatever its section says: for an
 * application whose pages show presence (the chat sample). */
void app_app_keep_presence(app_app *a);
/* Whether application app_name (section a, NULL = none) keeps `presence`:
 * its section says presence = true, or the application asked for it. */
bool app_presence_on(app_server *s, const char *app_name, const app_app_config *a);
/* Decides a connect that on_connect left pending (v->pending): rejected
 * with v->description when v->reject, else accepted (v NULL = accepted);
 * the client gets its answer now, then the shared-object engine and the
 * observers follow as for a connect accepted at once (their
 * app_connect_info then carries the application, instance, user and
 * encoding only).  Until then the client gets no answer and may send
 * nothing else; handshake_timeout_ms bounds the wait.  Does nothing when
 * c has no pending connect or is closing. */
void app_conn_accept(app_conn *c, const app_verdict *v);
app_app *app_server_find_app(app_server *s, const char *name);
const char *app_app_name(const app_app *a);

/* ---- authentication ----
 * One server-wide authenticator runs before the application's on_connect
 * for clients of applications configured with auth != none (cfg is their
 * [app] section).  It sets v->reject to refuse.  While none is set, such
 * applications refuse every client (fail closed). */
typedef void (*app_auth_fn)(app_server *s, app_conn *c, const app_app_config *cfg,
                            const app_connect_info *info, app_verdict *v, void *ud);
void app_server_set_authenticator(app_server *s, app_auth_fn fn, void *ud);

/* ---- methods (NetConnection.call from a client) ----
 * A method is looked up first in the client's application, then in the
 * server-wide table (app == NULL).  The function answers with
 * app_conn_reply_result() / app_conn_reply_error() now or later (keep txid);
 * a txid of 0 means the client wants no answer and both are no-ops then.
 * Returning a negative code instead makes the server answer _error
 * NetConnection.Call.Failed.  cmd is borrowed for the call only. */
typedef int (*app_method_fn)(app_conn *c, const rtmp_cmd *cmd, void *ud);
/* Built in, server-wide: "echo" answers _result with its first argument
 * (round-trip checks, tests, benchmarks).  Unknown names are answered with
 * _error NetConnection.Call.Failed "Method not found (NAME)." */

int app_method_register(app_server *s, app_app *app, const char *name,
                        app_method_fn fn, void *ud);

/* ---- connections ---- */
uint64_t app_conn_id(const app_conn *c);
app_server *app_conn_server(const app_conn *c);
const char *app_conn_peer(const app_conn *c);      /* "ip:port" */
const char *app_conn_app_name(const app_conn *c);  /* "" before connect */
const char *app_conn_instance(const app_conn *c);
const char *app_conn_user(const app_conn *c);
app_app *app_conn_app(const app_conn *c);          /* NULL before connect */
/* The [app] config section of the client (NULL = defaults apply). */
const app_app_config *app_conn_app_config(const app_conn *c);
/* APP_ENC_AMF0, APP_ENC_AMF3 or APP_ENC_JSON. */
int app_conn_object_encoding(const app_conn *c);
/* "rtmp", ... */
const char *app_conn_transport(const app_conn *c);
bool app_conn_connected(const app_conn *c);        /* NetConnection accepted */
/* Last measured ping round trip in ms, -1 when none yet. */
int64_t app_conn_rtt_ms(const app_conn *c);
/* Bytes queued for this client and not yet written. */
size_t app_conn_out_bytes(const app_conn *c);

/* Per-connection data slots so modules need no lookup table. */
typedef enum app_slot {
    APP_SLOT_APP = 0,   /* the application's own state */
    APP_SLOT_SO = 1,    /* shared-object engine */
    APP_SLOT_AUTH = 2,
    APP_SLOT_COUNT
} app_slot;
void *app_conn_get_data(const app_conn *c, app_slot slot);
/* Whether s[0..n) can be a user name as connects give them: printable
 * ASCII, 1 to APP_NAME_MAX bytes (the session sanitises and cuts the names
 * clients send so); a name that is not cannot match a connected user. */
bool app_user_name_ok(const char *s, size_t n);
void app_conn_set_data(app_conn *c, app_slot slot, void *p);

/* Sending.  Each queues output and schedules one write for this loop turn;
 * returns 0 or a negative code (the connection is closed on SH_ELIMIT:
 * its queue passed max_output_bytes or the server's client memory).
 *
 * A body encoded once for many clients: fill kind and body, queue it to
 * each recipient with app_conn_send_shared (each transport frames it once,
 * on its first recipient, and keeps the frame in m), then drop the frames
 * with app_shared_cleanup.  The body must be of the kind the recipient's
 * encoding reads (APP_BODY_SO_AMF0/AMF3 for RTMP clients of that
 * encoding, APP_BODY_JSON for JSON clients): SH_EINVAL otherwise. */
enum { APP_FRAME_SLOTS = 4 };
typedef struct app_shared {
    uint8_t kind;              /* APP_BODY_* */
    sh_rcbuf *body;            /* borrowed */
    sh_rcbuf *framed[APP_FRAME_SLOTS];  /* private: frames, built on first use */
} app_shared;
int app_conn_send_shared(app_conn *c, app_shared *m);
void app_shared_cleanup(app_shared *m);
/* A call of a client method that wants no answer (txid 0), in the
 * client's encoding: app_conn_call(c, name, args, nargs, NULL, NULL). */
int app_conn_send_cmd(app_conn *c, const char *name, double txid,
                      amf_value *const *args, size_t nargs);
/* Answers a client's call txid: _result with null command object and the
 * given value (borrowed; NULL = null), or _error with an info object
 * {level "error", code, description}.  No-ops when txid is 0. */
int app_conn_reply_result(app_conn *c, double txid, const amf_value *value);
int app_conn_reply_error(app_conn *c, double txid, const char *code, const char *description);

/* Calls a method on the client.  cb (may be NULL) runs once: with
 * ok = true and the client's _result arguments, ok = false and its _error
 * arguments (the values after the command object; args[0] is usually the
 * one result or info object; borrowed for the callback), or ok = false, nargs = 0 when the connection closed first.
 * Returns 0, SH_ELIMIT (too many calls pending) or another negative code. */
typedef void (*app_call_cb)(app_conn *c, bool ok, amf_value *const *args, size_t nargs, void *ud);
int app_conn_call(app_conn *c, const char *method, amf_value *const *args, size_t nargs,
                  app_call_cb cb, void *ud);

/* Closes the connection after queued output was written (bounded by a
 * short grace time); reason is logged. */
void app_conn_close(app_conn *c, const char *reason);

/* Back-pressure from a module whose work the connection's input makes
 * faster than it can be done (the cluster's writes to Redis): c is not
 * read any more (what one read already brought is still handled) until
 * app_server_release_input.  Idempotent; a closing connection is left
 * alone. */
void app_conn_hold_input(app_conn *c);
/* Reads again every connection held by app_conn_hold_input. */
void app_server_release_input(app_server *s);

/* ---- connection observers ----
 * Server-wide features that follow every accepted connection whatever its
 * application (one-to-one chat, presence).  on_connect runs once the client
 * was accepted and its connect _result queued (info borrowed for the call);
 * on_disconnect runs once for each such connection when it goes away,
 * after the SO hooks and the application's on_disconnect.  Either may be
 * NULL.  Observers run in registration order; register before
 * app_server_run().  ops is copied, ud borrowed.  Returns 0 or SH_ENOMEM. */
typedef struct app_observer {
    void (*on_connect)(app_conn *c, const app_connect_info *info, void *ud);
    void (*on_disconnect)(app_conn *c, void *ud);
} app_observer;
int app_server_add_observer(app_server *s, const app_observer *ops, void *ud);

/* ---- shared-object engine hooks ---- */
typedef struct app_so_hooks {
    /* A client's NetConnection was accepted (app, instance, encoding and
     * application config are known now).  A negative return closes it. */
    int (*on_connect)(void *ud, app_conn *c);
    /* A shared-object message from a connected client: kind
     * APP_BODY_SO_AMF0 / APP_BODY_SO_AMF3 with the message body (borrowed
     * for the call).  A negative return closes the connection, with the
     * error's description in the log. */
    int (*on_message)(void *ud, app_conn *c, uint8_t kind, const uint8_t *body, size_t len);
    /* A shared-object message from a JSON client: the "op":"so" object
     * (a const cJSON *, borrowed for the call; so_json.h).  A negative
     * return closes the connection. */
    int (*on_json)(void *ud, app_conn *c, const void *json);
    /* The connection is going away (before the application's on_disconnect).
     * Called for every connection that reached on_connect, also when
     * on_connect failed. */
    void (*on_disconnect)(void *ud, app_conn *c);
    /* The connection's output queue became empty after having data. */
    void (*on_drain)(void *ud, app_conn *c);
    /* Shutdown: every connection closed; flush stores. */
    void (*on_shutdown)(void *ud);
    void *ud;
} app_so_hooks;

/* Copies hooks into the server (NULL clears them). */
void app_server_set_so_hooks(app_server *s, const app_so_hooks *hooks);
/* The hooks set (borrowed), NULL when none. */
const app_so_hooks *app_server_so_hooks(const app_server *s);

#endif
