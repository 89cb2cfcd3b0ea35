/* What one message can make the engine build, and paced catch-up (issue
 * 12): repeated Use events are one Use, a Use whose state would pass
 * max_reply_bytes or that comes from a congested client is answered with
 * UseSuccess alone and caught up later, and so_client_catch_up builds at
 * most max(budget, one object's state) per call while every object still
 * converges. */
#include "so_test_util.h"

#define ROOM "app/inst"

static so_engine *e;
static tclient a, s;
static so_effects fx;

/* Writer a and subscriber s in ROOM, no update-rate cap. */
static void open_as(size_t max_reply_bytes)
{
    so_config cfg;
    so_config_default(&cfg);
    cfg.max_updates_per_sec = 0;
    cfg.max_reply_bytes = max_reply_bytes;
    e = t_engine_new(&cfg, NULL);
    so_effects_init(&fx);
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    t_register(e, &s, AMF_ENC_AMF3, ROOM);
}

static void open_default(void)
{
    open_as(SO_DEFAULT_MAX_REPLY_BYTES);
}

static void close_all(void)
{
    so_effects_cleanup(&fx);
    t_engine_free(e, &a, &s);
}

TestSuite(so_budget, .fini = close_all);

/* Bytes of the bodies fx holds for t. */
static size_t bytes_for(void *t)
{
    size_t n = 0;
    for (size_t i = 0; i < fx.len; i++)
        for (size_t k = 0; k < fx.items[i].nto; k++)
            if (fx.items[i].to[k] == t)
                n += fx.items[i].body->len;
    return n;
}

/* a fills object `name` with n keys "<prefix><i>" holding strings of
 * vlen bytes (one message), and s gets nothing of it yet. */
static void fill(const char *name, const char *prefix, int n, size_t vlen)
{
    const char *keys[64];
    amf_value *vals[64];
    char kb[64][16];
    char *str = malloc(vlen + 1);
    cr_assert_leq(n, 64);
    memset(str, 'v', vlen);
    str[vlen] = '\0';
    for (int i = 0; i < n; i++) {
        snprintf(kb[i], sizeof(kb[i]), "%s%d", prefix, i);
        keys[i] = kb[i];
        vals[i] = amf_string_cstr(str);
    }
    so_object *o = so_engine_object_find(e, ROOM, name);
    sh_buf b;
    sh_buf_init(&b, SH_BUF_MAX_DEFAULT);
    so_wire_client_request_change(&b, SO_MSG_AMF0, name, so_object_version(o), false,
                                  (size_t)n, keys, vals);
    cr_assert_eq(t_send_body(e, &a, &b, 0, &fx), 0);
    for (int i = 0; i < n; i++)
        amf_unref(vals[i]);
    free(str);
}

/* t's model holds every slot of o with the same value. */
static void assert_has_object(tclient *t, const so_object *o)
{
    size_t it = 0;
    const char *k;
    size_t kl;
    amf_value *v;
    while (so_object_slot_next(o, &it, &k, &kl, &v)) {
        tkv *kv = model_find(t, k);
        cr_assert_not_null(kv, "slot %s reached the client", k);
        cr_assert(amf_equal(kv->v, v), "slot %s has the object's value", k);
    }
}

Test(so_budget, repeated_use_events_are_one_use, .init = open_default)
{
    t_use(e, &a, "big", 0, false, &fx);
    fill("big", "k", 16, 1000);
    so_effects_clear(&fx);
    so_engine_stats st0;
    so_engine_get_stats(e, &st0);
    /* the message: 256 Use events in one message */
    sh_buf b;
    sh_buf_init(&b, SH_BUF_MAX_DEFAULT);
    so_msg m;
    so_msg_init(&m);
    m.name = strdup("big");
    m.name_len = 3;
    m.events = calloc(256, sizeof(*m.events));
    m.nevents = 256;
    for (size_t i = 0; i < 256; i++)
        m.events[i].type = SO_EV_USE;
    cr_assert_eq(so_wire_encode(&m, SO_MSG_AMF3, &b), 0);
    so_msg_cleanup(&m);
    cr_assert_lt(b.len, 1400, "a small message (%zu bytes)", b.len);
    cr_assert_eq(t_send_body(e, &s, &b, 0, &fx), 0);
    cr_assert_eq(count_for(&s, &fx), 1, "one reply, not 256");
    size_t got = bytes_for(&s);
    cr_assert_lt(got, 16 * 1000 + 16 * 16 + 64, "one copy of the state (%zu bytes)", got);
    deliver(&s, &fx);
    cr_assert_eq(s.use_success, 1);
    assert_has_object(&s, so_engine_object_find(e, ROOM, "big"));
    so_engine_stats st;
    so_engine_get_stats(e, &st);
    cr_assert_eq(st.ignored_events - st0.ignored_events, 255, "the repeats are ignored");
}

Test(so_budget, use_over_the_budget_gets_use_success_then_catch_up)
{
    open_as(2000);
    t_use(e, &a, "big", 0, false, &fx);
    fill("big", "k", 8, 500);                 /* about 4 KB of state: over 2000 */
    so_effects_clear(&fx);
    so_object *o = so_engine_object_find(e, ROOM, "big");
    t_use(e, &s, "big", 0, false, &fx);
    so_msg m;
    cr_assert(first_msg(&s, &fx, 0, &m));
    cr_assert_eq(m.nevents, 1, "UseSuccess alone");
    cr_assert_eq(m.events[0].type, SO_EV_USE_SUCCESS);
    cr_assert_eq(m.version, 0, "claims only the version s asked with");
    so_msg_cleanup(&m);
    cr_assert_lt(bytes_for(&s), 100);
    deliver(&s, &fx);
    so_effects_clear(&fx);
    cr_assert(so_client_is_behind(s.c), "the app must treat s as congested");
    so_engine_stats st;
    so_engine_get_stats(e, &st);
    cr_assert_eq(st.uses_deferred, 1);
    /* a change meanwhile is not sent to s one by one */
    t_set1(e, &a, "big", so_object_version(o), "k1", 7, &fx);
    cr_assert_eq(count_for(&s, &fx), 0);
    so_effects_clear(&fx);
    /* the drain: Clear and everything, in one call (one object) */
    cr_assert_eq(so_client_catch_up(e, s.c, 100, &fx), 0);
    cr_assert_not(so_client_is_behind(s.c));
    size_t clears = s.clears;
    deliver(&s, &fx);
    so_effects_clear(&fx);
    cr_assert_eq(s.clears, clears + 1);
    cr_assert_eq(s.version, so_object_version(o));
    assert_model_eq(&s, o);
    /* per-update messages flow again */
    t_set1(e, &a, "big", so_object_version(o), "k2", 8, &fx);
    cr_assert_eq(count_for(&s, &fx), 1);
}

Test(so_budget, use_under_the_budget_is_answered_at_once)
{
    open_as(100000);
    t_use(e, &a, "o", 0, false, &fx);
    fill("o", "k", 8, 500);
    so_effects_clear(&fx);
    t_use(e, &s, "o", 0, false, &fx);
    deliver(&s, &fx);
    cr_assert_not(so_client_is_behind(s.c));
    assert_model_eq(&s, so_engine_object_find(e, ROOM, "o"));
}

Test(so_budget, use_from_a_congested_client_is_caught_up_on_drain, .init = open_default)
{
    t_use(e, &a, "o", 0, false, &fx);
    t_use(e, &a, "p", 0, false, &fx);
    fill("o", "o", 4, 100);
    fill("p", "p", 4, 100);
    t_use(e, &s, "o", 0, false, &fx);
    deliver(&s, &fx);
    so_effects_clear(&fx);
    cr_assert_eq(so_client_set_congested(e, s.c, true, &fx), 0);
    t_use(e, &s, "p", 0, false, &fx);
    cr_assert_eq(count_for(&s, &fx), 1);
    so_msg m;
    cr_assert(first_msg(&s, &fx, 0, &m));
    cr_assert_eq(m.nevents, 1, "a congested client's Use builds no state");
    so_msg_cleanup(&m);
    deliver(&s, &fx);
    so_effects_clear(&fx);
    fill("o", "o", 2, 50);
    so_effects_clear(&fx);
    cr_assert_eq(so_client_catch_up(e, s.c, SIZE_MAX, &fx), 0);
    cr_assert_eq(count_for(&s, &fx), 2, "o by diff, p whole");
    for (size_t i = 0; i < 2; i++) {
        so_msg m2;
        cr_assert(first_msg(&s, &fx, i, &m2));
        bool is_p = strcmp(m2.name, "p") == 0;
        so_object *o = so_engine_object_find(e, ROOM, m2.name);
        cr_assert_eq(m2.version, so_object_version(o));
        cr_assert_eq(m2.events[0].type, is_p ? SO_EV_CLEAR : SO_EV_CHANGE);
        cr_assert_eq(m2.nevents, is_p ? 5u : 2u, "%s: %zu events", m2.name, m2.nevents);
        so_msg_cleanup(&m2);
    }
}

Test(so_budget, deferred_use_with_a_version_from_the_future_gets_everything)
{
    open_as(10);
    t_use(e, &a, "o", 0, false, &fx);
    fill("o", "k", 3, 10);                     /* version 2 */
    so_effects_clear(&fx);
    t_use(e, &s, "o", 7, false, &fx);          /* s claims a version o never had */
    deliver(&s, &fx);
    so_effects_clear(&fx);
    cr_assert_eq(so_client_catch_up(e, s.c, 0, &fx), 0);
    size_t clears = s.clears;
    deliver(&s, &fx);
    cr_assert_eq(s.clears, clears + 1, "Clear, then everything");
    assert_model_eq(&s, so_engine_object_find(e, ROOM, "o"));
}

/* Eight objects of about 2 KB each; s is congested and misses a change of
 * each.  A budget of 3000 bytes catches up at most two objects per call
 * (the second only when it fits), every call makes progress, and s ends
 * with every object. */
Test(so_budget, catch_up_is_paced_by_the_budget, .init = open_default)
{
    char name[8][8];
    for (int i = 0; i < 8; i++) {
        snprintf(name[i], sizeof(name[i]), "o%d", i);
        t_use(e, &a, name[i], 0, false, &fx);
        t_use(e, &s, name[i], 0, false, &fx);
    }
    deliver(&s, &fx);
    so_effects_clear(&fx);
    cr_assert_eq(so_client_set_congested(e, s.c, true, &fx), 0);
    for (int i = 0; i < 8; i++) {
        char prefix[8];
        snprintf(prefix, sizeof(prefix), "%c", 'a' + i);
        fill(name[i], prefix, 4, 500);
    }
    cr_assert_eq(count_for(&s, &fx), 0);
    so_effects_clear(&fx);
    int calls = 0, rc;
    size_t max_call = 0;
    do {
        rc = so_client_catch_up(e, s.c, 3000, &fx);
        cr_assert_geq(rc, 0);
        size_t n = bytes_for(&s);
        cr_assert_gt(n, 0, "every call makes progress");
        if (n > max_call)
            max_call = n;
        deliver(&s, &fx);
        so_effects_clear(&fx);
        calls++;
        cr_assert_eq(so_client_is_behind(s.c), rc == 1);
    } while (rc == 1 && calls < 20);
    cr_assert_eq(rc, 0);
    cr_assert_geq(calls, 4, "paced over several drains (%d)", calls);
    cr_assert_leq(max_call, 3000, "a call built %zu bytes", max_call);
    for (int i = 0; i < 8; i++)
        assert_has_object(&s, so_engine_object_find(e, ROOM, name[i]));
    cr_assert_eq(s.n, 32);
}

/* A budget of 0 still catches up one object per call, and the calls go
 * round the objects instead of starting from the first each time. */
Test(so_budget, catch_up_makes_progress_and_goes_round, .init = open_default)
{
    const char *names[] = {"x", "y", "z"};
    for (int i = 0; i < 3; i++) {
        t_use(e, &a, names[i], 0, false, &fx);
        t_use(e, &s, names[i], 0, false, &fx);
    }
    deliver(&s, &fx);
    so_effects_clear(&fx);
    cr_assert_eq(so_client_set_congested(e, s.c, true, &fx), 0);
    for (int i = 0; i < 3; i++)
        fill(names[i], names[i], 2, 10);
    so_effects_clear(&fx);
    bool seen[3] = {false, false, false};
    for (int call = 0; call < 3; call++) {
        /* x is behind again after each call: something is always left */
        int rc = so_client_catch_up(e, s.c, 0, &fx);
        cr_assert_eq(rc, 1);
        cr_assert_eq(count_for(&s, &fx), 1, "one object per call");
        so_msg m;
        cr_assert(first_msg(&s, &fx, 0, &m));
        for (int i = 0; i < 3; i++)
            if (strcmp(m.name, names[i]) == 0) {
                cr_assert_not(seen[i], "%s caught up twice", names[i]);
                seen[i] = true;
            }
        so_msg_cleanup(&m);
        deliver(&s, &fx);
        so_effects_clear(&fx);
        /* the busy first object changes again and s is congested again */
        fill("x", "x", 2, 10 + (size_t)call);
        so_effects_clear(&fx);
        cr_assert_eq(so_client_set_congested(e, s.c, true, &fx), 0);
    }
    cr_assert(seen[0] && seen[1] && seen[2]);
    cr_assert_eq(so_client_set_congested(e, s.c, false, &fx), 0);
    deliver(&s, &fx);
    for (int i = 0; i < 3; i++)
        assert_has_object(&s, so_engine_object_find(e, ROOM, names[i]));
}

/* An object left behind by a partial catch-up keeps the version s holds
 * when s is congested again: had it been reset to the current version,
 * the changes made in between would never reach s. */
Test(so_budget, congested_again_keeps_what_is_still_behind, .init = open_default)
{
    so_object *o[2];
    const char *names[] = {"m", "n"};
    for (int i = 0; i < 2; i++) {
        t_use(e, &a, names[i], 0, false, &fx);
        t_use(e, &s, names[i], 0, false, &fx);
        o[i] = so_engine_object_find(e, ROOM, names[i]);
    }
    deliver(&s, &fx);
    so_effects_clear(&fx);
    cr_assert_eq(so_client_set_congested(e, s.c, true, &fx), 0);
    t_set1(e, &a, "m", so_object_version(o[0]), "m1", 1, &fx);
    t_set1(e, &a, "n", so_object_version(o[1]), "n1", 1, &fx);
    so_effects_clear(&fx);
    cr_assert_eq(so_client_catch_up(e, s.c, 0, &fx), 1, "one of two");
    deliver(&s, &fx);
    so_effects_clear(&fx);
    cr_assert_eq(so_client_set_congested(e, s.c, true, &fx), 0);
    t_set1(e, &a, "m", so_object_version(o[0]), "m2", 2, &fx);
    t_set1(e, &a, "n", so_object_version(o[1]), "n2", 2, &fx);
    so_effects_clear(&fx);
    cr_assert_eq(so_client_set_congested(e, s.c, false, &fx), 0);
    deliver(&s, &fx);
    for (int i = 0; i < 2; i++)
        assert_has_object(&s, o[i]);
    cr_assert_eq(s.n, 4, "m1 m2 n1 n2");
}

Test(so_budget, leaving_while_behind_forgets_the_object, .init = open_default)
{
    t_use(e, &a, "o", 0, false, &fx);
    t_use(e, &s, "o", 0, false, &fx);
    cr_assert_eq(so_client_set_congested(e, s.c, true, &fx), 0);
    cr_assert(so_client_is_behind(s.c));
    t_release(e, &s, "o", &fx);
    so_effects_clear(&fx);
    cr_assert_eq(so_client_catch_up(e, s.c, 0, &fx), 0);
    cr_assert_eq(count_for(&s, &fx), 0);
    cr_assert_not(so_client_is_behind(s.c));
}

/* No reply message holds more than max_body_bytes of events: the split
 * happens before the event that would pass it, so a peer whose message
 * cap is max_body_bytes plus a header takes every message. */
Test(so_budget, replies_never_pass_max_body_bytes)
{
    so_config cfg;
    so_config_default(&cfg);
    cfg.max_updates_per_sec = 0;
    cfg.max_body_bytes = 1000;
    e = t_engine_new(&cfg, NULL);
    so_effects_init(&fx);
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    t_register(e, &s, AMF_ENC_AMF3, ROOM);
    t_use(e, &a, "o", 0, false, &fx);
    fill("o", "k", 20, 300);
    so_effects_clear(&fx);
    t_use(e, &s, "o", 0, false, &fx);
    cr_assert_geq(count_for(&s, &fx), 7, "about 6 KB of state in 1000-byte messages");
    for (size_t i = 0; i < fx.len; i++)
        cr_assert_leq(fx.items[i].body->len, 1000 + 1 + 2 + 1 + 12, "a body of %zu bytes",
                      fx.items[i].body->len);
    deliver(&s, &fx);
    assert_model_eq(&s, so_engine_object_find(e, ROOM, "o"));
}
