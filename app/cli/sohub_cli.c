/* sohub_cli.c - sohub-cli: command-line tools for sohub.  main() only
 * dispatches to the commands listed below, one file each. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const cli_cmd commands[] = {
    {"amf", cli_amf_main, "decode AMF0/AMF3 bytes to JSON, encode JSON to AMF"},
    {"token", cli_token_main, "mint a connect token for auth = token applications"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: sohub-cli COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'sohub-cli COMMAND --help' describes a command.\n");
}

int main(int argc, char **argv)
{
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
