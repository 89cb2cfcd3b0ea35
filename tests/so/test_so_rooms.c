/* Per-room settings (so_hooks.room_settings): each room gets its own
 * conflict mode and limits, never above the engine's, and rooms set up
 * this way go away once empty. */
#include "so_test_util.h"

/* Rooms of application "strict/..." reject stale writes and allow 2 slots
 * per object and 1 object per client; everything else is last-writer-wins
 * and asks for more than the engine allows. */
static int calls;

static void settings(void *ud, const char *room, so_room_settings *s)
{
    (void)ud;
    calls++;
    if (strncmp(room, "strict/", 7) == 0) {
        s->conflict = SO_CONFLICT_REJECT;
        s->max_slots_per_object = 2;
        s->max_objects_per_client = 1;
    } else {
        s->conflict = SO_CONFLICT_LWW;
        s->max_slots_per_object = 1000000;   /* capped by the engine's 8 */
        s->max_objects_per_client = 1000000; /* capped by the engine's 3 */
    }
}

static so_engine *engine(void)
{
    so_config cfg;
    so_config_default(&cfg);
    cfg.max_slots_per_object = 8;
    cfg.max_objects_per_client = 3;
    cfg.max_updates_per_sec = 0;
    so_engine *e = t_engine_new(&cfg, NULL);
    so_hooks h = {.room_settings = settings};
    so_engine_set_hooks(e, &h);
    calls = 0;
    return e;
}

static void fill_slots(so_engine *e, tclient *t, const char *name, int n, so_effects *fx)
{
    char key[8];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        so_effects_clear(fx);
        t_set1(e, t, name, t->version, key, i, fx);
        deliver(t, fx);
    }
}

Test(so_rooms, limits_follow_the_room)
{
    so_engine *e = engine();
    so_effects fx;
    so_effects_init(&fx);
    tclient s, l;
    t_register(e, &s, AMF_ENC_AMF0, "strict/a");
    t_register(e, &l, AMF_ENC_AMF0, "loose/a");
    cr_assert_eq(calls, 2, "one call per room created");

    /* objects per client: 1 in strict, the engine's 3 elsewhere */
    t_use(e, &s, "o", 0, false, &fx);
    so_effects_clear(&fx);
    t_use(e, &s, "p", 0, false, &fx);
    expect_status(&s, &fx, SO_STATUS_LIMIT_CLIENT_OBJECTS);
    so_effects_clear(&fx);
    int used = 0;
    for (int i = 0; i < 4; i++) {
        char name[8];
        snprintf(name, sizeof(name), "o%d", i);
        so_effects_clear(&fx);
        t_use(e, &l, name, 0, false, &fx);
        so_msg m;
        cr_assert(first_msg(&l, &fx, 0, &m));
        used += m.events[0].type == SO_EV_USE_SUCCESS;
        so_msg_cleanup(&m);
    }
    cr_assert_eq(used, 3, "the hook cannot go above the engine's limit (%d)", used);

    /* slots per object: 2 in strict, the engine's 8 elsewhere */
    deliver(&s, &fx);
    so_effects_clear(&fx);
    s.version = so_object_version(so_engine_object_find(e, "strict/a", "o"));
    fill_slots(e, &s, "o", 3, &fx);
    cr_assert_eq(so_object_slot_count(so_engine_object_find(e, "strict/a", "o")), 2);
    cr_assert_str_eq(s.last_status, SO_STATUS_LIMIT_SLOTS);
    l.version = so_object_version(so_engine_object_find(e, "loose/a", "o0"));
    fill_slots(e, &l, "o0", 9, &fx);
    cr_assert_eq(so_object_slot_count(so_engine_object_find(e, "loose/a", "o0")), 8);
    so_effects_cleanup(&fx);
    t_unregister(e, &s);
    t_unregister(e, &l);
    so_engine_free(e);
}

Test(so_rooms, conflict_mode_follows_the_room)
{
    so_engine *e = engine();
    so_effects fx;
    so_effects_init(&fx);
    const char *rooms[2] = {"strict/x", "loose/x"};
    uint32_t want[2] = {3, 4}; /* strict refuses the stale write, loose takes it */
    for (int r = 0; r < 2; r++) {
        tclient a, b;
        t_register(e, &a, AMF_ENC_AMF0, rooms[r]);
        t_register(e, &b, AMF_ENC_AMF0, rooms[r]);
        t_use(e, &a, "o", 0, false, &fx);
        t_use(e, &b, "o", 0, false, &fx);
        t_set1(e, &a, "o", 1, "k", 1, &fx);  /* v2 */
        t_set1(e, &a, "o", 2, "k", 2, &fx);  /* v3 */
        t_set1(e, &b, "o", 2, "k", 9, &fx);  /* b saw v2 only: stale */
        so_object *o = so_engine_object_find(e, rooms[r], "o");
        cr_assert_eq(so_object_version(o), want[r], "%s: version %u", rooms[r],
                     so_object_version(o));
        so_effects_clear(&fx);
        t_unregister(e, &a);
        t_unregister(e, &b);
    }
    so_effects_cleanup(&fx);
    so_engine_free(e);
}

Test(so_rooms, rooms_from_the_hook_go_when_empty)
{
    so_engine *e = engine();
    so_effects fx;
    so_effects_init(&fx);
    char room[32];
    for (int i = 0; i < 300; i++) {
        snprintf(room, sizeof(room), "loose/inst%d", i);
        tclient a;
        t_register(e, &a, AMF_ENC_AMF0, room);
        t_use(e, &a, "o", 0, false, &fx);
        so_effects_clear(&fx);
        t_unregister(e, &a);
    }
    so_engine_stats st;
    so_engine_get_stats(e, &st);
    cr_assert_eq(st.rooms, 0, "%llu empty rooms kept", (unsigned long long)st.rooms);
    cr_assert_eq(calls, 300);
    /* a room made again gets its settings again */
    tclient s;
    t_register(e, &s, AMF_ENC_AMF0, "strict/inst");
    t_unregister(e, &s);
    t_register(e, &s, AMF_ENC_AMF0, "strict/inst");
    cr_assert_eq(calls, 302);
    t_use(e, &s, "o", 0, false, &fx);
    so_effects_clear(&fx);
    t_use(e, &s, "p", 0, false, &fx);
    expect_status(&s, &fx, SO_STATUS_LIMIT_CLIENT_OBJECTS);
    t_unregister(e, &s);
    so_effects_cleanup(&fx);
    so_engine_free(e);
}
