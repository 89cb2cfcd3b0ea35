/* metrics.c - see metrics.h. */
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void app_histo_init(app_histo *h, const double *bounds, size_t n)
{
    memset(h, 0, sizeof(*h));
    h->bounds = bounds;
    h->n = n < APP_HISTO_MAX ? n : APP_HISTO_MAX;
}

void app_histo_add(app_histo *h, double v)
{
    for (size_t i = 0; i < h->n; i++)
        if (v <= h->bounds[i]) {
            h->counts[i]++;
            break;
        }
    h->count++;
    h->sum += v;
}

static void put(sh_buf *b, const char *s)
{
    sh_buf_append(b, s, strlen(s));
}

void app_metric_head(sh_buf *b, const char *name, const char *type, const char *help)
{
    char line[512];
    snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    put(b, line);
}

static void num(char *out, size_t sz, double v)
{
    if (isnan(v))
        snprintf(out, sz, "NaN");
    else if (isinf(v))
        snprintf(out, sz, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 9e15)
        snprintf(out, sz, "%.0f", v);
    else
        snprintf(out, sz, "%.9g", v);
}

void app_metric_value(sh_buf *b, const char *name, const char *labels, double v)
{
    char line[768], n[64];
    num(n, sizeof(n), v);
    if (labels && *labels)
        snprintf(line, sizeof(line), "%s{%s} %s\n", name, labels, n);
    else
        snprintf(line, sizeof(line), "%s %s\n", name, n);
    put(b, line);
}

void app_metric_histo(sh_buf *b, const char *name, const char *help, const app_histo *h)
{
    app_metric_head(b, name, "histogram", help);
    char bucket[160], le[64], lab[96];
    snprintf(bucket, sizeof(bucket), "%s_bucket", name);
    uint64_t cum = 0;
    for (size_t i = 0; i < h->n; i++) {
        cum += h->counts[i];
        num(le, sizeof(le), h->bounds[i]);
        snprintf(lab, sizeof(lab), "le=\"%s\"", le);
        app_metric_value(b, bucket, lab, (double)cum);
    }
    app_metric_value(b, bucket, "le=\"+Inf\"", (double)h->count);
    char s[160];
    snprintf(s, sizeof(s), "%s_sum", name);
    app_metric_value(b, s, NULL, h->sum);
    snprintf(s, sizeof(s), "%s_count", name);
    app_metric_value(b, s, NULL, (double)h->count);
}

void app_metric_label(char *buf, size_t bufsz, const char *key, const char *value)
{
    size_t n = strlen(buf);
    if (n + 4 >= bufsz)
        return;
    if (n)
        buf[n++] = ',';
    int k = snprintf(buf + n, bufsz - n, "%s=\"", key);
    if (k < 0 || (size_t)k >= bufsz - n)
        return;
    n += (size_t)k;
    for (const char *p = value; *p && n + 3 < bufsz; p++) {
        if (*p == '\\' || *p == '"') {
            buf[n++] = '\\';
            buf[n++] = *p;
        } else if (*p == '\n') {
            buf[n++] = '\\';
            buf[n++] = 'n';
        } else {
            buf[n++] = *p;
        }
    }
    if (n + 2 <= bufsz) {
        buf[n++] = '"';
        buf[n] = '\0';
    }
}
