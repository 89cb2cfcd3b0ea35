/* auth.h - signed user tokens for applications with `auth = token`.
 *
 * A token proves that whoever holds the application's secret allowed user
 * U to connect to application A until time E:
 *
 *   token = E "." base64url(HMAC-SHA256(secret, A "\n" U "\n" E))
 *
 * E is the expiry in Unix seconds written in decimal without sign or
 * leading zeros; base64url is RFC 4648 section 5 without '=' padding (43
 * characters for the 32-byte MAC).  The token is bound to the application
 * name (any instance of it) and to the exact user name.  Verification
 * recomputes the MAC and compares in constant time (CRYPTO_memcmp).
 *
 * The mint / verify functions are pure (time passed in, no I/O) and are
 * shared by the server's authenticator hook and `sohub-cli token`.
 * Nothing here logs a token or a secret.
 */
#ifndef APP_AUTH_H
#define APP_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "sh_err.h"

/* Longest token we mint or accept: 20 digits, '.', 43 MAC characters. */
#define AUTH_TOKEN_MAX 64
#define AUTH_MAC_CHARS 43

/* Writes the token for (app, user, expiry) into out (NUL-terminated).
 * Returns 0, SH_EINVAL (empty secret / app / user, negative expiry) or
 * SH_ELIMIT (outsz too small; AUTH_TOKEN_MAX + 1 is always enough). */
int auth_token_mint(const char *secret, const char *app, const char *user, int64_t expiry,
                    char *out, size_t outsz);

/* Checks token for (app, user) at time now (Unix seconds).  Returns 0 when
 * valid; otherwise a negative code and *why (may be NULL) set to a static
 * description fit for NetConnection.Connect.Rejected:
 *   SH_EDENIED  "Missing user name", "Missing token", "Malformed token",
 *               "Token expired", "Invalid token"
 *   SH_EINVAL   "Server has no secret" (configuration error)
 *   SH_EIO      "Token check failed" (libcrypto failure) */
int auth_token_verify(const char *secret, const char *app, const char *user, const char *token,
                      int64_t now, const char **why);

/* base64url without padding of n bytes into out (needs 4 * ceil(n / 3) + 1
 * bytes at most).  Returns the number of characters written. */
size_t auth_b64url(const uint8_t *p, size_t n, char *out);

struct app_server;
/* Installs the token authenticator in the server (app_server_set_authenticator).
 * It runs for clients of applications with auth = token, checks the token
 * against the section's secret, and rejects with a description (logged
 * with the connection id, application and user; never the token). */
void auth_install(struct app_server *s);

#endif
