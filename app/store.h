/* store.h - the server's one way to durable state.
 *
 * Every write and every read of what the server keeps (shared objects,
 * private messages) goes through this module, and none of them runs on
 * the loop thread while the server serves: a backend does the I/O (the
 * SQLite backend on libuv's thread pool; a Redis backend would send
 * commands and complete from hiredis callbacks) and every answer comes
 * back on the loop thread, from a callback, never from inside the call
 * that asked.
 *
 * Writes: ONE pipeline for everything.  Modules that change durable state
 * register as sources (the shared-object glue, chat): each keeps its
 * pending changes.  Once per loop turn, when no round is in flight and a
 * source has work whose wait is over, a round starts: every source puts
 * its pending batch into the round (app_store_round), the backend writes
 * the whole round in one transaction, and every source gets the round's
 * status on the loop thread.  One round in flight; what changes meanwhile
 * goes into the next round (grouped commits).  A source says how long
 * its work may wait (wait_ms), measured from the start of the previous
 * round: the shared objects' commit_interval_ms, and while rounds keep
 * failing a back-off of 10 ms, 20 ms ... 1 s (app_store_retry_delay_ms)
 * for work nobody waits for (rewrites after a failure), so a full disk
 * does not make the loop and a worker spin.  Failures are logged once per
 * 10 s while they last.
 *
 * Reads: a room's stored objects (for so_engine_room_loaded), a chat
 * user's counters, a page of a chat user's stored messages.  Each read is
 * queued and answered by its callback on the loop thread, exactly once;
 * the reads queued while one read job runs go together into the next
 * job, answered in the order they were asked.
 *
 * Start and shutdown: the usage of every application (the engine's
 * quotas) and the number of unacknowledged messages are read once,
 * synchronously, while the modules are created, before the server serves
 * anyone.  At shutdown (a shutdown hook, so it runs after those of the
 * modules registered later: make the store before its sources) the round
 * in flight finishes, then what the sources still have is written
 * synchronously (a few rounds at most), each source is told (stopped)
 * and the backend is closed once no read is in flight.  Reads asked after
 * that are answered with SH_ESTATE.
 *
 * Threading: loop thread only; the backends' own threads touch nothing
 * but the round or the reads they were given.
 */
#ifndef APP_STORE_H
#define APP_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app.h"
#include "chat_store.h"
#include "so_store.h"

typedef struct app_store app_store;
typedef struct app_store_backend app_store_backend; /* below */

/* ---- writes ---- */

/* What one round writes, in one transaction.  Each part belongs to the
 * source that put it there and must stay unchanged until its done. */
typedef struct app_store_round {
    so_store_batch *so;        /* shared-object changes, or NULL */
    const chat_store_op *chat; /* chat operations, or NULL */
    size_t nchat;
} app_store_round;

typedef struct app_store_source {
    /* How long the source's pending work may wait, in ms from the start
     * of the previous round (0 = now), or -1 when it has none.
     * fail_streak: rounds failed in a row.  Called on the loop while no
     * round is in flight, once per loop turn at most. */
    int64_t (*wait_ms)(void *ud, uint32_t fail_streak);
    /* A round starts: put the pending work into r (or nothing). */
    void (*take)(void *ud, app_store_round *r);
    /* The round came back: status 0 or a negative SH_E* code.  Called for
     * every round the source was asked to take for. */
    void (*done)(void *ud, const app_store_round *r, int status);
    /* Optional: the store wrote what it could at shutdown and will not
     * call this source again. */
    void (*stopped)(void *ud);
    void *ud;
} app_store_source;

/* 0 while rounds succeed; 10, 20, 40 ... 1000 ms after streak failures. */
uint64_t app_store_retry_delay_ms(uint32_t streak);

/* ---- reads (answers on the loop thread, never from inside the call) ----
 * Each returns 0 (fn will run exactly once) or SH_ENOMEM (it will not). */

/* room (borrowed for the call) and image (owned by fn: free it with
 * so_store_batch_free; NULL on error), what so_engine_room_loaded takes. */
typedef void (*app_store_room_fn)(void *ud, const char *room, int status,
                                  so_store_batch *image);
int app_store_load_room(app_store *st, const char *room, app_store_room_fn fn, void *ud);

/* A chat user's counters (0/0 when the user has none stored). */
typedef void (*app_store_user_fn)(void *ud, int status, uint64_t last_id, uint64_t acked);
int app_store_chat_user(app_store *st, const char *app, const char *user, app_store_user_fn fn,
                        void *ud);

/* Up to max stored messages of (app, user) with id > after, in id order;
 * msgs (n of them) are freed after fn returns. */
typedef void (*app_store_page_fn)(void *ud, int status, const chat_store_msg *msgs, size_t n);
int app_store_chat_page(app_store *st, const char *app, const char *user, uint64_t after,
                        size_t max, app_store_page_fn fn, void *ud);

/* ---- the module ---- */

/* Opens the backend for srv's config (borrowed: the config at start
 * decides the backend and where each application's shared objects go,
 * until a restart), reads the start-up figures, registers the shutdown
 * hook and makes the store findable (app_store_of).  Call before the
 * modules that use it register theirs.  NULL with a message in err. */
app_store *app_store_new(app_server *srv, char *err, size_t errsz);
/* The same on a backend the caller made (taken: closed by the store). */
app_store *app_store_new_on(app_server *srv, app_store_backend *be, char *err, size_t errsz);
/* After app_server_run() returned (or instead of it).  Accepts NULL. */
void app_store_free(app_store *st);
app_store *app_store_of(const app_server *srv);

/* Registers a source (copied).  Returns 0 or SH_ENOMEM. */
int app_store_add_source(app_store *st, const app_store_source *src);

/* Start-up figures, read synchronously: call them before the server
 * serves (module creation), never later.  The usage of every application,
 * handed to fn (so_store_usage_fn: the engine's quotas), and the
 * unacknowledged chat messages.  0 or a negative code. */
int app_store_usage(app_store *st, so_store_usage_fn fn, void *ud);
int app_store_chat_unacked(app_store *st, uint64_t *n);

/* False while rounds keep failing, and once the store is closed. */
bool app_store_ok(const app_store *st);
bool app_store_closed(const app_store *st);

typedef struct app_store_stats {
    uint64_t rounds;           /* write rounds done */
    uint64_t round_failures;
    uint64_t reads;            /* reads answered */
    uint64_t read_jobs;        /* backend read jobs (several reads each) */
    uint64_t reads_max_wait_ms; /* longest time a read waited for its answer */
} app_store_stats;
void app_store_get_stats(const app_store *st, app_store_stats *out);

/* ---- backends ----
 * What a backend implements.  The store module calls read and write with
 * one job of each kind in flight at most (they may run at the same time),
 * and the synchronous ops only while nothing is in flight. */

typedef enum app_store_read_kind {
    APP_READ_ROOM = 1,
    APP_READ_CHAT_USER,
    APP_READ_CHAT_PAGE,
} app_store_read_kind;

/* One read: the question (owned strings) and the answer the backend
 * fills in. */
typedef struct app_store_read {
    struct app_store_read *next;   /* the job's list, in asking order */
    app_store_read_kind kind;
    char *a;                       /* room, or the chat application */
    char *b;                       /* the chat user */
    uint64_t after;                /* page: ids above this */
    size_t max;                    /* page: at most this many */
    /* answer */
    int status;
    so_store_batch *image;         /* ROOM (owned until handed to fn) */
    uint64_t last_id, acked;       /* CHAT_USER */
    chat_store_msg *msgs;          /* CHAT_PAGE (owned) */
    size_t nmsgs;
    /* the store module's */
    union {
        app_store_room_fn room;
        app_store_user_fn user;
        app_store_page_fn page;
    } fn;
    void *ud;
    uint64_t asked_ms;
} app_store_read;

typedef void (*app_store_read_done)(void *ud);
typedef void (*app_store_write_done)(void *ud, int status);

typedef struct app_store_backend_ops {
    const char *name;
    /* Answers every read of list (status and results of each); then
     * done(ud) on the loop thread.  Returns 0 or a negative code (done
     * is not called). */
    int (*read)(app_store_backend *b, app_store_read *list, app_store_read_done done, void *ud);
    /* Writes the round in one transaction (all or nothing for what it
     * holds in one database); then done(ud, status) on the loop thread.
     * Returns 0 or a negative code (done is not called). */
    int (*write)(app_store_backend *b, const app_store_round *r, app_store_write_done done,
                 void *ud);
    /* The same, synchronously (shutdown). */
    int (*write_now)(app_store_backend *b, const app_store_round *r);
    /* Synchronous, at start. */
    int (*usage)(app_store_backend *b, so_store_usage_fn fn, void *ud);
    int (*chat_unacked)(app_store_backend *b, uint64_t *n);
    /* Frees everything (nothing in flight). */
    void (*close)(app_store_backend *b);
} app_store_backend_ops;

struct app_store_backend {
    const app_store_backend_ops *ops;
};

/* The SQLite backend (store_sqlite.c): DATA_DIR/sohub.db, WAL, a writer
 * and a reader connection shared by the shared-object and chat tables;
 * applications with store = memory keep their shared objects in a memory
 * so_store instead.  Reads and writes run on loop's thread pool. */
app_store_backend *app_store_sqlite_new(uv_loop_t *loop, const app_config *cfg, char *err,
                                        size_t errsz);

#endif
