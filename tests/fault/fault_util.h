/* fault_util.h - small helpers shared by the fault-injection and load
 * programs of tests/fault (docs/faults.md).
 *
 * These programs drive the real sohub-server binary ($SOHUB_SERVER, started
 * through tests/e2e/harness.h) on 127.0.0.1 only.  Every loop is bounded in
 * time and count; every program stops by itself.  The short form of each
 * runs in CI (meson suite 'fault'); the long form is the same program with
 * larger options (scripts/fault-*.sh).
 */
#ifndef FAULT_UTIL_H
#define FAULT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* "--name N" / "--name=N" in argv, else def.  Exits 2 on a bad number. */
long fault_opt_long(int argc, char **argv, const char *name, long def);
/* True when "--name" is in argv. */
bool fault_opt_flag(int argc, char **argv, const char *name);
/* "--name TEXT" / "--name=TEXT", else def (borrowed). */
const char *fault_opt_str(int argc, char **argv, const char *name, const char *def);

/* A field of /proc/PID/status in KiB ("VmRSS", "VmHWM"); -1 when unknown. */
long fault_proc_kb(pid_t pid, const char *field);
/* Open file descriptors of pid (entries of /proc/PID/fd); -1 when unknown. */
long fault_proc_fds(pid_t pid);

/* True when the server under test was built with sanitizers (meson passes
 * SOHUB_SANITIZED=1 then): memory figures are not comparable. */
bool fault_sanitized(void);

/* Makes a fresh directory under $TMPDIR (or /tmp) named sohub-fault-XXXXXX
 * in buf.  Returns 0 or -1. */
int fault_mkdtemp(char *buf, size_t sz, const char *tag);
/* rm -rf path (bounded). */
void fault_rm_rf(const char *path);

/* Latency samples (microseconds) and their summary. */
typedef struct fault_lat {
    double *us;
    size_t n, cap;
} fault_lat;
void fault_lat_add(fault_lat *l, double us);
/* The q-quantile (0..1) in microseconds; NaN when empty.  Sorts in place. */
double fault_lat_q(fault_lat *l, double q);
void fault_lat_free(fault_lat *l);

/* Monotonic time in microseconds. */
int64_t fault_now_us(void);

/* A small deterministic PRNG (xorshift64*) so a failing run can be
 * repeated with --seed. */
uint64_t fault_rand(uint64_t *state);

#endif
