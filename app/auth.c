/* auth.c - token minting and checking (see auth.h), and the server's
 * authenticator hook. */
#include "auth.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "sh_log.h"

#define AUTH_DIGITS_MAX 19 /* an int64 Unix time */

size_t auth_b64url(const uint8_t *p, size_t n, char *out)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
        out[o++] = tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

/* MAC characters of (app, user, expiry digits) into mac (AUTH_MAC_CHARS + 1). */
static int compute_mac(const char *secret, const char *app, const char *user,
                       const char *digits, size_t ndigits, char *mac)
{
    size_t na = strlen(app), nu = strlen(user);
    if (na > 4096 || nu > 4096 || ndigits > AUTH_DIGITS_MAX)
        return SH_EINVAL;
    uint8_t msg[4096 * 2 + AUTH_DIGITS_MAX + 2];
    memcpy(msg, app, na);
    msg[na] = '\n';
    memcpy(msg + na + 1, user, nu);
    msg[na + 1 + nu] = '\n';
    memcpy(msg + na + nu + 2, digits, ndigits);
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    /* The one-shot HMAC() is not deprecated in OpenSSL 3. */
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), msg, na + nu + 2 + ndigits, md,
              &mdlen) || mdlen != 32)
        return SH_EIO;
    auth_b64url(md, 32, mac);
    OPENSSL_cleanse(md, sizeof(md));
    return 0;
}

int auth_token_mint(const char *secret, const char *app, const char *user, int64_t expiry,
                    char *out, size_t outsz)
{
    if (!secret || !*secret || !app || !*app || !user || !*user || expiry < 0)
        return SH_EINVAL;
    char digits[24];
    int nd = snprintf(digits, sizeof(digits), "%" PRId64, expiry);
    if (nd <= 0 || (size_t)nd + 1 + AUTH_MAC_CHARS + 1 > outsz)
        return SH_ELIMIT;
    char mac[AUTH_MAC_CHARS + 1];
    int rc = compute_mac(secret, app, user, digits, (size_t)nd, mac);
    if (rc)
        return rc;
    memcpy(out, digits, (size_t)nd);
    out[nd] = '.';
    memcpy(out + nd + 1, mac, AUTH_MAC_CHARS + 1);
    return 0;
}

static int deny(const char **why, int code, const char *text)
{
    if (why)
        *why = text;
    return code;
}

int auth_token_verify(const char *secret, const char *app, const char *user, const char *token,
                      int64_t now, const char **why)
{
    if (!secret || !*secret)
        return deny(why, SH_EINVAL, "Server has no secret");
    if (!user || !*user)
        return deny(why, SH_EDENIED, "Missing user name");
    if (!token || !*token)
        return deny(why, SH_EDENIED, "Missing token");
    /* Strict shape: digits (no sign, no leading zero), '.', 43 MAC chars. */
    size_t nd = 0;
    while (token[nd] >= '0' && token[nd] <= '9')
        nd++;
    if (nd == 0 || nd > AUTH_DIGITS_MAX || (nd > 1 && token[0] == '0') || token[nd] != '.' ||
        strlen(token + nd + 1) != AUTH_MAC_CHARS)
        return deny(why, SH_EDENIED, "Malformed token");
    int64_t expiry = 0;
    for (size_t i = 0; i < nd; i++) {
        int d = token[i] - '0';
        if (expiry > (INT64_MAX - d) / 10)
            return deny(why, SH_EDENIED, "Malformed token");
        expiry = expiry * 10 + d;
    }
    char mac[AUTH_MAC_CHARS + 1];
    int rc = compute_mac(secret, app ? app : "", user, token, nd, mac);
    if (rc)
        return deny(why, SH_EIO, "Token check failed");
    /* Check the MAC before the time so an attacker learns nothing about
     * expiry handling from a forged token. */
    bool same = CRYPTO_memcmp(mac, token + nd + 1, AUTH_MAC_CHARS) == 0;
    OPENSSL_cleanse(mac, sizeof(mac));
    if (!same)
        return deny(why, SH_EDENIED, "Invalid token");
    if (expiry <= now)
        return deny(why, SH_EDENIED, "Token expired");
    return 0;
}

/* ---- the server's authenticator hook ---- */

static void authenticate(app_server *s, app_conn *c, const app_app_config *cfg,
                         const app_connect_info *info, app_verdict *v, void *ud)
{
    (void)s;
    (void)ud;
    if (cfg->auth != APP_AUTH_TOKEN) {
        v->reject = true;
        snprintf(v->description, sizeof(v->description), "Unsupported authentication mode");
        return;
    }
    const char *why = NULL;
    int rc = auth_token_verify(cfg->secret, info->app, info->user, info->token,
                               (int64_t)time(NULL), &why);
    if (rc == 0) {
        SH_LOG(SH_LOG_DEBUG, "conn=%llu token accepted app=%s user=%s",
               (unsigned long long)app_conn_id(c), info->app, info->user);
        return;
    }
    v->reject = true;
    snprintf(v->description, sizeof(v->description), "%s", why);
    /* info->app and info->user were sanitised by the connect parser. */
    SH_LOG(rc == SH_EDENIED ? SH_LOG_INFO : SH_LOG_WARN,
           "conn=%llu auth failed peer=%s app=%s user=%s: %s", (unsigned long long)app_conn_id(c),
           app_conn_peer(c), info->app, info->user[0] ? info->user : "-", why);
}

void auth_install(app_server *s)
{
    app_server_set_authenticator(s, authenticate, NULL);
}
