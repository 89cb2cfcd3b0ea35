/* test_bench.c - unit tests of the benchmark's histogram and its
 * zero-allocation shared-object reader. */
#include <criterion/criterion.h>
#include <string.h>

#include "amf.h"
#include "bench_hist.h"
#include "bench_so.h"
#include "so_wire.h"

Test(hist, buckets_cover_values_in_order)
{
    unsigned prev = 0;
    for (uint64_t v = 0; v < 200000; v += (v < 100 ? 1 : v / 50)) {
        unsigned b = bench_hist_bucket(v);
        uint64_t lo, hi;
        bench_hist_bucket_range(b, &lo, &hi);
        cr_assert(lo <= v && v <= hi, "v=%llu in [%llu,%llu]", (unsigned long long)v,
                  (unsigned long long)lo, (unsigned long long)hi);
        cr_assert(b >= prev);
        /* relative width at most 1/16 */
        cr_assert(hi - lo <= lo / 16 + 1);
        prev = b;
    }
    cr_assert_eq(bench_hist_bucket(UINT64_MAX), BENCH_HIST_BUCKETS - 1);
}

Test(hist, quantiles_of_a_uniform_run)
{
    static bench_hist h;
    bench_hist_init(&h);
    for (uint64_t v = 1; v <= 10000; v++)
        bench_hist_add(&h, v);
    cr_assert_eq(h.count, 10000);
    cr_assert_eq(h.min, 1);
    cr_assert_eq(h.max, 10000);
    uint64_t p50 = bench_hist_quantile(&h, 0.5);
    uint64_t p99 = bench_hist_quantile(&h, 0.99);
    cr_assert(p50 >= 5000 * 15 / 16 && p50 <= 5000 * 17 / 16, "p50 %llu", (unsigned long long)p50);
    cr_assert(p99 >= 9900 * 15 / 16 && p99 <= 10000, "p99 %llu", (unsigned long long)p99);
    cr_assert_eq(bench_hist_quantile(&h, 1.0), 10000);
    cr_assert_eq(bench_hist_quantile(&h, 0.0), 1);
}

Test(hist, merge_adds_counts)
{
    static bench_hist a, b;
    bench_hist_init(&a);
    bench_hist_init(&b);
    cr_assert_eq(bench_hist_quantile(&a, 0.5), 0);
    bench_hist_add(&a, 10);
    bench_hist_add(&b, 1000);
    bench_hist_add(&b, 3);
    bench_hist_merge(&a, &b);
    cr_assert_eq(a.count, 3);
    cr_assert_eq(a.min, 3);
    cr_assert_eq(a.max, 1000);
    cr_assert_eq(a.sum, 1013);
    cr_assert_eq(bench_hist_quantile(&a, 0.5), 10);
}

typedef struct seen {
    int n;
    uint8_t types[8];
    double numbers[8];
    bool has_number[8];
    char keys[8][16];
    uint32_t version;
} seen;

static void visit(void *ud, uint32_t version, const bench_so_event *ev)
{
    seen *s = ud;
    cr_assert(s->n < 8);
    s->version = version;
    s->types[s->n] = ev->type;
    s->has_number[s->n] = ev->has_number;
    s->numbers[s->n] = ev->number;
    size_t k = ev->key_len < 15 ? ev->key_len : 15;
    if (ev->key)
        memcpy(s->keys[s->n], ev->key, k);
    s->keys[s->n][k] = 0;
    s->n++;
}

/* A server-side Change with two pairs (a number and a string) plus a
 * Success, written with so_wire. */
static void make_change(sh_buf *b, uint8_t msg_type)
{
    size_t mark;
    amf_value *num = amf_number(1234567.0);
    amf_value *str = amf_string_cstr("hello");
    cr_assert_eq(so_wire_put_header(b, msg_type, "room", 4, 42, false), 0);
    cr_assert_eq(so_wire_event_begin(b, SO_EV_CHANGE, &mark), 0);
    so_wire_event_key(b, "w0", 2);
    so_wire_event_value(b, NULL, num);
    so_wire_event_key(b, "s", 1);
    so_wire_event_value(b, NULL, str);
    cr_assert_eq(so_wire_event_end(b, mark), 0);
    cr_assert_eq(so_wire_put_key(b, SO_EV_SUCCESS, "w0", 2), 0);
    amf_unref(num);
    amf_unref(str);
}

Test(so, reads_change_pairs_and_success)
{
    for (int t = 0; t < 2; t++) {
        uint8_t type = t ? SO_MSG_AMF3 : SO_MSG_AMF0;
        sh_buf b;
        sh_buf_init(&b, 4096);
        make_change(&b, type);
        seen s;
        memset(&s, 0, sizeof s);
        const char *name;
        size_t nl;
        cr_assert_eq(bench_so_decode(b.data, b.len, type == SO_MSG_AMF3, &name, &nl, visit, &s), 0);
        cr_assert_eq(nl, 4);
        cr_assert(memcmp(name, "room", 4) == 0);
        cr_assert_eq(s.version, 42);
        cr_assert_eq(s.n, 3);
        cr_assert_eq(s.types[0], BENCH_SO_CHANGE);
        cr_assert_str_eq(s.keys[0], "w0");
        cr_assert(s.has_number[0]);
        cr_assert_eq(s.numbers[0], 1234567.0);
        cr_assert_str_eq(s.keys[1], "s");
        cr_assert(!s.has_number[1]);
        cr_assert_eq(s.types[2], BENCH_SO_SUCCESS);
        cr_assert_str_eq(s.keys[2], "w0");
        sh_buf_cleanup(&b);
    }
}

Test(so, every_truncation_is_refused)
{
    sh_buf b;
    sh_buf_init(&b, 4096);
    make_change(&b, SO_MSG_AMF0);
    /* cut inside the header or an event: never a crash, never success
     * (cuts exactly between events are valid shorter messages) */
    for (size_t n = 0; n < b.len; n++) {
        seen s;
        memset(&s, 0, sizeof s);
        const char *name;
        size_t nl;
        int rc = bench_so_decode(b.data, n, false, &name, &nl, visit, &s);
        if (n < 14)
            cr_assert(rc < 0, "cut at %zu", n);
        else
            cr_assert(rc <= 0);
    }
    sh_buf_cleanup(&b);
}
