/* sohub_cli.c - sohub-cli: command-line tools for sohub.  main() only
 * dispatches to the commands listed below, one file each. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const cli_cmd commands[] = {
    {"amf", cli_amf_main, "decode AMF0/AMF3 bytes to JSON, encode JSON to AMF"},
    {"token", cli_token_main, "mint a connect token for auth = token applications"},
    {"so", cli_so_main, "shared objects: get, watch, set, remove, send"},
    {"call", cli_call_main, "call a server method and print its answer"},
    {"chat", cli_chat_main, "private messages (send, listen) and the chat sample's room"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: sohub-cli COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\noptions (before or after the command, for so, call and chat):\n"
            "  -u, --url URL   rtmp://HOST[:PORT]/APP[/INSTANCE] (default %s;\n"
            "                  chat: rtmp://127.0.0.1:1935/chat/_definst_; env SOHUB_URL)\n"
            "  --user NAME     user name sent with connect (env SOHUB_USER)\n"
            "  --token TOKEN   token for auth = token applications (env SOHUB_TOKEN)\n"
            "  --amf3          objectEncoding 3 (AMF3 commands and shared objects)\n"
            "  --persistent    the shared object is persistent\n"
            "  --timeout S     give up after S seconds (default 10; watch/listen: none)\n"
            "  --count N       watch/listen: stop after N lines\n"
            "exit status: 0 success, 1 failure (message on stderr), 2 usage\n",
            SHC_DEFAULT_URL);
    fprintf(f, "\n'sohub-cli COMMAND --help' describes a command.\n");
}

int main(int argc, char **argv)
{
    /* Connection options before the command name. */
    int first = 1;
    while (first < argc && argv[first][0] == '-' && strcmp(argv[first], "--help") != 0 &&
           strcmp(argv[first], "-h") != 0) {
        int n = argc - first;
        char **rest = argv + first;
        /* parse just this option (and its value) */
        int take = (!strcmp(rest[0], "--amf3") || !strcmp(rest[0], "--persistent") ||
                    strchr(rest[0], '=')) ? 1 : 2;
        if (take > n) {
            fprintf(stderr, "sohub-cli: option %s needs a value\n", rest[0]);
            return 2;
        }
        char *one[3] = {rest[0], take == 2 ? rest[1] : NULL, NULL};
        int m = take;
        if (cli_opts_parse(&m, one, &cli_global) != 0)
            return 2;
        if (m != 0) {
            fprintf(stderr, "sohub-cli: unknown option '%s'\n", rest[0]);
            usage(stderr);
            return 2;
        }
        first += take;
    }
    argc -= first - 1;
    argv += first - 1;
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "sohub-cli: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
