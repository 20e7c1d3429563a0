"""test_faults.py -- careless producers and unlucky operators (issue 22).

Holes 1 and 2, end to end against the embedded broker, compared with the
independent oracle (tests/oracle.py) fed with the records read back from
the topic:

- one event of year 2199 per partition, in a record whose timestamp
  (CreateTime, set by the producer) matches it, used to move every
  partition clock to 2199: retention dropped every day, every later event
  was too_old, nothing reached the DLQ. Now each goes to the DLQ as
  future_timestamp; everything else equals the oracle, no day is dropped,
  and a rebuild from the topic decides the same;
- a client offline for days that retries its upload: 4 events 30-120 h
  old, each delivered twice within a second, used to be counted 6-7
  times (de-dup within an event-time window of the partition's newest
  event). Now once each (the window is measured on deliveries), also with
  kill -9 and restarts between and around the deliveries.
"""
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import PROFILECTL, check, main, wait_for  # noqa: E402
from lib import cluster  # noqa: E402
from oracle import partition_for  # noqa: E402
from test_ingest import (NPARTS, check_dlq, compare_state, generate, oracle_from_topic,  # noqa: E402
                         wait_caught_up)

HOUR = 3600000
Y2199 = 7258000000000          # 2199-12-30, inside the ts range (< 2200-01-01)


def write(path, lines):
    with open(path, "wb") as f:
        for l in lines:
            f.write(l.replace(b"\n", b" ") + b"\n")
    return path


def poison_events():
    """One year-2199 event per partition (user chosen by murmur2)."""
    out, p, i = {}, set(), 0
    while len(p) < NPARTS:
        uid = "u-2199-%d" % i
        i += 1
        q = partition_for(uid.encode(), NPARTS)
        if q in p:
            continue
        p.add(q)
        ev = {"event_id": "poison-%d" % q, "user_id": uid, "ts": Y2199, "type": "view",
              "item": {"make": "DeLorean", "price": 99999}}
        out[json.dumps(ev).encode()] = "future_timestamp"
    return out


def late_events(now_ms, tag):
    """4 events 30-120 h old with ids (a client that was offline)."""
    return [json.dumps({"event_id": "%s-%d" % (tag, h), "user_id": "u-%s-%d" % (tag, h % 7), "ts": now_ms - h * HOUR,
                        "type": "view", "item": {"make": "Skoda", "price": 15000 + h}}).encode()
            for h in (30, 60, 90, 120)]


def check_clocks(c, data_dir):
    """Every checkpointed partition clock is before now + max_future_skew."""
    r = c.ctl("offsets", "--data-dir", data_dir, "--format", "json")
    limit = int(time.time() * 1000) + HOUR
    for line in r.stdout.decode().splitlines():
        if line.strip():
            o = json.loads(line)
            check(0 < o["clock_ms"] <= limit, "partition %d clock %s" % (o["partition"], o.get("clock")))


def counted_once(c, o, data_dir, lines):
    """Each late event (one user each) counted once, in the store and in
    the oracle."""
    users = {json.loads(l)["user_id"] for l in lines}
    check(len(users) == len(lines), "late events share users")
    got = {u: 0 for u in users}
    for (uid, _), v in c.dump(data_dir).items():
        if uid in users:
            got[uid] += v["profile"]["events"]
    check(all(n == 1 for n in got.values()), "late events counted %s, want 1 each" % got)
    want = {u: 0 for u in users}
    for (uid, _), p in o.raw.items():
        if uid in users:
            want[uid] += p["events"]
    check(all(n == 1 for n in want.values()), "oracle counted the late events %s" % want)


def test_future_record_timestamp_poison():
    with cluster(partitions=NPARTS) as c:
        lines = generate(c, os.path.join(c.dir, "gen.jsonl"), 6000, 400, 61)
        half = len(lines) // 2
        poison = poison_events()
        w = c.start_worker("w1")
        out = c.produce_file(write(os.path.join(c.dir, "a.jsonl"), lines[:half]))
        check("failed=0" in out, "produce: %s" % out)
        # the poison: record timestamp = the event's ts (year 2199)
        out = c.produce_file(write(os.path.join(c.dir, "p.jsonl"), list(poison)), ["--timestamp_field", "ts"])
        check("failed=0" in out, "produce: %s" % out)
        out = c.produce_file(write(os.path.join(c.dir, "b.jsonl"), lines[half:]))
        check("failed=0" in out, "produce: %s" % out)
        wait_caught_up(c, [w.data])
        check(w.stop() == 0, "worker exit")
        o = oracle_from_topic(c)
        check(o.outcomes.get("too_old", 0) == 0, "oracle: %s" % o.outcomes)
        check_dlq(c, o, poison)
        compare_state(c, o, [w.data])      # every user, every retained day
        check_clocks(c, w.data)
        # a rebuild from the topic replays the poison and decides the same
        w2 = c.start_worker("w2")
        wait_caught_up(c, [w2.data])
        check(w2.stop() == 0, "worker 2 exit")
        compare_state(c, o, [w2.data])
        check_clocks(c, w2.data)


def test_late_retry_counts_once():
    with cluster(partitions=NPARTS) as c:
        lines = generate(c, os.path.join(c.dir, "gen.jsonl"), 4000, 300, 62)
        now = int(time.time() * 1000)
        late = late_events(now, "late")
        w = c.start_worker("w1")
        out = c.produce_file(write(os.path.join(c.dir, "a.jsonl"), lines[:2000]))
        check("failed=0" in out, "produce: %s" % out)
        # each delivered twice within a second (one producer run)
        out = c.produce_file(write(os.path.join(c.dir, "l.jsonl"), late + late))
        check("failed=0" in out, "produce: %s" % out)
        out = c.produce_file(write(os.path.join(c.dir, "b.jsonl"), lines[2000:]))
        check("failed=0" in out, "produce: %s" % out)
        wait_caught_up(c, [w.data])
        check(w.stop() == 0, "worker exit")
        o = oracle_from_topic(c)
        compare_state(c, o, [w.data])
        counted_once(c, o, w.data, late)


def test_late_retry_across_kill9():
    with cluster(partitions=NPARTS) as c:
        lines = generate(c, os.path.join(c.dir, "gen.jsonl"), 12000, 800, 63)
        now = int(time.time() * 1000)
        late_a = late_events(now, "lka")      # first delivery before a kill, retry after it
        late_b = late_events(now, "lkb")      # both deliveries while kills land
        rnd = random.Random(63)
        w = c.start_worker("w1")
        out = c.produce_file(write(os.path.join(c.dir, "a.jsonl"), lines[:3000] + late_a))
        check("failed=0" in out, "produce: %s" % out)
        wait_caught_up(c, [w.data])
        w.kill9()
        out = c.produce_file(write(os.path.join(c.dir, "r.jsonl"), late_a))
        check("failed=0" in out, "produce: %s" % out)
        # the rest at a bounded rate, with late_b's pairs inside, while the
        # worker is killed and restarted
        rest = lines[3000:]
        pos = len(rest) // 3
        rest = rest[:pos] + late_b + late_b + rest[pos:]
        path = write(os.path.join(c.dir, "rest.jsonl"), rest)
        prod = c._start("producer", [PROFILECTL, "produce", "--brokers", c.bootstrap, "--topic", c.topic,
                                     "--file", path, "--rate", "3000", "--quiet"])
        kills = 1
        for _ in range(3):
            w = c.start_worker("w1")
            time.sleep(rnd.uniform(0.5, 1.5))
            check(w.alive(), "worker died:\n" + w.tail())
            w.kill9()
            kills += 1
        wait_for(lambda: not prod.alive(), 60, "producer to finish")
        check(prod.p.returncode == 0, "producer failed")
        w = c.start_worker("w1")
        wait_caught_up(c, [w.data], timeout=180)
        check(w.stop() == 0, "worker exit")
        o = oracle_from_topic(c)
        compare_state(c, o, [w.data])
        counted_once(c, o, w.data, late_a)
        counted_once(c, o, w.data, late_b)
        check(kills >= 4, "killed %d times" % kills)


if __name__ == "__main__":
    main([test_future_record_timestamp_poison, test_late_retry_counts_once, test_late_retry_across_kill9])
