/* cli_call.c - `sohub-cli call METHOD [JSON-ARG...]`: NetConnection.call.
 * Prints the _result value (one JSON line; a JSON array when the server
 * answered with several values) and exits 0, or prints the _error info
 * object and exits 1. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void call_usage(FILE *f)
{
    fprintf(f,
            "usage: sohub-cli [OPTIONS] call METHOD [JSON-ARG...]\n"
            "  Calls METHOD on the server with the given arguments (JSON, see\n"
            "  docs/amf-json.md; a string needs quotes: '\"text\"') and prints the\n"
            "  answer as one JSON line.  Exit status 1 on _error (the info object\n"
            "  is printed, its code and description go to stderr too).\n");
}

/* Prints the values of an answer (after the command object). */
static void print_answer(const rtmp_cmd *a)
{
    if (a->nargs == 1) {
        cli_print_value(a->args[0]);
        return;
    }
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < a->nargs; i++)
        cJSON_AddItemToArray(arr, cli_json_of(a->args[i]));
    cli_print_json(arr);
}

int cli_call_main(int argc, char **argv)
{
    cli_opts o = cli_global;
    if (cli_opts_parse(&argc, argv, &o) != 0)
        return 2;
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        call_usage(stdout);
        return 0;
    }
    if (argc < 2) {
        call_usage(stderr);
        return 2;
    }
    size_t nargs = (size_t)argc - 2;
    amf_value **args = calloc(nargs + 1, sizeof(*args));
    if (!args)
        return 1;
    int rc = 0;
    for (size_t i = 0; i < nargs && rc == 0; i++) {
        char what[32];
        snprintf(what, sizeof(what), "argument %zu", i + 1);
        if (!(args[i] = cli_json_arg(argv[2 + i], what)))
            rc = 1;
    }
    shc *c = rc == 0 ? cli_connect(&o, SHC_DEFAULT_URL) : NULL;
    if (rc == 0 && !c)
        rc = 1;
    if (rc == 0) {
        double txid = shc_call_send(c, argv[1], args, nargs, true);
        rtmp_cmd a;
        int r = txid > 0 ? cli_call_wait(c, txid, cli_timeout_ms(&o), &a) : -1;
        if (r < 0) {
            fprintf(stderr, "sohub-cli: %s\n", shc_error(c));
            rc = 1;
        } else if (r == 0) {
            fprintf(stderr, "sohub-cli: no answer to %s within %d ms\n", argv[1],
                    cli_timeout_ms(&o));
            rc = 1;
        } else {
            print_answer(&a);
            if (strcmp(a.name, "_result") != 0) {
                const amf_value *info = a.nargs ? a.args[0] : NULL;
                fprintf(stderr, "sohub-cli: %s failed: %s: %s\n", argv[1],
                        cli_str_member(info, "code"), cli_str_member(info, "description"));
                rc = 1;
            }
            rtmp_cmd_cleanup(&a);
        }
    }
    for (size_t i = 0; i < nargs; i++)
        amf_unref(args[i]);
    free(args);
    shc_close(c);
    return rc;
}
