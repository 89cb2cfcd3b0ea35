/* client.h - a small blocking RTMP client for sohub (sohub-cli, tests,
 * later the WebSocket gateway).
 *
 * Built on rtmp/ in the client role (rtmp_conn, RTMP_ROLE_CLIENT) over one
 * blocking TCP socket, and on so/so_wire.h for shared-object messages.  It
 * does the handshake and NetConnection.connect, then hands out every
 * command (server calls such as chat.onPrivate, and the answers to our
 * calls) and every shared-object message as an event, in arrival order.
 * Every wait is bounded by a time-out; nothing here spawns a thread.
 *
 * No event is ever dropped: events that arrive while shc_call_wait looks
 * for an answer are held, at most SHC_MAX_HELD of them; when that many are
 * held, shc_call_wait stops reading (SHC_EHELD) until the caller took them
 * with shc_next.  Bytes not read yet stay in the socket and the input
 * buffer, so the server sees back-pressure, not loss.  A message that
 * cannot be decoded, or an event that cannot be held (no memory), breaks
 * the connection with a message in shc_error: a client that acknowledges
 * the highest id it saw (chat.ack) must never see one past a gap.
 *
 * Ownership: an shc owns its socket and buffers (shc_close frees all).
 * Events returned by shc_next are owned by the caller: shc_event_cleanup.
 * Argument values passed to the send functions are borrowed.
 * Writes never raise SIGPIPE (a closed peer is an error return).
 */
#ifndef SOHUB_CLIENT_H
#define SOHUB_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "amf.h"
#include "rtmp.h"
#include "sh_buf.h"
#include "so_wire.h"

#define SHC_DEFAULT_URL "rtmp://127.0.0.1:1935/sohub/_definst_"
#define SHC_DEFAULT_PORT 1935

/* rtmp://HOST[:PORT]/APP[/INSTANCE][?QUERY] split into its parts. */
typedef struct shc_url {
    char host[256];
    int port;
    char app[256];        /* "APP/INSTANCE" as sent in connect's app field */
    char name[128];       /* APP */
    char instance[128];   /* INSTANCE, "_definst_" when absent */
    char tc_url[600];
} shc_url;

/* Returns 0, or -1 with a message in err. */
int shc_url_parse(const char *url, shc_url *u, char *err, size_t errsz);

typedef struct shc_opts {
    const char *url;      /* NULL = SHC_DEFAULT_URL */
    const char *user;     /* first connect argument; NULL = none */
    const char *token;    /* second connect argument; NULL = none */
    bool amf3;            /* objectEncoding 3: type 17 commands, type 16 SO */
    int timeout_ms;       /* TCP connect, handshake and connect answer */
    /* More string connect arguments, sent after user and token (after
     * those of them that are sent): a NULL-terminated list, NULL = none;
     * at most SHC_MAX_EXTRA_ARGS are sent. */
    const char *const *extra_args;
    int rcvbuf;           /* > 0: SO_RCVBUF in bytes, set before the TCP
                           * connect (tests of slow readers); 0 = default */
} shc_opts;

#define SHC_MAX_EXTRA_ARGS 8
/* Events held at most while shc_call_wait waits for an answer. */
#define SHC_MAX_HELD 4096
/* shc_call_wait: SHC_MAX_HELD events are held, take them first. */
#define SHC_EHELD (-2)

typedef struct shc shc;

typedef enum shc_kind {
    SHC_EV_SO = 1,        /* a shared-object message: ev.so */
    SHC_EV_CMD = 2,       /* a command (server call, _result, _error ...): ev.cmd */
} shc_kind;

typedef struct shc_event {
    shc_kind kind;
    uint8_t rtmp_type;    /* the RTMP message type it came in (SO 19 / 16,
                           * command 20 / 17) */
    so_msg so;            /* owned (SHC_EV_SO) */
    rtmp_cmd cmd;         /* owned (SHC_EV_CMD) */
} shc_event;

void shc_event_cleanup(shc_event *ev);

/* Connects, handshakes and sends NetConnection.connect; waits for the
 * answer.  Returns the client, or NULL with a message in err (connection
 * refused, time-out, or "connect rejected: <server's description>"). */
shc *shc_connect(const shc_opts *o, char *err, size_t errsz);

/* What the server said when it answered the connect with _error. */
typedef struct shc_refusal {
    bool refused;         /* the server answered _error (false: no answer,
                           * closed, network error ...) */
    char code[128];       /* info.code, e.g. NetConnection.Connect.Rejected */
    char description[256]; /* info.description ("" when absent) */
} shc_refusal;
/* shc_connect; when it fails, *why (may be NULL) tells whether the server
 * refused the connect and with which code and description. */
shc *shc_connect_ex(const shc_opts *o, shc_refusal *why, char *err, size_t errsz);
void shc_close(shc *c);   /* accepts NULL */

int shc_fd(const shc *c);
const shc_url *shc_url_of(const shc *c);
/* True when events or unread bytes are held (call shc_next(c, 0, ..)
 * before polling the socket). */
bool shc_has_pending(const shc *c);
/* Number of events held (taken by shc_next before anything is read). */
size_t shc_held(const shc *c);
/* The message of the last failure ("connection closed by the server" ...). */
const char *shc_error(const shc *c);
/* True once the connection is closed or broken (reading or writing). */
bool shc_closed(const shc *c);

/* Next event, waiting up to timeout_ms (0 = only what is there, < 0 =
 * no limit): held events first, in arrival order.  Returns 1 with *ev, 0
 * on time-out, -1 when the connection is closed or broken (shc_error says
 * why; events held before that are still returned first). */
int shc_next(shc *c, int timeout_ms, shc_event *ev);

/* Sends a call; returns its transaction id (> 0) or -1.  txid 0 (no
 * answer wanted) when want_answer is false. */
double shc_call_send(shc *c, const char *method, amf_value *const *args, size_t nargs,
                     bool want_answer);
/* Waits for the _result / _error of txid; other events that arrive
 * meanwhile are held for shc_next.  Returns 1 with the answer in *answer
 * (owned: rtmp_cmd_cleanup), 0 on time-out, -1 when closed, SHC_EHELD when
 * SHC_MAX_HELD events are held and the answer is not among them: take
 * them with shc_next (shc_held says how many), then wait again. */
int shc_call_wait(shc *c, double txid, int timeout_ms, rtmp_cmd *answer);

/* The RTMP type of this client's shared-object messages (19 or 16). */
uint8_t shc_so_type(const shc *c);
/* Sends one shared-object message body (made by so_wire_client_*). */
int shc_so_send(shc *c, const uint8_t *body, size_t len);

/* Monotonic milliseconds (for callers' deadlines). */
int64_t shc_now_ms(void);

#endif
