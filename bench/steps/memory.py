"""Step 9: the worker's memory under sustained ingestion, against its budget.

One worker with explicit memory settings (MEM_CFG) on its own topic; three
rate-limited producers each sweep their own 10 of the last 30 days and a
light query load runs; after a warm-up that fills the block cache, VmRSS is
sampled every second and the worker's memory gauges every 30 s. The budget
is the sum docs/operations.md (## Memory) documents. Results: ctx.r["memory"].
"""
import os
import random
import re
import shutil
import threading
import time

from benchlib import BATCH_BYTES_PER_EVENT, PRODUCE_BATCHING, all_ready, du, http_get, log, metric_sum, wait_for

MEM_CFG = {"block_cache_mb": 64, "write_buffer_mb": 16, "batch_max_events": 20000,
           "queued_max_kbytes": 16384, "day_filter_max_mb": 8}


def mem_parts(url):
    """MiB by part from the worker's memory gauges: rocksdb_<part>, heap_<kind>,
    batches, day_filters, dedup_index."""
    st, body = http_get(url + "/metrics", timeout=2)
    out = {}
    for line in body.decode(errors="replace").splitlines() if st == 200 else []:
        m = re.match(r'profiled_(heap_bytes\{kind|rocksdb_memory_bytes\{part)="(\w+)"\} (\d+)', line)
        if m:
            out[("heap_" if m.group(1).startswith("heap") else "rocksdb_") + m.group(2)] = int(m.group(3)) / (1 << 20)
        elif line.startswith("profiled_batch_bytes "):
            out["batches"] = int(line.split()[1]) / (1 << 20)
        elif line.startswith("profiled_day_filter_bytes "):
            out["day_filters"] = int(line.split()[1]) / (1 << 20)
        elif line.startswith("profiled_dedup_index_bytes "):
            out["dedup_index"] = int(line.split()[1]) / (1 << 20)
    return out


def run_step(ctx):
    """One worker with explicit memory settings under continuous
    ingestion and a light query load; its VmRSS is sampled every second.
    Three rate-limited producers each sweep their own 10 of the last 30
    days (the generator spreads timestamps evenly over its count), so
    three day families take writes at any time and all 30 get some:
    many memtables, bounded together by db_write_buffer_size.
    The measured window follows a warm-up under the same ingestion plus
    a heavier query load, until the block cache is full (it fills only
    from reads) or mem_warm seconds have passed: the window measures a
    worker in steady state, not its caches filling."""
    ctx.ensure_broker()
    secs = ctx.mem_secs
    warm_max = ctx.mem_warm
    c = MEM_CFG
    nprod, rate_each, users, day_ms = 3, 2000, 200000, 86400000
    log("9/9 memory: warm-up (<= %d s), then %d s of ingestion at %d ev/s (%d producers over 30 days) + "
        "light queries" % (warm_max, secs, nprod * rate_each, nprod))
    extra = ["--block_cache_mb", str(c["block_cache_mb"]), "--write_buffer_mb", str(c["write_buffer_mb"]),
             "--batch_max_events", str(c["batch_max_events"]),
             "--kafka.queued.max.messages.kbytes", str(c["queued_max_kbytes"]),
             "--day_filter_max_mb", str(c["day_filter_max_mb"])]
    w = ctx.start_worker("w-mem", os.path.join(ctx.work, "w-mem"), topic="mem", group="mem", extra=extra)
    wait_for(lambda: all_ready(w.url), 60, "w-mem to own partitions and be ready", 0.05)

    def rss_kib():
        try:
            with open("/proc/%d/status" % w.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None
    base = rss_kib()
    now_ms = int(time.time() * 1000)
    prods = []
    for k in range(nprod):
        start = now_ms - (30 - 10 * k) * day_ms
        prods.append(ctx.procs.start("produce-mem%d" % k, [
            ctx.bin("profilectl"), "produce", "--brokers", ctx.bootstrap, "--topic", "mem",
            "--generate", str(rate_each * (warm_max + secs + 10)), "--rate", str(rate_each), "--users", str(users),
            "--zipf", "0.7", "--days", "10", "--start_ts", str(start), "--seed", str(90 + k),
            "--quiet", "true"] + PRODUCE_BATCHING))
    stop, warm_done = threading.Event(), threading.Event()
    qstat = {"n": 0, "ok": 0, "warm_n": 0}

    def queries():  # ~20 requests/s, random users, 30-day range
        rnd = random.Random(9)
        while not stop.is_set():
            st, _ = http_get(w.url + "/v1/profiles/u-%d?days=30" % rnd.randrange(users), timeout=2)
            qstat["n"] += 1
            qstat["ok"] += st == 200
            stop.wait(0.05)

    def warm_queries(seed):  # warm-up only: back to back, to fill the block cache
        rnd = random.Random(seed)
        while not warm_done.is_set():
            http_get(w.url + "/v1/profiles/u-%d?days=30" % rnd.randrange(users), timeout=2)
            qstat["warm_n"] += 1
    qt = threading.Thread(target=queries, daemon=True)
    qt.start()
    wq = [threading.Thread(target=warm_queries, args=(20 + k,), daemon=True) for k in range(2)]
    for t in wq:
        t.start()
    samples = []
    warm_samples = []
    mem_series = []

    def tick(t_start, i, into):  # second i of a phase: wait for it, check the worker, sample VmRSS
        delay = t_start + i - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if w.poll() is not None:
            raise RuntimeError("w-mem exited with %s (see w-mem.log)" % w.returncode)
        v = rss_kib()
        if v is not None:
            into.append((time.monotonic() - t_start, v / 1024.0))
    tw = time.monotonic()
    warm_secs, cache_full = None, False
    try:
        for i in range(warm_max + 1):
            tick(tw, i, warm_samples)
            if i % 5 == 0 and mem_parts(w.url).get("rocksdb_block_cache", 0) >= 0.97 * c["block_cache_mb"]:
                cache_full = True
                break
    finally:
        warm_done.set()
        for t in wq:
            t.join(timeout=5)
    warm_secs = time.monotonic() - tw
    warm_samples = [(t - warm_secs, v) for t, v in warm_samples]
    log("   warm-up: %.0f s, block cache %s, %d queries" % (
        warm_secs, "full" if cache_full else "not full", qstat["warm_n"]))
    qstat["n"] = qstat["ok"] = 0
    rin0 = metric_sum(w.url, "profiled_records_in_total") or 0
    t0 = time.monotonic()
    try:
        for i in range(secs + 1):
            tick(t0, i, samples)
            if i % 30 == 0 or i == secs:  # where the memory is: allocator and RocksDB gauges
                mem_series.append(dict(mem_parts(w.url), t=time.monotonic() - t0))
        rin1 = metric_sum(w.url, "profiled_records_in_total") or 0
        lag = metric_sum(w.url, "profiled_consumer_lag")
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        qt.join(timeout=5)
        for p in prods:
            ctx.procs.stop(p)
    ctx.procs.stop(w)
    store_bytes, _ = du(os.path.join(ctx.work, "w-mem"))
    if not ctx.keep:
        shutil.rmtree(os.path.join(ctx.work, "w-mem"), ignore_errors=True)
    budget = budget_mib(c)
    res = {"config": c, "secs": elapsed, "producers": nprod, "rate_target": nprod * rate_each,
           "rate_seen": (rin1 - rin0) / elapsed, "lag_end": lag, "users": users, "days": 30,
           "queries": qstat, "store_bytes": store_bytes, "baseline_mib": base / 1024.0 if base else None,
           "budget_mib": budget}
    res.update(rss_summary(samples, elapsed))
    res.update({"samples": samples, "mem_series": mem_series, "warm_secs": warm_secs,
                "warm_cache_full": cache_full, "warm_samples": warm_samples,
                "warm_max_mib": max((v for _, v in warm_samples), default=None)})
    h0, growth = res["second_half_start_mib"], res["growth_mib_per_min"]
    res["max_ok"] = max(res["max_mib"], res["warm_max_mib"] or 0) <= 1.5 * budget["total"]
    res["stable_ok"] = growth is not None and h0 and growth < 0.01 * h0
    ctx.r["memory"] = res
    log("   RSS min/median/max %.0f/%.0f/%.0f MiB (budget %.0f MiB); second half %+.2f MiB/min; "
        "ingest %.0f ev/s, lag at end %s" % (res["min_mib"], res["median_mib"], res["max_mib"], budget["total"],
                                              growth or 0, res["rate_seen"], lag))


def budget_mib(c):
    """The memory budget docs/operations.md documents for settings c, MiB."""
    mib = 1 << 20
    budget = {"block_cache": c["block_cache_mb"], "memtables": 2 * c["write_buffer_mb"],
              "batch": 2 * c["batch_max_events"] * BATCH_BYTES_PER_EVENT / mib,
              "librdkafka_queue": c["queued_max_kbytes"] / 1024, "day_filters": c["day_filter_max_mb"]}
    budget["total"] = sum(budget.values())
    return budget


def rss_summary(samples, elapsed):
    """Order statistics and second-half growth of [(t, MiB)] samples over a
    window of elapsed seconds."""
    rss = sorted(v for _, v in samples)
    n = len(samples)

    def at(frac):  # RSS of the sample nearest frac of the run
        return samples[min(n - 1, int(round((n - 1) * frac)))][1]

    def mean_between(a, b):
        sel = [v for t, v in samples if a <= t <= b]
        return sum(sel) / len(sel) if sel else None
    # Second half: mean RSS of its first and last 10 % (of the run) -> MB/min.
    half, end = elapsed / 2, samples[-1][0]
    win = max(elapsed * 0.1, 3)
    h0, h1 = mean_between(half, half + win), mean_between(end - win, end)
    span = end - win / 2 - (half + win / 2)  # seconds between the two windows' centres
    growth = (h1 - h0) / (span / 60.0) if h0 and h1 and span >= win else None
    # Least-squares slope over the second half, for comparison.
    sec = [(t, v) for t, v in samples if t >= half]
    mt, mv = sum(t for t, _ in sec) / len(sec), sum(v for _, v in sec) / len(sec)
    den = sum((t - mt) ** 2 for t, _ in sec)
    slope = sum((t - mt) * (v - mv) for t, v in sec) / den * 60 if den else None
    return {"min_mib": rss[0], "median_mib": rss[n // 2], "max_mib": rss[-1],
            "at_mib": {"25": at(0.25), "50": at(0.5), "75": at(0.75), "100": at(1.0)},
            "second_half_start_mib": h0, "second_half_end_mib": h1, "growth_mib_per_min": growth,
            "slope_mib_per_min": slope}
