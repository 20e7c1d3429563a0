/*
 * mac.h -- keyed message authentication of the cluster's own data:
 * HMAC-SHA256 (RFC 2104, FIPS 198-1), computed by OpenSSL's libcrypto
 * (EVP_MAC "HMAC" with digest SHA2-256; librdkafka links the same library).
 *
 * What it authenticates (see docs/operations.md, "Threat model"):
 * membership records (members.c, memrec.c) and snapshot streams
 * (handoff.c). Each use has its own key, derived from the cluster secret
 * (pd_config_cluster_token) and a purpose label, so a MAC made for one use
 * never verifies as another:
 *
 *   key(purpose) = HMAC-SHA256(secret, "profiled/1/" purpose)
 *
 * With no secret (an open cluster, allowed only on loopback or with
 * insecure_cluster) the secret is the empty string: the MACs then only
 * detect corruption, anyone can compute them.
 *
 * Threads: every function is safe from any thread; a pd_mac context
 * belongs to one thread at a time.
 */
#ifndef PD_MAC_H
#define PD_MAC_H

#include <stddef.h>
#include <stdint.h>

#define PD_MAC_LEN 32 /* bytes of an HMAC-SHA256 tag (and of a derived key) */

/* A derived key. */
typedef struct {
    uint8_t k[PD_MAC_LEN];
} pd_mac_key;

/* key(purpose) from the secret (NULL or "" = the empty secret). */
void pd_mac_key_derive(pd_mac_key *out, const char *secret, const char *purpose);

/* One-shot HMAC-SHA256 of data under a key of any length. */
void pd_hmac_sha256(const void *key, size_t klen, const void *data, size_t n, uint8_t out[PD_MAC_LEN]);

/* Streaming HMAC-SHA256: new (key of any length), update any number of
 * times, final writes the tag; free releases the context (also without a
 * final). Failures of libcrypto (it cannot compute SHA-256) abort with
 * file:line: nothing can be authenticated without it. */
typedef struct pd_mac pd_mac;
pd_mac *pd_mac_new(const void *key, size_t klen);
void pd_mac_update(pd_mac *m, const void *data, size_t n);
void pd_mac_final(pd_mac *m, uint8_t out[PD_MAC_LEN]);
void pd_mac_free(pd_mac *m);

/* 1 when the n bytes of a and b are equal, compared in constant time. */
int pd_mac_equal(const void *a, const void *b, size_t n);

/* Lower-case hex of a tag: out gets 2 * PD_MAC_LEN chars and a NUL. */
void pd_mac_hex(const uint8_t tag[PD_MAC_LEN], char out[2 * PD_MAC_LEN + 1]);
/* Parses 2 * PD_MAC_LEN hex digits (either case) of length n into tag;
 * PD_OK or PD_EINVAL. */
int pd_mac_unhex(const char *s, size_t n, uint8_t tag[PD_MAC_LEN]);

#endif
