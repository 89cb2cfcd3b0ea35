/* so_lrtmp.h - shared-object messages over librtmp's chunk layer, for
 * test_so_librtmp.c.  librtmp's amf.h and ours name the same AMF3 markers,
 * so librtmp is only included in so_lrtmp.c and this interface speaks in
 * plain bytes. */
#ifndef E2E_SO_LRTMP_H
#define E2E_SO_LRTMP_H

#include <stddef.h>
#include <stdint.h>

typedef struct so_lr so_lr;

/* RTMP_Connect to rtmp://127.0.0.1:port/path (handshake + connect). */
so_lr *so_lr_connect(int port, const char *path);
void so_lr_close(so_lr *l);
/* Sends body as one message of `type` on chunk stream 3, message stream 0
 * (RTMP_SendPacket).  Returns 0 or -1. */
int so_lr_send(so_lr *l, uint8_t type, const uint8_t *body, size_t len);
/* Reads packets (RTMP_ReadPacket) until a shared-object message (type 0x13
 * or 0x10) arrives: returns 1 with *body (malloc'd copy, caller frees),
 * *len and *type; 0 on time-out or close.  Set Chunk Size is applied to
 * r->m_inChunkSize by hand; acks, pings and bandwidth go to
 * RTMP_ClientPacket; commands are skipped (RTMP_ClientPacket would answer
 * the connect _result with createStream / play). */
int so_lr_read(so_lr *l, uint8_t *type, uint8_t **body, size_t *len, int timeout_ms);
/* librtmp's current incoming chunk size. */
int so_lr_in_chunk_size(const so_lr *l);

#endif
