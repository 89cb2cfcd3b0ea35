/* Unit tests of the shared-object engine: every event and the seven rules. */
#include "so_test_util.h"

#define ROOM "app/inst"

/* What most tests start from: an engine e, AMF0 clients a and b in ROOM
 * and one effect list fx.  A test picks its set-up with .init (or calls
 * open_engine / open_ab itself when it needs a configuration); the suite's
 * .fini tears down whatever is still open. */
static so_engine *e;
static tclient a, b;
static so_effects fx;

static void open_engine(const so_config *cfg)
{
    e = t_engine_new(cfg, NULL);
    so_effects_init(&fx);
}

static void open_ab(const so_config *cfg)
{
    open_engine(cfg);
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    t_register(e, &b, AMF_ENC_AMF0, ROOM);
}

static void engine_only(void)
{
    open_engine(NULL);
}

static void engine_ab(void)
{
    open_ab(NULL);
}

static void engine_a(void)
{
    open_engine(NULL);
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
}

static void engine_close(void)
{
    so_effects_cleanup(&fx);
    t_engine_free(e, &a, &b);
}

TestSuite(so_engine, .fini = engine_close);

static so_config cfg_default(void)
{
    so_config c;
    so_config_default(&c);
    return c;
}

/* The congestion tests: writer a (AMF0) and subscriber s in ROOM, on an
 * engine without the update-rate cap that remembers `depth` updates. */
static void open_writer_and_subscriber(tclient *s, amf_encoding enc, uint32_t depth)
{
    so_config cfg = cfg_default();
    cfg.history_depth = depth;
    cfg.max_updates_per_sec = 0;
    open_engine(&cfg);
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    t_register(e, s, enc, ROOM);
}

/* Both a and b Use `name` (temporary, from version 0). */
static void use_ab(const char *name)
{
    t_use(e, &a, name, 0, false, &fx);
    t_use(e, &b, name, 0, false, &fx);
}

/* The first message fx holds for t has event i of this type. */
static void expect_event(tclient *t, size_t i, so_event_type type)
{
    expect_nth_event(t, &fx, 0, i, type, NULL);
}

Test(so_engine, first_use_creates_and_replies, .init = engine_a)
{
    cr_assert_eq(t_use(e, &a, "chat/room1", 0, false, &fx), 0);
    cr_assert_eq(fx.len, 1);
    so_msg m;
    cr_assert(first_msg(&a, &fx, 0, &m));
    cr_assert_str_eq(m.name, "chat/room1");
    cr_assert_eq(m.version, 1);
    cr_assert_eq(m.nevents, 2);
    cr_assert_eq(m.events[0].type, SO_EV_USE_SUCCESS);
    cr_assert_eq(m.events[1].type, SO_EV_CLEAR);
    so_msg_cleanup(&m);
    so_object *o = so_engine_object_find(e, ROOM, "chat/room1");
    cr_assert_not_null(o);
    cr_assert_eq(so_object_subscriber_count(o), 1);
    cr_assert_not(so_object_persistent(o));
    t_unregister(e, &a);
    cr_assert_null(so_engine_object_find(e, ROOM, "chat/room1"), "temporary object vanished");
}

Test(so_engine, use_with_current_version_sends_only_use_success, .init = engine_ab)
{
    t_use(e, &a, "o", 0, false, &fx);
    t_set1(e, &a, "o", 1, "x", 1, &fx);
    so_effects_clear(&fx);
    t_use(e, &b, "o", 2, false, &fx);
    so_msg m;
    cr_assert(first_msg(&b, &fx, 0, &m));
    cr_assert_eq(m.version, 2);
    cr_assert_eq(m.nevents, 1);
    cr_assert_eq(m.events[0].type, SO_EV_USE_SUCCESS);
    so_msg_cleanup(&m);
}

Test(so_engine, use_with_covered_version_gets_only_the_diff, .init = engine_ab)
{
    t_use(e, &a, "o", 0, false, &fx);
    const char *k3[] = {"a", "b", "c"};
    double v3[] = {1, 2, 3};
    t_set_num(e, &a, "o", 1, 3, k3, v3, 0, &fx);   /* v2 */
    t_use(e, &b, "o", 0, false, &fx);
    deliver(&b, &fx);
    cr_assert_eq(b.version, 2);
    t_release(e, &b, "o", &fx);
    t_set1(e, &a, "o", 2, "a", 10, &fx);           /* v3 */
    t_remove(e, &a, "o", 3, "b", &fx);             /* v4 */
    t_set1(e, &a, "o", 4, "d", 4, &fx);            /* v5 */
    so_effects_clear(&fx);
    t_use(e, &b, "o", 2, false, &fx);
    so_msg m;
    cr_assert(first_msg(&b, &fx, 0, &m));
    cr_assert_eq(m.version, 5);
    cr_assert_eq(m.events[0].type, SO_EV_USE_SUCCESS);
    cr_assert_eq(m.nevents, 4, "UseSuccess + a, b, d; got %zu", m.nevents);
    for (size_t i = 1; i < m.nevents; i++) {
        cr_assert_neq(m.events[i].type, SO_EV_CLEAR);
        cr_assert_str_neq(m.events[i].kv[0].key, "c", "unchanged slot c is not sent");
    }
    so_msg_cleanup(&m);
    deliver(&b, &fx);
    assert_model_eq(&b, so_engine_object_find(e, ROOM, "o"));
    cr_assert_eq(b.clears, 1, "only the first Use cleared");
}

Test(so_engine, use_older_than_history_gets_clear_and_all)
{
    so_config cfg = cfg_default();
    cfg.history_depth = 4;
    open_ab(&cfg);
    t_use(e, &a, "o", 0, false, &fx);
    for (int i = 0; i < 10; i++)
        t_set1(e, &a, "o", (uint32_t)(1 + i), i % 2 ? "p" : "q", i, &fx);
    so_object *o = so_engine_object_find(e, ROOM, "o");
    cr_assert_eq(so_object_version(o), 11);
    cr_assert_eq(so_object_history_len(o), 4, "history bounded by depth");
    so_effects_clear(&fx);
    t_use(e, &b, "o", 3, false, &fx);
    so_msg m;
    cr_assert(first_msg(&b, &fx, 0, &m));
    cr_assert_eq(m.events[0].type, SO_EV_USE_SUCCESS);
    cr_assert_eq(m.events[1].type, SO_EV_CLEAR);
    cr_assert_eq(m.nevents, 4);
    so_msg_cleanup(&m);
    deliver(&b, &fx);
    assert_model_eq(&b, o);
    /* a version from the future (recreated object) also gets everything */
    so_effects_clear(&fx);
    t_use(e, &b, "o", 999, false, &fx);
    expect_event(&b, 1, SO_EV_CLEAR);
}

Test(so_engine, multi_key_update_is_one_version_one_message, .init = engine_ab)
{
    tclient c;
    t_register(e, &c, AMF_ENC_AMF3, ROOM);
    use_ab("o");
    t_use(e, &c, "o", 0, false, &fx);
    deliver(&b, &fx);
    deliver(&c, &fx);
    so_effects_clear(&fx);
    const char *k[] = {"x", "y", "z"};
    double v[] = {1, 2, 3};
    cr_assert_eq(t_set_num(e, &a, "o", 1, 3, k, v, 0, &fx), 0);
    so_object *o = so_engine_object_find(e, ROOM, "o");
    cr_assert_eq(so_object_version(o), 2);
    /* requester: one message, three Success */
    cr_assert_eq(count_for(&a, &fx), 1);
    so_msg m;
    cr_assert(first_msg(&a, &fx, 0, &m));
    cr_assert_eq(m.nevents, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(m.events[i].type, SO_EV_SUCCESS);
    cr_assert_eq(m.version, 2);
    so_msg_cleanup(&m);
    /* others: one message each with the three changes */
    cr_assert_eq(count_for(&b, &fx), 1);
    cr_assert_eq(count_for(&c, &fx), 1);
    deliver(&b, &fx);
    deliver(&c, &fx);
    assert_model_eq(&b, o);
    assert_model_eq(&c, o);
    /* encoded once per encoding: b and c are in different effects, and a
     * fourth AMF0 subscriber would share b's buffer */
    size_t bodies = 0;
    for (size_t i = 0; i < fx.len; i++)
        bodies++;
    cr_assert_eq(bodies, 3, "requester reply + one AMF0 + one AMF3 body");
    t_unregister(e, &c);
}

Test(so_engine, one_body_shared_by_all_subscribers, .init = engine_only)
{
    tclient t[6];
    for (int i = 0; i < 6; i++) {
        t_register(e, &t[i], AMF_ENC_AMF0, ROOM);
        t_use(e, &t[i], "o", 0, false, &fx);
    }
    so_effects_clear(&fx);
    t_set1(e, &t[0], "o", 1, "k", 5, &fx);
    cr_assert_eq(fx.len, 2);
    size_t others = 0;
    for (size_t i = 0; i < fx.len; i++)
        if (fx.items[i].nto == 5)
            others++;
    cr_assert_eq(others, 1, "one effect with 5 recipients");
    for (int i = 0; i < 6; i++)
        t_unregister(e, &t[i]);
}

Test(so_engine, conflict_reject, .init = engine_ab)
{
    use_ab("o");
    t_set1(e, &a, "o", 1, "k", 1, &fx);      /* v2, k written by a */
    so_effects_clear(&fx);
    /* b still at v1: stale for k */
    t_set1(e, &b, "o", 1, "k", 99, &fx);
    so_object *o = so_engine_object_find(e, ROOM, "o");
    cr_assert_eq(so_object_version(o), 2, "not applied");
    cr_assert_eq(amf_as_number(so_object_get(o, "k", 1)), 1);
    cr_assert_eq(count_for(&a, &fx), 0, "others see nothing");
    so_msg m;
    cr_assert(first_msg(&b, &fx, 0, &m));
    cr_assert_eq(m.nevents, 1);
    cr_assert_eq(m.events[0].type, SO_EV_CHANGE);
    cr_assert_eq(amf_as_number(m.events[0].kv[0].value), 1);
    so_msg_cleanup(&m);
    /* a stale remove gets a Change back too */
    so_effects_clear(&fx);
    t_remove(e, &b, "o", 1, "k", &fx);
    expect_event(&b, 0, SO_EV_CHANGE);
    /* a removed by a at v3; b at v2 writing k is stale -> Remove */
    t_remove(e, &a, "o", 2, "k", &fx);
    so_effects_clear(&fx);
    t_set1(e, &b, "o", 2, "k", 7, &fx);
    expect_event(&b, 0, SO_EV_REMOVE);
    cr_assert_null(so_object_get(o, "k", 1));
    /* with the current version b's write applies */
    so_effects_clear(&fx);
    t_set1(e, &b, "o", 3, "k", 7, &fx);
    expect_event(&b, 0, SO_EV_SUCCESS);
    /* own writes are never stale */
    so_effects_clear(&fx);
    t_set1(e, &b, "o", 1, "k", 8, &fx);
    expect_event(&b, 0, SO_EV_SUCCESS);
}

Test(so_engine, last_writer_wins_mode, .init = engine_only)
{
    cr_assert_eq(so_engine_room_set_conflict(e, ROOM, SO_CONFLICT_LWW), 0);
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    t_register(e, &b, AMF_ENC_AMF0, ROOM);
    use_ab("o");
    t_set1(e, &a, "o", 1, "k", 1, &fx);
    so_effects_clear(&fx);
    t_set1(e, &b, "o", 1, "k", 99, &fx);
    so_object *o = so_engine_object_find(e, ROOM, "o");
    cr_assert_eq(amf_as_number(so_object_get(o, "k", 1)), 99);
    cr_assert_eq(so_object_version(o), 3);
    expect_event(&b, 0, SO_EV_SUCCESS);
    cr_assert_eq(count_for(&a, &fx), 1);
}

Test(so_engine, remove_and_remove_absent, .init = engine_ab)
{
    use_ab("o");
    t_set1(e, &a, "o", 1, "k", 1, &fx);
    deliver(&b, &fx);
    cr_assert_not_null(model_find(&b, "k"));
    so_effects_clear(&fx);
    t_remove(e, &a, "o", 2, "k", &fx);
    so_object *o = so_engine_object_find(e, ROOM, "o");
    cr_assert_eq(so_object_version(o), 3);
    cr_assert_eq(so_object_slot_count(o), 0);
    expect_event(&a, 0, SO_EV_SUCCESS);
    expect_event(&b, 0, SO_EV_REMOVE);
    deliver(&b, &fx);
    cr_assert_null(model_find(&b, "k"));
    /* removing what does not exist: Success, no new version, nothing to others */
    so_effects_clear(&fx);
    t_remove(e, &a, "o", 3, "nope", &fx);
    cr_assert_eq(so_object_version(o), 3);
    cr_assert_eq(count_for(&a, &fx), 1);
    cr_assert_eq(count_for(&b, &fx), 0);
}

Test(so_engine, send_message_reaches_everyone_including_sender, .init = engine_a)
{
    tclient x;
    t_register(e, &b, AMF_ENC_AMF3, ROOM);
    t_register(e, &x, AMF_ENC_AMF0, ROOM); /* not subscribed */
    use_ab("o");
    so_effects_clear(&fx);
    amf_value *arg = amf_string_cstr("hello");
    sh_buf buf;
    sh_buf_init(&buf, 1 << 20);
    so_wire_client_send(&buf, SO_MSG_AMF0, "o", 1, false, "onChat", 1, &arg);
    cr_assert_eq(t_send_body(e, &a, &buf, 0, &fx), 0);
    deliver(&a, &fx);
    deliver(&b, &fx);
    cr_assert_eq(a.sends, 1);
    cr_assert_eq(b.sends, 1);
    cr_assert_str_eq(b.last_handler, "onChat");
    cr_assert_eq(count_for(&x, &fx), 0);
    cr_assert_eq(so_object_version(so_engine_object_find(e, ROOM, "o")), 1, "no version");
    /* a client that did not Use the object gets NoObjectFound */
    so_effects_clear(&fx);
    sh_buf_init(&buf, 1 << 20);
    so_wire_client_send(&buf, SO_MSG_AMF0, "o", 1, false, "onChat", 1, &arg);
    t_send_body(e, &x, &buf, 0, &fx);
    deliver(&x, &fx);
    cr_assert_str_eq(x.last_status, SO_STATUS_NO_OBJECT);
    cr_assert_eq(count_for(&a, &fx), 0);
    amf_unref(arg);
    t_unregister(e, &x);
}

Test(so_engine, release_and_last_subscriber_leaving, .init = engine_ab)
{
    use_ab("o");
    t_set1(e, &a, "o", 1, "k", 1, &fx);
    t_release(e, &a, "o", &fx);
    so_object *o = so_engine_object_find(e, ROOM, "o");
    cr_assert_not_null(o);
    cr_assert_eq(so_object_subscriber_count(o), 1);
    so_effects_clear(&fx);
    t_set1(e, &b, "o", 2, "k", 2, &fx);
    cr_assert_eq(count_for(&a, &fx), 0, "released client gets nothing");
    t_release(e, &b, "o", &fx);
    cr_assert_null(so_engine_object_find(e, ROOM, "o"), "temporary object vanished");
    /* a new Use starts from scratch */
    so_effects_clear(&fx);
    t_use(e, &a, "o", 3, false, &fx);
    o = so_engine_object_find(e, ROOM, "o");
    cr_assert_eq(so_object_version(o), 1);
    cr_assert_eq(so_object_slot_count(o), 0);
    t_unregister(e, &a);
    t_unregister(e, &b);
    so_engine_stats st;
    so_engine_get_stats(e, &st);
    cr_assert_eq(st.objects, 0);
    cr_assert_eq(st.rooms, 0);
}

Test(so_engine, bad_persistence, .init = engine_ab)
{
    t_use(e, &a, "o", 0, true, &fx);
    so_effects_clear(&fx);
    t_use(e, &b, "o", 0, false, &fx);
    deliver(&b, &fx);
    cr_assert_str_eq(b.last_status, SO_STATUS_BAD_PERSISTENCE);
    cr_assert_eq(b.use_success, 0);
    cr_assert_eq(so_object_subscriber_count(so_engine_object_find(e, ROOM, "o")), 1);
}

Test(so_engine, no_write_access, .init = engine_ab)
{
    use_ab("pub/o");
    t_set1(e, &a, "pub/o", 1, "k", 1, &fx);
    so_client_set_access(e, b.c, NULL, "priv;other/");
    so_effects_clear(&fx);
    t_set1(e, &b, "pub/o", 2, "k", 5, &fx);
    so_msg m;
    cr_assert(first_msg(&b, &fx, 0, &m));
    cr_assert_eq(m.nevents, 2);
    cr_assert_eq(m.events[0].type, SO_EV_STATUS);
    cr_assert_str_eq(m.events[0].code, SO_STATUS_NO_WRITE);
    cr_assert_str_eq(m.events[0].level, "error");
    cr_assert_eq(m.events[1].type, SO_EV_CHANGE);
    cr_assert_eq(amf_as_number(m.events[1].kv[0].value), 1);
    so_msg_cleanup(&m);
    /* remove of an absent key: Status + Remove */
    so_effects_clear(&fx);
    t_remove(e, &b, "pub/o", 2, "zz", &fx);
    expect_event(&b, 1, SO_EV_REMOVE);
    cr_assert_eq(amf_as_number(so_object_get(so_engine_object_find(e, ROOM, "pub/o"), "k", 1)), 1);
    /* whole segments: "pub" allows "pub/o" but "pu" does not */
    so_client_set_access(e, b.c, NULL, "/pu");
    so_effects_clear(&fx);
    t_set1(e, &b, "pub/o", 2, "k", 5, &fx);
    expect_event(&b, 0, SO_EV_STATUS);
    so_client_set_access(e, b.c, NULL, "/pub");
    so_effects_clear(&fx);
    t_set1(e, &b, "pub/o", 2, "k", 5, &fx);
    expect_event(&b, 0, SO_EV_SUCCESS);
    /* server-only objects */
    so_object_set_server_only(so_engine_object_find(e, ROOM, "pub/o"), true);
    so_effects_clear(&fx);
    t_set1(e, &b, "pub/o", 3, "k", 6, &fx);
    cr_assert(first_msg(&b, &fx, 0, &m));
    cr_assert_str_eq(m.events[0].code, SO_STATUS_NO_WRITE);
    so_msg_cleanup(&m);
}

Test(so_engine, no_read_access, .init = engine_a)
{
    so_client_set_access(e, a.c, "public", NULL);
    t_use(e, &a, "secret/o", 0, false, &fx);
    deliver(&a, &fx);
    cr_assert_str_eq(a.last_status, SO_STATUS_NO_READ);
    cr_assert_eq(a.use_success, 0);
    cr_assert_null(so_engine_object_find(e, ROOM, "secret/o"));
    so_effects_clear(&fx);
    t_use(e, &a, "public/o", 0, false, &fx);
    deliver(&a, &fx);
    cr_assert_eq(a.use_success, 1);
}

static bool hook_deny_price(void *ud, void *user, const so_object *o, const char *key,
                            size_t klen, const amf_value *v)
{
    (void)ud; (void)user; (void)o; (void)v;
    return !(klen == 5 && !memcmp(key, "price", 5));
}

Test(so_engine, write_hook_refuses, .init = engine_only)
{
    so_hooks h = {.allow_write = hook_deny_price};
    so_engine_set_hooks(e, &h);
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    t_use(e, &a, "o", 0, false, &fx);
    const char *k[] = {"price", "bid"};
    double v[] = {1, 2};
    so_effects_clear(&fx);
    t_set_num(e, &a, "o", 1, 2, k, v, 0, &fx);
    deliver(&a, &fx);
    cr_assert_eq(a.success, 1);
    cr_assert_str_eq(a.last_status, SO_STATUS_NO_WRITE);
}

/* Each cap: one below passes, passing it gets its Status, and the
 * request is still answered with the current value. */
Test(so_engine, caps)
{
    so_config cfg = cfg_default();
    cfg.max_objects_per_room = 2;
    cfg.max_slots_per_object = 2;
    cfg.max_value_bytes = 20; /* (object bytes, which count memory: test_so_mem.c) */
    cfg.max_subscribers = 2;
    cfg.max_objects_per_client = 2;
    cfg.max_updates_per_sec = 5;
    cfg.max_name_len = 8;
    cfg.max_key_len = 4;
    open_ab(&cfg);
    tclient c;
    t_register(e, &c, AMF_ENC_AMF0, ROOM);
    /* name length */
    t_use(e, &a, "123456789", 0, false, &fx);
    expect_status(&a, &fx, SO_STATUS_BAD_NAME);
    so_effects_clear(&fx);
    /* objects per client */
    t_use(e, &a, "o1", 0, false, &fx);
    t_use(e, &a, "o2", 0, false, &fx);
    so_effects_clear(&fx);
    t_use(e, &a, "o3", 0, false, &fx);
    expect_status(&a, &fx, SO_STATUS_LIMIT_CLIENT_OBJECTS);
    so_effects_clear(&fx);
    /* objects per room */
    t_use(e, &b, "o4", 0, false, &fx);
    expect_status(&b, &fx, SO_STATUS_LIMIT_OBJECTS);
    so_effects_clear(&fx);
    /* subscribers */
    t_use(e, &b, "o1", 0, false, &fx);
    so_effects_clear(&fx);
    t_use(e, &c, "o1", 0, false, &fx);
    expect_status(&c, &fx, SO_STATUS_LIMIT_SUBSCRIBERS);
    so_effects_clear(&fx);
    /* key length */
    t_set1(e, &a, "o1", 1, "abcde", 1, &fx);
    expect_status(&a, &fx, SO_STATUS_LIMIT_KEY);
    so_effects_clear(&fx);
    /* value bytes: a 25-byte string passes 20 */
    amf_value *big = amf_string_cstr("0123456789012345678901");
    t_setv(e, &a, "o1", 1, "s", big, &fx);
    expect_status(&a, &fx, SO_STATUS_LIMIT_VALUE);
    so_effects_clear(&fx);
    amf_unref(big);
    /* slots per object */
    t_set1(e, &a, "o1", 1, "a", 1, &fx);
    t_set1(e, &a, "o1", 2, "b", 1, &fx);
    so_effects_clear(&fx);
    t_set1(e, &a, "o1", 3, "c", 1, &fx);
    expect_status(&a, &fx, SO_STATUS_LIMIT_SLOTS);
    /* answered with the (absent) current value */
    expect_event(&a, 1, SO_EV_REMOVE);
    so_effects_clear(&fx);
    /* update rate: 5 write messages per second */
    int refused = 0;
    for (int i = 0; i < 8; i++) {
        t_set_num(e, &b, "o1", so_object_version(so_engine_object_find(e, ROOM, "o1")), 1,
                  (const char *[]){"a"}, (double[]){i}, 1000000000000ull, &fx);
        so_msg mm;
        cr_assert(first_msg(&b, &fx, 0, &mm));
        if (mm.events[0].type == SO_EV_STATUS) {
            cr_assert_str_eq(mm.events[0].code, SO_STATUS_LIMIT_RATE);
            refused++;
        }
        so_msg_cleanup(&mm);
        so_effects_clear(&fx);
    }
    cr_assert_eq(refused, 3);
    /* next second: allowed again */
    t_set_num(e, &b, "o1", so_object_version(so_engine_object_find(e, ROOM, "o1")), 1,
              (const char *[]){"a"}, (double[]){1}, 1000000001000ull, &fx);
    expect_event(&b, 0, SO_EV_SUCCESS);
    t_unregister(e, &c);
}

Test(so_engine, write_without_use_is_answered, .init = engine_a)
{
    const char *k[] = {"x", "y"};
    double v[] = {1, 2};
    t_set_num(e, &a, "nobody", 0, 2, k, v, 0, &fx);
    deliver(&a, &fx);
    cr_assert_eq(a.status, 2, "one answer per key");
    cr_assert_str_eq(a.last_status, SO_STATUS_NO_OBJECT);
}

Test(so_engine, malformed_message_is_an_error_and_ignored_events, .init = engine_a)
{
    uint8_t bad[] = {0, 5, 'a'};
    sh_error err = {0};
    cr_assert_lt(so_engine_handle(e, a.c, SO_MSG_AMF0, bad, sizeof(bad), 0, &fx, &err), 0);
    cr_assert_not_null(err.what);
    cr_assert_eq(fx.len, 0);
    /* a client sending server events (Clear, Success) and an unknown type */
    uint8_t odd[] = {0, 1, 'o', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
                     0x08, 0, 0, 0, 0, 0x05, 0, 0, 0, 3, 0, 1, 'k', 0x77, 0, 0, 0, 0};
    cr_assert_eq(so_engine_handle(e, a.c, SO_MSG_AMF0, odd, sizeof(odd), 0, &fx, NULL), 0);
    cr_assert_eq(fx.len, 0);
    so_engine_stats st;
    so_engine_get_stats(e, &st);
    cr_assert_eq(st.ignored_events, 3);
}

Test(so_engine, type16_and_type19_clients_interoperate, .init = engine_only)
{
    t_register(e, &a, AMF_ENC_AMF3, ROOM);
    t_register(e, &b, AMF_ENC_AMF0, ROOM);
    use_ab("o");
    amf_value *vals[] = {tv_bytes(), tv_typed(), tv_vec()};
    const char *keys[] = {"ba", "obj", "vec"};
    for (int i = 0; i < 3; i++)
        t_setv(e, &a, "o", (uint32_t)(1 + i), keys[i], vals[i], &fx);
    deliver(&b, &fx);
    deliver(&a, &fx);
    so_object *o = so_engine_object_find(e, ROOM, "o");
    cr_assert_eq(so_object_version(o), 4);
    assert_model_eq(&b, o);
    for (int i = 0; i < 3; i++) {
        cr_assert(amf_equal(so_object_get(o, keys[i], strlen(keys[i])), vals[i]));
        amf_unref(vals[i]);
    }
    /* raw type-16 body with leading byte 3 is accepted */
    sh_buf buf;
    sh_buf_init(&buf, 1 << 20);
    so_wire_client_use(&buf, SO_MSG_AMF3, "o2", 0, false);
    buf.data[0] = 3;
    so_effects_clear(&fx);
    cr_assert_eq(so_engine_handle(e, a.c, SO_MSG_AMF3, buf.data, buf.len, 0, &fx, NULL), 0);
    cr_assert_eq(fx.items[0].msg_type, SO_MSG_AMF3);
    cr_assert_eq(fx.items[0].body->data[0], 0);
    sh_buf_cleanup(&buf);
}

Test(so_engine, slow_subscriber_catch_up)
{
    tclient s;
    open_writer_and_subscriber(&s, AMF_ENC_AMF0, 64);
    t_use(e, &a, "o", 0, false, &fx);
    t_use(e, &a, "p", 0, false, &fx);
    t_use(e, &s, "o", 0, false, &fx);
    t_use(e, &s, "p", 0, false, &fx);
    deliver(&s, &fx);
    so_effects_clear(&fx);
    so_object *o = so_engine_object_find(e, ROOM, "o");
    so_object *p = so_engine_object_find(e, ROOM, "p");
    cr_assert_eq(so_client_set_congested(e, s.c, true, &fx), 0);
    /* 30 updates on o (covered by the history), 200 on p (not covered) */
    char key[16];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "k%d", i % 20);
        if (i < 30)
            t_set1(e, &a, "o", so_object_version(o), key, i, &fx);
        t_set1(e, &a, "p", so_object_version(p), key, i, &fx);
        if (i % 7 == 0)
            t_remove(e, &a, "p", so_object_version(p), "k3", &fx);
        cr_assert_eq(count_for(&s, &fx), 0, "nothing per update while congested");
        so_effects_clear(&fx);
    }
    cr_assert_leq(so_object_history_len(p), 64, "memory bounded");
    /* drain: one message per object, o by diff, p by Clear + all */
    cr_assert_eq(so_client_set_congested(e, s.c, false, &fx), 0);
    cr_assert_eq(count_for(&s, &fx), 2, "got %zu", count_for(&s, &fx));
    size_t clears_before = s.clears;
    deliver(&s, &fx);
    cr_assert_eq(s.clears, clears_before + 1, "only p needed a Clear");
    /* s's model holds o and p together: check the union */
    size_t total = so_object_slot_count(o) + so_object_slot_count(p);
    (void)total;
    so_effects_clear(&fx);
    /* p's model: rebuild a client that only Uses p to compare */
    tclient chk;
    t_register(e, &chk, AMF_ENC_AMF0, ROOM);
    t_use(e, &chk, "p", 0, false, &fx);
    deliver(&chk, &fx);
    for (size_t i = 0; i < chk.n; i++) {
        tkv *kv = model_find(&s, chk.kv[i].key);
        cr_assert_not_null(kv);
    }
    cr_assert_eq(s.version, so_object_version(p));
    /* since o and p use the same keys, check values by asking each */
    size_t it = 0;
    const char *k;
    size_t kl;
    amf_value *v;
    while (so_object_slot_next(p, &it, &k, &kl, &v)) {
        tkv *kv = model_find(&s, k);
        cr_assert_not_null(kv);
        cr_assert(amf_equal(kv->v, v), "p.%s converged", k);
    }
    /* afterwards updates flow again */
    so_effects_clear(&fx);
    t_set1(e, &a, "o", so_object_version(o), "new", 1, &fx);
    cr_assert_eq(count_for(&s, &fx), 1);
    t_unregister(e, &chk);
    t_unregister(e, &s);
}

Test(so_engine, slow_subscriber_state_equal_single_object)
{
    tclient s;
    open_writer_and_subscriber(&s, AMF_ENC_AMF3, 16);
    t_use(e, &a, "o", 0, false, &fx);
    t_use(e, &s, "o", 0, false, &fx);
    so_object *o = so_engine_object_find(e, ROOM, "o");
    for (int round = 0; round < 3; round++) {
        deliver(&s, &fx);
        so_effects_clear(&fx);
        so_client_set_congested(e, s.c, true, &fx);
        int n = round == 1 ? 100 : 10; /* round 1 outruns the history */
        char key[16];
        for (int i = 0; i < n; i++) {
            snprintf(key, sizeof(key), "k%d", (i * 7 + round) % 13);
            if (i % 5 == 4)
                t_remove(e, &a, "o", so_object_version(o), key, &fx);
            else
                t_set1(e, &a, "o", so_object_version(o), key, i + round * 1000, &fx);
        }
        so_effects_clear(&fx);
        so_client_set_congested(e, s.c, false, &fx);
        deliver(&s, &fx);
        assert_model_eq(&s, o);
        cr_assert_eq(s.version, so_object_version(o));
        so_effects_clear(&fx);
    }
    t_unregister(e, &s);
}

/* Found by fuzz_so_engine: a congested subscriber that writes gets its
 * answer at once, but the answer's header must carry the version the
 * client really holds.  Claiming the current version made the client come
 * back (Use) with it and never learn of the changes it had missed. */
Test(so_engine, congested_writer_answer_keeps_its_version)
{
    tclient s;
    open_writer_and_subscriber(&s, AMF_ENC_AMF0, SO_DEFAULT_HISTORY_DEPTH);
    t_use(e, &a, "o", 0, false, &fx);
    t_use(e, &s, "o", 0, false, &fx);
    t_set1(e, &a, "o", 1, "x", 1, &fx);                 /* v2 */
    deliver(&s, &fx);
    so_effects_clear(&fx);
    cr_assert_eq(s.version, 2);
    cr_assert_eq(so_client_set_congested(e, s.c, true, &fx), 0);
    t_remove(e, &a, "o", 2, "x", &fx);                  /* v3, s misses it */
    cr_assert_eq(count_for(&s, &fx), 0);
    so_effects_clear(&fx);
    t_set1(e, &s, "o", 2, "y", 5, &fx);                 /* v4: s's own write */
    so_msg m;
    cr_assert(first_msg(&s, &fx, 0, &m));
    cr_assert_eq(m.events[0].type, SO_EV_SUCCESS);
    cr_assert_eq(m.version, 2, "answer claims v%u; s holds v2", m.version);
    so_msg_cleanup(&m);
    deliver(&s, &fx);
    so_effects_clear(&fx);
    /* s comes back with the version it holds, still congested: UseSuccess
     * now, still claiming only that version; the rest comes at its drain */
    t_use(e, &s, "o", s.version, false, &fx);
    cr_assert(first_msg(&s, &fx, 0, &m));
    cr_assert_eq(m.nevents, 1);
    cr_assert_eq(m.events[0].type, SO_EV_USE_SUCCESS);
    cr_assert_eq(m.version, 2, "UseSuccess claims v%u; s holds v2", m.version);
    so_msg_cleanup(&m);
    deliver(&s, &fx);
    so_effects_clear(&fx);
    cr_assert_eq(so_client_set_congested(e, s.c, false, &fx), 0);
    cr_assert_eq(count_for(&s, &fx), 1, "one catch-up message");
    deliver(&s, &fx);
    so_effects_clear(&fx);
    so_object *o = so_engine_object_find(e, ROOM, "o");
    cr_assert_eq(s.version, so_object_version(o));
    assert_model_eq(&s, o);
    cr_assert_null(model_find(&s, "x"), "the remove s missed reached it");
    t_unregister(e, &s);
}

Test(so_engine, server_api_set_remove_lock_send, .init = engine_a)
{
    int err = 0;
    so_object *o = so_engine_object_open(e, ROOM, "auction/item1", false, &err);
    cr_assert_not_null(o);
    so_object_set_server_only(o, true);
    amf_value *v = amf_number(100);
    cr_assert_eq(so_object_set(e, o, "price", 5, v, &fx), 0);
    cr_assert_eq(so_object_version(o), 2);
    t_use(e, &a, "auction/item1", 0, false, &fx);
    deliver(&a, &fx);
    assert_model_eq(&a, o);
    /* lock: two changes, one version, one message */
    so_effects_clear(&fx);
    so_object_lock(e, o);
    amf_value *w = amf_string_cstr("bob");
    so_object_set(e, o, "winner", 6, w, &fx);
    so_object_remove(e, o, "price", 5, &fx);
    cr_assert_eq(fx.len, 0, "nothing before unlock");
    cr_assert_eq(so_object_version(o), 2);
    cr_assert_not_null(so_object_get(o, "price", 5), "reads show the committed state");
    cr_assert_eq(so_object_unlock(e, o, &fx), 0);
    cr_assert_eq(so_object_version(o), 3);
    cr_assert_eq(count_for(&a, &fx), 1);
    deliver(&a, &fx);
    assert_model_eq(&a, o);
    /* server writes are conflicts for stale clients (writer 0) and
     * server-only refuses client writes */
    so_effects_clear(&fx);
    amf_value *args[] = {amf_number(1)};
    cr_assert_eq(so_object_send(e, o, "tick", 1, args, &fx), 0);
    deliver(&a, &fx);
    cr_assert_str_eq(a.last_handler, "tick");
    /* temporary object kept by the server handle after the client leaves */
    t_release(e, &a, "auction/item1", &fx);
    cr_assert_not_null(so_engine_object_find(e, ROOM, "auction/item1"));
    int err2 = 0;
    cr_assert_null(so_engine_object_open(e, ROOM, "auction/item1", true, &err2));
    cr_assert_eq(err2, SH_EEXIST);
    so_engine_object_close(e, o);
    cr_assert_null(so_engine_object_find(e, ROOM, "auction/item1"));
    amf_unref(v);
    amf_unref(w);
    amf_unref(args[0]);
}

/* so_object_apply (the server API's writes): one request is one version,
 * or nothing when any of its changes passes a cap. */
Test(so_engine, server_apply_is_all_or_nothing)
{
    so_config cfg = cfg_default();
    cfg.max_slots_per_object = 3;
    cfg.max_value_bytes = 64;
    open_engine(&cfg);
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    int err = 0;
    so_object *o = so_engine_object_open(e, ROOM, "o", false, &err);
    cr_assert_not_null(o);
    t_use(e, &a, "o", 0, false, &fx);
    deliver(&a, &fx);
    so_effects_clear(&fx);
    uint32_t v0 = so_object_version(o);
    amf_value *n1 = amf_number(1), *big = amf_string_cstr(
        "a string of more than sixty-four bytes, encoded, which max_value_bytes refuses");
    so_change four[] = {{"a", 1, n1}, {"b", 1, n1}, {"c", 1, n1}, {"d", 1, n1}};
    cr_assert_eq(so_object_apply(e, o, four, 4, &fx), SH_ELIMIT, "4 slots over a cap of 3");
    cr_assert_eq(so_object_version(o), v0, "no version");
    cr_assert_eq(so_object_slot_count(o), 0, "nothing applied");
    cr_assert_eq(fx.len, 0, "nothing sent");
    so_change toobig[] = {{"a", 1, n1}, {"z", 1, big}};
    cr_assert_eq(so_object_apply(e, o, toobig, 2, &fx), SH_ELIMIT, "a value over 64 bytes");
    cr_assert_eq(so_object_slot_count(o), 0);
    cr_assert_eq(so_object_apply(e, o, four, 3, &fx), 0, "3 slots fit");
    cr_assert_eq(so_object_version(o), v0 + 1, "one version for three slots");
    cr_assert_eq(count_for(&a, &fx), 1, "one message to the subscriber");
    deliver(&a, &fx);
    assert_model_eq(&a, o);
    so_effects_clear(&fx);
    /* full: a new key first is refused whole; a removal first makes room */
    so_change add_then_rm[] = {{"d", 1, n1}, {"a", 1, NULL}};
    cr_assert_eq(so_object_apply(e, o, add_then_rm, 2, &fx), SH_ELIMIT);
    cr_assert_not_null(so_object_get(o, "a", 1), "the removal was not applied either");
    so_change rm_then_add[] = {{"a", 1, NULL}, {"d", 1, n1}};
    cr_assert_eq(so_object_apply(e, o, rm_then_add, 2, &fx), 0);
    cr_assert_eq(so_object_version(o), v0 + 2);
    cr_assert_null(so_object_get(o, "a", 1));
    cr_assert_not_null(so_object_get(o, "d", 1));
    /* a key set, removed and set again counts once */
    so_change again[] = {{"d", 1, NULL}, {"e", 1, n1}, {"e", 1, NULL}, {"e", 1, n1}};
    cr_assert_eq(so_object_apply(e, o, again, 4, &fx), 0);
    cr_assert_eq(so_object_slot_count(o), 3);
    deliver(&a, &fx);
    assert_model_eq(&a, o);
    so_effects_clear(&fx);
    /* locked: queued, applied at the unlock with the others */
    so_object_lock(e, o);
    uint32_t vl = so_object_version(o);
    so_change one[] = {{"b", 1, big}};
    cr_assert_eq(so_object_apply(e, o, one, 1, &fx), SH_ELIMIT, "value bytes: refused at once");
    so_change q[] = {{"b", 1, NULL}, {"g", 1, n1}};
    cr_assert_eq(so_object_apply(e, o, q, 2, &fx), 0, "queued");
    cr_assert_eq(so_object_version(o), vl);
    cr_assert_not_null(so_object_get(o, "b", 1), "reads show the committed state");
    cr_assert_eq(fx.len, 0);
    cr_assert_eq(so_object_unlock(e, o, &fx), 0);
    cr_assert_eq(so_object_version(o), vl + 1);
    cr_assert_null(so_object_get(o, "b", 1));
    cr_assert_not_null(so_object_get(o, "g", 1));
    deliver(&a, &fx);
    assert_model_eq(&a, o);
    so_engine_object_close(e, o);
    amf_unref(n1);
    amf_unref(big);
}

Test(so_engine, large_state_is_split_into_bounded_messages)
{
    so_config cfg = cfg_default();
    cfg.max_body_bytes = 200;
    open_ab(&cfg);
    t_use(e, &a, "o", 0, false, &fx);
    char key[16];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "key%d", i);
        t_set1(e, &a, "o", (uint32_t)(1 + i), key, i, &fx);
    }
    so_effects_clear(&fx);
    t_use(e, &b, "o", 0, false, &fx);
    size_t n = count_for(&b, &fx);
    cr_assert_gt(n, 1);
    for (size_t i = 0; i < fx.len; i++)
        cr_assert_lt(fx.items[i].body->len, 200 + 64);
    deliver(&b, &fx);
    assert_model_eq(&b, so_engine_object_find(e, ROOM, "o"));
}

Test(so_engine, rooms_are_separate_namespaces, .init = engine_only)
{
    t_register(e, &a, AMF_ENC_AMF0, "app/one");
    t_register(e, &b, AMF_ENC_AMF0, "app/two");
    use_ab("o");
    so_effects_clear(&fx);
    t_set1(e, &a, "o", 1, "k", 1, &fx);
    cr_assert_eq(count_for(&b, &fx), 0);
    cr_assert_eq(so_object_version(so_engine_object_find(e, "app/two", "o")), 1);
}

/* Random client messages against the engine never crash, and every
 * effect body decodes. */
Test(so_engine, random_messages_never_crash)
{
    so_config cfg = cfg_default();
    cfg.max_updates_per_sec = 0;
    cfg.history_depth = 8;
    open_engine(&cfg);
    tclient t[4];
    for (int i = 0; i < 4; i++)
        t_register(e, &t[i], i % 2 ? AMF_ENC_AMF3 : AMF_ENC_AMF0, ROOM);
    uint32_t seed = 7;
    const char *names[] = {"a", "b", "c/d"};
    const char *keys[] = {"x", "y", "z", "w"};
    for (int iter = 0; iter < 3000; iter++) {
        seed = seed * 1103515245u + 12345u;
        tclient *c = &t[(seed >> 8) % 4];
        const char *name = names[(seed >> 12) % 3];
        const char *key = keys[(seed >> 16) % 4];
        uint32_t hv = (seed >> 20) % 12;
        switch ((seed >> 24) % 7) {
        case 0: t_use(e, c, name, hv, false, &fx); break;
        case 1: t_release(e, c, name, &fx); break;
        case 2: case 3: t_set1(e, c, name, hv, key, iter, &fx); break;
        case 4: t_remove(e, c, name, hv, key, &fx); break;
        case 5: so_client_set_congested(e, c->c, (seed >> 4) & 1, &fx); break;
        default: {
            uint8_t junk[32];
            for (size_t i = 0; i < sizeof(junk); i++)
                junk[i] = (uint8_t)(seed >> (i % 24));
            so_engine_handle(e, c->c, mt_of(c), junk, (seed >> 3) % 32, 0, &fx, NULL);
        }
        }
        for (int i = 0; i < 4; i++)
            deliver(&t[i], &fx);
        so_effects_clear(&fx);
    }
    for (int i = 0; i < 4; i++)
        t_unregister(e, &t[i]);
    so_engine_stats st;
    so_engine_get_stats(e, &st);
    cr_assert_eq(st.objects, 0);
}

/* Its own tear-down: the engine is freed while a and b are registered. */
Test(so_engine, free_with_clients_still_registered, .init = engine_a)
{
    t_register(e, &b, AMF_ENC_AMF3, "other/room");
    use_ab("o");
    t_set1(e, &a, "o", 1, "k", 1, &fx);
    so_effects_cleanup(&fx);
    so_engine_free(e); /* ASan checks nothing leaks */
    e = NULL;
    model_clear(&a);
    model_clear(&b);
    a.c = b.c = NULL;  /* gone with the engine: nothing left for .fini */
}

Test(so_engine, server_write_is_a_conflict_for_stale_clients, .init = engine_a)
{
    t_use(e, &a, "o", 0, false, &fx);
    so_object *o = so_engine_object_find(e, ROOM, "o");
    amf_value *v = amf_number(42);
    so_object_set(e, o, "k", 1, v, &fx);
    so_effects_clear(&fx);
    t_set1(e, &a, "o", 1, "k", 7, &fx);
    so_msg m;
    cr_assert(first_msg(&a, &fx, 0, &m));
    cr_assert_eq(m.events[0].type, SO_EV_CHANGE);
    cr_assert_eq(amf_as_number(m.events[0].kv[0].value), 42);
    so_msg_cleanup(&m);
    amf_unref(v);
}

Test(so_engine, no_history_depth_zero)
{
    so_config cfg = cfg_default();
    cfg.history_depth = 0;
    open_ab(&cfg);
    t_use(e, &a, "o", 0, false, &fx);
    t_set1(e, &a, "o", 1, "k", 1, &fx);
    t_set1(e, &a, "o", 2, "j", 1, &fx);
    t_remove(e, &a, "o", 3, "k", &fx);
    so_object *o = so_engine_object_find(e, ROOM, "o");
    cr_assert_eq(so_object_version(o), 4);
    cr_assert_eq(so_object_history_len(o), 0);
    so_effects_clear(&fx);
    t_use(e, &b, "o", 3, false, &fx);
    expect_nth_event(&b, &fx, 0, 1, SO_EV_CLEAR, "nothing is covered without history");
    deliver(&b, &fx);
    assert_model_eq(&b, o);
}

/* A message repeating one refused key gets the key's value once, so the
 * reply stays smaller than the object. */
Test(so_engine, repeated_refused_key_answered_once, .init = engine_ab)
{
    use_ab("o");
    char big[4000];
    memset(big, 'x', sizeof(big));
    amf_value *v = amf_string(big, sizeof(big));
    t_setv(e, &a, "o", 1, "k", v, &fx);
    amf_unref(v);
    so_client_set_access(e, b.c, NULL, "nothing");
    const char *keys[64];
    double nums[64];
    for (int i = 0; i < 64; i++) {
        keys[i] = "k";
        nums[i] = i;
    }
    so_effects_clear(&fx);
    t_set_num(e, &b, "o", 2, 64, keys, nums, 0, &fx);
    cr_assert_eq(fx.len, 1);
    cr_assert_lt(fx.items[0].body->len, 4000 + 64 * 40 + 100);
    deliver(&b, &fx);
    cr_assert_eq(b.status, 64, "every request still answered");
}
