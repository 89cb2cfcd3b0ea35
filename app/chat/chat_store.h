/* chat_store.h - durable storage of private messages (SQLite).
 *
 * The chat tables live in the same database file as the shared-object
 * store (DATA_DIR/sohub.db).  The server's store module (app/store.h)
 * prepares these statements on the shared-object store's two connections
 * (chat_store_attach), so one transaction writes both; tests and tools
 * may open a chat store with connections of its own (chat_store_open).
 *   writer  used by chat_store_apply / chat_store_write (one thread at a
 *           time: the worker of the write in flight, or the loop while
 *           none is, at start and shutdown);
 *   reader  used by the load functions (one thread at a time); WAL lets
 *           it read while the writer commits.
 * synchronous = FULL for a transaction with chat operations: a "queued"
 * answer promises the message is on disk, and grouped commits keep the
 * cost to one sync per transaction.
 *
 * Schema (every table prefixed chat_ so it cannot clash with the SO store):
 *   chat_users(app, user, last_id, acked)     per recipient counters
 *   chat_messages(app, recipient, id, sender, ts, text)
 *       the recipient's unacknowledged messages, id increasing per
 *       recipient; rows with id <= acked are deleted with the ack.
 */
#ifndef CHAT_STORE_H
#define CHAT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct chat_store chat_store;

/* One operation of a batch.  Strings are borrowed: the caller keeps them
 * alive and unchanged until chat_store_write returned. */
typedef struct chat_store_op {
    bool is_msg;          /* true: insert a message; false: user counters */
    const char *app;
    const char *user;     /* recipient */
    uint64_t id;          /* message id (is_msg) */
    uint64_t last_id;     /* user: last id given (!is_msg) */
    uint64_t acked;       /* user: acknowledged up to; deletes id <= acked */
    const char *sender;   /* is_msg */
    int64_t ts;           /* is_msg: Unix ms */
    const char *text;     /* is_msg */
    size_t text_len;
} chat_store_op;

/* Opens (creating) the database at path with two connections of its own
 * (writer synchronous = FULL).  Returns 0 or a negative SH_E* code with a
 * message in err. */
int chat_store_open(const char *path, chat_store **out, char *err, size_t errsz);
/* The same on two connections the caller owns (borrowed: they must
 * outlive the chat store): creates the tables on wdb and prepares the
 * statements. */
struct sqlite3;
int chat_store_attach(struct sqlite3 *wdb, struct sqlite3 *rdb, chat_store **out, char *err,
                      size_t errsz);
/* Finalizes the statements and closes the connections it opened.
 * Accepts NULL. */
void chat_store_close(chat_store *s);

/* Writes the ops in one transaction, in order.  Returns 0 or SH_EIO (the
 * transaction was rolled back).  Thread: the worker (see above). */
int chat_store_write(chat_store *s, const chat_store_op *ops, size_t n);
/* The ops inside a transaction the caller opened on the writer.  Returns
 * 0 or SH_EIO (the caller rolls back). */
int chat_store_apply(chat_store *s, const chat_store_op *ops, size_t n);

/* Reader.  Counters of (app, user); 0/0 when unknown.
 * Returns 0 or SH_EIO. */
int chat_store_load_user(chat_store *s, const char *app, const char *user, uint64_t *last_id,
                         uint64_t *acked);

/* Reader.  Messages given an id and not yet acknowledged,
 * over every application and user: the sum of (last_id - acked).
 * Returns 0 or SH_EIO. */
int chat_store_count_unacked(chat_store *s, uint64_t *n);

/* Calls fn for each stored message of recipient (app, user) with
 * id > after, in id order, at most max of them (strings borrowed for the
 * call).  fn returning non-zero stops.  Returns 0 or SH_EIO. */
typedef int (*chat_store_msg_fn)(void *ud, uint64_t id, const char *sender, int64_t ts,
                                 const char *text, size_t text_len);
int chat_store_load_messages(chat_store *s, const char *app, const char *user, uint64_t after,
                             size_t max, chat_store_msg_fn fn, void *ud);

/* A stored message as a page read copies it (chat_store_read_page). */
typedef struct chat_store_msg {
    uint64_t id;
    char *sender;       /* owned */
    int64_t ts;
    char *text;         /* owned */
    size_t text_len;
} chat_store_msg;
/* Reader.  Like chat_store_load_messages, into a new array *out of *n
 * messages (free with chat_store_msgs_free; NULL when none).  Returns 0,
 * SH_EIO or SH_ENOMEM. */
int chat_store_read_page(chat_store *s, const char *app, const char *user, uint64_t after,
                         size_t max, chat_store_msg **out, size_t *n);
void chat_store_msgs_free(chat_store_msg *m, size_t n);

#endif
