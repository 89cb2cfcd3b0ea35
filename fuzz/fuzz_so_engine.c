/* fuzz_so_engine.c - the shared-object engine (so.h) driven by a script of
 * client messages and app events, with the memory store.
 *
 * Input: mode byte, then records [op u8][who u8][len u16 BE][body].
 * Mode: bit 0 last-writer-wins (else reject), bit 1 tight caps, bit 2
 * half the clients speak AMF3 (type 16), bit 3 no store, bit 4 room
 * "app/a" switched to last-writer-wins by so_engine_room_set_conflict, bit 5
 * a room_settings hook gives room "app/b" last-writer-wins, 2 slots per
 * object and 2 objects per client (each time the room is created), bit 6
 * rooms load late (with a store: the loads the engine asks for are
 * answered only by op 1 records with who bit 6 set, and at the end;
 * otherwise after every record).
 * An allow_write hook refuses keys that start with '!'.
 * Clients 0..2 live in room "app/a", client 3 in "app/b"; who % 4 picks
 * the client, who >> 2 advances the clock by that many x 37 ms.
 * Ops (op % 8):
 *   0 the client sends body as a shared-object message (its type)
 *   1 the app takes the pending store batch (kept in a FIFO); with who
 *     bit 7 set instead it calls so_engine_unload_idle twice (idle rooms
 *     leave memory, to be loaded from the store when next touched); with
 *     who bit 6 set (and mode bit 6) it answers the oldest load asked
 *     for instead, failing it (SH_EIO) when who bit 5 is set
 *   2 the oldest taken batch is written to the store and handed back
 *     (fails with SH_EIO when who bit 7 is set)
 *   3 / 4 the client becomes congested / drains (op 4 with who bit 7
 *     set: a paced catch-up, so_client_catch_up with a budget of 16 x the
 *     first body byte, that may leave objects behind for a later drain)
 *   5 the client disconnects and a new one takes its place
 *   6 the server sets slot "srv" of object `body` (persistent when who
 *     bit 7 is set), under a lock when body is even in length (opened
 *     with so_engine_object_open_async: done when the room is there)
 *   7 new access lists: body = read NUL write
 *   (op 5 with who bit 7 set: the client leaves and comes back only at
 *   its next record, so a room can empty and be loaded from the store)
 * Client 2 is an observer: it has no write access and its messages are
 * normalised (its Use carries the version it really holds, Release is
 * dropped), and a model of its copy of every object it subscribed to is
 * kept from the messages it receives, as a Flash client would.
 * Tight caps also make the reply budget small (Use events answered with
 * UseSuccess alone, state caught up later) and give application "app"
 * quotas of 3 persistent objects and 300 bytes.
 * Properties, for every effect produced: it has recipients, each one a
 *   client connected now, whose encoding matches the message type; the
 *   body decodes with so_wire_decode; a catch-up call builds at most
 *   max(budget, one object's state).  At the end, once every batch was
 *   handed back and every client caught up (paced, each call making
 *   progress): nothing is held, and the observer's copy of every object
 *   it uses equals the server's (slots, values in meaning, version):
 *   shared state converges.  With a store, the engine's usage of "app"
 *   equals what the store reports, stays within the quotas, and a new
 *   engine on the same store counts the same.
 * FUZZ_TRACE=1 prints every record and every message the engine produces
 * with its recipients; FUZZ_VERBOSE=1 the final comparison.
 */
#include <string.h>

#include "fuzz_amf_util.h"
#include "fuzz_common.h"
#include "so.h"

#define NCLIENTS 4
#define MAX_BATCHES 8

#define OBSERVER 2
#define MODEL_OBJS 8
#define MODEL_KEYS 64

typedef struct model_kv {
    char *key;
    size_t klen;
    amf_value *v;
} model_kv;

/* The observer's copy of one object. */
typedef struct model_obj {
    char *name;
    bool subscribed;    /* UseSuccess seen */
    uint32_t version;   /* header version of the last message about it */
    model_kv kv[MODEL_KEYS];
    size_t nkv;
} model_obj;

typedef struct fz_client {
    so_client *c;
    amf_encoding enc;
    const char *room;
    bool away;          /* left; comes back at its next record */
    bool congested;
} fz_client;

typedef struct fz_state {
    so_engine *e;
    so_store *store;
    fz_client cl[NCLIENTS];
    so_store_batch *batches[MAX_BATCHES];
    size_t nbatches;
    char *loads[8];     /* rooms the engine asked for, oldest first */
    size_t nloads;
    so_effects fx;
    model_obj model[MODEL_OBJS];
    size_t nmodel;
    bool untracked;     /* the model overflowed: skip the convergence check */
} fz_state;

static void model_obj_clear(model_obj *o)
{
    for (size_t i = 0; i < o->nkv; i++) {
        free(o->kv[i].key);
        amf_unref(o->kv[i].v);
    }
    o->nkv = 0;
}

static void model_reset(fz_state *s)
{
    for (size_t i = 0; i < s->nmodel; i++) {
        model_obj_clear(&s->model[i]);
        free(s->model[i].name);
    }
    s->nmodel = 0;
}

static model_obj *model_find(fz_state *s, const char *name, bool create)
{
    for (size_t i = 0; i < s->nmodel; i++)
        if (strcmp(s->model[i].name, name) == 0)
            return &s->model[i];
    if (!create)
        return NULL;
    if (s->nmodel == MODEL_OBJS) {
        s->untracked = true;
        return NULL;
    }
    model_obj *o = &s->model[s->nmodel++];
    memset(o, 0, sizeof(*o));
    o->name = strdup(name);
    FZ_CHECK(o->name != NULL);
    return o;
}

static model_kv *model_key(model_obj *o, const char *key, size_t klen)
{
    for (size_t i = 0; i < o->nkv; i++)
        if (o->kv[i].klen == klen && memcmp(o->kv[i].key, key, klen) == 0)
            return &o->kv[i];
    return NULL;
}

/* Applies one message the server sent to the observer. */
static void model_apply(fz_state *s, const so_msg *m)
{
    if (memchr(m->name, 0, m->name_len)) {
        s->untracked = true;
        return;
    }
    bool use_success = false;
    for (size_t i = 0; i < m->nevents; i++)
        use_success |= m->events[i].type == SO_EV_USE_SUCCESS;
    model_obj *o = model_find(s, m->name, use_success);
    if (!o)
        return;
    if (use_success)
        o->subscribed = true;
    if (!o->subscribed)
        return;
    o->version = m->version;
    for (size_t i = 0; i < m->nevents; i++) {
        const so_event *ev = &m->events[i];
        if (ev->type == SO_EV_CLEAR) {
            model_obj_clear(o);
        } else if (ev->type == SO_EV_CHANGE) {
            for (size_t k = 0; k < ev->nkv; k++) {
                model_kv *kv = model_key(o, ev->kv[k].key, ev->kv[k].key_len);
                if (!kv) {
                    if (o->nkv == MODEL_KEYS) {
                        s->untracked = true;
                        continue;
                    }
                    kv = &o->kv[o->nkv++];
                    kv->key = malloc(ev->kv[k].key_len + 1);
                    FZ_CHECK(kv->key != NULL);
                    memcpy(kv->key, ev->kv[k].key, ev->kv[k].key_len);
                    kv->klen = ev->kv[k].key_len;
                    kv->v = NULL;
                }
                amf_unref(kv->v);
                kv->v = amf_ref(ev->kv[k].value);
            }
        } else if (ev->type == SO_EV_REMOVE && ev->nkv == 1) {
            model_kv *kv = model_key(o, ev->kv[0].key, ev->kv[0].key_len);
            if (kv) {
                free(kv->key);
                amf_unref(kv->v);
                *kv = o->kv[--o->nkv];
            }
        }
    }
}

/* The observer's copy of each object it uses must equal the server's. */
static void model_check(fz_state *s)
{
    if (s->untracked || !s->cl[OBSERVER].c)
        return;
    for (size_t i = 0; i < s->nmodel; i++) {
        model_obj *mo = &s->model[i];
        if (!mo->subscribed)
            continue;
        so_object *o = so_engine_object_find(s->e, s->cl[OBSERVER].room, mo->name);
        if (!o)
            fprintf(stderr, "observer uses '%s', the server has no such object\n", mo->name);
        FZ_CHECK(o != NULL);
        if (so_object_version(o) != mo->version || so_object_slot_count(o) != mo->nkv)
            fprintf(stderr, "object '%s': server version %u, %zu slots; observer %u, %zu\n",
                    mo->name, so_object_version(o), so_object_slot_count(o), mo->version,
                    mo->nkv);
        FZ_CHECK(so_object_version(o) == mo->version);
        size_t iter = 0, n = 0;
        const char *key;
        size_t klen;
        amf_value *v;
        while (so_object_slot_next(o, &iter, &key, &klen, &v)) {
            n++;
            model_kv *kv = model_key(mo, key, klen);
            if (!kv)
                fprintf(stderr, "object '%s': observer lacks key '%.*s'\n", mo->name,
                        (int)klen, key);
            FZ_CHECK(kv != NULL);
            if (fz_amf_tree_size(v, 20000, 0) < 20000 && !fz_amf_same(AMF_ENC_AMF0, v, kv->v, 0)) {
                fprintf(stderr, "object '%s' key '%.*s': server ", mo->name, (int)klen, key);
                fz_amf_dump(v, 0);
                fprintf(stderr, ", observer ");
                fz_amf_dump(kv->v, 0);
                fprintf(stderr, "\n");
                FZ_CHECK(!"observer converges");
            }
        }
        FZ_CHECK(n == mo->nkv);
        if (getenv("FUZZ_VERBOSE"))
            fprintf(stderr, "observer copy of '%s' matches: version %u, %zu slots\n", mo->name,
                    mo->version, mo->nkv);
    }
}

/* The observer's message as it will be sent: its Use events carry the
 * version it holds (0 when it has no copy), Release events are dropped
 * (a release racing held answers is a separate matter).  Returns false
 * when the body does not decode (then it is sent as is). */
static bool observer_body(fz_state *s, const uint8_t *p, size_t n, uint8_t type, sh_buf *out)
{
    so_msg m;
    so_msg_init(&m);
    if (so_wire_decode(type, p, n, NULL, &m, NULL) != 0)
        return false;
    bool has_use = false;
    size_t w = 0;
    for (size_t i = 0; i < m.nevents; i++) {
        if (m.events[i].type == SO_EV_RELEASE)
            continue; /* an empty event: nothing to free */
        has_use |= m.events[i].type == SO_EV_USE;
        m.events[w++] = m.events[i];
    }
    m.nevents = w;
    if (has_use) {
        model_obj *o = memchr(m.name, 0, m.name_len) ? NULL : model_find(s, m.name, false);
        m.version = o && o->subscribed ? o->version : 0;
    }
    int rc = so_wire_encode(&m, type, out);
    so_msg_cleanup(&m);
    return rc == 0;
}

/* FUZZ_TRACE=1: every message of every effect, with its recipients. */
static void trace_msg(fz_state *s, const so_effect *ef, const so_msg *m)
{
    fprintf(stderr, "  -> [");
    for (size_t k = 0; k < ef->nto; k++)
        fprintf(stderr, "%s%td", k ? "," : "", (fz_client *)ef->to[k] - s->cl);
    fprintf(stderr, "] '%s' v%u%s:", m->name, m->version, m->persistent ? " P" : "");
    for (size_t i = 0; i < m->nevents; i++) {
        const so_event *ev = &m->events[i];
        fprintf(stderr, " ev%u", ev->type);
        for (size_t k = 0; k < ev->nkv; k++)
            fprintf(stderr, "%s%.*s", k ? "," : "(", (int)ev->kv[k].key_len, ev->kv[k].key);
        if (ev->nkv)
            fprintf(stderr, ")");
        if (ev->code)
            fprintf(stderr, "{%s}", ev->code);
    }
    fprintf(stderr, "\n");
}

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
        if (getenv("FUZZ_TRACE"))
            trace_msg(s, ef, &m);
        for (size_t k = 0; k < ef->nto; k++)
            if (ef->to[k] == &s->cl[OBSERVER])
                model_apply(s, &m);
        so_msg_cleanup(&m);
    }
    so_effects_clear(&s->fx);
}

/* Bytes of the effects fx holds for f. */
static size_t effect_bytes(const fz_state *s, const fz_client *f)
{
    size_t n = 0;
    for (size_t i = 0; i < s->fx.len; i++)
        for (size_t k = 0; k < s->fx.items[i].nto; k++)
            if (s->fx.items[i].to[k] == f)
                n += s->fx.items[i].body->len;
    return n;
}

/* True when every message fx holds for f is about one object (compares
 * the name in the message header). */
static bool one_object_to(const fz_state *s, const fz_client *f)
{
    const uint8_t *first = NULL;
    size_t first_len = 0;
    for (size_t i = 0; i < s->fx.len; i++) {
        const so_effect *ef = &s->fx.items[i];
        for (size_t k = 0; k < ef->nto; k++) {
            if (ef->to[k] != f)
                continue;
            size_t off = ef->msg_type == SO_MSG_AMF3 ? 1 : 0;
            FZ_CHECK(ef->body->len >= off + 2);
            size_t nlen = (size_t)ef->body->data[off] << 8 | ef->body->data[off + 1];
            const uint8_t *name = ef->body->data + off + 2;
            if (!first) {
                first = name;
                first_len = nlen;
            } else if (nlen != first_len || memcmp(name, first, nlen) != 0) {
                return false;
            }
        }
    }
    return true;
}

typedef struct fz_usage {
    uint64_t objects, bytes;
} fz_usage;

static int usage_of_app(void *ud, const char *app, uint64_t objects, uint64_t bytes)
{
    fz_usage *u = ud;
    if (strcmp(app, "app") == 0) {
        u->objects += objects;
        u->bytes += bytes;
    }
    return 0;
}

static void load_hook(void *ud, const char *room)
{
    fz_state *s = ud;
    FZ_CHECK(s->nloads < 8);
    s->loads[s->nloads] = strdup(room);
    FZ_CHECK(s->loads[s->nloads] != NULL);
    s->nloads++;
}

/* Answers the oldest load asked for, from the store or with status. */
static void serve_load(fz_state *s, int status)
{
    if (s->nloads == 0)
        return;
    char *room = s->loads[0];
    memmove(&s->loads[0], &s->loads[1], --s->nloads * sizeof(s->loads[0]));
    so_store_batch *img = NULL;
    if (status == 0)
        status = so_store_load_image(s->store, room, &img);
    FZ_CHECK(so_engine_room_loaded(s->e, room, status, img, &s->fx) == status);
    so_store_batch_free(img);
    free(room);
}

static int usage_add(void *ud, const char *app, uint64_t objects, uint64_t bytes)
{
    return so_engine_usage_add(ud, app, objects, bytes);
}

static so_engine *engine_new(fz_state *s, const so_config *cfg)
{
    so_engine *e = so_engine_new(cfg, s->store != NULL);
    FZ_CHECK(e != NULL);
    if (s->store)
        FZ_CHECK(so_store_usage(s->store, usage_add, e) == 0);
    return e;
}

/* Every batch is back: the quota counts equal the store's, stay within
 * the quotas, and are what a new engine on the same store reads. */
static void usage_check(fz_state *s, const so_config *cfg)
{
    fz_usage st = {0};
    FZ_CHECK(so_store_usage(s->store, usage_of_app, &st) == 0);
    uint64_t objects, bytes;
    so_engine_app_usage(s->e, "app", &objects, &bytes);
    if (objects != st.objects || bytes != st.bytes)
        fprintf(stderr, "usage of app: engine %llu objects %llu bytes, store %llu %llu\n",
                (unsigned long long)objects, (unsigned long long)bytes,
                (unsigned long long)st.objects, (unsigned long long)st.bytes);
    FZ_CHECK(objects == st.objects && bytes == st.bytes);
    FZ_CHECK(!cfg->max_persistent_objects || objects <= cfg->max_persistent_objects);
    FZ_CHECK(!cfg->max_persistent_bytes || bytes <= cfg->max_persistent_bytes);
    so_engine *again = engine_new(s, cfg);
    uint64_t o2, b2;
    so_engine_app_usage(again, "app", &o2, &b2);
    FZ_CHECK(o2 == objects && b2 == bytes);
    so_engine_free(again);
}

static void connect_client(fz_state *s, size_t i, bool amf3_half)
{
    fz_client *f = &s->cl[i];
    f->enc = (amf3_half && (i & 1)) ? AMF_ENC_AMF3 : AMF_ENC_AMF0;
    f->room = i < 3 ? "app/a" : "app/b";
    int err = 0;
    f->c = so_client_register(s->e, f, f->enc, f->room, &err);
    FZ_CHECK(f->c != NULL);
    f->away = false;
    f->congested = false;
    if (i == OBSERVER) {
        model_reset(s);
        FZ_CHECK(so_client_set_access(s->e, f->c, "/", ";") == 0); /* ";" = nothing */
    }
}

static void disconnect_client(fz_state *s, fz_client *f)
{
    check_effects(s);
    so_client_unregister(s->e, f->c);
    f->c = NULL;
    if (f == &s->cl[OBSERVER])
        model_reset(s);
}

/* An app hook: keys starting with '!' are never writable by clients. */
static bool allow_write(void *ud, void *client_user, const so_object *o, const char *key,
                        size_t key_len, const amf_value *value)
{
    (void)ud;
    (void)o;
    (void)value;
    FZ_CHECK(client_user != NULL);
    return !(key_len > 0 && key[0] == '!');
}

static void room_settings(void *ud, const char *room, so_room_settings *rs)
{
    (void)ud;
    if (strcmp(room, "app/b") == 0) {
        rs->conflict = SO_CONFLICT_LWW;
        rs->max_slots_per_object = 2;
        rs->max_objects_per_client = 2;
    }
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
    c->max_object_bytes = 2048; /* memory: a small slot holds about 180 */
    c->max_subscribers = 3;
    c->max_objects_per_client = 3;
    c->max_updates_per_sec = 5;
    c->max_name_len = 16;
    c->max_key_len = 8;
    c->history_depth = 4;
    c->max_body_bytes = 256;
    c->max_reply_bytes = 128;
    c->max_persistent_objects = 3;
    c->max_persistent_bytes = 300;
    c->wire.max_events = 8;
    c->wire.max_pairs = 8;
    c->wire.max_args = 4;
    c->wire.max_value = 256;
}

typedef struct srv_set {
    fz_state *s;
    char name[64];
    bool lock;
    bool remove;
    uint64_t now;
} srv_set;

static void server_set_now(void *ud, so_object *o, int err)
{
    srv_set *x = ud;
    fz_state *s = x->s;
    FZ_CHECK((o != NULL) == (err == 0));
    if (o) {
        if (x->lock)
            so_object_lock(s->e, o);
        amf_value *v = amf_number((double)x->now);
        FZ_CHECK(v != NULL);
        (void)so_object_set(s->e, o, "srv", 3, v, &s->fx);
        amf_unref(v);
        if (x->remove)
            (void)so_object_remove(s->e, o, x->name, strlen(x->name), &s->fx);
        if (x->lock)
            (void)so_object_unlock(s->e, o, &s->fx);
        so_engine_object_close(s->e, o);
    }
    free(x);
}

static void server_set(fz_state *s, const uint8_t *body, size_t n, bool persistent,
                       uint64_t now)
{
    srv_set *x = calloc(1, sizeof(*x));
    FZ_CHECK(x != NULL);
    size_t k = n < sizeof(x->name) - 1 ? n : sizeof(x->name) - 1;
    memcpy(x->name, body, k);
    x->name[k] = '\0';
    x->s = s;
    x->lock = (n % 2) == 0;
    x->remove = n > 1;
    x->now = now;
    if (so_engine_object_open_async(s->e, "app/a", x->name, persistent, server_set_now, x) < 0)
        free(x);
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
    s.e = engine_new(&s, &cfg);
    so_hooks hooks = {.allow_write = allow_write,
                      .room_settings = (mode & 32) ? room_settings : NULL,
                      .load_room = s.store ? load_hook : NULL, .ud = &s};
    so_engine_set_hooks(s.e, &hooks);
    bool late_loads = mode & 64;
    if (mode & 16)
        FZ_CHECK(so_engine_room_set_conflict(s.e, "app/a", SO_CONFLICT_LWW) == 0);
    for (size_t i = 0; i < NCLIENTS; i++)
        connect_client(&s, i, mode & 4);

    uint64_t now = 1000;
    int steps = 0;
    while (fz_left(&in) >= 4 && steps++ < 256) {
        while (!late_loads && s.nloads)
            serve_load(&s, 0);
        check_effects(&s);
        uint8_t op = fz_u8(&in) % 8;
        uint8_t who = fz_u8(&in);
        size_t n;
        const uint8_t *p = fz_take(&in, fz_u16(&in), &n);
        fz_client *f = &s.cl[who % NCLIENTS];
        size_t fi = (size_t)(f - s.cl);
        now += (uint64_t)((who >> 2) & 0x1F) * 37;
        if (f->away)
            connect_client(&s, fi, mode & 4);
        if (getenv("FUZZ_TRACE")) {
            fprintf(stderr, "op %u client %zu t=%llu len %zu", op, fi, (unsigned long long)now,
                    n);
            if (op == 0) {
                so_msg tm;
                so_msg_init(&tm);
                uint8_t type = f->enc == AMF_ENC_AMF3 ? SO_MSG_AMF3 : SO_MSG_AMF0;
                if (so_wire_decode(type, p, n, NULL, &tm, NULL) == 0) {
                    so_effect fake = {0};
                    fprintf(stderr, " sends");
                    trace_msg(&s, &fake, &tm);
                } else {
                    fprintf(stderr, " (undecodable)\n");
                }
                so_msg_cleanup(&tm);
            } else {
                fprintf(stderr, " who=0x%02x\n", who);
            }
        }
        switch (op) {
        case 0: {
            uint8_t type = f->enc == AMF_ENC_AMF3 ? SO_MSG_AMF3 : SO_MSG_AMF0;
            sh_buf norm;
            sh_buf_init(&norm, 0);
            uint8_t *body;
            if (fi == OBSERVER && observer_body(&s, p, n, type, &norm)) {
                body = fz_dup(norm.data, norm.len);
                n = norm.len;
            } else {
                /* an empty body arrives as (NULL, 0) from the chunk decoder */
                body = n ? fz_dup(p, n) : NULL;
            }
            sh_buf_cleanup(&norm);
            sh_error err = {0};
            int rc = so_engine_handle(s.e, f->c, type, body, n, now, &s.fx, &err);
            free(body);
            FZ_CHECK(rc <= 0);
            if (rc < 0) {
                /* the app closes a client that sent a bad body */
                disconnect_client(&s, f);
                connect_client(&s, fi, mode & 4);
            }
            break;
        }
        case 1:
            if (late_loads && (who & 0x40)) {
                serve_load(&s, (who & 0x20) ? SH_EIO : 0);
            } else if (who & 0x80) {
                size_t nu = so_engine_unload_idle(s.e);
                nu += so_engine_unload_idle(s.e);
                if (getenv("FUZZ_TRACE"))
                    fprintf(stderr, "  unloaded %zu rooms\n", nu);
            } else if (s.nbatches < MAX_BATCHES) {
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
            if (op == 4 && (who & 0x80)) {
                size_t budget = n ? (size_t)p[0] * 16 : 0;
                int rc = so_client_catch_up(s.e, f->c, budget, &s.fx);
                FZ_CHECK(rc == 0 || rc == 1);
                FZ_CHECK((rc == 1) == so_client_is_behind(f->c));
                /* within the budget, or a single object (always made) */
                FZ_CHECK(effect_bytes(&s, f) <= budget || one_object_to(&s, f));
                f->congested = rc == 1;
                break;
            }
            FZ_CHECK(so_client_set_congested(s.e, f->c, op == 3, &s.fx) == 0);
            f->congested = op == 3;
            break;
        case 5:
            disconnect_client(&s, f);
            if (who & 0x80)
                f->away = true;
            else
                connect_client(&s, fi, mode & 4);
            break;
        case 6:
            server_set(&s, p, n, who & 0x80, now);
            break;
        case 7: {
            if (fi == OBSERVER)
                break; /* the observer never gets write access */
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

    /* The app's end of turn: every room is loaded, everyone drains
     * (paced: one object per call, each call making progress), every
     * batch is written and handed back. */
    for (size_t i = 0; i < NCLIENTS; i++)
        if (s.cl[i].away)
            connect_client(&s, i, mode & 4);
    while (s.nloads)
        serve_load(&s, 0);
    check_effects(&s);
    for (size_t i = 0; i < NCLIENTS; i++) {
        int rc = 1;
        for (int guard = 0; rc == 1 && so_client_is_behind(s.cl[i].c); guard++) {
            FZ_CHECK(guard < 64);
            rc = so_client_catch_up(s.e, s.cl[i].c, 0, &s.fx);
            FZ_CHECK(rc == 0 || rc == 1);
            check_effects(&s);
        }
        FZ_CHECK(!so_client_is_behind(s.cl[i].c));
        s.cl[i].congested = false;
        check_effects(&s);
    }
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
    model_check(&s);
    if (s.store)
        usage_check(&s, &cfg);
    model_reset(&s);

    for (size_t i = 0; i < NCLIENTS; i++)
        so_client_unregister(s.e, s.cl[i].c);
    so_engine_free(s.e);
    so_store_close(s.store);
    so_effects_cleanup(&s.fx);
    return 0;
}
