/* bench_ws.c - see bench_ws.h. */
#include "bench_ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sh_err.h"

/* ---------------------------------------------------------------- handshake */

void bench_ws_make_key(const uint8_t random16[16], char key24[25])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < 16; i += 3) {
        uint32_t v = (uint32_t)random16[i] << 16;
        if (i + 1 < 16)
            v |= (uint32_t)random16[i + 1] << 8;
        if (i + 2 < 16)
            v |= random16[i + 2];
        key24[o++] = b64[(v >> 18) & 63];
        key24[o++] = b64[(v >> 12) & 63];
        key24[o++] = i + 1 < 16 ? b64[(v >> 6) & 63] : '=';
        key24[o++] = i + 2 < 16 ? b64[v & 63] : '=';
    }
    key24[24] = 0;
}

#define DEFLATE_OFFER "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

int bench_ws_request(sh_buf *out, const char *host, int port, const char *path,
                     const char *key24, bool offer_deflate)
{
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: " BENCH_WS_SUBPROTOCOL
                     "\r\n%s\r\n",
                     path, host, port, key24,
                     offer_deflate ? "Sec-WebSocket-Extensions: " DEFLATE_OFFER "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof req)
        return SH_ELIMIT;
    return sh_buf_append(out, req, (size_t)n);
}

static void say(char *why, size_t whysz, const char *what, const char *p, size_t n)
{
    if (!why || whysz == 0)
        return;
    size_t k = strlen(what);
    if (k >= whysz)
        k = whysz - 1;
    memcpy(why, what, k);
    for (size_t i = 0; i < n && k + 1 < whysz; i++)
        why[k++] = (p[i] >= 0x20 && p[i] <= 0x7e) ? p[i] : '?';
    why[k] = 0;
}

/* The value of header name in head[0..n) (lines after the status line),
 * trimmed, copied into val; false when absent. */
static bool header(const char *head, size_t n, const char *name, char *val, size_t valsz)
{
    size_t nl = strlen(name);
    const char *p = memchr(head, '\n', n);
    const char *end = head + n;
    while (p && p + 1 < end) {
        p++;
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon && (size_t)(colon - p) == nl && strncasecmp(p, name, nl) == 0) {
            const char *v = colon + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            size_t k = (size_t)(ve - v);
            if (k >= valsz)
                k = valsz - 1;
            memcpy(val, v, k);
            val[k] = 0;
            return true;
        }
        p = eol < end ? eol : NULL;
    }
    return false;
}

int bench_ws_response(const uint8_t *bytes, size_t n, const char *key24, bool offered_deflate,
                      bool *deflate, char *why, size_t whysz)
{
    const char *p = (const char *)bytes;
    *deflate = false;
    const char *eoh = p && n >= 4 ? memmem(p, n, "\r\n\r\n", 4) : NULL;
    if (!eoh) {
        if (n >= BENCH_WS_MAX_RESPONSE) {
            say(why, whysz, "upgrade answer too long", NULL, 0);
            return SH_EPROTO;
        }
        return 0;
    }
    size_t hl = (size_t)(eoh - p) + 4;
    const char *eol = memchr(p, '\r', hl);
    size_t sl = (size_t)(eol - p);
    if (sl < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0 || (sl > 12 && p[12] != ' ')) {
        say(why, whysz, "upgrade refused: ", p, sl < 80 ? sl : 80);
        return SH_EPROTO;
    }
    char v[256], accept[64];
    if (!header(p, hl, "Upgrade", v, sizeof v) || !ws_has_token(v, "websocket") ||
        !header(p, hl, "Connection", v, sizeof v) || !ws_has_token(v, "upgrade")) {
        say(why, whysz, "101 without Upgrade: websocket / Connection: upgrade", NULL, 0);
        return SH_EPROTO;
    }
    ws_accept_key(key24, accept);
    if (!header(p, hl, "Sec-WebSocket-Accept", v, sizeof v) || strcmp(v, accept) != 0) {
        say(why, whysz, "wrong Sec-WebSocket-Accept", NULL, 0);
        return SH_EPROTO;
    }
    if (!header(p, hl, "Sec-WebSocket-Protocol", v, sizeof v) ||
        strcmp(v, BENCH_WS_SUBPROTOCOL) != 0) {
        say(why, whysz, "the server did not agree to the subprotocol " BENCH_WS_SUBPROTOCOL,
            NULL, 0);
        return SH_EPROTO;
    }
    if (header(p, hl, "Sec-WebSocket-Extensions", v, sizeof v) && v[0]) {
        /* only what was offered, and compressed messages must be
         * independent of each other (the reader inflates each alone) */
        if (!offered_deflate || strncasecmp(v, "permessage-deflate", 18) != 0 ||
            strchr(v, ',') || !strstr(v, "server_no_context_takeover")) {
            say(why, whysz, "unexpected extensions: ", v, strlen(v) < 80 ? strlen(v) : 80);
            return SH_EPROTO;
        }
        *deflate = true;
    }
    return (int)hl;
}

/* ---------------------------------------------------------------- client frames */

int bench_ws_put_frame(sh_buf *out, uint8_t opcode, const uint8_t *payload, size_t n,
                       const uint8_t mask[4])
{
    uint8_t h[14];
    size_t hl = ws_frame_header(h, opcode, false, n);
    h[1] |= 0x80; /* MASK */
    memcpy(h + hl, mask, 4);
    hl += 4;
    if (sh_buf_reserve(out, hl + n) != 0)
        return SH_ENOMEM;
    uint8_t *d = out->data + out->len;
    memcpy(d, h, hl);
    d += hl;
    for (size_t i = 0; i < n; i++)
        d[i] = payload[i] ^ mask[i & 3];
    sh_buf_advance(out, hl + n);
    return 0;
}

/* ---------------------------------------------------------------- server frames */

void bench_ws_rd_init(bench_ws_rd *r, size_t max_msg, ws_zip *zip)
{
    memset(r, 0, sizeof *r);
    r->max_msg = max_msg;
    r->zip = zip;
    sh_buf_init(&r->part, max_msg + 14);
    sh_buf_init(&r->msg, max_msg);
    sh_buf_init(&r->plain, max_msg);
}

void bench_ws_rd_cleanup(bench_ws_rd *r)
{
    sh_buf_cleanup(&r->part);
    sh_buf_cleanup(&r->msg);
    sh_buf_cleanup(&r->plain);
}

enum { HDR_MORE = 0, HDR_OK = 1, HDR_BAD = -1 };

/* The header at p[0..n): its length and the payload's, or HDR_MORE. */
static int frame_header(const uint8_t *p, size_t n, size_t max, size_t *hl, uint64_t *pl)
{
    if (n < 2)
        return HDR_MORE;
    uint8_t l7 = p[1] & 0x7f;
    size_t h = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
    if (n < h)
        return HDR_MORE;
    uint64_t len = l7;
    if (l7 == 126) {
        len = (uint64_t)p[2] << 8 | p[3];
    } else if (l7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
    }
    *hl = h;
    *pl = len;
    return len > max ? HDR_BAD : HDR_OK;
}

static int deliver(bench_ws_rd *r, uint8_t op, bool rsv1, const uint8_t *p, size_t n,
                   bench_ws_msg_fn fn, void *ud, const char **why)
{
    if (rsv1) {
        sh_buf_reset(&r->plain);
        int rc = ws_zip_inflate(r->zip, p, n, &r->plain);
        if (rc) {
            *why = rc == SH_ELIMIT ? "inflated message too long" : "compressed data does not inflate";
            return SH_EPROTO;
        }
        p = r->plain.data;
        n = r->plain.len;
    }
    return fn(ud, op, p, n) ? 0 : 1;
}

/* One whole frame: header at f, hl bytes, then pl payload bytes. */
static int frame(bench_ws_rd *r, const uint8_t *f, size_t hl, size_t pl, bench_ws_msg_fn fn,
                 void *ud, const char **why)
{
    bool fin = (f[0] & 0x80) != 0, rsv1 = (f[0] & 0x40) != 0;
    uint8_t op = f[0] & 0x0f;
    const uint8_t *p = f + hl;
    if (f[1] & 0x80) {
        *why = "masked frame from the server";
        return SH_EPROTO;
    }
    if (f[0] & 0x30) {
        *why = "reserved bits RSV2/RSV3 set";
        return SH_EPROTO;
    }
    switch (op) {
    case WS_OP_PING:
    case WS_OP_PONG:
    case WS_OP_CLOSE:
        if (!fin || pl > 125 || rsv1) {
            *why = "bad control frame";
            return SH_EPROTO;
        }
        return fn(ud, op, p, pl) ? 0 : 1;
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        if (r->msg_op) {
            *why = "data frame inside a fragmented message";
            return SH_EPROTO;
        }
        if (rsv1 && !r->zip) {
            *why = "compressed frame without permessage-deflate";
            return SH_EPROTO;
        }
        if (fin)
            return deliver(r, op, rsv1, p, pl, fn, ud, why);
        r->msg_op = op;
        r->msg_rsv1 = rsv1;
        sh_buf_reset(&r->msg);
        if (sh_buf_append(&r->msg, p, pl)) {
            *why = "message too long";
            return SH_EPROTO;
        }
        return 0;
    case WS_OP_CONT:
        if (!r->msg_op || rsv1) {
            *why = "unexpected continuation frame";
            return SH_EPROTO;
        }
        if (sh_buf_append(&r->msg, p, pl)) {
            *why = "message too long";
            return SH_EPROTO;
        }
        if (fin) {
            uint8_t mop = r->msg_op;
            r->msg_op = 0;
            return deliver(r, mop, r->msg_rsv1, r->msg.data, r->msg.len, fn, ud, why);
        }
        return 0;
    default:
        *why = "unknown opcode";
        return SH_EPROTO;
    }
}

int bench_ws_rd_feed(bench_ws_rd *r, const uint8_t *p, size_t n, bench_ws_msg_fn fn, void *ud,
                     const char **why)
{
    static const char *none;
    size_t hl;
    uint64_t pl;
    if (!why)
        why = &none;
    /* First complete a frame carried over from the last read, taking
     * only the bytes it still needs. */
    while (r->part.len > 0) {
        int h = frame_header(r->part.data, r->part.len, r->max_msg, &hl, &pl);
        if (h == HDR_BAD) {
            *why = "frame too long";
            return SH_EPROTO;
        }
        size_t need = h == HDR_MORE ? (r->part.len < 2 ? 2 : 2 + ((r->part.data[1] & 0x7f) == 126 ? 2 : 8))
                                    : hl + (size_t)pl;
        if (r->part.len >= need && h == HDR_OK) {
            int rc = frame(r, r->part.data, hl, (size_t)pl, fn, ud, why);
            sh_buf_reset(&r->part);
            if (rc)
                return rc;
            break;
        }
        if (n == 0)
            return 0;
        size_t take = need - r->part.len < n ? need - r->part.len : n;
        if (sh_buf_append(&r->part, p, take)) {
            *why = "out of memory";
            return SH_ENOMEM;
        }
        p += take;
        n -= take;
    }
    /* Then whole frames in place. */
    while (n > 0) {
        int h = frame_header(p, n, r->max_msg, &hl, &pl);
        if (h == HDR_BAD) {
            *why = "frame too long";
            return SH_EPROTO;
        }
        if (h == HDR_MORE || n - hl < pl) {
            if (sh_buf_append(&r->part, p, n)) {
                *why = "out of memory";
                return SH_ENOMEM;
            }
            return 0;
        }
        int rc = frame(r, p, hl, (size_t)pl, fn, ud, why);
        if (rc)
            return rc;
        p += hl + pl;
        n -= hl + (size_t)pl;
    }
    return 0;
}

/* ---------------------------------------------------------------- sohub.v1 JSON */

typedef struct jp {
    const char *p, *end;
} jp;

#define J_MAX_DEPTH 64

static inline void j_ws(jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static inline bool j_eat(jp *j, char ch)
{
    j_ws(j);
    if (j->p < j->end && *j->p == ch) {
        j->p++;
        return true;
    }
    return false;
}

/* A string: *s, *n the raw bytes between the quotes. */
static bool j_string(jp *j, const char **s, size_t *n)
{
    j_ws(j);
    if (j->p >= j->end || *j->p != '"')
        return false;
    const char *b = ++j->p;
    while (j->p < j->end) {
        char ch = *j->p;
        if (ch == '"') {
            *s = b;
            *n = (size_t)(j->p - b);
            j->p++;
            return true;
        }
        if (ch == '\\') {
            j->p += 2;
            continue;
        }
        if ((unsigned char)ch < 0x20)
            return false;
        j->p++;
    }
    return false;
}

static inline bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* A number (JSON grammar); plain integers of up to 15 digits are read
 * directly, others with strtod. */
static bool j_number(jp *j, double *v)
{
    j_ws(j);
    const char *b = j->p, *q = j->p;
    bool neg = false, plain = true;
    if (q < j->end && *q == '-') {
        neg = true;
        q++;
    }
    if (q >= j->end || !is_digit(*q))
        return false;
    const char *digits = q;
    if (*q == '0')
        q++;
    else
        while (q < j->end && is_digit(*q))
            q++;
    size_t nd = (size_t)(q - digits);
    if (q < j->end && *q == '.') {
        plain = false;
        q++;
        if (q >= j->end || !is_digit(*q))
            return false;
        while (q < j->end && is_digit(*q))
            q++;
    }
    if (q < j->end && (*q == 'e' || *q == 'E')) {
        plain = false;
        q++;
        if (q < j->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= j->end || !is_digit(*q))
            return false;
        while (q < j->end && is_digit(*q))
            q++;
    }
    j->p = q;
    if (plain && nd <= 15) {
        uint64_t u = 0;
        for (size_t i = 0; i < nd; i++)
            u = u * 10 + (uint64_t)(digits[i] - '0');
        *v = neg ? -(double)u : (double)u;
        return true;
    }
    char tmp[64];
    size_t len = (size_t)(q - b);
    if (len >= sizeof tmp)
        return false;
    memcpy(tmp, b, len);
    tmp[len] = 0;
    *v = strtod(tmp, NULL);
    return true;
}

static bool j_lit(jp *j, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
        return false;
    j->p += n;
    return true;
}

/* Skips one value of any kind. */
static bool j_skip(jp *j, int depth)
{
    if (depth > J_MAX_DEPTH)
        return false;
    j_ws(j);
    if (j->p >= j->end)
        return false;
    const char *s;
    size_t n;
    double d;
    switch (*j->p) {
    case '"':
        return j_string(j, &s, &n);
    case '{':
        j->p++;
        if (j_eat(j, '}'))
            return true;
        do {
            if (!j_string(j, &s, &n) || !j_eat(j, ':') || !j_skip(j, depth + 1))
                return false;
        } while (j_eat(j, ','));
        return j_eat(j, '}');
    case '[':
        j->p++;
        if (j_eat(j, ']'))
            return true;
        do {
            if (!j_skip(j, depth + 1))
                return false;
        } while (j_eat(j, ','));
        return j_eat(j, ']');
    case 't':
        return j_lit(j, "true");
    case 'f':
        return j_lit(j, "false");
    case 'n':
        return j_lit(j, "null");
    default:
        return j_number(j, &d);
    }
}

static bool str_is(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static uint8_t event_type(const char *s, size_t n)
{
    static const struct {
        const char *name;
        uint8_t type;
    } types[] = {
        {"change", BENCH_SO_CHANGE}, {"success", BENCH_SO_SUCCESS},
        {"use_success", BENCH_SO_USE_SUCCESS}, {"clear", BENCH_SO_CLEAR},
        {"status", BENCH_SO_STATUS}, {"remove", BENCH_SO_REMOVE},
        {"send", BENCH_SO_SEND_MESSAGE}, {"use", BENCH_SO_USE},
        {"release", BENCH_SO_RELEASE},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (str_is(s, n, types[i].name))
            return types[i].type;
    return 0;
}

/* [[K,V],...]: one visit per slot. */
static bool walk_slots(jp *j, uint32_t version, bench_so_visit_fn visit, void *ud)
{
    if (!j_eat(j, '['))
        return false;
    if (j_eat(j, ']'))
        return true;
    do {
        bench_so_event ev;
        memset(&ev, 0, sizeof ev);
        ev.type = BENCH_SO_CHANGE;
        if (!j_eat(j, '['))
            return false;
        j_ws(j);
        if (j->p < j->end && *j->p == '"') {
            if (!j_string(j, &ev.key, &ev.key_len))
                return false;
        } else if (!j_skip(j, 1)) { /* a tagged key: not one the benchmark wrote */
            return false;
        }
        if (!j_eat(j, ','))
            return false;
        j_ws(j);
        if (j->p < j->end && (*j->p == '-' || is_digit(*j->p))) {
            if (!j_number(j, &ev.number))
                return false;
            ev.has_number = true;
        } else if (!j_skip(j, 1)) {
            return false;
        }
        if (!j_eat(j, ']'))
            return false;
        visit(ud, version, &ev);
    } while (j_eat(j, ','));
    return j_eat(j, ']');
}

/* [{"t":...},...]: one visit per event (per slot for a change). */
static bool walk_events(jp *j, uint32_t version, bench_so_visit_fn visit, void *ud)
{
    if (!j_eat(j, '['))
        return false;
    if (j_eat(j, ']'))
        return true;
    do {
        bench_so_event ev;
        memset(&ev, 0, sizeof ev);
        bool have_t = false;
        const char *slots = NULL; /* "slots" seen before "t" */
        if (!j_eat(j, '{'))
            return false;
        if (!j_eat(j, '}')) {
            do {
                const char *k, *s;
                size_t kn, sn;
                if (!j_string(j, &k, &kn) || !j_eat(j, ':'))
                    return false;
                if (str_is(k, kn, "t")) {
                    if (!j_string(j, &s, &sn))
                        return false;
                    ev.type = event_type(s, sn);
                    have_t = true;
                } else if (str_is(k, kn, "slots")) {
                    if (have_t && ev.type == BENCH_SO_CHANGE) {
                        if (!walk_slots(j, version, visit, ud))
                            return false;
                        ev.type = 0xff; /* visited */
                    } else {
                        j_ws(j);
                        slots = j->p;
                        if (!j_skip(j, 1))
                            return false;
                    }
                } else if (str_is(k, kn, "key") || str_is(k, kn, "code")) {
                    j_ws(j);
                    if (j->p < j->end && *j->p == '"') {
                        if (!j_string(j, &ev.key, &ev.key_len))
                            return false;
                    } else if (!j_skip(j, 1)) {
                        return false;
                    }
                } else if (!j_skip(j, 1)) {
                    return false;
                }
            } while (j_eat(j, ','));
            if (!j_eat(j, '}'))
                return false;
        }
        if (ev.type == BENCH_SO_CHANGE) {
            if (slots) {
                jp sj = {slots, j->end};
                if (!walk_slots(&sj, version, visit, ud))
                    return false;
            }
        } else if (ev.type != 0xff) {
            visit(ud, version, &ev);
        }
    } while (j_eat(j, ','));
    return j_eat(j, ']');
}

static uint32_t u32_of(double v)
{
    return v >= 0 && v <= 4294967295.0 ? (uint32_t)v : 0;
}

/* Matches the literal lit at j->p and moves past it. */
static bool j_expect(jp *j, const char *lit, size_t n)
{
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
        return false;
    j->p += n;
    return true;
}
#define J_EXPECT(j, lit) j_expect((j), (lit), sizeof(lit) - 1)

/* A string without escapes up to the next quote (the quote is eaten). */
static bool j_plain_string(jp *j, const char **s, size_t *n)
{
    const char *q = memchr(j->p, '"', (size_t)(j->end - j->p));
    if (!q || memchr(j->p, '\\', (size_t)(q - j->p)))
        return false;
    *s = j->p;
    *n = (size_t)(q - j->p);
    j->p = q + 1;
    return true;
}

/* The two messages of a fan-out run, in the member order both sohub and
 * the ws-broadcast peer write them (JSON.stringify keeps insertion order):
 *   {"op":"so","name":N,"version":V,"persistent":B,"events":[{"t":"change","slots":[[K,NUMBER]]}]}
 *   {"op":"so","name":N,"version":V,"persistent":B,"events":[{"t":"success","key":K}]}
 * matched as literals, the way the RTMP path reads chat messages in place.
 * Returns false, having visited nothing, for anything else (the general
 * walk below then takes it). */
static bool so_fast(const char *text, size_t n, const char **name, size_t *name_len,
                    bench_so_visit_fn visit, void *ud)
{
    jp j = {text, text + n};
    const char *nm;
    size_t nl;
    double version;
    bench_so_event ev;
    memset(&ev, 0, sizeof ev);
    if (!J_EXPECT(&j, "{\"op\":\"so\",\"name\":\"") || !j_plain_string(&j, &nm, &nl) ||
        !J_EXPECT(&j, ",\"version\":") || !j_number(&j, &version) ||
        !J_EXPECT(&j, ",\"persistent\":") || !(J_EXPECT(&j, "false") || J_EXPECT(&j, "true")) ||
        !J_EXPECT(&j, ",\"events\":[{\"t\":\""))
        return false;
    if (J_EXPECT(&j, "change\",\"slots\":[[\"")) {
        ev.type = BENCH_SO_CHANGE;
        if (!j_plain_string(&j, &ev.key, &ev.key_len) || !J_EXPECT(&j, ",") ||
            !j_number(&j, &ev.number) || !J_EXPECT(&j, "]]}]}"))
            return false;
        ev.has_number = true;
    } else if (J_EXPECT(&j, "success\",\"key\":\"")) {
        ev.type = BENCH_SO_SUCCESS;
        if (!j_plain_string(&j, &ev.key, &ev.key_len) || !J_EXPECT(&j, "}]}"))
            return false;
    } else {
        return false;
    }
    if (j.p != j.end)
        return false;
    *name = nm;
    *name_len = nl;
    visit(ud, u32_of(version), &ev);
    return true;
}

int bench_ws_so_decode(const char *text, size_t n, const char **name, size_t *name_len,
                       bench_so_visit_fn visit, void *ud)
{
    if (so_fast(text, n, name, name_len, visit, ud))
        return 0;
    jp j = {text, text + n};
    int op = -1; /* unknown, 0 not so, 1 so */
    bool have_version = false;
    double version = 0;
    const char *events = NULL; /* seen before op / version: walked at the end */
    bool walked = false;
    *name = "";
    *name_len = 0;
    if (!j_eat(&j, '{'))
        return SH_EPROTO;
    if (!j_eat(&j, '}')) {
        do {
            const char *k, *s;
            size_t kn, sn;
            if (!j_string(&j, &k, &kn) || !j_eat(&j, ':'))
                return SH_EPROTO;
            if (str_is(k, kn, "op")) {
                if (!j_string(&j, &s, &sn))
                    return SH_EPROTO;
                op = str_is(s, sn, "so");
            } else if (str_is(k, kn, "name")) {
                j_ws(&j);
                if (j.p < j.end && *j.p == '"') {
                    if (!j_string(&j, name, name_len))
                        return SH_EPROTO;
                } else if (!j_skip(&j, 1)) {
                    return SH_EPROTO;
                }
            } else if (str_is(k, kn, "version")) {
                if (!j_number(&j, &version))
                    return SH_EPROTO;
                have_version = true;
            } else if (str_is(k, kn, "events")) {
                j_ws(&j);
                if (op == 1 && have_version && !walked) {
                    if (!walk_events(&j, u32_of(version), visit, ud))
                        return SH_EPROTO;
                    walked = true;
                } else {
                    events = j.p;
                    if (!j_skip(&j, 1))
                        return SH_EPROTO;
                }
            } else if (!j_skip(&j, 1)) {
                return SH_EPROTO;
            }
        } while (j_eat(&j, ','));
        if (!j_eat(&j, '}'))
            return SH_EPROTO;
    }
    j_ws(&j);
    if (j.p != j.end)
        return SH_EPROTO;
    if (op != 1)
        return 1;
    if (events && !walked) {
        jp ej = {events, text + n};
        if (!walk_events(&ej, u32_of(version), visit, ud))
            return SH_EPROTO;
    }
    return 0;
}
