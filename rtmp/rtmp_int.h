/* rtmp_int.h - declarations shared inside rtmp/ only. */
#ifndef RTMP_INT_H
#define RTMP_INT_H

#include "rtmp.h"

/* As rtmp_chunk_enc_write into dst[0..cap); SH_ELIMIT (nothing written,
 * no state changed) when the chunks would not fit. */
int rtmp_chunk_enc_write_small(rtmp_chunk_enc *e, const rtmp_msg *m, uint8_t *dst, size_t cap,
                               size_t *n);
/* Memory the decoder holds: stream table and message buffers. */
size_t rtmp_chunk_dec_mem(const rtmp_chunk_dec *d);

/* As rtmp_chunk_enc_write, into a new buffer of the exact size (one
 * reference returned to the caller). */
int rtmp_chunk_enc_write_rc(rtmp_chunk_enc *e, const rtmp_msg *m, sh_rcbuf **out);

#endif
