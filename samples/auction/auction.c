/* auction.c - the `auction` sample: live auctions on server-only objects.
 *
 * Objects (room "auction/INSTANCE", persistent, written by the server only):
 *   items/<id>  {title, price, leader, bids, endsAt, state, increment
 *                [, winner]}: price is the start price until the first
 *                bid, leader null until then; endsAt is Unix ms; state
 *                "open" or "closed".
 *   catalog     one slot per item: key = id, value {title, state}.
 * and, so that a restart finds every instance with an open item again,
 * the object `instances` in the internal room "auction/#index" (no client
 * can name that room: '#' is not allowed in instance names).  An instance
 * is added there when an item is created in it and removed when it is
 * released with no open item left.
 *
 * Methods:
 *   auction.create(id, title, startPrice, durationSeconds [, increment])
 *       only the configured admin user -> _result {item, endsAt}
 *       _error Auction.Denied | Auction.BadRequest | Auction.Exists | Auction.Full
 *   auction.bid(id, amount) -> _result {item, price, bids, endsAt}
 *       _error Auction.Denied (no user name) | Auction.BadRequest |
 *       Auction.NoSuchItem | Auction.Closed | Auction.AlreadyLeading |
 *       Auction.TooLow (the description names the minimum) | Auction.StoreFailed
 * A bid is accepted when it is at least the start price (first bid) or
 * the price plus the item's increment, before endsAt, from a user who is
 * not the leader.  Everything runs on the loop thread, so two bids are
 * never applied at once: of two equal bids the second is TooLow.  A bid
 * accepted less than snipe_window_ms before the end moves the end to
 * now + snipe_extend_ms.
 *
 * Durability: every answer that reports a change (create, accepted bid)
 * is sent only once the change is stored (app_so_when_durable), so a
 * restart never loses a bid somebody was told was accepted.  A store
 * failure answers Auction.StoreFailed (the bid stays applied in memory and
 * is written again with the next batch).
 *
 * End: a libuv timer per open item fires at endsAt; the server sets state
 * "closed" and winner, then sends auctionClosed({item, winner, price,
 * bids}) to the item's subscribers (so_object_send).  After a restart the
 * timers are set again from the stored endsAt (items whose end passed
 * while the server was down are closed at once).
 *
 * Lifetime: an instance (auc_inst, its items, the server's handles on its
 * objects) stays in memory while a connection of it is open or waiting,
 * or the timer of one of its open items is set (work still to do: closing
 * the item and announcing the winner).  It is made in on_connect or at
 * start for the instances in the index.  Making it opens the catalog (the
 * room may have to be loaded from the store first:
 * so_engine_object_open_async), then the items the catalog lists (their
 * room is in memory then); connects wait (pending) until that is done,
 * so the catalog is server-only before any client uses it.  It is
 * released when nothing holds it any more: on_disconnect of its last
 * connection, the close of its last open item, or once its catalog is
 * open for an instance of the index with no open item.  Then the engine can unload the room; the next connect reads
 * the catalog and the items again from the store.  Answers waiting for
 * durability (auc_pending) hold only the connection (cleared when it goes
 * away), never an instance or an item, so they do not keep one alive: the
 * engine itself keeps the room until every change of it is stored.  An
 * item's timer handle is closed (uv_close) when its instance is released;
 * the item's memory goes in the close callback (a->closing until then).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "samples_int.h"
#include "sh_log.h"

#define AUC_APP "auction"
#define AUC_INDEX_ROOM "auction/#index"
#define AUC_INDEX_OBJECT "instances"
#define AUC_CATALOG "catalog"
#define AUC_ID_MAX 64

typedef struct auction auction;
typedef struct auc_inst auc_inst;

typedef struct auc_item {
    struct auc_item *next;
    auc_inst *inst;
    auction *a;
    char id[AUC_ID_MAX + 1];
    so_object *obj;
    uv_timer_t timer;
    bool timer_init;
} auc_item;
/* it->next links the items of an instance, or, once the instance was
 * released, the items whose timer is closing (auction.closing). */

struct auc_inst {
    struct auc_inst *next;
    char name[APP_NAME_MAX + 1];
    char room[2 * APP_NAME_MAX + 2];
    so_object *catalog;  /* NULL until open */
    auc_item *items;
    size_t nitems;
    size_t nconns;       /* accepted or waiting connections of the instance */
    auction *a;
    bool opening;        /* the catalog is being opened */
    bool in_open_call;   /* inside so_engine_object_open_async */
    samples_waiting waiting; /* connects waiting for the catalog */
};

/* An answer waiting for its change to be stored. */
typedef struct auc_pending {
    struct auc_pending *next;
    auction *a;
    app_conn *c;         /* NULL once the client is gone */
    double txid;
    amf_value *result;   /* owned */
} auc_pending;

struct auction {
    app_server *srv;
    const samples_settings *s;
    app_app *app;
    so_object *index;
    auc_inst *insts;
    auc_pending *pending;
    auc_item *closing;   /* released items waiting for their timer's close */
    so_effects fx;
    bool stopping;
};

static so_engine *engine(auction *a) { return app_so_engine(app_so_glue_of(a->srv)); }

/* ---- slot helpers ---- */

static double num_slot(so_object *o, const char *k)
{
    const amf_value *v = so_object_get(o, k, strlen(k));
    return v ? amf_as_number(v) : NAN;
}

static const char *str_slot(so_object *o, const char *k)
{
    const amf_value *v = so_object_get(o, k, strlen(k));
    size_t n;
    const char *s = v && amf_type_of(v) == AMF_STRING ? amf_as_string(v, &n) : NULL;
    return s ? s : "";
}

static int set_slot(auction *a, so_object *o, const char *k, amf_value *v)
{
    if (!v)
        return SH_ENOMEM;
    int rc = so_object_set(engine(a), o, k, strlen(k), v, &a->fx);
    amf_unref(v);
    return rc;
}

static bool id_ok(const char *s, size_t n)
{
    if (n == 0 || n > AUC_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* ---- end of an item ---- */

static void item_arm(auc_item *it);
static void inst_maybe_release(auction *a, auc_inst *in);

static void item_close(auc_item *it)
{
    auction *a = it->a;
    so_engine *e = engine(a);
    so_object *o = it->obj;
    const amf_value *leader = so_object_get(o, "leader", 6);
    so_object_lock(e, o);
    int rc = set_slot(a, o, "state", samples_str("closed"));
    if (rc == 0)
        rc = set_slot(a, o, "winner", leader ? amf_ref((amf_value *)leader) : amf_null());
    int urc = so_object_unlock(e, o, &a->fx);
    if (rc == 0)
        rc = urc;
    amf_value *info = amf_object_new(NULL);
    if (info) {
        amf_object_set_cstr(info, "item", samples_str(it->id));
        leader = so_object_get(o, "leader", 6);
        amf_object_set_cstr(info, "winner", leader ? amf_ref((amf_value *)leader) : amf_null());
        amf_object_set_cstr(info, "price", amf_number(num_slot(o, "price")));
        amf_object_set_cstr(info, "bids", amf_number(num_slot(o, "bids")));
        if (so_object_send(e, o, "auctionClosed", 1, &info, &a->fx) < 0)
            rc = rc ? rc : SH_ENOMEM;
        amf_unref(info);
    }
    amf_value *cat = amf_object_new(NULL);
    if (cat) {
        amf_object_set_cstr(cat, "title", samples_str(str_slot(o, "title")));
        amf_object_set_cstr(cat, "state", samples_str("closed"));
        so_object_set(e, it->inst->catalog, it->id, strlen(it->id), cat, &a->fx);
        amf_unref(cat);
    }
    samples_deliver(a->srv, &a->fx);
    SH_LOG(SH_LOG_INFO, "auction: %s/%s closed, winner %s at %g%s", it->inst->name, it->id,
           str_slot(o, "winner")[0] ? str_slot(o, "winner") : "(none)", num_slot(o, "price"),
           rc ? " (some updates failed)" : "");
}

static void on_timer(uv_timer_t *t)
{
    auc_item *it = t->data;
    if (it->a->stopping || strcmp(str_slot(it->obj, "state"), "open") != 0)
        return;
    if ((double)samples_wall_ms() < num_slot(it->obj, "endsAt")) {
        item_arm(it); /* extended meanwhile, or the clock moved */
    } else {
        item_close(it);
        inst_maybe_release(it->a, it->inst); /* may free it */
    }
}

static void item_arm(auc_item *it)
{
    if (it->a->stopping || strcmp(str_slot(it->obj, "state"), "open") != 0)
        return;
    if (!it->timer_init) {
        uv_timer_init(app_server_loop(it->a->srv), &it->timer);
        it->timer.data = it;
        it->timer_init = true;
    }
    double left = num_slot(it->obj, "endsAt") - (double)samples_wall_ms();
    uint64_t ms = !(left > 0) ? 0 : left > 1e12 ? (uint64_t)1e12 : (uint64_t)ceil(left);
    uv_timer_start(&it->timer, on_timer, ms, 0);
}

/* ---- instances and items ---- */

static auc_item *item_find(auc_inst *in, const char *id)
{
    for (auc_item *it = in->items; it; it = it->next)
        if (!strcmp(it->id, id))
            return it;
    return NULL;
}

/* Opens items/<id> of an instance (creating it when create is true). */
static auc_item *item_open(auction *a, auc_inst *in, const char *id)
{
    char name[AUC_ID_MAX + 16];
    snprintf(name, sizeof(name), "items/%s", id);
    so_object *o = samples_open(a->srv, in->room, name, true, true);
    if (!o)
        return NULL;
    auc_item *it = calloc(1, sizeof(*it));
    if (!it) {
        so_engine_object_close(engine(a), o);
        return NULL;
    }
    snprintf(it->id, sizeof(it->id), "%s", id);
    it->obj = o;
    it->inst = in;
    it->a = a;
    it->next = in->items;
    in->items = it;
    in->nitems++;
    return it;
}

/* The catalog is open (o), or could not be: the items it lists are opened
 * (their room is in memory now) and their timers set, and the waiting
 * connects are answered. */
static void catalog_opened(void *ud, so_object *o, int err)
{
    auc_inst *in = ud;
    auction *a = in->a;
    in->opening = false;
    if (!o) {
        SH_LOG(SH_LOG_WARN, "auction: cannot open the catalog of %s: %s", in->name,
               sh_strerror(err));
        samples_wait_done(&in->waiting, false, "auction");
        if (!in->in_open_call && in->nconns == 0) {
            /* an instance of the index: it stays there for the next start */
            for (auc_inst **pp = &a->insts; *pp; pp = &(*pp)->next)
                if (*pp == in) {
                    *pp = in->next;
                    break;
                }
            samples_wait_cleanup(&in->waiting);
            free(in);
        }
        return;
    }
    so_object_set_server_only(o, true);
    in->catalog = o;
    /* Items stored before a restart. */
    size_t iter = 0;
    const char *k;
    size_t kl;
    amf_value *v;
    char ids[64][AUC_ID_MAX + 1];
    size_t nids = 0;
    bool more = true;
    while (more) {
        nids = 0;
        while (nids < 64 && (more = so_object_slot_next(in->catalog, &iter, &k, &kl, &v)))
            if (id_ok(k, kl))
                snprintf(ids[nids++], AUC_ID_MAX + 1, "%.*s", (int)kl, k);
        for (size_t i = 0; i < nids; i++) {
            if (item_find(in, ids[i]))
                continue;
            auc_item *it = item_open(a, in, ids[i]);
            if (it)
                item_arm(it);
        }
    }
    samples_wait_done(&in->waiting, true, "auction");
    if (!in->in_open_call)
        inst_maybe_release(a, in); /* an instance of the index with nothing to do */
}

/* The instance `instance`, its catalog open or being opened; NULL when it
 * cannot be made. */
static auc_inst *inst_get(auction *a, const char *instance)
{
    auc_inst *in = a->insts;
    while (in && strcmp(in->name, instance))
        in = in->next;
    if (in && (in->catalog || in->opening))
        return in;
    if (!in) {
        if (!(in = calloc(1, sizeof(*in))))
            return NULL;
        in->a = a;
        snprintf(in->name, sizeof(in->name), "%s", instance);
        snprintf(in->room, sizeof(in->room), "%s/%s", AUC_APP, instance);
        in->next = a->insts;
        a->insts = in;
    }
    /* new, or its last open failed: (again) */
    so_engine *e = engine(a);
    in->opening = true;
    in->in_open_call = true;
    int rc = e ? so_engine_object_open_async(e, in->room, AUC_CATALOG, true, catalog_opened, in)
               : SH_ESTATE;
    in->in_open_call = false;
    if (rc < 0) {
        in->opening = false;
        SH_LOG(SH_LOG_WARN, "auction: cannot open the catalog of %s: %s", instance,
               sh_strerror(rc));
    }
    if (!in->catalog && !in->opening) {
        if (in->nconns == 0) {
            for (auc_inst **pp = &a->insts; *pp; pp = &(*pp)->next)
                if (*pp == in) {
                    *pp = in->next;
                    break;
                }
            samples_wait_cleanup(&in->waiting);
            free(in);
        }
        return NULL;
    }
    return in;
}

/* Remembers the instance for the next start (it has an open item). */
static int index_add(auction *a, auc_inst *in)
{
    if (!a->index || so_object_get(a->index, in->name, strlen(in->name)))
        return 0;
    amf_value *t = amf_bool(true);
    int rc = t ? so_object_set(engine(a), a->index, in->name, strlen(in->name), t, &a->fx)
               : SH_ENOMEM;
    amf_unref(t);
    samples_deliver(a->srv, &a->fx);
    return rc;
}

/* Work still to do for the item: its timer is set (it closes the item). */
static bool item_pending(auc_item *it)
{
    return it->timer_init && uv_is_active((uv_handle_t *)&it->timer);
}

static void on_item_timer_closed(uv_handle_t *h)
{
    auc_item *it = h->data;
    auction *a = it->a;
    for (auc_item **pp = &a->closing; *pp; pp = &(*pp)->next)
        if (*pp == it) {
            *pp = it->next;
            break;
        }
    free(it);
}

/* Closes the server's handle on the item and frees it (after its timer's
 * close callback when it has a timer). */
static void item_release(auction *a, auc_item *it)
{
    so_engine_object_close(engine(a), it->obj);
    it->obj = NULL;
    it->inst = NULL;
    if (!it->timer_init) {
        free(it);
        return;
    }
    it->next = a->closing;
    a->closing = it;
    if (!uv_is_closing((uv_handle_t *)&it->timer))
        uv_close((uv_handle_t *)&it->timer, on_item_timer_closed);
    /* else on_shutdown closed it already: on_free frees it */
}

/* Frees the instance when no connection and no item timer needs it.  The
 * index forgets it then: a restart has nothing to do for it. */
static void inst_maybe_release(auction *a, auc_inst *in)
{
    if (in->nconns > 0 || in->opening)
        return;
    for (auc_item *it = in->items; it; it = it->next)
        if (item_pending(it))
            return;
    for (auc_inst **pp = &a->insts; *pp; pp = &(*pp)->next)
        if (*pp == in) {
            *pp = in->next;
            break;
        }
    so_engine *e = engine(a);
    if (a->index && so_object_get(a->index, in->name, strlen(in->name))) {
        int rc = so_object_remove(e, a->index, in->name, strlen(in->name), &a->fx);
        if (rc < 0)
            SH_LOG(SH_LOG_WARN, "auction: cannot remove %s from the index: %s", in->name,
                   sh_strerror(rc));
        samples_deliver(a->srv, &a->fx);
    }
    while (in->items) {
        auc_item *it = in->items;
        in->items = it->next;
        item_release(a, it);
    }
    so_engine_object_close(e, in->catalog);
    samples_wait_cleanup(&in->waiting);
    free(in);
}

/* ---- answers after durability ---- */

static void on_durable(void *ud, int status)
{
    auc_pending *p = ud;
    auction *a = p->a;
    for (auc_pending **pp = &a->pending; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    if (p->c) {
        if (status == 0)
            app_conn_reply_result(p->c, p->txid, p->result);
        else
            app_conn_reply_error(p->c, p->txid, "Auction.StoreFailed",
                                 "Applied, but not stored yet; it is written again.");
    }
    amf_unref(p->result);
    free(p);
}

/* Answers result (taken) once the changes made so far are stored. */
static int reply_when_durable(auction *a, app_conn *c, double txid, amf_value *result)
{
    auc_pending *p = calloc(1, sizeof(*p));
    if (!p || app_so_when_durable(app_so_glue_of(a->srv), on_durable, p) != 0) {
        free(p);
        int rc = app_conn_reply_result(c, txid, result); /* cannot wait: answer now */
        amf_unref(result);
        return rc;
    }
    p->a = a;
    p->c = c;
    p->txid = txid;
    p->result = result;
    p->next = a->pending;
    a->pending = p;
    return 0;
}

/* ---- methods ---- */

static const char *arg_str(const rtmp_cmd *cmd, size_t i, size_t *n)
{
    if (i >= cmd->nargs || amf_type_of(cmd->args[i]) != AMF_STRING)
        return NULL;
    return amf_as_string(cmd->args[i], n);
}

static double arg_num(const rtmp_cmd *cmd, size_t i)
{
    if (i >= cmd->nargs)
        return NAN;
    amf_type t = amf_type_of(cmd->args[i]);
    return t == AMF_NUMBER || t == AMF_INTEGER ? amf_as_number(cmd->args[i]) : NAN;
}

static int method_create(app_conn *c, const rtmp_cmd *cmd, void *ud)
{
    auction *a = ud;
    if (strcmp(app_conn_user(c), a->s->auction_admin) != 0)
        return app_conn_reply_error(c, cmd->txid, "Auction.Denied",
                                    "Only the auction admin creates items.");
    size_t idl = 0, tl = 0;
    const char *id = arg_str(cmd, 0, &idl), *title = arg_str(cmd, 1, &tl);
    double start = arg_num(cmd, 2), dur = arg_num(cmd, 3);
    double inc = cmd->nargs > 4 ? arg_num(cmd, 4) : a->s->auction_min_increment;
    if (!id || !id_ok(id, idl) || !title || tl > 1000 || memchr(title, 0, tl) ||
        !(start >= 0) || !(start < 1e15) || !(dur > 0) || !(dur <= 30 * 86400) || !(inc > 0) ||
        !(inc < 1e15))
        return app_conn_reply_error(c, cmd->txid, "Auction.BadRequest",
                                    "auction.create(id [A-Za-z0-9_-]{1,64}, title, startPrice >= 0, "
                                    "durationSeconds > 0 [, increment > 0])");
    auc_inst *in = app_conn_get_data(c, APP_SLOT_APP);
    if (!in)
        return app_conn_reply_error(c, cmd->txid, "Auction.Failed", "Instance unavailable.");
    char idz[AUC_ID_MAX + 1];
    snprintf(idz, sizeof(idz), "%.*s", (int)idl, id);
    if (item_find(in, idz))
        return app_conn_reply_error(c, cmd->txid, "Auction.Exists", "That item exists.");
    if (in->nitems >= a->s->auction_max_items)
        return app_conn_reply_error(c, cmd->txid, "Auction.Full", "Too many items.");
    auc_item *it = item_open(a, in, idz);
    if (!it)
        return app_conn_reply_error(c, cmd->txid, "Auction.Failed", "Item unavailable.");
    so_engine *e = engine(a);
    double ends = (double)samples_wall_ms() + ceil(dur * 1000);
    so_object_lock(e, it->obj);
    int rc = set_slot(a, it->obj, "title", amf_string(title, tl));
    if (!rc) rc = set_slot(a, it->obj, "price", amf_number(start));
    if (!rc) rc = set_slot(a, it->obj, "increment", amf_number(inc));
    if (!rc) rc = set_slot(a, it->obj, "leader", amf_null());
    if (!rc) rc = set_slot(a, it->obj, "bids", amf_number(0));
    if (!rc) rc = set_slot(a, it->obj, "endsAt", amf_number(ends));
    if (!rc) rc = set_slot(a, it->obj, "state", samples_str("open"));
    int urc = so_object_unlock(e, it->obj, &a->fx);
    rc = rc ? rc : urc;
    amf_value *cat = amf_object_new(NULL);
    if (cat && !rc) {
        amf_object_set_cstr(cat, "title", amf_string(title, tl));
        amf_object_set_cstr(cat, "state", samples_str("open"));
        rc = so_object_set(e, in->catalog, idz, idl, cat, &a->fx);
    }
    amf_unref(cat);
    samples_deliver(a->srv, &a->fx);
    /* Before the answer waits for durability, so covered by it. */
    int irc = rc == 0 ? index_add(a, in) : 0;
    if (irc < 0)
        SH_LOG(SH_LOG_WARN, "auction: cannot add %s to the index (its timers are not set "
               "again after a restart until somebody connects): %s", in->name, sh_strerror(irc));
    if (rc < 0)
        return app_conn_reply_error(c, cmd->txid, "Auction.Failed", sh_strerror(rc));
    item_arm(it);
    SH_LOG(SH_LOG_INFO, "auction: %s/%s created by %s, %g s", in->name, idz, app_conn_user(c),
           dur);
    amf_value *res = amf_object_new(NULL);
    if (!res)
        return SH_ENOMEM;
    amf_object_set_cstr(res, "item", samples_str(idz));
    amf_object_set_cstr(res, "endsAt", amf_number(ends));
    return reply_when_durable(a, c, cmd->txid, res);
}

static int method_bid(app_conn *c, const rtmp_cmd *cmd, void *ud)
{
    auction *a = ud;
    const char *user = app_conn_user(c);
    if (!*user)
        return app_conn_reply_error(c, cmd->txid, "Auction.Denied",
                                    "Connect with a user name to bid.");
    size_t idl = 0;
    const char *id = arg_str(cmd, 0, &idl);
    double amount = arg_num(cmd, 1);
    if (!id || !id_ok(id, idl) || !(amount > 0) || !(amount < 1e15))
        return app_conn_reply_error(c, cmd->txid, "Auction.BadRequest",
                                    "auction.bid(item, amount > 0)");
    char idz[AUC_ID_MAX + 1];
    snprintf(idz, sizeof(idz), "%.*s", (int)idl, id);
    auc_inst *in = app_conn_get_data(c, APP_SLOT_APP);
    auc_item *it = in ? item_find(in, idz) : NULL;
    if (!it)
        return app_conn_reply_error(c, cmd->txid, "Auction.NoSuchItem", "No such item.");
    so_object *o = it->obj;
    double now = (double)samples_wall_ms();
    double ends = num_slot(o, "endsAt");
    if (strcmp(str_slot(o, "state"), "open") != 0 || !(now < ends))
        return app_conn_reply_error(c, cmd->txid, "Auction.Closed", "The auction has ended.");
    if (!strcmp(str_slot(o, "leader"), user))
        return app_conn_reply_error(c, cmd->txid, "Auction.AlreadyLeading",
                                    "You are the highest bidder already.");
    double price = num_slot(o, "price"), bids = num_slot(o, "bids");
    double inc = num_slot(o, "increment");
    double min = bids > 0 ? price + (inc > 0 ? inc : a->s->auction_min_increment) : price;
    if (amount < min) {
        char d[128];
        snprintf(d, sizeof(d), "The minimum bid is %g.", min);
        return app_conn_reply_error(c, cmd->txid, "Auction.TooLow", d);
    }
    if (ends - now < a->s->auction_snipe_window_ms)
        ends = now + a->s->auction_snipe_extend_ms > ends ? now + a->s->auction_snipe_extend_ms
                                                          : ends;
    so_engine *e = engine(a);
    so_object_lock(e, o);
    int rc = set_slot(a, o, "price", amf_number(amount));
    if (!rc) rc = set_slot(a, o, "leader", samples_str(user));
    if (!rc) rc = set_slot(a, o, "bids", amf_number(bids + 1));
    if (!rc && ends != num_slot(o, "endsAt"))
        rc = set_slot(a, o, "endsAt", amf_number(ends));
    int urc = so_object_unlock(e, o, &a->fx);
    rc = rc ? rc : urc;
    samples_deliver(a->srv, &a->fx);
    if (rc < 0)
        return app_conn_reply_error(c, cmd->txid, "Auction.Failed", sh_strerror(rc));
    item_arm(it);
    amf_value *res = amf_object_new(NULL);
    if (!res)
        return SH_ENOMEM;
    amf_object_set_cstr(res, "item", samples_str(idz));
    amf_object_set_cstr(res, "price", amf_number(amount));
    amf_object_set_cstr(res, "bids", amf_number(bids + 1));
    amf_object_set_cstr(res, "endsAt", amf_number(ends));
    return reply_when_durable(a, c, cmd->txid, res);
}

/* ---- application ---- */

static void on_connect(app_app *app, app_conn *c, const app_connect_info *info, app_verdict *v,
                       void *ud)
{
    (void)app;
    /* The catalog must be server-only before any client uses it: the
     * connect waits for it when its room is loading.  From here (accepted
     * or pending) on_disconnect follows for sure. */
    auc_inst *in = inst_get(ud, info->instance);
    if (in && in->opening)
        samples_wait(&in->waiting, c, v, "auction");
    samples_accept(c, v, v->reject ? NULL : in, in ? &in->nconns : NULL, "auction");
}

static void on_disconnect(app_app *app, app_conn *c, const char *reason, void *ud)
{
    (void)app;
    (void)reason;
    auction *a = ud;
    for (auc_pending *p = a->pending; p; p = p->next)
        if (p->c == c)
            p->c = NULL;
    auc_inst *in = samples_detach(c);
    if (in) {
        samples_wait_forget(&in->waiting, c);
        in->nconns--;
        inst_maybe_release(a, in);
    }
}

static void on_shutdown(app_server *s, void *ud)
{
    (void)s;
    auction *a = ud;
    a->stopping = true;
    for (auc_inst *in = a->insts; in; in = in->next)
        for (auc_item *it = in->items; it; it = it->next)
            if (it->timer_init && !uv_is_closing((uv_handle_t *)&it->timer))
                uv_close((uv_handle_t *)&it->timer, NULL); /* freed in on_free, after the loop */
}

static void on_free(app_app *app, void *ud)
{
    (void)app;
    auction *a = ud;
    while (a->insts) {
        auc_inst *in = a->insts;
        a->insts = in->next;
        while (in->items) {
            auc_item *it = in->items;
            in->items = it->next;
            free(it);
        }
        samples_wait_cleanup(&in->waiting);
        free(in);
    }
    while (a->closing) { /* normally freed by their close callbacks */
        auc_item *it = a->closing;
        a->closing = it->next;
        free(it);
    }
    while (a->pending) { /* the glue normally ran them all */
        auc_pending *p = a->pending;
        a->pending = p->next;
        amf_unref(p->result);
        free(p);
    }
    so_effects_cleanup(&a->fx);
    free(a);
}

/* The index of instances with open items is open: each of them is made
 * (its catalog and items read, its timers set); those with nothing to do
 * are released once their catalog is open. */
static void index_opened(void *ud, so_object *o, int err)
{
    auction *a = ud;
    if (!o) {
        SH_LOG(SH_LOG_WARN, "auction: cannot open the index: %s (open items get their "
               "timers when somebody connects to their instance)", sh_strerror(err));
        return;
    }
    so_object_set_server_only(o, true);
    a->index = o;
    size_t iter = 0;
    const char *k;
    size_t kl;
    amf_value *v;
    char names[64][APP_NAME_MAX + 1];
    bool more = true;
    while (more) {
        size_t n = 0;
        while (n < 64 && (more = so_object_slot_next(a->index, &iter, &k, &kl, &v)))
            if (kl <= APP_NAME_MAX)
                snprintf(names[n++], APP_NAME_MAX + 1, "%.*s", (int)kl, k);
        for (size_t i = 0; i < n; i++)
            inst_get(a, names[i]);
    }
    /* Catalogs read already (their room was in memory): released now when
     * idle (a release removes the instance from the index, so after the
     * scan). */
    for (auc_inst *in = a->insts, *next; in; in = next) {
        next = in->next;
        inst_maybe_release(a, in);
    }
}

int sample_auction_register(app_server *srv, const samples_settings *s)
{
    auction *a = calloc(1, sizeof(*a));
    if (!a)
        return SH_ENOMEM;
    a->srv = srv;
    a->s = s;
    so_effects_init(&a->fx);
    app_app_ops ops = {.on_connect = on_connect, .on_disconnect = on_disconnect, .on_free = on_free};
    a->app = app_server_add_app(srv, AUC_APP, &ops, a);
    if (!a->app) {
        so_effects_cleanup(&a->fx);
        free(a);
        return SH_EEXIST;
    }
    int rc = app_method_register(srv, a->app, "auction.create", method_create, a);
    if (!rc) rc = app_method_register(srv, a->app, "auction.bid", method_bid, a);
    if (!rc) rc = app_server_on_shutdown(srv, on_shutdown, a);
    if (rc)
        return rc;
    /* Instances known from the last run: their items' timers start once
     * the index and their catalogs are read. */
    so_engine *e = engine(a);
    rc = e ? so_engine_object_open_async(e, AUC_INDEX_ROOM, AUC_INDEX_OBJECT, true,
                                         index_opened, a)
           : SH_ESTATE;
    if (rc < 0)
        SH_LOG(SH_LOG_WARN, "auction: cannot open the index: %s", sh_strerror(rc));
    return 0;
}
