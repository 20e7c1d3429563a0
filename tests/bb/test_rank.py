"""test_rank.py -- POST /v1/profiles/{user}/rank and GET .../affinities
(issue 20) across two workers, against the independent scoring oracle
(tests/score_oracle.py) computed from the events read back from the topic.

- test_oracle_math: the oracle itself against hand-computed numbers.
- test_rank_every_worker: every sampled user (and a user without events)
  at both workers -- one answers locally, the other forwards the POST with
  its body -- with several bodies (defaults, decay + dims subset +
  dim_weights + alpha, explain, types / weights over per-type tracks,
  flat and broken candidates): the order
  exactly the oracle's, scores within 1e-9 relative; affinities likewise.
  Then a worker is SIGKILLed while a second batch is being ingested and
  restarted: every answer again equals the oracle over all events. Then
  the owner of some users is SIGKILLed: the other worker answers from its
  replica ("stale": true) with the oracle's ranking.
- test_rank_after_erasure: an erased user ranks cold, and the prior keeps
  its events (the population is never erased).
- test_rank_bad_requests: 400 (JSON, fields, items), 413 (body limit, in
  the front end and over rank_max_items), 415, 411, 405, 404, and
  "Expect: 100-continue" answered by the front end.

The prior: an answer computed without one says "prior": {"age_s": null,
...} and the oracle's population is then empty; once it covers every
partition (the tests wait for that: wait_prior) the oracle's population
is the sum over all users (pick_population).
"""
import http.client
import json
import os
import random
import socket
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lib import cluster, check, http_get, main, wait_for, metric  # noqa: E402
from oracle import Oracle, feed_topic, partition_for, vehicle_schema  # noqa: E402
import score_oracle as so  # noqa: E402
import datetime  # noqa: E402

NPARTS = 4
DAY = 86400000
REL = 1e-9


def today():
    return (datetime.datetime.utcnow().date() - datetime.date(1970, 1, 1)).days


def post(url, path, body, timeout=10.0, headers=None, raw=None):
    """(status, parsed JSON or None, raw bytes) of a POST."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        data = raw if raw is not None else json.dumps(body).encode()
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        conn.request("POST", path, body=data, headers=h)
        r = conn.getresponse()
        b = r.read()
        try:
            j = json.loads(b)
        except ValueError:
            j = None
        return r.status, j, b
    finally:
        conn.close()


def rank_path(user):
    return "/v1/profiles/%s/rank" % urllib.parse.quote(user, safe="")


def gen(c, name, n, users, seed, days=4):
    start = int(time.time() * 1000) - days * DAY
    r = c.ctl("generate", str(n), "--users", str(users), "--days", str(days), "--seed", str(seed),
              "--start_ts", str(start), "--dup_rate", "0.02")
    path = os.path.join(c.dir, name)
    open(path, "wb").write(r.stdout)
    return path, [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]


def oracle_from_topic(c):
    """The oracle fed with the topic's records in offset order (events and
    erasure records)."""
    _, text = c.end_offsets()
    o = Oracle(nparts=NPARTS, tracked=TRACKED)
    feed_topic(o, [json.loads(l) for l in text.splitlines() if l.strip()])
    return o


def candidates(events, n=60, seed=5):
    """Items seen in the events (nested), some flat, some broken, and
    duplicates (exact ties): ids unique."""
    rnd = random.Random(seed)
    seen = {}
    for e in events:
        it = e.get("item") or {}
        if it.get("id") and it["id"] not in seen:
            seen[it["id"]] = it
    items = [seen[k] for k in sorted(seen)]
    rnd.shuffle(items)
    out = []
    for it in items[:n]:
        out.append({"id": it["id"], "item": {k: v for k, v in it.items() if k != "id"}})
    for k, it in enumerate(items[n:n + 10]):   # flat
        flat = {kk: v for kk, v in it.items() if kk != "id"}
        flat["id"] = "flat-%d" % k
        out.append(flat)
    base = dict(out[0]["item"]) if out else {}
    out.append({"id": "dup-a", "item": dict(base)})
    out.append({"id": "dup-b", "item": dict(base)})
    out.append({"id": "wrong", "item": {"make": "BMW", "price": "cheap", "color": ["red"], "year": None}})
    out.append({"id": "empty"})
    out.append({"id": 42, "make": "Nonexistent", "mileage": 1e12})
    out.append({"id": "other", "item": {"make": "__other__", "doors": 5, "damaged": True}})
    return out


def pick_population(answer, o, frm, to, types=None, weights=None):
    """The prior the answer was computed with: none (no prior yet), or the
    cluster-wide population once it covers every partition. A partial
    prior (partitions_covered < total) has no oracle here: the tests wait
    until it is complete (wait_prior), and one is a failure."""
    pr = answer.get("prior") or {}
    if pr.get("age_s") is None or pr.get("days", 0) == 0:
        return so.empty_population()
    check(pr.get("partitions_covered") == pr.get("partitions_total"),
          "partial prior, no oracle for it: %r" % pr)
    return so.population_from(o, frm, to, types, weights)


def variants(t):
    return [
        ({}, {"frm": t - 59, "to": t}),
        ({"days": 3, "decay": "exp:2", "dims": ["make", "color", "price", "fuel"],
          "dim_weights": {"make": 2.5, "price": 0.5}, "alpha": 3}, {"frm": t - 2, "to": t, "decay": ("exp", 2.0),
                                                                     "dims": ["make", "color", "price", "fuel"],
                                                                     "lambdas": {"make": 2.5, "price": 0.5},
                                                                     "alpha": 3}),
        ({"decay": "linear:3", "explain": True, "alpha": 0.5}, {"frm": t - 59, "to": t, "decay": ("linear", 3.0),
                                                                 "alpha": 0.5, "explain": True}),
        # per-type tracks: the user's and the population's events weighted by type
        ({"types": ["park", "contact"], "decay": "exp:2", "dims": ["make", "color", "price", "year"]},
         {"frm": t - 59, "to": t, "types": ["park", "contact"], "decay": ("exp", 2.0),
          "dims": ["make", "color", "price", "year"]}),
        ({"weights": {"park": 3, "contact": 0, "*": 0.5}, "explain": True, "alpha": 2},
         {"frm": t - 59, "to": t, "weights": {"park": 3, "contact": 0, "*": 0.5}, "explain": True, "alpha": 2}),
    ]


TYPED = [0, 0]  # rank answers with types/weights: [compared exactly, skipped (approximate)]


def echo_errs(o, ans, ty, wt, where):
    """The answer's echo of the weighting it applied: "types" and
    "weights" as the profile query gives them (the oracle's type_weight
    rule, docs/api.md "Types and weights"), absent without them."""
    want = {}
    if ty is not None:
        want["types"] = [x for x in TRACKED if x in ty]
    if wt is not None:
        want["weights"] = {"*": 0.0 if ty is not None else float(wt.get("*", 1.0))}
        want["weights"].update({x: o.type_weight(x, ty, wt) for x in TRACKED})
    return ["%s: %s echoed %r, expected %r" % (where, k, ans.get(k), want.get(k))
            for k in ("types", "weights") if ans.get(k) != want.get(k)]


def check_rank(o, user, ans, body, kw, items, t, where):
    """Problems of one rank answer against the oracle."""
    errs = []
    frm, to = kw["frm"], kw["to"]
    dims = kw.get("dims") or [d[0] for d in vehicle_schema()]
    if ans.get("from") != so_day(frm) or ans.get("to") != so_day(to):
        errs.append("%s: range %s..%s, expected %s..%s" % (where, ans.get("from"), ans.get("to"), so_day(frm), so_day(to)))
    ty, wt = kw.get("types"), kw.get("weights")
    errs += echo_errs(o, ans, ty, wt, where)
    pop = pick_population(ans, o, frm, to, ty, wt)
    m = so.Model(vehicle_schema(), so.user_days(o, user, frm, to, ty, wt), pop, t, kw.get("decay"), dims,
                 kw.get("alpha", 10.0))
    if ty is not None or wt is not None:
        TYPED[1 if m.approx else 0] += 1
        if m.approx:
            # a day of the user overflowed a cap of a scoring dimension:
            # the server's type-weighted sums use sketch estimates there
            # (like the profile query's "approximate"); not comparable
            return errs
    if ans.get("cold_start") != m.cold:
        errs.append("%s: cold_start %r, expected %r" % (where, ans.get("cold_start"), m.cold))
    if ans.get("dims") != dims:
        errs.append("%s: dims %r" % (where, ans.get("dims")))
    want = {}
    index = {}
    for i, it in enumerate(items):
        want[it["id"]] = m.score(it, kw.get("lambdas"))
        index[it["id"]] = i
    got = [(x["id"], x["score"]) for x in ans["items"]]
    if sorted(map(repr, index)) != sorted(repr(i) for i, _ in got):
        errs.append("%s: items %r" % (where, [i for i, _ in got]))
        return errs
    for i, s in got:
        if not so.close(s, want[i][0], REL):
            errs.append("%s: item %r score %r, expected %r" % (where, i, s, want[i][0]))
    errs += ["%s: %s" % (where, e) for e in so.order_ok(got, {k: v[0] for k, v in want.items()}, index, REL)]
    if kw.get("explain"):
        for x in ans["items"]:
            _, contrib, missing, invalid = want[x["id"]]
            if sorted(x.get("contributions", {})) != sorted(contrib) or x.get("missing") != missing or \
                    x.get("invalid") != invalid:
                errs.append("%s: item %r explain %r, expected %r missing %r invalid %r" %
                            (where, x["id"], x, contrib, missing, invalid))
                continue
            for d, c in contrib.items():
                if not so.close(x["contributions"][d], c, REL):
                    errs.append("%s: item %r contribution %s %r, expected %r" % (where, x["id"], d,
                                                                                  x["contributions"][d], c))
    return errs


def so_day(d):
    from oracle import day_str
    return day_str(d)


def check_affinities(o, user, ans, t, where, dims, top, alpha=10.0, decay=None, by="lift", types=None, weights=None):
    errs = echo_errs(o, ans, types, weights, where)
    frm, to = t - 59, t
    pop = pick_population(ans, o, frm, to, types, weights)
    m = so.Model(vehicle_schema(), so.user_days(o, user, frm, to, types, weights), pop, t, decay, dims, alpha)
    if m.approx:
        return errs  # sketch estimates in the server's type-weighted sums (see check_rank)
    want = m.affinities(top, by)
    for d in dims:
        got = ans["dimensions"][d]["values"]
        w = want[d]
        if len(got) != len(w):
            errs.append("%s: %s has %d values, expected %d" % (where, d, len(got), len(w)))
            continue
        for g, x in zip(got, w):
            key = g.get("value", g.get("le"))
            if key != x[0] or not all(so.close(g[f], x[k], REL) for k, f in
                                      ((1, "count"), (2, "p_user"), (3, "p_population"), (4, "lift"))):
                # near-ties of lift may swap: accept when the oracle's lifts agree
                errs.append("%s: %s: %r, expected %r" % (where, d, g, x))
    return errs


def sweep(o, ws, users, items, t, label, stale_ok=False):
    """Every user at every worker with every variant; returns (problems, stale answers)."""
    errs = []
    stale = 0
    for u in users:
        for body_kw, kw in variants(t):
            body = dict(body_kw)
            body["items"] = items
            for w in ws:
                st, ans, raw = post(w.url, rank_path(u), body)
                where = "%s %s at %s %r" % (label, u, w.name, sorted(body_kw))
                if st != 200:
                    errs.append("%s: %d %s" % (where, st, raw[:200]))
                    continue
                stale += bool(ans.get("stale"))
                if ans.get("stale") and not stale_ok:
                    errs.append("%s: stale answer" % where)
                errs += check_rank(o, u, ans, body, kw, items, t, where)
        for w in ws:
            for qs, ty, wt in (("", None, None), ("&types=park,contact&weights=park:2", ["park", "contact"],
                                                  {"park": 2})):
                st, _, b = http_get("%s/v1/profiles/%s/affinities?dims=make,color,price&top=4%s" %
                                    (w.url, urllib.parse.quote(u, safe=""), qs))
                where = "%s affinities%s %s at %s" % (label, qs, u, w.name)
                if st != 200:
                    errs.append("%s: %d %s" % (where, st, b[:200]))
                    continue
                errs += check_affinities(o, u, json.loads(b), t, where, ["make", "color", "price"], 4,
                                         types=ty, weights=wt)
    return errs, stale


def test_oracle_math():
    # a user with 3 events on day 10 (bmw x2, audi) and 1 on day 12 (bmw); no prior
    o = Oracle(nparts=None, retention_days=60)
    D = 20000
    for i, (mk, day) in enumerate([("bmw", D + 10), ("bmw", D + 10), ("audi", D + 10), ("bmw", D + 12)]):
        ev = {"user_id": "u", "ts": day * DAY + 1000 + i, "type": "view", "item": {"make": mk, "price": 7000}}
        o.feed(0, i, json.dumps(ev).encode())
    ud = so.user_days(o, "u", D + 8, D + 12)
    m = so.Model(vehicle_schema(), ud, so.empty_population(), D + 12, ("exp", 2.0), ["make", "price"], 4.0)
    w10 = 0.5
    Nu = 3 * w10 + 1
    # categorical, no prior: p_P = 1 / (0 + 1)
    pu = (2 * w10 + 1 + 4 * 1.0) / (Nu + 4)
    s, contrib, missing, invalid = m.score({"id": "x", "item": {"make": "bmw", "price": 5000}})
    # price 5000 -> bucket 0 (<= 5000), 9 buckets, user has 0 there
    pp_price = 1 / 9
    pu_price = (0 + 4 * pp_price) / (Nu + 4)
    import math
    check(abs(contrib["make"] - math.log(pu)) < 1e-15, contrib)
    check(abs(contrib["price"] - math.log(pu_price / pp_price)) < 1e-15, contrib)
    check(abs(s - contrib["make"] - contrib["price"]) < 1e-15, s)
    check(missing == [] and invalid == [], (missing, invalid))
    # a population: another user with vw x3 on day 12
    for i in range(3):
        ev = {"user_id": "v", "ts": (D + 12) * DAY + 5000 + i, "type": "view", "item": {"make": "vw"}}
        o.feed(0, 10 + i, json.dumps(ev).encode())
    pop = so.population_from(o, D + 8, D + 12)
    m = so.Model(vehicle_schema(), ud, pop, D + 12, None, ["make"], 10.0)
    # N_P = 7, values bmw 3, audi 1, vw 3 -> K = 4
    pp = (3 + 1) / (7 + 4)
    pu = (3 + 10 * pp) / (4 + 10)
    s, contrib, _, _ = m.score({"id": 1, "make": "bmw"})
    check(abs(s - math.log(pu / pp)) < 1e-15, (s, pu, pp))
    # wrong types, missing, __other__, cold
    s, contrib, missing, invalid = m.score({"id": 2, "item": {"make": ["x"]}})
    check(s == 0 and invalid == ["make"], (s, invalid))
    s, contrib, missing, invalid = m.score({"id": 3})
    check(s == 0 and missing == ["make"], missing)
    cold = so.Model(vehicle_schema(), so.user_days(o, "nobody", D + 8, D + 12), pop, D + 12, None, ["make"], 10.0)
    check(cold.cold and cold.score({"id": 4, "make": "bmw"})[0] == 0, "cold user scores 0")
    # ranking: ties in input order
    r = m.rank([{"id": "a", "make": "vw"}, {"id": "b", "make": "bmw"}, {"id": "c", "make": "vw"}])
    check([i for i, _ in r] == ["b", "a", "c"], r)
    check(so.order_ok([("a", 1.0), ("b", 2.0)], {"a": 1.0, "b": 2.0}, {"a": 0, "b": 1}), "order check must fail")
    aff = m.affinities(2)
    check([x[0] for x in aff["make"]] == ["bmw", "audi"], aff)
    print("  oracle math ok")


WORKER_ARGS = ["--replicas", "1", "--population_refresh", "500ms"]
# The default (vehicle) schema plus per-type tracks of "park" and
# "contact" (profilectl generate's types are view, search, park, contact):
# bodies with types/weights score against them.
TRACKED = ["park", "contact"]


def schema_args(c):
    from oracle import VEHICLE_CATEGORICAL, VEHICLE_NUMERIC
    dims = [{"name": n, "type": "categorical"} for n in VEHICLE_CATEGORICAL]
    dims += [{"name": n, "type": "numeric", "buckets": b} for n, b in VEHICLE_NUMERIC.items()]
    path = os.path.join(c.dir, "vehicle-tracked.json")
    with open(path, "w") as f:
        json.dump({"dimensions": dims, "tracked_types": TRACKED}, f)
    return ["--schema", path]


def wait_prior(ws, since):
    """Every worker's prior covers every partition and was built entirely
    after `since` (monotonic time when the stores had caught up), so it
    holds everything ingested: the oracle's population applies."""
    def ok():
        for w in ws:
            st, body = http_get(w.url + "/v1/population?days=1")[0::2]
            if st != 200:
                return False
            pr = json.loads(body).get("prior") or {}
            if pr.get("age_s") is None or pr.get("partitions_covered") != pr.get("partitions_total"):
                return False
            if pr["age_s"] >= time.monotonic() - since:
                return False
        return True
    wait_for(ok, 60, "a complete, fresh population prior at every worker", interval=0.3)


def setup(c, extra, extra2=()):
    path, events = gen(c, "a.jsonl", 3000, 120, 11)
    ws = [c.start_worker("w%d" % i, WORKER_ARGS + schema_args(c) + extra + (list(extra2) if i == 2 else []))
          for i in (1, 2)]
    out = c.produce_file(path)
    check("failed=0" in out, out)
    wait_for(lambda: c.caught_up([w.data for w in ws], copies=2), 120, "owner + replica copies", interval=0.5)
    wait_prior(ws, time.monotonic())
    return ws, events


def test_rank_every_worker():
    with cluster(partitions=NPARTS) as c:
        # w2 caches one population key per prior: most of its answers merge
        # the population for the request alone, and must equal the oracle too
        ws, events = setup(c, [], ["--population_cache_keys", "1"])
        t = today()
        o = oracle_from_topic(c)
        users = sorted({u for (u, d) in o.raw})
        rnd = random.Random(9)
        sample = rnd.sample(users, 12) + ["nobody-at-all"]
        items = candidates(events)
        errs, _ = sweep(o, ws, sample, items, t, "settled")
        check(not errs, "%d problems:\n  %s" % (len(errs), "\n  ".join(errs[:10])))
        cache = [{r: metric(w.url, "profiled_population_cache_total", '{result="%s"}' % r)
                  for r in ("hit", "stored", "full")} for w in ws]
        print("  population sums: w1 %r, w2 (one key cached) %r" % tuple(cache))
        check(cache[0]["hit"] > 0 and cache[0]["full"] == 0, "w1's population cache: %r" % cache[0])
        check(cache[1]["full"] > 0 and cache[1]["hit"] > 0, "w2 did not score both ways: %r" % cache[1])
        # the answer reports the prior: complete (the scores above were
        # checked against the oracle's population)
        st, ans, _ = post(ws[0].url, rank_path(sample[0]), {"items": items[:2]})
        print("  prior as answered: %r" % ans.get("prior"))
        check(ans.get("prior", {}).get("days", 0) > 0, "no population prior in the answer: %r" % ans.get("prior"))

        # SIGKILL of a worker mid-ingest, restart: answers equal the oracle over everything
        path2, events2 = gen(c, "b.jsonl", 3000, 120, 12, days=2)
        victim = ws[0]
        import subprocess
        from lib import PROFILECTL
        prod = subprocess.Popen([PROFILECTL, "produce", "--brokers", c.bootstrap, "--topic", c.topic,
                                 "--file", path2], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        time.sleep(0.3)
        victim.kill9()
        try:
            prod.wait(timeout=120)
        finally:
            if prod.poll() is None:
                prod.kill()
        ws[0] = c.start_worker("w1", WORKER_ARGS + schema_args(c))
        wait_for(lambda: c.caught_up([w.data for w in ws], copies=2), 180, "catch-up after the restart", interval=0.5)
        wait_for(lambda: all(http_get(w.url + "/readyz")[0] == 200 for w in ws), 60, "workers ready", interval=0.5)
        wait_prior(ws, time.monotonic())
        o = oracle_from_topic(c)
        users = sorted({u for (u, d) in o.raw})
        sample = rnd.sample(users, 10) + ["nobody-at-all"]
        items = candidates(events + events2, seed=6)
        errs, _ = sweep(o, ws, sample, items, t, "after kill -9")
        check(not errs, "%d problems:\n  %s" % (len(errs), "\n  ".join(errs[:10])))

        # the owner down: its users answered from the replica (stale) with the oracle's ranking
        victim = ws[1]
        _, _, body = http_get(victim.url + "/v1/partitions")
        owned = set(json.loads(body)["self"]["owned"])
        theirs = [u for u in users if partition_for(u.encode(), NPARTS) in owned][:8]
        check(theirs, "no users on the victim's partitions")
        victim.kill9()
        survivor = ws[0]
        errs, stale = sweep(o, [survivor], theirs, items, t, "owner down", stale_ok=True)
        check(not errs, "%d problems:\n  %s" % (len(errs), "\n  ".join(errs[:10])))
        check(stale > 0, "no answer came from a replica")
        print("  %d rank answers from the replica after the owner's SIGKILL" % stale)
        check(survivor.stop() == 0, "exit code")
        print("  type-weighted rank answers: %d compared with the oracle, %d skipped (a cap overflowed)" %
              tuple(TYPED))
        check(TYPED[0] > 10 * TYPED[1], "too few type-weighted answers compared exactly: %r" % TYPED)


def test_rank_after_erasure():
    """An erasure leaves the population -- the scoring prior -- alone
    (docs/operations.md, "Erasure"): after a DELETE of the user with the
    most events, that user ranks cold at both workers and everyone else's
    scores still count its events in the prior (score_oracle over the
    oracle's population). Fails when the prior drops an erased user's
    events, and with the score oracle that did (population_from over the
    users' kept profiles: make chaos seed 101 found every score off once
    erasures ran next to rankings)."""
    from test_population import http_req
    with cluster(partitions=NPARTS) as c:
        ws, events = setup(c, [])
        o = oracle_from_topic(c)
        n = {}
        for (u, _d), p in o.raw.items():
            n[u] = n.get(u, 0) + p["events"]
        victim = max(sorted(n), key=lambda u: n[u])
        st, _, body = http_req("DELETE", "%s/v1/profiles/%s" % (ws[1].url, urllib.parse.quote(victim, safe="")))
        check(st == 202, "DELETE %s: %d %s" % (victim, st, body[:200]))
        wait_for(lambda: all(http_get("%s/v1/profiles/%s" % (w.url, victim))[0] == 404 for w in ws), 60,
                 "the erasure applied at both workers", interval=0.3)
        wait_for(lambda: c.caught_up([w.data for w in ws], copies=2), 60, "owner + replica copies", interval=0.5)
        wait_prior(ws, time.monotonic())
        o = oracle_from_topic(c)
        check(o.outcomes.get("erased") == 1 and not any(u == victim for (u, _d) in o.raw),
              "oracle: %r, the victim's days %r" % (o.outcomes, [k for k in o.raw if k[0] == victim]))
        others = sorted(u for u in n if u != victim)
        sample = random.Random(21).sample(others, 6) + [victim]
        errs, _ = sweep(o, ws, sample, candidates(events), today(), "after an erasure of %s (%d events)" %
                        (victim, n[victim]))
        check(not errs, "%d problems:\n  %s" % (len(errs), "\n  ".join(errs[:10])))
        for w in ws:
            check(w.stop() == 0, "%s exit code" % w.name)


def raw_request(url, data, timeout=5.0, wait_100=False):
    """Sends raw bytes; returns everything read until the server closes or
    the first complete answer (Content-Length framed) arrives."""
    u = urllib.parse.urlparse(url)
    s = socket.create_connection((u.hostname, u.port), timeout=timeout)
    try:
        if wait_100:
            head, body = data
            s.sendall(head)
            got = b""
            deadline = time.monotonic() + timeout
            while b"\r\n\r\n" not in got and time.monotonic() < deadline:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            check(got.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), "no 100 Continue first: %r" % got[:80])
            s.sendall(body)
            data = b""
            out = got[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        else:
            s.sendall(data)
            out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"\r\n\r\n" in out:
                head, _, rest = out.partition(b"\r\n\r\n")
                cl = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if cl and len(rest) >= cl[0]:
                    return out
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def test_rank_bad_requests():
    with cluster(partitions=NPARTS) as c:
        ws, events = setup(c, ["--rank_max_items", "50", "--rank_max_body_bytes", "20000"])
        w = ws[0]
        u = "u-1"
        items = candidates(events, n=20)

        def expect(st_want, body=None, raw=None, headers=None, needle=""):
            st, j, b = post(w.url, rank_path(u), body, raw=raw, headers=headers)
            check(st == st_want and (j or {}).get("detail", "").find(needle) >= 0,
                  "expected %d with %r, got %d %s" % (st_want, needle, st, b[:300]))

        expect(200, {"items": items})
        expect(400, raw=b'{"items": [', needle="not valid JSON")
        expect(400, {"items": items, "alpha": 0}, needle="'alpha'")
        expect(400, {"items": items, "dims": ["nope"]}, needle="unknown dimension 'nope'")
        expect(400, {"items": items, "dim_weights": {"make": "x"}}, needle="weight of 'make'")
        expect(400, {"items": items, "types": ["view"]}, needle="'view' is not a tracked event type")
        expect(400, {"items": items, "weights": {"park": -1}}, needle="weight of 'park'")
        expect(400, {"items": items, "weights": {"search": 2}}, needle="'search' is not a tracked event type")
        st, _, b = http_get(w.url + "/v1/profiles/u-1/affinities?types=nope")
        check(st == 400 and b"'nope' is not a tracked event type" in b, "affinities types: %d %s" % (st, b[:200]))
        # the event dialect (one scanner): what an event may not be, a body may not be either
        expect(400, raw=b'{"items":[{"id":"\xff"}]}', needle="not valid UTF-8")
        expect(400, raw=b'{"items":[{"id":"a"},]}', needle="invalid JSON at byte 21 of 23: expected a value")
        expect(400, raw=b'{"items":[' + b'[' * 64 + b']' * 64 + b']}', needle="nesting deeper than 64")
        expect(400, raw=b'{"items":[],"alpha":1e400}', needle="'alpha'")
        st, ans, b = post(w.url, rank_path(u), None, raw=b'{"items":[{"id":"a\\u0000b","id":"x","make":"BMW"}],'
                                                         b'"items":[]}')
        check(st == 200 and [x["id"] for x in ans["items"]] == ["a\x00b"], "NUL in an id, first key wins: %d %s" %
              (st, b[:200]))
        expect(400, {"items": [{"id": "a"}, {"id": "b", "item": 7}]}, needle="items[1]")
        expect(400, {"items": [{"id": "a"}, {"make": "BMW"}]}, needle="items[1]: missing 'id'")
        expect(400, {"items": [{"id": str(i)} for i in range(51)]}, needle="rank_max_items (50)")
        # over the body limit: 413 from the front end
        big = {"items": [{"id": "x" * 100, "make": "y" * 400} for _ in range(45)]}
        st, _, b = post(w.url, rank_path(u), big)
        check(st == 413 and len(json.dumps(big)) < 50 * 1024, "big body: %d %s" % (st, b[:200]))
        expect(415, raw=b'{"items":[]}', headers={"Content-Type": "text/plain"}, needle="application/json")
        # the same body at the other worker (forwarded when it does not own u-1) is fine
        st, ans, b = post(ws[1].url, rank_path(u), {"items": items})
        check(st == 200 and len(ans["items"]) == len(items), "other worker: %d %s" % (st, b[:200]))
        # chunked -> 411
        host = urllib.parse.urlparse(w.url).netloc
        data = ("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                "c\r\n{\"items\":[]}\r\n0\r\n\r\n" % (rank_path(u), host)).encode()
        out = raw_request(w.url, data)
        check(out.startswith(b"HTTP/1.1 411"), "chunked: %r" % out[:200])
        # Expect: 100-continue: the front end says 100, then the answer
        body = json.dumps({"items": items}).encode()
        head = ("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
                "Content-Length: %d\r\n\r\n" % (rank_path(u), host, len(body))).encode()
        out = raw_request(w.url, (head, body), wait_100=True)
        check(out.startswith(b"HTTP/1.1 200"), "after 100-continue: %r" % out[:200])
        check(b"HTTP/1.1 100" not in out, "a second 100: %r" % out[:300])
        # a body in pieces, slowly: read whole by the front end
        u2 = urllib.parse.urlparse(w.url)
        s = socket.create_connection((u2.hostname, u2.port), timeout=5)
        s.sendall(("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                   % (rank_path(u), host, len(body))).encode())
        for k in range(0, len(body), 700):
            s.sendall(body[k:k + 700])
            time.sleep(0.01)
        got = b""
        while b"\r\n\r\n" not in got:
            ch = s.recv(65536)
            if not ch:
                break
            got += ch
        check(got.startswith(b"HTTP/1.1 200"), "body in pieces: %r" % got[:200])
        # keep-alive after a body: a second request on the same connection
        hd, _, rest = got.partition(b"\r\n\r\n")
        cl = int([l.split(b":")[1] for l in hd.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
        while len(rest) < cl:
            rest += s.recv(65536)
        s.sendall(("GET /v1/profiles/%s/affinities?top=1 HTTP/1.1\r\nHost: %s\r\n\r\n" % (u, host)).encode())
        got = s.recv(65536)
        check(got.startswith(b"HTTP/1.1 200"), "second request on the connection: %r" % got[:200])
        s.close()
        # methods and paths
        st, _, _ = http_get(w.url + rank_path(u))
        check(st == 405, "GET rank: %d" % st)
        st, _, b = post(w.url, "/v1/profiles/%s/affinities" % u, {"items": []})
        check(st == 405, "POST affinities: %d" % st)
        st, _, b = http_get(w.url + "/v1/profiles/%s/ranking" % u)
        check(st == 404, "GET ranking: %d %s" % (st, b[:100]))
        st, _, b = http_get(w.url + "/v1/profiles/u-1/affinities?alpha=-1")
        check(st == 400 and b"'alpha'" in b, "affinities alpha: %d %s" % (st, b[:200]))
        st, _, b = http_get(w.url + "/v1/profiles/u-1/affinities?dims=nope")
        check(st == 400, "affinities dims: %d" % st)
        for x in ws:
            check(x.stop() == 0, "%s exit code" % x.name)


if __name__ == "__main__":
    main([test_oracle_math, test_rank_every_worker, test_rank_after_erasure, test_rank_bad_requests])
