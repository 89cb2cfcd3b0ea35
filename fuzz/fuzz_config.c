/* fuzz_config.c - the configuration file parser (app_config_load_string,
 * the same INI path as app_config_load_file) and app_config_validate.
 *
 * Input: the file's text (cut at the first NUL, as a C string is).
 * Properties: a failed load names the origin in its message; a config
 * that validates has a port in 0..65535, a host, at most
 * APP_CONFIG_MAX_APPS applications whose names are found again by
 * app_config_find_app.
 */
#include <string.h>

#include "config.h"
#include "fuzz_common.h"
#include "sh_err.h"
#include "sh_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    FZ_CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';

    app_config c;
    app_config_init(&c);
    char err[APP_CONFIG_ERR_MAX] = "";
    int rc = app_config_load_string(&c, text, "fuzz.ini", err, sizeof(err));
    if (rc != 0) {
        FZ_CHECK(rc < 0);
        FZ_CHECK(strncmp(err, "fuzz.ini", 8) == 0);
    } else {
        FZ_CHECK(c.napps <= APP_CONFIG_MAX_APPS);
        rc = app_config_validate(&c, err, sizeof(err));
        if (rc == 0) {
            FZ_CHECK(c.listen_port >= 0 && c.listen_port <= 65535);
            FZ_CHECK(c.listen_host[0] != '\0');
            FZ_CHECK(c.log_level_num >= SH_LOG_ERROR && c.log_level_num <= SH_LOG_DEBUG);
            for (size_t i = 0; i < c.napps; i++) {
                const app_app_config *a = app_config_find_app(&c, c.apps[i].name);
                FZ_CHECK(a == &c.apps[i]);
                FZ_CHECK(a->secret && a->read_access && a->write_access);
            }
            (void)app_config_find_app(&c, "no-such-app-name");
        } else {
            FZ_CHECK(rc < 0 && err[0] != '\0');
        }
    }
    app_config_cleanup(&c);
    free(text);
    return 0;
}
