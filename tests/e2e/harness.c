/* harness.c - see harness.h. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int e2e_failures;
int e2e_checks;

int64_t e2e_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void e2e_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

char *e2e_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap + 1);
    while (b) {
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (n < cap)
            break;
        cap *= 2;
        char *nb = realloc(b, cap + 1);
        if (!nb) {
            free(b);
            b = NULL;
        }
        b = nb;
    }
    fclose(f);
    if (b) {
        b[n] = '\0';
        if (len)
            *len = n;
    }
    return b;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

bool e2e_have(const char *name)
{
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    char buf[1024];
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t n = colon ? (size_t)(colon - path) : strlen(path);
        snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, name);
        if (access(buf, X_OK) == 0)
            return true;
        path += n;
        if (*path == ':')
            path++;
    }
    return false;
}

/* tied: the child gets SIGKILL when the test process dies (Linux), for the
 * cluster's helpers, which a crashed test must not leave running. */
static pid_t spawn(const char *const argv[], const char *out_path, bool tied)
{
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
#ifdef __linux__
        if (tied && (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent))
            _exit(127);
#else
        (void)tied;
        (void)parent;
#endif
        int in = open("/dev/null", O_RDONLY);
        int out = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (in >= 0)
            dup2(in, 0);
        if (out >= 0) {
            dup2(out, 1);
            dup2(out, 2);
        }
        setpgid(0, 0);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    setpgid(pid, pid);
    return pid;
}

pid_t e2e_spawn(const char *const argv[], const char *out_path)
{
    return spawn(argv, out_path, false);
}

static int status_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

int e2e_wait(pid_t pid, int timeout_ms)
{
    int64_t end = e2e_now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return status_code(st);
        if (r < 0)
            return -1;
        if (e2e_now_ms() >= end)
            return -2;
        e2e_sleep_ms(10);
    }
}

int e2e_run(const char *const argv[], const char *out_path, int timeout_ms, int *elapsed_ms)
{
    int64_t t0 = e2e_now_ms();
    pid_t pid = e2e_spawn(argv, out_path);
    if (pid < 0)
        return -1;
    int rc = e2e_wait(pid, timeout_ms);
    if (rc == -2) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        e2e_wait(pid, 5000);
    }
    if (elapsed_ms)
        *elapsed_ms = (int)(e2e_now_ms() - t0);
    return rc;
}

/* ---- cluster mode (see harness.h) ---- */

static void rm_rf(const char *dir);

int e2e_cluster_nodes(void)
{
    const char *v = getenv("SOHUB_E2E_CLUSTER");
    if (!v || !*v || strcmp(v, "0") == 0)
        return 0;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < 1 || n > E2E_MAX_NODES)
        return -1;
    return (int)n;
}

static int mkdir_p(const char *path)
{
    char buf[400];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* A loopback port nobody listens on now.  Someone may take it before our
 * process binds it: the callers retry with another one when that happens. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static bool exited(pid_t pid)
{
    int st;
    return waitpid(pid, &st, WNOHANG) != 0;
}

/* One redis-server per data directory, kept across the servers a test
 * starts on that directory. */
typedef struct e2e_redis {
    char data_dir[320];
    pid_t pid;
    int port;
} e2e_redis;

static e2e_redis redises[16];
static pid_t redis_owner; /* the test process; its forked children stop nothing */

static bool redis_ping(int port)
{
    int fd = e2e_tcp_connect(port);
    if (fd < 0)
        return false;
    char got[8] = {0};
    bool ok = e2e_send_all(fd, "PING\r\n", 6) == 0 && e2e_recv_exact(fd, got, 7, 1000) == 0 &&
              memcmp(got, "+PONG\r\n", 7) == 0;
    close(fd);
    return ok;
}

static void redis_stop(e2e_redis *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGTERM); /* Redis' shutdown: the AOF is flushed and synced */
        if (e2e_wait(r->pid, 10000) == -2) {
            fprintf(stderr, "e2e: redis-server ignored SIGTERM for 10 s, killing it\n");
            kill(r->pid, SIGKILL);
            e2e_wait(r->pid, 5000);
        }
    }
    memset(r, 0, sizeof(*r));
}

static void redis_stop_all(void)
{
    if (getpid() != redis_owner)
        return;
    for (size_t i = 0; i < sizeof(redises) / sizeof(redises[0]); i++)
        redis_stop(&redises[i]);
}

/* The Redis of data_dir: the running one, or one started on DATA/redis
 * (which reads its AOF when an earlier one left it).  NULL on failure. */
static e2e_redis *redis_for(const char *data_dir)
{
    e2e_redis *slot = NULL;
    for (size_t i = 0; i < sizeof(redises) / sizeof(redises[0]); i++) {
        e2e_redis *r = &redises[i];
        if (r->pid > 0 && strcmp(r->data_dir, data_dir) == 0) {
            if (!exited(r->pid))
                return r;
            memset(r, 0, sizeof(*r));
        }
        if (r->pid <= 0 && !slot)
            slot = r;
    }
    if (!slot) {
        fprintf(stderr, "e2e: too many redis-servers\n");
        return NULL;
    }
    if (!redis_owner) {
        redis_owner = getpid();
        atexit(redis_stop_all);
    }
    char dir[400], log[420], port[16];
    snprintf(dir, sizeof(dir), "%s/redis", data_dir);
    snprintf(log, sizeof(log), "%s/redis.log", dir);
    if (mkdir_p(dir) != 0) {
        fprintf(stderr, "e2e: cannot make %s: %s\n", dir, strerror(errno));
        return NULL;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        int p = free_port();
        snprintf(port, sizeof(port), "%d", p);
        const char *argv[] = {"redis-server", "--port", port, "--bind", "127.0.0.1",
                              "--dir", dir, "--save", "", "--appendonly", "yes",
                              "--appendfsync", "always", "--protected-mode", "yes", NULL};
        pid_t pid = spawn(argv, log, true);
        if (pid < 0)
            return NULL;
        int64_t end = e2e_now_ms() + 10000;
        while (e2e_now_ms() < end && !exited(pid) && !redis_ping(p))
            e2e_sleep_ms(20);
        if (redis_ping(p) && !exited(pid)) {
            snprintf(slot->data_dir, sizeof(slot->data_dir), "%s", data_dir);
            slot->pid = pid;
            slot->port = p;
            return slot;
        }
        kill(pid, SIGKILL);
        e2e_wait(pid, 5000);
        fprintf(stderr, "e2e: redis-server did not come up on port %d (%s)\n", p, log);
    }
    return NULL;
}

static const char *haproxy_path(void)
{
    const char *env = getenv("HAPROXY");
    if (env && *env)
        return access(env, X_OK) == 0 ? env : NULL;
    if (access("/usr/sbin/haproxy", X_OK) == 0)
        return "/usr/sbin/haproxy";
    return e2e_have("haproxy") ? "haproxy" : NULL;
}

/* HAProxy in TCP mode, round robin over the nodes: the k-th connection of
 * the test goes to node k mod N.  No health checks: every node is up
 * before it starts, and a test that kills the server kills every node. */
static int lb_start(e2e_server *s)
{
    const char *bin = haproxy_path();
    if (!bin) {
        fprintf(stderr, "e2e: cluster mode needs haproxy (Debian package haproxy)\n");
        return -1;
    }
    char cfg[400], sock[400], log[400];
    snprintf(cfg, sizeof(cfg), "%s/haproxy.cfg", s->dir);
    snprintf(sock, sizeof(sock), "%s/haproxy.sock", s->dir);
    snprintf(log, sizeof(log), "%s/haproxy.log", s->dir);
    for (int attempt = 0; attempt < 3; attempt++) {
        int port = free_port();
        FILE *f = fopen(cfg, "w");
        if (!f)
            return -1;
        fprintf(f,
                "global\n    maxconn 4000\n    stats socket %s mode 600 level admin\n"
                "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 1h\n"
                "    timeout server 1h\n    timeout client-fin 5s\n"
                "frontend sohub\n    bind 127.0.0.1:%d\n    default_backend nodes\n"
                "backend nodes\n    balance roundrobin\n",
                sock, port);
        for (int k = 0; k < s->nodes; k++)
            fprintf(f, "    server n%d 127.0.0.1:%d\n", k + 1, s->node_port[k]);
        if (fclose(f) != 0)
            return -1;
        unlink(sock);
        const char *argv[] = {bin, "-db", "-f", cfg, NULL};
        pid_t pid = spawn(argv, log, true);
        if (pid < 0)
            return -1;
        int64_t end = e2e_now_ms() + 10000;
        bool up = false;
        while (!up && e2e_now_ms() < end && !exited(pid)) {
            /* the stats socket is bound after the listeners: no connection
             * of our own, which would take a node's turn */
            up = access(sock, F_OK) == 0;
            if (!up)
                e2e_sleep_ms(20);
        }
        if (up) {
            e2e_sleep_ms(50); /* a listener it could not bind makes it exit */
            up = !exited(pid);
        }
        if (up) {
            s->lb_pid = pid;
            s->port = port;
            return 0;
        }
        kill(pid, SIGKILL);
        e2e_wait(pid, 5000);
        fprintf(stderr, "e2e: haproxy did not come up on port %d (%s)\n", port, log);
    }
    return -1;
}

static int node_start(e2e_server *s, int k, const char *bin, const char *config_text,
                      const char *const *extra)
{
    char cfg[400], data[400], port_path[400];
    snprintf(cfg, sizeof(cfg), "%s/n%d.ini", s->dir, k + 1);
    snprintf(data, sizeof(data), "%s/n%d", s->data_dir, k + 1);
    snprintf(port_path, sizeof(port_path), "%s/n%d.port", s->dir, k + 1);
    snprintf(s->node_log[k], sizeof(s->node_log[k]), "%s/n%d.log", s->dir, k + 1);
    FILE *f = fopen(cfg, "w");
    if (!f)
        return -1;
    fprintf(f, "%s\n[cluster]\nredis = 127.0.0.1:%d\nnode = n%d\n",
            config_text ? config_text : "", s->redis_port, k + 1);
    if (fclose(f) != 0 || mkdir_p(data) != 0)
        return -1;
    const char *argv[64];
    size_t n = 0;
    argv[n++] = bin;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--port-file";
    argv[n++] = port_path;
    argv[n++] = "--data-dir";
    argv[n++] = data;
    argv[n++] = "--log-level";
    argv[n++] = "debug";
    argv[n++] = "--config";
    argv[n++] = cfg;
    for (size_t i = 0; extra && extra[i] && n < 62; i++) {
        if (strcmp(extra[i], "--data-dir") == 0 && extra[i + 1]) {
            i++; /* the nodes' data directories are in it */
            continue;
        }
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    s->node_pid[k] = spawn(argv, s->node_log[k], true);
    return s->node_pid[k] > 0 ? 0 : -1;
}

/* Waits (bounded) for node k's port file and for its Redis links to be up. */
static int node_wait(e2e_server *s, int k, int64_t end)
{
    char port_path[400];
    snprintf(port_path, sizeof(port_path), "%s/n%d.port", s->dir, k + 1);
    while (e2e_now_ms() < end) {
        int st;
        if (waitpid(s->node_pid[k], &st, WNOHANG) == s->node_pid[k]) {
            fprintf(stderr, "e2e: node n%d exited early (status %d)\n", k + 1, status_code(st));
            s->node_pid[k] = 0;
            return -1;
        }
        if (!s->node_port[k]) {
            char *txt = e2e_read_file(port_path, NULL);
            if (txt)
                s->node_port[k] = atoi(txt);
            free(txt);
        }
        if (s->node_port[k] > 0) {
            char *log = e2e_read_file(s->node_log[k], NULL);
            bool up = log && strstr(log, "up: clustered");
            free(log);
            if (up)
                return 0;
        }
        e2e_sleep_ms(20);
    }
    fprintf(stderr, "e2e: node n%d did not come up in time\n", k + 1);
    return -1;
}

static void cluster_kill_all(e2e_server *s)
{
    for (int k = 0; k < s->nodes; k++) {
        if (s->node_pid[k] > 0) {
            kill(s->node_pid[k], SIGKILL);
            e2e_wait(s->node_pid[k], 5000);
            s->node_pid[k] = 0;
        }
    }
    s->pid = 0;
    if (s->lb_pid > 0) {
        kill(s->lb_pid, SIGKILL);
        e2e_wait(s->lb_pid, 5000);
        s->lb_pid = 0;
    }
}

static int cluster_start(e2e_server *s, int nodes, const char *bin, const char *config_text,
                         const char *const *extra)
{
    if (!e2e_have("redis-server") || !haproxy_path()) {
        /* as the cluster suite does: scripts/packages.txt has both */
        printf("# SKIP cluster mode needs redis-server and haproxy (Debian packages)\n");
        rm_rf(s->dir);
        exit(E2E_SKIP);
    }
    for (size_t i = 0; extra && extra[i]; i++)
        if (strcmp(extra[i], "--data-dir") == 0 && extra[i + 1])
            snprintf(s->data_dir, sizeof(s->data_dir), "%s", extra[++i]);
    if (config_text) {
        snprintf(s->config_path, sizeof(s->config_path), "%s/sohub.ini", s->dir);
        if (write_file(s->config_path, config_text) != 0) {
            perror("e2e: config");
            return -1;
        }
    }
    if (mkdir_p(s->data_dir) != 0) {
        fprintf(stderr, "e2e: cannot make %s: %s\n", s->data_dir, strerror(errno));
        return -1;
    }
    e2e_redis *r = redis_for(s->data_dir);
    if (!r)
        return -1;
    s->redis_port = r->port;
    s->nodes = nodes;
    int rc = 0;
    for (int k = 0; k < nodes && rc == 0; k++)
        rc = node_start(s, k, bin, config_text, extra);
    int64_t end = e2e_now_ms() + 15000;
    for (int k = 0; k < nodes && rc == 0; k++)
        rc = node_wait(s, k, end);
    if (rc == 0)
        rc = lb_start(s);
    s->pid = s->node_pid[0];
    snprintf(s->log_path, sizeof(s->log_path), "%s", s->node_log[0]);
    if (rc != 0) {
        e2e_log_dump(s);
        cluster_kill_all(s);
        return -1;
    }
    char port[16];
    snprintf(port, sizeof(port), "%d\n", s->port);
    write_file(s->port_path, port);
    return 0;
}

int e2e_server_start(e2e_server *s, const char *config_text, const char *const *extra)
{
    memset(s, 0, sizeof(*s));
    const char *bin = getenv("SOHUB_SERVER");
    if (!bin || !*bin) {
        fprintf(stderr, "e2e: SOHUB_SERVER is not set\n");
        return -1;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(s->dir, sizeof(s->dir), "%s/sohub-e2e-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(s->dir)) {
        perror("e2e: mkdtemp");
        return -1;
    }
    snprintf(s->log_path, sizeof(s->log_path), "%s/server.log", s->dir);
    snprintf(s->port_path, sizeof(s->port_path), "%s/port", s->dir);
    snprintf(s->data_dir, sizeof(s->data_dir), "%s/data", s->dir);
    int nodes = e2e_cluster_nodes();
    if (nodes < 0) {
        fprintf(stderr, "e2e: SOHUB_E2E_CLUSTER must be 1..%d\n", E2E_MAX_NODES);
        return -1;
    }
    if (nodes > 0)
        return cluster_start(s, nodes, bin, config_text, extra);
    const char *argv[64];
    size_t n = 0;
    argv[n++] = bin;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--port-file";
    argv[n++] = s->port_path;
    argv[n++] = "--data-dir";
    argv[n++] = s->data_dir;
    argv[n++] = "--log-level";
    argv[n++] = "debug";
    if (config_text) {
        snprintf(s->config_path, sizeof(s->config_path), "%s/sohub.ini", s->dir);
        if (write_file(s->config_path, config_text) != 0) {
            perror("e2e: config");
            return -1;
        }
        argv[n++] = "--config";
        argv[n++] = s->config_path;
    }
    for (size_t i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    s->pid = e2e_spawn(argv, s->log_path);
    if (s->pid < 0) {
        perror("e2e: fork");
        return -1;
    }
    int64_t end = e2e_now_ms() + 15000;
    while (e2e_now_ms() < end) {
        char *txt = e2e_read_file(s->port_path, NULL);
        if (txt) {
            s->port = atoi(txt);
            free(txt);
            if (s->port > 0)
                return 0;
        }
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            fprintf(stderr, "e2e: server exited early (status %d)\n", status_code(st));
            s->pid = 0;
            e2e_log_dump(s);
            return -1;
        }
        e2e_sleep_ms(20);
    }
    fprintf(stderr, "e2e: server did not write its port file in time\n");
    e2e_log_dump(s);
    return -1;
}

static void rm_rf(const char *dir)
{
    if (!dir[0])
        return;
    const char *argv[] = {"rm", "-rf", dir, NULL};
    e2e_run(argv, NULL, 10000, NULL);
}

int e2e_server_kill(e2e_server *s, int sig)
{
    if (!s->nodes)
        return s->pid > 0 ? kill(s->pid, sig) : -1;
    int rc = -1;
    for (int k = 0; k < s->nodes; k++)
        if (s->node_pid[k] > 0 && kill(s->node_pid[k], sig) == 0)
            rc = 0;
    return rc;
}

/* The worse of two statuses: any failure beats 0, a higher code a lower. */
static int worse(int a, int b)
{
    if (a == 0)
        return b;
    return b != 0 && b > a ? b : a;
}

int e2e_server_wait(e2e_server *s, int timeout_ms)
{
    if (!s->nodes) {
        if (s->pid <= 0)
            return -1;
        int rc = e2e_wait(s->pid, timeout_ms);
        if (rc != -2)
            s->pid = 0;
        return rc;
    }
    int64_t end = e2e_now_ms() + timeout_ms;
    int worst = 0, waited = 0;
    bool running = false;
    for (int k = 0; k < s->nodes; k++) {
        if (s->node_pid[k] <= 0)
            continue;
        waited++;
        int64_t left = end - e2e_now_ms();
        int rc = e2e_wait(s->node_pid[k], left > 0 ? (int)left : 0);
        if (rc == -2) {
            running = true;
            continue;
        }
        s->node_pid[k] = 0;
        worst = worse(worst, rc);
    }
    s->pid = s->node_pid[0];
    if (!waited)
        return -1;
    return running ? -2 : worst;
}

static int cluster_stop(e2e_server *s, bool keep)
{
    bool any = false;
    for (int k = 0; k < s->nodes; k++)
        any = any || s->node_pid[k] > 0;
    int rc = -1;
    if (any) {
        e2e_server_kill(s, SIGTERM);
        rc = e2e_server_wait(s, 10000);
        if (rc == -2) {
            fprintf(stderr, "e2e: a node ignored SIGTERM for 10 s, killing it\n");
            e2e_server_kill(s, SIGKILL);
            e2e_server_wait(s, 5000);
            rc = -1;
        }
    }
    if (s->lb_pid > 0) {
        kill(s->lb_pid, SIGTERM);
        if (e2e_wait(s->lb_pid, 5000) == -2) {
            kill(s->lb_pid, SIGKILL);
            e2e_wait(s->lb_pid, 5000);
        }
        s->lb_pid = 0;
    }
    if (!keep) {
        /* a Redis whose data directory goes with this server goes first */
        size_t n = strlen(s->dir);
        for (size_t i = 0; i < sizeof(redises) / sizeof(redises[0]); i++)
            if (redises[i].pid > 0 && strncmp(redises[i].data_dir, s->dir, n) == 0 &&
                redises[i].data_dir[n] == '/')
                redis_stop(&redises[i]);
    }
    return rc;
}

int e2e_server_stop(e2e_server *s, bool keep)
{
    int rc = -1;
    if (s->nodes) {
        rc = cluster_stop(s, keep);
    } else if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        rc = e2e_wait(s->pid, 10000);
        if (rc == -2) {
            fprintf(stderr, "e2e: server ignored SIGTERM for 10 s, killing it\n");
            kill(s->pid, SIGKILL);
            e2e_wait(s->pid, 5000);
            rc = -1;
        }
        s->pid = 0;
    }
    if (!keep)
        rm_rf(s->dir);
    else
        fprintf(stderr, "e2e: kept %s\n", s->dir);
    return rc;
}

int e2e_cluster_subscribers(const e2e_server *s, const char *channel)
{
    if (!s->nodes || s->redis_port <= 0)
        return -1;
    int fd = e2e_tcp_connect(s->redis_port);
    if (fd < 0)
        return -1;
    char req[512];
    size_t cl = strlen(channel);
    int n = snprintf(req, sizeof(req), "*3\r\n$6\r\nPUBSUB\r\n$6\r\nNUMSUB\r\n$%zu\r\n%s\r\n",
                     cl, channel);
    int count = -1;
    if (n > 0 && (size_t)n < sizeof(req) && e2e_send_all(fd, req, (size_t)n) == 0) {
        /* the reply: *2, the channel as a bulk string, then :COUNT */
        char rep[600];
        size_t len = 0;
        int64_t end = e2e_now_ms() + 1000;
        while (count < 0 && len < sizeof(rep) - 1 && e2e_now_ms() < end) {
            struct pollfd pf = {fd, POLLIN, 0};
            if (poll(&pf, 1, 100) <= 0)
                continue;
            ssize_t r = recv(fd, rep + len, sizeof(rep) - 1 - len, 0);
            if (r <= 0)
                break;
            len += (size_t)r;
            rep[len] = '\0';
            const char *colon = strstr(rep, "\r\n:");
            if (colon && len >= 2 && rep[len - 2] == '\r' && rep[len - 1] == '\n')
                count = atoi(colon + 3);
        }
    }
    close(fd);
    return count;
}

char *e2e_log_read(const e2e_server *s)
{
    if (!s->nodes)
        return e2e_read_file(s->log_path, NULL);
    char *all = NULL;
    size_t len = 0;
    for (int k = 0; k < s->nodes; k++) {
        size_t n;
        char *txt = e2e_read_file(s->node_log[k], &n);
        if (!txt)
            continue;
        char *grown = realloc(all, len + n + 2);
        if (!grown) {
            free(txt);
            break;
        }
        all = grown;
        memcpy(all + len, txt, n);
        len += n;
        if (n && all[len - 1] != '\n')
            all[len++] = '\n'; /* one node's last line never joins the next's */
        all[len] = '\0';
        free(txt);
    }
    return all;
}

bool e2e_log_contains(const e2e_server *s, const char *needle)
{
    char *txt = e2e_log_read(s);
    bool r = txt && strstr(txt, needle);
    free(txt);
    return r;
}

bool e2e_log_wait(const e2e_server *s, const char *needle, int timeout_ms)
{
    int64_t end = e2e_now_ms() + timeout_ms;
    for (;;) {
        if (e2e_log_contains(s, needle))
            return true;
        if (e2e_now_ms() >= end)
            return false;
        e2e_sleep_ms(20);
    }
}

static void dump_file(const char *what, const char *path)
{
    char *txt = e2e_read_file(path, NULL);
    fprintf(stderr, "---- %s %s ----\n%s---- end of %s ----\n", what, path,
            txt ? txt : "(none)\n", what);
    free(txt);
}

void e2e_log_dump(const e2e_server *s)
{
    if (!s->nodes) {
        dump_file("server log", s->log_path);
        return;
    }
    for (int k = 0; k < s->nodes; k++)
        if (s->node_log[k][0])
            dump_file("node log", s->node_log[k]);
    char path[400];
    snprintf(path, sizeof(path), "%s/haproxy.log", s->dir);
    dump_file("haproxy log", path);
}

/* ---- raw client ---- */

int e2e_tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

int e2e_send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int e2e_recv_exact(int fd, void *p, size_t n, int timeout_ms)
{
    uint8_t *b = p;
    int64_t end = e2e_now_ms() + timeout_ms;
    while (n > 0) {
        int left = (int)(end - e2e_now_ms());
        if (left <= 0)
            return -1;
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, left) <= 0)
            continue;
        ssize_t r = recv(fd, b, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

int e2e_wait_closed(int fd, int timeout_ms)
{
    int64_t t0 = e2e_now_ms(), end = t0 + timeout_ms;
    uint8_t buf[4096];
    for (;;) {
        int left = (int)(end - e2e_now_ms());
        if (left <= 0)
            return -1;
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, left) <= 0)
            continue;
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return (int)(e2e_now_ms() - t0);
    }
}

int e2e_raw_handshake(int fd)
{
    static uint8_t c01[1 + 1536], s012[1 + 1536 * 2];
    c01[0] = 3;
    memset(c01 + 1, 0, 8);
    for (size_t i = 9; i < sizeof(c01); i++)
        c01[i] = (uint8_t)(i * 7 + 1);
    if (e2e_send_all(fd, c01, sizeof(c01)) != 0)
        return -1;
    if (e2e_recv_exact(fd, s012, sizeof(s012), 5000) != 0)
        return -1;
    if (s012[0] != 3)
        return -1;
    /* C2 echoes S1. */
    return e2e_send_all(fd, s012 + 1, 1536);
}

int e2e_raw_send_msg(int fd, uint32_t csid, uint8_t type, uint32_t sid, const uint8_t *body,
                     size_t len, uint32_t chunk_size)
{
    uint8_t hdr[12];
    hdr[0] = (uint8_t)(csid & 0x3f);
    hdr[1] = hdr[2] = hdr[3] = 0;
    hdr[4] = (uint8_t)(len >> 16);
    hdr[5] = (uint8_t)(len >> 8);
    hdr[6] = (uint8_t)len;
    hdr[7] = type;
    hdr[8] = (uint8_t)sid;
    hdr[9] = (uint8_t)(sid >> 8);
    hdr[10] = (uint8_t)(sid >> 16);
    hdr[11] = (uint8_t)(sid >> 24);
    if (e2e_send_all(fd, hdr, sizeof(hdr)) != 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        size_t n = len - off < chunk_size ? len - off : chunk_size;
        if (off > 0) {
            uint8_t h3 = (uint8_t)(0xC0 | (csid & 0x3f));
            if (e2e_send_all(fd, &h3, 1) != 0)
                return -1;
        }
        if (e2e_send_all(fd, body + off, n) != 0)
            return -1;
        off += n;
    }
    return 0;
}

/* ---- AMF0 writer (bounded by the fixed buffer; tests keep it small) ---- */

static void put(e2e_amf *a, const void *p, size_t n)
{
    if (a->len + n > sizeof(a->buf)) {
        fprintf(stderr, "e2e_amf: buffer full\n");
        abort();
    }
    memcpy(a->buf + a->len, p, n);
    a->len += n;
}

static void put_u16(e2e_amf *a, size_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(a, b, 2);
}

void e2e_amf_str(e2e_amf *a, const char *s)
{
    size_t n = strlen(s);
    if (n > 0xffff) {
        uint8_t b[5] = {0x0C, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
                        (uint8_t)n};
        put(a, b, 5);
    } else {
        uint8_t m = 0x02;
        put(a, &m, 1);
        put_u16(a, n);
    }
    put(a, s, n);
}

void e2e_amf_num(e2e_amf *a, double d)
{
    uint8_t b[9];
    uint64_t u;
    memcpy(&u, &d, 8);
    b[0] = 0x00;
    for (int i = 0; i < 8; i++)
        b[1 + i] = (uint8_t)(u >> (56 - 8 * i));
    put(a, b, 9);
}

void e2e_amf_null(e2e_amf *a)
{
    uint8_t m = 0x05;
    put(a, &m, 1);
}

void e2e_amf_obj_begin(e2e_amf *a)
{
    uint8_t m = 0x03;
    put(a, &m, 1);
}

void e2e_amf_obj_key(e2e_amf *a, const char *k)
{
    put_u16(a, strlen(k));
    put(a, k, strlen(k));
}

void e2e_amf_obj_end(e2e_amf *a)
{
    uint8_t b[3] = {0, 0, 0x09};
    put(a, b, 3);
}
