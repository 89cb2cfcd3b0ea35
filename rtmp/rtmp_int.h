/* rtmp_int.h - declarations shared inside rtmp/ only. */
#ifndef RTMP_INT_H
#define RTMP_INT_H

#include "rtmp.h"

/* Records in e that the bytes of a message written by
 * rtmp_chunk_write_full / rtmp_chunk_shared went out on the same
 * connection, so the next compressed header is computed against it.
 * Returns the length of the first chunk's full header, or a negative code
 * when p does not start with a type 0 header. */
int rtmp_chunk_enc_note_full(rtmp_chunk_enc *e, const uint8_t *p, size_t n,
                             uint32_t *msg_len);
/* Bytes rtmp_chunk_write_full produces for m with this chunk size. */
size_t rtmp_chunk_full_size(const rtmp_msg *m, uint32_t chunk_size);

#endif
