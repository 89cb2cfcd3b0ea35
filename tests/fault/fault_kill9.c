/* fault_kill9.c - kill -9 of sohub-server, again and again, while clients
 * write persistent shared objects and send private messages; after each
 * restart on the same data directory nothing that was acknowledged may be
 * missing.
 *
 * One round:
 *   1. start the server on the data dir and check everything acknowledged
 *      in earlier rounds (below);
 *   2. fork the clients: W shared-object writers (each owns two persistent
 *      objects: numeric keys written in increasing values, one- and
 *      two-key messages, a string "blob" whose content is derived from its
 *      sequence number, a "tmp" key set and removed in turn; up to WINDOW
 *      changes in flight), "alice" sending chat.sendPrivate to "bob" (never
 *      connected while clients run: answers "queued") and to "carol"
 *      (connected, reading and acknowledging: answers "delivered"), and
 *      carol herself.  Each child logs every request it sent and every
 *      answer it got to its own file;
 *   3. once every child has had an answer, wait a random 0..--max-delay ms
 *      and SIGKILL the server; the children read what is left and exit.
 *
 * The check after each restart, for everything of every earlier round:
 *   - every key whose change got Success is there; its value is the
 *     acknowledged one or one the writer sent for that key after it
 *     (values only grow, so a value below the acknowledged one is a lost
 *     change), a blob's content is intact, "tmp" is in the state of the
 *     acknowledged operation or of one sent after it;
 *   - the object's version is >= every version a Success carried, and
 *     never below the version seen at the previous check;
 *   - every message answered "queued" or "delivered" reaches its recipient
 *     (carol's live reception counts; otherwise it must come on the
 *     recipient's next connection), with the id the sender was told, and
 *     no id is ever used for two different messages of one recipient;
 *   - on every connection (carol's during the round, each checker's) the
 *     ids come in strictly increasing order (docs/chat.md: stored ones
 *     first, then live ones), which is what makes the checker's chat.ack
 *     of the highest id it saw safe.
 * Every loss is printed with writer, object, key, acknowledged and found
 * values (or the message's sequence, id and status) and fails the test.
 *
 * Options: --rounds N (5), --writers N (2), --max-delay MS (800),
 * --seed S, --keep (keep the work directory), --strict-ids (a private
 * message id used for two messages fails the run; without it the known
 * bug is reported as a TAP "# TODO" line, see docs/faults.md).  Output: TAP lines, "# "
 * figures, exit 0 / 1. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault_util.h"
#include "harness.h"
#include "so_client.h"
#include "test_chat_client.h"

#define T 5000
#define MAX_WRITERS 8
#define OBJS 2
#define NKEYS 16
#define K_BLOB NKEYS
#define K_TMP (NKEYS + 1)
#define KEYS (NKEYS + 2)
#define WINDOW 32
#define CHAT_WINDOW 8
#define CHILD_MAX_MS 60000
#define APP "fault/main"

static const char config[] = "[server]\n"
                             "so_max_updates_per_sec = 0\n"
                             "[app *]\n"
                             "chat_rate = 0\n"
                             "chat_queue = 1000000\n";

static volatile sig_atomic_t child_stop;
static void on_term(int sig)
{
    (void)sig;
    child_stop = 1;
}

static void key_name(int k, char *buf, size_t sz)
{
    if (k == K_BLOB)
        snprintf(buf, sz, "blob");
    else if (k == K_TMP)
        snprintf(buf, sz, "tmp");
    else
        snprintf(buf, sz, "k%d", k);
}

static int key_index(const char *name)
{
    if (strcmp(name, "blob") == 0)
        return K_BLOB;
    if (strcmp(name, "tmp") == 0)
        return K_TMP;
    if (name[0] == 'k') {
        int k = atoi(name + 1);
        if (k >= 0 && k < NKEYS)
            return k;
    }
    return -1;
}

static void obj_name(int w, int o, char *buf, size_t sz)
{
    snprintf(buf, sz, "w%d-o%d", w, o);
}

/* The blob written at seq by writer w: a header and filler derived from
 * both, so any byte changed in storage shows. */
static size_t blob_text(int w, long seq, char *buf, size_t sz)
{
    int n = snprintf(buf, sz, "w%d:%ld:", w, seq);
    size_t len = (size_t)n + 100 + (size_t)(seq % 3000);
    if (len >= sz)
        len = sz - 1;
    for (size_t i = (size_t)n; i < len; i++)
        buf[i] = (char)('a' + (unsigned long)(seq * 31 + (long)i * 7) % 26);
    buf[len] = '\0';
    return len;
}

static void signal_ready(int fd)
{
    char b = 1;
    ssize_t r = write(fd, &b, 1);
    (void)r;
}

/* ---- children ---- */

typedef struct pending_op {
    long seq;
    char op;   /* n number, b blob, s tmp set, r tmp remove */
} pending_op;

/* Writer w: requests and answers go to f; seq continues from seq0. */
static int writer_main(int port, int w, long seq0, uint64_t seed, FILE *f, int ready_fd)
{
    soc *c = soc_connect(port, APP, w % 2 ? 3 : 0, 0);
    if (!c) {
        fprintf(f, "X connect\n");
        return 1;
    }
    char names[OBJS][32];
    for (int o = 0; o < OBJS; o++) {
        obj_name(w, o, names[o], sizeof(names[o]));
        soc_use(c, names[o], 0, true);
        so_msg *m = soc_wait_event(c, names[o], SO_EV_USE_SUCCESS, T);
        if (!m) {
            fprintf(f, "X use %s\n", names[o]);
            soc_close(c);
            return 1;
        }
        soc_msg_free(m);
    }
    soc_settle(c, 50, 2000);
    /* Per (object, key) FIFO of requests awaiting their answer. */
    static pending_op fifo[OBJS][KEYS][WINDOW * 2];
    int head[OBJS][KEYS] = {{0}}, len[OBJS][KEYS] = {{0}};
    static char blob[4096];
    long seq = seq0, inflight = 0;
    bool ready = false;
    uint64_t rng = seed;
    int64_t end = e2e_now_ms() + CHILD_MAX_MS;
    while (!child_stop && !soc_closed(c) && e2e_now_ms() < end) {
        while (inflight < WINDOW) {
            int o = (int)(fault_rand(&rng) % OBJS);
            int r = (int)(fault_rand(&rng) % 10);
            int ks[2];
            size_t nk = 1;
            char op = 'n';
            if (r <= 6) {
                ks[0] = (int)(fault_rand(&rng) % NKEYS);
                if (r == 6) {
                    ks[1] = (ks[0] + 1 + (int)(fault_rand(&rng) % (NKEYS - 1))) % NKEYS;
                    nk = 2;
                }
            } else if (r == 7) {
                ks[0] = K_BLOB;
                op = 'b';
            } else {
                ks[0] = K_TMP;
                op = r == 8 ? 's' : 'r';
            }
            bool room = true;
            for (size_t i = 0; i < nk; i++)
                room = room && len[o][ks[i]] < WINDOW * 2;
            if (!room)
                break;
            char kn[2][16];
            const char *keys[2];
            amf_value *vals[2] = {NULL, NULL};
            for (size_t i = 0; i < nk; i++) {
                key_name(ks[i], kn[i], sizeof(kn[i]));
                keys[i] = kn[i];
                if (op == 'n')
                    vals[i] = amf_number((double)seq * NKEYS + ks[i]);
                else if (op == 'b') {
                    blob_text(w, seq, blob, sizeof(blob));
                    vals[i] = amf_string_cstr(blob);
                } else if (op == 's')
                    vals[i] = amf_number((double)seq);
            }
            int rc;
            uint32_t v = soc_version(c, names[o]);
            if (op == 'r')
                rc = soc_remove(c, names[o], v, true, keys[0]);
            else
                rc = soc_set(c, names[o], v, true, nk, keys, vals);
            for (size_t i = 0; i < nk; i++)
                amf_unref(vals[i]);
            for (size_t i = 0; i < nk; i++) {
                int k = ks[i];
                pending_op *p = &fifo[o][k][(head[o][k] + len[o][k]++) % (WINDOW * 2)];
                p->seq = seq;
                p->op = op;
                fprintf(f, "S %d %d %c %ld\n", o, k, op, seq);
            }
            seq++;
            inflight++;
            if (rc != 0) {
                fprintf(f, "X send\n");
                goto out;
            }
        }
        so_msg *m = soc_next(c, 20);
        if (!m)
            continue;
        int o = -1;
        for (int i = 0; i < OBJS; i++)
            if (strcmp(m->name, names[i]) == 0)
                o = i;
        for (size_t i = 0; o >= 0 && i < m->nevents; i++) {
            const so_event *ev = &m->events[i];
            if (ev->type == SO_EV_STATUS) {
                fprintf(f, "T %d %s\n", o, ev->code ? ev->code : "?");
                continue;
            }
            if (ev->type != SO_EV_SUCCESS && ev->type != SO_EV_CHANGE && ev->type != SO_EV_REMOVE)
                continue;
            for (size_t j = 0; j < ev->nkv; j++) {
                int k = key_index(ev->kv[j].key);
                if (k < 0)
                    continue;
                if (ev->type != SO_EV_SUCCESS) {
                    /* A writer that owns its objects should never be
                     * overridden: a Change / Remove to it is a finding. */
                    fprintf(f, "C %d %d\n", o, k);
                    continue;
                }
                if (len[o][k] == 0) {
                    fprintf(f, "Z %d %d\n", o, k);   /* Success nobody asked for */
                    continue;
                }
                pending_op *p = &fifo[o][k][head[o][k]];
                head[o][k] = (head[o][k] + 1) % (WINDOW * 2);
                len[o][k]--;
                fprintf(f, "A %d %d %c %ld %u\n", o, k, p->op, p->seq, m->version);
                if (!ready) {
                    ready = true;
                    fflush(f);
                    signal_ready(ready_fd);
                }
            }
            /* one answer per request message: count a message answered
             * once its first key was answered (two-key messages share) */
        }
        /* In-flight messages: recount from the FIFOs (a two-key message
         * holds two entries until both are answered). */
        long total = 0;
        for (int a = 0; a < OBJS; a++)
            for (int k = 0; k < KEYS; k++)
                total += len[a][k];
        inflight = total;
        soc_msg_free(m);
    }
out:
    /* Read what the kernel still holds (answers sent before the kill). */
    for (int i = 0; i < 100 && !soc_closed(c); i++) {
        so_msg *m = soc_next(c, 20);
        if (!m)
            break;
        /* late answers: count them as acknowledged too */
        for (size_t e = 0; e < m->nevents; e++) {
            const so_event *ev = &m->events[e];
            int o = -1;
            for (int x = 0; x < OBJS; x++)
                if (strcmp(m->name, names[x]) == 0)
                    o = x;
            if (o < 0 || ev->type != SO_EV_SUCCESS)
                continue;
            for (size_t j = 0; j < ev->nkv; j++) {
                int k = key_index(ev->kv[j].key);
                if (k < 0 || len[o][k] == 0)
                    continue;
                pending_op *p = &fifo[o][k][head[o][k]];
                head[o][k] = (head[o][k] + 1) % (WINDOW * 2);
                len[o][k]--;
                fprintf(f, "A %d %d %c %ld %u\n", o, k, p->op, p->seq, m->version);
            }
        }
        soc_msg_free(m);
    }
    soc_close(c);
    return 0;
}

static int alice_main(int port, long seq0, FILE *f, int ready_fd)
{
    char code[128], desc[256];
    cc *c = cc_connect(port, APP, "alice", NULL, NULL, code, desc, sizeof(code));
    if (!c) {
        fprintf(f, "X connect %s\n", code);
        return 1;
    }
    double txid[CHAT_WINDOW];
    long seqs[CHAT_WINDOW];
    int head = 0, n = 0;
    long seq = seq0;
    bool ready = false;
    int64_t end = e2e_now_ms() + CHILD_MAX_MS;
    while (!child_stop && e2e_now_ms() < end) {
        while (n < CHAT_WINDOW) {
            char text[64];
            snprintf(text, sizeof(text), "m%ld", seq);
            const char *to = seq % 2 ? "carol" : "bob";
            amf_value *args[2] = {amf_string_cstr(to), amf_string_cstr(text)};
            fprintf(f, "S %ld %d\n", seq, (int)(seq % 2));
            double t = cc_call_async(c, "chat.sendPrivate", args, 2);
            amf_unref(args[0]);
            amf_unref(args[1]);
            if (t < 0) {
                fprintf(f, "X send\n");
                goto out;
            }
            txid[(head + n) % CHAT_WINDOW] = t;
            seqs[(head + n) % CHAT_WINDOW] = seq;
            n++;
            seq++;
        }
        cc_answer a;
        if (cc_wait(c, txid[head], &a, 3000) != 0) {
            fprintf(f, "X wait\n");
            break;
        }
        long s = seqs[head];
        head = (head + 1) % CHAT_WINDOW;
        n--;
        if (a.ok)
            fprintf(f, "M %ld %d %.0f %s\n", s, (int)(s % 2), a.id, a.status);
        else
            fprintf(f, "E %ld %d %s\n", s, (int)(s % 2), a.code);
        if (!ready) {
            ready = true;
            fflush(f);
            signal_ready(ready_fd);
        }
    }
out:
    /* Answers that arrived before the kill but were not read yet. */
    while (n > 0) {
        cc_answer a;
        if (cc_wait(c, txid[head], &a, 300) != 0)
            break;
        long s = seqs[head];
        if (a.ok)
            fprintf(f, "M %ld %d %.0f %s\n", s, (int)(s % 2), a.id, a.status);
        head = (head + 1) % CHAT_WINDOW;
        n--;
    }
    cc_close(c);
    return 0;
}

static void log_privates(cc *c, FILE *f, double *max_id)
{
    for (size_t i = 0; i < cc_private_count(c); i++) {
        const cc_private *p = cc_private_at(c, i);
        fprintf(f, "P %.0f %s\n", p->id, p->text);
        if (p->id > *max_id)
            *max_id = p->id;
    }
    cc_clear_privates(c);
}

static int carol_main(int port, FILE *f, int ready_fd)
{
    char code[128], desc[256];
    cc *c = cc_connect(port, APP, "carol", NULL, NULL, code, desc, sizeof(code));
    if (!c) {
        fprintf(f, "X connect %s\n", code);
        return 1;
    }
    signal_ready(ready_fd);
    double max_id = 0, acked = 0;
    int64_t end = e2e_now_ms() + CHILD_MAX_MS, next_ack = 0;
    while (!child_stop && e2e_now_ms() < end) {
        cc_pump(c, 20);
        log_privates(c, f, &max_id);
        if (max_id > acked && e2e_now_ms() >= next_ack) {
            /* Acknowledge what was logged, without waiting for the answer. */
            amf_value *arg = amf_number(max_id);
            cc_call_async(c, "chat.ack", &arg, 1);
            amf_unref(arg);
            acked = max_id;
            next_ack = e2e_now_ms() + 100;
        }
    }
    cc_pump(c, 200);
    log_privates(c, f, &max_id);
    cc_close(c);
    return 0;
}

/* ---- the parent's records ---- */

typedef struct tmp_op {
    long seq;
    char op;
} tmp_op;

typedef struct keystate {
    long acked;       /* seq of the last acknowledged request, -1 none */
    char acked_op;
    long max_sent;    /* -1 none */
    size_t acked_pos; /* tmp: index of the acknowledged op in ops */
    tmp_op *ops;      /* tmp only: every op sent, in order */
    size_t nops, cap;
} keystate;

typedef struct objstate {
    keystate keys[KEYS];
    uint32_t acked_version;
    uint32_t seen_version;  /* at the last check */
} objstate;

typedef struct writer_rec {
    objstate obj[OBJS];
    long next_seq;
    long sent, acks, statuses, overrides;
} writer_rec;

typedef struct msg_rec {
    signed char to;     /* 0 bob, 1 carol, -1 unknown */
    signed char status; /* 0 not answered, 1 queued, 2 delivered, 3 error */
    bool confirmed;
    int round;
    double id;
} msg_rec;

typedef struct run {
    int nwriters;
    writer_rec w[MAX_WRITERS];
    msg_rec *msgs;
    long nmsgs, cap_msgs;
    long chat_next_seq;
    long *id_seq[2];    /* recipient id -> message seq (+1), 0 unknown */
    long id_cap[2];
    long acks_checked, msgs_live, msgs_redelivered, dups;
    long lost, errors_chat, id_reuse, disorder;
} run;

/* One connection's ids must grow strictly: *last is the previous one. */
static void check_order(run *r, const char *who, double id, double *last)
{
    if (id <= *last) {
        if (r->disorder < 20)
            printf("# ORDER: %s got id %.0f after id %.0f on one connection\n", who, id, *last);
        r->disorder++;
    }
    if (id > *last)
        *last = id;
}

static msg_rec *msg_at(run *r, long seq)
{
    if (seq < 0 || seq > 100000000)
        return NULL;
    if (seq >= r->cap_msgs) {
        long cap = r->cap_msgs ? r->cap_msgs : 4096;
        while (cap <= seq)
            cap *= 2;
        msg_rec *p = realloc(r->msgs, (size_t)cap * sizeof(*p));
        if (!p)
            return NULL;
        for (long i = r->cap_msgs; i < cap; i++)
            p[i] = (msg_rec){.to = -1};
        r->msgs = p;
        r->cap_msgs = cap;
    }
    if (seq >= r->nmsgs)
        r->nmsgs = seq + 1;
    return &r->msgs[seq];
}

/* A recipient saw message `text` with `id`: checks the id against what the
 * sender was told and against every earlier use of the id. */
static void saw_message(run *r, int to, double id, const char *text, bool live)
{
    long seq = -1;
    if (sscanf(text, "m%ld", &seq) != 1 || seq < 0) {
        printf("# %s got an unknown message '%s' (id %.0f)\n", to ? "carol" : "bob", text, id);
        return;
    }
    msg_rec *m = msg_at(r, seq);
    if (!m)
        return;
    if (m->to >= 0 && m->to != to) {
        printf("# LOSS/MISROUTE: message m%ld for %s arrived at %s\n", seq,
               m->to ? "carol" : "bob", to ? "carol" : "bob");
        r->lost++;
    }
    if (m->status == 1 || m->status == 2) {
        if (m->id != id) {
            printf("# ID MISMATCH: m%ld: sender was told id %.0f, %s got id %.0f\n", seq, m->id,
                   to ? "carol" : "bob", id);
            r->lost++;
        }
    }
    if (!m->confirmed) {
        m->confirmed = true;
        if (live)
            r->msgs_live++;
        else
            r->msgs_redelivered++;
    } else {
        r->dups++;
    }
    long i = (long)id;
    if (i <= 0 || i > 100000000)
        return;
    if (i >= r->id_cap[to]) {
        long cap = r->id_cap[to] ? r->id_cap[to] : 4096;
        while (cap <= i)
            cap *= 2;
        long *p = realloc(r->id_seq[to], (size_t)cap * sizeof(*p));
        if (!p)
            return;
        memset(p + r->id_cap[to], 0, (size_t)(cap - r->id_cap[to]) * sizeof(*p));
        r->id_seq[to] = p;
        r->id_cap[to] = cap;
    }
    long *slot = &r->id_seq[to][i];
    if (*slot == 0)
        *slot = seq + 1;
    else if (*slot != seq + 1) {
        printf("# ID REUSED: %s id %ld was m%ld, now m%ld (a client dropping ids it has "
               "shown would lose m%ld)\n",
               to ? "carol" : "bob", i, *slot - 1, seq, seq);
        r->id_reuse++;
    }
}

static void parse_writer(run *r, int w, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("# writer %d: no log\n", w);
        return;
    }
    writer_rec *wr = &r->w[w];
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        int o, k;
        char op;
        long seq;
        unsigned ver;
        if (line[0] == 'S' && sscanf(line, "S %d %d %c %ld", &o, &k, &op, &seq) == 4) {
            if (o < 0 || o >= OBJS || k < 0 || k >= KEYS)
                continue;
            keystate *ks = &wr->obj[o].keys[k];
            if (seq > ks->max_sent)
                ks->max_sent = seq;
            if (seq >= wr->next_seq)
                wr->next_seq = seq + 1;
            wr->sent++;
            if (k == K_TMP) {
                if (ks->nops == ks->cap) {
                    size_t cap = ks->cap ? ks->cap * 2 : 256;
                    tmp_op *p = realloc(ks->ops, cap * sizeof(*p));
                    if (!p)
                        continue;
                    ks->ops = p;
                    ks->cap = cap;
                }
                ks->ops[ks->nops++] = (tmp_op){seq, op};
            }
        } else if (line[0] == 'A' &&
                   sscanf(line, "A %d %d %c %ld %u", &o, &k, &op, &seq, &ver) == 5) {
            if (o < 0 || o >= OBJS || k < 0 || k >= KEYS)
                continue;
            keystate *ks = &wr->obj[o].keys[k];
            wr->acks++;
            r->acks_checked++;
            if (seq > ks->acked) {
                ks->acked = seq;
                ks->acked_op = op;
                if (k == K_TMP) {
                    for (size_t i = ks->nops; i-- > 0;)
                        if (ks->ops[i].seq == seq) {
                            ks->acked_pos = i;
                            break;
                        }
                }
            }
            if (ver > wr->obj[o].acked_version)
                wr->obj[o].acked_version = ver;
        } else if (line[0] == 'T') {
            wr->statuses++;
            if (wr->statuses <= 5)
                printf("# writer %d got a Status: %s", w, line + 2);
        } else if (line[0] == 'C') {
            wr->overrides++;
        } else if (line[0] == 'Z' || line[0] == 'X') {
            if (line[0] == 'Z')
                printf("# writer %d: Success with nothing pending: %s", w, line);
        }
    }
    fclose(f);
}

static void parse_alice(run *r, const char *path, int round)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[256], status[32], code[128];
    long seq;
    int to;
    double id;
    while (fgets(line, sizeof(line), f)) {
        msg_rec *m;
        if (sscanf(line, "S %ld %d", &seq, &to) == 2 && line[0] == 'S') {
            if ((m = msg_at(r, seq)) != NULL) {
                m->to = (signed char)to;
                m->round = round;
            }
            if (seq >= r->chat_next_seq)
                r->chat_next_seq = seq + 1;
        } else if (line[0] == 'M' && sscanf(line, "M %ld %d %lf %31s", &seq, &to, &id, status) == 4) {
            if ((m = msg_at(r, seq)) == NULL)
                continue;
            m->id = id;
            m->status = strcmp(status, "queued") == 0 ? 1 : strcmp(status, "delivered") == 0 ? 2 : 3;
            if (m->status == 3)
                printf("# m%ld: unexpected status '%s'\n", seq, status);
        } else if (line[0] == 'E' && sscanf(line, "E %ld %d %127s", &seq, &to, code) == 3) {
            if ((m = msg_at(r, seq)) != NULL)
                m->status = 3;
            if (r->errors_chat++ < 5)
                printf("# m%ld refused: %s\n", seq, code);
        }
    }
    fclose(f);
}

static void parse_carol(run *r, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[256], text[128];
    double id, last = 0;
    while (fgets(line, sizeof(line), f))
        if (line[0] == 'P' && sscanf(line, "P %lf %127s", &id, text) == 2) {
            check_order(r, "carol (live)", id, &last);
            saw_message(r, 1, id, text, true);
        }
    fclose(f);
}

/* ---- the checks after a restart ---- */

static void report_loss(run *r, const char *fmt, int w, int o, const char *key, long acked,
                        const char *found)
{
    r->lost++;
    if (r->lost <= 20) {
        printf("# LOSS: writer %d object w%d-o%d key %s: ", w, w, o, key);
        printf(fmt, acked, found);
        printf("\n");
    }
}

static void check_key(run *r, soc *c, int w, int o, int k)
{
    char on[32], kn[16], found[160];
    obj_name(w, o, on, sizeof(on));
    key_name(k, kn, sizeof(kn));
    keystate *ks = &r->w[w].obj[o].keys[k];
    const amf_value *v = soc_get(c, on, kn);
    if (!v)
        snprintf(found, sizeof(found), "absent");
    else if (amf_type_of(v) == AMF_NUMBER)
        snprintf(found, sizeof(found), "%.0f", amf_as_number(v));
    else {
        size_t n;
        const char *s = amf_as_string(v, &n);
        snprintf(found, sizeof(found), "'%.40s' (%zu bytes)", s ? s : "?", s ? n : 0);
    }
    if (k < NKEYS) {
        if (ks->acked < 0)
            return;
        double x = v && amf_type_of(v) == AMF_NUMBER ? amf_as_number(v) : NAN;
        long seq = isnan(x) ? -1 : (long)floor(x / NKEYS);
        bool ok = !isnan(x) && fmod(x, NKEYS) == k && seq >= ks->acked && seq <= ks->max_sent;
        if (!ok)
            report_loss(r, "acknowledged value from request %ld, found %s", w, o, kn,
                        ks->acked, found);
    } else if (k == K_BLOB) {
        if (ks->acked < 0)
            return;
        size_t n = 0;
        const char *s = v ? amf_as_string(v, &n) : NULL;
        int ww = -1;
        long seq = -1;
        bool ok = s && sscanf(s, "w%d:%ld:", &ww, &seq) == 2 && ww == w && seq >= ks->acked &&
                  seq <= ks->max_sent;
        if (ok) {
            static char want[4096];
            size_t len = blob_text(w, seq, want, sizeof(want));
            ok = len == n && memcmp(want, s, n) == 0;
            if (!ok)
                snprintf(found, sizeof(found), "blob of request %ld with corrupted content", seq);
        }
        if (!ok)
            report_loss(r, "acknowledged blob of request %ld, found %s", w, o, kn, ks->acked,
                        found);
    } else {
        /* tmp: the state after some op at or after the acknowledged one. */
        if (ks->acked < 0)
            return;
        bool ok = false;
        for (size_t i = ks->acked_pos; i < ks->nops && !ok; i++) {
            if (ks->ops[i].op == 'r')
                ok = v == NULL;
            else
                ok = v && amf_type_of(v) == AMF_NUMBER &&
                     amf_as_number(v) == (double)ks->ops[i].seq;
        }
        if (!ok) {
            char what[64];
            snprintf(what, sizeof(what), "%s", ks->acked_op == 'r' ? "remove" : "set");
            report_loss(r, "acknowledged tmp op of request %ld, found %s", w, o, kn, ks->acked,
                        found);
            printf("#   (that op was a %s)\n", what);
        }
    }
}

static void check_objects(run *r, int port, int round)
{
    long before = r->lost;
    for (int w = 0; w < r->nwriters; w++) {
        soc *c = soc_connect(port, APP, 0, 0);
        if (!c) {
            E2E_CHECK(0, "round %d: checker connects", round);
            return;
        }
        for (int o = 0; o < OBJS; o++) {
            char on[32];
            obj_name(w, o, on, sizeof(on));
            soc_use(c, on, 0, true);
            soc_msg_free(soc_wait_event(c, on, SO_EV_USE_SUCCESS, T));
        }
        soc_settle(c, 200, 5000);
        for (int o = 0; o < OBJS; o++) {
            char on[32];
            obj_name(w, o, on, sizeof(on));
            objstate *os = &r->w[w].obj[o];
            for (int k = 0; k < KEYS; k++)
                check_key(r, c, w, o, k);
            uint32_t v = soc_version(c, on);
            if (v < os->acked_version || v < os->seen_version) {
                r->lost++;
                printf("# LOSS: object %s at version %u after restart, a Success carried %u, "
                       "the previous check saw %u\n",
                       on, v, os->acked_version, os->seen_version);
            }
            os->seen_version = v;
        }
        soc_close(c);
    }
    E2E_CHECK(r->lost == before, "round %d: every acknowledged shared-object change is there "
              "(%ld acknowledged so far)", round, r->acks_checked);
}

static void check_chat(run *r, int port, int round)
{
    long before = r->lost;
    for (int to = 0; to < 2; to++) {
        const char *user = to ? "carol" : "bob";
        long want = 0;
        for (long s = 0; s < r->nmsgs; s++) {
            msg_rec *m = &r->msgs[s];
            want += m->to == to && (m->status == 1 || m->status == 2) && !m->confirmed;
        }
        char code[128], desc[256];
        cc *c = cc_connect(port, APP, user, NULL, NULL, code, desc, sizeof(code));
        if (!c) {
            E2E_CHECK(0, "round %d: %s connects (%s)", round, user, code);
            return;
        }
        double max_id = 0;
        int64_t end = e2e_now_ms() + 15000;
        long got = 0;
        while (e2e_now_ms() < end) {
            cc_pump(c, 100);
            for (size_t i = 0; i < cc_private_count(c); i++) {
                const cc_private *p = cc_private_at(c, i);
                check_order(r, user, p->id, &max_id);
                long seq = -1;
                if (sscanf(p->text, "m%ld", &seq) == 1 && seq >= 0 && seq < r->nmsgs &&
                    !r->msgs[seq].confirmed && r->msgs[seq].status >= 1 && r->msgs[seq].status <= 2)
                    got++;
                saw_message(r, to, p->id, p->text, false);
            }
            cc_clear_privates(c);
            if (got >= want) {
                cc_pump(c, 100);   /* duplicates, if any, are counted */
                for (size_t i = 0; i < cc_private_count(c); i++) {
                    check_order(r, user, cc_private_at(c, i)->id, &max_id);
                    saw_message(r, to, cc_private_at(c, i)->id, cc_private_at(c, i)->text, false);
                }
                cc_clear_privates(c);
                break;
            }
        }
        for (long s = 0; s < r->nmsgs; s++) {
            msg_rec *m = &r->msgs[s];
            if (m->to == to && (m->status == 1 || m->status == 2) && !m->confirmed) {
                r->lost++;
                if (r->lost - before <= 20)
                    printf("# LOSS: m%ld (round %d) answered '%s' id %.0f never reached %s\n", s,
                           m->round, m->status == 1 ? "queued" : "delivered", m->id, user);
                m->confirmed = true;   /* reported once */
            }
        }
        if (max_id > 0) {
            cc_answer a;
            if (cc_ack(c, max_id, &a) != 0 || !a.ok)
                printf("# %s: chat.ack(%.0f) got no _result\n", user, max_id);
        }
        cc_close(c);
    }
    E2E_CHECK(r->lost == before, "round %d: every message answered queued/delivered reached "
              "its recipient (%ld live, %ld on reconnect so far)", round, r->msgs_live,
              r->msgs_redelivered);
}

/* ---- rounds ---- */

static pid_t fork_child(int (*fn)(void *), void *arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t p = fork();
    if (p == 0) {
        signal(SIGTERM, on_term);
        signal(SIGPIPE, SIG_IGN);
        _exit(fn(arg));
    }
    return p;
}

typedef struct child_arg {
    int kind;        /* 0 writer, 1 alice, 2 carol */
    int port, w, ready_fd;
    long seq0;
    uint64_t seed;
    char path[512];
} child_arg;

static int child_entry(void *p)
{
    child_arg *a = p;
    FILE *f = fopen(a->path, "w");
    if (!f)
        return 1;
    int rc = a->kind == 0   ? writer_main(a->port, a->w, a->seq0, a->seed, f, a->ready_fd)
             : a->kind == 1 ? alice_main(a->port, a->seq0, f, a->ready_fd)
                            : carol_main(a->port, f, a->ready_fd);
    fclose(f);
    return rc;
}

static int start_server(e2e_server *s, const char *data_dir)
{
    const char *extra[] = {"--data-dir", data_dir, "--log-level", "info", NULL};
    return e2e_server_start(s, config, extra);
}

int main(int argc, char **argv)
{
    int rounds = (int)fault_opt_long(argc, argv, "--rounds", 5);
    int nwriters = (int)fault_opt_long(argc, argv, "--writers", 2);
    int max_delay = (int)fault_opt_long(argc, argv, "--max-delay", 800);
    uint64_t seed = (uint64_t)fault_opt_long(argc, argv, "--seed", (long)getpid() * 7919);
    bool keep = fault_opt_flag(argc, argv, "--keep");
    bool strict_ids = fault_opt_flag(argc, argv, "--strict-ids");
    if (rounds < 1 || rounds > 1000 || nwriters < 1 || nwriters > MAX_WRITERS ||
        max_delay < 0 || max_delay > 60000) {
        fprintf(stderr, "usage: %s [--rounds 1..1000] [--writers 1..%d] [--max-delay MS] "
                        "[--seed S] [--keep]\n", argv[0], MAX_WRITERS);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    printf("# fault-kill9: %d rounds, %d writers, seed %llu\n", rounds, nwriters,
           (unsigned long long)seed);
    char dir[256], data[320];
    if (fault_mkdtemp(dir, sizeof(dir), "kill9") != 0) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(data, sizeof(data), "%s/data", dir);
    static run r;
    r.nwriters = nwriters;
    for (int w = 0; w < nwriters; w++)
        for (int o = 0; o < OBJS; o++)
            for (int k = 0; k < KEYS; k++)
                r.w[w].obj[o].keys[k] = (keystate){.acked = -1, .max_sent = -1};
    int64_t t0 = e2e_now_ms();
    long kills = 0;
    uint64_t rng = seed;
    for (int round = 1; round <= rounds + 1; round++) {
        e2e_server srv;
        if (start_server(&srv, data) != 0) {
            E2E_CHECK(0, "round %d: server starts on the data dir", round);
            break;
        }
        if (round > 1) {
            check_objects(&r, srv.port, round);
            check_chat(&r, srv.port, round);
        }
        if (round == rounds + 1) {
            int st = e2e_server_stop(&srv, r.lost > 0);
            E2E_CHECK(st == 0, "last server stops cleanly (status %d)", st);
            break;
        }
        /* Clients. */
        int pfd[2];
        if (pipe(pfd) != 0) {
            perror("pipe");
            return 1;
        }
        int nchild = nwriters + 2;
        child_arg args[MAX_WRITERS + 2];
        pid_t pids[MAX_WRITERS + 2];
        for (int i = 0; i < nchild; i++) {
            child_arg *a = &args[i];
            memset(a, 0, sizeof(*a));
            a->kind = i < nwriters ? 0 : i == nwriters ? 1 : 2;
            a->port = srv.port;
            a->w = i;
            a->ready_fd = pfd[1];
            a->seed = fault_rand(&rng);
            a->seq0 = a->kind == 0 ? r.w[i].next_seq : r.chat_next_seq;
            snprintf(a->path, sizeof(a->path), "%s/r%d-c%d.log", dir, round, i);
        }
        /* carol first, so that most of her messages are "delivered" */
        int ready = 0;
        for (int i = nchild - 1; i >= 0; i--) {
            pids[i] = fork_child(child_entry, &args[i]);
            if (i == nchild - 1) {
                struct pollfd pf = {pfd[0], POLLIN, 0};
                char b;
                if (poll(&pf, 1, T) == 1 && read(pfd[0], &b, 1) == 1)
                    ready++;   /* carol is in */
            }
        }
        int64_t end = e2e_now_ms() + 15000;
        while (ready < nchild && e2e_now_ms() < end) {
            struct pollfd pf = {pfd[0], POLLIN, 0};
            char b[16];
            if (poll(&pf, 1, 100) == 1) {
                ssize_t n = read(pfd[0], b, sizeof(b));
                if (n > 0)
                    ready += (int)n;
            }
        }
        E2E_CHECK(ready >= nchild, "round %d: every client got answers (%d of %d)", round, ready,
                  nchild);
        int delay = max_delay ? (int)(fault_rand(&rng) % (uint64_t)(max_delay + 1)) : 0;
        e2e_sleep_ms(delay);
        kill(srv.pid, SIGKILL);
        int st = e2e_wait(srv.pid, 5000);
        srv.pid = 0;
        kills += st == 128 + SIGKILL;
        E2E_CHECK(st == 128 + SIGKILL, "round %d: server killed with SIGKILL %d ms into the load "
                  "(status %d)", round, delay, st);
        e2e_sleep_ms(50);
        for (int i = 0; i < nchild; i++)
            kill(pids[i], SIGTERM);
        for (int i = 0; i < nchild; i++) {
            int cst = e2e_wait(pids[i], 10000);
            if (cst == -2) {
                kill(pids[i], SIGKILL);
                e2e_wait(pids[i], 5000);
                E2E_CHECK(0, "round %d: client %d stopped in time", round, i);
            }
        }
        close(pfd[0]);
        close(pfd[1]);
        long acks0 = r.acks_checked;
        long m0 = r.nmsgs;
        long lost0 = r.lost;
        for (int i = 0; i < nchild; i++) {
            if (args[i].kind == 0)
                parse_writer(&r, i, args[i].path);
            else if (args[i].kind == 1)
                parse_alice(&r, args[i].path, round);
        }
        parse_carol(&r, args[nchild - 1].path);
        printf("# round %d: killed after %d ms; %ld changes acknowledged, %ld messages sent\n",
               round, delay, r.acks_checked - acks0, r.nmsgs - m0);
        E2E_CHECK(r.lost == lost0, "round %d: what carol received live matches what alice "
                  "was told (recipient, id)", round);
        if (!keep)
            for (int i = 0; i < nchild; i++)
                unlink(args[i].path);
        e2e_server_stop(&srv, false); /* removes its log dir */
    }
    long statuses = 0, overrides = 0, sent = 0;
    for (int w = 0; w < nwriters; w++) {
        statuses += r.w[w].statuses;
        overrides += r.w[w].overrides;
        sent += r.w[w].sent;
    }
    long answered = 0, queued = 0, delivered = 0;
    for (long s = 0; s < r.nmsgs; s++) {
        answered += r.msgs[s].status == 1 || r.msgs[s].status == 2;
        queued += r.msgs[s].status == 1;
        delivered += r.msgs[s].status == 2;
    }
    E2E_CHECK(statuses == 0, "no Status answer to any change (%ld)", statuses);
    E2E_CHECK(overrides == 0, "no writer was overridden by a Change / Remove (%ld)", overrides);
    E2E_CHECK(r.errors_chat == 0, "no chat.sendPrivate was refused (%ld)", r.errors_chat);
    E2E_CHECK(r.disorder == 0, "every connection got its private message ids in strictly "
              "increasing order (%ld out of order)", r.disorder);
    if (strict_ids)
        E2E_CHECK(r.id_reuse == 0, "no private message id was used twice (%ld reused)",
                  r.id_reuse);
    else if (r.id_reuse)
        printf("not ok %d - no private message id was used twice (%ld reused) # TODO known "
               "bug: ids of \"delivered\" messages are handed out before their commit "
               "(docs/faults.md); --strict-ids makes this fail\n", ++e2e_checks, r.id_reuse);
    else
        E2E_CHECK(1, "no private message id was used twice");
    E2E_CHECK(r.acks_checked > 0 && answered > 0, "work was done (%ld acks, %ld messages)",
              r.acks_checked, answered);
    printf("# FIGURES kill9: rounds %d, kills %ld, changes sent %ld, acknowledged changes "
           "checked %ld, messages answered %ld (queued %ld, delivered %ld) all checked: "
           "%ld received live, %ld on reconnect, %ld duplicates; losses %ld; ids reused %ld; %.1f s\n",
           rounds, kills, sent, r.acks_checked, answered, queued, delivered, r.msgs_live,
           r.msgs_redelivered, r.dups, r.lost, r.id_reuse, (double)(e2e_now_ms() - t0) / 1000.0);
    if (!keep && e2e_failures == 0)
        fault_rm_rf(dir);
    else
        printf("# work directory kept: %s\n", dir);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
