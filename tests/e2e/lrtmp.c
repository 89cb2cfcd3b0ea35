/* lrtmp.c - see lrtmp.h. */
#include "lrtmp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librtmp/log.h>

#include "harness.h"

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

static int handle_invoke(RTMPPacket *p, double txid, e2e_lr_answer *ans)
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
    int found = 0;
    if (t == txid && (AVMATCH(&name, &(AVal)AVC("_result")) ||
                      AVMATCH(&name, &(AVal)AVC("_error")))) {
        found = 1;
        aval_copy(ans->name, sizeof(ans->name), &name);
        AMFObjectProperty *arg = AMF_GetProp(&obj, NULL, 3);
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

int e2e_lr_call(e2e_lr *s, const char *method, double txid, const char *strarg,
                e2e_lr_answer *ans, int timeout_ms)
{
    RTMP *r = s->r;
    memset(ans, 0, sizeof(*ans));
    static char pbuf[RTMP_MAX_HEADER_SIZE + 8192];
    RTMPPacket pkt = {0};
    pkt.m_nChannel = 0x03;
    pkt.m_headerType = RTMP_PACKET_SIZE_LARGE;
    pkt.m_packetType = 0x14;
    pkt.m_body = pbuf + RTMP_MAX_HEADER_SIZE;
    char *enc = pkt.m_body, *end = pbuf + sizeof(pbuf);
    AVal m = {(char *)method, (int)strlen(method)};
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
    if (!RTMP_SendPacket(r, &pkt, FALSE))
        return -1;
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
            found = handle_invoke(&p, txid, ans);
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
