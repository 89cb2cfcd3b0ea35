/* test_chat_durable.c - queued private messages survive kill -9 and a
 * clean restart of sohub-server on the same data directory; ids keep
 * growing (the per-recipient counter is stored), and acknowledged
 * messages stay acknowledged.  Last, the server-wide cap chat_max_stored
 * counts what the store holds at start: past it sends are refused with
 * Chat.StoreFull until a recipient acknowledges. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"
#include "test_chat_client.h"

static const char *const config = "[app chat]\nchat_rate = 1000\n";

/* Starts a server on the data directory of `first` (its temp dir stays). */
static int restart_on(e2e_server *s, const e2e_server *first)
{
    const char *extra[] = {"--data-dir", first->data_dir, NULL};
    return e2e_server_start(s, config, extra);
}

static void kill9(e2e_server *s)
{
    e2e_server_kill(s, SIGKILL);
    int st = e2e_server_wait(s, 5000);
    E2E_CHECK(st == 128 + SIGKILL, "server killed with SIGKILL (%d)", st);
}

static cc *conn(int port, const char *user)
{
    char code[128], desc[256];
    cc *c = cc_connect(port, "chat", user, NULL, NULL, code, desc, sizeof code);
    if (!c)
        printf("# connect as %s failed: %s %s\n", user, code, desc);
    return c;
}

/* Ids: 1, 2, 3 ... per recipient on one node; over a cluster Redis' clock
 * in microseconds, increasing (docs/cluster-chat.md). */
static bool next_id(double prev, double id)
{
    return e2e_cluster_nodes() ? id > prev : id == prev + 1;
}

int main(void)
{
    e2e_server a, b, c;
    double ids[4] = {0};
    if (e2e_server_start(&a, config, NULL) != 0)
        return 1;
    cc *alice = conn(a.port, "alice");
    E2E_CHECK(alice != NULL, "alice connected to the first server");
    int queued = 0;
    double last = 0;
    for (int i = 0; i < 3 && alice; i++) {
        char t[32];
        snprintf(t, sizeof t, "durable %d", i);
        cc_answer r;
        if (cc_send(alice, "bob", t, NULL, &r) == 0 && r.ok && !strcmp(r.status, "queued") &&
            next_id(last, r.id)) {
            queued++;
            last = ids[i] = r.id;
        }
    }
    E2E_CHECK(queued == 3, "3 messages queued for offline bob, ids increasing (1..3 on one "
              "node)");
    /* Make sure nothing is left to chance: the "queued" answers promised a
     * commit, so kill at once. */
    kill9(&a);
    cc_close(alice);

    if (restart_on(&b, &a) != 0) {
        e2e_server_stop(&a, false);
        return 1;
    }
    cc *bob = conn(b.port, "bob");
    E2E_CHECK(bob && cc_wait_privates(bob, 3, 5000), "after kill -9: bob gets 3 messages");
    if (bob) {
        cc_pump(bob, 200);
        E2E_CHECK(cc_private_count(bob) == 3, "exactly 3 (%zu)", cc_private_count(bob));
        int in_order = 0;
        for (size_t i = 0; i < cc_private_count(bob); i++) {
            const cc_private *p = cc_private_at(bob, i);
            char t[32];
            snprintf(t, sizeof t, "durable %zu", i);
            in_order += i < 3 && p->id == ids[i] && !strcmp(p->text, t) &&
                        !strcmp(p->from, "alice") && !strcmp(p->to, "bob") && p->ts > 0;
        }
        E2E_CHECK(in_order == 3, "same ids, texts, sender and order");
        cc_answer k;
        E2E_CHECK(cc_ack(bob, ids[1], &k) == 0 && k.ok && k.acked == ids[1],
                  "bob acks up to the second");
    }
    cc_close(bob);
    alice = conn(b.port, "alice");
    cc_answer r;
    /* bob has just left: in a cluster his node tells Redis in its own time */
    E2E_CHECK(cc_wait_offline(&b, "chat", "bob", 5000), "bob is offline");
    E2E_CHECK(alice && cc_send(alice, "bob", "after restart", NULL, &r) == 0 && r.ok &&
                  next_id(ids[2], r.id) && !strcmp(r.status, "queued"),
              "the id counter survived: the next id (4 on one node: %g)", r.id);
    ids[3] = r.id;
    cc_close(alice);
    int st = e2e_server_stop(&b, false);
    E2E_CHECK(st == 0, "second server stopped cleanly (%d)", st);

    if (restart_on(&c, &a) != 0) {
        e2e_server_stop(&a, false);
        return 1;
    }
    bob = conn(c.port, "bob");
    E2E_CHECK(bob && cc_wait_privates(bob, 2, 5000), "after a clean restart: 2 messages");
    if (bob) {
        cc_pump(bob, 200);
        E2E_CHECK(cc_private_count(bob) == 2 && cc_private_at(bob, 0)->id == ids[2] &&
                      cc_private_at(bob, 1)->id == ids[3] &&
                      !strcmp(cc_private_at(bob, 1)->text, "after restart"),
                  "the unacknowledged ones (3 and 4), not the acked ones");
    }
    cc_close(bob);
    st = e2e_server_stop(&c, false);
    E2E_CHECK(st == 0, "third server stopped cleanly (%d)", st);

    /* bob still has 2 unacknowledged (3 and 4): with a cap of 4, two more
     * fit, the third is refused, and bob's ack makes room again. */
    e2e_server d;
    const char *capped[] = {"--data-dir", a.data_dir, "--set", "chat_max_stored=4", NULL};
    if (e2e_server_start(&d, config, capped) != 0) {
        e2e_server_stop(&a, false);
        return 1;
    }
    alice = conn(d.port, "alice");
    int fit = 0;
    for (int i = 0; i < 2 && alice; i++)
        fit += cc_send(alice, "carol", "fits", NULL, &r) == 0 && r.ok;
    E2E_CHECK(fit == 2, "2 more messages fit under chat_max_stored=4 (%d)", fit);
    if (!d.nodes) {
        E2E_CHECK(alice && cc_send(alice, "carol", "too many", NULL, &r) == 0 && !r.ok &&
                      !strcmp(r.code, "Chat.StoreFull"),
                  "the next one: Chat.StoreFull (%s)", r.code);
    } else {
        /* docs/cluster-chat.md: the messages are in Redis, whose maxmemory
         * bounds them; the node's chat_max_stored does not apply */
        E2E_CHECK(alice && cc_send(alice, "carol", "not capped", NULL, &r) == 0 && r.ok,
                  "cluster: chat_max_stored does not apply, the next one is queued (%s)",
                  r.ok ? r.status : r.code);
    }
    bob = conn(d.port, "bob");
    cc_answer k;
    E2E_CHECK(bob && cc_wait_privates(bob, 2, 5000) && cc_ack(bob, 4, &k) == 0 && k.ok,
              "bob acknowledges his 2");
    E2E_CHECK(alice && cc_send(alice, "carol", "room again", NULL, &r) == 0 && r.ok &&
                  !strcmp(r.status, "queued"),
              "after the ack a message fits again (%s)", r.ok ? r.status : r.code);
    cc_close(bob);
    cc_close(alice);
    st = e2e_server_stop(&d, false);
    E2E_CHECK(st == 0, "fourth server stopped cleanly (%d)", st);
    e2e_server_stop(&a, e2e_failures > 0);
    if (e2e_failures)
        printf("# %d of %d checks failed\n", e2e_failures, e2e_checks);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
