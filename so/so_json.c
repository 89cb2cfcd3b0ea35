/* so_json.c - see so_json.h. */
#include "so_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amf_json.h"

/* ---------------------------------------------------------------- names */

typedef struct ev_name {
    uint8_t type;          /* as sent by a client */
    uint8_t server_type;   /* the same word from the server */
    const char *name;
} ev_name;

/* "change" and "remove" mean RequestChange / RequestRemove from a client
 * and Change / Remove from the server: the direction tells them apart. */
static const ev_name names[] = {
    {SO_EV_USE, SO_EV_USE, "use"},
    {SO_EV_RELEASE, SO_EV_RELEASE, "release"},
    {SO_EV_REQUEST_CHANGE, SO_EV_CHANGE, "change"},
    {SO_EV_REQUEST_REMOVE, SO_EV_REMOVE, "remove"},
    {SO_EV_SEND_MESSAGE, SO_EV_SEND_MESSAGE, "send"},
    {SO_EV_SUCCESS, SO_EV_SUCCESS, "success"},
    {SO_EV_STATUS, SO_EV_STATUS, "status"},
    {SO_EV_CLEAR, SO_EV_CLEAR, "clear"},
    {SO_EV_USE_SUCCESS, SO_EV_USE_SUCCESS, "use_success"},
};

static const char *server_event_name(uint8_t type)
{
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].server_type == type)
            return names[i].name;
    return NULL;
}

/* ---------------------------------------------------------------- decode */

/* A value from JSON is held to what an RTMP client could send: its wire
 * form (so_wire_event_value: AMF0, or 0x11 + AMF3, what the engine
 * stores and sends) must decode under the limits, as an RTMP client's
 * value is decoded (so_wire_decode).  Besides treating both clients
 * alike, this keeps the engine able to make the JSON body of every update
 * (so_json_from_amf0 decodes that form under the same limits). */
static int value_fits(const amf_value *v, const so_wire_limits *lim, amf_dec **dec,
                      sh_error *err)
{
    sh_buf b;
    sh_buf_init(&b, lim->max_value);
    int rc = so_wire_event_value(&b, NULL, v);
    if (rc == 0 && !*dec) {
        amf_limits al = lim->amf;
        if (al.max_total == 0 || al.max_total > lim->max_value)
            al.max_total = lim->max_value;
        *dec = amf_dec_new(&al);
        if (!*dec)
            rc = SH_ENOMEM;
    }
    if (rc == SH_ENOMEM) {
        sh_buf_cleanup(&b);
        return SH_FAIL(err, SH_ENOMEM, "json: out of memory", 0);
    }
    if (rc) {
        sh_buf_cleanup(&b);
        return SH_FAIL(err, SH_ELIMIT, "json: value larger than max_value", 0);
    }
    amf_dec_reset(*dec);
    amf_value *back = NULL;
    size_t used = 0;
    sh_error e = {0};
    rc = amf_decode(*dec, AMF_ENC_AMF0, b.data, b.len, &used, &back, &e);
    bool whole = used == b.len;
    amf_unref(back);
    sh_buf_cleanup(&b);
    if (rc == SH_ENOMEM)
        return SH_FAIL(err, SH_ENOMEM, "json: out of memory", 0);
    if (rc < 0 || !whole)
        return SH_FAIL(err, SH_ELIMIT, e.what ? e.what : "json: value past the AMF limits", 0);
    return 0;
}

static int value_under(const cJSON *j, const so_wire_limits *lim, amf_dec **dec,
                       amf_value **out, sh_error *err)
{
    *out = NULL;
    const char *why = NULL;
    int rc = amf_json_to_value(j, out, &why, NULL);
    if (rc == SH_ENOMEM)
        return SH_FAIL(err, SH_ENOMEM, "json: out of memory", 0);
    if (rc != 0)
        return SH_FAIL(err, SH_EPROTO, why ? why : "json: bad value", 0);
    rc = value_fits(*out, lim, dec, err);
    if (rc) {
        amf_unref(*out);
        *out = NULL;
    }
    return rc;
}

int so_json_value(const cJSON *j, const so_wire_limits *limits, amf_value **out, sh_error *err)
{
    amf_dec *dec = NULL;
    int rc = value_under(j, limits ? limits : &so_wire_default_limits, &dec, out, err);
    amf_dec_free(dec);
    return rc;
}

typedef struct jdec {
    const so_wire_limits *lim;
    sh_error *err;
    uint32_t pairs;
    amf_dec *dec;       /* for value_fits, made on first use */
} jdec;

static int fail(jdec *d, int code, const char *why)
{
    return SH_FAIL(d->err, code, why, 0);
}

/* A string member (plain or tagged) as owned, NUL-terminated bytes. */
static int str_of(jdec *d, const cJSON *j, char **out, size_t *len, const char *what)
{
    if (!j)
        return fail(d, SH_EPROTO, what);
    if (cJSON_IsString(j)) {
        size_t n = strlen(j->valuestring);
        *out = malloc(n + 1);
        if (!*out)
            return fail(d, SH_ENOMEM, "json: out of memory");
        memcpy(*out, j->valuestring, n + 1);
        *len = n;
        return 0;
    }
    amf_value *v = NULL;
    const char *why = NULL;
    if (!cJSON_IsObject(j) || amf_json_to_value(j, &v, &why, NULL) != 0 ||
        amf_type_of(v) != AMF_STRING) {
        amf_unref(v);
        return fail(d, SH_EPROTO, what);
    }
    size_t n;
    const char *s = amf_as_string(v, &n);
    *out = malloc(n + 1);
    if (!*out) {
        amf_unref(v);
        return fail(d, SH_ENOMEM, "json: out of memory");
    }
    memcpy(*out, s, n);
    (*out)[n] = '\0';
    *len = n;
    amf_unref(v);
    return 0;
}

static int value_of(jdec *d, const cJSON *j, amf_value **out)
{
    return value_under(j, d->lim, &d->dec, out, d->err);
}

static int dec_slots(jdec *d, const cJSON *slots, so_event *ev)
{
    if (!cJSON_IsArray(slots))
        return fail(d, SH_EPROTO, "json: change needs \"slots\": [[key, value], ...]");
    int n = cJSON_GetArraySize(slots);
    if (n < 1)
        return fail(d, SH_EPROTO, "json: change with no slot");
    if ((uint32_t)n > d->lim->max_pairs || d->pairs > d->lim->max_pairs - (uint32_t)n)
        return fail(d, SH_ELIMIT, "json: too many pairs in one message");
    d->pairs += (uint32_t)n;
    ev->kv = calloc((size_t)n, sizeof(*ev->kv));
    if (!ev->kv)
        return fail(d, SH_ENOMEM, "json: out of memory");
    const cJSON *p;
    cJSON_ArrayForEach(p, slots) {
        if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) != 2)
            return fail(d, SH_EPROTO, "json: a slot is [key, value]");
        so_kv *kv = &ev->kv[ev->nkv];
        int rc = str_of(d, p->child, &kv->key, &kv->key_len, "json: a slot key is a string");
        if (rc == 0) {
            ev->nkv++;
            rc = value_of(d, p->child->next, &kv->value);
        }
        if (rc)
            return rc;
    }
    return 0;
}

static int dec_send(jdec *d, const cJSON *j, so_event *ev)
{
    int rc = str_of(d, cJSON_GetObjectItemCaseSensitive(j, "handler"), &ev->handler,
                    &ev->handler_len, "json: send needs a \"handler\" string");
    if (rc)
        return rc;
    if (ev->handler_len > d->lim->amf.max_string)
        return fail(d, SH_ELIMIT, "json: handler longer than max_amf_string");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(j, "args");
    if (!args)
        return 0;
    if (!cJSON_IsArray(args))
        return fail(d, SH_EPROTO, "json: \"args\" is an array");
    int n = cJSON_GetArraySize(args);
    if ((uint32_t)n > d->lim->max_args)
        return fail(d, SH_ELIMIT, "json: too many send arguments");
    if (n == 0)
        return 0;
    ev->args = calloc((size_t)n, sizeof(*ev->args));
    if (!ev->args)
        return fail(d, SH_ENOMEM, "json: out of memory");
    const cJSON *a;
    cJSON_ArrayForEach(a, args) {
        rc = value_of(d, a, &ev->args[ev->nargs]);
        if (rc)
            return rc;
        ev->nargs++;
    }
    return 0;
}

static int dec_event(jdec *d, const cJSON *j, so_event *ev)
{
    if (!cJSON_IsObject(j))
        return fail(d, SH_EPROTO, "json: an event is an object");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "t");
    if (!cJSON_IsString(t))
        return fail(d, SH_EPROTO, "json: an event needs \"t\"");
    ev->type = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(t->valuestring, names[i].name) == 0)
            ev->type = names[i].type;
    switch (ev->type) {
    case SO_EV_REQUEST_CHANGE:
        return dec_slots(d, cJSON_GetObjectItemCaseSensitive(j, "slots"), ev);
    case SO_EV_REQUEST_REMOVE: {
        if (d->pairs >= d->lim->max_pairs)
            return fail(d, SH_ELIMIT, "json: too many pairs in one message");
        d->pairs++;
        ev->kv = calloc(1, sizeof(*ev->kv));
        if (!ev->kv)
            return fail(d, SH_ENOMEM, "json: out of memory");
        int rc = str_of(d, cJSON_GetObjectItemCaseSensitive(j, "key"), &ev->kv->key,
                        &ev->kv->key_len, "json: remove needs a \"key\" string");
        if (rc == 0)
            ev->nkv = 1;
        return rc;
    }
    case SO_EV_SEND_MESSAGE:
        return dec_send(d, j, ev);
    default:
        return 0; /* use, release, server events, unknown: nothing to read */
    }
}

int so_json_decode(const cJSON *j, const so_wire_limits *limits, so_msg *m, sh_error *err)
{
    jdec d = {.lim = limits ? limits : &so_wire_default_limits, .err = err};
    int rc = 0;
    if (!cJSON_IsObject(j))
        return fail(&d, SH_EPROTO, "json: a message is an object");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(j, "version");
    const cJSON *pers = cJSON_GetObjectItemCaseSensitive(j, "persistent");
    const cJSON *evs = cJSON_GetObjectItemCaseSensitive(j, "events");
    if (ver && (!cJSON_IsNumber(ver) || !(ver->valuedouble >= 0) ||
                ver->valuedouble > 4294967295.0 || ver->valuedouble != floor(ver->valuedouble)))
        return fail(&d, SH_EPROTO, "json: \"version\" is a whole number 0..4294967295");
    if (pers && !cJSON_IsBool(pers))
        return fail(&d, SH_EPROTO, "json: \"persistent\" is true or false");
    if (!cJSON_IsArray(evs))
        return fail(&d, SH_EPROTO, "json: \"events\" is an array");
    int n = cJSON_GetArraySize(evs);
    if ((uint32_t)n > d.lim->max_events)
        return fail(&d, SH_ELIMIT, "json: too many events in one message");
    rc = str_of(&d, cJSON_GetObjectItemCaseSensitive(j, "name"), &m->name, &m->name_len,
                "json: \"name\" is a string");
    if (rc)
        goto out;
    if (m->name_len > 0xFFFF) {
        rc = fail(&d, SH_EPROTO, "json: name longer than 65535 bytes");
        goto out;
    }
    m->version = ver ? (uint32_t)ver->valuedouble : 0;
    m->persistent = pers && cJSON_IsTrue(pers);
    m->flags = m->persistent ? SO_FLAG_PERSISTENT : 0;
    if (n > 0) {
        m->events = calloc((size_t)n, sizeof(*m->events));
        if (!m->events) {
            rc = fail(&d, SH_ENOMEM, "json: out of memory");
            goto out;
        }
        m->cap_events = (size_t)n;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, evs) {
        so_event *ev = &m->events[m->nevents++];
        rc = dec_event(&d, e, ev);
        if (rc)
            goto out;
        for (size_t k = 0; k < ev->nkv; k++)
            if (ev->kv[k].key_len > 0xFFFF) {
                rc = fail(&d, SH_EPROTO, "json: key longer than 65535 bytes");
                goto out;
            }
    }
out:
    amf_dec_free(d.dec);
    if (rc)
        so_msg_cleanup(m);
    return rc;
}

/* ---------------------------------------------------------------- encode */

static cJSON *str_json(const char *s, size_t n)
{
    amf_value *v = amf_string(s, n);
    cJSON *j = v ? amf_json_from_value(v) : NULL;
    amf_unref(v);
    return j;
}

/* Adds item to array or object o (under key k when o is an object);
 * false when item is NULL (it was not made). */
static bool put(cJSON *o, const char *k, cJSON *item)
{
    if (!item)
        return false;
    if (k)
        cJSON_AddItemToObject(o, k, item);
    else
        cJSON_AddItemToArray(o, item);
    return true;
}

static bool enc_event(cJSON *arr, const so_event *ev)
{
    const char *name = server_event_name(ev->type);
    if (!name)
        return true; /* nothing a JSON client could read: left out */
    cJSON *o = cJSON_CreateObject();
    if (!put(arr, NULL, o) || !put(o, "t", cJSON_CreateString(name)))
        return false;
    switch (ev->type) {
    case SO_EV_CHANGE:
    case SO_EV_REQUEST_CHANGE: {
        cJSON *slots = cJSON_CreateArray();
        if (!put(o, "slots", slots))
            return false;
        for (size_t i = 0; i < ev->nkv; i++) {
            cJSON *pair = cJSON_CreateArray();
            if (!put(slots, NULL, pair) ||
                !put(pair, NULL, str_json(ev->kv[i].key, ev->kv[i].key_len)) ||
                !put(pair, NULL, ev->kv[i].value ? amf_json_from_value(ev->kv[i].value)
                                                 : cJSON_CreateNull()))
                return false;
        }
        return true;
    }
    case SO_EV_SUCCESS:
    case SO_EV_REMOVE:
    case SO_EV_REQUEST_REMOVE:
        return ev->nkv == 1 && put(o, "key", str_json(ev->kv[0].key, ev->kv[0].key_len));
    case SO_EV_STATUS:
        return put(o, "code", cJSON_CreateString(ev->code ? ev->code : "")) &&
               put(o, "level", cJSON_CreateString(ev->level ? ev->level : ""));
    case SO_EV_SEND_MESSAGE: {
        cJSON *args = cJSON_CreateArray();
        if (!put(o, "handler", str_json(ev->handler ? ev->handler : "", ev->handler_len)) ||
            !put(o, "args", args))
            return false;
        for (size_t i = 0; i < ev->nargs; i++)
            if (!put(args, NULL, amf_json_from_value(ev->args[i])))
                return false;
        return true;
    }
    default:
        return true;
    }
}

int so_json_encode(const so_msg *m, sh_buf *out)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *evs = cJSON_CreateArray();
    bool ok = o && put(o, "op", cJSON_CreateString("so")) &&
              put(o, "name", str_json(m->name ? m->name : "", m->name_len)) &&
              put(o, "version", cJSON_CreateNumber(m->version)) &&
              put(o, "persistent", cJSON_CreateBool(m->persistent)) && put(o, "events", evs);
    if (!o || !evs)
        cJSON_Delete(evs);
    for (size_t i = 0; ok && i < m->nevents; i++)
        ok = enc_event(evs, &m->events[i]);
    char *text = ok ? amf_json_print_tree(o) : NULL;
    cJSON_Delete(o);
    if (!text) {
        out->failed = true;
        return SH_ENOMEM;
    }
    int rc = sh_buf_append(out, text, strlen(text));
    free(text);
    return rc;
}

sh_rcbuf *so_json_from_amf0(const uint8_t *amf0, size_t len, const so_wire_limits *limits)
{
    so_msg m;
    so_msg_init(&m);
    if (so_wire_decode(SO_MSG_AMF0, amf0, len, limits, &m, NULL) != 0)
        return NULL;
    sh_buf out;
    sh_buf_init(&out, SH_BUF_MAX_DEFAULT);
    sh_rcbuf *b = NULL;
    if (so_json_encode(&m, &out) == 0)
        b = sh_rcbuf_copy(out.data, out.len);
    sh_buf_cleanup(&out);
    so_msg_cleanup(&m);
    return b;
}
