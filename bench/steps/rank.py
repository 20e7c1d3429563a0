"""Step 3c: ranking (issue 20) next to the plain profile query.

Saturating wrk runs against the end-to-end worker, on the same users, in
interleaved triples so that a noisy neighbour moves them alike:
  plain    GET /v1/profiles/<u>?days=30
  rank100  POST /v1/profiles/<u>/rank, 100 candidates, every dimension, days=30
  rank1000 the same with 1,000 candidates
Per run: requests/s, p50/p99 and worker CPU per request (core-seconds /
requests); items/s = requests/s x candidates. Verdict: the median of the
pairs' rank100/plain throughput ratio (target >= 0.3, issue 20).

Light load: plain and rank100 requests at a fixed 100 req/s for 10 s
each, interleaved twice; p50/p90/p99/max latency as the client sees it
(issue 20's "p99 <= 2 ms locally" is about this, not about the saturating
runs, whose p99 is mostly queueing). Two clients, one after the other in
each round: bench_lat (bench/bench_lat.c: C, open loop, one keep-alive
connection, latency from the due time and from the send; res["light_c"])
and, for continuity with the figures of docs/BENCHMARKS.md measured
before it, the Python http.client loop below (res["light"]), whose own
latency and pauses are in its figures. Both draw the users of a 10 s run
from the same seeded Random, so they send the same users in the same order.

Reference (b), what a client does without the endpoint: one Python
client fetches the profile (GET ?days=30, keep-alive) and scores the same
100 candidates from it itself (the model of docs/scoring.md against a
uniform prior, as the worker does without a population prior), one
request after the other: requests/s and the client's CPU per request.

The prior: whatever the worker has (the answer's "prior" is recorded); with
the population stub there is none, so the population half of the model
costs nothing here. Results: ctx.r["rank"].
"""
import http.client
import json
import math
import os
import random
import subprocess
import time
import urllib.parse

from benchlib import ROOT, http_get, log, run


def candidates(ctx, n, seed):
    """n distinct items from generated events, as rank candidates."""
    text = run([ctx.bin("profilectl"), "generate", str(n * 3), "--users", "50", "--days", "2", "--seed", str(seed)],
               timeout=60)
    out, seen = [], set()
    for line in text.splitlines():
        it = json.loads(line).get("item") or {}
        if it.get("id") and it["id"] not in seen:
            seen.add(it["id"])
            out.append({"id": it["id"], "item": {k: v for k, v in it.items() if k != "id"}})
        if len(out) == n:
            break
    return out


def client_side(url, users, items, secs):
    """Reference (b): fetch the profile, score in Python (uniform prior)."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    rnd = random.Random(1)
    n, t0, c0 = 0, time.monotonic(), time.process_time()
    while time.monotonic() - t0 < secs:
        user = users[rnd.randrange(len(users))]
        conn.request("GET", "/v1/profiles/%s?days=30" % urllib.parse.quote(user, safe=""))
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            continue
        prof = json.loads(body)["dimensions"]
        scores = []
        for it in items:
            s = 0.0
            for name, d in prof.items():
                v = it["item"].get(name)
                if v is None:
                    continue
                if d["type"] == "categorical":
                    Nu, K = d["total"], 1
                    v = str(v).lower() if isinstance(v, bool) else str(v)
                    nu = d["counts"].get(v, 0)
                else:
                    hist = d["histogram"]
                    Nu, K = d["count"], len(hist)
                    k = next((i for i, b in enumerate(hist) if b["le"] == "+Inf" or v <= b["le"]), len(hist) - 1)
                    nu = hist[k]["count"]
                pp = 1.0 / K
                if Nu > 0:
                    s += math.log((nu + 10 * pp) / (Nu + 10) / pp)
            scores.append(s)
        sorted(range(len(items)), key=lambda i: -scores[i])
        n += 1
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    conn.close()
    return {"rps": n / wall, "client_cores": cpu / wall, "client_us_per_req": 1e6 * cpu / n if n else None,
            "requests": n}


def light_load(url, users, body, rate, secs):
    """Latency at a light load: one client, one keep-alive connection,
    requests sent at a fixed rate (req/s; a late request goes at once,
    never in a burst), plain GET ?days=30 (body None) or the rank POST.
    Latency = send to the last byte of the answer, as the client sees it
    (Python's http.client included: the same for both kinds)."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    rnd = random.Random(2)
    lat, errors = [], 0
    t0 = time.monotonic()
    nxt = t0
    while True:
        now = time.monotonic()
        if now - t0 >= secs:
            break
        if nxt > now:
            time.sleep(nxt - now)
        nxt = max(nxt + 1.0 / rate, time.monotonic())
        user = urllib.parse.quote(users[rnd.randrange(len(users))], safe="")
        s = time.perf_counter()
        if body is None:
            conn.request("GET", "/v1/profiles/%s?days=30" % user)
        else:
            conn.request("POST", "/v1/profiles/%s/rank" % user, body=body,
                         headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        e = time.perf_counter()
        if r.status not in (200, 404):
            errors += 1
            continue
        lat.append(e - s)
    conn.close()
    lat.sort()

    def pct(q):
        return 1e6 * lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None
    return {"requests": len(lat), "errors": errors, "rate": rate, "secs": secs, "p50_us": pct(0.5),
            "p90_us": pct(0.9), "p99_us": pct(0.99), "max_us": 1e6 * lat[-1] if lat else None}


def lat_requests(path, users, body_path, n, seed):
    """bench_lat's request list: n lines, users drawn by a seeded
    Random (the same sequence light_load draws with the same seed);
    plain GET ?days=30 (body_path None) or the rank POST with the body."""
    rnd = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            u = urllib.parse.quote(users[rnd.randrange(len(users))], safe="")
            if body_path is None:
                f.write("GET /v1/profiles/%s?days=30\n" % u)
            else:
                f.write("POST /v1/profiles/%s/rank %s\n" % (u, body_path))
    return path


def parse_lat(out):
    """bench_lat's JSON line -> the light-load record: counts, and the
    percentiles from the due time (p50_us ..., the figures quoted) and
    from the actual send (send_p50_us ...). Raises ValueError when the
    output holds no such line."""
    lines = [l for l in out.splitlines() if l.startswith("{")]
    if len(lines) != 1:
        raise ValueError("bench_lat printed %d JSON lines, want 1: %r" % (len(lines), out[-300:]))
    j = json.loads(lines[0])
    r = {"client": "bench_lat", "requests": j["ok"], "errors": j["non200"] + j["errors"] + j["unsent"],
         "rate": j["rate"], "secs": j["secs"], "sent": j["sent"], "late": j["late"], "lag_max_us": j["lag_max_us"]}
    for k in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us"):
        r[k] = j["sched"][k]
        r["send_" + k] = j["send"][k]
    if j.get("first_error"):
        r["first_error"] = j["first_error"]
    return r


def lat_tool(ctx):
    """bench_lat from the tools directory, else this tree's build (a client
    only: an older tree measured with --bin-dir may not have it)."""
    for path in (ctx.tool("bench_lat"), os.path.join(ROOT, "build", "bench", "bench_lat")):
        if os.access(path, os.X_OK):
            return path
    raise RuntimeError("bench_lat not built: make bench-bins")


def light_load_c(ctx, url, users, body_path, rate, secs, name):
    """The light-load run with bench_lat (see the top): one keep-alive
    connection, open loop, the requests of lat_requests."""
    lst = lat_requests(os.path.join(ctx.work, name + ".txt"), users, body_path, int(rate * secs), 2)
    port = urllib.parse.urlparse(url).port
    p = subprocess.run([lat_tool(ctx), "--port", str(port), "--rate", str(rate), "--secs", str(secs),
                        "--timeout-ms", "5000", lst], capture_output=True, timeout=secs + 60)
    if p.returncode not in (0, 1):  # 1: some request not answered 200, reported in the line
        raise RuntimeError("bench_lat exited %d: %s" % (p.returncode, p.stderr.decode(errors="replace")[-1000:]))
    return parse_lat(p.stdout.decode())


def run_step(ctx):
    log("3c/9 rank (100 and 1,000 candidates) vs plain query")
    w = ctx.ensure_w1()
    ufile = ctx.users_file()
    res = {"pairs": [], "secs": 4}
    bodies = {}
    for n in (100, 1000):
        items = candidates(ctx, n, 99)
        path = os.path.join(ctx.work, "rank%d.json" % n)
        with open(path, "w") as f:
            json.dump({"items": items, "days": 30}, f)
        bodies[n] = (path, items)
    # one probe: the answer's shape and its prior
    u = urllib.parse.urlparse(w.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("POST", "/v1/profiles/%s/rank" % urllib.parse.quote(ctx.users[0], safe=""),
                 body=open(bodies[100][0], "rb").read(), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    probe = r.read()
    conn.close()
    if r.status != 200:
        res["error"] = "POST rank answered %d: %s" % (r.status, probe[:200].decode(errors="replace"))
        ctx.r["rank"] = res
        raise RuntimeError(res["error"])
    res["prior"] = json.loads(probe).get("prior")
    res["probe_bytes"] = len(probe)
    npairs = max(ctx.sizes["pairs"], 3)
    for i in range(npairs):
        runs = {}
        for kind, body in (("plain", None), ("rank100", bodies[100][0]), ("rank1000", bodies[1000][0])):
            rr = ctx.wrk(w.url, res["secs"], users=ufile, name="wrk-%s-%d" % (kind, i), watch={"worker": w.pid},
                         query="days=30", body_file=body)
            runs[kind] = {"rps": rr["rps"], "p50_us": rr.get("p50_us"), "p99_us": rr.get("p99_us"),
                          "errors": rr["errors"], "statuses": rr.get("statuses"),
                          "worker_cores": rr["cpu"].get("worker"),
                          "worker_us_per_req": 1e6 * rr["cpu"].get("worker", 0) / rr["rps"] if rr["rps"] else None}
        runs["rank100"]["items_per_s"] = runs["rank100"]["rps"] * 100
        runs["rank1000"]["items_per_s"] = runs["rank1000"]["rps"] * 1000
        runs["rps_ratio_rank100"] = runs["rank100"]["rps"] / runs["plain"]["rps"]
        runs["rps_ratio_rank1000"] = runs["rank1000"]["rps"] / runs["plain"]["rps"]
        res["pairs"].append(runs)
        log("   %d: plain %.0f req/s (%.0f us/req), rank100 %.0f req/s (%.0f us/req, p99 %.2f ms, x%.2f), "
            "rank1000 %.0f req/s (%.0f us/req, p99 %.2f ms)" % (
                i, runs["plain"]["rps"], runs["plain"]["worker_us_per_req"], runs["rank100"]["rps"],
                runs["rank100"]["worker_us_per_req"], runs["rank100"]["p99_us"] / 1e3, runs["rps_ratio_rank100"],
                runs["rank1000"]["rps"], runs["rank1000"]["worker_us_per_req"], runs["rank1000"]["p99_us"] / 1e3))
    # light load: 100 req/s on one connection, plain and rank100 interleaved,
    # bench_lat (C, open loop) then the Python loop, in each round
    res["light"], res["light_c"] = [], []
    body100 = open(bodies[100][0], "rb").read()

    def ms(v):
        return "%.2f ms" % (v / 1e3) if v is not None else "-"
    for i in range(2):
        for kind, body in (("plain", None), ("rank100", body100)):
            lc = light_load_c(ctx, w.url, ctx.users, None if body is None else bodies[100][0], 100, 10,
                              "lat-%s-%d" % (kind, i))
            lc["kind"] = kind
            res["light_c"].append(lc)
            log("   light load %s (100 req/s, bench_lat): p50 %s, p90 %s, p99 %s, p99.9 %s, max %s (%d ok, %d "
                "errors, %d late; from the send: p50 %s, p99 %s)" % (
                    kind, ms(lc["p50_us"]), ms(lc["p90_us"]), ms(lc["p99_us"]), ms(lc["p999_us"]),
                    ms(lc["max_us"]), lc["requests"], lc["errors"], lc["late"], ms(lc["send_p50_us"]),
                    ms(lc["send_p99_us"])))
            if lc.get("first_error"):
                log("     bench_lat: %s" % lc["first_error"])
        for kind, body in (("plain", None), ("rank100", body100)):
            lr = light_load(w.url, ctx.users, body, 100, 10)
            lr["kind"] = kind
            res["light"].append(lr)
            log("   light load %s (100 req/s, Python): p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms (%d req)" % (
                kind, lr["p50_us"] / 1e3, lr["p90_us"] / 1e3, lr["p99_us"] / 1e3, lr["max_us"] / 1e3,
                lr["requests"]))
    ratios = sorted(p["rps_ratio_rank100"] for p in res["pairs"])
    res["median_rps_ratio_rank100"] = ratios[len(ratios) // 2]
    res["client_side_100"] = client_side(w.url, ctx.users, bodies[100][1], res["secs"])
    log("   client-side reference (fetch + Python scoring, 1 client): %.0f req/s, %.0f us client CPU/req" % (
        res["client_side_100"]["rps"], res["client_side_100"]["client_us_per_req"] or 0))
    ctx.r["rank"] = res
