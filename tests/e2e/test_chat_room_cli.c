/* test_chat_room_cli.c - `sohub-cli chat room` shows the whole history of
 * the chat sample's room, oldest first, also after a restart of the
 * server (the room then comes back from the store, its slots in the
 * store's order), and the posts made while it runs after it, in order.
 *
 * The client used to print the history slot by slot as it arrived and to
 * skip every id below the last one printed, so after a restart it showed
 * only part of the history. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "test_chat_client.h"

#define POSTS 30
#define LIVE 3

static const char *cli_path;

/* Posts "post N" for N in first..last as `user`; returns how many were
 * answered _result. */
static int post(int port, const char *user, int first, int last)
{
    char code[128], desc[256];
    cc *c = cc_connect(port, "chat", user, NULL, NULL, code, desc, sizeof code);
    if (!c)
        return 0;
    int ok = 0;
    for (int i = first; i <= last; i++) {
        char t[32];
        snprintf(t, sizeof t, "post %d", i);
        amf_value *v = amf_string_cstr(t);
        cc_answer a;
        ok += cc_call(c, "room.post", &v, 1, &a) == 0 && a.ok;
        amf_unref(v);
    }
    cc_close(c);
    return ok;
}

/* Starts argv with stdin from a pipe (*in: its write end) and stdout and
 * stderr into out_path. */
static pid_t spawn_stdin(const char *const argv[], const char *out_path, int *in)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(p[0], 0);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        close(p[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[0]);
    *in = p[1];
    return pid;
}

static bool file_wait(const char *path, const char *needle, int timeout_ms)
{
    int64_t end = e2e_now_ms() + timeout_ms;
    do {
        char *t = e2e_read_file(path, NULL);
        bool hit = t && strstr(t, needle);
        free(t);
        if (hit)
            return true;
        e2e_sleep_ms(20);
    } while (e2e_now_ms() < end);
    return false;
}

/* The numbers of the "alice: post N" lines of the output, in order. */
static int posts_printed(const char *path, int *nums, int max)
{
    char *t = e2e_read_file(path, NULL);
    int n = 0;
    for (char *p = t; p && (p = strstr(p, "alice: post ")) != NULL && n < max; p += 12)
        nums[n++] = atoi(p + 12);
    free(t);
    return n;
}

int main(void)
{
    cli_path = getenv("SOHUB_CLI");
    if (!cli_path || access(cli_path, X_OK) != 0) {
        printf("1..0 # SKIP SOHUB_CLI not set\n");
        return E2E_SKIP;
    }
    e2e_server a, b;
    if (e2e_server_start(&a, NULL, NULL) != 0)
        return 1;
    E2E_CHECK(post(a.port, "alice", 1, POSTS) == POSTS, "%d posts in the room", POSTS);
    int st = e2e_server_stop(&a, true);
    E2E_CHECK(st == 0, "first server stopped cleanly (%d)", st);
    const char *extra[] = {"--data-dir", a.data_dir, NULL};
    if (e2e_server_start(&b, NULL, extra) != 0) {
        e2e_server_stop(&a, false);
        return 1;
    }

    char url[128], out[300], last[32];
    snprintf(url, sizeof url, "rtmp://127.0.0.1:%d/chat", b.port);
    snprintf(out, sizeof out, "%s/room.out", b.dir);
    const char *argv[] = {cli_path, "-u", url, "--user", "dave", "chat", "room", NULL};
    int in = -1;
    pid_t pid = spawn_stdin(argv, out, &in);
    snprintf(last, sizeof last, "alice: post %d\n", POSTS);
    E2E_CHECK(pid > 0 && file_wait(out, last, 5000), "after the restart chat room shows post %d",
              POSTS);
    E2E_CHECK(file_wait(out, "* online:", 3000), "and who is online");
    E2E_CHECK(post(b.port, "alice", POSTS + 1, POSTS + LIVE) == LIVE, "%d more posts while it runs",
              LIVE);
    snprintf(last, sizeof last, "alice: post %d\n", POSTS + LIVE);
    E2E_CHECK(file_wait(out, last, 5000), "they show too");
    if (in >= 0)
        close(in);
    int cst = pid > 0 ? e2e_wait(pid, 5000) : -1;
    if (cst == -2) {
        kill(pid, SIGKILL);
        e2e_wait(pid, 2000);
    }
    E2E_CHECK(cst == 0, "end of input ends chat room with status 0 (%d)", cst);

    int nums[POSTS + LIVE + 8];
    int n = posts_printed(out, nums, POSTS + LIVE + 8);
    int in_order = 0;
    for (int i = 0; i < n && nums[i] == i + 1; i++)
        in_order++;
    E2E_CHECK(n == POSTS + LIVE && in_order == n,
              "every post printed once, oldest first: the %d of the history, then the %d live "
              "ones (%d lines, %d in order)",
              POSTS, LIVE, n, in_order);
    if (in_order != n || n != POSTS + LIVE) {
        char *t = e2e_read_file(out, NULL);
        printf("# chat room output:\n%s", t ? t : "");
        free(t);
    }
    st = e2e_server_stop(&b, e2e_failures > 0);
    E2E_CHECK(st == 0, "second server stopped cleanly (%d)", st);
    e2e_server_stop(&a, e2e_failures > 0);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
