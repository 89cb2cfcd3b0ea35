/* Handshake tests: the server against hand-built simple and digest C1s
 * (checked the way FFmpeg checks a server), and client against server in
 * memory with every split point. */
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "util.h"

#define HSZ RTMP_HANDSHAKE_SIZE

/* Keys written out independently of rtmp_hs.c. */
static const uint8_t key_tail[32] = {
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0,
    0xD1, 0x02, 0x9E, 0x7E, 0x57, 0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80,
    0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
};

static size_t make_key(uint8_t *k, bool server)
{
    const char *pre = server ? "Genuine Adobe Flash Media Server 001" : "Genuine Adobe Flash Player 001";
    size_t n = strlen(pre);
    memcpy(k, pre, n);
    memcpy(k + n, key_tail, 32);
    return n;
}

static void hmac(const uint8_t *key, size_t kl, const uint8_t *d, size_t n, uint8_t *out)
{
    unsigned int ol = 0;
    cr_assert(HMAC(EVP_sha256(), key, (int)kl, d, n, out, &ol));
    cr_assert_eq(ol, 32);
}

static size_t pos_of(const uint8_t *p, int scheme)
{
    size_t b = scheme ? 772 : 8;
    return (p[b] + p[b + 1] + p[b + 2] + p[b + 3]) % 728 + b + 4;
}

static void digest_without(const uint8_t *p, size_t pos, const uint8_t *key, size_t kl, uint8_t *out)
{
    uint8_t tmp[HSZ - 32];
    memcpy(tmp, p, pos);
    memcpy(tmp + pos, p + pos + 32, HSZ - pos - 32);
    hmac(key, kl, tmp, sizeof(tmp), out);
}

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)trand(&seed);
}

/* C1 signed like Flash Player / FFmpeg with the given scheme. */
static void make_digest_c1(uint8_t *c1, int scheme, uint64_t seed, size_t *pos)
{
    fill(c1, HSZ, seed);
    memset(c1, 0, 4);
    c1[4] = 9; c1[5] = 0; c1[6] = 124; c1[7] = 2;
    uint8_t key[80];
    size_t kl = make_key(key, false);
    *pos = pos_of(c1, scheme);
    cr_assert_eq(rtmp_hs_digest_pos(c1, scheme), *pos);
    digest_without(c1, *pos, key, kl, c1 + *pos);
}

/* The handshake under test (h) and what it wrote (out); a test makes h
 * with new_hs (or serve / start_client), the suite's .fini frees both. */
static rtmp_hs *h;
static sh_buf out;

static void hs_close(void)
{
    rtmp_hs_free(h);
    sh_buf_cleanup(&out);
}

TestSuite(hs, .fini = hs_close);

/* h: a new handshake whose own random bytes come from `seed`. */
static void new_hs(rtmp_role role, uint64_t seed, uint32_t time, bool digest)
{
    uint8_t rnd[HSZ];
    fill(rnd, HSZ, seed);
    h = rtmp_hs_new(role, rnd, time, digest);
    cr_assert(h);
    sh_buf_init(&out, 0);
}

/* Runs a server over C0+C1; its reply is in out.  Returns the feed's rc. */
static int serve(const uint8_t *c1, uint8_t c0)
{
    new_hs(RTMP_ROLE_SERVER, 99, 1234, false);
    uint8_t in[1 + HSZ];
    in[0] = c0;
    memcpy(in + 1, c1, HSZ);
    size_t used = 0;
    sh_error err = {0};
    return rtmp_hs_feed(h, in, sizeof(in), &used, &out, &err);
}

/* Checks S1 and S2 as FFmpeg's player does. */
static void check_digest_reply(const uint8_t *s, const uint8_t *c1, size_t cpos)
{
    const uint8_t *s1 = s + 1, *s2 = s + 1 + HSZ;
    cr_assert_eq(s[0], 3);
    cr_assert_geq(s1[4], 3, "server version must be >= 3 for FFmpeg to validate");
    uint8_t key[80], d[32];
    size_t kl = make_key(key, true);
    bool ok = false;
    for (int scheme = 1; scheme >= 0 && !ok; scheme--) { /* FFmpeg tries 772 first */
        size_t sp = pos_of(s1, scheme);
        digest_without(s1, sp, key, kl, d);
        ok = memcmp(d, s1 + sp, 32) == 0;
    }
    cr_assert(ok, "S1 digest does not validate");
    uint8_t tmpkey[32], sig[32];
    hmac(key, kl + 32, c1 + cpos, 32, tmpkey);
    hmac(tmpkey, 32, s2, HSZ - 32, sig);
    cr_assert(memcmp(sig, s2 + HSZ - 32, 32) == 0, "S2 signature does not validate");
}

/* A C1 signed with digest `scheme`: the server answers with handshake kind
 * `kind`, S1 and S2 validate as FFmpeg checks them, and S1's digest sits
 * where `scheme` puts it. */
static void server_digest_case(int scheme, uint64_t seed, int kind)
{
    uint8_t c1[HSZ];
    size_t pos;
    make_digest_c1(c1, scheme, seed, &pos);
    cr_assert_eq(serve(c1, 3), SH_EMORE);
    cr_assert_eq(out.len, 1 + 2 * HSZ);
    cr_assert_eq(rtmp_hs_kind(h), kind);
    check_digest_reply(out.data, c1, pos);
    uint8_t key[80], d[32];
    size_t kl = make_key(key, true);
    size_t sp = pos_of(out.data + 1, scheme);
    digest_without(out.data + 1, sp, key, kl, d);
    cr_assert(memcmp(d, out.data + 1 + sp, 32) == 0);
}

/* A client: h has sent C0+C1 (left in out, and `digest` picks the kind). */
static void start_client(uint64_t seed, bool digest)
{
    new_hs(RTMP_ROLE_CLIENT, seed, 0, digest);
    cr_assert_eq(rtmp_hs_client_start(h, &out), 0);
}

/* S0+S1+S2 of random bytes (seed), version byte 3. */
static void random_s012(uint8_t *s, uint64_t seed)
{
    fill(s, 1 + 2 * HSZ, seed);
    s[0] = 3;
}

Test(hs, server_simple)
{
    uint8_t c1[HSZ];
    fill(c1, HSZ, 1);
    memset(c1 + 4, 0, 4);
    int rc = serve(c1, 3);
    cr_assert_eq(rc, SH_EMORE);
    cr_assert_eq(out.len, 1 + 2 * HSZ);
    cr_assert_eq(out.data[0], 3);
    cr_assert_eq(sh_get_u32be(out.data + 1), 1234u, "S1 time");
    cr_assert_eq(sh_get_u32be(out.data + 5), 0u, "simple S1 has zero version");
    cr_assert(memcmp(out.data + 1 + HSZ, c1, HSZ) == 0, "S2 echoes C1");
    cr_assert_eq(rtmp_hs_kind(h), 0);
    /* C2 with trailing chunk bytes: only 1536 are taken. */
    uint8_t c2[HSZ + 5];
    memcpy(c2, out.data + 1, HSZ);
    memset(c2 + HSZ, 0xAB, 5);
    size_t used = 0;
    sh_buf_reset(&out);
    rc = rtmp_hs_feed(h, c2, sizeof(c2), &used, &out, NULL);
    cr_assert_eq(rc, 0);
    cr_assert_eq(used, HSZ);
    cr_assert_eq(out.len, 0);
}

Test(hs, server_digest_scheme0)
{
    server_digest_case(0, 7, 1);
}

Test(hs, server_digest_scheme1)
{
    server_digest_case(1, 8, 2);
}

Test(hs, server_fallback_bad_digest)
{
    uint8_t c1[HSZ];
    size_t pos;
    make_digest_c1(c1, 0, 9, &pos);
    c1[pos] ^= 1; /* break the digest */
    cr_assert_eq(serve(c1, 3), SH_EMORE);
    cr_assert_eq(rtmp_hs_kind(h), 0);
    cr_assert_eq(sh_get_u32be(out.data + 5), 0u);
    cr_assert(memcmp(out.data + 1 + HSZ, c1, HSZ) == 0);
}

Test(hs, server_rejects_bad_version)
{
    uint8_t c1[HSZ];
    fill(c1, HSZ, 3);
    int rc = serve(c1, 6);
    cr_assert_lt(rc, 0);
    cr_assert_neq(rc, SH_EMORE);
}

/* A wrong C0 is refused at its first byte, not after 1537 bytes. */
Test(hs, server_rejects_bad_version_at_first_byte)
{
    new_hs(RTMP_ROLE_SERVER, 7, 1, false);
    size_t used = 0;
    sh_error err = {0};
    const uint8_t junk = 'G'; /* e.g. the start of "GET / HTTP/1.1" */
    int rc = rtmp_hs_feed(h, &junk, 1, &used, &out, &err);
    cr_assert_eq(rc, SH_EUNSUPPORTED);
    cr_assert_eq(out.len, 0);
    cr_assert_str_eq(err.what, "handshake: C0 version is not 3");
}

Test(hs, server_every_truncation_wants_more)
{
    uint8_t in[1 + HSZ];
    in[0] = 3;
    fill(in + 1, HSZ, 5);
    for (size_t n = 0; n < sizeof(in); n += 97) {
        rtmp_hs *h = rtmp_hs_new(RTMP_ROLE_SERVER, in, 0, false);
        sh_buf out;
        sh_buf_init(&out, 0);
        size_t used = 0;
        cr_assert_eq(rtmp_hs_feed(h, in, n, &used, &out, NULL), SH_EMORE);
        cr_assert_eq(used, n);
        cr_assert_eq(out.len, 0);
        sh_buf_cleanup(&out);
        rtmp_hs_free(h);
    }
}

/* Pushes bytes a -> b in two pieces split at `split`. Returns rc of the
 * last feed. */
static int push(rtmp_hs *to, const uint8_t *p, size_t n, size_t split, sh_buf *reply, size_t *total)
{
    int rc = SH_EMORE;
    size_t off = 0;
    *total = 0;
    for (int part = 0; part < 2 && off < n; part++) {
        size_t end = part == 0 && split < n ? split : n;
        while (off < end) {
            size_t used = 0;
            rc = rtmp_hs_feed(to, p + off, end - off, &used, reply, NULL);
            off += used;
            *total += used;
            if (rc != SH_EMORE)
                return rc;
        }
    }
    return rc;
}

static void client_server(bool digest, size_t split1, size_t split2, size_t split3)
{
    uint8_t r1[HSZ], r2[HSZ];
    fill(r1, HSZ, 11);
    fill(r2, HSZ, 12);
    rtmp_hs *c = rtmp_hs_new(RTMP_ROLE_CLIENT, r1, 100, digest);
    rtmp_hs *s = rtmp_hs_new(RTMP_ROLE_SERVER, r2, 200, false);
    sh_buf c0c1, s012, c2;
    sh_buf_init(&c0c1, 0);
    sh_buf_init(&s012, 0);
    sh_buf_init(&c2, 0);
    cr_assert_eq(rtmp_hs_client_start(c, &c0c1), 0);
    cr_assert_eq(c0c1.len, 1 + HSZ);
    size_t used;
    cr_assert_eq(push(s, c0c1.data, c0c1.len, split1, &s012, &used), SH_EMORE);
    cr_assert_eq(s012.len, 1 + 2 * HSZ);
    cr_assert_eq(push(c, s012.data, s012.len, split2, &c2, &used), 0);
    cr_assert_eq(used, s012.len);
    cr_assert_eq(c2.len, HSZ);
    cr_assert_eq(push(s, c2.data, c2.len, split3, &s012, &used), 0);
    cr_assert_eq(rtmp_hs_kind(s), digest ? 1 : 0);
    cr_assert_eq(rtmp_hs_kind(c), digest ? 1 : 0);
    sh_buf_cleanup(&c0c1);
    sh_buf_cleanup(&s012);
    sh_buf_cleanup(&c2);
    rtmp_hs_free(c);
    rtmp_hs_free(s);
}

Test(hs, client_server_every_split_simple)
{
    for (size_t i = 0; i <= 1 + 2 * HSZ; i++)
        client_server(false, i % (2 + HSZ), i, i % (1 + HSZ));
}

Test(hs, client_server_every_split_digest)
{
    for (size_t i = 0; i <= 1 + 2 * HSZ; i += 1)
        client_server(true, i % (2 + HSZ), i, i % (1 + HSZ));
}

Test(hs, client_rejects_forged_s1)
{
    start_client(21, true);
    uint8_t s[1 + 2 * HSZ];
    random_s012(s, 22);
    s[5] = 5; /* announces a version, but carries no digest */
    size_t used;
    sh_error err = {0};
    sh_buf_reset(&out);
    cr_assert_eq(rtmp_hs_feed(h, s, sizeof(s), &used, &out, &err), SH_EPROTO);
    cr_assert(err.what);
}

Test(hs, client_simple_against_simple_server_echoes_s1)
{
    start_client(31, false);
    cr_assert_eq(sh_get_u32be(out.data + 5), 0u, "simple C1 has zero version");
    uint8_t s[1 + 2 * HSZ];
    random_s012(s, 32);
    size_t used;
    sh_buf_reset(&out);
    cr_assert_eq(rtmp_hs_feed(h, s, sizeof(s), &used, &out, NULL), 0);
    cr_assert_eq(out.len, HSZ);
    cr_assert(memcmp(out.data, s + 1, HSZ) == 0, "C2 echoes S1");
}
