/*
 * offsets.h -- where a partition's position stands against the topic's
 * offsets (issue 22, hole 4). Pure.
 *
 * With next = the partition's checkpointed next offset (-1 none), pos =
 * where its consumption starts (next, or below it while a new owner redoes
 * side effects, sidefx.h; < 0 for a logical start), and [lo, hi) the
 * topic's offsets (low and high watermark):
 *   next > hi          BACKWARDS: the topic was recreated or truncated; its
 *                      offsets name other records now
 *   pos < lo           GAP: Kafka deleted records before they were read
 *   otherwise          OK
 * The policies are in ingest's offsets.c and docs/operations.md
 * ("Offsets"). A topic recreated and refilled past the checkpoint before
 * the worker looks is not detectable from offsets alone.
 */
#ifndef PD_OFFSETS_H
#define PD_OFFSETS_H

#include <stdint.h>

enum { PD_OFFS_OK = 0, PD_OFFS_GAP = 1, PD_OFFS_BACKWARDS = 2 };

int pd_offsets_classify(int64_t next, int64_t pos, int64_t lo, int64_t hi);

#endif
