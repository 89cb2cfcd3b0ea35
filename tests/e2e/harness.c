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

pid_t e2e_spawn(const char *const argv[], const char *out_path)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
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

int e2e_server_stop(e2e_server *s, bool keep)
{
    int rc = -1;
    if (s->pid > 0) {
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

bool e2e_log_contains(const e2e_server *s, const char *needle)
{
    char *txt = e2e_read_file(s->log_path, NULL);
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

void e2e_log_dump(const e2e_server *s)
{
    char *txt = e2e_read_file(s->log_path, NULL);
    fprintf(stderr, "---- server log %s ----\n%s---- end of server log ----\n", s->log_path,
            txt ? txt : "(none)\n");
    free(txt);
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
