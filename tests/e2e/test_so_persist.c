/* test_so_persist.c - persistent shared objects survive the server:
 *  1. written, clean restart (SIGTERM) on the same data dir: a Use shows
 *     the slots at the same version; a Use with that version gets nothing
 *     more than UseSuccess.
 *  2. kill -9 under load: a writer keeps many changes in flight and records
 *     every (key, value) whose Success arrived; a child process kills the
 *     server with SIGKILL at a random moment while changes pour in; it is restarted on the same data dir, and every acknowledged
 *     change must be there (value at least the acknowledged one: values
 *     only grow), the object at least at the acknowledged version.
 *  3. idle unload (so_unload_idle_s=1): once its last client leaves, the
 *     room leaves memory (the server logs it); a client coming back sees
 *     the same slots at the same version, a Use with that version gets
 *     UseSuccess only, and a new change continues from that version. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "so_client.h"

#define T 5000
#define NKEYS 64
#define PER_KEY 256

static int restart(e2e_server *srv, const char *data_dir)
{
    const char *extra[] = {"--data-dir", data_dir, "--set", "so_max_updates_per_sec=0", NULL};
    return e2e_server_start(srv, NULL, extra);
}

static void test_clean_restart(e2e_server *first)
{
    soc *a = soc_connect(first->port, "persist/main", 0, 0);
    E2E_CHECK(a != NULL, "writer connects");
    if (!a)
        return;
    soc_use(a, "profile", 0, true);
    soc_msg_free(soc_wait_event(a, "profile", SO_EV_USE_SUCCESS, T));
    const char *keys[] = {"name", "level"};
    amf_value *vals[] = {amf_string_cstr("ada"), amf_number(3)};
    soc_set(a, "profile", soc_version(a, "profile"), true, 2, keys, vals);
    amf_unref(vals[0]);
    amf_unref(vals[1]);
    int succ = 0;
    int64_t end = e2e_now_ms() + T;
    while (succ < 2 && e2e_now_ms() < end) {
        so_msg *m = soc_next(a, T);
        if (!m)
            break;
        succ += (int)soc_count_events(m, SO_EV_SUCCESS);
        soc_msg_free(m);
    }
    E2E_CHECK(succ == 2, "two Successes once the change is durable");
    amf_value *obj = amf_object_new(NULL);
    amf_object_set_cstr(obj, "x", amf_number(1));
    amf_object_set_cstr(obj, "tags", amf_strict_array_new());
    const char *k3 = "pos";
    soc_set(a, "profile", soc_version(a, "profile"), true, 1, &k3, &obj);
    soc_msg_free(soc_wait_event(a, "profile", SO_EV_SUCCESS, T));
    soc_set_num(a, "profile", soc_version(a, "profile"), true, "tmp", 9);
    soc_msg_free(soc_wait_event(a, "profile", SO_EV_SUCCESS, T));
    soc_remove(a, "profile", soc_version(a, "profile"), true, "tmp");
    soc_msg_free(soc_wait_event(a, "profile", SO_EV_SUCCESS, T));
    uint32_t v = soc_version(a, "profile");
    E2E_CHECK(v >= 4, "four updates made (version %u)", v);
    soc_close(a);

    int st = e2e_server_stop(first, true);
    E2E_CHECK(st == 0, "clean stop (status %d)", st);

    e2e_server second;
    if (restart(&second, first->data_dir) != 0) {
        E2E_CHECK(0, "server restarts on the same data dir");
        amf_unref(obj);
        return;
    }
    soc *b = soc_connect(second.port, "persist/main", 0, 0);
    E2E_CHECK(b != NULL, "reader connects after restart");
    if (b) {
        soc_use(b, "profile", 0, true);
        so_msg *m = soc_wait_event(b, "profile", SO_EV_USE_SUCCESS, T);
        E2E_CHECK(m != NULL, "UseSuccess after restart");
        soc_msg_free(m);
        soc_settle(b, 200, 2000);
        soc_obj *o = soc_object(b, "profile");
        E2E_CHECK(o && o->version == v, "same version after restart (%u, want %u)",
                  o ? o->version : 0, v);
        E2E_CHECK(o && o->nslots == 3, "three slots (%zu)", o ? o->nslots : 0);
        E2E_CHECK(amf_is_string(soc_get(b, "profile", "name"), "ada") &&
                      soc_get_num(b, "profile", "level") == 3,
                  "name and level restored");
        E2E_CHECK(amf_equal(soc_get(b, "profile", "pos"), obj), "object value restored");
        E2E_CHECK(soc_get(b, "profile", "tmp") == NULL, "removed slot stays removed");

        soc *c = soc_connect(second.port, "persist/main", 0, 0);
        if (c) {
            soc_use(c, "profile", v, true);
            soc_settle(c, 300, 2000);
            soc_obj *oc = soc_object(c, "profile");
            E2E_CHECK(oc && oc->use_success == 1 && oc->changes == 0 && oc->clears == 0,
                      "Use with the current version: UseSuccess only");
            soc_close(c);
        }
        /* Temporary use of the persistent name is refused. */
        soc_use(b, "profile", 0, false);
        m = soc_wait_event(b, "profile", SO_EV_STATUS, T);
        E2E_CHECK(m && strcmp(soc_event(m, SO_EV_STATUS, 0)->code,
                              "SharedObject.BadPersistence") == 0,
                  "temporary Use of a persistent object: BadPersistence");
        soc_msg_free(m);
        soc_close(b);
    }
    amf_unref(obj);
    st = e2e_server_stop(&second, true);
    E2E_CHECK(st == 0, "restarted server exits 0 (%d)", st);
    if (e2e_failures)
        e2e_log_dump(&second);
    e2e_server_stop(&second, false); /* removes its own temporary dir */
}

typedef struct acked {
    double value;      /* highest acknowledged value, -1 none */
} acked;

static void test_kill9(const char *data_dir)
{
    e2e_server srv;
    if (restart(&srv, data_dir) != 0) {
        E2E_CHECK(0, "server starts for the kill -9 test");
        return;
    }
    soc *w = soc_connect(srv.port, "persist/load", 0, 0);
    E2E_CHECK(w != NULL, "writer connects");
    if (!w) {
        e2e_server_stop(&srv, false);
        return;
    }
    soc_use(w, "counters", 0, true);
    soc_msg_free(soc_wait_event(w, "counters", SO_EV_USE_SUCCESS, T));

    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    int kill_after = rand() % 150;
    acked ack[NKEYS];
    for (int i = 0; i < NKEYS; i++)
        ack[i].value = -1;
    /* Requests per key in order, to map each Success to its value. */
    static double fifo[NKEYS][PER_KEY];
    int fhead[NKEYS] = {0}, flen[NKEYS] = {0};
    long sent = 0, acks = 0, statuses = 0;
    uint32_t acked_version = 0;
    pid_t killer = -1;
    int64_t t0 = e2e_now_ms();
    double next = 1;
    bool writing = true;
    while (e2e_now_ms() - t0 < 8000) {
        if (killer < 0 && acks >= 10) {
            /* The killer: a child that sleeps a random time, then SIGKILLs
             * the server while the writer is still pouring changes in. */
            killer = fork();
            if (killer == 0) {
                e2e_sleep_ms(kill_after);
                e2e_server_kill(&srv, SIGKILL);
                _exit(0);
            }
        }
        for (int burst = 0; writing && burst < 100; burst++) {
            int k = (int)(sent % NKEYS);
            if (flen[k] >= PER_KEY) {
                writing = false;
                break;
            }
            char key[16];
            snprintf(key, sizeof(key), "k%d", k);
            if (soc_set_num(w, "counters", soc_version(w, "counters"), true, key, next) != 0) {
                writing = false; /* the server is gone */
                break;
            }
            fifo[k][(fhead[k] + flen[k]++) % PER_KEY] = next;
            next++;
            sent++;
        }
        so_msg *m = soc_next(w, writing ? 0 : 200);
        if (!m) {
            if (soc_closed(w))
                break;
            continue;
        }
        for (size_t i = 0; i < m->nevents; i++) {
            const so_event *ev = &m->events[i];
            if (ev->type != SO_EV_SUCCESS)
                continue;
            int k = atoi(ev->kv[0].key + 1);
            if (k < 0 || k >= NKEYS || flen[k] == 0)
                continue;
            double val = fifo[k][fhead[k]];
            fhead[k] = (fhead[k] + 1) % PER_KEY;
            flen[k]--;
            acks++;
            if (val > ack[k].value)
                ack[k].value = val;
            if (m->version > acked_version)
                acked_version = m->version;
        }
        statuses += (long)soc_count_events(m, SO_EV_STATUS);
        soc_msg_free(m);
    }
    bool killed = killer > 0 && e2e_wait(killer, 5000) == 0;
    soc_close(w);
    int st = e2e_server_wait(&srv, 5000);
    E2E_CHECK(killed && st == 128 + SIGKILL, "server killed with SIGKILL after %d ms (%d)",
              kill_after, st);
    E2E_CHECK(statuses == 0, "no Status answer under load (%ld)", statuses);
    E2E_CHECK(acks > 10, "changes were acknowledged before the kill (%ld of %ld sent)", acks,
              sent);
    printf("# %ld changes sent, %ld acknowledged, kill after %d ms\n", sent, acks, kill_after);
    e2e_server_stop(&srv, false);

    e2e_server again;
    if (restart(&again, data_dir) != 0) {
        E2E_CHECK(0, "server restarts after kill -9");
        return;
    }
    soc *r = soc_connect(again.port, "persist/load", 0, 0);
    E2E_CHECK(r != NULL, "reader connects after kill -9");
    if (r) {
        soc_use(r, "counters", 0, true);
        soc_msg_free(soc_wait_event(r, "counters", SO_EV_USE_SUCCESS, T));
        soc_settle(r, 300, 3000);
        int lost = 0;
        for (int k = 0; k < NKEYS; k++) {
            if (ack[k].value < 0)
                continue;
            char key[16];
            snprintf(key, sizeof(key), "k%d", k);
            double got = soc_get_num(r, "counters", key);
            if (!(got >= ack[k].value)) {
                if (lost++ < 5)
                    printf("# lost: %s acknowledged %g, found %g\n", key, ack[k].value, got);
            }
        }
        E2E_CHECK(lost == 0, "every acknowledged change survived kill -9 (%d keys lost)", lost);
        E2E_CHECK(soc_version(r, "counters") >= acked_version,
                  "version after restart %u >= last acknowledged %u",
                  soc_version(r, "counters"), acked_version);
        soc_close(r);
    }
    st = e2e_server_stop(&again, e2e_failures > 0);
    E2E_CHECK(st == 0, "server exits 0 after the recovery (%d)", st);
    if (e2e_failures)
        e2e_log_dump(&again);
}

static void test_unload(const char *data_dir)
{
    e2e_server srv;
    const char *extra[] = {"--data-dir", data_dir, "--set", "so_unload_idle_s=1", NULL};
    if (e2e_server_start(&srv, NULL, extra) != 0) {
        E2E_CHECK(0, "server with so_unload_idle_s=1 starts");
        return;
    }
    soc *a = soc_connect(srv.port, "persist/idle", 0, 0);
    E2E_CHECK(a != NULL, "writer connects");
    if (!a) {
        e2e_server_stop(&srv, true);
        return;
    }
    soc_use(a, "board", 0, true);
    soc_msg_free(soc_wait_event(a, "board", SO_EV_USE_SUCCESS, T));
    for (int i = 0; i < 3; i++) {
        char key[8];
        snprintf(key, sizeof(key), "k%d", i);
        soc_set_num(a, "board", soc_version(a, "board"), true, key, 10 + i);
        soc_msg_free(soc_wait_event(a, "board", SO_EV_SUCCESS, T));
    }
    uint32_t v = soc_version(a, "board");
    E2E_CHECK(v >= 4, "three changes made (version %u)", v);
    soc_close(a);
    E2E_CHECK(e2e_log_wait(&srv, "idle rooms left memory", 5000),
              "the empty room leaves memory within two periods");

    soc *b = soc_connect(srv.port, "persist/idle", 0, 0);
    E2E_CHECK(b != NULL, "a client comes back");
    if (b) {
        soc_use(b, "board", 0, true);
        soc_msg_free(soc_wait_event(b, "board", SO_EV_USE_SUCCESS, T));
        soc_settle(b, 200, 2000);
        soc_obj *o = soc_object(b, "board");
        E2E_CHECK(o && o->version == v && o->nslots == 3,
                  "reloaded: version %u (want %u), %zu slots", o ? o->version : 0, v,
                  o ? o->nslots : 0);
        E2E_CHECK(soc_get_num(b, "board", "k2") == 12, "values reloaded");
        soc *c = soc_connect(srv.port, "persist/idle", 0, 0);
        if (c) {
            soc_use(c, "board", v, true);
            soc_settle(c, 300, 2000);
            soc_obj *oc = soc_object(c, "board");
            E2E_CHECK(oc && oc->use_success == 1 && oc->changes == 0 && oc->clears == 0,
                      "Use with the version held before the unload: UseSuccess only");
            soc_close(c);
        }
        soc_set_num(b, "board", v, true, "k0", 99);
        so_msg *m = soc_wait_event(b, "board", SO_EV_SUCCESS, T);
        E2E_CHECK(m != NULL && m->version == v + 1, "a change continues at version %u (got %u)",
                  v + 1, m ? m->version : 0);
        soc_msg_free(m);
        soc_close(b);
    }
    E2E_CHECK(e2e_server_stop(&srv, true) == 0, "clean stop");
}

int main(void)
{
    e2e_server first;
    const char *extra[] = {"--set", "so_max_updates_per_sec=0", NULL};
    if (e2e_server_start(&first, NULL, extra) != 0)
        return 1;
    test_clean_restart(&first);
    test_kill9(first.data_dir);
    test_unload(first.data_dir);
    const char *rm[] = {"rm", "-rf", first.dir, NULL};
    e2e_run(rm, NULL, 10000, NULL);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
