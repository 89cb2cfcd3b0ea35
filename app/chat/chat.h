/* chat.h - one-to-one chat: identity, private messages, offline delivery,
 * presence (docs/chat.md is the long form).
 *
 * Group chat rides on shared objects; one-to-one chat does not: the
 * server routes a private message from one user to every live connection
 * of one other user of the same application, and to nobody else.
 *
 * Identity is the user name the connection gave at connect (first string
 * argument of connect, or user= in the tcUrl query), checked by the token
 * authenticator (app/auth.h) for applications with auth = token.  It is
 * the only name the server ever writes into `from`.
 *
 * Methods (any application; every instance of an application shares its
 * users):
 *   chat.sendPrivate(to, text [, clientId])
 *       -> _result {id, status: "delivered" | "queued"}
 *       -> _error Chat.Denied | Chat.UnknownUser | Chat.TooLong |
 *                 Chat.RateLimited | Chat.QueueFull | Chat.BadRequest |
 *                 Chat.StoreFailed
 *   chat.ack(id) -> _result {acked}: acknowledges, for the user, every
 *       message with an id up to id (never past the last stored id).
 * Server -> each connection of the recipient:
 *   chat.onPrivate({id, from, to, text, ts}) (no answer expected)
 *
 * Every message stays stored (SQLite, DATA_DIR/sohub.db, chat_store.h;
 * for a clustered application the application's Redis, chat_redis.h and
 * docs/cluster-chat.md, with the same rules on every node) until its
 * recipient acknowledges it.  Each connection of the recipient
 * gets, in strictly increasing id order and each id once, every stored
 * message above the acknowledged id at its connect, then every message
 * committed later: stored ones are read a page at a time while the
 * connection's output queue is short, so live messages never overtake
 * them, and a connection that cannot be read for or sent to is closed
 * rather than left with a gap.  A client that acknowledges the highest id
 * it has processed therefore never acknowledges one it was not given.
 * Both answers ("queued", "delivered") and the chat.onPrivate wait for the
 * commit.  The store module (app/store.h) writes chat's batch and the
 * shared objects' in one transaction per round, one round in flight.
 *
 * Presence ([app] presence = true): each instance keeps a temporary
 * shared object `presence`, written by the server only, with one slot per
 * online user: key = user name, value {since (Unix ms), connections}.
 * Needs the shared-object glue (app/so_glue.h); without it presence is
 * off.
 *
 * Threading: loop thread only.
 */
#ifndef APP_CHAT_H
#define APP_CHAT_H

#include "app.h"

/* Error codes of chat.sendPrivate / chat.ack. */
#define CHAT_E_DENIED "Chat.Denied"
#define CHAT_E_UNKNOWN_USER "Chat.UnknownUser"
#define CHAT_E_TOO_LONG "Chat.TooLong"
#define CHAT_E_RATE_LIMITED "Chat.RateLimited"
#define CHAT_E_QUEUE_FULL "Chat.QueueFull"
#define CHAT_E_BAD_REQUEST "Chat.BadRequest"
#define CHAT_E_STORE_FAILED "Chat.StoreFailed"
#define CHAT_E_STORE_FULL "Chat.StoreFull"

/* Window in which a (sender, clientId) pair is remembered, and how many
 * pairs are kept per sender. */
#define CHAT_DEDUP_WINDOW_MS 60000
#define CHAT_DEDUP_MAX 64
/* Longest clientId accepted (bytes of a string; numbers are printed). */
#define CHAT_CLIENT_ID_MAX 64

/* Installs chat on srv: the token authenticator (auth_install), the chat
 * methods (server-wide), a connection observer, a check handle and a
 * timer on the server's loop, and a shutdown hook that writes what is
 * pending and frees everything.  Opens the store in cfg->data_dir.
 * Call once, before app_server_run().  Returns 0 or a negative code
 * (logged); the server then runs without chat (auth is still installed). */
int chat_register(app_server *srv);

/* For server code (the server API): a private message in application app
 * from `from` (any valid name, e.g. "system") to `to`, through the same
 * checks, store and delivery as chat.sendPrivate (no chat_rate: server
 * code is trusted).  fn runs once: with code == NULL and the message's id
 * and whether it was queued (nobody online) once it is stored, or with
 * an error code (CHAT_E_*) and description, possibly before chat_send
 * returns.  client_id (NULL: none) de-duplicates retries as for clients.
 * Returns 0, or SH_ENOMEM (fn not called). */
typedef void (*chat_sent_fn)(void *ud, const char *code, const char *desc, uint64_t id,
                             bool queued);
int chat_send(app_server *srv, const char *app, const char *from, const char *to,
              const char *text, size_t text_len, const char *client_id, chat_sent_fn fn,
              void *ud);
typedef struct chat_stats {
    uint64_t submitted;       /* messages accepted for storing */
    uint64_t stored;          /* committed */
    uint64_t delivered;       /* chat.onPrivate sent */
    uint64_t acked;           /* acknowledged */
    uint64_t unacked;         /* stored and not acknowledged now (all queues) */
    uint64_t batches, batch_failures;
} chat_stats;
void chat_get_stats(const app_server *srv, chat_stats *st);

/* A user's counters: the last stored id, the acknowledged one and the
 * number of stored messages not acknowledged (with SQLite the difference of
 * the two ids; a clustered user's ids are not consecutive, so Redis counts
 * them).  fn(ud, status, last_id, acked, queued) runs once:
 * before chat_user_state returns when the user is in memory, else once
 * its counters are read from the store (status SH_EIO when they cannot
 * be, SH_ESTATE when chat is not available).  Returns 0, or SH_ENOMEM
 * (fn not called). */
typedef void (*chat_state_fn)(void *ud, int status, uint64_t last_id, uint64_t acked,
                              uint64_t queued);
int chat_user_state(app_server *srv, const char *app, const char *user, chat_state_fn fn,
                    void *ud);

#endif
