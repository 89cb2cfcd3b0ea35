/* test_chat_presence.c - the `presence` shared object: a slot per online
 * user ({since, connections}) appears on connect, counts connections,
 * vanishes on the last disconnect; one object per instance; clients may
 * read it but not write it; applications without presence = true have
 * none. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "so_client.h"
#include "test_chat_client.h"

static const char *const config =
    "[app chat]\n"
    "presence = true\n"
    "[app quiet]\n";

static int port;

static cc *conn(const char *path, const char *user)
{
    char code[128], desc[256];
    cc *c = cc_connect(port, path, user, NULL, NULL, code, desc, sizeof code);
    if (!c)
        printf("# connect %s as %s failed: %s %s\n", path, user, code, desc);
    return c;
}

/* Waits until the watcher's mirror of presence/key has `connections` == n
 * (n == 0: the slot is gone). */
static bool wait_slot(soc *w, const char *key, double n, int timeout_ms)
{
    int64_t end = e2e_now_ms() + timeout_ms;
    for (;;) {
        amf_value *v = soc_get(w, "presence", key);
        double got = v ? amf_as_number(amf_object_get(v, "connections")) : 0;
        if ((n == 0 && !v) || (n > 0 && got == n))
            return true;
        if (e2e_now_ms() >= end)
            return false;
        soc_pump(w, 50);
    }
}

static soc *watch(const char *path)
{
    soc *w = soc_connect(port, path, 0, 0);
    if (!w)
        return NULL;
    soc_use(w, "presence", 0, false);
    so_msg *m = soc_wait_event(w, "presence", SO_EV_USE_SUCCESS, 3000);
    if (!m) {
        soc_close(w);
        return NULL;
    }
    soc_msg_free(m);
    soc_settle(w, 100, 1000);
    return w;
}

int main(void)
{
    e2e_server srv;
    if (e2e_server_start(&srv, config, NULL) != 0)
        return 1;
    port = srv.port;

    soc *w = watch("chat?user=watcher");
    E2E_CHECK(w != NULL, "watcher (user watcher) uses `presence` in chat/_definst_");
    if (!w) {
        e2e_server_stop(&srv, true);
        return 1;
    }
    amf_value *self = soc_get(w, "presence", "watcher");
    E2E_CHECK(self && amf_as_number(amf_object_get(self, "connections")) == 1,
              "the watcher's own slot is there");

    double before = (double)time(NULL) * 1000;
    cc *a1 = conn("chat", "alice");
    E2E_CHECK(a1 && wait_slot(w, "alice", 1, 3000), "alice online: {connections 1}");
    amf_value *v = soc_get(w, "presence", "alice");
    double since = v ? amf_as_number(amf_object_get(v, "since")) : NAN;
    E2E_CHECK(since >= before - 2000 && since <= before + 5000, "since is the connect time (ms)");

    cc *a2 = conn("chat", "alice");
    E2E_CHECK(a2 && wait_slot(w, "alice", 2, 3000), "second connection: {connections 2}");
    v = soc_get(w, "presence", "alice");
    E2E_CHECK(v && amf_as_number(amf_object_get(v, "since")) == since, "since unchanged");

    cc *other = conn("chat/room2", "bob");
    cc *q = conn("quiet", "carol");
    soc_settle(w, 200, 1000);
    E2E_CHECK(!soc_get(w, "presence", "bob"), "bob in another instance is not listed here");
    E2E_CHECK(!soc_get(w, "presence", "carol"), "carol of another application is not listed");
    soc *w2 = watch("chat/room2");
    /* wait: in cluster mode w2's node may learn of bob (on another node)
     * through Redis after the Use was answered */
    E2E_CHECK(w2 && wait_slot(w2, "bob", 1, 3000) && !soc_get(w2, "presence", "alice"),
              "room2 has its own presence with bob only");
    soc *wq = watch("quiet");
    E2E_CHECK(wq && soc_object(wq, "presence") && soc_object(wq, "presence")->nslots == 0,
              "no presence slots in an application without presence = true");

    /* Clients cannot write it. */
    uint32_t ver = soc_version(w, "presence");
    soc_set_str(w, "presence", ver, false, "alice", "forged");
    so_msg *st = soc_wait_event(w, "presence", SO_EV_STATUS, 3000);
    E2E_CHECK(st != NULL, "a client write gets a Status");
    soc_msg_free(st);
    soc_settle(w, 100, 1000);
    v = soc_get(w, "presence", "alice");
    E2E_CHECK(v && amf_type_of(v) == AMF_OBJECT, "alice's slot restored, not 'forged'");

    cc_close(a1);
    E2E_CHECK(wait_slot(w, "alice", 1, 3000), "one connection closed: {connections 1}");
    cc_close(a2);
    E2E_CHECK(wait_slot(w, "alice", 0, 3000), "last connection closed: slot removed");
    cc_close(other);
    E2E_CHECK(w2 && wait_slot(w2, "bob", 0, 3000), "bob left room2");
    cc_close(q);
    soc_close(w);
    soc_close(w2);
    soc_close(wq);
    int rc = e2e_server_stop(&srv, e2e_failures > 0);
    E2E_CHECK(rc == 0, "server exited cleanly (%d)", rc);
    if (e2e_failures)
        printf("# %d of %d checks failed\n", e2e_failures, e2e_checks);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
