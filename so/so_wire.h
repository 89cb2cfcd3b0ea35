/* so_wire.h - shared-object message codec (RTMP message types 19 and 16).
 *
 * Sans-I/O: turns one complete message body into an so_msg and back.  Used
 * by the server's engine (so.h) and by clients (sohub-cli, the benchmark),
 * so the client-side helpers that build Use / RequestChange / ... live here
 * too.
 *
 * Layout (RTMP spec 1.0, 7.1.3; see docs/so-engine.md):
 *   [type 16 only: one byte, 0 or 3 accepted, 0 written]
 *   u16 name length, name bytes
 *   u32 version
 *   u32 flags (bit 0x02 = persistent, other bits ignored), u32 reserved
 *   events until the body ends: u8 type, u32 length, body[length]
 *
 * Values are written AMF0 when AMF0 carries them exactly (checked by a
 * round trip for anything beyond plain scalars); otherwise the whole value
 * is written as AMF0 0x11 followed by AMF3.  So every value, whatever
 * format it came in, is delivered and stored losslessly.  Each value we
 * write is an independent AMF context: the encoder resets its reference
 * tables before every top-level value, so no reference crosses from one
 * value to the next.
 *
 * On input a value comes in one of two forms:
 *   AMF0 form     AMF0 values, any of which may switch to AMF3 with 0x11;
 *                 each value an independent context (as we write them).
 *                 Type 19 messages have only this form.
 *   raw AMF3 form AMF3 values with no 0x11 marker, as Red5 writes to AMF3
 *                 clients (after a leading byte of 0) and reads after a
 *                 leading byte of 3.  The AMF3 reference tables span the
 *                 whole message, as in Red5's reader and writer.
 * Keys, names and status strings are u16-length strings in both forms; a
 * SendMessage handler may be an AMF0 string in both.  The markers of the
 * two formats overlap, so the form is decided per event, whatever the
 * leading byte: an event is read in the AMF0 form first, and an event of
 * a type-16 message that does not read whole that way (a marker AMF0
 * does not have, a value that overruns its event, a limit) is read again
 * in the raw AMF3 form.  Common AMF3 values never read whole as AMF0 (an
 * AMF3 integer opens with AMF0's reserved movieclip marker, an array with
 * AMF0's object-end, an object with a strict-array count far beyond the
 * event ...).  When both fail, the AMF0 reading's error is reported.
 *
 * Limits: names and keys are at most 65535 bytes by the format itself; the
 * number of events, pairs per message, SendMessage arguments and the bytes
 * of one value are capped by so_wire_limits before anything is allocated.
 * Memory: the whole decoded message (names, keys, arrays, every value and
 * the decoders' tables, by the amf_mem_block model) holds at most
 * max_memory, and one value within it at most amf_limits_memory() of the
 * value limits (amf.max_memory, by default 16 times max_value); each
 * allocation is checked before it is made.
 *
 * Ownership: an so_msg owns every string and value it points to; free it
 * with so_msg_cleanup().  Strings are copied and NUL-terminated.
 */
#ifndef SO_WIRE_H
#define SO_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "amf.h"
#include "sh_buf.h"
#include "sh_err.h"

/* RTMP message types of a shared-object message, and the JSON form
 * (so_json.h) the engine makes for JSON clients. */
enum {
    SO_MSG_JSON = 1,    /* JSON text: so_json.h */
    SO_MSG_AMF3 = 16,   /* leading byte, then the AMF0 layout */
    SO_MSG_AMF0 = 19,
};

/* Event types (RTMP spec 1.0, 7.1.3). */
typedef enum so_event_type {
    SO_EV_USE = 1,             /* C->S, empty */
    SO_EV_RELEASE = 2,         /* C->S, empty */
    SO_EV_REQUEST_CHANGE = 3,  /* C->S, (u16 key, value)+ */
    SO_EV_CHANGE = 4,          /* S->C, (u16 key, value)+ */
    SO_EV_SUCCESS = 5,         /* S->C, u16 key */
    SO_EV_SEND_MESSAGE = 6,    /* both, AMF0 string handler, then AMF args */
    SO_EV_STATUS = 7,          /* S->C, u16 code, u16 level */
    SO_EV_CLEAR = 8,           /* S->C, empty */
    SO_EV_REMOVE = 9,          /* S->C, u16 key */
    SO_EV_REQUEST_REMOVE = 10, /* C->S, u16 key */
    SO_EV_USE_SUCCESS = 11,    /* S->C, empty */
} so_event_type;

#define SO_FLAG_PERSISTENT 0x02u

/* One (key, value) pair of a Change / RequestChange, or the key of a
 * Success / Remove / RequestRemove (value NULL). */
typedef struct so_kv {
    char *key;          /* owned, NUL-terminated (may contain NUL bytes: use key_len) */
    size_t key_len;
    amf_value *value;   /* owned reference; NULL for key-only events */
    size_t value_len;   /* bytes the value took on the wire (0 when built locally) */
    size_t value_mem;   /* memory the value holds, amf_value_mem() (0 when built
                         * locally); raw AMF3 values may share blocks with each
                         * other, each counts them in full */
} so_kv;

/* One event.  Which fields are used depends on `type`:
 *   Change, RequestChange: kv[0..nkv)
 *   Success, Remove, RequestRemove: kv[0].key (nkv == 1)
 *   SendMessage: handler, args[0..nargs)
 *   Status: code, level
 *   Use, Release, Clear, UseSuccess: nothing
 *   any other type (unknown): nothing; the body was skipped. */
typedef struct so_event {
    uint8_t type;
    so_kv *kv;
    size_t nkv;
    char *handler;      /* owned */
    size_t handler_len;
    amf_value **args;   /* owned references */
    size_t nargs;
    char *code;         /* owned */
    char *level;        /* owned */
} so_event;

typedef struct so_msg {
    char *name;         /* owned, NUL-terminated */
    size_t name_len;
    uint32_t version;
    bool persistent;
    uint32_t flags;     /* the raw first flags word as received */
    so_event *events;   /* owned */
    size_t nevents;
    size_t cap_events;  /* private */
} so_msg;

typedef struct so_wire_limits {
    uint32_t max_events;      /* events in one message */
    uint32_t max_pairs;       /* (key, value) pairs in one message, all events together */
    uint32_t max_args;        /* arguments of one SendMessage */
    uint32_t max_value;       /* wire bytes of one value (also amf max_total) */
    size_t max_memory;        /* memory the whole decoded message holds */
    amf_limits amf;           /* limits inside one value (max_memory 0: the
                               * default of amf.h, from max_value) */
} so_wire_limits;

#define SO_WIRE_DEFAULT_MAX_EVENTS 4096
#define SO_WIRE_DEFAULT_MAX_PAIRS 4096
#define SO_WIRE_DEFAULT_MAX_ARGS 64
#define SO_WIRE_DEFAULT_MAX_VALUE (1u << 20)
/* 16 times the largest message the server takes by default (1 MiB, as
 * AMF_MEMORY_PER_BYTE for one AMF context). */
#define SO_WIRE_DEFAULT_MAX_MEMORY ((size_t)16 << 20)

extern const so_wire_limits so_wire_default_limits;

void so_msg_init(so_msg *m);
/* Frees everything m owns; m is left empty (so_msg_init state). */
void so_msg_cleanup(so_msg *m);
/* Makes dst (in the init state) an independent copy of src: strings and
 * arrays are copied, values shared (one more reference each).  Returns 0
 * or SH_ENOMEM (dst left empty). */
int so_msg_copy(so_msg *dst, const so_msg *src);

/* Decodes one complete message body of RTMP type msg_type (16 or 19).
 * limits may be NULL (defaults).  On success returns 0 and fills *m (which
 * must be in the init state; the caller cleans it up).  Errors:
 *   SH_EMORE   the body ends inside the header or an event (a complete
 *              RTMP message that gives this is truncated: treat as malformed)
 *   SH_EPROTO  malformed (bad leading byte, an event's body does not hold
 *              what its type needs, a value that overruns its event ...)
 *   SH_ELIMIT  a cap of `limits` was passed (memory included)
 *   SH_ENOMEM
 * with details in *err (may be NULL).  On error *m is cleaned up. */
int so_wire_decode(uint8_t msg_type, const uint8_t *body, size_t len,
                   const so_wire_limits *limits, so_msg *m, sh_error *err);

/* ---- encoding: low level (append to an sh_buf) ----
 * Every function returns 0 or SH_ENOMEM / SH_ELIMIT (buffer maximum) and
 * leaves out->failed set on failure, so a run of calls can be checked once. */

/* Writes the header: the type-16 leading 0 when msg_type is 16, the name,
 * the version and the flags (2 or 0, then 0). */
int so_wire_put_header(sh_buf *out, uint8_t msg_type, const char *name,
                       size_t name_len, uint32_t version, bool persistent);
/* Use, Release, Clear, UseSuccess (any empty event). */
int so_wire_put_empty(sh_buf *out, uint8_t type);
/* Success, Remove, RequestRemove. */
int so_wire_put_key(sh_buf *out, uint8_t type, const char *key, size_t key_len);
/* Status. */
int so_wire_put_status(sh_buf *out, const char *code, const char *level);
/* Change / RequestChange with n pairs (keys[i] of key_lens[i] bytes).
 * enc may be NULL (a temporary encoder is used). */
int so_wire_put_pairs(sh_buf *out, uint8_t type, amf_enc *enc, size_t n,
                      const char *const *keys, const size_t *key_lens,
                      amf_value *const *values);
/* SendMessage: handler as an AMF0 string with its marker, then the args. */
int so_wire_put_send(sh_buf *out, amf_enc *enc, const char *handler,
                     size_t handler_len, size_t nargs, amf_value *const *args);

/* Events written piecewise: begin remembers where the length goes, add
 * keys / values, end patches the length. */
int so_wire_event_begin(sh_buf *out, uint8_t type, size_t *mark);
int so_wire_event_key(sh_buf *out, const char *key, size_t key_len);
/* Appends one value in the exact form described at the top (AMF0, or
 * 0x11 + AMF3).  enc may be NULL; it is reset before use. */
int so_wire_event_value(sh_buf *out, amf_enc *enc, const amf_value *v);
int so_wire_event_end(sh_buf *out, size_t mark);

/* Encodes a whole so_msg (any event types) as a body of msg_type. */
int so_wire_encode(const so_msg *m, uint8_t msg_type, sh_buf *out);

/* ---- encoding: client helpers (each writes one complete body) ---- */
int so_wire_client_use(sh_buf *out, uint8_t msg_type, const char *name,
                       uint32_t version, bool persistent);
int so_wire_client_release(sh_buf *out, uint8_t msg_type, const char *name,
                           uint32_t version, bool persistent);
/* One RequestChange event carrying n pairs (one atomic update on sohub). */
int so_wire_client_request_change(sh_buf *out, uint8_t msg_type, const char *name,
                                  uint32_t version, bool persistent, size_t n,
                                  const char *const *keys, amf_value *const *values);
/* One RequestRemove event per key, in one message (one atomic update). */
int so_wire_client_request_remove(sh_buf *out, uint8_t msg_type, const char *name,
                                  uint32_t version, bool persistent, size_t n,
                                  const char *const *keys);
int so_wire_client_send(sh_buf *out, uint8_t msg_type, const char *name,
                        uint32_t version, bool persistent, const char *handler,
                        size_t nargs, amf_value *const *args);

/* Name of an event type for logs ("use", "change", ... or "unknown"). */
const char *so_event_name(uint8_t type);

#endif
