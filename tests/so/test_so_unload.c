/* Unloading idle rooms (so_engine_unload_idle): when a room may go, when
 * it must stay, and that it comes back from the store unchanged. */
#include "so_test_util.h"

#define ROOM "app/unload"

static so_store *open_mem(void)
{
    so_store *s = NULL;
    cr_assert_eq(so_store_open(&so_store_memory_ops, NULL, NULL, &s), 0);
    return s;
}

/* Takes the pending batch, writes it with status st_forced (0 = really
 * write it) and hands it back.  Returns the status, 1 when none. */
static int flush_status(so_engine *e, so_store *s, int st_forced, so_effects *fx)
{
    so_store_batch *b = so_engine_take_batch(e);
    if (!b)
        return 1;
    int st = st_forced ? st_forced : so_store_write_batch(s, b);
    cr_assert_eq(so_engine_batch_done(e, b, st, fx), 0);
    return st;
}

static void flush_all(so_engine *e, so_store *s, so_effects *fx)
{
    for (int i = 0; i < 8 && flush_status(e, s, 0, fx) != 1; i++)
        ;
}

static uint64_t unloads(so_engine *e)
{
    so_engine_stats st;
    so_engine_get_stats(e, &st);
    return st.room_unloads;
}

typedef struct fixture {
    so_store *s;
    so_engine *e;
    so_effects fx;
    tclient a;
} fixture;

/* A room with persistent object "p" = {x: 1, y: 2} at version 3 (and a
 * temporary object "t" while a is there), a registered and subscribed. */
static void fx_setup(fixture *f)
{
    f->s = open_mem();
    f->e = t_engine_new(NULL, f->s);
    cr_assert_not_null(f->e);
    so_effects_init(&f->fx);
    t_register(f->e, &f->a, AMF_ENC_AMF0, ROOM);
    t_use(f->e, &f->a, "p", 0, true, &f->fx);
    t_use(f->e, &f->a, "t", 0, false, &f->fx);
    t_set1(f->e, &f->a, "p", 1, "x", 1, &f->fx);
    t_set1(f->e, &f->a, "p", 2, "y", 2, &f->fx);
    cr_assert_eq(so_object_version(so_engine_object_find(f->e, ROOM, "p")), 3);
    so_effects_clear(&f->fx);
}

/* fx_setup, everything stored, and a gone: the room is idle. */
static void fx_idle(fixture *f)
{
    fx_setup(f);
    flush_all(f->e, f->s, &f->fx);
    t_unregister(f->e, &f->a);
}

static void fx_teardown(fixture *f)
{
    so_effects_cleanup(&f->fx);
    so_engine_free(f->e);
    so_store_close(f->s);
}

Test(so_unload, idle_room_goes_after_two_calls_and_comes_back_equal)
{
    fixture f;
    fx_setup(&f);
    flush_all(f.e, f.s, &f.fx);
    cr_assert_eq(so_engine_unload_idle(f.e), 0, "a client is in the room");
    t_unregister(f.e, &f.a);
    cr_assert_null(so_engine_object_find(f.e, ROOM, "t"), "temporary object gone with a");
    cr_assert_not_null(so_engine_object_find(f.e, ROOM, "p"));
    cr_assert_eq(so_engine_unload_idle(f.e), 0, "first call only marks the room");
    cr_assert_not_null(so_engine_object_find(f.e, ROOM, "p"));
    cr_assert_eq(so_engine_unload_idle(f.e), 1);
    cr_assert_null(so_engine_object_find(f.e, ROOM, "p"), "objects freed");
    so_engine_stats st;
    so_engine_get_stats(f.e, &st);
    cr_assert_eq(st.objects, 0);
    cr_assert_eq(st.rooms, 0, "the empty room itself is dropped");
    cr_assert_eq(st.room_unloads, 1);
    uint64_t loads = st.room_loads;

    /* a client comes back with the version it had: nothing changed */
    tclient b;
    t_register(f.e, &b, AMF_ENC_AMF0, ROOM);
    so_engine_get_stats(f.e, &st);
    cr_assert_eq(st.room_loads, loads + 1, "read from the store again");
    so_object *o = so_engine_object_find(f.e, ROOM, "p");
    cr_assert_not_null(o);
    cr_assert_eq(so_object_version(o), 3, "version kept");
    cr_assert_eq(so_object_slot_count(o), 2);
    t_use(f.e, &b, "p", 0, true, &f.fx);
    deliver(&b, &f.fx);
    assert_model_eq(&b, o);
    cr_assert_eq(b.version, 3);
    /* and writing continues from there */
    so_effects_clear(&f.fx);
    t_set1(f.e, &b, "p", 3, "x", 10, &f.fx);
    cr_assert_eq(so_object_version(o), 4);
    cr_assert_eq(count_for(&b, &f.fx), 0, "the answer waits for the store");
    flush_all(f.e, f.s, &f.fx);
    deliver(&b, &f.fx);
    cr_assert_eq(b.success, 1);
    t_unregister(f.e, &b);
    fx_teardown(&f);
}

Test(so_unload, touched_between_calls_stays)
{
    fixture f;
    fx_idle(&f);
    cr_assert_eq(so_engine_unload_idle(f.e), 0);
    /* a visit between the two calls restarts the count */
    tclient b;
    t_register(f.e, &b, AMF_ENC_AMF0, ROOM);
    t_unregister(f.e, &b);
    cr_assert_eq(so_engine_unload_idle(f.e), 0, "touched since the last call");
    cr_assert_not_null(so_engine_object_find(f.e, ROOM, "p"));
    cr_assert_eq(so_engine_unload_idle(f.e), 1);
    fx_teardown(&f);
}

Test(so_unload, waits_for_every_change_to_be_durable)
{
    fixture f;
    fx_setup(&f);
    /* nothing written yet: the batch is still being built */
    t_unregister(f.e, &f.a);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(so_engine_unload_idle(f.e), 0, "changes not yet in the store");
    /* in flight */
    so_store_batch *b = so_engine_take_batch(f.e);
    cr_assert_not_null(b);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(so_engine_unload_idle(f.e), 0, "batch in flight");
    /* it fails: the object is queued for a rewrite, still not durable */
    cr_assert_eq(so_engine_batch_done(f.e, b, SH_EIO, &f.fx), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(so_engine_unload_idle(f.e), 0, "rewrite pending after a failure");
    flush_all(f.e, f.s, &f.fx);
    cr_assert_eq(so_engine_unload_idle(f.e), 0);
    cr_assert_eq(so_engine_unload_idle(f.e), 1);
    /* what comes back is what was written by the rewrite */
    int err = 0;
    so_object *o = t_open(f.e, ROOM, "p", true, &err);
    cr_assert_not_null(o);
    cr_assert_eq(so_object_version(o), 3);
    cr_assert_eq(so_object_slot_count(o), 2);
    so_engine_object_close(f.e, o);
    fx_teardown(&f);
}

Test(so_unload, server_handle_and_lock_keep_the_room)
{
    fixture f;
    fx_idle(&f);
    int err = 0;
    so_object *o = t_open(f.e, ROOM, "p", true, &err);
    cr_assert_not_null(o);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(so_engine_unload_idle(f.e), 0, "held by server code");
    so_engine_object_close(f.e, o);
    /* a server-held temporary object in another room keeps that room */
    so_object *t = t_open(f.e, "app/other", "tmp", false, &err);
    cr_assert_not_null(t);
    cr_assert_eq(so_engine_unload_idle(f.e), 0);
    cr_assert_eq(so_engine_unload_idle(f.e), 1, "only " ROOM " goes");
    cr_assert_not_null(so_engine_object_find(f.e, "app/other", "tmp"));
    so_engine_object_close(f.e, t);
    fx_teardown(&f);
}

Test(so_unload, room_settings_survive_an_unload)
{
    fixture f;
    fx_setup(&f);
    cr_assert_eq(so_engine_room_set_conflict(f.e, ROOM, SO_CONFLICT_LWW), 0);
    flush_all(f.e, f.s, &f.fx);
    t_unregister(f.e, &f.a);
    so_engine_unload_idle(f.e);
    cr_assert_eq(so_engine_unload_idle(f.e), 1);
    so_engine_stats st;
    so_engine_get_stats(f.e, &st);
    cr_assert_eq(st.rooms, 1, "the room keeps its conflict mode");
    /* last-writer-wins still applies: a stale write is accepted */
    tclient b, c;
    t_register(f.e, &b, AMF_ENC_AMF0, ROOM);
    t_register(f.e, &c, AMF_ENC_AMF0, ROOM);
    t_use(f.e, &b, "p", 0, true, &f.fx);
    t_use(f.e, &c, "p", 0, true, &f.fx);
    so_effects_clear(&f.fx);
    t_set1(f.e, &b, "p", 3, "x", 5, &f.fx);     /* v4 */
    t_set1(f.e, &c, "p", 3, "x", 6, &f.fx);     /* stale, accepted under LWW */
    so_object *o = so_engine_object_find(f.e, ROOM, "p");
    cr_assert_eq(so_object_version(o), 5);
    t_unregister(f.e, &b);
    t_unregister(f.e, &c);
    fx_teardown(&f);
}

Test(so_unload, without_a_store_nothing_is_unloaded)
{
    so_engine *e = t_engine_new(NULL, NULL);
    tclient a;
    so_effects fx;
    so_effects_init(&fx);
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    t_use(e, &a, "p", 0, true, &fx);
    t_set1(e, &a, "p", 1, "x", 1, &fx);
    t_unregister(e, &a);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(so_engine_unload_idle(e), 0, "memory is the only copy");
    cr_assert_not_null(so_engine_object_find(e, ROOM, "p"));
    cr_assert_eq(unloads(e), 0);
    so_effects_cleanup(&fx);
    so_engine_free(e);
}

Test(so_unload, many_rooms_bounded)
{
    so_store *s = open_mem();
    so_engine *e = t_engine_new(NULL, s);
    so_effects fx;
    so_effects_init(&fx);
    char room[32];
    for (int i = 0; i < 500; i++) {
        snprintf(room, sizeof(room), "app/r%d", i);
        tclient a;
        t_register(e, &a, AMF_ENC_AMF0, room);
        t_use(e, &a, "p", 0, true, &fx);
        t_set1(e, &a, "p", 1, "k", i, &fx);
        t_unregister(e, &a);
        so_effects_clear(&fx);
        flush_all(e, s, &fx);
        if (i % 50 == 49)
            so_engine_unload_idle(e);
    }
    so_engine_unload_idle(e);
    so_engine_unload_idle(e);
    so_engine_stats st;
    so_engine_get_stats(e, &st);
    cr_assert_eq(st.rooms, 0);
    cr_assert_eq(st.objects, 0);
    cr_assert_eq(st.room_unloads, 500);
    /* every room's value is still in the store */
    for (int i = 0; i < 500; i += 97) {
        snprintf(room, sizeof(room), "app/r%d", i);
        int err = 0;
        so_object *o = t_open(e, room, "p", true, &err);
        cr_assert_not_null(o);
        size_t it = 0;
        const char *k;
        size_t kl;
        amf_value *v;
        cr_assert(so_object_slot_next(o, &it, &k, &kl, &v));
        cr_assert_eq(amf_as_number(v), i);
        so_engine_object_close(e, o);
    }
    so_effects_cleanup(&fx);
    so_engine_free(e);
    so_store_close(s);
}
