/* api.c - see api.h; the HTTP API itself is documented in docs/api.md and
 * openapi/sohub-api.yaml. */
#include "api.h"

#include <cjson/cJSON.h>
#include <http_parser.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "amf_json.h"
#include "app_internal.h"
#include "chat.h"
#include "http.h"
#include "metrics.h"
#include "sh_err.h"
#include "sh_log.h"
#include "sh_map.h"
#include "so_glue.h"

#define IDEM_MAX 10000                       /* answers remembered */
#define IDEM_TTL_MS (24ull * 3600 * 1000)    /* for this long */
#define IDEM_KEY_MAX 128
#define PAGE_DEFAULT 100
#define PAGE_MAX 1000
#define LOCK_TTL_MAX_MS 60000

typedef struct api_key {
    uint8_t digest[SHA256_DIGEST_LENGTH];
    const app_api_key *cfg;
} api_key;

/* One remembered answer of an Idempotency-Key. */
typedef struct idem {
    struct idem *next;           /* FIFO, oldest first */
    char *key;                   /* "KEYNAME\nIDEMKEY" (owned; the map's key) */
    uint64_t t_ms;
    bool pending;                /* the first request is still waiting */
    int status;
    char *body;                  /* owned */
} idem;

/* An API lock with its time-out. */
typedef struct api_lock {
    struct api_lock *next;
    so_object *o;                /* held open */
    uint64_t deadline;
} api_lock;

typedef struct api {
    app_server *srv;
    api_key *keys;
    size_t nkeys;
    sh_map idem;                 /* key -> idem */
    idem *idem_head, **idem_tail;
    size_t nidem;
    api_lock *locks;
    uv_timer_t lock_timer;
    bool timer_on;
    struct api_open *opens;      /* requests waiting for their room's load */
} api;

/* ---- small helpers ---- */

static uint64_t now_ms(const api *a) { return uv_now(app_server_loop(a->srv)); }

static int send_json(app_conn *c, const app_http_req *r, int status, cJSON *j)
{
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!text)
        return app_http_error(c, r, 500, "internal", "out of memory");
    size_t n = strlen(text);
    text[n] = '\n'; /* overwrites the NUL: sent with its length */
    int rc = app_http_respond(c, r, status, "application/json", NULL, text, n + 1);
    free(text);
    return rc;
}

static bool err(app_conn *c, const app_http_req *r, int status, const char *code,
                const char *msg)
{
    app_http_error(c, r, status, code, msg);
    return true;
}

/* Next '/'-separated segment of *p into out (NUL-terminated); false when
 * there is none. */
static bool seg(const char **p, char *out, size_t outsz)
{
    const char *s = *p;
    while (*s == '/')
        s++;
    if (!*s)
        return false;
    const char *e = strchr(s, '/');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n >= outsz)
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    *p = s + n;
    return true;
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > APP_NAME_MAX || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.'))
            return false;
    }
    return true;
}

/* Value of key= in the query (raw), into out; false when absent. */
static bool qget(const app_http_req *r, const char *key, char *out, size_t outsz)
{
    size_t kl = strlen(key);
    for (const char *q = r->query; q && *q;) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > kl && strncmp(q, key, kl) == 0 && q[kl] == '=') {
            size_t vl = len - kl - 1;
            if (vl >= outsz)
                vl = outsz - 1;
            memcpy(out, q + kl + 1, vl);
            out[vl] = '\0';
            return true;
        }
        q = amp ? amp + 1 : NULL;
    }
    return false;
}

static size_t qlimit(const app_http_req *r)
{
    char v[32];
    if (!qget(r, "limit", v, sizeof(v)))
        return PAGE_DEFAULT;
    long n = atol(v);
    return n < 1 ? 1 : n > PAGE_MAX ? PAGE_MAX : (size_t)n;
}

static bool qbool(const app_http_req *r, const char *key, bool def)
{
    char v[16];
    if (!qget(r, key, v, sizeof(v)))
        return def;
    return strcmp(v, "true") == 0 || strcmp(v, "1") == 0;
}

static cJSON *error_json(const char *code, const char *msg);

/* The request body as a JSON object; NULL with *status and *error (the
 * answer to give) when there is none or it is not one.  The values it
 * may hold are counted before it is parsed. */
static cJSON *body_json(app_conn *c, const app_http_req *r, int *status, cJSON **error)
{
    const app_config *cfg = app_server_config(c->srv);
    *status = 400;
    if (r->body_len == 0) {
        *error = error_json("bad_request", "a JSON body is required");
        return NULL;
    }
    if (amf_json_node_bound((const char *)r->body, r->body_len) > cfg->max_amf_elements) {
        *status = 413;
        *error = error_json("too_large", "the body has more JSON values than max_amf_elements");
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength((const char *)r->body, r->body_len);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        *error = error_json("bad_json", "the body is not a JSON object");
        return NULL;
    }
    return j;
}

static cJSON *slots_json(const so_object *o)
{
    cJSON *slots = cJSON_CreateObject();
    size_t it = 0;
    const char *k;
    size_t kl;
    amf_value *v;
    while (slots && so_object_slot_next(o, &it, &k, &kl, &v)) {
        char key[512];
        if (kl >= sizeof(key) || memchr(k, 0, kl))
            continue; /* not representable as a JSON member name: left out */
        memcpy(key, k, kl);
        key[kl] = '\0';
        cJSON *jv = amf_json_from_value(v);
        if (jv)
            cJSON_AddItemToObject(slots, key, jv);
    }
    return slots;
}

/* ---- authentication ---- */

/* The key the request presents, NULL when none matches.  Every key is
 * compared, in constant time, as SHA-256 digests (equal length). */
static const api_key *authenticate(const api *a, const app_http_req *r)
{
    const char *v = app_http_header(r, "X-Api-Key");
    const char *auth = app_http_header(r, "Authorization");
    if (!v && auth && strncasecmp(auth, "Bearer ", 7) == 0)
        v = auth + 7;
    if (!v)
        return NULL;
    uint8_t d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)v, strlen(v), d);
    const api_key *found = NULL;
    for (size_t i = 0; i < a->nkeys; i++)
        if (CRYPTO_memcmp(d, a->keys[i].digest, sizeof(d)) == 0)
            found = &a->keys[i];
    return found;
}

/* ---- idempotency ---- */

static void idem_free(idem *e)
{
    free(e->key);
    free(e->body);
    free(e);
}

static void idem_expire(api *a)
{
    uint64_t now = now_ms(a);
    while (a->idem_head && !a->idem_head->pending &&
           (a->nidem > IDEM_MAX || now - a->idem_head->t_ms > IDEM_TTL_MS)) {
        idem *e = a->idem_head;
        a->idem_head = e->next;
        if (!a->idem_head)
            a->idem_tail = &a->idem_head;
        sh_map_del(&a->idem, e->key, strlen(e->key));
        a->nidem--;
        idem_free(e);
    }
}

/* Answers a repeated Idempotency-Key (true), or registers a new one in
 * *out (false, *out NULL when the request has none). */
static bool idem_check(api *a, app_conn *c, const app_http_req *r, const api_key *k, idem **out)
{
    *out = NULL;
    const char *ik = app_http_header(r, "Idempotency-Key");
    if (!ik)
        return false;
    if (!*ik || strlen(ik) > IDEM_KEY_MAX)
        return err(c, r, 400, "bad_request", "Idempotency-Key: 1 to 128 characters");
    idem_expire(a);
    char key[APP_NAME_MAX + IDEM_KEY_MAX + 4];
    snprintf(key, sizeof(key), "%s\n%s", k->cfg->name, ik);
    idem *e = sh_map_get(&a->idem, key, strlen(key));
    if (e) {
        if (e->pending)
            return err(c, r, 409, "in_progress",
                       "a request with this Idempotency-Key is still being applied");
        app_http_respond(c, r, e->status, "application/json", "Idempotent-Replayed: true\r\n",
                         e->body, strlen(e->body));
        return true;
    }
    e = calloc(1, sizeof(*e));
    if (!e || !(e->key = strdup(key)) || sh_map_put(&a->idem, e->key, strlen(e->key), e)) {
        if (e)
            free(e->key);
        free(e);
        return err(c, r, 500, "internal", "out of memory");
    }
    e->pending = true;
    e->t_ms = now_ms(a);
    *a->idem_tail = e;
    a->idem_tail = &e->next;
    a->nidem++;
    *out = e;
    return false;
}

static void idem_done(idem *e, int status, const char *body)
{
    if (!e)
        return;
    e->pending = false;
    e->status = status;
    e->body = strdup(body ? body : "");
}

/* Sends the JSON answer of a write and remembers it for its key. */
static void answer(api *a, app_conn *c, const app_http_req *r, const app_http_later *later,
                   idem *e, int status, cJSON *j)
{
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!text)
        text = strdup("{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}");
    idem_done(e, status, text);
    size_t n = text ? strlen(text) : 0;
    if (text)
        text[n++] = '\n'; /* overwrites the NUL: sent with its length */
    if (later)
        app_http_respond_later(a->srv, later, status, "application/json", NULL, text, n);
    else
        app_http_respond(c, r, status, "application/json", NULL, text, n);
    free(text);
}

static cJSON *error_json(const char *code, const char *msg)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(j, "error");
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    return j;
}

/* ---- shared objects ---- */

static so_engine *engine_of(app_server *s)
{
    return app_so_engine(app_so_glue_of(s));
}

/* ---- objects whose room may have to be loaded first ----
 * A request that needs an object runs the rest of its work in an
 * api_obj_fn with the open object (or NULL and the error): at once when
 * the room is in memory (c and r set, later NULL), else once the room is
 * loaded (so_engine_object_open_async), the request deferred meanwhile
 * (c and r NULL, later set).  arg is the request's parsed input, freed by
 * the function (or by arg_free when the wait is cancelled at shutdown). */
typedef void (*api_obj_fn)(api *a, app_conn *c, const app_http_req *r,
                           const app_http_later *later, idem *ie, so_object *o, int rc,
                           void *arg);

typedef struct api_open {
    struct api_open *next;
    api *a;
    app_http_later later;
    idem *ie;
    api_obj_fn fn;
    void *arg;
    void (*arg_free)(void *arg);
} api_open;

static void on_api_open(void *ud, so_object *o, int err)
{
    api_open *w = ud;
    for (api_open **pp = &w->a->opens; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    w->fn(w->a, NULL, NULL, &w->later, w->ie, o, err, w->arg);
    free(w);
}

static bool with_object(api *a, app_conn *c, const app_http_req *r, idem *ie, const char *room,
                        const char *name, bool persistent, api_obj_fn fn, void *arg,
                        void (*arg_free)(void *arg))
{
    so_engine *e = engine_of(c->srv);
    int rc = 0;
    so_object *o = so_engine_object_open(e, room, name, persistent, &rc);
    api_open *w = !o && rc == SH_ESTATE ? calloc(1, sizeof(*w)) : NULL;
    if (!w) {
        fn(a, c, r, NULL, ie, o, o || rc != SH_ESTATE ? rc : SH_ENOMEM, arg);
        return true;
    }
    *w = (api_open){.a = a, .ie = ie, .fn = fn, .arg = arg, .arg_free = arg_free};
    app_http_defer(c, r, &w->later);
    w->next = a->opens;
    a->opens = w;
    rc = so_engine_object_open_async(e, room, name, persistent, on_api_open, w);
    if (rc < 0)
        on_api_open(w, NULL, rc);
    return true;
}

static cJSON *open_error(int rc)
{
    return error_json(rc == SH_EEXIST ? "bad_persistence" : "bad_request",
                      rc == SH_EEXIST ? "the object exists with the other persistence"
                                      : "cannot open the object");
}

static void object_got(api *a, app_conn *c, const app_http_req *r, const app_http_later *later,
                       idem *ie, so_object *o, int rc, void *arg)
{
    char *name = arg;
    if (!o) {
        answer(a, c, r, later, ie, rc == SH_EEXIST ? 409 : 400, open_error(rc));
        free(name);
        return;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", name);
    cJSON_AddBoolToObject(j, "persistent", so_object_persistent(o));
    cJSON_AddNumberToObject(j, "version", so_object_version(o));
    cJSON_AddNumberToObject(j, "subscribers", (double)so_object_subscriber_count(o));
    cJSON_AddItemToObject(j, "slots", slots_json(o));
    so_engine_object_close(engine_of(a->srv), o);
    answer(a, c, r, later, ie, 200, j);
    free(name);
}

static bool object_get(app_conn *c, const app_http_req *r, const char *room, const char *name)
{
    so_engine *e = engine_of(c->srv);
    if (!e)
        return err(c, r, 503, "unavailable", "shared objects are not enabled");
    bool persistent = qbool(r, "persistent", true);
    char *arg = strdup(name);
    if (!arg)
        return err(c, r, 500, "internal", "out of memory");
    return with_object(app_server_ext(c->srv, APP_EXT_API), c, r, NULL, room, name, persistent,
                       object_got, arg, free);
}

typedef struct write_wait {
    api *a;
    app_http_later later;
    idem *e;
    uint32_t version;
} write_wait;

static void on_write_durable(void *ud, int status)
{
    write_wait *w = ud;
    cJSON *j;
    int st = 200;
    if (status == 0) {
        j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "version", w->version);
    } else {
        st = 503;
        j = error_json("store_failed", "the change is applied in memory but was not stored");
    }
    answer(w->a, NULL, NULL, &w->later, w->e, st, j);
    free(w);
}

/* The parsed body of an object write. */
typedef struct post_arg {
    cJSON *j;
    bool persistent;
} post_arg;

static void post_arg_free(void *p)
{
    post_arg *x = p;
    cJSON_Delete(x->j);
    free(x);
}

/* {"persistent":B, "set":{k:v...}, "remove":[k...], "expect_version":N},
 * once the object is open (or could not be). */
static void object_post(api *a, app_conn *c, const app_http_req *r, const app_http_later *later,
                        idem *ie, so_object *o, int rc, void *arg)
{
    post_arg *x = arg;
    cJSON *j = x->j;
    bool persistent = x->persistent;
    free(x);
    app_so_glue *g = app_so_glue_of(a->srv);
    so_engine *e = app_so_engine(g);
    const cJSON *set = cJSON_GetObjectItemCaseSensitive(j, "set");
    const cJSON *rem = cJSON_GetObjectItemCaseSensitive(j, "remove");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(j, "expect_version");
    const char *bad = NULL;
    if (!o) {
        cJSON_Delete(j);
        answer(a, c, r, later, ie, rc == SH_EEXIST ? 409 : 400, open_error(rc));
        return;
    }
    if (exp && so_object_version(o) != (uint32_t)exp->valuedouble) {
        cJSON *out = error_json("conflict", "the object is at another version");
        cJSON_AddNumberToObject(out, "version", so_object_version(o));
        cJSON_AddItemToObject(out, "slots", slots_json(o));
        so_engine_object_close(e, o);
        cJSON_Delete(j);
        answer(a, c, r, later, ie, 409, out);
        return;
    }
    so_effects fx;
    so_effects_init(&fx);
    so_object_lock(e, o);
    const cJSON *it;
    rc = 0;
    cJSON_ArrayForEach(it, set) {
        amf_value *v = NULL;
        const char *why = NULL;
        if (amf_json_to_value(it, &v, &why, NULL) != 0) {
            bad = why ? why : "a value the AMF mapping refuses";
            break;
        }
        rc = so_object_set(e, o, it->string, strlen(it->string), v, &fx);
        amf_unref(v);
        if (rc < 0)
            break;
    }
    cJSON_ArrayForEach(it, rem) {
        if (bad || rc < 0)
            break;
        if (!cJSON_IsString(it)) {
            bad = "\"remove\" holds strings";
            break;
        }
        rc = so_object_remove(e, o, it->valuestring, strlen(it->valuestring), &fx);
    }
    int urc = so_object_unlock(e, o, &fx);
    if (rc == 0)
        rc = urc;
    app_so_deliver(g, &fx);
    so_effects_cleanup(&fx);
    uint32_t version = so_object_version(o);
    so_engine_object_close(e, o);
    cJSON_Delete(j);
    if (bad) {
        answer(a, c, r, later, ie, 400, error_json("bad_value", bad));
        return;
    }
    if (rc == SH_ELIMIT) {
        answer(a, c, r, later, ie, 422,
               error_json("limit", "a limit of the object refused the change (value bytes, "
                                   "slots, object bytes or a persistent quota)"));
        return;
    }
    if (rc < 0) {
        answer(a, c, r, later, ie, 500, error_json("internal", sh_strerror(rc)));
        return;
    }
    if (!persistent) {
        cJSON *out = cJSON_CreateObject();
        cJSON_AddNumberToObject(out, "version", version);
        answer(a, c, r, later, ie, 200, out);
        return;
    }
    /* answered once stored, like a client's Success */
    write_wait *w = calloc(1, sizeof(*w));
    if (!w || app_so_when_durable(g, on_write_durable, w) != 0) {
        free(w);
        answer(a, c, r, later, ie, 500, error_json("internal", "out of memory"));
        return;
    }
    w->a = a;
    w->e = ie;
    w->version = version;
    if (later)
        w->later = *later;
    else
        app_http_defer(c, r, &w->later);
}

/* The body of an object write is checked, then the object opened. */
static bool object_post_begin(api *a, app_conn *c, const app_http_req *r, idem *ie,
                              const char *room, const char *name)
{
    app_so_glue *g = app_so_glue_of(c->srv);
    so_engine *e = app_so_engine(g);
    if (!e) {
        answer(a, c, r, NULL, ie, 503, error_json("unavailable", "shared objects are not enabled"));
        return true;
    }
    int bst;
    cJSON *berr = NULL;
    cJSON *j = body_json(c, r, &bst, &berr);
    if (!j) {
        answer(a, c, r, NULL, ie, bst, berr);
        return true;
    }
    const cJSON *pers = cJSON_GetObjectItemCaseSensitive(j, "persistent");
    const cJSON *set = cJSON_GetObjectItemCaseSensitive(j, "set");
    const cJSON *rem = cJSON_GetObjectItemCaseSensitive(j, "remove");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(j, "expect_version");
    const char *bad = NULL;
    if (pers && !cJSON_IsBool(pers))
        bad = "\"persistent\" is true or false";
    else if (set && !cJSON_IsObject(set))
        bad = "\"set\" is an object of slot values";
    else if (rem && !cJSON_IsArray(rem))
        bad = "\"remove\" is an array of keys";
    else if (exp && (!cJSON_IsNumber(exp) || exp->valuedouble < 0 ||
                     exp->valuedouble != floor(exp->valuedouble)))
        bad = "\"expect_version\" is a version number";
    else if (!set && !rem)
        bad = "nothing to do: give \"set\" and/or \"remove\"";
    if (bad) {
        cJSON_Delete(j);
        answer(a, c, r, NULL, ie, 400, error_json("bad_request", bad));
        return true;
    }
    post_arg *x = malloc(sizeof(*x));
    if (!x) {
        cJSON_Delete(j);
        answer(a, c, r, NULL, ie, 500, error_json("internal", "out of memory"));
        return true;
    }
    *x = (post_arg){.j = j, .persistent = !pers || cJSON_IsTrue(pers)};
    return with_object(a, c, r, ie, room, name, x->persistent, object_post, x, post_arg_free);
}

/* The parsed body of a SendMessage. */
typedef struct msg_arg {
    cJSON *j;
    amf_value *av[RTMP_MAX_CMD_ARGS];
    size_t na;
} msg_arg;

static void msg_arg_free(void *p)
{
    msg_arg *x = p;
    for (size_t i = 0; i < x->na; i++)
        amf_unref(x->av[i]);
    cJSON_Delete(x->j);
    free(x);
}

static void message_sent(api *a, app_conn *c, const app_http_req *r, const app_http_later *later,
                         idem *ie, so_object *o, int rc, void *arg)
{
    msg_arg *x = arg;
    app_so_glue *g = app_so_glue_of(a->srv);
    so_engine *e = app_so_engine(g);
    if (o) {
        const char *h = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x->j, "handler"));
        so_effects fx;
        so_effects_init(&fx);
        rc = so_object_send(e, o, h, x->na, x->av, &fx);
        app_so_deliver(g, &fx);
        so_effects_cleanup(&fx);
        so_engine_object_close(e, o);
    }
    msg_arg_free(x);
    if (!o || rc < 0) {
        answer(a, c, r, later, ie, 400, error_json("bad_request", "cannot send to that object"));
        return;
    }
    answer(a, c, r, later, ie, 200, cJSON_CreateObject());
}

/* {"object":N, "persistent":B, "handler":H, "args":[...]} */
static bool message_post(api *a, app_conn *c, const app_http_req *r, idem *ie, const char *room)
{
    app_so_glue *g = app_so_glue_of(c->srv);
    so_engine *e = app_so_engine(g);
    int bst = 503;
    cJSON *berr = NULL;
    cJSON *j = e ? body_json(c, r, &bst, &berr) : NULL;
    if (!j) {
        answer(a, c, r, NULL, ie, bst,
               berr ? berr : error_json("unavailable", "shared objects are not enabled"));
        return true;
    }
    const char *obj = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "object"));
    const char *h = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "handler"));
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(j, "args");
    const cJSON *pers = cJSON_GetObjectItemCaseSensitive(j, "persistent");
    int n = args ? cJSON_GetArraySize(args) : 0;
    if (!obj || !h || (args && !cJSON_IsArray(args)) || n > RTMP_MAX_CMD_ARGS) {
        cJSON_Delete(j);
        answer(a, c, r, NULL, ie, 400,
               error_json("bad_request", "give \"object\", \"handler\" and an \"args\" array"));
        return true;
    }
    msg_arg *x = calloc(1, sizeof(*x));
    if (!x) {
        cJSON_Delete(j);
        answer(a, c, r, NULL, ie, 500, error_json("internal", "out of memory"));
        return true;
    }
    x->j = j;
    const cJSON *it;
    cJSON_ArrayForEach(it, args) {
        if (amf_json_to_value(it, &x->av[x->na], NULL, NULL) != 0) {
            msg_arg_free(x);
            answer(a, c, r, NULL, ie, 400,
                   error_json("bad_request", "an argument the AMF mapping refuses"));
            return true;
        }
        x->na++;
    }
    return with_object(a, c, r, ie, room, obj, !pers || cJSON_IsTrue(pers), message_sent, x,
                       msg_arg_free);
}

static void lock_release(api *a, api_lock *l)
{
    so_engine *e = engine_of(a->srv);
    so_effects fx;
    so_effects_init(&fx);
    so_object_unlock(e, l->o, &fx);
    app_so_deliver(app_so_glue_of(a->srv), &fx);
    so_effects_cleanup(&fx);
    so_engine_object_close(e, l->o);
    free(l);
}

static void on_lock_timer(uv_timer_t *t)
{
    api *a = t->data;
    uint64_t now = now_ms(a);
    for (api_lock **pp = &a->locks; *pp;) {
        api_lock *l = *pp;
        if (now >= l->deadline) {
            *pp = l->next;
            SH_LOG(SH_LOG_WARN, "api: lock of %s timed out: released", so_object_name(l->o));
            lock_release(a, l);
        } else {
            pp = &l->next;
        }
    }
    if (!a->locks) {
        uv_timer_stop(t);
        a->timer_on = false;
    }
}

/* The object of a lock request is open: locked for ttl (*arg) ms unless
 * an API lock holds it already (another request may have taken it while
 * this one waited for the room). */
static void lock_taken(api *a, app_conn *c, const app_http_req *r, const app_http_later *later,
                       idem *ie, so_object *o, int rc, void *arg)
{
    (void)rc;
    double t = *(double *)arg;
    free(arg);
    so_engine *e = engine_of(a->srv);
    api_lock *l = NULL;
    for (l = a->locks; o && l && l->o != o;)
        l = l->next;
    if (o && l) {
        so_engine_object_close(e, o);
        answer(a, c, r, later, ie, 409,
               error_json("locked", "the object is locked through the API already"));
        return;
    }
    l = o ? calloc(1, sizeof(*l)) : NULL;
    if (!l) {
        if (o)
            so_engine_object_close(e, o);
        answer(a, c, r, later, ie, 400, error_json("bad_request", "cannot open the object"));
        return;
    }
    so_object_lock(e, o);
    l->o = o;
    l->deadline = now_ms(a) + (uint64_t)t;
    l->next = a->locks;
    a->locks = l;
    if (!a->timer_on) {
        uv_timer_start(&a->lock_timer, on_lock_timer, 100, 100);
        a->timer_on = true;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "ttl_ms", t);
    answer(a, c, r, later, ie, 200, out);
}

/* {"object":N, "persistent":B, "lock":true|false, "ttl_ms":T} */
static bool lock_post(api *a, app_conn *c, const app_http_req *r, idem *ie, const char *room)
{
    so_engine *e = engine_of(c->srv);
    int bst = 503;
    cJSON *berr = NULL;
    cJSON *j = e ? body_json(c, r, &bst, &berr) : NULL;
    if (!j) {
        answer(a, c, r, NULL, ie, bst,
               berr ? berr : error_json("unavailable", "shared objects are not enabled"));
        return true;
    }
    const char *obj = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "object"));
    const cJSON *lk = cJSON_GetObjectItemCaseSensitive(j, "lock");
    const cJSON *pers = cJSON_GetObjectItemCaseSensitive(j, "persistent");
    const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(j, "ttl_ms");
    bool persistent = !pers || cJSON_IsTrue(pers);
    if (!obj || !cJSON_IsBool(lk)) {
        cJSON_Delete(j);
        answer(a, c, r, NULL, ie, 400, error_json("bad_request", "give \"object\" and \"lock\""));
        return true;
    }
    so_object *held = so_engine_object_find(e, room, obj);
    api_lock **pp = &a->locks;
    while (*pp && (!held || (*pp)->o != held))
        pp = &(*pp)->next;
    int st = 200;
    cJSON *out = NULL;
    if (cJSON_IsTrue(lk)) {
        if (*pp) {
            st = 409;
            out = error_json("locked", "the object is locked through the API already");
        } else {
            double *t = malloc(sizeof(*t));
            if (t) {
                *t = cJSON_IsNumber(ttl) ? ttl->valuedouble : 10000;
                if (!(*t >= 1))
                    *t = 1;
                if (*t > LOCK_TTL_MAX_MS)
                    *t = LOCK_TTL_MAX_MS;
                with_object(a, c, r, ie, room, obj, persistent, lock_taken, t, free);
                cJSON_Delete(j);
                return true;
            }
            st = 500;
            out = error_json("internal", "out of memory");
        }
    } else {
        if (!*pp) {
            st = 409;
            out = error_json("not_locked", "the object is not locked through the API");
        } else {
            api_lock *l = *pp;
            *pp = l->next;
            lock_release(a, l);
            out = cJSON_CreateObject();
        }
    }
    cJSON_Delete(j);
    answer(a, c, r, NULL, ie, st, out);
    return true;
}

static bool objects_list(app_conn *c, const app_http_req *r, const char *room)
{
    so_engine *e = engine_of(c->srv);
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(j, "objects");
    size_t it = 0, n = 0, limit = qlimit(r);
    so_object *o;
    while (e && (o = so_engine_object_next(e, room, &it)) != NULL && n < limit) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", so_object_name(o));
        cJSON_AddBoolToObject(x, "persistent", so_object_persistent(o));
        cJSON_AddNumberToObject(x, "version", so_object_version(o));
        cJSON_AddNumberToObject(x, "slots", (double)so_object_slot_count(o));
        cJSON_AddNumberToObject(x, "bytes", (double)so_object_bytes(o));
        cJSON_AddNumberToObject(x, "subscribers", (double)so_object_subscriber_count(o));
        cJSON_AddBoolToObject(x, "locked", so_object_locked(o));
        cJSON_AddItemToArray(arr, x);
        n++;
    }
    send_json(c, r, 200, j);
    return true;
}

static bool presence_get(app_conn *c, const app_http_req *r, const char *room)
{
    so_engine *e = engine_of(c->srv);
    so_object *o = e ? so_engine_object_find(e, room, "presence") : NULL;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "users", o ? slots_json(o) : cJSON_CreateObject());
    send_json(c, r, 200, j);
    return true;
}

/* ---- applications and instances ---- */

static bool apps_list(app_conn *c, const app_http_req *r)
{
    app_server *s = c->srv;
    const app_config *cfg = s->cfg;
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(j, "apps");
    /* configured names, then registered ones not configured, then any
     * other name clients use (open access) */
    sh_map seen;
    sh_map_init(&seen);
    for (size_t i = 0; i < cfg->napps; i++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", cfg->apps[i].name);
        cJSON_AddBoolToObject(x, "configured", true);
        cJSON_AddStringToObject(x, "auth", cfg->apps[i].auth == APP_AUTH_TOKEN ? "token" : "none");
        cJSON_AddItemToArray(arr, x);
        sh_map_put(&seen, cfg->apps[i].name, strlen(cfg->apps[i].name), x);
    }
    for (app_app *a = s->apps; a; a = a->next) {
        if (sh_map_get(&seen, a->name, strlen(a->name)))
            continue;
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", a->name);
        cJSON_AddBoolToObject(x, "configured", false);
        cJSON_AddBoolToObject(x, "served", cfg->napps == 0 || app_config_find_app(cfg, a->name));
        cJSON_AddItemToArray(arr, x);
        sh_map_put(&seen, a->name, strlen(a->name), x);
    }
    /* connection counts by application name (any name in use) */
    for (app_conn *k = s->conns; k; k = k->next) {
        if (!k->nc_connected)
            continue;
        cJSON *x = sh_map_get(&seen, k->app_name, strlen(k->app_name));
        if (!x) {
            x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "name", k->app_name);
            cJSON_AddBoolToObject(x, "configured", false);
            cJSON_AddItemToArray(arr, x);
            sh_map_put(&seen, cJSON_GetObjectItem(x, "name")->valuestring, strlen(k->app_name), x);
        }
        cJSON *n = cJSON_GetObjectItem(x, "connections");
        if (n)
            cJSON_SetNumberValue(n, n->valuedouble + 1);
        else
            cJSON_AddNumberToObject(x, "connections", 1);
    }
    sh_map_cleanup(&seen);
    send_json(c, r, 200, j);
    return true;
}

static bool instances_list(app_conn *c, const app_http_req *r, const char *appname)
{
    so_engine *e = engine_of(c->srv);
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(j, "instances");
    size_t al = strlen(appname), it = 0, n = 0, limit = qlimit(r);
    so_room_info ri;
    while (e && so_engine_room_next(e, &it, &ri) && n < limit) {
        if (strncmp(ri.name, appname, al) != 0 || ri.name[al] != '/')
            continue;
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", ri.name + al + 1);
        cJSON_AddNumberToObject(x, "so_clients", (double)ri.clients);
        cJSON_AddNumberToObject(x, "objects", (double)ri.objects);
        size_t conns = 0;
        for (app_conn *k = c->srv->conns; k; k = k->next)
            conns += k->nc_connected && strcmp(k->app_name, appname) == 0 &&
                     strcmp(k->instance, ri.name + al + 1) == 0;
        cJSON_AddNumberToObject(x, "connections", (double)conns);
        cJSON_AddItemToArray(arr, x);
        n++;
    }
    send_json(c, r, 200, j);
    return true;
}

/* ---- connections ---- */

static cJSON *conn_json(const app_conn *k)
{
    cJSON *x = cJSON_CreateObject();
    cJSON_AddNumberToObject(x, "id", (double)k->id);
    cJSON_AddStringToObject(x, "transport", k->tr->name);
    cJSON_AddBoolToObject(x, "tls", k->tls != NULL);
    cJSON_AddStringToObject(x, "peer", k->peer);
    cJSON_AddStringToObject(x, "app", k->app_name);
    cJSON_AddStringToObject(x, "instance", k->instance);
    cJSON_AddStringToObject(x, "user", k->user);
    cJSON_AddBoolToObject(x, "connected", k->nc_connected && !k->closing);
    cJSON_AddNumberToObject(x, "bytes_in", (double)k->bytes_in);
    cJSON_AddNumberToObject(x, "bytes_out", (double)k->bytes_out);
    cJSON_AddNumberToObject(x, "queued_bytes", (double)app_conn_out_bytes(k));
    if (k->rtt_ms >= 0)
        cJSON_AddNumberToObject(x, "rtt_ms", (double)k->rtt_ms);
    else
        cJSON_AddNullToObject(x, "rtt_ms");
    cJSON_AddBoolToObject(x, "congested", app_so_conn_congested(k));
    cJSON_AddNumberToObject(x, "age_ms", (double)(uv_now(k->srv->loop) - k->t_accept));
    return x;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Connections sorted by id, from ?after=ID, ?limit=N, filtered by ?app=,
 * ?instance=, ?user=, ?transport=. */
static bool conns_list(app_conn *c, const app_http_req *r)
{
    app_server *s = c->srv;
    char app[APP_NAME_MAX + 1], inst[APP_NAME_MAX + 1], user[APP_NAME_MAX + 1], tr[16], v[32];
    bool fa = qget(r, "app", app, sizeof(app)), fi = qget(r, "instance", inst, sizeof(inst));
    bool fu = qget(r, "user", user, sizeof(user)), ft = qget(r, "transport", tr, sizeof(tr));
    uint64_t after = qget(r, "after", v, sizeof(v)) ? strtoull(v, NULL, 10) : 0;
    size_t limit = qlimit(r);
    uint64_t *ids = malloc((s->nconns + 1) * sizeof(*ids));
    if (!ids)
        return err(c, r, 500, "internal", "out of memory");
    size_t n = 0;
    for (app_conn *k = s->conns; k; k = k->next) {
        if (k->id <= after || k == c || (fa && strcmp(k->app_name, app)) ||
            (fi && strcmp(k->instance, inst)) || (fu && strcmp(k->user, user)) ||
            (ft && strcmp(k->tr->name, tr)))
            continue;
        ids[n++] = k->id;
    }
    qsort(ids, n, sizeof(*ids), cmp_u64);
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(j, "connections");
    size_t shown = n < limit ? n : limit;
    for (size_t i = 0; i < shown; i++)
        cJSON_AddItemToArray(arr, conn_json(app_server_conn_by_id(s, ids[i])));
    if (n > limit)
        cJSON_AddNumberToObject(j, "next", (double)ids[shown - 1]);
    else
        cJSON_AddNullToObject(j, "next");
    free(ids);
    send_json(c, r, 200, j);
    return true;
}

static bool conn_delete(api *a, app_conn *c, const app_http_req *r, idem *ie, const char *id)
{
    app_conn *k = app_server_conn_by_id(c->srv, strtoull(id, NULL, 10));
    if (!k || k == c || k->closing) {
        answer(a, c, r, NULL, ie, 404, error_json("not_found", "no such connection"));
        return true;
    }
    app_conn_close(k, "disconnected through the server API");
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "disconnected", 1);
    answer(a, c, r, NULL, ie, 200, j);
    return true;
}

static bool user_conns_delete(api *a, app_conn *c, const app_http_req *r, idem *ie,
                              const char *app, const char *user)
{
    size_t n = 0;
    for (app_conn *k = c->srv->conns; k; k = k->next)
        if (k->nc_connected && !k->closing && strcmp(k->app_name, app) == 0 &&
            strcmp(k->user, user) == 0) {
            app_conn_close(k, "disconnected through the server API");
            n++;
        }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "disconnected", (double)n);
    answer(a, c, r, NULL, ie, 200, j);
    return true;
}

/* ---- chat ---- */

typedef struct chat_wait {
    api *a;
    app_http_later later;
    idem *e;
    bool deferred;
    app_conn *c;                 /* while not deferred */
    const app_http_req *r;
} chat_wait;

static void on_chat_sent(void *ud, const char *code, const char *desc, uint64_t id, bool queued)
{
    chat_wait *w = ud;
    cJSON *j;
    int st = 200;
    if (code) {
        st = strcmp(code, CHAT_E_STORE_FAILED) == 0 ? 503
             : strcmp(code, CHAT_E_QUEUE_FULL) == 0 || strcmp(code, CHAT_E_STORE_FULL) == 0 ? 429
             : strcmp(code, CHAT_E_UNKNOWN_USER) == 0 ? 404 : 400;
        j = error_json(code, desc);
    } else {
        j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "id", (double)id);
        cJSON_AddStringToObject(j, "status", queued ? "queued" : "delivered");
    }
    answer(w->a, w->c, w->r, w->deferred ? &w->later : NULL, w->e, st, j);
    w->c = NULL; /* answered */
    if (w->deferred)
        free(w);
}

/* {"to":U, "text":T, "from":F (default "system"), "client_id":ID} */
static bool chat_post(api *a, app_conn *c, const app_http_req *r, idem *ie, const char *app)
{
    int bst;
    cJSON *berr = NULL;
    cJSON *j = body_json(c, r, &bst, &berr);
    if (!j) {
        answer(a, c, r, NULL, ie, bst, berr);
        return true;
    }
    const char *to = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "to"));
    const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "text"));
    const char *from = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "from"));
    const char *cid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "client_id"));
    if (!to || !text) {
        cJSON_Delete(j);
        answer(a, c, r, NULL, ie, 400, error_json("bad_request", "give \"to\" and \"text\""));
        return true;
    }
    chat_wait *w = calloc(1, sizeof(*w));
    if (!w) {
        cJSON_Delete(j);
        answer(a, c, r, NULL, ie, 500, error_json("internal", "out of memory"));
        return true;
    }
    w->a = a;
    w->e = ie;
    w->c = c;
    w->r = r;
    int rc = chat_send(c->srv, app, from ? from : "system", to, text, strlen(text),
                       cid, on_chat_sent, w);
    cJSON_Delete(j);
    if (rc < 0) {
        free(w);
        answer(a, c, r, NULL, ie, 500, error_json("internal", sh_strerror(rc)));
    } else if (!w->c) {
        free(w); /* answered at once */
    } else {
        w->deferred = true; /* answered when stored */
        app_http_defer(c, r, &w->later);
    }
    return true;
}

/* A user's counters, read from the store when the user is not in memory
 * (the request is deferred meanwhile). */
typedef struct state_wait {
    app_server *srv;
    app_http_later later;
    bool deferred;
    app_conn *c;                 /* while not deferred */
    const app_http_req *r;
    char app[APP_NAME_MAX + 1];
    char user[APP_NAME_MAX + 1];
} state_wait;

static void on_user_state(void *ud, int status, uint64_t last, uint64_t acked)
{
    state_wait *w = ud;
    int st = 200;
    cJSON *j;
    if (status < 0) {
        st = 503;
        j = error_json("unavailable", status == SH_ESTATE ? "chat is not available"
                                                          : "cannot read the user from the store");
    } else {
        j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "user", w->user);
        cJSON_AddNumberToObject(j, "last_id", (double)last);
        cJSON_AddNumberToObject(j, "acked", (double)acked);
        cJSON_AddNumberToObject(j, "queued", (double)(last > acked ? last - acked : 0));
        size_t online = 0;
        for (app_conn *k = w->srv->conns; k; k = k->next)
            online += k->nc_connected && !k->closing && strcmp(k->app_name, w->app) == 0 &&
                      strcmp(k->user, w->user) == 0;
        cJSON_AddNumberToObject(j, "connections", (double)online);
    }
    if (!w->deferred) {
        send_json(w->c, w->r, st, j);
        w->c = NULL; /* answered */
        return;
    }
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (text) {
        size_t n = strlen(text);
        text[n++] = '\n'; /* overwrites the NUL: sent with its length */
        app_http_respond_later(w->srv, &w->later, st, "application/json", NULL, text, n);
    }
    free(text);
    free(w);
}

static bool chat_user_get(app_conn *c, const app_http_req *r, const char *app, const char *user)
{
    state_wait *w = calloc(1, sizeof(*w));
    if (!w)
        return err(c, r, 500, "internal", "out of memory");
    *w = (state_wait){.srv = c->srv, .c = c, .r = r};
    snprintf(w->app, sizeof(w->app), "%s", app);
    snprintf(w->user, sizeof(w->user), "%s", user);
    if (chat_user_state(c->srv, app, user, on_user_state, w) < 0) {
        free(w);
        return err(c, r, 500, "internal", "out of memory");
    }
    if (!w->c) {
        free(w); /* answered at once */
        return true;
    }
    w->deferred = true; /* answered once the user is read */
    app_http_defer(c, r, &w->later);
    return true;
}

/* ---- the router ---- */

static bool route(api *a, app_conn *c, const app_http_req *r, const api_key *k)
{
    const char *p = r->path + strlen("/api/v1");
    char s1[64], s2[APP_NAME_MAX + 1], s3[64], s4[APP_NAME_MAX + 1], s5[64], s6[APP_NAME_MAX + 1];
    bool get = r->method == HTTP_GET || r->method == HTTP_HEAD;
    bool post = r->method == HTTP_POST, del = r->method == HTTP_DELETE;
    if (!get && !k->cfg->write)
        return err(c, r, 403, "forbidden", "this API key may only read (scope = read)");
    if (!seg(&p, s1, sizeof(s1)))
        return err(c, r, 404, "not_found", "see docs/api.md");
    idem *ie = NULL;
    if ((post || del) && idem_check(a, c, r, k, &ie))
        return true;
    /* /connections[/ID] */
    if (strcmp(s1, "connections") == 0) {
        if (!seg(&p, s2, sizeof(s2))) {
            if (get)
                return conns_list(c, r);
        } else if (del && !seg(&p, s3, sizeof(s3))) {
            return conn_delete(a, c, r, ie, s2);
        }
        idem_done(ie, 405, "{}");
        return err(c, r, 405, "method_not_allowed", "not for this path");
    }
    if (strcmp(s1, "apps") != 0) {
        idem_done(ie, 404, "{}");
        return err(c, r, 404, "not_found", "see docs/api.md");
    }
    if (!seg(&p, s2, sizeof(s2))) {
        if (get)
            return apps_list(c, r);
        idem_done(ie, 405, "{}");
        return err(c, r, 405, "method_not_allowed", "not for this path");
    }
    if (!name_ok(s2)) {
        idem_done(ie, 400, "{}");
        return err(c, r, 400, "bad_request", "bad application name");
    }
    bool more = seg(&p, s3, sizeof(s3));
    if (more && strcmp(s3, "instances") == 0) {
        if (!seg(&p, s4, sizeof(s4))) {
            if (get)
                return instances_list(c, r, s2);
        } else if (name_ok(s4)) {
            char room[2 * APP_NAME_MAX + 2];
            snprintf(room, sizeof(room), "%s/%s", s2, s4);
            if (!seg(&p, s5, sizeof(s5))) {
                /* nothing at the instance itself */
            } else if (strcmp(s5, "objects") == 0) {
                const char *name = p;
                while (*name == '/')
                    name++;
                if (!*name && get)
                    return objects_list(c, r, room);
                if (*name && get)
                    return object_get(c, r, room, name);
                if (*name && post)
                    return object_post_begin(a, c, r, ie, room, name);
            } else if (strcmp(s5, "messages") == 0 && post && !seg(&p, s6, sizeof(s6))) {
                return message_post(a, c, r, ie, room);
            } else if (strcmp(s5, "locks") == 0 && post && !seg(&p, s6, sizeof(s6))) {
                return lock_post(a, c, r, ie, room);
            } else if (strcmp(s5, "presence") == 0 && get && !seg(&p, s6, sizeof(s6))) {
                return presence_get(c, r, room);
            }
        }
    } else if (more && strcmp(s3, "chat") == 0 && seg(&p, s4, sizeof(s4))) {
        if (strcmp(s4, "messages") == 0 && post && !seg(&p, s5, sizeof(s5)))
            return chat_post(a, c, r, ie, s2);
        if (strcmp(s4, "users") == 0 && get && seg(&p, s5, sizeof(s5)) &&
            !seg(&p, s6, sizeof(s6)))
            return chat_user_get(c, r, s2, s5);
    } else if (more && strcmp(s3, "users") == 0 && seg(&p, s4, sizeof(s4)) &&
               seg(&p, s5, sizeof(s5)) && strcmp(s5, "connections") == 0 && del) {
        return user_conns_delete(a, c, r, ie, s2, s4);
    }
    idem_done(ie, 404, "{}");
    return err(c, r, 404, "not_found", "no such resource or method (docs/api.md)");
}

/* ---- metrics and health ---- */

static void put_counter(sh_buf *b, const char *name, const char *help, double v)
{
    app_metric_head(b, name, "counter", help);
    app_metric_value(b, name, NULL, v);
}

static void put_gauge(sh_buf *b, const char *name, const char *help, double v)
{
    app_metric_head(b, name, "gauge", help);
    app_metric_value(b, name, NULL, v);
}

static long proc_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t fl = strlen(field);
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':')
            kb = atol(line + fl + 1);
    if (f)
        fclose(f);
    return kb;
}

static void render_metrics(app_server *s, sh_buf *b)
{
    static const char *const trn[APP_TR_COUNT] = {"rtmp", "ws", "http"};
    static const char *const refn[APP_REFUSE_COUNT] = {"bad_request", "app_not_found", "auth",
                                                       "origin", "app_full", "application"};
    static const char *const dropn[APP_DROP_COUNT] = {"max_connections", "max_connections_per_ip",
                                                      "max_client_memory"};
    static const char *const closen[APP_CLOSE_COUNT] = {"max_output_bytes", "max_client_memory",
                                                        "send_timeout", "idle_timeout",
                                                        "handshake_timeout"};
    char lab[256];
    /* connections by transport and state */
    size_t live[APP_TR_COUNT][3] = {{0}};
    uint64_t bin = s->st.bytes_in, bout = s->st.bytes_out;
    for (app_conn *k = s->conns; k; k = k->next) {
        int st = k->closing ? 2 : k->nc_connected ? 1 : 0;
        live[app_tr_index(k->tr)][st]++;
        bin += k->bytes_in;
        bout += k->bytes_out;
    }
    app_metric_head(b, "sohub_connections", "gauge",
                    "Open connections by transport and state (handshake: not connected yet).");
    static const char *const stn[3] = {"handshake", "connected", "closing"};
    for (int t = 0; t < APP_TR_COUNT; t++)
        for (int st = 0; st < 3; st++) {
            lab[0] = '\0';
            app_metric_label(lab, sizeof(lab), "transport", trn[t]);
            app_metric_label(lab, sizeof(lab), "state", stn[st]);
            app_metric_value(b, "sohub_connections", lab, (double)live[t][st]);
        }
    app_metric_head(b, "sohub_connects_total", "counter", "Connects accepted, by transport.");
    for (int t = 0; t < APP_TR_COUNT; t++) {
        lab[0] = '\0';
        app_metric_label(lab, sizeof(lab), "transport", trn[t]);
        app_metric_value(b, "sohub_connects_total", lab, (double)s->st.connects[t]);
    }
    app_metric_head(b, "sohub_connect_refusals_total", "counter", "Connects refused, by reason.");
    for (int i = 0; i < APP_REFUSE_COUNT; i++) {
        lab[0] = '\0';
        app_metric_label(lab, sizeof(lab), "reason", refn[i]);
        app_metric_value(b, "sohub_connect_refusals_total", lab, (double)s->st.refused[i]);
    }
    app_metric_head(b, "sohub_accept_refusals_total", "counter",
                    "TCP connections closed at accept, by limit.");
    for (int i = 0; i < APP_DROP_COUNT; i++) {
        lab[0] = '\0';
        app_metric_label(lab, sizeof(lab), "limit", dropn[i]);
        app_metric_value(b, "sohub_accept_refusals_total", lab, (double)s->st.dropped[i]);
    }
    app_metric_head(b, "sohub_connections_closed_total", "counter",
                    "Connections the server closed, by cause.");
    for (int i = 0; i < APP_CLOSE_COUNT; i++) {
        lab[0] = '\0';
        app_metric_label(lab, sizeof(lab), "cause", closen[i]);
        app_metric_value(b, "sohub_connections_closed_total", lab, (double)s->st.closed[i]);
    }
    put_counter(b, "sohub_received_bytes_total", "Bytes read from clients.", (double)bin);
    put_counter(b, "sohub_sent_bytes_total", "Bytes written to clients.", (double)bout);
    put_gauge(b, "sohub_client_memory_bytes",
              "Memory client connections hold (what max_client_memory caps).", (double)s->mem_total);

    /* shared objects */
    app_so_glue *g = app_so_glue_of(s);
    if (g) {
        so_engine_stats es;
        so_engine_get_stats(app_so_engine(g), &es);
        app_so_glue_stats gs;
        app_so_glue_get_stats(g, &gs);
        put_gauge(b, "sohub_so_rooms", "Rooms in memory.", (double)es.rooms);
        put_gauge(b, "sohub_so_objects", "Shared objects in memory.", (double)es.objects);
        put_gauge(b, "sohub_so_clients", "Shared-object clients registered.", (double)es.clients);
        put_counter(b, "sohub_so_room_loads_total", "Rooms read from the store.", (double)es.room_loads);
        put_counter(b, "sohub_so_room_unloads_total", "Idle rooms that left memory.",
                    (double)es.room_unloads);
        put_counter(b, "sohub_so_updates_total", "Versions made (changes applied).",
                    (double)es.updates);
        app_metric_head(b, "sohub_so_refusals_total", "counter",
                        "Shared-object requests refused, by Status code (stale: rule 3).");
        for (size_t i = 0; i < SO_REFUSALS; i++) {
            lab[0] = '\0';
            app_metric_label(lab, sizeof(lab), "code", so_refusal_name(i));
            app_metric_value(b, "sohub_so_refusals_total", lab, (double)es.refused[i]);
        }
        put_counter(b, "sohub_so_messages_total", "Shared-object messages from clients.",
                    (double)gs.messages);
        put_counter(b, "sohub_so_deliveries_total", "Shared-object messages queued to clients.",
                    (double)gs.sends);
        put_counter(b, "sohub_so_congestion_events_total",
                    "Times a subscriber was marked congested (rule 7).", (double)gs.congested);
        put_counter(b, "sohub_store_commits_total", "Store batches written.", (double)gs.batches);
        put_counter(b, "sohub_store_failures_total", "Store batches that failed.",
                    (double)gs.batch_failures);
        app_metric_histo(b, "sohub_store_commit_seconds",
                         "Store batch time, taken to handed back.", &gs.commit_seconds);
    }
    /* chat */
    chat_stats cs;
    chat_get_stats(s, &cs);
    put_counter(b, "sohub_chat_messages_stored_total", "Private messages stored.", (double)cs.stored);
    put_counter(b, "sohub_chat_messages_delivered_total",
                "Private messages sent to a connection (live or from the store).",
                (double)cs.delivered);
    put_counter(b, "sohub_chat_messages_acked_total", "Private messages acknowledged.",
                (double)cs.acked);
    put_gauge(b, "sohub_chat_messages_queued", "Private messages stored, not yet acknowledged.",
              (double)cs.unacked);
    put_counter(b, "sohub_chat_store_failures_total", "Chat store batches that failed.",
                (double)cs.batch_failures);
    /* the process */
    app_metric_histo(b, "sohub_event_loop_lag_seconds",
                     "How late a 100 ms timer of the event loop fired.", s->lag);
    long rss = proc_kb("VmRSS"), hwm = proc_kb("VmHWM");
    put_gauge(b, "sohub_process_resident_memory_bytes", "Resident memory (VmRSS).",
              rss < 0 ? NAN : (double)rss * 1024);
    put_gauge(b, "sohub_process_resident_memory_peak_bytes", "Peak resident memory (VmHWM).",
              hwm < 0 ? NAN : (double)hwm * 1024);
}

/* /readyz: listeners up and the stores writing. */
static bool ready(app_server *s, const char **why)
{
    if (s->stopping) {
        *why = "stopping";
        return false;
    }
    if (!s->rtmp.active) {
        *why = "rtmp listener down";
        return false;
    }
    app_so_glue *g = app_so_glue_of(s);
    if (g && !app_so_store_ok(g)) {
        *why = "the shared-object store is failing";
        return false;
    }
    return true;
}

/* ---- entry ---- */

static bool handle(app_conn *c, const app_http_req *r, void *ud)
{
    api *a = ud;
    if (strcmp(r->path, "/healthz") == 0) {
        app_http_respond(c, r, 200, "text/plain; charset=utf-8", NULL, "ok\n", 3);
        return true;
    }
    if (strcmp(r->path, "/readyz") == 0) {
        const char *why = "ok";
        bool ok = ready(c->srv, &why);
        char body[128];
        int n = snprintf(body, sizeof(body), "%s\n", why);
        app_http_respond(c, r, ok ? 200 : 503, "text/plain; charset=utf-8", NULL, body,
                         (size_t)n);
        return true;
    }
    if (strcmp(r->path, "/metrics") == 0) {
        sh_buf b;
        sh_buf_init(&b, (size_t)16 << 20);
        render_metrics(c->srv, &b);
        app_http_respond(c, r, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, b.data,
                         b.len);
        sh_buf_cleanup(&b);
        return true;
    }
    if (strncmp(r->path, "/api/v1", 7) == 0 && (r->path[7] == '/' || !r->path[7])) {
        const api_key *k = authenticate(a, r);
        if (!k) {
            static const char body[] = "{\"error\":{\"code\":\"unauthorized\",\"message\":"
                                       "\"an API key is required (docs/api.md)\"}}\n";
            app_http_respond(c, r, 401, "application/json", "WWW-Authenticate: Bearer\r\n", body,
                             sizeof(body) - 1);
            return true;
        }
        return route(a, c, r, k);
    }
    return false; /* the admin page's files, if any */
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data); /* the api, whose handle this is */
}

static void on_shutdown(app_server *s, void *ud)
{
    api *a = ud;
    so_engine *e = engine_of(s);
    while (a->opens) {
        /* waiting for a room: nobody is left to answer */
        api_open *w = a->opens;
        a->opens = w->next;
        if (e)
            so_engine_object_open_cancel(e, on_api_open, w);
        w->arg_free(w->arg);
        free(w);
    }
    while (a->locks) {
        api_lock *l = a->locks;
        a->locks = l->next;
        lock_release(a, l);
    }
    while (a->idem_head) {
        idem *e = a->idem_head;
        a->idem_head = e->next;
        idem_free(e);
    }
    sh_map_cleanup(&a->idem);
    free(a->keys);
    a->keys = NULL;
    app_server_set_ext(s, APP_EXT_API, NULL);
    uv_close((uv_handle_t *)&a->lock_timer, on_timer_closed); /* frees a */
}

/* The keys of a config (digests of the secrets). */
static int load_keys(api *a, const app_config *cfg)
{
    api_key *k = cfg->napi_keys ? calloc(cfg->napi_keys, sizeof(*k)) : NULL;
    if (cfg->napi_keys && !k)
        return SH_ENOMEM;
    for (size_t i = 0; i < cfg->napi_keys; i++) {
        SHA256((const unsigned char *)cfg->api_keys[i].secret, strlen(cfg->api_keys[i].secret),
               k[i].digest);
        k[i].cfg = &cfg->api_keys[i];
    }
    free(a->keys);
    a->keys = k;
    a->nkeys = cfg->napi_keys;
    return 0;
}

static void on_reconfigure(app_server *s, const app_config *old_cfg, const app_config *new_cfg,
                           void *ud)
{
    (void)s;
    (void)old_cfg;
    if (load_keys(ud, new_cfg) < 0)
        SH_LOG(SH_LOG_ERROR, "reload: out of memory: API keys unchanged");
}

int app_api_register(app_server *srv)
{
    const app_config *cfg = app_server_config(srv);
    api *a = calloc(1, sizeof(*a));
    if (!a)
        return SH_ENOMEM;
    a->srv = srv;
    a->idem_tail = &a->idem_head;
    sh_map_init(&a->idem);
    if (load_keys(a, cfg) < 0) {
        free(a);
        return SH_ENOMEM;
    }
    uv_timer_init(app_server_loop(srv), &a->lock_timer);
    a->lock_timer.data = a;
    int rc = app_server_add_http_handler(srv, 1u << APP_LISTEN_ADMIN, "/", handle, a);
    if (rc == 0)
        rc = app_server_on_shutdown(srv, on_shutdown, a);
    if (rc == 0)
        rc = app_server_on_reconfigure(srv, on_reconfigure, a);
    if (rc) {
        free(a->keys);
        free(a);
        return rc;
    }
    app_server_set_ext(srv, APP_EXT_API, a);
    if (*cfg->admin_listen && cfg->napi_keys == 0)
        SH_LOG(SH_LOG_WARN, "admin_listen is on but no [api_key] section exists: /api/v1 "
                            "refuses every request (metrics and health still answer)");
    return 0;
}
