/* rtmp_int.h - declarations shared inside rtmp/ only. */
#ifndef RTMP_INT_H
#define RTMP_INT_H

#include "rtmp.h"

/* Records in e that the bytes of a message written by
 * rtmp_chunk_write_full / rtmp_chunk_shared went out on the same
 * connection, so the next compressed header is computed against it.
 * Returns 0, or a negative code when p does not start with a type 0
 * header. */
int rtmp_chunk_enc_note_full(rtmp_chunk_enc *e, const uint8_t *p, size_t n);
/* 0 when p[0..n) is exactly one message as rtmp_chunk_write_full cuts it
 * with this chunk size, SH_EINVAL otherwise. */
int rtmp_chunk_full_check(const uint8_t *p, size_t n, uint32_t chunk_size);

/* As rtmp_chunk_enc_write, into a new buffer of the exact size (one
 * reference returned to the caller). */
int rtmp_chunk_enc_write_rc(rtmp_chunk_enc *e, const rtmp_msg *m, sh_rcbuf **out);

#endif
