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
#include "samples.h"
#include "so_glue.h"
#include "sh_log.h"
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
    /* The shared-object engine: hooks on the server, store under data_dir. */
    char so_err[512];
    app_so_glue *so = app_so_glue_new(srv, so_err, sizeof(so_err));
    if (!so) {
        SH_LOG(SH_LOG_ERROR, "shared objects: %s", so_err);
        app_server_free(srv);
        app_config_cleanup(&cfg);
        return 1;
    }
    /* The admin listener (server API, metrics) first: its shutdown hook
     * runs last, after chat and the engine answered what was pending. */
    if (app_api_register(srv) != 0) {
        SH_LOG(SH_LOG_ERROR, "cannot set up the admin API");
        app_so_glue_free(so);
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
        app_server_free(srv);
        uv_loop_close(uv_default_loop());
        app_config_cleanup(&cfg);
        return bad_settings ? 2 : 0;
    }
    rc = bad_settings ? -1 : app_server_start(srv);
    if (rc == 0)
        rc = app_server_run(srv);
    else {
        app_server_stop(srv, bad_settings ? "bad [sample] settings" : "start failed");
        app_server_run(srv);
    }
    app_so_glue_free(so);
    app_server_free(srv);
    uv_loop_close(uv_default_loop());
    app_config_cleanup(&cfg);
    return bad_settings ? 2 : rc == 0 ? 0 : 1;
}
