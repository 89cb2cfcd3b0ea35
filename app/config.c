/* config.c - defaults table, INI file (inih), command line, validation. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sh_err.h"
#include "sh_log.h"

/* ---- the defaults table of numeric [server] options ---- */

typedef enum { OPT_U32, OPT_U64 } opt_kind;

typedef struct num_opt {
    const char *key;
    size_t off;
    opt_kind kind;
    uint64_t def, min, max;
} num_opt;

#define U32(field, d, lo, hi) { #field, offsetof(app_config, field), OPT_U32, (d), (lo), (hi) }
#define U64(field, d, lo, hi) { #field, offsetof(app_config, field), OPT_U64, (d), (lo), (hi) }

static const num_opt num_opts[] = {
    U32(handshake_timeout_ms, 10000, 10, 3600000),
    U32(idle_timeout_ms, 60000, 10, 86400000),
    U32(ping_interval_ms, 15000, 10, 86400000),
    U32(max_message_size, 1u << 20, 1024, 1u << 30),
    U32(max_chunk_size, 65536, 128, 0x7fffffff),
    U32(max_chunk_streams, 64, 2, 65599),
    U64(max_buffered_bytes, (uint64_t)4 << 20, 1024, (uint64_t)1 << 32),
    U32(max_connections, 4096, 1, 1000000),
    U32(max_connections_per_ip, 1024, 1, 1000000),
    U64(max_output_bytes, (uint64_t)8 << 20, 4096, (uint64_t)1 << 34),
    U64(max_client_memory, (uint64_t)1 << 30, 0, (uint64_t)1 << 40),
    U32(send_timeout_ms, 60000, 100, 86400000),
    U32(preconnect_max_message_size, 16384, 1024, 1u << 30),
    U32(http_max_target, 4096, 64, 8192),
    U32(http_max_header_bytes, 16384, 1024, 1u << 20),
    U64(http_max_body, (uint64_t)1 << 20, 0, (uint64_t)1 << 30),
    U64(http_max_file, (uint64_t)16 << 20, 0, (uint64_t)1 << 32),
    U32(http_request_timeout_ms, 10000, 100, 3600000),
    U32(max_streams, 16, 1, 65535),
    U32(max_pending_calls, 64, 1, 65536),
    U32(messages_per_read, 64, 1, 1 << 20),
    U32(out_chunk_size, 4096, 128, 16777215),
    U32(window_ack_size, 2500000, 4096, 0x7fffffff),
    U32(max_amf_depth, 32, 1, 1024),
    U32(max_amf_string, 1u << 20, 64, 1u << 30),
    U32(max_amf_elements, 65536, 16, 1u << 24),
    U64(so_congestion_bytes, (uint64_t)256 << 10, 1024, (uint64_t)1 << 34),
    U32(so_max_updates_per_sec, 200, 0, 10000000),
    U32(so_unload_idle_s, 60, 0, 86400),
    U64(chat_max_stored, 1000000, 1, (uint64_t)1 << 40),
};

#define NUM_OPTS (sizeof(num_opts) / sizeof(num_opts[0]))

static const char *const default_listen = "127.0.0.1:1935";
static const char *const default_log_level = "info";
static const char *const default_data_dir = "./data";

static int errf(char *err, size_t errsz, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int errf(char *err, size_t errsz, int code, const char *fmt, ...)
{
    if (err && errsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errsz, fmt, ap);
        va_end(ap);
    }
    return code;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d) {
        fputs("out of memory\n", stderr);
        abort();
    }
    return d;
}

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = xstrdup(v);
}

void app_app_config_defaults(app_app_config *a)
{
    memset(a, 0, sizeof(*a));
    a->auth = APP_AUTH_NONE;
    a->secret = xstrdup("");
    a->read_access = xstrdup("/");
    a->write_access = xstrdup("/");
    a->conflict = APP_CONFLICT_REJECT;
    a->store = APP_STORE_SQLITE;
    a->commit_interval_ms = 0; /* one commit in flight already groups changes */
    a->history_depth = 1024;
    a->max_so_per_conn = 64;
    a->max_so_slots = 10000;
    a->max_persistent_objects = 100000;
    a->max_persistent_bytes = (uint64_t)1 << 30;
    a->users = NULL; /* no allocation: callers free only the strings they know */
    a->redis = xstrdup("");
    a->presence = false;
    a->chat_max_text = 4096;
    a->chat_rate = 20;
    a->chat_queue = 1000;
}

void app_app_config_cleanup(app_app_config *a)
{
    free(a->secret);
    free(a->read_access);
    free(a->write_access);
    free(a->users);
    free(a->origins);
    free(a->redis);
}

void app_config_init(app_config *c)
{
    memset(c, 0, sizeof(*c));
    c->listen = xstrdup(default_listen);
    c->log_level = xstrdup(default_log_level);
    c->data_dir = xstrdup(default_data_dir);
    c->http_listen = xstrdup("");
    c->admin_listen = xstrdup("");
    c->https_listen = xstrdup("");
    c->tls_cert = xstrdup("");
    c->tls_key = xstrdup("");
    c->web_root = xstrdup("");
    c->admin_root = xstrdup("");
    c->ws_path = xstrdup("/ws");
    c->ws_deflate = true;
    c->cluster_redis = xstrdup("");
    c->cluster_node = xstrdup("");
    c->cluster_timeout_ms = 2000;
    c->cluster_node_ttl_ms = 10000;
    c->cluster_wait_timeout_ms = 1000;
    for (size_t i = 0; i < NUM_OPTS; i++) {
        char *f = (char *)c + num_opts[i].off;
        if (num_opts[i].kind == OPT_U32)
            *(uint32_t *)(void *)f = (uint32_t)num_opts[i].def;
        else
            *(uint64_t *)(void *)f = num_opts[i].def;
    }
}

void app_config_cleanup(app_config *c)
{
    free(c->listen);
    free(c->log_level);
    free(c->data_dir);
    free(c->port_file);
    free(c->config_path);
    free(c->http_listen);
    free(c->cluster_redis);
    free(c->cluster_node);
    free(c->admin_listen);
    free(c->https_listen);
    free(c->tls_cert);
    free(c->tls_key);
    free(c->web_root);
    free(c->admin_root);
    for (size_t i = 0; i < c->napi_keys; i++)
        free(c->api_keys[i].secret);
    free(c->api_keys);
    free(c->ws_path);
    for (size_t i = 0; i < c->napps; i++)
        app_app_config_cleanup(&c->apps[i]);
    free(c->apps);
    for (size_t i = 0; i < c->nsample_settings; i++) {
        free(c->sample_settings[i].section);
        free(c->sample_settings[i].key);
        free(c->sample_settings[i].value);
    }
    free(c->sample_settings);
    memset(c, 0, sizeof(*c));
}

static int parse_u64(const char *v, uint64_t *out)
{
    if (!*v || *v == '-' || *v == '+')
        return -1;
    errno = 0;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v)
        return -1;
    /* optional size suffix: k, m, g (powers of 1024) */
    uint64_t mul = 1;
    if (*end == 'k' || *end == 'K') { mul = 1024; end++; }
    else if (*end == 'm' || *end == 'M') { mul = 1024 * 1024; end++; }
    else if (*end == 'g' || *end == 'G') { mul = 1024 * 1024 * 1024; end++; }
    if (*end)
        return -1;
    if (mul > 1 && n > UINT64_MAX / mul)
        return -1;
    *out = (uint64_t)n * mul;
    return 0;
}

int app_config_set_server(app_config *c, const char *key, const char *value,
                          char *err, size_t errsz)
{
    if (strcmp(key, "listen") == 0) { set_str(&c->listen, value); return 0; }
    if (strcmp(key, "log_level") == 0) { set_str(&c->log_level, value); return 0; }
    if (strcmp(key, "data_dir") == 0) { set_str(&c->data_dir, value); return 0; }
    if (strcmp(key, "http_listen") == 0) { set_str(&c->http_listen, value); return 0; }
    if (strcmp(key, "admin_listen") == 0) { set_str(&c->admin_listen, value); return 0; }
    if (strcmp(key, "https_listen") == 0) { set_str(&c->https_listen, value); return 0; }
    if (strcmp(key, "tls_cert") == 0) { set_str(&c->tls_cert, value); return 0; }
    if (strcmp(key, "tls_key") == 0) { set_str(&c->tls_key, value); return 0; }
    if (strcmp(key, "web_root") == 0) { set_str(&c->web_root, value); return 0; }
    if (strcmp(key, "admin_root") == 0) { set_str(&c->admin_root, value); return 0; }
    if (strcmp(key, "ws_path") == 0) {
        if (value[0] != '/' || strlen(value) > 128 || strpbrk(value, "?#% "))
            return errf(err, errsz, SH_EINVAL, "ws_path: '%s' is not a path like /ws", value);
        set_str(&c->ws_path, value);
        return 0;
    }
    if (strcmp(key, "ws_deflate") == 0) {
        if (strcmp(value, "true") == 0 || strcmp(value, "on") == 0) c->ws_deflate = true;
        else if (strcmp(value, "false") == 0 || strcmp(value, "off") == 0) c->ws_deflate = false;
        else return errf(err, errsz, SH_EINVAL, "ws_deflate: '%s' is not true|false", value);
        return 0;
    }
    if (strcmp(key, "log_format") == 0) {
        int f = sh_log_format_parse(value);
        if (f < 0)
            return errf(err, errsz, SH_EINVAL, "log_format: '%s' is not text|json", value);
        c->log_format = f;
        return 0;
    }
    if (strcmp(key, "store_sync") == 0) {
        if (strcmp(value, "normal") == 0) c->store_sync_full = false;
        else if (strcmp(value, "full") == 0) c->store_sync_full = true;
        else return errf(err, errsz, SH_EINVAL, "store_sync: '%s' is not normal|full", value);
        return 0;
    }
    for (size_t i = 0; i < NUM_OPTS; i++) {
        const num_opt *o = &num_opts[i];
        if (strcmp(key, o->key) != 0)
            continue;
        uint64_t n;
        if (parse_u64(value, &n) || n < o->min || n > o->max)
            return errf(err, errsz, SH_EINVAL,
                        "%s: '%s' is not a number in %llu..%llu", key, value,
                        (unsigned long long)o->min, (unsigned long long)o->max);
        char *f = (char *)c + o->off;
        if (o->kind == OPT_U32)
            *(uint32_t *)(void *)f = (uint32_t)n;
        else
            *(uint64_t *)(void *)f = n;
        return 0;
    }
    return errf(err, errsz, SH_ENOTFOUND, "unknown key '%s' in [server]", key);
}

static int set_app_u32(uint32_t *dst, const char *key, const char *value,
                       uint64_t lo, uint64_t hi, char *err, size_t errsz)
{
    uint64_t n;
    if (parse_u64(value, &n) || n < lo || n > hi)
        return errf(err, errsz, SH_EINVAL, "%s: '%s' is not a number in %llu..%llu",
                    key, value, (unsigned long long)lo, (unsigned long long)hi);
    *dst = (uint32_t)n;
    return 0;
}

static int set_app_u64(uint64_t *dst, const char *key, const char *value,
                       uint64_t lo, uint64_t hi, char *err, size_t errsz)
{
    uint64_t n;
    if (parse_u64(value, &n) || n < lo || n > hi)
        return errf(err, errsz, SH_EINVAL, "%s: '%s' is not a number in %llu..%llu",
                    key, value, (unsigned long long)lo, (unsigned long long)hi);
    *dst = n;
    return 0;
}

static int app_config_set_app(app_app_config *a, const char *key, const char *value,
                              char *err, size_t errsz)
{
    if (strcmp(key, "auth") == 0) {
        if (strcmp(value, "none") == 0) a->auth = APP_AUTH_NONE;
        else if (strcmp(value, "token") == 0) a->auth = APP_AUTH_TOKEN;
        else return errf(err, errsz, SH_EINVAL, "auth: '%s' is not none|token", value);
        return 0;
    }
    if (strcmp(key, "secret") == 0) { set_str(&a->secret, value); return 0; }
    if (strcmp(key, "read_access") == 0) { set_str(&a->read_access, value); return 0; }
    if (strcmp(key, "write_access") == 0) { set_str(&a->write_access, value); return 0; }
    if (strcmp(key, "conflict") == 0) {
        if (strcmp(value, "reject") == 0) a->conflict = APP_CONFLICT_REJECT;
        else if (strcmp(value, "lww") == 0) a->conflict = APP_CONFLICT_LWW;
        else return errf(err, errsz, SH_EINVAL, "conflict: '%s' is not reject|lww", value);
        return 0;
    }
    if (strcmp(key, "store") == 0) {
        if (strcmp(value, "sqlite") == 0) a->store = APP_STORE_SQLITE;
        else if (strcmp(value, "memory") == 0) a->store = APP_STORE_MEMORY;
        else return errf(err, errsz, SH_EINVAL, "store: '%s' is not sqlite|memory", value);
        return 0;
    }
    if (strcmp(key, "commit_interval_ms") == 0)
        return set_app_u32(&a->commit_interval_ms, key, value, 0, 60000, err, errsz);
    if (strcmp(key, "history_depth") == 0)
        return set_app_u32(&a->history_depth, key, value, 0, 1000000, err, errsz);
    if (strcmp(key, "max_so_per_conn") == 0)
        return set_app_u32(&a->max_so_per_conn, key, value, 1, 65536, err, errsz);
    if (strcmp(key, "max_so_slots") == 0)
        return set_app_u32(&a->max_so_slots, key, value, 1, 10000000, err, errsz);
    if (strcmp(key, "max_persistent_objects") == 0)
        return set_app_u64(&a->max_persistent_objects, key, value, 0, (uint64_t)1 << 40,
                           err, errsz);
    if (strcmp(key, "max_persistent_bytes") == 0)
        return set_app_u64(&a->max_persistent_bytes, key, value, 0, (uint64_t)1 << 50,
                           err, errsz);
    if (strcmp(key, "users") == 0) { set_str(&a->users, value); return 0; }
    if (strcmp(key, "presence") == 0) {
        if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0)
            a->presence = true;
        else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 ||
                 strcmp(value, "0") == 0)
            a->presence = false;
        else
            return errf(err, errsz, SH_EINVAL, "presence: '%s' is not true|false", value);
        return 0;
    }
    if (strcmp(key, "chat_max_text") == 0)
        return set_app_u32(&a->chat_max_text, key, value, 1, 1u << 20, err, errsz);
    if (strcmp(key, "chat_rate") == 0)
        return set_app_u32(&a->chat_rate, key, value, 0, 1000000, err, errsz);
    if (strcmp(key, "chat_queue") == 0)
        return set_app_u32(&a->chat_queue, key, value, 1, 10000000, err, errsz);
    if (strcmp(key, "max_connections") == 0)
        return set_app_u32(&a->max_connections, key, value, 0, 1000000, err, errsz);
    if (strcmp(key, "origins") == 0) { set_str(&a->origins, value); return 0; }
    if (strcmp(key, "redis") == 0) {
        char host[64];
        int port;
        if (*value && strcmp(value, "off") != 0 &&
            app_config_split_hostport(value, host, sizeof(host), &port) != 0)
            return errf(err, errsz, SH_EINVAL, "redis: '%s' is not HOST:PORT or off", value);
        set_str(&a->redis, value);
        return 0;
    }
    return errf(err, errsz, SH_ENOTFOUND, "unknown key '%s' in [app %s]", key, a->name);
}

/* ---- INI parsing ---- */

typedef struct ini_ctx {
    app_config *c;
    const char *origin;
    FILE *f;             /* file input, or */
    const char *text;    /* string input */
    int line;            /* line the reader returned last */
    int failed;
    char *err;
    size_t errsz;
} ini_ctx;

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > APP_NAME_MAX)
        return false;
    if (strcmp(s, "*") == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.'))
            return false;
    }
    return s[0] != '.';
}

/* "KIND NAME" or "KIND:NAME" -> NAME (pointer into section), else NULL. */
static const char *section_name(const char *section, const char *kind)
{
    size_t k = strlen(kind);
    if (strncmp(section, kind, k) != 0)
        return NULL;
    const char *p = section + k;
    if (*p != ' ' && *p != ':' && *p != '\t')
        return NULL;
    p++;
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static const char *app_section_name(const char *section) { return section_name(section, "app"); }
static const char *key_section_name(const char *section) { return section_name(section, "api_key"); }

static app_api_key *find_or_add_key(app_config *c, const char *name)
{
    for (size_t i = 0; i < c->napi_keys; i++)
        if (strcmp(c->api_keys[i].name, name) == 0)
            return &c->api_keys[i];
    if (c->napi_keys >= APP_CONFIG_MAX_API_KEYS)
        return NULL;
    app_api_key *n = realloc(c->api_keys, (c->napi_keys + 1) * sizeof(*n));
    if (!n)
        return NULL;
    c->api_keys = n;
    app_api_key *k = &c->api_keys[c->napi_keys++];
    memset(k, 0, sizeof(*k));
    k->secret = xstrdup("");
    snprintf(k->name, sizeof(k->name), "%.*s", APP_NAME_MAX, name);
    return k;
}
static const char *sample_section_name(const char *section) { return section_name(section, "sample"); }

static int add_sample_setting(app_config *c, const char *sec, const char *key,
                              const char *value, int line)
{
    if (c->nsample_settings >= APP_CONFIG_MAX_SAMPLE_SETTINGS)
        return SH_ELIMIT;
    app_config_setting *n = realloc(c->sample_settings,
                                    (c->nsample_settings + 1) * sizeof(*n));
    if (!n)
        return SH_ENOMEM;
    c->sample_settings = n;
    app_config_setting *e = &n[c->nsample_settings];
    e->section = strdup(sec);
    e->key = strdup(key);
    e->value = strdup(value);
    e->line = line;
    if (!e->section || !e->key || !e->value) {
        free(e->section);
        free(e->key);
        free(e->value);
        return SH_ENOMEM;
    }
    c->nsample_settings++;
    return 0;
}

static app_app_config *find_or_add_app(ini_ctx *x, const char *name)
{
    app_config *c = x->c;
    for (size_t i = 0; i < c->napps; i++)
        if (strcmp(c->apps[i].name, name) == 0)
            return &c->apps[i];
    if (c->napps >= APP_CONFIG_MAX_APPS)
        return NULL;
    app_app_config *n = realloc(c->apps, (c->napps + 1) * sizeof(*n));
    if (!n)
        return NULL;
    c->apps = n;
    app_app_config *a = &c->apps[c->napps++];
    app_app_config_defaults(a);
    snprintf(a->name, sizeof(a->name), "%.*s", APP_NAME_MAX, name); /* valid_name() checked the length */
    return a;
}

static int ini_fail(ini_ctx *x, const char *fmt, const char *detail)
{
    if (!x->failed) {
        char msg[APP_CONFIG_ERR_MAX];
        snprintf(msg, sizeof(msg), fmt, detail);
        errf(x->err, x->errsz, SH_EINVAL, "%s:%d: %s", x->origin, x->line, msg);
    }
    x->failed = 1;
    return 0;
}

/* Registers a section when its header line is read, so an empty
 * [app NAME] section still declares the application. */
static void ini_note_section(ini_ctx *x, const char *line)
{
    while (*line == ' ' || *line == '\t')
        line++;
    if (*line != '[')
        return;
    const char *end = strchr(line, ']');
    if (!end)
        return;
    char sec[APP_NAME_MAX + 16];
    size_t n = (size_t)(end - line - 1);
    if (n >= sizeof(sec)) {
        ini_fail(x, "%s", "section name too long");
        return;
    }
    memcpy(sec, line + 1, n);
    sec[n] = '\0';
    while (n > 0 && (sec[n - 1] == ' ' || sec[n - 1] == '\t'))
        sec[--n] = '\0';
    const char *name = app_section_name(sec);
    if (strcmp(sec, "server") == 0 || strcmp(sec, "cluster") == 0)
        return;
    const char *sample = sample_section_name(sec);
    if (sample) {
        if (!valid_name(sample) || strcmp(sample, "*") == 0)
            ini_fail(x, "bad sample name '%s'", sample);
        return;
    }
    const char *key = key_section_name(sec);
    if (key) {
        if (!valid_name(key) || strcmp(key, "*") == 0)
            ini_fail(x, "bad api_key name '%s'", key);
        else if (!find_or_add_key(x->c, key))
            ini_fail(x, "%s", "too many [api_key] sections");
        return;
    }
    if (!name)
        ini_fail(x, "unknown section [%s] (expected [server], [cluster], [app NAME], "
                    "[api_key NAME] or [sample NAME])", sec);
    else if (!valid_name(name))
        ini_fail(x, "bad application name '%s' (letters, digits, _ - . or *)", name);
    else if (!find_or_add_app(x, name))
        ini_fail(x, "%s", "too many [app] sections");
}

static char *ini_read_line(char *str, int num, void *stream)
{
    ini_ctx *x = stream;
    char *r;
    if (x->f) {
        r = fgets(str, num, x->f);
    } else {
        if (!*x->text)
            return NULL;
        size_t i = 0;
        while (x->text[i] && x->text[i] != '\n' && i + 2 < (size_t)num)
            i++;
        if (x->text[i] == '\n')
            i++;
        memcpy(str, x->text, i);
        str[i] = '\0';
        x->text += i;
        r = str;
    }
    if (r) {
        x->line++;
        ini_note_section(x, r);
    }
    return r;
}

static int ini_handler_fn(void *user, const char *section, const char *name, const char *value)
{
    ini_ctx *x = user;
    char err[APP_CONFIG_ERR_MAX];
    if (!name) /* section callback of builds with INI_CALL_HANDLER_ON_NEW_SECTION */
        return 1;
    if (x->failed)
        return 0;
    if (strcmp(section, "server") == 0) {
        if (app_config_set_server(x->c, name, value, err, sizeof(err)))
            return ini_fail(x, "%s", err);
        return 1;
    }
    if (strcmp(section, "cluster") == 0) {
        if (app_config_set_cluster(x->c, name, value, err, sizeof(err)))
            return ini_fail(x, "%s", err);
        return 1;
    }
    const char *sample = sample_section_name(section);
    if (sample) {
        int rc = add_sample_setting(x->c, sample, name, value, x->line);
        if (rc)
            return ini_fail(x, "[sample] setting: %s", sh_strerror(rc));
        return 1;
    }
    const char *kname = key_section_name(section);
    if (kname) {
        app_api_key *k = find_or_add_key(x->c, kname);
        if (!k)
            return ini_fail(x, "%s", "too many [api_key] sections");
        if (strcmp(name, "secret") == 0) {
            set_str(&k->secret, value);
        } else if (strcmp(name, "scope") == 0) {
            if (strcmp(value, "read") == 0)
                k->write = false;
            else if (strcmp(value, "write") == 0)
                k->write = true;
            else
                return ini_fail(x, "scope: '%s' is not read|write", value);
        } else {
            return ini_fail(x, "unknown key '%s' in [api_key]", name);
        }
        return 1;
    }
    const char *app = app_section_name(section);
    if (!app) {
        if (!*section)
            return ini_fail(x, "key '%s' outside a section", name);
        return ini_fail(x, "unknown section [%s]", section);
    }
    app_app_config *a = NULL;
    for (size_t i = 0; i < x->c->napps; i++)
        if (strcmp(x->c->apps[i].name, app) == 0)
            a = &x->c->apps[i];
    if (!a)
        return ini_fail(x, "bad section [%s]", section);
    if (app_config_set_app(a, name, value, err, sizeof(err)))
        return ini_fail(x, "%s", err);
    return 1;
}

static int ini_run(ini_ctx *x)
{
    int rc = ini_parse_stream(ini_read_line, x, ini_handler_fn, x);
    if (x->failed)
        return SH_EINVAL;
    if (rc > 0)
        return errf(x->err, x->errsz, SH_EINVAL, "%s:%d: syntax error", x->origin, rc);
    if (rc < 0)
        return errf(x->err, x->errsz, SH_EIO, "%s: cannot parse", x->origin);
    return 0;
}

int app_config_load_file(app_config *c, const char *path, char *err, size_t errsz)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return errf(err, errsz, SH_EIO, "%s: %s", path, strerror(errno));
    ini_ctx x = {.c = c, .origin = path, .f = f, .err = err, .errsz = errsz};
    int rc = ini_run(&x);
    fclose(f);
    if (rc == 0)
        set_str(&c->config_path, path);
    return rc;
}

int app_config_load_string(app_config *c, const char *text, const char *origin,
                           char *err, size_t errsz)
{
    ini_ctx x = {.c = c, .origin = origin, .text = text, .err = err, .errsz = errsz};
    return ini_run(&x);
}

/* ---- command line ---- */

void app_config_usage(FILE *f, const char *argv0)
{
    fprintf(f,
            "usage: %s [options]\n"
            "  --listen HOST:PORT   address to listen on (default %s; port 0 = any free port)\n"
            "  --config FILE        INI configuration file (see docs/configuration.md)\n"
            "  --data-dir DIR       directory for persistent data (default %s)\n"
            "  --log-level LEVEL    error, warn, info or debug (default %s)\n"
            "  --port-file FILE     write the bound port number to FILE once listening\n"
            "  --set KEY=VALUE      set one [server] option (repeatable)\n"
            "  --check              check the configuration, print the result, exit\n"
            "  --help, --version\n",
            argv0, default_listen, default_data_dir, default_log_level);
}

int app_config_parse_args(app_config *c, int argc, char **argv, char *err, size_t errsz)
{
    enum { O_LISTEN = 1, O_CONFIG, O_DATA, O_LEVEL, O_PORTFILE, O_SET, O_HELP, O_VERSION,
           O_CHECK };
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"config", required_argument, NULL, O_CONFIG},
        {"data-dir", required_argument, NULL, O_DATA},
        {"log-level", required_argument, NULL, O_LEVEL},
        {"port-file", required_argument, NULL, O_PORTFILE},
        {"set", required_argument, NULL, O_SET},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {"check", no_argument, NULL, O_CHECK},
        {NULL, 0, NULL, 0},
    };
    /* Pass 1: find --config so the file is read before the other options
     * override it, whatever their order on the command line. */
    const char *config = NULL;
    opterr = 0;
    optind = 1;
    int o;
    while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (o == O_CONFIG)
            config = optarg;
        else if (o == O_HELP) {
            app_config_usage(stdout, argv[0]);
            return 1;
        } else if (o == O_VERSION) {
            printf("sohub-server 0.1.0\n");
            return 1;
        } else if (o == '?')
            return errf(err, errsz, SH_EINVAL, "unknown or incomplete option '%s'",
                        argv[optind - 1]);
    }
    if (optind < argc)
        return errf(err, errsz, SH_EINVAL, "unexpected argument '%s'", argv[optind]);
    if (config) {
        int rc = app_config_load_file(c, config, err, errsz);
        if (rc)
            return rc;
    }
    optind = 1;
    while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (o) {
        case O_LISTEN: set_str(&c->listen, optarg); break;
        case O_DATA: set_str(&c->data_dir, optarg); break;
        case O_LEVEL: set_str(&c->log_level, optarg); break;
        case O_PORTFILE: set_str(&c->port_file, optarg); break;
        case O_CHECK: c->check_only = true; break;
        case O_SET: {
            char key[64];
            const char *eq = strchr(optarg, '=');
            if (!eq || (size_t)(eq - optarg) >= sizeof(key))
                return errf(err, errsz, SH_EINVAL, "--set wants KEY=VALUE, got '%s'", optarg);
            memcpy(key, optarg, (size_t)(eq - optarg));
            key[eq - optarg] = '\0';
            int rc = strncmp(key, "cluster.", 8) == 0
                         ? app_config_set_cluster(c, key + 8, eq + 1, err, errsz)
                         : app_config_set_server(c, key, eq + 1, err, errsz);
            if (rc)
                return rc;
            break;
        }
        default: break;
        }
    }
    return 0;
}

/* ---- validation ---- */

/* "HOST:PORT" or "[V6]:PORT" of key into host (hostsz) and *port. */
static int parse_hostport(const char *key, const char *s, char *hostout, size_t hostsz,
                          int *port_out, char *err, size_t errsz)
{
    const char *host, *colon;
    size_t hlen;
    if (*s == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':')
            return errf(err, errsz, SH_EINVAL, "%s: '%s' is not [V6ADDR]:PORT", key, s);
        host = s + 1;
        hlen = (size_t)(rb - host);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return errf(err, errsz, SH_EINVAL, "%s: '%s' is not HOST:PORT", key, s);
        host = s;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= hostsz)
        return errf(err, errsz, SH_EINVAL, "%s: bad host in '%s'", key, s);
    uint64_t port;
    if (parse_u64(colon + 1, &port) || port > 65535)
        return errf(err, errsz, SH_EINVAL, "%s: bad port in '%s'", key, s);
    memcpy(hostout, host, hlen);
    hostout[hlen] = '\0';
    if (strcmp(hostout, "localhost") == 0)
        snprintf(hostout, hostsz, "127.0.0.1");
    *port_out = (int)port;
    return 0;
}

int app_config_split_hostport(const char *s, char *host, size_t hostsz, int *port)
{
    char err[APP_CONFIG_ERR_MAX];
    return parse_hostport("redis", s, host, hostsz, port, err, sizeof(err)) ? SH_EINVAL : 0;
}

int app_config_set_cluster(app_config *c, const char *key, const char *value, char *err,
                           size_t errsz)
{
    if (strcmp(key, "redis") == 0) {
        char host[64];
        int port;
        if (*value && app_config_split_hostport(value, host, sizeof(host), &port) != 0)
            return errf(err, errsz, SH_EINVAL, "redis: '%s' is not HOST:PORT", value);
        set_str(&c->cluster_redis, value);
        return 0;
    }
    if (strcmp(key, "node") == 0) {
        if (strlen(value) > 64 || strpbrk(value, " \t\r\n"))
            return errf(err, errsz, SH_EINVAL, "node: '%s' is not a name (64 bytes, no spaces)",
                        value);
        set_str(&c->cluster_node, value);
        return 0;
    }
    uint64_t n;
    if (strcmp(key, "wait_replicas") == 0) {
        if (parse_u64(value, &n) || n > 16)
            return errf(err, errsz, SH_EINVAL, "wait_replicas: '%s' is not a number in 0..16",
                        value);
        c->cluster_wait_replicas = (uint32_t)n;
        return 0;
    }
    uint32_t *f = strcmp(key, "timeout_ms") == 0        ? &c->cluster_timeout_ms
                  : strcmp(key, "node_ttl_ms") == 0     ? &c->cluster_node_ttl_ms
                  : strcmp(key, "wait_timeout_ms") == 0 ? &c->cluster_wait_timeout_ms
                                                        : NULL;
    if (!f)
        return errf(err, errsz, SH_ENOTFOUND, "unknown key '%s' in [cluster]", key);
    if (parse_u64(value, &n) || n < 100 || n > 600000)
        return errf(err, errsz, SH_EINVAL, "%s: '%s' is not a number in 100..600000", key,
                    value);
    *f = (uint32_t)n;
    return 0;
}

const char *app_config_app_redis(const app_config *c, const app_app_config *a)
{
    if (a && strcmp(a->redis, "off") == 0)
        return NULL;
    if (a && *a->redis)
        return a->redis;
    return *c->cluster_redis ? c->cluster_redis : NULL;
}

static int parse_listen(app_config *c, char *err, size_t errsz)
{
    int rc = parse_hostport("listen", c->listen, c->listen_host, sizeof(c->listen_host),
                            &c->listen_port, err, errsz);
    if (rc == 0 && *c->http_listen)
        rc = parse_hostport("http_listen", c->http_listen, c->http_host, sizeof(c->http_host),
                            &c->http_port, err, errsz);
    if (rc == 0 && *c->admin_listen)
        rc = parse_hostport("admin_listen", c->admin_listen, c->admin_host,
                            sizeof(c->admin_host), &c->admin_port, err, errsz);
    if (rc == 0 && *c->https_listen) {
        rc = parse_hostport("https_listen", c->https_listen, c->https_host,
                            sizeof(c->https_host), &c->https_port, err, errsz);
        if (rc == 0 && (!*c->tls_cert || !*c->tls_key))
            rc = errf(err, errsz, SH_EINVAL, "https_listen needs tls_cert and tls_key");
    }
    return rc;
}

int app_config_validate(app_config *c, char *err, size_t errsz)
{
    int lvl = sh_log_level_parse(c->log_level);
    if (lvl < 0)
        return errf(err, errsz, SH_EINVAL, "log_level: '%s' is not error|warn|info|debug",
                    c->log_level);
    c->log_level_num = lvl;
    int rc = parse_listen(c, err, errsz);
    if (rc)
        return rc;
    if (!*c->data_dir)
        return errf(err, errsz, SH_EINVAL, "data_dir must not be empty");
    if (c->out_chunk_size > c->max_message_size)
        return errf(err, errsz, SH_EINVAL, "out_chunk_size (%u) exceeds max_message_size (%u)",
                    c->out_chunk_size, c->max_message_size);
    if (c->max_connections_per_ip > c->max_connections)
        c->max_connections_per_ip = c->max_connections;
    if (c->so_congestion_bytes >= c->max_output_bytes)
        c->so_congestion_bytes = c->max_output_bytes / 2;
    if (c->preconnect_max_message_size > c->max_message_size)
        c->preconnect_max_message_size = c->max_message_size;
    if (c->max_client_memory && c->max_client_memory < c->max_output_bytes)
        return errf(err, errsz, SH_EINVAL,
                    "max_client_memory (%llu) is below max_output_bytes (%llu)",
                    (unsigned long long)c->max_client_memory,
                    (unsigned long long)c->max_output_bytes);
    if (c->ping_interval_ms >= c->idle_timeout_ms)
        return errf(err, errsz, SH_EINVAL,
                    "ping_interval_ms (%u) must be below idle_timeout_ms (%u)",
                    c->ping_interval_ms, c->idle_timeout_ms);
    if (c->cluster_wait_replicas && c->cluster_wait_timeout_ms >= c->cluster_timeout_ms)
        return errf(err, errsz, SH_EINVAL,
                    "[cluster] wait_timeout_ms (%u) must be below timeout_ms (%u)",
                    c->cluster_wait_timeout_ms, c->cluster_timeout_ms);
    for (size_t i = 0; i < c->napps; i++) {
        const app_app_config *a = &c->apps[i];
        if (a->auth == APP_AUTH_TOKEN && !*a->secret)
            return errf(err, errsz, SH_EINVAL, "[app %s]: auth = token needs a secret", a->name);
    }
    for (size_t i = 0; i < c->napi_keys; i++)
        if (strlen(c->api_keys[i].secret) < 16)
            return errf(err, errsz, SH_EINVAL,
                        "[api_key %s]: secret must be at least 16 characters",
                        c->api_keys[i].name);
    return 0;
}

const app_app_config *app_config_find_room_app(const app_config *c, const char *room)
{
    const char *slash = strchr(room, '/');
    size_t len = slash ? (size_t)(slash - room) : strlen(room);
    char name[APP_NAME_MAX + 1];
    if (len > APP_NAME_MAX)
        len = APP_NAME_MAX;
    memcpy(name, room, len);
    name[len] = '\0';
    return app_config_find_app(c, name);
}

const app_app_config *app_config_find_app(const app_config *c, const char *name)
{
    const app_app_config *star = NULL;
    for (size_t i = 0; i < c->napps; i++) {
        if (strcmp(c->apps[i].name, name) == 0)
            return &c->apps[i];
        if (strcmp(c->apps[i].name, "*") == 0)
            star = &c->apps[i];
    }
    return star;
}
