/* test_so_mem.c - the engine's value and object limits count memory
 * (so.h: max_value_bytes, SO_VALUE_MEM_FACTOR, max_object_bytes): a
 * value small on the wire but large decoded is refused, an object's bytes
 * are the memory its slots hold, and each limit holds exactly. */
#include "so_test_util.h"

#define ROOM "app/mem"

static so_engine *e;
static tclient a, b;
static so_effects fx;

static void open_with(const so_config *cfg)
{
    e = t_engine_new(cfg, NULL);
    so_effects_init(&fx);
    t_register(e, &a, AMF_ENC_AMF0, ROOM);
    t_register(e, &b, AMF_ENC_AMF3, ROOM);
    t_use(e, &a, "o", 0, false, &fx);
    t_use(e, &b, "o", 0, false, &fx);
    so_effects_clear(&fx);
}

static void close_all(void)
{
    if (!e)
        return;
    so_effects_cleanup(&fx);
    t_engine_free(e, &a, &b);
    e = NULL;
}

TestSuite(so_mem, .fini = close_all);

static so_object *obj(void) { return so_engine_object_find(e, ROOM, "o"); }

/* A strict array of n nulls: n + 5 bytes on the wire, a pointer each in
 * memory. */
static amf_value *nulls(size_t n)
{
    amf_value *v = amf_strict_array_new();
    for (size_t i = 0; i < n; i++)
        amf_array_push(v, amf_null());
    return v;
}

/* A strict array of n empty objects: 4 bytes each on the wire in AMF0
 * (03 00 00 09), a container block each in memory (over 30 times). */
static amf_value *empties(size_t n)
{
    amf_value *v = amf_strict_array_new();
    for (size_t i = 0; i < n; i++)
        amf_array_push(v, amf_object_new(NULL));
    return v;
}

/* a writes key = v (borrowed); returns the Status code of the answer, or
 * "" for a Success. */
static const char *write_kv(const char *key, amf_value *v)
{
    static char code[128];
    so_effects_clear(&fx);
    t_setv(e, &a, "o", so_object_version(obj()), key, v, &fx);
    so_msg m;
    cr_assert(first_msg(&a, &fx, 0, &m), "no answer");
    code[0] = '\0';
    if (m.events[0].type == SO_EV_STATUS)
        snprintf(code, sizeof(code), "%s", m.events[0].code);
    else
        cr_assert_eq(m.events[0].type, SO_EV_SUCCESS);
    so_msg_cleanup(&m);
    return code;
}

Test(so_mem, value_memory_cap)
{
    so_config cfg;
    so_config_default(&cfg);
    open_with(&cfg);
    /* 16,000 empty objects: 64,005 bytes on the wire (under the 64 KiB
     * cap), over 2 MiB decoded: refused */
    amf_value *big = empties(16000);
    cr_assert_gt(amf_value_mem(big), SO_VALUE_MEM_FACTOR * (size_t)cfg.max_value_bytes);
    cr_assert_str_eq(write_kv("e", big), SO_STATUS_LIMIT_VALUE);
    amf_unref(big);
    cr_assert_null(so_object_get(obj(), "e", 1));
    /* the issue's value, 65,000 nulls, holds 512 KiB: under the value cap
     * now that a null costs a pointer; objects bound how many fit */
    amf_value *n65 = nulls(65000);
    cr_assert_str_eq(write_kv("n", n65), "");
    amf_unref(n65);
    /* a string as long as the wire cap allows is not refused for memory */
    size_t len = cfg.max_value_bytes - 3; /* AMF0 string: 3-byte header */
    char *s = malloc(len);
    memset(s, 'x', len);
    amf_value *str = amf_string(s, len);
    free(s);
    cr_assert_str_eq(write_kv("s", str), "");
    amf_unref(str);
    close_all();
    /* exactly at the cap (memory = SO_VALUE_MEM_FACTOR x max_value_bytes)
     * and one past (the cap one byte lower) */
    amf_value *v = empties(1000);
    size_t mem = amf_value_mem(v);
    cr_assert_eq(mem % SO_VALUE_MEM_FACTOR, 0);
    cfg.max_value_bytes = (uint32_t)(mem / SO_VALUE_MEM_FACTOR);
    cr_assert_lt(1000 * 4 + 5, cfg.max_value_bytes, "the wire cap is not what refuses");
    open_with(&cfg);
    cr_assert_str_eq(write_kv("at", v), "");
    close_all();
    cfg.max_value_bytes--;
    open_with(&cfg);
    cr_assert_str_eq(write_kv("past", v), SO_STATUS_LIMIT_VALUE);
    amf_unref(v);
}

Test(so_mem, server_writes_have_the_same_caps)
{
    so_config cfg;
    so_config_default(&cfg);
    open_with(&cfg);
    amf_value *big = empties(16000);
    cr_assert_eq(so_object_set(e, obj(), "e", 1, big, &fx), SH_ELIMIT);
    amf_unref(big);
    amf_value *ok = nulls(100);
    cr_assert_eq(so_object_set(e, obj(), "n", 1, ok, &fx), 0);
    cr_assert_gt(so_object_bytes(obj()), amf_value_mem(ok));
    amf_unref(ok);
}

Test(so_mem, object_bytes_are_memory)
{
    so_config cfg;
    so_config_default(&cfg);
    open_with(&cfg);
    cr_assert_eq(so_object_bytes(obj()), 0);
    amf_value *x = nulls(1000);
    cr_assert_str_eq(write_kv("k", x), "");
    size_t one = so_object_bytes(obj());
    /* the slot holds the value's memory, its wire bytes (1005) and key */
    cr_assert_gt(one, amf_value_mem(x) + 1005 + 2);
    cr_assert_lt(one, amf_value_mem(x) + 1005 + 2 + 512);
    /* the same value under a second key costs the same again */
    cr_assert_str_eq(write_kv("j", x), "");
    cr_assert_eq(so_object_bytes(obj()), 2 * one);
    /* replacing a value by a smaller one gives memory back */
    amf_value *small = amf_number(1);
    cr_assert_str_eq(write_kv("k", small), "");
    cr_assert_lt(so_object_bytes(obj()), 2 * one - amf_value_mem(x));
    /* removing gives it all back */
    so_effects_clear(&fx);
    t_remove(e, &a, "o", so_object_version(obj()), "k", &fx);
    t_remove(e, &a, "o", so_object_version(obj()), "j", &fx);
    cr_assert_eq(so_object_bytes(obj()), 0);
    amf_unref(x);
    amf_unref(small);
}

/* Writes k0, k1, ... = v until refused; returns how many were applied and
 * the object's bytes after them in *bytes. */
static size_t fill(amf_value *v, size_t max, size_t *bytes, const char **code)
{
    size_t n = 0;
    for (; n < max; n++) {
        char k[16];
        snprintf(k, sizeof(k), "k%zu", n);
        *code = write_kv(k, v);
        if (**code)
            break;
    }
    *bytes = so_object_bytes(obj());
    return n;
}

Test(so_mem, object_bytes_at_and_one_past)
{
    /* measure what 5 values take with room to spare ... */
    amf_value *v = nulls(2000);
    so_config cfg;
    so_config_default(&cfg);
    open_with(&cfg);
    size_t bytes = 0;
    const char *code = NULL;
    cr_assert_eq(fill(v, 5, &bytes, &code), 5);
    close_all();
    /* ... then exactly that is the cap: 5 fit and the 6th is refused */
    cfg.max_object_bytes = bytes;
    open_with(&cfg);
    size_t got = 0;
    cr_assert_eq(fill(v, 10, &got, &code), 5);
    cr_assert_str_eq(code, SO_STATUS_LIMIT_OBJECT_BYTES);
    cr_assert_eq(got, bytes);
    close_all();
    /* one byte less and the 5th is refused */
    cfg.max_object_bytes = bytes - 1;
    open_with(&cfg);
    cr_assert_eq(fill(v, 10, &got, &code), 4);
    cr_assert_str_eq(code, SO_STATUS_LIMIT_OBJECT_BYTES);
    cr_assert_leq(got, bytes - 1);
    amf_unref(v);
}

Test(so_mem, the_issue_attack_is_bounded_per_object)
{
    /* issue 12: 12 MB of 65 KB null arrays used to be held as 499 MB.  An
     * object now takes such values only until the memory they hold
     * reaches max_object_bytes, far fewer than the bytes alone allowed. */
    so_config cfg;
    so_config_default(&cfg);
    open_with(&cfg);
    amf_value *attack = nulls(65000);
    size_t bytes = 0;
    const char *code = NULL;
    size_t n = fill(attack, 100, &bytes, &code);
    amf_unref(attack);
    cr_assert_str_eq(code, SO_STATUS_LIMIT_OBJECT_BYTES);
    cr_assert_leq(bytes, cfg.max_object_bytes);
    cr_assert_gt(n, 0);
    cr_assert_lt(n * 65005, cfg.max_object_bytes / 4, "wire bytes no longer measure it (%zu)", n);
}

Test(so_mem, shared_string_value_is_counted_once)
{
    /* an AMF3 value sharing one 16 KiB string 1,000 times holds the
     * string once; the change other subscribers get keeps it shared */
    so_config cfg;
    so_config_default(&cfg);
    open_with(&cfg);
    char *s = malloc(16384);
    memset(s, 'q', 16384);
    amf_value *str = amf_string(s, 16384);
    free(s);
    amf_value *arr = amf_strict_array_new();
    for (int i = 0; i < 1000; i++)
        amf_array_push(arr, amf_ref(str));
    amf_unref(str);
    /* b (AMF3) sends it: raw shared on its way in */
    so_effects_clear(&fx);
    const char *key = "shared";
    t_setv(e, &b, "o", so_object_version(obj()), key, arr, &fx);
    expect_nth_event(&b, &fx, 0, 0, SO_EV_SUCCESS, "accepted");
    size_t held = so_object_bytes(obj());
    cr_assert_lt(held, 3 * 16384 + 1000 * 8 + 4096, "held %zu", held);
    /* a got it as one Change, small on the wire */
    for (size_t i = 0; i < fx.len; i++)
        for (size_t k = 0; k < fx.items[i].nto; k++)
            if (fx.items[i].to[k] == &a)
                cr_assert_lt(fx.items[i].body->len, 16384 + 4 * 1000 + 256);
    deliver(&a, &fx);
    cr_assert(amf_equal(model_find(&a, "shared")->v, arr));
    amf_unref(arr);
}
