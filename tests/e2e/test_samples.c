/* test_samples.c - the sample applications (samples/) against the real
 * sohub-server, with real clients: the sohub-cli binary ($SOHUB_CLI), the
 * shared-object test client (so_client.h) and the call client
 * (test_chat_client.h).
 *
 * chat: room.post sets from / ts, the room object is server-only and
 *   bounded, presence, private messages through `chat send` / `chat
 *   listen`, the interactive `chat room` fed on its standard input.
 * auction: admin-only create, bid rules and error codes, watchers see each
 *   accepted bid, equal bids racing (exactly one wins), anti-sniping, the
 *   close with its auctionClosed message, a bid answered before a SIGKILL
 *   is still there after the restart, and the timer is set again.
 * slideshow: first user presents, viewers refused with NoWriteAccess and
 *   their copy restored, a late viewer is on the current slide, hand-off,
 *   presenter named in the settings file.
 * idle instances (so_unload_idle_s = 1): after their clients left, the
 *   rooms of many chat, auction and slideshow instances leave memory (the
 *   server's "idle rooms left memory" log lines), an auction instance with
 *   an open item stays until its timer closed the item with nobody
 *   connected, and coming back shows the same state (chat history and next
 *   id, presence, auction price / winner / known items, slide and
 *   presenter). */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "so_client.h"
#include "test_chat_client.h"

static const char *cli_path;
static char tmpdir[256];
static int port;

/* ---- sohub-cli helpers ---- */

/* Runs sohub-cli with args (NULL-terminated) against APP; output (stdout
 * and stderr) in *out (caller frees).  Returns the exit status. */
static int cli(char **out, const char *app, const char *user, const char *const *args)
{
    const char *argv[40];
    char url[256];
    size_t n = 0;
    argv[n++] = cli_path;
    snprintf(url, sizeof(url), "rtmp://127.0.0.1:%d/%s", port, app);
    argv[n++] = "-u";
    argv[n++] = url;
    if (user) {
        argv[n++] = "--user";
        argv[n++] = user;
    }
    for (size_t i = 0; args[i] && n < 38; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char path[320];
    snprintf(path, sizeof(path), "%s/cli.out", tmpdir);
    unlink(path);
    int rc = e2e_run(argv, path, 15000, NULL);
    char *txt = e2e_read_file(path, NULL);
    if (out)
        *out = txt ? txt : strdup("");
    else
        free(txt);
    return rc;
}

#define CLI(out, app, user, ...) cli(out, app, user, (const char *const[]){__VA_ARGS__, NULL})

/* Starts sohub-cli with a pipe on its standard input; returns the pid and
 * the write end in *in_fd. */
static pid_t cli_spawn_stdin(const char *const *argv, const char *out_path, int *in_fd)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(p[0], 0);
        dup2(out, 1);
        dup2(out, 2);
        close(p[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[0]);
    *in_fd = p[1];
    return pid;
}

static bool file_wait(const char *path, const char *needle, int timeout_ms)
{
    int64_t end = e2e_now_ms() + timeout_ms;
    for (;;) {
        char *t = e2e_read_file(path, NULL);
        bool ok = t && strstr(t, needle);
        free(t);
        if (ok)
            return true;
        if (e2e_now_ms() >= end)
            return false;
        e2e_sleep_ms(20);
    }
}

/* Stops srv (SIGTERM): it must exit 0 (a sanitizer report would not);
 * its log goes to stderr when some check failed. */
static void server_done(e2e_server *srv, const char *what)
{
    int st = e2e_server_stop(srv, e2e_failures > 0);
    E2E_CHECK(st == 0, "%s exits 0 (status %d)", what, st);
    if (e2e_failures)
        e2e_log_dump(srv);
}

static cc *caller(const char *app, const char *user)
{
    char code[128], desc[256];
    cc *c = cc_connect(port, app, user, NULL, NULL, code, desc, sizeof(code));
    if (!c)
        printf("# connect %s as %s failed: %s %s\n", app, user ? user : "-", code, desc);
    return c;
}

static soc *watcher(const char *path)
{
    soc *c = soc_connect(port, path, 0, 0);
    if (!c)
        printf("# so connect %s failed\n", path);
    return c;
}

/* ================================================================ chat */

static void test_chat(void)
{
    char *out = NULL;
    int rc = CLI(&out, "chat", "alice", "call", "room.post", "\"hello room\"");
    E2E_CHECK(rc == 0 && strstr(out, "\"id\":1") && strstr(out, "\"ts\":"),
              "alice posts with sohub-cli call room.post: _result {id 1, ts} (%s)", out);
    free(out);
    rc = CLI(&out, "chat", "bob", "call", "room.post", "\"hi alice\"");
    E2E_CHECK(rc == 0 && strstr(out, "\"id\":2"), "bob posts: id 2");
    free(out);
    rc = CLI(&out, "chat", NULL, "so", "get", "room", "--persistent");
    E2E_CHECK(rc == 0 &&
                  strstr(out, "\"1\":{\"id\":1,\"from\":\"alice\",\"text\":\"hello room\"") &&
                  strstr(out, "\"2\":{\"id\":2,\"from\":\"bob\",\"text\":\"hi alice\""),
              "so get room: both messages with from set by the server (%s)", out);
    free(out);

    rc = CLI(&out, "chat", NULL, "call", "room.post", "\"anonymous\"");
    E2E_CHECK(rc == 1 && strstr(out, "Room.Denied"), "posting without a user name: Room.Denied");
    free(out);
    rc = CLI(&out, "chat", "eve", "call", "room.post", "42");
    E2E_CHECK(rc == 1 && strstr(out, "Room.BadRequest"), "a number is not a text: Room.BadRequest");
    free(out);

    /* The room object is server-only: a client write is refused (rule 4). */
    rc = CLI(&out, "chat", "eve", "so", "set", "room", "2",
             "{\"id\":2,\"from\":\"alice\",\"text\":\"forged\"}", "--persistent");
    E2E_CHECK(rc == 1 && strstr(out, "SharedObject.NoWriteAccess"),
              "eve cannot forge a message: NoWriteAccess (%s)", out);
    free(out);
    soc *w = watcher("chat?user=eve");
    if (w) {
        soc_use(w, "room", 0, true);
        soc_settle(w, 100, 2000);
        soc_set_str(w, "room", soc_version(w, "room"), true, "1", "x");
        so_msg *m = soc_wait_event(w, "room", SO_EV_STATUS, 2000);
        soc_settle(w, 100, 1000);
        amf_value *v = soc_get(w, "room", "1");
        E2E_CHECK(m && v && amf_type_of(v) == AMF_OBJECT,
                  "so_client write refused with Status and the slot restored to the message");
        soc_msg_free(m);
        soc_close(w);
    }

    /* Private messages: chat send / chat listen (app/chat's methods). */
    char path[320];
    snprintf(path, sizeof(path), "%s/listen.out", tmpdir);
    char url[128];
    snprintf(url, sizeof(url), "rtmp://127.0.0.1:%d/chat", port);
    const char *largv[] = {cli_path, "-u", url, "--user", "bob", "chat", "listen", "--count",
                           "1", "--timeout", "10", NULL};
    unlink(path);
    pid_t lp = e2e_spawn(largv, path);
    e2e_sleep_ms(300);
    rc = CLI(&out, "chat", "alice", "chat", "send", "bob", "see you at noon");
    E2E_CHECK(rc == 0 && strstr(out, "\"status\":\"delivered\""),
              "chat send: delivered to bob's listener (%s)", out);
    free(out);
    int lrc = e2e_wait(lp, 10000);
    char *l = e2e_read_file(path, NULL);
    E2E_CHECK(lrc == 0 && l && strstr(l, "\"from\":\"alice\"") && strstr(l, "see you at noon"),
              "chat listen --count 1 printed the message and exited 0 (%d: %s)", lrc,
              l ? l : "");
    free(l);

    /* Presence: a connected user is in the presence object. */
    soc *p = watcher("chat?user=watcher");
    cc *carol = caller("chat", "carol");
    if (p) {
        soc_use(p, "presence", 0, false);
        soc_settle(p, 150, 2000);
        amf_value *cv = soc_get(p, "presence", "carol");
        E2E_CHECK(cv && amf_as_number(amf_object_get(cv, "connections")) == 1,
                  "presence has carol with one connection");
        E2E_CHECK(soc_get(p, "presence", "watcher") != NULL, "and the watcher itself");
        cc_close(carol);
        carol = NULL;
        soc_settle(p, 200, 2000);
        E2E_CHECK(soc_get(p, "presence", "carol") == NULL, "carol left: her slot is removed");
        soc_close(p);
    }
    cc_close(carol);

    /* The interactive room: lines typed on stdin. */
    snprintf(path, sizeof(path), "%s/room.out", tmpdir);
    const char *rargv[] = {cli_path, "-u", url, "--user", "dave", "chat", "room", NULL};
    int in = -1;
    pid_t rp = cli_spawn_stdin(rargv, path, &in);
    E2E_CHECK(rp > 0 && file_wait(path, "bob: hi alice", 3000),
              "chat room shows the history on join");
    E2E_CHECK(file_wait(path, "* online:", 3000), "and who is online");
    const char *lines = "good evening\n/msg bob are you there?\n/who\n";
    if (write(in, lines, strlen(lines)) < 0)
        perror("write");
    E2E_CHECK(file_wait(path, "dave: good evening", 3000), "a typed line is posted to the room");
    E2E_CHECK(file_wait(path, "-> bob (", 3000), "/msg sends a private message");
    rc = CLI(&out, "chat", "erin", "chat", "send", "dave", "hello dave");
    free(out);
    E2E_CHECK(file_wait(path, "(private) erin: hello dave", 3000),
              "a private message shows in the room client");
    rc = CLI(&out, "chat", "erin", "call", "room.post", "\"from outside\"");
    free(out);
    E2E_CHECK(file_wait(path, "erin: from outside", 3000), "another user's post shows at once");
    close(in);
    int st = e2e_wait(rp, 5000);
    E2E_CHECK(st == 0, "end of input ends chat room with status 0 (%d)", st);
    l = e2e_read_file(path, NULL);
    printf("# chat room output:\n%s", l ? l : "");
    free(l);
    rc = CLI(&out, "chat", NULL, "so", "get", "room", "--persistent");
    E2E_CHECK(strstr(out, "\"from\":\"dave\",\"text\":\"good evening\""),
              "the line dave typed is in the room object");
    free(out);
}

static void test_chat_bounded(void)
{
    cc *a = caller("chat/small", "alice");
    if (!a)
        return;
    for (int i = 1; i <= 5; i++) {
        amf_value *t = amf_string_cstr(i % 2 ? "odd" : "even");
        cc_answer ans;
        cc_call(a, "room.post", &t, 1, &ans);
        amf_unref(t);
    }
    cc_close(a);
    soc *w = watcher("chat/small");
    if (!w)
        return;
    soc_use(w, "room", 0, true);
    soc_settle(w, 150, 2000);
    soc_obj *o = soc_object(w, "room");
    E2E_CHECK(o && o->nslots == 3 && soc_get(w, "room", "3") && soc_get(w, "room", "5") &&
                  !soc_get(w, "room", "2"),
              "room_size = 3: the last three messages (3, 4, 5) are kept (%zu slots)",
              o ? o->nslots : 0);
    soc_close(w);
}

/* ================================================================ auction */

static double ans_num(const cc_answer *a) { return a->id; }

static int bid(cc *c, const char *item, double amount, cc_answer *a)
{
    amf_value *args[2] = {amf_string_cstr(item), amf_number(amount)};
    int r = cc_call(c, "auction.bid", args, 2, a);
    amf_unref(args[0]);
    amf_unref(args[1]);
    return r;
}

static void test_auction(void)
{
    char *out = NULL;
    int rc = CLI(&out, "auction", "bob", "call", "auction.create", "\"vase\"", "\"Ming vase\"",
                 "100", "60");
    E2E_CHECK(rc == 1 && strstr(out, "Auction.Denied"), "only the admin creates items");
    free(out);
    rc = CLI(&out, "auction", "admin", "call", "auction.create", "\"vase\"", "\"Ming vase\"",
             "100", "60", "5");
    E2E_CHECK(rc == 0 && strstr(out, "\"item\":\"vase\"") && strstr(out, "\"endsAt\":"),
              "admin creates vase (%s)", out);
    free(out);
    rc = CLI(&out, "auction", "admin", "call", "auction.create", "\"vase\"", "\"again\"", "1",
             "60");
    E2E_CHECK(rc == 1 && strstr(out, "Auction.Exists"), "an item id is created once");
    free(out);

    soc *w = watcher("auction");
    if (w) {
        soc_use(w, "items/vase", 0, true);
        soc_settle(w, 100, 2000);
        E2E_CHECK(soc_get_num(w, "items/vase", "price") == 100, "watcher sees the start price");
    }
    cc *bob = caller("auction", "bob"), *carol = caller("auction", "carol");
    if (!bob || !carol)
        return;
    cc_answer a;
    E2E_CHECK(bid(bob, "vase", 99, &a) == 0 && !a.ok && !strcmp(a.code, "Auction.TooLow"),
              "a first bid below the start price: TooLow");
    E2E_CHECK(bid(bob, "vase", 100, &a) == 0 && a.ok, "bob bids 100 (the start price): accepted");
    E2E_CHECK(bid(bob, "vase", 120, &a) == 0 && !a.ok && !strcmp(a.code, "Auction.AlreadyLeading"),
              "bob cannot outbid himself: AlreadyLeading");
    E2E_CHECK(bid(carol, "vase", 104, &a) == 0 && !a.ok && !strcmp(a.code, "Auction.TooLow") &&
                  strstr(a.desc, "105"),
              "carol bids below price + increment: TooLow naming 105 (%s)", a.desc);
    E2E_CHECK(bid(carol, "chair", 104, &a) == 0 && !a.ok && !strcmp(a.code, "Auction.NoSuchItem"),
              "no such item: NoSuchItem");
    E2E_CHECK(bid(carol, "vase", 105, &a) == 0 && a.ok, "carol bids 105: accepted");
    (void)ans_num;
    if (w) {
        soc_settle(w, 100, 2000);
        amf_value *leader = soc_get(w, "items/vase", "leader");
        E2E_CHECK(soc_get_num(w, "items/vase", "price") == 105 && amf_is_string(leader, "carol") &&
                      soc_get_num(w, "items/vase", "bids") == 2,
                  "the watcher sees price 105, leader carol, 2 bids");
        /* Server-only: a client cannot set the price. */
        soc_set_num(w, "items/vase", soc_version(w, "items/vase"), true, "price", 1);
        so_msg *m = soc_wait_event(w, "items/vase", SO_EV_STATUS, 2000);
        soc_settle(w, 100, 1000);
        E2E_CHECK(m && soc_get_num(w, "items/vase", "price") == 105,
                  "a client write to an item is refused and the price restored");
        soc_msg_free(m);
    }

    /* Two bidders race with the same amount: exactly one wins. */
    cc *dave = caller("auction", "dave"), *erin = caller("auction", "erin");
    if (dave && erin) {
        amf_value *args[2] = {amf_string_cstr("vase"), amf_number(200)};
        double t1 = cc_call_async(dave, "auction.bid", args, 2);
        double t2 = cc_call_async(erin, "auction.bid", args, 2);
        amf_unref(args[0]);
        amf_unref(args[1]);
        cc_answer a1, a2;
        int r1 = cc_wait(dave, t1, &a1, 5000), r2 = cc_wait(erin, t2, &a2, 5000);
        E2E_CHECK(r1 == 0 && r2 == 0 && a1.ok != a2.ok,
                  "equal bids of dave and erin: exactly one accepted (%d %d)", a1.ok, a2.ok);
        E2E_CHECK((a1.ok ? !strcmp(a2.code, "Auction.TooLow") : !strcmp(a1.code, "Auction.TooLow")),
                  "the other gets TooLow");
    }
    cc_close(dave);
    cc_close(erin);
    cc_close(bob);
    cc_close(carol);
    soc_close(w);
}

/* A short auction with anti-sniping (window 1500 ms, extend 1500 ms). */
static void test_auction_end(void)
{
    cc *admin = caller("auction/quick", "admin"), *bob = caller("auction/quick", "bob");
    soc *w = watcher("auction/quick");
    if (!admin || !bob || !w)
        goto out;
    amf_value *args[4] = {amf_string_cstr("lamp"), amf_string_cstr("Lamp"), amf_number(10),
                          amf_number(2)};
    cc_answer a;
    int r = cc_call(admin, "auction.create", args, 4, &a);
    for (int i = 0; i < 4; i++)
        amf_unref(args[i]);
    E2E_CHECK(r == 0 && a.ok, "lamp created for 2 s");
    soc_use(w, "items/lamp", 0, true);
    soc_settle(w, 100, 2000);
    double ends0 = soc_get_num(w, "items/lamp", "endsAt");
    e2e_sleep_ms(1000);
    /* 1 s left < window 1.5 s: the end moves to now + 1.5 s. */
    E2E_CHECK(bid(bob, "lamp", 10, &a) == 0 && a.ok, "bob bids in the last second");
    soc_settle(w, 100, 2000);
    double ends1 = soc_get_num(w, "items/lamp", "endsAt");
    E2E_CHECK(ends1 > ends0 + 300, "anti-sniping moved the end (%.0f -> %.0f)", ends0, ends1);
    so_msg *m = soc_wait_event(w, "items/lamp", SO_EV_SEND_MESSAGE, 6000);
    const so_event *ev = m ? soc_event(m, SO_EV_SEND_MESSAGE, 0) : NULL;
    E2E_CHECK(ev && !strcmp(ev->handler, "auctionClosed") && ev->nargs == 1 &&
                  amf_is_string(amf_object_get(ev->args[0], "winner"), "bob") &&
                  amf_as_number(amf_object_get(ev->args[0], "price")) == 10,
              "at the end the server sends auctionClosed {winner bob, price 10}");
    soc_msg_free(m);
    soc_settle(w, 100, 1000);
    amf_value *st = soc_get(w, "items/lamp", "state");
    E2E_CHECK(amf_is_string(st, "closed") && amf_is_string(soc_get(w, "items/lamp", "winner"), "bob"),
              "the item shows state closed, winner bob");
    E2E_CHECK(bid(bob, "lamp", 100, &a) == 0 && !a.ok && !strcmp(a.code, "Auction.Closed"),
              "a bid after the end: Auction.Closed");
out:
    cc_close(admin);
    cc_close(bob);
    soc_close(w);
}

/* A bid whose _result arrived survives a SIGKILL; the timer comes back. */
static void test_auction_restart(void)
{
    e2e_server s1, s2;
    /* Grouped commits at most every 1.5 s: an answer sent only once the bid
     * is stored must wait for the next batch. */
    if (e2e_server_start(&s1, "[app *]\ncommit_interval_ms = 1500\n"
                              "[sample auction]\nsnipe_window_ms = 0\n", NULL) != 0)
        return;
    int old = port;
    port = s1.port;
    cc *admin = caller("auction/r", "admin"), *bob = caller("auction/r", "bob");
    cc_answer a;
    bool ok = false;
    if (admin && bob) {
        amf_value *args[4] = {amf_string_cstr("clock"), amf_string_cstr("Clock"), amf_number(50),
                              amf_number(3)};
        cc_call(admin, "auction.create", args, 4, &a);
        for (int i = 0; i < 4; i++)
            amf_unref(args[i]);
        int64_t t0 = e2e_now_ms();
        ok = bid(bob, "clock", 75, &a) == 0 && a.ok;
        int64_t dt = e2e_now_ms() - t0;
        if (!s1.nodes)
            E2E_CHECK(ok && dt >= 700,
                      "the bid's _result waited for the grouped commit (%lld ms)", (long long)dt);
        else /* commit_interval_ms groups SQLite commits; Redis stores each write at once */
            printf("# cluster: the bid was answered in %lld ms\n", (long long)dt);
    }
    E2E_CHECK(ok, "bob's bid of 75 was answered _result");
    cc_close(admin);
    cc_close(bob);
    e2e_server_kill(&s1, SIGKILL);
    e2e_server_wait(&s1, 5000);
    const char *extra[] = {"--data-dir", s1.data_dir, NULL};
    if (e2e_server_start(&s2, "[app *]\n[sample auction]\nsnipe_window_ms = 0\n", extra) != 0) {
        e2e_server_stop(&s1, false);
        port = old;
        return;
    }
    port = s2.port;
    soc *w = watcher("auction/r");
    if (w) {
        soc_use(w, "items/clock", 0, true);
        soc_settle(w, 150, 2000);
        E2E_CHECK(soc_get_num(w, "items/clock", "price") == 75 &&
                      amf_is_string(soc_get(w, "items/clock", "leader"), "bob"),
                  "after SIGKILL and restart: price 75, leader bob");
        /* The end may have passed while the server was down (then it
         * closes at once, maybe before this Use): look at the state. */
        int64_t end = e2e_now_ms() + 8000;
        while (!amf_is_string(soc_get(w, "items/clock", "state"), "closed") &&
               e2e_now_ms() < end)
            soc_pump(w, 100);
        E2E_CHECK(amf_is_string(soc_get(w, "items/clock", "state"), "closed") &&
                      amf_is_string(soc_get(w, "items/clock", "winner"), "bob"),
                  "the restarted server closes the item at its end (timer set again), "
                  "winner bob");
        soc_close(w);
    }
    server_done(&s2, "the restarted server");
    e2e_server_stop(&s1, false);
    port = old;
}

/* ================================================================ slideshow */

static void test_slideshow(void)
{
    soc *alice = watcher("slideshow/talk?user=alice");
    e2e_sleep_ms(100);
    soc *bob = watcher("slideshow/talk?user=bob");
    if (!alice || !bob)
        return;
    soc_use(alice, "show", 0, true);
    soc_use(bob, "show", 0, true);
    soc_settle(alice, 100, 2000);
    soc_settle(bob, 100, 2000);
    soc_set_num(alice, "show", soc_version(alice, "show"), true, "slide", 2);
    soc_settle(alice, 100, 2000);
    soc_settle(bob, 100, 2000);
    E2E_CHECK(soc_get_num(bob, "show", "slide") == 2,
              "alice (first to connect) presents: bob sees slide 2");
    soc_set_num(bob, "show", soc_version(bob, "show"), true, "slide", 9);
    so_msg *m = soc_wait_event(bob, "show", SO_EV_STATUS, 2000);
    const so_event *ev = m ? soc_event(m, SO_EV_STATUS, 0) : NULL;
    soc_settle(bob, 100, 1000);
    E2E_CHECK(ev && !strcmp(ev->code, "SharedObject.NoWriteAccess") &&
                  soc_get_num(bob, "show", "slide") == 2,
              "bob's write: NoWriteAccess and his copy back on slide 2");
    soc_msg_free(m);

    char *out = NULL;
    int rc = CLI(&out, "slideshow/talk", "carol", "so", "get", "show", "--persistent");
    E2E_CHECK(rc == 0 && strstr(out, "\"slide\":2"), "carol joining late is on slide 2 (%s)", out);
    free(out);
    rc = CLI(&out, "slideshow/talk", "bob", "call", "slideshow.handoff", "\"bob\"");
    E2E_CHECK(rc == 1 && strstr(out, "Slideshow.Denied"), "a viewer cannot take over");
    free(out);
    rc = CLI(&out, "slideshow/talk", "alice", "call", "slideshow.handoff", "\"bob\"");
    E2E_CHECK(rc == 0 && strstr(out, "\"presenter\":\"bob\""), "alice hands over to bob");
    free(out);
    soc_set_num(bob, "show", soc_version(bob, "show"), true, "slide", 3);
    soc_settle(bob, 100, 2000);
    soc_settle(alice, 100, 2000);
    E2E_CHECK(soc_get_num(alice, "show", "slide") == 3,
              "bob's connection, open before the hand-off, now writes: alice sees slide 3");
    rc = CLI(&out, "slideshow/talk", "alice", "so", "set", "show", "slide", "1", "--persistent");
    E2E_CHECK(rc == 1 && strstr(out, "NoWriteAccess"), "alice is a viewer now");
    free(out);
    rc = CLI(&out, "slideshow/talk", NULL, "so", "get", "stage", "--persistent");
    E2E_CHECK(strstr(out, "\"presenter\":\"bob\""), "the stage object names bob");
    free(out);
    soc_close(alice);
    soc_close(bob);
}

static void test_slideshow_configured(void)
{
    char *out = NULL;
    int rc = CLI(&out, "slideshow/keynote", "mallory", "so", "set", "show", "slide", "5",
                 "--persistent");
    E2E_CHECK(rc == 1 && strstr(out, "NoWriteAccess"),
              "presenter = zoe in the settings: the first to connect does not present");
    free(out);
    rc = CLI(&out, "slideshow/keynote", "zoe", "so", "set", "show", "slide", "5", "--persistent");
    E2E_CHECK(rc == 0, "zoe presents");
    free(out);
}

/* ================================================================ idle instances */

/* Sum of N over the server's "so: N idle rooms left memory" lines. */
static size_t unloaded_total(const e2e_server *s)
{
    char *log = e2e_log_read(s);
    size_t total = 0;
    const char *needle = " idle rooms left memory";
    for (const char *p = log ? strstr(log, needle) : NULL; p; p = strstr(p + 1, needle)) {
        const char *d = p;
        while (d > log && d[-1] >= '0' && d[-1] <= '9')
            d--;
        if (d < p && d - log >= 4 && !strncmp(d - 4, "so: ", 4))
            total += strtoul(d, NULL, 10);
    }
    free(log);
    return total;
}

/* Waits (bounded) until the server unloaded at least want rooms in all. */
static bool unloaded_wait(const e2e_server *s, size_t want, int timeout_ms)
{
    int64_t end = e2e_now_ms() + timeout_ms;
    while (unloaded_total(s) < want && e2e_now_ms() < end)
        e2e_sleep_ms(100);
    return unloaded_total(s) >= want;
}

static bool post(cc *c, const char *text, double *id)
{
    amf_value *t = amf_string_cstr(text);
    cc_answer a;
    int r = cc_call(c, "room.post", &t, 1, &a);
    amf_unref(t);
    *id = a.id;
    return r == 0 && a.ok;
}

#define MANY 12

/* Chat: instances nobody uses any more leave memory; coming back shows
 * the history and the ids go on. */
static void idle_chat(const e2e_server *s)
{
    size_t before = unloaded_total(s);
    int posted = 0;
    for (int i = 0; i < MANY; i++) {
        char path[64], user[32], text[32];
        snprintf(path, sizeof(path), "chat/many%d", i);
        snprintf(user, sizeof(user), "u%d", i);
        cc *c = caller(path, user);
        for (int k = 1; c && k <= (i == 3 ? 3 : 1); k++) {
            double id = 0;
            snprintf(text, sizeof(text), "m%d-%d", i, k);
            posted += post(c, text, &id) && id == k;
        }
        cc_close(c);
    }
    E2E_CHECK(posted == MANY + 2, "%d posts in %d chat instances, ids from 1 in each", posted,
              MANY);
    E2E_CHECK(e2e_log_wait(s, "idle rooms left memory", 10000),
              "the server logs idle rooms leaving memory");
    E2E_CHECK(unloaded_wait(s, before + MANY, 10000),
              "all %d chat rooms left memory once their clients left (%zu unloaded)", MANY,
              unloaded_total(s) - before);

    soc *w = watcher("chat/many3?user=zed");
    cc *c = caller("chat/many3", "u3");
    if (w && c) {
        soc_use(w, "room", 0, true);
        soc_use(w, "presence", 0, false);
        soc_settle(w, 150, 2000);
        amf_value *m1 = soc_get(w, "room", "1"), *m3 = soc_get(w, "room", "3");
        E2E_CHECK(m1 && amf_is_string(amf_object_get(m1, "text"), "m3-1") && m3 &&
                      amf_is_string(amf_object_get(m3, "from"), "u3") &&
                      soc_object(w, "room")->nslots == 3,
                  "back in chat/many3: the three messages are there");
        double id = 0;
        E2E_CHECK(post(c, "back again", &id) && id == 4, "the next post gets id 4 (%g)", id);
        soc_settle(w, 150, 2000);
        amf_value *m4 = soc_get(w, "room", "4");
        E2E_CHECK(m4 && amf_is_string(amf_object_get(m4, "text"), "back again"),
                  "and the watcher sees it as message 4");
        amf_value *pz = soc_get(w, "presence", "zed"), *pu = soc_get(w, "presence", "u3");
        E2E_CHECK(pz && amf_as_number(amf_object_get(pz, "connections")) == 1 && pu &&
                      amf_as_number(amf_object_get(pu, "connections")) == 1 &&
                      soc_object(w, "presence")->nslots == 2,
                  "presence lists only who is here now, once each");
    }
    cc_close(c);
    soc_close(w);
    E2E_CHECK(unloaded_wait(s, before + MANY + 1, 10000),
              "left again, chat/many3 leaves memory again");
}

static bool create_item(cc *c, const char *id, const char *title, double start, double dur)
{
    amf_value *args[4] = {amf_string_cstr(id), amf_string_cstr(title), amf_number(start),
                          amf_number(dur)};
    cc_answer a;
    int r = cc_call(c, "auction.create", args, 4, &a);
    for (int i = 0; i < 4; i++)
        amf_unref(args[i]);
    return r == 0 && a.ok;
}

/* Auction: empty instances leave memory; one with an open item stays until
 * its timer closed the item, with nobody connected; coming back shows the
 * item, its highest bid and winner. */
static void idle_auction(const e2e_server *s)
{
    size_t before = unloaded_total(s);
    int n = 0;
    for (int i = 0; i < MANY; i++) {
        char path[64];
        snprintf(path, sizeof(path), "auction/empty%d", i);
        cc *c = caller(path, "bob");
        n += c != NULL;
        cc_close(c);
    }
    E2E_CHECK(n == MANY, "%d auction instances visited", n);
    cc *admin = caller("auction/lot", "admin"), *bob = caller("auction/lot", "bob"),
       *carol = caller("auction/lot", "carol");
    cc_answer a;
    E2E_CHECK(admin && bob && carol && create_item(admin, "lamp", "Lamp", 10, 2) &&
                  bid(bob, "lamp", 15, &a) == 0 && a.ok && bid(carol, "lamp", 20, &a) == 0 &&
                  a.ok,
              "auction/lot: lamp for 2 s, bob bids 15, carol 20");
    cc_close(admin);
    cc_close(bob);
    cc_close(carol);
    E2E_CHECK(unloaded_wait(s, before + MANY, 10000),
              "the %d empty auction instances left memory (%zu unloaded)", MANY,
              unloaded_total(s) - before);
    /* Nobody is connected to auction/lot now: its item still closes. */
    E2E_CHECK(e2e_log_wait(s, "auction: lot/lamp closed, winner carol at 20", 8000),
              "with nobody connected, the lamp closes at its end (winner carol at 20)");
    E2E_CHECK(unloaded_wait(s, before + MANY + 1, 10000),
              "then auction/lot leaves memory too");

    soc *w = watcher("auction/lot");
    admin = caller("auction/lot", "admin");
    bob = caller("auction/lot", "bob");
    if (w && admin && bob) {
        soc_use(w, "items/lamp", 0, true);
        soc_use(w, "catalog", 0, true);
        soc_settle(w, 150, 2000);
        E2E_CHECK(soc_get_num(w, "items/lamp", "price") == 20 &&
                      amf_is_string(soc_get(w, "items/lamp", "leader"), "carol") &&
                      soc_get_num(w, "items/lamp", "bids") == 2 &&
                      amf_is_string(soc_get(w, "items/lamp", "state"), "closed") &&
                      amf_is_string(soc_get(w, "items/lamp", "winner"), "carol"),
                  "back in auction/lot: lamp at 20 (2 bids), closed, winner carol");
        amf_value *cat = soc_get(w, "catalog", "lamp");
        E2E_CHECK(cat && amf_is_string(amf_object_get(cat, "state"), "closed"),
                  "the catalog lists the lamp as closed");
        E2E_CHECK(!create_item(admin, "lamp", "Lamp again", 1, 60),
                  "the item is known again: creating lamp a second time is refused");
        E2E_CHECK(bid(bob, "lamp", 30, &a) == 0 && !a.ok && !strcmp(a.code, "Auction.Closed"),
                  "and a bid on it is Auction.Closed (%s)", a.code);
        /* A new item in the reloaded instance takes bids as usual. */
        E2E_CHECK(create_item(admin, "rug", "Rug", 5, 60) && bid(bob, "rug", 5, &a) == 0 && a.ok,
                  "a new item in the reloaded instance: created, bob's bid accepted");
    }
    soc_close(w);
    cc_close(admin);
    cc_close(bob);
    /* The rug is open for 60 s: its timer keeps auction/lot in memory. */
    e2e_sleep_ms(2500);
    /* In a cluster the count is over every node, and a node that had the
     * instance without the rug's timer may let it go: only one server's
     * count tells that this instance stayed. */
    if (!s->nodes)
        E2E_CHECK(unloaded_total(s) == before + MANY + 1,
                  "an instance with an open item stays while nobody is connected (%zu unloaded)",
                  unloaded_total(s) - before);
    bob = caller("auction/lot", "bob");
    cc *dave = caller("auction/lot", "dave");
    E2E_CHECK(bob && dave && bid(dave, "rug", 5, &a) == 0 && !a.ok &&
                  !strcmp(a.code, "Auction.TooLow") && bid(dave, "rug", 6, &a) == 0 && a.ok,
              "and keeps its bids: dave needs 6 on the rug");
    cc_close(bob);
    cc_close(dave);
}

/* Slideshow: instances leave memory; the current slide and the presenter
 * are the same after coming back. */
static void idle_slideshow(const e2e_server *s)
{
    size_t before = unloaded_total(s);
    int n = 0;
    for (int i = 0; i < MANY; i++) {
        char path[64];
        snprintf(path, sizeof(path), "slideshow/s%d?user=p%d", i, i);
        soc *c = watcher(path);
        if (c) {
            soc_use(c, "show", 0, true);
            n += soc_pump(c, 200) >= 0;
        }
        soc_close(c);
    }
    E2E_CHECK(n == MANY, "%d slideshow instances visited", n);
    soc *alice = watcher("slideshow/deck?user=alice");
    e2e_sleep_ms(100);
    soc *bob = watcher("slideshow/deck?user=bob");
    if (alice && bob) {
        soc_use(alice, "show", 0, true);
        soc_use(bob, "show", 0, true);
        soc_settle(alice, 100, 2000);
        soc_set_num(alice, "show", soc_version(alice, "show"), true, "slide", 4);
        soc_settle(alice, 100, 2000);
        soc_settle(bob, 100, 2000);
        E2E_CHECK(soc_get_num(bob, "show", "slide") == 4, "alice presents deck: slide 4");
    }
    soc_close(alice);
    soc_close(bob);
    E2E_CHECK(unloaded_wait(s, before + MANY + 1, 10000),
              "the %d slideshow rooms and deck left memory (%zu unloaded)", MANY,
              unloaded_total(s) - before);

    soc *carol = watcher("slideshow/deck?user=carol");
    if (carol) {
        soc_use(carol, "show", 0, true);
        soc_settle(carol, 150, 2000);
        E2E_CHECK(soc_get_num(carol, "show", "slide") == 4, "back in deck: carol is on slide 4");
    }
    char *out = NULL;
    CLI(&out, "slideshow/deck", NULL, "so", "get", "stage", "--persistent");
    E2E_CHECK(strstr(out, "\"presenter\":\"alice\""), "alice still presents (%s)", out);
    free(out);
    int rc = CLI(&out, "slideshow/deck", "bob", "so", "set", "show", "slide", "9", "--persistent");
    E2E_CHECK(rc == 1 && strstr(out, "NoWriteAccess"), "bob is still a viewer");
    free(out);
    rc = CLI(&out, "slideshow/deck", "alice", "so", "set", "show", "slide", "5", "--persistent");
    E2E_CHECK(rc == 0, "alice moves on to slide 5 (%s)", out);
    free(out);
    if (carol) {
        soc_settle(carol, 150, 2000);
        E2E_CHECK(soc_get_num(carol, "show", "slide") == 5, "carol follows to slide 5");
    }
    soc_close(carol);
    E2E_CHECK(unloaded_wait(s, before + MANY + 2, 10000), "left again, deck leaves memory again");
}

/* The samples free an instance with its object handles when its last
 * client leaves (and, for the auction, its last item timer fired): the
 * engine's idle unload (so_unload_idle_s = 1 here) can only free a room
 * once nobody holds it, and logs how many rooms it freed. */
static void test_idle_instances(void)
{
    e2e_server s;
    const char *extra[] = {"--set", "so_unload_idle_s=1", "--log-level", "info", NULL};
    if (e2e_server_start(&s, "[sample auction]\nsnipe_window_ms = 0\n", extra) != 0)
        return;
    int old = port;
    port = s.port;
    idle_chat(&s);
    idle_auction(&s);
    idle_slideshow(&s);
    server_done(&s, "the server of the idle checks");
    port = old;
}

/* A bad [sample] setting stops the start with the file and line, like any
 * other bad setting. */
static void test_bad_settings(void)
{
    e2e_server s;
    int rc = e2e_server_start(&s, "[sample auction]\nadmin = root\nsnipe_window_ms = soon\n", NULL);
    E2E_CHECK(rc != 0, "a server with a bad [sample] value does not start");
    if (rc == 0) {
        e2e_server_stop(&s, false);
        return;
    }
}

int main(void)
{
    cli_path = getenv("SOHUB_CLI");
    if (!cli_path || access(cli_path, X_OK) != 0) {
        printf("1..0 # SKIP SOHUB_CLI not set\n");
        return E2E_SKIP;
    }
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sohub-samples-XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    signal(SIGPIPE, SIG_IGN);
    e2e_server srv;
    if (e2e_server_start(&srv, NULL, NULL) != 0)
        return 1;
    port = srv.port;
    test_chat();
    test_auction();
    test_slideshow();
    server_done(&srv, "the server, on SIGTERM,");

    /* [sample] settings in the server's config file: room size,
     * anti-sniping, presenter.  A config file with no [app] section still
     * serves the samples. */
    if (e2e_server_start(&srv, "[sample chat]\nroom_size = 3\n"
                               "[sample auction]\nsnipe_window_ms = 1500\nsnipe_extend_ms = 1500\n"
                               "[sample slideshow]\npresenter = zoe\n", NULL) != 0)
        return 1;
    port = srv.port;
    E2E_CHECK(e2e_log_wait(&srv, "room_size=3", 2000), "the settings file was read");
    test_chat_bounded();
    test_auction_end();
    test_slideshow_configured();
    server_done(&srv, "the server with settings");
    test_auction_restart();
    test_idle_instances();
    test_bad_settings();

    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmpdir);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
