/*
 * test_mac.c -- HMAC-SHA256 (mac.c) against the RFC 4231 known answers,
 * streaming against one-shot, key derivation, and membership record
 * authentication (memrec.c): the verdict for unsigned, forged, altered,
 * re-keyed and mis-keyed records. Expected tags come from the RFC or are
 * computed here by the independent one-shot function, never read back
 * from the code under test's own output for the same input.
 */
#include "test.h"

#include <stdlib.h>

#include "mac.h"
#include "memrec.h"
#include "util.h"

static void hex2bin(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = (uint8_t)(pd_hexval(hex[2 * i]) << 4 | pd_hexval(hex[2 * i + 1]));
}

TEST(mac_rfc4231_vectors)
{
    uint8_t k1[20], k3[20], k4[25], k5[20], k6[131], d3[50], d4[50];
    memset(k1, 0x0b, sizeof k1);
    memset(k3, 0xaa, sizeof k3);
    for (int i = 0; i < 25; i++) k4[i] = (uint8_t)(i + 1);
    memset(k5, 0x0c, sizeof k5);
    memset(k6, 0xaa, sizeof k6);
    memset(d3, 0xdd, sizeof d3);
    memset(d4, 0xcd, sizeof d4);
    static const char d6[] = "Test Using Larger Than Block-Size Key - Hash Key First";
    static const char d7[] = "This is a test using a larger than block-size key and a larger than block-size data. "
                             "The key needs to be hashed before being used by the HMAC algorithm.";
    const struct {
        const void *k;
        size_t kl;
        const void *d;
        size_t dl;
        const char *hex; /* RFC 4231 section 4, HMAC-SHA-256 */
        size_t cmp;      /* bytes compared (test case 5 is truncated to 128 bits) */
    } tc[] = {
        {k1, 20, "Hi There", 8, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", 32},
        {"Jefe", 4, "what do ya want for nothing?", 28,
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", 32},
        {k3, 20, d3, 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe", 32},
        {k4, 25, d4, 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b", 32},
        {k5, 20, "Test With Truncation", 20, "a3b6167473100ee06e0c796c2955552b", 16},
        {k6, 131, d6, sizeof d6 - 1, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", 32},
        {k6, 131, d7, sizeof d7 - 1, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2", 32},
        /* the empty key and message (a widely published value) */
        {"", 0, "", 0, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad", 32},
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(tc); i++) {
        uint8_t want[PD_MAC_LEN], got[PD_MAC_LEN];
        hex2bin(tc[i].hex, want, tc[i].cmp);
        pd_hmac_sha256(tc[i].k, tc[i].kl, tc[i].d, tc[i].dl, got);
        if (memcmp(got, want, tc[i].cmp) != 0) pd_test_fail(__FILE__, __LINE__, "RFC 4231 case %zu", i + 1);
        /* streamed one byte at a time: the same tag */
        pd_mac *m = pd_mac_new(tc[i].k, tc[i].kl);
        for (size_t j = 0; j < tc[i].dl; j++) pd_mac_update(m, (const char *)tc[i].d + j, 1);
        uint8_t st[PD_MAC_LEN];
        pd_mac_final(m, st);
        pd_mac_free(m);
        if (memcmp(st, want, tc[i].cmp) != 0) pd_test_fail(__FILE__, __LINE__, "streamed case %zu", i + 1);
        if (tc[i].cmp == PD_MAC_LEN) {
            char hex[2 * PD_MAC_LEN + 1];
            pd_mac_hex(got, hex);
            CHECK_STR(hex, tc[i].hex);
            uint8_t back[PD_MAC_LEN];
            CHECK_INT(pd_mac_unhex(hex, strlen(hex), back), PD_OK);
            CHECK(memcmp(back, got, PD_MAC_LEN) == 0);
        }
    }
}

TEST(mac_derive_equal_hex)
{
    pd_mac_key a, b, c, d;
    pd_mac_key_derive(&a, "s3cret", "members");
    pd_mac_key_derive(&b, "s3cret", "snapshot");
    pd_mac_key_derive(&c, "s3cret!", "members");
    pd_mac_key_derive(&d, NULL, "members");
    /* key(purpose) = HMAC-SHA256(secret, "profiled/1/" purpose) */
    uint8_t want[PD_MAC_LEN];
    pd_hmac_sha256("s3cret", 6, "profiled/1/members", 18, want);
    CHECK(memcmp(a.k, want, PD_MAC_LEN) == 0);
    pd_hmac_sha256("", 0, "profiled/1/members", 18, want);
    CHECK(memcmp(d.k, want, PD_MAC_LEN) == 0);
    CHECK(memcmp(a.k, b.k, PD_MAC_LEN) != 0);
    CHECK(memcmp(a.k, c.k, PD_MAC_LEN) != 0);
    CHECK(pd_mac_equal(a.k, a.k, PD_MAC_LEN));
    uint8_t x[PD_MAC_LEN];
    memcpy(x, a.k, PD_MAC_LEN);
    for (int i = 0; i < PD_MAC_LEN; i += 7) {
        x[i] ^= 0x80;
        CHECK(!pd_mac_equal(a.k, x, PD_MAC_LEN));
        x[i] ^= 0x80;
    }
    uint8_t t[PD_MAC_LEN];
    char h[2 * PD_MAC_LEN + 1];
    memset(h, 'A', 2 * PD_MAC_LEN);
    CHECK_INT(pd_mac_unhex(h, 2 * PD_MAC_LEN, t), PD_OK);
    CHECK_INT(t[0], 0xaa);
    h[5] = 'g';
    CHECK_INT(pd_mac_unhex(h, 2 * PD_MAC_LEN, t), PD_EINVAL);
    CHECK_INT(pd_mac_unhex(h, 2 * PD_MAC_LEN - 1, t), PD_EINVAL);
    CHECK_INT(pd_mac_unhex(NULL, 0, t), PD_EINVAL);
}

/* The header value a genuine member computes, built here from the formula
 * in memrec.h with the one-shot HMAC (not with pd_memrec_sign). */
static void t_sign(const char *secret, const char *topic, const char *key, const char *val, char hex[65])
{
    pd_mac_key k;
    pd_mac_key_derive(&k, secret, "members");
    pd_buf b = {0};
    uint8_t len[4];
    pd_put_u32be(len, (uint32_t)strlen(topic));
    pd_buf_append(&b, len, 4);
    pd_buf_append(&b, topic, strlen(topic));
    pd_put_u32be(len, (uint32_t)strlen(key));
    pd_buf_append(&b, len, 4);
    pd_buf_append(&b, key, strlen(key));
    pd_buf_append(&b, val, strlen(val));
    uint8_t tag[PD_MAC_LEN];
    pd_hmac_sha256(k.k, sizeof k.k, b.p, b.len, tag);
    pd_mac_hex(tag, hex);
    pd_buf_free(&b);
}

static int t_open(const char *secret, const char *topic, const char *key, const char *val, const char *mac,
                  pd_memrec *r)
{
    pd_mac_key k;
    pd_mac_key_derive(&k, secret, "members");
    return pd_memrec_open(&k, topic, key, key ? strlen(key) : 0, val, strlen(val), mac, mac ? strlen(mac) : 0, r);
}

TEST(memrec_verify)
{
    const char *topic = "ev.members";
    const char *val = "{\"id\":\"w1\",\"url\":\"http://127.0.0.1:9\",\"gen\":3,\"ts\":1795328747333,"
                      "\"partitions\":[2,0,2,-1,1e300,\"x\",7.5],\"held\":[[0,120,1],[9,5,0],[\"a\",1,1],[3],[1,80,1,70],[2,90,0,60]],"
                      "\"alive\":true}";
    char mac[65], forged[65];
    t_sign("k", topic, "w1", val, mac);
    pd_mac_key key;
    pd_mac_key_derive(&key, "k", "members");
    char own[65];
    pd_memrec_sign(&key, topic, "w1", 2, val, strlen(val), own);
    CHECK_STR(own, mac);

    pd_memrec r;
    CHECK_INT(t_open("k", topic, "w1", val, mac, &r), PD_MEMREC_OK);
    CHECK_STR(r.id, "w1");
    CHECK_STR(r.url, "http://127.0.0.1:9");
    CHECK_INT(r.gen, 3);
    CHECK_INT(r.ts, 1795328747333LL);
    CHECK_INT(r.alive, 1);
    CHECK_INT(r.nparts, 3); /* 2, 0, 2: the rest are not partitions */
    CHECK_INT(r.parts[0], 2);
    CHECK_INT(r.parts[1], 0);
    CHECK_INT(r.nheld, 4);
    CHECK_INT(r.held_parts[1], 9);
    CHECK_INT(r.held_offs[0], 120);
    CHECK_INT(r.held_owner[0], 1);
    CHECK_INT(r.held_owner[1], 0);
    /* an owner's side-effect frontier (4th element) is kept; none given, or
     * from a replica, is unknown */
    CHECK_INT(r.held_fx[0], -1);
    CHECK_INT(r.held_fx[1], -1);
    CHECK_INT(r.held_parts[2], 1);
    CHECK_INT(r.held_fx[2], 70);
    CHECK_INT(r.held_fx[3], -1);
    pd_memrec_free(&r);

    /* no header, not hex, wrong length */
    CHECK_INT(t_open("k", topic, "w1", val, NULL, &r), PD_MEMREC_UNSIGNED);
    CHECK_INT(t_open("k", topic, "w1", val, "zz", &r), PD_MEMREC_UNSIGNED);
    /* signed with another secret (what a forger without the secret can do) */
    t_sign("not-k", topic, "w1", val, forged);
    CHECK_INT(t_open("k", topic, "w1", val, forged, &r), PD_MEMREC_BAD_MAC);
    /* the same record checked in another cluster (topic) sharing the secret */
    CHECK_INT(t_open("k", "other.members", "w1", val, mac, &r), PD_MEMREC_BAD_MAC);
    /* the genuine MAC on another key, and on an altered value */
    CHECK_INT(t_open("k", topic, "w2", val, mac, &r), PD_MEMREC_BAD_MAC);
    CHECK_INT(t_open("k", topic, NULL, val, mac, &r), PD_MEMREC_BAD_MAC);
    char *alt = strdup(val);
    alt[strlen(alt) - 5] = 'X'; /* "alive":true -> "alive":tXue */
    CHECK_INT(t_open("k", topic, "w1", alt, mac, &r), PD_MEMREC_BAD_MAC);
    free(alt);
    /* every single-bit change of the tag is refused */
    for (int i = 0; i < 64; i += 5) {
        char m2[65];
        memcpy(m2, mac, 65);
        m2[i] = m2[i] == '0' ? '1' : '0';
        CHECK_INT(t_open("k", topic, "w1", val, m2, &r), PD_MEMREC_BAD_MAC);
    }
    /* an upper-case tag is the same tag */
    char up[65];
    for (int i = 0; i < 65; i++) up[i] = mac[i] >= 'a' && mac[i] <= 'f' ? (char)(mac[i] - 32) : mac[i];
    CHECK_INT(t_open("k", topic, "w1", val, up, &r), PD_MEMREC_OK);
    pd_memrec_free(&r);
    /* authentic, but speaking for another member than its key */
    t_sign("k", topic, "w2", val, forged);
    CHECK_INT(t_open("k", topic, "w2", val, forged, &r), PD_MEMREC_KEY_MISMATCH);
    t_sign("k", topic, "w", val, forged);
    CHECK_INT(t_open("k", topic, "w", val, forged, &r), PD_MEMREC_KEY_MISMATCH);
    /* authentic, but not a membership record */
    const char *junk[] = {"garbage", "[]", "{\"id\":\"w1\"}", "{\"id\":\"\",\"url\":\"x\"}",
                          "{\"id\":\"w1\",\"url\":\"x\",\"partitions\":{}}"};
    for (size_t i = 0; i < PD_ARRAY_LEN(junk); i++) {
        t_sign("k", topic, "w1", junk[i], forged);
        CHECK_INT(t_open("k", topic, "w1", junk[i], forged, &r), PD_MEMREC_MALFORMED);
    }
    /* the empty secret (open cluster) is a key like any other */
    t_sign(NULL, topic, "w1", val, forged);
    CHECK_INT(t_open(NULL, topic, "w1", val, forged, &r), PD_MEMREC_OK);
    pd_memrec_free(&r);
    CHECK_INT(t_open("k", topic, "w1", val, forged, &r), PD_MEMREC_BAD_MAC);
    CHECK_STR(pd_memrec_reason(PD_MEMREC_BAD_MAC), "bad_mac");
    CHECK_STR(pd_memrec_reason(PD_MEMREC_FULL), "full");
}
