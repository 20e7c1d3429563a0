/*
 * committer.h -- the committer thread and the hand-over of a batch to it.
 *
 * A flush, on the ingest thread, puts the de-dup records and checkpoints
 * into a batch's WriteBatch and hands the pair to the committer, which adds
 * the profile deltas (sorted, built from the event log: the larger part of
 * a flush's CPU), writes the WriteBatch (pd_store_commit) and clears the
 * batch; meanwhile the ingest thread fills the other batch. At most one
 * commit is in flight.
 *
 * Ownership is in the types: a pd_batch_slot (the batch, its WriteBatch) is
 * owned by exactly one thread at a time, which its `owner` says and every
 * transfer asserts. The ingest thread owns a slot through a pointer;
 * pd_committer_submit takes that pointer and NULLs it, and only
 * pd_committer_collect gives the slot back (its batch empty, its
 * WriteBatch written or, after a failure, discarded). Nothing else crosses
 * between the two threads.
 */
#ifndef PD_COMMITTER_H
#define PD_COMMITTER_H

#include "batch.h"
#include "schema.h"
#include "store.h"

typedef enum { PD_SLOT_INGEST = 1, PD_SLOT_COMMITTER = 2 } pd_slot_owner;

/* One batch and the WriteBatch it is committed with. */
typedef struct {
    pd_batch batch;
    pd_store_batch *sb;
    pd_slot_owner owner;
} pd_batch_slot;

typedef struct pd_committer pd_committer;

/* Starts the committer thread ("pd-commit", at nice `nice` when > 0) for
 * commits to st; s is the schema of the profiles it builds. Both must
 * outlive the committer. */
int pd_committer_start(pd_committer **out, pd_store *st, const pd_schema *s, int64_t nice, char *err,
                       size_t errlen);
/* Hands *slot (owned by the caller) over and sets *slot = NULL. No other
 * commit may be in flight (collect it first). */
void pd_committer_submit(pd_committer *cm, pd_batch_slot **slot);
/* Takes back the slot of the commit in flight once it has finished,
 * waiting for it when `wait`, else returning PD_EAGAIN (*slot untouched)
 * while it runs. Sets *slot and *writes (deltas written) and returns the
 * commit's result (err set on failure). */
int pd_committer_collect(pd_committer *cm, int wait, pd_batch_slot **slot, uint64_t *writes, char *err,
                         size_t errlen);
/* Retries (on = 1) a write that fails with an I/O error -- a full disk --
 * with the same WriteBatch until it succeeds or pd_committer_cancel, with
 * backoff; off (the default): the failure is the commit's result. */
void pd_committer_set_retry(pd_committer *cm, int on);
/* Ends a retrying write now (it fails); later failures are not retried.
 * Any thread; NULL allowed. */
void pd_committer_cancel(pd_committer *cm);
/* 1 while a failed write is being retried (err, when given, gets its
 * error), else 0. Any thread. */
int pd_committer_stalled(pd_committer *cm, char *err, size_t errlen);
/* Failed store writes so far (each retry counts). Any thread. */
uint64_t pd_committer_write_failures(pd_committer *cm);
/* Waits for a commit in flight (a retrying write gives up: see
 * pd_committer_cancel; nothing else is abandoned), stops the thread and
 * frees cm (NULL allowed). A slot not collected stays with its storage's
 * owner. */
void pd_committer_stop(pd_committer *cm);

#endif
