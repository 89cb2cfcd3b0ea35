/* test_so_amf3_raw.c - type-16 shared-object messages whose values are raw
 * AMF3 (no 0x11 marker), as Red5 writes them, sent by real clients to the
 * real server (so_wire.h: the two value forms).  Such messages used to
 * close the connection.
 *
 * An AMF3 client (sohub's client library, objectEncoding 3) sends, on one
 * temporary object:
 *   1. leading byte 0, RequestChange of five raw AMF3 values (an integer,
 *      a string, a typed object, a reference to the string, an array);
 *   2. leading byte 3, RequestChange of one raw AMF3 integer;
 *   3. leading byte 0, SendMessage with an AMF0 handler and raw AMF3
 *      arguments.
 * librtmp (rtmpdump's library) sends a fourth: type 16, leading byte 0,
 * a raw AMF3 string.  Checked: each write is confirmed (Success per key),
 * an AMF0 subscriber receives every value equal to what was sent, and the
 * SendMessage with its arguments; no connection is closed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "so_client.h"
#include "so_lrtmp.h"

#define T 5000
#define APP "sotest/raw"
#define OBJ "raw"

typedef struct body {
    uint8_t b[4096];
    size_t n, mark;
} body;

static void put(body *w, const void *p, size_t n)
{
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void put_u16(body *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 2);
}

static void put_u32(body *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 4);
}

static void header(body *w, uint8_t lead, uint32_t version)
{
    w->n = 0;
    put(w, &lead, 1);
    put_u16(w, (uint16_t)strlen(OBJ));
    put(w, OBJ, strlen(OBJ));
    put_u32(w, version);
    put_u32(w, 0);
    put_u32(w, 0);
}

static void event_begin(body *w, uint8_t type)
{
    put(w, &type, 1);
    w->mark = w->n;
    put_u32(w, 0);
}

static void event_end(body *w)
{
    uint32_t len = (uint32_t)(w->n - w->mark - 4);
    uint8_t b[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
    memcpy(w->b + w->mark, b, 4);
}

static void key(body *w, const char *k)
{
    put_u16(w, (uint16_t)strlen(k));
    put(w, k, strlen(k));
}

static amf_value *amf3(const uint8_t *p, size_t n)
{
    amf_value *v = NULL;
    size_t used = 0;
    if (amf_decode1(AMF_ENC_AMF3, p, n, NULL, &used, &v, NULL) != 0 || used != n) {
        amf_unref(v);
        return NULL;
    }
    return v;
}

static const uint8_t v_int[] = {0x04, 0x05};
static const uint8_t v_str[] = {0x06, 0x0B, 'h', 'e', 'l', 'l', 'o'};
static const uint8_t v_typed[] = {0x0A, 0x23, 0x05, 'p', 't', 0x03, 'x', 0x03, 'y',
                                  0x04, 0x01, 0x06, 0x03, 'a'};
static const uint8_t v_ref[] = {0x06, 0x00}; /* "hello" again */
static const uint8_t v_arr[] = {0x09, 0x05, 0x01, 0x03, 0x01}; /* [true, null] */
static const uint8_t v_300[] = {0x04, 0x82, 0x2C};
static const uint8_t v_lr[] = {0x06, 0x0F, 'l', 'i', 'b', 'r', 't', 'm', 'p'};

/* The subscriber's mirror of key equals the AMF3 value p. */
static bool mirror_is(soc *c, const char *k, const uint8_t *p, size_t n)
{
    amf_value *want = amf3(p, n);
    amf_value *got = soc_get(c, OBJ, k);
    bool ok = want && got && amf_equal(want, got);
    amf_unref(want);
    return ok;
}

/* Waits until the writer's answer to its last write: the number of
 * Success events in it (-1: none in time, or a Status). */
static int successes(soc *c)
{
    so_msg *m = soc_wait_event(c, OBJ, SO_EV_SUCCESS, T);
    int n = m && soc_count_events(m, SO_EV_STATUS) == 0 ? (int)soc_count_events(m, SO_EV_SUCCESS)
                                                        : -1;
    soc_msg_free(m);
    return n;
}

int main(void)
{
    e2e_server srv;
    if (e2e_server_start(&srv, NULL, NULL) != 0)
        return 1;
    soc *w = soc_connect(srv.port, APP, 3, 0);
    soc *r = soc_connect(srv.port, APP, 0, 0);
    E2E_CHECK(w && r, "an AMF3 writer and an AMF0 subscriber connect");
    if (!w || !r)
        goto out;
    soc_use(w, OBJ, 0, false);
    soc_use(r, OBJ, 0, false);
    so_msg *m = soc_wait_event(w, OBJ, SO_EV_USE_SUCCESS, T);
    so_msg *m2 = soc_wait_event(r, OBJ, SO_EV_USE_SUCCESS, T);
    E2E_CHECK(m && m2, "both use the object");
    soc_msg_free(m);
    soc_msg_free(m2);

    /* 1. leading 0, five raw AMF3 values */
    static body b;
    header(&b, 0, soc_version(w, OBJ));
    event_begin(&b, 3 /* RequestChange */);
    key(&b, "i");
    put(&b, v_int, sizeof(v_int));
    key(&b, "s");
    put(&b, v_str, sizeof(v_str));
    key(&b, "t");
    put(&b, v_typed, sizeof(v_typed));
    key(&b, "r");
    put(&b, v_ref, sizeof(v_ref));
    key(&b, "a");
    put(&b, v_arr, sizeof(v_arr));
    event_end(&b);
    E2E_CHECK(soc_send_body(w, b.b, b.n) == 0, "raw AMF3 change sent (leading byte 0)");
    int ok = successes(w);
    E2E_CHECK(ok == 5, "five raw AMF3 values confirmed (%d Success)", ok);
    m = soc_wait_event(r, OBJ, SO_EV_CHANGE, T);
    soc_msg_free(m);
    E2E_CHECK(mirror_is(r, "i", v_int, sizeof(v_int)) && mirror_is(r, "s", v_str, sizeof(v_str)) &&
                  mirror_is(r, "t", v_typed, sizeof(v_typed)) &&
                  mirror_is(r, "r", v_str, sizeof(v_str)) &&
                  mirror_is(r, "a", v_arr, sizeof(v_arr)),
              "the AMF0 subscriber got the five values (integer, string, typed object, the "
              "referenced string, array)");

    /* 2. leading 3 */
    header(&b, 3, soc_version(w, OBJ));
    event_begin(&b, 3);
    key(&b, "n");
    put(&b, v_300, sizeof(v_300));
    event_end(&b);
    E2E_CHECK(soc_send_body(w, b.b, b.n) == 0, "raw AMF3 change sent (leading byte 3)");
    ok = successes(w);
    E2E_CHECK(ok == 1, "confirmed (%d Success)", ok);
    m = soc_wait_event(r, OBJ, SO_EV_CHANGE, T);
    soc_msg_free(m);
    E2E_CHECK(mirror_is(r, "n", v_300, sizeof(v_300)) && soc_get_num(r, OBJ, "n") == 300,
              "the subscriber got 300");

    /* 3. SendMessage: AMF0 handler, raw AMF3 arguments (Red5's form) */
    header(&b, 0, soc_version(w, OBJ));
    event_begin(&b, 6 /* SendMessage */);
    uint8_t handler[] = {0x02, 0x00, 0x05, 'o', 'n', 'R', 'a', 'w'};
    put(&b, handler, sizeof(handler));
    put(&b, v_str, sizeof(v_str));
    put(&b, v_int, sizeof(v_int));
    event_end(&b);
    E2E_CHECK(soc_send_body(w, b.b, b.n) == 0, "raw AMF3 SendMessage sent");
    m = soc_wait_event(r, OBJ, SO_EV_SEND_MESSAGE, T);
    const so_event *ev = m ? soc_event(m, SO_EV_SEND_MESSAGE, 0) : NULL;
    E2E_CHECK(ev && strcmp(ev->handler, "onRaw") == 0 && ev->nargs == 2 &&
                  amf_is_string(ev->args[0], "hello") && amf_as_number(ev->args[1]) == 5,
              "the subscriber got onRaw(\"hello\", 5)");
    soc_msg_free(m);

    /* 4. librtmp sends a type-16 message with a raw AMF3 string */
    so_lr *lr = so_lr_connect(srv.port, APP "/stream");
    E2E_CHECK(lr != NULL, "librtmp connects");
    if (lr) {
        body u;
        header(&u, 0, 0);
        event_begin(&u, 1 /* Use */);
        event_end(&u);
        event_begin(&u, 3);
        key(&u, "lr");
        put(&u, v_lr, sizeof(v_lr));
        event_end(&u);
        E2E_CHECK(so_lr_send(lr, 0x10, u.b, u.n) == 0, "librtmp: Use + raw AMF3 change sent");
        m = soc_wait_event(r, OBJ, SO_EV_CHANGE, T);
        soc_msg_free(m);
        E2E_CHECK(mirror_is(r, "lr", v_lr, sizeof(v_lr)), "the subscriber got librtmp's value");
        so_lr_close(lr);
    }
    E2E_CHECK(!soc_closed(w) && !soc_closed(r), "no connection was closed");
out:
    soc_close(w);
    soc_close(r);
    int st = e2e_server_stop(&srv, e2e_failures > 0);
    E2E_CHECK(st == 0, "server stops cleanly (status %d)", st);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
