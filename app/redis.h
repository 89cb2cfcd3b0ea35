/* redis.h - one connection to a Redis server on the server's loop (hiredis'
 * asynchronous API with its libuv adapter).
 *
 * An app_redis keeps one connection up: it connects, reconnects after a loss
 * with exponential back-off and jitter (100 ms doubling to 5 s), loads the
 * registered Lua scripts on every connect before it reports itself up, and
 * times out commands: a Redis that stops answering for timeout_ms is
 * disconnected, which fails every command in flight.  Nothing is queued while
 * the connection is down: a command issued then fails at once (SH_ESTATE), so
 * the caller answers its client with a clear status instead of holding it.
 *
 * Redis does not mix commands and pub/sub on one connection, so a user that
 * needs both makes two app_redis: one for commands (app_redis_cmd,
 * app_redis_eval), one for subscriptions (app_redis_subscribe).
 *
 * Callbacks run on the loop thread.  A command's callback gets the reply
 * (borrowed for the call) or NULL when the command got no answer: the
 * connection was lost, timed out or is being freed.  A Redis error comes as
 * a REDIS_REPLY_ERROR reply.
 *
 * Subscriptions outlive connections: they are issued again on every connect,
 * and each one's callback hears APP_REDIS_SUB_READY once Redis confirmed it
 * (only then is a message published to it sure to arrive, so a reader that
 * wants no gap subscribes first and reads the state on READY), then
 * APP_REDIS_SUB_MESSAGE per message, and APP_REDIS_SUB_LOST when the
 * connection drops (messages published until the next READY are missed).
 *
 * Limits: at most max_pending commands in flight (SH_ELIMIT beyond).  Redis is
 * the operator's server and is trusted: reply sizes are hiredis' business.
 */
#ifndef APP_REDIS_H
#define APP_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <uv.h>

typedef struct app_redis app_redis;

/* A command's answer: reply NULL = no answer (see above). */
typedef void (*app_redis_cb)(app_redis *r, redisReply *reply, void *ud);

typedef enum app_redis_sub_event {
    APP_REDIS_SUB_READY = 1,   /* subscribed: messages from now on arrive */
    APP_REDIS_SUB_MESSAGE = 2, /* msg, len: one published message */
    APP_REDIS_SUB_LOST = 3,    /* connection lost: messages may be missed */
} app_redis_sub_event;

typedef void (*app_redis_sub_cb)(app_redis *r, app_redis_sub_event ev, const char *msg,
                                 size_t len, void *ud);

/* A Lua script run with EVALSHA; its SHA-1 is computed once, at
 * app_redis_script_init.  The struct and src are borrowed by every
 * app_redis that registers it, for as long as they live. */
typedef struct app_redis_script {
    const char *name; /* for logs */
    const char *src;
    char sha1[41];    /* read-only */
    /* Its answer acknowledges a write (set by the user after init): with
     * app_redis_opts.wait_replicas, the answer is held until that many
     * replicas have the write (see there). */
    bool acks;
} app_redis_script;

void app_redis_script_init(app_redis_script *s, const char *name, const char *src);

typedef struct app_redis_opts {
    const char *host;
    int port;
    const char *name;          /* for logs: "cmd", "sub" */
    uint32_t timeout_ms;       /* connect and command time-out; 0 = 2000 */
    uint32_t max_pending;      /* commands in flight; 0 = 65536 */
    /* Writes acknowledged only once replicas have them: the answers of
     * scripts marked acks are held until a WAIT wait_replicas
     * wait_timeout_ms, sent after them (one WAIT covers every such script
     * sent in the same turn of the loop), says enough replicas have them.
     * When it says fewer, they get NULL, like a command that got no answer:
     * the write may still be in Redis, but it was not acknowledged.  Every
     * answer keeps its order: replies that come behind a held one wait too.
     * 0 = no WAIT. */
    uint32_t wait_replicas;
    uint32_t wait_timeout_ms;
    /* The connection came up (scripts loaded) or went down. */
    void (*on_state)(app_redis *r, bool up, void *ud);
    void *ud;
} app_redis_opts;

/* Starts connecting at once.  opts is copied (host and name too; scripts
 * borrowed).  Returns NULL on allocation failure. */
app_redis *app_redis_new(uv_loop_t *loop, const app_redis_opts *opts);
/* Registers a script, loaded on every connect (and at once when up: the
 * SCRIPT LOAD goes before any EVALSHA issued after this call).  s is
 * borrowed.  Returns 0 or SH_ENOMEM. */
int app_redis_add_script(app_redis *r, const app_redis_script *s);
/* Closes the connection; commands in flight get NULL replies (possibly from
 * inside this call), subscriptions are dropped without a LOST event.  The
 * memory goes in a close callback.  Accepts NULL. */
void app_redis_free(app_redis *r);

bool app_redis_up(const app_redis *r);
/* True when scripts marked acks wait for replicas (opts.wait_replicas). */
bool app_redis_waits(const app_redis *r);
/* Writes answered NULL because WAIT found too few replicas (metrics). */
uint64_t app_redis_unreplicated(const app_redis *r);
/* Commands in flight. */
size_t app_redis_pending(const app_redis *r);
/* Drops the connection now (tests, and a user that saw a protocol problem);
 * it reconnects as after any loss. */
void app_redis_reset(app_redis *r);

/* Sends one command.  argv/lens are copied before return.  Returns 0 (cb
 * will be called exactly once), SH_ESTATE (down), SH_ELIMIT (max_pending)
 * or SH_ENOMEM; on an error cb is not called. */
int app_redis_cmd(app_redis *r, app_redis_cb cb, void *ud, int argc, const char **argv,
                  const size_t *lens);
/* EVALSHA s nkeys args...: argv holds the keys then the other arguments. */
int app_redis_eval(app_redis *r, const app_redis_script *s, app_redis_cb cb, void *ud,
                   int nkeys, int argc, const char **argv, const size_t *lens);

/* Subscribes to a channel (bytes copied).  One subscription per channel;
 * a second call for the same channel replaces the callback.  Returns 0 or
 * SH_ENOMEM. */
int app_redis_subscribe(app_redis *r, const char *ch, size_t len, app_redis_sub_cb cb,
                        void *ud);
/* Drops a subscription; its callback is not called again. */
void app_redis_unsubscribe(app_redis *r, const char *ch, size_t len);

/* Reply helpers: integer value of an INTEGER or numeric STRING reply
 * (false if neither), and whether a reply is an error starting with
 * prefix. */
bool app_redis_reply_int(const redisReply *rep, long long *out);
bool app_redis_reply_is_error(const redisReply *rep, const char *prefix);

#endif
