/* Persistence: held effects, batches, memory and SQLite stores, reopen. */
#include <pthread.h>
#include <unistd.h>

#include "so_test_util.h"

#define ROOM "app/inst"

/* What a test has open: store s, engine e on it, clients a and b, effect
 * list fx and (SQLite tests) the database file db.  A test picks its
 * set-up with .init; the suite's .fini closes whatever is still open. */
static so_store *s;
static so_engine *e;
static tclient a, b;
static so_effects fx;
static char *db;

static so_store *open_mem(void)
{
    so_store *m = NULL;
    cr_assert_eq(so_store_open(&so_store_memory_ops, NULL, NULL, &m), 0);
    return m;
}

static char *tmp_db(void)
{
    char *path = strdup("/tmp/sohub-so-test-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    unlink(path);
    return path;
}

static void rm_db(const char *path)
{
    char buf[512];
    unlink(path);
    snprintf(buf, sizeof(buf), "%s-wal", path);
    unlink(buf);
    snprintf(buf, sizeof(buf), "%s-shm", path);
    unlink(buf);
}

static void open_engine(const so_config *cfg)
{
    e = t_engine_new(cfg, s);
    so_effects_init(&fx);
}

static void close_engine(void)
{
    so_engine_free(e);
    e = NULL;
}

static void close_store(void)
{
    so_store_close(s);
    s = NULL;
}

/* .init: an engine on a memory store, no clients */
static void mem_engine(void)
{
    s = open_mem();
    open_engine(NULL);
}

/* .init: an engine on a memory store, AMF0 clients a and b in ROOM */
static void mem_ab(void)
{
    mem_engine();
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    t_register(e, &b, AMF_ENC_AMF0, ROOM);
}

/* .init: a fresh SQLite file name in db (nothing open yet) */
static void sqlite_file(void)
{
    db = tmp_db();
}

/* .init: a SQLite store on a fresh db, an engine on it without the
 * update-rate cap, and client a (AMF0) in ROOM */
static void sqlite_a(void)
{
    sqlite_file();
    cr_assert_eq(so_store_open(&so_store_sqlite_ops, db, NULL, &s), 0);
    so_config cfg;
    so_config_default(&cfg);
    cfg.max_updates_per_sec = 0;
    open_engine(&cfg);
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
}

static void close_all(void)
{
    so_effects_cleanup(&fx);
    t_engine_free(e, &a, &b);
    so_store_close(s);
    if (db) {
        rm_db(db);
        free(db);
    }
}

TestSuite(so_store, .fini = close_all);

/* Takes the pending batch, writes it to the store (inline: the tests run
 * the "worker" step on the same thread) and hands it back. */
static int flush(void)
{
    so_store_batch *bt = so_engine_take_batch(e);
    if (!bt)
        return 1;
    int st = so_store_write_batch(s, bt);
    cr_assert_eq(so_engine_batch_done(e, bt, st, &fx), 0);
    return st;
}

/* a and b Use the persistent object "p" (stored at its first change). */
static void ab_use_stored_p(void)
{
    t_use(e, &a, "p", 0, true, &fx);
    t_use(e, &b, "p", 0, true, &fx);
    flush();
    so_effects_clear(&fx);
}

Test(so_store, held_effects_released_only_after_batch_done, .init = mem_ab)
{
    t_use(e, &a, "p", 0, true, &fx);
    cr_assert_eq(count_for(&a, &fx), 1,
                 "a new persistent object is stored at its first change: Use answered at once");
    cr_assert_eq(flush(), 1, "nothing to store yet");
    so_effects_clear(&fx);
    t_use(e, &b, "p", 0, true, &fx);
    cr_assert_eq(count_for(&b, &fx), 1, "nothing pending: immediate");
    so_effects_clear(&fx);

    t_set1(e, &a, "p", 1, "k", 5, &fx);
    cr_assert_eq(fx.len, 0, "Success and Change wait for the store");
    cr_assert_eq(so_engine_held_count(e), 2);
    /* a SendMessage after the change keeps the object's order */
    amf_value *arg = amf_number(1);
    sh_buf buf;
    sh_buf_init(&buf, 1 << 20);
    so_wire_client_send(&buf, SO_MSG_AMF0, "p", 2, true, "h", 1, &arg);
    t_send_body(e, &a, &buf, 0, &fx);
    amf_unref(arg);
    cr_assert_eq(fx.len, 0);
    so_store_batch *bt = so_engine_take_batch(e);
    cr_assert_not_null(bt);
    cr_assert_null(so_engine_take_batch(e), "one batch at a time");
    size_t nslots = 0;
    cr_assert_eq(so_store_memory_count(s, &nslots), 0, "no object stored before the worker runs");
    cr_assert_eq(nslots, 0, "not written before the worker runs");
    cr_assert_eq(so_store_write_batch(s, bt), 0);
    cr_assert_eq(so_engine_batch_done(e, bt, 0, &fx), 0);
    cr_assert_eq(so_store_memory_count(s, &nslots), 1, "the object, with its first change");
    cr_assert_eq(nslots, 1);
    /* order for a: Success then the SendMessage */
    expect_nth_event(&a, &fx, 0, 0, SO_EV_SUCCESS, NULL);
    expect_nth_event(&a, &fx, 1, 0, SO_EV_SEND_MESSAGE, NULL);
    expect_nth_event(&b, &fx, 0, 0, SO_EV_CHANGE, NULL);
    cr_assert_eq(so_engine_held_count(e), 0);
}

Test(so_store, store_failure_answers_store_failed_and_retries, .init = mem_ab)
{
    ab_use_stored_p();
    t_set1(e, &a, "p", 1, "k", 5, &fx);
    so_store_memory_fail_next(s, 1);
    cr_assert_eq(flush(), SH_EIO);
    expect_status(&a, &fx, SO_STATUS_STORE_FAILED);
    expect_nth_event(&b, &fx, 0, 0, SO_EV_CHANGE, "others converge on the live state");
    /* the object is written again with the next batch */
    so_effects_clear(&fx);
    cr_assert_eq(flush(), 0);
    size_t nslots = 0;
    so_store_memory_count(s, &nslots);
    cr_assert_eq(nslots, 1);
    so_engine_stats st;
    so_engine_get_stats(e, &st);
    cr_assert_eq(st.store_failures, 1);
}

Test(so_store, client_leaving_while_held, .init = mem_ab)
{
    ab_use_stored_p();
    t_set1(e, &a, "p", 1, "k", 5, &fx);
    t_unregister(e, &b);
    flush();
    for (size_t i = 0; i < fx.len; i++)
        for (size_t k = 0; k < fx.items[i].nto; k++)
            cr_assert_neq(fx.items[i].to[k], (void *)&b, "no effect for a gone client");
    cr_assert_eq(count_for(&a, &fx), 1);
}

Test(so_store, batch_done_out_of_order_refused, .init = mem_engine)
{
    int err;
    amf_value *v = amf_number(1);
    so_object *o1 = t_open(e, ROOM, "a", true, &err);
    so_object_set(e, o1, "k", 1, v, &fx);
    so_store_batch *b1 = so_engine_take_batch(e);
    so_object *o2 = t_open(e, ROOM, "b", true, &err);
    so_object_set(e, o2, "k", 1, v, &fx);
    so_store_batch *b2 = so_engine_take_batch(e);
    amf_unref(v);
    cr_assert_not_null(b1);
    cr_assert_not_null(b2);
    cr_assert_eq(so_engine_batch_done(e, b2, 0, &fx), SH_EINVAL);
    cr_assert_eq(so_engine_batch_done(e, b1, 0, &fx), 0);
    cr_assert_eq(so_engine_batch_done(e, b2, 0, &fx), 0);
    so_engine_object_close(e, o1);
    so_engine_object_close(e, o2);
}

/* Writes typed values through one engine, reopens a fresh engine on the
 * same store, and checks slots, values and version are the same.  What it
 * leaves open (the second store, engine, a and b) the suite's .fini closes. */
static void reopen_case(const so_store_ops *ops, const char *spec)
{
    cr_assert_eq(so_store_open(ops, spec, NULL, &s), 0);
    open_engine(NULL);
    t_register(e, &a, AMF_ENC_AMF3, ROOM);
    t_use(e, &a, "scores/p", 0, true, &fx);
    amf_value *vals[] = {tv_bytes(), tv_typed(), tv_vec(), amf_string("x\0y", 3),
                         amf_number(-0.5), amf_bool(false), amf_null()};
    const char *keys[] = {"bytes", "typed", "vec", "str", "num", "bool", "null"};
    size_t n = sizeof(vals) / sizeof(vals[0]);
    uint32_t ver = 1;
    for (size_t i = 0; i < n; i++) {
        t_setv(e, &a, "scores/p", ver, keys[i], vals[i], &fx);
        ver++;
        cr_assert_eq(flush(), 0);
    }
    t_remove(e, &a, "scores/p", ver, "null", &fx);
    ver++;
    /* a key with odd bytes */
    amf_value *seven = amf_number(7);
    t_setv(e, &a, "scores/p", ver, "k\xff\x01", seven, &fx);
    ver++;
    amf_unref(seven);
    cr_assert_eq(flush(), 0);
    so_object *o = so_engine_object_find(e, ROOM, "scores/p");
    uint32_t version = so_object_version(o);
    cr_assert_eq(version, ver);
    size_t count = so_object_slot_count(o);
    /* a temporary object is never stored */
    t_use(e, &a, "temp", 0, false, &fx);
    t_set1(e, &a, "temp", 1, "t", 1, &fx);
    cr_assert_eq(flush(), 1, "nothing to write");
    so_effects_clear(&fx);
    t_unregister(e, &a);
    cr_assert_not_null(so_engine_object_find(e, ROOM, "scores/p"), "persistent objects stay");
    close_engine();
    close_store();

    /* reopen */
    cr_assert_eq(so_store_open(ops, spec, NULL, &s), 0);
    e = t_engine_new(NULL, s);
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    o = so_engine_object_find(e, ROOM, "scores/p");
    cr_assert_not_null(o, "loaded when the room was first touched");
    cr_assert_eq(so_object_version(o), version);
    cr_assert_eq(so_object_slot_count(o), count);
    cr_assert_null(so_engine_object_find(e, ROOM, "temp"));
    for (size_t i = 0; i + 1 < n; i++) {
        amf_value *v = so_object_get(o, keys[i], strlen(keys[i]));
        cr_assert_not_null(v, "%s", keys[i]);
        cr_assert(amf_equal(v, vals[i]), "%s round trips", keys[i]);
    }
    cr_assert_null(so_object_get(o, "null", 4));
    cr_assert_not_null(so_object_get(o, "k\xff\x01", 3));
    /* Use -> the same slots and version */
    t_use(e, &a, "scores/p", 0, true, &fx);
    deliver(&a, &fx);
    cr_assert_eq(a.version, version);
    assert_model_eq(&a, o);
    /* Use with the stored version: nothing more (history starts there) */
    so_effects_clear(&fx);
    t_register(e, &b, AMF_ENC_AMF0, ROOM);
    t_use(e, &b, "scores/p", version, true, &fx);
    so_msg m;
    cr_assert(first_msg(&b, &fx, 0, &m));
    cr_assert_eq(m.nevents, 1);
    so_msg_cleanup(&m);
    /* an old version after a restart: Clear + all */
    so_effects_clear(&fx);
    t_use(e, &b, "scores/p", 2, true, &fx);
    expect_nth_event(&b, &fx, 0, 1, SO_EV_CLEAR, NULL);
    for (size_t i = 0; i < n; i++)
        amf_unref(vals[i]);
}

Test(so_store, memory_store_reopen_is_empty_but_engine_reload_works, .init = mem_engine)
{
    /* the memory store lives as long as its handle: reload through a
     * second engine on the same handle */
    int err;
    so_object *o = t_open(e, ROOM, "srv", true, &err);
    amf_value *v = tv_typed();
    so_object_set(e, o, "t", 1, v, &fx);
    cr_assert_eq(flush(), 0);
    uint32_t ver = so_object_version(o);
    so_engine_object_close(e, o);
    close_engine();
    e = t_engine_new(NULL, s);
    o = t_open(e, ROOM, "srv", true, &err);
    cr_assert_not_null(o);
    cr_assert_eq(so_object_version(o), ver);
    cr_assert(amf_equal(so_object_get(o, "t", 1), v));
    so_engine_object_close(e, o);
    amf_unref(v);
}

Test(so_store, sqlite_reopen_same_slots_and_version, .init = sqlite_file)
{
    reopen_case(&so_store_sqlite_ops, db);
}

Test(so_store, sqlite_raw_batch_handles_and_reload, .init = sqlite_file)
{
    cr_assert_eq(so_store_open(&so_store_sqlite_ops, db, NULL, &s), 0);
    so_store_batch *bt = so_store_batch_new(1);
    so_store_batch_add(bt, SO_STORE_OBJECT, ROOM, "o", NULL, 0, 3, NULL, 0);
    so_store_batch_add(bt, SO_STORE_SET, ROOM, "o", "k", 1, 3, (const uint8_t *)"\x00\x3f\xf0\0\0\0\0\0\0", 9);
    cr_assert_eq(so_store_write_batch(s, bt), 0);
    so_store_batch_free(bt);
    struct sqlite3 *sq = so_store_sqlite_db(s, true);
    cr_assert_not_null(sq);
    cr_assert_str_eq(so_store_sqlite_path(s), db);
    close_store();
    cr_assert_eq(so_store_open(&so_store_sqlite_ops, db, NULL, &s), 0);
    e = t_engine_new(NULL, s);
    int err;
    so_object *o = t_open(e, ROOM, "o", true, &err);
    cr_assert_not_null(o, "load failed: %d", err);
    cr_assert_eq(so_object_version(o), 3);
    cr_assert_eq(amf_as_number(so_object_get(o, "k", 1)), 1);
    so_engine_object_close(e, o);
}

Test(so_store, sqlite_full_sync_reopen, .init = sqlite_file)
{
    /* the schema is created with synchronous FULL, then the generic case */
    so_store_options opt = {.sync_full = true};
    cr_assert_eq(so_store_open(&so_store_sqlite_ops, db, &opt, &s), 0);
    close_store();
    reopen_case(&so_store_sqlite_ops, db);
}

Test(so_store, sqlite_batch_from_worker_thread_shape, .init = sqlite_a)
{
    /* many updates grouped into one batch = one transaction */
    t_use(e, &a, "p", 0, true, &fx);
    char key[16];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        t_set1(e, &a, "p", (uint32_t)(1 + i), key, i, &fx);
    }
    cr_assert_eq(count_for(&a, &fx), 1, "only the Use reply (the new object is not stored)");
    so_effects_clear(&fx);
    cr_assert_eq(flush(), 0);
    cr_assert_eq(count_for(&a, &fx), 100, "100 Success released together");
}

typedef struct worker_arg {
    so_store *s;
    so_store_batch *b;
    int status;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *w = p;
    w->status = so_store_write_batch(w->s, w->b);
    return NULL;
}

/* The batch is written on another thread while the loop thread keeps
 * using the engine (and loads another room through the reader). */
Test(so_store, sqlite_write_on_worker_thread_while_loop_runs, .init = sqlite_a)
{
    tclient other;
    t_use(e, &a, "p", 0, true, &fx);
    char key[16];
    uint32_t ver = 1;
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 50; i++) {
            snprintf(key, sizeof(key), "r%dk%d", round, i);
            t_set1(e, &a, "p", ver++, key, i, &fx);
        }
        worker_arg w = {.s = s, .b = so_engine_take_batch(e)};
        cr_assert_not_null(w.b);
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, worker, &w), 0);
        /* loop thread meanwhile: more changes (next batch) and a room load */
        snprintf(key, sizeof(key), "extra%d", round);
        t_set1(e, &a, "p", ver++, key, round, &fx);
        t_register(e, &other, AMF_ENC_AMF0, "app/elsewhere");
        t_unregister(e, &other);
        pthread_join(th, NULL);
        cr_assert_eq(w.status, 0);
        cr_assert_eq(so_engine_batch_done(e, w.b, w.status, &fx), 0);
    }
    cr_assert_eq(flush(), 0);
    cr_assert_eq(so_engine_held_count(e), 0);
    uint32_t version = so_object_version(so_engine_object_find(e, ROOM, "p"));
    t_unregister(e, &a);
    close_engine();
    close_store();
    cr_assert_eq(so_store_open(&so_store_sqlite_ops, db, NULL, &s), 0);
    e = t_engine_new(NULL, s);
    int err;
    so_object *o = t_open(e, ROOM, "p", true, &err);
    cr_assert_eq(so_object_version(o), version);
    cr_assert_eq(so_object_slot_count(o), 5 * 50 + 5);
    so_engine_object_close(e, o);
}

Test(so_store, use_reply_showing_uncommitted_data_is_held, .init = mem_engine)
{
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    t_register(e, &b, AMF_ENC_AMF3, ROOM);
    t_use(e, &a, "p", 0, true, &fx);
    flush();
    so_effects_clear(&fx);
    t_set1(e, &a, "p", 1, "k", 5, &fx);
    t_use(e, &b, "p", 0, true, &fx);
    cr_assert_eq(count_for(&b, &fx), 0, "b would see k before it is durable");
    /* a temporary object in the same room is not held */
    t_use(e, &b, "t", 0, false, &fx);
    cr_assert_eq(count_for(&b, &fx), 1);
    so_effects_clear(&fx);
    cr_assert_eq(flush(), 0);
    deliver(&b, &fx);
    cr_assert_eq(b.use_success, 1);
    cr_assert_not_null(model_find(&b, "k"));
}

/* Names alone do not grow the store: a persistent object is written at its
 * first change, and one nobody wrote is the same empty version 1 when it is
 * made again (after a restart or an unload). */
Test(so_store, use_alone_stores_nothing, .init = mem_ab)
{
    char name[16];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        t_use(e, &a, name, 0, true, &fx);
        t_release(e, &a, name, &fx);
    }
    int err = 0;
    so_object *o = t_open(e, ROOM, "server", true, &err);
    cr_assert_not_null(o);
    so_engine_object_close(e, o);
    cr_assert_null(so_engine_take_batch(e), "nothing to write");
    size_t nslots = 0;
    cr_assert_eq(so_store_memory_count(s, &nslots), 0);
    /* the first change writes the object and its version */
    so_effects_clear(&fx);
    t_use(e, &b, "n7", 0, true, &fx);
    t_set1(e, &b, "n7", 1, "k", 1, &fx);
    cr_assert_eq(flush(), 0);
    cr_assert_eq(so_store_memory_count(s, &nslots), 1);
    cr_assert_eq(nslots, 1);
}

/* The room image a store reads for so_engine_room_loaded: object rows
 * first, then their slots, other rooms left out; the same from both
 * backends. */
static void image_case(const so_store_ops *ops, const char *spec)
{
    cr_assert_eq(so_store_open(ops, spec, NULL, &s), 0);
    so_store_batch *w = so_store_batch_new(1);
    const uint8_t v1[] = {0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0}; /* AMF0 number 1 */
    const uint8_t v2[] = {0x02, 0x00, 0x01, 'x'};               /* AMF0 string "x" */
    cr_assert_eq(so_store_batch_add(w, SO_STORE_OBJECT, ROOM, "o", NULL, 0, 3, NULL, 0), 0);
    cr_assert_eq(so_store_batch_add(w, SO_STORE_SET, ROOM, "o", "a", 1, 2, v1, sizeof(v1)), 0);
    cr_assert_eq(so_store_batch_add(w, SO_STORE_SET, ROOM, "o", "b\0c", 3, 3, v2, sizeof(v2)), 0);
    cr_assert_eq(so_store_batch_add(w, SO_STORE_OBJECT, "app/other", "o", NULL, 0, 9, NULL, 0), 0);
    cr_assert_eq(so_store_write_batch(s, w), 0);
    so_store_batch_free(w);
    so_store_batch *img = NULL;
    cr_assert_eq(so_store_load_image(s, ROOM, &img), 0);
    cr_assert_eq(img->nops, 3);
    cr_assert_eq(img->ops[0].kind, SO_STORE_OBJECT);
    cr_assert_str_eq(img->ops[0].name, "o");
    cr_assert_eq(img->ops[0].version, 3);
    for (size_t i = 1; i < 3; i++) {
        const so_store_op *op = &img->ops[i];
        cr_assert_eq(op->kind, SO_STORE_SET);
        bool is_a = op->key_len == 1;
        cr_assert_eq(op->version, is_a ? 2 : 3);
        cr_assert_eq(op->value_len, is_a ? sizeof(v1) : sizeof(v2));
        cr_assert_eq(memcmp(op->value, is_a ? v1 : v2, op->value_len), 0);
        if (!is_a)
            cr_assert_eq(memcmp(op->key, "b\0c", 3), 0);
    }
    so_store_batch_free(img);
    cr_assert_eq(so_store_load_image(s, "app/none", &img), 0);
    cr_assert_eq(img->nops, 0, "nothing stored: an empty image");
    so_store_batch_free(img);
}

Test(so_store, load_image_memory)
{
    image_case(&so_store_memory_ops, NULL);
}

Test(so_store, load_image_sqlite, .init = sqlite_file)
{
    image_case(&so_store_sqlite_ops, db);
}
