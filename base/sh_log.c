/* sh_log.c - see sh_log.h. */
#include "sh_log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static sh_log_level log_level = SH_LOG_INFO;
static sh_log_format log_format = SH_LOG_TEXT;

void sh_log_set_level(sh_log_level l) { log_level = l; }
sh_log_level sh_log_get_level(void) { return log_level; }
void sh_log_set_format(sh_log_format f) { log_format = f; }
sh_log_format sh_log_get_format(void) { return log_format; }

int sh_log_level_parse(const char *s)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

int sh_log_format_parse(const char *s)
{
    if (strcmp(s, "text") == 0)
        return SH_LOG_TEXT;
    if (strcmp(s, "json") == 0)
        return SH_LOG_JSON;
    return -1;
}

/* Length of the well-formed UTF-8 sequence at s (1..4), 0 when the bytes
 * there are not one (RFC 3629 section 4: no overlong forms, no
 * surrogates, nothing above U+10FFFF).  s is NUL-terminated, so reading
 * stops at the NUL, which is never a continuation byte. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

/* Appends msg to out[*o..] as the inside of a JSON string, leaving
 * `keep` bytes free at the end; stops early (between characters) when
 * the room runs out. */
static void json_escape(char *out, size_t outsz, size_t *o, size_t keep, const char *msg)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)msg;
    while (*p) {
        char esc[8];
        size_t n = 0, used = 1;
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            esc[n++] = '\\';
            esc[n++] = (char)c;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            esc[n++] = '\\';
            esc[n++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        } else if (c < 0x80) {
            esc[n++] = (char)c;
        } else if ((used = utf8_len(p)) > 0) {
            memcpy(esc, p, used);
            n = used;
        } else {
            memcpy(esc, "\xef\xbf\xbd", 3); /* U+FFFD for a byte that is not UTF-8 */
            n = 3;
            used = 1;
        }
        if (*o + n + keep > outsz)
            break;
        memcpy(out + *o, esc, n);
        *o += n;
        p += used;
    }
}

size_t sh_log_render(char *out, size_t outsz, sh_log_format f, sh_log_level l, int64_t t_ms,
                     const char *msg)
{
    static const char *const tags[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    static const char *const names[] = {"error", "warn", "info", "debug"};
    if (outsz < 64) {
        if (outsz)
            out[0] = '\0';
        return 0;
    }
    if ((unsigned)l > SH_LOG_DEBUG)
        l = SH_LOG_ERROR;
    if (t_ms < 0)
        t_ms = 0;
    time_t sec = (time_t)(t_ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char ts[64];
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(t_ms % 1000));
    size_t o;
    if (f != SH_LOG_JSON) {
        int n = snprintf(out, outsz, "%s %-5s %s", ts, tags[l], msg);
        o = n < 0 ? 0 : (size_t)n < outsz - 1 ? (size_t)n : outsz - 2; /* cut: room for '\n' */
        out[o++] = '\n';
        out[o] = '\0';
        return o;
    }
    /* "conn=DIGITS " at the start: our own, written before any peer text */
    unsigned long long conn = 0;
    bool has_conn = false;
    if (strncmp(msg, "conn=", 5) == 0) {
        const char *d = msg + 5;
        size_t nd = strspn(d, "0123456789");
        if (nd > 0 && nd <= 19 && (d[nd] == ' ' || d[nd] == '\0')) {
            for (size_t i = 0; i < nd; i++)
                conn = conn * 10 + (unsigned long long)(d[i] - '0');
            has_conn = true;
            msg = d + nd + (d[nd] == ' ');
        }
    }
    char conn_txt[40] = "";
    if (has_conn)
        snprintf(conn_txt, sizeof(conn_txt), "\"conn\":%llu,", conn);
    int n = snprintf(out, outsz, "{\"ts\":\"%s\",\"level\":\"%s\",%s\"msg\":\"", ts, names[l],
                     conn_txt);
    o = n < 0 ? 0 : (size_t)n;
    if (o + 4 > outsz) {
        out[0] = '\0';
        return 0;
    }
    json_escape(out, outsz, &o, 4, msg); /* keeps room for "}\n and the NUL */
    memcpy(out + o, "\"}\n", 4);
    return o + 3;
}

void sh_log(sh_log_level l, const char *fmt, ...)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t t_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    char msg[SH_LOG_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char line[SH_LOG_LINE_MAX];
    size_t n = sh_log_render(line, sizeof(line), log_format, l, t_ms, msg);
    /* the whole line in one call (stderr is unbuffered: one write) */
    fwrite(line, 1, n, stderr);
}

char *sh_log_sanitize(char *out, size_t outsz, const char *s, size_t n)
{
    size_t o = 0;
    if (outsz == 0)
        return out;
    for (size_t i = 0; i < n && o + 1 < outsz; i++) {
        unsigned char c = (unsigned char)s[i];
        if (o + 4 >= outsz && i + 1 < n) {
            while (o + 4 > outsz - 1 && o > 0)
                o--;
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[o] = '\0';
    return out;
}
