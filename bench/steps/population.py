"""Step 3c (issue 20): the population prior.

- Queries: GET /v1/population?days=30 (the cached prior rendered like a
  profile) against GET /v1/profiles/{u}?days=30 on the end-to-end step's
  worker, saturating wrk runs in interleaved (profile, population) pairs:
  requests/s, p50/p99 and worker CPU per request of each, and their ratio.
- Ingest cost of maintaining the population profiles: the replay pipeline
  of bench_process (step 1's event file) with and without them
  (--population 0), in interleaved pairs, events/s of each and the median
  ratio, and the committer thread's CPU of each (the cost itself, which
  the rate shows only when the machine has no spare core).
Results: ctx.r["population"].
"""
import json
import os
import shutil

from benchlib import PARTS, log, run


def run_step(ctx):
    log("3c/9 population: GET /v1/population vs the profile query; ingest cost")
    res = {"queries": {"pairs": [], "profile_query": "days=30", "population_query": "/v1/population?days=30"},
           "ingest": {"pairs": []}}
    w = ctx.ensure_w1()
    ufile = ctx.users_file()
    npairs = max(ctx.sizes["pairs"], 3)
    secs = 4
    for i in range(npairs):
        runs = {}
        for kind, kw in (("profile", {"users": ufile, "query": "days=30"}),
                         ("population", {"path": "/v1/population?days=30"})):
            r = ctx.wrk(w.url, secs, name="wrk-pop-%s-%d" % (kind, i), watch={"worker": w.pid}, **kw)
            runs[kind] = {"rps": r["rps"], "p50_us": r.get("p50_us"), "p99_us": r.get("p99_us"),
                          "errors": r["errors"], "statuses": r.get("statuses"),
                          "worker_us_per_req": 1e6 * r["cpu"].get("worker", 0) / r["rps"] if r["rps"] else None}
        runs["rps_ratio"] = runs["population"]["rps"] / runs["profile"]["rps"] if runs["profile"]["rps"] else None
        res["queries"]["pairs"].append(runs)
        log("   pair %d: profile %.0f req/s p99 %.2f ms, population %.0f req/s p99 %.2f ms" % (
            i, runs["profile"]["rps"], (runs["profile"]["p99_us"] or 0) / 1e3, runs["population"]["rps"],
            (runs["population"]["p99_us"] or 0) / 1e3))
    ratios = sorted(p["rps_ratio"] for p in res["queries"]["pairs"] if p["rps_ratio"])
    res["queries"]["median_rps_ratio"] = ratios[len(ratios) // 2] if ratios else None
    st = None
    try:
        import urllib.request
        with urllib.request.urlopen(w.url + "/v1/population?days=30", timeout=5) as f:
            body = f.read()
        st = json.loads(body)
        res["queries"]["population_body_bytes"] = len(body)
        res["queries"]["prior"] = st.get("prior")
    except Exception as e:  # noqa: BLE001 - a figure, not a verdict
        res["queries"]["body_error"] = str(e)
    # ingest cost: interleaved pairs of the replay pipeline
    evfile = ctx.ensure_proc_file()
    for i in range(max(ctx.sizes["pairs"], 3)):
        pair = {}
        for kind, flag in (("with", "1"), ("without", "0")):
            d = os.path.join(ctx.work, "pop-proc-%s" % kind)
            shutil.rmtree(d, ignore_errors=True)
            out = run([ctx.tool("bench_process"), "process", "--file", evfile, "--dir", d, "--partitions",
                       str(PARTS), "--batch", "20000", "--pipeline-only", "1", "--population", flag], timeout=900)
            p = json.loads(out)
            pair[kind] = {"pipeline_eps": p["pipeline_eps"], "flush_secs": p["flush_secs"],
                          "record_secs": p["record_secs"], "pipeline_cpu_secs": p.get("pipeline_cpu_secs"),
                          "committer_cpu_secs": p.get("committer_cpu_secs")}
            shutil.rmtree(d, ignore_errors=True)
        pair["eps_ratio"] = pair["with"]["pipeline_eps"] / pair["without"]["pipeline_eps"]
        if pair["with"]["committer_cpu_secs"] and pair["without"]["committer_cpu_secs"]:
            pair["committer_cpu_ratio"] = pair["with"]["committer_cpu_secs"] / pair["without"]["committer_cpu_secs"]
        res["ingest"]["pairs"].append(pair)
        log("   ingest pair %d: with population %.0f ev/s, without %.0f ev/s (x%.3f), committer CPU x%.3f" % (
            i, pair["with"]["pipeline_eps"], pair["without"]["pipeline_eps"], pair["eps_ratio"],
            pair.get("committer_cpu_ratio") or 0))
    r = sorted(p["eps_ratio"] for p in res["ingest"]["pairs"])
    res["ingest"]["median_eps_ratio"] = r[len(r) // 2]
    c = sorted(p["committer_cpu_ratio"] for p in res["ingest"]["pairs"] if p.get("committer_cpu_ratio"))
    res["ingest"]["median_committer_cpu_ratio"] = c[len(c) // 2] if c else None
    ctx.r["population"] = res
