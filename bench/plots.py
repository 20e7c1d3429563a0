"""plots.py -- the gnuplot plots bench/report.py draws from results.json.

bench_throughput.png (events/s and requests/s of every step, one bar each),
bench_latency.png (wrk's and bench_redis's latency distributions),
bench_handoff.png (the joining worker's per-partition restore timeline) and
bench_rss.png (the memory step's VmRSS over time, with its budget). Each is
drawn only when the results hold its data and gnuplot is installed; data
files go to a scratch directory the caller owns and removes.
"""
import os
import shutil
import subprocess


def gnuplot(script):
    """Runs a gnuplot script; True when it succeeded."""
    return subprocess.run(["gnuplot"], input=script.encode(), capture_output=True, timeout=60).returncode == 0


def write_plots(r, work, out_dir):
    """Every plot results r has data for, into out_dir; [file names made]."""
    if not shutil.which("gnuplot"):
        return []
    made = []
    # throughput bars
    bars = []
    p, e, rd = r.get("processing", {}), r.get("e2e", {}), r.get("redis", {})
    if p:
        bars += [("cJSON parse", p["cjson_eps"]), ("pipeline (replay)", p["pipeline_eps"])]
    if "ingest" in rd:
        bars.append(("Redis HINCRBY", rd["ingest"]["eps"]))
    if "worker_eps" in e:
        bars += [("raw consume", e["raw"]["eps"]), ("worker e2e", e["worker_eps"])]
    q = r.get("queries", {})
    for k, label in (("fixed", "q /healthz"), ("local", "q local"), ("under_ingest", "q local+ingest"),
                     ("forwarded", "q forwarded")):
        if "rps" in q.get(k, {}):
            bars.append((label, q[k]["rps"]))
    if "query" in rd:
        bars.append(("q Redis", rd["query"]["rps"]))
    if bars:
        dat = os.path.join(work, "tp.dat")
        with open(dat, "w") as f:
            for i, (n, v) in enumerate(bars):
                f.write('%d "%s" %f\n' % (i, n, v / 1000))
        png = os.path.join(out_dir, "bench_throughput.png")
        script = """set terminal pngcairo size 1000,500 noenhanced
set output '%s'
set title 'Throughput (thousand events/s or requests/s), one run'
set style fill solid 0.8
set boxwidth 0.7
set grid ytics
set yrange [0:*]
set xtics rotate by -30
unset key
plot '%s' using 1:3:xtic(2) with boxes lc rgb '#4477aa', '' using 1:3:(sprintf('%%.1f',$3)) with labels offset 0,0.8
""" % (png, dat)
        if gnuplot(script):
            made.append("bench_throughput.png")
    # latency distributions
    series = []
    for k, label in (("fixed", "/healthz"), ("local", "local"), ("under_ingest", "local + ingestion"),
                     ("local_paced", "local, paced"), ("under_ingest_paced", "local + ingestion, paced"),
                     ("forwarded", "forwarded")):
        if "dist" in q.get(k, {}):
            series.append((label, [(a, b / 1000) for a, b in q[k]["dist"]]))
    if "dist" in rd.get("query", {}):
        series.append(("Redis HGETALL x30", [(a, b / 1000) for a, b in rd["query"]["dist"]]))
    if series:
        files = []
        for i, (label, pts) in enumerate(series):
            fn = os.path.join(work, "lat%d.dat" % i)
            with open(fn, "w") as f:
                for a, b in pts:
                    if a < 100:
                        f.write("%f %f\n" % (1 / (1 - a / 100), max(b, 0.001)))
            files.append((fn, label))
        png = os.path.join(out_dir, "bench_latency.png")
        plots = ", ".join("'%s' using 1:2 with linespoints title '%s'" % (fn, label) for fn, label in files)
        script = """set terminal pngcairo size 1000,500 noenhanced
set output '%s'
set title 'Query latency distribution (wrk / bench_redis, %d connections)'
set logscale xy
set xlabel 'percentile'
set ylabel 'latency (ms)'
set xtics ('0' 1, '50' 2, '90' 10, '99' 100, '99.9' 1000, '99.99' 10000)
set grid
set key top left
plot %s
""" % (png, r.get("sizes", {}).get("conns", 8), plots)
        if gnuplot(script):
            made.append("bench_latency.png")
    hp = write_handoff_plot(r, work, out_dir)
    if hp:
        made.append(hp)
    rp = write_rss_plot(r, work, out_dir)
    if rp:
        made.append(rp)
    return made


def write_rss_plot(r, work, out_dir):
    """bench_rss.png: the memory step's worker VmRSS over time, with the
    documented budget and the 1.5x budget limit."""
    mm = r.get("memory", {})
    if not mm.get("samples"):
        return None
    fn = os.path.join(work, "rss.dat")
    with open(fn, "w") as f:
        for t, v in mm.get("warm_samples", []) + mm["samples"]:
            f.write("%f %f\n" % (t, v))
    t_first = mm["warm_samples"][0][0] if mm.get("warm_samples") else 0
    b = mm["budget_mib"]["total"]
    png = os.path.join(out_dir, "bench_rss.png")
    script = """set terminal pngcairo size 1000,450 noenhanced
set output '%s'
set title 'Worker RSS, %.0f ev/s into 30 day families + queries (cache %d MiB, write buffer %d MiB, batch %d)'
set xlabel 'seconds since the measured window started (before 0: warm-up)'
set ylabel 'VmRSS (MiB)'
set xrange [%f:%f]
set yrange [0:%f]
set grid
set key bottom right
plot '%s' using 1:2 with lines lw 2 lc rgb '#4477aa' title 'VmRSS (1 s samples)', %f with lines dt 2 lc rgb '#228833' title 'documented budget %.0f MiB', %f with lines dt 3 lc rgb '#cc3311' title '1.5 x budget'
""" % (png, mm["rate_seen"], mm["config"]["block_cache_mb"], mm["config"]["write_buffer_mb"],
       mm["config"]["batch_max_events"], t_first, mm["samples"][-1][0], max(1.6 * b, mm["max_mib"] * 1.1), fn, b, b,
       1.5 * b)
    return "bench_rss.png" if gnuplot(script) else None


def write_handoff_plot(r, work, out_dir):
    """bench_handoff.png: per-partition restore timeline of the joining
    worker (fetch, wait for the writer loop, apply), seconds since its start,
    with its assignment and ready times; one panel per replicas setting."""
    h = r.get("handoff", {})
    panels = []
    for rep in (0, 1):
        x = h.get("replicas%d" % rep) or {}
        parts, a = x.get("partitions"), x.get("all_restore")
        if not parts or not a:
            continue
        spawn = min(p["t_start"] for p in parts) - a["first_fetch_after_start"]
        fn = os.path.join(work, "hoff%d.dat" % rep)
        with open(fn, "w") as f:
            for i, p in enumerate(sorted(parts, key=lambda p: p["t_start"])):
                t0 = p["t_start"] - spawn
                t3 = p["t_done"] - spawn
                t1 = t0 + p["fetch_secs"]
                t2 = max(t1, t3 - p["apply_secs"])
                f.write("%d %f %f %f %f %d\n" % (i, t0, t1, t2, t3, 1 if p["owned"] else 0))
        panels.append((rep, fn, x.get("assigned_secs"), x.get("ready_secs"), len(parts)))
    if not panels:
        return None
    png = os.path.join(out_dir, "bench_handoff.png")
    xmax = max(max(pn[3] or 0, pn[2] or 0) for pn in panels) * 1.1 + 2.5
    script = ["set terminal pngcairo size 1000,%d noenhanced" % (330 * len(panels)),
              "set output '%s'" % png, "set multiplot layout %d,1" % len(panels)]
    for rep, fn, asg, rdy, n in panels:
        script += ["set title 'Hand-off to a joining worker, replicas=%d: per partition fetch (blue), "
                   "wait for the writer loop (grey), apply (red)'" % rep,
                   "set xrange [0:%f]" % xmax, "set yrange [-1:%d]" % n, "set ylabel 'partition (by start)'",
                   "set xlabel 'seconds since the joining worker started'", "set grid xtics", "unset key", "unset arrow"]
        for t, label, col, y in ((asg, "assigned", "#228833", 0.93), (rdy, "ready", "#000000", 0.8)):
            if t is not None:
                script.append("set arrow from %f,graph 0 to %f,graph 1 nohead lw 2 lc rgb '%s'" % (t, t, col))
                script.append("set label '%s %.2fs' at %f,graph %f left offset 0.5,0 tc rgb '%s' front"
                              % (label, t, t, y, col))
        script.append("plot '%s' using 2:1:($3-$2):(0) with vectors nohead lw 3 lc rgb '#4477aa', "
                      "'' using 3:1:($4-$3):(0) with vectors nohead lw 3 lc rgb '#bbbbbb', "
                      "'' using 4:1:($5-$4):(0) with vectors nohead lw 3 lc rgb '#cc3311'" % fn)
        script.append("unset label")
    script.append("unset multiplot")
    return "bench_handoff.png" if gnuplot("\n".join(script)) else None
