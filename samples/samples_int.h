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

#endif
