/* so_store.c - store batches, dispatch, and the memory backend.
 *
 * The memory backend keeps plain arrays searched linearly: it is meant for
 * tests and small temporary deployments, not for large data.  A mutex
 * guards it because write_batch runs on a worker thread. */
#include "so_store.h"

#include "sh_mem.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- batches */

so_store_batch *so_store_batch_new(uint64_t seq)
{
    so_store_batch *b = calloc(1, sizeof(*b));
    if (b)
        b->seq = seq;
    return b;
}

static void op_cleanup(so_store_op *op)
{
    free(op->room);
    free(op->name);
    free(op->key);
    free(op->value);
}

void so_store_batch_free(so_store_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->nops; i++)
        op_cleanup(&b->ops[i]);
    free(b->ops);
    free(b);
}


int so_store_batch_add(so_store_batch *b, so_store_op_kind kind, const char *room,
                       const char *name, const char *key, size_t key_len,
                       uint32_t version, const uint8_t *value, size_t value_len)
{
    if (sh_array_grow((void **)&b->ops, &b->cap, b->nops + 1, sizeof(*b->ops), 16))
        return SH_ENOMEM;
    so_store_op op = {.kind = kind, .version = version, .key_len = key_len,
                      .value_len = value_len};
    op.room = sh_memdup0(room, strlen(room));
    op.name = sh_memdup0(name, strlen(name));
    if (key)
        op.key = sh_memdup0(key, key_len);
    if (value)
        op.value = (uint8_t *)sh_memdup0(value, value_len);
    if (!op.room || !op.name || (key && !op.key) || (value && !op.value)) {
        op_cleanup(&op);
        return SH_ENOMEM;
    }
    b->ops[b->nops++] = op;
    b->bytes += strlen(room) + strlen(name) + key_len + value_len + 16;
    return 0;
}

/* ---------------------------------------------------------------- dispatch */

int so_store_open(const so_store_ops *ops, const char *spec,
                  const so_store_options *opts, so_store **out)
{
    so_store_options def = {0};
    *out = NULL;
    return ops->open(spec, opts ? opts : &def, out);
}

int so_store_load_room(so_store *s, const char *room, const so_store_visitor *v)
{
    return s->ops->load_room(s, room, v);
}

int so_store_write_batch(so_store *s, const so_store_batch *b)
{
    return s->ops->write_batch(s, b);
}

static int image_object(void *ud, const char *name, uint32_t version)
{
    return so_store_batch_add(ud, SO_STORE_OBJECT, "", name, NULL, 0, version, NULL, 0);
}

static int image_slot(void *ud, const char *name, const char *key, size_t key_len,
                      uint32_t version, const uint8_t *value, size_t value_len)
{
    return so_store_batch_add(ud, SO_STORE_SET, "", name, key, key_len, version,
                              value ? value : (const uint8_t *)"", value_len);
}

int so_store_load_image(so_store *s, const char *room, so_store_batch **out)
{
    *out = so_store_batch_new(0);
    if (!*out)
        return SH_ENOMEM;
    so_store_visitor v = {.object = image_object, .slot = image_slot, .ud = *out};
    int rc = so_store_load_room(s, room, &v);
    if (rc < 0) {
        so_store_batch_free(*out);
        *out = NULL;
    }
    return rc;
}

void so_store_close(so_store *s)
{
    if (s)
        s->ops->close(s);
}

int so_store_usage(so_store *s, so_store_usage_fn fn, void *ud)
{
    return s->ops->usage ? s->ops->usage(s, fn, ud) : SH_EUNSUPPORTED;
}

size_t so_store_app_len(const char *room)
{
    const char *slash = strchr(room, '/');
    return slash ? (size_t)(slash - room) : strlen(room);
}

/* ---------------------------------------------------------------- memory backend */

typedef struct mem_slot {
    char *key;
    size_t key_len;
    uint32_t version;
    uint8_t *value;
    size_t value_len;
} mem_slot;

typedef struct mem_obj {
    char *room;
    char *name;
    uint32_t version;
    mem_slot *slots;
    size_t nslots, cap;
} mem_obj;

typedef struct mem_store {
    so_store base;
    pthread_mutex_t lock;
    mem_obj *objs;
    size_t nobjs, cap;
    int fail_next;
} mem_store;

static void mem_obj_clear(mem_obj *o)
{
    for (size_t i = 0; i < o->nslots; i++) {
        free(o->slots[i].key);
        free(o->slots[i].value);
    }
    o->nslots = 0;
}

static mem_obj *mem_find(mem_store *m, const char *room, const char *name, bool create)
{
    for (size_t i = 0; i < m->nobjs; i++)
        if (!strcmp(m->objs[i].room, room) && !strcmp(m->objs[i].name, name))
            return &m->objs[i];
    if (!create)
        return NULL;
    if (m->nobjs == m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 8;
        mem_obj *n = realloc(m->objs, ncap * sizeof(*n));
        if (!n)
            return NULL;
        m->objs = n;
        m->cap = ncap;
    }
    mem_obj *o = &m->objs[m->nobjs];
    memset(o, 0, sizeof(*o));
    o->room = sh_memdup0(room, strlen(room));
    o->name = sh_memdup0(name, strlen(name));
    if (!o->room || !o->name) {
        free(o->room);
        free(o->name);
        return NULL;
    }
    m->nobjs++;
    return o;
}

static mem_slot *mem_slot_find(mem_obj *o, const char *key, size_t key_len)
{
    for (size_t i = 0; i < o->nslots; i++)
        if (o->slots[i].key_len == key_len && !memcmp(o->slots[i].key, key, key_len))
            return &o->slots[i];
    return NULL;
}

static int mem_apply(mem_store *m, const so_store_op *op)
{
    mem_obj *o = mem_find(m, op->room, op->name, op->kind != SO_STORE_DROP);
    if (!o)
        return op->kind == SO_STORE_DROP ? 0 : SH_ENOMEM;
    switch (op->kind) {
    case SO_STORE_OBJECT:
        o->version = op->version;
        return 0;
    case SO_STORE_SET: {
        uint8_t *v = (uint8_t *)sh_memdup0(op->value, op->value_len);
        if (!v)
            return SH_ENOMEM;
        mem_slot *s = mem_slot_find(o, op->key, op->key_len);
        if (!s) {
            if (o->nslots == o->cap) {
                size_t ncap = o->cap ? o->cap * 2 : 8;
                mem_slot *n = realloc(o->slots, ncap * sizeof(*n));
                if (!n) {
                    free(v);
                    return SH_ENOMEM;
                }
                o->slots = n;
                o->cap = ncap;
            }
            s = &o->slots[o->nslots];
            s->key = sh_memdup0(op->key, op->key_len);
            if (!s->key) {
                free(v);
                return SH_ENOMEM;
            }
            s->key_len = op->key_len;
            s->value = NULL;
            o->nslots++;
        }
        free(s->value);
        s->value = v;
        s->value_len = op->value_len;
        s->version = op->version;
        return 0;
    }
    case SO_STORE_DELETE: {
        mem_slot *s = mem_slot_find(o, op->key, op->key_len);
        if (s) {
            free(s->key);
            free(s->value);
            *s = o->slots[--o->nslots];
        }
        return 0;
    }
    case SO_STORE_CLEAR:
        mem_obj_clear(o);
        return 0;
    case SO_STORE_DROP: {
        mem_obj_clear(o);
        free(o->slots);
        free(o->room);
        free(o->name);
        *o = m->objs[--m->nobjs];
        return 0;
    }
    }
    return SH_EINVAL;
}

static int mem_open(const char *spec, const so_store_options *opts, so_store **out)
{
    (void)spec;
    (void)opts;
    mem_store *m = calloc(1, sizeof(*m));
    if (!m)
        return SH_ENOMEM;
    m->base.ops = &so_store_memory_ops;
    pthread_mutex_init(&m->lock, NULL);
    *out = &m->base;
    return 0;
}

static int mem_load_room(so_store *s, const char *room, const so_store_visitor *v)
{
    mem_store *m = (mem_store *)s;
    int rc = 0;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; rc == 0 && i < m->nobjs; i++) {
        mem_obj *o = &m->objs[i];
        if (strcmp(o->room, room))
            continue;
        rc = v->object(v->ud, o->name, o->version);
        for (size_t j = 0; rc == 0 && j < o->nslots; j++)
            rc = v->slot(v->ud, o->name, o->slots[j].key, o->slots[j].key_len,
                         o->slots[j].version, o->slots[j].value, o->slots[j].value_len);
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

static int mem_write_batch(so_store *s, const so_store_batch *b)
{
    mem_store *m = (mem_store *)s;
    int rc = 0;
    pthread_mutex_lock(&m->lock);
    if (m->fail_next > 0) {
        m->fail_next--;
        rc = SH_EIO;
    }
    /* Not transactional on ENOMEM half way; acceptable for a test store. */
    for (size_t i = 0; rc == 0 && i < b->nops; i++)
        rc = mem_apply(m, &b->ops[i]);
    pthread_mutex_unlock(&m->lock);
    return rc;
}

static void mem_close(so_store *s)
{
    mem_store *m = (mem_store *)s;
    for (size_t i = 0; i < m->nobjs; i++) {
        mem_obj_clear(&m->objs[i]);
        free(m->objs[i].slots);
        free(m->objs[i].room);
        free(m->objs[i].name);
    }
    free(m->objs);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* One call per object: the memory store is for tests and small data. */
static int mem_usage(so_store *s, so_store_usage_fn fn, void *ud)
{
    mem_store *m = (mem_store *)s;
    int rc = 0;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; rc == 0 && i < m->nobjs; i++) {
        const mem_obj *o = &m->objs[i];
        uint64_t bytes = 0;
        for (size_t j = 0; j < o->nslots; j++)
            bytes += o->slots[j].key_len + o->slots[j].value_len;
        char app[256];
        size_t alen = so_store_app_len(o->room);
        char *name = alen < sizeof(app) ? app : malloc(alen + 1);
        if (!name) {
            rc = SH_ENOMEM;
            break;
        }
        memcpy(name, o->room, alen);
        name[alen] = '\0';
        rc = fn(ud, name, 1, bytes);
        if (name != app)
            free(name);
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

void so_store_memory_fail_next(so_store *s, int n)
{
    mem_store *m = (mem_store *)s;
    pthread_mutex_lock(&m->lock);
    m->fail_next = n;
    pthread_mutex_unlock(&m->lock);
}

size_t so_store_memory_count(so_store *s, size_t *slots)
{
    mem_store *m = (mem_store *)s;
    pthread_mutex_lock(&m->lock);
    size_t n = m->nobjs, ns = 0;
    for (size_t i = 0; i < m->nobjs; i++)
        ns += m->objs[i].nslots;
    pthread_mutex_unlock(&m->lock);
    if (slots)
        *slots = ns;
    return n;
}

const so_store_ops so_store_memory_ops = {
    .name = "memory",
    .open = mem_open,
    .load_room = mem_load_room,
    .write_batch = mem_write_batch,
    .close = mem_close,
    .usage = mem_usage,
};
