/* main.c - sohub-server: configuration, then one libuv loop. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <errno.h>
#include <string.h>

#include "api.h"
#include "app.h"
#include "chat.h"
#include "cluster.h"
#include "samples.h"
#include "so_glue.h"
#include "sh_log.h"
#include "store.h"
#include "sh_map.h"

/* True for 127.0.0.0/8, ::1 and localhost. */
static bool listen_is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "[::1]") == 0 || strcmp(host, "localhost") == 0;
}

/* True when some application name is served without token auth: any
 * [app] section with auth = none, or a built-in sample application whose
 * section (its own or [app *]) does not ask for tokens. */
static bool any_open_app(const app_config *cfg)
{
    static const char *const builtin[] = {"chat", "auction", "slideshow"};
    if (cfg->napps == 0)
        return true;
    for (size_t i = 0; i < cfg->napps; i++)
        if (cfg->apps[i].auth == APP_AUTH_NONE)
            return true;
    for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++) {
        const app_app_config *a = app_config_find_app(cfg, builtin[i]);
        if (!a || a->auth == APP_AUTH_NONE)
            return true;
    }
    return false;
}

/* ---- SIGHUP: read the configuration again ---- */

typedef struct reload_ctx {
    int argc;
    char **argv;
    const app_config *current;
    app_config **old;          /* configs that were in use: freed at exit */
    size_t nold;
} reload_ctx;

/* A string key that only takes effect at a restart keeps its value in
 * use; the log says it changed. */
static void keep_str(char **dst, const char *in_use, const char *key)
{
    if (strcmp(*dst, in_use) != 0) {
        SH_LOG(SH_LOG_WARN, "reload: %s changed: it takes effect at the next restart", key);
        free(*dst);
        *dst = strdup(in_use);
    }
}

/* Fields fixed until a restart: listeners, data, store layout, what the
 * engine sized its objects with, the samples' settings. */
static void keep_fixed(app_config *n, const app_config *cur)
{
    keep_str(&n->listen, cur->listen, "listen");
    keep_str(&n->http_listen, cur->http_listen, "http_listen");
    keep_str(&n->https_listen, cur->https_listen, "https_listen");
    keep_str(&n->admin_listen, cur->admin_listen, "admin_listen");
    keep_str(&n->data_dir, cur->data_dir, "data_dir");
    keep_str(&n->cluster_redis, cur->cluster_redis, "[cluster] redis");
    keep_str(&n->cluster_node, cur->cluster_node, "[cluster] node");
    n->cluster_timeout_ms = cur->cluster_timeout_ms;
    n->cluster_node_ttl_ms = cur->cluster_node_ttl_ms;
    memcpy(n->listen_host, cur->listen_host, sizeof(n->listen_host));
    n->listen_port = cur->listen_port;
    memcpy(n->http_host, cur->http_host, sizeof(n->http_host));
    n->http_port = cur->http_port;
    memcpy(n->https_host, cur->https_host, sizeof(n->https_host));
    n->https_port = cur->https_port;
    memcpy(n->admin_host, cur->admin_host, sizeof(n->admin_host));
    n->admin_port = cur->admin_port;
    if (n->store_sync_full != cur->store_sync_full || n->out_chunk_size != cur->out_chunk_size) {
        SH_LOG(SH_LOG_WARN, "reload: store_sync / out_chunk_size changed: they take effect at "
                            "the next restart");
        n->store_sync_full = cur->store_sync_full;
        n->out_chunk_size = cur->out_chunk_size;
    }
    for (size_t i = 0; i < n->napps; i++) {
        const app_app_config *o = app_config_find_app(cur, n->apps[i].name);
        if (o && (o->store != n->apps[i].store || o->history_depth != n->apps[i].history_depth ||
                  strcmp(o->redis, n->apps[i].redis) != 0)) {
            SH_LOG(SH_LOG_WARN, "reload: [app %s] store / history_depth / redis changed: they "
                                "take effect at the next restart", n->apps[i].name);
            n->apps[i].store = o->store;
            n->apps[i].history_depth = o->history_depth;
            keep_str(&n->apps[i].redis, o->redis, "redis");
        }
    }
    bool samples_same = n->nsample_settings == cur->nsample_settings;
    for (size_t i = 0; samples_same && i < n->nsample_settings; i++)
        samples_same = !strcmp(n->sample_settings[i].section, cur->sample_settings[i].section) &&
                       !strcmp(n->sample_settings[i].key, cur->sample_settings[i].key) &&
                       !strcmp(n->sample_settings[i].value, cur->sample_settings[i].value);
    if (!samples_same)
        SH_LOG(SH_LOG_WARN, "reload: [sample] settings changed: they take effect at the next "
                            "restart");
}

static void reload(app_server *srv, void *ud)
{
    reload_ctx *r = ud;
    if (!r->current->config_path) {
        SH_LOG(SH_LOG_WARN, "SIGHUP: no configuration file to read again");
        return;
    }
    app_config *n = calloc(1, sizeof(*n));
    app_config **more = n ? realloc(r->old, (r->nold + 1) * sizeof(*more)) : NULL;
    if (!more) {
        free(n);
        SH_LOG(SH_LOG_ERROR, "reload: out of memory: the configuration in use is kept");
        return;
    }
    r->old = more;
    char err[APP_CONFIG_ERR_MAX];
    app_config_init(n);
    int rc = app_config_parse_args(n, r->argc, r->argv, err, sizeof(err));
    if (rc == 0)
        rc = app_config_validate(n, err, sizeof(err));
    if (rc != 0) {
        SH_LOG(SH_LOG_ERROR, "reload refused: %s; the configuration in use is kept", err);
        app_config_cleanup(n);
        free(n);
        return;
    }
    keep_fixed(n, r->current);
    r->old[r->nold++] = (app_config *)r->current;
    r->current = n;
    app_server_reconfigure(srv, n);
    SH_LOG(SH_LOG_INFO, "reload: %s in use (%zu application section(s), %zu API key(s))",
           n->config_path, n->napps, n->napi_keys);
}

int main(int argc, char **argv)
{
    app_config cfg;
    char err[APP_CONFIG_ERR_MAX];
    app_config_init(&cfg);
    int rc = app_config_parse_args(&cfg, argc, argv, err, sizeof(err));
    if (rc == 1) {
        app_config_cleanup(&cfg);
        return 0;
    }
    if (rc == 0)
        rc = app_config_validate(&cfg, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "sohub-server: %s\n", err);
        app_config_usage(stderr, argv[0]);
        app_config_cleanup(&cfg);
        return 2;
    }
    sh_log_set_level((sh_log_level)cfg.log_level_num);
    sh_log_set_format((sh_log_format)cfg.log_format);
    signal(SIGPIPE, SIG_IGN);
    /* Everything the server creates (the database and its -wal / -shm,
     * the port file) is for this user only, whatever the directory. */
    umask(077);
    /* Every hash table keyed by peer strings hashes under this secret, so
     * colliding keys cannot be computed offline (base/sh_map.h). */
    uint8_t seed[16];
    rc = uv_random(NULL, NULL, seed, sizeof(seed), 0, NULL);
    if (rc != 0) {
        SH_LOG(SH_LOG_ERROR, "cannot seed the hash tables: %s", uv_strerror(rc));
        app_config_cleanup(&cfg);
        return 1;
    }
    sh_hash_set_seed(seed);

    if (mkdir(cfg.data_dir, 0700) != 0 && errno != EEXIST)
        SH_LOG(SH_LOG_WARN, "data_dir %s: %s", cfg.data_dir, strerror(errno));
    if (!cfg.config_path)
        SH_LOG(SH_LOG_INFO, "no config file: every application name is served with open access");
    else if (cfg.napps == 0)
        SH_LOG(SH_LOG_INFO, "config %s declares no [app] section: every application name is "
               "served with open access", cfg.config_path);
    else
        SH_LOG(SH_LOG_INFO, "config %s: %zu application section(s)", cfg.config_path, cfg.napps);
    if (!listen_is_loopback(cfg.listen_host) && any_open_app(&cfg))
        SH_LOG(SH_LOG_WARN, "listening on %s, not loopback, with an application open to "
               "anyone (auth = none): set auth = token in its [app] section to expose it safely",
               cfg.listen_host);

    app_server *srv = app_server_new(&cfg, NULL);
    if (!srv) {
        SH_LOG(SH_LOG_ERROR, "cannot create the server");
        app_config_cleanup(&cfg);
        return 1;
    }
    /* The admin listener (server API, metrics) first: its shutdown hook
     * runs last, after the store wrote what was pending and answered. */
    if (app_api_register(srv) != 0) {
        SH_LOG(SH_LOG_ERROR, "cannot set up the admin API");
        app_server_free(srv);
        app_config_cleanup(&cfg);
        return 1;
    }
    /* Redis links of clustered applications, before the modules that use
     * them: its shutdown hook runs after theirs. */
    if (!cfg.check_only && app_cluster_register(srv) != 0) {
        SH_LOG(SH_LOG_ERROR, "cluster: cannot set up the Redis links");
        app_server_free(srv);
        app_config_cleanup(&cfg);
        return 1;
    }
    /* The store (every read and write of durable state, under data_dir),
     * before the modules that use it: its shutdown hook runs after theirs. */
    char so_err[512];
    app_store *store = app_store_new(srv, so_err, sizeof(so_err));
    if (!store) {
        SH_LOG(SH_LOG_ERROR, "store: %s", so_err);
        app_server_free(srv);
        app_config_cleanup(&cfg);
        return 1;
    }
    /* The shared-object engine: hooks on the server. */
    app_so_glue *so = app_so_glue_new(srv, so_err, sizeof(so_err));
    if (!so) {
        SH_LOG(SH_LOG_ERROR, "shared objects: %s", so_err);
        app_store_free(store);
        app_server_free(srv);
        app_config_cleanup(&cfg);
        return 1;
    }
    /* Built-in applications (samples, chat) register here once they exist. */
    if (chat_register(srv) != 0) /* also installs the token authenticator */
        SH_LOG(SH_LOG_ERROR, "chat: not available, private messages are refused");
    /* chat, auction, slideshow (samples/); logs its own errors.  Bad
     * [sample] settings in the config file stop the start, like any other
     * bad setting. */
    bool bad_settings = samples_register(srv) == SH_EINVAL;
    if (cfg.check_only) {
        printf("%s: %s\n", cfg.config_path ? cfg.config_path : "(no config file)",
               bad_settings ? "bad [sample] settings (see above)" : "OK");
        app_server_stop(srv, "check only");
        app_server_run(srv);
        app_so_glue_free(so);
        app_store_free(store);
        app_server_free(srv);
        uv_loop_close(uv_default_loop());
        app_config_cleanup(&cfg);
        return bad_settings ? 2 : 0;
    }
    reload_ctx rl = {.argc = argc, .argv = argv, .current = &cfg};
    app_server_set_reload(srv, reload, &rl);
    rc = bad_settings ? -1 : app_server_start(srv);
    if (rc == 0)
        rc = app_server_run(srv);
    else {
        app_server_stop(srv, bad_settings ? "bad [sample] settings" : "start failed");
        app_server_run(srv);
    }
    app_so_glue_free(so);
    app_store_free(store);
    app_server_free(srv);
    uv_loop_close(uv_default_loop());
    for (size_t i = 0; i < rl.nold; i++) {
        if (rl.old[i] != &cfg) {
            app_config_cleanup(rl.old[i]);
            free(rl.old[i]);
        }
    }
    free(rl.old);
    if (rl.current != &cfg) {
        app_config_cleanup((app_config *)rl.current);
        free((app_config *)rl.current);
    }
    app_config_cleanup(&cfg);
    return bad_settings ? 2 : rc == 0 ? 0 : 1;
}
