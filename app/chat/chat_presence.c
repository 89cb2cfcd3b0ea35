/* chat_presence.c - the `presence` shared object of each instance.
 *
 * One temporary, server-only object named "presence" per room
 * ("APP/INSTANCE"), opened through the shared-object glue's engine when
 * the first user of the room comes online and closed (it then vanishes
 * once no client uses it) when the last one leaves.  Slot key = user
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

typedef struct presence_room {
    struct presence_room *next;
    char *room;            /* owned "APP/INSTANCE" */
    so_object *obj;        /* handle keeps the temporary object alive */
} presence_room;

struct chat_presence {
    app_server *srv;
    presence_room *rooms;
    so_effects fx;
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

static presence_room *room_get(chat_presence *p, so_engine *e, const char *room, bool create)
{
    for (presence_room *r = p->rooms; r; r = r->next)
        if (strcmp(r->room, room) == 0)
            return r;
    if (!create)
        return NULL;
    presence_room *r = calloc(1, sizeof(*r));
    if (!r || !(r->room = strdup(room))) {
        free(r);
        return NULL;
    }
    int err = 0;
    r->obj = so_engine_object_open(e, room, PRESENCE_NAME, false, &err);
    if (!r->obj) {
        SH_LOG(SH_LOG_WARN, "presence: cannot open %s in %s: %s", PRESENCE_NAME, room,
               sh_strerror(err));
        free(r->room);
        free(r);
        return NULL;
    }
    so_object_set_server_only(r->obj, true);
    r->next = p->rooms;
    p->rooms = r;
    return r;
}

static void room_drop(chat_presence *p, so_engine *e, presence_room *r)
{
    for (presence_room **pp = &p->rooms; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    so_engine_object_close(e, r->obj);
    free(r->room);
    free(r);
}

void chat_presence_update(chat_presence *p, app_conn *c, const char *user, size_t count,
                          int64_t now_ms)
{
    app_so_glue *g = p ? app_so_glue_of(p->srv) : NULL;
    so_engine *e = app_so_engine(g);
    if (!e)
        return;
    char room[2 * APP_NAME_MAX + 2];
    app_so_room_of(c, room, sizeof(room));
    presence_room *r = room_get(p, e, room, count > 0);
    if (!r)
        return;
    size_t klen = strlen(user);
    int rc;
    if (count == 0) {
        rc = so_object_remove(e, r->obj, user, klen, &p->fx);
    } else {
        double since = (double)now_ms;
        const amf_value *old = so_object_get(r->obj, user, klen);
        const amf_value *os = old ? amf_object_get(old, "since") : NULL;
        if (os && amf_type_of(os) == AMF_NUMBER)
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
        SH_LOG(SH_LOG_WARN, "conn=%llu presence: cannot update %s in %s: %s",
               (unsigned long long)app_conn_id(c), user, room, sh_strerror(rc));
    app_so_deliver(g, &p->fx);
    if (so_object_slot_count(r->obj) == 0)
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
        if (e)
            so_engine_object_close(e, r->obj);
        free(r->room);
        free(r);
    }
    so_effects_cleanup(&p->fx);
    free(p);
}
