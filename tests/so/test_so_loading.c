/* A room waiting for its load (so_hooks.load_room / so_engine_room_loaded):
 * what clients and server code send meanwhile waits in arrival order and
 * is replayed in that order, the queue's bounds refuse clearly, a failed
 * load answers everything that waited, server opens wait with the
 * messages. */
#include "so_test_util.h"

#define ROOM "app/load"

static so_store *s;
static so_engine *e;
static tclient a, b;
static so_effects fx;

/* The store holds "p" at version 3 with x = 1 and y = 2. */
static void fill_store(void)
{
    cr_assert_eq(so_store_open(&so_store_memory_ops, NULL, NULL, &s), 0);
    so_store_batch *w = so_store_batch_new(1);
    const uint8_t one[] = {0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0};
    const uint8_t two[] = {0x00, 0x40, 0x00, 0, 0, 0, 0, 0, 0};
    so_store_batch_add(w, SO_STORE_OBJECT, ROOM, "p", NULL, 0, 3, NULL, 0);
    so_store_batch_add(w, SO_STORE_SET, ROOM, "p", "x", 1, 2, one, sizeof(one));
    so_store_batch_add(w, SO_STORE_SET, ROOM, "p", "y", 1, 3, two, sizeof(two));
    cr_assert_eq(so_store_write_batch(s, w), 0);
    so_store_batch_free(w);
}

static void open_with(const so_config *cfg)
{
    fill_store();
    e = t_engine_new(cfg, s);
    so_effects_init(&fx);
    t_hold_loads(true);
}

/* .init: engine on the filled store, loads held */
static void setup(void)
{
    open_with(NULL);
}

static void teardown(void)
{
    t_hold_loads(false);
    so_effects_cleanup(&fx);
    t_engine_free(e, &a, &b);
    so_store_close(s);
}

TestSuite(so_loading, .init = setup, .fini = teardown);

static so_engine_stats stats(void)
{
    so_engine_stats st;
    so_engine_get_stats(e, &st);
    return st;
}

/* Answers the loads asked for, with what the store has. */
static void release_loads(void)
{
    t_hold_loads(false);
    t_loads(e, &fx);
    t_hold_loads(true);
}

/* Writes the pending batch and hands it back. */
static void flush(void)
{
    so_store_batch *bt;
    while ((bt = so_engine_take_batch(e)) != NULL)
        cr_assert_eq(so_engine_batch_done(e, bt, so_store_write_batch(s, bt), &fx), 0);
}

static void send_msg(tclient *t, const char *name, const char *handler)
{
    amf_value *arg = amf_number(7);
    sh_buf buf;
    sh_buf_init(&buf, SH_BUF_MAX_DEFAULT);
    so_wire_client_send(&buf, mt_of(t), name, 0, true, handler, 1, &arg);
    amf_unref(arg);
    cr_assert_eq(t_send_body(e, t, &buf, 0, &fx), 0);
}

/* The event types of the nth message fx holds for t, as a string of
 * letters: U UseSuccess, C Clear, c Change, S Success, T Status, M
 * SendMessage, R Remove. */
static void events_of(tclient *t, size_t nth, char *out, size_t outsz)
{
    so_msg m;
    size_t n = 0;
    out[0] = '\0';
    if (!first_msg(t, &fx, nth, &m))
        return;
    for (size_t i = 0; i < m.nevents && n + 1 < outsz; i++) {
        static const char code[] = "?urqcSMTCRxU";
        uint8_t ty = m.events[i].type;
        out[n++] = ty < sizeof(code) - 1 ? code[ty] : '?';
    }
    out[n] = '\0';
    so_msg_cleanup(&m);
}

Test(so_loading, register_asks_once_and_messages_wait)
{
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    t_register(e, &b, AMF_ENC_AMF0, ROOM);
    cr_assert_eq(t_ld.n, 1, "one load for the room, whoever comes");
    cr_assert(so_engine_room_loading(e, ROOM));
    t_use(e, &a, "p", 0, true, &fx);
    t_set1(e, &a, "p", 3, "x", 5, &fx);
    send_msg(&a, "p", "hello");
    t_use(e, &b, "p", 0, true, &fx);
    cr_assert_eq(fx.len, 0, "nothing is answered before the room is there");
    cr_assert_null(so_engine_object_find(e, ROOM, "p"));
    cr_assert_eq(stats().loading, 1);
    cr_assert_eq(stats().queued, 4);
    cr_assert_eq(t_ld.n, 1, "waiting messages ask for nothing more");
}

Test(so_loading, replayed_in_arrival_order_with_the_stored_state)
{
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    t_register(e, &b, AMF_ENC_AMF0, ROOM);
    t_use(e, &a, "p", 0, true, &fx);
    t_set1(e, &a, "p", 3, "x", 5, &fx);   /* v4 */
    send_msg(&a, "p", "hello");
    t_use(e, &b, "p", 0, true, &fx);
    t_set1(e, &b, "p", 3, "x", 9, &fx);   /* stale after a's write: rule 3 */
    release_loads();
    cr_assert_not(so_engine_room_loading(e, ROOM));
    cr_assert_eq(stats().queued, 0);
    cr_assert_eq(stats().room_loads, 1);
    so_object *o = so_engine_object_find(e, ROOM, "p");
    cr_assert_not_null(o);
    cr_assert_eq(so_object_version(o), 4, "the stored version 3, then a's write");
    /* a: its Use answered with the stored state, then (after the commit)
     * its Success, then its SendMessage; b's Use came after a's write, so
     * b's state already has x = 5, and b's write with version 3 is stale. */
    char ev[16];
    events_of(&a, 0, ev, sizeof(ev));
    cr_assert_str_eq(ev, "UCcc", "a's Use: UseSuccess, Clear, x, y (got %s)", ev);
    flush();
    deliver(&a, &fx);
    deliver(&b, &fx);
    cr_assert_eq(amf_as_number(so_object_get(o, "x", 1)), 5);
    cr_assert_eq(a.success, 1);
    cr_assert_eq(a.sends, 1);
    cr_assert_str_eq(a.last_handler, "hello");
    cr_assert_eq(amf_as_number(model_find(&b, "x")->v), 5, "b's Use saw a's write");
    cr_assert_eq(b.success, 0, "b's stale write was not applied");
    cr_assert_eq(b.sends, 0, "a's SendMessage came before b's Use");
    cr_assert_eq(so_object_version(o), 4);
}

Test(so_loading, after_the_load_messages_go_straight_through)
{
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    release_loads();
    t_use(e, &a, "p", 0, true, &fx);
    cr_assert_gt(count_for(&a, &fx), 0, "answered at once");
    cr_assert_eq(t_ld.n, 0);
}

Test(so_loading, client_bound_refuses_past_it_and_keeps_the_rest)
{
    teardown();
    so_config cfg;
    so_config_default(&cfg);
    cfg.max_loading_messages = 3;
    cfg.max_updates_per_sec = 0;
    open_with(&cfg);
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    t_register(e, &b, AMF_ENC_AMF0, ROOM);
    t_use(e, &a, "p", 0, true, &fx);
    t_set1(e, &a, "p", 3, "x", 5, &fx);
    t_set1(e, &a, "p", 4, "x", 6, &fx);
    cr_assert_eq(fx.len, 0);
    const char *keys[] = {"x", "y"};
    const double nums[] = {7, 8};
    t_set_num(e, &a, "p", 5, 2, keys, nums, t_clock += 1000, &fx); /* the 4th */
    char ev[16];
    events_of(&a, 0, ev, sizeof(ev));
    cr_assert_str_eq(ev, "TT", "one Status per key, at once (got %s)", ev);
    expect_status(&a, &fx, SO_STATUS_LIMIT_LOADING);
    t_use(e, &b, "p", 0, true, &fx);
    cr_assert_eq(count_for(&b, &fx), 0, "another client's messages still wait");
    cr_assert_eq(stats().queued, 4);
    so_effects_clear(&fx);
    release_loads();
    flush();
    deliver(&a, &fx);
    cr_assert_eq(a.success, 2, "the three kept messages were replayed");
    so_object *o = so_engine_object_find(e, ROOM, "p");
    cr_assert_eq(amf_as_number(so_object_get(o, "x", 1)), 6);
    cr_assert_eq(amf_as_number(so_object_get(o, "y", 1)), 2);
    cr_assert_eq(so_object_version(so_engine_object_find(e, ROOM, "p")), 5,
                 "the refused write was never applied");
    cr_assert_eq(stats().refused[SO_REFUSALS - 2], 2, "counted as LimitExceeded.Loading");
}

Test(so_loading, byte_bounds_of_client_and_room)
{
    teardown();
    so_config cfg;
    so_config_default(&cfg);
    cfg.max_loading_bytes = 3000;
    cfg.max_loading_room_bytes = 5000;
    cfg.max_updates_per_sec = 0;
    open_with(&cfg);
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    t_register(e, &b, AMF_ENC_AMF0, ROOM);
    char big[2000];
    memset(big, 'z', sizeof(big));
    amf_value *v = amf_string(big, sizeof(big));
    t_setv(e, &a, "p", 3, "x", v, &fx);
    cr_assert_eq(count_for(&a, &fx), 0, "a message alone in its client's queue passes");
    t_setv(e, &a, "p", 3, "y", v, &fx);
    expect_status(&a, &fx, SO_STATUS_LIMIT_LOADING);
    so_effects_clear(&fx);
    t_setv(e, &b, "p", 3, "x", v, &fx);
    cr_assert_eq(count_for(&b, &fx), 0, "b's first fits in the room");
    t_use(e, &b, "p", 0, true, &fx);
    cr_assert_eq(count_for(&b, &fx), 0, "small messages still fit");
    tclient c;
    t_register(e, &c, AMF_ENC_AMF0, ROOM);
    t_setv(e, &c, "p", 3, "x", v, &fx);
    expect_status(&c, &fx, SO_STATUS_LIMIT_LOADING);
    amf_unref(v);
    t_unregister(e, &c);
}

Test(so_loading, failed_load_answers_everything_and_asks_again)
{
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    t_opened op = {0};
    cr_assert_eq(so_engine_object_open_async(e, ROOM, "srv", true, t_open_cb, &op), 0);
    t_use(e, &a, "p", 0, true, &fx);
    const char *keys[] = {"x", "y"};
    const double nums[] = {7, 8};
    t_set_num(e, &a, "p", 3, 2, keys, nums, t_clock += 1000, &fx);
    send_msg(&a, "p", "hello");
    t_release(e, &a, "p", &fx);
    cr_assert_eq(t_ld.n, 1);
    free(t_ld.rooms[0]);
    t_ld.n = 0;
    cr_assert_eq(so_engine_room_loaded(e, ROOM, SH_EIO, NULL, &fx), SH_EIO);
    cr_assert_eq(op.calls, 1, "the server open is answered");
    cr_assert_null(op.o);
    cr_assert_eq(op.err, SH_EIO);
    char ev[16];
    events_of(&a, 0, ev, sizeof(ev));
    cr_assert_str_eq(ev, "T", "the Use: StoreFailed (got %s)", ev);
    events_of(&a, 1, ev, sizeof(ev));
    cr_assert_str_eq(ev, "TT", "each written key: StoreFailed (got %s)", ev);
    events_of(&a, 2, ev, sizeof(ev));
    cr_assert_str_eq(ev, "T", "the SendMessage: StoreFailed (got %s)", ev);
    cr_assert_eq(count_for(&a, &fx), 3, "the Release has nothing to answer");
    expect_status(&a, &fx, SO_STATUS_STORE_FAILED);
    cr_assert_eq(stats().load_failures, 1);
    cr_assert_eq(stats().queued, 0);
    cr_assert_not(so_engine_room_loading(e, ROOM));
    cr_assert_null(so_engine_object_find(e, ROOM, "p"), "nothing of the room is made");
    /* the next message asks for the room again, and this time it comes */
    so_effects_clear(&fx);
    t_use(e, &a, "p", 0, true, &fx);
    cr_assert_eq(t_ld.n, 1, "asked again");
    release_loads();
    cr_assert_gt(count_for(&a, &fx), 0);
    cr_assert_not_null(so_engine_object_find(e, ROOM, "p"));
}

Test(so_loading, undecodable_stored_value_fails_the_load)
{
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    t_use(e, &a, "p", 0, true, &fx);
    so_store_batch *img = so_store_batch_new(0);
    const uint8_t bad[] = {0x00, 0x3f}; /* a number cut short */
    so_store_batch_add(img, SO_STORE_OBJECT, "", "p", NULL, 0, 3, NULL, 0);
    so_store_batch_add(img, SO_STORE_SET, "", "p", "x", 1, 2, bad, sizeof(bad));
    free(t_ld.rooms[0]);
    t_ld.n = 0;
    cr_assert_eq(so_engine_room_loaded(e, ROOM, 0, img, &fx), SH_EIO);
    so_store_batch_free(img);
    expect_status(&a, &fx, SO_STATUS_STORE_FAILED);
    cr_assert_null(so_engine_object_find(e, ROOM, "p"), "no half-loaded object stays");
    cr_assert_eq(stats().objects, 0);
}

static void open_server_only(void *ud, so_object *o, int err)
{
    t_opened *r = ud;
    t_open_cb(ud, o, err);
    cr_assert_eq(stats().queued, 1, "called before the client's message that came later");
    if (o)
        so_object_set_server_only(o, true);
    (void)r;
}

Test(so_loading, server_open_waits_and_comes_before_later_messages)
{
    t_opened op = {0};
    cr_assert_eq(so_engine_object_open_async(e, ROOM, "stage", true, open_server_only, &op), 0);
    cr_assert_eq(op.calls, 0, "waits for the load");
    cr_assert_eq(t_ld.n, 1, "the open asked for the room");
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    cr_assert_eq(t_ld.n, 1, "already asked");
    t_use(e, &a, "stage", 0, true, &fx);
    release_loads();
    cr_assert_eq(op.calls, 1);
    cr_assert_not_null(op.o);
    so_effects_clear(&fx);
    t_set1(e, &a, "stage", 1, "k", 1, &fx);
    expect_status(&a, &fx, SO_STATUS_NO_WRITE);
    so_engine_object_close(e, op.o);
}

Test(so_loading, open_of_a_loaded_room_answers_inside_the_call)
{
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    release_loads();
    t_opened op = {0};
    cr_assert_eq(so_engine_object_open_async(e, ROOM, "p", true, t_open_cb, &op), 0);
    cr_assert_eq(op.calls, 1);
    cr_assert_not_null(op.o);
    cr_assert_eq(so_object_version(op.o), 3, "the stored object");
    so_engine_object_close(e, op.o);
    op = (t_opened){0};
    cr_assert_eq(so_engine_object_open_async(e, ROOM, "p", false, t_open_cb, &op), 0);
    cr_assert_eq(op.calls, 1);
    cr_assert_eq(op.err, SH_EEXIST);
    cr_assert_eq(so_engine_object_open_async(e, ROOM, "", true, t_open_cb, &op), SH_EINVAL);
    cr_assert_eq(op.calls, 1, "not called when the call fails");
}

Test(so_loading, sync_open_refuses_a_room_not_loaded_and_asks_nothing)
{
    int err = 0;
    cr_assert_null(so_engine_object_open(e, ROOM, "p", true, &err));
    cr_assert_eq(err, SH_ESTATE);
    cr_assert_eq(t_ld.n, 0, "no load asked");
    cr_assert_eq(stats().rooms, 0, "no room left behind");
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    cr_assert_null(so_engine_object_open(e, ROOM, "p", true, &err), "still loading");
    cr_assert_eq(err, SH_ESTATE);
    release_loads();
    so_object *o = so_engine_object_open(e, ROOM, "p", true, &err);
    cr_assert_not_null(o);
    so_engine_object_close(e, o);
}

Test(so_loading, room_queue_bound_refuses_server_opens)
{
    teardown();
    so_config cfg;
    so_config_default(&cfg);
    cfg.max_loading_room_bytes = 1000;
    open_with(&cfg);
    t_opened op[64] = {{0}};
    int refused = 0, n = 0;
    for (int i = 0; i < 64; i++) {
        char name[16];
        snprintf(name, sizeof(name), "o%d", i);
        int rc = so_engine_object_open_async(e, ROOM, name, false, t_open_cb, &op[i]);
        cr_assert(rc == 0 || rc == SH_ELIMIT);
        refused += rc == SH_ELIMIT;
        n += rc == 0;
    }
    cr_assert_gt(refused, 0, "the room's bound holds");
    cr_assert_gt(n, 1);
    release_loads();
    for (int i = 0; i < 64; i++) {
        cr_assert_eq(op[i].calls, i < n ? 1 : 0, "open %d", i);
        so_engine_object_close(e, op[i].o);
    }
}

Test(so_loading, client_gone_while_waiting)
{
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    t_register(e, &b, AMF_ENC_AMF0, ROOM);
    t_use(e, &a, "p", 0, true, &fx);
    t_set1(e, &a, "p", 3, "x", 5, &fx);
    t_use(e, &b, "p", 0, true, &fx);
    t_unregister(e, &a);
    cr_assert_eq(stats().queued, 1, "a's messages are dropped with it");
    release_loads();
    flush();
    for (size_t i = 0; i < fx.len; i++)
        for (size_t k = 0; k < fx.items[i].nto; k++)
            cr_assert_neq(fx.items[i].to[k], (void *)&a);
    deliver(&b, &fx);
    cr_assert_eq(amf_as_number(model_find(&b, "x")->v), 1, "a's write never happened");
}

Test(so_loading, everyone_gone_before_the_answer)
{
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    t_use(e, &a, "p", 0, true, &fx);
    t_unregister(e, &a);
    cr_assert(so_engine_room_loading(e, ROOM), "the room waits for its answer");
    release_loads();
    cr_assert_eq(fx.len, 0);
    cr_assert_eq(so_engine_room_loaded(e, ROOM, 0, NULL, &fx), SH_ESTATE,
                 "a second answer is refused");
    cr_assert_eq(so_engine_room_loaded(e, "app/never", 0, NULL, &fx), SH_ESTATE);
    cr_assert_eq(stats().rooms, 1, "loaded, idle: kept until unloaded");
    so_engine_unload_idle(e);
    so_engine_unload_idle(e);
    cr_assert_eq(stats().rooms, 0);
}

/* A decoded message handed in by the caller (a JSON client's) is copied:
 * the caller frees its own at once. */
Test(so_loading, borrowed_message_is_copied)
{
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    sh_buf buf;
    sh_buf_init(&buf, SH_BUF_MAX_DEFAULT);
    const char *key = "x";
    amf_value *v = amf_number(42);
    so_wire_client_request_change(&buf, SO_MSG_AMF0, "p", 3, true, 1, &key, &v);
    amf_unref(v);
    so_msg m;
    so_msg_init(&m);
    cr_assert_eq(so_wire_decode(SO_MSG_AMF0, buf.data, buf.len, NULL, &m, NULL), 0);
    sh_buf_cleanup(&buf);
    t_use(e, &a, "p", 0, true, &fx);
    cr_assert_eq(so_engine_handle_msg(e, a.c, &m, 5000, &fx), 0);
    so_msg_cleanup(&m);
    release_loads();
    flush();
    deliver(&a, &fx);
    cr_assert_eq(a.success, 1);
    cr_assert_eq(amf_as_number(so_object_get(so_engine_object_find(e, ROOM, "p"), "x", 1)), 42);
}

/* An owner that goes away before the load cancels its waiting opens: they
 * are never called, other waits stay. */
Test(so_loading, cancelled_opens_are_never_called)
{
    t_opened x = {0}, y = {0};
    cr_assert_eq(so_engine_object_open_async(e, ROOM, "a", false, t_open_cb, &x), 0);
    cr_assert_eq(so_engine_object_open_async(e, ROOM, "b", false, t_open_cb, &x), 0);
    cr_assert_eq(so_engine_object_open_async(e, ROOM, "c", false, t_open_cb, &y), 0);
    cr_assert_eq(so_engine_object_open_cancel(e, t_open_cb, &x), 2);
    cr_assert_eq(stats().queued, 1);
    release_loads();
    cr_assert_eq(x.calls, 0);
    cr_assert_eq(y.calls, 1);
    so_engine_object_close(e, y.o);
}

static void open_then_close(void *ud, so_object *o, int err)
{
    t_open_cb(ud, o, err);
    so_engine_object_close(e, o); /* a temporary object, the room's only thing */
}

/* A callback that empties the room while the replay runs: the room stays
 * until the replay is over, then goes. */
Test(so_loading, callback_that_empties_the_room)
{
    t_opened x = {0}, y = {0};
    cr_assert_eq(so_engine_object_open_async(e, "app/empty", "t", false, open_then_close, &x),
                 0);
    cr_assert_eq(so_engine_object_open_async(e, "app/empty", "u", false, open_then_close, &y),
                 0);
    release_loads();
    cr_assert(x.calls == 1 && y.calls == 1);
    cr_assert_eq(stats().rooms, 0, "the empty room is dropped after the replay");
    cr_assert_eq(stats().objects, 0);
}
