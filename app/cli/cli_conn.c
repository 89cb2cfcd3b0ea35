/* cli_conn.c - what the client commands of sohub-cli share: connection
 * options, connecting, JSON in and out, and a mirror of shared objects. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "amf_json.h"
#include "cli.h"

cli_opts cli_global = {.timeout_s = -1, .count = -1};
volatile int cli_interrupted;

static void on_signal(int sig)
{
    (void)sig;
    cli_interrupted = 1;
}

void cli_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: poll() returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int opt_value(int argc, char **argv, int *i, const char **val)
{
    const char *a = argv[*i];
    const char *eq = strchr(a, '=');
    if (a[1] == '-' && eq) {
        *val = eq + 1;
        return 0;
    }
    if (*i + 1 >= argc) {
        fprintf(stderr, "sohub-cli: option %s needs a value\n", a);
        return -1;
    }
    *val = argv[++*i];
    return 0;
}

static bool opt_is(const char *a, const char *name)
{
    size_t n = strlen(name);
    return strncmp(a, name, n) == 0 && (a[n] == '\0' || (a[n] == '=' && name[1] == '-'));
}

int cli_opts_parse(int *argc, char **argv, cli_opts *o)
{
    int out = 0, i = 0;
    bool done = false;
    for (; i < *argc; i++) {
        char *a = argv[i];
        const char *v = NULL;
        if (done || a[0] != '-' || a[1] == '\0') {
            argv[out++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            done = true;
            continue;
        }
        if (opt_is(a, "-u") || opt_is(a, "--url")) {
            if (opt_value(*argc, argv, &i, &v))
                return -1;
            o->url = v;
        } else if (opt_is(a, "--user")) {
            if (opt_value(*argc, argv, &i, &v))
                return -1;
            o->user = v;
        } else if (opt_is(a, "--token")) {
            if (opt_value(*argc, argv, &i, &v))
                return -1;
            o->token = v;
        } else if (!strcmp(a, "--amf3")) {
            o->amf3 = true;
        } else if (!strcmp(a, "--persistent")) {
            o->persistent = true;
        } else if (opt_is(a, "--timeout")) {
            if (opt_value(*argc, argv, &i, &v))
                return -1;
            char *e = NULL;
            double t = strtod(v, &e);
            if (!e || *e || !(t > 0) || t > 86400 * 365) {
                fprintf(stderr, "sohub-cli: --timeout '%s' is not a positive number of seconds\n",
                        v);
                return -1;
            }
            o->timeout_s = t;
        } else if (opt_is(a, "--count")) {
            if (opt_value(*argc, argv, &i, &v))
                return -1;
            char *e = NULL;
            long n = strtol(v, &e, 10);
            if (!e || *e || n <= 0) {
                fprintf(stderr, "sohub-cli: --count '%s' is not a positive number\n", v);
                return -1;
            }
            o->count = n;
        } else {
            argv[out++] = a; /* not ours: a negative JSON number, a command option */
        }
    }
    *argc = out;
    argv[out] = NULL;
    return 0;
}

int cli_timeout_ms(const cli_opts *o)
{
    return o->timeout_s > 0 ? (int)(o->timeout_s * 1000 + 0.5) : 10000;
}

shc *cli_connect(const cli_opts *o, const char *default_url)
{
    shc_opts so = {
        .url = o->url ? o->url : (getenv("SOHUB_URL") ? getenv("SOHUB_URL") : default_url),
        .user = o->user ? o->user : getenv("SOHUB_USER"),
        .token = o->token ? o->token : getenv("SOHUB_TOKEN"),
        .amf3 = o->amf3,
        .timeout_ms = cli_timeout_ms(o),
    };
    char err[600];
    shc *c = shc_connect(&so, err, sizeof(err));
    if (!c)
        fprintf(stderr, "sohub-cli: %s\n", err);
    return c;
}

amf_value *cli_json_arg(const char *text, const char *what)
{
    amf_value *v = NULL;
    const char *why = NULL;
    if (amf_json_parse(text, &v, &why) != 0) {
        fprintf(stderr, "sohub-cli: %s is not valid JSON (%s): %s\n", what,
                why ? why : "parse error", text);
        fprintf(stderr, "  (a string needs JSON quotes: '\"text\"')\n");
        return NULL;
    }
    return v;
}

cJSON *cli_json_of(const amf_value *v)
{
    cJSON *j = amf_json_from_value(v);
    return j ? j : cJSON_CreateString("(value not printable as JSON)");
}

int cli_call_wait(shc *c, double txid, int timeout_ms, rtmp_cmd *answer)
{
    int64_t end = shc_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = end - shc_now_ms();
        int r = shc_call_wait(c, txid, left > 0 ? (int)left : 0, answer);
        if (r != SHC_EHELD)
            return r;
        shc_event ev;
        while (shc_held(c) > 0 && shc_next(c, 0, &ev) == 1)
            shc_event_cleanup(&ev);
    }
}

void cli_print_json(cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        free(s);
    }
    cJSON_Delete(j);
}

void cli_print_value(const amf_value *v)
{
    cli_print_json(cli_json_of(v));
}

const char *cli_str_member(const amf_value *o, const char *k)
{
    const amf_value *v = o && amf_type_of(o) == AMF_OBJECT ? amf_object_get(o, k) : NULL;
    size_t n;
    const char *s = v && amf_type_of(v) == AMF_STRING ? amf_as_string(v, &n) : NULL;
    return s ? s : "";
}

/* ---- shared-object mirror ---- */

void cli_so_init(cli_so *o, const char *name, bool persistent)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->name, sizeof(o->name), "%s", name);
    o->persistent = persistent;
    o->slots = cJSON_CreateObject();
}

void cli_so_cleanup(cli_so *o)
{
    cJSON_Delete(o->slots);
    o->slots = NULL;
}

int cli_so_use(shc *c, cli_so *o)
{
    sh_buf b;
    sh_buf_init(&b, SH_BUF_MAX_DEFAULT);
    int r = so_wire_client_use(&b, shc_so_type(c), o->name, 0, o->persistent);
    if (r == 0)
        r = shc_so_send(c, b.data, b.len);
    sh_buf_cleanup(&b);
    return r;
}

static cJSON *line_new(const cli_so *o, const char *event)
{
    cJSON *l = cJSON_CreateObject();
    cJSON_AddStringToObject(l, "event", event);
    cJSON_AddStringToObject(l, "name", o->name);
    cJSON_AddNumberToObject(l, "version", o->version);
    return l;
}

static void emit(cli_so_event_fn fn, void *ud, cli_so *o, const so_event *ev, cJSON *l)
{
    if (fn)
        fn(ud, o, ev, l);
    else
        cJSON_Delete(l);
}

bool cli_so_apply(cli_so *o, const so_msg *m, cli_so_event_fn fn, void *ud)
{
    if (strcmp(m->name, o->name) != 0)
        return false;
    o->version = m->version;
    for (size_t i = 0; i < m->nevents; i++) {
        const so_event *ev = &m->events[i];
        cJSON *l;
        switch (ev->type) {
        case SO_EV_USE_SUCCESS:
            o->synced = true;
            emit(fn, ud, o, ev, line_new(o, "use"));
            break;
        case SO_EV_CLEAR:
            cJSON_Delete(o->slots);
            o->slots = cJSON_CreateObject();
            emit(fn, ud, o, ev, line_new(o, "clear"));
            break;
        case SO_EV_CHANGE:
            for (size_t k = 0; k < ev->nkv; k++) {
                cJSON_DeleteItemFromObjectCaseSensitive(o->slots, ev->kv[k].key);
                cJSON_AddItemToObject(o->slots, ev->kv[k].key, cli_json_of(ev->kv[k].value));
                l = line_new(o, "change");
                cJSON_AddStringToObject(l, "key", ev->kv[k].key);
                cJSON_AddItemToObject(l, "value", cli_json_of(ev->kv[k].value));
                emit(fn, ud, o, ev, l);
            }
            break;
        case SO_EV_REMOVE:
            cJSON_DeleteItemFromObjectCaseSensitive(o->slots, ev->kv[0].key);
            l = line_new(o, "remove");
            cJSON_AddStringToObject(l, "key", ev->kv[0].key);
            emit(fn, ud, o, ev, l);
            break;
        case SO_EV_SEND_MESSAGE: {
            l = line_new(o, "message");
            cJSON_AddStringToObject(l, "handler", ev->handler);
            cJSON *args = cJSON_AddArrayToObject(l, "args");
            for (size_t k = 0; k < ev->nargs; k++)
                cJSON_AddItemToArray(args, cli_json_of(ev->args[k]));
            emit(fn, ud, o, ev, l);
            break;
        }
        case SO_EV_STATUS:
            snprintf(o->status, sizeof(o->status), "%s", ev->code ? ev->code : "");
            l = line_new(o, "status");
            cJSON_AddStringToObject(l, "code", ev->code ? ev->code : "");
            cJSON_AddStringToObject(l, "level", ev->level ? ev->level : "");
            emit(fn, ud, o, ev, l);
            break;
        case SO_EV_SUCCESS:
            l = line_new(o, "success");
            cJSON_AddStringToObject(l, "key", ev->kv[0].key);
            emit(fn, ud, o, ev, l);
            break;
        default:
            break;
        }
    }
    return true;
}
