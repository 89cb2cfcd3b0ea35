/* fuzz_handshake.c - the RTMP handshake (rtmp_hs) fed arbitrary peer bytes.
 *
 * Input: mode byte, then bytes.  Mode:
 *   bit 0   our role: 0 server (peer sends C0 C1 C2), 1 client (peer sends
 *           S0 S1 S2)
 *   bit 1   "genuine peer": the peer's bytes are made by our own code in
 *           the opposite role (so the digest checks can succeed), then
 *           the input is applied as (u16 position, u8 xor) mutations
 *   bit 2   digest handshake for the side we make (client: sign C1)
 *   bits 3-7 feed split size (1 << (bits % 12)), so partial reads happen
 * Properties: consumed never exceeds what was fed; SH_EMORE consumes all
 * of it; a server answers C0 C1 with exactly S0 S1 S2.
 */
#include <string.h>

#include "fuzz_common.h"
#include "rtmp.h"

#define HS RTMP_HANDSHAKE_SIZE

static void fz_random(uint8_t *r, uint8_t seed)
{
    uint32_t x = 0x9E3779B9u ^ seed;
    for (size_t i = 0; i < HS; i++) {
        x = x * 1103515245u + 12345u;
        r[i] = (uint8_t)(x >> 16);
    }
}

/* The bytes a genuine peer sends to a `role` side; returns them in peer
 * (owned). */
static void genuine_peer(rtmp_role role, bool digest, uint8_t seed, sh_buf *peer)
{
    uint8_t r1[HS], r2[HS];
    fz_random(r1, seed);
    fz_random(r2, (uint8_t)(seed + 1));
    size_t used = 0;
    if (role == RTMP_ROLE_SERVER) {
        /* a client: C0 C1, then its C2 after our S0 S1 S2 */
        rtmp_hs *c = rtmp_hs_new(RTMP_ROLE_CLIENT, r1, 1000, digest);
        rtmp_hs *s = rtmp_hs_new(RTMP_ROLE_SERVER, r2, 2000, false);
        FZ_CHECK(c && s);
        sh_buf c01, s012;
        sh_buf_init(&c01, 0);
        sh_buf_init(&s012, 0);
        FZ_CHECK(rtmp_hs_client_start(c, &c01) == 0);
        FZ_CHECK(rtmp_hs_feed(s, c01.data, c01.len, &used, &s012, NULL) == SH_EMORE);
        sh_buf_append(peer, c01.data, c01.len);
        FZ_CHECK(rtmp_hs_feed(c, s012.data, s012.len, &used, peer, NULL) == 0);
        sh_buf_cleanup(&c01);
        sh_buf_cleanup(&s012);
        rtmp_hs_free(c);
        rtmp_hs_free(s);
    } else {
        /* a server answering the C0 C1 our client role will send: the
         * client in LLVMFuzzerTestOneInput uses the same random and time */
        rtmp_hs *c = rtmp_hs_new(RTMP_ROLE_CLIENT, r1, 1000, digest);
        rtmp_hs *s = rtmp_hs_new(RTMP_ROLE_SERVER, r2, 2000, false);
        FZ_CHECK(c && s);
        sh_buf c01;
        sh_buf_init(&c01, 0);
        FZ_CHECK(rtmp_hs_client_start(c, &c01) == 0);
        FZ_CHECK(rtmp_hs_feed(s, c01.data, c01.len, &used, peer, NULL) == SH_EMORE);
        sh_buf_cleanup(&c01);
        rtmp_hs_free(c);
        rtmp_hs_free(s);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in;
    fz_init(&in, data, size);
    uint8_t mode = fz_u8(&in);
    rtmp_role role = (mode & 1) ? RTMP_ROLE_CLIENT : RTMP_ROLE_SERVER;
    bool genuine = mode & 2, digest = mode & 4;
    size_t split = (size_t)1 << ((mode >> 3) % 12);
    uint8_t seed = fz_u8(&in);

    sh_buf peer;
    sh_buf_init(&peer, 0);
    if (genuine) {
        genuine_peer(role, digest, seed, &peer);
        while (fz_left(&in) >= 3) {
            uint16_t pos = fz_u16(&in);
            uint8_t x = fz_u8(&in);
            if (peer.len)
                peer.data[pos % peer.len] ^= x;
        }
    } else {
        size_t n;
        const uint8_t *p = fz_take(&in, fz_left(&in), &n);
        sh_buf_append(&peer, p, n);
    }
    FZ_CHECK(!peer.failed);

    uint8_t r[HS];
    fz_random(r, seed);
    rtmp_hs *h = rtmp_hs_new(role, r, 1000, digest);
    FZ_CHECK(h != NULL);
    sh_buf out;
    sh_buf_init(&out, 0);
    if (role == RTMP_ROLE_CLIENT)
        FZ_CHECK(rtmp_hs_client_start(h, &out) == 0 && out.len == 1 + HS);

    /* fz_dup per piece: an over-read past a piece is caught by ASan. */
    size_t off = 0;
    int rc = SH_EMORE;
    bool answered = false;
    while (off < peer.len) {
        size_t n = peer.len - off < split ? peer.len - off : split;
        uint8_t *piece = fz_dup(peer.data + off, n);
        size_t used = 0;
        sh_error err = {0};
        size_t before = out.len;
        rc = rtmp_hs_feed(h, piece, n, &used, &out, &err);
        free(piece);
        FZ_CHECK(used <= n);
        if (rc == SH_EMORE)
            FZ_CHECK(used == n);
        if (role == RTMP_ROLE_SERVER && out.len != before) {
            FZ_CHECK(!answered && out.len - before == 1 + 2 * HS);
            answered = true;
        }
        off += used;
        if (rc != SH_EMORE)
            break;
    }
    if (rc == 0) {
        FZ_CHECK(rtmp_hs_kind(h) >= 0 && rtmp_hs_kind(h) <= 2);
        if (role == RTMP_ROLE_SERVER)
            FZ_CHECK(answered && off == 1 + 2 * (size_t)HS);
    }
    rtmp_hs_free(h);
    sh_buf_cleanup(&out);
    sh_buf_cleanup(&peer);
    return 0;
}
