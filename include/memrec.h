/*
 * memrec.h -- one membership record: its JSON value and its
 * authentication. Pure: no Kafka, no clock, no shared state (the policy
 * that uses it -- freshness, replay, expiry, the members bound -- is in
 * members.c).
 *
 * A record (produced to partition 0 of the membership topic):
 *   key     the worker id
 *   value   {"id":"w1","group":"profiled","url":"http://127.0.0.1:8080","gen":3,
 *            "ts":1795328747333,"partitions":[0,2,5],
 *            "held":[[0,1234,1,1200],[3,99,0]],"alive":true}
 *   header  "profiled-mac": 64 lower-case hex digits of
 *           HMAC-SHA256(key("members"), u32be(len(topic)) | topic
 *                                       | u32be(len(key)) | key | value)
 * key("members") is derived from the cluster secret (mac.h). Covering the
 * topic name keeps a record of one cluster from verifying in another that
 * shares the secret; covering the key binds the record to its key, and the
 * key must equal the value's "id", so a record cannot speak for another
 * member. Records from versions without the header are rejected
 * ("unsigned"): there is no rolling upgrade from them.
 *
 * "group" is the worker's consumer group: a worker admits only records of
 * its own group (members.c), so two clusters that share a membership topic
 * and secret -- blue and green of operations.md, both on the default
 * <topic>.members -- never route to, restore from or count each other.
 * Field rules: id 1..128 bytes, group < 256 bytes (absent: ""), url < 256 bytes, partitions (optional) at
 * most PD_MEMREC_MAX_CLAIMS entries, of which non-integers and numbers
 * outside [0, PD_MEMREC_MAX_PARTITION] are skipped; held entries are
 * [partition, next_offset, owner 0/1] with, from an owner, a fourth
 * element: its side-effect frontier (sidefx.h; below next_offset while it
 * redoes side effects), -1 in held_fx when absent (malformed entries
 * skipped); gen and ts
 * are numbers (0 when absent or out of range); alive defaults to true.
 */
#ifndef PD_MEMREC_H
#define PD_MEMREC_H

#include <stddef.h>
#include <stdint.h>

#include "mac.h"

#define PD_MEMREC_MAC_HEADER "profiled-mac"
#define PD_MEMREC_MAX_CLAIMS 65536
#define PD_MEMREC_MAX_PARTITION 1000000

/* Why a record was not applied: the label of
 * profiled_member_records_rejected_total{reason}. The first four are
 * decided here, the rest by members.c. */
typedef enum {
    PD_MEMREC_OK = 0,
    PD_MEMREC_UNSIGNED,     /* no profiled-mac header (or not 64 hex digits) */
    PD_MEMREC_BAD_MAC,      /* the MAC does not verify: forged, altered, or another secret */
    PD_MEMREC_KEY_MISMATCH, /* verified, but the record key is not the value's id */
    PD_MEMREC_MALFORMED,    /* verified, but not a membership record */
    PD_MEMREC_EXPIRED,      /* ts older than member_ttl (history, or a replay of it) */
    PD_MEMREC_STALE,        /* ts not newer than the member's last record (a replay) */
    PD_MEMREC_FULL,         /* a new member while members_max are known */
    PD_MEMREC_OTHER_GROUP,  /* a worker of another consumer group (sharing the topic) */
    PD_MEMREC__COUNT
} pd_memrec_verdict;

/* The metric label of a verdict ("ok", "unsigned", "bad_mac", ...). */
const char *pd_memrec_reason(int verdict);

typedef struct {
    char id[130];
    char group[256];
    char url[256];
    int64_t gen;
    int64_t ts;               /* producer's wall clock, epoch ms */
    int alive;
    int nparts;
    int32_t *parts;           /* owned; in record order, may repeat */
    int nheld;
    int32_t *held_parts;      /* owned; parallel arrays */
    int64_t *held_offs;
    uint8_t *held_owner;
    int64_t *held_fx;         /* an owner's side-effect frontier, -1 when not given */
} pd_memrec;

/* The MAC header value of a record, as 64 hex digits + NUL into hex. */
void pd_memrec_sign(const pd_mac_key *k, const char *topic, const void *key, size_t klen, const void *val,
                    size_t vlen, char hex[2 * PD_MAC_LEN + 1]);

/* Authenticates and parses one record. mac/maclen: the header's value
 * (NULL when the record has none). Returns PD_MEMREC_OK with *out filled
 * (free with pd_memrec_free), or the verdict (UNSIGNED, BAD_MAC,
 * KEY_MISMATCH, MALFORMED) with *out empty. The MAC is checked before the
 * value is parsed, in constant time. */
int pd_memrec_open(const pd_mac_key *k, const char *topic, const void *key, size_t klen, const void *val,
                   size_t vlen, const void *mac, size_t maclen, pd_memrec *out);

void pd_memrec_free(pd_memrec *r);

#endif
