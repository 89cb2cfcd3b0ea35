/* api.c - see api.h; the HTTP API itself is documented in docs/api.md and
 * openapi/sohub-api.yaml. */
#include "api.h"

#include <cjson/cJSON.h>
#include <http_parser.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "amf_json.h"
#include "app_internal.h"
#include "chat.h"
#include "cluster.h"
#include "http.h"
#include "http_req.h"
#include "metrics.h"
#include "sh_err.h"
#include "sh_log.h"
#include "sh_map.h"
#include "so_glue.h"
#include "cluster_so.h"
#include "so_json.h"

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
    uint8_t request[SHA256_DIGEST_LENGTH]; /* digest of method, target and body */
    uint64_t t_ms;
    bool pending;                /* the first request is still waiting */
    int status;
    char *body;                  /* owned: the bytes sent, newline included */
    size_t body_len;
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
    /* SHA-256 fetched once: OpenSSL 3's one-shot SHA256() fetches the
     * algorithm on every call, about two thirds of its cost */
    EVP_MD *sha256;
    EVP_MD_CTX *md_ctx;
    struct api_open *opens;      /* requests waiting for their room's load */
    size_t durable_waits;        /* answers waiting for the store or Redis */
    bool stopping;               /* shut down: freed once durable_waits is 0 */
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

/* Value of key= in the query, percent-decoded into out: 1, 0 when absent,
 * -1 when malformed or longer than out holds. */
static int qval(const app_http_req *r, const char *key, char *out, size_t outsz)
{
    size_t kl = strlen(key);
    for (const char *q = r->query; q && *q;) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > kl && strncmp(q, key, kl) == 0 && q[kl] == '=') {
            size_t vl = len - kl - 1;
            char tmp[1024];
            if (vl >= sizeof(tmp) || !http_pct_decode(q + kl + 1, vl, tmp) ||
                strlen(tmp) >= outsz)
                return -1;
            memcpy(out, tmp, strlen(tmp) + 1);
            return 1;
        }
        q = amp ? amp + 1 : NULL;
    }
    return 0;
}

static bool qget(const app_http_req *r, const char *key, char *out, size_t outsz)
{
    return qval(r, key, out, outsz) > 0;
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

static bool digest_run(EVP_MD_CTX *ctx, const EVP_MD *md, size_t n, const void *const *p,
                       const size_t *len, uint8_t d[SHA256_DIGEST_LENGTH])
{
    unsigned int dl = 0;
    bool ok = ctx && md && EVP_DigestInit_ex(ctx, md, NULL) == 1;
    for (size_t i = 0; ok && i < n; i++)
        ok = EVP_DigestUpdate(ctx, p[i], len[i]) == 1;
    return ok && EVP_DigestFinal_ex(ctx, d, &dl) == 1 && dl == SHA256_DIGEST_LENGTH;
}

/* SHA-256 of the n pieces p[i] (len[i] bytes) one after the other, with
 * the context made once; without it (out of memory at start) a context
 * of the moment; without that, all zeros (which matches no key). */
static void digest_of(api *a, size_t n, const void *const *p, const size_t *len,
                      uint8_t d[SHA256_DIGEST_LENGTH])
{
    if (digest_run(a->md_ctx, a->sha256, n, p, len, d))
        return;
    EVP_MD_CTX *t = EVP_MD_CTX_new();
    if (!digest_run(t, EVP_sha256(), n, p, len, d))
        memset(d, 0, SHA256_DIGEST_LENGTH);
    EVP_MD_CTX_free(t);
}

static void key_digest(api *a, const char *v, size_t n, uint8_t d[SHA256_DIGEST_LENGTH])
{
    const void *p[1] = {v};
    digest_of(a, 1, p, &n, d);
}

/* What an Idempotency-Key stands for: the method, the request target
 * (path and query as sent) and the body. */
static void request_digest(api *a, const app_http_req *r, uint8_t d[SHA256_DIGEST_LENGTH])
{
    const void *p[5] = {r->method_name, "\n", r->target, "\n", r->body ? (const void *)r->body : ""};
    size_t len[5] = {strlen(r->method_name), 1, strlen(r->target), 1, r->body_len};
    digest_of(a, 5, p, len, d);
}

/* The key the request presents, NULL when none matches.  Every key is
 * compared, in constant time, as SHA-256 digests (equal length). */
static const api_key *authenticate(api *a, const app_http_req *r)
{
    const char *v = app_http_header(r, "X-Api-Key");
    const char *auth = app_http_header(r, "Authorization");
    if (!v && auth && strncasecmp(auth, "Bearer ", 7) == 0)
        v = auth + 7;
    if (!v)
        return NULL;
    uint8_t d[SHA256_DIGEST_LENGTH];
    key_digest(a, v, strlen(v), d);
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
 * *out (false, *out NULL when the request has none).  A repeat is the
 * same key of the same API key: with the same method, target and body it
 * gets the first answer again, byte for byte (or 409 in_progress while
 * that is not given yet); with another request, 422 (the key was reused
 * for something else: nothing is applied). */
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
    uint8_t d[SHA256_DIGEST_LENGTH];
    request_digest(a, r, d);
    idem *e = sh_map_get(&a->idem, key, strlen(key));
    if (e) {
        if (CRYPTO_memcmp(d, e->request, sizeof(d)) != 0)
            return err(c, r, 422, "idempotency_key_reused",
                       "this Idempotency-Key was used for another request");
        if (e->pending)
            return err(c, r, 409, "in_progress",
                       "a request with this Idempotency-Key is still being applied");
        app_http_respond(c, r, e->status, "application/json", "Idempotent-Replayed: true\r\n",
                         e->body, e->body_len);
        return true;
    }
    e = calloc(1, sizeof(*e));
    if (!e || !(e->key = strdup(key)) || sh_map_put(&a->idem, e->key, strlen(e->key), e)) {
        if (e)
            free(e->key);
        free(e);
        return err(c, r, 500, "internal", "out of memory");
    }
    memcpy(e->request, d, sizeof(d));
    e->pending = true;
    e->t_ms = now_ms(a);
    *a->idem_tail = e;
    a->idem_tail = &e->next;
    a->nidem++;
    *out = e;
    return false;
}

/* Remembers the answer (body[0..len)) of e's first request; out of
 * memory, a replay gets an empty body with the same status. */
static void idem_done(idem *e, int status, const char *body, size_t len)
{
    if (!e)
        return;
    e->pending = false;
    e->status = status;
    e->body = malloc(len ? len : 1);
    if (e->body)
        memcpy(e->body, body, len);
    e->body_len = e->body ? len : 0;
}

/* Sends text (len bytes, then a newline the buffer has room for; text is
 * NUL-terminated and the NUL is overwritten) as the JSON answer of a write
 * and remembers it for its key. */
static void answer_text(api *a, app_conn *c, const app_http_req *r, const app_http_later *later,
                        idem *e, int status, char *text, size_t n)
{
    text[n++] = '\n';
    idem_done(e, status, text, n);
    if (later)
        app_http_respond_later(a->srv, later, status, "application/json", NULL, text, n);
    else
        app_http_respond(c, r, status, "application/json", NULL, text, n);
}

/* Sends the JSON answer of a write and remembers it for its key. */
static void answer(api *a, app_conn *c, const app_http_req *r, const app_http_later *later,
                   idem *e, int status, cJSON *j)
{
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!text)
        text = strdup("{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}");
    if (!text) {
        /* nothing left to build an answer with: the client gets a 500 */
        char fallback[] = "{}";
        answer_text(a, c, r, later, e, 500, fallback, 2);
        return;
    }
    answer_text(a, c, r, later, e, status, text, strlen(text));
    free(text);
}

/* {"version":N}: the answer of every successful object write, the API's
 * most frequent, made without building and printing a cJSON tree. */
static void answer_version(api *a, app_conn *c, const app_http_req *r,
                           const app_http_later *later, idem *e, uint32_t version)
{
    char text[48];
    int n = snprintf(text, sizeof(text), "{\"version\":%u}", (unsigned)version);
    answer_text(a, c, r, later, e, 200, text, (size_t)n);
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

static void answer_open_error(api *a, app_conn *c, const app_http_req *r,
                              const app_http_later *later, idem *ie, int rc)
{
    if (rc == SH_EEXIST)
        answer(a, c, r, later, ie, 409,
               error_json("bad_persistence", "the object exists with the other persistence"));
    else if (rc == SH_ELIMIT)
        answer(a, c, r, later, ie, 422, error_json("limit", "too many objects in the room"));
    else if (rc == SH_EIO)
        answer(a, c, r, later, ie, 503,
               error_json("store_failed", "the room could not be read from the store"));
    else
        answer(a, c, r, later, ie, 400, error_json("bad_request", "cannot open the object"));
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

static void object_got(api *a, app_conn *c, const app_http_req *r, const app_http_later *later,
                       idem *ie, so_object *o, int rc, void *arg)
{
    char *name = arg;
    if (!o) {
        answer_open_error(a, c, r, later, ie, rc);
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
    char *room, *name;           /* a clustered write: its object (owned) */
} write_wait;

static void api_free(api *a);

static void on_write_durable(void *ud, int status)
{
    write_wait *w = ud;
    api *a = w->a;
    if (status == 0)
        answer_version(w->a, NULL, NULL, &w->later, w->e, w->version);
    else
        answer(w->a, NULL, NULL, &w->later, w->e, 503,
               error_json("store_failed", "the change is applied in memory but was not stored"));
    free(w);
    /* the store answers the last waits of a shutdown after the API's own
     * hook ran: the API is freed once nothing waits */
    if (--a->durable_waits == 0 && a->stopping)
        api_free(a);
}

/* The end of a write to a clustered object (so_write_fn): Redis answered,
 * or could not be reached in time, or the server stops. */
static void on_cluster_write(void *ud, int status, uint32_t version)
{
    write_wait *w = ud;
    api *a = w->a;
    if (status == 0) {
        answer_version(a, NULL, NULL, &w->later, w->e, version);
    } else if (status == SH_ELIMIT) {
        answer(a, NULL, NULL, &w->later, w->e, 422,
               error_json("limit", "the application's persistent quota (objects or bytes, "
                                   "counted over the cluster) refused the write, nothing was "
                                   "applied"));
    } else if (status == SH_EEXIST) {
        /* the cluster's version; the slots are this node's copy, which
         * may still lack the updates that made that version */
        cJSON *out = error_json("conflict", "the object is at another version in the cluster; "
                                            "nothing was written");
        cJSON_AddNumberToObject(out, "version", version);
        so_engine *e = engine_of(a->srv);
        so_object *o = e ? so_engine_object_find(e, w->room, w->name) : NULL;
        cJSON_AddItemToObject(out, "slots", o ? slots_json(o) : cJSON_CreateObject());
        answer(a, NULL, NULL, &w->later, w->e, 409, out);
    } else {
        answer(a, NULL, NULL, &w->later, w->e, 503,
               error_json("store_failed", "Redis did not confirm the write (unreachable, timed "
                                          "out, or the server stops): not known to be stored; "
                                          "nothing was applied on this node"));
    }
    free(w->room);
    free(w->name);
    free(w);
    if (--a->durable_waits == 0 && a->stopping)
        api_free(a);
}

/* The answer to a value the API refuses: 400 bad_value (not a value of
 * the mapping) or 422 limit (past the AMF limits an RTMP client's message
 * is held to). */
static void answer_value_error(api *a, app_conn *c, const app_http_req *r, idem *ie, int rc,
                               const sh_error *se)
{
    if (rc == SH_ELIMIT)
        answer(a, c, r, NULL, ie, 422,
               error_json("limit", se->what ? se->what : "a value past the AMF limits"));
    else if (rc == SH_ENOMEM)
        answer(a, c, r, NULL, ie, 500, error_json("internal", "out of memory"));
    else
        answer(a, c, r, NULL, ie, 400,
               error_json("bad_value", se->what ? se->what : "a value the AMF mapping refuses"));
}

/* The answer to an object that cannot be opened (rc from
 * so_engine_object_open). */

static void values_free(amf_value **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        amf_unref(v[i]);
    free(v);
}

/* The values of "set", each held to what an RTMP client could send in a
 * shared-object message (max_amf_depth, max_amf_string, max_amf_elements):
 * a value past them would make its room unreadable from the store.
 * Returns 0 with *out (owned, one per member; NULL when there are none)
 * or the code of the first refusal with se. */
static int set_values(app_so_glue *g, const cJSON *set, amf_value ***out, size_t *n,
                      sh_error *se)
{
    *out = NULL;
    *n = 0;
    int k = set ? cJSON_GetArraySize(set) : 0;
    if (k == 0)
        return 0;
    amf_value **v = calloc((size_t)k, sizeof(*v));
    if (!v)
        return SH_ENOMEM;
    const cJSON *it;
    size_t i = 0;
    cJSON_ArrayForEach(it, set) {
        int rc = so_json_value(it, app_so_wire_limits(g), &v[i], se);
        if (rc < 0) {
            values_free(v, i);
            return rc;
        }
        i++;
    }
    *out = v;
    *n = i;
    return 0;
}

/* The checked body of an object write and its values. */
typedef struct post_arg {
    cJSON *j;
    bool persistent;
    amf_value **vals;            /* one per member of "set" */
    size_t nvals;
    char *room;                  /* owned */
} post_arg;

static void post_arg_free(void *p)
{
    post_arg *x = p;
    values_free(x->vals, x->nvals);
    cJSON_Delete(x->j);
    free(x->room);
    free(x);
}

/* The write, once the object is open (or could not be). */
static void object_post(api *a, app_conn *c, const app_http_req *r, const app_http_later *later,
                        idem *ie, so_object *o, int rc, void *arg)
{
    post_arg *x = arg;
    cJSON *j = x->j;
    bool persistent = x->persistent;
    amf_value **vals = x->vals;
    size_t nvals = x->nvals;
    char *room = x->room;
    free(x);
    app_so_glue *g = app_so_glue_of(a->srv);
    so_engine *e = app_so_engine(g);
    const cJSON *set = cJSON_GetObjectItemCaseSensitive(j, "set");
    const cJSON *rem = cJSON_GetObjectItemCaseSensitive(j, "remove");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(j, "expect_version");
    const cJSON *it;
    if (!o) {
        free(room);
        values_free(vals, nvals);
        cJSON_Delete(j);
        answer_open_error(a, c, r, later, ie, rc);
        return;
    }
    /* locked: queued for the unlock, checked here; clustered: Redis checks
     * it against the cluster's version */
    bool cluster = so_object_clustered(o) && !so_object_locked(o);
    if (exp && !cluster && so_object_version(o) != (uint32_t)exp->valuedouble) {
        cJSON *out = error_json("conflict", "the object is at another version");
        cJSON_AddNumberToObject(out, "version", so_object_version(o));
        cJSON_AddItemToObject(out, "slots", slots_json(o));
        so_engine_object_close(e, o);
        free(room);
        values_free(vals, nvals);
        cJSON_Delete(j);
        answer(a, c, r, later, ie, 409, out);
        return;
    }
    /* locked through the API (or by an application): the changes queue
     * and are applied, as one version with the others, at the release */
    bool queued = so_object_locked(o);
    size_t nch = nvals + (size_t)(rem ? cJSON_GetArraySize(rem) : 0);
    so_change *ch = nch ? calloc(nch, sizeof(*ch)) : NULL;
    /* the removals first: they make room for the sets, and a key in both
     * ends up set */
    size_t i = 0, k = 0;
    if (ch) {
        cJSON_ArrayForEach(it, rem) {
            ch[i++] = (so_change){it->valuestring, strlen(it->valuestring), NULL};
        }
        cJSON_ArrayForEach(it, set) {
            ch[i++] = (so_change){it->string, strlen(it->string), vals[k++]};
        }
    }
    so_effects fx;
    so_effects_init(&fx);
    write_wait *cw = cluster ? calloc(1, sizeof(*cw)) : NULL;
    if (cw) {
        cw->room = room ? strdup(room) : NULL;
        cw->name = strdup(so_object_name(o));
        if (!cw->room || !cw->name) {
            free(cw->room);
            free(cw->name);
            free(cw);
            cw = NULL;
        }
    }
    if (cluster) {
        /* answered once Redis stored it (or refused it) */
        so_write_opts wo = {.expect_version = exp ? (uint32_t)exp->valuedouble : 0,
                            .done = on_cluster_write, .ud = cw};
        rc = (nch && !ch) || !cw ? SH_ENOMEM : so_object_write(e, o, ch, nch, &wo, &fx);
    } else {
        rc = nch && !ch ? SH_ENOMEM : so_object_apply(e, o, ch, nch, &fx);
    }
    free(room);
    if (rc != SO_WRITE_PENDING && cw) {
        free(cw->room);
        free(cw->name);
        free(cw);
        cw = NULL;
    }
    app_so_deliver(g, &fx);
    so_effects_cleanup(&fx);
    free(ch);
    uint32_t version = so_object_version(o);
    so_engine_object_close(e, o);
    values_free(vals, nvals);
    cJSON_Delete(j);
    if (rc == SH_ELIMIT) {
        answer(a, c, r, later, ie, 422,
               error_json("limit", "a limit of the object refused the write, nothing was "
                                   "applied (value bytes, slots, object bytes or a "
                                   "persistent quota)"));
        return;
    }
    if (rc == SO_WRITE_PENDING) {
        cw->a = a;
        cw->e = ie;
        a->durable_waits++;
        if (later)
            cw->later = *later;
        else
            app_http_defer(c, r, &cw->later);
        return;
    }
    if (rc == SH_EIO) {
        answer(a, c, r, later, ie, 503,
               error_json("store_failed", "the cluster's Redis cannot take the write now "
                                          "(unreachable, or the room is being read again): "
                                          "nothing was written"));
        return;
    }
    if (rc < 0) {
        answer(a, c, r, later, ie, rc == SH_EINVAL ? 400 : 500,
               error_json(rc == SH_EINVAL ? "bad_request" : "internal", sh_strerror(rc)));
        return;
    }
    if (queued) {
        char text[64];
        int n = snprintf(text, sizeof(text), "{\"version\":%u,\"queued\":true}",
                         (unsigned)version);
        answer_text(a, c, r, later, ie, 200, text, (size_t)n);
        return;
    }
    if (!persistent) {
        answer_version(a, c, r, later, ie, version);
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
    a->durable_waits++;
    if (later)
        w->later = *later;
    else
        app_http_defer(c, r, &w->later);
}

/* {"persistent":B, "set":{k:v...}, "remove":[k...], "expect_version":N}
 * Everything the API can check (members, values, keys) is checked before
 * the engine sees anything, so a refused request applies nothing; then the
 * object is opened (its room loaded first if it must be). */
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
    const cJSON *it;
    if (pers && !cJSON_IsBool(pers))
        bad = "\"persistent\" is true or false";
    else if (set && !cJSON_IsObject(set))
        bad = "\"set\" is an object of slot values";
    else if (rem && !cJSON_IsArray(rem))
        bad = "\"remove\" is an array of keys";
    else if (exp && (!cJSON_IsNumber(exp) || exp->valuedouble < 0 ||
                     exp->valuedouble > UINT32_MAX ||
                     exp->valuedouble != floor(exp->valuedouble)))
        bad = "\"expect_version\" is a version number";
    else if (!set && !rem)
        bad = "nothing to do: give \"set\" and/or \"remove\"";
    cJSON_ArrayForEach(it, rem) {
        if (!bad && !cJSON_IsString(it))
            bad = "\"remove\" holds strings";
        else if (!bad && strlen(it->valuestring) > UINT16_MAX)
            bad = "a key is longer than 65535 bytes";
    }
    cJSON_ArrayForEach(it, set) {
        if (!bad && strlen(it->string) > UINT16_MAX)
            bad = "a key is longer than 65535 bytes";
    }
    if (bad) {
        cJSON_Delete(j);
        answer(a, c, r, NULL, ie, 400, error_json("bad_request", bad));
        return true;
    }
    amf_value **vals;
    size_t nvals;
    sh_error se = {0};
    int rc = set_values(g, set, &vals, &nvals, &se);
    if (rc < 0) {
        cJSON_Delete(j);
        answer_value_error(a, c, r, ie, rc, &se);
        return true;
    }
    post_arg *x = malloc(sizeof(*x));
    if (!x) {
        values_free(vals, nvals);
        cJSON_Delete(j);
        answer(a, c, r, NULL, ie, 500, error_json("internal", "out of memory"));
        return true;
    }
    *x = (post_arg){.j = j, .persistent = !pers || cJSON_IsTrue(pers), .vals = vals,
                    .nvals = nvals, .room = strdup(room)};
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

/* The message, once the object is open (or could not be). */
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
    if (!o)
        answer_open_error(a, c, r, later, ie, rc);
    else if (rc < 0)
        answer(a, c, r, later, ie, 400, error_json("bad_request", "cannot send to that object"));
    else
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
    if (!obj || !h || (args && !cJSON_IsArray(args)) || n > RTMP_MAX_CMD_ARGS ||
        (pers && !cJSON_IsBool(pers))) {
        cJSON_Delete(j);
        answer(a, c, r, NULL, ie, 400,
               error_json("bad_request", "give \"object\", \"handler\", an \"args\" array of "
                                         "at most 64 values and \"persistent\" true or false"));
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
    int rc = 0;
    sh_error se = {0};
    cJSON_ArrayForEach(it, args) {
        if ((rc = so_json_value(it, app_so_wire_limits(g), &x->av[x->na], &se)) < 0)
            break;
        x->na++;
    }
    if (rc < 0) {
        msg_arg_free(x);
        answer_value_error(a, c, r, ie, rc, &se);
        return true;
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
    double t = *(double *)arg;
    free(arg);
    if (!o) {
        answer_open_error(a, c, r, later, ie, rc);
        return;
    }
    so_engine *e = engine_of(a->srv);
    api_lock *l = a->locks;
    while (l && l->o != o)
        l = l->next;
    if (l) {
        so_engine_object_close(e, o);
        answer(a, c, r, later, ie, 409,
               error_json("locked", "the object is locked through the API already"));
        return;
    }
    l = calloc(1, sizeof(*l));
    if (!l) {
        so_engine_object_close(e, o);
        answer(a, c, r, later, ie, 500, error_json("internal", "out of memory"));
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
    if (!obj || !cJSON_IsBool(lk) || (pers && !cJSON_IsBool(pers)) ||
        (ttl && !cJSON_IsNumber(ttl))) {
        cJSON_Delete(j);
        answer(a, c, r, NULL, ie, 400,
               error_json("bad_request", "give \"object\", \"lock\" true or false, "
                                         "\"persistent\" true or false and a number \"ttl_ms\""));
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

/* ---- lists by name ----
 * Lists of named things (applications, instances, objects) are sorted by
 * name (bytes) and paged with ?after=NAME (exclusive) and ?limit=N; the
 * answer's "next" is the name to pass as after for the next page, or null. */

/* ?after= into out ("" when absent); false (answered 400) when malformed. */
static bool qafter(app_conn *c, const app_http_req *r, char *out, size_t outsz)
{
    out[0] = '\0';
    if (qval(r, "after", out, outsz) < 0) {
        err(c, r, 400, "bad_request", "\"after\" is a percent-encoded name");
        return false;
    }
    return true;
}

/* Sets "next" of j: the last name shown when more remain. */
static void put_next(cJSON *j, bool more, const char *last)
{
    if (more && last)
        cJSON_AddStringToObject(j, "next", last);
    else
        cJSON_AddNullToObject(j, "next");
}

static int cmp_object(const void *a, const void *b)
{
    return strcmp(so_object_name(*(so_object *const *)a), so_object_name(*(so_object *const *)b));
}

static bool objects_list(app_conn *c, const app_http_req *r, const char *room)
{
    so_engine *e = engine_of(c->srv);
    char after[1024];
    if (!qafter(c, r, after, sizeof(after)))
        return true;
    size_t it = 0, n = 0, cap = 0, limit = qlimit(r);
    so_object **all = NULL, *o;
    while (e && (o = so_engine_object_next(e, room, &it)) != NULL) {
        if (after[0] && strcmp(so_object_name(o), after) <= 0)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            so_object **na = realloc(all, nc * sizeof(*na));
            if (!na) {
                free(all);
                return err(c, r, 500, "internal", "out of memory");
            }
            all = na;
            cap = nc;
        }
        all[n++] = o;
    }
    if (n)
        qsort(all, n, sizeof(*all), cmp_object);
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(j, "objects");
    size_t shown = n < limit ? n : limit;
    for (size_t i = 0; i < shown; i++) {
        o = all[i];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", so_object_name(o));
        cJSON_AddBoolToObject(x, "persistent", so_object_persistent(o));
        cJSON_AddNumberToObject(x, "version", so_object_version(o));
        cJSON_AddNumberToObject(x, "slots", (double)so_object_slot_count(o));
        cJSON_AddNumberToObject(x, "bytes", (double)so_object_bytes(o));
        cJSON_AddNumberToObject(x, "subscribers", (double)so_object_subscriber_count(o));
        cJSON_AddBoolToObject(x, "locked", so_object_locked(o));
        cJSON_AddItemToArray(arr, x);
    }
    put_next(j, n > shown, shown ? so_object_name(all[shown - 1]) : NULL);
    free(all);
    send_json(c, r, 200, j);
    return true;
}

static int cmp_item(const void *a, const void *b)
{
    return strcmp(cJSON_GetObjectItemCaseSensitive(*(cJSON *const *)a, "name")->valuestring,
                  cJSON_GetObjectItemCaseSensitive(*(cJSON *const *)b, "name")->valuestring);
}

/* The members of arr (objects with a "name"), sorted by name, from after
 * (exclusive), at most limit of them; "next" set on j.  False when out of
 * memory (arr is then left as it was). */
static bool page_items(cJSON *j, cJSON *arr, const char *after, size_t limit)
{
    size_t n = (size_t)cJSON_GetArraySize(arr), k = 0;
    cJSON **items = n ? malloc(n * sizeof(*items)) : NULL;
    if (n && !items)
        return false;
    while (cJSON_GetArraySize(arr) > 0) {
        cJSON *x = cJSON_DetachItemFromArray(arr, 0);
        if (after[0] &&
            strcmp(cJSON_GetObjectItemCaseSensitive(x, "name")->valuestring, after) <= 0)
            cJSON_Delete(x);
        else
            items[k++] = x;
    }
    if (k)
        qsort(items, k, sizeof(*items), cmp_item);
    size_t shown = k < limit ? k : limit;
    for (size_t i = 0; i < shown; i++)
        cJSON_AddItemToArray(arr, items[i]);
    put_next(j, k > shown,
             shown ? cJSON_GetObjectItemCaseSensitive(items[shown - 1], "name")->valuestring
                   : NULL);
    for (size_t i = shown; i < k; i++)
        cJSON_Delete(items[i]);
    free(items);
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
    char after[APP_NAME_MAX + 1];
    if (!qafter(c, r, after, sizeof(after)))
        return true;
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
    if (!page_items(j, arr, after, qlimit(r))) {
        cJSON_Delete(j);
        return err(c, r, 500, "internal", "out of memory");
    }
    send_json(c, r, 200, j);
    return true;
}

static bool instances_list(app_conn *c, const app_http_req *r, const char *appname)
{
    so_engine *e = engine_of(c->srv);
    char after[APP_NAME_MAX + 1];
    if (!qafter(c, r, after, sizeof(after)))
        return true;
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(j, "instances");
    size_t al = strlen(appname), it = 0;
    so_room_info ri;
    /* the names first (rooms of other applications and the ones before
     * after skipped); the counts only for the page */
    while (e && so_engine_room_next(e, &it, &ri)) {
        if (strncmp(ri.name, appname, al) != 0 || ri.name[al] != '/' ||
            (after[0] && strcmp(ri.name + al + 1, after) <= 0))
            continue;
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", ri.name + al + 1);
        cJSON_AddItemToArray(arr, x);
    }
    if (!page_items(j, arr, "", qlimit(r))) {
        cJSON_Delete(j);
        return err(c, r, 500, "internal", "out of memory");
    }
    char room[2 * APP_NAME_MAX + 2];
    cJSON *x;
    cJSON_ArrayForEach(x, arr) {
        const char *inst = cJSON_GetObjectItemCaseSensitive(x, "name")->valuestring;
        snprintf(room, sizeof(room), "%s/%s", appname, inst);
        if (!so_engine_room_info(e, room, &ri))
            continue;
        cJSON_AddNumberToObject(x, "so_clients", (double)ri.clients);
        cJSON_AddNumberToObject(x, "objects", (double)ri.objects);
        size_t conns = 0;
        for (app_conn *k = c->srv->conns; k; k = k->next)
            conns += k->nc_connected && strcmp(k->app_name, appname) == 0 &&
                     strcmp(k->instance, inst) == 0;
        cJSON_AddNumberToObject(x, "connections", (double)conns);
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

static bool conn_delete(api *a, app_conn *c, const app_http_req *r, idem *ie, uint64_t id)
{
    app_conn *k = app_server_conn_by_id(c->srv, id);
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
    api *a = w->a;
    answer(a, w->c, w->r, w->deferred ? &w->later : NULL, w->e, st, j);
    w->c = NULL; /* answered */
    if (w->deferred) {
        free(w);
        /* a clustered send can be answered after the API's shutdown hook
         * (Redis' answers to the last sends): like on_write_durable */
        if (--a->durable_waits == 0 && a->stopping)
            api_free(a);
    }
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
        a->durable_waits++;
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

static void on_user_state(void *ud, int status, uint64_t last, uint64_t acked, uint64_t queued)
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
        cJSON_AddNumberToObject(j, "queued", (double)queued);
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

/* The resources of docs/api.md, each with the methods it takes. */
typedef enum api_res {
    RES_NONE = 0,           /* no such resource: 404 */
    RES_BAD,                /* a name in the path is malformed: 400 */
    RES_APPS,               /* /apps */
    RES_INSTANCES,          /* /apps/A/instances */
    RES_OBJECTS,            /* /apps/A/instances/I/objects */
    RES_OBJECT,             /* /apps/A/instances/I/objects/NAME... */
    RES_MESSAGES,           /* /apps/A/instances/I/messages */
    RES_LOCKS,              /* /apps/A/instances/I/locks */
    RES_PRESENCE,           /* /apps/A/instances/I/presence */
    RES_CHAT_MESSAGES,      /* /apps/A/chat/messages */
    RES_CHAT_USER,          /* /apps/A/chat/users/U */
    RES_USER_CONNS,         /* /apps/A/users/U/connections */
    RES_CONNS,              /* /connections */
    RES_CONN,               /* /connections/ID */
    RES_COUNT
} api_res;

enum { M_GET = 1, M_POST = 2, M_DELETE = 4 };

static const struct {
    unsigned methods;
    const char *allow;      /* the Allow header of a 405 */
} res_methods[RES_COUNT] = {
    [RES_APPS] = {M_GET, "Allow: GET, HEAD\r\n"},
    [RES_INSTANCES] = {M_GET, "Allow: GET, HEAD\r\n"},
    [RES_OBJECTS] = {M_GET, "Allow: GET, HEAD\r\n"},
    [RES_OBJECT] = {M_GET | M_POST, "Allow: GET, HEAD, POST\r\n"},
    [RES_MESSAGES] = {M_POST, "Allow: POST\r\n"},
    [RES_LOCKS] = {M_POST, "Allow: POST\r\n"},
    [RES_PRESENCE] = {M_GET, "Allow: GET, HEAD\r\n"},
    [RES_CHAT_MESSAGES] = {M_POST, "Allow: POST\r\n"},
    [RES_CHAT_USER] = {M_GET, "Allow: GET, HEAD\r\n"},
    [RES_USER_CONNS] = {M_DELETE, "Allow: DELETE\r\n"},
    [RES_CONNS] = {M_GET, "Allow: GET, HEAD\r\n"},
    [RES_CONN] = {M_DELETE, "Allow: DELETE\r\n"},
};

/* A request path taken apart: the resource and the names in it. */
typedef struct api_path {
    api_res res;
    const char *bad;                      /* RES_BAD: what is wrong (static) */
    char app[APP_NAME_MAX + 1];
    char room[2 * APP_NAME_MAX + 2];      /* "APP/INSTANCE" */
    char user[APP_NAME_MAX + 1];
    const char *name;                     /* RES_OBJECT: the rest of the path */
    uint64_t id;                          /* RES_CONN */
} api_path;

/* A cursor over the '/'-separated segments of a path (empty segments
 * are skipped, as they always were).  A segment points into the path. */
typedef struct path_cur {
    const char *p;
} path_cur;

static bool seg_next(path_cur *c, const char **s, size_t *n)
{
    const char *q = c->p;
    while (*q == '/')
        q++;
    if (!*q)
        return false;
    const char *e = strchr(q, '/');
    *s = q;
    *n = e ? (size_t)(e - q) : strlen(q);
    c->p = q + *n;
    return true;
}

static bool seg_is(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

/* True when the path has no segment left. */
static bool seg_end(path_cur *c)
{
    const char *s;
    size_t n;
    path_cur t = *c;
    return !seg_next(&t, &s, &n);
}

/* An application or instance name: [A-Za-z0-9_.-], 1 to APP_NAME_MAX
 * bytes, not starting with a dot (what clients may connect to). */
static bool name_ok(const char *s, size_t n)
{
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


static api_res path_bad(api_path *out, const char *why)
{
    out->bad = why;
    return out->res = RES_BAD;
}

static void copy_seg(char *dst, const char *s, size_t n)
{
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* /apps/APP/instances/INST/... after the instance */
static api_res parse_instance(path_cur *c, api_path *out)
{
    const char *s;
    size_t n;
    if (!seg_next(c, &s, &n))
        return RES_NONE; /* nothing at the instance itself */
    if (seg_is(s, n, "objects")) {
        const char *name = c->p;
        while (*name == '/')
            name++;
        if (!*name)
            return RES_OBJECTS;
        out->name = name;
        return RES_OBJECT;
    }
    api_res r = seg_is(s, n, "messages") ? RES_MESSAGES
                : seg_is(s, n, "locks")  ? RES_LOCKS
                : seg_is(s, n, "presence") ? RES_PRESENCE
                                          : RES_NONE;
    return r != RES_NONE && seg_end(c) ? r : RES_NONE;
}

/* /apps/APP/... after the application */
static api_res parse_app(path_cur *c, api_path *out)
{
    const char *s, *u;
    size_t n, un;
    if (!seg_next(c, &s, &n))
        return RES_NONE;
    if (seg_is(s, n, "instances")) {
        if (!seg_next(c, &s, &n))
            return RES_INSTANCES;
        if (!name_ok(s, n))
            return path_bad(out, "bad instance name");
        snprintf(out->room, sizeof(out->room), "%s/%.*s", out->app, (int)n, s);
        return parse_instance(c, out);
    }
    if (seg_is(s, n, "chat")) {
        if (!seg_next(c, &s, &n))
            return RES_NONE;
        if (seg_is(s, n, "messages"))
            return seg_end(c) ? RES_CHAT_MESSAGES : RES_NONE;
        if (!seg_is(s, n, "users") || !seg_next(c, &u, &un))
            return RES_NONE;
        if (!seg_end(c))
            return RES_NONE;
        if (!app_user_name_ok(u, un))
            return path_bad(out, "bad user name");
        copy_seg(out->user, u, un);
        return RES_CHAT_USER;
    }
    if (seg_is(s, n, "users") && seg_next(c, &u, &un) && seg_next(c, &s, &n) &&
        seg_is(s, n, "connections") && seg_end(c)) {
        if (!app_user_name_ok(u, un))
            return path_bad(out, "bad user name");
        copy_seg(out->user, u, un);
        return RES_USER_CONNS;
    }
    return RES_NONE;
}

/* Takes apart path, the part after "/api/v1" (percent-decoded, no NUL).
 * Pure: out->res is the resource (RES_NONE: 404, RES_BAD: 400 with
 * out->bad) and out's names are NUL-terminated copies, except out->name
 * which points into path. */
static void api_path_parse(const char *path, api_path *out)
{
    memset(out, 0, sizeof(*out));
    path_cur c = {path};
    const char *s;
    size_t n;
    if (!seg_next(&c, &s, &n)) {
        out->res = RES_NONE;
        return;
    }
    if (seg_is(s, n, "connections")) {
        if (!seg_next(&c, &s, &n)) {
            out->res = RES_CONNS;
            return;
        }
        if (!seg_end(&c)) {
            out->res = RES_NONE;
            return;
        }
        uint64_t id = 0;
        bool ok = n > 0 && n <= 20;
        for (size_t i = 0; ok && i < n; i++) {
            unsigned d = (unsigned)(s[i] - '0');
            ok = d <= 9 && id <= (UINT64_MAX - d) / 10;
            id = id * 10 + d;
        }
        if (!ok) {
            path_bad(out, "bad connection id");
            return;
        }
        out->id = id;
        out->res = RES_CONN;
        return;
    }
    if (!seg_is(s, n, "apps")) {
        out->res = RES_NONE;
        return;
    }
    if (!seg_next(&c, &s, &n)) {
        out->res = RES_APPS;
        return;
    }
    if (!name_ok(s, n)) {
        path_bad(out, "bad application name");
        return;
    }
    copy_seg(out->app, s, n);
    out->res = parse_app(&c, out);
}

static bool route(api *a, app_conn *c, const app_http_req *r, const api_key *k)
{
    unsigned m = r->method == HTTP_GET || r->method == HTTP_HEAD ? M_GET
                 : r->method == HTTP_POST                        ? M_POST
                 : r->method == HTTP_DELETE                      ? M_DELETE
                                                                 : 0;
    if (m != M_GET && !k->cfg->write)
        return err(c, r, 403, "forbidden", "this API key may only read (scope = read)");
    api_path ap;
    api_path_parse(r->path + strlen("/api/v1"), &ap);
    if (ap.res == RES_NONE)
        return err(c, r, 404, "not_found", "no such resource (docs/api.md)");
    if (ap.res == RES_BAD)
        return err(c, r, 400, "bad_request", ap.bad);
    if (!(res_methods[ap.res].methods & m)) {
        static const char body[] = "{\"error\":{\"code\":\"method_not_allowed\",\"message\":"
                                   "\"not a method of this resource (see Allow)\"}}\n";
        app_http_respond(c, r, 405, "application/json", res_methods[ap.res].allow, body,
                         sizeof(body) - 1);
        return true;
    }
    idem *ie = NULL;
    if (m != M_GET && idem_check(a, c, r, k, &ie))
        return true;
    switch (ap.res) {
    case RES_APPS: return apps_list(c, r);
    case RES_INSTANCES: return instances_list(c, r, ap.app);
    case RES_OBJECTS: return objects_list(c, r, ap.room);
    case RES_OBJECT:
        return m == M_GET ? object_get(c, r, ap.room, ap.name)
                          : object_post_begin(a, c, r, ie, ap.room, ap.name);
    case RES_MESSAGES: return message_post(a, c, r, ie, ap.room);
    case RES_LOCKS: return lock_post(a, c, r, ie, ap.room);
    case RES_PRESENCE: return presence_get(c, r, ap.room);
    case RES_CHAT_MESSAGES: return chat_post(a, c, r, ie, ap.app);
    case RES_CHAT_USER: return chat_user_get(c, r, ap.app, ap.user);
    case RES_USER_CONNS: return user_conns_delete(a, c, r, ie, ap.app, ap.user);
    case RES_CONNS: return conns_list(c, r);
    case RES_CONN: return conn_delete(a, c, r, ie, ap.id);
    default: break;
    }
    return err(c, r, 500, "internal", "unrouted resource"); /* cannot happen */
}

/* ---- metrics and health ---- */

static void put_counter(sh_buf *b, const char *name, const char *help, double v)
{
    app_metric_head(b, name, "counter", help);
    app_metric_value(b, name, NULL, v);
}

/* A counter with one label: one sample per value of it. */
static void put_counters_by(sh_buf *b, const char *name, const char *help, const char *label,
                            const char *const *values, const uint64_t *counts, int n)
{
    char lab[128];
    app_metric_head(b, name, "counter", help);
    for (int i = 0; i < n; i++) {
        lab[0] = '\0';
        app_metric_label(lab, sizeof(lab), label, values[i]);
        app_metric_value(b, name, lab, (double)counts[i]);
    }
}

static void put_gauge(sh_buf *b, const char *name, const char *help, double v)
{
    app_metric_head(b, name, "gauge", help);
    app_metric_value(b, name, NULL, v);
}

/* VmRSS and VmHWM of this process in KiB (-1 when unknown), one read of
 * /proc/self/status. */
static void proc_mem_kb(long *rss, long *hwm)
{
    *rss = *hwm = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            *rss = atol(line + 6);
        else if (strncmp(line, "VmHWM:", 6) == 0)
            *hwm = atol(line + 6);
    }
    fclose(f);
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
        /* HTTP has no connect step: a request connection counts as connected */
        int st = k->closing ? 2 : (k->nc_connected || !k->tr->wants_session) ? 1 : 0;
        live[app_tr_index(k->tr)][st]++;
        bin += k->bytes_in;
        bout += k->bytes_out;
    }
    app_metric_head(b, "sohub_connections", "gauge",
                    "Open connections by transport and state (handshake: RTMP or WebSocket "
                    "client not connected yet).");
    static const char *const stn[3] = {"handshake", "connected", "closing"};
    for (int t = 0; t < APP_TR_COUNT; t++)
        for (int st = 0; st < 3; st++) {
            lab[0] = '\0';
            app_metric_label(lab, sizeof(lab), "transport", trn[t]);
            app_metric_label(lab, sizeof(lab), "state", stn[st]);
            app_metric_value(b, "sohub_connections", lab, (double)live[t][st]);
        }
    put_counters_by(b, "sohub_connects_total", "Connects accepted, by transport.", "transport",
                    trn, s->st.connects, APP_TR_COUNT);
    put_counters_by(b, "sohub_connect_refusals_total", "Connects refused, by reason.", "reason",
                    refn, s->st.refused, APP_REFUSE_COUNT);
    put_counters_by(b, "sohub_accept_refusals_total",
                    "TCP connections closed at accept, by limit.", "limit", dropn,
                    s->st.dropped, APP_DROP_COUNT);
    put_counters_by(b, "sohub_connections_closed_total",
                    "Connections the server closed, by cause.", "cause", closen, s->st.closed,
                    APP_CLOSE_COUNT);
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
        put_counter(b, "sohub_so_object_loads_total",
                    "Shared objects brought into memory (read from the store or created).",
                    (double)es.object_loads);
        put_counter(b, "sohub_so_object_unloads_total",
                    "Shared objects that left memory (room unloaded, temporary object unused).",
                    (double)es.object_unloads);
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
        app_cluster_so *cso = app_so_glue_cluster(g);
        if (cso) { /* clustered applications (docs/cluster.md) */
            app_cluster_so_stats ks;
            app_cluster_so_get_stats(cso, &ks);
            put_counter(b, "sohub_cluster_so_proposals_total",
                        "Client and server writes sent to Redis as one update script each.",
                        (double)ks.proposals);
            put_counter(b, "sohub_cluster_so_updates_applied_total",
                        "Updates of clustered objects applied from Redis (every node's).",
                        (double)ks.applied);
            put_counter(b, "sohub_cluster_so_stale_total",
                        "Keys Redis refused as stale (rule 3).", (double)ks.stale);
            put_counter(b, "sohub_cluster_so_failures_total",
                        "Writes answered StoreFailed (Redis down, time-out, lost writes).",
                        (double)ks.failed);
            put_counter(b, "sohub_cluster_so_cas_conflicts_total",
                        "Server compare-and-set writes that found another version in Redis.",
                        (double)ks.cas_failed);
            put_counter(b, "sohub_cluster_so_over_quota_total",
                        "Keys Redis refused for their application's persistent quotas.",
                        (double)ks.over_quota);
            put_counter(b, "sohub_cluster_so_snapshots_total",
                        "Rooms read from Redis (loads and resyncs).", (double)ks.snapshots);
            put_counter(b, "sohub_cluster_so_resets_total",
                        "Rooms whose clients got the whole state again for a new epoch.",
                        (double)ks.resets);
            put_counter(b, "sohub_cluster_so_temp_made_total",
                        "Temporary objects Redis made (every node's leases).",
                        (double)ks.temp_made);
            put_counter(b, "sohub_cluster_so_temp_dropped_total",
                        "Temporary objects Redis dropped (no live lease left).",
                        (double)ks.temp_gone);
        }
    }
    /* chat */
    chat_stats cs;
    chat_get_stats(s, &cs);
    put_counter(b, "sohub_chat_messages_stored_total", "Private messages stored.", (double)cs.stored);
    put_counter(b, "sohub_chat_messages_delivered_total",
                "Private messages sent to a connection (live or from the store).",
                (double)cs.delivered);
    put_counter(b, "sohub_chat_messages_acknowledged_total",
                "Private messages acknowledged by their recipient.", (double)cs.acked);
    put_gauge(b, "sohub_chat_messages_queued", "Private messages stored, not yet acknowledged.",
              (double)cs.unacked);
    put_counter(b, "sohub_chat_store_failures_total", "Chat store batches that failed.",
                (double)cs.batch_failures);
    /* the Redis links of a cluster */
    app_cluster *cl = app_cluster_of(s);
    if (cl) {
        uint64_t downs = 0, unrepl = 0, links = 0, up = 0;
        size_t it = 0;
        for (app_cluster_link *l; (l = app_cluster_link_next(cl, &it)) != NULL;) {
            links++;
            up += app_cluster_link_up(l);
            downs += app_cluster_link_downs(l);
            unrepl += app_redis_unreplicated(app_cluster_cmd(l));
        }
        put_gauge(b, "sohub_cluster_links", "Redis links of this node.", (double)links);
        put_gauge(b, "sohub_cluster_links_up", "Redis links up now.", (double)up);
        put_counter(b, "sohub_cluster_link_downs_total", "Times a Redis link went down.",
                    (double)downs);
        put_counter(b, "sohub_cluster_writes_unreplicated_total",
                    "Writes answered as not stored because WAIT found too few replicas.",
                    (double)unrepl);
    }
    /* the process */
    app_metric_histo(b, "sohub_event_loop_lag_seconds",
                     "How late a 100 ms timer of the event loop fired.", s->lag);
    long rss, hwm;
    proc_mem_kb(&rss, &hwm);
    put_gauge(b, "sohub_process_resident_memory_bytes", "Resident memory (VmRSS).",
              rss < 0 ? NAN : (double)rss * 1024);
    put_gauge(b, "sohub_process_resident_memory_peak_bytes", "Peak resident memory (VmHWM).",
              hwm < 0 ? NAN : (double)hwm * 1024);
    struct rusage ru;
    double cpu = NAN;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
              ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
    put_counter(b, "sohub_process_cpu_seconds_total",
                "CPU time of the process, user and system, all threads.", cpu);
}

/* /readyz: listeners up and the stores writing. */
static bool ready(app_server *s, const char **why)
{
    if (s->stopping) {
        *why = "stopping";
        return false;
    }
    const app_config *cfg = s->cfg;
    if (!s->rtmp.active) {
        *why = "rtmp listener down";
        return false;
    }
    if (*cfg->http_listen && !s->http.active) {
        *why = "http listener down";
        return false;
    }
    if (*cfg->https_listen && !s->https.active) {
        *why = "https listener down";
        return false;
    }
    app_so_glue *g = app_so_glue_of(s);
    if (g && !app_so_store_ok(g)) {
        *why = "the shared-object store is failing";
        return false;
    }
    /* a clustered application's writes are refused while its Redis is
     * away: a load balancer should send new clients to another node */
    app_cluster *cl = app_cluster_of(s);
    size_t it = 0;
    for (app_cluster_link *l; cl && (l = app_cluster_link_next(cl, &it)) != NULL;) {
        if (!app_cluster_link_up(l)) {
            *why = "a Redis link of the cluster is down";
            return false;
        }
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
    app_server_set_ext(s, APP_EXT_API, NULL);
    a->stopping = true;
    if (a->durable_waits == 0)
        api_free(a);
}

/* What the API holds, once nothing waits for the store (the idempotency
 * entries of those waits are answered into). */
static void api_free(api *a)
{
    while (a->idem_head) {
        idem *e = a->idem_head;
        a->idem_head = e->next;
        idem_free(e);
    }
    sh_map_cleanup(&a->idem);
    free(a->keys);
    a->keys = NULL;
    EVP_MD_CTX_free(a->md_ctx);
    EVP_MD_free(a->sha256);
    a->md_ctx = NULL;
    a->sha256 = NULL;
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
    a->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL); /* NULL: SHA256() is used instead */
    a->md_ctx = EVP_MD_CTX_new();
    uv_timer_init(app_server_loop(srv), &a->lock_timer);
    a->lock_timer.data = a;
    int rc = app_server_add_http_handler(srv, 1u << APP_LISTEN_ADMIN, "/", handle, a);
    if (rc == 0)
        rc = app_server_on_shutdown(srv, on_shutdown, a);
    if (rc == 0)
        rc = app_server_on_reconfigure(srv, on_reconfigure, a);
    if (rc) {
        EVP_MD_CTX_free(a->md_ctx);
        EVP_MD_free(a->sha256);
        free(a->keys);
        sh_map_cleanup(&a->idem);
        uv_close((uv_handle_t *)&a->lock_timer, on_timer_closed); /* frees a */
        return rc;
    }
    app_server_set_ext(srv, APP_EXT_API, a);
    if (*cfg->admin_listen && cfg->napi_keys == 0)
        SH_LOG(SH_LOG_WARN, "admin_listen is on but no [api_key] section exists: /api/v1 "
                            "refuses every request (metrics and health still answer)");
    return 0;
}
