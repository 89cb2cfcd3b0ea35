/* test_store_offloop.c - no store read runs on the server's loop thread.
 *
 * The test makes every read of the server's database wait: it takes, from
 * its own process, the fcntl locks of all WAL read marks of sohub.db
 * (bytes 123..127 of sohub.db-shm, SQLite's WAL-index lock layout), so a
 * connection that starts a read transaction retries, sleeping, for
 * seconds.  While the locks are held, a client Uses a persistent object in
 * a room that is not in memory (a room load), a user with a stored
 * message connects (a chat user load and a page of messages) and the
 * server API reads an object of another room that is not in memory.  All
 * along, another client's echo must come back within ECHO_MAX_MS: on a
 * server that reads on its loop thread the echo waits for the locks.  The
 * waiting work must not be answered while the reads wait (else the locks
 * did not stop anything and the check proves nothing), and once the locks
 * go everything is answered with the stored data: nothing waited forever
 * or was lost. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "so_client.h"
#include "test_chat_client.h"

#define ECHO_MAX_MS 300
#define HOLD_MS 1500

static const char config[] = "[server]\n"
                             "admin_listen = 127.0.0.1:0\n"
                             "[api_key t]\n"
                             "secret = offloop-test-secret-0123\n"
                             "scope = read\n"
                             "[app *]\n"
                             "chat_rate = 1000\n";

/* Echo round trip of c, in ms (-1: no answer within 3 s). */
static int echo_ms(cc *c)
{
    amf_value *arg = amf_string_cstr("ping");
    int64_t t0 = e2e_now_ms();
    double txid = cc_call_async(c, "echo", &arg, 1);
    amf_unref(arg);
    cc_answer a;
    if (txid < 0 || cc_wait(c, txid, &a, 3000) != 0 || !a.ok)
        return -1;
    return (int)(e2e_now_ms() - t0);
}

/* Write locks on every WAL read mark of db's -shm file: fd, or -1. */
static int lock_reads(const char *data_dir)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/sohub.db-shm", data_dir);
    int fd = open(path, O_RDWR);
    if (fd < 0) {
        printf("# open %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 123, .l_len = 5};
    for (int i = 0; i < 100; i++) {
        if (fcntl(fd, F_SETLK, &fl) == 0)
            return fd;
        e2e_sleep_ms(10); /* a read of the server holds one now */
    }
    printf("# cannot lock the read marks: %s\n", strerror(errno));
    close(fd);
    return -1;
}

/* The admin port from the server's log line "admin ... 127.0.0.1:PORT". */
static int admin_port(const e2e_server *s)
{
    size_t len = 0;
    char *log = e2e_read_file(s->log_path, &len);
    int port = 0;
    for (char *p = log; p && (p = strstr(p, "admin")) != NULL; p++) {
        char *h = strstr(p, "127.0.0.1:");
        char *nl = strchr(p, '\n');
        if (h && (!nl || h < nl)) {
            port = atoi(h + 10);
            break;
        }
    }
    free(log);
    return port;
}

/* Sends a GET of the server API without waiting: the socket, or -1. */
static int api_get_start(int port, const char *path)
{
    int fd = e2e_tcp_connect(port);
    if (fd < 0)
        return -1;
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Authorization: Bearer offloop-test-secret-0123\r\n"
                     "Connection: close\r\n\r\n", path);
    if (e2e_send_all(fd, req, (size_t)n) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* What came back on fd within timeout_ms (0: what is there now). */
static size_t api_read(int fd, char *buf, size_t bufsz, int timeout_ms)
{
    size_t got = 0;
    int64_t end = e2e_now_ms() + timeout_ms;
    while (got + 1 < bufsz) {
        int left = (int)(end - e2e_now_ms());
        struct timeval tv = {.tv_sec = left > 0 ? left / 1000 : 0,
                             .tv_usec = left > 0 ? (left % 1000) * 1000 : 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        ssize_t r = recv(fd, buf + got, bufsz - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    return got;
}

/* Whether a message came (freed). */
static bool got(so_msg *m)
{
    bool ok = m != NULL;
    soc_msg_free(m);
    return ok;
}

int main(void)
{
    /* First run: the data the reads will fetch. */
    e2e_server first;
    if (e2e_server_start(&first, config, NULL) != 0)
        return 1;
    soc *w = soc_connect(first.port, "store/r1", 0, 0);
    bool seeded = w && soc_use(w, "obj", 0, true) == 0 &&
                  got(soc_wait_event(w, "obj", SO_EV_USE_SUCCESS, 5000)) &&
                  soc_set_num(w, "obj", 1, true, "k", 42) == 0 &&
                  got(soc_wait_event(w, "obj", SO_EV_SUCCESS, 5000));
    soc *w2 = seeded ? soc_connect(first.port, "store/r2", 0, 0) : NULL;
    seeded = w2 && soc_use(w2, "api", 0, true) == 0 &&
             got(soc_wait_event(w2, "api", SO_EV_USE_SUCCESS, 5000)) &&
             soc_set_num(w2, "api", 1, true, "n", 7) == 0 &&
             got(soc_wait_event(w2, "api", SO_EV_SUCCESS, 5000));
    cc *alice = cc_connect(first.port, "talk", "alice", NULL, NULL, NULL, NULL, 0);
    cc_answer a;
    seeded = seeded && alice && cc_send(alice, "bob", "stored for bob", NULL, &a) == 0 && a.ok &&
             strcmp(a.status, "queued") == 0;
    E2E_CHECK(seeded, "stored: obj.k = 42 in store/r1, api.n = 7 in store/r2, a message for bob");
    soc_close(w);
    soc_close(w2);
    cc_close(alice);
    E2E_CHECK(e2e_server_stop(&first, true) == 0, "first run stopped cleanly");

    /* Second run on the same data: nothing of it is in memory. */
    e2e_server srv;
    const char *extra[] = {"--data-dir", first.data_dir, NULL};
    if (e2e_server_start(&srv, config, extra) != 0)
        return 1;
    cc *pinger = cc_connect(srv.port, "echo", NULL, NULL, NULL, NULL, NULL, 0);
    E2E_CHECK(pinger && echo_ms(pinger) >= 0, "a client answers echo");
    int aport = admin_port(&srv);
    E2E_CHECK(aport > 0, "admin listener on port %d", aport);

    int lk = lock_reads(first.data_dir);
    E2E_CHECK(lk >= 0, "the test holds every WAL read lock of sohub.db");

    soc *user = soc_connect(srv.port, "store/r1", 0, 0);
    E2E_CHECK(user && soc_use(user, "obj", 0, true) == 0,
              "a client Uses obj in store/r1 (its room must be loaded)");
    cc *bob = cc_connect(srv.port, "talk", "bob", NULL, NULL, NULL, NULL, 0);
    E2E_CHECK(bob != NULL, "bob connects (his counters and stored messages must be read)");
    int api = aport > 0 ? api_get_start(aport, "/api/v1/apps/store/instances/r2/objects/api") : -1;
    E2E_CHECK(api >= 0, "the server API is asked for an object of store/r2 (not in memory)");

    int worst = 0, n = 0, lost = 0;
    for (int64_t end = e2e_now_ms() + HOLD_MS; e2e_now_ms() < end; n++) {
        int ms = pinger ? echo_ms(pinger) : -1;
        if (ms < 0)
            lost++;
        else if (ms > worst)
            worst = ms;
        e2e_sleep_ms(20);
    }
    E2E_CHECK(lost == 0 && worst <= ECHO_MAX_MS,
              "while the reads wait, the loop answers: %d echoes, slowest %d ms, %d unanswered",
              n, worst, lost);
    int pumped = user ? soc_pump(user, 0) : -1;
    char buf[4096];
    E2E_CHECK(pumped == 0 && soc_version(user, "obj") == 0,
              "the Use is not answered while the room cannot be read");
    if (bob)
        cc_pump(bob, 0);
    E2E_CHECK(bob && cc_private_count(bob) == 0, "bob's stored message waits for the read");
    E2E_CHECK(api >= 0 && api_read(api, buf, sizeof(buf), 0) == 0,
              "the API answer waits for the read");

    if (lk >= 0)
        close(lk); /* the locks go */
    so_msg *m = user ? soc_wait_event(user, "obj", SO_EV_USE_SUCCESS, 10000) : NULL;
    if (user)
        soc_settle(user, 100, 2000);
    E2E_CHECK(m && soc_get_num(user, "obj", "k") == 42,
              "then the Use is answered with the stored state (k = %g)",
              user ? soc_get_num(user, "obj", "k") : NAN);
    soc_msg_free(m);
    bool got = bob && cc_wait_privates(bob, 1, 10000);
    E2E_CHECK(got && strcmp(cc_private_at(bob, 0)->text, "stored for bob") == 0,
              "and bob gets his stored message");
    size_t len = api >= 0 ? api_read(api, buf, sizeof(buf), 10000) : 0;
    E2E_CHECK(len > 0 && strstr(buf, " 200 ") && strstr(buf, "\"n\":7"),
              "and the API answers with the stored object");
    E2E_CHECK(pinger && echo_ms(pinger) >= 0, "echo still answered");

    if (api >= 0)
        close(api);
    soc_close(user);
    cc_close(bob);
    cc_close(pinger);
    int st = e2e_server_stop(&srv, false);
    E2E_CHECK(st == 0, "clean stop (%d)", st);
    e2e_server_stop(&first, false);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
