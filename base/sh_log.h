/* sh_log.h - leveled logging to stderr.
 *
 * One process-wide level set at start (the only mutable global in base/;
 * the engine modules never log).  Connection-scoped lines carry the
 * connection id: SH_LOG(SH_LOG_INFO, "conn=%llu ...", id).  Strings that
 * came from a peer must go through sh_log_sanitize() before printing.
 */
#ifndef SH_LOG_H
#define SH_LOG_H

#include <stddef.h>

typedef enum sh_log_level {
    SH_LOG_ERROR = 0,
    SH_LOG_WARN = 1,
    SH_LOG_INFO = 2,
    SH_LOG_DEBUG = 3,
} sh_log_level;

void sh_log_set_level(sh_log_level l);
sh_log_level sh_log_get_level(void);
/* Parses "error", "warn", "info", "debug"; returns -1 when unknown. */
int sh_log_level_parse(const char *s);
void sh_log(sh_log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define SH_LOG(l, ...) \
    do { if ((l) <= sh_log_get_level()) sh_log((l), __VA_ARGS__); } while (0)

/* Copies at most n bytes of peer text into out (size outsz, NUL-terminated),
 * replacing control and non-printable bytes with '?', cutting long text
 * with "...".  Returns out. */
char *sh_log_sanitize(char *out, size_t outsz, const char *s, size_t n);

#endif
