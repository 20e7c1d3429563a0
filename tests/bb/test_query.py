"""test_query.py -- the REST API across three workers.

After ingestion, every user is queried at every worker with several
parameter sets; all workers must return the same body (apart from
served_by) and it must equal the response computed by an independent
aggregation of the oracle's day profiles. Also checks routing against the
partition the producer actually used, and error responses.
"""
import json
import math
import os
import random
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lib import cluster, check, http_get, main, wait_for, TestFailure  # noqa: E402
from oracle import Oracle, day_str  # noqa: E402
import datetime  # noqa: E402

NPARTS = 6
DAY = 86400000


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
            if k not in a and k not in ("partition", "served_by"):
                errs.append("%s.%s unexpected (%r)" % (path, k, b[k]))
    elif isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            errs.append("%s: expected %d items, got %r" % (path, len(a), b))
            return
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, "%s[%d]" % (path, i), errs)
    elif isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or not math.isclose(a, b, rel_tol=1e-6, abs_tol=2e-4):
            errs.append("%s: expected %r, got %r" % (path, a, b))
    elif a != b:
        errs.append("%s: expected %r, got %r" % (path, a, b))


def setup(c, users=150, n=5000, seed=77):
    start = int(time.time() * 1000) - 5 * DAY
    r = c.ctl("generate", str(n), "--users", str(users), "--days", "5", "--seed", str(seed),
              "--start_ts", str(start), "--dup_rate", "0.02")
    path = os.path.join(c.dir, "in.jsonl")
    open(path, "wb").write(r.stdout)
    ws = [c.start_worker("w%d" % i) for i in (1, 2, 3)]
    out = c.produce_file(path)
    check("failed=0" in out, out)
    # Every worker ready and every partition owned, as seen by every worker.
    def all_owned():
        for w in ws:
            st, _, body = http_get(w.url + "/v1/partitions")
            if st != 200:
                return False
            owners = json.loads(body)["owners"]
            if len(owners) != NPARTS or any(not o.get("owner") for o in owners):
                return False
        return all(http_get(w.url + "/readyz")[0] == 200 for w in ws)
    wait_for(all_owned, 90, "all partitions owned and workers ready", interval=0.5)
    wait_for(lambda: c.caught_up([w.data for w in ws]), 120, "ingestion to catch up", interval=0.5)
    _, text = c.end_offsets()
    o = Oracle(nparts=NPARTS)
    parts = {}
    for line in text.splitlines():
        rec = json.loads(line)
        o.feed(rec["partition"], rec["offset"], rec["value"].encode(), rec["timestamp"])
        parts[rec["key"]] = rec["partition"]
    return ws, o, parts


def query_all(ws, user, qs):
    bodies = []
    for w in ws:
        st, _, body = http_get("%s/v1/profiles/%s?%s" % (w.url, urllib.parse.quote(user, safe=""), qs))
        bodies.append((st, body))
    return bodies


def test_query_every_user_every_worker():
    with cluster(partitions=NPARTS) as c:
        ws, o, parts = setup(c)
        t = today()
        users = sorted({u for (u, d) in o.raw})
        check(len(users) > 50, "too few users: %d" % len(users))
        variants = [
            ("", {}),
            ("days=2", {"frm": t - 1, "to": t}),
            ("dims=color,price,make", {"dims": ["make", "color", "price"]}),
            ("from=%s&to=%s" % (day_str(t - 3), day_str(t - 1)), {"frm": t - 3, "to": t - 1}),
            ("breakdown=day&dims=fuel,mileage", {"breakdown": True, "dims": ["fuel", "mileage"]}),
            ("decay=exp:2", {"decay": ("exp", 2.0)}),
            ("decay=linear:4&dims=price", {"decay": ("linear", 4.0), "dims": ["price"]}),
            ("top=3&dims=model,color", {"top": 3, "dims": ["model", "color"]}),
            ("top=2&decay=exp:1&breakdown=day", {"top": 2, "decay": ("exp", 1.0), "breakdown": True}),
            # point in time: the range and the decay ages count back from at
            ("at=%s&days=2&decay=linear:3" % day_str(t - 1),
             {"frm": t - 2, "to": t - 1, "today": t - 1, "decay": ("linear", 3.0), "at": t - 1}),
            ("at=%s&top=2" % day_str(t - 2), {"frm": t - 2 - 60 + 1, "to": t - 2, "today": t - 2, "top": 2,
                                              "at": t - 2}),
        ]
        errs = []
        served = set()
        rnd = random.Random(3)
        for u in users:
            for qs, kw in variants:
                if qs and rnd.random() > 0.5:
                    continue  # every user gets the default query; others on a sample
                kw = dict(kw)
                frm = kw.pop("frm", t - 60 + 1)
                to = kw.pop("to", t)
                at = kw.pop("at", None)
                want = o.answer(u, frm, to, kw.pop("today", t), **kw)
                if want is not None and at is not None:
                    want["at"] = day_str(at)
                got = query_all(ws, u, qs)
                norm = set()
                for st, body in got:
                    if want is None:
                        if st != 404:
                            errs.append("%s?%s: expected 404, got %d" % (u, qs, st))
                        continue
                    if st != 200:
                        errs.append("%s?%s: status %d %s" % (u, qs, st, body[:200]))
                        continue
                    j = json.loads(body)
                    served.add(j.get("served_by"))
                    if j.get("partition") != parts.get(u):
                        errs.append("%s: partition %s, producer used %s" % (u, j.get("partition"), parts.get(u)))
                    j.pop("served_by", None)
                    norm.add(json.dumps(j, sort_keys=True))
                    e = []
                    close(want, j, "%s?%s" % (u, qs), e)
                    errs += e[:3]
                if len(norm) > 1:
                    errs.append("%s?%s: workers disagree" % (u, qs))
            if len(errs) > 20:
                break
        check(not errs, "%d mismatches:\n  %s" % (len(errs), "\n  ".join(errs[:15])))
        check(len(served) == 3, "answers came from %s, expected all three workers" % served)
        # Errors.
        w = ws[0]
        for qs, code in [("from=2026-13-01", 400), ("from=2026-11-10&to=2026-11-01", 400), ("dims=nope", 400),
                         ("decay=exp:-1", 400), ("days=abc", 400), ("bogus=1", 400), ("top=0", 400),
                         ("top=10001", 400), ("top=x", 400), ("at=2999-01-01", 400), ("at=yesterday", 400)]:
            st, _, body = http_get(w.url + "/v1/profiles/u-1?" + qs)
            check(st == code, "%s: %d %s" % (qs, st, body[:200]))
            check("error" in json.loads(body), "no JSON error for %s" % qs)
            if qs.startswith("top="):
                j = json.loads(body)
                check("expected an integer from 1 to 10000" in json.dumps(j), "top error message: %s" % body[:300])
        st, _, body = http_get(w.url + "/v1/profiles/" + "x" * 300)
        check(st == 400 and "error" in json.loads(body), "over-long user id: %d" % st)
        st, _, body = http_get(w.url + "/v1/profiles/nobody-at-all")
        check(st == 404 and "error" in json.loads(body), "unknown user: %d" % st)
        st, _, body = http_get(w.url + "/v1/nothing")
        check(st == 404, "unknown route: %d" % st)
        st, _, body = http_get(w.url + "/v1/profiles/u-1?x=" + "y" * 9000)
        check(st in (414, 431, 400), "huge URI: %d" % st)
        for w in ws:
            check(w.stop() == 0, "%s exit code" % w.name)
        # profilectl export --at: the same answers, from the stores (the
        # workers' copies overlap: owners and replicas must agree)
        at = t - 1
        got = {}
        for w in ws:
            r = c.ctl("export", "--data_dir", w.data, "--at", day_str(at), "--days", "3", "--decay", "linear:3",
                      "--top", "2")
            for line in r.stdout.decode().splitlines():
                j = json.loads(line)
                prev = got.setdefault(j["user_id"], j)
                check(prev == j, "stores disagree on %s" % j["user_id"])
        errs = []
        for u in users:
            want = o.answer(u, at - 2, at, at, decay=("linear", 3.0), top=2)
            if want is None:
                if u in got:
                    errs.append("export: %s has no events in range but was exported" % u)
                continue
            want["at"] = day_str(at)
            want.pop("stale", None)  # an export is no HTTP answer: no served_by, no stale
            if u not in got:
                errs.append("export: %s missing" % u)
                continue
            close(want, got[u], "export %s" % u, errs)
        check(not errs, "%d export mismatches:\n  %s" % (len(errs), "\n  ".join(errs[:10])))
        check(len(got) > 50, "export wrote %d users" % len(got))
        r = c.ctl("export", "--data_dir", ws[0].data, "--at", "2999-01-01", check_rc=False)
        check(r.returncode == 2 and b"after today" in r.stderr, "export of a future day: %r" % r.stderr)


def test_api_token():
    with cluster(partitions=2) as c:
        w = c.start_worker("w1", ["--api_token", "s3cret"])
        wait_for(lambda: http_get(w.url + "/readyz")[0] == 200, 60, "ready")
        st, h, body = http_get(w.url + "/v1/profiles/u-1")
        check(st == 401, "no token: %d" % st)
        st, h, body = http_get(w.url + "/v1/profiles/u-1", headers={"Authorization": "Bearer wrong"})
        check(st == 401, "wrong token: %d" % st)
        st, h, body = http_get(w.url + "/v1/profiles/u-1", headers={"Authorization": "Bearer s3cret"})
        check(st == 404, "right token, unknown user: %d" % st)
        check(http_get(w.url + "/healthz")[0] == 200, "healthz must stay open")
        check(w.stop() == 0, "exit code")


if __name__ == "__main__":
    main([test_query_every_user_every_worker, test_api_token])
