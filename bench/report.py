#!/usr/bin/python3
"""report.py -- the reporting half of `make bench` (`make bench-report` alone).

Reads a results file written by bench/measure.py and writes only what is
generated from it: bench-results.md (machine, the results table with each
target and verdict, the answers per query run, the memory gauges, the CPU
table of the query runs, the command that reproduces the run) and the plots
bench_throughput.png, bench_latency.png, bench_handoff.png, bench_rss.png.
The method, the analysis and the history are kept by hand in
docs/BENCHMARKS.md, which this program never writes.

  --results PATH  default $BENCH_RESULTS, else build/bench/results.json
  --out-dir DIR   default docs/ for a full-size run of every step; a QUICK
                  or partial run goes to build/bench/report/ so its figures
                  never replace the committed full-run ones by accident
                  (pass --out-dir docs to do that on purpose)

It reads results of every layout measure.py and the former bench/bench.py
wrote (schema 1, or no "schema" key) and shows what a partial run holds.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

from plots import write_plots

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_MD = "bench-results.md"


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float) and v < 10:
        return "%.2f%s" % (v, unit)
    return "{:,.0f}{}".format(v, unit)


def rows(r):
    """(measurement, ours, reference, ratio, target, met) rows."""
    out = []

    def add(name, ours, ref, ratio, target, met):
        out.append((name, ours, ref, "n/a" if ratio is None else "%.2f" % ratio, target,
                    "n/a" if met is None else ("yes" if met else "**no**")))
    p = r.get("processing", {})
    if p:
        ratio = p["pipeline_eps"] / p["cjson_eps"]
        add("1. Processing (replay pipeline), events/s", fmt(p["pipeline_eps"]),
            "bare cJSON parse: " + fmt(p["cjson_eps"]), ratio, ">= 0.6x", ratio >= 0.6)
        if p.get("parse_eps"):
            add("1. Event parse + validate alone (pd_event_parse), events/s", fmt(p["parse_eps"]),
                "bare cJSON parse: " + fmt(p["cjson_eps"]), p["parse_eps"] / p["cjson_eps"], "(reference)", None)
        db = r.get("db_bench", {})
        if "ops_per_sec" in db:
            wps = p["writes"] / p["pipeline_secs"]
            add("1. Store merge writes/s inside the pipeline (key %d B, value %d B)" % (db["key_size"], db["value_size"]),
                fmt(wps), "db_bench fillrandom: %s ops/s" % fmt(db["ops_per_sec"]), wps / db["ops_per_sec"],
                "(reference)", None)
    e = r.get("e2e", {})
    if "worker_eps" in e:
        add("2. End to end (broker -> committed state), events/s", fmt(e["worker_eps"]),
            "raw librdkafka consume: " + fmt(e["raw"]["eps"]), e["ratio"], ">= 0.9x", e["ratio"] >= 0.9)
        db = r.get("db_bench", {})
        if e.get("store_writes") and "ops_per_sec" in db:
            wpe = e["store_writes"] / e["records"]
            wps = e["worker_eps"] * wpe
            add("2. End to end: store writes/s (%.2f writes per event in this workload)" % wpe, fmt(wps),
                "db_bench fillrandom (same machine, one thread): %s ops/s" % fmt(db["ops_per_sec"]),
                wps / db["ops_per_sec"], "(the store's ceiling)", None)
        if e.get("worker_cpu_secs") and e["raw"].get("cpu_secs"):
            n = e["records"]
            wu, ru = e["worker_cpu_secs"] / n * 1e6, e["raw"]["cpu_secs"] / n * 1e6
            add("2. End to end: CPU per event, us (worker; mock broker while serving it)",
                "%.2f; broker %.2f" % (wu, e["broker_cpu_secs"] / n * 1e6),
                "raw consume: %.2f; broker %.2f" % (ru, e["raw"]["broker_cpu_secs"] / n * 1e6), wu / ru,
                "(reference: 2 CPUs)", None)
    q = r.get("queries", {})
    if "local" in q:
        lr = q["local"]["rps"] / q["fixed"]["rps"]
        pairs = q.get("throughput_pairs") or [lr]
        if len(pairs) > 1:  # judged on the median pair (see steps/queries.py)
            lr = statistics.median(pairs)
            note = "; ratio = median of %d interleaved pairs (%s)" % (
                len(pairs), ", ".join("%.2f" % x for x in pairs))
        else:
            note = ""
        add("3. Local query throughput, req/s (30 days, 20 dims)", fmt(q["local"]["rps"]),
            "/healthz fixed body: " + fmt(q["fixed"]["rps"]) + note, lr, ">= 0.5x", lr >= 0.5)
        add("3. Local query p50 / p99 / p999, ms", "%.2f / %.2f / %.2f" % (
            q["local"]["p50_us"] / 1e3, q["local"]["p99_us"] / 1e3, q["local"]["p999_us"] / 1e3),
            "/healthz: %.2f / %.2f / %.2f" % (q["fixed"]["p50_us"] / 1e3, q["fixed"]["p99_us"] / 1e3,
                                             q["fixed"]["p999_us"] / 1e3),
            q["local"]["p99_us"] / max(q["fixed"]["p99_us"], 1), "p99 <= 1 ms", q["local"]["p99_us"] <= 1000)
    if "rps" in q.get("forwarded", {}) and "forwarded_local_same_users" in q:
        f = q["forwarded"]
        add("3. Forwarded query p50 / p99 / p999, ms (%.0f req/s)" % f["rps"],
            "%.2f / %.2f / %.2f" % (f["p50_us"] / 1e3, f["p99_us"] / 1e3, f["p999_us"] / 1e3),
            "local, same users: p99 %.2f" % (q["forwarded_local_same_users"]["p99_us"] / 1e3),
            f["p99_us"] / max(q["forwarded_local_same_users"]["p99_us"], 1), "p99 <= 2.5 ms",
            f["p99_us"] <= 2500)
    tk = r.get("topk")
    if tk and tk.get("pairs"):
        pl = sorted(x["plain"]["worker_us_per_req"] for x in tk["pairs"])
        t10 = sorted(x["top10"]["worker_us_per_req"] for x in tk["pairs"])
        add("3b. Worker CPU per query, top=10 vs plain (days=30), us", "%.1f" % t10[len(t10) // 2],
            "plain %.1f; pairs %s" % (pl[len(pl) // 2], " ".join("%.2f" % x["cpu_ratio"] for x in tk["pairs"])),
            tk["median_cpu_ratio"], "(documented)", None)
    rd = r.get("reads")
    if rd and rd.get("pairs"):
        pl = sorted(x["plain"]["worker_us_per_req"] for x in rd["pairs"])
        for k in ("at", "affinities"):
            v = sorted(x[k]["worker_us_per_req"] for x in rd["pairs"] if x.get(k, {}).get("worker_us_per_req"))
            if not v or k not in rd.get("median_cpu_ratio", {}):
                continue
            add("3f. Worker CPU per query, %s vs plain (days=30), us" % k, "%.1f" % v[len(v) // 2],
                "plain %.1f; rounds %s" % (pl[len(pl) // 2], " ".join("%.2f" % x["cpu_ratios"][k]
                                                                    for x in rd["pairs"] if k in x["cpu_ratios"])),
                rd["median_cpu_ratio"][k], "(documented)", None)
    tr = r.get("tracked")
    if tr and tr.get("pairs"):
        pl = sorted(x["untracked"]["worker_us_per_req"] for x in tr["pairs"])
        for k in ("plain", "weights", "types"):
            v = sorted(x[k]["worker_us_per_req"] for x in tr["pairs"] if x.get(k, {}).get("worker_us_per_req"))
            if not v or k not in tr.get("median_cpu_ratio", {}):
                continue
            add("3g. Worker CPU per query, 2 tracked types, %s vs untracked plain (days=30), us" % k,
                "%.1f" % v[len(v) // 2],
                "untracked %.1f; rounds %s" % (pl[len(pl) // 2], " ".join("%.2f" % x["cpu_ratios"][k]
                                                                        for x in tr["pairs"] if k in x["cpu_ratios"])),
                tr["median_cpu_ratio"][k], "(documented)", None)
    sg = r.get("signals")
    if sg and sg.get("storage"):
        base = next((s for s in sg["storage"] if s["tracked_types"] == 0 and not s.get("recent_max")), None)
        for s in sg["storage"]:
            if base is None or s is base:
                continue
            what = ("%d tracked type(s)" % s["tracked_types"]) if s["tracked_types"] else (
                "recent items (%d, %d attributes)" % (s.get("recent_max", 0), s.get("recent_attributes", 0)))
            add("3e. Encoded bytes per user-day with %s" % what, "%.1f" % s["bytes_per_user_day"],
                "no tracks, recent off: %.1f" % base["bytes_per_user_day"],
                s["bytes_per_user_day"] / base["bytes_per_user_day"], "(documented)", None)
            if "median_rate_ratio_to_reference" in s:
                add("3e. Parse + add + encode rate with %s, ev/s" % what, "%.0f" % s["events_per_sec"],
                    "no tracks, recent off: %.0f" % base["events_per_sec"], s["median_rate_ratio_to_reference"],
                    "(documented)", None)
        e2e = sg.get("recent_e2e")
        if e2e:
            add("3e. Replay pipeline with the default recent items (10) vs off, ev/s (median of %d pairs)" % e2e["pairs"],
                "/".join("%.0f" % x for x in e2e["eps_default"]), "off: " + "/".join("%.0f" % x for x in e2e["eps_off"]),
                e2e["median_rate_ratio_default_to_off"], "(documented)", None)
            d, o = e2e["size_default"], e2e["size_off"]
            add("3e. On-disk bytes per compacted user-day, default recent items vs off",
                "%.0f" % d["dir_bytes_per_user_day"], "off: %.0f" % o["dir_bytes_per_user_day"],
                d["dir_bytes_per_user_day"] / o["dir_bytes_per_user_day"], "(documented)", None)
        for x in sg.get("queries", []):
            add("3e. Query decode + render CPU, %s, us" % x["what"], "%.1f" % x["cpu_us_per_query"],
                "plain query, untracked schema, recent off", x["median_ratio_to_reference"], "(documented)", None)
    u, pi = q.get("under_ingest_paced"), q.get("local_paced")
    if u and pi:
        ratio = u["p99_us"] / max(pi["p99_us"], 1)
        add("3. Local query p99 under ingestion at %.0f ev/s (seen %.0f), paced load, ms" % (
            u["ingest_rate_target"], u["ingest_rate_seen"]), "%.2f (%.0f req/s)" % (u["p99_us"] / 1e3, u["rps"]),
            "idle, paced: %.2f (%.0f req/s)" % (pi["p99_us"] / 1e3, pi["rps"]), ratio, "<= 2x idle", ratio <= 2)
    u = q.get("under_ingest")
    if u and "local" in q:
        ratio = u["p99_us"] / max(q["local"]["p99_us"], 1)
        add("3. Local query p99 under ingestion at %.0f ev/s (seen %.0f), saturating load, ms" % (
            u["ingest_rate_target"], u["ingest_rate_seen"]), "%.2f (%.0f req/s)" % (u["p99_us"] / 1e3, u["rps"]),
            "idle, saturating: %.2f" % (q["local"]["p99_us"] / 1e3), ratio, "<= 2x idle", ratio <= 2)
    fr = r.get("freshness", {})
    if fr.get("p99_ms") is not None:
        add("4. Freshness produce -> visible, p50 / p99, ms", "%.0f / %.0f" % (fr["p50_ms"], fr["p99_ms"]),
            "2 x commit_interval + 50 = %d" % fr["target_ms"], fr["p99_ms"] / fr["target_ms"],
            "p99 <= %d ms" % fr["target_ms"], fr["p99_ms"] <= fr["target_ms"] and fr["misses"] == 0)
    fr = r.get("freshness_fetch10", {})
    if fr.get("p99_ms") is not None:
        add("4. Freshness with kafka.fetch.wait.max.ms=10, p50 / p99, ms", "%.0f / %.0f" % (fr["p50_ms"], fr["p99_ms"]),
            "2 x commit_interval + 50 = %d" % fr["target_ms"], fr["p99_ms"] / fr["target_ms"],
            "p99 <= %d ms" % fr["target_ms"], fr["p99_ms"] <= fr["target_ms"] and fr["misses"] == 0)
    rd = r.get("redis", {})
    if "ingest" in rd and p:
        ratio = p["pipeline_eps"] / rd["ingest"]["eps"]
        add("5. Ingest events/s vs Redis HINCRBY design", fmt(p["pipeline_eps"]),
            "Redis (pipelined HINCRBY): " + fmt(rd["ingest"]["eps"]), ratio, ">= 5x", ratio >= 5)
    if "query" in rd and "local" in q:
        rq = rd["query"]
        ratio = q["local"]["p99_us"] / 1e3 / max(rq["p99_ms"], 1e-6)
        add("5. Query p50 / p99 / p999 vs Redis HGETALL x30 + JSON, ms",
            "%.2f / %.2f / %.2f (%.0f req/s)" % (q["local"]["p50_us"] / 1e3, q["local"]["p99_us"] / 1e3,
                                                 q["local"]["p999_us"] / 1e3, q["local"]["rps"]),
            "Redis: %.2f / %.2f / %.2f (%.0f req/s)" % (rq["p50_ms"], rq["p99_ms"], rq["p999_ms"], rq["rps"]),
            ratio, "p99 <= Redis p99", ratio <= 1)
    s = r.get("state_size", {})
    if s:
        add("6. Disk bytes per user-day (compacted, LZ4; %.1f events/user-day)" % s["events_per_user_day"],
            fmt(s["bytes_per_user_day"], " B"), "encoded value %s B" % fmt(s["logical_value_bytes_per_user_day"]),
            s["bytes_per_user_day"] / max(s["logical_value_bytes_per_user_day"], 1), "(documented)", None)
        for w, b in s["projection"].items():
            add("6. Projected disk per worker, 2M profiles/day x 60 days, %s workers" % w, fmt(b / 2**30, " GiB"),
                "", None, "(documented)", None)
    for rec in r.get("recovery", []):
        asg = rec.get("assigned_secs")
        add("7. Recovery after SIGKILL, %s stored user-days: start -> ready, s" % fmt(rec["user_days"]),
            "%.2f" % rec["ready_secs"],
            "store open + listening %.2f, group rejoin (assigned) %s, ready %.2f; store %s MiB" % (
                rec["listening_secs"], "%.2f" % asg if asg is not None else "n/a", rec["ready_secs"],
                fmt(rec["store_bytes"] / 2**20)), None, "(documented)", None)
    b = r.get("backup")
    if b:
        add("7b. Backup of %s user-days (%s MB): MB/s, full backup vs cp -a" % (fmt(b["user_days"]),
                                                                             fmt(b["store_bytes"] / 1e6)),
            fmt(b["backup_mb_s"]), "cp -a %s MB/s; pairs %s" % (fmt(b["cp_mb_s"]), " ".join(
                "%.2f" % p["backup_vs_cp"] for p in b["pairs"])), b["backup_vs_cp_median"], "(documented)", None)
        add("7b. Restore of that backup: MB/s vs cp -a", fmt(b["restore_mb_s"]),
            "pairs %s" % " ".join("%.2f" % p["restore_vs_cp"] for p in b["pairs"]), b["restore_vs_cp_median"],
            "(documented)", None)
        inc = b["incremental"]
        add("7b. Incremental backup after 1 %% more user-days: s (MB added of %s MB)" % fmt(inc["size_bytes"] / 1e6),
            "%.2f" % inc["secs"], "%s MB added" % fmt(inc["added_bytes"] / 1e6), None, "(documented)", None)
    im = r.get("import")
    if im:
        add("7c. Import of %s archived events: events/s, plain file vs a worker's replay from the topic" %
            fmt(im["events"]), fmt(im["plain_eps"]),
            "replay %s ev/s; rounds %s" % (fmt(im["replay_eps"]), " ".join(
                "%.2f" % x["plain_vs_replay"] for x in im["rounds"])), im["plain_vs_replay_median"], ">= 0.8", im["plain_vs_replay_median"] >= 0.8)
        add("7c. Import of the same events gzipped: events/s vs the replay", fmt(im["gzip_eps"]),
            "rounds %s" % " ".join("%.2f" % x["gzip_vs_replay"] for x in im["rounds"]),
            im["gzip_vs_replay_median"], ">= 0.8", im["gzip_vs_replay_median"] >= 0.8)
    e = r.get("erase")
    if e and e.get("pairs"):
        med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
        add("10. DELETE /v1/profiles p50 / p99 (record acknowledged by Kafka), ms",
            "%.2f / %.2f" % (med([x["delete_p50_us"] for x in e["pairs"]]) / 1e3,
                             med([x["delete_p99_us"] for x in e["pairs"]]) / 1e3),
            "GET same worker %.2f / %.2f; pairs %s" % (
                med([x["get_p50_us"] for x in e["pairs"]]) / 1e3, med([x["get_p99_us"] for x in e["pairs"]]) / 1e3,
                " ".join("%.2f" % x["delete_vs_get_p50"] for x in e["pairs"])),
            e["delete_vs_get_p50_median"], "(documented)", None)
        a = e.get("applied", {})
        if a.get("applied_p50_ms") is not None and a.get("visible_p50_ms"):
            add("10. Erasure applied after DELETE p50 / p99, ms (%d misses)" % a["misses"],
                "%.0f / %.0f" % (a["applied_p50_ms"], a["applied_p99_ms"]),
                "event produced -> visible, interleaved: %.0f / %.0f" % (a["visible_p50_ms"], a["visible_p99_ms"]),
                a["applied_p50_ms"] / a["visible_p50_ms"], "(documented)", None)
    h = r.get("handoff", {})
    for rep in (0, 1):
        x = h.get("replicas%d" % rep)
        if not x or "error" in x:
            continue
        a = x.get("owned_restore") if rep == 0 else x.get("all_restore")
        what = ("%d owned partitions, fetched after the assignment" % a["partitions"] if rep == 0 else
                "%d partitions as replica copies, before the assignment" % a["partitions"]) if a else ""
        if a:
            add("8. Hand-off, replicas=%d: snapshot MB/s (%s; %s MB)" % (rep, what, "%.1f" % (a["bytes"] / 1e6)),
                "%.1f" % a["mb_per_s"], "apply alone: %.1f MB/s" % a["apply_mb_per_s"],
                a["mb_per_s"] / max(a["apply_mb_per_s"], 1e-9), "(documented)", None)
            add("8. Hand-off, replicas=%d: keys/s (%s user-days in %.2f s)" % (rep, fmt(a["records"]), a["wall_secs"]),
                fmt(a["keys_per_s"]), "apply alone: %s keys/s" % fmt(a["apply_keys_per_s"]),
                a["keys_per_s"] / max(a["apply_keys_per_s"], 1e-9), "(documented)", None)
        asg = x.get("assigned_secs")
        if rep == 0 and a and asg is not None:
            split = "listening %.2f, rebalance wait %.2f, restore %.2f (assigned -> last restored), ready %.2f" % (
                x["listening_secs"], asg - x["listening_secs"], a["last_restored_after_start"] - asg,
                x["ready_secs"])
        elif a and asg is not None:
            split = ("listening %.2f, replica copies complete %.2f, rebalance wait until assigned %.2f, ready %.2f "
                     "(promoted without a restore)" % (x["listening_secs"], a["last_restored_after_start"],
                                                      asg, x["ready_secs"]))
        else:
            split = "listening %.2f, assigned %s" % (x["listening_secs"], "%.2f" % asg if asg is not None else "n/a")
        add("8. Hand-off, replicas=%d: joining worker start -> all %d owned partitions ready, s" % (rep, x["owned"]),
            "%.2f" % x["ready_secs"], split, None, "(documented)", None)
    mm = r.get("memory", {})
    if "max_mib" in mm:
        b, c = mm["budget_mib"], mm["config"]
        per_event = round(b["batch"] * 2**20 / (2 * c["batch_max_events"]))  # bytes per event the budget allows
        budget = "budget %.0f MiB = cache %d + memtables 2x%d + batches 2x%dx%d B %.0f + librdkafka queue %.0f%s" % (
            b["total"], c["block_cache_mb"], c["write_buffer_mb"], c["batch_max_events"], per_event, b["batch"],
            b["librdkafka_queue"], " + day filters %d" % b["day_filters"] if "day_filters" in b else "")
        wmax = max(mm["max_mib"], mm.get("warm_max_mib") or 0)
        warm = ""
        if mm.get("warm_secs") is not None:
            warm = "; after a %.0f s warm-up (block cache %s; its max %.0f MiB)" % (
                mm["warm_secs"], "full" if mm.get("warm_cache_full") else "NOT full", mm.get("warm_max_mib") or 0)
        add("9. Worker RSS min / median / max, MiB (%.0f s, %.0f ev/s over 30 days + queries%s)" % (
            mm["secs"], mm["rate_seen"], warm), "%.0f / %.0f / %.0f" % (mm["min_mib"], mm["median_mib"], mm["max_mib"]),
            budget, wmax / b["total"], "max <= 1.5x budget", wmax <= 1.5 * b["total"])
        a = mm["at_mib"]
        g2 = mm["growth_mib_per_min"]
        add("9. Worker RSS at 25 / 50 / 75 / 100 % of the run, MiB; second-half growth, MiB/min",
            "%.0f / %.0f / %.0f / %.0f; %+.2f/min" % (a["25"], a["50"], a["75"], a["100"], g2 if g2 is not None else 0),
            "second half %.0f -> %.0f MiB (least-squares %+.2f MiB/min); idle after start %.0f MiB" % (
                mm["second_half_start_mib"] or 0, mm["second_half_end_mib"] or 0, mm["slope_mib_per_min"] or 0,
                mm["baseline_mib"] or 0),
            (g2 / mm["second_half_start_mib"] * 100) if g2 is not None and mm["second_half_start_mib"] else None,
            "bounded by config, stable: growth < 1 %/min", bool(mm["stable_ok"]) and wmax <= 1.5 * b["total"])
    return out


def mem_series_prose(mm):
    """One sentence on where the memory step's memory went over its window
    (from the gauges it recorded every 30 s), or "".  The first sample is
    skipped: it is taken as the warm-up's query clients stop."""
    ser = [x for x in mm.get("mem_series", []) if "heap_in_use" in x][1:]
    if len(ser) < 2 or mm.get("warm_secs") is None:
        return ""
    known = ("rocksdb_memtables", "rocksdb_block_cache", "day_filters", "batches", "dedup_index")
    rest = [x["heap_in_use"] - sum(x.get(k, 0) for k in known) for x in ser]
    parts = []
    for k, what in (("rocksdb_memtables", "memtables"), ("rocksdb_block_cache", "block cache"),
                    ("day_filters", "day filters"), ("dedup_index", "de-dup index"),
                    ("heap_free", "the allocator's free heap")):
        v = [x[k] for x in ser if k in x]
        if v:
            parts.append("%s %.1f -> %.1f MiB (range %.1f-%.1f)" % (what, v[0], v[-1], min(v), max(v)))
    parts.append("the rest of the heap in use (no gauge of its own: RocksDB internals, %slibrdkafka's "
                 "buffers, query buffers) %.1f -> %.1f MiB" % (
                     "" if any("dedup_index" in x for x in ser) else "de-dup index, ", rest[0], rest[-1]))
    return (" In this run's window (30 s gauges, from t = %.0f s to the end): " % ser[0]["t"] +
            "; ".join(parts) + ".")


def query_cpu_rows(r):
    q = r.get("queries") or {}
    out = []
    for key, name in (("fixed", "/healthz"), ("local", "local, saturating"), ("local_paced", "local, paced"),
                      ("under_ingest_paced", "under ingestion, paced"), ("under_ingest", "under ingestion, saturating")):
        x = q.get(key)
        if not isinstance(x, dict) or "cpu" not in x:
            continue
        c, th = x["cpu"], x["cpu"].get("worker_threads", {})

        def grp(prefix):
            return sum(v for k, v in th.items() if k.startswith(prefix))
        http = grp("civetweb")
        per_q = http / x["rps"] * 1e6 if x.get("rps") else None
        total = sum(v for k, v in c.items() if k in ("worker", "producer", "broker", "wrk"))
        out.append("| %s | %s | %.2f | %.2f | %s | %.2f | %.2f | %.2f | %.2f | %s | %.2f | %.2f | %.2f |" % (
            name, fmt(x["rps"]), x["p99_us"] / 1e3, http, fmt(per_q), th.get("profiled", 0), th.get("pd-commit", 0),
            grp("rocksdb"), grp("rdk"), "%.2f" % c["producer"] if "producer" in c else "-", c.get("broker", 0),
            c.get("wrk", 0), total))
    return out


def is_full_run(r):
    """A full-size run of every step (results of bench.py, which did not
    record its steps, count as one unless QUICK)."""
    return not r.get("quick") and r.get("all_steps", "steps" not in r)


def reproduce(r):
    """How to repeat the run r came from."""
    cmd = r.get("command")
    if cmd in (None, "bench/measure.py", "bench/measure.py --quick"):
        return "`make bench%s` (measure, then report)" % (" QUICK=1" if r.get("quick") else "")
    return "`%s`, then `bench/report.py --results FILE`" % cmd


def sizes_line(r):
    s = r.get("sizes", {})
    if not s:
        return None
    return ("Sizes: processing %s events (%s users); end to end %s events; %s s per query run, %s connections; "
            "%s freshness samples; recovery %s user-days; hand-off %s user-days; memory window %s s." % (
                fmt(s.get("proc_n")), fmt(s.get("users")), fmt(s.get("e2e_n")), s.get("query_secs"), s.get("conns"),
                s.get("fresh_n"), " and ".join(fmt(n) for n in s.get("recovery", [])), fmt(s.get("handoff")),
                fmt(r.get("memory", {}).get("secs", s.get("mem_secs")))))


def write_markdown(r, plots, path):
    """bench-results.md: only what results r hold, nothing written by hand."""
    m = r.get("machine", {})
    run = "a %s run" % ("QUICK" if r.get("quick") else "full-size")
    if r.get("commit"):
        run += " of commit %s" % r["commit"]
    L = ["# Benchmark results\n"]
    L.append("Generated by `bench/report.py` from the results of %s, %s (%.0f s); do not edit by hand. "
             "How each figure is measured, what it means and the history of the work on it: "
             "[BENCHMARKS.md](BENCHMARKS.md). Raw figures: `build/bench/results.json`.\n" % (
                 run, m.get("date", "date unknown"), r.get("elapsed_secs", 0)))
    L.append("Reproduce: %s.\n" % reproduce(r))
    if r.get("steps") and not r.get("all_steps"):
        L.append("Steps run: %s (a partial run).\n" % ", ".join(r["steps"]))
    sl = sizes_line(r)
    if sl:
        L.append(sl + (" (QUICK: small sizes, for checking the harness, not for the figures.)" if r.get("quick")
                       else "") + "\n")
    if r.get("worker_args"):
        L.append("Extra worker settings: `%s`.\n" % " ".join(r["worker_args"]))
    L.append("## Machine\n")
    if m:
        L.append("- CPU: %s, %d logical CPUs (`nproc`)" % (m["cpu"], m["nproc"]))
        L.append("- Memory: %.1f GiB; kernel %s; %s" % (m["mem_gib"], m["kernel"], m["os"]))
        L.append("- Libraries: " + ", ".join("%s %s" % kv for kv in sorted(m["packages"].items())))
    L.append("- Everything (broker, workers, load generators, Redis) runs on this one machine over 127.0.0.1, "
             "so load generators and servers share the CPUs. Load average when the run started: %s "
             "(anything else running skews the figures)\n" % " ".join("%.2f" % x for x in r.get("loadavg_start", [])))
    L.append("## Results\n")
    L.append("| Measurement | profiled | Reference | Ratio | Target | Met |")
    L.append("|---|---|---|---|---|---|")
    for row in rows(r):
        L.append("| " + " | ".join(str(c) for c in row) + " |")
    if r.get("errors"):
        L.append("\nSteps that failed in this run: " + "; ".join("%s: %s" % kv for kv in r["errors"].items()))
    q = r.get("queries", {})
    ans = ["%s: %s" % (k, ", ".join("%s x%d" % kv for kv in sorted(v["statuses"].items())))
           for k, v in q.items() if isinstance(v, dict) and v.get("statuses")]
    if ans:
        L.append("\nAnswers per query run (route/status x count, from the worker's /metrics): " + "; ".join(ans) + ".")
    if q.get("error"):
        L.append("\nQueries were not measured: %s" % q["error"])
    L.append("")
    for pl in plots:
        L.append("![%s](%s)\n" % (pl, pl))
    prose = mem_series_prose(r.get("memory", {}))
    if prose:
        L.append("## Memory by gauge\n")
        L.append(prose.strip() + "\n")
    cpu_rows = query_cpu_rows(r)
    if cpu_rows:
        L.append("## Where the CPU goes during the query runs\n")
        L.append("Cores used on average over each wrk run of row 3 (columns: [BENCHMARKS.md](BENCHMARKS.md), "
                 "\"How each figure is measured\").\n")
        L.append("| Run | req/s | p99 ms | HTTP | HTTP us/query | ingest | pd-commit | rocksdb | rdk | producer | "
                 "broker | wrk | total |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        L.extend(cpu_rows)
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


def main(argv):
    ap = argparse.ArgumentParser(description="Write bench-results.md and the plots from a results file.")
    ap.add_argument("--results", default=os.environ.get("BENCH_RESULTS") or
                    os.path.join(ROOT, "build", "bench", "results.json"))
    ap.add_argument("--out-dir")
    a = ap.parse_args(argv)
    try:
        with open(a.results) as f:
            r = json.load(f)
    except (OSError, ValueError) as e:
        print("report: cannot read %s: %s (bench/measure.py writes it)" % (a.results, e), file=sys.stderr)
        return 1
    if r.get("schema", 1) > 1:
        print("report: %s has schema %s; this report reads 1" % (a.results, r["schema"]), file=sys.stderr)
        return 1
    out = a.out_dir or (os.path.join(ROOT, "docs") if is_full_run(r) else os.path.join(ROOT, "build", "bench",
                                                                                         "report"))
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="pd-bench-report-")
    try:
        plots = write_plots(r, work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_markdown(r, plots, os.path.join(out, RESULTS_MD))
    for row in rows(r):
        print("  " + " | ".join(str(c) for c in row))
    print("report: wrote %s and %d plot(s) from %s" % (os.path.join(os.path.relpath(out, ROOT), RESULTS_MD),
                                                        len(plots), a.results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
