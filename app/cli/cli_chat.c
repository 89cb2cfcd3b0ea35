/* cli_chat.c - `sohub-cli chat send|listen|room`.
 *
 * send and listen use the one-to-one chat methods every application has
 * (app/chat/chat.h: chat.sendPrivate, chat.onPrivate, chat.ack).  room is
 * the interactive client of the `chat` sample (samples/chat): the room's
 * messages live in its persistent shared object `room` (one slot per
 * message, key = the message id, value {id, from, text, ts}) and are
 * posted with the server method room.post(text); who is online is the
 * `presence` object (key = user name). */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define CHAT_DEFAULT_URL "rtmp://127.0.0.1:1935/chat/_definst_"
#define ROOM_OBJECT "room"
#define PRESENCE_OBJECT "presence"

static void chat_usage(FILE *f)
{
    fprintf(f,
            "usage: sohub-cli [OPTIONS] chat send USER TEXT\n"
            "       sohub-cli [OPTIONS] chat listen [--count N] [--timeout S]\n"
            "       sohub-cli [OPTIONS] chat room\n"
            "  send    sends a private message (chat.sendPrivate) and prints the answer\n"
            "  listen  prints private messages as JSON lines and acknowledges them\n"
            "  room    interactive: the room of the `chat` sample and your private\n"
            "          messages; type a line to post it, /msg USER TEXT for a private\n"
            "          message, /who for who is online, /quit (or end of input) to leave\n"
            "  The default URL here is %s; --user NAME (and --token T\n"
            "  for auth = token applications) give your identity.\n",
            CHAT_DEFAULT_URL);
}

static bool is_private(const shc_event *ev)
{
    return ev->kind == SHC_EV_CMD && strcmp(ev->cmd.name, "chat.onPrivate") == 0 &&
           ev->cmd.nargs >= 1 && amf_type_of(ev->cmd.args[0]) == AMF_OBJECT;
}

static void ack(shc *c, const amf_value *msg)
{
    const amf_value *id = amf_object_get(msg, "id");
    if (!id)
        return;
    amf_value *a = amf_number(amf_as_number(id));
    shc_call_send(c, "chat.ack", &a, 1, true); /* answer ignored */
    amf_unref(a);
}

/* ---- send ---- */

static int chat_send(const cli_opts *o, const char *to, const char *text)
{
    shc *c = cli_connect(o, CHAT_DEFAULT_URL);
    if (!c)
        return 1;
    amf_value *args[2] = {amf_string_cstr(to), amf_string_cstr(text)};
    double txid = shc_call_send(c, "chat.sendPrivate", args, 2, true);
    amf_unref(args[0]);
    amf_unref(args[1]);
    rtmp_cmd a;
    int r = txid > 0 ? cli_call_wait(c, txid, cli_timeout_ms(o), &a) : -1;
    int rc = 0;
    if (r <= 0) {
        fprintf(stderr, "sohub-cli: %s\n", r < 0 ? shc_error(c) : "no answer (timed out)");
        rc = 1;
    } else {
        const amf_value *v = a.nargs ? a.args[0] : NULL;
        if (v)
            cli_print_value(v);
        if (strcmp(a.name, "_result") != 0) {
            fprintf(stderr, "sohub-cli: not sent: %s: %s\n", cli_str_member(v, "code"),
                    cli_str_member(v, "description"));
            rc = 1;
        }
        rtmp_cmd_cleanup(&a);
    }
    shc_close(c);
    return rc;
}

/* ---- listen ---- */

static int chat_listen(const cli_opts *o)
{
    cli_catch_signals();
    shc *c = cli_connect(o, CHAT_DEFAULT_URL);
    if (!c)
        return 1;
    int64_t end = o->timeout_s > 0 ? shc_now_ms() + cli_timeout_ms(o) : INT64_MAX;
    long got = 0;
    int rc = 0;
    while (!cli_interrupted && (o->count < 0 || got < o->count)) {
        int64_t l = end - shc_now_ms();
        if (l <= 0)
            break;
        shc_event ev;
        int r = shc_next(c, l > 1000 ? 1000 : (int)l, &ev);
        if (r < 0) {
            fprintf(stderr, "sohub-cli: %s\n", shc_error(c));
            rc = 1;
            break;
        }
        if (r == 0)
            continue;
        if (is_private(&ev)) {
            cli_print_value(ev.cmd.args[0]);
            ack(c, ev.cmd.args[0]);
            got++;
        }
        shc_event_cleanup(&ev);
    }
    /* Let the last acknowledgements reach the server before closing. */
    amf_value *nul = amf_null();
    double t = shc_call_send(c, "echo", &nul, 1, true);
    amf_unref(nul);
    rtmp_cmd a;
    if (t > 0 && cli_call_wait(c, t, 2000, &a) == 1)
        rtmp_cmd_cleanup(&a);
    shc_close(c);
    return rc;
}

/* ---- room ---- */

typedef struct pending_call {
    double txid;
    char what[16];      /* "post", "msg", "ack" */
    char to[128];
} pending_call;

#define ROOM_MAX_PENDING 64

typedef struct room_ui {
    shc *c;
    cli_so room, presence;
    double *printed;        /* ids of the room's slots already printed, sorted */
    size_t nprinted;
    bool presence_shown;
    pending_call pend[ROOM_MAX_PENDING];
    size_t npend;
} room_ui;

static void print_time(double ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    printf("[%02d:%02d:%02d] ", tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static double json_num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static const char *json_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static void print_room_msg(const cJSON *m)
{
    print_time(json_num(m, "ts"));
    printf("%s: %s\n", json_str(m, "from"), json_str(m, "text"));
}

static int cmp_id(const void *a, const void *b)
{
    double x = json_num(*(cJSON *const *)a, "id"), y = json_num(*(cJSON *const *)b, "id");
    return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Prints the room's messages not printed yet, oldest (lowest id) first.
 * Called after each message about the room once it is synced: the
 * history arrives in the slots' order, which is no order at all (after a
 * restart it is the store's), so it is sorted here rather than printed
 * slot by slot; a history split over several messages is printed per
 * message, and nothing is skipped.  `printed` is then the ids of the
 * slots the room has now, so it stays as small as the room. */
static void print_new(room_ui *u)
{
    int n = cJSON_GetArraySize(u->room.slots);
    cJSON **v = calloc((size_t)n + 1, sizeof(*v));
    double *ids = calloc((size_t)n + 1, sizeof(*ids));
    if (!v || !ids) {
        free(v);
        free(ids);
        return;
    }
    size_t k = 0;
    for (cJSON *it = u->room.slots->child; it; it = it->next)
        if (cJSON_IsObject(it))
            v[k++] = it;
    qsort(v, k, sizeof(*v), cmp_id);
    bool any = false;
    for (size_t i = 0; i < k; i++) {
        ids[i] = json_num(v[i], "id");
        if (u->printed && bsearch(&ids[i], u->printed, u->nprinted, sizeof(double), cmp_double))
            continue;
        print_room_msg(v[i]);
        any = true;
    }
    if (any)
        fflush(stdout);
    free(u->printed);
    u->printed = ids;
    u->nprinted = k;
    free(v);
}

static void room_event(void *ud, cli_so *o, const so_event *ev, cJSON *line)
{
    room_ui *u = ud;
    (void)ev;
    if (o == &u->room) {
        /* printed by print_new once the whole message is applied */
    } else if (u->presence_shown) {
        const char *who = json_str(line, "key");
        const char *e = json_str(line, "event");
        if (!strcmp(e, "remove")) {
            printf("* %s left\n", who);
            fflush(stdout);
        } else if (!strcmp(e, "change")) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(line, "value");
            if (json_num(v, "connections") == 1) {
                printf("* %s joined\n", who);
                fflush(stdout);
            }
        }
    }
    cJSON_Delete(line);
}

static void print_who(room_ui *u)
{
    printf("* online:");
    int n = 0;
    for (cJSON *it = u->presence.slots->child; it; it = it->next, n++)
        printf("%s %s", n ? "," : "", it->string);
    printf("%s\n", n ? "" : " nobody");
    fflush(stdout);
}

static void track(room_ui *u, double txid, const char *what, const char *to)
{
    if (txid <= 0 || u->npend >= ROOM_MAX_PENDING)
        return;
    pending_call *p = &u->pend[u->npend++];
    p->txid = txid;
    snprintf(p->what, sizeof(p->what), "%s", what);
    snprintf(p->to, sizeof(p->to), "%s", to ? to : "");
}

static void on_answer(room_ui *u, const rtmp_cmd *a)
{
    for (size_t i = 0; i < u->npend; i++) {
        pending_call *p = &u->pend[i];
        if (p->txid != a->txid)
            continue;
        const amf_value *v = a->nargs ? a->args[0] : NULL;
        if (strcmp(a->name, "_result") != 0) {
            printf("! %s: %s\n", cli_str_member(v, "code"), cli_str_member(v, "description"));
        } else if (!strcmp(p->what, "msg")) {
            printf("-> %s (%s)\n", p->to, cli_str_member(v, "status"));
        }
        fflush(stdout);
        u->pend[i] = u->pend[--u->npend];
        return;
    }
}

static void handle_event(room_ui *u, shc_event *ev)
{
    if (ev->kind == SHC_EV_SO) {
        if (cli_so_apply(&u->room, &ev->so, room_event, u)) {
            if (u->room.synced)
                print_new(u);
            if (u->room.status[0]) {
                printf("! room: %s\n", u->room.status);
                u->room.status[0] = '\0';
            }
        } else if (cli_so_apply(&u->presence, &ev->so, room_event, u)) {
            if (u->presence.synced && !u->presence_shown) {
                u->presence_shown = true;
                print_who(u);
            }
        }
    } else if (is_private(ev)) {
        const amf_value *m = ev->cmd.args[0];
        const amf_value *ts = amf_object_get(m, "ts");
        print_time(ts ? amf_as_number(ts) : 0);
        printf("(private) %s: %s\n", cli_str_member(m, "from"), cli_str_member(m, "text"));
        fflush(stdout);
        ack(u->c, m);
    } else if (ev->kind == SHC_EV_CMD &&
               (!strcmp(ev->cmd.name, "_result") || !strcmp(ev->cmd.name, "_error"))) {
        on_answer(u, &ev->cmd);
    }
}

static void handle_line(room_ui *u, char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (!n)
        return;
    if (!strcmp(line, "/who")) {
        print_who(u);
        return;
    }
    if (!strncmp(line, "/msg ", 5)) {
        char *to = line + 5;
        while (*to == ' ')
            to++;
        char *sp = strchr(to, ' ');
        if (!sp || !sp[1]) {
            printf("! usage: /msg USER TEXT\n");
            fflush(stdout);
            return;
        }
        *sp = '\0';
        amf_value *args[2] = {amf_string_cstr(to), amf_string_cstr(sp + 1)};
        track(u, shc_call_send(u->c, "chat.sendPrivate", args, 2, true), "msg", to);
        amf_unref(args[0]);
        amf_unref(args[1]);
        return;
    }
    if (line[0] == '/') {
        printf("! unknown command %s (/msg USER TEXT, /who, /quit)\n", line);
        fflush(stdout);
        return;
    }
    amf_value *t = amf_string_cstr(line);
    track(u, shc_call_send(u->c, "room.post", &t, 1, true), "post", NULL);
    amf_unref(t);
}

static int chat_room(const cli_opts *o)
{
    cli_catch_signals();
    room_ui u;
    memset(&u, 0, sizeof(u));
    u.c = cli_connect(o, CHAT_DEFAULT_URL);
    if (!u.c)
        return 1;
    cli_so_init(&u.room, ROOM_OBJECT, true);
    cli_so_init(&u.presence, PRESENCE_OBJECT, false);
    int rc = 0;
    if (cli_so_use(u.c, &u.room) != 0 || cli_so_use(u.c, &u.presence) != 0)
        rc = 1;
    char buf[8192];
    size_t blen = 0;
    bool in_open = true;
    int64_t drain_end = 0;
    while (rc == 0 && !cli_interrupted) {
        shc_event ev;
        int r;
        while ((r = shc_next(u.c, 0, &ev)) == 1) {
            handle_event(&u, &ev);
            shc_event_cleanup(&ev);
        }
        if (r < 0) {
            fprintf(stderr, "sohub-cli: %s\n", shc_error(u.c));
            rc = 1;
            break;
        }
        if (!in_open && (u.npend == 0 || shc_now_ms() > drain_end))
            break;
        struct pollfd pf[2] = {{shc_fd(u.c), POLLIN, 0}, {0, POLLIN, 0}};
        int pr = poll(pf, in_open ? 2 : 1, 200);
        if (pr <= 0)
            continue;
        if (pf[0].revents)
            if (shc_next(u.c, 0, &ev) == 1) {
                handle_event(&u, &ev);
                shc_event_cleanup(&ev);
            }
        if (in_open && pf[1].revents) {
            ssize_t got = read(0, buf + blen, sizeof(buf) - 1 - blen);
            if (got <= 0) {
                if (got < 0 && errno == EINTR)
                    continue;
                in_open = false;
                drain_end = shc_now_ms() + cli_timeout_ms(o);
                if (blen) {
                    buf[blen] = '\0';
                    handle_line(&u, buf);
                    blen = 0;
                }
                continue;
            }
            blen += (size_t)got;
            buf[blen] = '\0';
            char *start = buf, *nl;
            while ((nl = memchr(start, '\n', blen - (size_t)(start - buf))) != NULL) {
                *nl = '\0';
                if (!strcmp(start, "/quit")) {
                    in_open = false;
                    drain_end = shc_now_ms() + cli_timeout_ms(o);
                    break;
                }
                handle_line(&u, start);
                start = nl + 1;
            }
            if (!in_open) {
                blen = 0;
                continue;
            }
            blen -= (size_t)(start - buf);
            memmove(buf, start, blen);
            if (blen == sizeof(buf) - 1) { /* an endless line: post what we have */
                handle_line(&u, buf);
                blen = 0;
            }
        }
    }
    cli_so_cleanup(&u.room);
    cli_so_cleanup(&u.presence);
    free(u.printed);
    shc_close(u.c);
    return rc;
}

int cli_chat_main(int argc, char **argv)
{
    cli_opts o = cli_global;
    if (cli_opts_parse(&argc, argv, &o) != 0)
        return 2;
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        chat_usage(stdout);
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "send"))
        return chat_send(&o, argv[2], argv[3]);
    if (argc == 2 && !strcmp(argv[1], "listen"))
        return chat_listen(&o);
    if (argc == 2 && !strcmp(argv[1], "room"))
        return chat_room(&o);
    chat_usage(stderr);
    return 2;
}
