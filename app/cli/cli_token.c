/* cli_token.c - `sohub-cli token`: mints a connect token for one user of
 * one application (format in app/auth.h), with the secret of the
 * application's [app NAME] section in the server's config file, or given
 * on the command line.  Prints the token and nothing else on stdout. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "cli.h"
#include "config.h"

static void token_usage(FILE *f)
{
    fprintf(f,
            "usage: sohub-cli token --app APP --user USER [--ttl SECONDS]\n"
            "                       (--config FILE | --secret SECRET)\n"
            "  Prints a token for `connect` (second argument, or token= in the URL query)\n"
            "  to an application configured with auth = token.\n"
            "  --ttl      validity in seconds from now (default 3600)\n"
            "  --config   the server's config file: the secret of [app APP] (or [app *])\n"
            "  --secret   the secret itself (prefer --config: command lines are visible)\n");
}

int cli_token_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"app", required_argument, NULL, 'a'},   {"user", required_argument, NULL, 'u'},
        {"ttl", required_argument, NULL, 't'},   {"config", required_argument, NULL, 'c'},
        {"secret", required_argument, NULL, 's'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *app = NULL, *user = NULL, *config = NULL, *secret = NULL;
    long long ttl = 3600;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'a': app = optarg; break;
        case 'u': user = optarg; break;
        case 'c': config = optarg; break;
        case 's': secret = optarg; break;
        case 't': {
            char *end;
            ttl = strtoll(optarg, &end, 10);
            if (*end || ttl <= 0 || ttl > 10LL * 365 * 24 * 3600) {
                fprintf(stderr, "sohub-cli token: --ttl wants seconds in 1..315360000\n");
                return 2;
            }
            break;
        }
        case 'h': token_usage(stdout); return 0;
        default:
            fprintf(stderr, "sohub-cli token: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            token_usage(stderr);
            return 2;
        }
    }
    if (!app || !*app || !user || !*user || (!config == !secret) || optind < argc) {
        token_usage(stderr);
        return 2;
    }
    app_config cfg;
    app_config_init(&cfg);
    if (config) {
        char err[APP_CONFIG_ERR_MAX];
        if (app_config_load_file(&cfg, config, err, sizeof(err)) != 0) {
            fprintf(stderr, "sohub-cli token: %s\n", err);
            app_config_cleanup(&cfg);
            return 1;
        }
        const app_app_config *a = app_config_find_app(&cfg, app);
        if (!a || !a->secret || !*a->secret) {
            fprintf(stderr, "sohub-cli token: %s has no secret for application '%s'\n", config,
                    app);
            app_config_cleanup(&cfg);
            return 1;
        }
        secret = a->secret;
    }
    char tok[AUTH_TOKEN_MAX + 1];
    int rc = auth_token_mint(secret, app, user, (int64_t)time(NULL) + ttl, tok, sizeof(tok));
    app_config_cleanup(&cfg); /* secret may point into cfg: used above only */
    if (rc != 0) {
        fprintf(stderr, "sohub-cli token: cannot mint a token\n");
        return 1;
    }
    printf("%s\n", tok);
    return 0;
}
