/* fuzz_so_engine.c - the shared-object engine (so.h) driven by a script of
 * client messages and app events, with the memory store.
 *
 * Input: mode byte, then records [op u8][who u8][len u16 BE][body].
 * Mode: bit 0 last-writer-wins (else reject), bit 1 tight caps, bit 2
 * half the clients speak AMF3 (type 16), bit 3 no store.
 * Clients 0..2 live in room "app/a", client 3 in "app/b"; who % 4 picks
 * the client, who >> 2 advances the clock by that many x 37 ms.
 * Ops (op % 8):
 *   0 the client sends body as a shared-object message (its type)
 *   1 the app takes the pending store batch (kept in a FIFO)
 *   2 the oldest taken batch is written to the store and handed back
 *     (fails with SH_EIO when who bit 7 is set)
 *   3 / 4 the client becomes congested / drains
 *   5 the client disconnects and a new one takes its place
 *   6 the server sets slot "srv" of object `body` (persistent when who
 *     bit 7 is set), under a lock when body is even in length
 *   7 new access lists: body = read NUL write
 * Properties, for every effect produced: it has recipients, each one a
 *   client connected now, whose encoding matches the message type; the
 *   body decodes with so_wire_decode.  At the end, once every batch was
 *   handed back, nothing is held.
 */
#include <string.h>

#include "fuzz_common.h"
#include "so.h"

#define NCLIENTS 4
#define MAX_BATCHES 8

typedef struct fz_client {
    so_client *c;
    amf_encoding enc;
    const char *room;
} fz_client;

typedef struct fz_state {
    so_engine *e;
    so_store *store;
    fz_client cl[NCLIENTS];
    so_store_batch *batches[MAX_BATCHES];
    size_t nbatches;
    so_effects fx;
} fz_state;

static void check_effects(fz_state *s)
{
    for (size_t i = 0; i < s->fx.len; i++) {
        const so_effect *ef = &s->fx.items[i];
        FZ_CHECK(ef->nto > 0 && ef->body != NULL);
        FZ_CHECK(ef->msg_type == SO_MSG_AMF0 || ef->msg_type == SO_MSG_AMF3);
        for (size_t k = 0; k < ef->nto; k++) {
            fz_client *to = ef->to[k];
            FZ_CHECK(to >= &s->cl[0] && to < &s->cl[NCLIENTS] && to->c != NULL);
            FZ_CHECK((to->enc == AMF_ENC_AMF3) == (ef->msg_type == SO_MSG_AMF3));
        }
        so_msg m;
        so_msg_init(&m);
        sh_error err = {0};
        int rc = so_wire_decode(ef->msg_type, ef->body->data, ef->body->len, NULL, &m, &err);
        if (rc != 0)
            fprintf(stderr, "engine wrote a body so_wire_decode refuses: %d %s at %s\n", rc,
                    err.what ? err.what : "", err.where ? err.where : "");
        FZ_CHECK(rc == 0);
        so_msg_cleanup(&m);
    }
    so_effects_clear(&s->fx);
}

static void connect_client(fz_state *s, size_t i, bool amf3_half)
{
    fz_client *f = &s->cl[i];
    f->enc = (amf3_half && (i & 1)) ? AMF_ENC_AMF3 : AMF_ENC_AMF0;
    f->room = i < 3 ? "app/a" : "app/b";
    int err = 0;
    f->c = so_client_register(s->e, f, f->enc, f->room, &err);
    FZ_CHECK(f->c != NULL);
}

static void finish_batch(fz_state *s, int status)
{
    if (s->nbatches == 0)
        return;
    so_store_batch *b = s->batches[0];
    memmove(&s->batches[0], &s->batches[1], (s->nbatches - 1) * sizeof(s->batches[0]));
    s->nbatches--;
    if (status == 0 && s->store)
        status = so_store_write_batch(s->store, b);
    FZ_CHECK(so_engine_batch_done(s->e, b, status, &s->fx) == 0);
}

static void tight_config(so_config *c)
{
    c->max_objects_per_room = 4;
    c->max_slots_per_object = 8;
    c->max_value_bytes = 64;
    c->max_object_bytes = 512;
    c->max_subscribers = 3;
    c->max_objects_per_client = 3;
    c->max_updates_per_sec = 5;
    c->max_name_len = 16;
    c->max_key_len = 8;
    c->history_depth = 4;
    c->max_body_bytes = 256;
    c->wire.max_events = 8;
    c->wire.max_pairs = 8;
    c->wire.max_args = 4;
    c->wire.max_value = 256;
}

static void server_set(fz_state *s, const uint8_t *body, size_t n, bool persistent,
                       uint64_t now)
{
    char name[64];
    size_t k = n < sizeof(name) - 1 ? n : sizeof(name) - 1;
    memcpy(name, body, k);
    name[k] = '\0';
    int err = 0;
    so_object *o = so_engine_object_open(s->e, "app/a", name, persistent, &err);
    if (!o)
        return;
    bool lock = (n % 2) == 0;
    if (lock)
        so_object_lock(s->e, o);
    amf_value *v = amf_number((double)now);
    FZ_CHECK(v != NULL);
    (void)so_object_set(s->e, o, "srv", 3, v, &s->fx);
    amf_unref(v);
    if (n > 1)
        (void)so_object_remove(s->e, o, name, strlen(name), &s->fx);
    if (lock)
        (void)so_object_unlock(s->e, o, &s->fx);
    so_engine_object_close(s->e, o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in;
    fz_init(&in, data, size);
    uint8_t mode = fz_u8(&in);

    fz_state s;
    memset(&s, 0, sizeof(s));
    so_effects_init(&s.fx);
    so_config cfg;
    so_config_default(&cfg);
    if (mode & 1)
        cfg.conflict = SO_CONFLICT_LWW;
    if (mode & 2)
        tight_config(&cfg);
    if (!(mode & 8))
        FZ_CHECK(so_store_open(&so_store_memory_ops, "", NULL, &s.store) == 0);
    s.e = so_engine_new(&cfg, s.store);
    FZ_CHECK(s.e != NULL);
    for (size_t i = 0; i < NCLIENTS; i++)
        connect_client(&s, i, mode & 4);

    uint64_t now = 1000;
    int steps = 0;
    while (fz_left(&in) >= 4 && steps++ < 256) {
        uint8_t op = fz_u8(&in) % 8;
        uint8_t who = fz_u8(&in);
        size_t n;
        const uint8_t *p = fz_take(&in, fz_u16(&in), &n);
        fz_client *f = &s.cl[who % NCLIENTS];
        now += (uint64_t)((who >> 2) & 0x1F) * 37;
        switch (op) {
        case 0: {
            uint8_t *body = fz_dup(p, n);
            uint8_t type = f->enc == AMF_ENC_AMF3 ? SO_MSG_AMF3 : SO_MSG_AMF0;
            sh_error err = {0};
            int rc = so_engine_handle(s.e, f->c, type, body, n, now, &s.fx, &err);
            free(body);
            FZ_CHECK(rc <= 0);
            if (rc < 0) {
                /* the app closes a client that sent a bad body */
                check_effects(&s);
                so_client_unregister(s.e, f->c);
                f->c = NULL;
                connect_client(&s, (size_t)(f - s.cl), mode & 4);
            }
            break;
        }
        case 1:
            if (s.nbatches < MAX_BATCHES) {
                so_store_batch *b = so_engine_take_batch(s.e);
                if (b)
                    s.batches[s.nbatches++] = b;
            }
            break;
        case 2:
            finish_batch(&s, (who & 0x80) ? SH_EIO : 0);
            break;
        case 3:
        case 4:
            FZ_CHECK(so_client_set_congested(s.e, f->c, op == 3, &s.fx) == 0);
            break;
        case 5:
            check_effects(&s);
            so_client_unregister(s.e, f->c);
            f->c = NULL;
            connect_client(&s, (size_t)(f - s.cl), mode & 4);
            break;
        case 6:
            server_set(&s, p, n, who & 0x80, now);
            break;
        case 7: {
            char acc[2][64];
            size_t split = 0;
            while (split < n && p[split])
                split++;
            for (int k = 0; k < 2; k++) {
                const uint8_t *src = k == 0 ? p : p + split + (split < n);
                size_t len = k == 0 ? split : n - split - (split < n);
                if (len > 63)
                    len = 63;
                memcpy(acc[k], src, len);
                acc[k][len] = '\0';
                for (size_t j = 0; j < len; j++)
                    if (!acc[k][j])
                        acc[k][j] = '/';
            }
            (void)so_client_set_access(s.e, f->c, acc[0], acc[1]);
            break;
        }
        }
        check_effects(&s);
    }

    /* The app's end of turn: every batch written and handed back. */
    for (int guard = 0; guard < 64; guard++) {
        if (s.nbatches < MAX_BATCHES) {
            so_store_batch *b = so_engine_take_batch(s.e);
            if (b)
                s.batches[s.nbatches++] = b;
        }
        if (s.nbatches == 0)
            break;
        finish_batch(&s, 0);
        check_effects(&s);
    }
    FZ_CHECK(s.nbatches == 0);
    FZ_CHECK(so_engine_held_count(s.e) == 0);

    for (size_t i = 0; i < NCLIENTS; i++)
        so_client_unregister(s.e, s.cl[i].c);
    so_engine_free(s.e);
    so_store_close(s.store);
    so_effects_cleanup(&s.fx);
    return 0;
}
