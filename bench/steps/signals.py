"""Step 3c: the cost of per-type tracks (issue 19 item 3).

bench_tracks (bench/bench_tracks.c) groups generated vehicle events by
user-day and reports, for the built-in schema with 0, 1 ("park") and 2
("park", "contact") tracked types, and with recent items (10, no
tracks), the encoded bytes per user-day and the
parse + add + encode rate; then the CPU per query of decoding a user's
days and rendering the answer for the plain query (untracked schema: the
reference), the plain query with 2 tracks, weights= and types=, in
interleaved rounds (median ratio to the reference). In process: HTTP and
RocksDB cost the same for every variant. Results: ctx.r["signals"].
"""
import json

from benchlib import log, run


def run_step(ctx):
    log("3c/9 per-type tracks: bytes per user-day, weights=/types= query cost")
    n = 50000 if ctx.quick else 200000
    out = run([ctx.tool("bench_tracks"), "--events", str(n), "--users", str(n // 100), "--days", "7",
               "--pairs", "3" if ctx.quick else "7"], timeout=600)
    r = json.loads(out)
    ctx.r["signals"] = r
    for s in r["storage"]:
        log("   %d tracked, recent %d: %.1f bytes/user-day, %.0f ev/s" % (
            s["tracked_types"], s.get("recent_max", 0), s["bytes_per_user_day"], s["events_per_sec"]))
    for q in r["queries"]:
        log("   %-40s %.1f us/query (x%.3f)" % (q["what"], q["cpu_us_per_query"], q["median_ratio_to_reference"]))
