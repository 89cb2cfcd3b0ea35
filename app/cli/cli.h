/* cli.h - sohub-cli commands.  Each command lives in its own file
 * (cli_<name>.c) and is listed in the table in sohub_cli.c.  A command
 * gets the arguments after its name (argv[0] is the command name) and
 * returns the process exit status. */
#ifndef SOHUB_CLI_H
#define SOHUB_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct cli_cmd {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} cli_cmd;

int cli_amf_main(int argc, char **argv);
int cli_token_main(int argc, char **argv);

/* Shared helpers (cli_util.c). */
/* Reads a whole file ("-" or NULL = stdin); malloc'd bytes with a NUL
 * after them, NULL with errno set on failure. */
char *cli_read_all(const char *path, size_t *len);
/* Hex text to bytes, whitespace ignored.  Returns 0, or -1 with the text
 * offset of the first bad character (or of the odd last digit) in *bad_at. */
int cli_hex_decode(const char *text, size_t len, uint8_t **out, size_t *out_len, size_t *bad_at);
void cli_hex_write(FILE *f, const uint8_t *p, size_t n);

#endif
