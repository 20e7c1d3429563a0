"""test_topk.py -- per-dimension caps, heavy hitters and top=K on a
non-vehicle schema (a music service: artist, album, track, genre,
duration), across three workers, a SIGKILL and a hand-off.

The input has ordinary listeners and "fans": each fan has one day with 200
artists played once and 4 artists played 40 times each (the user-day of
issue 19, whose favourites the former bottom-k cap folded into
__other__). Caps: artist 64, track 16 (both overflow), album 1000 (never),
genre the default. After ingestion -- with a worker SIGKILLed mid-stream
and restarted, and a third worker joining (partitions handed off by
snapshot) -- every user is queried at every worker (default answer,
top=4 of artists, top=10 with decay and a day breakdown) and compared
with tests/oracle.py's answer computed from the events read back from the
topic; each fan's top=4 artists are exactly its four favourites; then the
stores (profilectl dump) equal the oracle's day profiles.
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
from oracle import Oracle, day_of  # noqa: E402
from test_ingest import NPARTS, compare_state, read_topic, wait_caught_up  # noqa: E402
from test_query import close  # noqa: E402

DAY = 86400000
SCHEMA = {"dimensions": [
    {"name": "artist", "type": "categorical", "paths": ["track.artist"], "max_values": 64},
    {"name": "album", "type": "categorical", "paths": ["track.album"], "max_values": 1000},
    {"name": "track", "type": "categorical", "paths": ["track.title"], "max_values": 16},
    {"name": "genre", "type": "categorical", "paths": ["track.genre"]},
    {"name": "duration", "type": "numeric", "paths": ["track.duration"], "buckets": [60, 120, 180, 240, 300, 600]},
]}
ORACLE_SCHEMA = [("artist", "categorical", None, ["track.artist"]), ("album", "categorical", None, ["track.album"]),
                 ("track", "categorical", None, ["track.title"]), ("genre", "categorical", None, ["track.genre"]),
                 ("duration", "numeric", [60, 120, 180, 240, 300, 600], ["track.duration"])]
CAPS = {"artist": 64, "album": 1000, "track": 16}
GENRES = ["rock", "pop", "jazz", "techno", "folk", "metal", "soul", "blues"]
FAVOURITES = ["The Four", "Quartet Nights", "Big Star", "Echo & Co"]


def play(rnd, n, user, ts, artist, album=None):
    return {"event_id": "%s-%d" % (user, n), "user_id": user, "ts": ts, "type": rnd.choice(["play", "play", "skip", "like"]),
            "track": {"artist": artist, "album": album or "%s: album %d" % (artist, rnd.randrange(3)),
                      "title": "%s - song %d" % (artist, rnd.randrange(12)), "genre": rnd.choice(GENRES),
                      "duration": rnd.randrange(30, 700)}}


def build_events(seed, now):
    rnd = random.Random(seed)
    events = []
    n = 0
    # fans: one heavy day each (yesterday), favourites interleaved with singles
    for f in range(8):
        user = "fan-%d" % f
        base = now - DAY - 3600000
        plays = ["%s single %d" % (user, i) for i in range(200)] + FAVOURITES * 40
        rnd.shuffle(plays)
        for i, a in enumerate(plays):
            n += 1
            events.append(play(rnd, n, user, base + i * 1000, a))
    # ordinary listeners over three days, a Zipf-like artist pool
    pool = ["artist %d" % i for i in range(150)]
    wts = [1.0 / (i + 1) for i in range(150)]
    for u in range(160):
        user = "listener-%d" % u
        for _ in range(rnd.randrange(3, 70)):
            n += 1
            ts = now - rnd.randrange(10 * 60000, 2 * DAY)
            events.append(play(rnd, n, user, ts, rnd.choices(pool, wts)[0]))
    # repeats of delivered events (counted once: de-dup by event_id)
    events += [dict(e) for e in rnd.sample(events, 150)]
    rnd.shuffle(events)
    return events


def oracle_from_topic(c):
    o = Oracle(schema=ORACLE_SCHEMA, caps=CAPS, nparts=NPARTS)
    for r in read_topic(c, c.topic):
        o.feed(r["partition"], r["offset"], (r["value"] or "").encode(), r["timestamp"],
               r["headers"].get("profiled-origin"))
    return o


def compare_all(ws, o, today):
    users = sorted({u for (u, d) in o.raw})
    variants = [
        ("days=3", {}),
        ("days=3&top=4&dims=artist", {"top": 4, "dims": ["artist"]}),
        ("days=3&top=10&decay=exp:1&breakdown=day", {"top": 10, "decay": ("exp", 1.0), "breakdown": True}),
    ]
    errs = []
    compared = 0
    for u in users:
        for qs, kw in variants:
            want = o.answer(u, today - 2, today, today, **kw)
            bodies = set()
            for w in ws:
                st, _, body = http_get("%s/v1/profiles/%s?%s" % (w.url, urllib.parse.quote(u, safe=""), qs))
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
                e = []
                close(want, j, "%s?%s@%s" % (u, qs, w.name), e)
                errs += e[:3]
                compared += 1
            if len(bodies) > 1:
                errs.append("%s?%s: workers disagree" % (u, qs))
        if len(errs) > 20:
            break
    check(not errs, "%d mismatches with the oracle:\n  %s" % (len(errs), "\n  ".join(errs[:15])))
    # the user-day: the four favourites are the top 4
    for f in range(8):
        st, _, body = http_get("%s/v1/profiles/fan-%d?days=3&top=4&dims=artist" % (ws[f % len(ws)].url, f))
        check(st == 200, "fan-%d: %d" % (f, st))
        d = json.loads(body)["dimensions"]["artist"]
        got = sorted(e["value"] for e in d["top"])
        check(got == sorted(FAVOURITES), "fan-%d top=4 artists %s, expected the favourites" % (f, got))
        check(d["approximate"] is True, "fan-%d: an overflowed day must be marked approximate" % f)
        check(d["total"] == 360, "fan-%d: artist total %s, expected 360 (all values)" % (f, d["total"]))
    return compared


def expected_schema():
    """The canonical form of SCHEMA as docs/data-model.md defines it,
    written out here from the file's keys and the documented defaults
    (categorical cap 64, recent items on: 10, item.id, no attributes)."""
    dims = []
    for d in SCHEMA["dimensions"]:
        e = {"name": d["name"], "type": d["type"], "paths": d.get("paths", ["item." + d["name"], "filters." + d["name"]])}
        if d["type"] == "categorical":
            e["max_values"] = d.get("max_values", 64)
        else:
            e["buckets"] = [float(b) for b in d["buckets"]]
        dims.append(e)
    return {"categorical_max_values": 64, "dimensions": dims,
            "recent": {"max": 10, "item_id": "item.id", "attributes": []}}


def check_schema(c, w, schema_path):
    """GET /v1/schema is SCHEMA with its defaults filled in; its
    fingerprint is the one `profilectl schema` gives for the file and for
    the worker's store, and the canonical text loads back to itself."""
    st, _, body = http_get(w.url + "/v1/schema")
    check(st == 200, "GET /v1/schema: %d %r" % (st, body[:200]))
    got = json.loads(body)
    check(got["schema"] == expected_schema(), "GET /v1/schema:\n%s\nexpected\n%s" % (got["schema"], expected_schema()))
    fp = got["fingerprint"]
    check(len(fp) == 16 and int(fp, 16) >= 0, "fingerprint %r" % fp)
    for args in (["--schema", schema_path], ["--data-dir", w.data]):
        d = json.loads(c.ctl("schema", "--format", "json", *args).stdout)
        check(d == got, "profilectl schema %s differs from GET /v1/schema: %s" % (args[0], d))
    canon = os.path.join(c.dir, "canonical.json")
    with open(canon, "wb") as f:
        f.write(c.ctl("schema", "--schema", schema_path).stdout)
    d = json.loads(c.ctl("schema", "--format", "json", "--schema", canon).stdout)
    check(d == got, "the canonical schema does not load back to itself: %s" % d)


def test_music_topk_kill_handoff():
    with cluster(partitions=NPARTS) as c:
        schema = os.path.join(c.dir, "music.json")
        with open(schema, "w") as f:
            json.dump(SCHEMA, f)
        now = int(time.time() * 1000)
        events = build_events(7, now)
        thirds = [events[i::3] for i in range(3)]
        paths = []
        for i, part in enumerate(thirds):
            p = os.path.join(c.dir, "music%d.jsonl" % i)
            with open(p, "w") as f:
                for e in part:
                    f.write(json.dumps(e) + "\n")
            paths.append(p)
        args = ["--schema", schema, "--cleanup_grace", "2s"]
        w1 = c.start_worker("w1", args)
        w2 = c.start_worker("w2", args)
        check_schema(c, w2, schema)
        out = c.produce_file(paths[0])
        check("failed=0" in out, out)

        def owning(group):
            """Each worker of the group ready and owning partitions, all of
            them between them (the group has settled)."""
            owned = []
            for w in group:
                if http_get(w.url + "/readyz")[0] != 200:
                    return False
                st, _, b = http_get(w.url + "/v1/partitions")
                mine = json.loads(b)["self"]["owned"] if st == 200 else []
                if not mine:
                    return False
                owned += mine
            return sorted(owned) == list(range(NPARTS))
        # w1 owns partitions when it is killed, and the group has settled
        # without w3 before it joins: otherwise a first rebalance that
        # includes w3 moves nothing (CI saw that: "no partition was handed
        # off by snapshot")
        wait_for(lambda: owning([w1, w2]), 90, "w1 and w2 to own every partition", interval=0.5)
        # SIGKILL w1 while the second third arrives, then restart it
        prod = c._start("producer", [PROFILECTL, "produce", "--brokers", c.bootstrap, "--topic", c.topic,
                                     "--file", paths[1], "--rate", "4000", "--quiet"])
        time.sleep(1.5)
        check(w1.alive(), "w1 died:\n" + w1.tail())
        w1.kill9()
        wait_for(lambda: not prod.alive(), 60, "producer to finish")
        check(prod.p.returncode == 0, "producer failed")
        w1 = c.start_worker("w1", args)
        wait_for(lambda: owning([w1, w2]), 90, "w1 (restarted) and w2 to own every partition", interval=0.5)
        # a third worker joins: it has no copy, so partitions move to it by snapshot
        w3 = c.start_worker("w3", args)
        out = c.produce_file(paths[2])
        check("failed=0" in out, out)
        ws = [w1, w2, w3]
        wait_caught_up(c, [w.data for w in ws], timeout=180)

        def settled():
            for w in ws:
                if http_get(w.url + "/readyz")[0] != 200:
                    return False
                st, _, b = http_get(w.url + "/v1/partitions")
                owners = json.loads(b)["owners"] if st == 200 else []
                if len(owners) != NPARTS or any(not x.get("owner") for x in owners):
                    return False
            return True
        wait_for(settled, 90, "every worker ready and every partition owned", interval=0.5)
        wait_caught_up(c, [w.data for w in ws], timeout=120)
        o = oracle_from_topic(c)
        check(o.outcomes.get("duplicate", 0) >= 100, "too few duplicates: %s" % o.outcomes)
        today = day_of(now)
        overflowed = sum(1 for (u, d), p in o.raw.items() if len(p["cat"].get("artist", {})) > 64)
        check(overflowed >= 8, "only %d overflowed artist user-days" % overflowed)
        n = compare_all(ws, o, today)
        restores = 0
        for w in ws:
            _, _, m = http_get(w.url + "/metrics")
            for line in m.decode().splitlines():
                if line.startswith("profiled_restores_total "):
                    restores += int(float(line.split()[1]))
        check(restores > 0, "no partition was handed off by snapshot")
        print("  %d answers compared, %d overflowed artist user-days, %d snapshot restores" % (n, overflowed, restores))
        check(all(w.stop() == 0 for w in ws), "graceful stop failed")
        compare_state(c, o, [w.data for w in ws])


if __name__ == "__main__":
    main([test_music_topk_kill_handoff])
