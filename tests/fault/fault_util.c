/* fault_util.c - see fault_util.h. */
#include "fault_util.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

static const char *opt_value(int argc, char **argv, const char *name)
{
    size_t n = strlen(name);
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], name, n) != 0)
            continue;
        if (argv[i][n] == '=')
            return argv[i] + n + 1;
        if (argv[i][n] == '\0' && i + 1 < argc)
            return argv[i + 1];
    }
    return NULL;
}

long fault_opt_long(int argc, char **argv, const char *name, long def)
{
    const char *v = opt_value(argc, argv, name);
    if (!v)
        return def;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end) {
        fprintf(stderr, "bad number for %s: '%s'\n", name, v);
        exit(2);
    }
    return x;
}

bool fault_opt_flag(int argc, char **argv, const char *name)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return false;
}

const char *fault_opt_str(int argc, char **argv, const char *name, const char *def)
{
    const char *v = opt_value(argc, argv, name);
    return v ? v : def;
}

long fault_proc_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = strlen(field);
    long kb = -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            kb = strtol(line + n + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

long fault_proc_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 10000000)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

bool fault_sanitized(void)
{
    const char *s = getenv("SOHUB_SANITIZED");
    return s && *s && strcmp(s, "0") != 0;
}

int fault_mkdtemp(char *buf, size_t sz, const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, sz, "%s/sohub-fault-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
    return mkdtemp(buf) ? 0 : -1;
}

void fault_rm_rf(const char *path)
{
    if (!path || !*path || strcmp(path, "/") == 0)
        return;
    const char *argv[] = {"rm", "-rf", path, NULL};
    e2e_run(argv, NULL, 30000, NULL);
}

void fault_lat_add(fault_lat *l, double us)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        double *p = realloc(l->us, cap * sizeof(*p));
        if (!p)
            return;
        l->us = p;
        l->cap = cap;
    }
    l->us[l->n++] = us;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double fault_lat_q(fault_lat *l, double q)
{
    if (l->n == 0)
        return NAN;
    qsort(l->us, l->n, sizeof(double), cmp_double);
    size_t i = (size_t)(q * (double)(l->n - 1) + 0.5);
    return l->us[i < l->n ? i : l->n - 1];
}

void fault_lat_free(fault_lat *l)
{
    free(l->us);
    memset(l, 0, sizeof(*l));
}

int64_t fault_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

uint64_t fault_rand(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}
