"""Step: import from an archive (issue 21 item 3) against a worker's replay
of the same events from the topic.

The processing step's event file (proc_n generated events) is produced once
to the topic "imp". Then, in interleaved rounds (the machine is shared and
noisy): a worker on an empty data directory with a new consumer group
replays the topic (timed from its "listening" line -- the store is open --
until profiled_records_in_total reaches the records the topic still holds
(high - low watermarks; the embedded broker keeps a bounded log): every record parsed, admitted and in a batch; events/s = that
count over the time), `profilectl
import` of the plain file, `profilectl import` of the same file gzipped
(each timed as a whole process: store open, read, parse, commit, close),
and bench_process's in-process pipeline on the file (the worker's code
without Kafka). Results: ctx.r["import"]: events/s of each and the ratios
import / replay (the issue's target: >= 0.8).
"""
import gzip
import json
import os
import shutil
import time

from benchlib import PARTS, assigned_time, log, metric_sum, run, wait_for


def run_step(ctx):
    ctx.ensure_broker()
    evfile = ctx.ensure_proc_file()
    n = sum(1 for l in open(evfile, "rb") if l.strip())
    log("import: %d events: profilectl import (plain, gzip) vs a worker replaying them from the topic" % n)
    gz = os.path.join(ctx.work, "archive.jsonl.gz")
    with open(evfile, "rb") as f, gzip.open(gz, "wb", compresslevel=6) as g:
        shutil.copyfileobj(f, g)
    run([ctx.bin("profilectl"), "produce", "--brokers", ctx.bootstrap, "--topic", "imp", "--file", evfile,
         "--quiet", "true"], timeout=900)
    marks = run([ctx.bin("profilectl"), "consume", "--brokers", ctx.bootstrap, "--topic", "imp", "--watermarks",
                 "true"], timeout=120)
    # the embedded broker keeps a bounded log per partition: what it still
    # holds (high - low) is what a replay reads
    total = sum(json.loads(l)["high"] - json.loads(l)["low"] for l in marks.splitlines() if l.strip())
    until = str(int(time.time() * 1000) + 86400000)
    ctl = ctx.bin("profilectl")
    rounds = []
    for i in range(max(ctx.sizes["pairs"], 1)):
        d = os.path.join(ctx.work, "imp-replay%d" % i)
        w = ctx.start_worker("imp-%d" % i, d, topic="imp", group="imp-%d" % i)
        wait_for(lambda: (metric_sum(w.url, "profiled_records_in_total") or 0) >= total, 1800,
                 "the replay of every record", 0.05)
        t_done = time.time()
        t_replay = t_done - w.t_listen
        t_asg = assigned_time(w.bench_log)
        recs = total
        ctx.procs.stop(w)
        shutil.rmtree(d, ignore_errors=True)
        rec = {"replay_secs": t_replay, "replay_records": recs,
               "replay_after_assigned_secs": (t_done - t_asg) if t_asg else None}
        for kind, src in (("plain", evfile), ("gzip", gz)):
            d = os.path.join(ctx.work, "imp-%s%d" % (kind, i))
            t0 = time.monotonic()
            out = json.loads(run([ctl, "import", "--input", src, "--data-dir", d, "--partitions", str(PARTS),
                                  "--until", until, "--progress-every", "0"], timeout=1800))
            rec[kind + "_secs"] = time.monotonic() - t0
            rec[kind + "_imported"] = out["imported"]
            shutil.rmtree(d, ignore_errors=True)
            for x in (d + ".rejects.jsonl",):
                if os.path.exists(x):
                    os.remove(x)
        p = json.loads(run([ctx.tool("bench_process"), "process", "--file", evfile, "--dir",
                            os.path.join(ctx.work, "imp-proc%d" % i), "--partitions", str(PARTS), "--batch", "20000"],
                           timeout=1800))
        shutil.rmtree(os.path.join(ctx.work, "imp-proc%d" % i), ignore_errors=True)
        rec["pipeline_eps"] = p["pipeline_eps"]
        rec["replay_eps"] = recs / rec["replay_secs"]
        if t_asg:  # without the group join: the processing rate alone
            rec["replay_after_assigned_eps"] = recs / rec["replay_after_assigned_secs"]
            rec["plain_vs_replay_after_assigned"] = n / rec["plain_secs"] / rec["replay_after_assigned_eps"]
        for k in ("plain", "gzip"):
            rec[k + "_eps"] = n / rec[k + "_secs"]
        rec["plain_vs_replay"] = rec["plain_eps"] / rec["replay_eps"]
        rec["gzip_vs_replay"] = rec["gzip_eps"] / rec["replay_eps"]
        rec["plain_vs_pipeline"] = rec["plain_eps"] / rec["pipeline_eps"]
        rounds.append(rec)
        log("   round %d: worker replay %.0f ev/s (%s ev/s after its assignment), import %.0f ev/s (%.2fx), gzip %.0f ev/s (%.2fx); "
            "in-process pipeline %.0f ev/s" % (i + 1, rec["replay_eps"], "%.0f" % rec.get("replay_after_assigned_eps", 0),
                                               rec["plain_eps"], rec["plain_vs_replay"],
                                               rec["gzip_eps"], rec["gzip_vs_replay"], rec["pipeline_eps"]))
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    ctx.r["import"] = {"events": n, "rounds": rounds,
                       "replay_eps": med([r["replay_eps"] for r in rounds]),
                       "plain_eps": med([r["plain_eps"] for r in rounds]),
                       "gzip_eps": med([r["gzip_eps"] for r in rounds]),
                       "plain_vs_replay_median": med([r["plain_vs_replay"] for r in rounds]),
                       "gzip_vs_replay_median": med([r["gzip_vs_replay"] for r in rounds]),
                       "plain_vs_replay_after_assigned_median": med([r.get("plain_vs_replay_after_assigned", 0)
                                                                     for r in rounds])}
    os.remove(gz)
