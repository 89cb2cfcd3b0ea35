/* slideshow.c - the `slideshow` sample: one presenter, many viewers.
 *
 * Objects (room "slideshow/INSTANCE", persistent):
 *   show   {slide, step, pointer}: written by the presenter with ordinary
 *          shared-object changes; viewers may read it but not write it:
 *          their changes get Status SharedObject.NoWriteAccess and the
 *          current value back (PROTOCOL.md rule 4), so their copy is
 *          restored at once.
 *   stage  {presenter}: who presents; written by the server only.
 * A viewer who joins late gets the current slide with its Use (rule 1).
 *
 * Who presents: the [slideshow] presenter setting names the user; when it
 * is empty, the first user to connect to an instance with no presenter
 * becomes it.  The presenter hands over with the method
 * slideshow.handoff(user) -> _result {presenter} or _error
 * Slideshow.Denied (caller is not the presenter) / Slideshow.BadRequest.
 *
 * How writes are limited: each connection's shared-object write access
 * (so_client_set_access): the presenter's connections may write "show",
 * every other connection nothing.  A hand-off updates the access of every
 * connection of the instance at once.
 *
 * Lifetime: an instance (ss_inst and the server's handles on `show` and
 * `stage`) exists while at least one connection of it is open or
 * waiting: made in on_connect, which opens both objects (the room may
 * have to be loaded first) and leaves the connect pending until they are
 * open, so `stage` is server-only before any client uses it; freed with
 * its handles closed in on_disconnect of its last connection, so the
 * engine can unload the room.  The next connect reads both objects again
 * from the store: the current slide and the presenter are what they were.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "samples_int.h"
#include "sh_log.h"

#define SS_APP "slideshow"
#define SS_SHOW "show"
#define SS_STAGE "stage"
#define SS_PRESENTER_WRITE "show"   /* access list: the show object only */
#define SS_VIEWER_WRITE ";"         /* access list: nothing */

typedef struct ss_conn {
    struct ss_conn *next;
    app_conn *c;
} ss_conn;

typedef struct ss_inst {
    struct ss_inst *next;
    char room[2 * APP_NAME_MAX + 2];
    so_object *show, *stage;
    ss_conn *conns;          /* connections past obs_connect (write access) */
    size_t nconns;           /* accepted or waiting connections (on_connect) */
    struct slideshow *ss;
    bool opening;            /* `show` is being opened */
    samples_waiting waiting; /* connects waiting for the objects */
    char seen[SAMPLES_NAME_MAX]; /* the presenter the access was last set for */
} ss_inst;

/* A change of presenter on its way (samples_cas). */
typedef struct ss_op {
    struct ss_op *next;      /* slideshow.ops */
    struct slideshow *ss;
    app_conn *c;             /* the caller (handoff); NULL once it is gone */
    /* the first user's connection, not read while the cluster decides
     * whether it presents (its first writes need the access); NULL once
     * it is gone */
    app_conn *waiting;
    double txid;
    bool handoff;            /* else: the first user to connect */
    char room[2 * APP_NAME_MAX + 2];
    char user[SAMPLES_NAME_MAX];  /* who asks */
    char who[SAMPLES_NAME_MAX];   /* who presents then */
} ss_op;

typedef struct slideshow {
    app_server *srv;
    const samples_settings *s;
    app_app *app;
    ss_inst *insts;
    ss_op *ops;
    so_effects fx;
} slideshow;

static so_engine *engine(slideshow *ss) { return app_so_engine(app_so_glue_of(ss->srv)); }

static const char *presenter_of(ss_inst *in)
{
    const amf_value *v = so_object_get(in->stage, "presenter", 9);
    size_t n;
    const char *s = v && amf_type_of(v) == AMF_STRING ? amf_as_string(v, &n) : NULL;
    return s ? s : "";
}

static void set_presenter(slideshow *ss, ss_inst *in, const char *user)
{
    amf_value *v = samples_str(user);
    if (v && so_object_set(engine(ss), in->stage, "presenter", 9, v, &ss->fx) < 0)
        SH_LOG(SH_LOG_WARN, "slideshow: cannot set the presenter of %s", in->room);
    amf_unref(v);
    samples_deliver(ss->srv, &ss->fx);
}

/* `show` is open (its room is in memory now, so `stage` opens at once),
 * or could not be: the waiting connects are answered. */
static void show_opened(void *ud, so_object *show, int err)
{
    ss_inst *in = ud;
    slideshow *ss = in->ss;
    in->opening = false;
    so_object *stage = show ? samples_open(ss->srv, in->room, SS_STAGE, true, true) : NULL;
    if (!show)
        SH_LOG(SH_LOG_WARN, "slideshow: cannot open %s in %s: %s", SS_SHOW, in->room,
               sh_strerror(err));
    if (show && !stage)
        so_engine_object_close(engine(ss), show);
    if (stage) {
        in->show = show;
        in->stage = stage;
        if (ss->s->slideshow_presenter[0] &&
            strcmp(presenter_of(in), ss->s->slideshow_presenter))
            set_presenter(ss, in, ss->s->slideshow_presenter);
    }
    samples_wait_done(&in->waiting, stage != NULL, "slideshow");
}

static void inst_free(slideshow *ss, ss_inst *in);

/* The instance of app/instance, its objects open or being opened. */
static ss_inst *inst_get(slideshow *ss, const char *app, const char *instance)
{
    char room[2 * APP_NAME_MAX + 2];
    snprintf(room, sizeof(room), "%s/%s", app, instance);
    ss_inst *in = ss->insts;
    while (in && strcmp(in->room, room))
        in = in->next;
    if (in && (in->stage || in->opening))
        return in;
    if (!in) {
        if (!(in = calloc(1, sizeof(*in))))
            return NULL;
        in->ss = ss;
        snprintf(in->room, sizeof(in->room), "%s", room);
        in->next = ss->insts;
        ss->insts = in;
    }
    /* new, or its last open failed: (again) */
    so_engine *e = engine(ss);
    in->opening = true;
    int rc = e ? so_engine_object_open_async(e, room, SS_SHOW, true, show_opened, in)
               : SH_ESTATE;
    if (rc < 0) {
        in->opening = false;
        SH_LOG(SH_LOG_WARN, "slideshow: cannot open %s in %s: %s", SS_SHOW, room,
               sh_strerror(rc));
    }
    if (!in->stage && !in->opening) {
        if (in->nconns == 0)
            inst_free(ss, in);
        return NULL;
    }
    return in;
}

/* Unlinks in, closes the server's handles on its objects and frees it. */
static void inst_free(slideshow *ss, ss_inst *in)
{
    for (ss_inst **pp = &ss->insts; *pp; pp = &(*pp)->next)
        if (*pp == in) {
            *pp = in->next;
            break;
        }
    so_engine *e = engine(ss);
    if (e) {
        if (in->opening)
            so_engine_object_open_cancel(e, show_opened, in);
        so_engine_object_close(e, in->show);
        so_engine_object_close(e, in->stage);
    }
    samples_wait_cleanup(&in->waiting);
    while (in->conns) {
        ss_conn *x = in->conns;
        in->conns = x->next;
        free(x);
    }
    free(in);
}

/* Write access of one connection from the current presenter. */
static void apply_access(slideshow *ss, ss_inst *in, app_conn *c)
{
    app_so_glue *g = app_so_glue_of(ss->srv);
    int err = 0;
    so_client *sc = app_so_client_of(g, c, &err);
    if (!sc) {
        SH_LOG(SH_LOG_WARN, "conn=%llu slideshow: no shared-object client: %s",
               (unsigned long long)app_conn_id(c), sh_strerror(err));
        return;
    }
    const char *u = app_conn_user(c);
    bool presenter = *u && !strcmp(u, presenter_of(in));
    so_client_set_access(engine(ss), sc, NULL, presenter ? SS_PRESENTER_WRITE : SS_VIEWER_WRITE);
}

/* The instance of one of our connections (set in on_connect). */
static ss_inst *inst_of(const app_conn *c) { return app_conn_get_data(c, APP_SLOT_APP); }

/* Write access of every connection of the instance, for the presenter
 * the stage names now. */
static void apply_access_all(slideshow *ss, ss_inst *in)
{
    snprintf(in->seen, sizeof(in->seen), "%s", presenter_of(in));
    for (ss_conn *x = in->conns; x; x = x->next)
        apply_access(ss, in, x->c);
}

static ss_inst *inst_by_room(slideshow *ss, const char *room)
{
    for (ss_inst *in = ss->insts; in; in = in->next)
        if (!strcmp(in->room, room) && in->stage)
            return in;
    return NULL;
}

static void op_free(ss_op *op)
{
    for (ss_op **pp = &op->ss->ops; *pp; pp = &(*pp)->next)
        if (*pp == op) {
            *pp = op->next;
            break;
        }
    free(op);
}

/* The presenter, as samples_cas builds it from the stage as this node has
 * it: a hand-off only while the caller still presents, the first user
 * only while nobody does (two first users on two nodes of a cluster: one
 * presents). */
static int presenter_build(void *ud, so_object *o, samples_changes *ch)
{
    ss_op *op = ud;
    const amf_value *v = so_object_get(o, "presenter", 9);
    size_t n;
    const char *cur = v && amf_type_of(v) == AMF_STRING ? amf_as_string(v, &n) : NULL;
    cur = cur ? cur : "";
    if (op->handoff ? strcmp(cur, op->user) != 0 : cur[0] != '\0')
        return SAMPLES_SKIP;
    return samples_changes_add(ch, "presenter", 9, samples_str(op->who));
}

static void presenter_done(void *ud, int status, so_object *o)
{
    (void)o;
    ss_op *op = ud;
    slideshow *ss = op->ss;
    ss_inst *in = inst_by_room(ss, op->room);
    if (in)
        apply_access_all(ss, in);
    char safe_who[SAMPLES_NAME_MAX + 4];
    sh_log_sanitize(safe_who, sizeof(safe_who), op->who, strlen(op->who));
    if (status == 0 && op->handoff)
        SH_LOG(SH_LOG_INFO, "slideshow: %s hands %s over to %s", op->user, op->room, safe_who);
    else if (status == 0)
        SH_LOG(SH_LOG_INFO, "slideshow: %s presents %s (first to connect)", op->who, op->room);
    else if (status < 0 && status != SH_ESTATE)
        SH_LOG(SH_LOG_WARN, "slideshow: cannot set the presenter of %s: %s", op->room,
               sh_strerror(status));
    if (op->waiting)
        app_server_release_input(ss->srv); /* its access is set: read it again */
    app_conn *c = op->c;
    if (c && status == 0) {
        amf_value *res = amf_object_new(NULL);
        if (res)
            amf_object_set_cstr(res, "presenter", samples_str(op->who));
        app_conn_reply_result(c, op->txid, res);
        amf_unref(res);
    } else if (c && status == SAMPLES_SKIP) {
        app_conn_reply_error(c, op->txid, "Slideshow.Denied", "Only the presenter hands over.");
    } else if (c) {
        app_conn_reply_error(c, op->txid, "Slideshow.Failed", "The hand-off was not stored.");
    }
    op_free(op);
}

/* Starts a change of presenter; *pending (may be NULL) gets the op while
 * it waits for the cluster (NULL when it was decided at once). */
static int presenter_change(slideshow *ss, ss_inst *in, app_conn *c, double txid,
                            const char *user, const char *who, ss_op **pending)
{
    if (pending)
        *pending = NULL;
    ss_op *op = calloc(1, sizeof(*op));
    if (!op)
        return SH_ENOMEM;
    op->ss = ss;
    op->c = c;
    op->txid = txid;
    op->handoff = c != NULL;
    snprintf(op->room, sizeof(op->room), "%s", in->room);
    snprintf(op->user, sizeof(op->user), "%s", user);
    snprintf(op->who, sizeof(op->who), "%s", who);
    op->next = ss->ops;
    ss->ops = op;
    int rc = samples_cas(ss->srv, in->room, in->stage, presenter_build, presenter_done, op);
    if (rc < 0) {
        op_free(op);
        return rc;
    }
    for (ss_op *x = ss->ops; x && pending; x = x->next)
        if (x == op)
            *pending = op; /* not done yet */
    return rc;
}

/* Poll (clustered stages only): a hand-off made on another node changes
 * the write access of this node's connections too. */
static void on_poll(void *ud)
{
    slideshow *ss = ud;
    for (ss_inst *in = ss->insts; in; in = in->next)
        if (in->stage && so_object_clustered(in->stage) && strcmp(in->seen, presenter_of(in)))
            apply_access_all(ss, in);
}

/* An update the cluster applied here: a stage naming another presenter
 * gives this node's connections their write access at once (on_poll
 * covers what a room read brings). */
static void on_applied(void *ud, const char *room, const char *name, size_t nlen)
{
    slideshow *ss = ud;
    if (nlen != strlen(SS_STAGE) || memcmp(name, SS_STAGE, nlen) != 0)
        return;
    ss_inst *in = inst_by_room(ss, room);
    if (in && in->stage && strcmp(in->seen, presenter_of(in)))
        apply_access_all(ss, in);
}

/* ---- slideshow.handoff ---- */

static int method_handoff(app_conn *c, const rtmp_cmd *cmd, void *ud)
{
    slideshow *ss = ud;
    ss_inst *in = inst_of(c);
    if (!in)
        return app_conn_reply_error(c, cmd->txid, "Slideshow.Failed", "Unavailable.");
    const char *u = app_conn_user(c);
    if (!*u || strcmp(u, presenter_of(in)) != 0)
        return app_conn_reply_error(c, cmd->txid, "Slideshow.Denied",
                                    "Only the presenter hands over.");
    size_t n = 0;
    const char *to = cmd->nargs >= 1 && amf_type_of(cmd->args[0]) == AMF_STRING
                         ? amf_as_string(cmd->args[0], &n)
                         : NULL;
    if (!to || n == 0 || n >= SAMPLES_NAME_MAX || memchr(to, 0, n))
        return app_conn_reply_error(c, cmd->txid, "Slideshow.BadRequest",
                                    "slideshow.handoff(user)");
    char who[SAMPLES_NAME_MAX];
    snprintf(who, sizeof(who), "%.*s", (int)n, to);
    /* answered by presenter_done (who is any string the client chose: it
     * is sanitised there before it is logged) */
    if (presenter_change(ss, in, c, cmd->txid, u, who, NULL) < 0)
        return app_conn_reply_error(c, cmd->txid, "Slideshow.Failed", "Out of memory.");
    return 0;
}

/* ---- connections ---- */

static void on_connect(app_app *a, app_conn *c, const app_connect_info *info, app_verdict *v,
                       void *ud)
{
    (void)a;
    slideshow *ss = ud;
    /* `stage` must be server-only before any client uses it: the connect
     * waits for the objects when their room is loading.  From here
     * (accepted or pending) on_disconnect follows for sure. */
    ss_inst *in = inst_get(ss, info->app, info->instance);
    if (in && in->opening)
        samples_wait(&in->waiting, c, v, "slideshow");
    if (in && v->reject && in->nconns == 0 && !in->opening)
        inst_free(ss, in);
    samples_accept(c, v, v->reject ? NULL : in, in ? &in->nconns : NULL, "slideshow");
}

static void on_disconnect(app_app *a, app_conn *c, const char *reason, void *ud)
{
    (void)a;
    (void)reason;
    slideshow *ss = ud;
    for (ss_op *op = ss->ops; op; op = op->next) {
        if (op->c == c)
            op->c = NULL;
        if (op->waiting == c)
            op->waiting = NULL;
    }
    ss_inst *in = samples_detach(c);
    if (!in)
        return;
    samples_wait_forget(&in->waiting, c);
    for (ss_conn **pp = &in->conns; *pp; pp = &(*pp)->next)
        if ((*pp)->c == c) {
            ss_conn *x = *pp;
            *pp = x->next;
            free(x);
            break;
        }
    if (--in->nconns == 0)
        inst_free(ud, in); /* the store has it all; the next connect reads it again */
}

/* After the connect _result: the connection's write access. */
static void obs_connect(app_conn *c, const app_connect_info *info, void *ud)
{
    (void)info;
    slideshow *ss = ud;
    if (app_conn_app(c) != ss->app)
        return;
    ss_inst *in = inst_of(c);
    ss_conn *x = in ? calloc(1, sizeof(*x)) : NULL;
    if (!x)
        return;
    x->c = c;
    x->next = in->conns;
    in->conns = x;
    const char *u = app_conn_user(c);
    ss_op *op = NULL;
    if (!presenter_of(in)[0] && *u && presenter_change(ss, in, NULL, 0, u, u, &op) < 0)
        SH_LOG(SH_LOG_WARN, "slideshow: cannot set the presenter of %s", in->room);
    if (op) {
        /* in a cluster the first user learns that it presents once Redis
         * stored it: its connection is not read until then, so its first
         * change finds the write access it will have */
        op->waiting = c;
        app_conn_hold_input(c);
    }
    apply_access(ss, in, c);
}

static void on_free(app_app *a, void *ud)
{
    (void)a;
    slideshow *ss = ud;
    while (ss->insts) {
        ss_inst *in = ss->insts;
        ss->insts = in->next;
        while (in->conns) {
            ss_conn *x = in->conns;
            in->conns = x->next;
            free(x);
        }
        samples_wait_cleanup(&in->waiting);
        free(in);
    }
    while (ss->ops) /* the cluster normally ended them all */
        op_free(ss->ops);
    so_effects_cleanup(&ss->fx);
    free(ss);
}

int sample_slideshow_register(app_server *srv, const samples_settings *s)
{
    slideshow *ss = calloc(1, sizeof(*ss));
    if (!ss)
        return SH_ENOMEM;
    ss->srv = srv;
    ss->s = s;
    so_effects_init(&ss->fx);
    app_app_ops ops = {.on_connect = on_connect, .on_disconnect = on_disconnect,
                       .on_free = on_free};
    ss->app = app_server_add_app(srv, SS_APP, &ops, ss);
    if (!ss->app) {
        so_effects_cleanup(&ss->fx);
        free(ss);
        return SH_EEXIST;
    }
    app_observer obs = {.on_connect = obs_connect};
    int rc = app_method_register(srv, ss->app, "slideshow.handoff", method_handoff, ss);
    if (!rc)
        rc = app_server_add_observer(srv, &obs, ss);
    if (!rc)
        rc = samples_on_poll(on_poll, ss);
    app_so_glue *g = app_so_glue_of(srv);
    if (!rc && g)
        rc = app_so_on_applied(g, on_applied, ss);
    return rc;
}
