/* Unit tests of base/sh_log's line rendering: the text line, the JSON line
 * (members, the leading conn=N taken out, JSON escapes, bytes that are not
 * UTF-8 replaced), lines cut at every buffer size still being one valid
 * line, and random bytes always giving a line that parses as JSON and is
 * UTF-8 with no raw control byte. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sh_log.h"

/* 2026-12-06T05:37:12.436Z */
#define T_MS 1796535432436LL

static char line[SH_LOG_LINE_MAX];

static const char *json(const char *msg, sh_log_level l)
{
    size_t n = sh_log_render(line, sizeof(line), SH_LOG_JSON, l, T_MS, msg);
    cr_assert_eq(n, strlen(line));
    return line;
}

/* The code point at s (advancing *s), -1 when s does not hold a
 * well-formed UTF-8 sequence.  Written apart from sh_log.c's check: it
 * decodes, then rejects overlong forms, surrogates and values past
 * U+10FFFF. */
static long next_cp(const unsigned char **s)
{
    const unsigned char *p = *s;
    long cp;
    int n;
    if (p[0] < 0x80) { cp = p[0]; n = 1; }
    else if ((p[0] & 0xe0) == 0xc0) { cp = p[0] & 0x1f; n = 2; }
    else if ((p[0] & 0xf0) == 0xe0) { cp = p[0] & 0x0f; n = 3; }
    else if ((p[0] & 0xf8) == 0xf0) { cp = p[0] & 0x07; n = 4; }
    else return -1;
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return -1;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    static const long min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *s = p + n;
    return cp;
}

/* line is one line of UTF-8 without control bytes before its '\n', and
 * parses as a JSON object; returns it (caller frees). */
static cJSON *parse_line(const char *l)
{
    size_t n = strlen(l);
    cr_assert(n > 0 && l[n - 1] == '\n', "ends with a newline: %s", l);
    const unsigned char *p = (const unsigned char *)l, *end = p + n - 1;
    while (p < end) {
        long cp = next_cp(&p);
        cr_assert(cp >= 0x20 && cp != 0x7f, "a control byte or not UTF-8 at %zu in %s",
                  (size_t)(p - (const unsigned char *)l), l);
    }
    cJSON *j = cJSON_ParseWithLength(l, n - 1);
    cr_assert_not_null(j, "parses as JSON: %s", l);
    cr_assert(cJSON_IsObject(j));
    return j;
}

static const char *member(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

Test(sh_log, text_line)
{
    size_t n = sh_log_render(line, sizeof(line), SH_LOG_TEXT, SH_LOG_INFO, T_MS,
                             "conn=1 connect app=a");
    cr_assert_str_eq(line, "2026-12-06T05:37:12.436Z INFO  conn=1 connect app=a\n");
    cr_assert_eq(n, strlen(line));
    sh_log_render(line, sizeof(line), SH_LOG_TEXT, SH_LOG_ERROR, 0, "x");
    cr_assert_str_eq(line, "1970-01-01T00:00:00.000Z ERROR x\n");
}

Test(sh_log, json_line)
{
    cr_assert_str_eq(json("conn=17 connect peer=127.0.0.1:5 app=chat", SH_LOG_INFO),
                     "{\"ts\":\"2026-12-06T05:37:12.436Z\",\"level\":\"info\",\"conn\":17,"
                     "\"msg\":\"connect peer=127.0.0.1:5 app=chat\"}\n");
    cr_assert_str_eq(json("listening on 127.0.0.1:1935", SH_LOG_WARN),
                     "{\"ts\":\"2026-12-06T05:37:12.436Z\",\"level\":\"warn\","
                     "\"msg\":\"listening on 127.0.0.1:1935\"}\n");
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    for (int l = SH_LOG_ERROR; l <= SH_LOG_DEBUG; l++) {
        cJSON *j = parse_line(json("m", (sh_log_level)l));
        cr_assert_str_eq(member(j, "level"), levels[l]);
        cJSON_Delete(j);
    }
}

Test(sh_log, json_conn_only_when_well_formed)
{
    /* taken out: digits then a space or the end */
    cJSON *j = parse_line(json("conn=9223372036854775807", SH_LOG_INFO));
    cr_assert_str_eq(member(j, "msg"), "");
    cr_assert_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "conn")), 9223372036854775807.0);
    cJSON_Delete(j);
    /* left in msg: not digits, digits then something else, not at the start,
     * more than 19 digits */
    static const char *const keep[] = {"conn=x1 a", "conn=12ab a", "conn= a", "a conn=1 b",
                                       "conn=123456789012345678901 a", "conn=1\tb"};
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        j = parse_line(json(keep[i], SH_LOG_INFO));
        cr_assert_null(cJSON_GetObjectItem(j, "conn"), "%s", keep[i]);
        cr_assert_str_eq(member(j, "msg"), keep[i]);
        cJSON_Delete(j);
    }
}

Test(sh_log, json_escapes)
{
    static const char *const msgs[] = {
        "a \"quoted\" reason=\"x\\\"y\"", "back\\slash", "new\nline\r\ttab",
        "bell\x07 esc\x1b del\x7f", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf",
        "{\"op\":\"connect\"} user=eve msg=forged level=error",
    };
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        cJSON *j = parse_line(json(msgs[i], SH_LOG_DEBUG));
        cr_assert_str_eq(member(j, "msg"), msgs[i], "round trip of message %zu", i);
        cr_assert_str_eq(member(j, "level"), "debug", "a message cannot add members");
        cr_assert_eq(cJSON_GetArraySize(j), 3);
        cJSON_Delete(j);
    }
    cr_assert(strstr(json("\x01", SH_LOG_INFO), "\"msg\":\"\\u0001\"") != NULL);
}

Test(sh_log, json_not_utf8_becomes_replacement)
{
    static const struct { const char *in, *out; } cases[] = {
        {"a\xff" "b", "a\xef\xbf\xbd" "b"},                  /* never in UTF-8 */
        {"\xc0\x80", "\xef\xbf\xbd\xef\xbf\xbd"},            /* overlong NUL */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* a surrogate */
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
        {"end\xe2\x82", "end\xef\xbf\xbd\xef\xbf\xbd"},      /* cut sequence at the end */
        {"\x80x", "\xef\xbf\xbdx"},                          /* lone continuation byte */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *j = parse_line(json(cases[i].in, SH_LOG_INFO));
        cr_assert_str_eq(member(j, "msg"), cases[i].out, "case %zu", i);
        cJSON_Delete(j);
    }
}

/* Every buffer size from the smallest to the whole line: one line, valid
 * JSON, and its msg a prefix of the whole line's. */
Test(sh_log, json_cut_at_every_size)
{
    char msg[300];
    for (size_t i = 0; i < sizeof(msg) - 1; i++)
        msg[i] = "ab\"\\\n\x01\xc3\xa9"[i % 8];
    msg[sizeof(msg) - 1] = '\0';
    size_t full = sh_log_render(line, sizeof(line), SH_LOG_JSON, SH_LOG_INFO, T_MS, msg);
    cJSON *whole = parse_line(line);
    char *want = strdup(member(whole, "msg"));
    cJSON_Delete(whole);
    size_t cut_seen = 0;
    for (size_t sz = 64; sz <= full + 1; sz++) {
        char *buf = malloc(sz);
        size_t n = sh_log_render(buf, sz, SH_LOG_JSON, SH_LOG_INFO, T_MS, msg);
        cr_assert(n < sz, "fits: %zu < %zu", n, sz);
        cJSON *j = parse_line(buf);
        const char *got = member(j, "msg");
        cr_assert_not_null(got);
        cr_assert_eq(strncmp(want, got, strlen(got)), 0, "size %zu: a prefix", sz);
        if (strlen(got) < strlen(want))
            cut_seen++;
        cJSON_Delete(j);
        free(buf);
    }
    cr_assert_gt(cut_seen, 100);
    free(want);
    /* text lines too end in one newline however small the buffer */
    char small[64];
    sh_log_render(small, sizeof(small), SH_LOG_TEXT, SH_LOG_INFO, T_MS, msg);
    cr_assert_eq(strlen(small), sizeof(small) - 1);
    cr_assert_eq(small[sizeof(small) - 2], '\n');
    /* below the smallest size: an empty string, never an overflow */
    cr_assert_eq(sh_log_render(small, 10, SH_LOG_JSON, SH_LOG_INFO, T_MS, msg), 0);
    cr_assert_str_eq(small, "");
}

/* The longest message sh_log keeps, every byte the worst case for
 * escaping, fits in SH_LOG_LINE_MAX uncut. */
Test(sh_log, json_longest_message_fits)
{
    char msg[SH_LOG_MSG_MAX];
    memset(msg, 0x01, sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    cJSON *j = parse_line(json(msg, SH_LOG_INFO));
    cr_assert_str_eq(member(j, "msg"), msg);
    cJSON_Delete(j);
}

Test(sh_log, json_random_bytes)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    char msg[200];
    for (int round = 0; round < 5000; round++) {
        size_t n = 1 + (size_t)(x % (sizeof(msg) - 1));
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            msg[i] = (char)(1 + x % 255);
        }
        msg[n - 1] = 0;
        cJSON *j = parse_line(json(msg, SH_LOG_INFO));
        cr_assert_not_null(member(j, "msg"));
        cJSON_Delete(j);
    }
}

Test(sh_log, parse_names)
{
    cr_assert_eq(sh_log_format_parse("text"), SH_LOG_TEXT);
    cr_assert_eq(sh_log_format_parse("json"), SH_LOG_JSON);
    cr_assert_eq(sh_log_format_parse("JSON"), -1);
    cr_assert_eq(sh_log_format_parse(""), -1);
    cr_assert_eq(sh_log_level_parse("debug"), SH_LOG_DEBUG);
    cr_assert_eq(sh_log_level_parse("verbose"), -1);
}
