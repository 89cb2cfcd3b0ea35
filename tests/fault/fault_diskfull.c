/* fault_diskfull.c - the disk under sohub-server's data directory refuses
 * writes (a small tmpfs filled up with a filler file, or a loop-mounted
 * ext4 image when tmpfs cannot be mounted; skipped when neither can).
 *
 * Phases, one server on the data directory unless said otherwise:
 *   A  room on disk: persistent shared-object changes and private messages
 *      to an offline user are acknowledged (Success, "queued").
 *   B  disk full (filler file up to ENOSPC): big persistent changes keep
 *      coming.  Checked: every request is answered (Success while SQLite
 *      still finds room in its files, then Status SharedObject.StoreFailed),
 *      private messages get _error Chat.StoreFailed, temporary objects and
 *      calls still work, the server stays up.
 *   C  the filler is removed, no restart: new persistent changes get
 *      Success again and messages are "queued" again (bounded wait).
 *   D  clean stop (exit 0), `PRAGMA integrity_check` (sqlite3 CLI, when
 *      installed) says ok, restart: every change acknowledged in A, B and C
 *      is there with intact content (or a value sent after it), every
 *      "queued" message reaches its recipient.
 *   E  disk full again, writes failing, kill -9 while full; space freed,
 *      integrity_check, restart: again nothing acknowledged is lost.
 *
 * Options: --size-mb N (tmpfs size, 16), --keep.  TAP lines, exit 0 / 1,
 * 77 when no small file system can be mounted. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault_util.h"
#include "harness.h"
#include "so_client.h"
#include "test_chat_client.h"

#define T 5000

/* Lines of the server log that contain needle. */
static size_t count_in_log(const e2e_server *srv, const char *needle)
{
    size_t len = 0, n = 0;
    char *log = e2e_read_file(srv->log_path, &len);
    for (char *p = log; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(log);
    return n;
}
#define APP "fault/disk"
#define OBJ "disk"
#define NKEYS 64
#define MAX_MSGS 4096

static const char config[] = "[server]\n"
                             "so_max_updates_per_sec = 0\n"
                             "[app *]\n"
                             "chat_rate = 0\n"
                             "chat_queue = 100000\n"
                             "chat_max_text = 60000\n";

/* ---- bookkeeping ---- */

typedef struct key_rec {
    long acked;      /* seq of the acknowledged value, -1 none */
    long max_sent;   /* -1 none */
} key_rec;

static key_rec keys[NKEYS];
static long next_seq = 1;
static long acks, store_failed, other_status, timeouts;

typedef struct chat_rec {
    long n;                 /* messages sent */
    char queued[MAX_MSGS];  /* 1 = answered "queued" */
    char seen[MAX_MSGS];
    long nqueued, refused_store, refused_other;
} chat_rec;
static chat_rec chat;

static char work[256], mnt[320], data[400], filler[400];
static bool mounted;

static void key_name(int k, char *buf, size_t sz)
{
    snprintf(buf, sz, "k%d", k);
}

/* The value of request seq on key k: header plus filler derived from both. */
static char *value_text(int k, long seq, size_t size)
{
    char *s = malloc(size + 64);
    if (!s)
        return NULL;
    int n = snprintf(s, 64, "k%d:%ld:", k, seq);
    size_t len = (size_t)n > size ? (size_t)n : size;
    for (size_t i = (size_t)n; i < len; i++)
        s[i] = (char)('A' + (unsigned long)(seq * 13 + k * 5 + (long)i * 3) % 26);
    s[len] = '\0';
    return s;
}

static bool value_ok(int k, const char *s, size_t n, long *seq_out)
{
    int kk = -1;
    long seq = -1;
    if (!s || sscanf(s, "k%d:%ld:", &kk, &seq) != 2 || kk != k)
        return false;
    char *want = value_text(k, seq, n);
    bool ok = want && strlen(want) == n && memcmp(want, s, n) == 0;
    free(want);
    *seq_out = seq;
    return ok;
}

/* One persistent change, answered before the next is sent.  Returns 1
 * Success, 0 Status (code copied), -1 no answer in time / closed. */
static int so_write(soc *c, int k, size_t size, char *code, size_t codesz)
{
    char kn[16];
    key_name(k, kn, sizeof(kn));
    long seq = next_seq++;
    char *txt = value_text(k, seq, size);
    amf_value *v = amf_string_cstr(txt);
    free(txt);
    const char *kp = kn;
    keys[k].max_sent = seq;
    int rc = soc_set(c, OBJ, soc_version(c, OBJ), true, 1, &kp, &v);
    amf_unref(v);
    if (rc != 0)
        return -1;
    int64_t end = e2e_now_ms() + T;
    while (e2e_now_ms() < end) {
        so_msg *m = soc_next(c, (int)(end - e2e_now_ms()));
        if (!m)
            break;
        int ans = -2;
        for (size_t i = 0; i < m->nevents && strcmp(m->name, OBJ) == 0; i++) {
            const so_event *ev = &m->events[i];
            if (ev->type == SO_EV_SUCCESS && ev->nkv && strcmp(ev->kv[0].key, kn) == 0)
                ans = 1;
            else if (ev->type == SO_EV_STATUS) {
                snprintf(code, codesz, "%s", ev->code ? ev->code : "?");
                ans = 0;
            }
        }
        soc_msg_free(m);
        if (ans == 1) {
            keys[k].acked = seq;
            acks++;
            return 1;
        }
        if (ans == 0) {
            if (strcmp(code, "SharedObject.StoreFailed") == 0)
                store_failed++;
            else
                other_status++;
            return 0;
        }
    }
    timeouts++;
    return -1;
}

/* chat.sendPrivate(bob, text of `size` bytes).  Returns 1 queued/delivered,
 * 0 refused (code copied), -1 no answer. */
static int chat_send(cc *c, size_t size, char *code, size_t codesz)
{
    if (chat.n >= MAX_MSGS)
        return -1;
    long i = chat.n++;
    char *t = malloc(size + 32);
    if (!t)
        return -1;
    int n = snprintf(t, 32, "m%ld:", i);
    for (size_t j = (size_t)n; j < size; j++)
        t[j] = (char)('a' + (j + (size_t)i) % 26);
    t[size > (size_t)n ? size : (size_t)n] = '\0';
    cc_answer a;
    int rc = cc_send(c, "bob", t, NULL, &a);
    free(t);
    if (rc != 0)
        return -1;
    if (a.ok && (strcmp(a.status, "queued") == 0 || strcmp(a.status, "delivered") == 0)) {
        chat.queued[i] = 1;
        chat.nqueued++;
        return 1;
    }
    snprintf(code, codesz, "%s", a.ok ? a.status : a.code);
    if (!a.ok && strcmp(a.code, "Chat.StoreFailed") == 0)
        chat.refused_store++;
    else
        chat.refused_other++;
    return 0;
}

/* ---- the file system ---- */

static int run_quiet(const char *const argv[])
{
    return e2e_run(argv, NULL, 30000, NULL);
}

static bool mount_small(int size_mb)
{
    char opt[64];
    snprintf(opt, sizeof(opt), "size=%dm", size_mb);
    const char *tm[] = {"mount", "-t", "tmpfs", "-o", opt, "tmpfs", mnt, NULL};
    if (run_quiet(tm) == 0) {
        printf("# data directory on a %d MiB tmpfs\n", size_mb);
        return true;
    }
    /* Fall back to a loop-mounted ext4 image. */
    char img[400], cnt[32];
    snprintf(img, sizeof(img), "%s/disk.img", work);
    snprintf(cnt, sizeof(cnt), "count=%d", size_mb);
    char of[420];
    snprintf(of, sizeof(of), "of=%s", img);
    const char *dd[] = {"dd", "if=/dev/zero", of, "bs=1M", cnt, NULL};
    const char *mk[] = {"mkfs.ext4", "-q", "-F", img, NULL};
    const char *lm[] = {"mount", "-o", "loop", img, mnt, NULL};
    if (run_quiet(dd) == 0 && run_quiet(mk) == 0 && run_quiet(lm) == 0) {
        printf("# data directory on a %d MiB loop-mounted ext4 image\n", size_mb);
        return true;
    }
    return false;
}

static void unmount_small(void)
{
    if (!mounted)
        return;
    const char *um[] = {"umount", mnt, NULL};
    if (run_quiet(um) != 0) {
        const char *ul[] = {"umount", "-l", mnt, NULL};
        run_quiet(ul);
    }
    mounted = false;
}

/* Writes the filler until the file system refuses.  Returns bytes written. */
static long fill_disk(void)
{
    int fd = open(filler, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd < 0)
        return -1;
    static char buf[65536];
    memset(buf, 0xAB, sizeof(buf));
    long total = 0;
    for (int i = 0; i < 1000000; i++) {
        size_t chunk = sizeof(buf);
        ssize_t n = write(fd, buf, chunk);
        if (n <= 0) {
            /* ENOSPC: top off with smaller writes so nothing is left. */
            if (chunk > 1)
                for (size_t c2 = 4096; c2 >= 1; c2 /= 2)
                    while (write(fd, buf, c2) > 0)
                        total += (long)c2;
            break;
        }
        total += n;
    }
    close(fd);
    return total;
}

static void free_disk(void)
{
    unlink(filler);
}

static bool integrity_ok(const char *when)
{
    if (!e2e_have("sqlite3")) {
        printf("# sqlite3 CLI not installed: integrity_check skipped (%s)\n", when);
        return true;
    }
    char db[420], out[420];
    snprintf(db, sizeof(db), "%s/sohub.db", data);
    snprintf(out, sizeof(out), "%s/integrity.txt", work);
    const char *argv[] = {"sqlite3", db, "PRAGMA integrity_check;", NULL};
    int rc = e2e_run(argv, out, 30000, NULL);
    char *txt = e2e_read_file(out, NULL);
    bool ok = rc == 0 && txt && strncmp(txt, "ok\n", 3) == 0;
    if (!ok)
        printf("# integrity_check (%s): status %d, output: %.300s\n", when, rc, txt ? txt : "");
    free(txt);
    return ok;
}

/* ---- checks ---- */

static int start(e2e_server *s)
{
    const char *extra[] = {"--data-dir", data, "--log-level", "info", NULL};
    return e2e_server_start(s, config, extra);
}

static soc *open_obj(int port)
{
    soc *c = soc_connect(port, APP, 0, 0);
    if (!c)
        return NULL;
    soc_use(c, OBJ, 0, true);
    so_msg *m = soc_wait_event(c, OBJ, SO_EV_USE_SUCCESS, T);
    soc_msg_free(m);
    soc_settle(c, 200, 5000);
    return c;
}

/* Every acknowledged change is there: stored seq in [acked, max_sent] and
 * the content is intact. */
static void check_all(int port, const char *when, bool exact)
{
    soc *c = open_obj(port);
    E2E_CHECK(c != NULL, "%s: checker connects", when);
    if (!c)
        return;
    int lost = 0, checked = 0, stale = 0;
    for (int k = 0; k < NKEYS; k++) {
        char kn[16];
        key_name(k, kn, sizeof(kn));
        const amf_value *v = soc_get(c, OBJ, kn);
        size_t n = 0;
        const char *s = v ? amf_as_string(v, &n) : NULL;
        long seq = -1;
        if (exact && keys[k].max_sent >= 0 &&
            !(value_ok(k, s, n, &seq) && seq == keys[k].max_sent) && stale++ < 10)
            printf("# %s: key %s holds request %ld, the last one sent (and applied in memory) "
                   "was %ld\n", when, kn, seq, keys[k].max_sent);
        if (keys[k].acked < 0)
            continue;
        checked++;
        seq = -1;
        bool ok = value_ok(k, s, n, &seq) && seq >= keys[k].acked && seq <= keys[k].max_sent;
        if (!ok && lost++ < 10)
            printf("# LOSS (%s): key %s acknowledged request %ld, found %s (request %ld, %zu "
                   "bytes%s)\n", when, kn, keys[k].acked, v ? "a value" : "nothing", seq, n,
                   s && seq >= 0 && !value_ok(k, s, n, &seq) ? ", corrupted" : "");
    }
    E2E_CHECK(lost == 0, "%s: every acknowledged change is intact (%d keys checked)", when,
              checked);
    if (exact)
        E2E_CHECK(stale == 0, "%s: after a clean stop every slot holds the last value sent, "
                  "also those refused with StoreFailed (memory stays authoritative and is "
                  "written again)", when);
    soc_close(c);

    char code[128], desc[256];
    cc *bob = cc_connect(port, APP, "bob", NULL, NULL, code, desc, sizeof(code));
    E2E_CHECK(bob != NULL, "%s: bob connects", when);
    if (!bob)
        return;
    long want = 0, got = 0;
    for (long i = 0; i < chat.n; i++)
        want += chat.queued[i] && !chat.seen[i];
    double max_id = 0;
    int64_t end = e2e_now_ms() + 10000;
    while (got < want && e2e_now_ms() < end) {
        cc_pump(bob, 100);
        for (size_t i = 0; i < cc_private_count(bob); i++) {
            const cc_private *p = cc_private_at(bob, i);
            long m = -1;
            if (sscanf(p->text, "m%ld:", &m) == 1 && m >= 0 && m < chat.n && !chat.seen[m]) {
                chat.seen[m] = 1;
                got += chat.queued[m];
            }
            if (p->id > max_id)
                max_id = p->id;
        }
        cc_clear_privates(bob);
    }
    long lostm = 0;
    for (long i = 0; i < chat.n; i++)
        if (chat.queued[i] && !chat.seen[i] && lostm++ < 10)
            printf("# LOSS (%s): message m%ld was answered queued, bob did not get it\n", when, i);
    E2E_CHECK(lostm == 0, "%s: every queued message reached bob (%ld of %ld)", when, got, want);
    long refused_seen = 0;
    for (long i = 0; i < chat.n; i++)
        refused_seen += chat.seen[i] && !chat.queued[i];
    printf("# %s: bob also got %ld messages whose sender was told Chat.StoreFailed\n", when,
           refused_seen);
    if (max_id > 0) {
        cc_answer a;
        cc_ack(bob, max_id, &a);
    }
    cc_close(bob);
}

/* While the disk is full: a temporary object and a call still work. */
static void others_work(int port, const char *when)
{
    soc *t = soc_connect(port, APP, 0, 0);
    bool ok = false;
    if (t) {
        soc_use(t, "scratch", 0, false);
        soc_msg_free(soc_wait_event(t, "scratch", SO_EV_USE_SUCCESS, T));
        soc_set_num(t, "scratch", soc_version(t, "scratch"), false, "x", 1);
        so_msg *m = soc_wait_event(t, "scratch", SO_EV_SUCCESS, T);
        ok = m != NULL;
        soc_msg_free(m);
        soc_close(t);
    }
    E2E_CHECK(ok, "%s: a temporary shared object still works", when);
    char code[128], desc[256];
    cc *c = cc_connect(port, APP, "dave", NULL, NULL, code, desc, sizeof(code));
    cc_answer a;
    amf_value *arg = amf_string_cstr("ping");
    E2E_CHECK(c && cc_call(c, "echo", &arg, 1, &a) == 0 && a.ok, "%s: echo is answered", when);
    amf_unref(arg);
    cc_close(c);
}

int main(int argc, char **argv)
{
    int size_mb = (int)fault_opt_long(argc, argv, "--size-mb", 16);
    bool keep = fault_opt_flag(argc, argv, "--keep");
    signal(SIGPIPE, SIG_IGN);
    for (int k = 0; k < NKEYS; k++)
        keys[k] = (key_rec){-1, -1};
    if (fault_mkdtemp(work, sizeof(work), "disk") != 0)
        return 1;
    snprintf(mnt, sizeof(mnt), "%s/mnt", work);
    snprintf(data, sizeof(data), "%s/data", mnt);
    snprintf(filler, sizeof(filler), "%s/filler", mnt);
    mkdir(mnt, 0700);
    if (geteuid() != 0 || !(mounted = mount_small(size_mb))) {
        printf("1..0 # SKIP cannot mount a small file system here (needs root and tmpfs or "
               "loop devices)\n");
        fault_rm_rf(work);
        return E2E_SKIP;
    }
    int64_t t0 = e2e_now_ms();
    e2e_server srv;
    if (start(&srv) != 0) {
        unmount_small();
        return 1;
    }
    char code[128] = "";

    /* A: room on disk. */
    soc *w = open_obj(srv.port);
    char cd[128], desc[256];
    cc *alice = cc_connect(srv.port, APP, "alice", NULL, NULL, cd, desc, sizeof(cd));
    E2E_CHECK(w && alice, "A: writer and alice connect");
    if (!w || !alice)
        goto done;
    int okA = 0;
    for (int i = 0; i < 40; i++)
        okA += so_write(w, i % 16, 2000, code, sizeof(code)) == 1;
    E2E_CHECK(okA == 40, "A: 40 changes acknowledged with room on disk (%d)", okA);
    int qA = 0;
    for (int i = 0; i < 10; i++)
        qA += chat_send(alice, 1000, code, sizeof(code)) == 1;
    E2E_CHECK(qA == 10, "A: 10 messages queued for offline bob (%d)", qA);

    /* B: the disk is full. */
    long filled = fill_disk();
    printf("# B: filler wrote %.1f MiB, the file system is full\n", (double)filled / 1048576.0);
    long f0 = store_failed, a0 = acks, t0b = timeouts;
    int first_fail = -1;
    for (int i = 0; i < 400 && store_failed - f0 < 20; i++) {
        int r = so_write(w, 16 + i % 48, 30000, code, sizeof(code));
        if (r == 0 && first_fail < 0) {
            first_fail = i;
            printf("# B: first refusal after %d big changes: %s\n", i, code);
        }
        if (r < 0)
            break;
    }
    E2E_CHECK(timeouts == t0b, "B: every change was answered while the disk is full (%ld "
              "without answer)", timeouts - t0b);
    E2E_CHECK(store_failed > f0, "B: writers get SharedObject.StoreFailed (%ld refusals, %ld "
              "acknowledged before the store filled up)", store_failed - f0, acks - a0);
    E2E_CHECK(other_status == 0, "B: no other Status code (%ld)", other_status);
    long cs0 = chat.refused_store;
    int chat_no_answer = 0;
    for (int i = 0; i < 60 && chat.refused_store - cs0 < 5; i++) {
        int r = chat_send(alice, 30000, code, sizeof(code));
        if (r < 0) {
            chat_no_answer++;
            break;
        }
    }
    E2E_CHECK(chat_no_answer == 0, "B: every chat.sendPrivate was answered");
    E2E_CHECK(chat.refused_store > cs0, "B: chat senders get Chat.StoreFailed (%ld, other "
              "refusals %ld)", chat.refused_store - cs0, chat.refused_other);
    others_work(srv.port, "B");
    E2E_CHECK(kill(srv.pid, 0) == 0, "B: the server is still running");
    /* Nobody writes now, but the failed batches left rewrites queued: the
     * server must retry them with a pause, not spin (it used to retry back
     * to back, a core busy and thousands of log lines a second). */
    size_t fails0 = count_in_log(&srv, "store: round of");
    e2e_sleep_ms(1500);
    size_t fails1 = count_in_log(&srv, "store: round of");
    E2E_CHECK(fails0 > 0, "B: the failing writes were logged (%zu lines)", fails0);
    E2E_CHECK(fails1 - fails0 <= 2, "B: idle on a full disk, failing retries are paced and "
              "logged at most every 10 s (%zu new log lines in 1.5 s)", fails1 - fails0);

    /* C: space comes back, no restart. */
    free_disk();
    int64_t tc = e2e_now_ms();
    bool recovered = false;
    for (int i = 0; i < 100 && !recovered; i++) {
        int r = so_write(w, 16 + i % 48, 30000, code, sizeof(code));
        recovered = r == 1;
        if (!recovered)
            e2e_sleep_ms(100);
    }
    E2E_CHECK(recovered, "C: a persistent change gets Success again after space is freed, "
              "without restart (%lld ms)", (long long)(e2e_now_ms() - tc));
    int okC = 0;
    for (int i = 0; i < 20; i++)
        okC += so_write(w, i % 64, 3000, code, sizeof(code)) == 1;
    E2E_CHECK(okC == 20, "C: 20 more changes acknowledged (%d)", okC);
    int qC = 0;
    for (int i = 0; i < 10; i++)
        qC += chat_send(alice, 2000, code, sizeof(code)) == 1;
    E2E_CHECK(qC == 10, "C: messages are queued again (%d of 10)", qC);
    soc_close(w);
    cc_close(alice);
    w = NULL;
    alice = NULL;

    /* D: clean stop, integrity, restart. */
    int st = e2e_server_stop(&srv, false);
    E2E_CHECK(st == 0, "D: clean stop after the disk-full episode (status %d)", st);
    E2E_CHECK(integrity_ok("after D"), "D: PRAGMA integrity_check is ok");
    if (start(&srv) != 0) {
        E2E_CHECK(0, "D: server restarts");
        goto done;
    }
    check_all(srv.port, "D", true);

    /* E: full again, kill -9 while full. */
    w = open_obj(srv.port);
    alice = cc_connect(srv.port, APP, "alice", NULL, NULL, cd, desc, sizeof(cd));
    E2E_CHECK(w && alice, "E: clients connect");
    if (!w || !alice)
        goto done;
    for (int i = 0; i < 10; i++)
        so_write(w, i, 2000, code, sizeof(code));
    fill_disk();
    long fE = store_failed;
    for (int i = 0; i < 400 && store_failed - fE < 5; i++)
        if (so_write(w, 16 + i % 48, 30000, code, sizeof(code)) < 0)
            break;
    for (int i = 0; i < 10 && chat.refused_store < cs0 + 10; i++)
        chat_send(alice, 30000, code, sizeof(code));
    E2E_CHECK(store_failed > fE, "E: writes refused again (%ld)", store_failed - fE);
    kill(srv.pid, SIGKILL);
    st = e2e_wait(srv.pid, 5000);
    srv.pid = 0;
    E2E_CHECK(st == 128 + SIGKILL, "E: server killed with SIGKILL while the disk is full");
    e2e_server_stop(&srv, false);
    soc_close(w);
    cc_close(alice);
    w = NULL;
    alice = NULL;
    free_disk();
    E2E_CHECK(integrity_ok("after E"), "E: PRAGMA integrity_check is ok after kill -9 on a "
              "full disk");
    if (start(&srv) != 0) {
        E2E_CHECK(0, "E: server restarts");
        goto done;
    }
    check_all(srv.port, "E", false);
    st = e2e_server_stop(&srv, false);
    E2E_CHECK(st == 0, "E: clean stop (status %d)", st);
    printf("# FIGURES diskfull: %ld changes acknowledged, %ld refused with StoreFailed, %ld other "
           "Status, %ld unanswered; messages: %ld queued, %ld refused with Chat.StoreFailed, "
           "%ld other refusals; %.1f s\n",
           acks, store_failed, other_status, timeouts, chat.nqueued, chat.refused_store,
           chat.refused_other, (double)(e2e_now_ms() - t0) / 1000.0);
done:
    soc_close(w);
    cc_close(alice);
    if (srv.pid > 0) {
        if (e2e_failures)
            e2e_log_dump(&srv);
        e2e_server_stop(&srv, keep || e2e_failures);
    }
    free_disk();
    unmount_small();
    if (!keep && !e2e_failures)
        fault_rm_rf(work);
    else
        printf("# work directory kept: %s\n", work);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
