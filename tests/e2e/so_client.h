/* so_client.h - a shared-object client for end-to-end tests.
 *
 * Built on sohub's client library (shc, app/cli/client.h: socket,
 * handshake, connect, chunking, reading) and the SO wire codec
 * (so_wire.h).  Blocking, single-threaded, every wait bounded.
 * The client keeps a mirror of every object it hears about: version, slots
 * (applying Clear / Change / Remove as they arrive, and its own requested
 * values when their Success arrives), UseSuccess / Status / SendMessage
 * counters, so a test can compare the state different clients ended with.
 * Received messages are also queued (decoded) for tests that look at the
 * exact events.
 */
#ifndef E2E_SO_CLIENT_H
#define E2E_SO_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "amf.h"
#include "so_wire.h"

typedef struct soc_slot {
    char *key;
    amf_value *value;       /* owned */
} soc_slot;

typedef struct soc_obj {
    char name[128];
    uint32_t version;       /* last header version heard */
    bool persistent;
    soc_slot *slots;
    size_t nslots, cap;
    unsigned use_success;   /* UseSuccess events */
    unsigned clears;
    unsigned changes;       /* Change events (pairs) */
    unsigned successes;
    unsigned sends;         /* SendMessage events */
    char last_status[128];  /* code of the last Status event */
    char last_handler[64];  /* handler of the last SendMessage */
} soc_obj;

typedef struct soc soc;

/* Connects to rtmp://127.0.0.1:port/<path>, handshake + connect with
 * objectEncoding enc (0 or 3).  rcvbuf > 0 sets SO_RCVBUF before connect
 * (slow-subscriber tests).  Returns NULL on failure (message printed). */
soc *soc_connect(int port, const char *path, int enc, int rcvbuf);
void soc_close(soc *c);
bool soc_closed(const soc *c);      /* the server closed the connection */
int soc_fd(const soc *c);
/* SO messages received of RTMP type 16 or 19. */
unsigned soc_rx_count(const soc *c, uint8_t type);

/* Reads and handles input for up to timeout_ms (0 = what is there now).
 * Returns the number of SO messages received, -1 when the connection is
 * closed. */
int soc_pump(soc *c, int timeout_ms);
/* Pumps until no SO message arrived for quiet_ms (bounded by max_ms). */
void soc_settle(soc *c, int quiet_ms, int max_ms);

/* Next received SO message (owned: soc_msg_free), waiting up to
 * timeout_ms; NULL on time-out. */
so_msg *soc_next(soc *c, int timeout_ms);
void soc_msg_free(so_msg *m);
/* Waits for a message on object `name` with an event of `type`; messages
 * before it are dropped (already applied to the mirror).  Owned result or
 * NULL on time-out. */
so_msg *soc_wait_event(soc *c, const char *name, uint8_t type, int timeout_ms);
/* Drops every queued message. */
void soc_discard(soc *c);
/* Number of events of `type` in m. */
size_t soc_count_events(const so_msg *m, uint8_t type);
/* The i-th event of `type` in m, or NULL. */
const so_event *soc_event(const so_msg *m, uint8_t type, size_t i);

/* ---- sending (version: the header version to send) ---- */
int soc_use(soc *c, const char *name, uint32_t version, bool persistent);
int soc_release(soc *c, const char *name, bool persistent);
/* One RequestChange with n pairs (values borrowed). */
int soc_set(soc *c, const char *name, uint32_t version, bool persistent, size_t n,
            const char *const *keys, amf_value *const *values);
int soc_set_num(soc *c, const char *name, uint32_t version, bool persistent,
                const char *key, double v);
int soc_set_str(soc *c, const char *name, uint32_t version, bool persistent,
                const char *key, const char *v);
int soc_remove(soc *c, const char *name, uint32_t version, bool persistent, const char *key);
int soc_send(soc *c, const char *name, bool persistent, const char *handler,
             size_t nargs, amf_value *const *args);
/* Sends a prepared body as an SO message of this client's type. */
int soc_send_body(soc *c, const uint8_t *body, size_t len);

/* ---- the mirror ---- */
soc_obj *soc_object(soc *c, const char *name);      /* NULL when unknown */
uint32_t soc_version(soc *c, const char *name);     /* 0 when unknown */
amf_value *soc_get(soc *c, const char *name, const char *key); /* borrowed */
double soc_get_num(soc *c, const char *name, const char *key); /* NaN when absent */
/* True when both mirrors of `name` have the same slots (amf_equal). */
bool soc_same_state(soc *a, soc *b, const char *name);

#endif
