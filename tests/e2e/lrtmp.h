/* lrtmp.h - small helpers over librtmp for end-to-end tests: connect, call a
 * method and wait (bounded) for its _result / _error. */
#ifndef E2E_LRTMP_H
#define E2E_LRTMP_H

#include <stddef.h>

/* A librtmp session (opaque, so this header does not pull librtmp's amf.h
 * into files that use sohub's amf.h). */
typedef struct e2e_lr e2e_lr;

/* Connects to rtmp://127.0.0.1:port/path (handshake + connect command).
 * Returns the session or NULL. */
e2e_lr *e2e_lr_connect(int port, const char *path);
void e2e_lr_close(e2e_lr *s);

typedef struct e2e_lr_answer {
    char name[32];      /* "_result" or "_error" */
    char value[256];    /* _result: first argument when a string;
                           _error: the info object's code */
    char desc[256];     /* _error: the info object's description */
} e2e_lr_answer;

/* Sends method(txid, null, strarg) (strarg NULL = no argument) and reads
 * packets until the answer to txid arrives or timeout_ms passes.  Control
 * messages are handed to librtmp (chunk size, acks).  Returns 0 or -1. */
int e2e_lr_call(e2e_lr *s, const char *method, double txid, const char *strarg,
                e2e_lr_answer *ans, int timeout_ms);

/* Sends name(txid, null, strarg) without waiting.  Returns 0 or -1. */
int e2e_lr_send(e2e_lr *s, const char *name, double txid, const char *strarg);
/* Reads packets until the _result / _error of txid arrives. */
int e2e_lr_wait(e2e_lr *s, double txid, e2e_lr_answer *ans, int timeout_ms);
/* Reads packets until a command named method arrives (a server-to-client
 * call); *txid gets its transaction id, arg its first argument when a
 * string.  Returns 0 or -1. */
int e2e_lr_wait_invoke(e2e_lr *s, const char *method, double *txid, char *arg, size_t argsz,
                       int timeout_ms);

#endif
