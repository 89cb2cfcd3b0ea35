/* tls.c - see tls.h. */
#include "tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sh_err.h"

/* What an OpenSSL session costs beside the queue (buffers of one record
 * each way, the session state): used for memory accounting. */
#define TLS_SESSION_COST (40 * 1024)

struct app_tls_ctx {
    SSL_CTX *ctx;
};

struct app_tls {
    SSL *ssl;
    BIO *rbio;     /* ciphertext in (we write into it) */
    BIO *wbio;     /* ciphertext out (we read from it) */
    sh_outq out;
};

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char http11[] = "\x08http/1.1";
    if (SSL_select_next_proto((unsigned char **)out, outlen, http11, sizeof(http11) - 1, in,
                              inlen) == OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_OK;
    return SSL_TLSEXT_ERR_NOACK;
}

app_tls_ctx *app_tls_ctx_new(const char *cert_file, const char *key_file, char *err,
                             size_t errsz)
{
    app_tls_ctx *x = calloc(1, sizeof(*x));
    if (!x) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    x->ctx = SSL_CTX_new(TLS_server_method());
    if (!x->ctx)
        goto fail;
    SSL_CTX_set_min_proto_version(x->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(x->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(x->ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(x->ctx, cert_file) != 1) {
        snprintf(err, errsz, "tls_cert %s: %s", cert_file,
                 ERR_reason_error_string(ERR_get_error()));
        goto fail_msg;
    }
    if (SSL_CTX_use_PrivateKey_file(x->ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(x->ctx) != 1) {
        snprintf(err, errsz, "tls_key %s: %s", key_file, ERR_reason_error_string(ERR_get_error()));
        goto fail_msg;
    }
    SSL_CTX_set_alpn_select_cb(x->ctx, alpn_select, NULL);
    return x;
fail:
    snprintf(err, errsz, "TLS: %s", ERR_reason_error_string(ERR_get_error()));
fail_msg:
    ERR_clear_error();
    app_tls_ctx_free(x);
    return NULL;
}

void app_tls_ctx_free(app_tls_ctx *x)
{
    if (!x)
        return;
    SSL_CTX_free(x->ctx);
    free(x);
}

app_tls *app_tls_new(app_tls_ctx *x)
{
    app_tls *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->ssl = SSL_new(x->ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        SSL_free(t->ssl);
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        free(t);
        return NULL;
    }
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* the SSL owns both now */
    SSL_set_accept_state(t->ssl);
    sh_outq_init(&t->out);
    return t;
}

void app_tls_free(app_tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    sh_outq_cleanup(&t->out);
    free(t);
}

/* Moves what OpenSSL wrote into the write BIO onto the output queue. */
static int pull_cipher(app_tls *t)
{
    for (;;) {
        size_t pending = BIO_ctrl_pending(t->wbio);
        if (pending == 0)
            return 0;
        sh_rcbuf *b = sh_rcbuf_new(pending);
        if (!b)
            return -1;
        int n = BIO_read(t->wbio, b->data, (int)pending);
        if (n <= 0) {
            sh_rcbuf_unref(b);
            return 0;
        }
        b->len = (size_t)n;
        int rc = sh_outq_push(&t->out, b);
        sh_rcbuf_unref(b);
        if (rc)
            return -1;
    }
}

static const char *ssl_why(void)
{
    unsigned long e = ERR_get_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "TLS error";
}

int app_tls_read(app_tls *t, const uint8_t *in, size_t len, sh_buf *plain, const char **why)
{
    while (len > 0) {
        int w = BIO_write(t->rbio, in, (int)(len > 65536 ? 65536 : len));
        if (w <= 0) {
            *why = "TLS: buffer";
            return -1;
        }
        in += w;
        len -= (size_t)w;
        for (;;) {
            uint8_t buf[16384];
            int n = SSL_read(t->ssl, buf, sizeof(buf));
            if (n > 0) {
                if (sh_buf_append(plain, buf, (size_t)n)) {
                    *why = "TLS: more plaintext than one read may hold";
                    return -1;
                }
                continue;
            }
            int e = SSL_get_error(t->ssl, n);
            if (pull_cipher(t)) {
                *why = "TLS: out of memory";
                return -1;
            }
            if (e == SSL_ERROR_WANT_READ)
                break;
            if (e == SSL_ERROR_ZERO_RETURN) {
                *why = "TLS: peer closed";
                return -1;
            }
            *why = ssl_why();
            return -1;
        }
    }
    return pull_cipher(t) ? (*why = "TLS: out of memory", -1) : 0;
}

int app_tls_write(app_tls *t, sh_outq *plain, const char **why)
{
    if (!SSL_is_init_finished(t->ssl))
        return 0; /* plaintext waits for the handshake */
    struct iovec iov[16];
    while (plain->bytes > 0) {
        size_t n = sh_outq_iov(plain, iov, 16);
        size_t done = 0;
        for (size_t i = 0; i < n; i++) {
            int w = SSL_write(t->ssl, iov[i].iov_base, (int)iov[i].iov_len);
            if (w <= 0) {
                *why = ssl_why();
                return -1;
            }
            done += (size_t)w;
            if ((size_t)w < iov[i].iov_len)
                break;
        }
        sh_outq_consume(plain, done);
        if (pull_cipher(t)) {
            *why = "TLS: out of memory";
            return -1;
        }
    }
    return 0;
}

sh_outq *app_tls_out(app_tls *t)
{
    return &t->out;
}

bool app_tls_handshake_done(const app_tls *t)
{
    return SSL_is_init_finished(t->ssl);
}

size_t app_tls_mem(const app_tls *t)
{
    return sizeof(*t) + TLS_SESSION_COST + sh_outq_mem(&t->out);
}
