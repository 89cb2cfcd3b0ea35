/* test_so_basic.c - shared objects through the real server, several clients
 * at once: Use, multi-key change (Success per key to the writer, ONE Change
 * message with both keys to the others, same version), remove, send (the
 * sender included), release, a temporary object vanishing with its last
 * subscriber, Use with a covered old version (diff only), conflict reject,
 * BadPersistence, NoWriteAccess from an [app] write_access list, and an
 * AMF3 client (type 16) sharing an object with AMF0 clients. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "so_client.h"

#define T 3000

static size_t pairs_of(const so_msg *m, uint8_t type)
{
    size_t n = 0;
    for (size_t i = 0; i < m->nevents; i++)
        if (m->events[i].type == type)
            n += m->events[i].nkv;
    return n;
}

static bool msg_has_key(const so_msg *m, uint8_t type, const char *key)
{
    for (size_t i = 0; i < m->nevents; i++)
        if (m->events[i].type == type)
            for (size_t k = 0; k < m->events[i].nkv; k++)
                if (strcmp(m->events[i].kv[k].key, key) == 0)
                    return true;
    return false;
}

/* True when no message about `name` arrives within ms. */
static bool quiet_on(soc *c, const char *name, int ms)
{
    int64_t end = e2e_now_ms() + ms;
    for (;;) {
        int left = (int)(end - e2e_now_ms());
        if (left <= 0)
            return true;
        so_msg *m = soc_next(c, left);
        if (!m)
            return true;
        bool hit = strcmp(m->name, name) == 0;
        soc_msg_free(m);
        if (hit)
            return false;
    }
}

static void test_basics(int port)
{
    soc *a = soc_connect(port, "sotest/room1", 0, 0);
    soc *b = soc_connect(port, "sotest/room1", 0, 0);
    soc *c = soc_connect(port, "sotest/room1", 0, 0);
    E2E_CHECK(a && b && c, "three AMF0 clients connect");
    if (!a || !b || !c)
        goto out;

    /* Use */
    soc_use(a, "shared", 0, false);
    so_msg *m = soc_wait_event(a, "shared", SO_EV_USE_SUCCESS, T);
    E2E_CHECK(m != NULL, "A: Use answered with UseSuccess");
    uint32_t v0 = m ? m->version : 0;
    soc_msg_free(m);
    soc_use(b, "shared", 0, false);
    soc_use(c, "shared", 0, false);
    m = soc_wait_event(b, "shared", SO_EV_USE_SUCCESS, T);
    E2E_CHECK(m && m->version == v0, "B: UseSuccess at the same version (%u)", v0);
    soc_msg_free(m);
    m = soc_wait_event(c, "shared", SO_EV_USE_SUCCESS, T);
    E2E_CHECK(m != NULL, "C: UseSuccess");
    soc_msg_free(m);

    /* A multi-key change is one update. */
    const char *keys[] = {"x", "y"};
    amf_value *vals[] = {amf_number(42), amf_string_cstr("two")};
    soc_set(a, "shared", soc_version(a, "shared"), false, 2, keys, vals);
    amf_unref(vals[0]);
    amf_unref(vals[1]);
    size_t succ = 0;
    uint32_t va = 0;
    int64_t end = e2e_now_ms() + T;
    while (succ < 2 && e2e_now_ms() < end) {
        m = soc_next(a, T);
        if (!m)
            break;
        succ += soc_count_events(m, SO_EV_SUCCESS);
        va = m->version;
        E2E_CHECK(soc_count_events(m, SO_EV_CHANGE) == 0, "A gets no Change for its own write");
        soc_msg_free(m);
    }
    E2E_CHECK(succ == 2, "A: one Success per key (%zu)", succ);
    E2E_CHECK(va == v0 + 1, "one update = one new version (%u -> %u)", v0, va);
    soc *others[] = {b, c};
    for (int i = 0; i < 2; i++) {
        m = soc_wait_event(others[i], "shared", SO_EV_CHANGE, T);
        E2E_CHECK(m && pairs_of(m, SO_EV_CHANGE) == 2 && msg_has_key(m, SO_EV_CHANGE, "x") &&
                      msg_has_key(m, SO_EV_CHANGE, "y"),
                  "%c: one Change message with both keys", 'B' + i);
        E2E_CHECK(m && m->version == va, "%c: same version %u (%u)", 'B' + i, va,
                  m ? m->version : 0);
        soc_msg_free(m);
        E2E_CHECK(soc_get_num(others[i], "shared", "x") == 42, "%c sees x = 42", 'B' + i);
        E2E_CHECK(amf_is_string(soc_get(others[i], "shared", "y"), "two"), "%c sees y = two",
                  'B' + i);
    }
    E2E_CHECK(soc_get_num(a, "shared", "x") == 42, "A's mirror took its own value on Success");

    /* Remove */
    soc_remove(b, "shared", soc_version(b, "shared"), false, "x");
    m = soc_wait_event(b, "shared", SO_EV_SUCCESS, T);
    E2E_CHECK(m != NULL, "B: Success for its remove");
    soc_msg_free(m);
    m = soc_wait_event(a, "shared", SO_EV_REMOVE, T);
    E2E_CHECK(m && m->version == va + 1, "A: Remove event at the next version");
    soc_msg_free(m);
    m = soc_wait_event(c, "shared", SO_EV_REMOVE, T);
    E2E_CHECK(m != NULL, "C: Remove event");
    soc_msg_free(m);
    E2E_CHECK(soc_get(a, "shared", "x") == NULL && soc_get(c, "shared", "x") == NULL,
              "x is gone for A and C");

    /* Send: every subscriber, the sender included. */
    amf_value *arg = amf_string_cstr("hi all");
    soc_send(c, "shared", false, "onHello", 1, &arg);
    amf_unref(arg);
    soc *all[] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        m = soc_wait_event(all[i], "shared", SO_EV_SEND_MESSAGE, T);
        const so_event *ev = m ? soc_event(m, SO_EV_SEND_MESSAGE, 0) : NULL;
        E2E_CHECK(ev && ev->handler && strcmp(ev->handler, "onHello") == 0 && ev->nargs == 1 &&
                      amf_is_string(ev->args[0], "hi all"),
                  "%c: SendMessage onHello('hi all')", 'A' + i);
        soc_msg_free(m);
    }

    /* Release: A hears nothing more. */
    soc_release(a, "shared", false);
    soc_pump(a, 200);
    soc_discard(a);
    soc_set_num(b, "shared", soc_version(b, "shared"), false, "z", 7);
    m = soc_wait_event(c, "shared", SO_EV_CHANGE, T);
    E2E_CHECK(m && msg_has_key(m, SO_EV_CHANGE, "z"), "C still gets changes");
    soc_msg_free(m);
    E2E_CHECK(quiet_on(a, "shared", 300), "A released the object and gets nothing about it");

    /* The temporary object vanishes with its last subscriber. */
    soc_release(b, "shared", false);
    soc_close(c);
    c = NULL;
    soc_pump(b, 100);
    e2e_sleep_ms(300); /* let the server see C's close */
    soc_use(a, "shared", 0, false);
    m = soc_wait_event(a, "shared", SO_EV_USE_SUCCESS, T);
    E2E_CHECK(m && m->version == 1 && pairs_of(m, SO_EV_CHANGE) == 0,
              "after the last subscriber left, a new Use sees version 1 and no slot (v%u)",
              m ? m->version : 0);
    soc_msg_free(m);
out:
    soc_close(a);
    soc_close(b);
    soc_close(c);
}

static void test_diff_and_conflict(int port)
{
    soc *a = soc_connect(port, "sotest/room2", 0, 0);
    soc *b = soc_connect(port, "sotest/room2", 0, 0);
    E2E_CHECK(a && b, "two clients connect (room2)");
    if (!a || !b)
        goto out;
    soc_use(a, "d", 0, false);
    soc_msg_free(soc_wait_event(a, "d", SO_EV_USE_SUCCESS, T));
    char k[16];
    for (int i = 0; i < 5; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        soc_set_num(a, "d", soc_version(a, "d"), false, k, i);
        soc_msg_free(soc_wait_event(a, "d", SO_EV_SUCCESS, T));
    }
    soc_use(b, "d", 0, false);
    so_msg *m = soc_wait_event(b, "d", SO_EV_USE_SUCCESS, T);
    E2E_CHECK(m != NULL, "B uses d");
    soc_msg_free(m);
    soc_settle(b, 100, 1000);
    E2E_CHECK(soc_object(b, "d") && soc_object(b, "d")->nslots == 5, "B got all 5 slots");
    uint32_t vb = soc_version(b, "d");
    soc_close(b);

    /* Two more changes while B is away, then B comes back with its version. */
    soc_set_num(a, "d", soc_version(a, "d"), false, "k1", 100);
    soc_msg_free(soc_wait_event(a, "d", SO_EV_SUCCESS, T));
    soc_set_num(a, "d", soc_version(a, "d"), false, "k3", 300);
    soc_msg_free(soc_wait_event(a, "d", SO_EV_SUCCESS, T));
    b = soc_connect(port, "sotest/room2", 0, 0);
    soc_use(b, "d", vb, false);
    size_t changes = 0, clears = 0;
    bool use_ok = false, only_k1_k3 = true;
    int64_t end = e2e_now_ms() + T;
    while (e2e_now_ms() < end) {
        m = soc_next(b, 300);
        if (!m)
            break;
        use_ok |= soc_count_events(m, SO_EV_USE_SUCCESS) > 0;
        clears += soc_count_events(m, SO_EV_CLEAR);
        for (size_t i = 0; i < m->nevents; i++)
            if (m->events[i].type == SO_EV_CHANGE)
                for (size_t j = 0; j < m->events[i].nkv; j++) {
                    changes++;
                    const char *key = m->events[i].kv[j].key;
                    only_k1_k3 &= strcmp(key, "k1") == 0 || strcmp(key, "k3") == 0;
                }
        soc_msg_free(m);
    }
    E2E_CHECK(use_ok && clears == 0 && changes == 2 && only_k1_k3,
              "Use with covered version %u: only the diff (k1, k3; %zu changes, %zu clears)",
              vb, changes, clears);
    E2E_CHECK(soc_version(b, "d") == soc_version(a, "d"), "B is at A's version (%u)",
              soc_version(a, "d"));

    /* Conflict: both at version v; A writes k0; B's write of k0 based on v
     * is stale and answered with the current value. */
    uint32_t v = soc_version(a, "d");
    soc_set_num(a, "d", v, false, "k0", 1);
    soc_msg_free(soc_wait_event(a, "d", SO_EV_SUCCESS, T));
    soc_msg_free(soc_wait_event(b, "d", SO_EV_CHANGE, T)); /* A's update */
    soc_set_num(b, "d", v, false, "k0", 2);
    m = soc_next(b, T);
    E2E_CHECK(m && soc_count_events(m, SO_EV_SUCCESS) == 0 && msg_has_key(m, SO_EV_CHANGE, "k0"),
              "stale write: no Success, a Change of k0 instead");
    soc_msg_free(m);
    E2E_CHECK(soc_get_num(b, "d", "k0") == 1, "B's copy is the current value 1 (%g)",
              soc_get_num(b, "d", "k0"));
    E2E_CHECK(quiet_on(a, "d", 300), "A hears nothing of the refused write");
    E2E_CHECK(soc_get_num(a, "d", "k0") == 1, "A's value stands");

    /* BadPersistence: d is temporary. */
    soc_use(b, "d", 0, true);
    m = soc_wait_event(b, "d", SO_EV_STATUS, T);
    const so_event *ev = m ? soc_event(m, SO_EV_STATUS, 0) : NULL;
    E2E_CHECK(ev && ev->code && strcmp(ev->code, "SharedObject.BadPersistence") == 0,
              "Use with the other persistence: Status BadPersistence (%s)",
              ev && ev->code ? ev->code : "none");
    soc_msg_free(m);
out:
    soc_close(a);
    soc_close(b);
}

static void test_amf3(int port)
{
    soc *a = soc_connect(port, "sotest/room3", 0, 0);
    soc *d = soc_connect(port, "sotest/room3", 3, 0);
    E2E_CHECK(a && d, "AMF0 and AMF3 clients connect");
    if (!a || !d)
        goto out;
    soc_use(a, "mix", 0, false);
    soc_msg_free(soc_wait_event(a, "mix", SO_EV_USE_SUCCESS, T));
    soc_use(d, "mix", 0, false);
    so_msg *m = soc_wait_event(d, "mix", SO_EV_USE_SUCCESS, T);
    E2E_CHECK(m != NULL, "AMF3 client: UseSuccess");
    soc_msg_free(m);
    E2E_CHECK(soc_rx_count(d, SO_MSG_AMF3) > 0 && soc_rx_count(d, SO_MSG_AMF0) == 0,
              "AMF3 client gets type 16 messages only");

    /* AMF3 client writes an object and a byte array. */
    amf_value *obj = amf_object_new(NULL);
    amf_object_set_cstr(obj, "name", amf_string_cstr("dora"));
    amf_object_set_cstr(obj, "score", amf_number(12.5));
    amf_value *ba = amf_byte_array("\x01\x02\x03", 3);
    const char *keys[] = {"player", "blob"};
    amf_value *vals[] = {obj, ba};
    soc_set(d, "mix", soc_version(d, "mix"), false, 2, keys, vals);
    m = soc_wait_event(a, "mix", SO_EV_CHANGE, T);
    E2E_CHECK(m != NULL, "AMF0 client gets the AMF3 client's change");
    soc_msg_free(m);
    E2E_CHECK(amf_equal(soc_get(a, "mix", "player"), obj), "object value arrives intact");
    E2E_CHECK(amf_equal(soc_get(a, "mix", "blob"), ba), "byte array arrives intact");
    amf_unref(obj);
    amf_unref(ba);
    E2E_CHECK(soc_rx_count(a, SO_MSG_AMF0) > 0 && soc_rx_count(a, SO_MSG_AMF3) == 0,
              "AMF0 client gets type 19 messages only");

    soc_set_str(a, "mix", soc_version(a, "mix"), false, "greeting", "hello from amf0");
    m = soc_wait_event(d, "mix", SO_EV_CHANGE, T);
    E2E_CHECK(m && amf_is_string(soc_get(d, "mix", "greeting"), "hello from amf0"),
              "AMF3 client gets the AMF0 client's change");
    soc_msg_free(m);
    soc_settle(a, 100, 1000);
    soc_settle(d, 100, 1000);
    E2E_CHECK(soc_same_state(a, d, "mix") && soc_version(a, "mix") == soc_version(d, "mix"),
              "both encodings end with the same state and version");
out:
    soc_close(a);
    soc_close(d);
}

static void test_access(void)
{
    e2e_server srv;
    const char *cfg = "[app ro]\nwrite_access = open;scores\n[app sotest]\n";
    if (e2e_server_start(&srv, cfg, NULL) != 0) {
        E2E_CHECK(0, "server with write_access config starts");
        return;
    }
    soc *a = soc_connect(srv.port, "ro/x", 0, 0);
    E2E_CHECK(a != NULL, "client of app ro connects");
    if (a) {
        soc_use(a, "locked", 0, false);
        soc_msg_free(soc_wait_event(a, "locked", SO_EV_USE_SUCCESS, T));
        soc_set_num(a, "locked", soc_version(a, "locked"), false, "k", 1);
        so_msg *m = soc_wait_event(a, "locked", SO_EV_STATUS, T);
        const so_event *ev = m ? soc_event(m, SO_EV_STATUS, 0) : NULL;
        E2E_CHECK(ev && strcmp(ev->code, "SharedObject.NoWriteAccess") == 0 &&
                      strcmp(ev->level, "error") == 0,
                  "write outside write_access: Status NoWriteAccess/error (%s)",
                  ev ? ev->code : "none");
        E2E_CHECK(m && soc_count_events(m, SO_EV_SUCCESS) == 0, "and no Success");
        E2E_CHECK(m && (soc_count_events(m, SO_EV_REMOVE) > 0 ||
                        soc_count_events(m, SO_EV_CHANGE) > 0),
                  "and the current state of the key (Remove: it does not exist)");
        soc_msg_free(m);
        E2E_CHECK(soc_get(a, "locked", "k") == NULL, "the client's copy is restored");

        soc_use(a, "scores/today", 0, false);
        soc_msg_free(soc_wait_event(a, "scores/today", SO_EV_USE_SUCCESS, T));
        soc_set_num(a, "scores/today", soc_version(a, "scores/today"), false, "k", 1);
        m = soc_wait_event(a, "scores/today", SO_EV_SUCCESS, T);
        E2E_CHECK(m != NULL, "write inside write_access (scores/...) succeeds");
        soc_msg_free(m);
        soc_close(a);
    }
    int st = e2e_server_stop(&srv, e2e_failures > 0);
    E2E_CHECK(st == 0, "server (access config) exits 0 (%d)", st);
}

int main(void)
{
    e2e_server srv;
    if (e2e_server_start(&srv, NULL, NULL) != 0)
        return 1;
    test_basics(srv.port);
    test_diff_and_conflict(srv.port);
    test_amf3(srv.port);
    int st = e2e_server_stop(&srv, e2e_failures > 0);
    E2E_CHECK(st == 0, "server exits 0 on SIGTERM (status %d)", st);
    if (e2e_failures)
        e2e_log_dump(&srv);
    test_access();
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
