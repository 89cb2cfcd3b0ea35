/* amf_dec.c - AMF0 (amf0-file-format-specification) and AMF3
 * (amf-file-format-spec) decoder.
 *
 * Contract (see amf.h): one call decodes one whole value from a buffer;
 * SH_EMORE when the buffer ends first, with the reference tables rolled
 * back to how they were.  Every count and length read from the input is
 * checked against the limits, then against the bytes that remain, before
 * anything is allocated for it.  The cursor d->p may move past a point of
 * failure; nothing outside this call sees it.
 *
 * Memory: every block is counted (amf_mem_block model) against the budget
 * before it is allocated, values in d->vals, table capacity in d->tab;
 * d->room is what is left.  AMF3 strings become shared values: an inline
 * string read as a value is made a value at once and entered in the
 * string table as that value, so each reference to it costs one pointer;
 * a string first read as a key or name is copied into sb and made a value
 * only when something uses it as one (class names included, so objects
 * of one traits share their class name).
 */
#include <stdlib.h>
#include <string.h>

#include "amf_int.h"

#define NOSTR UINT32_MAX
/* Preallocation cap for a container whose count came from the input. */
#define HINT_CAP 16u

typedef struct str_ent {
    size_t off;        /* bytes in sb, when v is NULL */
    uint32_t len;
    uint32_t vcall;    /* the call that made v (undone if that call fails) */
    amf_value *v;      /* the string as a value, once one was needed */
} str_ent;

typedef struct traits_ent {
    uint32_t cls;     /* string table index, NOSTR for "" */
    uint32_t nsealed;
    uint32_t names;   /* first index in tn */
    uint8_t flags;    /* AMF_F_DYNAMIC | AMF_F_EXTERNAL */
} traits_ent;

struct amf_dec {
    amf_limits lim;
    /* AMF0 object references (amf0 spec 2.9) */
    amf_value **r0;
    uint32_t n0, cap0;
    /* AMF3 string table: values, or bytes copied into sb (the input does
     * not outlive the call) */
    str_ent *st;
    uint32_t nst, capst;
    char *sb;
    size_t sblen, sbcap;
    /* AMF3 object and traits tables */
    amf_value **ot;
    uint32_t not, capot;
    traits_ent *tt;
    uint32_t ntt, captt;
    uint32_t *tn;
    uint32_t ntn, captn;
    /* memory (see amf.h): amf_dec_mem = tab + vals; room = what is left */
    size_t max_mem;
    size_t tab;        /* capacity of the tables */
    size_t vals;       /* values built since new / reset */
    size_t room;       /* max_mem - tab - vals, 0 when past it */
    size_t last;       /* vals the last successful call built */
    uint32_t call;     /* calls so far */
    bool lazy;         /* this call made a value for an older string entry */
    /* per call */
    const uint8_t *start, *p, *end;
    sh_error *err;
    uint32_t depth;
};

#define LEFT(d) ((size_t)((d)->end - (d)->p))
#define OFF(d) ((size_t)((d)->p - (d)->start))
#define DFAIL(d, code, what) SH_FAIL((d)->err, (code), (what), OFF(d))
#define NEED(d, n)                                                  \
    do {                                                            \
        if (LEFT(d) < (size_t)(n))                                  \
            return DFAIL((d), SH_EMORE, "input ends inside a value"); \
    } while (0)
#define TRY(x)              \
    do {                    \
        int rc_ = (x);      \
        if (rc_ < 0)        \
            return rc_;     \
    } while (0)


amf_dec *amf_dec_new(const amf_limits *limits)
{
    amf_dec *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->lim = limits ? *limits : amf_default_limits;
    d->max_mem = d->room = amf_limits_memory(&d->lim);
    return d;
}

static void room_update(amf_dec *d)
{
    size_t used = d->tab + d->vals;
    d->room = d->max_mem > used ? d->max_mem - used : 0;
}

static void rollback(amf_dec *d, uint32_t n0, uint32_t nst, size_t sblen, uint32_t not,
                     uint32_t ntt, uint32_t ntn)
{
    while (d->n0 > n0)
        amf_unref(d->r0[--d->n0]);
    while (d->not > not)
        amf_unref(d->ot[--d->not]);
    for (uint32_t i = nst; i < d->nst; i++)
        if (d->st[i].v)
            amf_unref(d->st[i].v);
    d->nst = nst;
    d->sblen = sblen;
    d->ntt = ntt;
    d->ntn = ntn;
}

void amf_dec_reset(amf_dec *d)
{
    if (!d)
        return;
    rollback(d, 0, 0, 0, 0, 0, 0);
    d->vals = 0;
    room_update(d);
}

size_t amf_dec_mem(const amf_dec *d) { return d ? d->tab + d->vals : 0; }
size_t amf_dec_last_mem(const amf_dec *d) { return d ? d->last : 0; }

void amf_dec_set_max_memory(amf_dec *d, size_t max_memory)
{
    if (d) {
        d->max_mem = max_memory;
        room_update(d);
    }
}

void amf_dec_free(amf_dec *d)
{
    if (!d)
        return;
    amf_dec_reset(d);
    free(d->r0);
    free(d->st);
    free(d->sb);
    free(d->ot);
    free(d->tt);
    free(d->tn);
    free(d);
}

/* ---- raw reads (callers checked NEED) ---- */

static double rd_f64(amf_dec *d)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = u << 8 | d->p[i];
    d->p += 8;
    double x;
    memcpy(&x, &u, 8);
    return x;
}

static uint32_t rd_u32(amf_dec *d)
{
    uint32_t v = sh_get_u32be(d->p);
    d->p += 4;
    return v;
}

static uint16_t rd_u16(amf_dec *d)
{
    uint16_t v = sh_get_u16be(d->p);
    d->p += 2;
    return v;
}

/* ---- the budget: check, allocate, then count ---- */

static int over_budget(amf_dec *d) __attribute__((cold, noinline));
static int over_budget(amf_dec *d)
{
    return DFAIL(d, SH_ELIMIT, "decoded values would hold more than max_memory");
}

static inline int mem_check(amf_dec *d, size_t n)
{
    return n > d->room ? over_budget(d) : 0;
}

static inline void mem_add_val(amf_dec *d, size_t n)
{
    d->room -= n;
    d->vals += n;
}

/* amf_grow for a reference table, its growth counted first (the slow
 * path of tab_grow). */
static int tab_grow_slow(amf_dec *d, void **p, uint32_t *cap, uint32_t need, size_t elem)
{
    size_t n = amf_grow_mem(*cap, need, elem, 16);
    TRY(mem_check(d, n));
    if (amf_grow(p, cap, need, elem, 16))
        return DFAIL(d, SH_ENOMEM, "out of memory");
    d->room -= n;
    d->tab += n;
    return 0;
}

static inline int tab_grow(amf_dec *d, void **p, uint32_t *cap, uint32_t need, size_t elem)
{
    return need <= *cap ? 0 : tab_grow_slow(d, p, cap, need, elem);
}

/* A number, integer or date (NULL v: its constructor failed). */
static inline int new_scalar(amf_dec *d, amf_value *v, amf_value **out)
{
    if (!v)
        return DFAIL(d, SH_ENOMEM, "out of memory");
    mem_add_val(d, AMF_MEM_SCALAR);
    *out = v;
    return 0;
}

/* Callers of new_scalar check the budget first with this. */
#define SCALAR_ROOM(d) TRY(mem_check((d), AMF_MEM_SCALAR))

/* A string, XML or byte array of n bytes (n passed check_len). */
static inline int new_bytes(amf_dec *d, amf_type t, const void *p, size_t n, amf_value **out)
{
    if (n == 0 && t == AMF_STRING) {
        *out = amf_string("", 0); /* the singleton */
        return 0;
    }
    size_t cost = amf_mem_bytes(n);
    TRY(mem_check(d, cost));
    amf_value *v = amf_bytes_alloc(t, p, n);
    if (!v)
        return DFAIL(d, SH_ENOMEM, "out of memory");
    mem_add_val(d, cost);
    *out = v;
    return 0;
}

static inline int new_cont(amf_dec *d, amf_type t, amf_value **out)
{
    TRY(mem_check(d, AMF_MEM_CONT));
    amf_value *v = amf_cont_new(t);
    if (!v)
        return DFAIL(d, SH_ENOMEM, "out of memory");
    mem_add_val(d, AMF_MEM_CONT);
    *out = v;
    return 0;
}

static int depth_enter(amf_dec *d)
{
    if (++d->depth > d->lim.max_depth)
        return DFAIL(d, SH_ELIMIT, "values nested deeper than max_depth");
    return 0;
}

static int check_count(amf_dec *d, uint64_t n, size_t min_bytes_each)
{
    if (n > d->lim.max_elements)
        return DFAIL(d, SH_ELIMIT, "element count above max_elements");
    if (n * min_bytes_each > LEFT(d))
        return DFAIL(d, SH_EMORE, "input ends before the claimed elements");
    return 0;
}

static int check_len(amf_dec *d, uint64_t n)
{
    if (n > d->lim.max_string)
        return DFAIL(d, SH_ELIMIT, "string or byte length above max_string");
    NEED(d, n);
    return 0;
}

/* Counts a growth of a value's arrays before it happens (the slow path
 * of add_member and push_elem: most members and elements fit).  If the
 * allocation then fails, the whole call fails and is rolled back. */
static int grow_val(amf_dec *d, size_t cost, amf_value *v)
{
    int rc = mem_check(d, cost);
    if (rc) {
        amf_unref(v);
        return rc;
    }
    mem_add_val(d, cost);
    return 0;
}

/* Adds a member, enforcing max_elements and the budget; takes v. */
static inline int add_member(amf_dec *d, amf_cont *c, const char *k, size_t kn, amf_value *v)
{
    if ((uint64_t)c->nm + c->ne >= d->lim.max_elements) {
        amf_unref(v);
        return DFAIL(d, SH_ELIMIT, "member count above max_elements");
    }
    if (c->nm >= c->mcap || kn >= c->kcap - c->klen)
        TRY(grow_val(d, amf_cont_member_mem(c, kn, 4), v));
    return amf_cont_add_member(c, k, kn, v, 4) ? DFAIL(d, SH_ENOMEM, "out of memory") : 0;
}

/* Appends an element (takes v), its array's growth counted first. */
static inline int push_elem(amf_dec *d, amf_cont *c, amf_value *v, uint32_t hint)
{
    if (c->ne >= c->ecap)
        TRY(grow_val(d, amf_cont_push_mem(c, hint), v));
    return amf_cont_push(c, v, hint) ? DFAIL(d, SH_ENOMEM, "out of memory") : 0;
}

/* A class name read inline (AMF0 typed objects). */
static int set_class_bytes(amf_dec *d, amf_cont *c, const char *s, size_t n)
{
    TRY(mem_check(d, amf_mem_bytes(n)));
    if (amf_cont_set_class(c, s, n))
        return DFAIL(d, SH_ENOMEM, "out of memory");
    mem_add_val(d, amf_mem_bytes(n));
    return 0;
}

static uint32_t hint_of(uint32_t n) { return n < HINT_CAP ? n : HINT_CAP; }

/* ====================================================================
 * AMF3
 * ==================================================================== */

static int dec3(amf_dec *d, amf_value **out);

static int u29(amf_dec *d, uint32_t *v)
{
    uint32_t r = 0;
    for (int i = 0; i < 3; i++) {
        NEED(d, 1);
        uint8_t b = *d->p++;
        if (!(b & 0x80)) {
            *v = r << 7 | b;
            return 0;
        }
        r = r << 7 | (b & 0x7f);
    }
    NEED(d, 1);
    *v = r << 8 | *d->p++;
    return 0;
}

/* Reads the U29 that opens every AMF3 value which may be sent by reference
 * (amf3 spec 1.3.2: string, XMLDocument, Date, Array, Object, XML,
 * ByteArray, Vector, Dictionary).  Low bit 0: the bits above it are an index
 * into a reference table; 1: they describe the inline value (a length, a
 * count, or object traits bits).  *rest = those bits.  Returns 1 inline,
 * 0 reference, or a negative error. */
static int u29_ref(amf_dec *d, uint32_t *rest)
{
    uint32_t u = 0;
    TRY(u29(d, &u));
    *rest = u >> 1;
    return (int)(u & 1);
}

static const char *st_bytes(const amf_dec *d, uint32_t i)
{
    return d->st[i].v ? d->st[i].v->u.s.p : d->sb + d->st[i].off;
}

/* Reads a U29S string (amf3 spec 1.3.2 / 3.8): a reference, or inline
 * bytes entered in the table when not empty.  *idx = its table index
 * (stable for the rest of the call, unlike a pointer into sb), NOSTR for
 * "".  as_value: the string is read as a value, so an inline one is made
 * a value now and the table holds that value instead of a copy. */
static int str3(amf_dec *d, uint32_t *idx, bool as_value)
{
    uint32_t r = 0;
    int rc = u29_ref(d, &r);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        if (r >= d->nst)
            return DFAIL(d, SH_EPROTO, "AMF3 string reference out of range");
        *idx = r;
        return 0;
    }
    uint32_t len = r;
    TRY(check_len(d, len));
    if (len == 0) {
        *idx = NOSTR;
        return 0;
    }
    if (d->nst >= d->lim.max_refs)
        return DFAIL(d, SH_ELIMIT, "AMF3 string table above max_refs");
    TRY(tab_grow(d, (void **)&d->st, &d->capst, d->nst + 1, sizeof *d->st));
    str_ent *e = &d->st[d->nst];
    e->off = 0;
    e->len = len;
    e->vcall = d->call;
    e->v = NULL;
    if (as_value) {
        TRY(new_bytes(d, AMF_STRING, d->p, len, &e->v));
    } else {
        if (d->sbcap - d->sblen < len) {
            size_t cap = d->sbcap ? d->sbcap : 1024;
            while (cap - d->sblen < len)
                cap *= 2;
            size_t cost = amf_mem_block_(cap) - amf_mem_block_(d->sbcap);
            TRY(mem_check(d, cost));
            char *q = realloc(d->sb, cap);
            if (!q)
                return DFAIL(d, SH_ENOMEM, "out of memory");
            d->sb = q;
            d->sbcap = cap;
            d->room -= cost;
            d->tab += cost;
        }
        memcpy(d->sb + d->sblen, d->p, len);
        e->off = d->sblen;
        d->sblen += len;
    }
    *idx = d->nst++;
    d->p += len;
    return 0;
}

/* String entry i as a value (borrowed), made now when it was only bytes:
 * every later use shares it. */
static inline int st_value(amf_dec *d, uint32_t i, amf_value **v)
{
    str_ent *e = &d->st[i];
    if (!e->v) {
        TRY(new_bytes(d, AMF_STRING, d->sb + e->off, e->len, &e->v));
        e->vcall = d->call;
        d->lazy = true;
    }
    *v = e->v;
    return 0;
}

/* Enters a value just made in the object table (which numbers values in
 * the order they are read) and returns it in *out.  Takes v. */
static int ot_add(amf_dec *d, amf_value *v, amf_value **out)
{
    int rc = 0;
    if (d->not >= d->lim.max_refs)
        rc = DFAIL(d, SH_ELIMIT, "AMF3 object table above max_refs");
    else
        rc = tab_grow(d, (void **)&d->ot, &d->capot, d->not + 1, sizeof *d->ot);
    if (rc) {
        amf_unref(v);
        return rc;
    }
    d->ot[d->not++] = amf_ref(v);
    *out = v;
    return 0;
}

/* Resolves object-table index i: *out = a new reference to the entry. */
static int ot_get(amf_dec *d, uint32_t i, amf_value **out)
{
    if (i >= d->not)
        return DFAIL(d, SH_EPROTO, "AMF3 object reference out of range");
    if (d->ot[i]->flags & AMF_F_BUSY)
        return DFAIL(d, SH_EUNSUPPORTED, "AMF3 reference to an enclosing value (cycle)");
    *out = amf_ref(d->ot[i]);
    return 0;
}

/* Opens a value that may be an object-table reference (every AMF3 type
 * but string).  Returns 0 with *out = a new reference to the table entry
 * (the caller returns it as its value), 1 with *rest = the inline bits
 * (u29_ref), or a negative error.  Nothing is allocated here: the caller
 * checks *rest against the limits before it allocates.  inline: it opens
 * most AMF3 values, and gcc -O2 otherwise keeps the call (~1% more
 * instructions per decoded value). */
static inline int ref3(amf_dec *d, uint32_t *rest, amf_value **out)
{
    int rc = u29_ref(d, rest);
    return rc ? rc : ot_get(d, *rest, out);
}

static int dec3_bytes(amf_dec *d, amf_type t, amf_value **out)
{
    uint32_t n = 0;
    int rc = ref3(d, &n, out);
    if (rc <= 0)
        return rc;
    TRY(check_len(d, n));
    amf_value *v = NULL;
    TRY(new_bytes(d, t, d->p, n, &v));
    d->p += n;
    return ot_add(d, v, out);
}

static int dec3_date(amf_dec *d, amf_value **out)
{
    uint32_t r = 0; /* inline: the bits are unused (amf3 spec 3.7) */
    int rc = ref3(d, &r, out);
    if (rc <= 0)
        return rc;
    NEED(d, 8);
    amf_value *v = NULL;
    SCALAR_ROOM(d);
    TRY(new_scalar(d, amf_date(rd_f64(d), 0), &v));
    return ot_add(d, v, out);
}

/* Creates a container, enters it in the object table and marks it busy. */
static int cont3_begin(amf_dec *d, amf_type t, amf_value **out)
{
    TRY(depth_enter(d));
    amf_value *v = NULL;
    TRY(new_cont(d, t, &v));
    TRY(ot_add(d, v, out));
    (*out)->flags |= AMF_F_BUSY;
    return 0;
}

static int cont_end(amf_dec *d, amf_value *v, int rc, amf_value **out)
{
    v->flags &= (uint8_t)~AMF_F_BUSY;
    if (rc) {
        amf_unref(v);
        return rc;
    }
    d->depth--;
    *out = v;
    return 0;
}

/* Reads name/value pairs until the empty name (dynamic members, assoc part). */
static int dec3_pairs(amf_dec *d, amf_cont *c)
{
    for (;;) {
        uint32_t ki = NOSTR;
        TRY(str3(d, &ki, false));
        if (ki == NOSTR)
            return 0;
        amf_value *v = NULL;
        TRY(dec3(d, &v));
        /* the key's bytes found only now: decoding v may move sb */
        TRY(add_member(d, c, st_bytes(d, ki), d->st[ki].len, v));
    }
}

static int dec3_array_body(amf_dec *d, amf_value *v, uint32_t n)
{
    amf_cont *c = amf_cont_of(v);
    TRY(dec3_pairs(d, c));
    TRY(check_count(d, (uint64_t)n + c->nm, 0));
    TRY(check_count(d, n, 1));
    for (uint32_t i = 0; i < n; i++) {
        amf_value *e = NULL;
        TRY(dec3(d, &e));
        TRY(push_elem(d, c, e, hint_of(n)));
    }
    if (c->nm)
        v->type = AMF_ECMA_ARRAY;
    return 0;
}

static int dec3_array(amf_dec *d, amf_value **out)
{
    uint32_t n = 0;
    int rc = ref3(d, &n, out);
    if (rc <= 0)
        return rc;
    TRY(check_count(d, n, 1));
    amf_value *v = NULL;
    TRY(cont3_begin(d, AMF_STRICT_ARRAY, &v));
    return cont_end(d, v, dec3_array_body(d, v, n), out);
}

/* r: the U29O bits above the reference flag (amf3 spec 3.12): bit 0 clear =
 * traits reference; else bit 1 externalizable, bit 2 dynamic, the rest
 * the sealed member count. */
static int dec3_object_body(amf_dec *d, amf_value *v, uint32_t r)
{
    amf_cont *c = amf_cont_of(v);
    traits_ent t;
    if (!(r & 1)) {
        uint32_t i = r >> 1;
        if (i >= d->ntt)
            return DFAIL(d, SH_EPROTO, "AMF3 traits reference out of range");
        t = d->tt[i];
    } else {
        t.flags = (uint8_t)(((r & 2) ? AMF_F_EXTERNAL : 0) | ((r & 4) ? AMF_F_DYNAMIC : 0));
        t.nsealed = r >> 3;
        TRY(str3(d, &t.cls, false));
        TRY(check_count(d, t.nsealed, 1));
        if (d->ntt >= d->lim.max_refs)
            return DFAIL(d, SH_ELIMIT, "AMF3 traits table above max_refs");
        TRY(tab_grow(d, (void **)&d->tt, &d->captt, d->ntt + 1, sizeof *d->tt));
        TRY(tab_grow(d, (void **)&d->tn, &d->captn, d->ntn + t.nsealed, sizeof *d->tn));
        t.names = d->ntn;
        for (uint32_t i = 0; i < t.nsealed; i++) {
            uint32_t idx = NOSTR;
            TRY(str3(d, &idx, false));
            d->tn[d->ntn++] = idx;
        }
        d->tt[d->ntt++] = t;
    }
    if (t.cls != NOSTR) {
        amf_value *cv = NULL; /* shared by every object of these traits */
        TRY(st_value(d, t.cls, &cv));
        amf_cont_set_class_value(c, cv);
    }
    if (t.flags & AMF_F_EXTERNAL) {
        if (!amf_external_class_known(c->cls ? c->cls : "", c->cls_len))
            return DFAIL(d, SH_EUNSUPPORTED, "AMF3 externalizable class not known to the codec");
        v->flags |= AMF_F_EXTERNAL;
        amf_value *inner = NULL;
        TRY(dec3(d, &inner));
        return push_elem(d, c, inner, 1);
    }
    TRY(check_count(d, t.nsealed, 1));
    for (uint32_t i = 0; i < t.nsealed; i++) {
        amf_value *e = NULL;
        TRY(dec3(d, &e));
        uint32_t ki = d->tn[t.names + i];
        const char *k = ki == NOSTR ? "" : st_bytes(d, ki);
        uint32_t kn = ki == NOSTR ? 0 : d->st[ki].len;
        TRY(add_member(d, c, k, kn, e));
    }
    if (t.flags & AMF_F_DYNAMIC) {
        v->flags |= AMF_F_DYNAMIC;
        TRY(dec3_pairs(d, c));
    }
    return 0;
}

static int dec3_object(amf_dec *d, amf_value **out)
{
    uint32_t r = 0;
    int rc = ref3(d, &r, out);
    if (rc <= 0)
        return rc;
    amf_value *v = NULL;
    TRY(cont3_begin(d, AMF_OBJECT, &v));
    return cont_end(d, v, dec3_object_body(d, v, r), out);
}

static int dec3_vector_body(amf_dec *d, amf_value *v, uint32_t n)
{
    amf_cont *c = amf_cont_of(v);
    if (v->type == AMF_VECTOR_OBJECT) {
        uint32_t ti = NOSTR;
        TRY(str3(d, &ti, false));
        if (ti != NOSTR) {
            amf_value *cv = NULL;
            TRY(st_value(d, ti, &cv));
            amf_cont_set_class_value(c, cv);
        }
        TRY(check_count(d, n, 1));
        for (uint32_t i = 0; i < n; i++) {
            amf_value *e = NULL;
            TRY(dec3(d, &e));
            TRY(push_elem(d, c, e, hint_of(n)));
        }
        return 0;
    }
    /* numeric: the bytes are present (checked by the caller), so n is real */
    size_t cost = amf_mem_block_((size_t)n * sizeof *c->nums);
    TRY(mem_check(d, cost));
    if (n && !(c->nums = malloc((size_t)n * sizeof *c->nums)))
        return DFAIL(d, SH_ENOMEM, "out of memory");
    mem_add_val(d, cost);
    c->ncap = n;
    for (uint32_t i = 0; i < n; i++) {
        double x;
        if (v->type == AMF_VECTOR_DOUBLE) {
            x = rd_f64(d);
        } else {
            uint32_t w = rd_u32(d);
            x = v->type == AMF_VECTOR_UINT ? (double)w
                                           : (double)(w >= 0x80000000u ? (int64_t)w - 0x100000000
                                                                       : (int64_t)w);
        }
        c->nums[c->nn++] = x;
    }
    return 0;
}

static int dec3_vector(amf_dec *d, amf_type t, amf_value **out)
{
    uint32_t n = 0;
    int rc = ref3(d, &n, out);
    if (rc <= 0)
        return rc;
    size_t each = t == AMF_VECTOR_DOUBLE ? 8 : t == AMF_VECTOR_OBJECT ? 1 : 4;
    TRY(check_count(d, n, 0));
    NEED(d, 1);
    bool fixed = *d->p++ != 0;
    if (t != AMF_VECTOR_OBJECT)
        TRY(check_count(d, n, each));
    amf_value *v = NULL;
    TRY(cont3_begin(d, t, &v));
    if (fixed)
        v->flags |= AMF_F_FIXED;
    return cont_end(d, v, dec3_vector_body(d, v, n), out);
}

static int dec3_dict_body(amf_dec *d, amf_value *v, uint32_t n)
{
    amf_cont *c = amf_cont_of(v);
    for (uint32_t i = 0; i < n; i++) {
        amf_value *k = NULL, *e = NULL;
        TRY(dec3(d, &k));
        int rc = dec3(d, &e);
        if (rc) {
            amf_unref(k);
            return rc;
        }
        rc = push_elem(d, c, k, hint_of(2 * n));
        if (rc) {
            amf_unref(e); /* push_elem took k only */
            return rc;
        }
        TRY(push_elem(d, c, e, hint_of(2 * n)));
    }
    return 0;
}

static int dec3_dict(amf_dec *d, amf_value **out)
{
    uint32_t n = 0;
    int rc = ref3(d, &n, out);
    if (rc <= 0)
        return rc;
    TRY(check_count(d, n, 0));
    NEED(d, 1);
    bool weak = *d->p++ != 0;
    TRY(check_count(d, n, 2));
    amf_value *v = NULL;
    TRY(cont3_begin(d, AMF_DICTIONARY, &v));
    if (weak)
        v->flags |= AMF_F_WEAK;
    return cont_end(d, v, dec3_dict_body(d, v, n), out);
}

/* A singleton (costs nothing, cannot fail). */
static int shared(amf_value *v, amf_value **out)
{
    *out = v;
    return 0;
}

static int dec3(amf_dec *d, amf_value **out)
{
    NEED(d, 1);
    uint8_t m = *d->p++;
    switch (m) {
    case AMF3_UNDEFINED: return shared(amf_undefined(), out);
    case AMF3_NULL: return shared(amf_null(), out);
    case AMF3_FALSE: return shared(amf_bool(false), out);
    case AMF3_TRUE: return shared(amf_bool(true), out);
    case AMF3_INTEGER: {
        uint32_t u = 0;
        TRY(u29(d, &u));
        int32_t i = (int32_t)u - ((u & 0x10000000u) ? 0x20000000 : 0);
        SCALAR_ROOM(d);
        return new_scalar(d, amf_integer(i), out);
    }
    case AMF3_DOUBLE:
        NEED(d, 8);
        SCALAR_ROOM(d);
        return new_scalar(d, amf_number(rd_f64(d)), out);
    case AMF3_STRING: {
        uint32_t i = NOSTR;
        TRY(str3(d, &i, true));
        if (i == NOSTR)
            return shared(amf_string("", 0), out);
        amf_value *v = NULL;
        TRY(st_value(d, i, &v));
        *out = amf_ref(v); /* a reference: the same value again */
        return 0;
    }
    case AMF3_XML_DOC: return dec3_bytes(d, AMF_XML_DOCUMENT, out);
    case AMF3_XML: return dec3_bytes(d, AMF_XML, out);
    case AMF3_BYTE_ARRAY: return dec3_bytes(d, AMF_BYTE_ARRAY, out);
    case AMF3_DATE: return dec3_date(d, out);
    case AMF3_ARRAY: return dec3_array(d, out);
    case AMF3_OBJECT: return dec3_object(d, out);
    case AMF3_VECTOR_INT: return dec3_vector(d, AMF_VECTOR_INT, out);
    case AMF3_VECTOR_UINT: return dec3_vector(d, AMF_VECTOR_UINT, out);
    case AMF3_VECTOR_DOUBLE: return dec3_vector(d, AMF_VECTOR_DOUBLE, out);
    case AMF3_VECTOR_OBJECT: return dec3_vector(d, AMF_VECTOR_OBJECT, out);
    case AMF3_DICTIONARY: return dec3_dict(d, out);
    default:
        d->p--;
        return DFAIL(d, SH_EPROTO, "unknown AMF3 marker");
    }
}

/* ====================================================================
 * AMF0
 * ==================================================================== */

static int dec0(amf_dec *d, amf_value **out);

static int dec0_str(amf_dec *d, size_t lenbytes, amf_type t, amf_value **out)
{
    NEED(d, lenbytes);
    uint32_t n = lenbytes == 2 ? rd_u16(d) : rd_u32(d);
    TRY(check_len(d, n));
    TRY(new_bytes(d, t, d->p, n, out));
    d->p += n;
    return 0;
}

/* Enters a new AMF0 complex value in the reference table (amf0 spec 2.9). */
static int cont0_begin(amf_dec *d, amf_type t, amf_value **out)
{
    TRY(depth_enter(d));
    if (d->n0 >= d->lim.max_refs)
        return DFAIL(d, SH_ELIMIT, "AMF0 reference table above max_refs");
    TRY(tab_grow(d, (void **)&d->r0, &d->cap0, d->n0 + 1, sizeof *d->r0));
    amf_value *v = NULL;
    TRY(new_cont(d, t, &v));
    d->r0[d->n0++] = amf_ref(v);
    v->flags |= AMF_F_BUSY;
    *out = v;
    return 0;
}

/* object-property* followed by UTF-8-empty object-end-marker (amf0 spec 2.5). */
static int dec0_props(amf_dec *d, amf_cont *c)
{
    for (;;) {
        NEED(d, 2);
        uint16_t kn = sh_get_u16be(d->p);
        if (kn == 0) {
            NEED(d, 3);
            if (d->p[2] == AMF0_OBJECT_END) {
                d->p += 3;
                return 0;
            }
        }
        d->p += 2;
        TRY(check_len(d, kn));
        const char *k = (const char *)d->p;
        d->p += kn;
        amf_value *v = NULL;
        TRY(dec0(d, &v));
        TRY(add_member(d, c, k, kn, v));
    }
}

static int dec0_object(amf_dec *d, bool typed, amf_value **out)
{
    const uint8_t *cls = NULL;
    uint16_t cn = 0;
    if (typed) {
        NEED(d, 2);
        cn = rd_u16(d);
        TRY(check_len(d, cn));
        cls = d->p;
        d->p += cn;
    }
    amf_value *v = NULL;
    TRY(cont0_begin(d, AMF_OBJECT, &v));
    amf_cont *c = amf_cont_of(v);
    int rc = 0;
    if (cn)
        rc = set_class_bytes(d, c, (const char *)cls, cn);
    if (!cn)
        v->flags |= AMF_F_DYNAMIC;
    if (!rc)
        rc = dec0_props(d, c);
    return cont_end(d, v, rc, out);
}

static int dec0_ecma(amf_dec *d, amf_value **out)
{
    NEED(d, 4);
    uint32_t count = rd_u32(d); /* advisory only: never used to allocate */
    amf_value *v = NULL;
    TRY(cont0_begin(d, AMF_ECMA_ARRAY, &v));
    amf_ecma_array_set_count(v, count);
    return cont_end(d, v, dec0_props(d, amf_cont_of(v)), out);
}

static int dec0_strict_body(amf_dec *d, amf_cont *c, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        amf_value *e = NULL;
        TRY(dec0(d, &e));
        TRY(push_elem(d, c, e, hint_of(n)));
    }
    return 0;
}

static int dec0_strict(amf_dec *d, amf_value **out)
{
    NEED(d, 4);
    uint32_t n = rd_u32(d);
    TRY(check_count(d, n, 1));
    amf_value *v = NULL;
    TRY(cont0_begin(d, AMF_STRICT_ARRAY, &v));
    return cont_end(d, v, dec0_strict_body(d, amf_cont_of(v), n), out);
}

static int dec0(amf_dec *d, amf_value **out)
{
    NEED(d, 1);
    uint8_t m = *d->p++;
    switch (m) {
    case AMF0_NUMBER:
        NEED(d, 8);
        SCALAR_ROOM(d);
        return new_scalar(d, amf_number(rd_f64(d)), out);
    case AMF0_BOOLEAN:
        NEED(d, 1);
        return shared(amf_bool(*d->p++ != 0), out);
    case AMF0_STRING: return dec0_str(d, 2, AMF_STRING, out);
    case AMF0_LONG_STRING: return dec0_str(d, 4, AMF_STRING, out);
    case AMF0_XML_DOCUMENT: return dec0_str(d, 4, AMF_XML_DOCUMENT, out);
    case AMF0_OBJECT: return dec0_object(d, false, out);
    case AMF0_TYPED_OBJECT: return dec0_object(d, true, out);
    case AMF0_NULL: return shared(amf_null(), out);
    case AMF0_UNDEFINED: return shared(amf_undefined(), out);
    case AMF0_UNSUPPORTED: return shared(amf_unsupported(), out);
    case AMF0_REFERENCE: {
        NEED(d, 2);
        uint16_t i = rd_u16(d);
        if (i >= d->n0)
            return DFAIL(d, SH_EPROTO, "AMF0 reference out of range");
        if (d->r0[i]->flags & AMF_F_BUSY)
            return DFAIL(d, SH_EUNSUPPORTED, "AMF0 reference to an enclosing value (cycle)");
        *out = amf_ref(d->r0[i]);
        return 0;
    }
    case AMF0_ECMA_ARRAY: return dec0_ecma(d, out);
    case AMF0_STRICT_ARRAY: return dec0_strict(d, out);
    case AMF0_DATE: {
        NEED(d, 10);
        double ms = rd_f64(d);
        int16_t tz = (int16_t)rd_u16(d);
        SCALAR_ROOM(d);
        return new_scalar(d, amf_date(ms, tz), out);
    }
    case AMF0_AVMPLUS: return dec3(d, out);
    case AMF0_MOVIECLIP:
    case AMF0_RECORDSET:
        d->p--;
        return DFAIL(d, SH_EUNSUPPORTED, "reserved AMF0 marker (movieclip or recordset)");
    case AMF0_OBJECT_END:
        d->p--;
        return DFAIL(d, SH_EPROTO, "AMF0 object-end marker outside an object");
    default:
        d->p--;
        return DFAIL(d, SH_EPROTO, "unknown AMF0 marker");
    }
}

/* Drops the values a failed call made for string entries older than it
 * (st_value): they were counted in that call's values, which are gone. */
static void undo_lazy(amf_dec *d, uint32_t nst)
{
    for (uint32_t i = 0; i < nst; i++) {
        if (d->st[i].v && d->st[i].vcall == d->call) {
            amf_unref(d->st[i].v);
            d->st[i].v = NULL;
        }
    }
}

int amf_decode(amf_dec *d, amf_encoding enc, const uint8_t *buf, size_t len,
               size_t *consumed, amf_value **out, sh_error *err)
{
    if (!d || (!buf && len) || !out || (enc != AMF_ENC_AMF0 && enc != AMF_ENC_AMF3))
        return SH_FAIL(err, SH_EINVAL, "bad argument", 0);
    uint32_t n0 = d->n0, nst = d->nst, not = d->not, ntt = d->ntt, ntn = d->ntn;
    size_t sblen = d->sblen, vals = d->vals;
    d->call++;
    d->lazy = false;
    bool clipped = len > d->lim.max_total;
    d->start = d->p = buf ? buf : (const uint8_t *)"";
    d->end = d->p + (clipped ? d->lim.max_total : len);
    d->err = err;
    d->depth = 0;
    amf_value *v = NULL;
    int rc = enc == AMF_ENC_AMF3 ? dec3(d, &v) : dec0(d, &v);
    if (rc) {
        rollback(d, n0, nst, sblen, not, ntt, ntn);
        if (d->lazy)
            undo_lazy(d, nst);
        d->vals = vals;
        room_update(d);
        if (rc == SH_EMORE && clipped)
            rc = DFAIL(d, SH_ELIMIT, "value longer than max_total");
        return rc;
    }
    d->last = d->vals - vals;
    if (consumed)
        *consumed = OFF(d);
    *out = v;
    return 0;
}

int amf_decode1(amf_encoding enc, const uint8_t *buf, size_t len, const amf_limits *limits,
                size_t *consumed, amf_value **out, sh_error *err)
{
    amf_dec *d = amf_dec_new(limits);
    if (!d)
        return SH_FAIL(err, SH_ENOMEM, "out of memory", 0);
    int rc = amf_decode(d, enc, buf, len, consumed, out, err);
    amf_dec_free(d);
    return rc;
}
