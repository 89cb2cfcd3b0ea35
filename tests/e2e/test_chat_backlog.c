/* test_chat_backlog.c - at-least-once delivery of private messages when
 * many of them wait (issue 12), against the real sohub-server with real
 * clients: the sohub-cli binary ($SOHUB_CLI) and sohub's client library.
 *
 * The server runs with max_output_bytes = 1 MiB, so every backlog here is
 * larger than what one connection may have queued, and larger than the
 * 4096 events the client library used to hold.
 *
 * listen:   6000 messages (about 1.7 MB) wait for offline bob; one
 *           `sohub-cli chat listen --count 6000` prints every id 1..6000
 *           once, in order, and acknowledges them: a new connection of
 *           bob gets nothing, and the next message gets id 6001.
 * live:     4000 stored for carol; she connects and, while the stored
 *           ones are still being sent, 1000 more are committed: her
 *           connection sees 1..5000 once each, in order (stored first,
 *           then live).
 * two tabs: dave has two connections, one of them not reading (small
 *           receive buffer); 6000 messages arrive; both connections stay
 *           open and each gets 1..6000 once, in order.
 * held:     the client library while it waits for one answer: 5000
 *           pipelined calls, then a wait for the last answer; the 4999
 *           answers before it are all handed out, in order (the library
 *           used to drop those past 4096).
 * unreadable: 3 messages stored for frank, then the test drops the
 *           chat_messages table under the server: frank's connection is
 *           closed (and the reason logged) instead of being kept open
 *           without its messages, where later ones would have come and
 *           an ack of theirs would have covered the missing ones.
 *
 * On the server before the fix the listen, live and unreadable parts
 * fail: a backlog above max_output_bytes closed the connection at every
 * connect (even before its connect answer was written), so nothing ever
 * arrived; a failed read was only logged.  With
 * the client library before the fix the held part fails.  The two-tab
 * part checks the new behaviour for slow readers (fed from the store, not
 * disconnected), which the old server happened to survive here thanks to
 * the kernel's socket buffers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "client.h"
#include "harness.h"
#include "test_chat_client.h"

#define TEXT_LEN 200
#define WINDOW 64

static const char *const config = "[server]\n"
                                   "max_output_bytes = 1048576\n"
                                   "[app chat]\n"
                                   "chat_rate = 0\n"
                                   "chat_queue = 100000\n";

static int port;
static const char *cli_path;

/* The text of message `seq` for `to`: "to:seq:" then filler. */
static void text_of(const char *to, long seq, char *buf, size_t sz)
{
    int n = snprintf(buf, sz, "%s:%ld:", to, seq);
    size_t len = TEXT_LEN < sz ? TEXT_LEN : sz - 1;
    for (size_t i = (size_t)n; i < len; i++)
        buf[i] = (char)('a' + (seq + (long)i) % 26);
    buf[len] = '\0';
}

static cc *conn(const char *user)
{
    char code[128], desc[256];
    cc *c = cc_connect(port, "chat", user, NULL, NULL, code, desc, sizeof code);
    if (!c)
        printf("# connect as %s failed: %s %s\n", user, code, desc);
    return c;
}

/* Sends n messages (sequence first..first+n-1) from `from` to `to`, WINDOW
 * calls in flight.  Returns how many were answered queued or delivered
 * with the id equal to their sequence number (ids start at 1 per
 * recipient, and every message here is sent in order). */
static long send_many(cc *from, const char *to, long first, long n)
{
    double tx[WINDOW];
    long seqs[WINDOW];
    int head = 0, inflight = 0;
    long next = first, ok = 0;
    while (next < first + n || inflight > 0) {
        while (inflight < WINDOW && next < first + n) {
            char text[TEXT_LEN + 1];
            text_of(to, next, text, sizeof text);
            amf_value *args[2] = {amf_string_cstr(to), amf_string_cstr(text)};
            double t = cc_call_async(from, "chat.sendPrivate", args, 2);
            amf_unref(args[0]);
            amf_unref(args[1]);
            if (t < 0)
                return ok;
            tx[(head + inflight) % WINDOW] = t;
            seqs[(head + inflight) % WINDOW] = next++;
            inflight++;
        }
        cc_answer a;
        if (cc_wait(from, tx[head], &a, 10000) != 0)
            return ok;
        ok += a.ok && a.id == (double)seqs[head] &&
              (!strcmp(a.status, "queued") || !strcmp(a.status, "delivered"));
        head = (head + 1) % WINDOW;
        inflight--;
    }
    return ok;
}

/* Pumps c until it holds n messages or timeout_ms passed, then checks
 * that they are ids 1..n in order with the right texts.  Returns the
 * number in place (n when all are right). */
static long receive_in_order(cc *c, const char *user, long n, int timeout_ms)
{
    cc_wait_privates(c, (size_t)n, timeout_ms);
    cc_pump(c, 200); /* a duplicate or an extra id would show */
    long right = 0;
    size_t got = cc_private_count(c);
    for (size_t i = 0; i < got; i++) {
        const cc_private *p = cc_private_at(c, i);
        char want[TEXT_LEN + 1];
        text_of(user, (long)i + 1, want, sizeof want);
        if (p->id == (double)(i + 1) && !strcmp(p->text, want) && !strcmp(p->to, user)) {
            right++;
        } else {
            printf("# %s: position %zu has id %.0f (want %zu)\n", user, i, p->id, i + 1);
            break;
        }
    }
    if (got != (size_t)n)
        printf("# %s: %zu messages, want %ld\n", user, got, n);
    return got == (size_t)n ? right : -1;
}

/* ---- listen: the sohub-cli client ---- */

static void test_listen(const char *dir)
{
    const long n = 6000;
    cc *alice = conn("alice");
    E2E_CHECK(alice && send_many(alice, "bob", 1, n) == n,
              "listen: %ld messages queued for offline bob, ids 1..%ld", n, n);
    char url[128], out[300], count[16];
    snprintf(url, sizeof url, "rtmp://127.0.0.1:%d/chat", port);
    snprintf(out, sizeof out, "%s/listen.out", dir);
    snprintf(count, sizeof count, "%ld", n);
    const char *argv[] = {cli_path, "-u", url, "--user", "bob", "chat", "listen", "--count",
                          count, "--timeout", "60", NULL};
    int st = e2e_run(argv, out, 70000, NULL);
    E2E_CHECK(st == 0, "listen: sohub-cli chat listen --count %ld exits 0 (%d)", n, st);
    size_t len = 0;
    char *txt = e2e_read_file(out, &len);
    long lines = 0, in_order = 0;
    for (char *line = txt, *nl; line && *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl)
            break;
        *nl = '\0';
        lines++;
        const char *id = strstr(line, "\"id\":");
        char want[TEXT_LEN + 16];
        text_of("bob", in_order + 1, want, sizeof want);
        if (id && atol(id + 5) == in_order + 1 && strstr(line, want))
            in_order++;
        else if (lines - in_order == 1)
            printf("# listen: line %ld: %.120s\n", lines, line);
    }
    free(txt);
    E2E_CHECK(lines == n && in_order == n,
              "listen: every id 1..%ld printed once, in order (%ld lines, %ld in order)", n,
              lines, in_order);
    cc *bob = conn("bob");
    if (bob)
        cc_pump(bob, 500);
    E2E_CHECK(bob && cc_private_count(bob) == 0,
              "listen: acknowledged: bob's next connection gets nothing (%zu)",
              bob ? cc_private_count(bob) : 0);
    cc_answer a;
    E2E_CHECK(alice && cc_send(alice, "bob", "one more", NULL, &a) == 0 && a.ok &&
                  a.id == (double)(n + 1) && !strcmp(a.status, "delivered"),
              "listen: the next message is id %ld, delivered (%.0f %s)", n + 1, a.id, a.status);
    E2E_CHECK(bob && cc_wait_privates(bob, 1, 5000) && cc_private_at(bob, 0)->id == n + 1,
              "listen: and it arrives");
    cc_close(bob);
    cc_close(alice);
}

/* ---- live: stored first, then live, on one connection ---- */

static void test_live_during_catch_up(void)
{
    const long stored = 4000, live = 1000;
    cc *alice = conn("alice");
    E2E_CHECK(alice && send_many(alice, "carol", 1, stored) == stored,
              "live: %ld messages stored for carol", stored);
    cc *carol = conn("carol");
    E2E_CHECK(carol != NULL, "live: carol connected");
    /* carol reads nothing yet: most of her stored messages are still in
     * the store while these are committed. */
    E2E_CHECK(alice && send_many(alice, "carol", stored + 1, live) == live,
              "live: %ld more committed while carol's stored ones go out", live);
    E2E_CHECK(carol && receive_in_order(carol, "carol", stored + live, 30000) == stored + live,
              "live: carol's connection saw ids 1..%ld once each, in order", stored + live);
    cc_answer a;
    E2E_CHECK(carol && cc_ack(carol, (double)(stored + live), &a) == 0 && a.ok &&
                  a.acked == (double)(stored + live),
              "live: carol acknowledges %ld", stored + live);
    cc_close(carol);
    cc_close(alice);
}

/* ---- two tabs, one of them not reading ---- */

static void test_two_tabs(void)
{
    const long n = 6000;
    cc *fast = conn("dave");
    cc *slow = cc_connect_rcvbuf(port, "chat", "dave", 4096);
    E2E_CHECK(fast && slow, "two tabs: dave connected twice, one with a 4 KiB receive buffer");
    cc *alice = conn("alice");
    E2E_CHECK(alice && send_many(alice, "dave", 1, n) == n, "two tabs: %ld messages sent", n);
    E2E_CHECK(fast && receive_in_order(fast, "dave", n, 30000) == n,
              "two tabs: the reading tab saw 1..%ld once each, in order", n);
    E2E_CHECK(slow && receive_in_order(slow, "dave", n, 30000) == n,
              "two tabs: the tab that did not read saw 1..%ld too, in order, still connected",
              n);
    cc_answer a;
    E2E_CHECK(slow && cc_ack(slow, (double)n, &a) == 0 && a.ok && a.acked == (double)n,
              "two tabs: dave acknowledges %ld", n);
    cc_close(alice);
    cc_close(slow);
    cc_close(fast);
}

/* ---- held: the client library's events while waiting for an answer ---- */

static void test_held(void)
{
    const int n = 5000;
    char url[128], err[512];
    snprintf(url, sizeof url, "rtmp://127.0.0.1:%d/chat", port);
    shc_opts o = {.url = url, .user = "erin", .timeout_ms = 5000};
    shc *c = shc_connect(&o, err, sizeof err);
    E2E_CHECK(c != NULL, "held: connected (%s)", c ? "" : err);
    if (!c)
        return;
    double first = 0, last = 0;
    int sent = 0;
    for (int i = 0; i < n; i++) {
        amf_value *v = amf_number(i);
        double t = shc_call_send(c, "echo", &v, 1, true);
        amf_unref(v);
        if (t < 0)
            break;
        if (i == 0)
            first = t;
        last = t;
        sent++;
    }
    E2E_CHECK(sent == n, "held: %d echo calls sent without reading", n);
    /* Wait for the last answer; the ones before it are events meanwhile. */
    long in_order = 0, helds = 0;
    double want = first;
    rtmp_cmd ans;
    int r;
    int64_t end = e2e_now_ms() + 30000;
    bool bad = false;
    while ((r = shc_call_wait(c, last, 5000, &ans)) == SHC_EHELD && e2e_now_ms() < end) {
        helds++;
        shc_event ev;
        while (shc_held(c) > 0 && shc_next(c, 0, &ev) == 1) {
            if (ev.kind == SHC_EV_CMD && ev.cmd.txid == want && ev.cmd.nargs == 1 &&
                amf_as_number(ev.cmd.args[0]) == want - first)
                in_order++;
            else
                bad = true;
            want++;
            shc_event_cleanup(&ev);
        }
    }
    E2E_CHECK(r == 1 && amf_as_number(ans.args[0]) == n - 1, "held: the last answer came (%d)",
              r);
    if (r == 1)
        rtmp_cmd_cleanup(&ans);
    shc_event ev;
    while (shc_held(c) > 0 && shc_next(c, 0, &ev) == 1) {
        if (ev.kind == SHC_EV_CMD && ev.cmd.txid == want && ev.cmd.nargs == 1 &&
            amf_as_number(ev.cmd.args[0]) == want - first)
            in_order++;
        else
            bad = true;
        want++;
        shc_event_cleanup(&ev);
    }
    E2E_CHECK(!bad && in_order == n - 1,
              "held: the %d answers before it were all handed out, in order (%ld, %ld times "
              "SHC_EHELD)",
              n - 1, in_order, helds);
    E2E_CHECK(helds > 0, "held: the wait stopped reading at %d held events (%ld)", SHC_MAX_HELD,
              helds);
    shc_close(c);
}

/* ---- unreadable: the store cannot be read for a connecting user ---- */

static void test_unreadable(const e2e_server *s)
{
    cc *alice = conn("alice");
    E2E_CHECK(alice && send_many(alice, "frank", 1, 3) == 3, "unreadable: 3 stored for frank");
    cc_close(alice);
    char db[400];
    snprintf(db, sizeof db, "%s/sohub.db", s->data_dir);
    sqlite3 *h = NULL;
    int rc = sqlite3_open(db, &h);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(h, 5000);
        rc = sqlite3_exec(h, "DROP TABLE chat_messages", NULL, NULL, NULL);
    }
    E2E_CHECK(rc == SQLITE_OK, "unreadable: chat_messages dropped under the server (%s)",
              h ? sqlite3_errmsg(h) : "no handle");
    sqlite3_close(h);
    cc *frank = conn("frank");
    bool closed = false;
    int64_t end = e2e_now_ms() + 5000;
    while (frank && !closed && e2e_now_ms() < end) {
        cc_pump(frank, 50);
        cc_answer a;
        closed = cc_ack(frank, 0, &a) != 0; /* a call fails once the server closed */
    }
    E2E_CHECK(closed, "unreadable: the server closed frank's connection");
    E2E_CHECK(frank && cc_private_count(frank) == 0, "unreadable: having sent him nothing");
    E2E_CHECK(e2e_log_wait(s, "cannot read stored private messages", 3000),
              "unreadable: the log says why");
    cc_close(frank);
}

int main(void)
{
    cli_path = getenv("SOHUB_CLI");
    if (!cli_path || access(cli_path, X_OK) != 0) {
        printf("1..0 # SKIP SOHUB_CLI not set\n");
        return E2E_SKIP;
    }
    e2e_server s;
    if (e2e_server_start(&s, config, NULL) != 0)
        return 1;
    port = s.port;
    test_listen(s.dir);
    test_live_during_catch_up();
    test_two_tabs();
    test_held();
    test_unreadable(&s);
    int st = e2e_server_stop(&s, e2e_failures > 0);
    E2E_CHECK(st == 0, "server stopped cleanly (%d)", st);
    if (e2e_failures) {
        printf("# %d of %d checks failed; server files kept in %s\n", e2e_failures, e2e_checks,
               s.dir);
    }
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
