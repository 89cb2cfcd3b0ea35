/* test_chat.c - one-to-one chat against the real sohub-server:
 * delivery to every connection of the recipient and to nobody else,
 * acknowledgement, offline queue and redelivery until acked, `from` that
 * cannot be spoofed, the error codes (unknown user, self, too long, bad
 * request, anonymous sender, rate limit, queue full), clientId
 * de-duplication, instances sharing users, applications not sharing them,
 * and token authentication (good, wrong, expired, missing). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "harness.h"
#include "test_chat_client.h"

static const char *const config =
    "[app chat]\n"
    "users = alice, bob, carol, dave, eve, frank\n"
    "chat_rate = 1000\n"
    "chat_queue = 5\n"
    "chat_max_text = 100\n"
    "[app slow]\n"
    "chat_rate = 3\n"
    "[app other]\n"
    "[app tok]\n"
    "auth = token\n"
    "secret = s3cret-for-tests\n";

static int port;
static const e2e_server *server;

static cc *conn(const char *path, const char *user)
{
    char code[128], desc[256];
    cc *c = cc_connect(port, path, user, NULL, NULL, code, desc, sizeof code);
    if (!c)
        printf("# connect %s as %s failed: %s %s\n", path, user ? user : "-", code, desc);
    return c;
}

/* Ids: 1, 2, 3 ... per recipient on one node; over a cluster Redis' clock
 * in microseconds, increasing (docs/cluster-chat.md). */
static bool first_id(double id) { return e2e_cluster_nodes() ? id > 0 : id == 1; }
static bool next_id(double prev, double id)
{
    return e2e_cluster_nodes() ? id > prev : id == prev + 1;
}

static void test_delivery(void)
{
    cc *alice = conn("chat", "alice"), *bob = conn("chat", "bob"), *carol = conn("chat", "carol");
    E2E_CHECK(alice && bob && carol, "alice, bob and carol connected");
    if (!alice || !bob || !carol)
        return;
    cc_answer a;
    E2E_CHECK(cc_send(alice, "bob", "hello bob", NULL, &a) == 0 && a.ok, "sendPrivate answered");
    E2E_CHECK(strcmp(a.status, "delivered") == 0 && first_id(a.id),
              "status delivered, first id (%s %g)", a.status, a.id);
    double id1 = a.id;
    E2E_CHECK(cc_wait_privates(bob, 1, 3000), "bob got a chat.onPrivate");
    const cc_private *p = cc_private_at(bob, 0);
    E2E_CHECK(p && p->id == id1 && !strcmp(p->from, "alice") && !strcmp(p->to, "bob") &&
                  !strcmp(p->text, "hello bob") && !p->has_extra,
              "message {id, from alice, to bob, text} exactly");
    E2E_CHECK(p && p->ts > 1.6e12 && fabs(p->ts - (double)time(NULL) * 1000) < 60000,
              "ts is the server's wall clock in ms");
    cc_pump(carol, 300);
    cc_pump(alice, 10);
    E2E_CHECK(cc_private_count(carol) == 0, "carol saw nothing");
    E2E_CHECK(cc_private_count(alice) == 0, "the sender got no copy");
    E2E_CHECK(cc_ack(bob, id1, &a) == 0 && a.ok && a.acked == id1, "bob acked it");

    /* A second connection of bob: both get the next message. */
    cc *bob2 = conn("chat/other-instance", "bob");
    E2E_CHECK(bob2 != NULL, "bob connected a second time, in another instance");
    cc_pump(bob2, 300);
    E2E_CHECK(bob2 && cc_private_count(bob2) == 0, "acked message not sent again on connect");
    cc_clear_privates(bob);
    E2E_CHECK(cc_send(alice, "bob", "both tabs", NULL, &a) == 0 && a.ok && next_id(id1, a.id) &&
                  !strcmp(a.status, "delivered"),
              "second message delivered, the next id");
    double id2 = a.id;
    E2E_CHECK(cc_wait_privates(bob, 1, 3000) && bob2 && cc_wait_privates(bob2, 1, 3000),
              "every connection of bob got it (both instances)");
    E2E_CHECK(cc_private_at(bob, 0)->id == id2 && bob2 && cc_private_at(bob2, 0)->id == id2,
              "same id on both");
    E2E_CHECK(cc_ack(bob2, id2, &a) == 0 && a.ok && a.acked == id2, "acked from the other tab");

    /* Spoofing: extra arguments cannot change `from`. */
    amf_value *args[4] = {amf_string_cstr("bob"), amf_string_cstr("spoof?"),
                          amf_string_cstr("cid-spoof"), amf_object_new(NULL)};
    amf_object_set_cstr(args[3], "from", amf_string_cstr("carol"));
    E2E_CHECK(cc_call(alice, "chat.sendPrivate", args, 4, &a) == 0 && a.ok,
              "send with an extra {from: carol} argument accepted");
    for (int i = 0; i < 4; i++)
        amf_unref(args[i]);
    cc_clear_privates(bob);
    E2E_CHECK(cc_wait_privates(bob, 1, 3000) && !strcmp(cc_private_at(bob, 0)->from, "alice"),
              "bob sees it from alice, not carol");
    cc *mallory = conn("chat", "carol");
    cc_answer b;
    E2E_CHECK(mallory && cc_send(mallory, "bob", "I am carol", NULL, &b) == 0 && b.ok,
              "a client that says it is carol sends as carol (auth = none)");
    cc_clear_privates(bob);
    E2E_CHECK(cc_wait_privates(bob, 1, 3000) && !strcmp(cc_private_at(bob, 0)->from, "carol"),
              "`from` is the name given at connect");
    cc_ack(bob, cc_private_at(bob, 0)->id, &b);
    cc_close(mallory);
    cc_close(bob2);
    cc_close(alice);
    cc_close(bob);
    cc_close(carol);
}

static void test_offline(void)
{
    /* bob left at the end of test_delivery: in a cluster his node may not
     * have told Redis yet */
    E2E_CHECK(cc_wait_offline(server, "chat", "bob", 5000), "bob is offline");
    cc *alice = conn("chat", "alice");
    E2E_CHECK(alice != NULL, "alice connected (bob offline)");
    if (!alice)
        return;
    cc_answer a, b;
    E2E_CHECK(cc_send(alice, "bob", "while you were out 1", NULL, &a) == 0 && a.ok &&
                  !strcmp(a.status, "queued"),
              "queued for offline bob (%s %s)", a.status, a.code);
    E2E_CHECK(cc_send(alice, "bob", "while you were out 2", NULL, &b) == 0 && b.ok &&
                  !strcmp(b.status, "queued") && next_id(a.id, b.id),
              "second queued with the next id");
    for (int round = 1; round <= 2; round++) {
        cc *bob = conn("chat", "bob");
        E2E_CHECK(bob && cc_wait_privates(bob, 2, 3000), "bob connects: 2 messages (round %d)",
                  round);
        if (!bob)
            return;
        cc_pump(bob, 200);
        E2E_CHECK(cc_private_count(bob) == 2 && cc_private_at(bob, 0)->id == a.id &&
                      cc_private_at(bob, 1)->id == b.id &&
                      !strcmp(cc_private_at(bob, 0)->text, "while you were out 1"),
                  "exactly the two, in order (round %d)", round);
        if (round == 2) {
            cc_answer k;
            E2E_CHECK(cc_ack(bob, b.id, &k) == 0 && k.acked == b.id, "bob acks both");
        }
        cc_close(bob);
    }
    cc *bob = conn("chat", "bob");
    cc_pump(bob, 400);
    E2E_CHECK(bob && cc_private_count(bob) == 0, "after the ack: nothing sent again");
    cc_close(bob);
    cc_close(alice);
}

static void test_errors(void)
{
    cc *alice = conn("chat", "alice"), *anon = conn("chat", NULL);
    E2E_CHECK(alice && anon, "alice and an anonymous client connected");
    if (!alice || !anon)
        return;
    cc_answer a;
    cc_send(alice, "zed", "hi", NULL, &a);
    E2E_CHECK(!a.ok && !strcmp(a.code, "Chat.UnknownUser"), "not in users: %s", a.code);
    cc_send(alice, "alice", "hi me", NULL, &a);
    E2E_CHECK(!a.ok && !strcmp(a.code, "Chat.Denied"), "to self: %s", a.code);
    char big[200];
    memset(big, 'x', 101);
    big[101] = '\0';
    cc_send(alice, "bob", big, NULL, &a);
    E2E_CHECK(!a.ok && !strcmp(a.code, "Chat.TooLong"), "101 bytes > chat_max_text: %s", a.code);
    big[100] = '\0';
    cc_send(alice, "carol", big, NULL, &a);
    E2E_CHECK(a.ok, "100 bytes accepted (%s)", a.code);
    cc_send(anon, "bob", "who am I", NULL, &a);
    E2E_CHECK(!a.ok && !strcmp(a.code, "Chat.Denied"), "anonymous sender: %s", a.code);
    amf_value *n = amf_number(3);
    cc_call(alice, "chat.sendPrivate", &n, 1, &a);
    amf_unref(n);
    E2E_CHECK(!a.ok && !strcmp(a.code, "Chat.BadRequest"), "bad arguments: %s", a.code);
    cc *frank = conn("chat", "frank2");
    cc_send(frank, "bob", "hi", NULL, &a);
    E2E_CHECK(frank && !a.ok && !strcmp(a.code, "Chat.Denied"), "sender not in users: %s",
              a.code);
    cc_close(frank);

    /* Queue full: chat_queue = 5 for dave, who is offline. */
    int queued = 0;
    for (int i = 0; i < 5; i++) {
        char t[32];
        snprintf(t, sizeof t, "q%d", i);
        queued += cc_send(alice, "dave", t, NULL, &a) == 0 && a.ok && !strcmp(a.status, "queued");
    }
    E2E_CHECK(queued == 5, "5 queued for dave");
    cc_send(alice, "dave", "one too many", NULL, &a);
    E2E_CHECK(!a.ok && !strcmp(a.code, "Chat.QueueFull"), "6th: %s", a.code);
    cc *dave = conn("chat", "dave");
    E2E_CHECK(dave && cc_wait_privates(dave, 5, 3000), "dave gets the 5");
    cc_pump(dave, 200);
    E2E_CHECK(dave && cc_private_count(dave) == 5 && !strcmp(cc_private_at(dave, 0)->text, "q0") &&
                  !strcmp(cc_private_at(dave, 4)->text, "q4"),
              "nothing dropped, nothing extra, in order");
    cc_answer k;
    E2E_CHECK(dave && cc_ack(dave, cc_private_at(dave, 4)->id, &k) == 0 && k.ok, "dave acks");
    E2E_CHECK(cc_send(alice, "dave", "room again", NULL, &a) == 0 && a.ok,
              "after the ack the queue has room (%s)", a.status);
    cc_close(dave);

    /* clientId: a retry gets the same answer and is not stored twice. */
    cc_answer r1, r2, r3;
    cc_send(alice, "eve", "once", "m-1", &r1);
    cc_send(alice, "eve", "once", "m-1", &r2);
    cc_send(alice, "eve", "twice", "m-2", &r3);
    E2E_CHECK(r1.ok && r2.ok && r1.id == r2.id && !strcmp(r1.status, r2.status) &&
                  !strcmp(r1.status, "queued"),
              "same clientId: same {id %g, %s}", r2.id, r2.status);
    E2E_CHECK(r3.ok && next_id(r1.id, r3.id), "another clientId: next id");
    /* A retry after a reconnect is still recognised. */
    cc_close(alice);
    alice = conn("chat", "alice");
    cc_send(alice, "eve", "once", "m-1", &r2);
    E2E_CHECK(r2.ok && r2.id == r1.id, "retry after reconnect: same id %g", r2.id);
    cc *eve = conn("chat", "eve");
    cc_wait_privates(eve, 2, 3000);
    cc_pump(eve, 300);
    E2E_CHECK(eve && cc_private_count(eve) == 2, "eve got 2 messages, not 3 (%zu)",
              eve ? cc_private_count(eve) : 0);
    cc_close(eve);
    cc_close(anon);
    cc_close(alice);
}

static void test_rate_and_apps(void)
{
    cc *alice = conn("slow", "alice"), *bob = conn("slow", "bob");
    cc *bob_chat = conn("chat", "bob"), *bob_other = conn("other", "bob");
    E2E_CHECK(alice && bob && bob_chat && bob_other, "connected to slow, chat, other");
    if (!alice || !bob || !bob_chat || !bob_other)
        return;
    /* Ten calls pipelined (not one round trip each), so the bucket has no
     * time to refill even on a loaded machine. */
    int ok = 0, limited = 0;
    double txids[10];
    amf_value *args[2] = {amf_string_cstr("bob"), amf_string_cstr("fast")};
    for (int i = 0; i < 10; i++)
        txids[i] = cc_call_async(alice, "chat.sendPrivate", args, 2);
    amf_unref(args[0]);
    amf_unref(args[1]);
    for (int i = 0; i < 10; i++) {
        cc_answer a;
        if (cc_wait(alice, txids[i], &a, 5000) != 0)
            continue;
        ok += a.ok;
        limited += !a.ok && !strcmp(a.code, "Chat.RateLimited");
    }
    E2E_CHECK(ok >= 3 && ok <= 4 && limited == 10 - ok,
              "chat_rate = 3: %d accepted, %d Chat.RateLimited", ok, limited);
    E2E_CHECK(cc_wait_privates(bob, (size_t)ok, 3000), "bob in slow got the accepted ones");
    cc_pump(bob_chat, 300);
    cc_pump(bob_other, 10);
    E2E_CHECK(cc_private_count(bob_chat) == 0 && cc_private_count(bob_other) == 0,
              "bob of other applications got nothing");
    e2e_sleep_ms(1100);
    cc_answer a;
    cc_send(alice, "bob", "later", NULL, &a);
    E2E_CHECK(a.ok, "the bucket refills (%s)", a.code);
    cc_close(alice);
    cc_close(bob);
    cc_close(bob_chat);
    cc_close(bob_other);
}

static void test_tokens(const e2e_server *srv)
{
    const char *secret = "s3cret-for-tests";
    char good[AUTH_TOKEN_MAX + 1], old[AUTH_TOKEN_MAX + 1], other[AUTH_TOKEN_MAX + 1];
    int64_t now = (int64_t)time(NULL);
    auth_token_mint(secret, "tok", "alice", now + 3600, good, sizeof good);
    auth_token_mint(secret, "tok", "alice", now - 10, old, sizeof old);
    auth_token_mint("not-the-secret", "tok", "alice", now + 3600, other, sizeof other);
    char code[128], desc[256];
    cc *c = cc_connect(port, "tok", "alice", good, NULL, code, desc, sizeof code);
    E2E_CHECK(c != NULL, "good token accepted (%s %s)", code, desc);
    cc_close(c);
    c = cc_connect(port, "tok/room9", "alice", good, NULL, code, desc, sizeof code);
    E2E_CHECK(c != NULL, "good token accepted in another instance");
    cc_close(c);
    char path[256];
    snprintf(path, sizeof path, "tok?user=alice&token=%s", good);
    c = cc_connect(port, path, NULL, NULL, NULL, code, desc, sizeof code);
    E2E_CHECK(c != NULL, "token in the query accepted (%s %s)", code, desc);
    cc_close(c);

    c = cc_connect(port, "tok", "alice", old, NULL, code, desc, sizeof code);
    E2E_CHECK(!c && !strcmp(code, "NetConnection.Connect.Rejected") &&
                  !strcmp(desc, "Token expired"),
              "expired: %s / %s", code, desc);
    c = cc_connect(port, "tok", "alice", other, NULL, code, desc, sizeof code);
    E2E_CHECK(!c && !strcmp(desc, "Invalid token"), "wrong secret: %s", desc);
    c = cc_connect(port, "tok", "bob", good, NULL, code, desc, sizeof code);
    E2E_CHECK(!c && !strcmp(desc, "Invalid token"), "alice's token for bob: %s", desc);
    c = cc_connect(port, "tok", "alice", NULL, NULL, code, desc, sizeof code);
    E2E_CHECK(!c && !strcmp(desc, "Missing token"), "no token: %s", desc);
    c = cc_connect(port, "tok", "alice", "12.abc", NULL, code, desc, sizeof code);
    E2E_CHECK(!c && !strcmp(desc, "Malformed token"), "malformed: %s", desc);
    c = cc_connect(port, "tok", NULL, NULL, NULL, code, desc, sizeof code);
    E2E_CHECK(!c && !strcmp(desc, "Missing user name"), "no user: %s", desc);
    E2E_CHECK(e2e_log_wait(srv, "auth failed", 2000) && e2e_log_contains(srv, "Token expired"),
              "rejections are logged");
    char *log = e2e_log_read(srv);
    E2E_CHECK(log && !strstr(log, strchr(good, '.') + 1) && !strstr(log, strchr(old, '.') + 1) &&
                  !strstr(log, secret),
              "neither tokens nor the secret appear in the log");
    free(log);

    /* sohub-cli token mints from the same config file (next to the server
     * binary in the build tree). */
    const char *bin = getenv("SOHUB_SERVER");
    char cli[600], out[700];
    snprintf(cli, sizeof cli, "%.*s/cli/sohub-cli", (int)(strrchr(bin, '/') - bin), bin);
    snprintf(out, sizeof out, "%s/token.txt", srv->dir);
    const char *argv[] = {cli, "token", "--app", "tok", "--user", "carol", "--ttl", "600",
                          "--config", srv->config_path, NULL};
    int st = e2e_run(argv, out, 10000, NULL);
    char *minted = e2e_read_file(out, NULL);
    if (minted && strchr(minted, '\n'))
        *strchr(minted, '\n') = '\0';
    c = minted && st == 0 ? cc_connect(port, "tok", "carol", minted, NULL, code, desc, sizeof code)
                          : NULL;
    E2E_CHECK(c != NULL, "a token from `sohub-cli token --config` is accepted (%d %s)", st, desc);
    cc_close(c);
    free(minted);

    /* An authenticated user chats like any other. */
    char bobtok[AUTH_TOKEN_MAX + 1];
    auth_token_mint(secret, "tok", "bob", now + 3600, bobtok, sizeof bobtok);
    cc *alice = cc_connect(port, "tok", "alice", good, NULL, code, desc, sizeof code);
    cc *bob = cc_connect(port, "tok", "bob", bobtok, NULL, code, desc, sizeof code);
    cc_answer a;
    E2E_CHECK(alice && bob && cc_send(alice, "bob", "signed", NULL, &a) == 0 && a.ok &&
                  cc_wait_privates(bob, 1, 3000) && !strcmp(cc_private_at(bob, 0)->from, "alice"),
              "token users exchange messages");
    cc_close(alice);
    cc_close(bob);
}

int main(void)
{
    e2e_server srv;
    if (e2e_server_start(&srv, config, NULL) != 0)
        return 1;
    port = srv.port;
    server = &srv;
    test_delivery();
    test_offline();
    test_errors();
    test_rate_and_apps();
    test_tokens(&srv);
    int st = e2e_server_stop(&srv, e2e_failures > 0);
    E2E_CHECK(st == 0, "server exited cleanly (%d)", st);
    if (e2e_failures)
        printf("# %d of %d checks failed\n", e2e_failures, e2e_checks);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
