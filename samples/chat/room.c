/* room.c - the `chat` sample: a group chat room per instance.
 *
 * The room is the persistent shared object `room` of each instance
 * (room "chat/INSTANCE"), written by the server only: one slot per
 * message, key = the message id in decimal, value {id, from, text, ts}.
 * Only the last chat_room_size messages are kept: the slot of an older
 * message is removed in the same update that adds a new one, so a client
 * sees one version per post.  Clients post with the method
 * room.post(text); the server sets `from` (the connection's user name)
 * and `ts` (Unix ms), so nobody can post as someone else, and answers
 * _result {id, ts} or _error Room.Denied / Room.BadRequest / Room.TooLong.
 *
 * Presence: the `presence` object of app/chat (key = user, value
 * {since, connections}).  app/chat keeps it for applications configured
 * with presence = true; for the chat sample without such a section this
 * file keeps the same object in the same form, so it is always there.
 *
 * Private messages: chat.sendPrivate / chat.onPrivate / chat.ack are
 * server-wide methods of app/chat, so the chat sample has them as is.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "samples_int.h"
#include "sh_log.h"

#define ROOM_OBJECT "room"
#define PRESENCE_OBJECT "presence"

typedef struct room_inst {
    struct room_inst *next;
    char room[2 * APP_NAME_MAX + 2];
    so_object *obj;          /* `room`, persistent, server-only */
    so_object *pres;         /* `presence` while we keep it, else NULL */
    double next_id;
} room_inst;

typedef struct chat_sample {
    app_server *srv;
    const samples_settings *s;
    app_app *app;
    room_inst *rooms;
    so_effects fx;
} chat_sample;

static room_inst *inst_get(chat_sample *cs, const char *app, const char *instance)
{
    char room[2 * APP_NAME_MAX + 2];
    snprintf(room, sizeof(room), "%s/%s", app, instance);
    for (room_inst *r = cs->rooms; r; r = r->next)
        if (!strcmp(r->room, room))
            return r;
    so_object *o = samples_open(cs->srv, room, ROOM_OBJECT, true, true);
    if (!o)
        return NULL;
    room_inst *r = calloc(1, sizeof(*r));
    if (!r) {
        so_engine_object_close(app_so_engine(app_so_glue_of(cs->srv)), o);
        return NULL;
    }
    snprintf(r->room, sizeof(r->room), "%s", room);
    r->obj = o;
    /* Ids go on from the stored history after a restart. */
    size_t it = 0;
    const char *k;
    size_t kl;
    amf_value *v;
    r->next_id = 1;
    while (so_object_slot_next(o, &it, &k, &kl, &v)) {
        double id = strtod(k, NULL);
        if (id >= r->next_id)
            r->next_id = id + 1;
    }
    r->next = cs->rooms;
    cs->rooms = r;
    return r;
}

/* ---- room.post ---- */

static int method_post(app_conn *c, const rtmp_cmd *cmd, void *ud)
{
    chat_sample *cs = ud;
    const char *user = app_conn_user(c);
    size_t tlen = 0;
    const char *text =
        cmd->nargs >= 1 && amf_type_of(cmd->args[0]) == AMF_STRING ? amf_as_string(cmd->args[0], &tlen)
                                                                   : NULL;
    if (!*user)
        return app_conn_reply_error(c, cmd->txid, "Room.Denied",
                                    "Connect with a user name to post.");
    if (!text || tlen == 0 || memchr(text, 0, tlen))
        return app_conn_reply_error(c, cmd->txid, "Room.BadRequest",
                                    "room.post takes one non-empty text.");
    if (tlen > cs->s->chat_max_text) {
        char d[96];
        snprintf(d, sizeof(d), "Text longer than %u bytes.", cs->s->chat_max_text);
        return app_conn_reply_error(c, cmd->txid, "Room.TooLong", d);
    }
    room_inst *r = inst_get(cs, app_conn_app_name(c), app_conn_instance(c));
    if (!r)
        return app_conn_reply_error(c, cmd->txid, "Room.Unavailable", "The room cannot be opened.");
    so_engine *e = app_so_engine(app_so_glue_of(cs->srv));
    double id = r->next_id++;
    double ts = (double)samples_wall_ms();
    char key[32];
    snprintf(key, sizeof(key), "%.0f", id);
    amf_value *m = amf_object_new(NULL);
    if (!m)
        return SH_ENOMEM;
    amf_object_set_cstr(m, "id", amf_number(id));
    amf_object_set_cstr(m, "from", samples_str(user));
    amf_object_set_cstr(m, "text", amf_string(text, tlen));
    amf_object_set_cstr(m, "ts", amf_number(ts));
    /* One update: the new message and the removal of those past the size. */
    so_object_lock(e, r->obj);
    int rc = so_object_set(e, r->obj, key, strlen(key), m, &cs->fx);
    amf_unref(m);
    double oldest = id - cs->s->chat_room_size;
    size_t it = 0;
    const char *k;
    size_t kl;
    amf_value *v;
    while (rc == 0 && so_object_slot_next(r->obj, &it, &k, &kl, &v))
        if (strtod(k, NULL) <= oldest)
            rc = so_object_remove(e, r->obj, k, kl, &cs->fx);
    int urc = so_object_unlock(e, r->obj, &cs->fx);
    if (rc == 0)
        rc = urc;
    samples_deliver(cs->srv, &cs->fx);
    if (rc < 0) {
        SH_LOG(SH_LOG_WARN, "conn=%llu chat sample: post refused: %s",
               (unsigned long long)app_conn_id(c), sh_strerror(rc));
        return app_conn_reply_error(c, cmd->txid, "Room.Failed", "The message was not stored.");
    }
    amf_value *res = amf_object_new(NULL);
    if (!res)
        return SH_ENOMEM;
    amf_object_set_cstr(res, "id", amf_number(id));
    amf_object_set_cstr(res, "ts", amf_number(ts));
    rc = app_conn_reply_result(c, cmd->txid, res);
    amf_unref(res);
    return rc;
}

/* ---- presence (when app/chat does not keep it for us) ---- */

static bool we_keep_presence(chat_sample *cs, const app_conn *c)
{
    if (app_conn_app(c) != cs->app || !*app_conn_user(c))
        return false;
    const app_app_config *ac = app_conn_app_config(c);
    return !(ac && ac->presence);
}

static void presence_step(chat_sample *cs, app_conn *c, int delta)
{
    room_inst *r = inst_get(cs, app_conn_app_name(c), app_conn_instance(c));
    so_engine *e = app_so_engine(app_so_glue_of(cs->srv));
    if (!r || !e)
        return;
    if (!r->pres) {
        if (delta < 0)
            return;
        r->pres = samples_open(cs->srv, r->room, PRESENCE_OBJECT, false, true);
        if (!r->pres)
            return;
    }
    const char *user = app_conn_user(c);
    size_t ul = strlen(user);
    const amf_value *old = so_object_get(r->pres, user, ul);
    const amf_value *on = old ? amf_object_get(old, "connections") : NULL;
    const amf_value *os = old ? amf_object_get(old, "since") : NULL;
    double n = (on ? amf_as_number(on) : 0) + delta;
    int rc;
    if (!(n > 0)) {
        rc = so_object_remove(e, r->pres, user, ul, &cs->fx);
    } else {
        amf_value *v = amf_object_new(NULL);
        if (!v)
            return;
        amf_object_set_cstr(v, "since",
                            amf_number(os ? amf_as_number(os) : (double)samples_wall_ms()));
        amf_object_set_cstr(v, "connections", amf_number(n));
        rc = so_object_set(e, r->pres, user, ul, v, &cs->fx);
        amf_unref(v);
    }
    if (rc < 0)
        SH_LOG(SH_LOG_WARN, "conn=%llu chat sample: presence: %s",
               (unsigned long long)app_conn_id(c), sh_strerror(rc));
    samples_deliver(cs->srv, &cs->fx);
    if (so_object_slot_count(r->pres) == 0) {
        so_engine_object_close(e, r->pres);
        r->pres = NULL;
    }
}

static void obs_connect(app_conn *c, const app_connect_info *info, void *ud)
{
    (void)info;
    chat_sample *cs = ud;
    if (we_keep_presence(cs, c))
        presence_step(cs, c, +1);
}

static void obs_disconnect(app_conn *c, void *ud)
{
    chat_sample *cs = ud;
    if (we_keep_presence(cs, c))
        presence_step(cs, c, -1);
}

/* ---- application ---- */

static void on_connect(app_app *a, app_conn *c, const app_connect_info *info, app_verdict *v,
                       void *ud)
{
    (void)a;
    (void)c;
    chat_sample *cs = ud;
    /* Open `room` now: it must be server-only before any client uses it. */
    if (!inst_get(cs, info->app, info->instance)) {
        v->reject = true;
        snprintf(v->description, sizeof(v->description), "The chat room is not available.");
    }
}

static void on_free(app_app *a, void *ud)
{
    (void)a;
    chat_sample *cs = ud;
    while (cs->rooms) {
        room_inst *r = cs->rooms;
        cs->rooms = r->next;
        free(r); /* the engine was freed before the server: no close */
    }
    so_effects_cleanup(&cs->fx);
    free(cs);
}

int sample_chat_register(app_server *srv, const samples_settings *s)
{
    chat_sample *cs = calloc(1, sizeof(*cs));
    if (!cs)
        return SH_ENOMEM;
    cs->srv = srv;
    cs->s = s;
    so_effects_init(&cs->fx);
    app_app_ops ops = {.on_connect = on_connect, .on_free = on_free};
    cs->app = app_server_add_app(srv, "chat", &ops, cs);
    if (!cs->app) {
        so_effects_cleanup(&cs->fx);
        free(cs);
        return SH_EEXIST;
    }
    app_observer obs = {.on_connect = obs_connect, .on_disconnect = obs_disconnect};
    int rc = app_method_register(srv, cs->app, "room.post", method_post, cs);
    if (rc == 0)
        rc = app_server_add_observer(srv, &obs, cs);
    return rc;
}
