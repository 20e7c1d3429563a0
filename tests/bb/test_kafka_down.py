"""test_kafka_down.py -- serving survives Kafka (issue 22, hole 5): with the
broker frozen (SIGSTOP) longer than the group session timeout, every
worker loses its assignment yet keeps answering every user from local
state (stale-marked), /readyz says degraded (kafka_down) instead of ready,
SIGTERM exits promptly, and once the broker resumes (SIGCONT) the worker
rejoins, ingests what was produced meanwhile and answers the final state.
Oracle: tests/oracle.py fed from the topic."""
import json
import os
import random
import signal
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import check, cluster, http_get, main, wait_for  # noqa: E402
from test_handoff import PrefixOracle, all_caught_up, check_final, gen_file, read_log  # noqa: E402


def readyz(w):
    st, _, b = http_get(w.url + "/readyz")
    return st, json.loads(b)


def test_broker_frozen_past_session_timeout():
    """Two workers without replicas, session timeout 6 s; the broker is
    SIGSTOPped until both have lost their assignment. Both log the lost assignment; /readyz answers 200 "degraded"
    with kafka_up false (not "ready"); every user answers 200 with the
    oracle's count at a random worker (stale); w2 then gets SIGTERM and
    exits within 20 s. SIGCONT: w1 takes every partition, ingests a second
    batch and answers every user as the oracle says. Fails on the code
    that released lost partitions: 503 for every user of them, /readyz
    "ready" with nothing owned."""
    nparts = 4
    with cluster(partitions=nparts) as c:
        # no replicas: no other worker holds a copy, each serves what it had
        ws = [c.start_worker("w%d" % i, ["--shutdown_timeout_ms", "8000", "--replicas", "0"]) for i in (1, 2)]
        c.produce_file(gen_file(c, "a.jsonl", 3000, 200, 505))
        wait_for(lambda: all_caught_up(c, ws, nparts), 120, "owners caught up", interval=0.5)
        wait_for(lambda: all(readyz(w)[0] == 200 and readyz(w)[1]["status"] == "ready" for w in ws), 30,
                 "both ready")
        prefix = PrefixOracle(read_log(c), nparts)
        users = sorted(prefix.states)
        os.kill(c.broker.p.pid, signal.SIGSTOP)
        try:
            def all_lost():
                return all("lost " in open(w.log_path, "rb").read().decode(errors="replace") for w in ws)
            wait_for(all_lost, 40, "both workers to lose their assignment (session timeout)", interval=0.5)
            time.sleep(1)
            for w in ws:
                st, j = readyz(w)
                check(st == 200 and j.get("status") == "degraded" and j.get("kafka_up") is False,
                      "%s /readyz with Kafka frozen: %d %r" % (w.name, st, j))
            errs, stale = [], 0
            for u in users:
                w = random.choice(ws)
                st, _, b = http_get("%s/v1/profiles/%s" % (w.url, urllib.parse.quote(u)))
                if st != 200:
                    errs.append("%s at %s: %d" % (u, w.name, st))
                    continue
                j = json.loads(b)
                stale += bool(j.get("stale"))
                if j["events"] != prefix.final(u)[0]:
                    errs.append("%s at %s: %d events, oracle %d" % (u, w.name, j["events"], prefix.final(u)[0]))
            check(not errs, "with Kafka frozen: %d failures, e.g. %s" % (len(errs), errs[:5]))
            check(stale == len(users), "%d of %d answers marked stale" % (stale, len(users)))
            t0 = time.monotonic()
            ws[1].stop(timeout=30)
            took = time.monotonic() - t0
            check(took < 20, "SIGTERM with Kafka frozen took %.1fs" % took)
        finally:
            os.kill(c.broker.p.pid, signal.SIGCONT)
        w1 = ws[0]
        c.produce_file(gen_file(c, "b.jsonl", 1000, 200, 506))
        wait_for(lambda: readyz(w1)[0] == 200 and readyz(w1)[1]["status"] == "ready"
                 and readyz(w1)[1]["owned"] == nparts, 90, "w1 to rejoin and own every partition", interval=0.5)
        wait_for(lambda: all_caught_up(c, [w1], nparts), 120, "w1 to ingest the second batch", interval=0.5)
        prefix = PrefixOracle(read_log(c), nparts)
        check_final(c, [w1], prefix, sorted(prefix.states))
        check(w1.stop() == 0, "w1 exit code")
        print("  (%d users answered stale while Kafka was frozen; SIGTERM took %.1fs)" % (len(users), took))


def test_worker_started_while_kafka_down():
    """A worker restarted while the broker is frozen binds HTTP within
    20 s, /readyz answers 200 "degraded" (kafka_up false) and every user
    answers 200 with the oracle's count (stale) from the local state; a
    second worker without local state started then stops promptly on
    SIGTERM (< 10 s). SIGCONT: the first worker joins, ingests a second
    batch and answers the final state. Fails on the code that waited for
    the topic's metadata (about 110 s, then exited)."""
    nparts = 4
    with cluster(partitions=nparts) as c:
        w1 = c.start_worker("w1", ["--replicas", "0"])
        c.produce_file(gen_file(c, "a.jsonl", 2000, 150, 507))
        wait_for(lambda: all_caught_up(c, [w1], nparts), 120, "w1 caught up", interval=0.5)
        prefix = PrefixOracle(read_log(c), nparts)
        users = sorted(prefix.states)
        check(w1.stop() == 0, "w1 exit code")
        os.kill(c.broker.p.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            w1 = c.start_worker("w1", ["--replicas", "0"], wait_listen=False)
            line = w1.readline(30)
            check(line.startswith("listening "), "w1 printed %r:\n%s" % (line, w1.tail()))
            w1.url = line.split()[1]
            bound = time.monotonic() - t0
            check(bound < 20, "HTTP bound %.1fs after start" % bound)
            st, j = readyz(w1)
            check(st == 200 and j.get("status") == "degraded" and j.get("kafka_up") is False,
                  "/readyz with Kafka down from the start: %d %r" % (st, j))
            errs = []
            for u in users:
                st, _, b = http_get("%s/v1/profiles/%s" % (w1.url, urllib.parse.quote(u)))
                if st != 200 or json.loads(b)["events"] != prefix.final(u)[0] or not json.loads(b).get("stale"):
                    errs.append("%s: %d %s" % (u, st, b[:80]))
            check(not errs, "serving with Kafka down from the start: %d failures, e.g. %s" % (len(errs), errs[:3]))
            x = c.start_worker("x", wait_listen=False)
            time.sleep(2)
            t1 = time.monotonic()
            x.stop(timeout=30)
            took = time.monotonic() - t1
            check(took < 10, "SIGTERM of a worker waiting for Kafka took %.1fs" % took)
            del c.workers["x"]
        finally:
            os.kill(c.broker.p.pid, signal.SIGCONT)
        c.produce_file(gen_file(c, "b.jsonl", 800, 150, 508))
        wait_for(lambda: readyz(w1)[0] == 200 and readyz(w1)[1]["status"] == "ready"
                 and readyz(w1)[1]["owned"] == nparts, 90, "w1 to join and own every partition", interval=0.5)
        wait_for(lambda: all_caught_up(c, [w1], nparts), 120, "w1 to ingest the second batch", interval=0.5)
        prefix = PrefixOracle(read_log(c), nparts)
        check_final(c, [w1], prefix, sorted(prefix.states))
        check(w1.stop() == 0, "w1 exit code")
        print("  (HTTP bound %.1fs after a start with Kafka down; SIGTERM while waiting took %.1fs)" % (bound, took))


if __name__ == "__main__":
    main([test_broker_frozen_past_session_timeout, test_worker_started_while_kafka_down])
