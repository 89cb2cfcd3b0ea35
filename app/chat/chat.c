/* chat.c - one-to-one chat (see chat.h and docs/chat.md).
 *
 * State, all on the loop thread:
 *   chat_user   one per (application, user name) that is online, has
 *               messages waiting for a commit, or sent recently (its
 *               clientId window): counters (last id given, acknowledged
 *               up to), live connections, rate bucket, clientId window,
 *               and the messages not yet known to be committed.
 *   chat_pmsg   a message between its acceptance and its commit.
 *   chat_batch  the store operations of one transaction: `pending` is
 *               being filled, `inflight` is in the store module's round.
 * A user record is made when first needed; its counters are read from
 * the store (by the store module, off the loop thread) when it receives,
 * acknowledges or connects.  Until they are known, what needs them waits
 * on the record in arrival order (a message for the user, an
 * acknowledgement, a question of the server API) and the user's
 * connections wait for their stored messages.  The record is dropped by
 * the sweep timer once nothing refers to it; the store is the truth for
 * everything committed.
 *
 * Ordering: ids grow per recipient; batches commit in the order they were
 * filled (one in flight), so the store never has a gap before a message
 * that is committed, except after a failed batch (logged).
 */
#include "chat.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "chat_internal.h"
#include "chat_redis.h"
#include "chat_store.h"
#include "cluster.h"
#include "store.h"
#include "sh_err.h"
#include "sh_log.h"
#include "sh_map.h"

/* Defaults when a client's application has no [app] section; they mirror
 * app_app_config_defaults() in config.c. */
#define CHAT_DEFAULT_MAX_TEXT 4096
#define CHAT_DEFAULT_RATE 20
#define CHAT_DEFAULT_QUEUE 1000
#define CHAT_SWEEP_MS 1000
#define CHAT_WAITERS_MAX 8
/* Catch-up reads: rows per store read, the timer that keeps feeding
 * connections whose output drained without waking the loop, and the most
 * output a connection may have queued to be fed (at most a quarter of
 * max_output_bytes). */
#define CHAT_PAGE_ROWS 64
#define CHAT_PUMP_MS 10
/* Requests that may wait for one user's counters. */
#define CHAT_USER_WAIT_MAX 4096
#define CHAT_LOW_WATER_MAX (256u * 1024)

typedef struct chat chat;
typedef struct chat_user chat_user;
typedef struct chat_pmsg chat_pmsg;

/* One live connection of a user.  Delivery on it follows one rule: the
 * connection gets the user's messages in increasing id order, each once,
 * starting with every stored message above the acknowledged id.  While
 * `catching_up`, messages are read from the store (a page at a time, only
 * while its output queue is short) and commits do not send to it; once a
 * read finds nothing more, commits send directly, skipping what the read
 * already sent.  A connection whose output grows past the low-water mark
 * goes back to catching up, so a slow reader is fed from the store
 * instead of growing its queue. */
typedef struct chat_conn chat_conn;
static void on_pump(uv_timer_t *t);

struct chat_conn {
    chat_conn *next;           /* the user's connections */
    chat_conn *cnext;          /* ch->catching, while catching_up */
    app_conn *c;
    chat_user *u;
    uint64_t sent;             /* highest id handed to this connection (at
                                * first: the user's acknowledged id) */
    size_t resent;             /* stored messages sent by catch-up reads */
    bool catching_up;
    bool reading;              /* a page read is in flight */
    bool failed;               /* closed by us: nothing more is sent */
};

typedef struct chat_dedup {
    bool used;
    bool queued;
    char cid[CHAT_CLIENT_ID_MAX + 1];
    uint64_t id;
    uint64_t t_ms;
    chat_pmsg *pm;         /* set while a queued answer waits for the commit */
} chat_dedup;

/* Who waits for a message's answer: a client's call (conn_id, txid), or
 * server code (fn, e.g. the server API). */
typedef struct chat_waiter {
    uint64_t conn_id;
    double txid;
    chat_sent_fn fn;
    void *ud;
} chat_waiter;

struct chat_pmsg {
    chat_pmsg *next;       /* recipient's list of uncommitted messages */
    chat_user *to;         /* counted in to->refs */
    chat_user *sender;     /* counted in sender->refs */
    uint64_t id;
    int64_t ts;
    char *text;            /* owned */
    size_t text_len;
    bool queued;
    chat_waiter waiters[CHAT_WAITERS_MAX];
    size_t nwaiters;
};

/* Something that waits for a user's counters. */
typedef enum { UWAIT_SEND, UWAIT_ACK, UWAIT_STATE } chat_uwait_kind;
typedef struct chat_uwait {
    struct chat_uwait *next;
    chat_uwait_kind kind;
    chat_pmsg *pm;         /* SEND: a message for the user */
    uint32_t queue;        /* SEND: chat_queue of the recipient's application */
    uint64_t conn_id;      /* ACK: the connection that asked */
    double txid;
    double ack;            /* ACK: the id acknowledged */
    chat_state_fn fn;      /* STATE */
    void *ud;
} chat_uwait;

struct chat_user {
    chat *ch;
    char *key;             /* owned: app, NUL, name, NUL (the users map's key) */
    size_t klen;           /* without the last NUL */
    char *app;             /* in key */
    char *name;            /* in key */
    bool loaded;           /* last_id, acked, committed come from the store */
    bool loading;          /* read asked (counted in refs) */
    chat_uwait *wait_head, *wait_tail; /* until loaded, oldest first */
    size_t nwait;
    uint64_t last_id;
    uint64_t acked;
    uint64_t committed;    /* highest id known to be stored (or acknowledged) */
    chat_conn *conns;
    size_t nconns;
    chat_pmsg *unconf_head, *unconf_tail;
    size_t refs;           /* pmsgs, batches and reads pointing here */
    bool dirty;            /* counters go into the pending batch */
    double tokens;
    uint64_t bucket_ms;
    bool bucket_set;
    chat_dedup *dedup;     /* owned, CHAT_DEDUP_MAX entries, made on first clientId */
    size_t dedup_next;
    uint64_t dedup_ms;     /* last time an entry was added */
    /* Clustered application (link set): the counters and messages live in
     * Redis (chat_redis.h); while the user has connections here, its
     * channel is subscribed (a reference) and `loaded` means: subscribed,
     * READY heard, counters read after it. */
    app_cluster_link *link;
    bool subscribed;
    bool sub_ready;
    bool reload;           /* READY again while a read was in flight */
};

typedef struct chat_batch {
    chat *ch;
    chat_pmsg **msgs;
    size_t nmsgs, capm;
    chat_user **users;
    size_t nusers, capu;
    chat_store_op *ops;
    size_t nops;
    int status;
} chat_batch;

struct chat {
    app_server *srv;
    uv_loop_t *loop;
    app_store *st;          /* the server's store module: reads and writes */
    app_cluster *cluster;   /* NULL when no application is clustered */
    sh_map rooms;           /* clustered presence: room -> cluster_room */
    sh_map watchers;        /* clustered presence: connection without a user
                             * name (pointer key) -> the cluster_room it holds */
    sh_map pres_dirty;      /* clustered presence: "room\0user" whose last write
                             * Redis did not confirm (written again when up) */
    uv_timer_t psweep;      /* clustered presence: dead nodes' entries */
    chat_presence *presence;
    sh_map users;          /* user_key -> chat_user */
    chat_batch *pending;
    chat_batch *inflight;
    chat_conn *catching;    /* connections being fed from the store */
    size_t low_water;       /* output bytes under which a connection is fed */
    uv_check_t check;
    uv_timer_t sweep;
    uv_timer_t pump;        /* runs while `catching` is not empty */
    int open_handles;
    bool stopping;
    bool store_stopped;     /* the store wrote its last round */
    size_t nreads;          /* store reads in flight (they point here) */
    uint64_t batches, batch_failures, messages;
    uint64_t stored;            /* messages committed */
    uint64_t delivered;         /* chat.onPrivate sent (live and from the store) */
    uint64_t acked;             /* messages acknowledged */
    uint64_t unacked;       /* ids given and not acknowledged, every user */
    uint64_t max_unacked;   /* chat_max_stored */
};

/* ---- small helpers ---- */

typedef struct chat_limits {
    uint32_t max_text, rate, queue;
    bool presence;
    const char *users; /* "" = any */
} chat_limits;

static void limits_of(const app_conn *c, chat_limits *l)
{
    const app_app_config *a = app_conn_app_config(c);
    if (a) {
        *l = (chat_limits){a->chat_max_text, a->chat_rate, a->chat_queue, a->presence,
                           a->users ? a->users : ""};
    } else {
        *l = (chat_limits){CHAT_DEFAULT_MAX_TEXT, CHAT_DEFAULT_RATE, CHAT_DEFAULT_QUEUE, false,
                           ""};
    }
    l->presence = app_presence_on(app_conn_server(c), app_conn_app_name(c), a);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* True when name is in the comma-separated list (spaces around names
 * ignored); an empty list admits every name. */
static bool user_listed(const char *list, const char *name, size_t n)
{
    if (!*list)
        return true;
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *s = p;
        while (*p && *p != ',')
            p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == n && memcmp(s, name, n) == 0)
            return true;
    }
    return false;
}


static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static const char *arg_string(const rtmp_cmd *cmd, size_t i, size_t *len)
{
    if (cmd->nargs <= i || amf_type_of(cmd->args[i]) != AMF_STRING)
        return NULL;
    return amf_as_string(cmd->args[i], len);
}

/* ---- users ---- */

/* The users map's key of (app, name): the application name, a NUL (in
 * neither name), the user name.  0 when a name is longer than APP_NAME_MAX
 * (no user has such a name: connect names are cut there). */
#define USER_KEY_MAX (2 * APP_NAME_MAX + 1)

static size_t user_key(char *k, const char *app, const char *name, size_t nlen)
{
    size_t alen = strlen(app);
    if (alen > APP_NAME_MAX || nlen > APP_NAME_MAX)
        return 0;
    memcpy(k, app, alen);
    k[alen] = '\0';
    memcpy(k + alen + 1, name, nlen);
    return alen + 1 + nlen;
}

static chat_user *user_find(chat *ch, const char *app, const char *name, size_t nlen)
{
    char k[USER_KEY_MAX];
    size_t klen = user_key(k, app, name, nlen);
    return klen ? sh_map_get(&ch->users, k, klen) : NULL;
}

static int user_load(chat *ch, chat_user *u);
static int cluster_user_load(chat *ch, chat_user *u);

/* The record of (app, name), made when not in memory.  With load, its
 * counters are asked for when they are not known (u->loaded says when
 * they are; what needs them waits on the record).  NULL when out of
 * memory, the name is too long, or the read cannot be asked (*rc). */
static chat_user *user_get(chat *ch, const char *app, const char *name, size_t nlen, bool load,
                           int *rc)
{
    char k[USER_KEY_MAX];
    size_t klen = user_key(k, app, name, nlen);
    *rc = klen ? 0 : SH_ELIMIT;
    chat_user *u = klen ? sh_map_get(&ch->users, k, klen) : NULL;
    if (!u && klen) {
        u = calloc(1, sizeof(*u));
        if (!u || !(u->key = dup_n(k, klen))) {
            free(u);
            *rc = SH_ENOMEM;
            return NULL;
        }
        u->ch = ch;
        u->klen = klen;
        u->app = u->key;
        u->name = u->key + strlen(app) + 1;
        u->link = app_cluster_link_for(ch->cluster, app); /* NULL at once unclustered */
        if ((*rc = sh_map_put(&ch->users, u->key, u->klen, u)) != 0) {
            free(u->key);
            free(u);
            return NULL;
        }
    }
    if (u && load && (*rc = user_load(ch, u)) < 0)
        return NULL; /* an idle record goes with the next sweep */
    return u;
}

static void user_free(chat_user *u)
{
    while (u->wait_head) {
        /* only at the end (chat_free): nobody is left to answer */
        chat_uwait *w = u->wait_head;
        u->wait_head = w->next;
        if (w->pm) {
            free(w->pm->text);
            free(w->pm);
        }
        free(w);
    }
    while (u->conns) {
        chat_conn *n = u->conns->next;
        free(u->conns);
        u->conns = n;
    }
    free(u->dedup);
    free(u->key);
    free(u);
}

static bool user_idle(const chat_user *u, uint64_t now)
{
    return u->nconns == 0 && u->refs == 0 && !u->dirty && !u->unconf_head && !u->wait_head &&
           (u->dedup_ms == 0 || now - u->dedup_ms > CHAT_DEDUP_WINDOW_MS);
}

typedef struct sweep_arg {
    bool all;
    uint64_t now;
} sweep_arg;

static bool sweep_one(void *val, void *ctx)
{
    const sweep_arg *a = ctx;
    if (!a->all && !user_idle(val, a->now))
        return false;
    user_free(val);
    return true;
}

/* Drops idle records (the store has everything they held). */
static void users_sweep(chat *ch, bool all)
{
    sweep_arg a = {all, uv_now(ch->loop)};
    sh_map_sweep(&ch->users, sweep_one, &a);
}

static app_conn *user_conn_by_id(chat_user *u, uint64_t id)
{
    for (chat_conn *cc = u->conns; cc; cc = cc->next)
        if (app_conn_id(cc->c) == id)
            return cc->c;
    return NULL;
}

/* ---- batches ---- */

static chat_batch *batch_pending(chat *ch)
{
    if (!ch->pending) {
        ch->pending = calloc(1, sizeof(*ch->pending));
        if (ch->pending)
            ch->pending->ch = ch;
    }
    return ch->pending;
}

static int push_ptr(void ***arr, size_t *n, size_t *cap, void *p)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        void **a = realloc(*arr, nc * sizeof(*a));
        if (!a)
            return SH_ENOMEM;
        *arr = a;
        *cap = nc;
    }
    (*arr)[(*n)++] = p;
    return 0;
}

/* Counters of u go into the pending batch. */
static int user_mark_dirty(chat *ch, chat_user *u)
{
    if (u->dirty)
        return 0;
    chat_batch *b = batch_pending(ch);
    if (!b || push_ptr((void ***)&b->users, &b->nusers, &b->capu, u) != 0)
        return SH_ENOMEM;
    u->dirty = true;
    u->refs++;
    return 0;
}

static void batch_build_ops(chat_batch *b)
{
    b->ops = calloc(b->nmsgs + b->nusers + 1, sizeof(*b->ops));
    if (!b->ops)
        return;
    size_t n = 0;
    for (size_t i = 0; i < b->nmsgs; i++) {
        chat_pmsg *pm = b->msgs[i];
        b->ops[n++] = (chat_store_op){
            .is_msg = true, .app = pm->to->app, .user = pm->to->name, .id = pm->id,
            .sender = pm->sender->name, .ts = pm->ts, .text = pm->text,
            .text_len = pm->text_len};
    }
    for (size_t i = 0; i < b->nusers; i++) {
        chat_user *u = b->users[i];
        u->dirty = false;
        b->ops[n++] = (chat_store_op){.is_msg = false, .app = u->app, .user = u->name,
                                      .last_id = u->last_id, .acked = u->acked};
    }
    b->nops = n;
}

static void send_result(app_conn *c, double txid, uint64_t id, const char *status)
{
    amf_value *o = amf_object_new(NULL);
    if (o) {
        amf_object_set_cstr(o, "id", amf_number((double)id));
        amf_object_set_cstr(o, "status", amf_string_cstr(status));
    }
    app_conn_reply_result(c, txid, o);
    amf_unref(o);
}

static amf_value *message_value(uint64_t id, const char *from, const char *to, const char *text,
                                size_t text_len, int64_t ts)
{
    amf_value *o = amf_object_new(NULL);
    if (!o)
        return NULL;
    amf_object_set_cstr(o, "id", amf_number((double)id));
    amf_object_set_cstr(o, "from", amf_string_cstr(from));
    amf_object_set_cstr(o, "to", amf_string_cstr(to));
    amf_object_set_cstr(o, "text", amf_string(text, text_len));
    amf_object_set_cstr(o, "ts", amf_number((double)ts));
    return o;
}

static bool send_private(app_conn *c, amf_value *msg)
{
    if (!app_conn_connected(c) || !msg)
        return false;
    return app_conn_send_cmd(c, "chat.onPrivate", 0, &msg, 1) == 0;
}

/* ---- delivery on each connection (the rule is at chat_conn) ---- */

static void catch_start(chat *ch, chat_conn *cc)
{
    if (cc->catching_up || cc->failed)
        return;
    cc->catching_up = true;
    cc->cnext = ch->catching;
    ch->catching = cc;
    if (!uv_is_active((uv_handle_t *)&ch->pump) && !ch->stopping)
        uv_timer_start(&ch->pump, on_pump, CHAT_PUMP_MS, CHAT_PUMP_MS);
}

static void catch_stop(chat *ch, chat_conn *cc)
{
    if (!cc->catching_up)
        return;
    cc->catching_up = false;
    for (chat_conn **pp = &ch->catching; *pp; pp = &(*pp)->cnext) {
        if (*pp == cc) {
            *pp = cc->cnext;
            break;
        }
    }
    cc->cnext = NULL;
    if (!ch->catching)
        uv_timer_stop(&ch->pump);
}

/* A message could not be read or queued for cc: a later one must never
 * reach the client before it (its ack would cover the missing one), so
 * the connection is closed; the client gets the rest when it reconnects. */
static void conn_fail(chat *ch, chat_conn *cc, const char *why)
{
    catch_stop(ch, cc);
    if (cc->failed)
        return;
    cc->failed = true;
    SH_LOG(SH_LOG_WARN, "conn=%llu chat: %s after id %llu; closing the connection",
           (unsigned long long)app_conn_id(cc->c), why, (unsigned long long)cc->sent);
    app_conn_close(cc->c, why);
}

/* A message of cc's user was just committed.  Returns true when cc will
 * have it: sent now, already sent by a catch-up read, or left in the store
 * for the catch-up reads. */
static bool deliver_one(chat *ch, chat_conn *cc, amf_value *m, uint64_t id)
{
    if (cc->failed || !app_conn_connected(cc->c))
        return false;
    if (cc->catching_up || id <= cc->sent)
        return true;
    if (app_conn_out_bytes(cc->c) >= ch->low_water) {
        catch_start(ch, cc); /* a slow reader: fed from the store */
        return true;
    }
    if (!send_private(cc->c, m)) {
        conn_fail(ch, cc, "cannot queue a private message");
        return false;
    }
    cc->sent = id;
    ch->delivered++;
    return true;
}

/* Hands the committed message pm to every connection of its recipient;
 * returns how many connections will have it. */
static size_t deliver_committed(chat *ch, chat_user *to, const chat_pmsg *pm)
{
    if (!to->conns)
        return 0;
    size_t n = 0;
    amf_value *m = message_value(pm->id, pm->sender->name, to->name, pm->text, pm->text_len,
                                 pm->ts);
    for (chat_conn *cc = to->conns; cc; cc = cc->next)
        n += deliver_one(ch, cc, m, pm->id);
    amf_unref(m);
    return n;
}

/* Answers pm's waiters and frees it: code NULL = stored as pm->id
 * (pm->queued says how), else refused or failed with code and desc (a
 * retry of its clientId may try again). */
static void pmsg_answer(chat *ch, chat_pmsg *pm, const char *code, const char *desc)
{
    (void)ch;
    chat_user *s = pm->sender;
    for (size_t i = 0; s->dedup && i < CHAT_DEDUP_MAX; i++) {
        if (s->dedup[i].pm != pm)
            continue;
        s->dedup[i].pm = NULL;
        s->dedup[i].id = pm->id;
        s->dedup[i].queued = pm->queued;
        if (code)
            s->dedup[i].used = false;
    }
    for (size_t i = 0; i < pm->nwaiters; i++) {
        chat_waiter *w = &pm->waiters[i];
        if (w->fn) {
            if (!code)
                w->fn(w->ud, NULL, NULL, pm->id, pm->queued);
            else
                w->fn(w->ud, code, desc, 0, false);
            continue;
        }
        app_conn *c = user_conn_by_id(s, w->conn_id);
        if (!c)
            continue;
        if (!code)
            send_result(c, w->txid, pm->id, pm->queued ? "queued" : "delivered");
        else
            app_conn_reply_error(c, w->txid, code, desc);
    }
    pm->to->refs--;
    s->refs--;
    free(pm->text);
    free(pm);
}

static void pmsg_finish(chat *ch, chat_pmsg *pm, int status)
{
    chat_user *to = pm->to;
    /* Unlink from the recipient's uncommitted list (normally the head). */
    chat_pmsg **pp = &to->unconf_head;
    chat_pmsg *prev = NULL;
    while (*pp && *pp != pm) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = pm->next;
        if (to->unconf_tail == pm)
            to->unconf_tail = prev;
    }
    /* Stored: now the recipient may see it.  Sending before the commit
     * would let a crash hand the same id to another message. */
    if (status == 0) {
        ch->stored++;
        if (pm->id > to->committed)
            to->committed = pm->id;
        pm->queued = deliver_committed(ch, to, pm) == 0;
        pmsg_answer(ch, pm, NULL, NULL);
        return;
    }
    SH_LOG(SH_LOG_ERROR, "chat: message %llu for %s of %s was not stored",
           (unsigned long long)pm->id, to->name, to->app);
    pmsg_answer(ch, pm, CHAT_E_STORE_FAILED, "The message could not be stored");
}

static void batch_finish(chat *ch, chat_batch *b)
{
    ch->batches++;
    if (b->status) {
        ch->batch_failures++;
        SH_LOG(SH_LOG_ERROR, "chat: store batch of %zu operations failed: %s", b->nops,
               sh_strerror(b->status));
    }
    for (size_t i = 0; i < b->nmsgs; i++)
        pmsg_finish(ch, b->msgs[i], b->status);
    for (size_t i = 0; i < b->nusers; i++) {
        chat_user *u = b->users[i];
        u->refs--;
        if (b->status && !ch->stopping)
            user_mark_dirty(ch, u); /* write the counters again next time */
    }
    free(b->msgs);
    free(b->users);
    free(b->ops);
    free(b);
}

/* ---- the store module's source: one batch per round ---- */

/* Messages go at once; counters alone (acknowledgements, rewrites after a
 * failure) wait for the store's back-off while rounds keep failing. */
static int64_t src_wait_ms(void *ud, uint32_t fail_streak)
{
    chat *ch = ud;
    chat_batch *b = ch->pending;
    if (!b || (b->nmsgs == 0 && b->nusers == 0))
        return -1;
    return b->nmsgs ? 0 : (int64_t)app_store_retry_delay_ms(fail_streak);
}

static void src_take(void *ud, app_store_round *r)
{
    chat *ch = ud;
    chat_batch *b = ch->pending;
    if (!b || (b->nmsgs == 0 && b->nusers == 0))
        return;
    ch->pending = NULL;
    batch_build_ops(b);
    ch->inflight = b;
    r->chat = b->ops;
    r->nchat = b->ops ? b->nops : 0;
}

static void chat_maybe_free(chat *ch);

static void src_done(void *ud, const app_store_round *r, int status)
{
    (void)r;
    chat *ch = ud;
    chat_batch *b = ch->inflight;
    if (!b)
        return; /* a round of other sources only */
    ch->inflight = NULL;
    b->status = !b->ops ? SH_ENOMEM : status;
    batch_finish(ch, b);
}

static void src_stopped(void *ud)
{
    chat *ch = ud;
    ch->store_stopped = true;
    chat_maybe_free(ch);
}

static void pump_all(chat *ch);

static void on_check(uv_check_t *h)
{
    chat *ch = h->data;
    chat_presence_flush(ch->presence);
    pump_all(ch);
}

static void cluster_retry(chat *ch);

static void on_sweep(uv_timer_t *t)
{
    chat *ch = t->data;
    if (ch->cluster)
        cluster_retry(ch);
    users_sweep(ch, false);
}

/* ---- catch-up reads ---- */

/* A page read in flight for connection conn_id of u (both kept: u by a
 * reference, the connection looked up again when the page comes). */
typedef struct page_read {
    chat *ch;
    chat_user *u;
    uint64_t conn_id;
} page_read;

static chat_conn *conn_of(chat_user *u, uint64_t conn_id)
{
    for (chat_conn *cc = u->conns; cc; cc = cc->next)
        if (app_conn_id(cc->c) == conn_id)
            return cc;
    return NULL;
}

static void conn_pump(chat *ch, chat_conn *cc);
static int cluster_page(chat_user *u, uint64_t after, page_read *pr);

/* cc has every stored message it is owed: from now on commits send to it
 * directly (deliver_one), in order since batches finish in id order. */
static void conn_live(chat *ch, chat_conn *cc)
{
    catch_stop(ch, cc);
    if (cc->resent)
        SH_LOG(SH_LOG_DEBUG, "conn=%llu chat: %zu stored message(s) sent, up to id %llu",
               (unsigned long long)app_conn_id(cc->c), cc->resent, (unsigned long long)cc->sent);
    cc->resent = 0;
}

/* A page of stored messages for a connection that is catching up.  The
 * page was read in one snapshot taken after it was asked for: a page
 * shorter than asked means the store had nothing more then.  A message
 * committed later, whose commit finished (u->committed) before this
 * answer, may not be in it, and deliver_one did not send it (the
 * connection was catching up): the connection goes live only when it
 * has everything up to u->committed, else it reads again. */
static void on_page(void *ud, int status, const chat_store_msg *msgs, size_t n)
{
    page_read *pr = ud;
    chat *ch = pr->ch;
    chat_user *u = pr->u;
    chat_conn *cc = conn_of(u, pr->conn_id);
    free(pr);
    ch->nreads--;
    u->refs--;
    if (!cc) {
        chat_maybe_free(ch);
        return;
    }
    cc->reading = false;
    if (status < 0 && u->link)
        return; /* Redis away: the pump reads again once it is back */
    if (status < 0) {
        SH_LOG(SH_LOG_ERROR, "conn=%llu chat: cannot read the stored messages of %s: %s",
               (unsigned long long)app_conn_id(cc->c), u->name, sh_strerror(status));
        conn_fail(ch, cc, "cannot read stored private messages");
        return;
    }
    bool full = false;
    for (size_t i = 0; i < n && !full && cc->catching_up && !cc->failed; i++) {
        if (msgs[i].id <= cc->sent)
            continue;
        amf_value *m = message_value(msgs[i].id, msgs[i].sender, u->name, msgs[i].text,
                                     msgs[i].text_len, msgs[i].ts);
        bool ok = app_conn_connected(cc->c) && send_private(cc->c, m);
        amf_unref(m);
        if (!ok) {
            conn_fail(ch, cc, "cannot queue a stored private message");
            return;
        }
        cc->sent = msgs[i].id;
        cc->resent++;
        ch->delivered++;
        full = app_conn_out_bytes(cc->c) >= ch->low_water;
    }
    if (!cc->catching_up || cc->failed || full)
        return; /* a full queue: the pump timer goes on once it drained */
    if (n < CHAT_PAGE_ROWS && cc->sent >= u->committed && u->loaded)
        conn_live(ch, cc); /* (not loaded: a clustered user whose channel was lost) */
    else
        conn_pump(ch, cc);
}

/* Feeds cc from the store while its output queue is under the low-water
 * mark: one page read in flight at a time, answered by on_page.  A
 * connection whose user's counters are not known yet waits for them. */
static void conn_pump(chat *ch, chat_conn *cc)
{
    chat_user *u = cc->u;
    if (!cc->catching_up || cc->reading || !u->loaded)
        return;
    if (cc->failed || !app_conn_connected(cc->c)) {
        catch_stop(ch, cc); /* closing: nothing more goes out */
        return;
    }
    if (app_conn_out_bytes(cc->c) >= ch->low_water)
        return;
    if (cc->sent < u->acked)
        cc->sent = u->acked;
    if (cc->sent >= u->committed) {
        conn_live(ch, cc);
        return;
    }
    page_read *pr = malloc(sizeof(*pr));
    if (pr)
        *pr = (page_read){.ch = ch, .u = u, .conn_id = app_conn_id(cc->c)};
    int rc = !pr       ? SH_ENOMEM
             : u->link ? cluster_page(u, cc->sent, pr)
                       : app_store_chat_page(ch->st, u->app, u->name, cc->sent, CHAT_PAGE_ROWS,
                                             on_page, pr);
    if (rc < 0) {
        free(pr);
        if (u->link && rc == SH_ESTATE)
            return; /* Redis away: the pump tries again */
        conn_fail(ch, cc, "cannot read stored private messages");
        return;
    }
    cc->reading = true;
    u->refs++;
    ch->nreads++;
}

static void pump_all(chat *ch)
{
    for (chat_conn *cc = ch->catching, *n; cc; cc = n) {
        n = cc->cnext;
        conn_pump(ch, cc);
    }
}

static void on_pump(uv_timer_t *t)
{
    pump_all(t->data);
}

/* ---- connection observer ---- */

static void cluster_conn_gone(chat *ch, chat_user *u, app_conn *c);
static void cluster_presence(chat *ch, chat_user *u, app_conn *c, bool joined);
static void cluster_watcher(chat *ch, app_conn *c, bool joined);

static size_t instance_count(const chat_user *u, const app_conn *c)
{
    size_t n = 0;
    for (const chat_conn *cc = u->conns; cc; cc = cc->next)
        if (strcmp(app_conn_instance(cc->c), app_conn_instance(c)) == 0)
            n++;
    return n;
}

static void on_connect(app_conn *c, const app_connect_info *info, void *ud)
{
    chat *ch = ud;
    (void)info;
    const char *name = app_conn_user(c);
    if (ch->stopping)
        return;
    if (!*name) {
        cluster_watcher(ch, c, true);
        return;
    }
    int rc;
    chat_user *u = user_get(ch, app_conn_app_name(c), name, strlen(name), true, &rc);
    chat_conn *cc = u ? calloc(1, sizeof(*cc)) : NULL;
    if (!cc) {
        /* Kept open, the connection would get none of its messages and
         * could still acknowledge: better closed, loudly. */
        SH_LOG(SH_LOG_ERROR, "conn=%llu chat: cannot track user %s: %s",
               (unsigned long long)app_conn_id(c), name, sh_strerror(rc ? rc : SH_ENOMEM));
        app_conn_close(c, "chat: cannot load the user's messages");
        return;
    }
    cc->c = c;
    cc->u = u;
    cc->sent = u->acked;
    cc->next = u->conns;
    u->conns = cc;
    u->nconns++;
    chat_limits l;
    limits_of(c, &l);
    if (l.presence && u->link)
        cluster_presence(ch, u, c, true);
    else if (l.presence)
        chat_presence_update(ch->presence, c, u->name, instance_count(u, c), wall_ms());
    /* Stored messages first (read now, or once the user's counters are
     * known; the rest from the check handle and the pump timer as far as
     * the output queue allows), then live ones. */
    catch_start(ch, cc);
    conn_pump(ch, cc);
}


static void on_disconnect(app_conn *c, void *ud)
{
    chat *ch = ud;
    const char *name = app_conn_user(c);
    if (!*name) {
        cluster_watcher(ch, c, false);
        return;
    }
    const char *app = app_conn_app_name(c);
    chat_user *u = user_find(ch, app, name, strlen(name));
    if (!u)
        return;
    for (chat_conn **pp = &u->conns; *pp; pp = &(*pp)->next) {
        if ((*pp)->c != c)
            continue;
        chat_conn *cc = *pp;
        *pp = cc->next;
        catch_stop(ch, cc);
        free(cc);
        u->nconns--;
        chat_limits l;
        limits_of(c, &l);
        if (l.presence && u->link)
            cluster_presence(ch, u, c, false);
        else if (l.presence)
            chat_presence_update(ch->presence, c, u->name, instance_count(u, c), wall_ms());
        if (u->link)
            cluster_conn_gone(ch, u, c);
        return;
    }
}

/* ---- methods ---- */

static int reply_error(app_conn *c, double txid, const char *code, const char *desc)
{
    app_conn_reply_error(c, txid, code, desc);
    return 0;
}

static chat_dedup *dedup_find(chat_user *s, const char *cid, uint64_t now)
{
    for (size_t i = 0; s->dedup && i < CHAT_DEDUP_MAX; i++) {
        chat_dedup *d = &s->dedup[i];
        if (d->used && now - d->t_ms <= CHAT_DEDUP_WINDOW_MS && strcmp(d->cid, cid) == 0)
            return d;
    }
    return NULL;
}

static chat_dedup *dedup_add(chat_user *s, const char *cid, uint64_t now)
{
    chat_dedup *d = NULL;
    if (!s->dedup && !(s->dedup = calloc(CHAT_DEDUP_MAX, sizeof(*s->dedup))))
        return NULL; /* the message goes out; only its retries are not recognised */
    /* Reuse the oldest slot that no pending answer points at. */
    for (size_t k = 0; k < CHAT_DEDUP_MAX && !d; k++) {
        chat_dedup *x = &s->dedup[(s->dedup_next + k) % CHAT_DEDUP_MAX];
        if (!x->pm) {
            d = x;
            s->dedup_next = (s->dedup_next + k + 1) % CHAT_DEDUP_MAX;
        }
    }
    if (!d)
        return NULL;
    memset(d, 0, sizeof(*d));
    d->used = true;
    snprintf(d->cid, sizeof(d->cid), "%s", cid);
    d->t_ms = now;
    s->dedup_ms = now;
    return d;
}

static bool rate_take(chat_user *s, uint32_t rate, uint64_t now)
{
    if (rate == 0)
        return true;
    if (!s->bucket_set) {
        s->tokens = rate;
        s->bucket_set = true;
    } else {
        s->tokens += (double)(now - s->bucket_ms) * rate / 1000.0;
        if (s->tokens > rate)
            s->tokens = rate;
    }
    s->bucket_ms = now;
    if (s->tokens < 1.0)
        return false;
    s->tokens -= 1.0;
    return true;
}

/* The clientId argument as text ("" when absent); false when unusable. */
static bool client_id_of(const rtmp_cmd *cmd, char *out, size_t outsz)
{
    out[0] = '\0';
    if (cmd->nargs < 3)
        return true;
    const amf_value *v = cmd->args[2];
    switch (amf_type_of(v)) {
    case AMF_NULL:
    case AMF_UNDEFINED:
        return true;
    case AMF_STRING: {
        size_t n;
        const char *s = amf_as_string(v, &n);
        if (n == 0 || n >= outsz || memchr(s, '\0', n))
            return false;
        memcpy(out, s, n);
        out[n] = '\0';
        return true;
    }
    case AMF_NUMBER:
    case AMF_INTEGER: {
        double d = amf_as_number(v);
        if (!isfinite(d))
            return false;
        snprintf(out, outsz, "#%.17g", d); /* '#' keeps 7 and "7" apart */
        return true;
    }
    default:
        return false;
    }
}

/* The outcome of a send that did not wait for a commit. */
typedef struct send_outcome {
    const char *code;         /* refused: an error code and description */
    const char *desc;
    bool answered;            /* a repeated clientId whose message is stored */
    uint64_t id;
    bool queued;
} send_outcome;

/* The one path of a private message, for clients and server code alike:
 * checks, de-duplication, rate, queue and store caps, then the message
 * joins the pending batch and w is answered once it is committed.
 * Returns 0 (w will be answered, or *o says what happened at once) or
 * SH_ENOMEM. */
/* Why a message for r (whose counters are known) cannot be stored now, or
 * NULL. */
static const char *admit_refusal(const chat *ch, const chat_user *r, uint32_t queue,
                                 const char **desc)
{
    if (ch->stopping) {
        *desc = "Server is shutting down";
        return CHAT_E_STORE_FAILED;
    }
    if (r->last_id - r->acked >= queue) {
        *desc = "The recipient has too many unacknowledged messages";
        return CHAT_E_QUEUE_FULL;
    }
    if (ch->unacked >= ch->max_unacked) {
        *desc = "The server holds too many unacknowledged messages (chat_max_stored)";
        return CHAT_E_STORE_FULL;
    }
    return NULL;
}

/* pm gets the next id of its recipient and joins the pending batch; it is
 * delivered and answered ("delivered" or "queued") once committed
 * (pmsg_finish).  Returns 0 or SH_ENOMEM (nothing changed). */
static int pmsg_assign(chat *ch, chat_pmsg *pm)
{
    chat_user *r = pm->to;
    chat_batch *b = batch_pending(ch);
    if (!b || push_ptr((void ***)&b->msgs, &b->nmsgs, &b->capm, pm) != 0)
        return SH_ENOMEM;
    pm->id = ++r->last_id;
    ch->unacked++;
    if (r->unconf_tail)
        r->unconf_tail->next = pm;
    else
        r->unconf_head = pm;
    r->unconf_tail = pm;
    user_mark_dirty(ch, r);
    ch->messages++;
    chat_user *s = pm->sender;
    for (size_t i = 0; s->dedup && i < CHAT_DEDUP_MAX; i++)
        if (s->dedup[i].pm == pm)
            s->dedup[i].id = pm->id;
    return 0;
}

static int user_wait(chat_user *u, chat_uwait *w);
static int cluster_submit(chat *ch, chat_user *s, const chat_limits *l, const char *to,
                          size_t tolen, const char *text, size_t textlen, const char *cid,
                          chat_waiter w, send_outcome *o, uint64_t now);

/* The one path of a private message, for clients and server code alike:
 * checks, de-duplication, rate, queue and store caps, then the message
 * joins the pending batch and w is answered once it is committed.  A
 * recipient whose counters are not known yet is read first: the message
 * waits on its record, in order with everything else that needs them,
 * and the caps are checked then (refusals go to w).
 * Returns 0 (w will be answered, or *o says what happened at once) or
 * SH_ENOMEM. */
static int submit(chat *ch, const char *app, const chat_limits *l, const char *me,
                  const char *to, size_t tolen, const char *text, size_t textlen,
                  const char *cid, chat_waiter w, send_outcome *o)
{
    memset(o, 0, sizeof(*o));
#define REFUSE(c, d) do { o->code = (c); o->desc = (d); return 0; } while (0)
    if (!*me)
        REFUSE(CHAT_E_DENIED, "Connect with a user name to send");
    if (!user_listed(l->users, me, strlen(me)))
        REFUSE(CHAT_E_DENIED, "Sender is not a user of this application");
    if (textlen > l->max_text)
        REFUSE(CHAT_E_TOO_LONG, "Text longer than chat_max_text");
    if (!app_user_name_ok(to, tolen) || !user_listed(l->users, to, tolen))
        REFUSE(CHAT_E_UNKNOWN_USER, "No such user");
    if (tolen == strlen(me) && memcmp(to, me, tolen) == 0)
        REFUSE(CHAT_E_DENIED, "Cannot send a private message to yourself");
    if (ch->stopping)
        REFUSE(CHAT_E_STORE_FAILED, "Server is shutting down");

    int rc;
    /* The sender's record holds its rate and clientIds: its counters are
     * not needed. */
    chat_user *s = user_get(ch, app, me, strlen(me), false, &rc);
    if (!s)
        REFUSE(CHAT_E_STORE_FAILED, "Cannot load the sender");
    uint64_t now = uv_now(ch->loop);
    if (cid[0]) {
        chat_dedup *d = dedup_find(s, cid, now);
        if (d && d->pm) {
            if (d->pm->nwaiters >= CHAT_WAITERS_MAX)
                REFUSE(CHAT_E_RATE_LIMITED, "Too many retries");
            d->pm->waiters[d->pm->nwaiters++] = w;
            return 0;
        }
        if (d) {
            o->answered = true;
            o->id = d->id;
            o->queued = d->queued;
            return 0;
        }
    }
    if (!rate_take(s, l->rate, now))
        REFUSE(CHAT_E_RATE_LIMITED, "Too many messages (chat_rate)");
    if (s->link)
        return cluster_submit(ch, s, l, to, tolen, text, textlen, cid, w, o, now);
    s->refs++; /* keep s while the recipient is made */
    chat_user *r = user_get(ch, app, to, tolen, true, &rc);
    s->refs--;
    if (!r)
        REFUSE(CHAT_E_STORE_FAILED, "Cannot load the recipient");
    const char *code = NULL, *desc = NULL;
    if (r->loaded && (code = admit_refusal(ch, r, l->queue, &desc)) != NULL)
        REFUSE(code, desc);
    if (!r->loaded && r->nwait >= CHAT_USER_WAIT_MAX)
        REFUSE(CHAT_E_STORE_FAILED, "Too many requests wait for the store");
#undef REFUSE

    chat_pmsg *pm = calloc(1, sizeof(*pm));
    chat_uwait *uw = r->loaded ? NULL : calloc(1, sizeof(*uw));
    if (!pm || !(pm->text = dup_n(text, textlen)) || (!r->loaded && !uw)) {
        if (pm)
            free(pm->text);
        free(pm);
        free(uw);
        return SH_ENOMEM;
    }
    pm->ts = wall_ms();
    pm->text_len = textlen;
    pm->to = r;
    pm->sender = s;
    if (r->loaded && pmsg_assign(ch, pm) < 0) {
        free(pm->text);
        free(pm);
        return SH_ENOMEM;
    }
    r->refs++;
    s->refs++;
    chat_dedup *d = cid[0] ? dedup_add(s, cid, now) : NULL;
    if (d) {
        d->id = pm->id; /* 0 until the recipient is read: retries wait on pm */
        d->pm = pm;
    }
    pm->waiters[pm->nwaiters++] = w;
    if (uw) {
        *uw = (chat_uwait){.kind = UWAIT_SEND, .pm = pm, .queue = l->queue};
        user_wait(r, uw);
    }
    return 0;
}

static int method_send_private(app_conn *c, const rtmp_cmd *cmd, void *ud)
{
    chat *ch = ud;
    double txid = cmd->txid;
    chat_limits l;
    limits_of(c, &l);
    const char *me = app_conn_user(c);
    if (!*me)
        return reply_error(c, txid, CHAT_E_DENIED, "Connect with a user name to send");
    if (!user_listed(l.users, me, strlen(me)))
        return reply_error(c, txid, CHAT_E_DENIED, "Sender is not a user of this application");
    size_t tolen = 0, textlen = 0;
    const char *to = arg_string(cmd, 0, &tolen);
    const char *text = arg_string(cmd, 1, &textlen);
    char cid[CHAT_CLIENT_ID_MAX + 1];
    if (!to || !text || !client_id_of(cmd, cid, sizeof(cid)))
        return reply_error(c, txid, CHAT_E_BAD_REQUEST,
                           "Expected chat.sendPrivate(to: string, text: string [, clientId])");
    send_outcome o;
    int rc = submit(ch, app_conn_app_name(c), &l, me, to, tolen, text, textlen, cid,
                    (chat_waiter){.conn_id = app_conn_id(c), .txid = txid}, &o);
    if (rc < 0)
        return rc;
    if (o.code)
        return reply_error(c, txid, o.code, o.desc);
    if (o.answered)
        send_result(c, txid, o.id, o.queued ? "queued" : "delivered");
    return 0;
}

int chat_send(app_server *srv, const char *app, const char *from, const char *to,
              const char *text, size_t text_len, const char *client_id, chat_sent_fn fn,
              void *ud)
{
    chat *ch = app_server_ext(srv, APP_EXT_CHAT);
    if (!ch) {
        fn(ud, CHAT_E_STORE_FAILED, "Chat is not available", 0, false);
        return 0;
    }
    const app_app_config *a = app_config_find_app(app_server_config(srv), app);
    chat_limits l = a ? (chat_limits){a->chat_max_text, a->chat_rate, a->chat_queue,
                                      a->presence, a->users ? a->users : ""}
                      : (chat_limits){CHAT_DEFAULT_MAX_TEXT, CHAT_DEFAULT_RATE,
                                      CHAT_DEFAULT_QUEUE, false, ""};
    l.presence = app_presence_on(srv, app, a);
    l.rate = 0; /* server code is not rate-limited */
    if (!app_user_name_ok(from, strlen(from))) {
        fn(ud, CHAT_E_BAD_REQUEST, "Bad sender name", 0, false);
        return 0;
    }
    char cid[CHAT_CLIENT_ID_MAX + 1];
    snprintf(cid, sizeof(cid), "%s", client_id ? client_id : "");
    send_outcome o;
    int rc = submit(ch, app, &l, from, to, strlen(to), text, text_len, cid,
                    (chat_waiter){.fn = fn, .ud = ud}, &o);
    if (rc < 0)
        return rc;
    if (o.code)
        fn(ud, o.code, o.desc, 0, false);
    else if (o.answered)
        fn(ud, NULL, NULL, o.id, o.queued);
    return 0;
}

/* A configuration reload: the server-wide cap and the pacing follow. */
static void on_reconfigure(app_server *s, const app_config *old_cfg, const app_config *new_cfg,
                           void *ud)
{
    (void)s;
    (void)old_cfg;
    chat *ch = ud;
    ch->max_unacked = new_cfg->chat_max_stored;
    ch->low_water = new_cfg->max_output_bytes / 4;
}

void chat_get_stats(const app_server *srv, chat_stats *st)
{
    const chat *ch = app_server_ext(srv, APP_EXT_CHAT);
    memset(st, 0, sizeof(*st));
    if (!ch)
        return;
    st->submitted = ch->messages;
    st->stored = ch->stored;
    st->delivered = ch->delivered;
    st->acked = ch->acked;
    st->unacked = ch->unacked;
    st->batches = ch->batches;
    st->batch_failures = ch->batch_failures;
}

int chat_user_state(app_server *srv, const char *app, const char *user, chat_state_fn fn,
                    void *ud)
{
    chat *ch = app_server_ext(srv, APP_EXT_CHAT);
    if (!ch) {
        fn(ud, SH_ESTATE, 0, 0, 0);
        return 0;
    }
    app_cluster_link *link = app_cluster_link_for(ch->cluster, app);
    if (link) {
        /* Redis has the truth; nothing of the user needs to be kept here */
        int rc = chat_redis_user_read(link, app, user, fn, ud);
        if (rc < 0 && rc != SH_ENOMEM)
            fn(ud, SH_EIO, 0, 0, 0);
        return rc == SH_ENOMEM ? rc : 0;
    }
    int rc;
    chat_user *u = user_get(ch, app, user, strlen(user), true, &rc);
    if (!u) {
        fn(ud, rc == SH_ENOMEM ? SH_EIO : rc, 0, 0, 0);
        return 0;
    }
    if (u->loaded) {
        fn(ud, 0, u->committed, u->acked, u->committed - u->acked);
        return 0;
    }
    chat_uwait *w = u->nwait < CHAT_USER_WAIT_MAX ? calloc(1, sizeof(*w)) : NULL;
    if (!w)
        return SH_ENOMEM;
    *w = (chat_uwait){.kind = UWAIT_STATE, .fn = fn, .ud = ud};
    return user_wait(u, w);
}

/* chat.ack(id) of connection c (NULL: it went away while the user's
 * counters were read; the acknowledgement still counts). */
static int ack_apply(chat *ch, chat_user *u, app_conn *c, double txid, double d)
{
    /* Never past the last stored id: a message not yet committed was sent
     * to nobody, and acknowledging it would delete it in its own batch. */
    uint64_t id = d >= (double)u->committed ? u->committed : (uint64_t)d;
    if (id > u->acked && !ch->stopping) {
        uint64_t k = id - u->acked;
        ch->unacked = ch->unacked > k ? ch->unacked - k : 0;
        ch->acked += k;
        u->acked = id;
        if (user_mark_dirty(ch, u) != 0)
            return SH_ENOMEM;
    }
    if (!c)
        return 0;
    amf_value *o = amf_object_new(NULL);
    if (o)
        amf_object_set_cstr(o, "acked", amf_number((double)u->acked));
    app_conn_reply_result(c, txid, o);
    amf_unref(o);
    return 0;
}

static int cluster_ack(chat *ch, chat_user *u, app_conn *c, double txid, double d);

static int method_ack(app_conn *c, const rtmp_cmd *cmd, void *ud)
{
    chat *ch = ud;
    const char *me = app_conn_user(c);
    if (!*me)
        return reply_error(c, cmd->txid, CHAT_E_DENIED, "Connect with a user name to ack");
    if (cmd->nargs < 1 || (amf_type_of(cmd->args[0]) != AMF_NUMBER &&
                           amf_type_of(cmd->args[0]) != AMF_INTEGER))
        return reply_error(c, cmd->txid, CHAT_E_BAD_REQUEST, "Expected chat.ack(id: number)");
    double d = amf_as_number(cmd->args[0]);
    if (!isfinite(d) || d < 0)
        return reply_error(c, cmd->txid, CHAT_E_BAD_REQUEST, "Bad message id");
    int rc;
    chat_user *u = user_get(ch, app_conn_app_name(c), me, strlen(me), false, &rc);
    if (u && u->link)
        return cluster_ack(ch, u, c, cmd->txid, d);
    if (u && user_load(ch, u) < 0)
        u = NULL; /* an idle record goes with the next sweep */
    if (!u)
        return reply_error(c, cmd->txid, CHAT_E_STORE_FAILED, "Cannot load the user");
    if (u->loaded)
        return ack_apply(ch, u, c, cmd->txid, d);
    /* after what came before it for this user */
    chat_uwait *w = u->nwait < CHAT_USER_WAIT_MAX ? calloc(1, sizeof(*w)) : NULL;
    if (!w)
        return reply_error(c, cmd->txid, CHAT_E_STORE_FAILED,
                           "Too many requests wait for the store");
    *w = (chat_uwait){.kind = UWAIT_ACK, .conn_id = app_conn_id(c), .txid = cmd->txid, .ack = d};
    return user_wait(u, w);
}

/* ---- a user's counters ---- */

/* w waits for u's counters (u is being read).  Returns 0. */
static int user_wait(chat_user *u, chat_uwait *w)
{
    if (u->wait_tail)
        u->wait_tail->next = w;
    else
        u->wait_head = w;
    u->wait_tail = w;
    u->nwait++;
    return 0;
}

static void on_user_read(void *ud, int status, uint64_t last_id, uint64_t acked);
static void cluster_user_read(chat *ch, chat_user *u, int status, uint64_t last_id,
                              uint64_t acked);

/* Asks for u's counters unless they are known or asked for already. */
static int user_load(chat *ch, chat_user *u)
{
    if (u->link)
        return cluster_user_load(ch, u);
    if (u->loaded || u->loading)
        return 0;
    int rc = app_store_chat_user(ch->st, u->app, u->name, on_user_read, u);
    if (rc < 0)
        return rc;
    u->loading = true;
    u->refs++;
    ch->nreads++;
    return 0;
}

/* What waited for u's counters, in order: status 0 (they are known now)
 * or the read's error. */
static void user_waits_run(chat *ch, chat_user *u, int status)
{
    chat_uwait *w = u->wait_head;
    u->wait_head = u->wait_tail = NULL;
    u->nwait = 0;
    while (w) {
        chat_uwait *next = w->next;
        const char *code = NULL, *desc = "Cannot load the recipient";
        app_conn *c;
        switch (w->kind) {
        case UWAIT_SEND:
            if (status == 0 && !(code = admit_refusal(ch, u, w->queue, &desc)) &&
                pmsg_assign(ch, w->pm) < 0) {
                code = CHAT_E_STORE_FAILED;
                desc = "Out of memory";
            } else if (status < 0) {
                code = CHAT_E_STORE_FAILED;
            }
            if (code)
                pmsg_answer(ch, w->pm, code, desc);
            break;
        case UWAIT_ACK:
            c = user_conn_by_id(u, w->conn_id);
            if (status == 0 && ack_apply(ch, u, c, w->txid, w->ack) == 0)
                break;
            if (c)
                app_conn_reply_error(c, w->txid, CHAT_E_STORE_FAILED, "Cannot load the user");
            break;
        case UWAIT_STATE:
            w->fn(w->ud, status < 0 ? SH_EIO : 0, u->committed, u->acked,
                  u->committed - u->acked);
            break;
        }
        free(w);
        w = next;
    }
}

/* u's counters came from the store (or could not be read: what waited
 * for them is refused and the user's connections closed, since they
 * would get none of their stored messages; the next need asks again). */
static void on_user_read(void *ud, int status, uint64_t last_id, uint64_t acked)
{
    chat_user *u = ud;
    chat *ch = u->ch;
    ch->nreads--;
    u->loading = false;
    u->refs--;
    if (u->link) {
        cluster_user_read(ch, u, status, last_id, acked);
        chat_maybe_free(ch);
        return;
    }
    if (status == 0) {
        u->last_id = last_id;
        u->acked = acked;
        u->committed = last_id;
        u->loaded = true;
    } else {
        SH_LOG(SH_LOG_ERROR, "chat: cannot load user %s of %s from the store: %s", u->name,
               u->app, sh_strerror(status));
    }
    user_waits_run(ch, u, status);
    for (chat_conn *cc = u->conns; cc; cc = cc->next) {
        if (status == 0)
            conn_pump(ch, cc); /* its stored messages first */
        else
            conn_fail(ch, cc, "cannot load the user's messages");
    }
    chat_maybe_free(ch);
}

/* ---- clustered applications: the same rules, state in Redis ----
 *
 * What differs from the SQLite path above (docs/cluster-chat.md):
 *  - a message gets its id, is stored and is published by one script in
 *    the recipient's Redis; the sender is answered from its reply;
 *  - a recipient's connections on this node get live messages from the
 *    user's channel (subscribed while the user has connections here), not
 *    from this node's commits; u->committed is the highest id heard there
 *    or read since the subscription was confirmed;
 *  - pages and counters are read from Redis; an acknowledgement is a
 *    script whose answer is the acknowledged id;
 *  - Redis away: sends and acks are refused, connections stay open and
 *    go back to catching up; once the channel is confirmed again the
 *    counters are read again and each connection goes on from the last id
 *    it was given, so nothing is skipped and nothing is sent twice.
 * A live message whose previous id (published with it) is not the last a
 * connection got (a publish missed) sends that connection back to the
 * stored queue. */

static void cluster_pump_user(chat *ch, chat_user *u)
{
    for (chat_conn *cc = u->conns; cc; cc = cc->next)
        conn_pump(ch, cc);
}

static void cluster_on_user_read(void *ud, int status, uint64_t last_id, uint64_t acked,
                                 uint64_t queued)
{
    (void)queued;
    on_user_read(ud, status, last_id, acked);
}

/* Subscribes (the READY reads the counters) or reads the counters. */
static int cluster_user_load(chat *ch, chat_user *u)
{
    if (!u->subscribed) {
        int rc = chat_redis_subscribe(u->link, u->app, u->name, u);
        if (rc < 0)
            return rc;
        u->subscribed = true;
        u->sub_ready = false;
        u->loaded = false;
        u->committed = 0;
        u->refs++;
        return 0;
    }
    if (u->loading) {
        u->reload = true;
        return 0;
    }
    if (u->loaded || !u->sub_ready)
        return 0;
    int rc = chat_redis_user_read(u->link, u->app, u->name, cluster_on_user_read, u);
    if (rc < 0)
        return rc == SH_ESTATE ? 0 : rc; /* down: read again when it is back */
    u->loading = true;
    u->refs++;
    ch->nreads++;
    return 0;
}

static void cluster_user_read(chat *ch, chat_user *u, int status, uint64_t last_id,
                              uint64_t acked)
{
    if (!u->subscribed || !u->sub_ready)
        return; /* a later READY reads again */
    if (u->reload) {
        u->reload = false;
        cluster_user_load(ch, u);
        return;
    }
    if (status < 0)
        return; /* logged; the sweep or the link's return reads again */
    u->last_id = last_id;
    u->acked = acked;
    if (last_id > u->committed)
        u->committed = last_id;
    u->loaded = true;
    cluster_pump_user(ch, u);
}

/* The user's channel (chat_redis_set_handlers). */
static void cluster_on_live(void *ud, app_redis_sub_event ev, uint64_t prev,
                            const chat_store_msg *m)
{
    chat_user *u = ud;
    chat *ch = u->ch;
    if (ev == APP_REDIS_SUB_READY) {
        u->sub_ready = true;
        u->loaded = false;
        cluster_user_load(ch, u);
        return;
    }
    if (ev == APP_REDIS_SUB_LOST) {
        /* Publishes may be missed from now on: every connection goes
         * back to the stored queue, read once the channel is back. */
        u->sub_ready = false;
        u->loaded = false;
        u->committed = 0;
        for (chat_conn *cc = u->conns; cc; cc = cc->next)
            catch_start(ch, cc);
        return;
    }
    if (!m) { /* undecodable: treat as a gap */
        for (chat_conn *cc = u->conns; cc; cc = cc->next)
            catch_start(ch, cc);
        return;
    }
    if (m->id > u->committed)
        u->committed = m->id;
    if (!u->loaded)
        return; /* the connections are catching up: the reads get it */
    amf_value *v = NULL;
    for (chat_conn *cc = u->conns; cc; cc = cc->next) {
        if (cc->failed || cc->catching_up || m->id <= cc->sent)
            continue;
        if (prev != cc->sent) {
            catch_start(ch, cc); /* something before it was missed */
            continue;
        }
        if (!v && !(v = message_value(m->id, m->sender, u->name, m->text, m->text_len, m->ts))) {
            conn_fail(ch, cc, "cannot queue a private message");
            continue;
        }
        deliver_one(ch, cc, v, m->id);
    }
    amf_unref(v);
}

/* A page from Redis: its acknowledged id first (acks may come from other
 * nodes), then the common handling. */
static void cluster_on_page(void *ud, int status, uint64_t acked, const chat_store_msg *msgs,
                            size_t n)
{
    page_read *pr = ud;
    if (status == 0 && acked > pr->u->acked)
        pr->u->acked = acked;
    on_page(ud, status, msgs, n);
}

static int cluster_page(chat_user *u, uint64_t after, page_read *pr)
{
    return chat_redis_page(u->link, u->app, u->name, after, CHAT_PAGE_ROWS, cluster_on_page, pr);
}

/* The last connection of u on this node is gone (or one of several). */
static void cluster_conn_gone(chat *ch, chat_user *u, app_conn *c)
{
    (void)ch;
    (void)c;
    if (u->nconns || !u->subscribed)
        return;
    chat_redis_unsubscribe(u->link, u->app, u->name);
    u->subscribed = false;
    u->sub_ready = false;
    u->loaded = false;
    u->reload = false;
    u->refs--;
}

static void cluster_on_sent(void *ud, int status, uint64_t id, bool delivered)
{
    chat_pmsg *pm = ud;
    chat *ch = pm->sender->ch;
    ch->nreads--;
    if (status == 0) {
        pm->id = id;
        pm->queued = !delivered;
        ch->stored++;
        pmsg_answer(ch, pm, NULL, NULL);
    } else if (status == SH_ELIMIT) {
        pmsg_answer(ch, pm, CHAT_E_QUEUE_FULL,
                    "The recipient has too many unacknowledged messages");
    } else {
        pmsg_answer(ch, pm, CHAT_E_STORE_FAILED,
                    "No answer from Redis: the message may not be stored; retry with the "
                    "same clientId");
    }
    chat_maybe_free(ch);
}

/* submit's end for a clustered application: the script stores and
 * publishes, its reply answers w.  Queue cap: in the script; the
 * server-wide chat_max_stored does not apply (Redis holds the messages). */
static int cluster_submit(chat *ch, chat_user *s, const chat_limits *l, const char *to,
                          size_t tolen, const char *text, size_t textlen, const char *cid,
                          chat_waiter w, send_outcome *o, uint64_t now)
{
    int rc;
    s->refs++; /* keep s while the recipient is made */
    chat_user *r = user_get(ch, s->app, to, tolen, false, &rc);
    s->refs--;
    if (!r) {
        o->code = CHAT_E_STORE_FAILED;
        o->desc = "Cannot make the recipient";
        return 0;
    }
    chat_pmsg *pm = calloc(1, sizeof(*pm));
    if (!pm || !(pm->text = dup_n(text, textlen))) {
        free(pm);
        return SH_ENOMEM;
    }
    pm->ts = wall_ms();
    pm->text_len = textlen;
    pm->to = r;
    pm->sender = s;
    rc = chat_redis_send(s->link, s->app, r->name, s->name, pm->ts, text, textlen, cid,
                         l->queue, cluster_on_sent, pm);
    if (rc < 0) {
        free(pm->text);
        free(pm);
        if (rc == SH_ENOMEM)
            return rc;
        o->code = CHAT_E_STORE_FAILED;
        o->desc = rc == SH_ESTATE ? "Redis is unreachable: the message was not stored"
                                  : "The message cannot be sent to Redis";
        return 0;
    }
    r->refs++;
    s->refs++;
    ch->nreads++;
    ch->messages++;
    chat_dedup *d = cid[0] ? dedup_add(s, cid, now) : NULL;
    if (d)
        d->pm = pm;
    pm->waiters[pm->nwaiters++] = w;
    return 0;
}

typedef struct cluster_ack_req {
    chat_user *u;
    uint64_t conn_id;
    double txid;
} cluster_ack_req;

static void cluster_on_acked(void *ud, int status, uint64_t acked, uint64_t removed)
{
    cluster_ack_req *a = ud;
    chat_user *u = a->u;
    chat *ch = u->ch;
    ch->nreads--;
    u->refs--;
    app_conn *c = user_conn_by_id(u, a->conn_id);
    if (status == 0 && acked > u->acked)
        u->acked = acked;
    if (status == 0)
        ch->acked += removed; /* ids are not consecutive: Redis counts */
    if (c && status == 0) {
        amf_value *o = amf_object_new(NULL);
        if (o)
            amf_object_set_cstr(o, "acked", amf_number((double)acked));
        app_conn_reply_result(c, a->txid, o);
        amf_unref(o);
    } else if (c) {
        app_conn_reply_error(c, a->txid, CHAT_E_STORE_FAILED,
                             "No answer from Redis: the acknowledgement may not be stored");
    }
    free(a);
    chat_maybe_free(ch);
}

static int cluster_ack(chat *ch, chat_user *u, app_conn *c, double txid, double d)
{
    if (ch->stopping)
        return reply_error(c, txid, CHAT_E_STORE_FAILED, "Server is shutting down");
    uint64_t id = d >= 9007199254740992.0 ? UINT64_C(9007199254740992) : (uint64_t)d;
    cluster_ack_req *a = malloc(sizeof(*a));
    if (!a)
        return SH_ENOMEM;
    *a = (cluster_ack_req){.u = u, .conn_id = app_conn_id(c), .txid = txid};
    int rc = chat_redis_ack(u->link, u->app, u->name, id, cluster_on_acked, a);
    if (rc < 0) {
        free(a);
        return rc == SH_ENOMEM ? rc
                               : reply_error(c, txid, CHAT_E_STORE_FAILED,
                                             "Redis is unreachable: nothing was acknowledged");
    }
    u->refs++;
    ch->nreads++;
    return 0;
}

/* ---- clustered presence ----
 *
 * A room's `presence` object on this node mirrors Redis while this node
 * has named users in the room, or connections without a name (which may
 * show it; cluster_watcher): it subscribes to the room's channel, reads
 * the room at one version once the subscription is confirmed, and applies
 * every published change with a higher version (changes heard while the
 * read is in flight wait for it).  This node's own users go to Redis
 * (chat_redis_presence_set) and come back through the channel like
 * everybody else's, so every node shows the same totals.  A node that dies
 * leaves entries behind until its heartbeat key expires; every node sweeps
 * its rooms every node_ttl_ms / 6. */

#define PRES_HELD_MAX 4096

typedef struct pres_change {
    char user[APP_NAME_MAX + 1];
    size_t count;
    int64_t since;
    uint64_t ver;
} pres_change;

typedef struct cluster_room {
    chat *ch;
    app_cluster_link *link;
    char *room;            /* owned; the rooms map's key */
    size_t rlen;
    size_t users;          /* users with connections in the room here, and
                            * connections without a user name (watchers) */
    uint64_t version;      /* of the last change applied */
    bool need_read;        /* READY heard: read the room */
    bool reading;          /* a read in flight: changes wait in held */
    bool dead;             /* released while reading: freed when it ends */
    pres_change *held;
    size_t nheld, capheld;
    char **snap;           /* users seen by the read in flight */
    size_t nsnap, capsnap;
} cluster_room;

static void room_free(cluster_room *r)
{
    for (size_t i = 0; i < r->nsnap; i++)
        free(r->snap[i]);
    free(r->snap);
    free(r->held);
    free(r->room);
    free(r);
}

static void room_read(cluster_room *r);

static void room_on_snap(void *ud, int status, uint64_t ver, const char *user, size_t count,
                         int64_t since)
{
    cluster_room *r = ud;
    chat *ch = r->ch;
    if (user) {
        if (r->dead)
            return;
        chat_presence_set(ch->presence, r->room, user, count, since);
        if (r->nsnap == r->capsnap) {
            size_t nc = r->capsnap ? 2 * r->capsnap : 16;
            char **n = realloc(r->snap, nc * sizeof(*n));
            if (!n)
                return;
            r->snap = n;
            r->capsnap = nc;
        }
        if ((r->snap[r->nsnap] = strdup(user)) != NULL)
            r->nsnap++;
        return;
    }
    r->reading = false;
    ch->nreads--;
    if (r->dead) {
        room_free(r);
        chat_maybe_free(ch);
        return;
    }
    if (status == 0) {
        chat_presence_retain(ch->presence, r->room, r->snap, r->nsnap);
        r->version = ver;
        for (size_t i = 0; i < r->nheld; i++) {
            pres_change *x = &r->held[i];
            if (x->ver <= r->version)
                continue;
            chat_presence_set(ch->presence, r->room, x->user, x->count, x->since);
            r->version = x->ver;
        }
    } else {
        r->need_read = true; /* the sweep timer reads again */
    }
    r->nheld = 0;
    for (size_t i = 0; i < r->nsnap; i++)
        free(r->snap[i]);
    r->nsnap = 0;
    if (r->need_read)
        room_read(r);
}

static void room_read(cluster_room *r)
{
    if (r->reading)
        return; /* need_read stays: read again when this one ends */
    if (chat_redis_presence_read(r->link, r->room, room_on_snap, r) < 0)
        return; /* down: the sweep timer or the link's return reads */
    r->need_read = false;
    r->reading = true;
    r->ch->nreads++;
}

/* The room's channel (chat_redis_set_handlers). */
static void cluster_on_room(void *ud, app_redis_sub_event ev, uint64_t ver, const char *user,
                            size_t count, int64_t since)
{
    cluster_room *r = ud;
    if (ev == APP_REDIS_SUB_READY) {
        r->need_read = true;
        room_read(r);
        return;
    }
    if (ev == APP_REDIS_SUB_LOST) {
        r->version = 0; /* Redis may come back empty: take its versions */
        return;
    }
    if (r->reading) {
        if (r->nheld == PRES_HELD_MAX) {
            r->need_read = true; /* too many: read the room again after */
            return;
        }
        if (r->nheld == r->capheld) {
            size_t nc = r->capheld ? 2 * r->capheld : 16;
            pres_change *n = realloc(r->held, nc * sizeof(*n));
            if (!n) {
                r->need_read = true;
                return;
            }
            r->held = n;
            r->capheld = nc;
        }
        pres_change *x = &r->held[r->nheld++];
        snprintf(x->user, sizeof(x->user), "%s", user);
        x->count = count;
        x->since = since;
        x->ver = ver;
        return;
    }
    if (ver <= r->version)
        return; /* older than what the read gave */
    r->version = ver;
    chat_presence_set(r->ch->presence, r->room, user, count, since);
}

static cluster_room *room_make(chat *ch, app_cluster_link *l, const char *room, size_t rlen)
{
    cluster_room *r = calloc(1, sizeof(*r));
    if (!r || !(r->room = dup_n(room, rlen))) {
        free(r);
        return NULL;
    }
    r->ch = ch;
    r->link = l;
    r->rlen = rlen;
    if (sh_map_put(&ch->rooms, r->room, rlen, r) != 0) {
        room_free(r);
        return NULL;
    }
    if (chat_redis_presence_subscribe(l, r->room, r) != 0) {
        sh_map_del(&ch->rooms, r->room, rlen);
        room_free(r);
        return NULL;
    }
    return r;
}

static void room_release(chat *ch, cluster_room *r)
{
    chat_redis_presence_unsubscribe(r->link, r->room);
    sh_map_del(&ch->rooms, r->room, r->rlen);
    chat_presence_drop(ch->presence, r->room);
    if (r->reading)
        r->dead = true;
    else
        room_free(r);
}

/* A presence write that Redis must confirm: one that got no answer (a
 * leave lost in a Redis crash would leave the user listed while this node
 * lives) is remembered and written again, with the count of that moment,
 * when the link is back. */
typedef struct pres_write {
    chat *ch;
    size_t klen;
    char key[];            /* room, NUL, user */
} pres_write;

static void pres_dirty_add(chat *ch, const char *key, size_t klen)
{
    if (ch->stopping || sh_map_get(&ch->pres_dirty, key, klen))
        return;
    char *k = dup_n(key, klen);
    if (!k || sh_map_put(&ch->pres_dirty, k, klen, k) != 0) {
        free(k);
        SH_LOG(SH_LOG_WARN, "presence: out of memory: an entry may stay in Redis until this "
               "node stops");
    }
}

static void pres_write_done(void *ud, int status)
{
    pres_write *w = ud;
    chat *ch = w->ch;
    ch->nreads--;
    if (status < 0)
        pres_dirty_add(ch, w->key, w->klen);
    free(w);
    chat_maybe_free(ch);
}

/* Tells Redis that this node has `count` connections of user in room. */
static void pres_tell(chat *ch, app_cluster_link *l, const char *room, const char *user,
                      size_t count)
{
    size_t rl = strlen(room), ul = strlen(user);
    pres_write *w = malloc(sizeof(*w) + rl + 1 + ul + 1);
    if (!w) {
        SH_LOG(SH_LOG_WARN, "presence: out of memory for %s in %s", user, room);
        return;
    }
    w->ch = ch;
    w->klen = rl + 1 + ul;
    memcpy(w->key, room, rl + 1);
    memcpy(w->key + rl + 1, user, ul + 1);
    int rc = chat_redis_presence_set(l, room, app_cluster_node_id(ch->cluster), user, count,
                                     wall_ms(), pres_write_done, w);
    if (rc < 0) {
        SH_LOG(SH_LOG_DEBUG, "presence: %s in %s not told to Redis (%s): told again once it "
               "is back", user, room, sh_strerror(rc));
        pres_dirty_add(ch, w->key, w->klen);
        free(w);
        return;
    }
    ch->nreads++;
}

/* The link is back: the writes Redis did not confirm, again, with the
 * counts of now (those of a Redis still away stay). */
static void pres_dirty_retry(chat *ch, char *key)
{
    const char *room = key, *user = key + strlen(key) + 1;
    const char *slash = strchr(room, '/');
    char app[APP_NAME_MAX + 1];
    size_t alen = slash ? (size_t)(slash - room) : 0;
    if (!slash || alen > APP_NAME_MAX)
        return;
    memcpy(app, room, alen);
    app[alen] = '\0';
    app_cluster_link *l = app_cluster_link_for(ch->cluster, app);
    if (!l)
        return;
    chat_user *u = user_find(ch, app, user, strlen(user));
    size_t count = 0;
    for (chat_conn *cc = u ? u->conns : NULL; cc; cc = cc->next)
        count += strcmp(app_conn_instance(cc->c), slash + 1) == 0;
    pres_tell(ch, l, room, user, count);
}

static bool pres_dirty_take(void *val, void *ctx)
{
    char ***list = ctx;
    *(*list)++ = val;
    return true;
}

static void pres_dirty_flush(chat *ch)
{
    size_t n = ch->pres_dirty.count;
    char **keys = n ? calloc(n, sizeof(*keys)) : NULL;
    if (!keys)
        return;
    char **end = keys;
    sh_map_sweep(&ch->pres_dirty, pres_dirty_take, &end);
    for (char **k = keys; k < end; k++) {
        pres_dirty_retry(ch, *k);
        free(*k);
    }
    free(keys);
}

/* u's connections in c's room changed (joined: c was added, else
 * removed): this node's entry goes to Redis, and the room is mirrored
 * while this node has users there. */
static void cluster_presence(chat *ch, chat_user *u, app_conn *c, bool joined)
{
    char room[2 * APP_NAME_MAX + 2];
    int n = snprintf(room, sizeof(room), "%s/%s", app_conn_app_name(c), app_conn_instance(c));
    if (n < 0 || (size_t)n >= sizeof(room))
        return;
    size_t count = instance_count(u, c); /* after the change */
    cluster_room *r = sh_map_get(&ch->rooms, room, (size_t)n);
    if (joined && count == 1) {
        if (!r)
            r = room_make(ch, u->link, room, (size_t)n);
        if (r)
            r->users++;
        else
            SH_LOG(SH_LOG_WARN, "conn=%llu presence: cannot follow %s",
                   (unsigned long long)app_conn_id(c), room);
    }
    pres_tell(ch, u->link, room, u->name, count);
    if (!joined && count == 0 && r && r->users && --r->users == 0)
        room_release(ch, r);
}

/* A connection without a user name is no one in presence, but it may show
 * the room's `presence`: the room is mirrored while it is open too, so an
 * anonymous page on a node without named users of the room sees everyone
 * the other nodes have. */
static void cluster_watcher(chat *ch, app_conn *c, bool joined)
{
    if (!joined) {
        cluster_room *r = sh_map_del_ptr(&ch->watchers, c);
        if (r && r->users && --r->users == 0)
            room_release(ch, r);
        return;
    }
    chat_limits l;
    limits_of(c, &l);
    app_cluster_link *link = app_cluster_link_for(ch->cluster, app_conn_app_name(c));
    if (!l.presence || !link)
        return;
    char room[2 * APP_NAME_MAX + 2];
    int n = snprintf(room, sizeof(room), "%s/%s", app_conn_app_name(c), app_conn_instance(c));
    if (n < 0 || (size_t)n >= sizeof(room))
        return;
    cluster_room *r = sh_map_get(&ch->rooms, room, (size_t)n);
    if (!r)
        r = room_make(ch, link, room, (size_t)n);
    if (r && sh_map_put_ptr(&ch->watchers, c, r) == 0) {
        r->users++;
        return;
    }
    if (r && !r->users)
        room_release(ch, r);
    SH_LOG(SH_LOG_WARN, "conn=%llu presence: cannot follow %s",
           (unsigned long long)app_conn_id(c), room);
}

/* The link came back: tell Redis again who is here (it may have restarted
 * empty, or missed a change). */
static bool announce_one(void *val, void *ctx)
{
    chat_user *u = val;
    chat *ch = ctx;
    for (chat_conn *cc = u->conns; u->link && cc; cc = cc->next) {
        chat_limits l;
        limits_of(cc->c, &l);
        bool first = l.presence;
        for (chat_conn *p = u->conns; first && p != cc; p = p->next)
            first = strcmp(app_conn_instance(p->c), app_conn_instance(cc->c)) != 0;
        if (!first)
            continue;
        char room[2 * APP_NAME_MAX + 2];
        snprintf(room, sizeof(room), "%s/%s", u->app, app_conn_instance(cc->c));
        pres_tell(ch, u->link, room, u->name, instance_count(u, cc->c));
    }
    return false;
}

static void on_psweep(uv_timer_t *t)
{
    chat *ch = t->data;
    cluster_room *r;
    for (size_t i = 0; (r = sh_map_next(&ch->rooms, &i)) != NULL;) {
        chat_redis_presence_sweep(r->link, r->room);
        if (r->need_read)
            room_read(r);
    }
}

static bool room_drop_one(void *val, void *ctx)
{
    cluster_room *r = val;
    chat_redis_presence_unsubscribe(r->link, r->room);
    if (r->reading)
        r->dead = true;
    else
        room_free(r);
    (void)ctx;
    return true;
}

/* Retries what waits for Redis: counters of users whose read failed. */
static bool cluster_retry_one(void *val, void *ctx)
{
    chat_user *u = val;
    if (u->link && u->nconns && u->subscribed && u->sub_ready && !u->loaded && !u->loading)
        cluster_user_load(ctx, u);
    return false;
}

static void cluster_retry(chat *ch)
{
    sh_map_sweep(&ch->users, cluster_retry_one, ch);
}

static void cluster_on_state(app_cluster_link *l, bool up, void *ud)
{
    chat *ch = ud;
    (void)l;
    if (!up)
        return;
    cluster_retry(ch);
    pres_dirty_flush(ch);
    sh_map_sweep(&ch->users, announce_one, ch);
    on_psweep(&ch->psweep);
}

/* Every subscription goes before chat does (shutdown). */
static bool cluster_drop_one(void *val, void *ctx)
{
    chat_user *u = val;
    (void)ctx;
    if (u->link && u->subscribed) {
        chat_redis_unsubscribe(u->link, u->app, u->name);
        u->subscribed = false;
        u->refs--;
    }
    return false;
}

/* ---- life cycle ---- */

static void chat_free(chat *ch)
{
    chat_batch *b = ch->pending;
    ch->pending = NULL;
    if (b) {
        /* never written: the store had stopped */
        batch_build_ops(b);
        b->status = SH_ESTATE;
        batch_finish(ch, b);
    }
    users_sweep(ch, true);
    sh_map_cleanup(&ch->users);
    sh_map_sweep(&ch->rooms, room_drop_one, ch);
    sh_map_cleanup(&ch->rooms);
    sh_map_cleanup(&ch->watchers);
    char *k;
    for (size_t i = 0; (k = sh_map_next(&ch->pres_dirty, &i)) != NULL;)
        free(k);
    sh_map_cleanup(&ch->pres_dirty);
    chat_presence_free(ch->presence);
    SH_LOG(SH_LOG_INFO, "chat: stopped (%llu messages, %llu batches, %llu failed)",
           (unsigned long long)ch->messages, (unsigned long long)ch->batches,
           (unsigned long long)ch->batch_failures);
    free(ch);
}

/* Freed once its handles are closed and the store will not call it again
 * (it wrote the last round at shutdown). */
static void chat_maybe_free(chat *ch)
{
    if (ch->stopping && ch->open_handles == 0 && ch->store_stopped && !ch->inflight &&
        ch->nreads == 0)
        chat_free(ch);
}

static void on_handle_closed(uv_handle_t *h)
{
    chat *ch = h->data;
    ch->open_handles--;
    chat_maybe_free(ch);
}

/* Every connection is gone.  What is pending is written by the store's
 * shutdown hook, which runs after this one. */
static void on_shutdown(app_server *s, void *ud)
{
    chat *ch = ud;
    (void)s;
    ch->stopping = true;
    if (ch->cluster)
        sh_map_sweep(&ch->users, cluster_drop_one, ch);
    uv_check_stop(&ch->check);
    uv_timer_stop(&ch->sweep);
    uv_timer_stop(&ch->pump);
    uv_timer_stop(&ch->psweep);
    if (ch->cluster)
        sh_map_sweep(&ch->rooms, room_drop_one, ch);
    ch->open_handles = 4;
    uv_close((uv_handle_t *)&ch->psweep, on_handle_closed);
    uv_close((uv_handle_t *)&ch->check, on_handle_closed);
    uv_close((uv_handle_t *)&ch->sweep, on_handle_closed);
    uv_close((uv_handle_t *)&ch->pump, on_handle_closed);
}

int chat_register(app_server *srv)
{
    auth_install(srv);
    const app_config *cfg = app_server_config(srv);
    chat *ch = calloc(1, sizeof(*ch));
    if (!ch)
        return SH_ENOMEM;
    ch->srv = srv;
    ch->loop = app_server_loop(srv);
    ch->cluster = app_cluster_of(srv);
    app_server_set_ext(srv, APP_EXT_CHAT, ch);
    char err[512] = "no store module";
    ch->st = app_store_of(srv);
    int rc = ch->st ? 0 : SH_ESTATE;
    if (rc == 0 && (rc = app_store_chat_unacked(ch->st, &ch->unacked)) != 0)
        snprintf(err, sizeof(err), "cannot count the stored messages");
    app_store_source src = {.wait_ms = src_wait_ms, .take = src_take, .done = src_done,
                            .stopped = src_stopped, .ud = ch};
    if (rc == 0 && (rc = app_store_add_source(ch->st, &src)) != 0)
        snprintf(err, sizeof(err), "cannot join the store's rounds");
    if (rc == 0 && ch->cluster &&
        ((rc = chat_redis_register(ch->cluster)) != 0 ||
         (rc = app_cluster_on_state(ch->cluster, cluster_on_state, ch)) != 0))
        snprintf(err, sizeof(err), "cannot set up the Redis scripts");
    if (rc == 0 && ch->cluster)
        chat_redis_set_handlers(cluster_on_live, cluster_on_room);
    if (rc) {
        SH_LOG(SH_LOG_ERROR, "chat: cannot open the store: %s", err);
        app_server_set_ext(srv, APP_EXT_CHAT, NULL);
        free(ch);
        return rc;
    }
    app_server_on_reconfigure(srv, on_reconfigure, ch);
    ch->max_unacked = cfg->chat_max_stored;
    if (ch->unacked >= ch->max_unacked)
        SH_LOG(SH_LOG_WARN, "chat: %llu unacknowledged messages stored, chat_max_stored is "
               "%llu: new private messages are refused until recipients acknowledge",
               (unsigned long long)ch->unacked, (unsigned long long)ch->max_unacked);
    ch->presence = chat_presence_new(srv);
    app_observer obs = {.on_connect = on_connect, .on_disconnect = on_disconnect};
    ch->low_water = cfg->max_output_bytes / 4;
    if (ch->low_water > CHAT_LOW_WATER_MAX)
        ch->low_water = CHAT_LOW_WATER_MAX;
    uv_check_init(ch->loop, &ch->check);
    uv_timer_init(ch->loop, &ch->sweep);
    uv_timer_init(ch->loop, &ch->pump);
    uv_timer_init(ch->loop, &ch->psweep);
    ch->psweep.data = ch;
    ch->check.data = ch;
    ch->sweep.data = ch;
    ch->pump.data = ch;
    if ((rc = app_server_add_observer(srv, &obs, ch)) != 0 ||
        (rc = app_method_register(srv, NULL, "chat.sendPrivate", method_send_private, ch)) ||
        (rc = app_method_register(srv, NULL, "chat.ack", method_ack, ch)) ||
        (rc = app_server_on_shutdown(srv, on_shutdown, ch)) != 0) {
        /* Observers and methods cannot be removed: keep ch alive with the
         * server (it is small) but never start its handles. */
        SH_LOG(SH_LOG_ERROR, "chat: cannot register: %s", sh_strerror(rc));
        return rc;
    }
    uv_check_start(&ch->check, on_check);
    uv_timer_start(&ch->sweep, on_sweep, CHAT_SWEEP_MS, CHAT_SWEEP_MS);
    if (ch->cluster) {
        uint64_t every = app_cluster_node_ttl_ms(ch->cluster) / 6;
        every = every < 100 ? 100 : every;
        uv_timer_start(&ch->psweep, on_psweep, every, every);
    }
    SH_LOG(SH_LOG_INFO, "chat: ready (%llu unacknowledged messages stored)",
           (unsigned long long)ch->unacked);
    return 0;
}
