/* fuzz_auth.c - token checking (app/auth.h), the identity check of the
 * chat path: a peer sends the user name and the token in connect.
 *
 * Input: user NUL token NUL app (missing parts are empty); the last 8
 * bytes, when present after the third part, set "now".  Fixed secret.
 * Properties:
 *  - auth_token_verify returns 0 or a negative code with a reason;
 *  - it accepts a token only when it is exactly the token
 *    auth_token_mint makes for that app, user and the token's expiry, and
 *    that expiry is after now (no forgery, no alternative spellings);
 *  - a token minted for the fuzzed app / user / expiry verifies before its
 *    expiry and not after it, and fails for another user.
 */
#include <string.h>

#include "auth.h"
#include "fuzz_common.h"

static const char secret[] = "fuzz-secret-0123456789";

static const char *part(fz_in *in, char *buf, size_t bufsz)
{
    size_t n = 0;
    while (fz_left(in) > 0) {
        uint8_t ch = fz_u8(in);
        if (ch == 0)
            break;
        if (n + 1 < bufsz)
            buf[n++] = (char)ch;
    }
    buf[n] = '\0';
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in;
    fz_init(&in, data, size);
    char user[160], token[160], app[160];
    part(&in, user, sizeof(user));
    part(&in, token, sizeof(token));
    part(&in, app, sizeof(app));
    int64_t now = 1700000000;
    if (fz_left(&in) >= 8)
        now = (int64_t)(((uint64_t)fz_u32(&in) << 32 | fz_u32(&in)) >> 1);

    const char *why = NULL;
    int rc = auth_token_verify(secret, app, user, token, now, &why);
    FZ_CHECK(rc <= 0);
    if (rc < 0) {
        FZ_CHECK(why != NULL && *why);
    } else {
        /* accepted: must be the one token we would mint */
        char *dot = strchr(token, '.');
        FZ_CHECK(dot != NULL);
        int64_t expiry = 0;
        for (const char *p = token; p < dot; p++) {
            FZ_CHECK(*p >= '0' && *p <= '9');
            expiry = expiry * 10 + (*p - '0');
        }
        char minted[AUTH_TOKEN_MAX + 1];
        FZ_CHECK(auth_token_mint(secret, app, user, expiry, minted, sizeof(minted)) == 0);
        FZ_CHECK(strcmp(minted, token) == 0);
        FZ_CHECK(expiry > now);
    }

    /* mint / verify round trip on the fuzzed names */
    if (user[0] && app[0] && now < INT64_MAX - 100) {
        char t[AUTH_TOKEN_MAX + 1];
        int64_t expiry = now + 60;
        FZ_CHECK(auth_token_mint(secret, app, user, expiry, t, sizeof(t)) == 0);
        FZ_CHECK(strlen(t) <= AUTH_TOKEN_MAX);
        FZ_CHECK(auth_token_verify(secret, app, user, t, now, &why) == 0);
        FZ_CHECK(auth_token_verify(secret, app, user, t, expiry, &why) == SH_EDENIED);
        char other[sizeof(user) + 1];
        snprintf(other, sizeof(other), "%sx", user);
        FZ_CHECK(auth_token_verify(secret, app, other, t, now, &why) == SH_EDENIED);
    }
    return 0;
}
