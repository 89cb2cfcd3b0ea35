/* so.h - the shared-object engine (sans-I/O).
 *
 * A state machine for Flash-Media-Server-style remote shared objects.  It
 * has no globals, reads no clock (time comes in as now_ms), opens no
 * socket and starts no thread.  Input: a client's shared-object message
 * (RTMP type 19 or 16).  Output: effects appended to a caller's list, each
 * one encoded message body (a refcounted sh_rcbuf) plus the user pointers
 * of the clients that must receive it.  A body is encoded once per
 * encoding per update and the same buffer is shared by every recipient.
 *
 * Namespaces: every client belongs to one room ("app/instance"); objects
 * live in a room and are named by the SO name of the message (which may
 * contain '/').
 *
 * The seven sohub rules (PROTOCOL.md, "sohub") are implemented here; see
 * docs/so-engine.md for the long form.  Short form:
 *  1 Use(v): UseSuccess; nothing more if v == version; only the slots
 *    changed / removed since v if the history covers v (v > 0); else Clear
 *    plus every slot.  Every reply header carries the current version.
 *  2 One message = one atomic update: its RequestChange / RequestRemove
 *    events apply together and bump the version once; Success per applied
 *    key to the requester; ONE message with the Change / Remove events to
 *    every other subscriber.
 *  3 Conflict reject (default): a write to K whose header version is older
 *    than the version at which ANOTHER writer (client or server) last
 *    wrote or removed K is not applied; the requester gets K's current
 *    value (Change, or Remove if K is gone).  SO_CONFLICT_LWW disables it.
 *  4 No write access: Status(SO_STATUS_NO_WRITE, "error") + current value.
 *  5 Use with the other persistence flag: Status(SO_STATUS_BAD_PERSISTENCE).
 *  6 Temporary objects vanish with their last subscriber (and last server
 *    handle); persistent objects go to the store, and the answers to a
 *    change are held until the change is durable (see "Persistence").
 *  7 Congested clients get no per-update messages; on drain one diff per
 *    object (or Clear + all when the history no longer covers them),
 *    paced by so_client_catch_up's budget.
 *
 * Answers (every RequestChange / RequestRemove gets one, else Flash stalls):
 *   applied                     Success(K)
 *   stale (rule 3)              Change(K, current) or Remove(K)
 *   no write access (rule 4)    Status(SO_STATUS_NO_WRITE) + Change/Remove(K)
 *   a cap or quota passed       Status(SO_STATUS_LIMIT_*) + Change/Remove(K)
 *   not subscribed to object    Status(SO_STATUS_NO_OBJECT) per key
 *   store failed (persistent)   Status(SO_STATUS_STORE_FAILED) per key
 *                               instead of Success (see Persistence)
 *   RequestRemove of a key that does not exist: Success(K), no new version.
 * A key refused several times in one message carries its current value
 * only once (the Status events still come per request).
 * Every Status level is "error".  Limit codes name the limit in the code
 * itself ("SharedObject.LimitExceeded.<Limit>"), because the wire Status
 * event carries only a code and a level.
 *
 * Order inside one incoming message: the Use (every event names the same
 * object, so repeated Use events are one Use, the rest counted as
 * ignored), then the writes (one update), then SendMessage events, then
 * Release.  Events a server sends
 * (Change, Success, Status, Clear, Remove, UseSuccess) and unknown event
 * types coming from a client are ignored (counted in so_engine_stats).
 * A body the codec cannot decode makes so_engine_handle return the negative
 * SH_E* code: the app should close that client only.
 *
 * SendMessage goes to every subscriber including the sender (not to
 * congested ones: messages are not state and are dropped for them).  It
 * needs a subscription and write access (path lists); server-only objects
 * still accept client SendMessage.
 *
 * Persistence: changes to persistent objects are appended to a pending
 * store batch inside the engine.  Every effect that concerns a persistent
 * object with a write not yet durable is HELD by the engine (this keeps
 * per-object order), and released by so_engine_batch_done().  Per loop
 * turn the app calls so_engine_take_batch(); if it returns a batch, the
 * app runs so_store_write_batch() on a worker thread, then calls
 * so_engine_batch_done() on the loop thread, in the order the batches were
 * taken.  On a store failure the held effects are released anyway (the
 * in-memory state stays authoritative, so every subscriber converges), the
 * writers get Status(SO_STATUS_STORE_FAILED) per key instead of Success,
 * and the whole object is written again in the next batch.
 *
 * Congestion: the app calls so_client_set_congested(e, c, true) when a
 * client's unsent output passes its limit and so_client_catch_up(e, c,
 * budget, out) when it drained, again at each drain while it returns 1.
 * Replies to the client's own messages are still produced, but a Use from
 * a congested client, or one whose state would pass max_reply_bytes, is
 * answered with UseSuccess alone (its header carrying the version the
 * client asked with) and the object joins the ones to catch up: what one
 * message makes the engine build is bounded by max_reply_bytes, and what
 * one drain makes it build by max(budget, one object's state).
 *
 * Loading (durable engines): a room's persistent objects live in a store
 * the engine never reads itself.  The first time a room is needed (a
 * client registers in it, or server code opens an object in it) the room
 * becomes LOADING and the engine asks for it through so_hooks.load_room;
 * the caller reads the store (off the loop thread, or over the network)
 * and hands the objects back with so_engine_room_loaded().  Meanwhile the
 * room's clients' messages and the server's so_engine_object_open_async
 * calls wait in one queue, in arrival order, and are replayed in that
 * order once the room is there.  The queue is bounded per client
 * (max_loading_messages, max_loading_bytes) and per room
 * (max_loading_room_bytes): a message past a bound is not kept and gets
 * Status(SO_STATUS_LIMIT_LOADING) for its Use and each of its writes at
 * once.  A load that fails answers what waited: Status(SO_STATUS_STORE_FAILED)
 * for each Use, write and SendMessage, and the server opens get SH_EIO;
 * the room is asked for again when next needed.
 *
 * Quotas (with a store): an application (the part of a room name before
 * its first '/') may store at most max_persistent_objects objects and
 * max_persistent_bytes key + value bytes (per room: so_room_settings).
 * Usage is read from the store at start and counted as changes go into
 * batches; an object counts from its first change.  A client write that
 * would store a new object or grow the stored bytes past a quota gets
 * Status(SO_STATUS_LIMIT_PERSISTENT_*) + the current value; a server
 * write gets SH_ELIMIT.  Shrinking and removing are always allowed.  A
 * clustered object's quotas are the cluster's to check (so_proposal).
 *
 * Server-side writes (so_object_set / _remove / _unlock) count as writer
 * id 0: a client whose header version predates a server write gets rule 3.
 * In a clustered room they go through the cluster like a client's write
 * (so_object_write).
 */
#ifndef SO_H
#define SO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "amf.h"
#include "sh_err.h"
#include "sh_rcbuf.h"
#include "so_store.h"
#include "so_wire.h"

/* Status codes (level is always "error"). */
#define SO_STATUS_NO_WRITE "SharedObject.NoWriteAccess"
#define SO_STATUS_NO_READ "SharedObject.NoReadAccess"
#define SO_STATUS_BAD_PERSISTENCE "SharedObject.BadPersistence"
#define SO_STATUS_NO_OBJECT "SharedObject.NoObjectFound"
#define SO_STATUS_BAD_NAME "SharedObject.BadName"
#define SO_STATUS_STORE_FAILED "SharedObject.StoreFailed"
#define SO_STATUS_LIMIT_OBJECTS "SharedObject.LimitExceeded.ObjectsPerRoom"
#define SO_STATUS_LIMIT_SLOTS "SharedObject.LimitExceeded.SlotsPerObject"
#define SO_STATUS_LIMIT_VALUE "SharedObject.LimitExceeded.ValueBytes"
#define SO_STATUS_LIMIT_OBJECT_BYTES "SharedObject.LimitExceeded.ObjectBytes"
#define SO_STATUS_LIMIT_SUBSCRIBERS "SharedObject.LimitExceeded.Subscribers"
#define SO_STATUS_LIMIT_CLIENT_OBJECTS "SharedObject.LimitExceeded.ObjectsPerClient"
#define SO_STATUS_LIMIT_RATE "SharedObject.LimitExceeded.UpdateRate"
#define SO_STATUS_LIMIT_KEY "SharedObject.LimitExceeded.KeyLength"
#define SO_STATUS_LIMIT_PERSISTENT_OBJECTS "SharedObject.LimitExceeded.PersistentObjects"
#define SO_STATUS_LIMIT_PERSISTENT_BYTES "SharedObject.LimitExceeded.PersistentBytes"
#define SO_STATUS_LIMIT_LOADING "SharedObject.LimitExceeded.Loading"
#define SO_STATUS_LEVEL_ERROR "error"

typedef enum so_conflict {
    SO_CONFLICT_REJECT = 0,   /* rule 3 (default) */
    SO_CONFLICT_LWW = 1,      /* last writer wins (Red5, crtmpserver) */
} so_conflict;

/* Start from so_config_default() and change what you need: a zeroed
 * struct would refuse everything (wire caps of 0). */
typedef struct so_config {
    uint32_t max_objects_per_room;    /* objects (any kind) in one room */
    uint32_t max_slots_per_object;
    uint32_t max_value_bytes;         /* wire bytes of one slot value; decoded, it may
                                       * hold SO_VALUE_MEM_FACTOR times that */
    size_t max_object_bytes;          /* memory an object's slots hold: per slot its
                                       * block, key, wire bytes and decoded value
                                       * (amf_mem_block / amf_value_mem model) */
    uint32_t max_subscribers;         /* per object */
    uint32_t max_objects_per_client;  /* subscriptions of one client */
    uint32_t max_updates_per_sec;     /* write messages per client per second, 0 = no cap */
    uint32_t max_name_len;            /* object name bytes */
    uint32_t max_key_len;             /* slot key bytes */
    uint32_t history_depth;           /* updates remembered per object for diffs */
    size_t max_body_bytes;            /* a Use or catch-up reply is split so that no
                                       * message holds more event bytes (unless one
                                       * event alone does); the header adds at most
                                       * 15 + max_name_len */
    size_t max_reply_bytes;           /* state built now for the Use of one message;
                                       * a larger one is sent by so_client_catch_up */
    uint64_t max_persistent_objects;  /* stored objects per application, 0 = no quota */
    uint64_t max_persistent_bytes;    /* stored key + value bytes per application, 0 = no quota */
    /* Waiting for a room's load (see "Loading"): messages and their memory
     * (decoded, as the engine counts it) one client may have queued, and
     * the memory of everything queued in one room.  A message alone in its
     * client's queue passes the client bounds whatever its size, one alone
     * in its room's queue the room bound. */
    uint32_t max_loading_messages;
    size_t max_loading_bytes;
    size_t max_loading_room_bytes;
    so_conflict conflict;             /* default mode; per room: so_hooks.room_settings */
    so_wire_limits wire;              /* hard decode caps (violations close the client) */
} so_config;

#define SO_DEFAULT_MAX_OBJECTS_PER_ROOM 4096
#define SO_DEFAULT_MAX_SLOTS_PER_OBJECT 4096
#define SO_DEFAULT_MAX_VALUE_BYTES (64u << 10)
/* Memory one slot value may hold decoded, per byte of max_value_bytes:
 * the ratio a decoded message may reach (AMF_MEMORY_PER_BYTE), so 1 MiB by
 * default.  Strings hold about their bytes, numbers 4.5 times, AMF0
 * objects 5 to 20 times; arrays of small AMF3 objects sharing traits go
 * past it (up to ~45 times) and are refused beyond about 22 KB.  What an
 * object holds in all is bounded by max_object_bytes. */
#define SO_VALUE_MEM_FACTOR AMF_MEMORY_PER_BYTE
/* Every value is held twice (its wire bytes, cached for sending, and the
 * decoded value), so 8 MiB of memory holds the 4 MiB of string data the
 * earlier byte count allowed. */
#define SO_DEFAULT_MAX_OBJECT_BYTES ((size_t)8 << 20)
#define SO_DEFAULT_MAX_SUBSCRIBERS 10000
#define SO_DEFAULT_MAX_OBJECTS_PER_CLIENT 256
#define SO_DEFAULT_MAX_UPDATES_PER_SEC 200
#define SO_DEFAULT_MAX_NAME_LEN 256
#define SO_DEFAULT_MAX_KEY_LEN 256
#define SO_DEFAULT_HISTORY_DEPTH 1024
#define SO_DEFAULT_MAX_BODY_BYTES ((size_t)4 << 20)
/* Twice the largest object.  A full object's state is its key and value
 * bytes plus 7 bytes of framing per slot (event type, length, key length)
 * and the message headers: under 2 x max_object_bytes as long as 7 bytes
 * per slot fit in max_object_bytes (true for the default caps), so a Use
 * is answered at once unless its client is congested. */
#define SO_DEFAULT_MAX_REPLY_BYTES (2 * SO_DEFAULT_MAX_OBJECT_BYTES)
#define SO_DEFAULT_MAX_PERSISTENT_OBJECTS 100000
#define SO_DEFAULT_MAX_PERSISTENT_BYTES ((uint64_t)1 << 30)
#define SO_DEFAULT_MAX_LOADING_MESSAGES 256
#define SO_DEFAULT_MAX_LOADING_BYTES ((size_t)1 << 20)
#define SO_DEFAULT_MAX_LOADING_ROOM_BYTES ((size_t)16 << 20)

void so_config_default(so_config *c);

/* ---- effects ---- */
/* What a client reads, beside AMF_ENC_AMF0 (messages of RTMP type 19) and
 * AMF_ENC_AMF3 (type 16): JSON text (so_json.h), for WebSocket clients. */
#define SO_ENC_JSON ((amf_encoding)74)

typedef struct so_effect {
    void **to;          /* recipients' user pointers (owned by the list) */
    size_t nto;
    uint8_t msg_type;   /* SO_MSG_AMF0 (19), SO_MSG_AMF3 (16) or SO_MSG_JSON (1) */
    sh_rcbuf *body;     /* one reference owned by the list; take another with sh_rcbuf_ref */
} so_effect;

typedef struct so_effects {
    so_effect *items;   /* read-only */
    size_t len;         /* read-only */
    size_t cap;         /* private */
} so_effects;

void so_effects_init(so_effects *l);
void so_effects_clear(so_effects *l);    /* drops every effect; keeps memory */
void so_effects_cleanup(so_effects *l);

/* ---- engine ---- */
typedef struct so_engine so_engine;
typedef struct so_client so_client;
typedef struct so_object so_object;

/* Optional application hook: return false to refuse a client's write
 * (answered like rule 4).  value is NULL for a remove.  Borrowed args. */
/* Settings of one room, given when the room is created (and again each
 * time it is created after it was dropped). */
typedef struct so_room_settings {
    so_conflict conflict;
    uint32_t max_slots_per_object;    /* at most the engine's (so_config) */
    uint32_t max_objects_per_client;  /* at most the engine's */
    /* Quotas of the room's application (any value; 0 = none).  Every room
     * of one application should be given the same ones. */
    uint64_t max_persistent_objects;
    uint64_t max_persistent_bytes;
    /* The room's persistent objects live in a cluster (a Redis shared by
     * several nodes; see "Clustered rooms" below): client and server
     * writes to them are proposed through so_hooks.propose instead of
     * applied (server writes: so_object_write), and
     * applied when the cluster's ordered update comes back
     * (so_engine_apply_update).  They go into no store batch and count
     * in no quota.  Its temporary objects are clustered the same way
     * (so_engine_apply_temp_update), all but local_name. */
    bool clustered;
    /* Clustered rooms: the name of the one temporary object that stays on
     * this node (NULL = none; borrowed, must live as long as the engine):
     * state each node derives itself, such as chat presence. */
    const char *local_name;
} so_room_settings;

/* One change of a clustered update: key[0..klen) set to the value whose
 * wire bytes (so_wire_event_value's form) are value[0..vlen), or removed
 * when remove is true.  Borrowed by every call that takes it. */
typedef struct so_wire_change {
    const char *key;
    size_t klen;
    const uint8_t *value;
    size_t vlen;
    bool remove;
} so_wire_change;

/* A client's write to a clustered object that passed the engine's checks
 * (access, caps, update rate, rule 3 against what this node has seen),
 * handed to so_hooks.propose.  Everything is borrowed for the call. */
/* The end of a server write to a clustered object (so_object_write):
 * status 0 = stored by the cluster and applied here (version: the update
 * that holds it); SH_EEXIST = compare-and-set failed, nothing written
 * (version: the object's version in the cluster); SH_EIO = not known to be
 * stored (the cluster could not be reached, did not answer in time, or the
 * room was out of sync): nothing was applied here, though a write that did
 * reach the cluster may still arrive as an ordinary update; SH_ESTATE = the
 * server stops (version 0). */
typedef void (*so_write_fn)(void *ud, int status, uint32_t version);

typedef struct so_proposal {
    so_client *client;          /* valid until so_client_unregister; NULL for
                                 * a server write (so_object_write and the
                                 * other server writes of a clustered object) */
    const char *room;
    const char *name;
    size_t name_len;
    uint32_t base_version;      /* the header version of the client's message (rule 3) */
    so_conflict conflict;       /* the room's mode */
    const so_wire_change *changes;
    size_t n;
    /* Server writes only (client NULL): conflict is SO_CONFLICT_LWW (the
     * server is not held to rule 3); expect_version, when not 0, makes the
     * write conditional: applied only if the cluster's version of the
     * object is exactly that (compare-and-set).  done (may be NULL) must
     * be called exactly once, never from inside the hook, when the hook
     * returned 0. */
    uint32_t expect_version;
    so_write_fn done;
    void *done_ud;
    /* A persistent object: its application's quotas (so_room_settings,
     * 0 = none), which the cluster checks against the whole cluster's
     * usage, refusing keys with SO_ANSWER_LIMIT_* (a server write: all of
     * them, with SH_ELIMIT). */
    uint64_t max_objects, max_bytes;
} so_proposal;

typedef struct so_hooks {
    bool (*allow_write)(void *ud, void *client_user, const so_object *o,
                        const char *key, size_t key_len, const amf_value *value);
    /* Optional: called when a room is created, with *s filled from the
     * engine's config; may lower the limits and choose the conflict mode
     * (the server: the [app] section of the room's application).  Rooms
     * set up this way are dropped when nothing is left in them. */
    void (*room_settings)(void *ud, const char *room, so_room_settings *s);
    /* Durable engines: room (borrowed for the call) must be read from the
     * store; answer later with so_engine_room_loaded(), never from inside
     * this call.  Asked once per load: the room stays LOADING until the
     * answer.  Without this hook a durable engine takes every room as
     * loaded and empty at once (tests that need no store reads). */
    void (*load_room)(void *ud, const char *room);
    /* Clustered rooms (so_room_settings.clustered): a client's accepted
     * changes to a clustered object (persistent or temporary: the
     * object's so_object_persistent tells), or a server write (p->client
     * NULL: answered through p->done only), as one proposed update.  Return 0
     * when it was sent: the client is answered later, Success per key by
     * so_engine_apply_update (writer = p->client) once the cluster
     * ordered it, or by so_engine_answer (stale, failed).  A negative
     * return answers every key at once with SO_STATUS_STORE_FAILED and its
     * current value (the cluster cannot be reached). */
    int (*propose)(void *ud, const so_proposal *p);
    /* Clustered rooms: a SendMessage to a clustered object (ev: its
     * SendMessage event, wire bytes, borrowed) for every node's
     * subscribers.  Return 0 when it was sent: it reaches this node's
     * subscribers, the sender included, through so_engine_send_event like
     * everyone else's.  A negative return: the engine delivers it to this
     * node's subscribers at once. */
    int (*propose_send)(void *ud, const char *room, const char *name, size_t nlen,
                        const uint8_t *ev, size_t len);
    /* Optional: the objects of a room being loaded are made (the image
     * is applied) and what waited for the load is about to be replayed:
     * the last chance to seed their history (so_engine_object_seed_history)
     * before a waiting Use is answered. */
    void (*room_ready)(void *ud, const char *room);
    /* Optional: room (borrowed) left memory (so_engine_unload_idle, or
     * dropped once nothing was left in it). */
    void (*room_unloaded)(void *ud, const char *room);
    /* Clustered rooms: this node starts (used) or stops (!used) using the
     * clustered temporary object name of room (subscribers or server
     * handles; both borrowed for the call).  The object stays in memory
     * as a mirror of the cluster's after its last local user left, until
     * so_engine_temp_drop.  Must not call into the engine. */
    void (*temp_use)(void *ud, const char *room, const char *name, bool used);
    void *ud;
} so_hooks;

/* config NULL = defaults (copied).  durable: persistent objects are kept
 * in a store (changes go into batches, rooms are loaded through
 * so_hooks.load_room, quotas apply, idle rooms may be unloaded); false:
 * they live in memory only.  Returns NULL when out of memory. */
so_engine *so_engine_new(const so_config *config, bool durable);
/* What the store holds for application app (a so_store_usage_fn shape;
 * may be called several times per application: the counts add up).  The
 * caller reads the store's usage once, before the engine serves anyone,
 * for the quotas.  Returns 0 or SH_ENOMEM. */
int so_engine_usage_add(so_engine *e, const char *app, uint64_t objects, uint64_t bytes);
/* Frees everything, including clients still registered (their so_client
 * pointers become invalid), held effects and the batch being built.
 * Batches already taken stay owned by the caller (so_store_batch_free).
 * Accepts NULL. */
void so_engine_free(so_engine *e);
void so_engine_set_hooks(so_engine *e, const so_hooks *h);
/* Changes the update rate cap (so_config.max_updates_per_sec) at run time
 * (a configuration reload). */
void so_engine_set_rate(so_engine *e, uint32_t max_updates_per_sec);
/* Conflict mode of one room (creates the room entry if needed; the entry
 * then stays for the engine's life: prefer the room_settings hook). */
int so_engine_room_set_conflict(so_engine *e, const char *room, so_conflict mode);

/* ---- clients ----
 * Registers a client in room (copied; "app/instance").  user is an opaque
 * pointer handed back in effects.  enc AMF0 -> messages of type 19, AMF3
 * -> type 16, SO_ENC_JSON -> JSON text (SO_MSG_JSON), each body made once
 * per update for all the clients of that encoding.  Read and write access default to "/" (everything).  The
 * first touch of a room of a durable engine asks for its load
 * (so_hooks.load_room); the client's messages wait for it.  Returns
 * NULL and sets *err (may be NULL) on failure. */
so_client *so_client_register(so_engine *e, void *user, amf_encoding enc,
                              const char *room, int *err);
/* Drops the client's subscriptions (temporary objects may vanish) and
 * removes it from held effects.  c is freed.  Accepts NULL. */
void so_client_unregister(so_engine *e, so_client *c);
/* Access lists like FMS Client.readAccess / writeAccess: ';'-separated
 * path prefixes matched against the object name by whole segments ("/" or
 * "" = all, "chat" matches "chat" and "chat/x" but not "chatter").  NULL
 * keeps the current list. */
int so_client_set_access(so_engine *e, so_client *c, const char *read, const char *write);
/* Rule 7.  true: no per-update messages from now on; the version each
 * subscription holds is remembered.  false: the client drained, and every
 * object it is behind on is caught up at once (so_client_catch_up without
 * a budget): a server should prefer so_client_catch_up, which paces it. */
int so_client_set_congested(so_engine *e, so_client *c, bool congested, so_effects *out);
/* The client drained: it is no longer congested, and the objects it is
 * behind on (it was congested, or a Use was answered without the state,
 * see max_reply_bytes) are caught up one by one, each with one message
 * (the diff since the version it holds, or Clear and everything), until
 * the next one would take the output built past budget bytes.  At least
 * one object is caught up per call, so a budget below one object's state
 * still makes progress.  Returns 1 when objects remain behind (their
 * per-update messages stay paused: call again at the next drain), 0 when
 * the client is up to date, or a negative SH_E*.  Output built is at most
 * max(budget, one object's state). */
int so_client_catch_up(so_engine *e, so_client *c, size_t budget, so_effects *out);
/* True while the client is congested or behind on an object: it needs
 * so_client_catch_up when its output drains.  A Use can make it true
 * (answered without the state); the app should then treat the client as
 * congested until a catch-up returns 0. */
bool so_client_is_behind(const so_client *c);
void *so_client_user(const so_client *c);
uint64_t so_client_id(const so_client *c);

/* ---- input ----
 * Handles one message body the client sent (RTMP type msg_type, 16 or 19).
 * Appends effects to out.  Returns 0, or a negative SH_E* when the body is
 * malformed or passes a hard wire cap (details in *err, may be NULL): the
 * app should close that client.  now_ms: any monotonic milliseconds. */
int so_engine_handle(so_engine *e, so_client *c, uint8_t msg_type,
                     const uint8_t *body, size_t len, uint64_t now_ms,
                     so_effects *out, sh_error *err);
/* Same with an already decoded message (borrowed; copied when it has to
 * wait for the room's load). */
int so_engine_handle_msg(so_engine *e, so_client *c, const so_msg *m,
                         uint64_t now_ms, so_effects *out);
/* The answer to so_hooks.load_room: status 0 with the room's stored
 * objects in image (borrowed; SO_STORE_OBJECT ops with name and version,
 * SO_STORE_SET ops with name, key, version and value, an object's row
 * before its slots; NULL = nothing stored), or a negative code.  The
 * objects are made, then what waited is replayed in arrival order:
 * client messages (their effects appended to out, each handled with the
 * now_ms it came with) and server opens (their callbacks run).  A stored
 * value that does not decode fails the load (SH_EIO).  Returns 0, or
 * SH_ESTATE when room is not loading, or the load's error. */
int so_engine_room_loaded(so_engine *e, const char *room, int status,
                          const so_store_batch *image, so_effects *out);
/* True while room waits for its load. */
bool so_engine_room_loading(const so_engine *e, const char *room);

/* ---- persistence (see the header comment) ----
 * Returns the batch built since the last call (owned by the caller until
 * it is handed back to so_engine_batch_done), or NULL when nothing is
 * pending. */
so_store_batch *so_engine_take_batch(so_engine *e);
/* status: 0 or the negative result of so_store_write_batch.  Takes b
 * (frees it).  Batches must come back in the order they were taken
 * (SH_EINVAL otherwise, and b is not taken).  Appends released effects. */
int so_engine_batch_done(so_engine *e, so_store_batch *b, int status, so_effects *out);
/* Number of effects held waiting for durability. */
size_t so_engine_held_count(const so_engine *e);
/* True when changes wait for so_engine_take_batch. */
bool so_engine_has_batch(const so_engine *e);
/* Memory bound for persistent objects: frees the objects of every room
 * that was idle at the previous call and still is.  Idle: no client
 * registered in it, no object held open by server code, locked or with
 * queued server changes, and every change of its objects durable (its
 * batch came back successfully).  The room is loaded again (load_room)
 * when next touched (a client registering, the server opening an
 * object), as after a restart: a client coming back with an old version
 * gets Clear and everything, since the history is gone.  Does nothing
 * when the engine is not durable.  Call it periodically: a room is unloaded one to two
 * periods after it went idle.  Returns the number of rooms unloaded. */
size_t so_engine_unload_idle(so_engine *e);

/* ---- clustered rooms ----
 * The cluster (app/cluster_so.c) is the source of truth of a clustered
 * room's objects (persistent and temporary) and gives each object one order of updates,
 * numbered without gaps.  The engine applies them in that order and fans
 * them out to its subscribers as if they were local writes.
 *
 * so_engine_apply_update: update `version` of object name in a loaded
 * room, made of ch[0..n).  writer: the local client whose proposal this
 * is (it gets Success per key instead of the Change), or NULL.  Creates
 * the object (persistent, version 1) when the room does not have it.
 * Returns 0 when applied, SO_APPLY_OLD when version <= the object's (done
 * already: nothing happens), SO_APPLY_GAP when version > the object's + 1
 * (nothing happens: the caller must catch up first), SH_ESTATE when the
 * room is not loaded, SH_EEXIST when a temporary object has the name,
 * SH_EIO when a value does not decode, SH_ENOMEM. */
#define SO_APPLY_OLD 1
#define SO_APPLY_GAP 2
int so_engine_apply_update(so_engine *e, const char *room, const char *name, size_t nlen,
                           uint32_t version, const so_wire_change *ch, size_t n,
                           so_client *writer, so_effects *out);
/* Brings object name of a loaded room to the cluster's state: `version`
 * with the live slots of img (SO_STORE_SET ops of that object, borrowed;
 * NULL = no slots).  reset false: nothing when version <= the object's,
 * else the difference is applied as one update numbered `version` (the
 * subscribers get one Change / Remove message).  reset true (the cluster
 * lost data: a new epoch): the object takes that state whatever its
 * version, its history is forgotten, and every subscriber gets Clear and
 * every slot.  Creates the object when missing.  Returns 0 or as
 * so_engine_apply_update. */
int so_engine_object_sync(so_engine *e, const char *room, const char *name, uint32_t version,
                          const so_store_batch *img, bool reset, so_effects *out);

/* The same for the clustered temporary objects of a room (all but its
 * so_room_settings.local_name).  so_engine_apply_temp_update returns
 * SO_APPLY_GAP for an object this node does not have (it missed the
 * object being made).  so_engine_temp_sync makes a missing object at
 * version with img's slots and no history (reset or not).
 * so_engine_temp_drop forgets the object (the cluster dropped it): 0 when
 * gone or not there, SH_ESTATE while this node still uses it, SH_EEXIST
 * for an object that is not a clustered temporary one. */
int so_engine_apply_temp_update(so_engine *e, const char *room, const char *name, size_t nlen,
                                uint32_t version, const so_wire_change *ch, size_t n,
                                so_client *writer, so_effects *out);
int so_engine_temp_sync(so_engine *e, const char *room, const char *name, uint32_t version,
                        const so_store_batch *img, bool reset, so_effects *out);
int so_engine_temp_drop(so_engine *e, const char *room, const char *name);
/* One update of an object's past, for so_engine_object_seed_history: the
 * keys it changed (borrowed). */
typedef struct so_hist_entry {
    uint32_t version;
    size_t nkeys;
    const char *const *keys;
    const size_t *klens;
} so_hist_entry;
/* Gives a clustered object whose history is empty (just loaded) the
 * updates that led to its version, h[0..n) oldest first, consecutive
 * versions ending at the object's version (the last history_depth of them
 * are kept).  A client that comes back with a version they cover then gets
 * the keys changed since, not Clear and everything.  Returns 0, SH_EINVAL
 * when the entries do not end at the object's version or skip one (nothing
 * kept), SH_ESTATE when the object has history or is not there,
 * SH_ENOMEM. */
int so_engine_object_seed_history(so_engine *e, const char *room, const char *name,
                                  const so_hist_entry *h, size_t n);
/* Answers a proposal's keys (ch: the keys; values unused) to client c
 * about object name of c's room: SO_ANSWER_SUCCESS (a key the cluster
 * had nothing to do for), SO_ANSWER_CURRENT (stale: the key's current
 * value, rule 3) or SO_ANSWER_STORE_FAILED (Status StoreFailed + the
 * current value).  Returns 0 or SH_ENOMEM. */
typedef enum so_answer {
    SO_ANSWER_SUCCESS = 0,
    SO_ANSWER_CURRENT = 1,
    SO_ANSWER_STORE_FAILED = 2,
    SO_ANSWER_LIMIT_OBJECTS = 3, /* Status LimitExceeded.PersistentObjects + the current value */
    SO_ANSWER_LIMIT_BYTES = 4,   /* Status LimitExceeded.PersistentBytes + the current value */
} so_answer;
int so_engine_answer(so_engine *e, so_client *c, const char *name, size_t nlen,
                     const so_wire_change *ch, size_t n, so_answer how, so_effects *out);

/* A SendMessage event that came through the cluster (so_hooks.propose_send
 * on some node): to every subscriber of object name of room that is not
 * behind.  Nothing when the room or the object is not here.  Returns 0 or
 * SH_ENOMEM. */
int so_engine_send_event(so_engine *e, const char *room, const char *name, size_t nlen,
                         const uint8_t *ev, size_t len, so_effects *out);

/* ---- server-side API ----
 * Gets or creates an object in a room that is loaded.  The handle keeps a
 * temporary object alive (and the room in memory) until
 * so_engine_object_close.  Errors: SH_ESTATE (the room is not loaded, or
 * still loading: nothing is asked; use so_engine_object_open_async),
 * SH_EEXIST (exists with the other persistence), SH_ELIMIT (objects per
 * room), SH_EINVAL (bad name), SH_ENOMEM.  Rooms of an engine that is not
 * durable are always loaded. */
so_object *so_engine_object_open(so_engine *e, const char *room, const char *name,
                                 bool persistent, int *err);
/* The same for any room: cb(ud, o, err) runs exactly once with the
 * handle (or NULL and an error as above, SH_EIO when the load failed):
 * before this call returns when the room is loaded, else from
 * so_engine_room_loaded(), in arrival order with the room's client
 * messages (the load is asked for when needed).  The callback may call
 * the engine.  Returns 0, or SH_EINVAL / SH_ELIMIT (the room's queue is
 * full) / SH_ENOMEM, and then cb is never called.  so_engine_free drops
 * callbacks that are still waiting without calling them. */
typedef void (*so_open_fn)(void *ud, so_object *o, int err);
int so_engine_object_open_async(so_engine *e, const char *room, const char *name,
                                bool persistent, so_open_fn cb, void *ud);
/* Forgets the waiting opens of (cb, ud), in every room, without calling
 * them (their owner goes away before the load is answered).  Returns how
 * many were dropped. */
size_t so_engine_object_open_cancel(so_engine *e, so_open_fn cb, void *ud);
void so_engine_object_close(so_engine *e, so_object *o);
/* Borrowed lookup without creating or loading; NULL when absent. */
so_object *so_engine_object_find(so_engine *e, const char *room, const char *name);

/* Sets / removes a slot as the server.  v is borrowed (a reference is
 * kept).  Outside a lock each call is one update (one version; for a
 * clustered object, one proposal: see so_object_write); inside
 * lock/unlock the changes are queued and applied together at unlock as
 * one version (reads during the lock show the committed state).
 * SH_ELIMIT when a cap refuses the change (value bytes at set time; slots
 * and object bytes when applied). */
int so_object_set(so_engine *e, so_object *o, const char *key, size_t key_len,
                  amf_value *v, so_effects *out);
int so_object_remove(so_engine *e, so_object *o, const char *key, size_t key_len,
                     so_effects *out);
void so_object_lock(so_engine *e, so_object *o);
int so_object_unlock(so_engine *e, so_object *o, so_effects *out);
/* One change of so_object_apply: key[0..klen) set to v (borrowed), or
 * removed when v is NULL. */
typedef struct so_change {
    const char *key;
    size_t klen;
    amf_value *v;
} so_change;
/* Applies ch[0..n) as the server, as one request: all of them as one
 * version, or none with SH_ELIMIT when a cap would refuse any of them
 * (max_value_bytes, slots per object, object bytes, a persistent quota),
 * each checked against the state the changes before it leave.  (A set
 * under lock/unlock is checked key by key instead, and the keys a cap
 * refuses are left out.)  While o is locked the changes are queued, all
 * or none by value bytes, and applied with the lock's others at the
 * unlock.  SH_EINVAL for a key over 65535 bytes, SH_ENOMEM. */
int so_object_apply(so_engine *e, so_object *o, const so_change *ch, size_t n,
                    so_effects *out);
/* Server writes that can wait for the cluster.  In a clustered room
 * (so_room_settings.clustered) a persistent object's server writes
 * (so_object_set, _remove, _apply, _unlock and this one) are not applied
 * here: they are proposed through so_hooks.propose like a client's write
 * and applied, on every node, when the cluster's update comes back; reads
 * show the old state until then.  The plain calls return 0 once the write
 * is proposed (fire and forget).  so_object_write says more:
 *
 * Applies ch[0..n) as so_object_apply does, with opts (NULL = none):
 * expect_version, when not 0, makes the write a compare-and-set on the
 * object's version (for a clustered object, the cluster's version: the
 * only way for one node to know that its write is based on the newest
 * state).  Returns
 *   0                 applied now (not clustered): effects in out; done
 *                     is not called
 *   SO_WRITE_PENDING  proposed to the cluster: done (if any) runs exactly
 *                     once later (so_write_fn has the outcomes), never
 *                     from inside this call
 *   SH_EEXIST         not clustered, and expect_version is not the
 *                     object's version: nothing applied
 *   SH_EIO            clustered, and the cluster cannot take it now (not
 *                     reachable, room out of sync): nothing applied
 *   SH_ESTATE         o is locked and opts asks for a compare-and-set or
 *                     a completion (a locked object's changes wait for
 *                     the unlock)
 *   or as so_object_apply (SH_ELIMIT, SH_EINVAL, SH_ENOMEM).
 * When it returns anything but SO_WRITE_PENDING, done is never called. */
#define SO_WRITE_PENDING 1
typedef struct so_write_opts {
    uint32_t expect_version;    /* 0 = write whatever the version */
    so_write_fn done;           /* NULL = fire and forget */
    void *ud;
} so_write_opts;
int so_object_write(so_engine *e, so_object *o, const so_change *ch, size_t n,
                    const so_write_opts *opts, so_effects *out);

/* SendMessage from the server to every subscriber.  args borrowed. */
int so_object_send(so_engine *e, so_object *o, const char *handler,
                   size_t nargs, amf_value *const *args, so_effects *out);
/* Clients may not change slots of a server-only object (rule 4 answers). */
void so_object_set_server_only(so_object *o, bool on);

/* Reads (borrowed results, valid until the next engine call). */
amf_value *so_object_get(const so_object *o, const char *key, size_t key_len);
uint32_t so_object_version(const so_object *o);
bool so_object_persistent(const so_object *o);
/* Kept in the cluster: an object of a clustered room but its local_name. */
bool so_object_clustered(const so_object *o);
const char *so_object_name(const so_object *o);
size_t so_object_slot_count(const so_object *o);
/* Memory the object's live slots hold, what max_object_bytes bounds. */
size_t so_object_bytes(const so_object *o);
size_t so_object_subscriber_count(const so_object *o);
size_t so_object_history_len(const so_object *o);
bool so_object_locked(const so_object *o);

/* ---- listing, for operators (borrowed results, valid until the next
 * engine call; nothing is loaded or created) ---- */
typedef struct so_room_info {
    const char *name;       /* "app/instance" */
    size_t clients;         /* registered clients */
    size_t objects;         /* objects in memory */
} so_room_info;
/* Rooms in memory: start with *iter = 0; false at the end. */
bool so_engine_room_next(const so_engine *e, size_t *iter, so_room_info *out);
/* One room, false when it is not in memory. */
bool so_engine_room_info(const so_engine *e, const char *room, so_room_info *out);
/* Objects of a room in memory: start with *iter = 0; NULL at the end. */
so_object *so_engine_object_next(const so_engine *e, const char *room, size_t *iter);
/* Iterates live slots: start with *iter = 0; returns false at the end. */
bool so_object_slot_next(const so_object *o, size_t *iter, const char **key,
                         size_t *key_len, amf_value **value);

/* Kinds of refusals counted in so_engine_stats.refused. */
#define SO_REFUSALS 19

typedef struct so_engine_stats {
    uint64_t rooms, objects, clients;
    uint64_t updates;          /* versions created */
    uint64_t ignored_events;   /* server-only or unknown events from clients */
    uint64_t held;             /* effects waiting for durability */
    uint64_t store_failures;
    uint64_t room_loads;       /* rooms read from the store */
    uint64_t load_failures;    /* loads answered with an error */
    uint64_t loading;          /* rooms waiting for their load now */
    uint64_t queued;           /* messages and opens waiting for a load now */
    uint64_t room_unloads;     /* rooms freed by so_engine_unload_idle */
    uint64_t object_loads;     /* objects brought into memory (read from the store or new) */
    uint64_t object_unloads;   /* objects freed (their room unloaded, or a temporary
                                  object nobody uses any more) */
    uint64_t uses_deferred;    /* Use answered without the state (caught up later) */
    uint64_t catch_ups;        /* objects caught up after congestion */
    /* Refused requests by kind: refused[i] counts so_refusal_name(i)
     * (a Status code, or "stale" for rule 3). */
    uint64_t refused[SO_REFUSALS];
} so_engine_stats;
/* Name of refusal kind i < SO_REFUSALS. */
const char *so_refusal_name(size_t i);
void so_engine_get_stats(const so_engine *e, so_engine_stats *s);

/* What application `app` (the part of its rooms' names before the first
 * '/') has in the store, counted as the quotas count it: persistent
 * objects written at least once, and the key + value wire bytes of their
 * slots, including changes still in the batch being built or in flight.
 * Zeros for an application with nothing stored. */
void so_engine_app_usage(const so_engine *e, const char *app, uint64_t *objects,
                         uint64_t *bytes);

#endif
