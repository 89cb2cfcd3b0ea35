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

/* A create, bid or close on its way (samples_cas): found again by name
 * when it ends, since its instance and item may be released meanwhile. */
typedef struct auc_op {
    struct auc_op *next;  /* auction.ops */
    auction *a;
    app_conn *c;          /* the caller; NULL for the timer, or once it is gone */
    double txid;
    char inst[APP_NAME_MAX + 1];
    char room[2 * APP_NAME_MAX + 2];
    char id[AUC_ID_MAX + 1];
    char user[SAMPLES_NAME_MAX];
    amf_value *title;     /* create: owned */
    double start, inc;    /* create */
    double amount;        /* bid */
    double dur;           /* create: seconds */
    double bids, ends;    /* create, bid: what the write sets */
    const char *code;     /* a refusal worked out by build (static) */
    char desc[96];
} auc_op;

struct auction {
    app_server *srv;
    const samples_settings *s;
    app_app *app;
    so_object *index;
    auc_inst *insts;
    auc_pending *pending;
    auc_op *ops;
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

static auc_op *op_new(auction *a, app_conn *c, double txid, const auc_inst *in,
                      const char *id)
{
    auc_op *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->a = a;
    op->c = c;
    op->txid = txid;
    snprintf(op->inst, sizeof(op->inst), "%s", in->name);
    snprintf(op->room, sizeof(op->room), "%s", in->room);
    snprintf(op->id, sizeof(op->id), "%s", id);
    if (c)
        snprintf(op->user, sizeof(op->user), "%s", app_conn_user(c));
    op->next = a->ops;
    a->ops = op;
    return op;
}

static void op_free(auc_op *op)
{
    for (auc_op **pp = &op->a->ops; *pp; pp = &(*pp)->next)
        if (*pp == op) {
            *pp = op->next;
            break;
        }
    amf_unref(op->title);
    free(op);
}

static auc_inst *inst_find(auction *a, const char *name)
{
    for (auc_inst *in = a->insts; in; in = in->next)
        if (!strcmp(in->name, name) && in->catalog)
            return in;
    return NULL;
}

static auc_item *item_find(auc_inst *in, const char *id);

/* The item's close, as samples_cas builds it: only while it is open and
 * its end has come, from the item as this node has it now.  Every node
 * with the item has a timer; when two close at once, the compare-and-set
 * lets one write and the other build again, on the closed item: skip. */
static int close_build(void *ud, so_object *o, samples_changes *ch)
{
    (void)ud;
    if (strcmp(str_slot(o, "state"), "open") != 0)
        return SAMPLES_SKIP;
    if ((double)samples_wall_ms() < num_slot(o, "endsAt"))
        return SAMPLES_SKIP; /* a bid moved the end */
    const amf_value *leader = so_object_get(o, "leader", 6);
    int rc = samples_changes_add(ch, "state", 5, samples_str("closed"));
    if (!rc)
        rc = samples_changes_add(ch, "winner", 6,
                                 leader ? amf_ref((amf_value *)leader) : amf_null());
    return rc;
}

/* The item was closed by this node: auctionClosed to its subscribers (on
 * every node) and the catalog. */
static void close_announce(auction *a, auc_op *op, so_object *o)
{
    so_engine *e = engine(a);
    int rc = 0;
    amf_value *info = amf_object_new(NULL);
    if (info) {
        const amf_value *winner = so_object_get(o, "winner", 6);
        amf_object_set_cstr(info, "item", samples_str(op->id));
        amf_object_set_cstr(info, "winner", winner ? amf_ref((amf_value *)winner) : amf_null());
        amf_object_set_cstr(info, "price", amf_number(num_slot(o, "price")));
        amf_object_set_cstr(info, "bids", amf_number(num_slot(o, "bids")));
        if (so_object_send(e, o, "auctionClosed", 1, &info, &a->fx) < 0)
            rc = SH_ENOMEM;
        amf_unref(info);
    }
    so_object *catalog = samples_open(a->srv, op->room, AUC_CATALOG, true, true);
    amf_value *cat = catalog ? amf_object_new(NULL) : NULL;
    if (cat) {
        amf_object_set_cstr(cat, "title", samples_str(str_slot(o, "title")));
        amf_object_set_cstr(cat, "state", samples_str("closed"));
        if (so_object_set(e, catalog, op->id, strlen(op->id), cat, &a->fx) < 0)
            rc = SH_EIO;
    }
    amf_unref(cat);
    if (catalog)
        so_engine_object_close(e, catalog);
    samples_deliver(a->srv, &a->fx);
    SH_LOG(SH_LOG_INFO, "auction: %s/%s closed, winner %s at %g%s", op->inst, op->id,
           str_slot(o, "winner")[0] ? str_slot(o, "winner") : "(none)", num_slot(o, "price"),
           rc ? " (some updates failed)" : "");
}

static void item_arm_in(auc_item *it, uint64_t min_ms);

static void close_done(void *ud, int status, so_object *o)
{
    auc_op *op = ud;
    auction *a = op->a;
    if (status == 0)
        close_announce(a, op, o);
    auc_inst *in = a->stopping ? NULL : inst_find(a, op->inst);
    auc_item *it = in ? item_find(in, op->id) : NULL;
    if (status < 0 && status != SH_ESTATE)
        SH_LOG(SH_LOG_WARN, "auction: %s/%s: the close was not stored (%s): tried again in 1 s",
               op->inst, op->id, sh_strerror(status));
    op_free(op);
    if (it)
        item_arm_in(it, status < 0 ? 1000 : 0); /* still open: extended, or to try again */
    if (in)
        inst_maybe_release(a, in); /* may free it */
}

static void item_close(auc_item *it)
{
    auction *a = it->a;
    auc_op *op = op_new(a, NULL, 0, it->inst, it->id);
    if (!op || samples_cas(a->srv, it->inst->room, it->obj, close_build, close_done, op) < 0) {
        if (op)
            op_free(op);
        SH_LOG(SH_LOG_WARN, "auction: %s/%s: cannot close now (out of memory): tried again "
               "in 1 s", it->inst->name, it->id);
        item_arm_in(it, 1000);
    }
}

static void on_timer(uv_timer_t *t)
{
    auc_item *it = t->data;
    if (it->a->stopping || strcmp(str_slot(it->obj, "state"), "open") != 0)
        return;
    if ((double)samples_wall_ms() < num_slot(it->obj, "endsAt"))
        item_arm(it); /* extended meanwhile, or the clock moved */
    else
        item_close(it); /* its end releases the instance when idle (may free it) */
}

static void item_arm(auc_item *it)
{
    item_arm_in(it, 0);
}

/* Sets the item's timer for its end, and at least min_ms from now. */
static void item_arm_in(auc_item *it, uint64_t min_ms)
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
    uv_timer_start(&it->timer, on_timer, ms > min_ms ? ms : min_ms, 0);
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

/* Whether the catalog lists id with state "open". */
static bool catalog_open_item(auc_inst *in, const char *id)
{
    const amf_value *v = so_object_get(in->catalog, id, strlen(id));
    const amf_value *st = v ? amf_object_get(v, "state") : NULL;
    size_t n;
    const char *s = st && amf_type_of(st) == AMF_STRING ? amf_as_string(st, &n) : NULL;
    return s && n == 4 && !memcmp(s, "open", 4);
}

/* The item id of an instance, opened (and its timer set) when the catalog
 * lists it but this node has not seen it yet: another node of a cluster
 * created it. */
static auc_item *item_lookup(auction *a, auc_inst *in, const char *id)
{
    auc_item *it = item_find(in, id);
    if (it || !in->catalog)
        return it;
    if (!so_object_get(in->catalog, id, strlen(id))) {
        /* the catalog is written after the item: the item may be here first */
        char name[AUC_ID_MAX + 16];
        snprintf(name, sizeof(name), "items/%s", id);
        so_object *o = so_engine_object_find(engine(a), in->room, name);
        if (!o || !so_object_persistent(o) || !str_slot(o, "state")[0])
            return NULL;
    }
    if ((it = item_open(a, in, id)) != NULL)
        item_arm(it);
    return it;
}

/* Poll (clustered catalogs only): items that other nodes created are
 * opened and their timers set, so that every node of the cluster can
 * close them (whichever is first; the others find them closed). */
static void on_poll(void *ud)
{
    auction *a = ud;
    if (a->stopping)
        return;
    for (auc_inst *in = a->insts; in; in = in->next) {
        if (!in->catalog || !so_object_clustered(in->catalog) ||
            so_object_slot_count(in->catalog) == in->nitems)
            continue;
        char ids[16][AUC_ID_MAX + 1];
        size_t n = 0, iter = 0, kl;
        const char *k;
        amf_value *v;
        while (n < 16 && so_object_slot_next(in->catalog, &iter, &k, &kl, &v))
            if (id_ok(k, kl)) {
                snprintf(ids[n], AUC_ID_MAX + 1, "%.*s", (int)kl, k);
                if (!item_find(in, ids[n]) && catalog_open_item(in, ids[n]))
                    n++;
            }
        for (size_t i = 0; i < n; i++)
            item_lookup(a, in, ids[i]);
    }
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
    /* In a cluster, another node may have items of the instance open that
     * this one has not opened: the index keeps the instance while the
     * shared catalog lists an open item. */
    bool open_left = false;
    size_t ci = 0, ckl;
    const char *ck;
    amf_value *cv;
    while (!open_left && in->catalog && so_object_clustered(in->catalog) &&
           so_object_slot_next(in->catalog, &ci, &ck, &ckl, &cv)) {
        char cid[AUC_ID_MAX + 1];
        snprintf(cid, sizeof(cid), "%.*s", (int)(ckl < AUC_ID_MAX ? ckl : AUC_ID_MAX), ck);
        open_left = catalog_open_item(in, cid);
    }
    if (!open_left && a->index && so_object_get(a->index, in->name, strlen(in->name))) {
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

/* A new item, as samples_cas builds it: refused when the item has a
 * state already (made by another request, on this node or another). */
static int create_build(void *ud, so_object *o, samples_changes *ch)
{
    auc_op *op = ud;
    if (str_slot(o, "state")[0]) {
        op->code = "Auction.Exists";
        snprintf(op->desc, sizeof(op->desc), "That item exists.");
        return SAMPLES_SKIP;
    }
    int rc = samples_changes_add(ch, "title", 5, amf_ref(op->title));
    if (!rc) rc = samples_changes_add(ch, "price", 5, amf_number(op->start));
    if (!rc) rc = samples_changes_add(ch, "increment", 9, amf_number(op->inc));
    if (!rc) rc = samples_changes_add(ch, "leader", 6, amf_null());
    if (!rc) rc = samples_changes_add(ch, "bids", 4, amf_number(0));
    if (!rc) rc = samples_changes_add(ch, "endsAt", 6, amf_number(op->ends));
    if (!rc) rc = samples_changes_add(ch, "state", 5, samples_str("open"));
    return rc;
}

/* The item is written: the catalog names it (so that every node finds
 * it), the index keeps its instance for a restart, its timer is set and
 * the creator answered. */
static void create_done(void *ud, int status, so_object *o)
{
    (void)o;
    auc_op *op = ud;
    auction *a = op->a;
    app_conn *c = op->c;
    auc_inst *in = a->stopping ? NULL : inst_find(a, op->inst);
    if (status == 0 && in) {
        so_engine *e = engine(a);
        auc_item *it = item_find(in, op->id);
        if (!it)
            it = item_open(a, in, op->id);
        amf_value *cat = amf_object_new(NULL);
        int rc = cat ? 0 : SH_ENOMEM;
        if (cat) {
            amf_object_set_cstr(cat, "title", amf_ref(op->title));
            amf_object_set_cstr(cat, "state", samples_str("open"));
            rc = so_object_set(e, in->catalog, op->id, strlen(op->id), cat, &a->fx);
        }
        amf_unref(cat);
        samples_deliver(a->srv, &a->fx);
        /* Before the answer waits for durability, so covered by it. */
        int irc = index_add(a, in);
        if (irc < 0)
            SH_LOG(SH_LOG_WARN, "auction: cannot add %s to the index (its timers are not set "
                   "again after a restart until somebody connects): %s", in->name,
                   sh_strerror(irc));
        if (rc < 0)
            SH_LOG(SH_LOG_WARN, "auction: %s/%s: catalog: %s", in->name, op->id,
                   sh_strerror(rc));
        if (it)
            item_arm(it);
        SH_LOG(SH_LOG_INFO, "auction: %s/%s created by %s, %g s", in->name, op->id, op->user,
               op->dur);
    }
    amf_value *res = status == 0 && c ? amf_object_new(NULL) : NULL;
    if (res) {
        amf_object_set_cstr(res, "item", samples_str(op->id));
        amf_object_set_cstr(res, "endsAt", amf_number(op->ends));
        reply_when_durable(a, c, op->txid, res);
    } else if (c && status == SAMPLES_SKIP) {
        app_conn_reply_error(c, op->txid, op->code, op->desc);
    } else if (c) {
        app_conn_reply_error(c, op->txid, "Auction.Failed",
                             sh_strerror(status == 0 ? SH_ENOMEM : status));
    }
    op_free(op);
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
    char name[AUC_ID_MAX + 16];
    snprintf(name, sizeof(name), "items/%s", idz);
    so_object *o = samples_open(a->srv, in->room, name, true, true);
    auc_op *op = o ? op_new(a, c, cmd->txid, in, idz) : NULL;
    if (op) {
        op->title = amf_string(title, tl);
        op->start = start;
        op->inc = inc;
        op->ends = (double)samples_wall_ms() + ceil(dur * 1000);
        op->dur = dur;
    }
    int rc = !op || !op->title ? SH_ENOMEM
                               : samples_cas(a->srv, in->room, o, create_build, create_done, op);
    if (o)
        so_engine_object_close(engine(a), o); /* the write holds its own */
    if (rc < 0) {
        if (op)
            op_free(op);
        return app_conn_reply_error(c, cmd->txid, "Auction.Failed", "Item unavailable.");
    }
    return 0;
}

/* A bid, as samples_cas builds it: the rules checked against the item
 * as this node has it now; of two bids decided on the same state (on two
 * nodes), one is written and the other decided again on the new one. */
static int bid_build(void *ud, so_object *o, samples_changes *ch)
{
    auc_op *op = ud;
    auction *a = op->a;
    double now = (double)samples_wall_ms();
    double ends = num_slot(o, "endsAt");
    if (strcmp(str_slot(o, "state"), "open") != 0 || !(now < ends)) {
        op->code = "Auction.Closed";
        snprintf(op->desc, sizeof(op->desc), "The auction has ended.");
        return SAMPLES_SKIP;
    }
    if (!strcmp(str_slot(o, "leader"), op->user)) {
        op->code = "Auction.AlreadyLeading";
        snprintf(op->desc, sizeof(op->desc), "You are the highest bidder already.");
        return SAMPLES_SKIP;
    }
    double price = num_slot(o, "price"), bids = num_slot(o, "bids");
    double inc = num_slot(o, "increment");
    double min = bids > 0 ? price + (inc > 0 ? inc : a->s->auction_min_increment) : price;
    if (op->amount < min) {
        op->code = "Auction.TooLow";
        snprintf(op->desc, sizeof(op->desc), "The minimum bid is %g.", min);
        return SAMPLES_SKIP;
    }
    if (ends - now < a->s->auction_snipe_window_ms)
        ends = now + a->s->auction_snipe_extend_ms > ends ? now + a->s->auction_snipe_extend_ms
                                                          : ends;
    op->bids = bids + 1;
    op->ends = ends;
    int rc = samples_changes_add(ch, "price", 5, amf_number(op->amount));
    if (!rc)
        rc = samples_changes_add(ch, "leader", 6, samples_str(op->user));
    if (!rc)
        rc = samples_changes_add(ch, "bids", 4, amf_number(op->bids));
    if (!rc && ends != num_slot(o, "endsAt"))
        rc = samples_changes_add(ch, "endsAt", 6, amf_number(ends));
    return rc;
}

static void bid_done(void *ud, int status, so_object *o)
{
    (void)o;
    auc_op *op = ud;
    auction *a = op->a;
    app_conn *c = op->c;
    auc_inst *in = a->stopping ? NULL : inst_find(a, op->inst);
    auc_item *it = in ? item_find(in, op->id) : NULL;
    if (status == 0 && it)
        item_arm(it);
    amf_value *res = status == 0 && c ? amf_object_new(NULL) : NULL;
    if (res) {
        amf_object_set_cstr(res, "item", samples_str(op->id));
        amf_object_set_cstr(res, "price", amf_number(op->amount));
        amf_object_set_cstr(res, "bids", amf_number(op->bids));
        amf_object_set_cstr(res, "endsAt", amf_number(op->ends));
        reply_when_durable(a, c, op->txid, res);
    } else if (c && status == SAMPLES_SKIP) {
        app_conn_reply_error(c, op->txid, op->code, op->desc);
    } else if (c && status == SH_EIO) {
        app_conn_reply_error(c, op->txid, "Auction.StoreFailed",
                             "The bid was not confirmed as stored; it may still count.");
    } else if (c) {
        app_conn_reply_error(c, op->txid, "Auction.Failed",
                             sh_strerror(status == 0 ? SH_ENOMEM : status));
    }
    op_free(op);
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
    auc_item *it = in ? item_lookup(a, in, idz) : NULL;
    if (!it)
        return app_conn_reply_error(c, cmd->txid, "Auction.NoSuchItem", "No such item.");
    auc_op *op = op_new(a, c, cmd->txid, in, idz);
    if (op)
        op->amount = amount;
    if (!op || samples_cas(a->srv, in->room, it->obj, bid_build, bid_done, op) < 0) {
        if (op)
            op_free(op);
        return app_conn_reply_error(c, cmd->txid, "Auction.Failed", sh_strerror(SH_ENOMEM));
    }
    return 0;
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

/* After the connect _result.  In a cluster an item another node created
 * exists here (its updates make it) before this node opens it as
 * server-only: its clients get no write access at all, since they only
 * ever call methods. */
static void obs_connect(app_conn *c, const app_connect_info *info, void *ud)
{
    (void)info;
    auction *a = ud;
    auc_inst *in = app_conn_app(c) == a->app ? app_conn_get_data(c, APP_SLOT_APP) : NULL;
    if (!in || !in->catalog || !so_object_clustered(in->catalog))
        return;
    int err = 0;
    so_client *sc = app_so_client_of(app_so_glue_of(a->srv), c, &err);
    if (sc)
        so_client_set_access(engine(a), sc, NULL, ";");
}

static void on_disconnect(app_app *app, app_conn *c, const char *reason, void *ud)
{
    (void)app;
    (void)reason;
    auction *a = ud;
    for (auc_pending *p = a->pending; p; p = p->next)
        if (p->c == c)
            p->c = NULL;
    for (auc_op *op = a->ops; op; op = op->next)
        if (op->c == c)
            op->c = NULL;
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
    while (a->ops) { /* the cluster normally ended them all */
        auc_op *op = a->ops;
        a->ops = op->next;
        amf_unref(op->title);
        free(op);
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
    if (!rc) rc = samples_on_poll(on_poll, a);
    app_observer obs = {.on_connect = obs_connect};
    if (!rc) rc = app_server_add_observer(srv, &obs, a);
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
