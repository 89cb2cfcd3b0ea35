/* samples_int.h - what the sample applications share (not for other
 * modules). */
#ifndef SAMPLES_INT_H
#define SAMPLES_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "app.h"
#include "so_glue.h"

#define SAMPLES_NAME_MAX 128

typedef struct samples_settings {
    /* [chat] */
    uint32_t chat_room_size;        /* messages kept in `room` */
    uint32_t chat_max_text;         /* bytes of one room message */
    /* [auction] */
    char auction_admin[SAMPLES_NAME_MAX];   /* the user who may create items */
    double auction_min_increment;           /* default increment of new items */
    uint32_t auction_snipe_window_ms;       /* a bid this close to the end ... */
    uint32_t auction_snipe_extend_ms;       /* ... moves the end to now + this */
    uint32_t auction_max_items;             /* items per instance */
    /* [slideshow] */
    char slideshow_presenter[SAMPLES_NAME_MAX]; /* "" = first user to connect */
} samples_settings;

/* Defaults, then the [sample chat|auction|slideshow] sections of the
 * server's config file.  0 or SH_EINVAL with "FILE:LINE: ..." in err. */
int samples_settings_load(samples_settings *s, const app_config *cfg, char *err, size_t errsz);

int sample_chat_register(app_server *srv, const samples_settings *s);
int sample_auction_register(app_server *srv, const samples_settings *s);
int sample_slideshow_register(app_server *srv, const samples_settings *s);

/* Unix time in ms. */
int64_t samples_wall_ms(void);
/* Opens (creating if needed) object `name` in `room`, server-only when
 * asked, in a room that is in memory (the room of an object the sample
 * holds open, or one opened with so_engine_object_open_async).  NULL with
 * a log line on failure. */
so_object *samples_open(app_server *srv, const char *room, const char *name, bool persistent,
                        bool server_only);

/* Connects waiting for an instance's objects (their room may have to be
 * loaded first: so_engine_object_open_async).  on_connect calls
 * samples_wait to leave c pending; once the objects are open,
 * samples_wait_done accepts (ok) or rejects ("The WHAT is not
 * available.") every waiting connect, in arrival order.  A connection
 * that goes away while waiting is forgotten in on_disconnect. */
typedef struct samples_waiting {
    app_conn **c;
    size_t n, cap;
} samples_waiting;
void samples_wait(samples_waiting *w, app_conn *c, app_verdict *v, const char *what);
void samples_wait_done(samples_waiting *w, bool ok, const char *what);
void samples_wait_forget(samples_waiting *w, app_conn *c);
void samples_wait_cleanup(samples_waiting *w);
/* Delivers fx through the glue of srv. */
void samples_deliver(app_server *srv, so_effects *fx);
/* An AMF string of s (owned). */
amf_value *samples_str(const char *s);

/* Instances live while connections use them.  on_connect ends with
 * samples_accept(): with p (the connection's state, borrowed) it counts
 * the connection (++*nconns) and keeps p in its APP_SLOT_APP; with p NULL
 * it refuses the connect with "The WHAT is not available.".
 * on_disconnect: samples_detach() gives p back (NULL when none) and
 * clears the slot; the caller lowers the count and frees the instance at
 * 0. */
void samples_accept(app_conn *c, app_verdict *v, void *p, size_t *nconns, const char *what);
void *samples_detach(app_conn *c);

/* ---- writes every node of a cluster may be making at once ----
 *
 * A sample's server code decides a write from what it reads (is the
 * auction still open? which message id is next?).  On one node that is
 * safe: everything runs on the loop thread.  In a clustered application
 * (docs/cluster.md) another node may have written the object meanwhile,
 * so samples_cas works the changes out from the object as this node has
 * it (build), writes them with a compare-and-set on the version it read
 * (so_object_write), and when another node wrote first, waits until this
 * node has applied that version and runs build again: of two nodes acting
 * on the same state, one writes and the other decides again on the new
 * one.  Without a cluster the write is applied at once and done runs
 * before samples_cas returns, exactly as a plain so_object_apply.
 *
 * build(ud, o, ch) fills ch from o (borrowed) and returns 0 to write it,
 * SAMPLES_SKIP when there is nothing to write (done gets SAMPLES_SKIP),
 * or a negative code (done gets it).  done(ud, status, o) runs exactly
 * once: 0 = written (a clustered object: stored in Redis and applied
 * here; else applied, durable with the next batch: app_so_when_durable),
 * SAMPLES_SKIP, SH_EIO (the cluster could not take it, did not confirm it
 * or this node did not catch up within SAMPLES_CAS_WAIT_MS), SH_ESTATE
 * (the server stops), or build's or so_object_write's error.  o is the
 * object (a handle kept by the write; borrowed for the call).  Returns 0,
 * or SH_ENOMEM and then done never runs. */
#define SAMPLES_SKIP 2 /* not SO_WRITE_PENDING */
#define SAMPLES_CHANGES_MAX 64
#define SAMPLES_CAS_WAIT_MS 5000
#define SAMPLES_CAS_TRIES 50
typedef struct samples_changes {
    so_change ch[SAMPLES_CHANGES_MAX];  /* keys and values owned */
    size_t n;
} samples_changes;
/* Adds key (copied) set to v (taken, also on failure; NULL = remove).
 * SH_ELIMIT when ch is full, SH_ENOMEM. */
int samples_changes_add(samples_changes *ch, const char *key, size_t klen, amf_value *v);
typedef int (*samples_build_fn)(void *ud, so_object *o, samples_changes *ch);
typedef void (*samples_done_fn)(void *ud, int status, so_object *o);
int samples_cas(app_server *srv, const char *room, so_object *o, samples_build_fn build,
                samples_done_fn done, void *ud);

/* Polls run every SAMPLES_POLL_MS while the server runs (samples whose
 * state may change on another node of a cluster look at it there). */
#define SAMPLES_POLL_MS 200
int samples_on_poll(void (*fn)(void *ud), void *ud);

#endif
