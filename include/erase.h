/*
 * erase.h -- erasure of a user's profile (GDPR art. 17) as a record in the
 * input log, so that owners, replicas and replays all apply it at the same
 * position.
 *
 * The erasure record (any producer may write one; profiled's own comes from
 * DELETE /v1/profiles/{user_id} through pd_eraser):
 *   topic      the input topic (cfg topic)
 *   partition  murmur2(user_id) % partitions -- the user's partition, the
 *              one Kafka's default Java partitioner picks for key user_id
 *   key        user_id (optional; if present it must equal user_id)
 *   header     "profiled-control" = "erase"  (the marker: a control record,
 *              never parsed as an event)
 *   value      {"user_id": "<id>", "requested_at": "<RFC 3339>"}
 *              (a JSON object; user_id: a string of 1..256 bytes of valid
 *              UTF-8; other members are ignored)
 *
 * Applying it (ingest.c admits it, batch.c and store_write.c carry it out):
 * the user's events of that partition before the record are forgotten --
 * the ones still in the in-memory batch are dropped, every stored day of
 * the user (key partition + user_id in every day family) is deleted in the
 * same WriteBatch as the checkpoint that moves past the record, before the
 * merges of the events after it. So the state after the record is as if
 * the user's earlier events had never been, whoever computes it and
 * whenever (a partition rebuilt from the topic replays them and erases
 * them again). The de-dup index is left alone (see docs/data-model.md).
 *
 * A control record with another kind -> DLQ "bad_control"; an erasure whose
 * value is not as above, whose key differs from user_id or which sits in
 * another partition than the user's -> DLQ "bad_erasure" (not re-produced:
 * a misplaced erasure would erase at a position nobody asked for).
 *
 * Status: an erasure at (p, o) is applied once p's checkpoint (committed
 * offset) is past o. profiled keeps no list of erased user ids (that list
 * would itself be personal data): clients ask by position.
 *
 * Threads and ownership: pd_erase_parse is pure. A pd_eraser (one
 * idempotent producer) is shared by the HTTP threads: pd_eraser_request is
 * thread-safe; the caller owns the eraser.
 */
#ifndef PD_ERASE_H
#define PD_ERASE_H

#include "config.h"
#include "util.h"

#include <stddef.h>
#include <stdint.h>

#define PD_CONTROL_HEADER "profiled-control"
#define PD_CONTROL_ERASE "erase"

/* Checks a control record of partition p (of nparts) whose header value is
 * kind[0..kindlen): PD_EV_OK (0) with the user id copied into
 * user[PD_MAX_USER_ID] and its length in *ulen, or PD_EV_BAD_CONTROL /
 * PD_EV_BAD_ERASURE with the reason in err. key may be NULL. */
int pd_erase_parse(const char *kind, size_t kindlen, const void *key, size_t keylen, const char *val,
                   size_t vallen, int32_t p, int32_t nparts, char *user, size_t *ulen, char *err,
                   size_t errlen);

/* The erasure record's value for user at now_ms (into out, appended). */
void pd_erase_value(pd_buf *out, const char *user, size_t ulen, int64_t now_ms);

typedef struct pd_eraser pd_eraser;

/* Creates the producer (idempotent, acks=all) from cfg (borrowed: must
 * outlive the eraser). */
int pd_eraser_new(pd_eraser **out, const pd_config *cfg, char *err, size_t errlen);
/* Produces the erasure record of user to its partition (murmur2 % nparts)
 * and waits for its acknowledgement until timeout_ms: PD_OK with the
 * record's *partition and *offset; PD_EAGAIN on timeout (the record may still be
 * written later -- erasure is idempotent, a retry is harmless) or PD_EIO
 * with err set. Thread-safe. */
int pd_eraser_request(pd_eraser *e, int32_t nparts, const char *user, size_t ulen, int timeout_ms,
                      int32_t *partition, int64_t *offset, char *err, size_t errlen);
/* Waits up to timeout_ms for records in flight, then frees. NULL is a no-op. */
void pd_eraser_free(pd_eraser *e, int timeout_ms);

#endif
