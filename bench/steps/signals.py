"""Step 3c: the cost of per-type tracks and recent items (issue 19 items
3 and 4).

bench_tracks (bench/bench_tracks.c) groups generated vehicle events by
user-day and reports, for the built-in schema with recent items off
(the reference) and 0, 1 ("park") and 2 ("park", "contact") tracked
types, and with no tracks but recent items (the default: 10, item.id, no
attributes; and 10 with make and price), the encoded bytes per user-day
and the parse + add + encode rate (interleaved rounds, median rate ratio
to the reference); then the CPU per query of decoding a user's days and
rendering the answer for the plain query (the reference), the plain
query with the default recent items, with 2 tracks, weights= and types=,
in interleaved rounds (median ratio to the reference). In process: HTTP
and RocksDB cost the same for every variant.

Then end to end: bench_process's replay pipeline (parse, de-dup, batch,
RocksDB commit; the processing step's file) with the built-in schema's
default recent items against --recent-max 0, in interleaved pairs (median
rate ratio), and once each with --size-dir: the compacted bytes per
user-day on disk. Results: ctx.r["signals"], ctx.r["signals"]["recent_e2e"].
"""
import json
import os
import shutil

from benchlib import du, log, run


def run_step(ctx):
    log("3c/9 per-type tracks: bytes per user-day, weights=/types= query cost")
    n = 50000 if ctx.quick else 200000
    out = run([ctx.tool("bench_tracks"), "--events", str(n), "--users", str(n // 100), "--days", "7",
               "--pairs", "3" if ctx.quick else "7"], timeout=600)
    r = json.loads(out)
    ctx.r["signals"] = r
    for s in r["storage"]:
        log("   %d tracked, recent %d (+%d attributes): %.1f bytes/user-day, %.0f ev/s (x%.3f)" % (
            s["tracked_types"], s.get("recent_max", 0), s.get("recent_attributes", 0), s["bytes_per_user_day"],
            s["events_per_sec"], s.get("median_rate_ratio_to_reference", 0)))
    for q in r["queries"]:
        log("   %-50s %.1f us/query (x%.3f)" % (q["what"], q["cpu_us_per_query"], q["median_ratio_to_reference"]))
    r["recent_e2e"] = recent_e2e(ctx)


def recent_e2e(ctx):
    """The replay pipeline with the default recent items (10) against
    recent items off, interleaved pairs; then the compacted size of each."""
    evfile = ctx.ensure_proc_file()
    pairs = 2 if ctx.quick else 3
    d = os.path.join(ctx.work, "recent-store")

    def one(k, size_dir=None):
        shutil.rmtree(d, ignore_errors=True)
        args = [ctx.tool("bench_process"), "process", "--file", evfile, "--dir", d, "--partitions", "32",
                "--batch", "20000", "--pipeline-only", "1"]
        if k is not None:
            args += ["--recent-max", str(k)]
        if size_dir:
            shutil.rmtree(size_dir, ignore_errors=True)
            args += ["--size-dir", size_dir]
        p = json.loads(run(args, timeout=900))
        shutil.rmtree(d, ignore_errors=True)
        return p
    ratios, eps = [], {"default": [], "off": []}
    for i in range(pairs):
        got = {}
        for name in (("off", "default") if i % 2 == 0 else ("default", "off")):
            got[name] = one(0 if name == "off" else None)["pipeline_eps"]
            eps[name].append(got[name])
        ratios.append(got["default"] / got["off"])
        log("   e2e pair %d: default %.0f ev/s, off %.0f ev/s (x%.3f)" % (i + 1, got["default"], got["off"],
                                                                         ratios[-1]))
    ratios.sort()
    out = {"pairs": pairs, "events": None, "eps_default": eps["default"], "eps_off": eps["off"],
           "median_rate_ratio_default_to_off": ratios[len(ratios) // 2]}
    for name, k in (("default", None), ("off", 0)):
        sd = os.path.join(ctx.work, "recent-size-" + name)
        p = one(k, sd)
        total, sst = du(sd)
        ud = max(p["user_days"], 1)
        out["size_" + name] = {"user_days": p["user_days"], "dir_bytes_per_user_day": total / ud,
                               "sst_bytes_per_user_day": sst / ud,
                               "logical_value_bytes_per_user_day": p["compact_value_bytes"] / ud}
        out["events"] = p["lines"]
        shutil.rmtree(sd, ignore_errors=True)
    log("   e2e: default/off rate x%.3f; on disk %.0f vs %.0f bytes/user-day (logical %.0f vs %.0f)" % (
        out["median_rate_ratio_default_to_off"], out["size_default"]["dir_bytes_per_user_day"],
        out["size_off"]["dir_bytes_per_user_day"], out["size_default"]["logical_value_bytes_per_user_day"],
        out["size_off"]["logical_value_bytes_per_user_day"]))
    return out
