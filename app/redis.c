/* redis.c - one Redis connection on the loop: connect, scripts, commands with
 * a time-out, subscriptions kept across reconnects (redis.h). */
#include "redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <openssl/evp.h>

#include "sh_err.h"
#include "sh_log.h"
#include "sh_map.h"

#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 5000
#define TICK_MS 100

typedef enum { ST_DOWN, ST_CONNECTING, ST_LOADING, ST_UP } state;

/* One command in flight, oldest first. */
typedef struct pend {
    struct pend *prev, *next;
    app_redis *r;
    app_redis_cb cb;
    void *ud;
    uint64_t t0;
    uint64_t wseq;      /* a script marked acks: its number (0 = not one) */
    bool wait;          /* a WAIT: answered at once, it releases the held ones */
} pend;

/* An answer held until a WAIT covers it, or until the answers before it
 * are released (app_redis_opts.wait_replicas).  rep is our own copy. */
typedef struct held {
    struct held *next;
    app_redis_cb cb;
    void *ud;
    redisReply *rep;
    uint64_t wseq;      /* 0: not a write; released with what is before it */
} held;

/* A channel.  An unsubscribed channel stays in the map (cb NULL) until
 * Redis confirmed the UNSUBSCRIBE, and replies are counted, so a channel
 * dropped and taken again before Redis answered gets its READY from the
 * SUBSCRIBE that really follows the UNSUBSCRIBE, not from an earlier one. */
typedef struct sub {
    app_redis_sub_cb cb;      /* NULL: unsubscribed, waiting for Redis to confirm */
    void *ud;
    uint32_t unconfirmed;     /* SUBSCRIBEs sent, not yet confirmed */
    uint32_t unsub_pending;   /* UNSUBSCRIBEs sent, not yet confirmed */
    size_t len;
    char ch[]; /* the map's key */
} sub;

struct app_redis {
    uv_loop_t *loop;
    uv_timer_t tick;
    redisAsyncContext *ac;
    state st;
    bool closing;
    uint64_t state_since;   /* ms, when st last changed */
    uint64_t retry_at;      /* ms, next connect attempt while ST_DOWN */
    uint32_t retry_ms;      /* current back-off */
    uint32_t loading;       /* SCRIPT LOADs unanswered */
    uint32_t seed;          /* jitter */
    uint32_t fails;         /* failed connects since the last success */
    pend *head, *tail;      /* in flight */
    size_t npending;
    uint64_t last_reply;    /* ms, when an answer last came */
    uv_check_t waiter;      /* sends the WAIT after this turn's writes */
    bool wait_armed;
    uint64_t wseq;          /* writes (acks scripts) sent so far */
    held *hhead, *htail;    /* answers waiting for a WAIT, oldest first */
    uint64_t unreplicated;  /* writes answered NULL: too few replicas */
    int open_handles;
    sh_map subs;            /* channel -> sub */
    const app_redis_script **scripts;
    size_t nscripts;
    app_redis_opts o;
    char *host, *name;
};

void app_redis_script_init(app_redis_script *s, const char *name, const char *src)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    s->name = name;
    s->src = src;
    if (EVP_Digest(src, strlen(src), d, &n, EVP_sha1(), NULL) != 1 || n != 20)
        n = 0; /* leaves an empty digest: EVALSHA fails with NOSCRIPT, said in the log */
    for (unsigned i = 0; i < n; i++)
        snprintf(s->sha1 + 2 * i, 3, "%02x", d[i]);
    s->sha1[2 * n] = '\0';
}

static uint64_t now_ms(const app_redis *r)
{
    return uv_now(r->loop);
}

static void set_state(app_redis *r, state st)
{
    r->st = st;
    r->state_since = now_ms(r);
}

static void schedule_retry(app_redis *r)
{
    /* Jitter between half and all of the back-off, so nodes that lost the
     * same Redis do not all come back in the same millisecond. */
    r->seed = r->seed * 1103515245u + 12345u;
    uint32_t half = r->retry_ms / 2;
    r->retry_at = now_ms(r) + half + (half ? (r->seed >> 8) % (half + 1) : 0);
    r->retry_ms = r->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : r->retry_ms * 2;
}

static bool drop_dead_sub(void *val, void *ctx)
{
    sub *s = val;
    (void)ctx;
    s->unconfirmed = s->unsub_pending = 0;
    if (s->cb)
        return false;
    free(s);
    return true;
}

/* The connection is gone: so are its subscriptions' replies. */
static void notify_lost(app_redis *r, bool tell)
{
    sh_map_sweep(&r->subs, drop_dead_sub, NULL);
    if (!tell)
        return;
    sub *s;
    for (size_t i = 0; (s = sh_map_next(&r->subs, &i)) != NULL;)
        s->cb(r, APP_REDIS_SUB_LOST, NULL, 0, s->ud);
}

static void release(app_redis *r, uint64_t upto, bool replicated);

/* Takes the connection down (ours or hiredis' decision) and plans the next
 * attempt.  Pending commands get their NULL replies from hiredis' free. */
static void went_down(app_redis *r, const char *why)
{
    bool was_up = r->st == ST_UP;
    set_state(r, ST_DOWN);
    r->loading = 0;
    /* Writes whose WAIT will not answer now: not acknowledged. */
    release(r, UINT64_MAX, false);
    if (r->closing)
        return;
    schedule_retry(r);
    /* Loud when it was up, on the first failed try and every tenth. */
    bool loud = was_up || r->fails++ % 10 == 0;
    SH_LOG(loud ? SH_LOG_WARN : SH_LOG_DEBUG, "redis %s %s:%d: %s (next try in %u ms)",
           r->name, r->host, r->o.port, why, (unsigned)(r->retry_at - now_ms(r)));
    notify_lost(r, was_up);
    if (was_up) {
        if (r->o.on_state)
            r->o.on_state(r, false, r->o.ud);
    }
}

static void drop(app_redis *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    if (!ac)
        return;
    r->ac = NULL; /* on_disconnect will see a context that is no longer ours */
    went_down(r, why);
    redisAsyncFree(ac);
}

void app_redis_reset(app_redis *r)
{
    if (r)
        drop(r, "reset");
}

/* A deep copy of a reply (hiredis frees its own after the callback);
 * freeReplyObject frees it.  NULL when rep is NULL or memory ran out. */
static redisReply *reply_copy(const redisReply *rep)
{
    if (!rep)
        return NULL;
    redisReply *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->type = rep->type;
    c->integer = rep->integer;
    if (rep->str) {
        c->str = malloc(rep->len + 1);
        if (!c->str) {
            free(c);
            return NULL;
        }
        memcpy(c->str, rep->str, rep->len);
        c->str[rep->len] = '\0';
        c->len = rep->len;
    }
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements) {
        c->element = calloc(rep->elements, sizeof(*c->element));
        if (!c->element) {
            freeReplyObject(c);
            return NULL;
        }
        c->elements = rep->elements;
        for (size_t i = 0; i < rep->elements; i++)
            if (!(c->element[i] = reply_copy(rep->element[i]))) {
                freeReplyObject(c);
                return NULL;
            }
    }
    return c;
}

/* Keeps p's answer until release(): a write that waits for its WAIT, or
 * any answer behind one.  A copy that cannot be made becomes NULL (no
 * answer), which the caller treats as a failed command. */
static void hold(app_redis *r, const pend *p, const redisReply *write, const redisReply *rep)
{
    held *h = malloc(sizeof(*h));
    if (!h) {
        if (p->cb)
            p->cb(r, NULL, p->ud); /* out of order, but never lost */
        return;
    }
    *h = (held){.cb = p->cb, .ud = p->ud, .rep = reply_copy(rep), .wseq = write ? p->wseq : 0};
    if (r->htail)
        r->htail->next = h;
    else
        r->hhead = h;
    r->htail = h;
}

/* Gives out the held answers, oldest first: writes numbered up to upto get
 * their answer when `replicated`, else NULL; the first write past upto
 * stops it.  The callbacks may send commands (and hold more). */
static void release(app_redis *r, uint64_t upto, bool replicated)
{
    held *h;
    while ((h = r->hhead) != NULL && (h->wseq == 0 || h->wseq <= upto)) {
        r->hhead = h->next;
        if (!r->hhead)
            r->htail = NULL;
        redisReply *rep = h->rep;
        if (h->wseq && !replicated) {
            r->unreplicated++;
            rep = NULL;
        }
        if (h->cb)
            h->cb(r, rep, h->ud);
        if (h->rep)
            freeReplyObject(h->rep);
        free(h);
    }
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    pend *p = priv;
    app_redis *r = p->r;
    if (p->prev)
        p->prev->next = p->next;
    else
        r->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        r->tail = p->prev;
    r->npending--;
    r->last_reply = now_ms(r);
    redisReply *rep = reply;
    bool write_ok = p->wseq && rep && rep->type != REDIS_REPLY_ERROR;
    if (!p->wait && (r->hhead || write_ok)) {
        hold(r, p, write_ok ? rep : NULL, rep);
        free(p);
        return;
    }
    if (p->cb)
        p->cb(r, reply, p->ud);
    free(p);
}

/* Issues a command on the current connection, tracked for the time-out. */
static int issue_w(app_redis *r, app_redis_cb cb, void *ud, int argc, const char **argv,
                   const size_t *lens, uint64_t wseq)
{
    if (!r->ac)
        return SH_ESTATE;
    if (r->npending >= r->o.max_pending)
        return SH_ELIMIT;
    pend *p = malloc(sizeof(*p));
    if (!p)
        return SH_ENOMEM;
    *p = (pend){.prev = r->tail, .r = r, .cb = cb, .ud = ud, .t0 = now_ms(r), .wseq = wseq};
    if (redisAsyncCommandArgv(r->ac, on_reply, p, argc, argv, lens) != REDIS_OK) {
        free(p);
        return r->ac->err == REDIS_ERR_OOM ? SH_ENOMEM : SH_ESTATE;
    }
    if (r->tail)
        r->tail->next = p;
    else
        r->head = p;
    r->tail = p;
    r->npending++;
    return 0;
}

static int issue(app_redis *r, app_redis_cb cb, void *ud, int argc, const char **argv,
                 const size_t *lens)
{
    return issue_w(r, cb, ud, argc, argv, lens, 0);
}

/* WAIT's answer: the writes numbered up to ud are acknowledged when enough
 * replicas have them. */
static void on_wait(app_redis *r, redisReply *rep, void *ud)
{
    uint64_t upto = (uint64_t)(uintptr_t)ud;
    long long n = -1;
    bool ok = app_redis_reply_int(rep, &n) && n >= (long long)r->o.wait_replicas;
    if (rep && !ok)
        SH_LOG(SH_LOG_WARN, "redis %s %s:%d: WAIT: %lld of %u replicas within %u ms; "
               "the writes it covers are answered as not stored",
               r->name, r->host, r->o.port, n, r->o.wait_replicas, r->o.wait_timeout_ms);
    release(r, upto, ok);
}

/* After a turn of the loop that sent writes: one WAIT for all of them. */
static void on_waiter(uv_check_t *h)
{
    app_redis *r = h->data;
    uv_check_stop(h);
    r->wait_armed = false;
    if (!r->ac)
        return; /* went_down released them */
    char n[16], t[16];
    const char *argv[3] = {"WAIT", n, t};
    size_t lens[3] = {4, (size_t)snprintf(n, sizeof(n), "%u", r->o.wait_replicas),
                      (size_t)snprintf(t, sizeof(t), "%u", r->o.wait_timeout_ms)};
    if (issue(r, on_wait, (void *)(uintptr_t)r->wseq, 3, argv, lens) != 0)
        drop(r, "WAIT could not be sent");
    else
        r->tail->wait = true;
}

static void became_up(app_redis *r);

static void on_script_loaded(app_redis *r, redisReply *rep, void *ud)
{
    const app_redis_script *s = ud;
    if (!rep)
        return; /* the connection went down; went_down already ran */
    if (rep->type != REDIS_REPLY_STRING || strcmp(rep->str, s->sha1) != 0) {
        SH_LOG(SH_LOG_ERROR, "redis %s: SCRIPT LOAD %s: %s", r->name, s->name,
               rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected answer");
        drop(r, "a script did not load");
        return;
    }
    if (r->loading)
        r->loading--;
    if (r->loading == 0 && r->st == ST_LOADING)
        became_up(r);
}

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *priv);

static void load_script(app_redis *r, const app_redis_script *s)
{
    const char *argv[3] = {"SCRIPT", "LOAD", s->src};
    size_t lens[3] = {6, 4, strlen(s->src)};
    if (issue(r, on_script_loaded, (void *)s, 3, argv, lens) != 0)
        drop(r, "SCRIPT LOAD could not be sent");
    else
        r->loading++;
}

int app_redis_add_script(app_redis *r, const app_redis_script *s)
{
    const app_redis_script **n = realloc(r->scripts, (r->nscripts + 1) * sizeof(*n));
    if (!n)
        return SH_ENOMEM;
    r->scripts = n;
    r->scripts[r->nscripts++] = s;
    if (r->st == ST_UP || r->st == ST_LOADING)
        load_script(r, s);
    return 0;
}

static void send_subscribe(app_redis *r, sub *s)
{
    const char *argv[2] = {"SUBSCRIBE", s->ch};
    size_t lens[2] = {9, s->len};
    /* Subscriptions are not tracked for the time-out: no reply is owed. */
    if (redisAsyncCommandArgv(r->ac, on_sub_reply, r, 2, argv, lens) != REDIS_OK)
        drop(r, "SUBSCRIBE could not be sent");
    else
        s->unconfirmed++;
}

static void became_up(app_redis *r)
{
    set_state(r, ST_UP);
    r->retry_ms = RETRY_MIN_MS;
    r->fails = 0;
    SH_LOG(SH_LOG_INFO, "redis %s %s:%d: connected", r->name, r->host, r->o.port);
    sub *s;
    for (size_t i = 0; (s = sh_map_next(&r->subs, &i)) != NULL && r->ac;)
        send_subscribe(r, s);
    if (r->ac && r->o.on_state)
        r->o.on_state(r, true, r->o.ud);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    app_redis *r = ac->data;
    if (r->ac != ac)
        return;
    if (status != REDIS_OK) {
        char why[160];
        snprintf(why, sizeof(why), "connect failed: %s", ac->errstr);
        r->ac = NULL; /* hiredis frees the context after this callback */
        went_down(r, why);
        return;
    }
    set_state(r, ST_LOADING);
    r->loading = 0;
    for (size_t i = 0; i < r->nscripts && r->ac; i++)
        load_script(r, r->scripts[i]);
    if (r->ac && r->loading == 0)
        became_up(r);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    app_redis *r = ac->data;
    (void)status;
    if (r->ac != ac)
        return; /* we dropped it ourselves */
    char why[160];
    snprintf(why, sizeof(why), "connection lost: %s", ac->err ? ac->errstr : "closed");
    r->ac = NULL;
    went_down(r, why);
}

static void start_connect(app_redis *r)
{
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->o.port);
    if (!ac) {
        set_state(r, ST_DOWN);
        schedule_retry(r);
        return;
    }
    if (ac->err) {
        SH_LOG(SH_LOG_DEBUG, "redis %s %s:%d: %s", r->name, r->host, r->o.port, ac->errstr);
        redisAsyncFree(ac);
        set_state(r, ST_DOWN);
        schedule_retry(r);
        return;
    }
    ac->data = r;
    if (redisLibuvAttach(ac, r->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        set_state(r, ST_DOWN);
        schedule_retry(r);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* A dead peer on a live path: let TCP notice within about a minute. */
    redisEnableKeepAlive(&ac->c);
    r->ac = ac;
    set_state(r, ST_CONNECTING);
}

static void on_tick(uv_timer_t *t)
{
    app_redis *r = t->data;
    uint64_t now = now_ms(r);
    switch (r->st) {
    case ST_DOWN:
        if (now >= r->retry_at)
            start_connect(r);
        break;
    case ST_CONNECTING:
    case ST_LOADING:
        if (now - r->state_since > r->o.timeout_ms)
            drop(r, "connect timed out");
        break;
    case ST_UP:
        /* Down when the oldest command waited past the time-out and Redis
         * answered nothing meanwhile: a long pipeline that Redis works
         * through (one client writing as fast as it can) is not a dead
         * Redis. */
        if (r->head && now - r->head->t0 > r->o.timeout_ms &&
            now - r->last_reply > r->o.timeout_ms)
            drop(r, "no answer within timeout_ms");
        break;
    }
}

app_redis *app_redis_new(uv_loop_t *loop, const app_redis_opts *opts)
{
    app_redis *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->loop = loop;
    r->o = *opts;
    r->host = strdup(opts->host ? opts->host : "127.0.0.1");
    r->name = strdup(opts->name ? opts->name : "redis");
    if (!r->host || !r->name) {
        free(r->host);
        free(r->name);
        free(r);
        return NULL;
    }
    r->o.host = r->host;
    r->o.name = r->name;
    if (!r->o.timeout_ms)
        r->o.timeout_ms = 2000;
    if (!r->o.max_pending)
        r->o.max_pending = 65536;
    r->retry_ms = RETRY_MIN_MS;
    r->seed = (uint32_t)(uintptr_t)r ^ (uint32_t)uv_hrtime();
    sh_map_init(&r->subs);
    uv_timer_init(loop, &r->tick);
    r->tick.data = r;
    uv_check_init(loop, &r->waiter);
    r->waiter.data = r;
    r->open_handles = 2;
    uv_timer_start(&r->tick, on_tick, TICK_MS, TICK_MS);
    start_connect(r);
    return r;
}

static void on_closed(uv_handle_t *h)
{
    app_redis *r = h->data;
    if (--r->open_handles > 0)
        return;
    free(r->scripts);
    free(r->host);
    free(r->name);
    free(r);
}

void app_redis_free(app_redis *r)
{
    if (!r)
        return;
    r->closing = true;
    drop(r, "closing");
    sub *s;
    for (size_t i = 0; (s = sh_map_next(&r->subs, &i)) != NULL;)
        free(s);
    sh_map_cleanup(&r->subs);
    uv_close((uv_handle_t *)&r->tick, on_closed);
    uv_close((uv_handle_t *)&r->waiter, on_closed);
}

bool app_redis_up(const app_redis *r)
{
    return r && r->st == ST_UP;
}

size_t app_redis_pending(const app_redis *r)
{
    return r ? r->npending : 0;
}

int app_redis_cmd(app_redis *r, app_redis_cb cb, void *ud, int argc, const char **argv,
                  const size_t *lens)
{
    if (r->st != ST_UP)
        return SH_ESTATE;
    return issue(r, cb, ud, argc, argv, lens);
}

#define EVAL_STACK_ARGS 64
#define EVAL_MAX_ARGS (1 << 20)

int app_redis_eval(app_redis *r, const app_redis_script *s, app_redis_cb cb, void *ud,
                   int nkeys, int argc, const char **argv, const size_t *lens)
{
    if (argc < 0 || argc > EVAL_MAX_ARGS || nkeys < 0 || nkeys > argc)
        return SH_EINVAL;
    /* a write of many slots has many arguments: on the heap past a few */
    const char *sav[EVAL_STACK_ARGS], **av = sav;
    size_t sal[EVAL_STACK_ARGS], *al = sal;
    if (argc + 3 > EVAL_STACK_ARGS) {
        av = malloc((size_t)(argc + 3) * sizeof(*av));
        al = malloc((size_t)(argc + 3) * sizeof(*al));
        if (!av || !al) {
            free(av);
            free(al);
            return SH_ENOMEM;
        }
    }
    char nk[16];
    av[0] = "EVALSHA";
    al[0] = 7;
    av[1] = s->sha1;
    al[1] = strlen(s->sha1);
    al[2] = (size_t)snprintf(nk, sizeof(nk), "%d", nkeys);
    av[2] = nk;
    memcpy(av + 3, argv, (size_t)argc * sizeof(*argv));
    memcpy(al + 3, lens, (size_t)argc * sizeof(*lens));
    int rc;
    if (!s->acks || !r->o.wait_replicas) {
        rc = app_redis_cmd(r, cb, ud, argc + 3, av, al);
    } else if (r->st != ST_UP) {
        rc = SH_ESTATE;
    } else if ((rc = issue_w(r, cb, ud, argc + 3, av, al, r->wseq + 1)) == 0) {
        r->wseq++;
        if (!r->wait_armed) {
            r->wait_armed = true;
            uv_check_start(&r->waiter, on_waiter);
        }
    }
    if (av != sav) {
        free(av);
        free(al);
    }
    return rc;
}

bool app_redis_waits(const app_redis *r)
{
    return r && r->o.wait_replicas > 0;
}

uint64_t app_redis_unreplicated(const app_redis *r)
{
    return r ? r->unreplicated : 0;
}

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    app_redis *r = priv;
    redisReply *rep = reply;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_STRING)
        return; /* NULL: the connection is going; went_down reports it */
    sub *s = sh_map_get(&r->subs, rep->element[1]->str, rep->element[1]->len);
    if (!s)
        return;
    const char *kind = rep->element[0]->str;
    if (strcasecmp(kind, "message") == 0) {
        if (s->cb && rep->element[2]->type == REDIS_REPLY_STRING)
            s->cb(r, APP_REDIS_SUB_MESSAGE, rep->element[2]->str, rep->element[2]->len,
                  s->ud);
        return;
    }
    if (strcasecmp(kind, "subscribe") == 0 && s->unconfirmed)
        s->unconfirmed--;
    else if (strcasecmp(kind, "unsubscribe") == 0 && s->unsub_pending)
        s->unsub_pending--;
    else
        return;
    if (s->unconfirmed || s->unsub_pending)
        return;
    if (s->cb) {
        if (strcasecmp(kind, "subscribe") == 0)
            s->cb(r, APP_REDIS_SUB_READY, NULL, 0, s->ud);
        return;
    }
    sh_map_del(&r->subs, s->ch, s->len); /* unsubscribed and confirmed */
    free(s);
}

int app_redis_subscribe(app_redis *r, const char *ch, size_t len, app_redis_sub_cb cb,
                        void *ud)
{
    sub *s = sh_map_get(&r->subs, ch, len);
    if (s) {
        bool was_dead = !s->cb;
        s->cb = cb;
        s->ud = ud;
        if (was_dead && r->st == ST_UP)
            send_subscribe(r, s);
        return 0;
    }
    s = malloc(sizeof(*s) + len + 1);
    if (!s)
        return SH_ENOMEM;
    *s = (sub){.cb = cb, .ud = ud, .len = len};
    memcpy(s->ch, ch, len);
    s->ch[len] = '\0';
    if (sh_map_put(&r->subs, s->ch, len, s) != 0) {
        free(s);
        return SH_ENOMEM;
    }
    if (r->st == ST_UP)
        send_subscribe(r, s);
    return 0;
}

void app_redis_unsubscribe(app_redis *r, const char *ch, size_t len)
{
    sub *s = sh_map_get(&r->subs, ch, len);
    if (!s || !s->cb)
        return;
    s->cb = NULL;
    s->ud = NULL;
    if (r->st == ST_UP && r->ac) {
        /* hiredis routes the confirmation to the channel's callback */
        const char *argv[2] = {"UNSUBSCRIBE", s->ch};
        size_t lens[2] = {11, s->len};
        if (redisAsyncCommandArgv(r->ac, NULL, NULL, 2, argv, lens) == REDIS_OK) {
            s->unsub_pending++;
            return;
        }
        drop(r, "UNSUBSCRIBE could not be sent"); /* frees the dead entry */
        return;
    }
    sh_map_del(&r->subs, s->ch, s->len); /* down: nothing subscribed at Redis */
    free(s);
}

bool app_redis_reply_int(const redisReply *rep, long long *out)
{
    if (!rep)
        return false;
    if (rep->type == REDIS_REPLY_INTEGER) {
        *out = rep->integer;
        return true;
    }
    if (rep->type != REDIS_REPLY_STRING || rep->len == 0 || rep->len > 20)
        return false;
    char buf[24], *end;
    memcpy(buf, rep->str, rep->len);
    buf[rep->len] = '\0';
    long long v = strtoll(buf, &end, 10);
    if (*end)
        return false;
    *out = v;
    return true;
}

bool app_redis_reply_is_error(const redisReply *rep, const char *prefix)
{
    return rep && rep->type == REDIS_REPLY_ERROR &&
           strncmp(rep->str, prefix, strlen(prefix)) == 0;
}
