"""test_signals.py -- per-type tracks and weights (issue 19 item 3) and
recent items (item 4) across workers, a SIGKILL mid-ingest and a hand-off.

A marketplace schema tracks "park" (favourite) and "contact"; users view,
park, contact, search and share listings over three days, with repeated
deliveries (de-dup) and a small cap on "model" so that some user-days
overflow it. Two workers ingest the first third; w1 is SIGKILLed while the
second third arrives and restarted; a third worker joins (partitions move
to it by snapshot) and the last third arrives. Then every user is queried
at every worker with types=, weights= (with decay, a day breakdown, top=K,
dims=) and the plain query, and each answer is compared with
tests/oracle.py's answer_signals, which counts every event with the weight
of its type straight from the events read back from the topic (not from
the server's all-minus-tracked formula). Where a day overflowed a cap the
server says "approximate" and only the exact total is compared. Bad
types=/weights= get a 400 naming the problem. The schema keeps the 5
most recent events per user-day (item.id -- a string, or a number for
some -- make and price): every answer's "recent" is the oracle's 5 newest
events of the range (of the types that count), by time then occurrence
key, then (one user's events without an id at one time) the item's
encoded bytes. Finally the stores (profilectl dump, with their "tracked"
sub-profiles and "recent" items) equal the oracle's.

test_recent_off_and_the_default: the same schema with "recent": {"max":
0} keeps none (answers and dump against the oracle with recent off), and
its store is refused under the schema without the key (the default, on).
"""
import json
import os
import random
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import cluster, PROFILECTL, check, http_get, main, wait_for  # noqa: E402
from oracle import Oracle, day_of, day_str, partition_for  # noqa: E402
from test_ingest import NPARTS, compare_state, owner_dirs, read_topic, wait_caught_up  # noqa: E402
from test_query import close  # noqa: E402

DAY = 86400000
TRACKED = ["park", "contact"]
SCHEMA = {"dimensions": [
    {"name": "make", "type": "categorical"},
    {"name": "model", "type": "categorical", "max_values": 4},
    {"name": "color", "type": "categorical"},
    {"name": "price", "type": "numeric", "buckets": [5000, 10000, 20000, 40000]},
    {"name": "year", "type": "numeric", "buckets": [2010, 2015, 2020]},
], "tracked_types": TRACKED, "recent": {"max": 5, "item_id": "item.id", "attributes": ["make", "price"]}}
RECENT = SCHEMA["recent"]
ORACLE_SCHEMA = [("make", "categorical", None), ("model", "categorical", None), ("color", "categorical", None),
                 ("price", "numeric", [5000, 10000, 20000, 40000]), ("year", "numeric", [2010, 2015, 2020])]
CAPS = {"model": 4}
MAKES = ["BMW", "Audi", "VW", "Opel", "Fiat", "Kia", "Seat", "Skoda"]
COLORS = ["red", "blue", "black", "white", "grey"]
TYPES = ["view"] * 6 + ["park"] * 2 + ["contact", "search", "share"]

# (query string, answer_signals keyword arguments; None: the plain answer)
VARIANTS = [
    ("days=3", None),
    ("days=3&types=park,contact", {"types": ["park", "contact"]}),
    ("days=3&weights=view:1,park:3,contact:5", {"weights": {"view": 1, "park": 3, "contact": 5}}),
    ("days=3&types=contact&weights=contact:2&decay=exp:1&breakdown=day&dims=make,price",
     {"types": ["contact"], "weights": {"contact": 2}, "decay": ("exp", 1.0), "breakdown": True,
      "dims": ["make", "price"]}),
    ("days=3&weights=*:2,park:0&top=3&dims=make,model,price,year",
     {"weights": {"*": 2, "park": 0}, "top": 3, "dims": ["make", "model", "price", "year"]}),
    ("days=3&weights=park:0.5,contact:4,*:0.25&decay=linear:3",
     {"weights": {"park": 0.5, "contact": 4, "*": 0.25}, "decay": ("linear", 3.0)}),
    ("days=3&recent=2&breakdown=day&dims=make", {"recent": 2, "breakdown": True, "dims": ["make"]}),
    ("days=3&recent=0&types=park", {"recent": 0, "types": ["park"]}),
]


def build_events(seed, now):
    rnd = random.Random(seed)
    events = []
    n = 0
    for u in range(120):
        user = "buyer-%d" % u
        fav = rnd.choice(MAKES)
        for _ in range(rnd.randrange(2, 60)):
            n += 1
            t = rnd.choice(TYPES)
            item = {"id": "ad-%d" % rnd.randrange(400) if rnd.random() < 0.9 else rnd.randrange(400),
                    "make": fav if rnd.random() < 0.5 else rnd.choice(MAKES),
                    "model": "m%d" % rnd.randrange(12 if u % 3 else 3),
                    "color": rnd.choice(COLORS)}
            if rnd.random() < 0.9:
                item["price"] = rnd.randrange(2000, 60000)
            if rnd.random() < 0.8:
                item["year"] = rnd.randrange(2005, 2025)
            events.append({"event_id": "s-%d" % n, "user_id": user, "ts": now - rnd.randrange(10 * 60000, 2 * DAY),
                           "type": t, "item": item})
    events += [dict(e) for e in rnd.sample(events, 100)]   # repeated deliveries
    # events without an id at one time and type have one occurrence key:
    # their recent items are ordered by their encoded bytes (item id
    # length, then bytes; no id first), whatever the arrival order
    tie = now - 3600000
    for k, item in enumerate(["ad-%d" % i for i in (7, 12, 3, 100, 45)] + [31, None, "b"]):
        e = {"user_id": "buyer-tie", "ts": tie, "type": "view", "item": {"make": MAKES[k % 3]}}
        if item is not None:
            e["item"]["id"] = item
        events.append(e)
    rnd.shuffle(events)
    return events


def oracle_from_topic(c, recent=RECENT):
    o = Oracle(schema=ORACLE_SCHEMA, caps=CAPS, nparts=NPARTS, tracked=TRACKED, recent=recent)
    for r in read_topic(c, c.topic):
        o.feed(r["partition"], r["offset"], (r["value"] or "").encode(), r["timestamp"],
               r["headers"].get("profiled-origin"))
    return o


def strip_inexact(want, got):
    """Where the oracle marks a dimension's counts not comparable (a day
    overflowed a cap), drop counts/shares/top from both sides."""
    if isinstance(want, dict) and isinstance(got, dict):
        if want.pop("counts_exact", True) is False:
            for k in ("counts", "shares", "top"):
                got.pop(k, None)
        for k, v in want.items():
            if k in got:
                strip_inexact(v, got[k])
    elif isinstance(want, list) and isinstance(got, list):
        for a, b in zip(want, got):
            strip_inexact(a, b)


def compare_all(ws, o, today):
    users = sorted({u for (u, d) in o.raw})
    errs = []
    compared = approx = 0
    for u in users:
        for qs, kw in VARIANTS:
            bodies = set()
            for w in ws:
                want = (o.answer(u, today - 2, today, today) if kw is None
                        else o.answer_signals(u, today - 2, today, today, **kw))
                st, _, body = http_get("%s/v1/profiles/%s?%s" % (w.url, urllib.parse.quote(u, safe=""), qs))
                if o.recent is None and "recent" in (kw or {}):  # a schema without recent items refuses recent=
                    if st != 400 or b"keeps no recent items" not in body:
                        errs.append("%s?%s at %s: expected 400, got %d %s" % (u, qs, w.name, st, body[:100]))
                    continue
                if want is None:
                    if st != 404:
                        errs.append("%s?%s at %s: expected 404, got %d" % (u, qs, w.name, st))
                    continue
                if st != 200:
                    errs.append("%s?%s at %s: %d %s" % (u, qs, w.name, st, body[:200]))
                    continue
                j = json.loads(body)
                j.pop("served_by", None)
                j.pop("partition", None)
                bodies.add(json.dumps(j, sort_keys=True))
                approx += '"approximate": true' in json.dumps(j)
                strip_inexact(want, j)
                e = []
                close(want, j, "%s?%s@%s" % (u, qs, w.name), e)
                errs += e[:3]
                compared += 1
            if len(bodies) > 1:
                errs.append("%s?%s: workers disagree" % (u, qs))
        if len(errs) > 20:
            break
    check(not errs, "%d mismatches with the oracle:\n  %s" % (len(errs), "\n  ".join(errs[:15])))
    check(approx > 0, "no answer was approximate: the model cap never overflowed")
    return compared


def metric_total(w, name):
    _, _, m = http_get(w.url + "/metrics")
    return sum(float(line.split()[1]) for line in m.decode().splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def check_bad_requests(w):
    cases = [
        ("types=view", "'view' is not a tracked event type (tracked: park, contact)"),
        ("types=park,nope", "'nope' is not a tracked event type"),
        ("weights=search:2", "'search' is not a tracked event type"),
        ("weights=park:-1", "a weight is a number from 0 to 1e9"),
        ("weights=park:nan", "a weight is a number"),
        ("weights=park", "expected type:weight"),
        ("weights=park:1,park:2", "given more than once"),
        ("types=", "empty list"),
        ("recent=6", "parameter 'recent': expected an integer from 0 to 5 (the schema's recent max), got '6'"),
        ("recent=x", "parameter 'recent': expected an integer from 0 to 5"),
    ]
    cases = [("/v1/profiles/buyer-1?" + qs, msg) for qs, msg in cases] + [
        ("/v1/population?recent=1", "parameter 'recent': the population keeps no recent items"),
        ("/v1/profiles/buyer-1/affinities?recent=1", "parameter 'recent' is not supported here"),
    ]
    for qs, msg in cases:
        st, _, body = http_get(w.url + qs)
        check(st == 400, "%s: %d, expected 400" % (qs, st))
        detail = json.loads(body).get("detail", "")
        check(msg in detail, "%s: detail %r does not say %r" % (qs, detail, msg))


def test_signals_kill_handoff():
    with cluster(partitions=NPARTS) as c:
        schema = os.path.join(c.dir, "market.json")
        with open(schema, "w") as f:
            json.dump(SCHEMA, f)
        now = int(time.time() * 1000)
        events = build_events(11, now)
        paths = []
        for i in range(3):
            p = os.path.join(c.dir, "market%d.jsonl" % i)
            with open(p, "w") as f:
                for e in events[i::3]:
                    f.write(json.dumps(e) + "\n")
            paths.append(p)
        args = ["--schema", schema, "--cleanup_grace", "2s"]
        w1 = c.start_worker("w1", args)
        w2 = c.start_worker("w2", args)

        def settled(ws):
            for w in ws:
                if http_get(w.url + "/readyz")[0] != 200:
                    return False
                st, _, b = http_get(w.url + "/v1/partitions")
                owners = json.loads(b)["owners"] if st == 200 else []
                if len(owners) != NPARTS or any(not x.get("owner") for x in owners):
                    return False
            return True
        # the workers own the partitions before anything arrives, so the
        # kill below hits a worker with state
        wait_for(lambda: settled([w1, w2]), 90, "w1 and w2 ready, every partition owned", interval=0.5)
        out = c.produce_file(paths[0])
        check("failed=0" in out, out)
        # SIGKILL w1 while the second third arrives, then restart it
        prod = c._start("producer", [PROFILECTL, "produce", "--brokers", c.bootstrap, "--topic", c.topic,
                                     "--file", paths[1], "--rate", "2000", "--quiet"])
        time.sleep(1.0)
        check(w1.alive(), "w1 died:\n" + w1.tail())
        w1.kill9()
        wait_for(lambda: not prod.alive(), 60, "producer to finish")
        check(prod.p.returncode == 0, "producer failed")
        # w2 takes w1's partitions over by promoting its warm replicas (no
        # snapshot, no rebuild); its answers, every variant, are the oracle's
        wait_for(lambda: http_get(w2.url + "/readyz")[0] == 200 and set(
            json.loads(http_get(w2.url + "/v1/partitions")[2])["self"]["owned"]) == set(range(NPARTS)),
            90, "w2 owning every partition (its replicas promoted)", interval=0.5)
        wait_caught_up(c, [w2.data], timeout=120)
        check(metric_total(w2, "profiled_restores_total") + metric_total(w2, "profiled_rebuilds_total") == 0,
              "w2 restored or rebuilt a partition instead of promoting its replica")
        print("  %d answers compared at w2 after the promotion" % compare_all([w2], oracle_from_topic(c), day_of(now)))
        w1 = c.start_worker("w1", args)
        # a third worker joins: partitions move to it by snapshot
        w3 = c.start_worker("w3", args)
        wait_for(lambda: settled([w1, w2, w3]) and json.loads(http_get(w3.url + "/v1/partitions")[2])["self"]["owned"],
                 90, "w3 owning a partition", interval=0.5)
        out = c.produce_file(paths[2])
        check("failed=0" in out, out)
        ws = [w1, w2, w3]
        wait_caught_up(c, [w.data for w in ws], timeout=180)
        wait_for(lambda: settled(ws), 90, "every worker ready and every partition owned", interval=0.5)
        wait_caught_up(c, [w.data for w in ws], timeout=120)
        o = oracle_from_topic(c)
        check(o.outcomes.get("duplicate", 0) >= 50, "too few duplicates: %s" % o.outcomes)
        today = day_of(now)
        n = compare_all(ws, o, today)
        check_bad_requests(w2)
        restores = 0
        for w in ws:
            _, _, m = http_get(w.url + "/metrics")
            for line in m.decode().splitlines():
                if line.startswith("profiled_restores_total "):
                    restores += int(float(line.split()[1]))
        check(restores > 0, "no partition was handed off by snapshot")
        print("  %d answers compared, %d snapshot restores" % (n, restores))
        check(all(w.stop() == 0 for w in ws), "graceful stop failed")
        compare_state(c, o, [w.data for w in ws])
        check_export(c, o, ws, today)


def check_export(c, o, ws, today):
    """profilectl export --weights/--types: the oracle's answers (with
    "at", without stale), each user from the store that owns its
    partition (the others may keep a copy from before the hand-off)."""
    owners = owner_dirs(c, [w.data for w in ws])
    for flags, kw in ((["--weights", "view:1,park:3,contact:5"], {"weights": {"view": 1, "park": 3, "contact": 5}}),
                      (["--types", "contact", "--recent", "1"], {"types": ["contact"], "recent": 1})):
        got = {}
        for d in sorted(set(owners.values())):
            r = c.ctl("export", "--data_dir", d, "--at", day_str(today), "--days", "3", *flags)
            for line in r.stdout.decode().splitlines():
                j = json.loads(line)
                if owners.get(partition_for(j["user_id"].encode(), NPARTS)) == d:
                    got[j["user_id"]] = j
        errs = []
        for u in sorted({u for (u, d) in o.raw}):
            want = o.answer_signals(u, today - 2, today, today, **kw)
            if want is None:
                continue
            want["at"] = day_str(today)
            want.pop("stale", None)
            if u not in got:
                errs.append("export %s: %s missing" % (flags, u))
                continue
            g = got[u]
            strip_inexact(want, g)
            close(want, g, "export %s %s" % (flags[1], u), errs)
        check(not errs, "%d export mismatches:\n  %s" % (len(errs), "\n  ".join(errs[:10])))
        check(len(got) > 50, "export wrote %d users" % len(got))


def test_recent_off_and_the_default():
    """"recent": {"max": 0} turns recent items off: one worker's answers
    (plain, types=/weights=, a day breakdown) and its store (dump) equal
    the oracle's with recent off -- no "recent" anywhere. Then the same
    store under the schema without the "recent" key (the default: 10 per
    user-day) is refused at start as another schema: the two differ in
    their fingerprints, so a store never mixes days with and without
    recent items."""
    with cluster(partitions=NPARTS) as c:
        off = dict(SCHEMA, recent={"max": 0})
        default = {k: v for k, v in SCHEMA.items() if k != "recent"}
        paths = {}
        for name, sch in (("off", off), ("default", default)):
            paths[name] = os.path.join(c.dir, "market-%s.json" % name)
            with open(paths[name], "w") as f:
                json.dump(sch, f)
        now = int(time.time() * 1000)
        inp = os.path.join(c.dir, "market.jsonl")
        with open(inp, "w") as f:
            for e in build_events(5, now):
                f.write(json.dumps(e) + "\n")
        w = c.start_worker("w1", ["--schema", paths["off"]])
        out = c.produce_file(inp)
        check("failed=0" in out, out)
        wait_caught_up(c, [w.data], timeout=120)
        wait_for(lambda: http_get(w.url + "/readyz")[0] == 200, 60, "w1 ready", interval=0.5)
        o = oracle_from_topic(c, recent=off["recent"])
        check(o.recent is None, "the oracle keeps recent items under max 0")
        n = compare_all([w], o, day_of(now))
        print("  %d answers compared (recent off)" % n)
        check(w.stop() == 0, "graceful stop failed")
        compare_state(c, o, [w.data])
        # the default schema is another schema for this store
        w = c.start_worker("w1", ["--schema", paths["default"]], wait_listen=False)
        wait_for(lambda: not w.alive(), 60, "w1 to exit under the default schema")
        w.stop()
        log = w.tail(80)
        check(w.p.returncode != 0, "w1 started on a recent-off store under the default schema")
        check("schema mismatch" in log, "refusal does not name the schema mismatch:\n" + log)


if __name__ == "__main__":
    main([test_signals_kill_handoff, test_recent_off_and_the_default])
