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
 * All functions take the data directory's path; none keeps state.
 */
#ifndef PD_QUARANTINE_H
#define PD_QUARANTINE_H

#include <stddef.h>

#define PD_CORRUPT_MARKER "CORRUPT"

/* Writes dir/CORRUPT (the reason, one line) unless it exists. Any thread. */
int pd_quarantine_mark(const char *dir, const char *why, char *err, size_t errlen);
/* 1 when dir/CORRUPT exists (why gets its first line), else 0. */
int pd_quarantine_marked(const char *dir, char *why, size_t whylen);
/* Renames dir to <dir>.corrupt-<YYYYMMDDTHHMMSSZ> (moved_to gets it). */
int pd_quarantine_move(const char *dir, char *moved_to, size_t movedlen, char *err, size_t errlen);

#endif
