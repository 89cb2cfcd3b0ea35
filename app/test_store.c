/* test_store.c - unit tests of the store module (app/store.c) on a fake
 * backend: one round holds every source's work, one round in flight,
 * waits measured from the previous round's start, the back-off while
 * rounds fail, reads answered later and in order (batched per job), and
 * the shutdown: the last rounds written synchronously, the sources told,
 * reads after it answered with SH_ESTATE. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sh_err.h"
#include "sh_log.h"
#include "store.h"

/* ---- a backend that completes from the thread pool, and records ---- */

#define MAXR 64

typedef struct fake_be {
    app_store_backend base;
    uv_loop_t *loop;
    uv_work_t ww, rw;
    uv_timer_t slow;            /* delays write answers when slow_ms > 0 */
    int slow_ms;
    app_store_write_done wdone;
    void *wud;
    int wstatus;
    app_store_read_done rdone;
    void *rud;
    app_store_read *rlist;
    int fail_writes;            /* the next n writes fail */
    bool writing, reading;
    int overlap;                /* writes asked while one was in flight */
    int rounds;
    size_t so_ops[MAXR], chat_ops[MAXR];
    uint64_t start_ms[MAXR];
    int write_now_calls;
    int jobs;
    size_t job_size[MAXR];
    bool closed;
} fake_be;

static void noop(uv_work_t *w) { (void)w; }

static void write_answer(fake_be *f)
{
    f->writing = false;
    f->wdone(f->wud, f->wstatus);
}

static void on_slow(uv_timer_t *t) { write_answer(t->data); }

static void write_after(uv_work_t *w, int status)
{
    (void)status;
    fake_be *f = w->data;
    if (f->slow_ms)
        uv_timer_start(&f->slow, on_slow, (uint64_t)f->slow_ms, 0);
    else
        write_answer(f);
}

static int record_round(fake_be *f, const app_store_round *r)
{
    cr_assert_lt(f->rounds, MAXR);
    f->so_ops[f->rounds] = r->so ? r->so->nops : 0;
    f->chat_ops[f->rounds] = r->nchat;
    f->start_ms[f->rounds] = uv_now(f->loop);
    f->rounds++;
    if (f->fail_writes > 0) {
        f->fail_writes--;
        return SH_EIO;
    }
    return 0;
}

static int fb_write(app_store_backend *b, const app_store_round *r, app_store_write_done done,
                    void *ud)
{
    fake_be *f = (fake_be *)b;
    if (f->writing)
        f->overlap++;
    f->writing = true;
    f->wdone = done;
    f->wud = ud;
    f->wstatus = record_round(f, r);
    f->ww.data = f;
    return uv_queue_work(f->loop, &f->ww, noop, write_after);
}

static int fb_write_now(app_store_backend *b, const app_store_round *r)
{
    fake_be *f = (fake_be *)b;
    f->write_now_calls++;
    return record_round(f, r);
}

static void read_after(uv_work_t *w, int status)
{
    (void)status;
    fake_be *f = w->data;
    for (app_store_read *r = f->rlist; r; r = r->next) {
        r->status = 0;
        if (r->kind == APP_READ_ROOM)
            r->image = so_store_batch_new(0);
        else if (r->kind == APP_READ_CHAT_USER)
            r->last_id = 7, r->acked = 3;
    }
    f->reading = false;
    f->rdone(f->rud);
}

static int fb_read(app_store_backend *b, app_store_read *list, app_store_read_done done, void *ud)
{
    fake_be *f = (fake_be *)b;
    cr_assert_not(f->reading, "one read job at a time");
    size_t n = 0;
    for (app_store_read *r = list; r; r = r->next)
        n++;
    f->job_size[f->jobs++] = n;
    f->reading = true;
    f->rlist = list;
    f->rdone = done;
    f->rud = ud;
    f->rw.data = f;
    return uv_queue_work(f->loop, &f->rw, noop, read_after);
}

static int fb_usage(app_store_backend *b, so_store_usage_fn fn, void *ud)
{
    (void)b;
    return fn(ud, "app", 2, 10);
}

static int fb_unacked(app_store_backend *b, uint64_t *n)
{
    (void)b;
    *n = 5;
    return 0;
}

static fake_be *closed_be; /* what close left to check */

static void fb_close(app_store_backend *b)
{
    fake_be *f = (fake_be *)b;
    cr_assert_not(f->reading, "closed while a read runs");
    f->closed = true;
    closed_be = f; /* freed by the test */
}

static const app_store_backend_ops fb_ops = {
    .name = "fake", .read = fb_read, .write = fb_write, .write_now = fb_write_now,
    .usage = fb_usage, .chat_unacked = fb_unacked, .close = fb_close,
};

/* ---- sources ---- */

typedef struct tsrc {
    bool so;                    /* puts a shared-object batch, else chat ops */
    size_t pending;             /* ops waiting */
    int64_t wait;               /* what wait_ms answers when pending; -2: back-off */
    int takes, dones, with_work, stopped;
    int last_status;
    chat_store_op ops[8];
} tsrc;

static int64_t ts_wait(void *ud, uint32_t streak)
{
    tsrc *t = ud;
    if (!t->pending)
        return -1;
    return t->wait == -2 ? (int64_t)app_store_retry_delay_ms(streak) : t->wait;
}

static void ts_take(void *ud, app_store_round *r)
{
    tsrc *t = ud;
    t->takes++;
    if (!t->pending)
        return;
    if (t->so) {
        r->so = so_store_batch_new(1);
        for (size_t i = 0; i < t->pending; i++)
            so_store_batch_add(r->so, SO_STORE_OBJECT, "app/i", "o", NULL, 0, 1, NULL, 0);
    } else {
        r->chat = t->ops;
        r->nchat = t->pending;
    }
    t->pending = 0;
}

static void ts_done(void *ud, const app_store_round *r, int status)
{
    tsrc *t = ud;
    t->dones++;
    bool mine = t->so ? r->so != NULL : r->nchat > 0;
    if (mine) {
        t->with_work++;
        t->last_status = status;
    }
    if (t->so)
        so_store_batch_free(r->so);
}

static void ts_stopped(void *ud) { ((tsrc *)ud)->stopped++; }

/* ---- fixture ---- */

static uv_loop_t loop;
static app_config cfg;
static app_server *srv;
static app_store *st;
static fake_be *fb;
static tsrc so_src, chat_src;
static uv_timer_t tick;

static void on_tick(uv_timer_t *t) { (void)t; }

static void setup(void)
{
    char err[256];
    sh_log_set_level(SH_LOG_ERROR);
    app_config_init(&cfg);
    cr_assert_eq(app_config_set_server(&cfg, "listen", "127.0.0.1:0", err, sizeof err), 0);
    cr_assert_eq(app_config_validate(&cfg, err, sizeof err), 0, "%s", err);
    uv_loop_init(&loop);
    srv = app_server_new(&cfg, &loop);
    cr_assert_not_null(srv);
    fb = calloc(1, sizeof(*fb));
    fb->base.ops = &fb_ops;
    fb->loop = &loop;
    uv_timer_init(&loop, &fb->slow);
    fb->slow.data = fb;
    st = app_store_new_on(srv, &fb->base, err, sizeof err);
    cr_assert_not_null(st, "%s", err);
    so_src = (tsrc){.so = true};
    chat_src = (tsrc){.so = false};
    app_store_source a = {ts_wait, ts_take, ts_done, ts_stopped, &so_src};
    app_store_source b = {ts_wait, ts_take, ts_done, ts_stopped, &chat_src};
    cr_assert_eq(app_store_add_source(st, &a), 0);
    cr_assert_eq(app_store_add_source(st, &b), 0);
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, on_tick, 1, 1); /* the loop never sleeps long */
}

TestSuite(store, .init = setup);

/* Runs the loop for about ms. */
static void run_for(int ms)
{
    uint64_t end = uv_now(&loop) + (uint64_t)ms;
    while (uv_now(&loop) < end && uv_run(&loop, UV_RUN_ONCE))
        ;
}

static bool run_rounds(int n, int ms)
{
    uint64_t end = uv_now(&loop) + (uint64_t)ms;
    while ((fb->rounds < n || fb->writing) && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    return fb->rounds >= n && !fb->writing;
}

Test(store, one_round_holds_every_sources_work)
{
    so_src.pending = 2;
    chat_src.pending = 1;
    cr_assert(run_rounds(1, 2000));
    cr_assert_eq(fb->rounds, 1, "one round");
    cr_assert_eq(fb->so_ops[0], 2);
    cr_assert_eq(fb->chat_ops[0], 1, "both sources' work in the same round");
    cr_assert_eq(so_src.with_work, 1);
    cr_assert_eq(chat_src.with_work, 1);
    cr_assert_eq(so_src.last_status, 0);
    app_store_stats s;
    app_store_get_stats(st, &s);
    cr_assert_eq(s.rounds, 1);
    cr_assert(app_store_ok(st));
}

Test(store, one_round_in_flight_and_what_comes_meanwhile_goes_next)
{
    fb->slow_ms = 40;
    so_src.pending = 1;
    uv_run(&loop, UV_RUN_NOWAIT);
    for (int i = 0; i < 5 && fb->rounds == 0; i++)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert_eq(fb->rounds, 1);
    cr_assert(fb->writing);
    so_src.pending = 3;
    chat_src.pending = 2;
    cr_assert(run_rounds(2, 2000));
    cr_assert_eq(fb->overlap, 0, "never two rounds at once");
    cr_assert_eq(fb->rounds, 2);
    cr_assert(fb->so_ops[1] == 3 && fb->chat_ops[1] == 2, "grouped into the next round");
    cr_assert_geq(fb->start_ms[1] - fb->start_ms[0], 40, "after the first came back");
}

Test(store, waits_count_from_the_previous_round)
{
    so_src.wait = 60;
    so_src.pending = 1;
    cr_assert(run_rounds(1, 2000));
    so_src.pending = 1;
    cr_assert(run_rounds(2, 2000));
    cr_assert_geq(fb->start_ms[1] - fb->start_ms[0], 60, "the commit interval holds");
    /* work that may not wait goes at once, and takes the other's along */
    so_src.pending = 1;
    chat_src.pending = 1;
    uint64_t t0 = uv_now(&loop);
    cr_assert(run_rounds(3, 2000));
    cr_assert_lt(fb->start_ms[2] - t0, 55, "chat's messages do not wait for the 60 ms interval");
    cr_assert(fb->so_ops[2] == 1 && fb->chat_ops[2] == 1);
}

Test(store, failing_rounds_back_off_for_work_nobody_waits_for)
{
    cr_assert_eq(app_store_retry_delay_ms(0), 0);
    cr_assert_eq(app_store_retry_delay_ms(1), 10);
    cr_assert_eq(app_store_retry_delay_ms(3), 40);
    cr_assert_eq(app_store_retry_delay_ms(20), 1000);
    fb->fail_writes = 3;
    so_src.wait = -2; /* rewrites only: the store's back-off */
    for (int i = 1; i <= 4; i++) {
        so_src.pending = 1;
        cr_assert(run_rounds(i, 3000));
    }
    cr_assert_eq(so_src.last_status, 0, "the fourth round works");
    cr_assert_geq(fb->start_ms[1] - fb->start_ms[0], 10);
    cr_assert_geq(fb->start_ms[2] - fb->start_ms[1], 20);
    cr_assert_geq(fb->start_ms[3] - fb->start_ms[2], 40);
    app_store_stats s;
    app_store_get_stats(st, &s);
    cr_assert_eq(s.round_failures, 3);
    cr_assert(app_store_ok(st), "ok again after a round worked");
}

typedef struct answers {
    int n;
    int order[8];
    int status[8];
    bool inside;                /* set while the asking call runs */
    bool called_inside;
} answers;

static answers ans;

static void on_room(void *ud, const char *room, int status, so_store_batch *img)
{
    (void)room;
    ans.called_inside |= ans.inside;
    ans.order[ans.n] = (int)(intptr_t)ud;
    ans.status[ans.n++] = status;
    so_store_batch_free(img);
}

static void on_user(void *ud, int status, uint64_t last, uint64_t acked)
{
    ans.called_inside |= ans.inside;
    if (status == 0)
        cr_assert(last == 7 && acked == 3);
    ans.order[ans.n] = (int)(intptr_t)ud;
    ans.status[ans.n++] = status;
}

static void on_page(void *ud, int status, const chat_store_msg *m, size_t n)
{
    (void)m;
    (void)n;
    ans.called_inside |= ans.inside;
    ans.order[ans.n] = (int)(intptr_t)ud;
    ans.status[ans.n++] = status;
}

Test(store, reads_are_answered_later_in_order_and_batched)
{
    ans = (answers){0};
    ans.inside = true;
    cr_assert_eq(app_store_load_room(st, "app/a", on_room, (void *)1), 0);
    cr_assert_eq(app_store_chat_user(st, "app", "bob", on_user, (void *)2), 0);
    cr_assert_eq(app_store_chat_page(st, "app", "bob", 0, 10, on_page, (void *)3), 0);
    ans.inside = false;
    cr_assert_eq(ans.n, 0, "never answered inside the call");
    cr_assert_eq(fb->jobs, 1, "the first read starts a job at once");
    uint64_t end = uv_now(&loop) + 2000;
    while (ans.n < 3 && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert_eq(ans.n, 3);
    cr_assert_not(ans.called_inside);
    cr_assert(ans.order[0] == 1 && ans.order[1] == 2 && ans.order[2] == 3, "asking order");
    cr_assert_eq(fb->jobs, 2);
    cr_assert(fb->job_size[0] == 1 && fb->job_size[1] == 2,
              "what was asked during the first job went together into the second");
}

static bool stopped_both(void)
{
    return so_src.stopped && chat_src.stopped;
}

Test(store, shutdown_writes_what_is_left_then_answers_reads_with_estate)
{
    fb->slow_ms = 30;
    so_src.pending = 1;
    for (int i = 0; i < 5 && fb->rounds == 0; i++)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert(fb->writing, "a round is in flight at shutdown");
    so_src.pending = 2;
    chat_src.pending = 1;
    ans = (answers){0};
    cr_assert_eq(app_store_load_room(st, "app/a", on_room, (void *)1), 0);
    uv_timer_stop(&tick);
    uv_close((uv_handle_t *)&tick, NULL);
    app_server_stop(srv, "test");
    bool done = false;
    uint64_t end = uv_now(&loop) + 2000;
    while (!(done = stopped_both() && closed_be) && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert(done, "sources told, backend closed");
    cr_assert_eq(fb->write_now_calls, 1, "the rest in one synchronous round");
    cr_assert(fb->so_ops[1] == 2 && fb->chat_ops[1] == 1);
    cr_assert(app_store_closed(st));
    cr_assert_not(app_store_ok(st));
    cr_assert_eq(ans.n, 1, "the read asked before the end was answered");
    cr_assert_eq(ans.status[0], 0);
    ans.inside = true;
    cr_assert_eq(app_store_chat_user(st, "app", "bob", on_user, (void *)2), 0);
    ans.inside = false;
    run_for(200); /* lets the late answer come */
    cr_assert_eq(ans.n, 2);
    cr_assert_not(ans.called_inside);
    cr_assert_eq(ans.status[1], SH_ESTATE, "after the end: SH_ESTATE, later");
    uv_run(&loop, UV_RUN_DEFAULT);
    app_store_free(st);
    uv_close((uv_handle_t *)&fb->slow, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    free(fb);
    app_server_free(srv);
    cr_assert_eq(uv_loop_close(&loop), 0, "every handle closed");
}

Test(store, start_up_figures)
{
    uint64_t n = 0;
    cr_assert_eq(app_store_chat_unacked(st, &n), 0);
    cr_assert_eq(n, 5);
}
