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
 * with presence = true, and for this one whatever its section says
 * (app_app_keep_presence), so it is always there, on one node or over a
 * cluster (docs/cluster-chat.md).
 *
 * Lifetime: an instance (its room_inst and the server's handles on its
 * objects) exists while at least one connection of it is open or
 * waiting.  It is made in on_connect, which opens `room` (the room may
 * have to be loaded from the store first: so_engine_object_open_async)
 * and leaves the connect pending until it is open, so `room` is
 * server-only before the client can use any object and next_id is known
 * before its first post.  It is freed with the handles closed in
 * on_disconnect of its last connection, so the engine can unload the room
 * (so_engine_unload_idle).  The next connect makes it again from the
 * store: next_id goes on from the highest stored message id.
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

typedef struct chat_sample chat_sample;

typedef struct room_inst {
    struct room_inst *next;
    chat_sample *cs;
    char room[2 * APP_NAME_MAX + 2];
    so_object *obj;          /* `room`, persistent, server-only; NULL until open */
    double next_id;
    size_t nconns;           /* accepted or waiting connections of the instance */
    bool opening;            /* `room` is being opened */
    samples_waiting waiting; /* connects waiting for `room` */
} room_inst;

/* Per connection (APP_SLOT_APP), from on_connect to on_disconnect. */
typedef struct room_conn {
    room_inst *r;            /* borrowed: lives while nconns > 0 */
} room_conn;

/* A room.post on its way (samples_cas). */
typedef struct post_op {
    struct post_op *next;    /* chat_sample.posts */
    chat_sample *cs;
    app_conn *c;             /* NULL once it is gone */
    double txid;
    amf_value *from, *text;  /* owned */
    double id, ts;           /* what the write sets */
    double floor;            /* the instance's next id when it was asked */
    char room[2 * APP_NAME_MAX + 2];
} post_op;

struct chat_sample {
    app_server *srv;
    const samples_settings *s;
    app_app *app;
    room_inst *rooms;
    post_op *posts;
    so_effects fx;
};

static void inst_free(chat_sample *cs, room_inst *r);

/* `room` is open (o), or could not be: the waiting connects are answered. */
static void room_opened(void *ud, so_object *o, int err)
{
    room_inst *r = ud;
    r->opening = false;
    if (o) {
        so_object_set_server_only(o, true);
        r->obj = o;
        /* Ids go on from the stored history (after a restart, or when the
         * instance comes back after its last client left). */
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
    } else {
        SH_LOG(SH_LOG_WARN, "chat sample: cannot open %s in %s: %s", ROOM_OBJECT, r->room,
               sh_strerror(err));
    }
    samples_wait_done(&r->waiting, o != NULL, "chat room");
}

/* The instance of app/instance, its `room` opened or being opened. */
static room_inst *inst_get(chat_sample *cs, const char *app, const char *instance)
{
    char room[2 * APP_NAME_MAX + 2];
    snprintf(room, sizeof(room), "%s/%s", app, instance);
    room_inst *r = cs->rooms;
    while (r && strcmp(r->room, room))
        r = r->next;
    if (r && (r->obj || r->opening))
        return r;
    if (!r) {
        if (!(r = calloc(1, sizeof(*r))))
            return NULL;
        r->cs = cs;
        snprintf(r->room, sizeof(r->room), "%s", room);
        r->next = cs->rooms;
        cs->rooms = r;
    }
    /* new, or its last open failed: (again) */
    so_engine *e = app_so_engine(app_so_glue_of(cs->srv));
    r->opening = true;
    int rc = e ? so_engine_object_open_async(e, room, ROOM_OBJECT, true, room_opened, r)
               : SH_ESTATE;
    if (rc < 0) {
        r->opening = false;
        SH_LOG(SH_LOG_WARN, "chat sample: cannot open %s in %s: %s", ROOM_OBJECT, room,
               sh_strerror(rc));
    }
    if (!r->obj && !r->opening) {
        if (r->nconns == 0)
            inst_free(cs, r);
        return NULL;
    }
    return r;
}

/* Unlinks r, closes the server's handles on its objects and frees it. */
static void inst_free(chat_sample *cs, room_inst *r)
{
    for (room_inst **pp = &cs->rooms; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    so_engine *e = app_so_engine(app_so_glue_of(cs->srv));
    if (e) {
        if (r->opening)
            so_engine_object_open_cancel(e, room_opened, r);
        so_engine_object_close(e, r->obj);
    }
    samples_wait_cleanup(&r->waiting);
    free(r);
}

/* ---- room.post ---- */

static void post_free(post_op *op)
{
    for (post_op **pp = &op->cs->posts; *pp; pp = &(*pp)->next)
        if (*pp == op) {
            *pp = op->next;
            break;
        }
    amf_unref(op->from);
    amf_unref(op->text);
    free(op);
}

/* One post, as samples_cas builds it from the room as this node has it:
 * the next id after the highest stored, the new message and the removal
 * of those past the size, as one update.  Two posts on two nodes of a
 * cluster that picked the same id: one is written, the other gets the
 * next id when it is built again. */
static int post_build(void *ud, so_object *o, samples_changes *ch)
{
    post_op *op = ud;
    double top = 0;
    size_t it = 0;
    const char *k;
    size_t kl;
    amf_value *v;
    while (so_object_slot_next(o, &it, &k, &kl, &v)) {
        double id = strtod(k, NULL);
        if (id > top)
            top = id;
    }
    /* never below this node's next id: a removed newest message keeps its id */
    op->id = top + 1 > op->floor ? top + 1 : op->floor;
    char key[32];
    int n = snprintf(key, sizeof(key), "%.0f", op->id);
    amf_value *m = amf_object_new(NULL);
    if (!m)
        return SH_ENOMEM;
    amf_object_set_cstr(m, "id", amf_number(op->id));
    amf_object_set_cstr(m, "from", amf_ref(op->from));
    amf_object_set_cstr(m, "text", amf_ref(op->text));
    amf_object_set_cstr(m, "ts", amf_number(op->ts));
    int rc = samples_changes_add(ch, key, (size_t)n, m);
    double oldest = op->id - op->cs->s->chat_room_size;
    it = 0;
    while (rc == 0 && so_object_slot_next(o, &it, &k, &kl, &v))
        if (strtod(k, NULL) <= oldest && ch->n < SAMPLES_CHANGES_MAX)
            rc = samples_changes_add(ch, k, kl, NULL);
    return rc;
}

static void post_done(void *ud, int status, so_object *o)
{
    (void)o;
    post_op *op = ud;
    app_conn *c = op->c;
    if (status < 0 && status != SH_ESTATE)
        SH_LOG(SH_LOG_WARN, "conn=%llu chat sample: post refused: %s",
               c ? (unsigned long long)app_conn_id(c) : 0ull, sh_strerror(status));
    for (room_inst *r = op->cs->rooms; status == 0 && r; r = r->next)
        if (!strcmp(r->room, op->room) && r->next_id <= op->id)
            r->next_id = op->id + 1;
    amf_value *res = status == 0 && c ? amf_object_new(NULL) : NULL;
    if (res) {
        amf_object_set_cstr(res, "id", amf_number(op->id));
        amf_object_set_cstr(res, "ts", amf_number(op->ts));
        app_conn_reply_result(c, op->txid, res);
        amf_unref(res);
    } else if (c) {
        app_conn_reply_error(c, op->txid, "Room.Failed", "The message was not stored.");
    }
    post_free(op);
}

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
    room_conn *conn = app_conn_get_data(c, APP_SLOT_APP);
    room_inst *r = conn ? conn->r : NULL;
    if (!r)
        return app_conn_reply_error(c, cmd->txid, "Room.Unavailable", "The room cannot be opened.");
    post_op *op = calloc(1, sizeof(*op));
    if (op) {
        op->cs = cs;
        op->c = c;
        op->txid = cmd->txid;
        op->from = samples_str(user);
        op->text = amf_string(text, tlen);
        op->ts = (double)samples_wall_ms();
        op->floor = r->next_id;
        snprintf(op->room, sizeof(op->room), "%s", r->room);
        op->next = cs->posts;
        cs->posts = op;
    }
    if (!op || !op->from || !op->text ||
        samples_cas(cs->srv, r->room, r->obj, post_build, post_done, op) < 0) {
        if (op)
            post_free(op);
        return app_conn_reply_error(c, cmd->txid, "Room.Failed", "The message was not stored.");
    }
    return 0;
}

/* ---- application ---- */

static void on_connect(app_app *a, app_conn *c, const app_connect_info *info, app_verdict *v,
                       void *ud)
{
    (void)a;
    chat_sample *cs = ud;
    /* `room` must be open (server-only) before the client can use any
     * object: the connect waits for it when its room is loading.  From
     * here (accepted or pending) on_disconnect follows for sure. */
    room_inst *r = inst_get(cs, info->app, info->instance);
    room_conn *rc = r ? calloc(1, sizeof(*rc)) : NULL;
    if (rc && r->opening)
        samples_wait(&r->waiting, c, v, "chat room");
    if (rc && !v->reject) {
        rc->r = r;
        samples_accept(c, v, rc, &r->nconns, "chat room");
        return;
    }
    free(rc);
    if (r && r->nconns == 0 && !r->opening)
        inst_free(cs, r);
    samples_accept(c, v, NULL, NULL, "chat room");
}

static void on_disconnect(app_app *a, app_conn *c, const char *reason, void *ud)
{
    (void)a;
    (void)reason;
    chat_sample *cs = ud;
    for (post_op *op = cs->posts; op; op = op->next)
        if (op->c == c)
            op->c = NULL;
    room_conn *rc = samples_detach(c);
    room_inst *r = rc ? rc->r : NULL;
    if (r)
        samples_wait_forget(&r->waiting, c);
    free(rc);
    if (r && --r->nconns == 0)
        inst_free(ud, r); /* the store has it all; the next connect reads it again */
}

static void on_free(app_app *a, void *ud)
{
    (void)a;
    chat_sample *cs = ud;
    while (cs->rooms) {
        room_inst *r = cs->rooms;
        cs->rooms = r->next;
        samples_wait_cleanup(&r->waiting);
        free(r); /* the engine was freed before the server: no close */
    }
    while (cs->posts) /* the cluster normally ended them all */
        post_free(cs->posts);
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
    app_app_ops ops = {.on_connect = on_connect, .on_disconnect = on_disconnect,
                       .on_free = on_free};
    cs->app = app_server_add_app(srv, "chat", &ops, cs);
    if (!cs->app) {
        so_effects_cleanup(&cs->fx);
        free(cs);
        return SH_EEXIST;
    }
    app_app_keep_presence(cs->app);
    int rc = app_method_register(srv, cs->app, "room.post", method_post, cs);
    return rc;
}
