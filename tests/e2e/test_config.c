/* test_config.c - the binary refuses a bad config file naming the line,
 * accepts a good one, and --help exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static int run_server(const char *cfg_text, const char *dir, char **out)
{
    char cfg[400], outp[400];
    snprintf(cfg, sizeof(cfg), "%s/bad.ini", dir);
    snprintf(outp, sizeof(outp), "%s/out.txt", dir);
    FILE *f = fopen(cfg, "w");
    fputs(cfg_text, f);
    fclose(f);
    unlink(outp);
    const char *av[] = {getenv("SOHUB_SERVER"), "--config", cfg, "--listen", "127.0.0.1:0",
                        "--data-dir", dir, NULL};
    int rc = e2e_run(av, outp, 10000, NULL);
    *out = e2e_read_file(outp, NULL);
    return rc;
}

int main(void)
{
    if (!getenv("SOHUB_SERVER"))
        return 1;
    char dir[] = "/tmp/sohub-e2e-config-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char *out = NULL;
    int rc = run_server("[server]\nlisten = 127.0.0.1:0\nno_such_key = 1\n", dir, &out);
    E2E_CHECK(rc == 2, "unknown key: exit status 2 (%d)", rc);
    E2E_CHECK(out && strstr(out, "bad.ini:3:") && strstr(out, "no_such_key"),
              "unknown key: message names file, line and key (%s)", out ? out : "");
    free(out);
    rc = run_server("[server]\nmax_connections = lots\n", dir, &out);
    E2E_CHECK(rc == 2 && out && strstr(out, "bad.ini:2:"), "bad number: names line 2");
    free(out);
    rc = run_server("[weird]\n", dir, &out);
    E2E_CHECK(rc == 2 && out && strstr(out, "unknown section"), "unknown section refused");
    free(out);
    rc = run_server("[app chat]\nauth = token\n", dir, &out);
    E2E_CHECK(rc == 2 && out && strstr(out, "secret"), "auth = token without secret refused");
    free(out);

    const char *help[] = {getenv("SOHUB_SERVER"), "--help", NULL};
    rc = e2e_run(help, NULL, 10000, NULL);
    E2E_CHECK(rc == 0, "--help exits 0");

    /* A good config with an [app] section: a declared name is served, an
     * undeclared one is refused. */
    e2e_server srv;
    if (e2e_server_start(&srv, "[server]\nlog_level = debug\n[app:chat]\nconflict = lww\n",
                         NULL) == 0) {
        E2E_CHECK(e2e_log_wait(&srv, "1 application section", 3000), "config applied");
        int st = e2e_server_stop(&srv, e2e_failures > 0);
        E2E_CHECK(st == 0, "server exits 0 (%d)", st);
    } else {
        E2E_CHECK(0, "server starts with a good config");
    }
    const char *rm[] = {"rm", "-rf", dir, NULL};
    e2e_run(rm, NULL, 10000, NULL);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
