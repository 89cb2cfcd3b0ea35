/* cli_so.c - `sohub-cli so get|watch|set|remove|send`: shared objects
 * from the command line.  Values are JSON (docs/amf-json.md). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void so_usage(FILE *f)
{
    fprintf(f,
            "usage: sohub-cli [OPTIONS] so get NAME\n"
            "       sohub-cli [OPTIONS] so watch NAME [--count N] [--timeout S]\n"
            "       sohub-cli [OPTIONS] so set NAME KEY JSON-VALUE\n"
            "       sohub-cli [OPTIONS] so remove NAME KEY\n"
            "       sohub-cli [OPTIONS] so send NAME HANDLER [JSON-ARG...]\n"
            "  get     prints the slots of the object as one JSON object\n"
            "  watch   prints one JSON line per event (use, clear, change, remove,\n"
            "          message, status) until interrupted, N lines or S seconds\n"
            "  set     changes one slot; remove deletes one; send calls HANDLER on\n"
            "          every subscriber (the server's SendMessage)\n"
            "  --persistent  the object is persistent (default: temporary)\n"
            "Exit status 1 when the server refuses (the Status code is printed).\n");
}

typedef struct so_ctx {
    cli_opts o;
    shc *c;
    cli_so obj;
    int deadline_ms;
    int64_t end;
} so_ctx;

static int left_ms(const so_ctx *x)
{
    int64_t l = x->end - shc_now_ms();
    return l < 0 ? 0 : l > INT_MAX ? INT_MAX : (int)l;
}

/* Waits for the next SO message about the object (others dropped,
 * commands too).  Returns 1 with *m, 0 on time-out, -1 closed. */
static int next_so(so_ctx *x, int timeout_ms, so_msg *m)
{
    int64_t end = shc_now_ms() + timeout_ms;
    for (;;) {
        int64_t l = end - shc_now_ms();
        if (l <= 0 || cli_interrupted)
            return 0;
        shc_event ev;
        int r = shc_next(x->c, (int)l, &ev);
        if (r <= 0) {
            if (r < 0)
                return -1;
            continue;
        }
        if (ev.kind == SHC_EV_SO && strcmp(ev.so.name, x->obj.name) == 0) {
            *m = ev.so;
            return 1;
        }
        shc_event_cleanup(&ev);
    }
}

static int fail_closed(so_ctx *x)
{
    fprintf(stderr, "sohub-cli: %s\n", shc_error(x->c));
    return 1;
}

static int fail_timeout(so_ctx *x, const char *what)
{
    fprintf(stderr, "sohub-cli: timed out after %d ms waiting for %s\n", x->deadline_ms, what);
    return 1;
}

/* Use, then apply messages until UseSuccess (or a Status refusing it). */
static int so_subscribe(so_ctx *x, cli_so_event_fn fn, void *ud)
{
    if (cli_so_use(x->c, &x->obj) != 0)
        return fail_closed(x);
    while (!x->obj.synced) {
        so_msg m;
        int r = next_so(x, left_ms(x), &m);
        if (r < 0)
            return fail_closed(x);
        if (r == 0)
            return fail_timeout(x, "the object");
        cli_so_apply(&x->obj, &m, fn, ud);
        so_msg_cleanup(&m);
        if (!x->obj.synced && x->obj.status[0]) {
            fprintf(stderr, "sohub-cli: cannot use '%s': %s\n", x->obj.name, x->obj.status);
            return 1;
        }
    }
    return 0;
}

static int cmd_get(so_ctx *x)
{
    int rc = so_subscribe(x, NULL, NULL);
    if (rc)
        return rc;
    /* A large object's state may span several messages: take what follows
     * at once. */
    so_msg m;
    while (next_so(x, 50, &m) == 1) {
        cli_so_apply(&x->obj, &m, NULL, NULL);
        so_msg_cleanup(&m);
    }
    cli_print_json(cJSON_Duplicate(x->obj.slots, 1));
    return 0;
}

typedef struct watch_st {
    long printed;
    long count;
} watch_st;

static void watch_line(void *ud, cli_so *o, const so_event *ev, cJSON *line)
{
    (void)o;
    (void)ev;
    watch_st *w = ud;
    if (w->count >= 0 && w->printed >= w->count) {
        cJSON_Delete(line);
        return;
    }
    w->printed++;
    cli_print_json(line);
}

static int cmd_watch(so_ctx *x)
{
    cli_catch_signals();
    watch_st w = {0, x->o.count};
    /* No overall deadline for watch unless --timeout was given. */
    x->end = x->o.timeout_s > 0 ? x->end : INT64_MAX;
    int rc = so_subscribe(x, watch_line, &w);
    if (rc)
        return cli_interrupted ? 0 : rc;
    while (!cli_interrupted && (w.count < 0 || w.printed < w.count)) {
        int l = left_ms(x);
        if (l == 0)
            break;
        so_msg m;
        int r = next_so(x, l > 1000 ? 1000 : l, &m);
        if (r < 0)
            return fail_closed(x);
        if (r == 0)
            continue;
        cli_so_apply(&x->obj, &m, watch_line, &w);
        so_msg_cleanup(&m);
    }
    return 0;
}

/* After a write of key: waits for its answer.  Success -> 0; a Status
 * (refused) or a Change of key without Success (a concurrent write won,
 * PROTOCOL.md rule 3) -> 1 with a message. */
static int wait_write(so_ctx *x, const char *key, const char *verb)
{
    bool overridden = false;
    int64_t grace_end = 0;
    for (;;) {
        int l = left_ms(x);
        if (overridden) {
            int g = (int)(grace_end - shc_now_ms());
            l = g < l ? (g < 0 ? 0 : g) : l;
        }
        so_msg m;
        int r = l > 0 ? next_so(x, l, &m) : 0;
        if (r < 0)
            return fail_closed(x);
        if (r == 0) {
            if (overridden) {
                cJSON *cur = cJSON_GetObjectItemCaseSensitive(x->obj.slots, key);
                char *s = cur ? cJSON_PrintUnformatted(cur) : NULL;
                fprintf(stderr, "sohub-cli: %s of '%s' refused: another client changed it first "
                        "(current value: %s)\n", verb, key, s ? s : "none");
                free(s);
                return 1;
            }
            return fail_timeout(x, "the server's answer");
        }
        x->obj.status[0] = '\0';
        bool success = false;
        for (size_t i = 0; i < m.nevents; i++) {
            const so_event *ev = &m.events[i];
            if (ev->type == SO_EV_SUCCESS && strcmp(ev->kv[0].key, key) == 0)
                success = true;
            if ((ev->type == SO_EV_CHANGE || ev->type == SO_EV_REMOVE))
                for (size_t k = 0; k < ev->nkv; k++)
                    if (strcmp(ev->kv[k].key, key) == 0 && !overridden) {
                        overridden = true;
                        grace_end = shc_now_ms() + 1000;
                    }
        }
        cli_so_apply(&x->obj, &m, NULL, NULL);
        so_msg_cleanup(&m);
        if (x->obj.status[0]) {
            fprintf(stderr, "sohub-cli: %s of '%s' refused: %s\n", verb, key, x->obj.status);
            return 1;
        }
        if (success)
            return 0;
    }
}

static int cmd_set(so_ctx *x, const char *key, const char *json)
{
    amf_value *v = cli_json_arg(json, "the value");
    if (!v)
        return 1;
    int rc = so_subscribe(x, NULL, NULL);
    if (rc == 0) {
        sh_buf b;
        sh_buf_init(&b, SH_BUF_MAX_DEFAULT);
        const char *keys[1] = {key};
        amf_value *vals[1] = {v};
        int r = so_wire_client_request_change(&b, shc_so_type(x->c), x->obj.name, x->obj.version,
                                              x->obj.persistent, 1, keys, vals);
        if (r == 0)
            r = shc_so_send(x->c, b.data, b.len);
        sh_buf_cleanup(&b);
        rc = r != 0 ? fail_closed(x) : wait_write(x, key, "change");
    }
    amf_unref(v);
    return rc;
}

static int cmd_remove(so_ctx *x, const char *key)
{
    int rc = so_subscribe(x, NULL, NULL);
    if (rc)
        return rc;
    sh_buf b;
    sh_buf_init(&b, SH_BUF_MAX_DEFAULT);
    const char *keys[1] = {key};
    int r = so_wire_client_request_remove(&b, shc_so_type(x->c), x->obj.name, x->obj.version,
                                          x->obj.persistent, 1, keys);
    if (r == 0)
        r = shc_so_send(x->c, b.data, b.len);
    sh_buf_cleanup(&b);
    if (r != 0)
        return fail_closed(x);
    /* A Remove event for our key is the answer to our own request too when
     * the key is gone already; Success is what the engine sends us. */
    return wait_write(x, key, "remove");
}

static int cmd_send(so_ctx *x, const char *handler, int nargs, char **jargs)
{
    amf_value **args = calloc((size_t)nargs + 1, sizeof(*args));
    int rc = args ? 0 : 1;
    for (int i = 0; rc == 0 && i < nargs; i++) {
        char what[32];
        snprintf(what, sizeof(what), "argument %d", i + 1);
        args[i] = cli_json_arg(jargs[i], what);
        if (!args[i])
            rc = 1;
    }
    if (rc == 0)
        rc = so_subscribe(x, NULL, NULL);
    if (rc == 0) {
        sh_buf b;
        sh_buf_init(&b, SH_BUF_MAX_DEFAULT);
        int r = so_wire_client_send(&b, shc_so_type(x->c), x->obj.name, x->obj.version,
                                    x->obj.persistent, handler, (size_t)nargs, args);
        if (r == 0)
            r = shc_so_send(x->c, b.data, b.len);
        sh_buf_cleanup(&b);
        if (r != 0)
            rc = fail_closed(x);
    }
    /* The server sends the message to every subscriber, the sender too:
     * seeing it back means it went out. */
    while (rc == 0) {
        so_msg m;
        int r = next_so(x, left_ms(x), &m);
        if (r < 0) {
            rc = fail_closed(x);
            break;
        }
        if (r == 0) {
            rc = fail_timeout(x, "the message to come back");
            break;
        }
        bool back = false;
        for (size_t i = 0; i < m.nevents; i++)
            if (m.events[i].type == SO_EV_SEND_MESSAGE && m.events[i].handler &&
                strcmp(m.events[i].handler, handler) == 0)
                back = true;
        x->obj.status[0] = '\0';
        cli_so_apply(&x->obj, &m, NULL, NULL);
        so_msg_cleanup(&m);
        if (x->obj.status[0]) {
            fprintf(stderr, "sohub-cli: send refused: %s\n", x->obj.status);
            rc = 1;
        } else if (back) {
            break;
        }
    }
    for (int i = 0; args && i < nargs; i++)
        amf_unref(args[i]);
    free(args);
    return rc;
}

int cli_so_main(int argc, char **argv)
{
    so_ctx x;
    memset(&x, 0, sizeof(x));
    x.o = cli_global;
    if (cli_opts_parse(&argc, argv, &x.o) != 0)
        return 2;
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        so_usage(stdout);
        return 0;
    }
    if (argc < 3) {
        so_usage(stderr);
        return 2;
    }
    const char *sub = argv[1], *name = argv[2];
    int need = !strcmp(sub, "get") || !strcmp(sub, "watch") ? 3
               : !strcmp(sub, "set")                        ? 5
               : !strcmp(sub, "remove")                     ? 4
               : !strcmp(sub, "send")                       ? 4
                                                            : -1;
    if (need < 0 || argc < need || (strcmp(sub, "send") != 0 && argc != need)) {
        if (need < 0)
            fprintf(stderr, "sohub-cli so: unknown subcommand '%s'\n", sub);
        so_usage(stderr);
        return 2;
    }
    x.deadline_ms = cli_timeout_ms(&x.o);
    x.end = shc_now_ms() + x.deadline_ms;
    x.c = cli_connect(&x.o, SHC_DEFAULT_URL);
    if (!x.c)
        return 1;
    cli_so_init(&x.obj, name, x.o.persistent);
    int rc;
    if (!strcmp(sub, "get"))
        rc = cmd_get(&x);
    else if (!strcmp(sub, "watch"))
        rc = cmd_watch(&x);
    else if (!strcmp(sub, "set"))
        rc = cmd_set(&x, argv[3], argv[4]);
    else if (!strcmp(sub, "remove"))
        rc = cmd_remove(&x, argv[3]);
    else
        rc = cmd_send(&x, argv[3], argc - 4, argv + 4);
    cli_so_cleanup(&x.obj);
    shc_close(x.c);
    return rc;
}
