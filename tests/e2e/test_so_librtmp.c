/* test_so_librtmp.c - a shared-object client on librtmp's chunk layer
 * (rtmpdump): RTMP_Connect, then RTMP_SendPacket / RTMP_ReadPacket with SO
 * messages (type 0x13) built by hand (bodies from so_wire.h), sharing an
 * object with one of our own clients.  librtmp applies an incoming Set
 * Chunk Size only inside RTMP_ClientPacket, which would also answer the
 * connect _result with createStream / play, so the chunk size is set on
 * r->m_inChunkSize here and only acks / pings / bandwidth go to
 * RTMP_ClientPacket. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "so_client.h"
#include "so_lrtmp.h"

#define T 5000

static int lr_send_so(so_lr *l, const sh_buf *body)
{
    return so_lr_send(l, 0x13, body->data, body->len);
}

/* Reads until an SO message on `name` with an event of `type` arrives;
 * returns it decoded (owned) or NULL. */
static so_msg *lr_wait_so(so_lr *l, const char *name, uint8_t type, int timeout_ms)
{
    int64_t end = e2e_now_ms() + timeout_ms;
    while (e2e_now_ms() < end) {
        uint8_t mt, *body = NULL;
        size_t len = 0;
        if (so_lr_read(l, &mt, &body, &len, (int)(end - e2e_now_ms())) != 1)
            return NULL;
        so_msg *m = calloc(1, sizeof(*m));
        so_msg_init(m);
        sh_error err = {0};
        int rc = so_wire_decode(mt, body, len, NULL, m, &err);
        free(body);
        if (rc == 0 && strcmp(m->name, name) == 0 && soc_count_events(m, type) > 0)
            return m;
        soc_msg_free(m);
    }
    return NULL;
}

int main(void)
{
    e2e_server srv;
    if (e2e_server_start(&srv, NULL, NULL) != 0)
        return 1;
    /* librtmp reads the last path element as the play path: app sotest/lr. */
    so_lr *lr = so_lr_connect(srv.port, "sotest/lr/stream");
    soc *b = soc_connect(srv.port, "sotest/lr", 0, 0);
    E2E_CHECK(lr && b, "librtmp client and our client connect");
    if (!lr || !b)
        goto out;
    so_lr *r = lr;
    sh_buf body;
    sh_buf_init(&body, 0);

    so_wire_client_use(&body, 19, "lrobj", 0, false);
    E2E_CHECK(lr_send_so(r, &body) == 0, "librtmp sends Use");
    so_msg *m = lr_wait_so(r, "lrobj", SO_EV_USE_SUCCESS, T);
    E2E_CHECK(m != NULL, "librtmp reads UseSuccess");
    uint32_t v = m ? m->version : 0;
    soc_msg_free(m);
    E2E_CHECK(so_lr_in_chunk_size(r) == 4096,
              "chunk size taken from the server's Set Chunk Size (%d)", so_lr_in_chunk_size(r));

    soc_use(b, "lrobj", 0, false);
    soc_msg_free(soc_wait_event(b, "lrobj", SO_EV_USE_SUCCESS, T));

    /* Ours -> librtmp, with a value bigger than several chunks. */
    char *big = malloc(10001);
    memset(big, 'q', 10000);
    big[10000] = '\0';
    soc_set_str(b, "lrobj", soc_version(b, "lrobj"), false, "from_soc", big);
    m = lr_wait_so(r, "lrobj", SO_EV_CHANGE, T);
    const so_event *ev = m ? soc_event(m, SO_EV_CHANGE, 0) : NULL;
    size_t len = 0;
    const char *s = ev && ev->nkv == 1 ? amf_as_string(ev->kv[0].value, &len) : NULL;
    E2E_CHECK(ev && strcmp(ev->kv[0].key, "from_soc") == 0 && s && len == 10000 &&
                  memcmp(s, big, len) == 0,
              "librtmp gets the 10000-byte change intact");
    if (m)
        v = m->version;
    soc_msg_free(m);
    free(big);

    /* librtmp -> ours. */
    sh_buf_reset(&body);
    amf_value *n = amf_number(99);
    const char *key = "from_lr";
    so_wire_client_request_change(&body, 19, "lrobj", v, false, 1, &key, &n);
    amf_unref(n);
    E2E_CHECK(lr_send_so(r, &body) == 0, "librtmp sends RequestChange");
    m = lr_wait_so(r, "lrobj", SO_EV_SUCCESS, T);
    ev = m ? soc_event(m, SO_EV_SUCCESS, 0) : NULL;
    E2E_CHECK(ev && strcmp(ev->kv[0].key, "from_lr") == 0, "librtmp gets Success(from_lr)");
    soc_msg_free(m);
    m = soc_wait_event(b, "lrobj", SO_EV_CHANGE, T);
    E2E_CHECK(m && soc_get_num(b, "lrobj", "from_lr") == 99, "our client sees from_lr = 99");
    soc_msg_free(m);

    /* SendMessage from librtmp reaches both. */
    sh_buf_reset(&body);
    amf_value *arg = amf_string_cstr("ping from librtmp");
    so_wire_client_send(&body, 19, "lrobj", soc_version(b, "lrobj"), false, "onPing", 1, &arg);
    amf_unref(arg);
    lr_send_so(r, &body);
    m = lr_wait_so(r, "lrobj", SO_EV_SEND_MESSAGE, T);
    E2E_CHECK(m != NULL, "librtmp gets its own SendMessage back");
    soc_msg_free(m);
    m = soc_wait_event(b, "lrobj", SO_EV_SEND_MESSAGE, T);
    ev = m ? soc_event(m, SO_EV_SEND_MESSAGE, 0) : NULL;
    E2E_CHECK(ev && strcmp(ev->handler, "onPing") == 0 && ev->nargs == 1 &&
                  amf_is_string(ev->args[0], "ping from librtmp"),
              "our client gets onPing('ping from librtmp')");
    soc_msg_free(m);
    sh_buf_cleanup(&body);
out:
    soc_close(b);
    so_lr_close(lr);
    int st = e2e_server_stop(&srv, e2e_failures > 0);
    E2E_CHECK(st == 0, "server exits 0 (%d)", st);
    if (e2e_failures)
        e2e_log_dump(&srv);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
