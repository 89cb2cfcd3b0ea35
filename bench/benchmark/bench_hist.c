/* bench_hist.c - see bench_hist.h. */
#include "bench_hist.h"

#include <string.h>

void bench_hist_init(bench_hist *h)
{
    memset(h, 0, sizeof *h);
}

static unsigned log2_u64(uint64_t v)
{
    return 63u - (unsigned)__builtin_clzll(v);
}

unsigned bench_hist_bucket(uint64_t v)
{
    if (v < BENCH_HIST_SUB)
        return (unsigned)v;
    unsigned e = log2_u64(v);
    if (e >= BENCH_HIST_MAX_EXP)
        return BENCH_HIST_BUCKETS - 1;
    unsigned sub = (unsigned)(v >> (e - BENCH_HIST_SUB_BITS)) & (BENCH_HIST_SUB - 1);
    return BENCH_HIST_SUB + (e - BENCH_HIST_SUB_BITS) * BENCH_HIST_SUB + sub;
}

void bench_hist_bucket_range(unsigned b, uint64_t *lo, uint64_t *hi)
{
    if (b < BENCH_HIST_SUB) {
        *lo = *hi = b;
        return;
    }
    unsigned e = (b - BENCH_HIST_SUB) / BENCH_HIST_SUB + BENCH_HIST_SUB_BITS;
    unsigned sub = (b - BENCH_HIST_SUB) % BENCH_HIST_SUB;
    uint64_t width = (uint64_t)1 << (e - BENCH_HIST_SUB_BITS);
    *lo = ((uint64_t)BENCH_HIST_SUB + sub) * width;
    *hi = *lo + width - 1;
}

void bench_hist_add(bench_hist *h, uint64_t v)
{
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->count++;
    h->sum += v;
    h->buckets[bench_hist_bucket(v)]++;
}

void bench_hist_merge(bench_hist *dst, const bench_hist *src)
{
    if (src->count == 0)
        return;
    if (dst->count == 0 || src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    dst->sum += src->sum;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
}

uint64_t bench_hist_quantile(const bench_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q <= 0)
        return h->min;
    if (q >= 1)
        return h->max;
    /* rank of the wanted sample, 1-based, rounded up */
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if ((double)rank < q * (double)h->count)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t lo, hi;
            bench_hist_bucket_range(i, &lo, &hi);
            uint64_t mid = lo + (hi - lo) / 2;
            if (mid < h->min)
                mid = h->min;
            if (mid > h->max)
                mid = h->max;
            return mid;
        }
    }
    return h->max;
}

double bench_hist_mean(const bench_hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
