"""Step 2: end to end, broker -> committed state.

The e2e events are produced to the embedded broker first; bench_consume
(assign mode, discard) is the reference, then one worker ("w1", which owns
every partition and which the query steps go on to measure) is timed from
its "assigned" log line until its committed offsets reach the end offsets.
Results: ctx.r["e2e"]; leaves ctx.w1 and ctx.e2e_file for later steps.
"""
import json
import os
import re
import time

from benchlib import PARTS, children_cpu, log, log_time, metric_sum, proc_cpu, run


def run_step(ctx):
    n = ctx.sizes["e2e_n"]
    log("2/9 end to end: %d events over %d partitions" % (n, PARTS))
    # Flatter user distribution than the processing file (Zipf 0.7 over
    # 200k users) so no partition outgrows the mock broker's 5 MiB
    # retention (with Zipf 1.1 the top user alone is ~15% of events).
    ctx.e2e_file = ctx.generate(os.path.join(ctx.work, "e2e.jsonl"), n, "--users", "200000", "--zipf", "0.7",
                                "--days", "7", "--seed", "2")
    ctx.ensure_broker()
    out = ctx.produce_file(ctx.e2e_file)
    m = re.search(r"acked=(\d+)", out)
    acked = int(m.group(1)) if m else n
    c0, b0 = children_cpu(), proc_cpu(ctx.broker.pid)
    raw = json.loads(run([ctx.tool("bench_consume"), "--brokers", ctx.bootstrap, "--topic", "events",
                          "--timeout_ms", "120000"], timeout=180))
    raw["cpu_secs"], raw["broker_cpu_secs"] = children_cpu() - c0, proc_cpu(ctx.broker.pid) - b0
    w = ctx.start_worker("w1", os.path.join(ctx.work, "w1"))
    wc0, b0 = proc_cpu(w.pid), proc_cpu(ctx.broker.pid)
    ctx.w1 = w
    end = raw["high_sum"]
    t_done = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        v = metric_sum(w.url, "profiled_partition_committed_offset")
        if v is not None and v >= end:
            t_done = time.time()
            wc1, b1 = proc_cpu(w.pid), proc_cpu(ctx.broker.pid)
            break
        time.sleep(0.02)
    t_assign = log_time(w.bench_log, r"assigned \d+ partition")
    res = {"acked": acked, "records": raw["expected"], "raw": raw}
    end = raw["expected"]
    if t_done:
        res["store_writes"] = metric_sum(w.url, "profiled_store_writes_total")
        res["worker_cpu_secs"], res["broker_cpu_secs"] = wc1 - wc0, b1 - b0
    if t_done and t_assign:
        secs = t_done - t_assign
        res.update({"worker_secs": secs, "worker_eps": end / secs, "spawn_to_assigned": t_assign - w.t_spawn,
                    "ratio": (end / secs) / raw["eps"]})
        log("   worker %.0f ev/s, raw consume %.0f ev/s" % (end / secs, raw["eps"]))
    else:
        res["error"] = "worker did not catch up (or no assignment line)"
    ctx.r["e2e"] = res
