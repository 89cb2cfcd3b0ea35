/* chat_presence.c - the `presence` shared object of each instance.
 *
 * One temporary, server-only object named "presence" per room
 * ("APP/INSTANCE"), opened through the shared-object glue's engine when
 * the first user of the room comes online and closed (it then vanishes
 * once no client uses it) when the last one leaves.  The open waits for
 * the room's load when the room is not in memory
 * (so_engine_object_open_async); the counts that change meanwhile are
 * kept and applied in order once it is open, before any client's message
 * that came later, so the object is server-only first.  Slot key = user
 * name, value {since: Unix ms of the first connection in this instance,
 * connections: live connections of the user in this instance}.  Each
 * update is one version; its effects go out through app_so_deliver (one
 * encoded buffer for every subscriber).
 */
#include <stdlib.h>
#include <string.h>

#include "chat_internal.h"
#include "sh_err.h"
#include "sh_log.h"
#include "so_glue.h"

#define PRESENCE_NAME "presence"

/* A change of one user's count, kept while the room's object is being
 * opened (its room is loading), applied in order once it is open. */
typedef struct presence_change {
    struct presence_change *next;
    char *user;            /* owned */
    size_t count;
    int64_t now_ms;
    bool exact;            /* now_ms is the slot's `since` (clustered) */
} presence_change;

typedef struct presence_room {
    struct presence_room *next;
    struct chat_presence *p;
    char *room;            /* owned "APP/INSTANCE" */
    so_object *obj;        /* handle keeps the temporary object alive; NULL while opening */
    presence_change *pend, **pend_tail; /* while opening */
} presence_room;

struct chat_presence {
    app_server *srv;
    presence_room *rooms;
    so_effects fx;
    bool held;             /* fx holds effects made by on_open (see there) */
};

chat_presence *chat_presence_new(app_server *srv)
{
    chat_presence *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->srv = srv;
    so_effects_init(&p->fx);
    return p;
}

static void room_free(presence_room *r)
{
    while (r->pend) {
        presence_change *x = r->pend;
        r->pend = x->next;
        free(x->user);
        free(x);
    }
    free(r->room);
    free(r);
}

static void room_unlink(chat_presence *p, presence_room *r)
{
    for (presence_room **pp = &p->rooms; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
}

static void room_drop(chat_presence *p, so_engine *e, presence_room *r)
{
    room_unlink(p, r);
    so_engine_object_close(e, r->obj);
    room_free(r);
}

/* Sets or removes the slot of user in r's object (open). */
static void apply(chat_presence *p, so_engine *e, presence_room *r, const char *user,
                  size_t count, int64_t now_ms, bool exact)
{
    size_t klen = strlen(user);
    int rc;
    if (count == 0) {
        rc = so_object_remove(e, r->obj, user, klen, &p->fx);
    } else {
        double since = (double)now_ms;
        const amf_value *old = so_object_get(r->obj, user, klen);
        const amf_value *os = old ? amf_object_get(old, "since") : NULL;
        if (!exact && os && amf_type_of(os) == AMF_NUMBER)
            since = amf_as_number(os);
        amf_value *v = amf_object_new(NULL);
        if (!v)
            return;
        amf_object_set_cstr(v, "since", amf_number(since));
        amf_object_set_cstr(v, "connections", amf_number((double)count));
        rc = so_object_set(e, r->obj, user, klen, v, &p->fx);
        amf_unref(v);
    }
    if (rc < 0)
        SH_LOG(SH_LOG_WARN, "presence: cannot update %s in %s: %s", user, r->room,
               sh_strerror(rc));
}

/* The room's object is open (or could not be): the changes made meanwhile
 * are applied in order. */
static void on_open(void *ud, so_object *o, int err)
{
    presence_room *r = ud;
    chat_presence *p = r->p;
    app_so_glue *g = app_so_glue_of(p->srv);
    so_engine *e = app_so_engine(g);
    if (!o) {
        SH_LOG(SH_LOG_WARN, "presence: cannot open %s in %s: %s", PRESENCE_NAME, r->room,
               sh_strerror(err));
        room_unlink(p, r);
        room_free(r);
        return;
    }
    r->obj = o;
    so_object_set_server_only(o, true);
    while (r->pend) {
        presence_change *x = r->pend;
        r->pend = x->next;
        apply(p, e, r, x->user, x->count, x->now_ms, x->exact);
        free(x->user);
        free(x);
    }
    r->pend_tail = &r->pend;
    /* on_open may run inside the engine's replay of a room that was
     * loading, after a client's Use that the replay answered into the
     * glue's own effects, delivered once the replay is over: delivering
     * ours now would put these changes before that client's UseSuccess and
     * Clear, which would then wipe them.  They go out with the next
     * delivery or chat_presence_flush (the same loop turn). */
    p->held = true;
    if (so_object_slot_count(o) == 0)
        room_drop(p, e, r);
}

void chat_presence_flush(chat_presence *p)
{
    if (!p || !p->held)
        return;
    p->held = false;
    app_so_deliver(app_so_glue_of(p->srv), &p->fx);
}

static presence_room *room_find(chat_presence *p, const char *room)
{
    for (presence_room *r = p->rooms; r; r = r->next)
        if (strcmp(r->room, room) == 0)
            return r;
    return NULL;
}

static int pend_add(presence_room *r, const char *user, size_t count, int64_t now_ms,
                    bool exact)
{
    presence_change *x = calloc(1, sizeof(*x));
    if (!x || !(x->user = strdup(user))) {
        free(x);
        return SH_ENOMEM;
    }
    x->count = count;
    x->now_ms = now_ms;
    x->exact = exact;
    *r->pend_tail = x;
    r->pend_tail = &x->next;
    return 0;
}

/* A room entry for room, its object opened with the first change waiting
 * in it (applied by on_open, maybe before this returns). */
static void room_open(chat_presence *p, so_engine *e, const char *room, const char *user,
                      size_t count, int64_t now_ms, bool exact)
{
    presence_room *r = calloc(1, sizeof(*r));
    if (!r || !(r->room = strdup(room))) {
        free(r);
        SH_LOG(SH_LOG_WARN, "presence: out of memory for %s", room);
        return;
    }
    r->p = p;
    r->pend_tail = &r->pend;
    if (pend_add(r, user, count, now_ms, exact) < 0) {
        room_free(r);
        SH_LOG(SH_LOG_WARN, "presence: out of memory for %s", room);
        return;
    }
    r->next = p->rooms;
    p->rooms = r;
    int rc = so_engine_object_open_async(e, room, PRESENCE_NAME, false, on_open, r);
    if (rc < 0) {
        SH_LOG(SH_LOG_WARN, "presence: cannot open %s in %s: %s", PRESENCE_NAME, room,
               sh_strerror(rc));
        room_unlink(p, r);
        room_free(r);
    }
}

static void room_update(chat_presence *p, const char *room, const char *user, size_t count,
                        int64_t now_ms, bool exact)
{
    app_so_glue *g = p ? app_so_glue_of(p->srv) : NULL;
    so_engine *e = app_so_engine(g);
    if (!e)
        return;
    presence_room *r = room_find(p, room);
    if (!r) {
        if (count > 0)
            room_open(p, e, room, user, count, now_ms, exact);
        return;
    }
    if (!r->obj) {
        if (pend_add(r, user, count, now_ms, exact) < 0)
            SH_LOG(SH_LOG_WARN, "presence: out of memory for %s", room);
        return;
    }
    apply(p, e, r, user, count, now_ms, exact);
    p->held = false;
    app_so_deliver(g, &p->fx);
    if (so_object_slot_count(r->obj) == 0)
        room_drop(p, e, r);
}

void chat_presence_update(chat_presence *p, app_conn *c, const char *user, size_t count,
                          int64_t now_ms)
{
    char room[2 * APP_NAME_MAX + 2];
    app_so_room_of(c, room, sizeof(room));
    room_update(p, room, user, count, now_ms, false);
}

void chat_presence_set(chat_presence *p, const char *room, const char *user, size_t count,
                       int64_t since_ms)
{
    room_update(p, room, user, count, since_ms, true);
}

void chat_presence_retain(chat_presence *p, const char *room, char *const *users, size_t n)
{
    app_so_glue *g = p ? app_so_glue_of(p->srv) : NULL;
    so_engine *e = app_so_engine(g);
    presence_room *r = e ? room_find(p, room) : NULL;
    if (!r || !r->obj)
        return;
    /* names first (removing while walking the slots is not allowed) */
    size_t cap = so_object_slot_count(r->obj), k = 0;
    char **gone = cap ? calloc(cap, sizeof(*gone)) : NULL;
    const char *key;
    size_t klen, it = 0;
    amf_value *v;
    while (gone && k < cap && so_object_slot_next(r->obj, &it, &key, &klen, &v)) {
        bool keep = false;
        for (size_t i = 0; i < n && !keep; i++)
            keep = strlen(users[i]) == klen && memcmp(users[i], key, klen) == 0;
        if (!keep && (gone[k] = malloc(klen + 1)) != NULL) {
            memcpy(gone[k], key, klen);
            gone[k++][klen] = '\0';
        }
    }
    for (size_t i = 0; i < k; i++) {
        room_update(p, room, gone[i], 0, 0, true);
        free(gone[i]);
    }
    free(gone);
}

void chat_presence_drop(chat_presence *p, const char *room)
{
    app_so_glue *g = p ? app_so_glue_of(p->srv) : NULL;
    so_engine *e = app_so_engine(g);
    presence_room *r = e ? room_find(p, room) : NULL;
    if (r)
        chat_presence_retain(p, room, NULL, 0);
    r = e ? room_find(p, room) : NULL;
    if (r && r->obj)
        room_drop(p, e, r);
}

void chat_presence_free(chat_presence *p)
{
    if (!p)
        return;
    app_so_glue *g = app_so_glue_of(p->srv);
    so_engine *e = app_so_engine(g);
    while (p->rooms) {
        presence_room *r = p->rooms;
        p->rooms = r->next;
        if (e && r->obj)
            so_engine_object_close(e, r->obj);
        else if (e)
            so_engine_object_open_cancel(e, on_open, r);
        room_free(r);
    }
    so_effects_cleanup(&p->fx);
    free(p);
}
