/* rtmp_hs.c - RTMP handshake, both roles, sans-I/O (spec 5.2).
 *
 * Server: reads C0 C1, answers S0 S1 S2, then reads C2 (1536 bytes whose
 * contents are not checked: librtmp and FFmpeg fill it differently).  C1 is
 * checked for a digest ("complex" handshake, as Flash Player and FFmpeg
 * send) at the scheme 0 offset, then at the scheme 1 offset; when neither
 * validates, the simple handshake is used (S1 version 0, S2 = echo of C1),
 * which is what crtmpserver does.
 *
 * Digest layout (public knowledge, see librtmp handshake.h / FFmpeg
 * rtmpproto.c): a 32-byte HMAC-SHA256 sits inside the 1536-byte packet at
 *   scheme 0: (p[8] + p[9] + p[10] + p[11]) % 728 + 12
 *   scheme 1: (p[772] + p[773] + p[774] + p[775]) % 728 + 776
 * and covers every other byte of the packet.  C1 is keyed with the first 30
 * bytes of the player key, S1 with the first 36 bytes of the server key.
 * S2 (digest form) is 1504 bytes of random followed by
 * HMAC(HMAC(server key, C1 digest), S2[0..1504)); C2 likewise with the
 * player key and S1's digest.
 *
 * Client: sends C0 C1 (simple, or digest-signed scheme 0), reads S0 S1 S2,
 * sends C2.  With digest on, an S1 announcing a version (byte 4 non zero)
 * must carry a valid digest and S2 a valid signature; C2 is then signed
 * the FFmpeg way.  Otherwise C2 echoes S1.
 */
#include "rtmp.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

enum { HS = RTMP_HANDSHAKE_SIZE, DIGEST_LEN = 32 };

/* Keys: an ASCII prefix followed by 32 shared bytes. */
static const uint8_t hs_tail[32] = {
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0,
    0xD1, 0x02, 0x9E, 0x7E, 0x57, 0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80,
    0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
};
static const char hs_player_prefix[] = "Genuine Adobe Flash Player 001";      /* 30 */
static const char hs_server_prefix[] = "Genuine Adobe Flash Media Server 001"; /* 36 */
#define PLAYER_PREFIX_LEN 30
#define SERVER_PREFIX_LEN 36

/* Version we announce in a digest S1 / C1.  FFmpeg validates S1 when the
 * first version byte is >= 3. */
static const uint8_t hs_server_version[4] = {5, 0, 3, 1};
static const uint8_t hs_client_version[4] = {10, 0, 32, 18};

typedef enum hs_state {
    HS_S_WAIT_C0C1,   /* server */
    HS_S_WAIT_C2,
    HS_C_START,       /* client, before rtmp_hs_client_start */
    HS_C_WAIT_S0S1S2,
    HS_DONE,
    HS_FAILED,
} hs_state;

struct rtmp_hs {
    rtmp_role role;
    hs_state state;
    bool digest;            /* client: sign C1 */
    int kind;               /* 0 simple, 1 scheme 0, 2 scheme 1 */
    uint32_t epoch;
    uint8_t random[HS];
    uint8_t mine[HS];       /* our C1 or S1 */
    size_t my_digest_pos;   /* client: where our C1 digest sits (0 = none) */
    uint8_t in[1 + 2 * HS]; /* peer bytes being collected */
    size_t in_len;
};

/* ---- digest helpers ---- */

static void hs_key(uint8_t *key, bool server)
{
    if (server) {
        memcpy(key, hs_server_prefix, SERVER_PREFIX_LEN);
        memcpy(key + SERVER_PREFIX_LEN, hs_tail, sizeof(hs_tail));
    } else {
        memcpy(key, hs_player_prefix, PLAYER_PREFIX_LEN);
        memcpy(key + PLAYER_PREFIX_LEN, hs_tail, sizeof(hs_tail));
    }
}

static int hmac256(const uint8_t *key, size_t keylen, const uint8_t *data, size_t len,
                   uint8_t out[DIGEST_LEN])
{
    unsigned int olen = 0;
    if (!HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &olen) || olen != DIGEST_LEN)
        return SH_ENOMEM;
    return 0;
}

size_t rtmp_hs_digest_pos(const uint8_t *p, int scheme)
{
    size_t base = scheme == 0 ? 8 : 772;
    size_t sum = (size_t)p[base] + p[base + 1] + p[base + 2] + p[base + 3];
    return sum % 728 + base + 4;
}

/* HMAC of the packet without its 32 digest bytes at pos. */
static int hs_packet_digest(const uint8_t *p, size_t pos, const uint8_t *key, size_t keylen,
                            uint8_t out[DIGEST_LEN])
{
    uint8_t tmp[HS - DIGEST_LEN];
    memcpy(tmp, p, pos);
    memcpy(tmp + pos, p + pos + DIGEST_LEN, HS - pos - DIGEST_LEN);
    return hmac256(key, keylen, tmp, sizeof(tmp), out);
}

/* Returns the digest position when p carries a valid digest under scheme,
 * 0 otherwise (a valid position is never 0). */
static size_t hs_validate(const uint8_t *p, int scheme, bool server_key)
{
    uint8_t key[SERVER_PREFIX_LEN + 32];
    hs_key(key, server_key);
    size_t keylen = server_key ? SERVER_PREFIX_LEN : PLAYER_PREFIX_LEN;
    size_t pos = rtmp_hs_digest_pos(p, scheme);
    uint8_t d[DIGEST_LEN];
    if (hs_packet_digest(p, pos, key, keylen, d))
        return 0;
    return memcmp(d, p + pos, DIGEST_LEN) == 0 ? pos : 0;
}

static int hs_sign(uint8_t *p, int scheme, bool server_key, size_t *pos_out)
{
    uint8_t key[SERVER_PREFIX_LEN + 32];
    hs_key(key, server_key);
    size_t keylen = server_key ? SERVER_PREFIX_LEN : PLAYER_PREFIX_LEN;
    size_t pos = rtmp_hs_digest_pos(p, scheme);
    int rc = hs_packet_digest(p, pos, key, keylen, p + pos);
    if (pos_out)
        *pos_out = pos;
    return rc;
}

/* The answer to a digest packet: random 1504 bytes, then
 * HMAC(HMAC(full key, peer digest), answer[0..1504)). */
static int hs_answer_sig(const uint8_t *peer_digest, bool server_key, const uint8_t *body,
                         uint8_t out[DIGEST_LEN])
{
    uint8_t key[SERVER_PREFIX_LEN + 32];
    hs_key(key, server_key);
    size_t keylen = (server_key ? SERVER_PREFIX_LEN : PLAYER_PREFIX_LEN) + 32;
    uint8_t tmpkey[DIGEST_LEN];
    int rc = hmac256(key, keylen, peer_digest, DIGEST_LEN, tmpkey);
    if (rc)
        return rc;
    return hmac256(tmpkey, DIGEST_LEN, body, HS - DIGEST_LEN, out);
}

/* A second block of pseudo-random bytes derived from the caller's random
 * (we draw no randomness ourselves): SHA-256 in counter mode. */
static void hs_expand(const uint8_t *random, uint8_t *out, size_t n)
{
    uint8_t block[HS + 4];
    memcpy(block, random, HS);
    for (uint32_t ctr = 0; n > 0; ctr++) {
        sh_put_u32be(block + HS, ctr);
        uint8_t h[SHA256_DIGEST_LENGTH];
        SHA256(block, sizeof(block), h);
        size_t k = n < sizeof(h) ? n : sizeof(h);
        memcpy(out, h, k);
        out += k;
        n -= k;
    }
}

/* ---- public ---- */

rtmp_hs *rtmp_hs_new(rtmp_role role, const uint8_t *random, uint32_t epoch_ms, bool digest)
{
    rtmp_hs *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->role = role;
    h->state = role == RTMP_ROLE_SERVER ? HS_S_WAIT_C0C1 : HS_C_START;
    h->digest = digest;
    h->epoch = epoch_ms;
    if (random)
        memcpy(h->random, random, HS);
    return h;
}

void rtmp_hs_free(rtmp_hs *h)
{
    free(h);
}

int rtmp_hs_kind(const rtmp_hs *h)
{
    return h->kind;
}

int rtmp_hs_client_start(rtmp_hs *h, sh_buf *out)
{
    if (h->role != RTMP_ROLE_CLIENT || h->state != HS_C_START)
        return SH_ESTATE;
    uint8_t *c1 = h->mine;
    memcpy(c1, h->random, HS);
    sh_put_u32be(c1, h->epoch);
    if (h->digest) {
        memcpy(c1 + 4, hs_client_version, 4);
        int rc = hs_sign(c1, 0, false, &h->my_digest_pos);
        if (rc)
            return rc;
    } else {
        memset(c1 + 4, 0, 4);
        h->my_digest_pos = 0;
    }
    sh_buf_put_u8(out, 3);
    sh_buf_append(out, c1, HS);
    if (out->failed)
        return SH_ENOMEM;
    h->state = HS_C_WAIT_S0S1S2;
    return 0;
}

/* Collects bytes into h->in until it holds `want`. */
static bool hs_collect(rtmp_hs *h, size_t want, const uint8_t *in, size_t len, size_t *used)
{
    size_t take = want - h->in_len;
    if (take > len - *used)
        take = len - *used;
    memcpy(h->in + h->in_len, in + *used, take);
    h->in_len += take;
    *used += take;
    return h->in_len == want;
}

static int hs_server_reply(rtmp_hs *h, sh_buf *out, sh_error *err)
{
    const uint8_t *c1 = h->in + 1;
    if (h->in[0] != 3)
        return SH_FAIL(err, SH_EUNSUPPORTED, "handshake: C0 version is not 3", 0);

    size_t cpos = 0;
    int scheme = -1;
    /* A simple C1 has zero version bytes; do not guess digests there. */
    if (sh_get_u32be(c1 + 4) != 0) {
        for (int s = 0; s < 2 && scheme < 0; s++) {
            cpos = hs_validate(c1, s, false);
            if (cpos)
                scheme = s;
        }
    }
    h->kind = scheme + 1;

    uint8_t *s1 = h->mine;
    memcpy(s1, h->random, HS);
    sh_put_u32be(s1, h->epoch);
    uint8_t s2[HS];
    if (scheme < 0) {
        memset(s1 + 4, 0, 4);
        memcpy(s2, c1, HS);
    } else {
        memcpy(s1 + 4, hs_server_version, 4);
        int rc = hs_sign(s1, scheme, true, NULL);
        if (rc == 0) {
            hs_expand(h->random, s2, HS - DIGEST_LEN);
            rc = hs_answer_sig(c1 + cpos, true, s2, s2 + HS - DIGEST_LEN);
        }
        if (rc)
            return SH_FAIL(err, rc, "handshake: HMAC failed", 0);
    }
    sh_buf_put_u8(out, 3);
    sh_buf_append(out, s1, HS);
    sh_buf_append(out, s2, HS);
    if (out->failed)
        return SH_FAIL(err, SH_ENOMEM, "handshake: output buffer", 0);
    return 0;
}

static int hs_client_reply(rtmp_hs *h, sh_buf *out, sh_error *err)
{
    const uint8_t *s1 = h->in + 1, *s2 = h->in + 1 + HS;
    if (h->in[0] != 3)
        return SH_FAIL(err, SH_EUNSUPPORTED, "handshake: S0 version is not 3", 0);

    size_t spos = 0;
    if (h->digest && s1[4] != 0) {
        /* Like FFmpeg: either scheme may carry the server digest. */
        for (int s = 0; s < 2 && !spos; s++) {
            spos = hs_validate(s1, s, true);
            if (spos)
                h->kind = s + 1;
        }
        if (!spos)
            return SH_FAIL(err, SH_EPROTO, "handshake: S1 digest invalid", 1);
        uint8_t sig[DIGEST_LEN];
        if (hs_answer_sig(h->mine + h->my_digest_pos, true, s2, sig))
            return SH_FAIL(err, SH_ENOMEM, "handshake: HMAC failed", 0);
        if (memcmp(sig, s2 + HS - DIGEST_LEN, DIGEST_LEN) != 0)
            return SH_FAIL(err, SH_EPROTO, "handshake: S2 signature invalid", 1 + 2 * HS - DIGEST_LEN);
    }

    uint8_t c2[HS];
    if (spos) {
        hs_expand(h->random, c2, HS - DIGEST_LEN);
        if (hs_answer_sig(s1 + spos, false, c2, c2 + HS - DIGEST_LEN))
            return SH_FAIL(err, SH_ENOMEM, "handshake: HMAC failed", 0);
    } else {
        memcpy(c2, s1, HS);
    }
    if (sh_buf_append(out, c2, HS))
        return SH_FAIL(err, SH_ENOMEM, "handshake: output buffer", 0);
    return 0;
}

int rtmp_hs_feed(rtmp_hs *h, const uint8_t *in, size_t len, size_t *consumed,
                 sh_buf *out, sh_error *err)
{
    size_t used = 0;
    int rc = SH_EMORE;
    *consumed = 0;
    switch (h->state) {
    case HS_S_WAIT_C0C1:
        /* Refuse a wrong C0 at its first byte, so garbage is closed at
         * once instead of waiting for 1537 bytes or the time-out. */
        if (h->in_len == 0 && len > 0 && in[0] != 3) {
            h->state = HS_FAILED;
            rc = SH_FAIL(err, SH_EUNSUPPORTED, "handshake: C0 version is not 3", 0);
            break;
        }
        if (!hs_collect(h, 1 + HS, in, len, &used))
            break;
        rc = hs_server_reply(h, out, err);
        if (rc) {
            h->state = HS_FAILED;
            break;
        }
        h->in_len = 0;
        h->state = HS_S_WAIT_C2;
        /* fall through */
    case HS_S_WAIT_C2:
        rc = SH_EMORE;
        if (!hs_collect(h, HS, in, len, &used))
            break;
        h->state = HS_DONE;
        rc = 0;
        break;
    case HS_C_WAIT_S0S1S2:
        if (!hs_collect(h, 1 + 2 * HS, in, len, &used))
            break;
        rc = hs_client_reply(h, out, err);
        h->state = rc ? HS_FAILED : HS_DONE;
        break;
    case HS_DONE:
        rc = 0;
        break;
    case HS_C_START:
        rc = SH_FAIL(err, SH_ESTATE, "handshake: client not started", 0);
        break;
    case HS_FAILED:
        rc = SH_FAIL(err, SH_ESTATE, "handshake: already failed", 0);
        break;
    }
    *consumed = used;
    return rc;
}
