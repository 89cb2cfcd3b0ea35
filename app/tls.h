/* tls.h - TLS under any transport (OpenSSL, memory BIOs).
 *
 * A connection accepted on a TLS listener (https_listen now; rtmps later)
 * gets an app_tls between its socket and its transport: what the socket
 * reads goes through app_tls_read and the transport sees plaintext; what
 * the transport queues (plaintext, in the connection's sh_outq) is
 * encrypted by app_tls_write into the TLS layer's own queue, which is
 * what the socket writes.  Shared buffers cannot be shared through TLS
 * (each connection encrypts its own bytes); everything else is the same.
 *
 * TLS 1.2 and later, the certificate chain and key from PEM files, ALPN
 * http/1.1 offered.  Loop thread only.
 */
#ifndef APP_TLS_H
#define APP_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sh_buf.h"
#include "sh_rcbuf.h"

typedef struct app_tls_ctx app_tls_ctx;
typedef struct app_tls app_tls;

/* Loads cert_file (PEM chain) and key_file.  NULL with a message in err
 * on failure. */
app_tls_ctx *app_tls_ctx_new(const char *cert_file, const char *key_file, char *err,
                             size_t errsz);
void app_tls_ctx_free(app_tls_ctx *x);   /* accepts NULL */

app_tls *app_tls_new(app_tls_ctx *x);    /* NULL when out of memory */
void app_tls_free(app_tls *t);           /* accepts NULL */

/* Ciphertext from the socket: appends the plaintext it yields to plain
 * (whose maximum bounds it), and queues what TLS must answer (handshake,
 * alerts) on app_tls_out.  Returns 0, or -1 when the session failed (a
 * bad handshake, a bad record, plaintext over plain's maximum): *why
 * says what. */
int app_tls_read(app_tls *t, const uint8_t *in, size_t len, sh_buf *plain, const char **why);
/* Encrypts every byte queued in plain (consumed) onto app_tls_out.
 * Returns 0 or -1. */
int app_tls_write(app_tls *t, sh_outq *plain, const char **why);
/* The ciphertext waiting for the socket. */
sh_outq *app_tls_out(app_tls *t);
bool app_tls_handshake_done(const app_tls *t);
/* Memory the session holds beside its output queue (an estimate). */
size_t app_tls_mem(const app_tls *t);

#endif
