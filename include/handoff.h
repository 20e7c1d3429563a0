/*
 * handoff.h -- moving one partition's state between workers.
 *
 * A snapshot is a byte stream produced from one RocksDB snapshot of the
 * source worker's store (pd_store_export_partition):
 *
 *   header   "PDSNAP07" | partition u32 BE | schema fingerprint u64 BE
 *            | event dialect u32 BE (PD_EVENT_DIALECT: the rules the state was built by)
 *   records  'd' | uvarint zigzag(day) | uvarint klen | user id | uvarint vlen | profile
 *                (klen 0: the partition's population profile of the day, store.h)
 *            'x' | uvarint 8 | seq u64 BE | uvarint vlen | packed de-dup entries
 *                (vlen a multiple of PD_DEDUP_ENTRY_LEN, see store.h; seq as stored:
 *                an imported partition that has applied no record yet keeps the
 *                import's keys, beyond the checkpoint, which the receiver's first
 *                commit rewrites: dedup.h pd_dedup_foreign)
 *            'f' | uvarint 0 | uvarint vlen | the source's side-effect record
 *                (sidefx.h; at most one, first): how far the side effects of
 *                this state are known to be done, and its time decisions
 *   trailer  'E' | next_offset i64 BE | clock_ms i64 BE | records u64 BE
 *            | HMAC-SHA256 of every preceding byte under key("snapshot")
 *              of the cluster secret (mac.h), 32 bytes
 *
 * The checkpoint travels in the trailer, so a stream is only usable once it
 * has arrived completely and its MAC verifies: a truncated, corrupted or
 * forged stream is rejected (the caller tries another source, then
 * rebuilds from the topic), never ingested. The MAC is checked over the
 * whole file before any record is parsed. Streams of earlier formats
 * (PDSNAP03: an unkeyed XXH3 checksum) are refused: no rolling upgrade.
 *
 * The receiver downloads to a file next to its store, verifies it, and then
 * applies it on the writer thread: delete the partition's range (DeleteRange)
 * and its checkpoint, put the records in bounded batches, and write the
 * checkpoint in the LAST batch. A crash part-way leaves records without a
 * checkpoint, which every later start treats as "no state" and deletes
 * before restoring or replaying -- so a partial import is never counted.
 */
#ifndef PD_HANDOFF_H
#define PD_HANDOFF_H

#include <stdint.h>
#include "store.h"

#define PD_SNAPSHOT_MAGIC "PDSNAP07" /* 01: one 'x' record per event id; 02: no dialect; 03: XXH3, no MAC;
                                        04: profile values of encoding 2 with a MAC, or of encoding 3 without;
                                        05: no population records (store format 3);
                                        06: no side-effect record */

/* Why a fetched stream was refused: the label of
 * profiled_snapshots_rejected_total{reason}. */
enum {
    PD_SNAP_REJ_MAC = 0,   /* PD_EAUTH: the MAC does not verify */
    PD_SNAP_REJ_MALFORMED, /* PD_ECORRUPT: authentic (or open cluster) but not a valid stream */
    PD_SNAP_REJ_SIZE,      /* PD_ERANGE: no or too large a Content-Length */
    PD_SNAP_REJ__COUNT
};
const char *pd_handoff_reject_reason(int r);

/* Receives stream bytes; returns 0, or non-zero to abort the export. */
typedef int (*pd_handoff_sink)(void *arg, const void *data, size_t n);

/* A sink that appends to the FILE * arg (-1 when fwrite comes short). */
int pd_handoff_file_sink(void *arg, const void *data, size_t n);

/* Writes partition p's snapshot through sink, its MAC made with the
 * cluster secret `secret` (NULL or "": an open cluster, see mac.h).
 * PD_ENOTFOUND when this store has no checkpoint for p. *cp (optional)
 * receives the exported checkpoint, *bytes the stream size. Any thread. */
int pd_handoff_export(pd_store *st, const pd_schema *s, const char *secret, int32_t p, pd_handoff_sink sink,
                      void *arg, pd_checkpoint *cp, uint64_t *bytes, char *err, size_t errlen);

/* Downloads GET <base_url>/internal/v1/snapshot/<p> (Bearer token when
 * non-empty) into `path` (created/truncated), then verifies it with the
 * same token as the MAC secret. The answer must announce its length
 * (Content-Length), at most max_body bytes (0: half the free space of the
 * disk holding `path`), else PD_ERANGE before a byte is written. Returns
 * PD_OK with *cp and *bytes, PD_ENOTFOUND when the peer has no state for p,
 * PD_EAUTH when the MAC does not verify, PD_ECORRUPT for a malformed
 * stream, PD_EAGAIN when the peer is unreachable or answers 503, PD_EIO for
 * other failures, PD_EINVAL for a URL peer.h does not parse.
 * `idle_timeout_ms` (> 0) bounds each wait for the peer (connect, send,
 * every read). The file is removed on error. */
int pd_handoff_fetch(const char *base_url, int32_t p, const char *token, const pd_schema *s,
                     const char *path, int idle_timeout_ms, uint64_t max_body, pd_checkpoint *cp, uint64_t *bytes,
                     char *err, size_t errlen);

/* Verifies a downloaded stream: first its MAC under `secret` (PD_EAUTH),
 * then magic, partition, schema, structure and record count
 * (PD_ECORRUPT). Fills *cp and *records. */
int pd_handoff_verify(const char *path, int32_t p, const pd_schema *s, const char *secret, pd_checkpoint *cp,
                      uint64_t *records, char *err, size_t errlen);

/* Applies a stream to the store (writer thread only), as described above,
 * after verifying it again as pd_handoff_verify does (the store is never
 * touched with a bad file). *cp receives the checkpoint written; *records
 * (optional, may be NULL) the number of records applied (user-day profiles
 * + de-dup entries), set only on success. */
int pd_handoff_apply(pd_store *st, const char *path, int32_t p, const pd_schema *s, const char *secret,
                     pd_checkpoint *cp, uint64_t *records, char *err, size_t errlen);

#endif
