/*
 * quarantine.h -- what a worker does with a corrupt store (issue 22,
 * hole 7).
 *
 * Corruption is found two ways: RocksDB refuses to open the store
 * (pd_store_open: PD_ECORRUPT -- a damaged MANIFEST, a missing or garbled
 * table file, a store without its schema record), or a read fails its
 * block checksum while serving (RocksDB verifies every block it reads, so
 * a damaged table file is never served as data). A read that finds it
 * marks the store (pd_quarantine_mark: a CORRUPT file in the data
 * directory with the error), the worker says so (/readyz failing,
 * profiled_store_corruptions_total, the log) and answers 500 for what it
 * cannot read (the cause only in the log, never a path).
 *
 * With `store_corruption = quarantine` (the default) the worker then
 * restarts itself at once (pd_quarantine_restart_due, pd_quarantine_reexec):
 * the ingest loop stops without a final flush (nothing more is written to
 * a store that is thrown away), the usual shutdown runs (HTTP stops, the
 * group is left so the partitions move to peers, whose replicas serve
 * them meanwhile) and main() executes the same program again with the
 * same arguments (same PID). Why the whole store and not one partition:
 * a damaged table file can hold any partition's keys, and RocksDB's
 * compactions read it again, so nothing short of a new store ends the
 * failures. At most PD_QUARANTINE_MAX_RESTARTS re-executions per process
 * (counted in the environment, PROFILED_QUARANTINE_RESTARTS): a disk that
 * keeps corrupting what it is given stops the worker (exit code 3) rather
 * than filling itself with quarantined copies.
 *
 * At the next start, a marked store or one that fails to open as corrupt
 * is handled by the `store_corruption` policy: `quarantine` renames the
 * data directory to <data_dir>.corrupt-<UTC time> (kept for inspection,
 * never deleted) and starts with an empty store, so each partition is
 * restored like a new worker's: a snapshot from a peer holding it, else a
 * rebuild from the topic (marked incomplete_rebuild when the topic's
 * retention is shorter than the profile window); `refuse` exits with the
 * reason (exit code 3) and leaves the directory alone. WAL damage needs
 * neither: RocksDB's point-in-time recovery stops at the first bad
 * record, which leaves an older but consistent store (state and offsets
 * are one WriteBatch) that the topic brings up to date.
 *
 * The path functions take the data directory's path and keep no state;
 * pd_quarantine_found and pd_quarantine_restart_due act on the worker's
 * atomics (any thread).
 */
#ifndef PD_QUARANTINE_H
#define PD_QUARANTINE_H

#include <stddef.h>
#include <stdint.h>

#include "worker.h"

#define PD_CORRUPT_MARKER "CORRUPT"
#define PD_QUARANTINE_MAX_RESTARTS 3
#define PD_QUARANTINE_RESTARTS_ENV "PROFILED_QUARANTINE_RESTARTS"

/* Writes dir/CORRUPT (the reason, one line) unless it exists. Any thread. */
int pd_quarantine_mark(const char *dir, const char *why, char *err, size_t errlen);
/* 1 when dir/CORRUPT exists (why gets its first line), else 0. */
int pd_quarantine_marked(const char *dir, char *why, size_t whylen);
/* Renames dir to <dir>.corrupt-<YYYYMMDDTHHMMSSZ> (moved_to gets it). */
int pd_quarantine_move(const char *dir, char *moved_to, size_t movedlen, char *err, size_t errlen);

/* A read or write of w's store failed as corrupt (PD_ECORRUPT), in
 * partition p (-1: not one partition's). Any thread. Counts
 * profiled_store_corruptions_total; the first time also marks the store,
 * sets w->store_corrupt (/readyz failing) and logs what happens next. */
void pd_quarantine_found(pd_worker *w, int32_t p, const char *why);
/* 1 when w found its store corrupt and should restart itself to
 * quarantine it (store_corruption = quarantine). */
int pd_quarantine_restart_due(pd_worker *w);
/* Executes this program again with argv (same PID, environment plus the
 * restart count), after the caller closed everything it opened. Returns
 * only when it could not (err says why: the restart budget is spent or
 * execv failed); the caller then exits with code 3. */
int pd_quarantine_reexec(char **argv, char *err, size_t errlen);

#endif
