/* bench_so.h - the client side of shared-object messages, as much as the
 * benchmark needs (RTMP spec 1.0, 7.1.3; facts in shared/PROTOCOL.md).
 *
 * Encoding is so/so_wire.h's client helpers.  Decoding here is a visitor
 * over the events of one received SO message that allocates nothing for
 * the common case: values that are AMF0 numbers (the benchmark's
 * timestamps) are handed over as doubles, any other value is skipped with
 * the AMF decoder.  The receive path is the hot loop of a fan-out run, and
 * every cycle the load generator spends is taken from the server it
 * measures on the same cores; so_wire_decode() builds an owned so_msg
 * (several allocations per message), which is right for the server but
 * not for this loop.
 *
 * Sans-I/O: bytes in, callbacks out.  Message bodies are borrowed.
 */
#ifndef BENCH_SO_H
#define BENCH_SO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sh_buf.h"

enum {
    BENCH_SO_USE = 1,
    BENCH_SO_RELEASE = 2,
    BENCH_SO_REQUEST_CHANGE = 3,
    BENCH_SO_CHANGE = 4,
    BENCH_SO_SUCCESS = 5,
    BENCH_SO_SEND_MESSAGE = 6,
    BENCH_SO_STATUS = 7,
    BENCH_SO_CLEAR = 8,
    BENCH_SO_REMOVE = 9,
    BENCH_SO_REQUEST_REMOVE = 10,
    BENCH_SO_USE_SUCCESS = 11,
};

#define BENCH_SO_FLAG_PERSISTENT 2u

/* One decoded event.  key / text point into the message (not terminated). */
typedef struct bench_so_event {
    uint8_t type;
    const char *key;     /* Change, Success, Remove; Status: the code */
    size_t key_len;
    bool has_number;     /* Change: the value is a number */
    double number;
} bench_so_event;

typedef void (*bench_so_visit_fn)(void *ud, uint32_t version, const bench_so_event *ev);

/* Walks the events of body[0..len) (type 19, or type 16 when amf3 is
 * true).  Calls visit once per event (once per key/value pair for Change).
 * The object name is returned through name/name_len.  Returns 0 or a
 * negative SH_E* code on malformed input. */
int bench_so_decode(const uint8_t *body, size_t len, bool amf3,
                    const char **name, size_t *name_len,
                    bench_so_visit_fn visit, void *ud);

#endif
