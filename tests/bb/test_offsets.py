"""test_offsets.py -- offsets that jump or go backwards are detected, reported
loudly and handled by the documented policy (issue 22, hole 4;
docs/operations.md, "Offsets"):
  - a gap: Kafka's retention deleted records past a stopped worker's
    checkpoint. The worker goes on from the topic's first offset and flags
    the partition (log, metrics, /readyz offset_gap); the state equals the
    oracle fed with what it read before and what is left after the gap.
  - backwards: the topic was recreated (a fresh broker, same topic name,
    fewer records). The worker refuses those partitions (not ready,
    /readyz failing + offsets_backwards, metric, error log, nothing
    counted); restarted with offsets_backwards=continue it keeps its state
    and reads the new topic from its start: state = oracle(old + new).
The embedded broker (librdkafka 2.0.2's mock) has no DeleteRecords; it
trims a partition's log beyond 5 MiB, which moves its low watermark."""
import base64
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import PROFILECTL, check, cluster, http_get, main, wait_for, metric  # noqa: E402
from oracle import Oracle, partition_for  # noqa: E402
from test_ingest import NPARTS, compare_state, read_topic, wait_caught_up  # noqa: E402


def users_of(p, n):
    out, i = [], 0
    while len(out) < n:
        u = "u-off-%d" % i
        i += 1
        if partition_for(u.encode(), NPARTS) == p:
            out.append(u)
    return out


def events(users, n, start_ms, pad=0, tag="e"):
    out = []
    for i in range(n):
        ev = {"event_id": "%s-%d" % (tag, i), "user_id": users[i % len(users)], "ts": start_ms + i,
              "type": "view", "item": {"make": ["Audi", "BMW", "Fiat"][i % 3], "price": 1000 + i}}
        if pad:
            ev["pad"] = "x" * pad
        out.append(json.dumps(ev).encode())
    return out


def produce_to(bootstrap, topic, values, partition):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, v in enumerate(values):
        while True:
            try:
                p.produce(topic, value=v, partition=partition)
                break
            except BufferError:
                p.poll(0.05)
        if i % 500 == 0:
            p.poll(0)
    check(p.flush(60) == 0, "producer did not deliver everything")


def feed(o, recs, min_offset=None):
    for r in recs:
        if min_offset is not None and r["offset"] < min_offset.get(r["partition"], 0):
            continue
        val = base64.b64decode(r["value_base64"]) if "value_base64" in r else (r["value"] or "").encode("utf-8")
        o.feed(r["partition"], r["offset"], val, r["timestamp"], r["headers"].get("profiled-origin"))


def readyz(w):
    status, _, body = http_get(w.url + "/readyz")
    return status, json.loads(body)



def test_retention_gap_flagged():
    """Worker stopped; 7,000 records of 1 KB go to partition 0, the broker
    trims the oldest (low watermark past the checkpoint); restarted, the
    worker flags partition 0 offset_gap (/readyz, profiled_partitions,
    profiled_offset_errors_total{kind="gap"}, the records lost in
    profiled_offset_gap_records_total, an error line naming the offsets)
    and its state equals the oracle fed with the records read before and
    the records from the low watermark on. Fails on the code that let
    librdkafka reset the position (auto.offset.reset=earliest): nothing
    flagged."""
    with cluster(partitions=NPARTS) as c:
        now = int(time.time() * 1000)
        u0 = users_of(0, 60)
        first = events(u0, 300, now - 3600000, tag="a")
        for p in range(1, NPARTS):
            first += events(users_of(p, 20), 60, now - 3500000, tag="b%d" % p)
        path = os.path.join(c.dir, "first.jsonl")
        with open(path, "wb") as f:
            f.write(b"\n".join(first) + b"\n")
        c.produce_file(path)
        w = c.start_worker("w1")
        wait_caught_up(c, [w.data])
        check(w.stop() == 0, "stop failed")
        before = read_topic(c, c.topic)
        ckpt = c.offsets(w.data)[0]
        produce_to(c.bootstrap, c.topic, events(u0, 7000, now - 1800000, pad=1000, tag="big"), 0)
        from confluent_kafka import Consumer, TopicPartition
        cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "probe"})
        lo, hi = cons.get_watermark_offsets(TopicPartition(c.topic, 0), timeout=10)
        cons.close()
        check(lo > ckpt, "the broker kept offset %d (low watermark %d): no gap to test" % (ckpt, lo))
        w = c.start_worker("w1")
        wait_caught_up(c, [w.data], timeout=180)
        st, rz = readyz(w)
        check(rz.get("offset_gap") == [0], "/readyz offset_gap %r (%s)" % (rz.get("offset_gap"), rz))
        check(st == 200, "/readyz %d: a gap leaves the partition served" % st)
        check(metric(w, "profiled_offset_errors_total", '{kind="gap"}') == 1, "gap metric")
        check(metric(w, "profiled_offset_gap_records_total") == lo - ckpt,
              "gap records %d, want %d" % (metric(w, "profiled_offset_gap_records_total"), lo - ckpt))
        check(metric(w, "profiled_partitions", '{state="offset_gap"}') == 1, "offset_gap gauge")
        check(w.stop() == 0, "stop failed")
        log = open(w.log_path, "rb").read().decode(errors="replace")
        check("deleted offsets %d..%d" % (ckpt, lo - 1) in log, "no error line naming the lost offsets")
        o = Oracle(nparts=NPARTS)
        feed(o, before)
        feed(o, [r for r in read_topic(c, c.topic) if r["partition"] == 0 and r["offset"] >= lo])
        compare_state(c, o, [w.data])
        print("  (checkpoint %d, low watermark %d: %d records lost to retention, flagged)" % (ckpt, lo, lo - ckpt))


def test_topic_recreated_refused_then_continued():
    """A worker's topic is recreated (a fresh broker with the same topic
    and 150 records per partition, its checkpoints are at 300): the worker
    refuses every partition (/readyz 503 failing with offsets_backwards,
    profiled_offset_errors_total{kind="backwards"}, an error line, state
    untouched: nothing counted as stale). Restarted with
    offsets_backwards=continue it keeps its state and reads the new topic
    from offset 0: every user equals the oracle fed with the old topic then
    the new one. Fails on the code that reset to earliest: the 600 new
    records dropped as stale_offset, ready."""
    with cluster(partitions=NPARTS) as c:
        now = int(time.time() * 1000)
        # 30 h back: always another day than the new events (2 days x 60 users: compare_state wants > 100 profiles)
        old = {p: events(users_of(p, 15), 300, now - 30 * 3600000, tag="old%d" % p) for p in range(NPARTS)}
        for p in range(NPARTS):
            produce_to(c.bootstrap, c.topic, old[p], p)
        w = c.start_worker("w1")
        wait_caught_up(c, [w.data])
        check(w.stop() == 0, "stop failed")
        before = read_topic(c, c.topic)
        ckpts = c.offsets(w.data)
        check(all(ckpts[p] == 300 for p in range(NPARTS)), "checkpoints %r" % ckpts)
        # the topic recreated: a fresh broker, same name, fewer records
        c.broker.stop()
        c.broker = c._start("broker2", [PROFILECTL, "broker", "--partitions", str(NPARTS), "--topics", c.topic])
        c.bootstrap = c.broker.readline(30).strip()
        new = {p: events(users_of(p, 15), 150, now - 600000, tag="new%d" % p) for p in range(NPARTS)}
        for p in range(NPARTS):
            produce_to(c.bootstrap, c.topic, new[p], p)
        w = c.start_worker("w1")
        wait_for(lambda: readyz(w)[1].get("offsets_backwards") == list(range(NPARTS)), 60,
                 "every partition refused as offsets_backwards", interval=0.5)
        st, rz = readyz(w)
        check(st == 503 and rz.get("status") == "failing", "/readyz %d %r" % (st, rz))
        check(metric(w, "profiled_offset_errors_total", '{kind="backwards"}') == NPARTS, "backwards metric")
        check(metric(w, "profiled_events_total", '{outcome="stale_offset"}') in (0, -1), "records dropped as stale")
        time.sleep(1.5)
        check(c.offsets(w.data) == ckpts, "checkpoints moved while refused: %r" % c.offsets(w.data))
        check(w.stop() == 0, "stop failed")
        log = open(w.log_path, "rb").read().decode(errors="replace")
        check("beyond the end of topic" in log and "offsets_backwards=rebuild or =continue" in log,
              "no error line for the recreated topic")
        # the operator decides: keep the state, go on from the new start
        w = c.start_worker("w1", ["--offsets_backwards", "continue"])
        ends = c.watermarks()
        wait_for(lambda: readyz(w)[0] == 200 and c.offsets(w.data) == ends, 60,
                 "the new topic read from its start", interval=0.5)
        st, rz = readyz(w)
        check(st == 200 and not rz.get("offsets_backwards"), "/readyz after continue %d %r" % (st, rz))
        check(w.stop() == 0, "stop failed")
        o = Oracle(nparts=NPARTS)
        feed(o, before)
        feed(o, read_topic(c, c.topic))
        compare_state(c, o, [w.data])


if __name__ == "__main__":
    main([test_retention_gap_flagged, test_topic_recreated_refused_then_continued])
