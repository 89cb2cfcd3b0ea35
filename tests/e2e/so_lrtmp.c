/* so_lrtmp.c - see so_lrtmp.h. */
#include "so_lrtmp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librtmp/amf.h>
#include <librtmp/log.h>
#include <librtmp/rtmp.h>

#include "harness.h"

struct so_lr {
    RTMP *r;
    char url[512];  /* librtmp keeps pointers into it */
};

so_lr *so_lr_connect(int port, const char *path)
{
    RTMP_LogSetLevel(RTMP_LOGERROR);
    so_lr *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->r = RTMP_Alloc();
    if (!l->r) {
        free(l);
        return NULL;
    }
    RTMP_Init(l->r);
    snprintf(l->url, sizeof(l->url), "rtmp://127.0.0.1:%d/%s", port, path);
    if (!RTMP_SetupURL(l->r, l->url)) {
        so_lr_close(l);
        return NULL;
    }
    l->r->Link.timeout = 5;
    if (!RTMP_Connect(l->r, NULL)) {
        so_lr_close(l);
        return NULL;
    }
    return l;
}

void so_lr_close(so_lr *l)
{
    if (!l)
        return;
    if (l->r) {
        RTMP_Close(l->r);
        RTMP_Free(l->r);
    }
    free(l);
}

int so_lr_send(so_lr *l, uint8_t type, const uint8_t *body, size_t len)
{
    static char pbuf[RTMP_MAX_HEADER_SIZE + 65536];
    if (len > sizeof(pbuf) - RTMP_MAX_HEADER_SIZE)
        return -1;
    RTMPPacket pkt = {0};
    pkt.m_nChannel = 0x03;
    pkt.m_headerType = RTMP_PACKET_SIZE_LARGE;
    pkt.m_packetType = type;
    pkt.m_nInfoField2 = 0;
    pkt.m_body = pbuf + RTMP_MAX_HEADER_SIZE;
    memcpy(pkt.m_body, body, len);
    pkt.m_nBodySize = (uint32_t)len;
    return RTMP_SendPacket(l->r, &pkt, FALSE) ? 0 : -1;
}

int so_lr_read(so_lr *l, uint8_t *type, uint8_t **body, size_t *len, int timeout_ms)
{
    RTMP *r = l->r;
    int64_t end = e2e_now_ms() + timeout_ms;
    for (int i = 0; i < 1000 && e2e_now_ms() < end; i++) {
        RTMPPacket p = {0};
        while (RTMP_IsConnected(r) && RTMP_ReadPacket(r, &p) && !RTMPPacket_IsReady(&p)) {
        }
        if (!RTMP_IsConnected(r) || !RTMPPacket_IsReady(&p) || !p.m_body) {
            RTMPPacket_Free(&p);
            return 0;
        }
        int found = 0;
        if (p.m_packetType == 0x01 && p.m_nBodySize >= 4) {
            r->m_inChunkSize = AMF_DecodeInt32(p.m_body);
        } else if (p.m_packetType >= 0x03 && p.m_packetType <= 0x06) {
            RTMP_ClientPacket(r, &p);
        } else if (p.m_packetType == 0x13 || p.m_packetType == 0x10) {
            *body = malloc(p.m_nBodySize ? p.m_nBodySize : 1);
            if (*body) {
                memcpy(*body, p.m_body, p.m_nBodySize);
                *len = p.m_nBodySize;
                *type = p.m_packetType;
                found = 1;
            }
        }
        RTMPPacket_Free(&p);
        if (found)
            return 1;
    }
    return 0;
}

int so_lr_in_chunk_size(const so_lr *l) { return l->r->m_inChunkSize; }
