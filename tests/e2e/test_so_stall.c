/* test_so_stall.c - rule 7 under a flood: the exact pattern that once left
 * a subscriber paused forever.  S uses a temporary object with a 4 KiB
 * receive buffer and stops reading; one writer W sends 20,000 changes of
 * about 4 KB to one key of that object as fast as it can (no update rate
 * cap, never waiting for answers).  When S reads again it must get the
 * queued bytes AND one catch-up, and end with W's last value at the
 * object's current version; the server must say it caught S up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "so_client.h"

#define NCHANGES 20000
#define VALUE_BYTES 4000

int main(void)
{
    e2e_server srv;
    const char *extra[] = {"--set", "so_max_updates_per_sec=0", "--log-level", "debug", NULL};
    if (e2e_server_start(&srv, NULL, extra) != 0)
        return 1;
    soc *w = soc_connect(srv.port, "stall/room", 0, 0);
    soc *s = soc_connect(srv.port, "stall/room", 0, 4096);
    E2E_CHECK(w && s, "writer and slow subscriber connect");
    if (!w || !s)
        goto out;
    soc *all[] = {w, s};
    for (int i = 0; i < 2; i++) {
        soc_use(all[i], "flood", 0, false);
        so_msg *m = soc_wait_event(all[i], "flood", SO_EV_USE_SUCCESS, 5000);
        E2E_CHECK(m != NULL, "client %d: UseSuccess", i);
        soc_msg_free(m);
    }

    /* S stops reading now; W floods, reading its answers only when the
     * socket lets it (so its own queue never decides the test). */
    char *value = malloc(VALUE_BYTES + 1);
    if (!value)
        return 1;
    long acked = 0;
    char last[64] = "";
    for (long i = 0; i < NCHANGES && !soc_closed(w); i++) {
        memset(value, 'a' + (int)(i % 26), VALUE_BYTES);
        int n = snprintf(value, 40, "change-%ld-", i);
        value[n] = '.';
        value[VALUE_BYTES] = '\0';
        snprintf(last, sizeof(last), "change-%ld-", i);
        if (soc_set_str(w, "flood", 0, false, "k", value) != 0)
            break;
        if (i % 64 == 0) {
            soc_pump(w, 0);
            so_msg *m;
            while ((m = soc_next(w, 0)) != NULL) {
                acked += (long)soc_count_events(m, SO_EV_SUCCESS);
                soc_msg_free(m);
            }
        }
    }
    int64_t end = e2e_now_ms() + 30000;
    while (acked < NCHANGES && e2e_now_ms() < end && !soc_closed(w)) {
        so_msg *m = soc_next(w, 100);
        if (m) {
            acked += (long)soc_count_events(m, SO_EV_SUCCESS);
            soc_msg_free(m);
        }
    }
    free(value);
    E2E_CHECK(acked == NCHANGES, "all %d changes acknowledged (%ld)", NCHANGES, acked);
    uint32_t final = soc_version(w, "flood");
    E2E_CHECK(e2e_log_wait(&srv, "so: congested", 3000), "server marked S congested");

    /* S reads again. */
    int64_t t0 = e2e_now_ms();
    while (e2e_now_ms() - t0 < 20000 && !soc_closed(s) && soc_version(s, "flood") != final) {
        soc_pump(s, 200);
        soc_discard(s);
    }
    soc_settle(s, 300, 5000);
    soc_discard(s);
    E2E_CHECK(!soc_closed(s), "S was not disconnected");
    E2E_CHECK(soc_version(s, "flood") == final, "S reaches the writer's version (%u of %u)",
              soc_version(s, "flood"), final);
    size_t n = 0;
    amf_value *v = soc_get(s, "flood", "k");
    const char *got = v ? amf_as_string(v, &n) : NULL;
    E2E_CHECK(got && n == VALUE_BYTES && strncmp(got, last, strlen(last)) == 0,
              "S ends with the writer's last value (%s...)", last);
    E2E_CHECK(e2e_log_contains(&srv, "so: drained, catching up"), "server logged the catch-up");
out:
    soc_close(w);
    soc_close(s);
    int st = e2e_server_stop(&srv, e2e_failures > 0);
    E2E_CHECK(st == 0, "server exits 0 (%d)", st);
    if (e2e_failures)
        e2e_log_dump(&srv);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
