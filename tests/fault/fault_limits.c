/* fault_limits.c - one client pushes each documented limit; it is refused
 * exactly at the limit (a Status error for shared-object caps, a closed
 * connection for wire and AMF caps, as docs/configuration.md and
 * docs/security.md say), and a real client connected the whole time is
 * not affected: after every case its echo and its shared-object change
 * are answered, and at the end its mirror of the shared object equals a
 * fresh reader's.
 *
 * Cases (config below makes the limits small enough to reach quickly):
 *   objects      max_so_per_conn = 16: 16 Use -> UseSuccess, the 17th ->
 *                SharedObject.LimitExceeded.ObjectsPerClient
 *   slots        max_so_slots = 100: 100 keys -> Success, the 101st ->
 *                SharedObject.LimitExceeded.SlotsPerObject
 *   value bytes  64 KiB per value: at the cap -> Success, one byte over ->
 *                SharedObject.LimitExceeded.ValueBytes
 *   object bytes 4 MiB per object: big values until
 *                SharedObject.LimitExceeded.ObjectBytes
 *   update rate  so_max_updates_per_sec = 100: a burst of 400 -> some
 *                SharedObject.LimitExceeded.UpdateRate, every one answered
 *   AMF depth    max_amf_depth = 32: a value nested 32 deep is accepted,
 *                33 closes the client
 *   AMF elements max_amf_elements = 1000: 1000 members accepted, 1001
 *                closes the client
 *   chunk streams max_chunk_streams = 64: 64 distinct ids answered, the
 *                65th closes the client
 *   chunk size   Set Chunk Size 65536 (max_chunk_size) accepted and used,
 *                65537 and 2^31-1 close the client
 *   message size an announced 16 MiB message closes the client before its
 *                payload is sent
 * TAP lines, exit 0 / 1. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fault_util.h"
#include "harness.h"
#include "so_client.h"
#include "test_chat_client.h"

#define T 5000
#define APP "fault/limits"

static const char config[] = "[server]\n"
                             "max_amf_depth = 32\n"
                             "max_amf_elements = 1000\n"
                             "max_chunk_streams = 64\n"
                             "max_chunk_size = 65536\n"
                             "so_max_updates_per_sec = 100\n"
                             "[app *]\n"
                             "max_so_per_conn = 16\n"
                             "max_so_slots = 100\n";

static e2e_server srv;
static soc *real_so;
static cc *real_call;
static long real_n;

/* The real client: one echo and one change of the shared object. */
static void real_works(const char *after)
{
    cc_answer a;
    amf_value *arg = amf_string_cstr(after);
    bool echo = real_call && cc_call(real_call, "echo", &arg, 1, &a) == 0 && a.ok;
    amf_unref(arg);
    bool change = false;
    if (real_so) {
        soc_set_num(real_so, "shared", soc_version(real_so, "shared"), true, "real",
                    (double)++real_n);
        so_msg *m = soc_wait_event(real_so, "shared", SO_EV_SUCCESS, T);
        change = m != NULL;
        soc_msg_free(m);
    }
    E2E_CHECK(echo && change, "real client unaffected after: %s", after);
}

/* The answer to the last request on obj: 1 Success, 0 Status (code
 * copied), -1 nothing in time. */
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
                break;
            }
            if (m->events[i].type == SO_EV_SUCCESS || m->events[i].type == SO_EV_USE_SUCCESS)
                r = 1;
        }
        soc_msg_free(m);
        if (r >= 0)
            return r;
    }
    return -1;
}

static soc *client_on(const char *obj, bool persistent)
{
    soc *c = soc_connect(srv.port, APP, 0, 0);
    if (!c)
        return NULL;
    if (obj) {
        soc_use(c, obj, 0, persistent);
        soc_msg_free(soc_wait_event(c, obj, SO_EV_USE_SUCCESS, T));
        soc_settle(c, 50, 2000);
    }
    return c;
}

static bool closed_soon(soc *c)
{
    int64_t end = e2e_now_ms() + T;
    while (!soc_closed(c) && e2e_now_ms() < end)
        soc_pump(c, 50);
    return soc_closed(c);
}

static void case_objects(void)
{
    soc *c = client_on(NULL, false);
    int ok = 0;
    char code[128] = "";
    for (int i = 0; c && i < 16; i++) {
        char n[32];
        snprintf(n, sizeof(n), "many%d", i);
        soc_use(c, n, 0, false);
        ok += answer(c, n, code, sizeof(code)) == 1;
    }
    E2E_CHECK(ok == 16, "objects: 16 objects used (max_so_per_conn) (%d)", ok);
    int r = -1;
    if (c) {
        soc_use(c, "many16", 0, false);
        r = answer(c, "many16", code, sizeof(code));
    }
    E2E_CHECK(r == 0 && strcmp(code, "SharedObject.LimitExceeded.ObjectsPerClient") == 0,
              "objects: the 17th gets LimitExceeded.ObjectsPerClient (%d, %s)", r, code);
    soc_close(c);
    real_works("17 objects");
}

static void case_slots(void)
{
    soc *c = client_on("shared", true);
    char code[128] = "";
    /* "shared" holds "real" already: 99 more keys fill it. */
    const char *keys[99];
    amf_value *vals[99];
    char kn[99][16];
    for (int i = 0; i < 99; i++) {
        snprintf(kn[i], sizeof(kn[i]), "s%d", i);
        keys[i] = kn[i];
        vals[i] = amf_number(i);
    }
    int succ = 0;
    if (c) {
        soc_set(c, "shared", soc_version(c, "shared"), true, 99, keys, vals);
        int64_t end = e2e_now_ms() + T;
        while (succ < 99 && e2e_now_ms() < end) {
            so_msg *m = soc_next(c, T);
            if (!m)
                break;
            succ += (int)soc_count_events(m, SO_EV_SUCCESS);
            soc_msg_free(m);
        }
    }
    for (int i = 0; i < 99; i++)
        amf_unref(vals[i]);
    E2E_CHECK(succ == 99, "slots: 100 slots in one object (max_so_slots) (%d + 1)", succ);
    int r = -1;
    if (c) {
        soc_set_num(c, "shared", soc_version(c, "shared"), true, "one-too-many", 1);
        r = answer(c, "shared", code, sizeof(code));
    }
    E2E_CHECK(r == 0 && strcmp(code, "SharedObject.LimitExceeded.SlotsPerObject") == 0,
              "slots: the 101st gets LimitExceeded.SlotsPerObject (%d, %s)", r, code);
    /* Make room again for the later cases. */
    for (int i = 0; c && i < 99; i++) {
        soc_remove(c, "shared", soc_version(c, "shared"), true, kn[i]);
        answer(c, "shared", code, sizeof(code));
        e2e_sleep_ms(15);   /* under so_max_updates_per_sec */
    }
    soc_close(c);
    real_works("101 slots");
}

/* A string value whose AMF0 encoding takes `wire` bytes (3-byte header). */
static amf_value *string_of_wire(size_t wire)
{
    size_t n = wire - 3;
    char *s = malloc(n + 1);
    memset(s, 'v', n);
    s[n] = '\0';
    amf_value *v = amf_string_cstr(s);
    free(s);
    return v;
}

/* {"a": string of n bytes}: 1 (marker) + 3 (key) + 3 + n (string) + 3 (end)
 * = n + 10 wire bytes in AMF0. */
static amf_value *object_of_wire(size_t wire)
{
    amf_value *o = amf_object_new(NULL);
    amf_object_set_cstr(o, "a", string_of_wire(wire - 7));
    return o;
}

static void case_value_bytes(void)
{
    soc *c = client_on("big", true);
    char code[128] = "";
    int r_at = -1, r_over = -1;
    const char *k = "v";
    if (c) {
        amf_value *v = object_of_wire(65536);   /* exactly the cap */
        soc_set(c, "big", soc_version(c, "big"), true, 1, &k, &v);
        amf_unref(v);
        r_at = answer(c, "big", code, sizeof(code));
    }
    E2E_CHECK(r_at == 1, "value bytes: a value of exactly 65536 wire bytes is accepted (%d %s)",
              r_at, r_at == 0 ? code : "");
    if (c) {
        amf_value *v = object_of_wire(65537);
        soc_set(c, "big", soc_version(c, "big"), true, 1, &k, &v);
        amf_unref(v);
        r_over = answer(c, "big", code, sizeof(code));
    }
    E2E_CHECK(r_over == 0 && strcmp(code, "SharedObject.LimitExceeded.ValueBytes") == 0,
              "value bytes: 65537 wire bytes get LimitExceeded.ValueBytes (%d, %s)", r_over,
              code);
    soc_close(c);
    real_works("a value over 64 KiB");
}

static void case_object_bytes(void)
{
    soc *c = client_on("heavy", false);
    char code[128] = "";
    int acc = 0, refused = 0, none = 0;
    for (int i = 0; c && i < 90 && !refused; i++) {
        char k[16];
        snprintf(k, sizeof(k), "h%d", i);
        const char *kp = k;
        amf_value *v = string_of_wire(60000);
        soc_set(c, "heavy", soc_version(c, "heavy"), false, 1, &kp, &v);
        amf_unref(v);
        int r = answer(c, "heavy", code, sizeof(code));
        acc += r == 1;
        refused += r == 0;
        none += r < 0;
        if (acc % 8 == 7)
            e2e_sleep_ms(100);   /* stay under the update rate */
    }
    E2E_CHECK(refused == 1 && strcmp(code, "SharedObject.LimitExceeded.ObjectBytes") == 0 &&
                  acc * 60000 <= 4 * 1048576 && (acc + 1) * 60000 > 4 * 1048576 - 200000,
              "object bytes: %d values of 60000 bytes accepted, then "
              "LimitExceeded.ObjectBytes (%s)", acc, code);
    soc_close(c);
    real_works("an object over 4 MiB");
}

static void case_rate(void)
{
    soc *c = client_on("rate", false);
    int succ = 0, limited = 0, other = 0;
    if (c) {
        for (int i = 0; i < 400; i++)
            soc_set_num(c, "rate", soc_version(c, "rate"), false, "x", i);
        int64_t end = e2e_now_ms() + T;
        while (succ + limited + other < 400 && e2e_now_ms() < end) {
            so_msg *m = soc_next(c, 500);
            if (!m)
                continue;
            for (size_t i = 0; i < m->nevents; i++) {
                const so_event *ev = &m->events[i];
                if (ev->type == SO_EV_SUCCESS)
                    succ++;
                else if (ev->type == SO_EV_STATUS &&
                         strcmp(ev->code, "SharedObject.LimitExceeded.UpdateRate") == 0)
                    limited++;
                else if (ev->type == SO_EV_STATUS)
                    other++;
            }
            soc_msg_free(m);
        }
    }
    E2E_CHECK(succ + limited == 400 && limited > 0 && succ >= 100 && other == 0,
              "rate: a burst of 400 changes: %d applied, %d LimitExceeded.UpdateRate, every one "
              "answered", succ, limited);
    real_works("a burst over so_max_updates_per_sec");
    soc_close(c);
}

static amf_value *nested(int depth)
{
    amf_value *v = amf_object_new(NULL);
    for (int i = 1; i < depth; i++) {
        amf_value *o = amf_object_new(NULL);
        amf_object_set_cstr(o, "in", v);
        v = o;
    }
    return v;
}

static void case_depth(void)
{
    soc *c = client_on("shared", true);
    char code[128] = "";
    int r = -1;
    const char *k = "deep";
    if (c) {
        amf_value *v = nested(32);
        soc_set(c, "shared", soc_version(c, "shared"), true, 1, &k, &v);
        amf_unref(v);
        r = answer(c, "shared", code, sizeof(code));
    }
    E2E_CHECK(r == 1, "AMF depth: a value nested 32 deep (max_amf_depth) is accepted (%d %s)",
              r, r == 0 ? code : "");
    bool closed = false;
    if (c) {
        amf_value *v = nested(33);
        soc_set(c, "shared", soc_version(c, "shared"), true, 1, &k, &v);
        amf_unref(v);
        closed = closed_soon(c);
    }
    E2E_CHECK(closed, "AMF depth: 33 deep closes the client");
    soc_close(c);
    real_works("an AMF value nested 33 deep");
}

static void case_elements(void)
{
    soc *c = client_on("shared", true);
    char code[128] = "";
    const char *k = "wide";
    int r = -1;
    if (c) {
        amf_value *v = amf_object_new(NULL);
        for (int i = 0; i < 1000; i++) {
            char m[16];
            snprintf(m, sizeof(m), "m%d", i);
            amf_object_set_cstr(v, m, amf_number(i));
        }
        soc_set(c, "shared", soc_version(c, "shared"), true, 1, &k, &v);
        r = answer(c, "shared", code, sizeof(code));
        amf_object_set_cstr(v, "m1000", amf_number(1000));
        soc_set(c, "shared", soc_version(c, "shared"), true, 1, &k, &v);
        amf_unref(v);
    }
    E2E_CHECK(r == 1, "AMF elements: an object of 1000 members (max_amf_elements) is accepted "
              "(%d %s)", r, r == 0 ? code : "");
    E2E_CHECK(c && closed_soon(c), "AMF elements: 1001 members close the client");
    soc_close(c);
    real_works("an AMF object of 1001 members");
}

/* ---- raw wire cases ---- */

/* One message in chunks of chunk_size on any chunk stream id (1-, 2- or
 * 3-byte basic header). */
static int raw_msg(int fd, uint32_t csid, uint8_t type, const uint8_t *body, size_t len,
                   uint32_t chunk_size)
{
    uint8_t basic[3];
    size_t nb;
    if (csid < 64) {
        basic[0] = (uint8_t)csid;
        nb = 1;
    } else if (csid < 320) {
        basic[0] = 0;
        basic[1] = (uint8_t)(csid - 64);
        nb = 2;
    } else {
        basic[0] = 1;
        basic[1] = (uint8_t)((csid - 64) & 0xff);
        basic[2] = (uint8_t)((csid - 64) >> 8);
        nb = 3;
    }
    uint8_t hdr[14];
    memcpy(hdr, basic, nb);
    uint8_t *h = hdr + nb;
    h[0] = h[1] = h[2] = 0;
    h[3] = (uint8_t)(len >> 16);
    h[4] = (uint8_t)(len >> 8);
    h[5] = (uint8_t)len;
    h[6] = type;
    h[7] = h[8] = h[9] = h[10] = 0;
    if (e2e_send_all(fd, hdr, nb + 11) != 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        size_t n = len - off < chunk_size ? len - off : chunk_size;
        if (off > 0) {
            uint8_t b3[3];
            memcpy(b3, basic, nb);
            b3[0] |= 0xC0;
            if (e2e_send_all(fd, b3, nb) != 0)
                return -1;
        }
        if (e2e_send_all(fd, body + off, n) != 0)
            return -1;
        off += n;
    }
    return 0;
}

static int raw_open(void)
{
    int fd = e2e_tcp_connect(srv.port);
    if (fd < 0 || e2e_raw_handshake(fd) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    static e2e_amf a;
    a.len = 0;
    e2e_amf_str(&a, "connect");
    e2e_amf_num(&a, 1);
    e2e_amf_obj_begin(&a);
    e2e_amf_obj_key(&a, "app");
    e2e_amf_str(&a, "fault");
    e2e_amf_obj_key(&a, "tcUrl");
    e2e_amf_str(&a, "rtmp://127.0.0.1/fault");
    e2e_amf_obj_end(&a);
    raw_msg(fd, 3, 20, a.buf, a.len, 128);
    return fd;
}

/* Reads for ms and counts "_result" answers in the byte stream (answers
 * are small: never split by the server's 4096-byte chunks in practice).
 * *closed is set when the server closed. */
static int count_results(int fd, int ms, bool *closed)
{
    static uint8_t buf[1 << 20];
    size_t len = 0;
    int64_t end = e2e_now_ms() + ms;
    *closed = false;
    while (e2e_now_ms() < end && len < sizeof(buf)) {
        struct timeval tv = {0, 50000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        ssize_t n = recv(fd, buf + len, sizeof(buf) - len, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            *closed = true;
            break;
        }
        if (n > 0)
            len += (size_t)n;
    }
    int count = 0;
    for (size_t i = 0; i + 7 <= len; i++)
        count += memcmp(buf + i, "_result", 7) == 0;
    return count;
}

static void send_echo(int fd, uint32_t csid, double txid, size_t pad, uint32_t chunk)
{
    static e2e_amf a;
    a.len = 0;
    e2e_amf_str(&a, "echo");
    e2e_amf_num(&a, txid);
    e2e_amf_null(&a);
    if (pad) {
        char *s = malloc(pad + 1);
        memset(s, 'p', pad);
        s[pad] = '\0';
        e2e_amf_str(&a, s);   /* AMF0 short strings: pad < 65536 */
        free(s);
    } else {
        e2e_amf_num(&a, txid);
    }
    raw_msg(fd, csid, 20, a.buf, a.len, chunk);
}

static void case_chunk_streams(void)
{
    int fd = raw_open();
    bool closed = false;
    int got = 0;
    if (fd >= 0) {
        /* csid 3 carried connect; 63 more distinct ids: 64 in use. */
        for (uint32_t i = 0; i < 63; i++)
            send_echo(fd, 4 + i * 5, 10 + i, 0, 128);
        got = count_results(fd, 1000, &closed);
    }
    E2E_CHECK(fd >= 0 && !closed && got == 64, "chunk streams: 64 distinct ids "
              "(max_chunk_streams) all answered (%d results incl. connect)", got);
    if (fd >= 0) {
        send_echo(fd, 400, 99, 0, 128);
        count_results(fd, 3000, &closed);
        close(fd);
    }
    E2E_CHECK(closed, "chunk streams: the 65th id closes the client");
    E2E_CHECK(e2e_log_wait(&srv, "too many chunk streams", 3000),
              "chunk streams: the log names the limit");
    real_works("65 chunk streams");
}

static void set_chunk_size(int fd, uint32_t size)
{
    uint8_t b[4] = {(uint8_t)(size >> 24), (uint8_t)(size >> 16), (uint8_t)(size >> 8),
                    (uint8_t)size};
    raw_msg(fd, 2, 1, b, 4, 128);
}

static void case_chunk_size(void)
{
    int fd = raw_open();
    bool closed = true;
    int got = 0;
    if (fd >= 0) {
        set_chunk_size(fd, 65536);
        send_echo(fd, 3, 7, 60000, 65536);   /* one chunk of ~60 KB */
        got = count_results(fd, 1500, &closed);
        close(fd);
    }
    E2E_CHECK(!closed && got == 2, "chunk size: 65536 (max_chunk_size) accepted, a 60 KB "
              "message in one chunk answered (%d)", got);
    uint32_t bad[] = {65537, 0x7fffffffu};
    for (size_t i = 0; i < 2; i++) {
        fd = raw_open();
        closed = false;
        if (fd >= 0) {
            count_results(fd, 200, &closed);
            set_chunk_size(fd, bad[i]);
            send_echo(fd, 3, 8, 0, 128);
            count_results(fd, 3000, &closed);
            close(fd);
        }
        E2E_CHECK(closed, "chunk size: Set Chunk Size %u closes the client", bad[i]);
    }
    real_works("Set Chunk Size 2^31-1");
}

static void case_message_size(void)
{
    int fd = raw_open();
    bool closed = false;
    if (fd >= 0) {
        count_results(fd, 200, &closed);
        /* Announce 16 MiB - 1, send only the first chunk. */
        uint8_t hdr[12] = {3, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0};
        uint8_t body[128];
        memset(body, 0, sizeof(body));
        e2e_send_all(fd, hdr, sizeof(hdr));
        e2e_send_all(fd, body, sizeof(body));
        count_results(fd, 3000, &closed);
        close(fd);
    }
    E2E_CHECK(closed, "message size: a 16 MiB message announced closes the client at once");
    real_works("a 16 MiB message announced");
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    if (e2e_server_start(&srv, config, NULL) != 0)
        return 1;
    real_so = client_on("shared", true);
    char code[128], desc[256];
    real_call = cc_connect(srv.port, APP, "real", NULL, NULL, code, desc, sizeof(code));
    E2E_CHECK(real_so && real_call, "real client connects");
    real_works("start");
    case_objects();
    case_slots();
    case_value_bytes();
    case_object_bytes();
    case_rate();
    case_depth();
    case_elements();
    case_chunk_streams();
    case_chunk_size();
    case_message_size();
    /* The real client's view of the attacked object equals a fresh one. */
    soc_settle(real_so, 200, 3000);
    soc *fresh = client_on("shared", true);
    E2E_CHECK(fresh && soc_same_state(real_so, fresh, "shared") &&
                  soc_get_num(fresh, "shared", "real") == (double)real_n,
              "real client's mirror of the attacked object equals a fresh reader's");
    soc_close(fresh);
    soc_close(real_so);
    cc_close(real_call);
    int st = e2e_server_stop(&srv, e2e_failures > 0);
    E2E_CHECK(st == 0, "server stops cleanly (status %d)", st);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
