/* test_so_slow.c - a slow subscriber (rule 7).  S uses an object and stops
 * reading its socket (small receive buffer) while W writes thousands of
 * 4 KB changes that R reads as they come.  Without congestion handling the
 * server would queue every change for S and close it at max_output_bytes;
 * with it S is marked congested (no per-change messages), the server's
 * memory stays bounded, and when S reads again it gets one catch-up diff
 * and ends with the same state and version as R. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "so_client.h"

#define T 5000
#define NCHANGES 3000
#define NKEYS 20
#define VALUE_BYTES 4096

static long rss_kb(int pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    char *txt = e2e_read_file(path, NULL);
    long kb = -1;
    const char *p = txt ? strstr(txt, "VmRSS:") : NULL;
    if (p)
        kb = strtol(p + 6, NULL, 10);
    free(txt);
    return kb;
}

/* The server's RSS; in cluster mode the sum over its nodes (the slow
 * subscriber's node holds what it is late on). */
static long server_rss_kb(const e2e_server *srv)
{
    if (!srv->nodes)
        return rss_kb(srv->pid);
    long sum = 0;
    for (int k = 0; k < srv->nodes; k++) {
        long kb = rss_kb(srv->node_pid[k]);
        if (kb < 0)
            return -1;
        sum += kb;
    }
    return sum;
}

int main(void)
{
    e2e_server srv;
    const char *extra[] = {"--set", "max_output_bytes=1m", "--set", "so_congestion_bytes=64k",
                           "--set", "so_max_updates_per_sec=0", NULL};
    /* Under AddressSanitizer freed memory sits in a quarantine (256 MB by
     * default) and would count as growth; keep it small for this server
     * (the variable means nothing to a build without sanitizers). */
    char asan[512];
    const char *prev = getenv("ASAN_OPTIONS");
    snprintf(asan, sizeof(asan), "%s%squarantine_size_mb=1", prev ? prev : "",
             prev && *prev ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
    if (e2e_server_start(&srv, NULL, extra) != 0)
        return 1;
    soc *w = soc_connect(srv.port, "slow/room", 0, 0);
    soc *r = soc_connect(srv.port, "slow/room", 0, 0);
    soc *s = soc_connect(srv.port, "slow/room", 0, 4096);
    E2E_CHECK(w && r && s, "writer, reader and slow subscriber connect");
    if (!w || !r || !s)
        goto out;
    soc *all[] = {w, r, s};
    for (int i = 0; i < 3; i++) {
        soc_use(all[i], "big", 0, false);
        so_msg *m = soc_wait_event(all[i], "big", SO_EV_USE_SUCCESS, T);
        E2E_CHECK(m != NULL, "client %d: UseSuccess", i);
        soc_msg_free(m);
    }
    long rss0 = server_rss_kb(&srv), rss_max = rss0;

    /* S stops reading now. */
    char *value = malloc(VALUE_BYTES + 1);
    if (!value) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    long sent = 0, acked = 0;
    int64_t end = e2e_now_ms() + 60000;
    while (acked < NCHANGES && e2e_now_ms() < end && !soc_closed(w)) {
        while (sent < NCHANGES && sent - acked < 20) {
            char key[16];
            snprintf(key, sizeof(key), "k%ld", sent % NKEYS);
            memset(value, 'a' + (int)(sent % 26), VALUE_BYTES);
            snprintf(value, 32, "change-%ld-", sent);
            value[strlen(value)] = '.';
            value[VALUE_BYTES] = '\0';
            if (soc_set_str(w, "big", soc_version(w, "big"), false, key, value) != 0)
                break;
            sent++;
        }
        so_msg *m = soc_next(w, 50);
        if (m) {
            acked += (long)soc_count_events(m, SO_EV_SUCCESS);
            soc_msg_free(m);
        }
        soc_pump(r, 0);
        soc_discard(r);
        if (sent % 100 == 0) {
            long kb = server_rss_kb(&srv);
            if (kb > rss_max)
                rss_max = kb;
        }
    }
    free(value);
    E2E_CHECK(acked == NCHANGES, "all %d changes acknowledged (%ld)", NCHANGES, acked);
    soc_settle(r, 300, 10000);
    soc_discard(r);
    E2E_CHECK(soc_version(r, "big") == soc_version(w, "big"), "R kept up (version %u)",
              soc_version(r, "big"));
    E2E_CHECK(e2e_log_wait(&srv, "so: congested", 3000), "server marked S congested");
    long kb = server_rss_kb(&srv);
    if (kb > rss_max)
        rss_max = kb;
    printf("# server RSS %ld kB before, %ld kB max while S was stalled (%ld kB of changes "
           "written for it)\n", rss0, rss_max, (long)NCHANGES * VALUE_BYTES / 1024);
    E2E_CHECK(rss_max - rss0 < 32 * 1024, "server memory stays bounded (+%ld kB)",
              rss_max - rss0);

    /* S reads again: it must converge on everyone else's state. */
    int64_t t0 = e2e_now_ms();
    while (e2e_now_ms() - t0 < 20000 && !soc_closed(s) &&
           soc_version(s, "big") != soc_version(r, "big")) {
        soc_pump(s, 200);
        soc_discard(s);
    }
    soc_settle(s, 300, 5000);
    soc_discard(s);
    E2E_CHECK(!soc_closed(s), "S was not disconnected");
    soc_obj *os = soc_object(s, "big");
    E2E_CHECK(soc_version(s, "big") == soc_version(r, "big"),
              "S reaches the current version (%u, R %u)", soc_version(s, "big"),
              soc_version(r, "big"));
    E2E_CHECK(soc_same_state(s, r, "big"), "S ends with the same slots as R");
    E2E_CHECK(os && os->changes + 500 < NCHANGES,
              "S got far fewer change events than were made (%u of %d): the catch-up is a diff",
              os ? os->changes : 0, NCHANGES);
    E2E_CHECK(e2e_log_contains(&srv, "so: drained, catching up"), "server logged the catch-up");
out:
    soc_close(w);
    soc_close(r);
    soc_close(s);
    int st = e2e_server_stop(&srv, e2e_failures > 0);
    E2E_CHECK(st == 0, "server exits 0 (%d)", st);
    if (e2e_failures)
        e2e_log_dump(&srv);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
