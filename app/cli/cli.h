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
int cli_so_main(int argc, char **argv);
int cli_call_main(int argc, char **argv);
int cli_chat_main(int argc, char **argv);

/* ---- client commands (so, call, chat): cli_conn.c ----
 * Connection options are accepted before the command name and anywhere
 * after it (until "--"); environment defaults: SOHUB_URL, SOHUB_USER,
 * SOHUB_TOKEN. */
#include <stdbool.h>

#include <cjson/cJSON.h>

#include "amf.h"
#include "client.h"

typedef struct cli_opts {
    const char *url;        /* -u / --url; NULL = the command's default */
    const char *user;       /* --user */
    const char *token;      /* --token */
    bool amf3;              /* --amf3 */
    bool persistent;        /* --persistent (so commands) */
    double timeout_s;       /* --timeout S; < 0 = not given */
    long count;             /* --count N; < 0 = not given */
} cli_opts;

extern cli_opts cli_global;   /* options seen before the command name */

/* Strips the connection options from argv (argc updated), over *o.
 * Returns 0, or -1 with a message printed (bad option value). */
int cli_opts_parse(int *argc, char **argv, cli_opts *o);
/* Connects with o (default_url when o->url is NULL).  NULL with a message
 * "sohub-cli: ..." printed on failure. */
shc *cli_connect(const cli_opts *o, const char *default_url);
/* Time-out of a one-shot command in ms (--timeout, default 10 s). */
int cli_timeout_ms(const cli_opts *o);
/* shc_call_wait for commands that show no events: events that arrive
 * before the answer are read and discarded (never acknowledged, so a
 * private message among them is sent again later).  Returns as
 * shc_call_wait, never SHC_EHELD. */
int cli_call_wait(shc *c, double txid, int timeout_ms, rtmp_cmd *answer);
/* JSON text -> value; NULL with a message printed naming `what`. */
amf_value *cli_json_arg(const char *text, const char *what);
/* Prints v as one compact JSON line on stdout (flushed). */
void cli_print_value(const amf_value *v);
/* Prints a cJSON tree as one compact line on stdout (flushed); frees it. */
void cli_print_json(cJSON *j);
/* A cJSON tree for v (never NULL: a string saying why on failure). */
cJSON *cli_json_of(const amf_value *v);
/* The string member k of object o, or "" . */
const char *cli_str_member(const amf_value *o, const char *k);
/* Set by SIGINT / SIGTERM in long-running commands. */
extern volatile int cli_interrupted;
void cli_catch_signals(void);

/* A client-side mirror of one shared object (cli_conn.c). */
typedef struct cli_so {
    char name[256];
    bool persistent;
    uint32_t version;
    bool synced;            /* UseSuccess seen */
    cJSON *slots;           /* object: key -> JSON value */
    char status[128];       /* code of the last Status event, "" when none */
} cli_so;

/* Called for every event applied, with a JSON line describing it (owned
 * by the callee). */
typedef void (*cli_so_event_fn)(void *ud, cli_so *o, const so_event *ev, cJSON *line);
void cli_so_init(cli_so *o, const char *name, bool persistent);
void cli_so_cleanup(cli_so *o);
int cli_so_use(shc *c, cli_so *o);
/* Applies m when it is about o (returns true), calling fn per event. */
bool cli_so_apply(cli_so *o, const so_msg *m, cli_so_event_fn fn, void *ud);

/* Shared helpers (cli_util.c). */
/* Reads a whole file ("-" or NULL = stdin); malloc'd bytes with a NUL
 * after them, NULL with errno set on failure. */
char *cli_read_all(const char *path, size_t *len);
/* Hex text to bytes, whitespace ignored.  Returns 0, or -1 with the text
 * offset of the first bad character (or of the odd last digit) in *bad_at. */
int cli_hex_decode(const char *text, size_t len, uint8_t **out, size_t *out_len, size_t *bad_at);
void cli_hex_write(FILE *f, const uint8_t *p, size_t n);

#endif
