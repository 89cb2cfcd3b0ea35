/* bench_so.c - see bench_so.h. */
#include "bench_so.h"

#include <string.h>

#include "amf.h"
#include "sh_err.h"

/* Inline forms of sh_rd's readers (same contract: check the length first,
 * move only on success): this loop runs once per received message, and
 * the calls into base/ cost more than the reads. */
static inline int rd_u8(sh_rd *r, uint8_t *v)
{
    if (sh_rd_left(r) < 1)
        return SH_EMORE;
    *v = *r->p++;
    return 0;
}

static inline int rd_u16(sh_rd *r, uint16_t *v)
{
    if (sh_rd_left(r) < 2)
        return SH_EMORE;
    *v = sh_get_u16be(r->p);
    r->p += 2;
    return 0;
}

static inline int rd_u32(sh_rd *r, uint32_t *v)
{
    if (sh_rd_left(r) < 4)
        return SH_EMORE;
    *v = sh_get_u32be(r->p);
    r->p += 4;
    return 0;
}

static inline int rd_bytes(sh_rd *r, size_t n, const uint8_t **p)
{
    if (sh_rd_left(r) < n)
        return SH_EMORE;
    *p = r->p;
    r->p += n;
    return 0;
}

static inline double get_f64(const uint8_t *p)
{
    uint64_t u = (uint64_t)sh_get_u32be(p) << 32 | sh_get_u32be(p + 4);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* Skips one AMF0 value (which may switch to AMF3) at r, or reads it when
 * it is a plain number. */
static int read_value(sh_rd *r, bench_so_event *ev)
{
    if (sh_rd_left(r) >= 9 && r->p[0] == AMF0_NUMBER) {
        ev->number = get_f64(r->p + 1);
        ev->has_number = true;
        r->p += 9;
        return 0;
    }
    amf_dec *d = amf_dec_new(NULL);
    if (!d)
        return SH_ENOMEM;
    size_t used = 0;
    amf_value *v = NULL;
    int rc = amf_decode(d, AMF_ENC_AMF0, r->p, sh_rd_left(r), &used, &v, NULL);
    amf_dec_free(d);
    if (rc < 0)
        return rc == SH_EMORE ? SH_EPROTO : rc;
    if (v && (amf_type_of(v) == AMF_NUMBER || amf_type_of(v) == AMF_INTEGER)) {
        ev->has_number = true;
        ev->number = amf_as_number(v);
    }
    amf_unref(v);
    r->p += used;
    return 0;
}

static int read_key(sh_rd *r, bench_so_event *ev)
{
    uint16_t kn;
    const uint8_t *k;
    if (rd_u16(r, &kn) < 0 || rd_bytes(r, kn, &k) < 0)
        return SH_EPROTO;
    ev->key = (const char *)k;
    ev->key_len = kn;
    return 0;
}

int bench_so_decode(const uint8_t *body, size_t len, bool amf3,
                    const char **name, size_t *name_len,
                    bench_so_visit_fn visit, void *ud)
{
    sh_rd r;
    sh_rd_init(&r, body, len);
    if (amf3) {
        uint8_t lead;
        if (rd_u8(&r, &lead) < 0)
            return SH_EPROTO;
    }
    uint16_t nn;
    const uint8_t *np;
    uint32_t version, flags, reserved;
    if (rd_u16(&r, &nn) < 0 || rd_bytes(&r, nn, &np) < 0 ||
        rd_u32(&r, &version) < 0 || rd_u32(&r, &flags) < 0 ||
        rd_u32(&r, &reserved) < 0)
        return SH_EPROTO;
    *name = (const char *)np;
    *name_len = nn;
    while (sh_rd_left(&r) > 0) {
        uint8_t type;
        uint32_t elen;
        const uint8_t *eb;
        if (rd_u8(&r, &type) < 0 || rd_u32(&r, &elen) < 0 ||
            rd_bytes(&r, elen, &eb) < 0)
            return SH_EPROTO;
        sh_rd er;
        sh_rd_init(&er, eb, elen);
        bench_so_event ev;
        memset(&ev, 0, sizeof ev);
        ev.type = type;
        switch (type) {
        case BENCH_SO_CHANGE:
            while (sh_rd_left(&er) > 0) {
                memset(&ev, 0, sizeof ev);
                ev.type = type;
                if (read_key(&er, &ev) < 0)
                    return SH_EPROTO;
                int rc = read_value(&er, &ev);
                if (rc < 0)
                    return rc;
                visit(ud, version, &ev);
            }
            break;
        case BENCH_SO_SUCCESS:
        case BENCH_SO_REMOVE:
        case BENCH_SO_STATUS: /* code string then level string */
            if (elen >= 2 && read_key(&er, &ev) < 0)
                return SH_EPROTO;
            visit(ud, version, &ev);
            break;
        default:
            visit(ud, version, &ev);
            break;
        }
    }
    return 0;
}
