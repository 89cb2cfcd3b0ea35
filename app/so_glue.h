/* so_glue.h - the loop-side driver of the shared-object engine.
 *
 * so/ is sans-I/O: it takes a client's message and returns effects
 * (encoded bodies plus recipients).  This module is the part that touches
 * libuv: it owns the server's one so_engine and its store, registers a
 * so_client for every connection that sends its first shared-object
 * message, hands messages to the engine, and delivers the effects.
 *
 * Delivery: every effect body (one per encoding) is handed to each of its
 * recipients with app_conn_send_shared(); each transport frames it once
 * (RTMP: cut into chunks on RTMP_CSID_SHARED) and queues the same buffer
 * to all its connections.  A send that fails on a connection that is
 * still open closes that connection, so no subscriber silently misses an
 * update (it resynchronises when it comes back).  A recipient whose unsent output
 * passes so_congestion_bytes is marked congested in the engine (rule 7:
 * no more per-update messages for it); when its queue drains the engine
 * produces one catch-up diff.  The message that crossed the threshold is
 * still queued: the engine records the version the client "has" when it
 * is marked, so dropping a message for a version at or below that one
 * would lose it.  Memory per client stays bounded by the threshold plus
 * one message per object (plus replies to its own requests).
 *
 * Durability: the glue is a source of the store module (app/store.h):
 * when a round starts it takes the engine's pending batch, and when the
 * round comes back (written in one transaction with chat's operations) it
 * hands the batch back to the engine on the loop thread and delivers the
 * effects it released (Success of persistent changes).  One round in
 * flight at a time, so batches are written in order, and the engine keeps
 * grouping changes meanwhile.  The engine's changes wait at most
 * commit_interval_ms (the smallest value of the configured applications)
 * from the start of the previous round; a lone change after a quiet
 * period is committed at once.  While rounds fail, a batch that holds
 * nobody's answer waits for the store's back-off.
 *
 * Loads: the engine asks for a room it needs (so_hooks.load_room); the
 * store module reads it off the loop thread and the glue hands it back
 * (so_engine_room_loaded) from the read's callback; what the room's
 * clients and server code sent meanwhile waits in the engine.  The usage
 * of every application is read once, when the glue is made.
 *
 * Where objects are stored (SQLite, or memory for store = memory) is the
 * store module's business.
 *
 * Clustered applications (app/cluster_so.h, docs/cluster.md): their rooms
 * are marked clustered in room_settings; such a room is loaded from Redis
 * instead of the store, and the engine's proposals (so_hooks.propose,
 * propose_send) go to cluster_so, which applies what Redis publishes and
 * delivers through app_so_deliver like any other effects.
 *
 * Shutdown: the server's on_shutdown hook (after every connection closed)
 * stops the unload timer; the store module's shutdown hook, which runs
 * after those of the modules that write (chat, the samples), writes what
 * is pending and answers the durability waiters (app_so_when_durable).
 *
 * Threading: loop thread only.
 *
 * For other server modules (chat presence, samples, the server API) that
 * use the engine's server-side API (so_engine_object_open_async,
 * so_object_set, ...): a room that is not in memory is loaded first, so an
 * open answers through a callback (at once when the room is there):
 *
 *     static void opened(void *ud, so_object *o, int err)
 *     {
 *         app_so_glue *g = app_so_glue_of(srv);
 *         so_engine *e = app_so_engine(g);
 *         so_effects fx;
 *         so_effects_init(&fx);
 *         so_object_set(e, o, "alice", 5, v, &fx);
 *         app_so_deliver(g, &fx);                // sends and clears fx
 *         so_effects_cleanup(&fx);
 *     }
 *     so_engine_object_open_async(app_so_engine(app_so_glue_of(srv)),
 *                                 "chat/_definst_", "presence", false, opened, ud);
 *
 * An owner that goes away first cancels (so_engine_object_open_cancel).
 * so_engine_object_open works for a room already in memory (one of an
 * object the module holds open).
 *
 * Rooms are "APP/INSTANCE" exactly as app_conn_app_name() and
 * app_conn_instance() give them (app_so_room_of() builds it).  The user
 * pointer of every so_client the glue registers is the app_conn *, so a
 * module that receives effects with recipients from the engine can pass
 * them to app_so_deliver unchanged.  Persistent server-side writes are
 * committed by the glue like client writes.
 */
#ifndef APP_SO_GLUE_H
#define APP_SO_GLUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app.h"
#include "metrics.h"
#include "so.h"

typedef struct app_so_glue app_so_glue;

/* Creates the engine for srv (borrowed; the glue must be freed after
 * app_server_run() returned and before app_server_free()), joins the
 * store module's rounds (app_store_new must have run) and installs the
 * server's shared-object hooks.  Returns NULL with a message in err on
 * failure. */
app_so_glue *app_so_glue_new(app_server *srv, char *err, size_t errsz);
/* Frees the engine.  Accepts NULL. */
void app_so_glue_free(app_so_glue *g);

/* The glue installed on srv, or NULL.  Loop thread. */
app_so_glue *app_so_glue_of(const app_server *srv);
/* The engine (borrowed; lives as long as the glue). */
so_engine *app_so_engine(app_so_glue *g);
/* The limits a shared-object message of a client is decoded under
 * (borrowed): a value written by server code that an RTMP client could
 * not have sent would be refused when its room is read from the store. */
const so_wire_limits *app_so_wire_limits(const app_so_glue *g);

/* Delivers effects made by the engine's server-side API: each body is
 * framed once per transport and queued to every recipient (app_conn *
 * user pointers).  fx is cleared (its memory kept).  Returns 0. */
int app_so_deliver(app_so_glue *g, so_effects *fx);

/* The so_client of connection c, registering it now when it has none
 * (room from its app and instance, access from its [app] section).
 * Returns NULL with *err set when registration fails or c is not
 * connected. */
so_client *app_so_client_of(app_so_glue *g, app_conn *c, int *err);

/* Writes "APP/INSTANCE" of c into buf.  Returns buf. */
char *app_so_room_of(const app_conn *c, char *buf, size_t bufsz);

/* The clustered objects' module (app/cluster_so.h), NULL without a
 * cluster. */
struct app_cluster_so *app_so_glue_cluster(const app_so_glue *g);

/* Server code that derives something from an object (a connection's write
 * access from the presenter a stage names) hears of every update the
 * cluster applied here, another node's write included, once its effects
 * were delivered.  At most 8 listeners.  Returns 0 or SH_ELIMIT. */
typedef void (*app_so_applied_fn)(void *ud, const char *room, const char *name, size_t nlen);
int app_so_on_applied(app_so_glue *g, app_so_applied_fn fn, void *ud);
/* Called by the cluster (app/cluster_so.c) after it applied an update. */
void app_so_applied(app_so_glue *g, const char *room, const char *name, size_t nlen);

/* Counters (for logs and tests). */
typedef struct app_so_glue_stats {
    app_histo commit_seconds; /* store batch: taken -> handed back (its round) */
    uint64_t messages;        /* SO messages handled */
    uint64_t effects;         /* effects delivered */
    uint64_t sends;           /* (effect, recipient) pairs queued */
    uint64_t congested;       /* times a client was marked congested */
    uint64_t batches;         /* store batches written */
    uint64_t batch_failures;
} app_so_glue_stats;
void app_so_glue_get_stats(const app_so_glue *g, app_so_glue_stats *st);
/* False while store rounds keep failing, and after shutdown (readiness). */
bool app_so_store_ok(const app_so_glue *g);
/* True when c is a congested subscriber (rule 7) right now. */
bool app_so_conn_congested(const app_conn *c);

/* ---- durability of server-side writes (added for the samples) ----
 * fn(ud, status) runs once, on the loop thread, when every persistent
 * change made through the engine before this call is stored: status 0, or
 * the negative code of the failed store batch (the in-memory state stays
 * authoritative and the object is written again with the next batch).  It
 * runs from a later loop turn, never from inside this call; at shutdown,
 * after the final flush, with that flush's status (SH_ESTATE when the
 * store was already closed).  An owner that goes away first must ignore
 * the call (keep ud alive or mark it cancelled).  Returns 0 or SH_ENOMEM. */
typedef void (*app_so_durable_fn)(void *ud, int status);
int app_so_when_durable(app_so_glue *g, app_so_durable_fn fn, void *ud);

#endif
