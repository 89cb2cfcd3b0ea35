/* test_so_apps.c - shared-object settings are per application: two [app]
 * sections with different max_so_slots, max_so_per_conn and conflict, one
 * server.  Each application's clients meet their own limits (not the
 * largest of the two) and their own conflict mode. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "so_client.h"

#define T 5000

static const char *const config =
    "[server]\n"
    "so_max_updates_per_sec = 0\n"
    "[app strict]\n"
    "max_so_slots = 3\n"
    "max_so_per_conn = 2\n"
    "[app loose]\n"
    "conflict = lww\n"
    "max_so_slots = 50\n";

/* Status code of the next Status about name, "" when none came. */
static const char *next_status(soc *c, const char *name, char *buf, size_t n)
{
    so_msg *m = soc_wait_event(c, name, SO_EV_STATUS, T);
    const so_event *ev = m ? soc_event(m, SO_EV_STATUS, 0) : NULL;
    snprintf(buf, n, "%s", ev && ev->code ? ev->code : "");
    soc_msg_free(m);
    return buf;
}

static bool use(soc *c, const char *name)
{
    soc_use(c, name, 0, false);
    so_msg *m = soc_wait_event(c, name, SO_EV_USE_SUCCESS, 1000);
    soc_msg_free(m);
    return m != NULL;
}

/* Sets n keys k0.. one message each; returns how many got Success. */
static int set_keys(soc *c, const char *name, int n)
{
    int ok = 0;
    for (int i = 0; i < n; i++) {
        char key[8];
        snprintf(key, sizeof(key), "k%d", i);
        soc_set_num(c, name, soc_version(c, name), false, key, i);
        so_msg *m = soc_wait_event(c, name, SO_EV_SUCCESS, 1000);
        ok += m != NULL;
        soc_msg_free(m);
    }
    return ok;
}

static void test_limits(int port)
{
    char code[128];
    soc *s = soc_connect(port, "strict/one", 0, 0);
    soc *l = soc_connect(port, "loose/one", 0, 0);
    E2E_CHECK(s && l, "a client in each application");
    if (!s || !l)
        return;
    E2E_CHECK(use(s, "a") && use(s, "b"), "strict: 2 objects used");
    soc_use(s, "c", 0, false);
    E2E_CHECK(!strcmp(next_status(s, "c", code, sizeof(code)),
                      "SharedObject.LimitExceeded.ObjectsPerClient"),
              "strict: the 3rd object is refused (%s)", code);
    int used = 0;
    for (int i = 0; i < 5; i++) {
        char name[8];
        snprintf(name, sizeof(name), "o%d", i);
        used += use(l, name);
    }
    E2E_CHECK(used == 5, "loose: 5 objects used (its default is 64) (%d)", used);

    int ok = set_keys(s, "a", 3);
    E2E_CHECK(ok == 3, "strict: 3 slots (%d)", ok);
    soc_set_num(s, "a", soc_version(s, "a"), false, "k3", 3);
    E2E_CHECK(!strcmp(next_status(s, "a", code, sizeof(code)),
                      "SharedObject.LimitExceeded.SlotsPerObject"),
              "strict: the 4th slot is refused (%s)", code);
    ok = set_keys(l, "o0", 10);
    E2E_CHECK(ok == 10, "loose: 10 slots, more than strict's 3 (%d)", ok);
    soc_close(s);
    soc_close(l);
}

/* b writes k with the version from before a's last change. */
static void stale_write(int port, const char *room, double *final, bool *b_success)
{
    soc *a = soc_connect(port, room, 0, 0), *b = soc_connect(port, room, 0, 0);
    *final = NAN;
    *b_success = false;
    if (!a || !b || !use(a, "o") || !use(b, "o")) {
        soc_close(a);
        soc_close(b);
        return;
    }
    soc_set_num(a, "o", soc_version(a, "o"), false, "k", 1);
    soc_msg_free(soc_wait_event(a, "o", SO_EV_SUCCESS, T));
    soc_settle(b, 100, 1000);
    uint32_t seen = soc_version(b, "o");
    soc_set_num(a, "o", soc_version(a, "o"), false, "k", 2);
    soc_msg_free(soc_wait_event(a, "o", SO_EV_SUCCESS, T));
    soc_set_num(b, "o", seen, false, "k", 9);
    so_msg *m = soc_wait_event(b, "o", SO_EV_SUCCESS, 1000);
    *b_success = m != NULL;
    soc_msg_free(m);
    soc_settle(a, 200, 2000);
    *final = soc_get_num(a, "o", "k");
    soc_close(a);
    soc_close(b);
}

static void test_conflict(int port)
{
    double v;
    bool ok;
    stale_write(port, "strict/c", &v, &ok);
    E2E_CHECK(!ok && v == 2, "strict (reject): the stale write is refused, k stays 2 (%g)", v);
    stale_write(port, "loose/c", &v, &ok);
    E2E_CHECK(ok && v == 9, "loose (lww): the stale write wins, k is 9 (%g)", v);
}

int main(void)
{
    e2e_server srv;
    if (e2e_server_start(&srv, config, NULL) != 0)
        return 1;
    test_limits(srv.port);
    test_conflict(srv.port);
    int st = e2e_server_stop(&srv, e2e_failures > 0);
    E2E_CHECK(st == 0, "server exits 0 (%d)", st);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
