"""Step: erasure (issue 21): DELETE /v1/profiles/{user} next to references
measured in the same run, on the end-to-end worker (ctx.w1).

  request      interleaved pairs of sequential runs on one keep-alive
               connection: GET /v1/profiles/{u}?days=30 of stored users (a
               local read, the reference) and DELETE /v1/profiles/{u} of
               other stored users (appends an erasure record and waits for
               Kafka's acknowledgement): latency p50/p99 of each, ratio of
               the medians per pair.
  applied      interleaved, one at a time: an event of a new user produced
               -> its profile visible (the freshness path, the reference)
               and a DELETE -> GET /v1/erasures?partition&offset says
               applied (polled every 2 ms, 5 s at most).

Runs last: it erases users of the end-to-end data (never the first 10 %,
which the query steps use). Results: ctx.r["erase"].
"""
import http.client
import json
import subprocess
import time
import urllib.parse

from benchlib import http_get, log


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * p)))] if xs else None


def timed_requests(conn, method, paths):
    lat = []
    for path in paths:
        t0 = time.monotonic()
        conn.request(method, path)
        r = conn.getresponse()
        body = r.read()
        if r.status not in (200, 202):
            raise RuntimeError("%s %s: %d %s" % (method, path, r.status, body[:200]))
        lat.append((time.monotonic() - t0) * 1e6)
    return lat


def quote(u):
    return urllib.parse.quote(u, safe="")


def run_step(ctx):
    log("erase: DELETE /v1/profiles vs GET, erasure applied vs event visible")
    w = ctx.ensure_w1()
    ctx.users_file()
    users = ctx.users
    n = 100 if ctx.sizes.get("pairs", 0) >= 3 else 40
    pairs = max(ctx.sizes.get("pairs", 0), 2)
    fresh_n = min(ctx.sizes.get("fresh_n", 20), 40)
    victims = users[len(users) // 10:]  # the query steps use the first ones
    need = pairs * n + fresh_n
    if len(victims) < need:
        raise RuntimeError("only %d users to erase, need %d" % (len(victims), need))
    readers = users[:n]
    host = urllib.parse.urlparse(w.url)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=15)
    res = {"requests_per_run": n, "pairs": []}
    k = 0
    for i in range(pairs):
        g = timed_requests(conn, "GET", ["/v1/profiles/%s?days=30" % quote(u) for u in readers])
        d = timed_requests(conn, "DELETE", ["/v1/profiles/%s" % quote(u) for u in victims[k:k + n]])
        k += n
        rec = {"get_p50_us": pct(g, 0.5), "get_p99_us": pct(g, 0.99), "delete_p50_us": pct(d, 0.5),
               "delete_p99_us": pct(d, 0.99)}
        rec["delete_vs_get_p50"] = rec["delete_p50_us"] / rec["get_p50_us"]
        res["pairs"].append(rec)
        log("   pair %d: GET p50 %.2f ms p99 %.2f ms; DELETE p50 %.2f ms p99 %.2f ms (%.1fx)" % (
            i + 1, rec["get_p50_us"] / 1e3, rec["get_p99_us"] / 1e3, rec["delete_p50_us"] / 1e3,
            rec["delete_p99_us"] / 1e3, rec["delete_vs_get_p50"]))
    res["delete_vs_get_p50_median"] = pct([p["delete_vs_get_p50"] for p in res["pairs"]], 0.5)

    # applied vs visible, interleaved
    prod = ctx.procs.start("produce-erase", [ctx.bin("profilectl"), "produce", "--brokers", ctx.bootstrap,
                                             "--topic", "events", "--file", "-", "--quiet", "true"],
                           stdin=subprocess.PIPE)
    vis, app, misses = [], [], 0
    tag = "er%d" % int(time.time())
    for i in range(fresh_n):
        u = "fresh-%s-%d" % (tag, i)
        ev = {"event_id": "%s-%d" % (tag, i), "user_id": u, "ts": int(time.time() * 1000), "type": "view",
              "item": {"make": "BMW", "color": "blue", "price": 10000}}
        t0 = time.monotonic()
        prod.stdin.write((json.dumps(ev) + "\n").encode())
        prod.stdin.flush()
        seen = None
        while time.monotonic() < t0 + 5:
            if http_get(w.url + "/v1/profiles/%s?days=30" % u, timeout=2)[0] == 200:
                seen = time.monotonic()
                break
            time.sleep(0.002)
        if seen is None:
            misses += 1
        else:
            vis.append((seen - t0) * 1000)
        v = victims[k]
        k += 1
        t0 = time.monotonic()
        conn.request("DELETE", "/v1/profiles/%s" % quote(v))
        r = conn.getresponse()
        a = json.loads(r.read())
        if r.status != 202:
            raise RuntimeError("DELETE answered %d" % r.status)
        done = None
        while time.monotonic() < t0 + 5:
            st, body = http_get(w.url + a["status"], timeout=2)
            if st == 200 and json.loads(body).get("applied"):
                done = time.monotonic()
                break
            time.sleep(0.002)
        if done is None:
            misses += 1
        else:
            app.append((done - t0) * 1000)
        time.sleep(0.05)
    prod.stdin.close()
    try:
        prod.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    ctx.procs.stop(prod)
    conn.close()
    res["applied"] = {"samples": len(app), "misses": misses, "applied_p50_ms": pct(app, 0.5),
                      "applied_p99_ms": pct(app, 0.99), "visible_p50_ms": pct(vis, 0.5),
                      "visible_p99_ms": pct(vis, 0.99)}
    log("   erasure applied p50 %.0f ms p99 %.0f ms; event visible p50 %.0f ms p99 %.0f ms (%d misses)" % (
        pct(app, 0.5) or -1, pct(app, 0.99) or -1, pct(vis, 0.5) or -1, pct(vis, 0.99) or -1, misses))
    ctx.r["erase"] = res
