/* so_store.h - durable storage of persistent shared objects.
 *
 * An so_store is an ops table plus the backend's state: blocking calls,
 * which the server makes off its loop thread.  Two backends are here:
 * memory (tests, temporary use) and SQLite (so_store_sqlite.c).  The
 * engine never calls a store: it asks for a room (so_hooks.load_room) and
 * is handed the room's image, a batch of OBJECT and SET ops that
 * so_store_load_image() builds; it hands out batches to write.  A backend
 * that completes from callbacks (Redis) does not fit these blocking ops:
 * the server's store layer is where such a backend plugs in.
 *
 * Threads: load_room and write_batch may run at the same time on two
 * worker threads, each call by one thread at a time (the SQLite backend
 * uses two connections, the memory backend a mutex).  A batch owns plain
 * copies of everything it writes (strings and values already serialised
 * to bytes), so writing it never touches engine state or
 * reference-counted amf values.
 *
 * Values are stored as their exact wire form (so_wire_event_value): AMF0
 * when AMF0 carries the value exactly, else AMF0 0x11 + AMF3.  Plain AMF3
 * would lose AMF0-only details (date time zones, ECMA array counts) and
 * plain AMF0 would lose AMF3-only types (integers, sealed traits, byte
 * arrays, vectors, dictionaries); this form keeps both, and the engine can
 * copy the stored bytes straight into Change events.
 */
#ifndef SO_STORE_H
#define SO_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sh_err.h"

typedef enum so_store_op_kind {
    SO_STORE_OBJECT = 1,  /* upsert objects(room, name) with `version` */
    SO_STORE_SET,         /* upsert slots(room, name, key) = value at `version` */
    SO_STORE_DELETE,      /* delete slots(room, name, key) */
    SO_STORE_CLEAR,       /* delete every slot of (room, name) */
    SO_STORE_DROP,        /* delete the object and its slots */
} so_store_op_kind;

typedef struct so_store_op {
    so_store_op_kind kind;
    char *room;          /* owned */
    char *name;          /* owned */
    char *key;           /* owned; NULL unless SET / DELETE */
    size_t key_len;
    uint32_t version;    /* object version (OBJECT) or slot version (SET) */
    uint8_t *value;      /* owned value bytes, exact wire form (SET only) */
    size_t value_len;
} so_store_op;

/* A group of operations applied atomically (one transaction), in order. */
typedef struct so_store_batch {
    uint64_t seq;        /* read-only: given by the engine, increasing */
    so_store_op *ops;    /* read-only */
    size_t nops;
    size_t cap;          /* private */
    size_t bytes;        /* read-only: approximate payload bytes */
} so_store_batch;

so_store_batch *so_store_batch_new(uint64_t seq);
void so_store_batch_free(so_store_batch *b);   /* accepts NULL */
/* Appends one op; copies every string / byte array given. */
int so_store_batch_add(so_store_batch *b, so_store_op_kind kind, const char *room,
                       const char *name, const char *key, size_t key_len,
                       uint32_t version, const uint8_t *value, size_t value_len);

/* Visitor used by load_room: every object of the room first comes through
 * `object`, then its slots through `slot` (bytes borrowed for the call). */
typedef struct so_store_visitor {
    int (*object)(void *ud, const char *name, uint32_t version);
    int (*slot)(void *ud, const char *name, const char *key, size_t key_len,
                uint32_t version, const uint8_t *value, size_t value_len);
    void *ud;
} so_store_visitor;

/* What one application holds in the store: `objects` object rows and
 * `bytes` key + value bytes of slots.  An application is the part of a
 * room name before its first '/' (the whole name when it has none).  May
 * be called several times for one application: the receiver adds up. */
typedef int (*so_store_usage_fn)(void *ud, const char *app, uint64_t objects,
                                 uint64_t bytes);

typedef struct so_store so_store;

typedef struct so_store_options {
    bool sync_full;      /* SQLite: synchronous=FULL instead of NORMAL */
    int busy_timeout_ms; /* SQLite: busy timeout (0 = 5000) */
} so_store_options;

typedef struct so_store_ops {
    const char *name;
    /* spec: backend specific (SQLite: file path; memory: ignored). */
    int (*open)(const char *spec, const so_store_options *opts, so_store **out);
    int (*load_room)(so_store *s, const char *room, const so_store_visitor *v);
    int (*write_batch)(so_store *s, const so_store_batch *b);
    void (*close)(so_store *s);
    /* Optional: reports the usage of every application (loop thread, at
     * start: it reads everything once).  A non-zero return of fn stops
     * the walk and is returned. */
    int (*usage)(so_store *s, so_store_usage_fn fn, void *ud);
} so_store_ops;

/* Every backend's struct starts with this header. */
struct so_store {
    const so_store_ops *ops;
};

extern const so_store_ops so_store_memory_ops;
extern const so_store_ops so_store_sqlite_ops;

/* Dispatch helpers.  so_store_close accepts NULL. */
int so_store_open(const so_store_ops *ops, const char *spec,
                  const so_store_options *opts, so_store **out);
int so_store_load_room(so_store *s, const char *room, const so_store_visitor *v);
/* Reads room into *out (a new batch, owned by the caller; empty when
 * nothing is stored): SO_STORE_OBJECT ops (name, version), then
 * SO_STORE_SET ops (name, key, slot version, value), what
 * so_engine_room_loaded takes.  Returns 0 or the load's error (*out NULL). */
int so_store_load_image(so_store *s, const char *room, so_store_batch **out);
int so_store_write_batch(so_store *s, const so_store_batch *b);
void so_store_close(so_store *s);
/* SH_EUNSUPPORTED when the backend has no usage op. */
int so_store_usage(so_store *s, so_store_usage_fn fn, void *ud);
/* Length of the application part of a room name (up to its first '/'). */
size_t so_store_app_len(const char *room);

/* Memory backend extras (tests): the next `n` write_batch calls fail with
 * SH_EIO without writing anything. */
void so_store_memory_fail_next(so_store *s, int n);
/* Number of stored objects / slots over all rooms. */
size_t so_store_memory_count(so_store *s, size_t *slots);

/* SQLite backend extras.  The store keeps two connections to the same
 * file (WAL): `writer` is used by write_batch, `reader` by load_room and
 * usage.  Other tables may live in the same file and share these
 * connections (same thread rules: app/store_sqlite.c writes chat's tables
 * in the writer's transactions), or open their own connection to
 * so_store_sqlite_path(). */
struct sqlite3;
struct sqlite3 *so_store_sqlite_db(so_store *s, bool writer);
const char *so_store_sqlite_path(so_store *s);
/* Applies b's ops on the writer inside a transaction the caller opened
 * (write_batch is BEGIN IMMEDIATE, this, COMMIT).  Returns 0 or SH_EIO
 * (the caller rolls back). */
int so_store_sqlite_apply(so_store *s, const so_store_batch *b);

#endif
