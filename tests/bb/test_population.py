"""test_population.py -- the population prior (issue 20 items 1-2) against
the oracle (tests/oracle.py, population(): the sum over every partition of
all accepted events, erased users' included, under population_max_values).

One cluster of 6 partitions, events over 5 days with 5 % duplicate
deliveries (de-dup applies to the population too), population_refresh
500 ms. GET /v1/population must equal the oracle at EVERY worker (several
query variants: range, dims, decay, top, breakdown, at) once ingestion has
settled and the prior has refreshed, in each of these states:
  1. one worker, after the first half of the events;
  2. a second worker joined (half the partitions move to it by hand-off
     snapshots, which carry the population keys);
  3. the second half produced while the second worker is SIGKILLed and
     restarted mid-ingest (replayed batches must not count twice);
  4. a user erased (DELETE): the population does not change;
  5. the second worker SIGKILLed and left down: the first keeps answering
     from its last prior (coverage still complete, the age grows, refresh
     failures counted), equal to the oracle.
Plus: bad parameters give 400 JSON, the prior fields are present, and the
internal route needs the cluster token.
"""
import datetime
import json
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lib import cluster, check, http_get, main, wait_for, metric  # noqa: E402
from oracle import Oracle, day_str, feed_topic, population  # noqa: E402

NPARTS = 6
DAY = 86400000
EXTRA = ["--population_refresh", "500ms", "--member_ttl", "6s"]


def today():
    return (datetime.datetime.utcnow().date() - datetime.date(1970, 1, 1)).days


def close(a, b, path, errs):
    if isinstance(a, dict):
        if not isinstance(b, dict):
            errs.append("%s: expected object, got %r" % (path, b))
            return
        for k in a:
            if k not in b:
                errs.append("%s.%s missing" % (path, k))
            else:
                close(a[k], b[k], path + "." + k, errs)
        for k in b:
            if k not in a and k not in ("prior", "served_by", "at", "at_before_retention"):
                errs.append("%s.%s unexpected (%r)" % (path, k, b[k]))
    elif isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            errs.append("%s: expected %d items, got %r" % (path, len(a), b))
            return
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, "%s[%d]" % (path, i), errs)
    elif isinstance(a, float) or isinstance(b, float):
        import math
        if a is None or b is None or not math.isclose(a, b, rel_tol=1e-6, abs_tol=2e-4):
            errs.append("%s: expected %r, got %r" % (path, a, b))
    elif a != b:
        errs.append("%s: expected %r, got %r" % (path, a, b))


def oracle_from_topic(c, nparts=NPARTS):
    """The oracle fed with the topic's records in offset order (events and
    erasure control records)."""
    _, text = c.end_offsets()
    o = Oracle(nparts=nparts)
    feed_topic(o, [json.loads(l) for l in text.splitlines() if l.strip()])
    return o


def variants(t):
    return [
        ("", {}),
        ("days=2", {"frm": t - 1, "to": t}),
        ("dims=color,price,make", {"dims": ["make", "color", "price"]}),
        ("breakdown=day&dims=fuel,mileage", {"breakdown": True, "dims": ["fuel", "mileage"]}),
        ("decay=exp:2", {"decay": ("exp", 2.0)}),
        ("top=3&dims=model,color", {"top": 3, "dims": ["model", "color"]}),
        ("at=%s&days=2&decay=linear:3" % day_str(t - 1),
         {"frm": t - 2, "to": t - 1, "today": t - 1, "decay": ("linear", 3.0)}),
    ]


def population_errors(ws, o, want_complete=True, nparts=NPARTS):
    """Differences between every worker's answers and the oracle ([] when
    equal); a complete prior covers `nparts` partitions."""
    t = today()
    errs = []
    for qs, kw in variants(t):
        kw = dict(kw)
        frm = kw.pop("frm", t - 60 + 1)
        to = kw.pop("to", t)
        want = population(o, frm, to, kw.pop("today", t), **kw)
        for w in ws:
            st, _, body = http_get("%s/v1/population?%s" % (w.url, qs))
            if st != 200:
                errs.append("%s %s: status %d %s" % (w.name, qs, st, body[:200]))
                continue
            got = json.loads(body)
            pr = got.get("prior", {})
            if want_complete and (not pr.get("complete") or pr.get("partitions_covered") != nparts):
                errs.append("%s %s: prior not complete: %r" % (w.name, qs, pr))
            e = []
            close(want, got, "%s?%s" % (w.name, qs), e)
            errs += e
    return errs


def settle(c, ws, o_fn, what, timeout=120):
    """Waits until ingestion caught up and every worker's answers equal the
    oracle (a fresh one from the topic); returns it."""
    wait_for(lambda: c.caught_up([w.data for w in ws]), timeout, "%s: ingestion to catch up" % what,
             interval=0.5)
    o = o_fn()
    last = []

    def equal():
        last[:] = population_errors(ws, o)
        return not last
    try:
        wait_for(equal, 60, "%s: population equal to the oracle" % what, interval=0.5)
    except Exception:
        check(False, "%s: %d differences, e.g.:\n  %s" % (what, len(last), "\n  ".join(last[:10])))
    return o


def all_ready(ws):
    for w in ws:
        st, _, body = http_get(w.url + "/v1/partitions")
        if st != 200:
            return False
        owners = json.loads(body)["owners"]
        if len(owners) != NPARTS or any(not x.get("owner") for x in owners):
            return False
    return all(http_get(w.url + "/readyz")[0] == 200 for w in ws)



def http_req(method, url, headers=None, timeout=15.0):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_population_every_worker_against_the_oracle():
    with cluster(partitions=NPARTS) as c:
        start = int(time.time() * 1000) - 4 * DAY
        r = c.ctl("generate", "8000", "--users", "300", "--days", "5", "--seed", "2020",
                  "--start_ts", str(start), "--dup_rate", "0.05")
        lines = r.stdout.splitlines(keepends=True)
        half = len(lines) // 2
        p1, p2 = os.path.join(c.dir, "a.jsonl"), os.path.join(c.dir, "b.jsonl")
        open(p1, "wb").write(b"".join(lines[:half]))
        open(p2, "wb").write(b"".join(lines[half:]))
        ofn = lambda: oracle_from_topic(c)  # noqa: E731

        # 1. one worker
        w1 = c.start_worker("w1", EXTRA)
        w1.name = "w1"
        check("failed=0" in c.produce_file(p1), "produce a")
        wait_for(lambda: all_ready([w1]), 90, "w1 owns everything", interval=0.5)
        o = settle(c, [w1], ofn, "one worker")
        check(sum(o.outcomes.get(k, 0) for k in ("duplicate",)) > 0, "no duplicates in the input")

        # bad parameters: 400 JSON; prior fields; the internal route needs the token
        for qs in ("days=0", "dims=nosuch", "decay=exp:0", "top=0", "from=2026-13-01", "bogus=1"):
            st, _, body = http_get("%s/v1/population?%s" % (w1.url, qs))
            check(st == 400 and json.loads(body).get("error") == "bad request", "%s: %d %r" % (qs, st, body[:200]))
        st, _, body = http_get(w1.url + "/v1/population")
        pr = json.loads(body)["prior"]
        check(pr["partitions_total"] == NPARTS and pr["age_s"] is not None and pr["age_s"] >= 0, repr(pr))
        st, _, _ = http_req("GET", w1.url + "/internal/v1/population")
        check(st == 401, "internal route without the token: %d" % st)
        st, _, body = http_req("GET", w1.url + "/internal/v1/population",
                               {"Authorization": "Bearer " + c.secret})
        check(st == 200 and body[:8] == b"PDPOP001", "internal route with the token: %d %r" % (st, body[:16]))
        st, _, _ = http_req("POST", w1.url + "/v1/population")
        check(st == 405, "POST /v1/population: %d" % st)

        # 2. a second worker joins: partitions move by hand-off
        w2 = c.start_worker("w2", EXTRA)
        w2.name = "w2"
        wait_for(lambda: all_ready([w1, w2]), 120, "both ready, all owned", interval=0.5)

        def split():
            st, _, body = http_get(w1.url + "/v1/partitions")
            owners = {(x["owner"].get("id") if isinstance(x.get("owner"), dict) else x.get("owner"))
                      for x in json.loads(body)["owners"]}
            return owners == {"w1", "w2"}
        wait_for(split, 90, "partitions spread over w1 and w2", interval=0.5)
        o = settle(c, [w1, w2], ofn, "after the partition move")

        # 3. the second half, with w2 SIGKILLed and restarted mid-ingest
        done = {}

        def produce():
            done["out"] = c.produce_file(p2, ["--rate", "4000"] if False else None)
        th = threading.Thread(target=produce, daemon=True)
        th.start()
        time.sleep(0.5)
        w2.kill9()
        time.sleep(1.0)
        w2 = c.start_worker("w2", EXTRA)
        w2.name = "w2"
        th.join(120)
        check("failed=0" in done.get("out", ""), "produce b: %r" % done.get("out", "")[:300])
        wait_for(lambda: all_ready([w1, w2]), 120, "both ready after the restart", interval=0.5)
        o = settle(c, [w1, w2], ofn, "after kill -9 and restart mid-ingest")

        # 4. an erasure leaves the population alone
        users = sorted({u for (u, d) in o.raw})
        victim = random.Random(5).choice(users)
        st, _, body = http_req("DELETE", "%s/v1/profiles/%s" % (w1.url, urllib.parse.quote(victim)))
        check(st == 202, "DELETE: %d %r" % (st, body[:200]))
        wait_for(lambda: http_get("%s/v1/profiles/%s" % (w2.url, urllib.parse.quote(victim)))[0] == 404, 60,
                 "erasure applied")
        o = settle(c, [w1, w2], ofn, "after an erasure")
        check(not any(u == victim for (u, d) in o.raw) and o.pop_raw, "oracle: the victim is erased")

        # 5. w2 down for good: w1 keeps its last prior (w2's partitions move
        # to w1 after the session timeout, or their copies stay)
        f0 = metric(w1, "profiled_population_refresh_failures_total") or 0
        w2.kill9()
        time.sleep(2.0)
        errs = population_errors([w1], o)
        check(not errs, "w1 with w2 down: %d differences, e.g.:\n  %s" % (len(errs), "\n  ".join(errs[:10])))
        check((metric(w1, "profiled_population_refresh_failures_total") or 0) > f0,
              "refresh failures not counted while w2 is down")
        check(metric(w1, "profiled_population_partitions_covered") == NPARTS, "coverage metric")
        age = metric(w1, "profiled_population_prior_age_seconds")
        check(age is not None and age >= 0, "age metric %r" % age)
        wait_for(lambda: all_ready([w1]), 120, "w1 owns everything again", interval=0.5)
        settle(c, [w1], ofn, "w1 alone after w2 died")


def test_population_last_prior_kept_while_a_peer_is_down():
    """Without replicas a dead peer's partitions have no other source: the
    survivor keeps their last copies (coverage complete, answers equal to
    the oracle, the age grows, failures counted) until it owns them."""
    with cluster(partitions=NPARTS) as c:
        start = int(time.time() * 1000) - 3 * DAY
        r = c.ctl("generate", "3000", "--users", "200", "--days", "3", "--seed", "7",
                  "--start_ts", str(start), "--dup_rate", "0.05")
        path = os.path.join(c.dir, "in.jsonl")
        open(path, "wb").write(r.stdout)
        extra = EXTRA + ["--replicas", "0", "--session_timeout_ms", "20000"]
        w1 = c.start_worker("w1", extra)
        w2 = c.start_worker("w2", extra)
        w1.name, w2.name = "w1", "w2"
        check("failed=0" in c.produce_file(path), "produce")
        wait_for(lambda: all_ready([w1, w2]), 120, "both ready, all owned", interval=0.5)
        o = settle(c, [w1, w2], lambda: oracle_from_topic(c), "two workers, no replicas")
        f0 = metric(w1, "profiled_population_refresh_failures_total") or 0
        w2.kill9()
        time.sleep(2.5)  # several refreshes (500 ms) without w2, well inside the session timeout
        errs = population_errors([w1], o)
        check(not errs, "w1 with w2 down: %d differences, e.g.:\n  %s" % (len(errs), "\n  ".join(errs[:10])))
        st, _, body = http_get(w1.url + "/v1/population?days=1")
        pr = json.loads(body)["prior"]
        check(pr["complete"] and pr["partitions_covered"] == NPARTS and pr["age_s"] >= 2.0,
              "prior while w2 is down: %r" % pr)
        check((metric(w1, "profiled_population_refresh_failures_total") or 0) > f0,
              "refresh failures not counted while w2 is down")
        check(metric(w1, "profiled_population_partitions_covered") == NPARTS, "coverage metric")
        check((metric(w1, "profiled_population_prior_age_seconds") or 0) >= 2.0, "age metric")


if __name__ == "__main__":
    main([test_population_every_worker_against_the_oracle, test_population_last_prior_kept_while_a_peer_is_down])
