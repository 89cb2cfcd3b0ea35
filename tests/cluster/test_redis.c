/* test_redis.c - app/redis.c against a real redis-server started here.
 *
 * The server runs on a free loopback port with its own directory and no
 * persistence.  Checked: commands and scripts, subscriptions and their READY,
 * a Redis killed (-9) under pending commands (NULL replies, LOST, commands
 * refused while down, reconnect with the scripts loaded again, READY again),
 * a Redis stopped (SIGSTOP: the command time-out), unsubscribe and subscribe
 * again before Redis answered, and max_pending.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include "harness.h"
#include "redis.h"
#include "sh_err.h"

typedef struct redis_proc {
    pid_t pid;
    int port;
    char dir[128];
} redis_proc;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &n) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int redis_start(redis_proc *p)
{
    char port[16], log[200];
    snprintf(port, sizeof(port), "%d", p->port);
    snprintf(log, sizeof(log), "%s/redis.log", p->dir);
    const char *argv[] = {"redis-server", "--port", port, "--bind", "127.0.0.1",
                          "--dir", p->dir, "--save", "", "--appendonly", "no",
                          "--daemonize", "no", NULL};
    p->pid = e2e_spawn(argv, log);
    for (int i = 0; i < 100 && p->pid > 0; i++) {
        int fd = e2e_tcp_connect(p->port);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        e2e_sleep_ms(50);
    }
    return -1;
}

static void redis_kill(redis_proc *p, int sig)
{
    kill(p->pid, sig);
    if (sig == SIGKILL || sig == SIGTERM)
        e2e_wait(p->pid, 5000);
}

/* ---- a small test rig: counts what the callbacks saw ---- */
typedef struct rig {
    uv_loop_t loop;
    app_redis *cmd, *sub;
    int ups, downs;
    int replies, null_replies, errors;
    char last[256];
    int ready, messages, lost;
    char last_msg[256];
} rig;

static void on_state(app_redis *r, bool up, void *ud)
{
    rig *g = ud;
    (void)r;
    if (up)
        g->ups++;
    else
        g->downs++;
}

static void on_reply(app_redis *r, redisReply *rep, void *ud)
{
    rig *g = ud;
    (void)r;
    if (!rep) {
        g->null_replies++;
        return;
    }
    g->replies++;
    if (rep->type == REDIS_REPLY_ERROR)
        g->errors++;
    if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS ||
        rep->type == REDIS_REPLY_ERROR)
        snprintf(g->last, sizeof(g->last), "%.*s", (int)rep->len, rep->str);
    else if (rep->type == REDIS_REPLY_INTEGER)
        snprintf(g->last, sizeof(g->last), "%lld", rep->integer);
    else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
             rep->element[1]->type == REDIS_REPLY_INTEGER) /* PUBSUB NUMSUB */
        snprintf(g->last, sizeof(g->last), "%lld", rep->element[1]->integer);
}

static void on_sub(app_redis *r, app_redis_sub_event ev, const char *msg, size_t len, void *ud)
{
    rig *g = ud;
    (void)r;
    if (ev == APP_REDIS_SUB_READY)
        g->ready++;
    else if (ev == APP_REDIS_SUB_LOST)
        g->lost++;
    else {
        g->messages++;
        snprintf(g->last_msg, sizeof(g->last_msg), "%.*s", (int)len, msg);
    }
}

/* Runs the loop until cond holds or timeout_ms passes. */
#define RUN_UNTIL(g, cond, timeout_ms)                                       \
    do {                                                                      \
        int64_t t_end_ = e2e_now_ms() + (timeout_ms);                         \
        while (!(cond) && e2e_now_ms() < t_end_)                              \
            uv_run(&(g)->loop, UV_RUN_ONCE);                                  \
    } while (0)

static int cmd(rig *g, const char *a0, const char *a1, const char *a2)
{
    const char *argv[3] = {a0, a1, a2};
    size_t lens[3] = {strlen(a0), a1 ? strlen(a1) : 0, a2 ? strlen(a2) : 0};
    int argc = a2 ? 3 : a1 ? 2 : 1;
    return app_redis_cmd(g->cmd, on_reply, g, argc, argv, lens);
}

static app_redis_script echo_script;

int main(void)
{
    if (!e2e_have("redis-server")) {
        printf("1..0 # SKIP redis-server is not installed\n");
        return E2E_SKIP;
    }
    redis_proc rp = {.port = free_port()};
    snprintf(rp.dir, sizeof(rp.dir), "/tmp/sohub-redis-XXXXXX");
    if (rp.port < 0 || !mkdtemp(rp.dir) || redis_start(&rp) != 0) {
        printf("Bail out! could not start redis-server\n");
        return 1;
    }
    app_redis_script_init(&echo_script, "echo",
                          "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}");
    rig g = {0};
    uv_loop_init(&g.loop);
    app_redis_opts o = {.host = "127.0.0.1", .port = rp.port, .name = "cmd",
                        .timeout_ms = 500, .max_pending = 4, .on_state = on_state, .ud = &g};
    g.cmd = app_redis_new(&g.loop, &o);
    app_redis_add_script(g.cmd, &echo_script);
    app_redis_opts os = o;
    os.name = "sub";
    os.on_state = NULL;
    g.sub = app_redis_new(&g.loop, &os);
    E2E_CHECK(cmd(&g, "PING", NULL, NULL) == SH_ESTATE, "a command before the connection is up is refused at once");
    RUN_UNTIL(&g, app_redis_up(g.cmd) && app_redis_up(g.sub), 3000);
    E2E_CHECK(app_redis_up(g.cmd) && g.ups == 1, "connected, scripts loaded, on_state(up) once");

    /* commands */
    E2E_CHECK(cmd(&g, "SET", "k", "v1") == 0, "SET sent");
    E2E_CHECK(cmd(&g, "GET", "k", NULL) == 0, "GET sent");
    RUN_UNTIL(&g, g.replies == 2, 2000);
    E2E_CHECK(g.replies == 2 && strcmp(g.last, "v1") == 0, "GET answers the value SET wrote (%s)", g.last);

    /* a script by its SHA-1 */
    const char *ea[2] = {"counter", "hello"};
    size_t el[2] = {7, 5};
    E2E_CHECK(app_redis_eval(g.cmd, &echo_script, on_reply, &g, 1, 2, ea, el) == 0, "EVALSHA sent");
    int before = g.replies;
    RUN_UNTIL(&g, g.replies == before + 1, 2000);
    E2E_CHECK(g.replies == before + 1 && g.errors == 0, "the script ran by its SHA-1 (no NOSCRIPT)");

    /* max_pending */
    int sent = 0, refused = 0;
    for (int i = 0; i < 6; i++) {
        int rc = cmd(&g, "PING", NULL, NULL);
        if (rc == 0)
            sent++;
        else if (rc == SH_ELIMIT)
            refused++;
    }
    E2E_CHECK(sent == 4 && refused == 2, "max_pending 4: 4 sent, 2 refused with SH_ELIMIT (%d, %d)", sent, refused);
    before = g.replies;
    RUN_UNTIL(&g, g.replies == before + 4, 2000);
    E2E_CHECK(app_redis_pending(g.cmd) == 0, "every command answered, none pending");

    /* subscriptions */
    E2E_CHECK(app_redis_subscribe(g.sub, "room:1", 6, on_sub, &g) == 0, "subscribe");
    RUN_UNTIL(&g, g.ready == 1, 2000);
    E2E_CHECK(g.ready == 1, "READY once Redis confirmed the subscription");
    cmd(&g, "PUBLISH", "room:1", "m1");
    RUN_UNTIL(&g, g.messages == 1, 2000);
    E2E_CHECK(g.messages == 1 && strcmp(g.last_msg, "m1") == 0, "a published message arrives (%s)", g.last_msg);

    /* unsubscribe and subscribe again before Redis answered */
    app_redis_unsubscribe(g.sub, "room:1", 6);
    app_redis_subscribe(g.sub, "room:1", 6, on_sub, &g);
    RUN_UNTIL(&g, g.ready == 2, 2000);
    E2E_CHECK(g.ready == 2, "READY again after unsubscribe + subscribe (%d)", g.ready);
    cmd(&g, "PUBLISH", "room:1", "m2");
    RUN_UNTIL(&g, g.messages == 2, 2000);
    E2E_CHECK(g.messages == 2 && strcmp(g.last_msg, "m2") == 0, "messages still arrive after it");
    app_redis_unsubscribe(g.sub, "room:1", 6);
    int64_t t_end = e2e_now_ms() + 2000;
    do { /* the UNSUBSCRIBE travels on the other connection */
        before = g.replies;
        cmd(&g, "PUBSUB", "NUMSUB", "room:1");
        RUN_UNTIL(&g, g.replies == before + 1, 2000);
    } while (strcmp(g.last, "0") != 0 && e2e_now_ms() < t_end);
    E2E_CHECK(strcmp(g.last, "0") == 0, "after unsubscribe Redis has no subscriber for the channel");
    app_redis_subscribe(g.sub, "room:1", 6, on_sub, &g);
    RUN_UNTIL(&g, g.ready == 3, 2000);

    /* Redis killed under a pending command */
    E2E_CHECK(cmd(&g, "BLPOP", "never", "0") == 0, "a blocking command is pending");
    RUN_UNTIL(&g, app_redis_pending(g.cmd) == 1, 200);
    redis_kill(&rp, SIGKILL);
    RUN_UNTIL(&g, g.downs == 1 && g.lost == 1, 3000);
    E2E_CHECK(g.null_replies == 1, "the pending command got its NULL reply");
    E2E_CHECK(g.downs == 1 && g.lost == 1, "on_state(down) and the subscription LOST");
    E2E_CHECK(cmd(&g, "PING", NULL, NULL) == SH_ESTATE, "while Redis is down commands are refused at once");
    if (redis_start(&rp) != 0) {
        printf("Bail out! redis-server did not restart\n");
        return 1;
    }
    RUN_UNTIL(&g, g.ups == 2 && g.ready == 4, 8000);
    E2E_CHECK(g.ups == 2, "reconnected after the restart");
    E2E_CHECK(g.ready == 4, "subscribed again by itself (READY)");
    before = g.replies;
    int errors = g.errors;
    app_redis_eval(g.cmd, &echo_script, on_reply, &g, 1, 2, ea, el);
    RUN_UNTIL(&g, g.replies == before + 1, 2000);
    E2E_CHECK(g.replies == before + 1 && g.errors == errors, "the script was loaded again into the new Redis");
    int rc = cmd(&g, "PUBLISH", "room:1", "m4");
    RUN_UNTIL(&g, g.messages == 3, 2000);
    E2E_CHECK(g.messages == 3 && strcmp(g.last_msg, "m4") == 0, "messages arrive on the new connection (%d %d %s)", rc, g.messages, g.last_msg);

    /* Redis stopped: the command time-out */
    redis_kill(&rp, SIGSTOP);
    int nulls = g.null_replies;
    int64_t t0 = e2e_now_ms();
    rc = cmd(&g, "PING", NULL, NULL);
    E2E_CHECK(rc == 0, "PING sent to the stopped Redis (%d)", rc);
    RUN_UNTIL(&g, g.null_replies == nulls + 1, 3000);
    int64_t waited = e2e_now_ms() - t0;
    E2E_CHECK(g.null_replies == nulls + 1 && waited >= 450 && waited < 2000,
              "a stopped Redis: the command fails after the 500 ms time-out (%lld ms)", (long long)waited);
    E2E_CHECK(g.downs == 2, "and the connection is dropped");
    redis_kill(&rp, SIGCONT);
    RUN_UNTIL(&g, g.ups == 3, 8000);
    E2E_CHECK(g.ups == 3, "connected again once Redis runs");

    app_redis_free(g.cmd);
    app_redis_free(g.sub);
    uv_run(&g.loop, UV_RUN_DEFAULT);
    E2E_CHECK(uv_loop_close(&g.loop) == 0, "every handle closed after app_redis_free");
    redis_kill(&rp, SIGKILL);
    char rm[200];
    snprintf(rm, sizeof(rm), "rm -rf %s", rp.dir);
    if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", rp.dir);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
