/*
 * members.h -- who owns which partition, learned from the membership topic.
 *
 * Every worker publishes a small JSON record to the single-partition
 * membership topic (<topic>.members) whenever its assignment changes and as
 * a heartbeat every 2 s: {"id","url","gen","ts","partitions":[...],"alive"}.
 * Every worker reads that topic from the beginning (assign mode, no group)
 * and keeps partition -> owner: the most recent record, in log order, that
 * claims the partition, unless a later record of the same member drops it.
 * Heartbeats repeat claims, so "most recent claim" means the claim that
 * STARTED most recently: per member and partition we keep the log offset of
 * the first record of its current uninterrupted run of claims, and among
 * live members claiming p the latest start wins (the newest acquirer).
 * This works the same on the embedded broker and on real Kafka, and needs
 * no static peer list. A worker leaving cleanly publishes "alive":false.
 *
 * Only authentic, current records count (memrec.h: a MAC keyed by the
 * cluster secret, key = id; members.c: fresh within member_ttl, newer than
 * the member's previous record, at most members_max members), and a member
 * silent for member_ttl while the topic keeps delivering is no longer live:
 * it owns nothing and is no snapshot source or replica. So every URL this
 * map hands out (owners, holders) was published by a holder of the secret.
 *
 * Threads: one background thread consumes the topic; pd_members_owner is
 * safe from any thread; pd_members_publish is safe from any thread (it
 * snapshots w->parts[].owned and produces asynchronously).
 */
#ifndef PD_MEMBERS_H
#define PD_MEMBERS_H

#include "worker.h"

int pd_members_start(pd_members **out, pd_worker *w, char *err, size_t errlen);
/* Publishes this worker's current claim (alive=1) now. */
void pd_members_publish(pd_members *m);
/* Copies the current owner of partition p into *out; PD_ENOTFOUND when no
 * live member claims it. */
int pd_members_owner(pd_members *m, int32_t partition, pd_owner *out);
/* A worker holding a checkpointed copy of a partition. */
typedef struct {
    char id[130];
    char url[256];
    int64_t next_offset;   /* its checkpoint */
    int owner;             /* 1: owner, 0: replica */
    int64_t fx_done;       /* owner: its side-effect frontier (sidefx.h), -1 unknown */
    int64_t heartbeat_ms;  /* last record seen from it */
} pd_holder;
/* Other live workers that report a checkpoint for p, highest offset first.
 * Returns the count (<= max). */
int pd_members_holders(pd_members *m, int32_t p, pd_holder *out, int max);
/* Ids of live members (this worker included), sorted ascending; returns
 * the count (<= max). A member is live until it says alive=false or has
 * been silent for member_ttl (see above). */
int pd_members_alive(pd_members *m, char (*ids)[130], int max);

/* JSON array describing every partition's owner, for GET /v1/partitions. */
void pd_members_render(pd_members *m, pd_buf *out);
/* Publishes alive=false, stops the thread, frees. NULL is a no-op. */
void pd_members_stop(pd_members *m);

/* For tests: a map without Kafka (no thread, publish is a no-op) whose
 * claims are injected with pd_members_set_owner, which records a claim of
 * partition p by member id/url as if read from the log now (the newest
 * claim wins). Free with pd_members_stop. */
pd_members *pd_members_new_static(pd_worker *w);
void pd_members_set_owner(pd_members *m, int32_t partition, const char *id, const char *url,
                          int64_t generation);

#endif
