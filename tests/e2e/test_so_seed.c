/* test_so_seed.c - every sohub-server process hashes under its own random
 * seed (app/main.c, base/sh_map.h), so keys a client chooses land in
 * different places in two processes.  Visible from outside: a client that
 * Uses an object gets its slots in the order of the engine's slot table.
 * Two clients of one server see the same order; a second server, given the
 * same 40 slots, gives another one.  (With 40 slots in a 64-slot table the
 * chance that two seeds give the same order is negligible.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "so_client.h"

#define T 3000
#define NSLOTS 40

/* The order in which a fresh client receives the slots of seed/obj;
 * order[i] is the number of the i-th key.  false when something failed. */
static bool fresh_order(int port, int order[NSLOTS])
{
    soc *r = soc_connect(port, "seedtest/room", 0, 0);
    if (!r)
        return false;
    soc_use(r, "obj", 0, false);
    so_msg *m = soc_wait_event(r, "obj", SO_EV_USE_SUCCESS, T);
    soc_msg_free(m);
    soc_settle(r, 200, T);
    soc_obj *o = soc_object(r, "obj");
    bool ok = o && o->nslots == NSLOTS;
    for (size_t i = 0; ok && i < NSLOTS; i++)
        ok = sscanf(o->slots[i].key, "key%d", &order[i]) == 1;
    soc_close(r);
    return ok;
}

/* Starts a server, writes the slots, reads their order twice. */
static bool server_order(int order[NSLOTS])
{
    e2e_server srv;
    if (e2e_server_start(&srv, NULL, NULL) != 0)
        return false;
    bool ok = false;
    soc *w = soc_connect(srv.port, "seedtest/room", 0, 0);
    E2E_CHECK(w != NULL, "writer connects");
    if (w) {
        soc_use(w, "obj", 0, false);
        soc_msg_free(soc_wait_event(w, "obj", SO_EV_USE_SUCCESS, T));
        char names[NSLOTS][16];
        const char *keys[NSLOTS];
        amf_value *vals[NSLOTS];
        for (int i = 0; i < NSLOTS; i++) {
            snprintf(names[i], sizeof(names[i]), "key%d", i);
            keys[i] = names[i];
            vals[i] = amf_number(i);
        }
        soc_set(w, "obj", soc_version(w, "obj"), false, NSLOTS, keys, vals);
        for (int i = 0; i < NSLOTS; i++)
            amf_unref(vals[i]);
        soc_settle(w, 200, T);
        int again[NSLOTS];
        ok = fresh_order(srv.port, order);
        E2E_CHECK(ok, "a reader gets the %d slots", NSLOTS);
        E2E_CHECK(ok && fresh_order(srv.port, again) &&
                      memcmp(order, again, sizeof(again)) == 0,
                  "a second reader of the same server gets them in the same order");
        soc_close(w);
    }
    int st = e2e_server_stop(&srv, e2e_failures > 0);
    E2E_CHECK(st == 0, "server exits 0 (%d)", st);
    return ok;
}

int main(void)
{
    int a[NSLOTS], b[NSLOTS];
    bool ok = server_order(a) && server_order(b);
    E2E_CHECK(ok, "both servers answered");
    int same = 0;
    for (int i = 0; ok && i < NSLOTS; i++)
        same += a[i] == b[i];
    E2E_CHECK(ok && same < NSLOTS, "two server processes order the slots differently "
              "(%d of %d places agree)", same, NSLOTS);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
