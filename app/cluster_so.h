/* cluster_so.h - shared objects of clustered applications, kept in Redis
 * and seen the same by every node (docs/cluster.md, "Shared objects").
 *
 * The engine (so/) keeps no I/O: for a clustered room it hands a client's
 * accepted write to so_hooks.propose, and is given the cluster's ordered
 * updates with so_engine_apply_update / so_engine_object_sync.  This
 * module is what sits between: it speaks to Redis through app/cluster's
 * links.
 *
 *  - A write is one Lua script (EVALSHA): epoch check, rule 3 against the
 *    stored per-slot versions, version + 1, HSET of the slots, XADD to the
 *    object's stream, PUBLISH on the room's channel.  Redis runs scripts
 *    one at a time: one order per room, versions without gaps.
 *  - Every node, the writer's too, applies the published updates in
 *    version order; the writer's client gets Success when its own update
 *    is applied here (so only after Redis ran the script), a refused key
 *    its current value, a failure or time-out StoreFailed.
 *  - A room is loaded by subscribing to its channel and, once subscribed,
 *    reading a snapshot with one script; messages that came meanwhile are
 *    applied after it.  When the link drops, every room is read again
 *    (same epoch: the differences are applied as one update per object;
 *    another epoch: Redis lost its data, every client gets Clear and
 *    everything) before writes are taken again.
 *
 * Temporary objects go the same way under their own keys, and live in
 * Redis while a node holds a lease on them (it has a local user); the
 * room's so_room_settings.local_name (chat presence) stays on the node.
 * docs/cluster.md, "Temporary objects".  Loop thread only. */
#ifndef APP_CLUSTER_SO_H
#define APP_CLUSTER_SO_H

#include <stdbool.h>

#include "app.h"
#include "so.h"
#include "so_glue.h"

typedef struct app_cluster_so app_cluster_so;

/* NULL when the server has no cluster (no application is clustered).
 * srv, e and g borrowed; call while the server is set up (the scripts
 * are registered with the cluster's links). */
app_cluster_so *app_cluster_so_new(app_server *srv, so_engine *e, app_so_glue *g);
/* Closes its timer (the server's shutdown; the loop must run once more
 * before app_cluster_so_free).  Accepts NULL. */
void app_cluster_so_shutdown(app_cluster_so *cs);
/* Frees what is left; sends nothing (the links are gone by then).
 * Accepts NULL. */
void app_cluster_so_free(app_cluster_so *cs);

/* Whether room "app/instance" belongs to a clustered application. */
bool app_cluster_so_room_clustered(app_cluster_so *cs, const char *room);
/* so_hooks.load_room for a clustered room. */
void app_cluster_so_load_room(app_cluster_so *cs, const char *room);
/* so_hooks.propose. */
int app_cluster_so_propose(app_cluster_so *cs, const so_proposal *p);
/* so_hooks.propose_send: PUBLISH on the room's channel (in order with
 * this node's writes, which use the same connection). */
int app_cluster_so_propose_send(app_cluster_so *cs, const char *room, const char *name,
                                size_t nlen, const uint8_t *ev, size_t len);
/* so_hooks.room_ready: seeds the history of a room being loaded. */
void app_cluster_so_room_ready(app_cluster_so *cs, const char *room);
/* so_hooks.room_unloaded: the room's subscription is dropped. */
void app_cluster_so_room_unloaded(app_cluster_so *cs, const char *room);
/* so_hooks.temp_use: takes or gives back this node's lease on a
 * temporary object. */
void app_cluster_so_temp_use(app_cluster_so *cs, const char *room, const char *name,
                             bool used);
/* A client is about to be unregistered: its writes in flight are
 * answered to nobody. */
void app_cluster_so_client_gone(app_cluster_so *cs, so_client *c);

/* Counters (logs, tests). */
typedef struct app_cluster_so_stats {
    uint64_t proposals;     /* scripts sent */
    uint64_t applied;       /* updates applied from the cluster */
    uint64_t stale;         /* keys Redis refused (rule 3) */
    uint64_t failed;        /* proposals answered StoreFailed */
    uint64_t cas_failed;    /* server compare-and-sets that found another version */
    uint64_t over_quota;    /* keys Redis refused for the application's quotas */
    uint64_t snapshots;     /* room snapshots read */
    uint64_t resets;        /* rooms reset for a new epoch */
    uint64_t messages;      /* SendMessages delivered from the cluster */
    uint64_t temp_made;     /* temporary objects made (N) seen */
    uint64_t temp_gone;     /* temporary objects dropped (G) seen */
} app_cluster_so_stats;
void app_cluster_so_get_stats(const app_cluster_so *cs, app_cluster_so_stats *st);

#endif
