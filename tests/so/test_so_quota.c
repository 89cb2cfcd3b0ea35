/* Quotas of persistent objects per application (issue 12): objects
 * stored and key + value bytes stored, counted from the store's usage at
 * start and kept as changes go into batches; a write past a quota gets
 * Status(SharedObject.LimitExceeded.Persistent*) plus the current value. */
#include <unistd.h>

#include "so_test_util.h"

static so_store *s;
static so_engine *e;
static tclient a, b;
static so_effects fx;
static char *db;

static char *tmp_db(void)
{
    char *path = strdup("/tmp/sohub-so-quota-XXXXXX");
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

static void close_all(void)
{
    so_effects_cleanup(&fx);
    t_engine_free(e, &a, &b);
    e = NULL;
    so_store_close(s);
    s = NULL;
    if (db) {
        rm_db(db);
        free(db);
        db = NULL;
    }
}

TestSuite(so_quota, .fini = close_all);

static so_config quota_cfg(uint64_t objects, uint64_t bytes)
{
    so_config c;
    so_config_default(&c);
    c.max_updates_per_sec = 0;
    c.max_persistent_objects = objects;
    c.max_persistent_bytes = bytes;
    return c;
}

/* Memory store, engine with these quotas, client a in room. */
static void open_mem(uint64_t objects, uint64_t bytes, const char *room)
{
    cr_assert_eq(so_store_open(&so_store_memory_ops, NULL, NULL, &s), 0);
    so_config c = quota_cfg(objects, bytes);
    e = t_engine_new(&c, s);
    so_effects_init(&fx);
    t_register(e, &a, AMF_ENC_AMF0, room);
}

/* Writes the pending batch and hands it back (the worker step, inline). */
static void flush(void)
{
    so_store_batch *bt;
    while ((bt = so_engine_take_batch(e)) != NULL) {
        int st = so_store_write_batch(s, bt);
        cr_assert_eq(so_engine_batch_done(e, bt, st, &fx), 0);
    }
}

/* A persistent RequestChange of key to a string of vlen bytes (AMF0: 3 +
 * vlen wire bytes); the answers are delivered to t.  Returns true for
 * Success, false for a Status (its code in t->last_status). */
static bool put(tclient *t, const char *name, const char *key, size_t vlen)
{
    char *str = malloc(vlen + 1);
    memset(str, 'q', vlen);
    str[vlen] = '\0';
    amf_value *v = amf_string_cstr(str);
    free(str);
    sh_buf buf;
    sh_buf_init(&buf, SH_BUF_MAX_DEFAULT);
    so_wire_client_request_change(&buf, mt_of(t), name, t->version, true, 1, &key, &v);
    amf_unref(v);
    size_t succ = t->success, stat = t->status;
    cr_assert_eq(t_send_body(e, t, &buf, 0, &fx), 0);
    flush();
    deliver(t, &fx);
    so_effects_clear(&fx);
    cr_assert_eq(t->success - succ + t->status - stat, 1, "one answer");
    return t->success > succ;
}

static bool del(tclient *t, const char *name, const char *key)
{
    sh_buf buf;
    sh_buf_init(&buf, SH_BUF_MAX_DEFAULT);
    so_wire_client_request_remove(&buf, mt_of(t), name, t->version, true, 1, &key);
    size_t succ = t->success;
    cr_assert_eq(t_send_body(e, t, &buf, 0, &fx), 0);
    flush();
    deliver(t, &fx);
    so_effects_clear(&fx);
    return t->success > succ;
}

static void use_p(tclient *t, const char *name)
{
    cr_assert_eq(t_use(e, t, name, 0, true, &fx), 0);
    deliver(t, &fx);
    so_effects_clear(&fx);
}

static void usage(const char *app, uint64_t *objects, uint64_t *bytes)
{
    so_engine_app_usage(e, app, objects, bytes);
}

/* ---- the store's usage op ---- */

typedef struct usage_row {
    char app[32];
    uint64_t objects, bytes;
} usage_row;

typedef struct usage_tab {
    usage_row r[8];
    size_t n;
} usage_tab;

static int collect(void *ud, const char *app, uint64_t objects, uint64_t bytes)
{
    usage_tab *t = ud;
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->r[i].app, app) == 0) {
            t->r[i].objects += objects;
            t->r[i].bytes += bytes;
            return 0;
        }
    cr_assert_lt(t->n, 8);
    snprintf(t->r[t->n].app, sizeof(t->r[t->n].app), "%s", app);
    t->r[t->n].objects = objects;
    t->r[t->n].bytes = bytes;
    t->n++;
    return 0;
}

static const usage_row *row(const usage_tab *t, const char *app)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->r[i].app, app) == 0)
            return &t->r[i];
    return NULL;
}

static void usage_case(const so_store_ops *ops, const char *spec)
{
    cr_assert_eq(so_store_open(ops, spec, NULL, &s), 0);
    so_store_batch *bt = so_store_batch_new(1);
    const uint8_t v10[10] = {0}, v5[5] = {0};
    /* app "a": three objects in two rooms; "b" (no '/'); "c" with a deep room */
    so_store_batch_add(bt, SO_STORE_SET, "a/x", "n1", "k1", 2, 2, v10, 10);
    so_store_batch_add(bt, SO_STORE_SET, "a/x", "n1", "k2", 2, 2, v5, 5);
    so_store_batch_add(bt, SO_STORE_OBJECT, "a/x", "n1", NULL, 0, 2, NULL, 0);
    so_store_batch_add(bt, SO_STORE_OBJECT, "a/x", "n2", NULL, 0, 1, NULL, 0);
    so_store_batch_add(bt, SO_STORE_SET, "a/y", "n1", "key", 3, 2, v10, 10);
    so_store_batch_add(bt, SO_STORE_OBJECT, "a/y", "n1", NULL, 0, 2, NULL, 0);
    so_store_batch_add(bt, SO_STORE_SET, "b", "o", "k", 1, 2, v5, 5);
    so_store_batch_add(bt, SO_STORE_OBJECT, "b", "o", NULL, 0, 2, NULL, 0);
    so_store_batch_add(bt, SO_STORE_SET, "c/z/w", "o", "k", 1, 2, v5, 5);
    so_store_batch_add(bt, SO_STORE_OBJECT, "c/z/w", "o", NULL, 0, 2, NULL, 0);
    /* a slot that goes again does not count */
    so_store_batch_add(bt, SO_STORE_SET, "c/z/w", "o", "gone", 4, 3, v10, 10);
    so_store_batch_add(bt, SO_STORE_DELETE, "c/z/w", "o", "gone", 4, 4, NULL, 0);
    cr_assert_eq(so_store_write_batch(s, bt), 0);
    so_store_batch_free(bt);
    usage_tab t = {0};
    cr_assert_eq(so_store_usage(s, collect, &t), 0);
    cr_assert_eq(t.n, 3);
    const usage_row *ra = row(&t, "a"), *rb = row(&t, "b"), *rc = row(&t, "c");
    cr_assert(ra && rb && rc);
    cr_assert_eq(ra->objects, 3);
    cr_assert_eq(ra->bytes, 2 + 10 + 2 + 5 + 3 + 10);
    cr_assert_eq(rb->objects, 1);
    cr_assert_eq(rb->bytes, 1 + 5);
    cr_assert_eq(rc->objects, 1);
    cr_assert_eq(rc->bytes, 1 + 5);
}

Test(so_quota, memory_store_reports_usage_per_application)
{
    usage_case(&so_store_memory_ops, "");
}

Test(so_quota, sqlite_store_reports_usage_per_application)
{
    db = tmp_db();
    usage_case(&so_store_sqlite_ops, db);
}

/* ---- the quotas ---- */

Test(so_quota, objects_quota_refuses_a_new_stored_object)
{
    open_mem(2, 0, "app/i1");
    use_p(&a, "p1");
    use_p(&a, "p2");
    use_p(&a, "p3");
    uint64_t n, bytes;
    usage("app", &n, &bytes);
    cr_assert_eq(n, 0, "Use alone stores nothing, counts nothing");
    cr_assert(put(&a, "p1", "k", 4));
    cr_assert(put(&a, "p2", "k", 4));
    cr_assert_not(put(&a, "p3", "k", 4), "the third stored object is refused");
    cr_assert_str_eq(a.last_status, SO_STATUS_LIMIT_PERSISTENT_OBJECTS);
    usage("app", &n, &bytes);
    cr_assert_eq(n, 2);
    cr_assert_eq(bytes, 2 * (1 + 3 + 4));
    cr_assert_eq(so_store_memory_count(s, NULL), 2, "nothing of p3 was stored");
    /* stored objects still take changes; temporary objects do not count */
    cr_assert(put(&a, "p1", "k2", 4));
    cr_assert_eq(t_use(e, &a, "temp", 0, false, &fx), 0);
    so_effects_clear(&fx);
    size_t succ = a.success, stat = a.status;
    cr_assert_eq(t_set1(e, &a, "temp", 1, "x", 1, &fx), 0);
    deliver(&a, &fx);
    so_effects_clear(&fx);
    cr_assert_eq(a.success, succ + 1, "a temporary object is not counted");
    cr_assert_eq(a.status, stat);
}

/* The refusal carries the key's current value, so the client's copy is
 * put back (rule 4 style) and a Flash client does not stall. */
Test(so_quota, refusal_carries_the_current_value)
{
    open_mem(0, 20, "app/i1");
    use_p(&a, "p");
    cr_assert(put(&a, "p", "k", 10));               /* 1 + 13 bytes */
    sh_buf buf;
    sh_buf_init(&buf, SH_BUF_MAX_DEFAULT);
    const char *key = "k";
    amf_value *v = amf_string_cstr("a much longer value");
    so_wire_client_request_change(&buf, SO_MSG_AMF0, "p", a.version, true, 1, &key, &v);
    amf_unref(v);
    cr_assert_eq(t_send_body(e, &a, &buf, 0, &fx), 0);
    flush();
    so_msg m;
    cr_assert(first_msg(&a, &fx, 0, &m));
    cr_assert_eq(m.nevents, 2);
    cr_assert_eq(m.events[0].type, SO_EV_STATUS);
    cr_assert_str_eq(m.events[0].code, SO_STATUS_LIMIT_PERSISTENT_BYTES);
    cr_assert_str_eq(m.events[0].level, "error");
    cr_assert_eq(m.events[1].type, SO_EV_CHANGE);
    cr_assert_str_eq(m.events[1].kv[0].key, "k");
    size_t len = 0;
    cr_assert_not_null(amf_as_string(m.events[1].kv[0].value, &len));
    cr_assert_eq(len, 10, "the stored value");
    so_msg_cleanup(&m);
}

Test(so_quota, bytes_quota_refuses_growth_and_allows_shrinking)
{
    open_mem(0, 220, "app/i1");
    use_p(&a, "p");
    cr_assert(put(&a, "p", "k1", 100));             /* 2 + 103 = 105 */
    cr_assert(put(&a, "p", "k2", 100));             /* 210 */
    cr_assert_not(put(&a, "p", "k3", 10), "225 would pass 220");
    cr_assert_str_eq(a.last_status, SO_STATUS_LIMIT_PERSISTENT_BYTES);
    cr_assert_not(put(&a, "p", "k1", 120), "growing a slot is growth too");
    cr_assert(put(&a, "p", "k1", 50), "shrinking is always allowed");
    uint64_t n, bytes;
    usage("app", &n, &bytes);
    cr_assert_eq(bytes, 105 + 55);
    cr_assert(del(&a, "p", "k2"));
    usage("app", &n, &bytes);
    cr_assert_eq(bytes, 55);
    cr_assert(put(&a, "p", "k3", 150), "room again after the remove");
    usage("app", &n, &bytes);
    cr_assert_eq(n, 1);
    cr_assert_eq(bytes, 55 + 155);
}

Test(so_quota, server_writes_past_a_quota_get_elimit)
{
    open_mem(1, 0, "app/i1");
    int err = 0;
    so_object *o1 = t_open(e, "app/i1", "s1", true, &err);
    so_object *o2 = t_open(e, "app/i1", "s2", true, &err);
    cr_assert(o1 && o2);
    amf_value *v = amf_number(1);
    cr_assert_eq(so_object_set(e, o1, "k", 1, v, &fx), 0);
    cr_assert_eq(so_object_set(e, o2, "k", 1, v, &fx), SH_ELIMIT);
    amf_unref(v);
    cr_assert_null(so_object_get(o2, "k", 1));
    so_engine_object_close(e, o1);
    so_engine_object_close(e, o2);
    flush();
}

/* so_object_apply checks the bytes quota against the whole request: two
 * slots that fit alone but not together are refused together. */
Test(so_quota, server_apply_counts_the_whole_request)
{
    open_mem(0, 220, "app/i1");
    int err = 0;
    so_object *o = so_engine_object_open(e, "app/i1", "p", true, &err);
    cr_assert_not_null(o);
    char text[101];
    memset(text, 'x', 100);
    text[100] = '\0';
    amf_value *v = amf_string_cstr(text); /* 2 + 103 bytes stored per slot */
    so_change three[] = {{"k1", 2, v}, {"k2", 2, v}, {"k3", 2, v}};
    cr_assert_eq(so_object_apply(e, o, three, 3, &fx), SH_ELIMIT, "315 would pass 220");
    cr_assert_eq(so_object_slot_count(o), 0, "nothing applied");
    uint64_t n, bytes;
    usage("app", &n, &bytes);
    cr_assert_eq(bytes, 0);
    cr_assert_eq(so_object_apply(e, o, three, 2, &fx), 0, "210 fits");
    cr_assert_eq(so_object_slot_count(o), 2);
    so_change swap[] = {{"k1", 2, NULL}, {"k3", 2, v}};
    cr_assert_eq(so_object_apply(e, o, swap, 2, &fx), 0, "a removal first makes room");
    usage("app", &n, &bytes);
    cr_assert_eq(bytes, 210);
    amf_unref(v);
    so_engine_object_close(e, o);
    flush();
}

/* Usage is per application: the rooms of "app" share one quota, "other"
 * has its own; a room that was never loaded counts from the store. */
Test(so_quota, usage_is_recounted_from_the_store_at_start)
{
    db = tmp_db();
    cr_assert_eq(so_store_open(&so_store_sqlite_ops, db, NULL, &s), 0);
    so_config c = quota_cfg(2, 0);
    e = t_engine_new(&c, s);
    so_effects_init(&fx);
    t_register(e, &a, AMF_ENC_AMF0, "app/r1");
    use_p(&a, "p1");
    use_p(&a, "p2");
    cr_assert(put(&a, "p1", "k", 5));
    cr_assert(put(&a, "p2", "k", 5));
    uint64_t n0, b0;
    usage("app", &n0, &b0);
    t_unregister(e, &a);
    so_engine_free(e);
    so_store_close(s);
    /* restart */
    cr_assert_eq(so_store_open(&so_store_sqlite_ops, db, NULL, &s), 0);
    e = t_engine_new(&c, s);
    uint64_t n, bytes;
    usage("app", &n, &bytes);
    cr_assert_eq(n, n0);
    cr_assert_eq(bytes, b0);
    cr_assert_eq(n, 2);
    /* r2 was never loaded, r1 is not loaded now: the quota still holds */
    t_register(e, &a, AMF_ENC_AMF0, "app/r2");
    use_p(&a, "p3");
    cr_assert_not(put(&a, "p3", "k", 5));
    cr_assert_str_eq(a.last_status, SO_STATUS_LIMIT_PERSISTENT_OBJECTS);
    /* another application is not affected */
    t_register(e, &b, AMF_ENC_AMF0, "other/r1");
    use_p(&b, "p1");
    cr_assert(put(&b, "p1", "k", 5));
    cr_assert(put(&b, "p1", "k2", 5));
    usage("other", &n, &bytes);
    cr_assert_eq(n, 1);
}

static void per_app(void *ud, const char *room, so_room_settings *rs)
{
    (void)ud;
    if (strncmp(room, "tight/", 6) == 0) {
        rs->max_persistent_objects = 1;
        rs->max_persistent_bytes = 0;
    } else {
        rs->max_persistent_objects = 0; /* no quota */
    }
}

Test(so_quota, room_settings_give_each_application_its_quotas)
{
    open_mem(1, 0, "tight/i");
    t_set_hooks(e, (so_hooks){.room_settings = per_app});
    t_unregister(e, &a);
    t_register(e, &a, AMF_ENC_AMF0, "tight/i");
    t_register(e, &b, AMF_ENC_AMF0, "loose/i");
    use_p(&a, "p1");
    use_p(&a, "p2");
    cr_assert(put(&a, "p1", "k", 1));
    cr_assert_not(put(&a, "p2", "k", 1));
    for (int i = 0; i < 5; i++) {
        char name[8];
        snprintf(name, sizeof(name), "q%d", i);
        use_p(&b, name);
        cr_assert(put(&b, name, "k", 1), "no quota for loose (%d)", i);
    }
}

/* The engine's counts equal what the store reports after any mix of
 * sets, overwrites, removes and a failed batch (whose objects are written
 * again whole). */
Test(so_quota, counts_match_the_store_after_mixed_changes)
{
    open_mem(0, 0, "mix/i");
    t_register(e, &b, AMF_ENC_AMF0, "mix/j");
    uint64_t seed = 12345;
    for (int i = 0; i < 300; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        tclient *t = (seed >> 60) & 1 ? &a : &b;
        char name[8], key[8];
        snprintf(name, sizeof(name), "o%d", (int)((seed >> 40) % 4));
        snprintf(key, sizeof(key), "k%d", (int)((seed >> 20) % 6));
        if (!so_engine_object_find(e, t == &a ? "mix/i" : "mix/j", name))
            use_p(t, name);
        if ((seed >> 33) % 3 == 0)
            del(t, name, key);
        else
            put(t, name, key, (size_t)((seed >> 10) % 40));
        if (i == 150)
            so_store_memory_fail_next(s, 1);
    }
    flush();
    usage_tab tab = {0};
    cr_assert_eq(so_store_usage(s, collect, &tab), 0);
    const usage_row *r = row(&tab, "mix");
    cr_assert_not_null(r);
    uint64_t n, bytes;
    usage("mix", &n, &bytes);
    cr_assert_eq(n, r->objects);
    cr_assert_eq(bytes, r->bytes, "engine %llu, store %llu", (unsigned long long)bytes,
                 (unsigned long long)r->bytes);
}
