"""test_retention.py -- event-time retention and the de-dup window, end to end.

Events span 8 days with retention_days=3 and dedup_window=1h; late events
(older than the partition's retention floor) are appended, and some
event_ids are repeated both inside and outside the window. The stored
profiles must equal the oracle's (which applies the documented rules
independently), old day families must be dropped, and the worker's
counters must agree with the oracle's outcome counts.

The de-dup bound (dedup_max_ids = 50 per partition): every event is
delivered again after the whole input; only the last ids of each partition
are still remembered, the rest count twice, exactly as the oracle's
independent rule says, across a SIGKILL and restart in the middle.
"""
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lib import cluster, check, http_get, main, wait_for, TestFailure  # noqa: E402
from oracle import Oracle, day_str  # noqa: E402
import test_ingest as ti  # noqa: E402

DAY = 86400000
HOUR = 3600000


def test_retention_and_dedup_window():
    with cluster(partitions=ti.NPARTS) as c:
        now = int(time.time() * 1000)
        start = now - 8 * DAY
        r = c.ctl("generate", "6000", "--users", "300", "--days", "8", "--seed", "55", "--start_ts", str(start),
                  "--dup_rate", "0")
        lines = [l for l in r.stdout.splitlines() if l.strip()]
        rnd = random.Random(7)
        extra = []
        for i in range(40):                      # late: far below every partition's floor
            ev = json.loads(rnd.choice(lines[:500]))
            ev["event_id"] = "late-%d" % i
            extra.append(ev)
        # Repeats of the newest events (within the window of their partition's
        # clock): 1 min later is a duplicate, 3 h earlier is outside the window
        # and counts again.
        for ln in lines[-40:]:
            ev = json.loads(ln)
            extra += [dict(ev, ts=ev["ts"] + 60000), dict(ev, ts=ev["ts"] - 3 * HOUR)]
        lines += [json.dumps(e).encode() for e in extra]
        path = os.path.join(c.dir, "in.jsonl")
        open(path, "wb").write(b"\n".join(lines) + b"\n")
        w = c.start_worker("w1", ["--retention_days", "3", "--dedup_window", "1h"])
        c.produce_file(path)
        ti.wait_caught_up(c, [w.data])
        _, _, metrics = http_get(w.url + "/metrics")
        check(w.stop() == 0, "exit code")
        o = Oracle(nparts=ti.NPARTS, retention_days=3, dedup_window_ms=HOUR)
        for rec in ti.read_topic(c, c.topic):
            o.feed(rec["partition"], rec["offset"], rec["value"].encode(), rec["timestamp"])
        check(o.outcomes.get("too_old", 0) >= 40, "oracle: too few too-old events %s" % o.outcomes)
        check(o.outcomes.get("duplicate", 0) >= 20, "oracle: too few duplicates %s" % o.outcomes)
        ti.compare_state(c, o, [w.data])
        got = {}
        for line in metrics.decode().splitlines():
            if line.startswith("profiled_events_total{"):
                got[line.split('"')[1]] = int(float(line.split()[-1]))
        check(got.get("too_old") == o.outcomes.get("too_old"), "too_old %s vs oracle %s" % (got, o.outcomes))
        check(got.get("duplicate") == o.outcomes.get("duplicate"), "duplicate %s vs oracle %s" % (got, o.outcomes))
        # The de-dup index gauge: at least every id inside its partition's
        # window (the index must hold those), at most every id accepted.
        gauges = dict(l.split() for l in metrics.decode().splitlines()
                      if l.startswith("profiled_dedup_index_"))
        inside = sum(1 for (p, _), ts in o.seen.items() if ts >= o.clock[p] - HOUR)
        n = int(gauges.get("profiled_dedup_index_entries", "-1"))
        check(inside <= n <= len(o.seen), "dedup index entries %d, oracle: %d in window, %d ids" % (
            n, inside, len(o.seen)))
        check(int(gauges.get("profiled_dedup_index_bytes", "0")) >= n * 24, "dedup index bytes %s" % gauges)
        # Day families older than every partition's floor are gone.
        floor = o.drop_floor()
        r = c.ctl("days", "--data-dir", w.data, "--format", "json")
        days = [json.loads(l)["day"] for l in r.stdout.decode().splitlines() if l.strip()]
        check(days and min(days) >= day_str(floor), "days kept %s, floor %s" % (days, day_str(floor)))


def test_dedup_bound():
    with cluster(partitions=ti.NPARTS) as c:
        now = int(time.time() * 1000)
        r = c.ctl("generate", "1500", "--users", "200", "--days", "1", "--seed", "9", "--start_ts",
                  str(now - DAY), "--dup_rate", "0")
        lines = [l for l in r.stdout.splitlines() if l.strip()]
        first = os.path.join(c.dir, "first.jsonl")
        again = os.path.join(c.dir, "again.jsonl")
        open(first, "wb").write(b"\n".join(lines[:1000]) + b"\n")
        # the second half, then retries: of the newest 200 (a partition's
        # last 50 ids are remembered: mostly caught) and of the oldest 300
        # (forgotten: counted again)
        open(again, "wb").write(b"\n".join(lines[1000:] + lines[-200:] + lines[:300]) + b"\n")
        args = ["--dedup_max_ids", "50"]
        w = c.start_worker("w1", args)
        c.produce_file(first)
        ti.wait_caught_up(c, [w.data])
        w.kill9()
        w = c.start_worker("w1", args)
        c.produce_file(again)
        ti.wait_caught_up(c, [w.data])
        _, _, metrics = http_get(w.url + "/metrics")
        check(w.stop() == 0, "exit code")
        o = Oracle(nparts=ti.NPARTS, dedup_max_ids=50)
        for rec in ti.read_topic(c, c.topic):
            o.feed(rec["partition"], rec["offset"], rec["value"].encode(), rec["timestamp"])
        dup = o.outcomes.get("duplicate", 0)
        check(30 < dup <= 200, "the bound must both catch and miss retries: %s" % o.outcomes)
        ti.compare_state(c, o, [w.data])
        g = dict(l.split() for l in metrics.decode().splitlines()
                 if l.startswith("profiled_dedup_") or l.startswith("profiled_events_total{"))
        check(int(float(g.get('profiled_events_total{outcome="duplicate"}', "-1"))) == dup,
              "duplicates %s vs oracle %d" % (g, dup))
        check(float(g["profiled_dedup_evictions_total"]) > 0, "evictions counted: %s" % g)
        check(float(g["profiled_dedup_effective_window_seconds"]) < 86400, "effective window shrank: %s" % g)
        # per partition at most 4 x 64 table slots (24 B), a 50-slot ring and
        # the record list, plus the pending entries of a flush (3,000 at most)
        check(int(g["profiled_dedup_index_bytes"]) <= ti.NPARTS * (256 * 24 + 50 * 8 + 4096) + 3000 * 24,
              "de-dup memory bounded: %s" % g)


if __name__ == "__main__":
    main([test_retention_and_dedup_window, test_dedup_bound])
