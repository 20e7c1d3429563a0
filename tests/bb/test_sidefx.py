"""test_sidefx.py -- a promoted replica performs its dead owner's side
effects (issue 22, hole 3): records read by the replica while the owner was
down are dead-lettered and re-routed after the promotion, exactly once in
their right partition. Misrouted traffic comes from kcat's default (CRC32)
partitioner, malformed records from kcat with explicit partitions.
Oracle: tests/oracle.py fed from the topic itself; every misrouted record
must have a re-produced copy (profiled-origin header) in the topic, and the
DLQ must hold exactly the bad records (de-duplicated by source position)."""
import json
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import check, cluster, http_get, main, wait_for, metric  # noqa: E402
from oracle import Oracle, feed_topic, partition_for  # noqa: E402
from test_ingest import NPARTS, build_input, compare_state, group_committed, read_topic, wait_caught_up  # noqa: E402


def kcat_produce(c, lines, partition=None, headers=()):
    """Produces "key<TAB>value" lines with kcat (default partitioner:
    consistent_random, i.e. CRC32 of the key), or to one partition, with
    the given "name=value" headers."""
    args = ["kcat", "-P", "-b", c.bootstrap, "-t", c.topic, "-K", "\t"]
    if partition is not None:
        args += ["-p", str(partition)]
    for h in headers:
        args += ["-H", h]
    r = subprocess.run(args, input=b"\n".join(lines) + b"\n", capture_output=True, timeout=60)
    check(r.returncode == 0, "kcat failed: %s" % r.stderr.decode(errors="replace"))


def oracle_with_positions(c):
    """The oracle fed from the topic, plus the positions of the records it
    found misrouted and the origins of the re-produced copies."""
    o = Oracle(nparts=NPARTS)
    misrouted, origins = set(), set()
    for r, _, res in feed_topic(o, read_topic(c, c.topic)):
        if r["headers"].get("profiled-origin"):
            origins.add(r["headers"]["profiled-origin"])
        if res == "misrouted":
            misrouted.add((r["partition"], r["offset"]))
    return o, misrouted, origins


def check_dlq_exact(c, o):
    """The DLQ, de-duplicated by source position, holds exactly the oracle's
    bad records with the oracle's reasons."""
    seen = {}
    for r in read_topic(c, c.topic + ".dlq"):
        h = r["headers"]
        seen[(int(h["source_partition"]), int(h["source_offset"]))] = h["reason"]
    want = {(p, off): reason for p, off, reason in o.dlq}
    missing = sorted(set(want) - set(seen))
    extra = sorted(set(seen) - set(want))
    check(not missing, "%d bad record(s) not in the DLQ, e.g. %s" % (len(missing), missing[:5]))
    check(not extra, "%d DLQ record(s) for records the oracle accepts, e.g. %s" % (len(extra), extra[:5]))
    wrong = [(k, seen[k], want[k]) for k in want if seen[k] != want[k]]
    check(not wrong, "DLQ reasons differ from the oracle's: %s" % wrong[:5])



def produce_faults(c, mine, users=80):
    """While w1 is dead: 240 events of `users` users through kcat's CRC32
    partitioner (about 3 in 4 misrouted), 4 malformed records on each of
    w1's partitions, a valid and a malformed erasure on one of them."""
    rnd = random.Random(3)
    now = int(time.time() * 1000)
    lines = []
    for i in range(240):
        uid = "u-crc-%d" % (i % users)
        ev = {"user_id": uid, "ts": now - 60000 + i, "type": "view",
              "item": {"make": rnd.choice(["Audi", "BMW", "Fiat"]), "price": 10000 + i}}
        if i % 2:
            ev["event_id"] = "crc-%d" % i   # the others de-duplicate by their origin header
        lines.append(uid.encode() + b"\t" + json.dumps(ev).encode())
    kcat_produce(c, lines)
    for p in mine:
        kcat_produce(c, [b"k\t{broken", b"k\t[1]", b"k\t{\"user_id\":\"u\",\"type\":\"view\"}",
                         b"k\t{\"user_id\":\"u\",\"ts\":\"never\",\"type\":\"view\"}"], partition=p)
    # control records: a valid erasure of one of the dead owner's users
    # (never an event, never in the DLQ, also when redone) and a malformed
    # one (the DLQ, exactly once, as bad_erasure)
    victim = next(u for u in ("u-%d" % i for i in range(300)) if partition_for(u.encode(), NPARTS) in mine)
    vp = partition_for(victim.encode(), NPARTS)
    kcat_produce(c, [victim.encode() + b"\t" + json.dumps({"user_id": victim}).encode(),
                     b"k\t{\"user\":1}"], partition=vp, headers=["profiled-control=erase"])


def check_redone(c, w2, mine):
    """w2 owns every partition and checkpointed every end; the DLQ, the
    re-routes and every user equal the oracle. Stops w2."""
    wait_for(lambda: len(json.loads(http_get(w2.url + "/v1/partitions")[2])["self"]["owned"]) == NPARTS, 90,
             "w2 to own every partition")
    wait_caught_up(c, [w2.data], timeout=120)
    # and has redone (and checkpointed) every side effect up to there
    ends = c.watermarks()
    wait_for(lambda: all(metric(w2.url, "profiled_sidefx_frontier", '{partition="%d"}' % p) >= ends[p]
                         for p in range(NPARTS)), 60, "w2's side-effect frontier to reach every end", interval=0.3)
    redo_dlq = metric(w2.url, "profiled_sidefx_redo_records_total", '{action="dlq"}')
    redo_rr = metric(w2.url, "profiled_sidefx_redo_records_total", '{action="reroute"}')
    check(w2.stop() == 0, "w2 did not stop cleanly")
    o, misrouted, origins = oracle_with_positions(c)
    dead_bad = [x for x in o.dlq if x[0] in mine]
    dead_mis = [x for x in misrouted if x[0] in mine]
    check(len(dead_bad) >= 4 * len(mine), "only %d bad records on w1's partitions" % len(dead_bad))
    check(len(dead_mis) >= 6, "only %d misrouted records on w1's partitions" % len(dead_mis))
    check(o.outcomes.get("erased", 0) == 1, "the oracle saw %s erasures, want 1" % o.outcomes.get("erased"))
    lost = sorted(x for x in misrouted if "%s/%d/%d" % (c.topic, x[0], x[1]) not in origins)
    check(not lost, "%d misrouted record(s) never re-routed, e.g. %s" % (len(lost), lost[:5]))
    check_dlq_exact(c, o)
    compare_state(c, o, [w2.data])
    print("  (w1 owned %s; %d bad and %d misrouted records there; w2 redid %d DLQ and %d re-routes)"
          % (mine, len(dead_bad), len(dead_mis), redo_dlq, redo_rr))
    check(redo_dlq + redo_rr > 0, "the replica never redid a side effect: the test did not exercise it")


def test_promoted_replica_redoes_dead_owners_side_effects():
    """Two workers (one replica each). w1 is SIGKILLed; while it is dead,
    240 events of 80 users keyed by user_id go through kcat's CRC32
    partitioner (about 3 in 4 misrouted) and 4 malformed records go to each
    of w1's partitions. w2's replica applies them without side effects;
    once promoted it must dead-letter and re-route them: the DLQ holds
    exactly the bad records, every misrouted record has a re-produced copy,
    and every user equals the oracle (counted once in its right partition).
    Fails on the code before the side-effect frontier (0 re-routed, 0 DLQ
    records of the dead owner's partitions)."""
    with cluster(partitions=NPARTS) as c:
        path, _ = build_input(c, 4000, 300, 71)
        w1 = c.start_worker("w1")
        w2 = c.start_worker("w2")
        c.produce_file(path, ["--key_field", "route_key"])
        wait_for(lambda: c.caught_up([w1.data, w2.data], copies=2), 120, "owner and replica copies caught up",
                 interval=0.5)
        _, _, body = http_get(w1.url + "/v1/partitions")
        mine = json.loads(body)["self"]["owned"]
        check(mine, "w1 owns no partition")
        w1.kill9()
        produce_faults(c, mine)  # while w1 is dead (session timeout 6 s)
        check_redone(c, w2, mine)


def test_restarted_replica_keeps_its_frontier():
    """Both workers start on an empty topic, so each replica copy is
    rebuilt from the beginning of the topic: its side-effect frontier is 0
    from the start, and nobody ever committed a group offset. w1 is
    stopped (SIGSTOP) while owning its partitions; the faults arrive; w2's
    replica applies them (without side effects) and is SIGKILLed before
    the group promotes it (session timeout 15 s), then started again on its
    own store: it must still know the frontier and redo the dead owner's
    side effects. Fails when a replica's scratch frontier stays in memory
    and is never written (commit 0fba921 reverted: make chaos seed 23 lost
    15 DLQ records that way)."""
    with cluster(partitions=NPARTS) as c:
        slow = ["--session_timeout_ms", "15000"]
        w1 = c.start_worker("w1", slow)
        w2 = c.start_worker("w2", slow)

        def settled():
            a, b = (json.loads(http_get(w.url + "/readyz")[2]) for w in (w1, w2))
            return (a.get("status") == b.get("status") == "ready" and a["owned"] + b["owned"] == NPARTS
                    and len(a["replicas"]) + len(b["replicas"]) == NPARTS)
        wait_for(settled, 90, "each worker to own and replicate two partitions", interval=0.5)
        mine = json.loads(http_get(w1.url + "/v1/partitions")[2])["self"]["owned"]
        theirs = json.loads(http_get(w2.url + "/v1/partitions")[2])["self"]["owned"]
        os.kill(w1.p.pid, signal.SIGSTOP)  # owns its partitions, does nothing more
        t0 = time.monotonic()
        produce_faults(c, mine, users=240)
        # w2 holds every partition's end (its replica copies of w1's too)
        wait_caught_up(c, [w2.data], timeout=60)
        still = json.loads(http_get(w2.url + "/v1/partitions")[2])["self"]["owned"]
        check(sorted(still) == sorted(theirs) and time.monotonic() - t0 < 12,
              "w2 was promoted before its kill (owns %s after %.1f s): the test did not exercise a replica's "
              "frontier" % (still, time.monotonic() - t0))
        w2.kill9()
        w1.kill9()
        w2 = c.start_worker("w2", slow)
        check_redone(c, w2, mine)


def test_frontier_reaches_the_group_without_new_records():
    """A worker takes over partitions whose store knows more side effects
    done than the group's committed offset says, and no record follows:
    the frontier must still reach the group (lag monitoring; a later owner
    would redo side effects already done). Made deterministic with a new
    group on an existing store (blue/green reusing a data directory; in
    the wild: an owner whose last group commit failed, fenced after a
    session timeout, getting its idle partitions back -- CI saw
    test_robust's settle wait 180 s for it). The DLQ must not change: the
    new group's owner redoes nothing. Fails when the takeover leaves the
    partitions clean (group offsets stay absent)."""
    with cluster(partitions=NPARTS) as c:
        path, bad = build_input(c, 2000, 100, 29)
        w1 = c.start_worker("w1", ["--replicas", "0"])
        c.produce_file(path, ["--key_field", "route_key"])
        wait_caught_up(c, [w1.data], timeout=120)
        ends = c.watermarks()
        wait_for(lambda: all(group_committed(c).get(p, -1) >= ends[p] for p in ends), 60,
                 "group g to commit every end", interval=0.5)
        dlq_before = len(read_topic(c, c.topic + ".dlq"))
        check(w1.stop() == 0, "w1 did not stop cleanly")
        w1 = c.start_worker("w1", ["--replicas", "0", "--group", "g2"])
        last = {}

        def committed():
            last.update(group_committed(c, "g2"))
            return all(last.get(p, -1) >= ends[p] for p in ends)
        wait_for(committed, 60, "group g2 to get every partition's frontier (no record after the start)",
                 interval=0.5)
        check(all(last[p] == ends[p] for p in ends), "g2 committed %s, the ends are %s" % (last, ends))
        check(w1.stop() == 0, "w1 did not stop cleanly")
        dlq_after = len(read_topic(c, c.topic + ".dlq"))
        check(dlq_after == dlq_before, "the DLQ grew from %d to %d records: side effects redone"
              % (dlq_before, dlq_after))
        o, _, _ = oracle_with_positions(c)
        check_dlq_exact(c, o)
        compare_state(c, o, [w1.data])


if __name__ == "__main__":
    main([test_promoted_replica_redoes_dead_owners_side_effects, test_restarted_replica_keeps_its_frontier,
          test_frontier_reaches_the_group_without_new_records])
