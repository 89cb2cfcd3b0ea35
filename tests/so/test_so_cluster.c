/* Clustered rooms: writes to their objects are proposed, not applied;
 * the cluster's ordered updates are applied in version order, the writer
 * answered Success; snapshots are applied as one diff or, on a reset, as
 * Clear and everything. */
#include "so_test_util.h"

#define ROOM "app/cl"

static so_store *s;
static so_engine *e;
static tclient a, b;
static so_effects fx;

/* The proposals the hook got (keys of the last one). */
static struct {
    int calls;
    int result;         /* what the hook returns */
    so_client *client;
    uint32_t base;
    size_t n;
    char key[64];
    bool remove;
    so_conflict conflict;
    uint32_t expect;
    so_write_fn done;
    void *done_ud;
} prop;

/* SendMessages handed to the cluster (the last one's event bytes). */
static struct {
    int calls;
    int result;
    uint8_t ev[256];
    size_t len;
} sent;

static int hook_send(void *ud, const char *room, const char *name, size_t nlen,
                     const uint8_t *ev, size_t len)
{
    (void)ud;
    cr_assert_str_eq(room, ROOM);
    cr_assert_eq(nlen, 1);
    cr_assert_eq(name[0], 'p');
    sent.calls++;
    cr_assert_leq(len, sizeof(sent.ev));
    memcpy(sent.ev, ev, len);
    sent.len = len;
    return sent.result;
}

static int hook_propose(void *ud, const so_proposal *p)
{
    (void)ud;
    prop.calls++;
    prop.client = p->client;
    prop.base = p->base_version;
    prop.n = p->n;
    snprintf(prop.key, sizeof(prop.key), "%.*s", (int)p->changes[0].klen, p->changes[0].key);
    prop.remove = p->changes[0].remove;
    prop.conflict = p->conflict;
    prop.expect = p->expect_version;
    prop.done = p->done;
    prop.done_ud = p->done_ud;
    return prop.result;
}

/* What so_hooks.temp_use was told (the last call). */
static struct {
    int calls;
    bool used;
    char name[16];
} tuse;

static void hook_temp_use(void *ud, const char *room, const char *name, bool used)
{
    (void)ud;
    cr_assert_str_eq(room, ROOM);
    tuse.calls++;
    tuse.used = used;
    snprintf(tuse.name, sizeof(tuse.name), "%s", name);
}

static void settings(void *ud, const char *room, so_room_settings *st)
{
    (void)ud;
    (void)room;
    st->clustered = true;
    st->local_name = "loc";
}

static void setup(void)
{
    cr_assert_eq(so_store_open(&so_store_memory_ops, NULL, NULL, &s), 0);
    e = t_engine_new(NULL, s);
    t_set_hooks(e, (so_hooks){.room_settings = settings, .propose = hook_propose,
                              .propose_send = hook_send, .temp_use = hook_temp_use});
    memset(&tuse, 0, sizeof(tuse));
    memset(&sent, 0, sizeof(sent));
    so_effects_init(&fx);
    memset(&prop, 0, sizeof(prop));
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    t_register(e, &b, AMF_ENC_AMF3, ROOM);
    cr_assert_eq(t_use(e, &a, "p", 0, true, &fx), 0);
    cr_assert_eq(t_use(e, &b, "p", 0, true, &fx), 0);
    deliver(&a, &fx);
    deliver(&b, &fx);
    so_effects_clear(&fx);
    /* count from here */
    a.msgs = b.msgs = a.clears = b.clears = a.use_success = b.use_success = 0;
}

static void teardown(void)
{
    so_effects_cleanup(&fx);
    t_engine_free(e, &a, &b);
    so_store_close(s);
}

TestSuite(so_cluster, .init = setup, .fini = teardown);

static const uint8_t ONE[] = {0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0};   /* AMF0 number 1 */
static const uint8_t TWO[] = {0x00, 0x40, 0x00, 0, 0, 0, 0, 0, 0};   /* 2 */
static const uint8_t THREE[] = {0x00, 0x40, 0x08, 0, 0, 0, 0, 0, 0}; /* 3 */

static so_wire_change set(const char *k, const uint8_t *v)
{
    return (so_wire_change){.key = k, .klen = strlen(k), .value = v, .vlen = 9};
}

static so_object *obj(void)
{
    return so_engine_object_find(e, ROOM, "p");
}

static void both(void)
{
    deliver(&a, &fx);
    deliver(&b, &fx);
    so_effects_clear(&fx);
}

Test(so_cluster, a_write_is_proposed_not_applied)
{
    cr_assert_eq(t_set1(e, &a, "p", 1, "x", 1, &fx), 0);
    cr_assert_eq(prop.calls, 1);
    cr_assert_eq(prop.client, a.c);
    cr_assert_eq(prop.base, 1);
    cr_assert_eq(prop.n, 1);
    cr_assert_str_eq(prop.key, "x");
    cr_assert_eq(count_for(&a, &fx) + count_for(&b, &fx), 0, "nothing is said before the cluster");
    cr_assert_eq(so_object_version(obj()), 1);
    cr_assert_null(so_object_get(obj(), "x", 1));
}

Test(so_cluster, the_update_answers_the_writer_and_reaches_the_others)
{
    cr_assert_eq(t_set1(e, &a, "p", 1, "x", 1, &fx), 0);
    so_wire_change ch = set("x", ONE);
    cr_assert_eq(so_engine_apply_update(e, ROOM, "p", 1, 2, &ch, 1, a.c, &fx), 0);
    both();
    cr_assert_eq(a.success, 1, "the writer gets Success");
    cr_assert_eq(a.version, 2);
    cr_assert_null(model_find(&a, "x"), "and no Change of its own write");
    cr_assert_eq(b.version, 2);
    cr_assert_not_null(model_find(&b, "x"));
    cr_assert_eq(amf_as_number(model_find(&b, "x")->v), 1);
    cr_assert_eq(so_object_version(obj()), 2);
}

Test(so_cluster, updates_apply_in_version_order_only)
{
    so_wire_change ch = set("x", ONE);
    cr_assert_eq(so_engine_apply_update(e, ROOM, "p", 1, 2, &ch, 1, NULL, &fx), 0);
    cr_assert_eq(so_engine_apply_update(e, ROOM, "p", 1, 2, &ch, 1, NULL, &fx), SO_APPLY_OLD);
    cr_assert_eq(so_engine_apply_update(e, ROOM, "p", 1, 4, &ch, 1, NULL, &fx), SO_APPLY_GAP);
    cr_assert_eq(so_object_version(obj()), 2);
    both();
    cr_assert_eq(b.msgs, 1, "one message for the one applied update");
    /* an object the room does not have yet is made by its first update */
    cr_assert_eq(so_engine_apply_update(e, ROOM, "q", 1, 2, &ch, 1, NULL, &fx), 0);
    cr_assert_not_null(so_engine_object_find(e, ROOM, "q"));
    cr_assert_eq(so_engine_apply_update(e, "app/none", "p", 1, 2, &ch, 1, NULL, &fx), SH_ESTATE);
}

Test(so_cluster, a_cluster_that_cannot_take_it_answers_store_failed)
{
    prop.result = SH_ESTATE;
    cr_assert_eq(t_set1(e, &a, "p", 1, "x", 1, &fx), 0);
    both();
    cr_assert_eq(a.status, 1);
    cr_assert_str_eq(a.last_status, SO_STATUS_STORE_FAILED);
    cr_assert_eq(a.success, 0);
    cr_assert_eq(b.msgs, 0);
}

Test(so_cluster, a_write_stale_here_is_refused_here)
{
    so_wire_change ch = set("x", ONE);
    cr_assert_eq(so_engine_apply_update(e, ROOM, "p", 1, 2, &ch, 1, NULL, &fx), 0);
    both();
    cr_assert_eq(t_set1(e, &a, "p", 1, "x", 5, &fx), 0);
    cr_assert_eq(prop.calls, 0, "not proposed");
    both();
    cr_assert_eq(a.success, 0);
    cr_assert_eq(amf_as_number(model_find(&a, "x")->v), 1, "answered with the current value");
}

Test(so_cluster, later_answers)
{
    so_wire_change ch = set("x", ONE);
    cr_assert_eq(so_engine_apply_update(e, ROOM, "p", 1, 2, &ch, 1, NULL, &fx), 0);
    both();
    cr_assert_eq(so_engine_answer(e, a.c, "p", 1, &ch, 1, SO_ANSWER_CURRENT, &fx), 0);
    cr_assert_eq(so_engine_answer(e, a.c, "p", 1, &ch, 1, SO_ANSWER_STORE_FAILED, &fx), 0);
    cr_assert_eq(so_engine_answer(e, a.c, "p", 1, &ch, 1, SO_ANSWER_SUCCESS, &fx), 0);
    both();
    cr_assert_eq(a.msgs, 4);
    cr_assert_str_eq(a.last_status, SO_STATUS_STORE_FAILED);
    cr_assert_eq(a.success, 1);
    cr_assert_eq(b.msgs, 1, "answers go to the writer only");
}

Test(so_cluster, a_snapshot_is_applied_as_one_diff)
{
    so_wire_change ch[2] = {set("x", ONE), set("y", TWO)};
    cr_assert_eq(so_engine_apply_update(e, ROOM, "p", 1, 2, ch, 2, NULL, &fx), 0);
    both();
    so_store_batch *img = so_store_batch_new(0);
    so_store_batch_add(img, SO_STORE_OBJECT, ROOM, "p", NULL, 0, 5, NULL, 0);
    so_store_batch_add(img, SO_STORE_SET, ROOM, "p", "x", 1, 2, ONE, 9);
    so_store_batch_add(img, SO_STORE_SET, ROOM, "p", "z", 1, 5, THREE, 9);
    size_t before = b.msgs;
    cr_assert_eq(so_engine_object_sync(e, ROOM, "p", 5, img, false, &fx), 0);
    both();
    cr_assert_eq(b.msgs, before + 1, "one message");
    cr_assert_eq(b.clears, 0);
    cr_assert_eq(b.version, 5);
    cr_assert_null(model_find(&b, "y"), "y removed");
    cr_assert_eq(amf_as_number(model_find(&b, "z")->v), 3);
    cr_assert_eq(amf_as_number(model_find(&b, "x")->v), 1);
    assert_model_eq(&b, obj());
    cr_assert_eq(so_engine_object_sync(e, ROOM, "p", 5, img, false, &fx), SO_APPLY_OLD);
    /* a client that had version 2 gets the diff from the history */
    tclient c;
    t_register(e, &c, AMF_ENC_AMF0, ROOM);
    cr_assert_eq(t_use(e, &c, "p", 2, true, &fx), 0);
    deliver(&c, &fx);
    so_effects_clear(&fx);
    cr_assert_eq(c.clears, 0);
    cr_assert_eq(c.version, 5);
    t_unregister(e, &c);
    so_store_batch_free(img);
}

Test(so_cluster, a_reset_sends_clear_and_everything)
{
    so_wire_change ch[2] = {set("x", ONE), set("y", TWO)};
    cr_assert_eq(so_engine_apply_update(e, ROOM, "p", 1, 2, ch, 2, NULL, &fx), 0);
    cr_assert_eq(so_engine_apply_update(e, ROOM, "p", 1, 3, ch, 1, NULL, &fx), 0);
    both();
    so_store_batch *img = so_store_batch_new(0);
    so_store_batch_add(img, SO_STORE_SET, ROOM, "p", "z", 1, 1, THREE, 9);
    cr_assert_eq(so_engine_object_sync(e, ROOM, "p", 1, img, true, &fx), 0);
    both();
    cr_assert_eq(b.clears, 1);
    cr_assert_eq(b.version, 1, "versions may go back on a reset");
    cr_assert_eq(b.n, 1);
    assert_model_eq(&b, obj());
    cr_assert_eq(so_object_version(obj()), 1);
    cr_assert_eq(so_object_history_len(obj()), 0);
    /* the next update follows the new version */
    cr_assert_eq(so_engine_apply_update(e, ROOM, "p", 1, 2, ch, 1, NULL, &fx), 0);
    so_store_batch_free(img);
}

Test(so_cluster, temporary_objects_are_clustered)
{
    cr_assert_eq(t_use(e, &a, "t", 0, false, &fx), 0);
    cr_assert_eq(tuse.calls, 1, "the node starts using t");
    cr_assert(tuse.used);
    cr_assert_str_eq(tuse.name, "t");
    cr_assert_eq(t_use(e, &b, "t", 0, false, &fx), 0);
    cr_assert_eq(tuse.calls, 1, "told once per node, not per subscriber");
    cr_assert_eq(t_set1(e, &a, "t", 1, "x", 1, &fx), 0);
    both();
    cr_assert_eq(prop.calls, 1, "a write is proposed");
    cr_assert_eq(a.success, 0);
    so_wire_change ch = set("x", ONE);
    cr_assert_eq(so_engine_apply_update(e, ROOM, "t", 1, 2, &ch, 1, a.c, &fx), SH_EEXIST,
                 "not as a persistent object's update");
    cr_assert_eq(so_engine_apply_temp_update(e, ROOM, "t", 1, 2, &ch, 1, a.c, &fx), 0);
    both();
    cr_assert_eq(a.success, 1);
    cr_assert_eq(b.version, 2);
    cr_assert_not_null(model_find(&b, "x"));
    /* an object this node never saw made is a gap; made, it follows */
    cr_assert_eq(so_engine_apply_temp_update(e, ROOM, "u", 1, 5, &ch, 1, NULL, &fx),
                 SO_APPLY_GAP);
    cr_assert_eq(so_engine_temp_sync(e, ROOM, "u", 5, NULL, false, &fx), 0);
    so_object *u = so_engine_object_find(e, ROOM, "u");
    cr_assert_not_null(u);
    cr_assert(!so_object_persistent(u));
    cr_assert_eq(so_object_version(u), 5);
    cr_assert_eq(so_engine_apply_temp_update(e, ROOM, "u", 1, 6, &ch, 1, NULL, &fx), 0);
    cr_assert_eq(so_object_slot_count(u), 1);
    cr_assert_eq(tuse.calls, 1, "a mirror nobody here uses is not used");
    /* the last local subscriber leaves: told, and the object stays */
    cr_assert_eq(t_release(e, &a, "t", &fx), 0);
    cr_assert_eq(tuse.calls, 1);
    cr_assert_eq(t_release(e, &b, "t", &fx), 0);
    cr_assert_eq(tuse.calls, 2);
    cr_assert(!tuse.used);
    cr_assert_not_null(so_engine_object_find(e, ROOM, "t"), "kept as the cluster's mirror");
    cr_assert_eq(so_engine_temp_drop(e, ROOM, "t"), 0);
    cr_assert_null(so_engine_object_find(e, ROOM, "t"));
    cr_assert_eq(t_use(e, &a, "u", 0, false, &fx), 0);
    cr_assert_eq(so_engine_temp_drop(e, ROOM, "u"), SH_ESTATE, "not while it is used here");
    cr_assert_eq(so_engine_temp_drop(e, ROOM, "p"), SH_EEXIST);
    both();
}

Test(so_cluster, the_local_temporary_object_and_server_writes)
{
    cr_assert_eq(t_use(e, &a, "loc", 0, false, &fx), 0);
    cr_assert_eq(t_set1(e, &a, "loc", 1, "x", 1, &fx), 0);
    both();
    cr_assert_eq(prop.calls, 0, "the room's local temporary object is not clustered");
    cr_assert_eq(tuse.calls, 0);
    cr_assert_eq(a.success, 1);
    cr_assert_eq(so_engine_temp_drop(e, ROOM, "loc"), SH_EEXIST);
    /* a server write to a persistent object is proposed like a client's:
     * no client, last writer wins, nothing applied until it comes back */
    amf_value *v = amf_number(1);
    cr_assert_eq(so_object_set(e, obj(), "k", 1, v, &fx), 0);
    cr_assert_eq(prop.calls, 1);
    cr_assert_null(prop.client);
    cr_assert_eq(prop.conflict, SO_CONFLICT_LWW);
    cr_assert_str_eq(prop.key, "k");
    cr_assert_eq(prop.expect, 0);
    cr_assert_null(so_object_get(obj(), "k", 1), "applied only when the cluster answers");
    cr_assert_eq(fx.len, 0);
    so_change c = {"k", 1, v};
    cr_assert_eq(so_object_apply(e, obj(), &c, 1, &fx), 0);
    cr_assert_eq(prop.calls, 2);
    cr_assert_null(so_engine_take_batch(e), "nothing for the node's store");
    amf_unref(v);
}

static struct {
    int calls, status;
    uint32_t version;
} wdone;

static void on_wdone(void *ud, int status, uint32_t version)
{
    cr_assert_eq(ud, &wdone);
    wdone.calls++;
    wdone.status = status;
    wdone.version = version;
}

Test(so_cluster, server_write_with_completion_and_compare_and_set)
{
    amf_value *v = amf_number(2);
    so_change c = {"k", 1, v};
    so_write_opts o = {.expect_version = 1, .done = on_wdone, .ud = &wdone};
    cr_assert_eq(so_object_write(e, obj(), &c, 1, &o, &fx), SO_WRITE_PENDING);
    cr_assert_eq(prop.expect, 1);
    cr_assert_eq(prop.done, on_wdone);
    cr_assert_eq(prop.done_ud, &wdone);
    cr_assert_eq(wdone.calls, 0, "never from inside the call");
    cr_assert(so_object_clustered(obj()));
    /* the cluster's update: every subscriber gets the Change, nobody Success */
    so_wire_change ch = set("k", TWO);
    cr_assert_eq(so_engine_apply_update(e, ROOM, "p", 1, 2, &ch, 1, NULL, &fx), 0);
    both();
    cr_assert_eq(a.success + b.success, 0);
    cr_assert_eq(so_object_version(obj()), 2);
    cr_assert_not_null(so_object_get(obj(), "k", 1));
    /* the cluster cannot take it: refused at once, no completion */
    prop.result = SH_ESTATE;
    cr_assert_eq(so_object_write(e, obj(), &c, 1, &o, &fx), SH_EIO);
    cr_assert_eq(so_object_set(e, obj(), "k", 1, v, &fx), SH_EIO);
    prop.result = 0;
    /* under a lock: one proposal at the unlock; a compare-and-set waits not */
    int calls = prop.calls;
    so_object_lock(e, obj());
    cr_assert_eq(so_object_write(e, obj(), &c, 1, &o, &fx), SH_ESTATE);
    cr_assert_eq(so_object_set(e, obj(), "a", 1, v, &fx), 0);
    cr_assert_eq(so_object_remove(e, obj(), "k", 1, &fx), 0);
    cr_assert_eq(prop.calls, calls);
    cr_assert_eq(so_object_unlock(e, obj(), &fx), 0);
    cr_assert_eq(prop.calls, calls + 1);
    cr_assert_eq(prop.n, 2, "the lock's changes as one update");
    amf_unref(v);
}

Test(so_cluster, compare_and_set_on_a_local_object)
{
    /* not clustered (the room's local temporary object): checked here, applied now */
    cr_assert_eq(t_use(e, &a, "loc", 0, false, &fx), 0);
    both();
    so_object *t = so_engine_object_find(e, ROOM, "loc");
    amf_value *v = amf_number(3);
    so_change c = {"k", 1, v};
    so_write_opts o = {.expect_version = 5, .done = on_wdone, .ud = &wdone};
    cr_assert_eq(so_object_write(e, t, &c, 1, &o, &fx), SH_EEXIST);
    o.expect_version = so_object_version(t);
    cr_assert_eq(so_object_write(e, t, &c, 1, &o, &fx), 0);
    cr_assert_eq(so_object_version(t), o.expect_version + 1);
    cr_assert_eq(wdone.calls, 0, "applied now: no completion");
    cr_assert_eq(prop.calls, 0);
    amf_unref(v);
}

static void send_hello(tclient *t)
{
    amf_value *arg = amf_number(7);
    sh_buf buf;
    sh_buf_init(&buf, SH_BUF_MAX_DEFAULT);
    so_wire_client_send(&buf, mt_of(t), "p", 0, true, "hello", 1, &arg);
    amf_unref(arg);
    cr_assert_eq(t_send_body(e, t, &buf, 0, &fx), 0);
}

Test(so_cluster, send_messages_go_through_the_cluster)
{
    send_hello(&a);
    cr_assert_eq(sent.calls, 1);
    both();
    cr_assert_eq(a.sends + b.sends, 0, "delivered when it comes back from the cluster");
    cr_assert_eq(so_engine_send_event(e, ROOM, "p", 1, sent.ev, sent.len, &fx), 0);
    both();
    cr_assert_eq(a.sends, 1, "the sender too");
    cr_assert_eq(b.sends, 1);
    cr_assert_str_eq(b.last_handler, "hello");
    /* a cluster that cannot take it: this node's subscribers get it now */
    sent.result = SH_ESTATE;
    send_hello(&a);
    both();
    cr_assert_eq(a.sends, 2);
    cr_assert_eq(b.sends, 2);
    /* an object this node does not have: nothing */
    cr_assert_eq(so_engine_send_event(e, ROOM, "zz", 2, sent.ev, sent.len, &fx), 0);
    cr_assert_eq(fx.len, 0);
}

Test(so_cluster, a_seeded_history_answers_a_use_with_a_diff)
{
    so_store_batch *img = so_store_batch_new(0);
    so_store_batch_add(img, SO_STORE_SET, ROOM, "p", "x", 1, 2, ONE, 9);
    so_store_batch_add(img, SO_STORE_SET, ROOM, "p", "y", 1, 3, TWO, 9);
    cr_assert_eq(so_engine_object_sync(e, ROOM, "p", 3, img, true, &fx), 0); /* no history */
    both();
    const char *kx[] = {"x"}, *ky[] = {"y"};
    size_t one[] = {1};
    so_hist_entry bad[2] = {{2, 1, kx, one}, {4, 1, ky, one}};
    cr_assert_eq(so_engine_object_seed_history(e, ROOM, "p", bad, 2), SH_EINVAL);
    so_hist_entry h[2] = {{2, 1, kx, one}, {3, 1, ky, one}};
    cr_assert_eq(so_engine_object_seed_history(e, ROOM, "p", h, 2), 0);
    cr_assert_eq(so_object_history_len(obj()), 2);
    cr_assert_eq(so_engine_object_seed_history(e, ROOM, "p", h, 2), SH_ESTATE, "only once");
    tclient c;
    t_register(e, &c, AMF_ENC_AMF0, ROOM);
    cr_assert_eq(t_use(e, &c, "p", 2, true, &fx), 0);
    deliver(&c, &fx);
    so_effects_clear(&fx);
    cr_assert_eq(c.clears, 0, "a diff, not Clear and everything");
    cr_assert_eq(c.version, 3);
    cr_assert_not_null(model_find(&c, "y"));
    cr_assert_null(model_find(&c, "x"), "x did not change since version 2");
    t_unregister(e, &c);
    so_store_batch_free(img);
}
