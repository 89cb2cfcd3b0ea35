/* fuzz_ws_json.c - the sohub.v1 JSON decoder as app/ws_transport.c runs
 * it: the node pre-count (amf_json_node_bound), cJSON, so_json_decode for
 * "so" messages and so_json_value for call arguments, under limits.
 *
 * Input: mode byte (bit 0: tight limits, else the server's defaults),
 * then the text of one message.
 * Properties: the pre-count is never below the nodes cJSON builds; a
 * message over the count is not parsed (as the server does); a decoded so
 * message is within max_events / max_pairs / max_args, and what the JSON
 * decoder accepts the RTMP wire decoder accepts too under the same limits
 * (so_wire_encode, then so_wire_decode: the same events); the engine can
 * make its JSON body (so_json_from_amf0 of the server's form) and that
 * body decodes again; a value that so_json_value takes prints
 * (so_json_print, numbers exact) and reads back equal (amf_equal).
 */
#include <string.h>

#include "amf_json.h"
#include "fuzz_common.h"
#include "so_json.h"

static size_t tree_nodes(const cJSON *j, int depth)
{
    FZ_CHECK(depth < 2000);
    size_t n = 1;
    for (const cJSON *c = j->child; c; c = c->next)
        n += tree_nodes(c, depth + 1);
    return n;
}

static void check_value(const cJSON *j, const so_wire_limits *lim)
{
    amf_value *v = NULL;
    sh_error e = {0};
    int rc = so_json_value(j, lim, &v, &e);
    if (rc != 0) {
        FZ_CHECK(v == NULL && (rc == SH_EPROTO || rc == SH_ELIMIT || rc == SH_ENOMEM));
        return;
    }
    cJSON *back = amf_json_from_value(v);
    FZ_CHECK(back);
    char *text = amf_json_print_tree(back);
    cJSON_Delete(back);
    FZ_CHECK(text);
    amf_value *v2 = NULL;
    const char *why = NULL;
    if (amf_json_parse(text, &v2, &why) != 0) {
        fprintf(stderr, "printed value does not read back: %s: %.300s\n", why ? why : "", text);
        FZ_CHECK(!"printed value reads back");
    }
    FZ_CHECK(amf_equal(v, v2));
    amf_unref(v2);
    free(text);
    amf_unref(v);
}

static uint8_t server_type(uint8_t t)
{
    return t == SO_EV_REQUEST_CHANGE ? SO_EV_CHANGE : t == SO_EV_REQUEST_REMOVE ? SO_EV_REMOVE : t;
}

static void check_so(const cJSON *j, const so_wire_limits *lim)
{
    so_msg m;
    so_msg_init(&m);
    sh_error e = {0};
    int rc = so_json_decode(j, lim, &m, &e);
    if (rc != 0) {
        FZ_CHECK(m.nevents == 0 && m.name == NULL);
        FZ_CHECK(rc == SH_EPROTO || rc == SH_ELIMIT || rc == SH_ENOMEM);
        return;
    }
    FZ_CHECK(m.nevents <= lim->max_events);
    size_t pairs = 0;
    for (size_t i = 0; i < m.nevents; i++) {
        pairs += m.events[i].nkv;
        FZ_CHECK(m.events[i].nargs <= lim->max_args);
    }
    FZ_CHECK(pairs <= lim->max_pairs);

    /* the RTMP wire decoder takes the same message under the same limits */
    sh_buf body;
    sh_buf_init(&body, SH_BUF_MAX_DEFAULT);
    FZ_CHECK(so_wire_encode(&m, SO_MSG_AMF0, &body) == 0);
    so_msg w;
    so_msg_init(&w);
    rc = so_wire_decode(SO_MSG_AMF0, body.data, body.len, lim, &w, &e);
    if (rc != 0)
        fprintf(stderr, "wire decode refused what JSON took: %s\n", e.what ? e.what : "");
    FZ_CHECK(rc == 0);
    FZ_CHECK(w.nevents == m.nevents && w.name_len == m.name_len);
    for (size_t i = 0; i < m.nevents; i++)
        FZ_CHECK(w.events[i].nkv == m.events[i].nkv && w.events[i].nargs == m.events[i].nargs);
    so_msg_cleanup(&w);

    /* the engine's JSON body of the same events, as the server sends them */
    for (size_t i = 0; i < m.nevents; i++)
        m.events[i].type = server_type(m.events[i].type);
    sh_buf_reset(&body);
    FZ_CHECK(so_wire_encode(&m, SO_MSG_AMF0, &body) == 0);
    sh_rcbuf *json = so_json_from_amf0(body.data, body.len, lim);
    FZ_CHECK(json);
    cJSON *again = cJSON_ParseWithLength((const char *)json->data, json->len);
    FZ_CHECK(again);
    so_msg m2;
    so_msg_init(&m2);
    rc = so_json_decode(again, lim, &m2, &e);
    if (rc != 0)
        fprintf(stderr, "the JSON body does not decode: %s\n", e.what ? e.what : "");
    FZ_CHECK(rc == 0);
    so_msg_cleanup(&m2);
    cJSON_Delete(again);
    sh_rcbuf_unref(json);
    sh_buf_cleanup(&body);
    so_msg_cleanup(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    so_wire_limits lim = so_wire_default_limits;
    size_t max_nodes = 65536; /* max_amf_elements */
    if (data[0] & 1) {
        lim.max_events = 4;
        lim.max_pairs = 6;
        lim.max_args = 3;
        lim.max_value = 256;
        lim.amf.max_depth = 4;
        lim.amf.max_string = 32;
        lim.amf.max_elements = 8;
        lim.amf.max_refs = 8;
        lim.amf.max_total = 256;
        max_nodes = 64;
    }
    size_t n = size - 1;
    char *text = (char *)fz_dup(data + 1, n);
    size_t count = amf_json_node_bound(text, n);
    FZ_CHECK(count >= 1 && count <= n + 1);
    cJSON *j = cJSON_ParseWithLength(text, n);
    if (j) {
        FZ_CHECK(count >= tree_nodes(j, 0));
        if (count <= max_nodes && cJSON_IsObject(j)) {
            const cJSON *op = cJSON_GetObjectItemCaseSensitive(j, "op");
            if (cJSON_IsString(op) && strcmp(op->valuestring, "so") == 0)
                check_so(j, &lim);
            const cJSON *args = cJSON_GetObjectItemCaseSensitive(j, "args");
            const cJSON *a;
            if (cJSON_IsArray(args))
                cJSON_ArrayForEach(a, args) check_value(a, &lim);
            const cJSON *value = cJSON_GetObjectItemCaseSensitive(j, "value");
            if (value)
                check_value(value, &lim);
        }
        cJSON_Delete(j);
    }
    free(text);
    return 0;
}
