/* bench_ws.h - the client side of WebSocket (RFC 6455) and of the
 * sohub.v1 JSON protocol (docs/websocket.md), as much as sohub-benchmark
 * needs.  Sans-I/O: bytes in, callbacks out; nothing here touches a
 * socket or a clock.
 *
 * - The opening handshake: the upgrade request (Sec-WebSocket-Protocol
 *   sohub.v1, permessage-deflate offered only when asked) and the check of
 *   the server's 101 answer (Sec-WebSocket-Accept from http/ws.h's
 *   ws_accept_key).
 * - Client frames: masked, as RFC 6455 5.3 requires, one frame per
 *   message (the header from http/ws.h's ws_frame_header).
 * - Server frames: a reader that takes frames apart in place when a whole
 *   frame is in the read buffer and carries only an incomplete frame's
 *   bytes over to the next read; fragmented messages are assembled,
 *   compressed ones (RSV1) inflated with http/ws.h's ws_zip.
 * - The hot JSON message, {"op":"so",...}: walked in place, event by
 *   event, into the same bench_so_event the RTMP path produces
 *   (bench_so.h), without building a tree; numbers come out as doubles.
 *   Every other message (connect's result, calls) is rare and goes
 *   through cJSON in the worker.
 */
#ifndef BENCH_WS_H
#define BENCH_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench_so.h"
#include "sh_buf.h"
#include "ws.h"

#define BENCH_WS_SUBPROTOCOL "sohub.v1"
/* The server's answer to the upgrade must fit in this many bytes. */
#define BENCH_WS_MAX_RESPONSE 8192

/* ---- the opening handshake ---- */

/* key24 (25 bytes with the NUL): base64 of the 16 random bytes. */
void bench_ws_make_key(const uint8_t random16[16], char key24[25]);

/* Appends the upgrade request for ws://host:port/path. */
int bench_ws_request(sh_buf *out, const char *host, int port, const char *path,
                     const char *key24, bool offer_deflate);

/* Looks at the bytes received so far.  Returns 0 when the header is not
 * complete yet; > 0, the header's length, when it is and the upgrade was
 * accepted (*deflate: permessage-deflate agreed); < 0 when it was refused
 * or malformed, with a reason in why. */
int bench_ws_response(const uint8_t *p, size_t n, const char *key24, bool offered_deflate,
                      bool *deflate, char *why, size_t whysz);

/* ---- client frames ---- */

/* Appends one final, masked frame of payload[0..n) with mask key mask. */
int bench_ws_put_frame(sh_buf *out, uint8_t opcode, const uint8_t *payload, size_t n,
                       const uint8_t mask[4]);

/* ---- server frames ---- */

/* A whole message: opcode (WS_OP_TEXT, _BINARY, _PING, _PONG, _CLOSE) and
 * its payload (inflated when it was compressed), valid for the call.
 * Returning false stops the feed. */
typedef bool (*bench_ws_msg_fn)(void *ud, uint8_t opcode, const uint8_t *p, size_t n);

typedef struct bench_ws_rd {
    sh_buf part;       /* an incomplete frame carried over between reads */
    sh_buf msg;        /* a fragmented data message being assembled */
    sh_buf plain;      /* scratch: an inflated message */
    size_t max_msg;
    ws_zip *zip;       /* borrowed; NULL: compressed messages are an error */
    uint8_t msg_op;    /* opcode of the fragmented message, 0 when none */
    bool msg_rsv1;
} bench_ws_rd;

void bench_ws_rd_init(bench_ws_rd *r, size_t max_msg, ws_zip *zip);
void bench_ws_rd_cleanup(bench_ws_rd *r);

/* Takes apart p[0..n): calls fn once per whole message.  Returns 0, 1
 * when fn asked to stop, or a negative SH_E* code for input no server
 * may send (a masked frame, reserved bits or opcodes, a fragmented or
 * long control frame, a message over max_msg, data that does not
 * inflate); *why then says which. */
int bench_ws_rd_feed(bench_ws_rd *r, const uint8_t *p, size_t n, bench_ws_msg_fn fn, void *ud,
                     const char **why);

/* ---- sohub.v1 JSON ---- */

/* Walks {"op":"so","name":N,"version":V,...,"events":[...]}: calls visit
 * once per event (once per slot of a change: key, and the value when it
 * is a JSON number), with the message's version; the name comes back
 * through name/name_len (in the text, still JSON-escaped).  Keys and
 * codes are the raw text between the quotes (escapes left as they are).
 * Returns 1 when the text is a JSON object whose op is not "so" (the
 * caller takes the slow path), 0 when it was walked, SH_EPROTO when it is
 * not well-formed. */
int bench_ws_so_decode(const char *text, size_t n, const char **name, size_t *name_len,
                       bench_so_visit_fn visit, void *ud);

#endif
