/* sh_log.h - leveled logging to stderr, as text or as JSON lines.
 *
 * One process-wide level and format set at start (the only mutable
 * globals in base/; the engine modules never log).  Connection-scoped
 * lines carry the connection id first: SH_LOG(SH_LOG_INFO, "conn=%llu
 * ...", id).  Strings that came from a peer must go through
 * sh_log_sanitize() before printing.
 *
 * Text: "2026-12-06T05:37:12.436Z INFO  conn=1 connect ...".
 * JSON (log_format = json, for log shippers): one object per line,
 *   {"ts":"2026-12-06T05:37:12.436Z","level":"info","conn":1,"msg":"connect ..."}
 * "conn" is present when the message starts with "conn=DIGITS " (taken
 * out of msg).  Every other key=value of the message stays inside msg:
 * their values are not delimited (peer text may hold spaces, '=' and
 * quotes), so splitting them would let a client forge members.  msg is
 * escaped as JSON wants (quote, backslash, control bytes) and bytes that
 * are not UTF-8 become U+FFFD, so every line parses.
 */
#ifndef SH_LOG_H
#define SH_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef enum sh_log_level {
    SH_LOG_ERROR = 0,
    SH_LOG_WARN = 1,
    SH_LOG_INFO = 2,
    SH_LOG_DEBUG = 3,
} sh_log_level;

typedef enum sh_log_format {
    SH_LOG_TEXT = 0,
    SH_LOG_JSON = 1,
} sh_log_format;

/* The longest message kept (longer ones are cut), and the longest line
 * sh_log_render can make of it. */
#define SH_LOG_MSG_MAX 1024
#define SH_LOG_LINE_MAX (6 * SH_LOG_MSG_MAX + 128)

void sh_log_set_level(sh_log_level l);
sh_log_level sh_log_get_level(void);
/* Parses "error", "warn", "info", "debug"; returns -1 when unknown. */
int sh_log_level_parse(const char *s);
void sh_log_set_format(sh_log_format f);
sh_log_format sh_log_get_format(void);
/* Parses "text", "json"; returns -1 when unknown. */
int sh_log_format_parse(const char *s);
void sh_log(sh_log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define SH_LOG(l, ...) \
    do { if ((l) <= sh_log_get_level()) sh_log((l), __VA_ARGS__); } while (0)

/* Writes the line for message msg (NUL-terminated, borrowed) at level l
 * and time t_ms (milliseconds since the Unix epoch, UTC) in format f into
 * out, ending in '\n', NUL-terminated.  What sh_log prints; pure (tests).
 * Returns the length without the NUL; the line is cut (still one valid
 * line, and valid JSON) when outsz is below SH_LOG_LINE_MAX. */
size_t sh_log_render(char *out, size_t outsz, sh_log_format f, sh_log_level l, int64_t t_ms,
                     const char *msg);

/* Copies at most n bytes of peer text into out (size outsz, NUL-terminated),
 * replacing control and non-printable bytes with '?', cutting long text
 * with "...".  Returns out. */
char *sh_log_sanitize(char *out, size_t outsz, const char *s, size_t n);

#endif
