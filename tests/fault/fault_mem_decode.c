/* fault_mem_decode.c - issue 12, part 3: small inputs that made the
 * server's memory explode while decoding.  Each case sends exactly the
 * input of the issue to the real server and reads the server's peak RSS
 * (VmHWM) before and after; the growth must stay under a bound derived
 * from the caps docs/security.md documents (not checked in sanitizer
 * builds, where memory figures mean nothing).
 *
 *   connect   unauthenticated: a connect command whose extra argument is
 *             0x11 + an AMF3 array of one 64 KiB string and 4,000
 *             references to it (06 00): 74 KB on the wire.  Copying each
 *             reference held 263 MB.  Bound: one decoded message may
 *             build 16 x max_message_size (16 MiB), plus the 1 MiB
 *             message itself and 7 MiB of allocator slack: 24 MiB.
 *   slots     a connected client writes 185 slot values, each a strict
 *             array of 65,000 AMF0 nulls (65,005 bytes, under the 64 KiB
 *             value cap): 12 MB uploaded, into 4 temporary objects, one
 *             value per message, each answered before the next.  Held
 *             499 MB.  Bound: the 4 objects may hold max_object_bytes (8
 *             MiB) each, one message decodes within 16 MiB, plus 8 MiB of
 *             buffers and slack: 56 MiB.
 *
 * Also checked: every write is answered; after each attack a fresh client
 * is served; the server stops cleanly.  Prints "# FIGURES" lines with the
 * VmHWM growth of each case.
 *
 * Options: --case connect|slots|all (all), --keep. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault_util.h"
#include "harness.h"
#include "so_client.h"

#define T 10000
#define APP "fault/mem"
#define MIB 1024L /* in KiB */

/* The caps the bounds come from (server defaults, docs/security.md). */
#define DECODE_BUDGET_KIB (16 * MIB)   /* AMF_MEMORY_PER_BYTE x max_message_size */
#define MESSAGE_KIB (1 * MIB)          /* max_message_size */
#define OBJECT_KIB (8 * MIB)           /* SO_DEFAULT_MAX_OBJECT_BYTES */

/* The update-rate cap would refuse some of the 185 writes before they are
 * decoded into the object: off, so every value reaches the engine. */
static const char config[] = "[server]\n"
                             "so_max_updates_per_sec = 0\n";
/* The same with the pre-connect cap as large as a message may be, so the
 * 74 KB connect is decoded and only the AMF memory budget holds it. */
static const char config_big_connect[] = "[server]\n"
                                         "so_max_updates_per_sec = 0\n"
                                         "preconnect_max_message_size = 1m\n";
static const char *cur_config = config;

static bool keep;

/* Starts a server and makes one ordinary client do a round trip, so the
 * baseline includes what any served client costs. */
static bool start(e2e_server *srv)
{
    if (e2e_server_start(srv, cur_config, NULL) != 0) {
        E2E_CHECK(false, "the server starts");
        return false;
    }
    soc *c = soc_connect(srv->port, APP, 0, 0);
    bool ok = c != NULL;
    if (c) {
        soc_use(c, "warm", 0, false);
        so_msg *m = soc_wait_event(c, "warm", SO_EV_USE_SUCCESS, T);
        ok = m != NULL;
        soc_msg_free(m);
        soc_close(c);
    }
    E2E_CHECK(ok, "server up, a client served");
    return ok;
}

/* A fresh client connects, uses an object and gets its write confirmed. */
static bool still_serves(const e2e_server *srv)
{
    soc *c = soc_connect(srv->port, APP, 3, 0);
    if (!c)
        return false;
    soc_use(c, "after", 0, false);
    so_msg *m = soc_wait_event(c, "after", SO_EV_USE_SUCCESS, T);
    bool ok = m != NULL;
    soc_msg_free(m);
    if (ok) {
        soc_set_num(c, "after", soc_version(c, "after"), false, "x", 1);
        m = soc_wait_event(c, "after", SO_EV_SUCCESS, T);
        ok = m != NULL;
        soc_msg_free(m);
    }
    soc_close(c);
    return ok;
}

static void check_bound(const char *what, long base_kb, long peak_kb, long bound_kb)
{
    long grew = peak_kb - base_kb;
    printf("# FIGURES %s: VmHWM %ld KiB before, %ld KiB after: +%ld KiB (bound %ld KiB)\n",
           what, base_kb, peak_kb, grew, bound_kb);
    if (fault_sanitized()) {
        printf("ok %d - %s: peak RSS not checked in a sanitizer build # SKIP\n", ++e2e_checks,
               what);
        return;
    }
    E2E_CHECK(base_kb > 0 && peak_kb > 0 && grew <= bound_kb,
              "%s: the server's peak RSS grew %ld KiB <= %ld KiB", what, grew, bound_kb);
}

/* ---- case connect ---- */

static void put_u29(e2e_amf *a, uint32_t v)
{
    if (v < 0x80) {
        a->buf[a->len++] = (uint8_t)v;
    } else if (v < 0x4000) {
        a->buf[a->len++] = (uint8_t)(v >> 7 | 0x80);
        a->buf[a->len++] = v & 0x7f;
    } else {
        a->buf[a->len++] = (uint8_t)(v >> 14 | 0x80);
        a->buf[a->len++] = (uint8_t)((v >> 7 & 0x7f) | 0x80);
        a->buf[a->len++] = v & 0x7f;
    }
}

/* decoded: preconnect_max_message_size lets the message in and the
 * decoder's budget must hold it; else the pre-connect cap refuses it at
 * its header and the connection is closed. */
static void case_connect(bool decoded)
{
    cur_config = decoded ? config_big_connect : config;
    e2e_server srv;
    if (!start(&srv))
        return;
    long base = fault_proc_kb(srv.pid, "VmHWM");

    static e2e_amf a;
    a.len = 0;
    e2e_amf_str(&a, "connect");
    e2e_amf_num(&a, 1);
    e2e_amf_obj_begin(&a);
    e2e_amf_obj_key(&a, "app");
    e2e_amf_str(&a, APP);
    e2e_amf_obj_key(&a, "tcUrl");
    char url[128];
    snprintf(url, sizeof(url), "rtmp://127.0.0.1:%d/%s", srv.port, APP);
    e2e_amf_str(&a, url);
    e2e_amf_obj_key(&a, "objectEncoding");
    e2e_amf_num(&a, 3);
    e2e_amf_obj_end(&a);
    /* the extra argument: 0x11, AMF3 array [s, 4000 x (06 00)] */
    a.buf[a.len++] = AMF0_AVMPLUS;
    a.buf[a.len++] = AMF3_ARRAY;
    put_u29(&a, 4001u << 1 | 1);
    a.buf[a.len++] = 0x01;
    a.buf[a.len++] = AMF3_STRING;
    put_u29(&a, 65536u << 1 | 1);
    memset(a.buf + a.len, 'x', 65536);
    a.len += 65536;
    for (int i = 0; i < 4000; i++) {
        a.buf[a.len++] = AMF3_STRING;
        a.buf[a.len++] = 0x00;
    }
    printf("# connect body: %zu bytes\n", a.len);

    int fd = e2e_tcp_connect(srv.port);
    bool hs = fd >= 0 && e2e_raw_handshake(fd) == 0;
    /* refused: the server may close while the rest is still being sent */
    bool sent = hs && e2e_raw_send_msg(fd, 3, 20, 0, a.buf, a.len, 128) == 0;
    E2E_CHECK(decoded ? sent : hs, "connect: handshake and the 74 KB connect sent");
    if (decoded) {
        /* The server answers (or closes) only once it decoded the message. */
        uint8_t first;
        bool answered = sent && e2e_recv_exact(fd, &first, 1, T) == 0;
        E2E_CHECK(answered, "connect: the server decoded the message and answered it");
    } else {
        int ms = sent ? e2e_wait_closed(fd, T) : 0;
        E2E_CHECK(hs && ms >= 0 && e2e_log_wait(&srv, "limit: chunk: message", T),
                  "connect: refused at its header by preconnect_max_message_size (%d ms)", ms);
    }
    e2e_sleep_ms(200);
    long peak = fault_proc_kb(srv.pid, "VmHWM");
    if (fd >= 0)
        close(fd);
    check_bound(decoded ? "connect with 4,000 references to a 64 KiB string, decoded"
                        : "connect with 4,000 references to a 64 KiB string, refused",
                base, peak,
                DECODE_BUDGET_KIB + MESSAGE_KIB + 7 * MIB);
    E2E_CHECK(kill(srv.pid, 0) == 0 && still_serves(&srv), "connect: the server still serves");
    int st = e2e_server_stop(&srv, keep || e2e_failures > 0);
    E2E_CHECK(st == 0, "connect: server stops cleanly (status %d)", st);
}

/* ---- case slots ---- */

#define NVALUES 185
#define NOBJ 4
#define NNULLS 65000

static size_t put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return 2;
}

static size_t put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return 4;
}

/* A type-19 body: RequestChange of one key to [65,000 x null]. */
static size_t null_array_body(uint8_t *b, const char *obj, uint32_t version, const char *key)
{
    size_t n = 0;
    n += put_u16(b + n, (uint16_t)strlen(obj));
    memcpy(b + n, obj, strlen(obj));
    n += strlen(obj);
    n += put_u32(b + n, version);
    n += put_u32(b + n, 0);
    n += put_u32(b + n, 0);
    b[n++] = SO_EV_REQUEST_CHANGE;
    size_t len_at = n;
    n += 4;
    n += put_u16(b + n, (uint16_t)strlen(key));
    memcpy(b + n, key, strlen(key));
    n += strlen(key);
    b[n++] = AMF0_STRICT_ARRAY;
    n += put_u32(b + n, NNULLS);
    memset(b + n, AMF0_NULL, NNULLS);
    n += NNULLS;
    put_u32(b + len_at, (uint32_t)(n - len_at - 4));
    return n;
}

/* Waits for the answer to the last write on obj: 1 Success, 0 Status
 * (code copied), -1 nothing. */
static int answer(soc *c, const char *obj, char *code, size_t sz)
{
    int64_t end = e2e_now_ms() + T;
    while (e2e_now_ms() < end) {
        so_msg *m = soc_next(c, (int)(end - e2e_now_ms()));
        if (!m)
            return -1;
        int r = -2;
        for (size_t i = 0; i < m->nevents && strcmp(m->name, obj) == 0; i++) {
            if (m->events[i].type == SO_EV_STATUS) {
                snprintf(code, sz, "%s", m->events[i].code ? m->events[i].code : "?");
                r = 0;
            } else if (m->events[i].type == SO_EV_SUCCESS && r < 0) {
                r = 1;
            }
        }
        soc_msg_free(m);
        if (r >= 0)
            return r;
    }
    return -1;
}

static void case_slots(void)
{
    e2e_server srv;
    if (!start(&srv))
        return;
    soc *c = soc_connect(srv.port, APP, 0, 0);
    int used = 0;
    for (int i = 0; c && i < NOBJ; i++) {
        char name[16];
        snprintf(name, sizeof(name), "big%d", i);
        soc_use(c, name, 0, false);
        so_msg *m = soc_wait_event(c, name, SO_EV_USE_SUCCESS, T);
        used += m != NULL;
        soc_msg_free(m);
    }
    E2E_CHECK(used == NOBJ, "slots: the client uses %d temporary objects", NOBJ);
    soc_discard(c);
    long base = fault_proc_kb(srv.pid, "VmHWM");

    static uint8_t body[NNULLS + 256];
    int answered = 0, accepted = 0, refused = 0;
    size_t uploaded = 0;
    char code[128] = "";
    for (int i = 0; c && i < NVALUES; i++) {
        char name[16], key[16];
        snprintf(name, sizeof(name), "big%d", i % NOBJ);
        snprintf(key, sizeof(key), "v%d", i);
        size_t n = null_array_body(body, name, soc_version(c, name), key);
        if (soc_send_body(c, body, n) != 0)
            break;
        uploaded += n;
        int r = answer(c, name, code, sizeof(code));
        answered += r >= 0;
        accepted += r == 1;
        refused += r == 0;
    }
    long peak = fault_proc_kb(srv.pid, "VmHWM");
    printf("# slots: %zu bytes uploaded in %d values: %d accepted, %d refused (last status "
           "%s)\n", uploaded, NVALUES, accepted, refused, refused ? code : "-");
    E2E_CHECK(answered == NVALUES, "slots: every one of the %d writes answered (%d)", NVALUES,
              answered);
    check_bound("slot values of 65,000 nulls, 12 MB", base, peak,
                NOBJ * OBJECT_KIB + DECODE_BUDGET_KIB + 8 * MIB);
    soc_close(c);
    E2E_CHECK(kill(srv.pid, 0) == 0 && still_serves(&srv), "slots: the server still serves");
    int st = e2e_server_stop(&srv, keep || e2e_failures > 0);
    E2E_CHECK(st == 0, "slots: server stops cleanly (status %d)", st);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    keep = fault_opt_flag(argc, argv, "--keep");
    const char *which = fault_opt_str(argc, argv, "--case", "all");
    if (!strcmp(which, "all") || !strcmp(which, "connect")) {
        case_connect(false);
        case_connect(true);
    }
    if (!strcmp(which, "all") || !strcmp(which, "slots"))
        case_slots();
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
