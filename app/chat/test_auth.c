/* test_auth.c - unit tests of the token code (app/auth.c). */
#include <criterion/criterion.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"

#define NOW 1700000000

static void mint(const char *secret, const char *app, const char *user, int64_t exp, char *out)
{
    cr_assert_eq(auth_token_mint(secret, app, user, exp, out, AUTH_TOKEN_MAX + 1), 0);
}

Test(b64url, rfc4648_vectors_without_padding)
{
    /* RFC 4648 section 10 vectors, padding removed. */
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *out[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char b[16];
        size_t n = auth_b64url((const uint8_t *)in[i], strlen(in[i]), b);
        cr_assert_str_eq(b, out[i]);
        cr_assert_eq(n, strlen(out[i]));
    }
    const uint8_t url[] = {0xfb, 0xff, 0xbf};
    char b[8];
    auth_b64url(url, 3, b);
    cr_assert_str_eq(b, "-_-_", "uses '-' and '_', not '+' and '/'");
}

Test(token, shape_and_independent_mac)
{
    char t[AUTH_TOKEN_MAX + 1];
    mint("s3cret", "chat", "alice", NOW + 60, t);
    char digits[32];
    snprintf(digits, sizeof digits, "%d.", NOW + 60);
    cr_assert_eq(strncmp(t, digits, strlen(digits)), 0);
    cr_assert_eq(strlen(t), strlen(digits) + AUTH_MAC_CHARS);
    /* The MAC computed here independently with the documented message. */
    char msg[128];
    int n = snprintf(msg, sizeof msg, "chat\nalice\n%d", NOW + 60);
    uint8_t md[32];
    unsigned int mdlen = 0;
    HMAC(EVP_sha256(), "s3cret", 6, (const uint8_t *)msg, (size_t)n, md, &mdlen);
    char mac[64];
    auth_b64url(md, 32, mac);
    cr_assert_str_eq(t + strlen(digits), mac);
}

Test(token, good_token_accepted)
{
    char t[AUTH_TOKEN_MAX + 1];
    mint("s3cret", "chat", "alice", NOW + 60, t);
    const char *why = "unset";
    cr_assert_eq(auth_token_verify("s3cret", "chat", "alice", t, NOW, &why), 0);
    cr_assert_eq(auth_token_verify("s3cret", "chat", "alice", t, NOW + 59, NULL), 0);
}

Test(token, expired_rejected_at_and_after_expiry)
{
    char t[AUTH_TOKEN_MAX + 1];
    mint("s3cret", "chat", "alice", NOW, t);
    const char *why = NULL;
    cr_assert_eq(auth_token_verify("s3cret", "chat", "alice", t, NOW, &why), SH_EDENIED);
    cr_assert_str_eq(why, "Token expired");
    cr_assert_eq(auth_token_verify("s3cret", "chat", "alice", t, NOW + 1000, &why), SH_EDENIED);
    cr_assert_eq(auth_token_verify("s3cret", "chat", "alice", t, NOW - 1, &why), 0);
}

Test(token, bound_to_secret_app_user_and_expiry)
{
    char t[AUTH_TOKEN_MAX + 1];
    mint("s3cret", "chat", "alice", NOW + 60, t);
    const char *why = NULL;
    cr_assert_eq(auth_token_verify("other", "chat", "alice", t, NOW, &why), SH_EDENIED);
    cr_assert_str_eq(why, "Invalid token");
    cr_assert_eq(auth_token_verify("s3cret", "chat2", "alice", t, NOW, &why), SH_EDENIED);
    cr_assert_eq(auth_token_verify("s3cret", "chat", "bob", t, NOW, &why), SH_EDENIED);
    cr_assert_eq(auth_token_verify("s3cret", "chat", "alic", t, NOW, &why), SH_EDENIED);
    /* Moving the expiry forward breaks the MAC. */
    char forged[AUTH_TOKEN_MAX + 2];
    snprintf(forged, sizeof forged, "%d%s", NOW + 99, strchr(t, '.'));
    cr_assert_eq(auth_token_verify("s3cret", "chat", "alice", forged, NOW, &why), SH_EDENIED);
    cr_assert_str_eq(why, "Invalid token");
    /* Every single-character change of the MAC is refused. */
    char *mac = strchr(t, '.') + 1;
    for (size_t i = 0; i < AUTH_MAC_CHARS; i++) {
        char saved = mac[i];
        mac[i] = saved == 'A' ? 'B' : 'A';
        cr_assert_neq(auth_token_verify("s3cret", "chat", "alice", t, NOW, NULL), 0, "pos %zu", i);
        mac[i] = saved;
    }
    cr_assert_eq(auth_token_verify("s3cret", "chat", "alice", t, NOW, NULL), 0);
}

Test(token, malformed_rejected)
{
    char t[AUTH_TOKEN_MAX + 1];
    mint("s3cret", "chat", "alice", NOW + 60, t);
    const char *mac = strchr(t, '.') + 1;
    char buf[256];
    const char *why = NULL;
    const char *bad[] = {
        "x", ".", "123", "123.", "abc.def", "-1.x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(auth_token_verify("s3cret", "chat", "alice", bad[i], NOW, &why), SH_EDENIED);
        cr_assert_str_eq(why, "Malformed token", "%s", bad[i]);
    }
    snprintf(buf, sizeof buf, "+%d.%s", NOW + 60, mac); /* sign */
    cr_assert_eq(auth_token_verify("s3cret", "chat", "alice", buf, NOW, &why), SH_EDENIED);
    snprintf(buf, sizeof buf, "0%d.%s", NOW + 60, mac); /* leading zero */
    cr_assert_eq(auth_token_verify("s3cret", "chat", "alice", buf, NOW, &why), SH_EDENIED);
    cr_assert_str_eq(why, "Malformed token");
    snprintf(buf, sizeof buf, "%d.%s=", NOW + 60, mac); /* padding */
    cr_assert_eq(auth_token_verify("s3cret", "chat", "alice", buf, NOW, &why), SH_EDENIED);
    cr_assert_str_eq(why, "Malformed token");
    snprintf(buf, sizeof buf, "%d.%.42s", NOW + 60, mac); /* one short */
    cr_assert_eq(auth_token_verify("s3cret", "chat", "alice", buf, NOW, &why), SH_EDENIED);
    cr_assert_str_eq(why, "Malformed token");
    snprintf(buf, sizeof buf, "99999999999999999999.%s", mac); /* 20 digits */
    cr_assert_eq(auth_token_verify("s3cret", "chat", "alice", buf, NOW, &why), SH_EDENIED);
    cr_assert_str_eq(why, "Malformed token");
}

Test(token, missing_parts)
{
    const char *why = NULL;
    cr_assert_eq(auth_token_verify("s3cret", "chat", "", "1.x", NOW, &why), SH_EDENIED);
    cr_assert_str_eq(why, "Missing user name");
    cr_assert_eq(auth_token_verify("s3cret", "chat", "alice", "", NOW, &why), SH_EDENIED);
    cr_assert_str_eq(why, "Missing token");
    cr_assert_eq(auth_token_verify("s3cret", "chat", "alice", NULL, NOW, &why), SH_EDENIED);
    cr_assert_eq(auth_token_verify("", "chat", "alice", "1.x", NOW, &why), SH_EINVAL);
    cr_assert_str_eq(why, "Server has no secret");
}

Test(mint, refuses_bad_arguments_and_small_buffers)
{
    char t[AUTH_TOKEN_MAX + 1];
    cr_assert_eq(auth_token_mint("", "chat", "alice", NOW, t, sizeof t), SH_EINVAL);
    cr_assert_eq(auth_token_mint("s", "", "alice", NOW, t, sizeof t), SH_EINVAL);
    cr_assert_eq(auth_token_mint("s", "chat", "", NOW, t, sizeof t), SH_EINVAL);
    cr_assert_eq(auth_token_mint("s", "chat", "alice", -1, t, sizeof t), SH_EINVAL);
    cr_assert_eq(auth_token_mint("s", "chat", "alice", NOW, t, 20), SH_ELIMIT);
    /* Exactly enough room: 10 digits + '.' + 43 + NUL. */
    cr_assert_eq(auth_token_mint("s", "chat", "alice", NOW, t, 10 + 1 + 43 + 1), 0);
    cr_assert_eq(auth_token_mint("s", "chat", "alice", NOW, t, 10 + 1 + 43), SH_ELIMIT);
    /* Largest expiry still fits AUTH_TOKEN_MAX and verifies. */
    cr_assert_eq(auth_token_mint("s", "chat", "alice", INT64_MAX, t, sizeof t), 0);
    cr_assert_eq(auth_token_verify("s", "chat", "alice", t, NOW, NULL), 0);
}
