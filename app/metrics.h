/* metrics.h - counters and histograms for /metrics (Prometheus text).
 *
 * Each module keeps its own counters (plain uint64_t, loop thread only)
 * and hands a copy out through its stats function; the admin API
 * (api.c) renders them all at scrape time.  This file has the two pieces
 * they share: a fixed-bucket histogram, and the writer of the Prometheus
 * text exposition format (version 0.0.4): "# HELP", "# TYPE", one line
 * per sample, label values escaped.
 */
#ifndef APP_METRICS_H
#define APP_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "sh_buf.h"

#define APP_HISTO_MAX 16

typedef struct app_histo {
    const double *bounds;        /* upper bounds, increasing (seconds) */
    size_t n;                    /* at most APP_HISTO_MAX */
    uint64_t counts[APP_HISTO_MAX]; /* counts[i]: observations <= bounds[i] (not cumulative) */
    uint64_t count;              /* all observations (the +Inf bucket) */
    double sum;
} app_histo;

void app_histo_init(app_histo *h, const double *bounds, size_t n);
void app_histo_add(app_histo *h, double v);

/* Writers: name must be a valid metric name; labels is NULL or text
 * "a=\"x\",b=\"y\"" made with app_metric_label. */
void app_metric_head(sh_buf *b, const char *name, const char *type, const char *help);
void app_metric_value(sh_buf *b, const char *name, const char *labels, double v);
void app_metric_histo(sh_buf *b, const char *name, const char *help, const app_histo *h);
/* Appends key="value" (value escaped) to a label list in buf. */
void app_metric_label(char *buf, size_t bufsz, const char *key, const char *value);

#endif
