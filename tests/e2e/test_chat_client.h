/* test_chat_client.h - a blocking chat client for the end-to-end chat tests,
 * on sohub's client library (shc, app/cli/client.h).
 *
 * It connects with the user name and token as the first two connect
 * arguments (FMS style), calls methods, and keeps every chat.onPrivate it
 * receives in arrival order.  Every wait is bounded.
 *
 * No message is ever dropped: at most CC_MAX_PRIVATES are kept; with that
 * many kept, cc_pump stops reading (the rest waits in the socket) until
 * the test clears them, and a wait for an answer fails with a message.
 * A message that cannot be kept (no memory) breaks the client: every
 * later call returns -1.
 */
#ifndef E2E_CHAT_CLIENT_H
#define E2E_CHAT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "amf.h"
#include "harness.h"

#define CC_MAX_PRIVATES 65536

typedef struct cc_private {
    double id;
    char from[160];
    char to[160];
    char *text;       /* owned by the client, freed by cc_clear_privates */
    double ts;
    bool has_extra;   /* the object had fields other than the five */
} cc_private;

typedef struct cc cc;

/* Connects to rtmp://127.0.0.1:port/path.  user / token NULL = not sent;
 * extra (may be NULL) are more string connect arguments after them.
 * On a refused connect returns NULL and copies the _error code and
 * description into code / desc (may be NULL). */
cc *cc_connect(int port, const char *path, const char *user, const char *token,
               const char *const *extra, char *code, char *desc, size_t sz);
/* cc_connect as `user` (no token), with SO_RCVBUF set to rcvbuf bytes
 * before the TCP connect (a reader that falls behind); NULL on failure. */
cc *cc_connect_rcvbuf(int port, const char *path, const char *user, int rcvbuf);
void cc_close(cc *c);

/* The answer to a call. */
typedef struct cc_answer {
    bool ok;               /* _result (true) or _error */
    char code[128];        /* _error: info.code */
    char desc[256];        /* _error: info.description */
    double id;             /* _result {id, status} / {acked} fields, NaN when absent */
    char status[32];
    double acked;
} cc_answer;

/* Waits (bounded) until user of app has no connection left as far as the
 * sender's side can tell: at once on one server; in cluster mode until no
 * node listens on the user's Redis channel any more (docs/cluster-chat.md),
 * which a node stops doing in its own time after the last connection
 * closed.  False when that did not happen within timeout_ms. */
bool cc_wait_offline(const e2e_server *s, const char *app, const char *user, int timeout_ms);
/* chat.sendPrivate(to, text [, cid]) and wait for the answer.  cid NULL =
 * two arguments.  Returns 0 with *a, -1 on time-out / closed. */
int cc_send(cc *c, const char *to, const char *text, const char *cid, cc_answer *a);
/* Sends any method with the given arguments (borrowed) and waits. */
int cc_call(cc *c, const char *method, amf_value *const *args, size_t nargs, cc_answer *a);
/* Sends without waiting; returns the txid or -1. */
double cc_call_async(cc *c, const char *method, amf_value *const *args, size_t nargs);
/* Waits for the answer of txid. */
int cc_wait(cc *c, double txid, cc_answer *a, int timeout_ms);
int cc_ack(cc *c, double id, cc_answer *a);

/* Reads input for up to ms (collecting chat.onPrivate); returns at once
 * when CC_MAX_PRIVATES are kept. */
void cc_pump(cc *c, int ms);
/* Waits until at least n private messages were received (bounded). */
bool cc_wait_privates(cc *c, size_t n, int timeout_ms);
size_t cc_private_count(const cc *c);
const cc_private *cc_private_at(const cc *c, size_t i);
void cc_clear_privates(cc *c);
/* Other commands (neither answers nor chat.onPrivate) received. */
size_t cc_other_count(const cc *c);

#endif
