/* chat_store.h - durable storage of private messages (SQLite).
 *
 * The chat module keeps its tables in the same database file as the
 * shared-object store (DATA_DIR/sohub.db, see app/so_glue.h), through two
 * connections of its own, WAL journal:
 *   writer  used by chat_store_write (one libuv worker thread at a time),
 *           and by the loop thread only while no write is in flight
 *           (schema creation, the final flush at shutdown);
 *   reader  used by the load functions on the loop thread; WAL lets it
 *           read while the writer commits.
 * synchronous = FULL on the writer: a "queued" answer promises the message
 * is on disk, and grouped commits keep the cost to one sync per batch.
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

/* Opens (creating) the database at path.  Returns 0 or a negative SH_E*
 * code with a message in err. */
int chat_store_open(const char *path, chat_store **out, char *err, size_t errsz);
/* Closes both connections.  Accepts NULL. */
void chat_store_close(chat_store *s);

/* Writes the ops in one transaction, in order.  Returns 0 or SH_EIO (the
 * transaction was rolled back).  Thread: the worker (see above). */
int chat_store_write(chat_store *s, const chat_store_op *ops, size_t n);

/* Reader (loop thread).  Counters of (app, user); 0/0 when unknown.
 * Returns 0 or SH_EIO. */
int chat_store_load_user(chat_store *s, const char *app, const char *user, uint64_t *last_id,
                         uint64_t *acked);

/* Reader (loop thread).  Messages given an id and not yet acknowledged,
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

#endif
