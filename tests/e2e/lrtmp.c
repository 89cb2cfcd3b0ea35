/* lrtmp.c - see lrtmp.h. */
#include "lrtmp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librtmp/log.h>
#include <librtmp/rtmp.h>

#include "harness.h"

/* librtmp keeps pointers into the URL, so it lives with the session. */
struct e2e_lr {
    RTMP *r;
    char url[512];
};

e2e_lr *e2e_lr_connect(int port, const char *path)
{
    RTMP_LogSetLevel(RTMP_LOGERROR);
    e2e_lr *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->r = RTMP_Alloc();
    if (!s->r) {
        free(s);
        return NULL;
    }
    RTMP_Init(s->r);
    snprintf(s->url, sizeof(s->url), "rtmp://127.0.0.1:%d/%s", port, path);
    if (!RTMP_SetupURL(s->r, s->url)) {
        e2e_lr_close(s);
        return NULL;
    }
    s->r->Link.timeout = 5;
    if (!RTMP_Connect(s->r, NULL)) {
        e2e_lr_close(s);
        return NULL;
    }
    return s;
}

void e2e_lr_close(e2e_lr *s)
{
    if (!s)
        return;
    if (s->r) {
        RTMP_Close(s->r);
        RTMP_Free(s->r);
    }
    free(s);
}

static void aval_copy(char *out, size_t outsz, const AVal *v)
{
    size_t n = v->av_val ? (size_t)v->av_len : 0;
    if (n >= outsz)
        n = outsz - 1;
    if (n)
        memcpy(out, v->av_val, n);
    out[n] = '\0';
}

/* Looks at one command packet.  Mode "answer": is it the _result/_error of
 * txid (fills ans)?  Mode "invoke": is it a call named method (fills txid
 * and arg)?  Returns 1 when it matched, 0 when not, -1 on decode failure. */
typedef struct invoke_match {
    double txid;
    e2e_lr_answer *ans;     /* answer mode */
    const char *method;     /* invoke mode */
    double *got_txid;
    char *arg;
    size_t argsz;
} invoke_match;

static int handle_invoke(RTMPPacket *p, invoke_match *m)
{
    AMFObject obj;
    const char *body = p->m_body;
    int size = (int)p->m_nBodySize;
    if (p->m_packetType == 0x11 && size > 0) { /* AMF3 command: skip the 0 byte */
        body++;
        size--;
    }
    if (AMF_Decode(&obj, body, size, FALSE) < 0)
        return -1;
    AVal name;
    AMFProp_GetString(AMF_GetProp(&obj, NULL, 0), &name);
    double t = AMFProp_GetNumber(AMF_GetProp(&obj, NULL, 1));
    AMFObjectProperty *arg = AMF_GetProp(&obj, NULL, 3);
    int found = 0;
    if (m->method) {
        AVal want = {(char *)m->method, (int)strlen(m->method)};
        if (AVMATCH(&name, &want)) {
            found = 1;
            *m->got_txid = t;
            m->arg[0] = '\0';
            if (arg && arg->p_type == AMF_STRING) {
                AVal v;
                AMFProp_GetString(arg, &v);
                aval_copy(m->arg, m->argsz, &v);
            }
        }
    } else if (t == m->txid && (AVMATCH(&name, &(AVal)AVC("_result")) ||
                                AVMATCH(&name, &(AVal)AVC("_error")))) {
        e2e_lr_answer *ans = m->ans;
        found = 1;
        aval_copy(ans->name, sizeof(ans->name), &name);
        if (arg && arg->p_type == AMF_STRING) {
            AVal v;
            AMFProp_GetString(arg, &v);
            aval_copy(ans->value, sizeof(ans->value), &v);
        } else if (arg && arg->p_type == AMF_OBJECT) {
            AMFObject info;
            AMFProp_GetObject(arg, &info);
            AVal code, desc;
            AMFProp_GetString(AMF_GetProp(&info, &(AVal)AVC("code"), -1), &code);
            AMFProp_GetString(AMF_GetProp(&info, &(AVal)AVC("description"), -1), &desc);
            aval_copy(ans->value, sizeof(ans->value), &code);
            aval_copy(ans->desc, sizeof(ans->desc), &desc);
        }
    }
    AMF_Reset(&obj);
    return found;
}

int e2e_lr_send(e2e_lr *s, const char *name, double txid, const char *strarg)
{
    static char pbuf[RTMP_MAX_HEADER_SIZE + 8192];
    RTMPPacket pkt = {0};
    pkt.m_nChannel = 0x03;
    pkt.m_headerType = RTMP_PACKET_SIZE_LARGE;
    pkt.m_packetType = 0x14;
    pkt.m_body = pbuf + RTMP_MAX_HEADER_SIZE;
    char *enc = pkt.m_body, *end = pbuf + sizeof(pbuf);
    AVal m = {(char *)name, (int)strlen(name)};
    enc = AMF_EncodeString(enc, end, &m);
    enc = AMF_EncodeNumber(enc, end, txid);
    *enc++ = AMF_NULL;
    if (strarg) {
        AVal a = {(char *)strarg, (int)strlen(strarg)};
        enc = AMF_EncodeString(enc, end, &a);
    }
    if (!enc)
        return -1;
    pkt.m_nBodySize = (uint32_t)(enc - pkt.m_body);
    return RTMP_SendPacket(s->r, &pkt, FALSE) ? 0 : -1;
}

static int read_until(e2e_lr *s, invoke_match *m, int timeout_ms)
{
    RTMP *r = s->r;
    int64_t deadline = e2e_now_ms() + timeout_ms;
    for (int i = 0; i < 200 && e2e_now_ms() < deadline; i++) {
        RTMPPacket p = {0};
        while (RTMP_IsConnected(r) && RTMP_ReadPacket(r, &p) && !RTMPPacket_IsReady(&p)) {
        }
        if (!RTMP_IsConnected(r) || !RTMPPacket_IsReady(&p) || !p.m_body) {
            RTMPPacket_Free(&p);
            return -1;
        }
        int found = 0;
        if (p.m_packetType == 0x14 || p.m_packetType == 0x11)
            found = handle_invoke(&p, m);
        else if (p.m_packetType <= 6)
            RTMP_ClientPacket(r, &p); /* set chunk size, window, ping */
        RTMPPacket_Free(&p);
        if (found == 1)
            return 0;
        if (found < 0)
            return -1;
    }
    return -1;
}

int e2e_lr_wait(e2e_lr *s, double txid, e2e_lr_answer *ans, int timeout_ms)
{
    memset(ans, 0, sizeof(*ans));
    invoke_match m = {.txid = txid, .ans = ans};
    return read_until(s, &m, timeout_ms);
}

int e2e_lr_wait_invoke(e2e_lr *s, const char *method, double *txid, char *arg, size_t argsz,
                       int timeout_ms)
{
    invoke_match m = {.method = method, .got_txid = txid, .arg = arg, .argsz = argsz};
    return read_until(s, &m, timeout_ms);
}

int e2e_lr_call(e2e_lr *s, const char *method, double txid, const char *strarg,
                e2e_lr_answer *ans, int timeout_ms)
{
    memset(ans, 0, sizeof(*ans));
    if (e2e_lr_send(s, method, txid, strarg) != 0)
        return -1;
    return e2e_lr_wait(s, txid, ans, timeout_ms);
}
