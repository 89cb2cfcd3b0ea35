/* ws.h - WebSocket (RFC 6455) and permessage-deflate (RFC 7692), sans-I/O.
 *
 * Three parts, none of which touches a socket or a clock:
 *  - the opening handshake's checks and answer (key, version, tokens,
 *    the deflate offer);
 *  - output: frames a server writes (unmasked, one frame per message) and
 *    messages compressed on their own (no context takeover), so the same
 *    bytes can go to many connections;
 *  - input (ws_in): frames read with wslay (libwslay), whose context
 *    exists only while a frame or a message is unfinished, so an idle
 *    reader holds its struct and nothing else.  Each frame header (and
 *    each control frame whole) is checked here before wslay reads it, so
 *    every broken frame gets its RFC close code and a message over the
 *    cap is refused at its header.  Whole text messages come out through
 *    a callback, inflated and UTF-8-checked; pongs and the close
 *    handshake too.  The replies wslay makes (pong, close) are appended
 *    to an sh_buf for the caller to send.
 */
#ifndef WS_H
#define WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sh_buf.h"
#include "sh_err.h"
#include "sh_rcbuf.h"

enum { WS_OP_CONT = 0, WS_OP_TEXT = 1, WS_OP_BINARY = 2, WS_OP_CLOSE = 8, WS_OP_PING = 9,
       WS_OP_PONG = 10 };

/* ---- handshake ---- */

/* True when the comma-separated list holds token (case-insensitive). */
bool ws_has_token(const char *list, const char *token);
/* True when key is 24 characters of base64 for 16 bytes. */
bool ws_key_ok(const char *key);
/* Sec-WebSocket-Accept for key into out (at least 29 bytes). */
void ws_accept_key(const char *key, char *out);
/* Room for ws_deflate_answer's out. */
#define WS_DEFLATE_ANSWER_MAX 128
/* Looks for the first offer of permessage-deflate in a
 * Sec-WebSocket-Extensions value (NULL: none) that a server compressing
 * every message on its own, with a full window, can agree to (RFC 7692
 * 7: known parameters, each at most once, valid values;
 * server_max_window_bits only 15).  Writes the value of the answer's
 * Sec-WebSocket-Extensions into out and returns true; false (and out
 * untouched) when no offer fits. */
bool ws_deflate_answer(const char *extensions, char *out, size_t outsz);

/* ---- output ---- */

/* Writes the header of one unmasked final frame into h (10 bytes room);
 * returns its length. */
size_t ws_frame_header(uint8_t *h, uint8_t opcode, bool rsv1, size_t payload_len);
/* One whole frame in a new buffer (one reference for the caller). */
sh_rcbuf *ws_frame(uint8_t opcode, bool rsv1, const uint8_t *payload, size_t n);

/* Compression state, one per thread that compresses or inflates: no
 * context is kept from one message to the next. */
typedef struct ws_zip ws_zip;
ws_zip *ws_zip_new(void);
void ws_zip_free(ws_zip *z);    /* accepts NULL */
/* One message compressed (RFC 7692 7.2.1: raw DEFLATE, the final
 * 00 00 ff ff left off), in a new buffer; NULL when out of memory. */
sh_rcbuf *ws_zip_deflate(ws_zip *z, const uint8_t *p, size_t n);
/* Inflates one message into out (whose maximum caps it).  Returns 0,
 * SH_ELIMIT (out's maximum passed) or SH_EPROTO (not DEFLATE data). */
int ws_zip_inflate(ws_zip *z, const uint8_t *p, size_t n, sh_buf *out);

bool ws_utf8_valid(const uint8_t *p, size_t n);

/* ---- input ---- */

typedef struct ws_in ws_in;

typedef enum ws_in_event {
    WS_IN_TEXT,      /* a whole text message: data, len (valid for the call) */
    WS_IN_BINARY,    /* a whole binary message */
    WS_IN_PONG,      /* a pong: its payload */
    WS_IN_CLOSE,     /* the peer's close: len is its code (0: none); the
                        reply is already in out */
} ws_in_event;

/* Called for each event; returning false stops the feed (the caller
 * closes, for example). */
typedef bool (*ws_in_fn)(void *ud, ws_in_event ev, const uint8_t *data, size_t len);

/* max_message caps a message (also once inflated); deflate: RSV1 (a
 * compressed message) is allowed; zip: the inflater (borrowed, may be
 * NULL without deflate).  NULL when out of memory. */
ws_in *ws_in_new(size_t max_message, bool deflate, ws_zip *zip);
void ws_in_free(ws_in *w);    /* accepts NULL */
/* Changes the message cap for messages that start after the call (a
 * server raises it once the client's connect was accepted). */
void ws_in_set_max_message(ws_in *w, size_t max_message);

/* Room out needs beyond the bytes fed: a pong is no longer than its
 * ping, and a control frame held from an earlier feed or a close frame
 * is at most 131 bytes. */
#define WS_IN_REPLY_SLACK 512

/* Feeds bytes read from the peer.  Calls fn for each message; replies
 * wslay makes (pongs, the close reply, a close frame answering a protocol
 * error) are appended to out, and those to the frames before a message
 * are in out when fn is called for it: a caller that queues out before
 * acting on the message keeps the order of the peer's frames.  *used:
 * bytes taken (all of them, unless fn stopped the feed or max_msgs
 * messages were handed out: the rest waits for the next call).  Returns
 * 0, or the close code the connection failed with (1002 protocol error,
 * 1007 bad UTF-8 or compressed data, 1009 too big; 1003, binary where
 * text only was expected, is the caller's choice): a close frame with it
 * is in out, and nothing more may be fed; 1011 (out of memory, or out
 * full) with no close frame. */
int ws_in_feed(ws_in *w, const uint8_t *in, size_t len, size_t *used, uint32_t max_msgs,
               ws_in_fn fn, void *ud, sh_buf *out);
/* True once a close frame went out (answering the peer's, or an error). */
bool ws_in_closed(const ws_in *w);
/* Bytes the reader holds (for memory accounting). */
size_t ws_in_mem(const ws_in *w);

#endif
