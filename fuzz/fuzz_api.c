/* fuzz_api.c - the server API (app/api.c) as a client of the admin
 * listener reaches it: the bytes of one connection, any number of
 * pipelined HTTP requests, through the server's own read path, HTTP
 * transport, API handler and write path.
 *
 * Input: mode byte, then the bytes the client sends.  Mode bits 0-3 pick
 * the size of the writes they go in (1 << n bytes, n = 0..15), so
 * requests also arrive cut at every kind of place and several per read.
 *
 * Each input gets a fresh server on a loop of its own, set up as
 * sohub-server sets up its admin listener (app_api_register, the store
 * module, then app_so_glue_new), with a memory store for every application ([app *]
 * store = memory), small limits (so the 413, 422 and limit paths are
 * near), two API keys (write: "fuzz-write-key-0123456789", read:
 * "fuzz-read-key-0123456789"; fuzz/fuzz_api.dict has them and the paths)
 * and no chat (its store is SQLite: private messages answer 503).  It has
 * no listener (app_server_start_unbound): one end of a socketpair is
 * handed to it as an accepted admin connection (app_server_adopt), the
 * harness writes the input into the other end and reads the answers.  No
 * code of the server is copied here.  The loop runs until the server has
 * read everything and nothing is pending: rounds of reading, each ended
 * by a wait for the store (app_so_when_durable: a persistent write is
 * answered once stored, and the requests behind it wait), until a round
 * adds no answer or the connection is closed; then the server is stopped
 * and freed, and every handle must be closed.
 *
 * Properties: the answers are HTTP/1.1 responses one after the other, no
 * more of them than requests (the same parser, http_req_parser with the
 * admin listener's limits, counts the requests) plus one refusal; each
 * answer to an /api/v1 request that carries application/json is a JSON
 * object, with {"error":{"code":"...","message":"..."}} when its status is
 * 400 or more; every handle is closed when the server stopped (and
 * ASan/LSan see no error or leak).  FUZZ_API_DUMP=1 in the environment
 * prints the answers to stderr.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api.h"
#include "app_internal.h"
#include "config.h"
#include "fuzz_common.h"
#include "http.h"
#include "http_req.h"
#include "sh_buf.h"
#include "sh_log.h"
#include "so_glue.h"
#include "store.h"

#define MAX_REQUESTS 4096
#define OUT_MAX ((size_t)64 << 20)

static const char config_text[] =
    "[server]\n"
    "admin_listen = 127.0.0.1:0\n"
    "http_max_body = 4096\n"
    "max_amf_elements = 256\n"
    "max_amf_depth = 8\n"
    "so_max_updates_per_sec = 0\n"
    "log_level = error\n"
    "[api_key w]\n"
    "secret = fuzz-write-key-0123456789\n"
    "scope = write\n"
    "[api_key r]\n"
    "secret = fuzz-read-key-0123456789\n"
    "scope = read\n"
    "[app *]\n"
    "store = memory\n"
    "max_so_slots = 8\n";

static app_config cfg;
static bool cfg_ready;

static void remove_dir(void)
{
    char path[4096];
    static const char *const files[] = {"sohub.db", "sohub.db-wal", "sohub.db-shm"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", cfg.data_dir, files[i]);
        unlink(path);
    }
    rmdir(cfg.data_dir);
}

static void config_once(void)
{
    if (cfg_ready)
        return;
    char err[APP_CONFIG_ERR_MAX] = "";
    app_config_init(&cfg);
    FZ_CHECK(app_config_load_string(&cfg, config_text, "fuzz_api.ini", err, sizeof(err)) == 0);
    /* the store module opens its SQLite file (chat's tables) under
     * data_dir even when every object is in memory: a directory of the
     * process's own, removed at exit */
    static char dir[] = "/tmp/sohub-fuzz-api-XXXXXX";
    FZ_CHECK(mkdtemp(dir) != NULL);
    free(cfg.data_dir);
    cfg.data_dir = strdup(dir);
    FZ_CHECK(cfg.data_dir != NULL);
    atexit(remove_dir);
    FZ_CHECK(app_config_validate(&cfg, err, sizeof(err)) == 0);
    sh_log_set_level(SH_LOG_ERROR);
    cfg_ready = true;
}

/* The requests of the input, as the server's parser will see them:
 * whether each is a HEAD (its answer has no body) and an API request. */
typedef struct req_info {
    bool head;
    bool api;
} req_info;

static size_t parse_requests(const uint8_t *d, size_t n, req_info *out, size_t max)
{
    http_limits lim = {
        .max_target = cfg.http_max_target,
        .max_header_bytes = cfg.http_max_header_bytes,
        .max_body = cfg.http_max_body,
    };
    http_req_parser *p = http_req_parser_new(&lim);
    FZ_CHECK(p);
    size_t k = 0, off = 0;
    while (off < n && k < max) {
        size_t used = 0;
        int status = 0;
        sh_error e = {0};
        http_request r;
        int rc = http_req_parser_feed(p, d + off, n - off, &used, &r, &status, &e);
        off += used;
        if (rc <= 0)
            break;
        out[k].head = r.method == HTTP_HEAD;
        out[k].api = strncmp(r.path, "/api/v1", 7) == 0 && (r.path[7] == '/' || !r.path[7]);
        k++;
        if (r.upgrade)
            break;
    }
    http_req_parser_free(p);
    return k;
}

/* The value of header name in head[0..n) (lines "Name: value\r\n"), copied
 * into out; false when absent. */
static bool header_of(const char *head, size_t n, const char *name, char *out, size_t outsz)
{
    size_t nl = strlen(name);
    for (const char *p = head; p < head + n;) {
        const char *e = memchr(p, '\n', (size_t)(head + n - p));
        size_t len = e ? (size_t)(e - p) : (size_t)(head + n - p);
        if (len > nl + 1 && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = (size_t)(p + len - v);
            if (vl && v[vl - 1] == '\r')
                vl--;
            if (vl >= outsz)
                vl = outsz - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return true;
        }
        p += len + 1;
    }
    return false;
}

static void check_json_answer(int status, const char *body, size_t n)
{
    cJSON *j = cJSON_ParseWithLength(body, n);
    FZ_CHECK(j != NULL && cJSON_IsObject(j));
    if (status >= 400) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        FZ_CHECK(cJSON_IsObject(e));
        FZ_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "code")));
        FZ_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "message")));
    }
    cJSON_Delete(j);
}

/* The answers in out, against the requests. */
static void check_answers(const sh_buf *out, const req_info *req, size_t nreq)
{
    if (out->len == 0)
        return; /* (out->data may be NULL) */
    const char *p = (const char *)out->data, *end = p + out->len;
    size_t i = 0;
    while (p < end) {
        FZ_CHECK(i <= nreq); /* the last may be a refusal of no request */
        FZ_CHECK((size_t)(end - p) > 13 && memcmp(p, "HTTP/1.1 ", 9) == 0);
        int status = atoi(p + 9);
        FZ_CHECK(status >= 100 && status <= 599);
        const char *he = NULL;
        for (const char *q = p; q + 4 <= end; q++)
            if (memcmp(q, "\r\n\r\n", 4) == 0) {
                he = q;
                break;
            }
        FZ_CHECK(he != NULL);
        char v[64];
        FZ_CHECK(header_of(p, (size_t)(he - p), "Content-Length", v, sizeof(v)));
        size_t len = strtoul(v, NULL, 10);
        bool head = i < nreq && req[i].head;
        bool api = i < nreq ? req[i].api : true;
        const char *body = he + 4;
        size_t blen = head ? 0 : len;
        FZ_CHECK((size_t)(end - body) >= blen);
        char ct[128];
        if (api && blen && header_of(p, (size_t)(he - p), "Content-Type", ct, sizeof(ct)) &&
            strncmp(ct, "application/json", 16) == 0)
            check_json_answer(status, body, blen);
        p = body + blen;
        i++;
    }
}

static void drain(int fd, sh_buf *out, bool *eof)
{
    uint8_t buf[65536];
    for (;;) {
        ssize_t k = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (k > 0) {
            FZ_CHECK(sh_buf_append(out, buf, (size_t)k) == 0);
            continue;
        }
        if (k == 0)
            *eof = true;
        return;
    }
}

static void on_durable(void *ud, int status)
{
    (void)status;
    *(bool *)ud = true;
}

/* True when the server's end has no unread byte and no input waits in a
 * backlog (the connection handled all it was given). */
static bool input_done(app_server *s, int server_fd)
{
    int unread = 0;
    if (ioctl(server_fd, FIONREAD, &unread) != 0)
        return true;
    return unread == 0 && s->backlog_head == NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    config_once();
    size_t piece = (size_t)1 << (data[0] & 15);
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    static req_info req[MAX_REQUESTS];
    size_t nreq = parse_requests(d, n, req, MAX_REQUESTS);

    uv_loop_t loop;
    FZ_CHECK(uv_loop_init(&loop) == 0);
    app_server *s = app_server_new(&cfg, &loop);
    FZ_CHECK(s != NULL);
    char err[256];
    FZ_CHECK(app_api_register(s) == 0);
    app_store *st = app_store_new(s, err, sizeof(err));
    FZ_CHECK(st != NULL);
    app_so_glue *g = app_so_glue_new(s, err, sizeof(err));
    FZ_CHECK(g != NULL);
    FZ_CHECK(app_server_start_unbound(s) == 0);
    int sv[2];
    FZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    FZ_CHECK(fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK) == 0);
    FZ_CHECK(app_server_adopt(s, APP_LISTEN_ADMIN, sv[0]) == 0);

    sh_buf out;
    sh_buf_init(&out, OUT_MAX);
    size_t off = 0, answered = (size_t)-1;
    bool eof = false, write_closed = false;
    for (int guard = 0; guard < 1000000 && !eof; guard++) {
        if (off < n && !write_closed) {
            size_t k = n - off < piece ? n - off : piece;
            ssize_t w = send(sv[1], d + off, k, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                off += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                write_closed = true; /* the server closed its end */
        }
        uv_run(&loop, UV_RUN_NOWAIT);
        drain(sv[1], &out, &eof);
        if (app_server_conn_count(s) == 0)
            break; /* closed (its socket too) */
        if ((off < n && !write_closed) || !input_done(s, sv[0]))
            continue;
        /* everything read: wait for the store, so that answers held until
         * a write is stored go out and the requests behind them run */
        bool fired = false;
        FZ_CHECK(app_so_when_durable(g, on_durable, &fired) == 0);
        for (int w = 0; w < 1000000 && !fired; w++)
            uv_run(&loop, UV_RUN_NOWAIT);
        FZ_CHECK(fired);
        uv_run(&loop, UV_RUN_NOWAIT);
        drain(sv[1], &out, &eof);
        if (out.len == answered && app_server_conn_count(s) && input_done(s, sv[0]))
            break; /* a round that added nothing: done */
        answered = out.len;
    }
    app_server_stop(s, "fuzz input done");
    uv_run(&loop, UV_RUN_DEFAULT);
    drain(sv[1], &out, &eof);
    close(sv[1]);
    app_so_glue_free(g);
    app_store_free(st);
    app_server_free(s);
    FZ_CHECK(uv_loop_close(&loop) == 0);

    if (getenv("FUZZ_API_DUMP")) /* what the server answered, for writing seeds */
        fwrite(out.data, 1, out.len, stderr);
    check_answers(&out, req, nreq);
    sh_buf_cleanup(&out);
    return 0;
}
