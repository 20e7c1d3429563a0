/*
 * mac.c -- HMAC-SHA256 through OpenSSL's libcrypto (see mac.h).
 *
 * Why libcrypto rather than our own SHA-256: it is already in every
 * profiled process (librdkafka links it for TLS and SASL), Debian keeps it
 * patched, and its SHA-256 uses the CPU's SHA extensions. The algorithm is
 * fetched once (EVP_MAC_fetch is a locked provider lookup) and kept for
 * the life of the process; each pd_mac is one EVP_MAC_CTX.
 *
 * Known-answer tests: tests/unit/test_mac.c (RFC 4231 test cases 1-7).
 */
#include "mac.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "util.h"

struct pd_mac {
    EVP_MAC_CTX *ctx;
};

static EVP_MAC *g_hmac; /* fetched once, never freed */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void mac_fetch(void)
{
    g_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

pd_mac *pd_mac_new(const void *key, size_t klen)
{
    pthread_once(&g_once, mac_fetch);
    pd_assert(g_hmac != NULL); /* libcrypto without HMAC: nothing can be authenticated */
    pd_mac *m = pd_malloc(sizeof *m);
    m->ctx = EVP_MAC_CTX_new(g_hmac);
    if (!m->ctx) pd_oom(__FILE__, __LINE__, sizeof *m);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    /* HMAC pads a short key with zero bytes to the block size, so the empty
     * key and the one-byte key 0x00 are the same key; libcrypto wants a
     * non-NULL key (NULL means "the previous key"). */
    static const uint8_t zero = 0;
    int ok = EVP_MAC_init(m->ctx, klen ? key : &zero, klen ? klen : 1, params);
    pd_assert(ok == 1);
    return m;
}

void pd_mac_update(pd_mac *m, const void *data, size_t n)
{
    if (!n) return;
    int ok = EVP_MAC_update(m->ctx, data, n);
    pd_assert(ok == 1);
}

void pd_mac_final(pd_mac *m, uint8_t out[PD_MAC_LEN])
{
    size_t len = 0;
    int ok = EVP_MAC_final(m->ctx, out, &len, PD_MAC_LEN);
    pd_assert(ok == 1 && len == PD_MAC_LEN);
}

void pd_mac_free(pd_mac *m)
{
    if (!m) return;
    EVP_MAC_CTX_free(m->ctx);
    pd_free(m);
}

void pd_hmac_sha256(const void *key, size_t klen, const void *data, size_t n, uint8_t out[PD_MAC_LEN])
{
    pd_mac *m = pd_mac_new(key, klen);
    pd_mac_update(m, data, n);
    pd_mac_final(m, out);
    pd_mac_free(m);
}

void pd_mac_key_derive(pd_mac_key *out, const char *secret, const char *purpose)
{
    char label[128];
    int n = snprintf(label, sizeof label, "profiled/1/%s", purpose);
    pd_assert(n > 0 && (size_t)n < sizeof label);
    pd_hmac_sha256(secret ? secret : "", secret ? strlen(secret) : 0, label, (size_t)n, out->k);
}

int pd_mac_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

void pd_mac_hex(const uint8_t tag[PD_MAC_LEN], char out[2 * PD_MAC_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < PD_MAC_LEN; i++) {
        out[2 * i] = digits[tag[i] >> 4];
        out[2 * i + 1] = digits[tag[i] & 15];
    }
    out[2 * PD_MAC_LEN] = '\0';
}

int pd_mac_unhex(const char *s, size_t n, uint8_t tag[PD_MAC_LEN])
{
    if (!s || n != 2 * PD_MAC_LEN) return PD_EINVAL;
    for (int i = 0; i < PD_MAC_LEN; i++) {
        int hi = pd_hexval((unsigned char)s[2 * i]), lo = pd_hexval((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0) return PD_EINVAL;
        tag[i] = (uint8_t)(hi << 4 | lo);
    }
    return PD_OK;
}
