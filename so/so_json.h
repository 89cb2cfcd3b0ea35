/* so_json.h - the JSON form of a shared-object message (sans-I/O).
 *
 * JSON clients (WebSocket, docs/websocket.md) exchange the same messages
 * as RTMP clients, event for event, as one JSON object:
 *
 *   {"op":"so", "name":N, "version":V, "persistent":P, "events":[E...]}
 *
 * N is a string; V a number (u32); P true or false.  Each event E is an
 * object whose "t" names its type:
 *   {"t":"use"} {"t":"release"}                       client -> server
 *   {"t":"change","slots":[[K,VAL],...]}              RequestChange (client), Change (server)
 *   {"t":"remove","key":K}                            RequestRemove (client), Remove (server)
 *   {"t":"send","handler":H,"args":[VAL,...]}         SendMessage, both ways
 *   {"t":"success","key":K} {"t":"status","code":C,"level":L}
 *   {"t":"clear"} {"t":"use_success"}                 server -> client
 * Keys, names and handlers are JSON strings, or the tagged form
 * {"$amf":"string","hex":...} when they are not UTF-8 text without NUL;
 * values use the AMF <-> JSON mapping of docs/amf-json.md (amf_json.h),
 * so an RTMP client and a JSON client see exactly the same values.
 * Slots are [key, value] pairs so any key and the order survive.
 *
 * Ownership as in so_wire.h: a decoded so_msg owns everything it points
 * to (so_msg_cleanup).
 */
#ifndef SO_JSON_H
#define SO_JSON_H

#include <cjson/cJSON.h>

#include "sh_buf.h"
#include "sh_err.h"
#include "sh_rcbuf.h"
#include "so_wire.h"


/* One AMF value from JSON (amf_json_to_value), held to what an RTMP
 * client could send in a shared-object message: its wire form must
 * decode under limits (may be NULL: defaults), depth, string and
 * container sizes and max_value bytes.  Returns 0 with an owned value in
 * *out, SH_EPROTO (not a value of the mapping), SH_ELIMIT or SH_ENOMEM
 * with details in *err (may be NULL); *out is NULL on error. */
int so_json_value(const cJSON *j, const so_wire_limits *limits, amf_value **out, sh_error *err);

/* Decodes an "op":"so" object sent by a client into m (which must be in
 * the so_msg_init state).  Every count is checked against limits (may be
 * NULL: defaults) before anything is built, every value as
 * so_json_value does; an event whose "t" is not
 * known is kept with type 0 (the engine ignores it, as it does unknown
 * RTMP event types).  Returns 0, or SH_EPROTO (malformed: a missing or
 * mistyped member, a value the mapping refuses), SH_ELIMIT, SH_ENOMEM
 * with details in *err; m is cleaned up on error. */
int so_json_decode(const cJSON *j, const so_wire_limits *limits, so_msg *m, sh_error *err);

/* Appends the JSON text of m to out (no trailing newline).  Returns 0 or
 * SH_ENOMEM / SH_ELIMIT (out's maximum; out->failed set). */
int so_json_encode(const so_msg *m, sh_buf *out);


/* The JSON body of the message whose AMF0 body (RTMP type 19) is
 * amf0[0..len): how the engine makes one JSON body per update from the
 * events it encoded once.  Returns an owned buffer, or NULL (out of
 * memory, or a body the codec refuses, which the engine never makes). */
sh_rcbuf *so_json_from_amf0(const uint8_t *amf0, size_t len, const so_wire_limits *limits);

#endif
