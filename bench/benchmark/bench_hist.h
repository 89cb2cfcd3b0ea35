/* bench_hist.h - fixed log-linear latency histogram (no per-sample allocation).
 *
 * Values are unsigned integers (microseconds in sohub-benchmark).  Values
 * below 16 get one bucket each; above that every power of two is split into
 * 16 equal sub-buckets, so a reported percentile is within 1/16 (6.25 %) of
 * the true value.  The array has a fixed size, so two histograms (for
 * example from two worker processes) merge by adding their counts, and the
 * whole struct can be sent through a pipe as plain bytes.
 */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stdint.h>

#define BENCH_HIST_SUB_BITS 4
#define BENCH_HIST_SUB (1u << BENCH_HIST_SUB_BITS)
#define BENCH_HIST_MAX_EXP 40 /* values up to 2^40 us (about 12 days) */
#define BENCH_HIST_BUCKETS (BENCH_HIST_SUB + (BENCH_HIST_MAX_EXP - BENCH_HIST_SUB_BITS) * BENCH_HIST_SUB)

typedef struct bench_hist {
    uint64_t count;
    uint64_t sum;
    uint64_t min;
    uint64_t max;
    uint64_t buckets[BENCH_HIST_BUCKETS];
} bench_hist;

void bench_hist_init(bench_hist *h);
void bench_hist_add(bench_hist *h, uint64_t v);
/* Adds every count of src into dst. */
void bench_hist_merge(bench_hist *dst, const bench_hist *src);
/* Value at quantile q (0..1): the midpoint of the bucket holding it, clamped
 * to [min, max].  0 when the histogram is empty. */
uint64_t bench_hist_quantile(const bench_hist *h, double q);
double bench_hist_mean(const bench_hist *h);

/* Exposed for the unit test: bucket index of v, and the bucket's range. */
unsigned bench_hist_bucket(uint64_t v);
void bench_hist_bucket_range(unsigned b, uint64_t *lo, uint64_t *hi);

#endif
