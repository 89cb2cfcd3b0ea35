/* rtmp_int.h - declarations shared inside rtmp/ only. */
#ifndef RTMP_INT_H
#define RTMP_INT_H

#include "rtmp.h"

/* 0 when p[0..n) is exactly one message as rtmp_chunk_write_full cuts it
 * with this chunk size, SH_EINVAL otherwise. */
int rtmp_chunk_full_check(const uint8_t *p, size_t n, uint32_t chunk_size);
/* rtmp_chunk_full_check that also returns the message header (hdr->data
 * NULL): what rtmp_chunk_enc_note_hdr needs, from one parse. */
int rtmp_chunk_full_parse(const uint8_t *p, size_t n, uint32_t chunk_size, rtmp_msg *hdr);
/* Records in e that a message written by rtmp_chunk_write_full /
 * rtmp_chunk_shared, whose first header is hdr, went out on the same
 * connection, so the next compressed header is computed against it. */
int rtmp_chunk_enc_note_hdr(rtmp_chunk_enc *e, const rtmp_msg *hdr);

/* As rtmp_chunk_enc_write, into a new buffer of the exact size (one
 * reference returned to the caller). */
int rtmp_chunk_enc_write_rc(rtmp_chunk_enc *e, const rtmp_msg *m, sh_rcbuf **out);

#endif
