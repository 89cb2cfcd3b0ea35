/* so.c - the shared-object engine; the contract and the rules are in so.h
 * and docs/so-engine.md. */
#include "so.h"
#include "so_json.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "sh_mem.h"
#include "sh_map.h"

typedef struct so_room so_room;
typedef struct so_sub so_sub;

/* A slot; v == NULL marks a tombstone kept for rule 3 until the history
 * forgets the version that removed it. */
typedef struct so_slot {
    char *key;
    size_t klen;
    amf_value *v;
    uint8_t *wire;      /* v's exact wire encoding (so_wire_event_value), cached */
    size_t vbytes;      /* bytes of wire */
    size_t held;        /* slot_mem() while live, counted in the object's bytes */
    uint32_t version;   /* version that last wrote or removed it */
    uint64_t writer;    /* client id of that write, 0 = server */
    uint32_t in_upd;    /* version of the update that already lists it */
} so_slot;

typedef struct hist_ent {
    uint32_t version;
    size_t nkeys;
    char **keys;
    size_t *klens;
} hist_ent;

typedef struct srv_change {
    char *key;
    size_t klen;
    amf_value *v;       /* NULL = remove */
    uint8_t *wire;      /* owned while queued under a lock */
    size_t vbytes;
    size_t vmem;        /* amf_value_mem(v) */
} srv_change;

struct so_object {
    so_room *room;
    char *name;
    size_t name_len;
    bool persistent;
    bool server_only;
    bool local;         /* temporary object of a clustered room kept on this node */
    bool used;          /* clustered temporary: so_hooks.temp_use was told "used" */
    uint32_t version;
    sh_map slots;
    size_t nlive;
    size_t bytes;
    hist_ent *ring;     /* history_depth entries, allocated on first use */
    uint32_t ring_head; /* index of the oldest entry */
    uint32_t ring_count;
    uint32_t hist_base; /* every version > hist_base is in the ring */
    so_sub **subs;
    size_t nsubs, capsubs;
    uint32_t server_refs;
    uint32_t lock;
    srv_change *pend;
    size_t npend, cappend;
    uint64_t pending_seq;  /* last batch holding writes of this object */
    uint64_t rewrite_seq;  /* batch that already holds a full rewrite */
    bool unsaved;          /* a rewrite after a failure could not be queued */
    bool stored;           /* counted in its application's usage (quotas) */
};

/* Something waiting for its room's load: a client's message (c set) or
 * a server open (cb set).  Rooms keep them in arrival order. */
typedef struct so_wait {
    struct so_wait *next;
    so_client *c;
    so_msg m;           /* owned */
    uint64_t now_ms;
    size_t bytes;       /* counted in c's and the room's queue */
    char *name;         /* server open: owned */
    bool persistent;
    so_open_fn cb;
    void *ud;
} so_wait;

struct so_room {
    char *name;
    sh_map objects;
    size_t nclients;
    so_room_settings set;  /* from the config and the room_settings hook */
    bool conflict_set;     /* so_engine_room_set_conflict: kept for the engine's life */
    bool loaded;
    bool loading;       /* load_room asked, so_engine_room_loaded not yet called */
    bool idle_seen;     /* found idle by the last so_engine_unload_idle */
    so_wait *wq, **wq_tail; /* waiting for the load, oldest first */
    so_wait *drain;     /* what so_engine_room_loaded is replaying now */
    bool replaying;     /* inside that replay: the room is not dropped */
    size_t nwait;       /* items in wq and drain */
    size_t wbytes;      /* their bytes */
};

struct so_sub {
    so_client *c;
    so_object *o;
    uint32_t known;     /* version the client has while behind */
    bool behind;        /* congested: no per-update effects */
    size_t oidx;        /* position in o->subs (O(1) removal) */
};

typedef struct pathlist {
    char **v;
    size_t n;
} pathlist;

struct so_client {
    so_client *prev, *next; /* engine's list of registered clients */
    void *user;
    uint64_t id;
    amf_encoding enc;
    so_room *room;
    pathlist rd, wr;
    so_sub **subs;
    size_t nsubs, capsubs;
    bool congested;
    size_t nbehind;     /* subscriptions with behind set */
    size_t catch_next;  /* where the next catch-up starts in subs (fairness) */
    uint64_t rate_window;
    uint32_t rate_count;
    uint32_t held_refs; /* held effects naming this client */
    bool gone;          /* unregistered; freed when held_refs drops to 0 */
    size_t nqueued;     /* messages waiting for the room's load */
    size_t qbytes;      /* their bytes */
};

/* An effect waiting for batch `seq`.  Recipients are kept as clients (not
 * user pointers) so unregistering stays O(1): a client that is gone by
 * release time is skipped then. */
typedef struct held {
    so_effect eff;        /* eff.to unused until release */
    so_client **rc;
    size_t nrc;
    sh_rcbuf *fail_body;  /* replaces eff.body when the batch failed */
    uint64_t seq;
} held;

struct so_engine {
    so_config cfg;
    bool durable;       /* persistent objects are stored (batches, loads) */
    so_hooks hooks;
    sh_map rooms;
    sh_map apps;        /* so_app by application name: stored usage (quotas) */
    uint64_t next_client_id;
    so_client *clients;
    size_t nclients;
    size_t nobjects;
    so_store_batch *batch;
    uint64_t next_seq;  /* seq of the batch being built */
    uint64_t done_seq;  /* every batch <= done_seq came back */
    held *held;
    size_t nheld, capheld;
    amf_enc *enc;
    amf_dec *dec;       /* clustered updates' values (made on first use) */
    sh_buf scratch;
    so_client **to_buf; /* commit's recipient list, reused from update to update */
    size_t to_cap;
    so_slot **upd_buf;  /* an update's changed-slot list, lent to one upd at a time */
    size_t upd_cap;
    size_t nloading;    /* rooms waiting for their load */
    size_t nwaiting;    /* so_wait items over every room */
    so_engine_stats st;
};

/* ================================================================ config, effects */

void so_config_default(so_config *c)
{
    memset(c, 0, sizeof(*c));
    c->max_objects_per_room = SO_DEFAULT_MAX_OBJECTS_PER_ROOM;
    c->max_slots_per_object = SO_DEFAULT_MAX_SLOTS_PER_OBJECT;
    c->max_value_bytes = SO_DEFAULT_MAX_VALUE_BYTES;
    c->max_object_bytes = SO_DEFAULT_MAX_OBJECT_BYTES;
    c->max_subscribers = SO_DEFAULT_MAX_SUBSCRIBERS;
    c->max_objects_per_client = SO_DEFAULT_MAX_OBJECTS_PER_CLIENT;
    c->max_updates_per_sec = SO_DEFAULT_MAX_UPDATES_PER_SEC;
    c->max_name_len = SO_DEFAULT_MAX_NAME_LEN;
    c->max_key_len = SO_DEFAULT_MAX_KEY_LEN;
    c->history_depth = SO_DEFAULT_HISTORY_DEPTH;
    c->max_body_bytes = SO_DEFAULT_MAX_BODY_BYTES;
    c->max_reply_bytes = SO_DEFAULT_MAX_REPLY_BYTES;
    c->max_persistent_objects = SO_DEFAULT_MAX_PERSISTENT_OBJECTS;
    c->max_persistent_bytes = SO_DEFAULT_MAX_PERSISTENT_BYTES;
    c->max_loading_messages = SO_DEFAULT_MAX_LOADING_MESSAGES;
    c->max_loading_bytes = SO_DEFAULT_MAX_LOADING_BYTES;
    c->max_loading_room_bytes = SO_DEFAULT_MAX_LOADING_ROOM_BYTES;
    c->conflict = SO_CONFLICT_REJECT;
    c->wire = so_wire_default_limits;
}

void so_effects_init(so_effects *l)
{
    memset(l, 0, sizeof(*l));
}

static void effect_cleanup(so_effect *f)
{
    free(f->to);
    sh_rcbuf_unref(f->body);
}

void so_effects_clear(so_effects *l)
{
    for (size_t i = 0; i < l->len; i++)
        effect_cleanup(&l->items[i]);
    l->len = 0;
}

void so_effects_cleanup(so_effects *l)
{
    so_effects_clear(l);
    free(l->items);
    so_effects_init(l);
}

/* Takes f (also on failure). */
static int effects_push(so_effects *l, so_effect f)
{
    if (l->len == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 8;
        so_effect *n = realloc(l->items, ncap * sizeof(*n));
        if (!n) {
            effect_cleanup(&f);
            return SH_ENOMEM;
        }
        l->items = n;
        l->cap = ncap;
    }
    l->items[l->len++] = f;
    return 0;
}

/* ================================================================ small helpers */


/* Grows an array of pointers by one slot. */
static int ptrs_push(void ***arr, size_t *n, size_t *cap, void *p)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        void **a = realloc(*arr, ncap * sizeof(*a));
        if (!a)
            return SH_ENOMEM;
        *arr = a;
        *cap = ncap;
    }
    (*arr)[(*n)++] = p;
    return 0;
}

static void ptrs_remove(void **arr, size_t *n, void *p)
{
    for (size_t i = 0; i < *n; i++)
        if (arr[i] == p) {
            arr[i] = arr[--*n];
            return;
        }
}

static void pathlist_free(pathlist *pl)
{
    for (size_t i = 0; i < pl->n; i++)
        free(pl->v[i]);
    free(pl->v);
    pl->v = NULL;
    pl->n = 0;
}

/* Parses "a;/b/;c": leading and trailing '/' dropped, "" or "/" = all. */
static int pathlist_parse(pathlist *pl, const char *s)
{
    pathlist n = {0};
    size_t count = 1;
    for (const char *p = s; *p; p++)
        count += *p == ';';
    n.v = calloc(count, sizeof(*n.v));
    if (!n.v)
        return SH_ENOMEM;
    const char *p = s;
    for (;;) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *a = p;
        while (len && (*a == ' ' || *a == '/')) {
            a++;
            len--;
        }
        while (len && (a[len - 1] == ' ' || a[len - 1] == '/'))
            len--;
        bool empty_entry = len == 0 && (size_t)((end ? end : p + strlen(p)) - p) == 0;
        if (!empty_entry || count == 1) {
            n.v[n.n] = sh_memdup0(a, len);
            if (!n.v[n.n]) {
                pathlist_free(&n);
                return SH_ENOMEM;
            }
            n.n++;
        }
        if (!end)
            break;
        p = end + 1;
    }
    pathlist_free(pl);
    *pl = n;
    return 0;
}

static bool pathlist_allows(const pathlist *pl, const char *name, size_t nlen)
{
    for (size_t i = 0; i < pl->n; i++) {
        size_t plen = strlen(pl->v[i]);
        if (plen == 0)
            return true;
        if (nlen >= plen && !memcmp(name, pl->v[i], plen) &&
            (nlen == plen || name[plen] == '/'))
            return true;
    }
    return false;
}

/* ================================================================ bodies, emission */

static size_t header_len(uint8_t mt, size_t nlen)
{
    return (mt == SO_MSG_AMF3 ? 1u : 0u) + 2 + nlen + 12;
}

static sh_rcbuf *make_body(uint8_t mt, const so_object *o, const char *name, size_t nlen,
                           uint32_t version, bool persistent, const sh_buf *ev);

/* The JSON body of one update: from the AMF0 body, so the events are
 * encoded once and only translated for JSON clients. */
static sh_rcbuf *make_json_body(const so_engine *e, const so_object *o, const char *name,
                                size_t nlen, uint32_t version, bool persistent, const sh_buf *ev)
{
    sh_rcbuf *a = make_body(SO_MSG_AMF0, o, name, nlen, version, persistent, ev);
    sh_rcbuf *j = a ? so_json_from_amf0(a->data, a->len, &e->cfg.wire) : NULL;
    sh_rcbuf_unref(a);
    return j;
}

static sh_rcbuf *make_body(uint8_t mt, const so_object *o, const char *name, size_t nlen,
                           uint32_t version, bool persistent, const sh_buf *ev)
{
    (void)o;
    sh_rcbuf *b = sh_rcbuf_new(header_len(mt, nlen) + ev->len);
    if (!b)
        return NULL;
    uint8_t *p = b->data;
    if (mt == SO_MSG_AMF3)
        *p++ = 0;
    sh_put_u16be(p, (uint16_t)nlen);
    p += 2;
    memcpy(p, name, nlen);
    p += nlen;
    sh_put_u32be(p, version);
    sh_put_u32be(p + 4, persistent ? SO_FLAG_PERSISTENT : 0);
    sh_put_u32be(p + 8, 0);
    p += 12;
    if (ev->len)
        memcpy(p, ev->data, ev->len);
    b->len = header_len(mt, nlen) + ev->len;
    return b;
}

static uint64_t hold_seq(const so_engine *e, const so_object *o)
{
    return o && o->persistent && o->pending_seq > e->done_seq ? o->pending_seq : 0;
}

static void client_drop_held_ref(so_client *c)
{
    if (--c->held_refs == 0 && c->gone)
        free(c);
}

/* Turns a held effect into a deliverable one (deliver) or drops it.
 * Consumes h. */
static int held_finish(held *h, bool failed, so_effects *out, bool deliver)
{
    if (failed && h->fail_body) {
        sh_rcbuf_unref(h->eff.body);
        h->eff.body = h->fail_body;
    } else {
        sh_rcbuf_unref(h->fail_body);
    }
    h->fail_body = NULL;
    int rc = 0;
    if (deliver && (h->eff.to = malloc((h->nrc ? h->nrc : 1) * sizeof(void *))) == NULL)
        rc = SH_ENOMEM;
    for (size_t i = 0; i < h->nrc; i++) {
        if (rc == 0 && deliver && !h->rc[i]->gone)
            h->eff.to[h->eff.nto++] = h->rc[i]->user;
        client_drop_held_ref(h->rc[i]);
    }
    free(h->rc);
    h->rc = NULL;
    if (rc == 0 && deliver && h->eff.nto > 0)
        return effects_push(out, h->eff);
    effect_cleanup(&h->eff);
    return rc;
}

static int held_push(so_engine *e, held h)
{
    if (e->nheld == e->capheld) {
        size_t ncap = e->capheld ? e->capheld * 2 : 16;
        held *n = realloc(e->held, ncap * sizeof(*n));
        if (!n) {
            held_finish(&h, false, NULL, false);
            return SH_ENOMEM;
        }
        e->held = n;
        e->capheld = ncap;
    }
    e->held[e->nheld++] = h;
    return 0;
}

typedef struct hdr {
    const so_object *o;  /* for holding; NULL = never held */
    const char *name;
    size_t nlen;
    uint32_t version;
    bool persistent;
} hdr;

static hdr obj_hdr(const so_object *o)
{
    return (hdr){o, o->name, o->name_len, o->version, o->persistent};
}

/* One message (events ev) to the clients to[0..nto): one body per
 * encoding, shared by every recipient of that encoding.  fail (may be
 * NULL) is the alternative events used if the awaited batch fails. */
static int emit(so_engine *e, const hdr *h, const sh_buf *ev, const sh_buf *fail,
                so_client *const *to, size_t nto, so_effects *out)
{
    if (ev->failed || (fail && fail->failed))
        return SH_ENOMEM;
    if (nto == 0 || ev->len == 0)
        return 0;
    uint64_t hseq = hold_seq(e, h->o);
    static const amf_encoding encs[3] = {AMF_ENC_AMF0, AMF_ENC_AMF3, SO_ENC_JSON};
    for (int k = 0; k < 3; k++) {
        size_t n = 0;
        for (size_t i = 0; i < nto; i++)
            n += to[i]->enc == encs[k];
        if (!n)
            continue;
        uint8_t mt = encs[k] == AMF_ENC_AMF3 ? SO_MSG_AMF3
                     : encs[k] == SO_ENC_JSON ? SO_MSG_JSON : SO_MSG_AMF0;
        so_effect f = {.msg_type = mt};
        f.body = mt == SO_MSG_JSON ? make_json_body(e, h->o, h->name, h->nlen, h->version,
                                                    h->persistent, ev)
                                   : make_body(mt, h->o, h->name, h->nlen, h->version,
                                               h->persistent, ev);
        if (!f.body)
            return SH_ENOMEM;
        int rc;
        if (hseq) {
            held hh = {.eff = f, .seq = hseq};
            hh.rc = malloc(n * sizeof(*hh.rc));
            if (fail)
                hh.fail_body = mt == SO_MSG_JSON
                                   ? make_json_body(e, h->o, h->name, h->nlen, h->version,
                                                    h->persistent, fail)
                                   : make_body(mt, h->o, h->name, h->nlen, h->version,
                                               h->persistent, fail);
            if (!hh.rc || (fail && !hh.fail_body)) {
                free(hh.rc);
                sh_rcbuf_unref(hh.fail_body);
                effect_cleanup(&f);
                return SH_ENOMEM;
            }
            for (size_t i = 0; i < nto; i++)
                if (to[i]->enc == encs[k]) {
                    to[i]->held_refs++;
                    hh.rc[hh.nrc++] = to[i];
                }
            rc = held_push(e, hh);
        } else {
            f.to = malloc(n * sizeof(*f.to));
            if (!f.to) {
                effect_cleanup(&f);
                return SH_ENOMEM;
            }
            for (size_t i = 0; i < nto; i++)
                if (to[i]->enc == encs[k])
                    f.to[f.nto++] = to[i]->user;
            rc = effects_push(out, f);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- refusal counters ---- */

static const char *const refusal_names[SO_REFUSALS] = {
    "stale", SO_STATUS_NO_WRITE, SO_STATUS_NO_READ, SO_STATUS_BAD_PERSISTENCE,
    SO_STATUS_NO_OBJECT, SO_STATUS_BAD_NAME, SO_STATUS_STORE_FAILED, SO_STATUS_LIMIT_OBJECTS,
    SO_STATUS_LIMIT_SLOTS, SO_STATUS_LIMIT_VALUE, SO_STATUS_LIMIT_OBJECT_BYTES,
    SO_STATUS_LIMIT_SUBSCRIBERS, SO_STATUS_LIMIT_CLIENT_OBJECTS, SO_STATUS_LIMIT_RATE,
    SO_STATUS_LIMIT_KEY, SO_STATUS_LIMIT_PERSISTENT_OBJECTS, SO_STATUS_LIMIT_PERSISTENT_BYTES,
    SO_STATUS_LIMIT_LOADING, "other",
};

const char *so_refusal_name(size_t i)
{
    return i < SO_REFUSALS ? refusal_names[i] : "other";
}

static void count_refusal(so_engine *e, const char *code)
{
    size_t i = 0;
    if (code)
        for (i = 1; i < SO_REFUSALS - 1 && strcmp(refusal_names[i], code) != 0; i++)
            ;
    e->st.refused[i]++;
}

static int reply_status(so_engine *e, so_client *c, const hdr *h, const char *code,
                        so_effects *out)
{
    count_refusal(e, code);
    sh_buf ev;
    sh_buf_init(&ev, SH_BUF_MAX_DEFAULT);
    so_wire_put_status(&ev, code, SO_STATUS_LEVEL_ERROR);
    hdr nh = *h;
    nh.o = NULL; /* a refusal shows no uncommitted data: never held */
    int rc = emit(e, &nh, &ev, NULL, &c, 1, out);
    sh_buf_cleanup(&ev);
    return rc;
}

/* ================================================================ slots, history */

static so_slot *slot_get(const so_object *o, const char *key, size_t klen)
{
    return sh_map_get(&o->slots, key, klen);
}

static void slot_free(so_slot *s)
{
    amf_unref(s->v);
    free(s->wire);
    free(s->key);
    free(s);
}

/* Memory a live slot holds (so.h, max_object_bytes): its block, its key,
 * the cached wire bytes and the decoded value (vmem = amf_value_mem). */
static size_t slot_mem(size_t klen, size_t vbytes, size_t vmem)
{
    return amf_mem_block(sizeof(so_slot)) + amf_mem_block(klen + 1) + amf_mem_block(vbytes) +
           vmem;
}

static void slot_drop(so_object *o, so_slot *s)
{
    sh_map_del(&o->slots, s->key, s->klen);
    if (s->v) {
        o->nlive--;
        o->bytes -= s->held;
    }
    slot_free(s);
}

/* Writes (v != NULL, borrowed: a reference is taken) or removes a slot.
 * Returns the slot (NULL when removing an absent key or out of memory). */
static so_slot *slot_write(so_object *o, const char *key, size_t klen, amf_value *v,
                           const uint8_t *wire, size_t vbytes, size_t vmem, uint32_t version,
                           uint64_t writer, int *rc)
{
    *rc = 0;
    uint8_t *wcopy = NULL;
    if (v && !(wcopy = malloc(vbytes ? vbytes : 1))) {
        *rc = SH_ENOMEM;
        return NULL;
    }
    if (v && vbytes)
        memcpy(wcopy, wire, vbytes);
    so_slot *s = slot_get(o, key, klen);
    if (!s) {
        if (!v)
            return NULL;
        s = calloc(1, sizeof(*s));
        if (!s || !(s->key = sh_memdup0(key, klen))) {
            free(s);
            free(wcopy);
            *rc = SH_ENOMEM;
            return NULL;
        }
        s->klen = klen;
        if (sh_map_put(&o->slots, s->key, klen, s) < 0) {
            slot_free(s);
            free(wcopy);
            *rc = SH_ENOMEM;
            return NULL;
        }
    }
    if (s->v) {
        o->nlive--;
        o->bytes -= s->held;
        amf_unref(s->v);
        free(s->wire);
        s->v = NULL;
        s->wire = NULL;
        s->vbytes = 0;
        s->held = 0;
    }
    if (v) {
        s->v = amf_ref(v);
        s->wire = wcopy;
        s->vbytes = vbytes;
        s->held = slot_mem(klen, vbytes, vmem);
        o->nlive++;
        o->bytes += s->held;
    }
    s->version = version;
    s->writer = writer;
    return s;
}

/* keys, klens and the key bytes are one allocation (hist_push). */
static void hist_ent_free(hist_ent *h)
{
    free(h->keys);
    memset(h, 0, sizeof(*h));
}

/* Forgets the oldest history entry; tombstones it covered go too. */
static void hist_drop_oldest(so_object *o, uint32_t depth)
{
    hist_ent *h = &o->ring[o->ring_head];
    for (size_t i = 0; i < h->nkeys; i++) {
        so_slot *s = slot_get(o, h->keys[i], h->klens[i]);
        if (s && !s->v && s->version <= h->version)
            slot_drop(o, s);
    }
    o->hist_base = h->version;
    hist_ent_free(h);
    o->ring_head = (o->ring_head + 1) % depth;
    o->ring_count--;
}

static int hist_push(so_engine *e, so_object *o, so_slot *const *changed, size_t n)
{
    uint32_t depth = e->cfg.history_depth;
    if (depth == 0) {
        /* no history: tombstones are dropped by commit() once it is done */
        o->hist_base = o->version;
        return 0;
    }
    if (!o->ring) {
        o->ring = calloc(depth, sizeof(*o->ring));
        if (!o->ring)
            return SH_ENOMEM;
    }
    if (o->ring_count == depth)
        hist_drop_oldest(o, depth);
    /* One block per version: the key pointers, their lengths, then the
     * NUL-terminated key bytes (an update is usually one key: one malloc
     * instead of three). */
    hist_ent h = {.version = o->version, .nkeys = n};
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += changed[i]->klen + 1;
    size_t head = (n ? n : 1) * (sizeof(*h.keys) + sizeof(*h.klens));
    uint8_t *blk = malloc(head + bytes);
    int rc = blk ? 0 : SH_ENOMEM;
    if (blk) {
        h.keys = (char **)(void *)blk;
        h.klens = (size_t *)(void *)(blk + (n ? n : 1) * sizeof(*h.keys));
        char *kb = (char *)blk + head;
        for (size_t i = 0; i < n; i++) {
            memcpy(kb, changed[i]->key, changed[i]->klen);
            kb[changed[i]->klen] = '\0';
            h.keys[i] = kb;
            h.klens[i] = changed[i]->klen;
            kb += changed[i]->klen + 1;
        }
    }
    if (rc < 0) {
        /* cannot remember this version: forget everything before it */
        hist_ent_free(&h);
        while (o->ring_count)
            hist_drop_oldest(o, depth);
        o->hist_base = o->version;
        return rc;
    }
    o->ring[(o->ring_head + o->ring_count) % depth] = h;
    o->ring_count++;
    return 0;
}

static bool hist_covers(const so_object *o, uint32_t v)
{
    return v > 0 && v >= o->hist_base && v <= o->version;
}

/* ================================================================ objects, rooms */

static void object_free(so_engine *e, so_object *o)
{
    size_t it = 0;
    so_slot *s;
    while ((s = sh_map_next(&o->slots, &it)) != NULL)
        slot_free(s);
    sh_map_cleanup(&o->slots);
    if (o->ring) {
        for (uint32_t i = 0; i < o->ring_count; i++)
            hist_ent_free(&o->ring[(o->ring_head + i) % e->cfg.history_depth]);
        free(o->ring);
    }
    for (size_t i = 0; i < o->npend; i++) {
        free(o->pend[i].key);
        free(o->pend[i].wire);
        amf_unref(o->pend[i].v);
    }
    free(o->pend);
    free(o->subs);
    free(o->name);
    free(o);
}

static so_object *object_new(so_engine *e, so_room *r, const char *name, size_t nlen,
                             bool persistent, uint32_t version)
{
    so_object *o = calloc(1, sizeof(*o));
    if (!o || !(o->name = sh_memdup0(name, nlen))) {
        free(o);
        return NULL;
    }
    o->room = r;
    o->name_len = nlen;
    o->persistent = persistent;
    o->local = !persistent && r->set.local_name && strlen(r->set.local_name) == nlen &&
               memcmp(r->set.local_name, name, nlen) == 0;
    o->version = version;
    o->hist_base = version;
    sh_map_init(&o->slots);
    if (sh_map_put(&r->objects, o->name, nlen, o) < 0) {
        free(o->name);
        free(o);
        return NULL;
    }
    e->nobjects++;
    e->st.object_loads++;
    return o;
}

/* Frees every object of r; r->objects is left empty and usable. */
static void room_free_objects(so_engine *e, so_room *r)
{
    size_t it = 0;
    so_object *o;
    while ((o = sh_map_next(&r->objects, &it)) != NULL) {
        object_free(e, o);
        e->nobjects--;
        e->st.object_unloads++;
    }
    sh_map_cleanup(&r->objects); /* leaves the map empty and usable */
}

static void wait_free(so_wait *w)
{
    so_msg_cleanup(&w->m);
    free(w->name);
    free(w);
}

/* Takes w out of its room's and its client's counts. */
static void wait_uncount(so_engine *e, so_room *r, const so_wait *w)
{
    r->nwait--;
    r->wbytes -= w->bytes;
    e->nwaiting--;
    if (w->c) {
        w->c->nqueued--;
        w->c->qbytes -= w->bytes;
    }
}

static void wait_list_free(so_engine *e, so_room *r, so_wait *w)
{
    while (w) {
        so_wait *n = w->next;
        wait_uncount(e, r, w);
        wait_free(w);
        w = n;
    }
}

/* Waits are dropped without answers (so_engine_free). */
static void room_free(so_engine *e, so_room *r)
{
    wait_list_free(e, r, r->wq);
    wait_list_free(e, r, r->drain);
    if (r->loading)
        e->nloading--;
    room_free_objects(e, r);
    free(r->name);
    free(r);
}

static void room_maybe_drop(so_engine *e, so_room *r)
{
    if (r->nclients == 0 && r->objects.count == 0 && !r->conflict_set && !r->loading &&
        r->nwait == 0 && !r->replaying) {
        if (r->loaded && e->hooks.room_unloaded)
            e->hooks.room_unloaded(e->hooks.ud, r->name);
        sh_map_del(&e->rooms, r->name, strlen(r->name));
        room_free(e, r);
    }
}

static bool clustered(const so_object *o);

/* A clustered temporary object: tells so_hooks.temp_use when this node
 * starts or stops using it (subscribers and server handles). */
static void temp_check(so_engine *e, so_object *o)
{
    if (o->persistent || !clustered(o))
        return;
    bool used = o->nsubs || o->server_refs;
    if (used != o->used) {
        o->used = used;
        if (e->hooks.temp_use)
            e->hooks.temp_use(e->hooks.ud, o->room->name, o->name, used);
    }
}

static void object_maybe_drop(so_engine *e, so_object *o)
{
    if (o->persistent || o->nsubs || o->server_refs)
        return;
    if (clustered(o)) {
        /* a mirror of the cluster's object: it goes when the cluster
         * says the object is gone (so_engine_temp_drop) */
        temp_check(e, o);
        return;
    }
    so_room *r = o->room;
    sh_map_del(&r->objects, o->name, o->name_len);
    object_free(e, o);
    e->nobjects--;
    e->st.object_unloads++;
    room_maybe_drop(e, r);
}

/* Makes the objects of a room image (so_engine_room_loaded); values are
 * decoded here, on the caller's thread. */
static int room_apply_image(so_engine *e, so_room *r, const so_store_batch *img)
{
    amf_dec *dec = amf_dec_new(NULL);
    if (!dec)
        return SH_ENOMEM;
    int rc = 0;
    so_object *last = NULL;
    for (size_t i = 0; rc == 0 && img && i < img->nops; i++) {
        const so_store_op *op = &img->ops[i];
        if (op->kind != SO_STORE_OBJECT)
            continue;
        size_t nlen = strlen(op->name);
        if (sh_map_get(&r->objects, op->name, nlen))
            continue;
        last = object_new(e, r, op->name, nlen, true, op->version ? op->version : 1);
        if (!last)
            rc = SH_ENOMEM;
        else
            last->stored = true; /* counted by the store's usage at start */
    }
    for (size_t i = 0; rc == 0 && img && i < img->nops; i++) {
        const so_store_op *op = &img->ops[i];
        if (op->kind != SO_STORE_SET)
            continue;
        so_object *o = last && !strcmp(last->name, op->name)
                           ? last : sh_map_get(&r->objects, op->name, strlen(op->name));
        if (!o)
            continue; /* a slot without its object row: ignore */
        last = o;
        amf_value *v = NULL;
        size_t used = 0;
        amf_dec_reset(dec);
        rc = amf_decode(dec, AMF_ENC_AMF0, op->value, op->value_len, &used, &v, NULL);
        if (rc < 0 || used != op->value_len) {
            amf_unref(v);
            rc = SH_EIO; /* stored bytes we cannot read: corruption */
            break;
        }
        slot_write(o, op->key, op->key_len, v, op->value, op->value_len,
                   amf_dec_last_mem(dec), op->version, 0, &rc);
        amf_unref(v);
    }
    amf_dec_free(dec);
    return rc;
}

/* Asks the caller for the room's objects (so_hooks.load_room). */
static void room_request_load(so_engine *e, so_room *r)
{
    assert(e->hooks.load_room); /* rooms are made loaded without it */
    r->loading = true;
    e->nloading++;
    e->hooks.load_room(e->hooks.ud, r->name);
}

/* The room entry of name, created (empty, not loaded) when missing. */
static so_room *room_get(so_engine *e, const char *name, int *rc)
{
    *rc = 0;
    so_room *r = sh_map_get(&e->rooms, name, strlen(name));
    if (!r) {
        r = calloc(1, sizeof(*r));
        if (!r || !(r->name = sh_memdup0(name, strlen(name)))) {
            free(r);
            *rc = SH_ENOMEM;
            return NULL;
        }
        sh_map_init(&r->objects);
        r->wq_tail = &r->wq;
        /* nothing to read unless a store keeps the room */
        r->loaded = !(e->durable && e->hooks.load_room);
        r->set = (so_room_settings){e->cfg.conflict, e->cfg.max_slots_per_object,
                                    e->cfg.max_objects_per_client,
                                    e->cfg.max_persistent_objects,
                                    e->cfg.max_persistent_bytes, false, NULL};
        if (e->hooks.room_settings) {
            e->hooks.room_settings(e->hooks.ud, r->name, &r->set);
            if (r->set.max_slots_per_object > e->cfg.max_slots_per_object)
                r->set.max_slots_per_object = e->cfg.max_slots_per_object;
            if (r->set.max_objects_per_client > e->cfg.max_objects_per_client)
                r->set.max_objects_per_client = e->cfg.max_objects_per_client;
        }
        if (sh_map_put(&e->rooms, r->name, strlen(r->name), r) < 0) {
            free(r->name);
            free(r);
            *rc = SH_ENOMEM;
            return NULL;
        }
    }
    r->idle_seen = false; /* touched */
    return r;
}

/* ================================================================ persistence */

static so_store_batch *batch_get(so_engine *e)
{
    if (!e->batch)
        e->batch = so_store_batch_new(e->next_seq);
    return e->batch;
}

static int persist_slot(so_engine *e, so_object *o, const so_slot *s)
{
    so_store_batch *b = batch_get(e);
    if (!b)
        return SH_ENOMEM;
    o->pending_seq = e->next_seq;
    if (!s->v)
        return so_store_batch_add(b, SO_STORE_DELETE, o->room->name, o->name, s->key,
                                  s->klen, s->version, NULL, 0);
    return so_store_batch_add(b, SO_STORE_SET, o->room->name, o->name, s->key, s->klen,
                              s->version, s->wire, s->vbytes);
}

static int persist_version(so_engine *e, so_object *o)
{
    so_store_batch *b = batch_get(e);
    if (!b)
        return SH_ENOMEM;
    o->pending_seq = e->next_seq;
    return so_store_batch_add(b, SO_STORE_OBJECT, o->room->name, o->name, NULL, 0,
                              o->version, NULL, 0);
}

/* Whole object again (after a failed batch). */
static int persist_full(so_engine *e, so_object *o)
{
    if (o->rewrite_seq == e->next_seq)
        return 0;
    so_store_batch *b = batch_get(e);
    if (!b)
        return SH_ENOMEM;
    o->rewrite_seq = e->next_seq;
    int rc = so_store_batch_add(b, SO_STORE_CLEAR, o->room->name, o->name, NULL, 0, 0, NULL, 0);
    size_t it = 0;
    so_slot *s;
    while (rc == 0 && (s = sh_map_next(&o->slots, &it)) != NULL)
        if (s->v)
            rc = persist_slot(e, o, s);
    if (rc == 0)
        rc = persist_version(e, o);
    return rc;
}

/* An object of a clustered room that the cluster stores: every persistent
 * one, and every temporary one but the room's node-local one. */
static bool clustered(const so_object *o)
{
    return o->room->set.clustered && (o->persistent || !o->local);
}

static bool persisting(const so_engine *e, const so_object *o)
{
    return e->durable && o->persistent && !o->room->set.clustered;
}

/* ================================================================ quotas */

/* What one application has in the store.  Entries stay for the engine's
 * life: there is one per application that ever stored something. */
typedef struct so_app {
    char *name;
    uint64_t objects;   /* objects written at least once */
    uint64_t bytes;     /* key + value wire bytes of their live slots */
} so_app;

/* The entry of the application of `room` (its name up to the first '/'). */
static so_app *app_find(const so_engine *e, const char *room)
{
    return sh_map_get(&e->apps, room, so_store_app_len(room));
}

static so_app *app_get(so_engine *e, const char *room)
{
    so_app *a = app_find(e, room);
    if (a)
        return a;
    size_t len = so_store_app_len(room);
    a = calloc(1, sizeof(*a));
    if (!a || !(a->name = sh_memdup0(room, len)) ||
        sh_map_put(&e->apps, a->name, len, a) < 0) {
        if (a)
            free(a->name);
        free(a);
        return NULL;
    }
    return a;
}

/* so_store_usage_fn: the store's usage at start. */
static int app_usage_add(void *ud, const char *app, uint64_t objects, uint64_t bytes)
{
    so_app *a = app_get(ud, app);
    if (!a)
        return SH_ENOMEM;
    a->objects += objects;
    a->bytes += bytes;
    return 0;
}

/* Stored bytes a slot gains when it becomes a value of vbytes (set) or is
 * removed; negative when it shrinks.  Counted in wire bytes, as the store
 * holds them. */
static int64_t stored_growth(const so_slot *s, size_t klen, bool set, size_t vbytes)
{
    int64_t had = s && s->v ? (int64_t)(s->klen + s->vbytes) : 0;
    return (set ? (int64_t)(klen + vbytes) : 0) - had;
}

/* The quota a change of o would pass (its Status code), or NULL.  A first
 * change stores the object; a change that does not grow the stored bytes
 * is always allowed, so an application over its quota can still shrink. */
static const char *quota_refusal_at(const so_engine *e, const so_object *o, bool stored,
                                    int64_t before, int64_t grow)
{
    if (!persisting(e, o))
        return NULL;
    const so_room_settings *q = &o->room->set;
    const so_app *a = app_find(e, o->room->name);
    uint64_t objects = a ? a->objects : 0, bytes = a ? a->bytes : 0;
    if (!stored && q->max_persistent_objects && objects >= q->max_persistent_objects)
        return SO_STATUS_LIMIT_PERSISTENT_OBJECTS;
    /* the bytes once the earlier changes of the same request are counted
     * (quota_count stops at 0) */
    bytes = before < 0 && (uint64_t)-before > bytes ? 0 : bytes + (uint64_t)before;
    if (grow > 0 && q->max_persistent_bytes && bytes + (uint64_t)grow > q->max_persistent_bytes)
        return SO_STATUS_LIMIT_PERSISTENT_BYTES;
    return NULL;
}

static const char *quota_refusal(const so_engine *e, const so_object *o, int64_t grow)
{
    return quota_refusal_at(e, o, o->stored, 0, grow);
}

/* A change of o was applied (it goes into the batch being built). */
static void quota_count(so_engine *e, so_object *o, int64_t grow)
{
    if (!persisting(e, o))
        return;
    so_app *a = app_get(e, o->room->name);
    if (!a)
        return; /* out of memory: counted low until the next start */
    if (!o->stored) {
        o->stored = true;
        a->objects++;
    }
    if (grow < 0 && (uint64_t)-grow > a->bytes)
        a->bytes = 0;
    else
        a->bytes += (uint64_t)grow;
}

/* ================================================================ updates */

/* Event helpers appending to an events buffer. */
static int put_change(so_engine *e, sh_buf *ev, const so_slot *s)
{
    (void)e;
    size_t mark;
    so_wire_event_begin(ev, SO_EV_CHANGE, &mark);
    so_wire_event_key(ev, s->key, s->klen);
    sh_buf_append(ev, s->wire, s->vbytes);
    return so_wire_event_end(ev, mark);
}

/* Change(K, current) or Remove(K). */
static int put_current(so_engine *e, sh_buf *ev, const so_object *o, const char *key,
                       size_t klen)
{
    const so_slot *s = slot_get(o, key, klen);
    if (s && s->v)
        return put_change(e, ev, s);
    return so_wire_put_key(ev, SO_EV_REMOVE, key, klen);
}

typedef struct upd {
    so_object *o;
    uint32_t newv;
    so_slot **changed;
    size_t n, cap;
} upd;

static int upd_add(upd *u, so_slot *s)
{
    if (s->in_upd == u->newv)
        return 0;
    s->in_upd = u->newv;
    return ptrs_push((void ***)&u->changed, &u->n, &u->cap, s);
}

static uint32_t reply_version(const so_client *c, const so_object *o);

/* Makes the update a version: history, store ops, and the one message to
 * every other subscriber.  requester (may be NULL) gets req / req_fail. */
static int commit(so_engine *e, upd *u, so_client *requester, const sh_buf *req,
                  const sh_buf *req_fail, so_effects *out)
{
    so_object *o = u->o;
    int rc = 0;
    if (u->n > 0) {
        o->version = u->newv;
        e->st.updates++;
        rc = hist_push(e, o, u->changed, u->n);
        if (rc == 0 && persisting(e, o)) {
            for (size_t i = 0; rc == 0 && i < u->n; i++)
                rc = persist_slot(e, o, u->changed[i]);
            if (rc == 0)
                rc = persist_version(e, o);
        }
    }
    hdr h = obj_hdr(o);
    if (rc == 0 && requester && req && req->len) {
        hdr rh = h;
        rh.version = reply_version(requester, o);
        rc = emit(e, &rh, req, req_fail, &requester, 1, out);
    }
    if (rc == 0 && u->n > 0) {
        sh_buf ev;
        sh_buf_init(&ev, SH_BUF_MAX_DEFAULT);
        for (size_t i = 0; rc == 0 && i < u->n; i++) {
            so_slot *s = u->changed[i];
            rc = s->v ? put_change(e, &ev, s) : so_wire_put_key(&ev, SO_EV_REMOVE, s->key, s->klen);
        }
        size_t nto = 0;
        if (o->nsubs > e->to_cap &&
            sh_array_grow((void **)&e->to_buf, &e->to_cap, o->nsubs, sizeof(*e->to_buf), 64))
            rc = SH_ENOMEM;
        so_client **to = e->to_buf;
        for (size_t i = 0; rc == 0 && i < o->nsubs; i++)
            if (o->subs[i]->c != requester && !o->subs[i]->behind)
                to[nto++] = o->subs[i]->c;
        if (rc == 0)
            rc = emit(e, &h, &ev, NULL, to, nto, out);
        sh_buf_cleanup(&ev);
    }
    for (size_t i = 0; i < u->n; i++) {
        u->changed[i]->in_upd = 0;
        if (e->cfg.history_depth == 0 && !u->changed[i]->v)
            slot_drop(o, u->changed[i]);
    }
    free(e->upd_buf); /* NULL unless two updates were open at once */
    e->upd_buf = u->changed; /* lent back for the next update */
    e->upd_cap = u->cap;
    u->changed = NULL;
    u->n = u->cap = 0;
    return rc;
}

/* An update on o whose changed-slot list reuses the engine's array. */
static upd upd_begin(so_engine *e, so_object *o)
{
    upd u = {.o = o, .newv = o->version + 1, .changed = e->upd_buf, .cap = e->upd_cap};
    e->upd_buf = NULL;
    e->upd_cap = 0;
    return u;
}

/* ================================================================ Use / state replies */

static int flush_to(so_engine *e, so_client *c, so_object *o, sh_buf *ev, size_t *built,
                    so_effects *out)
{
    hdr h = obj_hdr(o);
    *built += header_len(SO_MSG_AMF3, o->name_len) + ev->len;
    int rc = emit(e, &h, ev, NULL, &c, 1, out);
    sh_buf_reset(ev);
    return rc;
}

/* Bytes of the Change (or Remove, for a tombstone or no slot) event
 * about key: type, length, key length, key, value. */
static size_t event_bytes(const so_slot *s, size_t klen)
{
    return 7 + klen + (s && s->v ? s->vbytes : 0);
}

/* Upper bound of the bytes send_state builds for version `since` (no
 * UseSuccess): the slots the diff names (each with 7 bytes of framing),
 * never more than the whole state, plus one header per body. */
static size_t state_bound(const so_engine *e, const so_object *o, uint32_t since)
{
    if (since == o->version)
        return 0;
    size_t full = 5, it = 0;
    const so_slot *s;
    while ((s = sh_map_next(&o->slots, &it)) != NULL)
        full += event_bytes(s, s->klen);
    size_t n = full;
    if (hist_covers(o, since)) {
        size_t diff = 0;
        for (uint32_t i = 0; i < o->ring_count && diff < full; i++) {
            const hist_ent *h = &o->ring[(o->ring_head + i) % e->cfg.history_depth];
            for (size_t k = 0; h->version > since && k < h->nkeys; k++)
                diff += event_bytes(slot_get(o, h->keys[k], h->klens[k]), h->klens[k]);
        }
        n = diff < full ? diff : full;
    }
    size_t per_body = e->cfg.max_body_bytes ? e->cfg.max_body_bytes : 1;
    return n + (n / per_body + 1) * header_len(SO_MSG_AMF3, o->name_len);
}

/* Rule 1 / rule 7: the state of o for a client that has version `since`.
 * Adds the bytes of the bodies it makes to *built. */
static int send_state(so_engine *e, so_client *c, so_object *o, uint32_t since,
                      bool use_success, size_t *built, so_effects *out)
{
    sh_buf ev;
    sh_buf_init(&ev, SH_BUF_MAX_DEFAULT);
    int rc = 0;
    size_t maxb = e->cfg.max_body_bytes;
    if (use_success)
        so_wire_put_empty(&ev, SO_EV_USE_SUCCESS);
    if (since == o->version) {
        /* nothing more */
    } else if (hist_covers(o, since)) {
        sh_map seen;
        sh_map_init(&seen);
        uint32_t depth = e->cfg.history_depth;
        for (uint32_t i = 0; rc == 0 && i < o->ring_count; i++) {
            hist_ent *h = &o->ring[(o->ring_head + i) % depth];
            if (h->version <= since)
                continue;
            for (size_t k = 0; rc == 0 && k < h->nkeys; k++) {
                if (sh_map_get(&seen, h->keys[k], h->klens[k]))
                    continue;
                rc = sh_map_put(&seen, h->keys[k], h->klens[k], h);
                size_t add = event_bytes(slot_get(o, h->keys[k], h->klens[k]), h->klens[k]);
                if (rc == 0 && ev.len && ev.len + add > maxb)
                    rc = flush_to(e, c, o, &ev, built, out);
                if (rc == 0)
                    rc = put_current(e, &ev, o, h->keys[k], h->klens[k]);
            }
        }
        sh_map_cleanup(&seen);
    } else {
        so_wire_put_empty(&ev, SO_EV_CLEAR);
        size_t it = 0;
        so_slot *s;
        while (rc == 0 && (s = sh_map_next(&o->slots, &it)) != NULL) {
            if (!s->v)
                continue;
            if (ev.len && ev.len + event_bytes(s, s->klen) > maxb)
                rc = flush_to(e, c, o, &ev, built, out);
            if (rc == 0)
                rc = put_change(e, &ev, s);
        }
    }
    if (rc == 0 && ev.len)
        rc = flush_to(e, c, o, &ev, built, out);
    if (rc == 0 && ev.failed)
        rc = SH_ENOMEM;
    sh_buf_cleanup(&ev);
    return rc;
}

static so_sub *sub_find(const so_client *c, const so_object *o)
{
    for (size_t i = 0; i < c->nsubs; i++)
        if (c->subs[i]->o == o)
            return c->subs[i];
    return NULL;
}

/* The version to put in the header of a reply to c about o: a congested
 * subscriber's copy is still at the version it was last sent, and a reply
 * must not claim more (the client would come back with that version and
 * miss what it never got). */
static uint32_t reply_version(const so_client *c, const so_object *o)
{
    const so_sub *s = sub_find(c, o);
    return s && s->behind ? s->known : o->version;
}

static void sub_set_behind(so_sub *s, bool behind)
{
    if (s->behind == behind)
        return;
    s->behind = behind;
    if (behind)
        s->c->nbehind++;
    else
        s->c->nbehind--;
}

static void sub_remove(so_engine *e, so_sub *s)
{
    so_client *c = s->c;
    so_object *o = s->o;
    sub_set_behind(s, false);
    ptrs_remove((void **)c->subs, &c->nsubs, s);
    assert(o->subs[s->oidx] == s);
    o->subs[s->oidx] = o->subs[--o->nsubs];
    o->subs[s->oidx]->oidx = s->oidx;
    free(s);
    object_maybe_drop(e, o);
}

static bool name_ok(const so_engine *e, const char *name, size_t nlen)
{
    return nlen > 0 && nlen <= e->cfg.max_name_len && !memchr(name, 0, nlen);
}

/* UseSuccess alone, its header carrying the version the client holds. */
static int reply_use_success(so_engine *e, so_client *c, so_object *o, so_effects *out)
{
    sh_buf ev;
    sh_buf_init(&ev, SH_BUF_MAX_DEFAULT);
    so_wire_put_empty(&ev, SO_EV_USE_SUCCESS);
    hdr h = obj_hdr(o);
    h.version = reply_version(c, o);
    int rc = emit(e, &h, &ev, NULL, &c, 1, out);
    sh_buf_cleanup(&ev);
    return rc;
}

/* budget: the state bytes this Use may build now (max_reply_bytes). */
static int on_use(so_engine *e, so_client *c, const so_msg *m, size_t budget,
                  so_effects *out)
{
    hdr h = {NULL, m->name, m->name_len, 0, m->persistent};
    if (!name_ok(e, m->name, m->name_len))
        return reply_status(e, c, &h, SO_STATUS_BAD_NAME, out);
    if (!pathlist_allows(&c->rd, m->name, m->name_len))
        return reply_status(e, c, &h, SO_STATUS_NO_READ, out);
    so_room *r = c->room;
    so_object *o = sh_map_get(&r->objects, m->name, m->name_len);
    if (o && o->persistent != m->persistent) {
        h.version = reply_version(c, o);
        h.persistent = o->persistent;
        return reply_status(e, c, &h, SO_STATUS_BAD_PERSISTENCE, out);
    }
    so_sub *sub = o ? sub_find(c, o) : NULL;
    if (!sub) {
        if (c->nsubs >= c->room->set.max_objects_per_client)
            return reply_status(e, c, &h, SO_STATUS_LIMIT_CLIENT_OBJECTS, out);
        if (o && o->nsubs >= e->cfg.max_subscribers)
            return reply_status(e, c, &h, SO_STATUS_LIMIT_SUBSCRIBERS, out);
        if (!o) {
            if (r->objects.count >= e->cfg.max_objects_per_room)
                return reply_status(e, c, &h, SO_STATUS_LIMIT_OBJECTS, out);
            /* Not stored until its first change: an object nobody wrote
             * is the same empty version 1 whenever it is made again, and
             * a name alone must not grow the store. */
            o = object_new(e, r, m->name, m->name_len, m->persistent, 1);
            if (!o)
                return SH_ENOMEM;
        }
        sub = calloc(1, sizeof(*sub));
        if (!sub) {
            object_maybe_drop(e, o);
            return SH_ENOMEM;
        }
        sub->c = c;
        sub->o = o;
        if (ptrs_push((void ***)&c->subs, &c->nsubs, &c->capsubs, sub) < 0) {
            free(sub);
            object_maybe_drop(e, o);
            return SH_ENOMEM;
        }
        if (ptrs_push((void ***)&o->subs, &o->nsubs, &o->capsubs, sub) < 0) {
            c->nsubs--;
            free(sub);
            object_maybe_drop(e, o);
            return SH_ENOMEM;
        }
        sub->oidx = o->nsubs - 1;
        temp_check(e, o);
    }
    if (c->congested || state_bound(e, o, m->version) > budget) {
        /* Answered now, its state later: the client is behind on o, as a
         * congested one, and so_client_catch_up (paced by the app) sends
         * the diff from the version it asked with, or everything. */
        sub_set_behind(sub, true);
        sub->known = m->version <= o->version ? m->version : 0;
        e->st.uses_deferred++;
        return reply_use_success(e, c, o, out);
    }
    sub_set_behind(sub, false);
    sub->known = o->version;
    size_t built = 0;
    return send_state(e, c, o, m->version, true, &built, out);
}

/* ================================================================ writes */

typedef struct wctx {
    so_engine *e;
    so_client *c;
    so_object *o;
    sh_buf req, fail;
    bool with_fail;
    so_wire_change *prop;   /* clustered object: the accepted changes (owned copies) */
    size_t nprop, capprop;
    sh_map answered;    /* keys whose current value is already in req */
    int rc;
} wctx;

/* Refusal: Status (when code) + the key's current value.  The value is
 * sent once per key per message, so a message repeating one key cannot
 * make the reply larger than the object. */
static int w_refuse(wctx *w, const char *code, const char *key, size_t klen)
{
    count_refusal(w->e, code);
    if (code) {
        so_wire_put_status(&w->req, code, SO_STATUS_LEVEL_ERROR);
        if (w->with_fail)
            so_wire_put_status(&w->fail, code, SO_STATUS_LEVEL_ERROR);
    }
    if (sh_map_get(&w->answered, key, klen))
        return 0;
    int rc = sh_map_put(&w->answered, key, klen, w);
    if (rc == 0)
        rc = put_current(w->e, &w->req, w->o, key, klen);
    if (rc == 0 && w->with_fail)
        rc = put_current(w->e, &w->fail, w->o, key, klen);
    if (rc < 0 && !w->rc)
        w->rc = rc;
    return 0;
}

static int w_success(wctx *w, const char *key, size_t klen)
{
    so_wire_put_key(&w->req, SO_EV_SUCCESS, key, klen);
    if (w->with_fail)
        so_wire_put_status(&w->fail, SO_STATUS_STORE_FAILED, SO_STATUS_LEVEL_ERROR);
    return 0;
}

/* A change of a clustered object that passed every check: kept for the
 * proposal (answered when the cluster ordered it). */
static int w_propose(wctx *w, const char *key, size_t klen, const uint8_t *wire,
                     size_t vbytes)
{
    so_wire_change c = {.klen = klen, .vlen = vbytes, .remove = wire == NULL};
    c.key = sh_memdup0(key, klen);
    c.value = wire ? (const uint8_t *)sh_memdup0(wire, vbytes) : NULL;
    if (!c.key || (wire && !c.value) ||
        sh_array_grow((void **)&w->prop, &w->capprop, w->nprop + 1, sizeof(*w->prop), 4)) {
        free((void *)c.key);
        free((void *)c.value);
        if (!w->rc)
            w->rc = SH_ENOMEM;
        return 0;
    }
    w->prop[w->nprop++] = c;
    return 0;
}

static void w_prop_free(wctx *w)
{
    for (size_t i = 0; i < w->nprop; i++) {
        free((void *)w->prop[i].key);
        free((void *)w->prop[i].value);
    }
    free(w->prop);
    w->prop = NULL;
    w->nprop = w->capprop = 0;
}

/* The quotas a proposal of o is held to: its application's, when o is
 * persistent (the cluster counts the whole cluster's usage). */
static void proposal_quotas(so_proposal *p, const so_object *o)
{
    if (!o->persistent)
        return;
    p->max_objects = o->room->set.max_persistent_objects;
    p->max_bytes = o->room->set.max_persistent_bytes;
}

/* Hands the accepted changes of a clustered object to the cluster; when
 * it cannot take them, each is answered at once with StoreFailed. */
static void w_send_proposal(wctx *w, const so_msg *m)
{
    so_engine *e = w->e;
    int rc = SH_ESTATE;
    if (e->hooks.propose) {
        so_proposal p = {.client = w->c, .room = w->o->room->name, .name = w->o->name,
                         .name_len = w->o->name_len, .base_version = m->version,
                         .conflict = w->o->room->set.conflict, .changes = w->prop,
                         .n = w->nprop};
        proposal_quotas(&p, w->o);
        rc = e->hooks.propose(e->hooks.ud, &p);
    }
    if (rc < 0)
        for (size_t i = 0; i < w->nprop; i++)
            w_refuse(w, SO_STATUS_STORE_FAILED, w->prop[i].key, w->prop[i].klen);
}

/* One RequestChange pair (v != NULL) or RequestRemove (v == NULL). */
static int w_one(wctx *w, upd *u, uint32_t hv, const char *key, size_t klen,
                  amf_value *v, const uint8_t *wire, size_t vbytes, size_t vmem)
{
    so_engine *e = w->e;
    so_object *o = w->o;
    if (klen > e->cfg.max_key_len)
        return w_refuse(w, SO_STATUS_LIMIT_KEY, key, klen);
    if (o->server_only || !pathlist_allows(&w->c->wr, o->name, o->name_len) ||
        (e->hooks.allow_write &&
         !e->hooks.allow_write(e->hooks.ud, w->c->user, o, key, klen, v)))
        return w_refuse(w, SO_STATUS_NO_WRITE, key, klen);
    so_slot *s = slot_get(o, key, klen);
    if (o->room->set.conflict == SO_CONFLICT_REJECT && s &&
        s->writer != w->c->id && hv < s->version)
        return w_refuse(w, NULL, key, klen); /* rule 3: stale */
    if (v) {
        bool fresh = !s || !s->v;
        size_t old = s && s->v ? s->held : 0;
        if (vbytes > e->cfg.max_value_bytes ||
            vmem > SO_VALUE_MEM_FACTOR * (size_t)e->cfg.max_value_bytes)
            return w_refuse(w, SO_STATUS_LIMIT_VALUE, key, klen);
        if (fresh && o->nlive >= o->room->set.max_slots_per_object)
            return w_refuse(w, SO_STATUS_LIMIT_SLOTS, key, klen);
        if (o->bytes - old + slot_mem(klen, vbytes, vmem) > e->cfg.max_object_bytes)
            return w_refuse(w, SO_STATUS_LIMIT_OBJECT_BYTES, key, klen);
    } else if (!s || !s->v) {
        return w_success(w, key, klen); /* nothing to remove */
    }
    if (clustered(o))
        return w_propose(w, key, klen, v ? wire : NULL, vbytes);
    int64_t grow = stored_growth(s, klen, v != NULL, vbytes);
    const char *quota = quota_refusal(e, o, grow);
    if (quota)
        return w_refuse(w, quota, key, klen);
    int rc;
    s = slot_write(o, key, klen, v, wire, vbytes, vmem, u->newv, w->c->id, &rc);
    if (rc == 0 && s)
        quota_count(e, o, grow);
    if (rc == 0 && s)
        rc = upd_add(u, s);
    if (rc < 0) {
        if (!w->rc)
            w->rc = rc;
        return 0;
    }
    return w_success(w, key, klen);
}

static bool is_write(uint8_t t)
{
    return t == SO_EV_REQUEST_CHANGE || t == SO_EV_REQUEST_REMOVE;
}

static int on_writes(so_engine *e, so_client *c, const so_msg *m, uint64_t now_ms,
                     so_effects *out)
{
    size_t nw = 0;
    for (size_t i = 0; i < m->nevents; i++)
        nw += is_write(m->events[i].type);
    if (!nw)
        return 0;
    so_object *o = sh_map_get(&c->room->objects, m->name, m->name_len);
    so_sub *sub = o ? sub_find(c, o) : NULL;
    wctx w = {.e = e, .c = c, .o = o};
    sh_buf_init(&w.req, SH_BUF_MAX_DEFAULT);
    sh_buf_init(&w.fail, SH_BUF_MAX_DEFAULT);
    if (!sub) {
        for (size_t i = 0; i < m->nevents; i++)
            if (is_write(m->events[i].type))
                for (size_t k = 0; k < m->events[i].nkv; k++) {
                    count_refusal(e, SO_STATUS_NO_OBJECT);
                    so_wire_put_status(&w.req, SO_STATUS_NO_OBJECT, SO_STATUS_LEVEL_ERROR);
                }
        hdr h = {NULL, m->name, m->name_len, o ? o->version : 0, m->persistent};
        int rc = emit(e, &h, &w.req, NULL, &c, 1, out);
        sh_buf_cleanup(&w.req);
        sh_buf_cleanup(&w.fail);
        return rc;
    }
    w.with_fail = persisting(e, o);
    sh_map_init(&w.answered);
    const char *rate_code = NULL;
    if (e->cfg.max_updates_per_sec) {
        uint64_t win = now_ms / 1000;
        if (win != c->rate_window) {
            c->rate_window = win;
            c->rate_count = 0;
        }
        if (++c->rate_count > e->cfg.max_updates_per_sec)
            rate_code = SO_STATUS_LIMIT_RATE;
    }
    upd u = upd_begin(e, o);
    for (size_t i = 0; i < m->nevents; i++) {
        const so_event *ev = &m->events[i];
        if (!is_write(ev->type))
            continue;
        for (size_t k = 0; k < ev->nkv; k++) {
            const so_kv *kv = &ev->kv[k];
            if (rate_code) {
                w_refuse(&w, rate_code, kv->key, kv->key_len);
                continue;
            }
            amf_value *v = ev->type == SO_EV_REQUEST_CHANGE ? kv->value : NULL;
            sh_buf_reset(&e->scratch);
            if (v && so_wire_event_value(&e->scratch, e->enc, v) < 0) {
                w.rc = w.rc ? w.rc : SH_ENOMEM;
                continue;
            }
            size_t vmem = !v ? 0 : kv->value_mem ? kv->value_mem : amf_value_mem(v);
            w_one(&w, &u, m->version, kv->key, kv->key_len, v, e->scratch.data,
                  e->scratch.len, vmem);
        }
    }
    if (w.nprop)
        w_send_proposal(&w, m);
    w_prop_free(&w);
    int rc = w.rc;
    int rc2 = commit(e, &u, c, &w.req, w.with_fail ? &w.fail : NULL, out);
    if (rc == 0)
        rc = rc2;
    if (rc == 0 && (w.req.failed || w.fail.failed))
        rc = SH_ENOMEM;
    sh_map_cleanup(&w.answered);
    sh_buf_cleanup(&w.req);
    sh_buf_cleanup(&w.fail);
    return rc;
}

/* ================================================================ send, release */

/* The SendMessage event ev (its wire bytes) to every subscriber of o that
 * is not behind. */
static int send_event(so_engine *e, so_object *o, const sh_buf *ev, so_effects *out)
{
    so_client **to = malloc((o->nsubs ? o->nsubs : 1) * sizeof(*to));
    if (!to)
        return SH_ENOMEM;
    size_t nto = 0;
    for (size_t i = 0; i < o->nsubs; i++)
        if (!o->subs[i]->behind)
            to[nto++] = o->subs[i]->c;
    hdr h = obj_hdr(o);
    int rc = emit(e, &h, ev, NULL, to, nto, out);
    free(to);
    return rc;
}

static int send_to_subs(so_engine *e, so_object *o, const char *handler, size_t hlen,
                        size_t nargs, amf_value *const *args, so_effects *out)
{
    sh_buf ev;
    sh_buf_init(&ev, SH_BUF_MAX_DEFAULT);
    int rc = so_wire_put_send(&ev, e->enc, handler, hlen, nargs, args);
    if (rc == 0 && ev.failed)
        rc = SH_ENOMEM;
    /* A clustered object's messages go through the cluster, so that every
     * node's subscribers get them, in order with its updates; when the
     * cluster cannot take one, this node's subscribers still get it. */
    if (rc == 0 && clustered(o) && e->hooks.propose_send &&
        e->hooks.propose_send(e->hooks.ud, o->room->name, o->name, o->name_len, ev.data,
                              ev.len) == 0) {
        sh_buf_cleanup(&ev);
        return 0;
    }
    if (rc == 0)
        rc = send_event(e, o, &ev, out);
    sh_buf_cleanup(&ev);
    return rc;
}

static int on_send(so_engine *e, so_client *c, const so_msg *m, const so_event *ev,
                   so_effects *out)
{
    so_object *o = sh_map_get(&c->room->objects, m->name, m->name_len);
    hdr h = {NULL, m->name, m->name_len, o ? reply_version(c, o) : 0, m->persistent};
    if (!o || !sub_find(c, o))
        return reply_status(e, c, &h, SO_STATUS_NO_OBJECT, out);
    if (!pathlist_allows(&c->wr, o->name, o->name_len))
        return reply_status(e, c, &h, SO_STATUS_NO_WRITE, out);
    return send_to_subs(e, o, ev->handler, ev->handler_len, ev->nargs, ev->args, out);
}

static void on_release(so_engine *e, so_client *c, const so_msg *m)
{
    so_object *o = sh_map_get(&c->room->objects, m->name, m->name_len);
    so_sub *s = o ? sub_find(c, o) : NULL;
    if (s)
        sub_remove(e, s);
}

/* ================================================================ loading */

/* Memory a queued message holds (an estimate on the amf_mem_block model). */
static size_t msg_mem(const so_msg *m)
{
    size_t n = sizeof(so_wait) + m->name_len + 1 + m->nevents * sizeof(so_event);
    for (size_t i = 0; i < m->nevents; i++) {
        const so_event *ev = &m->events[i];
        n += ev->nkv * sizeof(so_kv) + ev->handler_len + ev->nargs * sizeof(amf_value *);
        for (size_t k = 0; k < ev->nkv; k++) {
            const so_kv *kv = &ev->kv[k];
            n += kv->key_len + 1;
            if (kv->value)
                n += kv->value_mem ? kv->value_mem : amf_value_mem(kv->value);
        }
        for (size_t k = 0; k < ev->nargs; k++)
            n += amf_value_mem(ev->args[k]);
        n += (ev->code ? strlen(ev->code) : 0) + (ev->level ? strlen(ev->level) : 0);
    }
    return n;
}

/* A message that will not be handled: Status `code` for its Use, for each
 * key it writes and for each SendMessage, in one message to c.  Its
 * Release has nothing to release (the client holds nothing in a room that
 * is not loaded). */
static int refuse_msg(so_engine *e, so_client *c, const so_msg *m, const char *code,
                      so_effects *out)
{
    sh_buf ev;
    sh_buf_init(&ev, SH_BUF_MAX_DEFAULT);
    bool used = false;
    for (size_t i = 0; i < m->nevents; i++) {
        const so_event *x = &m->events[i];
        size_t n = x->type == SO_EV_USE ? !used
                   : x->type == SO_EV_SEND_MESSAGE ? 1
                   : is_write(x->type) ? x->nkv : 0;
        used |= x->type == SO_EV_USE;
        for (size_t k = 0; k < n; k++) {
            count_refusal(e, code);
            so_wire_put_status(&ev, code, SO_STATUS_LEVEL_ERROR);
        }
    }
    hdr h = {NULL, m->name, m->name_len, 0, m->persistent};
    int rc = emit(e, &h, &ev, NULL, &c, 1, out);
    sh_buf_cleanup(&ev);
    return rc;
}

static void wait_push(so_engine *e, so_room *r, so_wait *w)
{
    *r->wq_tail = w;
    r->wq_tail = &w->next;
    r->nwait++;
    r->wbytes += w->bytes;
    e->nwaiting++;
    if (w->c) {
        w->c->nqueued++;
        w->c->qbytes += w->bytes;
    }
    if (!r->loading)
        room_request_load(e, r);
}

/* c's room is not loaded: m waits for it (taken when take, else copied),
 * or is refused at once when a bound would be passed. */
static int wait_msg(so_engine *e, so_client *c, so_msg *m, bool take, uint64_t now_ms,
                    so_effects *out)
{
    so_room *r = c->room;
    size_t bytes = msg_mem(m);
    int rc = 0;
    if ((c->nqueued > 0 && (c->nqueued >= e->cfg.max_loading_messages ||
                            c->qbytes + bytes > e->cfg.max_loading_bytes)) ||
        (r->nwait > 0 && r->wbytes + bytes > e->cfg.max_loading_room_bytes)) {
        rc = refuse_msg(e, c, m, SO_STATUS_LIMIT_LOADING, out);
        if (take)
            so_msg_cleanup(m);
        return rc;
    }
    so_wait *w = calloc(1, sizeof(*w));
    if (w && take) {
        w->m = *m;
        so_msg_init(m);
    } else if (w) {
        rc = so_msg_copy(&w->m, m);
    }
    if (!w || rc < 0) {
        free(w);
        if (take)
            so_msg_cleanup(m);
        return SH_ENOMEM;
    }
    w->c = c;
    w->now_ms = now_ms;
    w->bytes = bytes;
    wait_push(e, r, w);
    return 0;
}

/* Drops the messages of c still waiting in its room (c goes away). */
static void wait_drop_client(so_engine *e, so_client *c)
{
    so_room *r = c->room;
    so_wait **lists[2] = {&r->wq, &r->drain};
    for (int l = 0; l < 2 && c->nqueued; l++) {
        so_wait **pp = lists[l];
        while (*pp) {
            so_wait *w = *pp;
            if (w->c != c) {
                pp = &w->next;
                continue;
            }
            *pp = w->next;
            if (l == 0 && r->wq_tail == &w->next)
                r->wq_tail = pp;
            wait_uncount(e, r, w);
            wait_free(w);
        }
    }
}

static int handle_now(so_engine *e, so_client *c, const so_msg *m, uint64_t now_ms,
                      so_effects *out);
static so_object *open_now(so_engine *e, so_room *r, const char *name, bool persistent,
                           int *err);

int so_engine_room_loaded(so_engine *e, const char *room, int status,
                          const so_store_batch *image, so_effects *out)
{
    so_room *r = sh_map_get(&e->rooms, room, strlen(room));
    if (!r || !r->loading)
        return SH_ESTATE;
    r->loading = false;
    e->nloading--;
    if (status == 0) {
        status = room_apply_image(e, r, image);
        if (status < 0)
            room_free_objects(e, r); /* half a room is no room */
    }
    if (status == 0) {
        r->loaded = true;
        e->st.room_loads++;
        if (e->hooks.room_ready)
            e->hooks.room_ready(e->hooks.ud, r->name);
    } else {
        e->st.load_failures++;
    }
    /* What waited is replayed in order.  It is taken off wq first: a
     * callback may make something wait again (after a failure), which
     * then waits for the next load. */
    r->drain = r->wq;
    r->wq = NULL;
    r->wq_tail = &r->wq;
    r->replaying = true; /* a callback may empty the room: it stays until the end */
    int rc = 0;
    so_wait *w;
    while ((w = r->drain) != NULL) {
        r->drain = w->next;
        wait_uncount(e, r, w);
        int x = 0;
        if (w->c && status == 0) {
            x = handle_now(e, w->c, &w->m, w->now_ms, out);
        } else if (w->c) {
            x = refuse_msg(e, w->c, &w->m, SO_STATUS_STORE_FAILED, out);
        } else {
            int err = status < 0 ? SH_EIO : 0;
            so_object *o = status == 0 ? open_now(e, r, w->name, w->persistent, &err) : NULL;
            w->cb(w->ud, o, err);
        }
        if (x < 0 && rc == 0)
            rc = x;
        wait_free(w);
    }
    r->replaying = false;
    room_maybe_drop(e, r);
    return status < 0 ? status : rc;
}

bool so_engine_room_loading(const so_engine *e, const char *room)
{
    const so_room *r = sh_map_get(&e->rooms, room, strlen(room));
    return r && r->loading;
}

int so_engine_handle_msg(so_engine *e, so_client *c, const so_msg *m,
                         uint64_t now_ms, so_effects *out)
{
    if (!c->room->loaded)
        return wait_msg(e, c, (so_msg *)m, false, now_ms, out);
    return handle_now(e, c, m, now_ms, out);
}

static int handle_now(so_engine *e, so_client *c, const so_msg *m, uint64_t now_ms,
                      so_effects *out)
{
    int rc = 0;
    bool release = false, used = false;
    for (size_t i = 0; rc == 0 && i < m->nevents; i++) {
        switch (m->events[i].type) {
        case SO_EV_USE:
            /* Every event of a message is about the object it names:
             * repeated Use events are one Use, with one reply. */
            if (used)
                e->st.ignored_events++;
            else
                rc = on_use(e, c, m, e->cfg.max_reply_bytes, out);
            used = true;
            break;
        case SO_EV_RELEASE:
            release = true;
            break;
        case SO_EV_REQUEST_CHANGE:
        case SO_EV_REQUEST_REMOVE:
        case SO_EV_SEND_MESSAGE:
            break;
        default:
            e->st.ignored_events++;
            break;
        }
    }
    if (rc == 0)
        rc = on_writes(e, c, m, now_ms, out);
    for (size_t i = 0; rc == 0 && i < m->nevents; i++)
        if (m->events[i].type == SO_EV_SEND_MESSAGE)
            rc = on_send(e, c, m, &m->events[i], out);
    if (rc == 0 && release)
        on_release(e, c, m);
    return rc;
}

int so_engine_handle(so_engine *e, so_client *c, uint8_t msg_type,
                     const uint8_t *body, size_t len, uint64_t now_ms,
                     so_effects *out, sh_error *err)
{
    so_msg m;
    so_msg_init(&m);
    int rc = so_wire_decode(msg_type, body, len, &e->cfg.wire, &m, err);
    if (rc < 0)
        return rc == SH_EMORE ? SH_EPROTO : rc;
    if (!c->room->loaded)
        return wait_msg(e, c, &m, true, now_ms, out); /* takes m */
    rc = handle_now(e, c, &m, now_ms, out);
    so_msg_cleanup(&m);
    return rc;
}

/* ================================================================ engine, clients */

so_engine *so_engine_new(const so_config *config, bool durable)
{
    so_engine *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    if (config)
        e->cfg = *config;
    else
        so_config_default(&e->cfg);
    e->durable = durable;
    sh_map_init(&e->rooms);
    sh_map_init(&e->apps);
    e->next_seq = 1;
    sh_buf_init(&e->scratch, SH_BUF_MAX_DEFAULT);
    e->enc = amf_enc_new();
    if (!e->enc) {
        so_engine_free(e);
        return NULL;
    }
    return e;
}

int so_engine_usage_add(so_engine *e, const char *app, uint64_t objects, uint64_t bytes)
{
    return app_usage_add(e, app, objects, bytes);
}

void so_engine_free(so_engine *e)
{
    if (!e)
        return;
    /* clients still registered are unregistered (their pointers die) */
    while (e->clients)
        so_client_unregister(e, e->clients);
    size_t it = 0;
    so_room *r;
    while ((r = sh_map_next(&e->rooms, &it)) != NULL)
        room_free(e, r);
    sh_map_cleanup(&e->rooms);
    it = 0;
    so_app *a;
    while ((a = sh_map_next(&e->apps, &it)) != NULL) {
        free(a->name);
        free(a);
    }
    sh_map_cleanup(&e->apps);
    for (size_t i = 0; i < e->nheld; i++)
        held_finish(&e->held[i], false, NULL, false);
    free(e->held);
    so_store_batch_free(e->batch);
    amf_enc_free(e->enc);
    amf_dec_free(e->dec);
    sh_buf_cleanup(&e->scratch);
    free(e->to_buf);
    free(e->upd_buf);
    free(e);
}

void so_engine_set_hooks(so_engine *e, const so_hooks *h)
{
    if (h)
        e->hooks = *h;
    else
        memset(&e->hooks, 0, sizeof(e->hooks));
}

int so_engine_room_set_conflict(so_engine *e, const char *room, so_conflict mode)
{
    int rc;
    so_room *r = room_get(e, room, &rc);
    if (!r)
        return rc;
    r->set.conflict = mode;
    r->conflict_set = true;
    return 0;
}

so_client *so_client_register(so_engine *e, void *user, amf_encoding enc,
                              const char *room, int *err)
{
    int rc;
    so_client *c = calloc(1, sizeof(*c));
    if (!c) {
        rc = SH_ENOMEM;
        goto fail;
    }
    c->user = user;
    c->enc = enc;
    if ((rc = pathlist_parse(&c->rd, "/")) < 0 || (rc = pathlist_parse(&c->wr, "/")) < 0)
        goto fail;
    c->room = room_get(e, room ? room : "", &rc);
    if (!c->room)
        goto fail;
    c->room->nclients++;
    c->id = ++e->next_client_id;
    e->nclients++;
    c->next = e->clients;
    if (e->clients)
        e->clients->prev = c;
    e->clients = c;
    if (!c->room->loaded && !c->room->loading)
        room_request_load(e, c->room); /* its messages wait for it */
    return c;
fail:
    if (c) {
        pathlist_free(&c->rd);
        pathlist_free(&c->wr);
        free(c);
    }
    if (err)
        *err = rc;
    return NULL;
}

void so_client_unregister(so_engine *e, so_client *c)
{
    if (!c)
        return;
    while (c->nsubs)
        sub_remove(e, c->subs[c->nsubs - 1]);
    free(c->subs);
    c->subs = NULL;
    wait_drop_client(e, c);
    so_room *r = c->room;
    r->nclients--;
    e->nclients--;
    if (c->prev)
        c->prev->next = c->next;
    else
        e->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pathlist_free(&c->rd);
    pathlist_free(&c->wr);
    c->room = NULL;
    if (c->held_refs)
        c->gone = true; /* held effects still name it; freed by the last */
    else
        free(c);
    room_maybe_drop(e, r);
}

int so_client_set_access(so_engine *e, so_client *c, const char *read, const char *write)
{
    (void)e;
    int rc = 0;
    if (read)
        rc = pathlist_parse(&c->rd, read);
    if (rc == 0 && write)
        rc = pathlist_parse(&c->wr, write);
    return rc;
}

int so_client_set_congested(so_engine *e, so_client *c, bool congested, so_effects *out)
{
    if (!congested) {
        int rc = so_client_catch_up(e, c, SIZE_MAX, out);
        return rc < 0 ? rc : 0;
    }
    if (c->congested)
        return 0;
    c->congested = true;
    for (size_t i = 0; i < c->nsubs; i++) {
        so_sub *s = c->subs[i];
        if (s->behind)
            continue; /* still waiting for a catch-up: keeps the version it holds */
        sub_set_behind(s, true);
        s->known = s->o->version;
    }
    return 0;
}

int so_client_catch_up(so_engine *e, so_client *c, size_t budget, so_effects *out)
{
    c->congested = false;
    size_t built = 0, n = c->nsubs, start = c->catch_next;
    int rc = 0;
    /* Starts after the object the previous call caught up last, so a busy
     * object early in the list cannot keep the others behind forever. */
    for (size_t k = 0; rc == 0 && c->nbehind && k < n; k++) {
        size_t i = (start + k) % n;
        so_sub *s = c->subs[i];
        if (!s->behind)
            continue;
        if (s->known != s->o->version) {
            if (built > 0 && built + state_bound(e, s->o, s->known) > budget)
                break;
            rc = send_state(e, c, s->o, s->known, false, &built, out);
            e->st.catch_ups++;
        }
        if (rc == 0)
            sub_set_behind(s, false);
        c->catch_next = i + 1;
    }
    return rc < 0 ? rc : c->nbehind > 0;
}

bool so_client_is_behind(const so_client *c)
{
    return c->congested || c->nbehind > 0;
}

void *so_client_user(const so_client *c) { return c->user; }
uint64_t so_client_id(const so_client *c) { return c->id; }

/* ================================================================ batches */

so_store_batch *so_engine_take_batch(so_engine *e)
{
    so_store_batch *b = e->batch;
    if (!b || b->nops == 0)
        return NULL;
    e->batch = NULL;
    e->next_seq++;
    return b;
}

static void schedule_rewrites(so_engine *e, const so_store_batch *b)
{
    for (size_t i = 0; i < b->nops; i++) {
        const so_store_op *op = &b->ops[i];
        so_room *r = sh_map_get(&e->rooms, op->room, strlen(op->room));
        so_object *o = r ? sh_map_get(&r->objects, op->name, strlen(op->name)) : NULL;
        if (o && o->persistent)
            o->unsaved = persist_full(e, o) < 0; /* ENOMEM: retried on the next failure */
    }
}

int so_engine_batch_done(so_engine *e, so_store_batch *b, int status, so_effects *out)
{
    if (!b || b->seq != e->done_seq + 1)
        return SH_EINVAL;
    if (status < 0) {
        e->st.store_failures++;
        schedule_rewrites(e, b);
    }
    e->done_seq = b->seq;
    so_store_batch_free(b);
    int rc = 0;
    size_t keep = 0;
    for (size_t i = 0; i < e->nheld; i++) {
        held *h = &e->held[i];
        if (h->seq > e->done_seq) {
            e->held[keep++] = *h;
            continue;
        }
        int r = held_finish(h, status < 0, out, true);
        if (r < 0 && rc == 0)
            rc = r;
    }
    e->nheld = keep;
    return rc;
}

size_t so_engine_held_count(const so_engine *e)
{
    return e->nheld;
}

bool so_engine_has_batch(const so_engine *e)
{
    return e->batch && e->batch->nops > 0;
}

/* Nothing refers to r's objects and everything in them is durable. */
static bool room_idle(const so_engine *e, const so_room *r)
{
    if (r->nclients || !r->loaded || r->nwait)
        return false;
    size_t it = 0;
    const so_object *o;
    while ((o = sh_map_next(&r->objects, &it)) != NULL)
        if (o->nsubs || o->server_refs || o->lock || o->npend || o->unsaved ||
            o->pending_seq > e->done_seq || o->rewrite_seq > e->done_seq)
            return false;
    return true;
}

size_t so_engine_unload_idle(so_engine *e)
{
    if (!e->durable || !e->hooks.load_room)
        return 0; /* the objects live only here, or could not come back */
    size_t n = 0, it = 0;
    so_room *r;
    so_room **gone = NULL; /* emptied rooms to drop after the walk */
    size_t ngone = 0, capgone = 0;
    while ((r = sh_map_next(&e->rooms, &it)) != NULL) {
        if (!room_idle(e, r)) {
            r->idle_seen = false;
            continue;
        }
        if (!r->idle_seen) {
            r->idle_seen = true;
            continue;
        }
        room_free_objects(e, r);
        r->loaded = false; /* read again when next touched */
        if (e->hooks.room_unloaded)
            e->hooks.room_unloaded(e->hooks.ud, r->name);
        r->idle_seen = false;
        e->st.room_unloads++;
        n++;
        /* without memory for the list the empty room stays until next time */
        if (!r->conflict_set)
            (void)ptrs_push((void ***)&gone, &ngone, &capgone, r);
    }
    for (size_t i = 0; i < ngone; i++)
        room_maybe_drop(e, gone[i]);
    free(gone);
    return n;
}

/* ================================================================ clustered rooms */

#define WRITER_REMOTE UINT64_MAX /* a write made on another node */

/* Decodes one value of a clustered update (the store's wire form). */
static int cluster_decode(so_engine *e, const uint8_t *b, size_t len, amf_value **v,
                          size_t *mem)
{
    if (!e->dec && !(e->dec = amf_dec_new(NULL)))
        return SH_ENOMEM;
    size_t used = 0;
    amf_dec_reset(e->dec);
    *v = NULL;
    int rc = amf_decode(e->dec, AMF_ENC_AMF0, b, len, &used, v, NULL);
    if (rc < 0 || used != len) {
        amf_unref(*v);
        *v = NULL;
        return SH_EIO;
    }
    *mem = amf_dec_last_mem(e->dec);
    return 0;
}

/* The object name (persistent or temporary) of a loaded clustered room,
 * made when missing (and make). */
static so_object *cluster_object(so_engine *e, const char *room, const char *name,
                                 size_t nlen, bool persistent, bool make, int *rc)
{
    so_room *r = sh_map_get(&e->rooms, room, strlen(room));
    *rc = 0;
    if (!r || !r->loaded) {
        *rc = SH_ESTATE;
        return NULL;
    }
    so_object *o = sh_map_get(&r->objects, name, nlen);
    if (o && (o->persistent != persistent || !clustered(o)))
        *rc = SH_EEXIST;
    else if (!o && !make)
        *rc = SO_APPLY_GAP; /* a temporary object this node never saw made */
    else if (!o && !(o = object_new(e, r, name, nlen, persistent, 1)))
        *rc = SH_ENOMEM;
    return *rc ? NULL : o;
}

/* Writes one change as part of update u (version u->newv). */
static int cluster_write(so_engine *e, upd *u, const char *key, size_t klen,
                         const uint8_t *value, size_t vlen, bool remove, uint64_t writer)
{
    so_object *o = u->o;
    amf_value *v = NULL;
    size_t mem = 0;
    if (!remove) {
        int rc = cluster_decode(e, value, vlen, &v, &mem);
        if (rc < 0)
            return rc;
    } else {
        const so_slot *s = slot_get(o, key, klen);
        if (!s || !s->v)
            return 0; /* nothing to remove here */
    }
    int rc = 0;
    so_slot *s = slot_write(o, key, klen, v, value, vlen, mem, u->newv, writer, &rc);
    amf_unref(v);
    if (rc == 0 && s)
        rc = upd_add(u, s);
    return rc;
}

/* Ends an update made of cluster changes: the version is the cluster's
 * even when nothing changed here. */
static int cluster_commit(so_engine *e, upd *u, so_client *writer, const sh_buf *req,
                          so_effects *out)
{
    so_object *o = u->o;
    if (u->n == 0) {
        o->version = u->newv;
        (void)hist_push(e, o, NULL, 0); /* a failure forgets older history */
    }
    return commit(e, u, writer, req, NULL, out);
}

static int apply_update(so_engine *e, const char *room, const char *name, size_t nlen,
                        bool persistent, uint32_t version, const so_wire_change *ch,
                        size_t n, so_client *writer, so_effects *out)
{
    int rc;
    so_object *o = cluster_object(e, room, name, nlen, persistent, persistent, &rc);
    if (!o)
        return rc;
    if (version <= o->version)
        return SO_APPLY_OLD;
    if (version != o->version + 1)
        return SO_APPLY_GAP;
    upd u = upd_begin(e, o);
    u.newv = version;
    sh_buf req;
    sh_buf_init(&req, SH_BUF_MAX_DEFAULT);
    uint64_t wid = writer ? writer->id : WRITER_REMOTE;
    for (size_t i = 0; i < n; i++) {
        int x = cluster_write(e, &u, ch[i].key, ch[i].klen, ch[i].value, ch[i].vlen,
                              ch[i].remove, wid);
        if (x < 0 && rc == 0)
            rc = x;
        if (writer)
            so_wire_put_key(&req, SO_EV_SUCCESS, ch[i].key, ch[i].klen);
    }
    int rc2 = cluster_commit(e, &u, writer, writer ? &req : NULL, out);
    sh_buf_cleanup(&req);
    return rc ? rc : rc2;
}

int so_engine_apply_update(so_engine *e, const char *room, const char *name, size_t nlen,
                           uint32_t version, const so_wire_change *ch, size_t n,
                           so_client *writer, so_effects *out)
{
    return apply_update(e, room, name, nlen, true, version, ch, n, writer, out);
}

int so_engine_apply_temp_update(so_engine *e, const char *room, const char *name, size_t nlen,
                                uint32_t version, const so_wire_change *ch, size_t n,
                                so_client *writer, so_effects *out)
{
    return apply_update(e, room, name, nlen, false, version, ch, n, writer, out);
}

/* Clear and every slot to each subscriber of o (its state was replaced). */
static int cluster_send_all(so_engine *e, so_object *o, so_effects *out)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < o->nsubs; i++) {
        so_sub *sub = o->subs[i];
        if (sub->behind) {
            sub->known = 0; /* its catch-up sends Clear and everything */
            continue;
        }
        size_t built = 0;
        rc = send_state(e, sub->c, o, 0, false, &built, out);
    }
    return rc;
}

static int object_sync(so_engine *e, const char *room, const char *name, bool persistent,
                       uint32_t version, const so_store_batch *img, bool reset,
                       so_effects *out)
{
    int rc;
    size_t nlen = strlen(name);
    so_room *r = sh_map_get(&e->rooms, room, strlen(room));
    if (!persistent && r && !sh_map_get(&r->objects, name, nlen))
        reset = true; /* a temporary object new here: its state, no history */
    so_object *o = cluster_object(e, room, name, nlen, persistent, true, &rc);
    if (!o)
        return rc;
    if (!reset && version <= o->version)
        return SO_APPLY_OLD;
    upd u = upd_begin(e, o);
    u.newv = version;
    /* every slot the image has, then every live slot it lacks removed */
    sh_map keys; /* the image's keys of this object */
    sh_map_init(&keys);
    for (size_t i = 0; rc == 0 && img && i < img->nops; i++) {
        const so_store_op *op = &img->ops[i];
        if (op->kind != SO_STORE_SET || strcmp(op->name, name) != 0)
            continue;
        rc = sh_map_put(&keys, op->key, op->key_len, (void *)op);
        const so_slot *s = slot_get(o, op->key, op->key_len);
        if (rc < 0 || (!reset && s && s->v && s->vbytes == op->value_len &&
                       memcmp(s->wire, op->value, op->value_len) == 0))
            continue; /* unchanged */
        rc = cluster_write(e, &u, op->key, op->key_len, op->value, op->value_len, false,
                           WRITER_REMOTE);
    }
    size_t it = 0;
    so_slot *s;
    so_slot **drop = NULL;
    size_t ndrop = 0, capdrop = 0;
    while (rc == 0 && (s = sh_map_next(&o->slots, &it)) != NULL)
        if (s->v && s->in_upd != u.newv && !sh_map_get(&keys, s->key, s->klen))
            rc = ptrs_push((void ***)&drop, &ndrop, &capdrop, s);
    sh_map_cleanup(&keys);
    for (size_t i = 0; rc == 0 && i < ndrop; i++)
        rc = cluster_write(e, &u, drop[i]->key, drop[i]->klen, NULL, 0, true, WRITER_REMOTE);
    free(drop);
    if (!reset) {
        int rc2 = cluster_commit(e, &u, NULL, NULL, out);
        return rc ? rc : rc2;
    }
    /* reset: the new state without history; every subscriber starts over */
    for (size_t i = 0; i < u.n; i++)
        u.changed[i]->in_upd = 0;
    free(e->upd_buf);
    e->upd_buf = u.changed;
    e->upd_cap = u.cap;
    if (o->ring) {
        for (uint32_t i = 0; i < o->ring_count; i++)
            hist_ent_free(&o->ring[(o->ring_head + i) % e->cfg.history_depth]);
        o->ring_head = o->ring_count = 0;
    }
    it = 0;
    while ((s = sh_map_next(&o->slots, &it)) != NULL)
        if (!s->v) {
            slot_drop(o, s);
            it = 0; /* the map changed: start over (tombstones only get fewer) */
        }
    o->version = version;
    o->hist_base = version;
    e->st.updates++;
    int rc2 = cluster_send_all(e, o, out);
    return rc ? rc : rc2;
}

int so_engine_object_sync(so_engine *e, const char *room, const char *name, uint32_t version,
                          const so_store_batch *img, bool reset, so_effects *out)
{
    return object_sync(e, room, name, true, version, img, reset, out);
}

int so_engine_temp_sync(so_engine *e, const char *room, const char *name, uint32_t version,
                        const so_store_batch *img, bool reset, so_effects *out)
{
    return object_sync(e, room, name, false, version, img, reset, out);
}

int so_engine_temp_drop(so_engine *e, const char *room, const char *name)
{
    so_room *r = sh_map_get(&e->rooms, room, strlen(room));
    so_object *o = r ? sh_map_get(&r->objects, name, strlen(name)) : NULL;
    if (!o)
        return 0;
    if (o->persistent || !clustered(o))
        return SH_EEXIST;
    if (o->nsubs || o->server_refs || o->lock || o->npend)
        return SH_ESTATE;
    sh_map_del(&r->objects, o->name, o->name_len);
    object_free(e, o);
    e->nobjects--;
    e->st.object_unloads++;
    room_maybe_drop(e, r);
    return 0;
}

int so_engine_object_seed_history(so_engine *e, const char *room, const char *name,
                                  const so_hist_entry *h, size_t n)
{
    so_room *r = sh_map_get(&e->rooms, room, strlen(room));
    so_object *o = r && r->loaded ? sh_map_get(&r->objects, name, strlen(name)) : NULL;
    uint32_t depth = e->cfg.history_depth;
    if (!o || o->ring_count || o->hist_base != o->version)
        return SH_ESTATE;
    if (n == 0 || depth == 0)
        return 0;
    if (h[n - 1].version != o->version)
        return SH_EINVAL;
    for (size_t i = 1; i < n; i++)
        if (h[i].version != h[i - 1].version + 1)
            return SH_EINVAL;
    if (!o->ring && !(o->ring = calloc(depth, sizeof(*o->ring))))
        return SH_ENOMEM;
    size_t from = n > depth ? n - depth : 0;
    for (size_t i = from; i < n; i++) {
        size_t bytes = 0, head = (h[i].nkeys ? h[i].nkeys : 1) *
                                 (sizeof(char *) + sizeof(size_t));
        for (size_t k = 0; k < h[i].nkeys; k++)
            bytes += h[i].klens[k] + 1;
        uint8_t *blk = malloc(head + bytes);
        if (!blk) {
            while (o->ring_count)
                hist_drop_oldest(o, depth);
            o->hist_base = o->version;
            return SH_ENOMEM;
        }
        hist_ent he = {.version = h[i].version, .nkeys = h[i].nkeys};
        he.keys = (char **)(void *)blk;
        he.klens = (size_t *)(void *)(blk + (h[i].nkeys ? h[i].nkeys : 1) * sizeof(char *));
        char *kb = (char *)blk + head;
        for (size_t k = 0; k < h[i].nkeys; k++) {
            memcpy(kb, h[i].keys[k], h[i].klens[k]);
            kb[h[i].klens[k]] = '\0';
            he.keys[k] = kb;
            he.klens[k] = h[i].klens[k];
            kb += h[i].klens[k] + 1;
        }
        o->ring[(o->ring_head + o->ring_count) % depth] = he;
        o->ring_count++;
    }
    o->hist_base = h[from].version - 1;
    return 0;
}

int so_engine_answer(so_engine *e, so_client *c, const char *name, size_t nlen,
                     const so_wire_change *ch, size_t n, so_answer how, so_effects *out)
{
    if (c->gone)
        return 0;
    so_object *o = sh_map_get(&c->room->objects, name, nlen);
    if (!o)
        return 0; /* the room left memory: nothing to answer about */
    wctx w = {.e = e, .c = c, .o = o};
    sh_buf_init(&w.req, SH_BUF_MAX_DEFAULT);
    sh_map_init(&w.answered);
    for (size_t i = 0; i < n; i++) {
        if (how == SO_ANSWER_SUCCESS)
            w_success(&w, ch[i].key, ch[i].klen);
        else
            w_refuse(&w, how == SO_ANSWER_STORE_FAILED    ? SO_STATUS_STORE_FAILED
                         : how == SO_ANSWER_LIMIT_OBJECTS ? SO_STATUS_LIMIT_PERSISTENT_OBJECTS
                         : how == SO_ANSWER_LIMIT_BYTES   ? SO_STATUS_LIMIT_PERSISTENT_BYTES
                                                          : NULL,
                     ch[i].key, ch[i].klen);
    }
    hdr h = obj_hdr(o);
    h.version = reply_version(c, o);
    int rc = w.rc ? w.rc : emit(e, &h, &w.req, NULL, &c, 1, out);
    sh_map_cleanup(&w.answered);
    sh_buf_cleanup(&w.req);
    return rc;
}

int so_engine_send_event(so_engine *e, const char *room, const char *name, size_t nlen,
                         const uint8_t *ev, size_t len, so_effects *out)
{
    so_room *r = sh_map_get(&e->rooms, room, strlen(room));
    so_object *o = r && r->loaded ? sh_map_get(&r->objects, name, nlen) : NULL;
    if (!o || !o->nsubs)
        return 0;
    sh_buf b;
    sh_buf_init(&b, SH_BUF_MAX_DEFAULT);
    sh_buf_append(&b, ev, len);
    int rc = b.failed ? SH_ENOMEM : send_event(e, o, &b, out);
    sh_buf_cleanup(&b);
    return rc;
}

/* ================================================================ server API */

/* Opens name in r, which is loaded. */
static so_object *open_now(so_engine *e, so_room *r, const char *name, bool persistent,
                           int *err)
{
    int rc = 0;
    size_t nlen = strlen(name);
    so_object *o = sh_map_get(&r->objects, name, nlen);
    if (o && o->persistent != persistent) {
        o = NULL;
        rc = SH_EEXIST;
    } else if (!o) {
        if (r->objects.count >= e->cfg.max_objects_per_room)
            rc = SH_ELIMIT;
        else if (!(o = object_new(e, r, name, nlen, persistent, 1)))
            rc = SH_ENOMEM; /* stored at its first change, as in on_use */
    }
    if (o) {
        o->server_refs++;
        temp_check(e, o);
    }
    *err = rc;
    return o;
}

so_object *so_engine_object_open(so_engine *e, const char *room, const char *name,
                                 bool persistent, int *err)
{
    int rc = 0;
    so_object *o = NULL;
    so_room *r = NULL;
    if (!name_ok(e, name, strlen(name)))
        rc = SH_EINVAL;
    else if ((r = room_get(e, room, &rc)) != NULL && !r->loaded)
        rc = SH_ESTATE; /* so_engine_object_open_async waits for the load */
    else if (r)
        o = open_now(e, r, name, persistent, &rc);
    if (r && !o)
        room_maybe_drop(e, r);
    if (err)
        *err = rc;
    return o;
}

int so_engine_object_open_async(so_engine *e, const char *room, const char *name,
                                bool persistent, so_open_fn cb, void *ud)
{
    size_t nlen = strlen(name);
    if (!cb || !name_ok(e, name, nlen))
        return SH_EINVAL;
    int rc;
    so_room *r = room_get(e, room, &rc);
    if (!r)
        return rc;
    if (r->loaded) {
        so_object *o = open_now(e, r, name, persistent, &rc);
        if (!o)
            room_maybe_drop(e, r);
        cb(ud, o, rc);
        return 0;
    }
    size_t bytes = sizeof(so_wait) + nlen + 1;
    so_wait *w = NULL;
    if (r->nwait > 0 && r->wbytes + bytes > e->cfg.max_loading_room_bytes)
        rc = SH_ELIMIT;
    else if (!(w = calloc(1, sizeof(*w))) || !(w->name = sh_memdup0(name, nlen)))
        rc = SH_ENOMEM;
    if (rc < 0) {
        free(w);
        room_maybe_drop(e, r);
        return rc;
    }
    w->persistent = persistent;
    w->cb = cb;
    w->ud = ud;
    w->bytes = bytes;
    wait_push(e, r, w);
    return 0;
}

static size_t cancel_in(so_engine *e, so_room *r, so_wait **pp, bool is_wq, so_open_fn cb,
                        void *ud)
{
    size_t n = 0;
    while (*pp) {
        so_wait *w = *pp;
        if (w->c || w->cb != cb || w->ud != ud) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        if (is_wq && r->wq_tail == &w->next)
            r->wq_tail = pp;
        wait_uncount(e, r, w);
        wait_free(w);
        n++;
    }
    return n;
}

size_t so_engine_object_open_cancel(so_engine *e, so_open_fn cb, void *ud)
{
    size_t n = 0, it = 0;
    so_room *r;
    while ((r = sh_map_next(&e->rooms, &it)) != NULL) {
        if (!r->nwait)
            continue;
        n += cancel_in(e, r, &r->wq, true, cb, ud);
        n += cancel_in(e, r, &r->drain, false, cb, ud);
    }
    return n;
}

void so_engine_object_close(so_engine *e, so_object *o)
{
    if (!o)
        return;
    assert(o->server_refs > 0);
    o->server_refs--;
    object_maybe_drop(e, o);
}

so_object *so_engine_object_find(so_engine *e, const char *room, const char *name)
{
    so_room *r = sh_map_get(&e->rooms, room, strlen(room));
    return r ? sh_map_get(&r->objects, name, strlen(name)) : NULL;
}

/* Applies queued server changes as one version. */
static int apply_server(so_engine *e, so_object *o, srv_change *ch, size_t n, so_effects *out)
{
    upd u = upd_begin(e, o);
    int rc = 0, lim = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        so_slot *s = slot_get(o, ch[i].key, ch[i].klen);
        if (ch[i].v) {
            bool fresh = !s || !s->v;
            size_t old = s && s->v ? s->held : 0;
            if ((fresh && o->nlive >= o->room->set.max_slots_per_object) ||
                o->bytes - old + slot_mem(ch[i].klen, ch[i].vbytes, ch[i].vmem) >
                    e->cfg.max_object_bytes) {
                lim = SH_ELIMIT;
                continue;
            }
        } else if (!s || !s->v) {
            continue;
        }
        int64_t grow = stored_growth(s, ch[i].klen, ch[i].v != NULL, ch[i].vbytes);
        if (quota_refusal(e, o, grow)) {
            lim = SH_ELIMIT;
            continue;
        }
        s = slot_write(o, ch[i].key, ch[i].klen, ch[i].v, ch[i].wire, ch[i].vbytes,
                       ch[i].vmem, u.newv, 0, &rc);
        if (rc == 0 && s)
            quota_count(e, o, grow);
        if (rc == 0 && s)
            rc = upd_add(&u, s);
    }
    int rc2 = commit(e, &u, NULL, NULL, NULL, out);
    return rc ? rc : rc2 ? rc2 : lim;
}

static bool server_changes_fit(const so_engine *e, const so_object *o, const srv_change *ch,
                               size_t n);

/* Server changes of a clustered object: one proposal, through the same
 * hook as a client's accepted changes (the cluster orders it with them;
 * every node applies it when it comes back).  The server is not held to
 * rule 3 (last writer wins for it); opts may ask for a compare-and-set
 * and a completion.  Returns SO_WRITE_PENDING or a negative code (SH_EIO
 * when the cluster cannot take it now). */
static int server_propose(so_engine *e, so_object *o, const srv_change *ch, size_t n,
                          const so_write_opts *opts)
{
    if (!e->hooks.propose)
        return SH_EIO;
    so_wire_change *wc = calloc(n ? n : 1, sizeof(*wc));
    if (!wc)
        return SH_ENOMEM;
    for (size_t i = 0; i < n; i++)
        wc[i] = (so_wire_change){.key = ch[i].key, .klen = ch[i].klen, .value = ch[i].wire,
                                 .vlen = ch[i].v ? ch[i].vbytes : 0, .remove = !ch[i].v};
    so_proposal p = {.room = o->room->name, .name = o->name, .name_len = o->name_len,
                     .base_version = o->version, .conflict = SO_CONFLICT_LWW,
                     .changes = wc, .n = n,
                     .expect_version = opts ? opts->expect_version : 0,
                     .done = opts ? opts->done : NULL, .done_ud = opts ? opts->ud : NULL};
    proposal_quotas(&p, o);
    int rc = e->hooks.propose(e->hooks.ud, &p);
    free(wc);
    if (rc < 0)
        return rc == SH_ENOMEM ? rc : SH_EIO;
    return SO_WRITE_PENDING;
}

static int server_change(so_engine *e, so_object *o, const char *key, size_t klen,
                         amf_value *v, so_effects *out)
{
    srv_change ch = {.key = (char *)key, .klen = klen, .v = v};
    if (klen > UINT16_MAX)
        return SH_EINVAL;
    if (v) {
        sh_buf_reset(&e->scratch);
        if (so_wire_event_value(&e->scratch, e->enc, v) < 0)
            return SH_ENOMEM;
        ch.wire = e->scratch.data;
        ch.vbytes = e->scratch.len;
        ch.vmem = amf_value_mem(v);
        if (ch.vbytes > e->cfg.max_value_bytes ||
            ch.vmem > SO_VALUE_MEM_FACTOR * (size_t)e->cfg.max_value_bytes)
            return SH_ELIMIT;
    }
    if (!o->lock && clustered(o)) {
        if (!server_changes_fit(e, o, &ch, 1))
            return SH_ELIMIT;
        int rc = server_propose(e, o, &ch, 1, NULL);
        return rc < 0 ? rc : 0;
    }
    if (!o->lock)
        return apply_server(e, o, &ch, 1, out);
    if (sh_array_grow((void **)&o->pend, &o->cappend, o->npend + 1, sizeof(*o->pend), 8))
        return SH_ENOMEM;
    ch.key = sh_memdup0(key, klen);
    ch.wire = v ? (uint8_t *)sh_memdup0(ch.wire, ch.vbytes) : NULL;
    if (!ch.key || (v && !ch.wire)) {
        free(ch.key);
        free(ch.wire);
        return SH_ENOMEM;
    }
    ch.v = v ? amf_ref(v) : NULL;
    o->pend[o->npend++] = ch;
    return 0;
}

static void srv_change_free(srv_change *c)
{
    free(c->key);
    free(c->wire);
    amf_unref(c->v);
}

/* c as a change apply_server takes, with owned copies of its key and of
 * its value's wire form (out is freeable by srv_change_free whatever
 * the result).  SH_ELIMIT past max_value_bytes, as server_change. */
static int srv_change_make(so_engine *e, const so_change *c, srv_change *out)
{
    *out = (srv_change){.klen = c->klen};
    if (c->klen > UINT16_MAX)
        return SH_EINVAL;
    if (!(out->key = sh_memdup0(c->key, c->klen)))
        return SH_ENOMEM;
    if (!c->v)
        return 0;
    sh_buf_reset(&e->scratch);
    if (so_wire_event_value(&e->scratch, e->enc, c->v) < 0)
        return SH_ENOMEM;
    out->vbytes = e->scratch.len;
    out->vmem = amf_value_mem(c->v);
    if (out->vbytes > e->cfg.max_value_bytes ||
        out->vmem > SO_VALUE_MEM_FACTOR * (size_t)e->cfg.max_value_bytes)
        return SH_ELIMIT;
    if (!(out->wire = (uint8_t *)sh_memdup0(e->scratch.data, out->vbytes)))
        return SH_ENOMEM;
    out->v = amf_ref(c->v);
    return 0;
}

/* Would apply_server take every change of ch?  Its checks (slots per
 * object, object bytes, the persistent quotas), each against the state
 * the changes before it leave (a key changed twice is counted at its
 * latest value), nothing written. */
static bool server_changes_fit(const so_engine *e, const so_object *o, const srv_change *ch,
                               size_t n)
{
    size_t nlive = o->nlive, bytes = o->bytes;
    int64_t grown = 0;
    bool stored = o->stored;
    for (size_t i = 0; i < n; i++) {
        const srv_change *c = &ch[i], *prev = NULL;
        for (size_t j = 0; j < i; j++)
            if (ch[j].klen == c->klen && memcmp(ch[j].key, c->key, c->klen) == 0)
                prev = &ch[j];
        const so_slot *s = prev ? NULL : slot_get(o, c->key, c->klen);
        bool live = prev ? prev->v != NULL : s && s->v;
        size_t held = !live ? 0 : prev ? slot_mem(prev->klen, prev->vbytes, prev->vmem) : s->held;
        int64_t had = !live ? 0 : prev ? (int64_t)(prev->klen + prev->vbytes)
                                       : (int64_t)(s->klen + s->vbytes);
        if (!c->v && !live)
            continue; /* removing what is not there: skipped, as apply_server does */
        size_t mem = c->v ? slot_mem(c->klen, c->vbytes, c->vmem) : 0;
        if (c->v && ((!live && nlive >= o->room->set.max_slots_per_object) ||
                     bytes - held + mem > e->cfg.max_object_bytes))
            return false;
        int64_t grow = (c->v ? (int64_t)(c->klen + c->vbytes) : 0) - had;
        if (quota_refusal_at(e, o, stored, grown, grow))
            return false;
        nlive = nlive + (c->v && !live) - (!c->v && live);
        bytes = bytes - held + mem;
        grown += grow;
        stored = true;
    }
    return true;
}

int so_object_apply(so_engine *e, so_object *o, const so_change *ch, size_t n, so_effects *out)
{
    int rc = so_object_write(e, o, ch, n, NULL, out);
    return rc == SO_WRITE_PENDING ? 0 : rc;
}

int so_object_write(so_engine *e, so_object *o, const so_change *ch, size_t n,
                    const so_write_opts *opts, so_effects *out)
{
    bool waits = opts && (opts->expect_version || opts->done);
    if (o->lock && waits)
        return SH_ESTATE;
    if (opts && opts->expect_version && !clustered(o) && o->version != opts->expect_version)
        return SH_EEXIST;
    srv_change *arr = n ? calloc(n, sizeof(*arr)) : NULL;
    if (n && !arr)
        return SH_ENOMEM;
    int rc = 0;
    size_t made = 0;
    while (made < n && rc == 0) {
        rc = srv_change_make(e, &ch[made], &arr[made]);
        made++;
    }
    if (rc == 0 && o->lock) {
        /* queued with the lock's others; checked one by one at the unlock */
        if (sh_array_grow((void **)&o->pend, &o->cappend, o->npend + n, sizeof(*o->pend), 8)) {
            rc = SH_ENOMEM;
        } else {
            if (n)
                memcpy(o->pend + o->npend, arr, n * sizeof(*arr));
            o->npend += n;
            free(arr);
            return 0;
        }
    }
    if (rc == 0 && !server_changes_fit(e, o, arr, n))
        rc = SH_ELIMIT;
    if (rc == 0 && clustered(o) && n > 0)
        rc = server_propose(e, o, arr, n, opts);
    else if (rc == 0 && clustered(o))
        rc = 0; /* nothing to propose */
    else if (rc == 0)
        rc = apply_server(e, o, arr, n, out);
    for (size_t i = 0; i < made; i++)
        srv_change_free(&arr[i]);
    free(arr);
    return rc;
}

int so_object_set(so_engine *e, so_object *o, const char *key, size_t key_len,
                  amf_value *v, so_effects *out)
{
    if (!v)
        return SH_EINVAL;
    return server_change(e, o, key, key_len, v, out);
}

int so_object_remove(so_engine *e, so_object *o, const char *key, size_t key_len,
                     so_effects *out)
{
    return server_change(e, o, key, key_len, NULL, out);
}

void so_object_lock(so_engine *e, so_object *o)
{
    (void)e;
    o->lock++;
}

int so_object_unlock(so_engine *e, so_object *o, so_effects *out)
{
    if (!o->lock)
        return SH_ESTATE;
    if (--o->lock)
        return 0;
    int rc;
    if (clustered(o)) {
        rc = o->npend ? server_propose(e, o, o->pend, o->npend, NULL) : 0;
        rc = rc < 0 ? rc : 0;
    } else {
        rc = apply_server(e, o, o->pend, o->npend, out);
    }
    for (size_t i = 0; i < o->npend; i++)
        srv_change_free(&o->pend[i]);
    o->npend = 0;
    return rc;
}

int so_object_send(so_engine *e, so_object *o, const char *handler,
                   size_t nargs, amf_value *const *args, so_effects *out)
{
    return send_to_subs(e, o, handler, strlen(handler), nargs, args, out);
}

void so_object_set_server_only(so_object *o, bool on) { o->server_only = on; }

amf_value *so_object_get(const so_object *o, const char *key, size_t key_len)
{
    so_slot *s = slot_get(o, key, key_len);
    return s ? s->v : NULL;
}

uint32_t so_object_version(const so_object *o) { return o->version; }
bool so_object_persistent(const so_object *o) { return o->persistent; }
bool so_object_clustered(const so_object *o) { return clustered(o); }
const char *so_object_name(const so_object *o) { return o->name; }
size_t so_object_slot_count(const so_object *o) { return o->nlive; }
size_t so_object_subscriber_count(const so_object *o) { return o->nsubs; }
size_t so_object_history_len(const so_object *o) { return o->ring_count; }
size_t so_object_bytes(const so_object *o) { return o->bytes; }

void so_engine_set_rate(so_engine *e, uint32_t max_updates_per_sec)
{
    e->cfg.max_updates_per_sec = max_updates_per_sec;
}
bool so_object_locked(const so_object *o) { return o->lock > 0; }

static void room_info(const so_room *r, so_room_info *out)
{
    out->name = r->name;
    out->clients = r->nclients;
    out->objects = r->objects.count;
}

bool so_engine_room_next(const so_engine *e, size_t *iter, so_room_info *out)
{
    so_room *r = sh_map_next(&e->rooms, iter);
    if (!r)
        return false;
    room_info(r, out);
    return true;
}

bool so_engine_room_info(const so_engine *e, const char *room, so_room_info *out)
{
    so_room *r = sh_map_get(&e->rooms, room, strlen(room));
    if (!r)
        return false;
    room_info(r, out);
    return true;
}

so_object *so_engine_object_next(const so_engine *e, const char *room, size_t *iter)
{
    so_room *r = sh_map_get(&e->rooms, room, strlen(room));
    return r ? sh_map_next(&r->objects, iter) : NULL;
}

bool so_object_slot_next(const so_object *o, size_t *iter, const char **key,
                         size_t *key_len, amf_value **value)
{
    so_slot *s;
    while ((s = sh_map_next(&o->slots, iter)) != NULL) {
        if (!s->v)
            continue;
        if (key)
            *key = s->key;
        if (key_len)
            *key_len = s->klen;
        if (value)
            *value = s->v;
        return true;
    }
    return false;
}

void so_engine_app_usage(const so_engine *e, const char *app, uint64_t *objects,
                         uint64_t *bytes)
{
    const so_app *a = sh_map_get(&e->apps, app, strlen(app));
    *objects = a ? a->objects : 0;
    *bytes = a ? a->bytes : 0;
}

void so_engine_get_stats(const so_engine *e, so_engine_stats *s)
{
    *s = e->st;
    s->rooms = e->rooms.count;
    s->objects = e->nobjects;
    s->clients = e->nclients;
    s->held = e->nheld;
    s->loading = e->nloading;
    s->queued = e->nwaiting;
}
