/* store.c - see store.h: one write pipeline and the read queue, over a
 * backend. */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sh_err.h"
#include "sh_log.h"

#define STORE_SOURCES_MAX 4
/* Reads one backend job answers at most (the rest wait for the next). */
#define STORE_READS_PER_JOB 256
/* Rounds written at shutdown at most: a failed one queues rewrites. */
#define STORE_FINAL_ROUNDS 5
#define STORE_FAIL_LOG_MS 10000

struct app_store {
    app_server *srv;            /* borrowed */
    uv_loop_t *loop;
    app_store_backend *be;      /* owned until closed */
    app_store_source src[STORE_SOURCES_MAX];
    size_t nsrc;
    uv_check_t check;           /* a round may start once per loop turn */
    uv_timer_t timer;           /* ... or when a wait is over */
    bool handles_closed;

    /* writes */
    app_store_round round;      /* the round in flight */
    bool busy;
    bool started_once;
    uint64_t last_start;
    uint32_t fail_streak;       /* rounds failed in a row */
    uint64_t fail_logged;

    /* reads */
    app_store_read *rq, **rq_tail; /* asked, not yet in a job */
    app_store_read *rjob;       /* the job in flight */
    bool rbusy;

    bool closing;               /* shutdown: no new round starts */
    bool flushed;               /* the final rounds were written */
    bool closed;                /* the backend is gone */
    app_store_stats st;
};

uint64_t app_store_retry_delay_ms(uint32_t streak)
{
    if (streak == 0)
        return 0;
    uint64_t d = (uint64_t)10 << (streak > 7 ? 7 : streak - 1);
    return d > 1000 ? 1000 : d;
}

app_store *app_store_of(const app_server *srv)
{
    return app_server_ext(srv, APP_EXT_STORE);
}

/* ---------------------------------------------------------------- reads */

static void read_free(app_store_read *r)
{
    free(r->a);
    free(r->b);
    so_store_batch_free(r->image);
    chat_store_msgs_free(r->msgs, r->nmsgs);
    free(r);
}

/* Hands r's answer to its callback and frees r. */
static void read_deliver(app_store *st, app_store_read *r)
{
    uint64_t waited = uv_now(st->loop) - r->asked_ms;
    if (waited > st->st.reads_max_wait_ms)
        st->st.reads_max_wait_ms = waited;
    st->st.reads++;
    switch (r->kind) {
    case APP_READ_ROOM: {
        so_store_batch *img = r->status == 0 ? r->image : NULL;
        r->image = NULL;
        r->fn.room(r->ud, r->a, r->status, img);
        break;
    }
    case APP_READ_CHAT_USER:
        r->fn.user(r->ud, r->status, r->last_id, r->acked);
        break;
    case APP_READ_CHAT_PAGE:
        r->fn.page(r->ud, r->status, r->msgs, r->status == 0 ? r->nmsgs : 0);
        break;
    }
    read_free(r);
}

static void deliver_list(app_store *st, app_store_read *list)
{
    while (list) {
        app_store_read *n = list->next;
        read_deliver(st, list);
        list = n;
    }
}

/* Answers a list from a later loop turn (a request that cannot go to the
 * backend still never runs its callback inside the call that asked). */
typedef struct late {
    uv_work_t w;
    app_store *st;
    app_store_read *list;
} late;

static void late_work(uv_work_t *w) { (void)w; }

static void late_after(uv_work_t *w, int status)
{
    (void)status;
    late *l = w->data;
    deliver_list(l->st, l->list);
    free(l);
}

static void answer_later(app_store *st, app_store_read *list, int status)
{
    for (app_store_read *r = list; r; r = r->next)
        r->status = status;
    late *l = calloc(1, sizeof(*l));
    if (l) {
        l->st = st;
        l->list = list;
        l->w.data = l;
        if (uv_queue_work(st->loop, &l->w, late_work, late_after) == 0)
            return;
        free(l);
    }
    /* No memory or no loop left: answered now rather than never. */
    SH_LOG(SH_LOG_WARN, "store: reads answered without a loop turn");
    deliver_list(st, list);
}

static void maybe_close(app_store *st);
static void on_reads_done(void *ud);

/* Starts a read job with what is queued, if none is in flight. */
static void reads_start(app_store *st)
{
    if (st->rbusy || !st->rq)
        return;
    app_store_read *list = st->rq, *last = list;
    for (size_t n = 1; n < STORE_READS_PER_JOB && last->next; n++)
        last = last->next;
    st->rq = last->next;
    if (!st->rq)
        st->rq_tail = &st->rq;
    last->next = NULL;
    if (st->closed) {
        answer_later(st, list, SH_ESTATE);
        reads_start(st);
        return;
    }
    st->rjob = list;
    st->rbusy = true;
    st->st.read_jobs++;
    int rc = st->be->ops->read(st->be, list, on_reads_done, st);
    if (rc < 0) {
        st->rjob = NULL;
        st->rbusy = false;
        answer_later(st, list, rc);
    }
}

static void on_reads_done(void *ud)
{
    app_store *st = ud;
    app_store_read *list = st->rjob;
    st->rjob = NULL;
    st->rbusy = false;
    deliver_list(st, list);
    reads_start(st);
    if (st->flushed)
        maybe_close(st);
}

static int read_ask(app_store *st, app_store_read_kind kind, const char *a, const char *b,
                    void *ud, app_store_read **out)
{
    app_store_read *r = calloc(1, sizeof(*r));
    if (!r || !(r->a = strdup(a)) || (b && !(r->b = strdup(b)))) {
        if (r)
            free(r->a);
        free(r);
        return SH_ENOMEM;
    }
    r->kind = kind;
    r->ud = ud;
    r->asked_ms = uv_now(st->loop);
    *st->rq_tail = r;
    st->rq_tail = &r->next;
    *out = r;
    return 0;
}

int app_store_load_room(app_store *st, const char *room, app_store_room_fn fn, void *ud)
{
    app_store_read *r;
    int rc = read_ask(st, APP_READ_ROOM, room, NULL, ud, &r);
    if (rc == 0) {
        r->fn.room = fn;
        reads_start(st);
    }
    return rc;
}

int app_store_chat_user(app_store *st, const char *app, const char *user, app_store_user_fn fn,
                        void *ud)
{
    app_store_read *r;
    int rc = read_ask(st, APP_READ_CHAT_USER, app, user, ud, &r);
    if (rc == 0) {
        r->fn.user = fn;
        reads_start(st);
    }
    return rc;
}

int app_store_chat_page(app_store *st, const char *app, const char *user, uint64_t after,
                        size_t max, app_store_page_fn fn, void *ud)
{
    app_store_read *r;
    int rc = read_ask(st, APP_READ_CHAT_PAGE, app, user, ud, &r);
    if (rc == 0) {
        r->fn.page = fn;
        r->after = after;
        r->max = max;
        reads_start(st);
    }
    return rc;
}

/* ---------------------------------------------------------------- writes */

static bool round_empty(const app_store_round *r)
{
    return (!r->so || r->so->nops == 0) && r->nchat == 0;
}

static void round_take(app_store *st, app_store_round *r)
{
    memset(r, 0, sizeof(*r));
    for (size_t i = 0; i < st->nsrc; i++)
        st->src[i].take(st->src[i].ud, r);
}

static void round_done(app_store *st, const app_store_round *r, int status)
{
    for (size_t i = 0; i < st->nsrc; i++)
        st->src[i].done(st->src[i].ud, r, status);
}

static void note_result(app_store *st, const app_store_round *r, int status)
{
    st->st.rounds++;
    if (status < 0) {
        st->st.round_failures++;
        uint64_t now = uv_now(st->loop);
        if (st->fail_streak++ == 0 || now - st->fail_logged >= STORE_FAIL_LOG_MS) {
            st->fail_logged = now;
            SH_LOG(SH_LOG_WARN, "store: round of %zu shared-object and %zu chat operations "
                   "failed: %s (%u in a row); retried with the next round",
                   r->so ? r->so->nops : 0, r->nchat, sh_strerror(status), st->fail_streak);
        }
    } else if (st->fail_streak) {
        SH_LOG(SH_LOG_WARN, "store: writes work again after %u failed rounds", st->fail_streak);
        st->fail_streak = 0;
    }
}

static void kick(app_store *st);
static void final_flush(app_store *st);

static void on_written(void *ud, int status)
{
    app_store *st = ud;
    app_store_round r = st->round;
    memset(&st->round, 0, sizeof(st->round));
    st->busy = false;
    note_result(st, &r, status);
    round_done(st, &r, status);
    if (st->closing)
        final_flush(st);
    else
        kick(st);
}

static void on_timer(uv_timer_t *t) { kick(t->data); }

static void on_check(uv_check_t *h) { kick(h->data); }

/* Starts a round when no round is in flight and a source's wait is over. */
static void kick(app_store *st)
{
    if (st->busy || st->closing || st->closed)
        return;
    int64_t wait = -1;
    for (size_t i = 0; i < st->nsrc; i++) {
        int64_t w = st->src[i].wait_ms(st->src[i].ud, st->fail_streak);
        if (w >= 0 && (wait < 0 || w < wait))
            wait = w;
    }
    if (wait < 0)
        return;
    uint64_t now = uv_now(st->loop);
    if (wait && st->started_once && now - st->last_start < (uint64_t)wait) {
        if (!uv_is_active((uv_handle_t *)&st->timer))
            uv_timer_start(&st->timer, on_timer, (uint64_t)wait - (now - st->last_start), 0);
        return;
    }
    round_take(st, &st->round);
    if (round_empty(&st->round)) {
        app_store_round r = st->round;
        memset(&st->round, 0, sizeof(st->round));
        round_done(st, &r, 0);
        return;
    }
    st->busy = true;
    st->started_once = true;
    st->last_start = now;
    int rc = st->be->ops->write(st->be, &st->round, on_written, st);
    if (rc < 0) {
        /* No worker: write here rather than lose the round. */
        SH_LOG(SH_LOG_WARN, "store: cannot queue a round (%s); writing on the loop",
               sh_strerror(rc));
        on_written(st, st->be->ops->write_now(st->be, &st->round));
    }
}

/* ---------------------------------------------------------------- life */

static void close_handles(app_store *st)
{
    if (st->handles_closed)
        return;
    st->handles_closed = true;
    uv_close((uv_handle_t *)&st->check, NULL);
    uv_close((uv_handle_t *)&st->timer, NULL);
}

static void maybe_close(app_store *st)
{
    if (st->closed || st->rbusy)
        return;
    st->be->ops->close(st->be);
    st->be = NULL;
    st->closed = true;
    SH_LOG(SH_LOG_INFO, "store: closed (%llu rounds, %llu failed, %llu reads)",
           (unsigned long long)st->st.rounds, (unsigned long long)st->st.round_failures,
           (unsigned long long)st->st.reads);
    app_store_read *left = st->rq;
    st->rq = NULL;
    st->rq_tail = &st->rq;
    if (left)
        answer_later(st, left, SH_ESTATE);
}

/* Shutdown, nothing in flight: what the sources still hold is written
 * now, a few rounds at most; then the sources are told, and the backend
 * closes once no read is in flight. */
static void final_flush(app_store *st)
{
    if (st->flushed)
        return;
    for (int n = 0; n < STORE_FINAL_ROUNDS; n++) {
        app_store_round r;
        round_take(st, &r);
        if (round_empty(&r)) {
            round_done(st, &r, 0);
            break;
        }
        int status = st->be->ops->write_now(st->be, &r);
        note_result(st, &r, status);
        if (status < 0)
            SH_LOG(SH_LOG_ERROR, "store: final round failed: %s", sh_strerror(status));
        round_done(st, &r, status);
        if (status < 0)
            break;
    }
    st->flushed = true;
    for (size_t i = 0; i < st->nsrc; i++)
        if (st->src[i].stopped)
            st->src[i].stopped(st->src[i].ud);
    maybe_close(st);
}

static void on_shutdown(app_server *s, void *ud)
{
    (void)s;
    app_store *st = ud;
    st->closing = true;
    close_handles(st);
    if (!st->busy)
        final_flush(st);
    /* else on_written finishes the job */
}

app_store *app_store_new(app_server *srv, char *err, size_t errsz)
{
    app_store_backend *be = app_store_sqlite_new(app_server_loop(srv), app_server_config(srv),
                                                 err, errsz);
    return be ? app_store_new_on(srv, be, err, errsz) : NULL;
}

app_store *app_store_new_on(app_server *srv, app_store_backend *be, char *err, size_t errsz)
{
    app_store *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, errsz, "out of memory");
        be->ops->close(be);
        return NULL;
    }
    st->srv = srv;
    st->loop = app_server_loop(srv);
    st->rq_tail = &st->rq;
    st->be = be;
    if (app_server_on_shutdown(srv, on_shutdown, st) != 0) {
        snprintf(err, errsz, "out of memory");
        st->be->ops->close(st->be);
        free(st);
        return NULL;
    }
    uv_check_init(st->loop, &st->check);
    st->check.data = st;
    uv_check_start(&st->check, on_check);
    uv_timer_init(st->loop, &st->timer);
    st->timer.data = st;
    app_server_set_ext(srv, APP_EXT_STORE, st);
    SH_LOG(SH_LOG_INFO, "store: %s backend ready", st->be->ops->name);
    return st;
}

void app_store_free(app_store *st)
{
    if (!st)
        return;
    if (!st->handles_closed) {
        /* The loop never ran the shutdown hook (error path): let it close
         * our handles before their memory goes. */
        close_handles(st);
        uv_run(st->loop, UV_RUN_NOWAIT);
    }
    if (!st->closed) {
        while (st->rbusy)
            uv_run(st->loop, UV_RUN_ONCE); /* the read job's worker must finish */
        if (st->be)
            st->be->ops->close(st->be);
    }
    app_store_read *r = st->rq;
    while (r) {
        app_store_read *n = r->next;
        read_free(r);
        r = n;
    }
    app_server_set_ext(st->srv, APP_EXT_STORE, NULL);
    free(st);
}

int app_store_add_source(app_store *st, const app_store_source *src)
{
    if (st->nsrc == STORE_SOURCES_MAX)
        return SH_ENOMEM;
    st->src[st->nsrc++] = *src;
    return 0;
}

int app_store_usage(app_store *st, so_store_usage_fn fn, void *ud)
{
    if (st->closed || st->busy)
        return SH_ESTATE;
    return st->be->ops->usage(st->be, fn, ud);
}

int app_store_chat_unacked(app_store *st, uint64_t *n)
{
    *n = 0;
    if (st->closed || st->busy)
        return SH_ESTATE;
    return st->be->ops->chat_unacked(st->be, n);
}

bool app_store_ok(const app_store *st)
{
    return !st->closed && st->fail_streak == 0;
}

bool app_store_closed(const app_store *st)
{
    return st->closed || st->flushed;
}

void app_store_get_stats(const app_store *st, app_store_stats *out)
{
    *out = st->st;
}
