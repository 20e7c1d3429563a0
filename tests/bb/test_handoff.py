"""test_handoff.py -- elastic scale-out and serving through failures.

- Scale-out: one worker ingests a known event set; two more join while
  events keep arriving; partitions move (state is handed off by snapshot);
  one worker is SIGKILLed and later restarted. Throughout, a client queries
  random users at random workers and checks every answer against the
  oracle: a 200 must be a state the user's profile actually went through (a
  prefix of its partition's log), stale answers must be marked, 503s must
  carry Retry-After, and nothing may be empty (404). At the end every user
  at every worker equals the oracle.
- Owner down: with replicas=1, one second after SIGKILL of a worker all its
  users answer (stale) from the replicas, with the right profile.
- Broker down: with the embedded broker stopped, workers keep answering.
"""
import json
import os
import random
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lib import cluster, PROFILECTL, check, http_get, main, wait_for, TestFailure  # noqa: E402
from oracle import Oracle  # noqa: E402

DAY = 86400000


def gen_file(c, name, n, users, seed, days=3):
    start = int(time.time() * 1000) - days * DAY
    r = c.ctl("generate", str(n), "--users", str(users), "--days", str(days), "--seed", str(seed),
              "--start_ts", str(start), "--dup_rate", "0.02")
    path = os.path.join(c.dir, name)
    open(path, "wb").write(r.stdout)
    return path


def read_log(c):
    _, text = c.end_offsets()
    return sorted((json.loads(l) for l in text.splitlines() if l.strip()), key=lambda r: (r["partition"], r["offset"]))


class PrefixOracle:
    """Every state each user's (all-days) profile passes through, in log order."""

    def __init__(self, recs, nparts):
        self.o = Oracle(nparts=nparts)
        self.states = {}   # user -> list of (events, types) after 0..n accepted events
        for r in recs:
            val = r["value"].encode()
            out = self.o.feed(r["partition"], r["offset"], val, r["timestamp"])
            if out != "accepted":
                continue
            u = json.loads(val)["user_id"]
            st = self.states.setdefault(u, [(0, {})])
            ev, types = st[-1]
            t = json.loads(val)["type"]
            nt = dict(types)
            nt[t] = nt.get(t, 0) + 1
            st.append((ev + 1, nt))

    def valid(self, user, body):
        st = self.states.get(user)
        if not st:
            return False
        n = body.get("events")
        if not isinstance(n, int) or n <= 0 or n >= len(st):
            return False
        return st[n][1] == body.get("event_types")

    def final(self, user):
        return self.states[user][-1]


class Querier(threading.Thread):
    """Queries random users at random workers until stopped; records
    anything that is neither correct, nor stale-marked-correct, nor a 503
    with Retry-After."""

    def __init__(self, workers, users, checker):
        super().__init__(daemon=True)
        self.workers = workers
        self.users = users
        self.checker = checker
        self.stop = threading.Event()
        self.bad = []
        self.counts = {"ok": 0, "stale": 0, "503": 0, "down": 0}
        self.samples = []

    def run(self):
        rnd = random.Random(9)
        while not self.stop.is_set():
            w = rnd.choice(list(self.workers.values()))
            if not w.alive() or not w.url:
                continue
            u = rnd.choice(self.users)
            try:
                st, h, body = http_get("%s/v1/profiles/%s" % (w.url, urllib.parse.quote(u)), timeout=5)
            except Exception:  # noqa: BLE001 - the worker may be getting killed
                self.counts["down"] += 1
                continue
            if st == 200:
                try:
                    j = json.loads(body)
                except ValueError:
                    self.bad.append("%s at %s: 200 with invalid JSON %r" % (u, w.name, body[:300]))
                    continue
                self.samples.append((u, j))
                if j.get("stale"):
                    self.counts["stale"] += 1
                else:
                    self.counts["ok"] += 1
            elif st == 503:
                self.counts["503"] += 1
                if "Retry-After" not in h:
                    self.bad.append("%s at %s: 503 without Retry-After" % (u, w.name))
            else:
                self.bad.append("%s at %s: status %d %s" % (u, w.name, st, body[:200]))
            time.sleep(0.005)

    def verify(self, prefix):
        for u, j in self.samples:
            if not prefix.valid(u, j):
                self.bad.append("%s: served_by %s stale=%s events=%s is not a state the profile went through" %
                                (u, j.get("served_by"), j.get("stale"), j.get("events")))
        return self.bad


def all_caught_up(c, workers, nparts, copies=1):
    return c.caught_up([w.data for w in workers], copies)


def check_final(c, workers, prefix, users):
    errs = []
    for u in users:
        want_n, want_types = prefix.final(u)
        for w in workers:
            st, _, body = http_get("%s/v1/profiles/%s" % (w.url, urllib.parse.quote(u)))
            if st != 200:
                errs.append("%s at %s: %d" % (u, w.name, st))
                continue
            j = json.loads(body)
            if j["events"] != want_n or j["event_types"] != want_types:
                errs.append("%s at %s: events %s != %s" % (u, w.name, j["events"], want_n))
        if len(errs) > 10:
            break
    check(not errs, "final state differs from the oracle:\n  " + "\n  ".join(errs))


def test_scale_out_kill_restart():
    nparts = 6
    with cluster(partitions=nparts) as c:
        first = gen_file(c, "a.jsonl", 6000, 400, 101)
        second = gen_file(c, "b.jsonl", 6000, 400, 202)
        w1 = c.start_worker("w1", ["--cleanup_grace", "2s"])
        c.produce_file(first)
        wait_for(lambda: all_caught_up(c, [w1], nparts), 120, "w1 to ingest the first half", interval=0.5)
        users = sorted({json.loads(l)["user_id"] for l in open(first, "rb") if l.strip()})
        workers = {"w1": w1}
        q = Querier(workers, users, None)
        q.start()
        prod = c._start("producer", [PROFILECTL, "produce", "--brokers", c.bootstrap, "--topic", c.topic,
                                     "--file", second, "--rate", "800", "--quiet"])
        workers["w2"] = c.start_worker("w2")
        time.sleep(2)
        workers["w3"] = c.start_worker("w3")
        time.sleep(12)                                   # rebalances settle, hand-offs happen
        workers["w2"].kill9()
        time.sleep(8)                                    # session timeout: partitions move again
        workers["w2"] = c.start_worker("w2")
        wait_for(lambda: not prod.alive(), 120, "producer to finish")
        ws = list(workers.values())
        wait_for(lambda: all_caught_up(c, ws, nparts), 180, "all partitions to catch up", interval=0.5)
        wait_for(lambda: all(http_get(w.url + "/readyz")[0] == 200 for w in ws), 60, "all workers ready")
        time.sleep(1)
        q.stop.set()
        q.join(10)
        prefix = PrefixOracle(read_log(c), nparts)
        bad = q.verify(prefix)
        check(not bad, "%d bad answers during scale-out, e.g.:\n  %s" % (len(bad), "\n  ".join(bad[:10])))
        check(q.counts["ok"] > 100, "too few successful queries: %s" % q.counts)
        check_final(c, ws, prefix, users)
        restores = 0
        for w in ws:
            _, _, m = http_get(w.url + "/metrics")
            for line in m.decode().splitlines():
                if line.startswith("profiled_restores_total "):
                    restores += int(float(line.split()[1]))
        check(restores > 0, "no partition was handed off by snapshot")
        # w1 gave partitions away: after cleanup_grace their local state is
        # deleted (DeleteRange), so its store keeps only what it owns/replicates.
        def w1_cleaned():
            _, _, m = http_get(w1.url + "/metrics")
            return any(l.startswith("profiled_partitions_deleted_total ") and float(l.split()[1]) > 0
                       for l in m.decode().splitlines())
        wait_for(w1_cleaned, 40, "w1 to delete partitions it no longer holds", interval=1)
        def w1_holds_only_its_own():
            _, _, body = http_get(w1.url + "/v1/partitions")
            held = set(json.loads(body)["self"]["owned"])
            _, _, rz = http_get(w1.url + "/readyz")
            held |= set(json.loads(rz).get("replicas", []))
            return set(c.offsets(w1.data)) <= held
        wait_for(w1_holds_only_its_own, 40, "w1 to keep only partitions it owns or replicates", interval=1)
        print("  queries: %s, snapshot restores: %d" % (q.counts, restores))
        for w in ws:
            check(w.stop() == 0, "%s exit code" % w.name)


def test_owner_down_served_stale_within_1s():
    nparts = 4
    with cluster(partitions=nparts) as c:
        path = gen_file(c, "a.jsonl", 4000, 300, 303)
        ws = [c.start_worker("w%d" % i, ["--replicas", "1"]) for i in (1, 2, 3)]
        c.produce_file(path)
        # Every partition held (checkpointed at the end) by its owner and a replica.
        wait_for(lambda: all_caught_up(c, ws, nparts, copies=2), 120, "owner + replica copies", interval=0.5)

        def owned_by(w):
            st, _, b = http_get(w.url + "/v1/partitions")
            return set(json.loads(b)["self"]["owned"]) if st == 200 else set()
        # (the copies can be complete while the group is still settling:
        # the last worker to join may own nothing yet)
        wait_for(lambda: all(owned_by(w) for w in ws), 60, "every worker owning a partition", interval=0.5)
        wait_for(lambda: all_caught_up(c, ws, nparts, copies=2), 120, "owner + replica copies", interval=0.5)
        prefix = PrefixOracle(read_log(c), nparts)
        users = sorted(prefix.states)
        victim = ws[1]
        _, _, body = http_get(victim.url + "/v1/partitions")
        owned = set(json.loads(body)["self"]["owned"])
        check(owned, "victim owns nothing")
        from oracle import partition_for
        theirs = [u for u in users if partition_for(u.encode(), nparts) in owned]
        check(theirs, "no users on the victim's partitions")
        victim.kill9()
        t_kill = time.monotonic()
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t_kill)))
        survivors = [w for w in ws if w is not victim]
        errs = []
        stale = 0
        for u in theirs:
            for w in survivors:
                st, h, b = http_get("%s/v1/profiles/%s" % (w.url, urllib.parse.quote(u)), timeout=5)
                if st != 200:
                    errs.append("%s at %s: %d %s" % (u, w.name, st, b[:120]))
                    continue
                j = json.loads(b)
                stale += bool(j.get("stale"))
                n, types = prefix.final(u)
                if j["events"] != n or j["event_types"] != types:
                    errs.append("%s at %s: events %s, expected %s" % (u, w.name, j["events"], n))
        took = time.monotonic() - t_kill
        check(not errs, "after killing the owner (%.2fs): %d failures:\n  %s" % (took, len(errs), "\n  ".join(errs[:8])))
        check(stale > 0, "no answer was marked stale")
        print("  %d users of the killed worker answered from replicas, first sweep done %.2fs after the kill"
              % (len(theirs), took))
        for w in survivors:
            check(w.stop() == 0, "%s exit code" % w.name)


def test_broker_down_keeps_serving():
    nparts = 4
    with cluster(partitions=nparts) as c:
        path = gen_file(c, "a.jsonl", 3000, 200, 404)
        ws = [c.start_worker("w%d" % i, ["--shutdown_timeout_ms", "8000"]) for i in (1, 2)]
        c.produce_file(path)
        wait_for(lambda: all_caught_up(c, ws, nparts), 120, "ingestion", interval=0.5)
        prefix = PrefixOracle(read_log(c), nparts)
        users = sorted(prefix.states)
        # Membership travels through Kafka: before the broker goes away both
        # workers must have seen the same, complete partition map (else a
        # query can be routed by a map that can no longer be updated).
        def maps_settled():
            seen, owned = [], 0
            for w in ws:
                st, _, b = http_get(w.url + "/v1/partitions")
                if st != 200 or http_get(w.url + "/readyz")[0] != 200:
                    return False
                j = json.loads(b)
                if len(j["owners"]) != nparts or any(not o.get("owner") for o in j["owners"]):
                    return False
                seen.append(json.dumps(j["owners"], sort_keys=True))
                owned += len(j["self"]["owned"])
            return owned == nparts and len(set(seen)) == 1
        wait_for(maps_settled, 60, "both workers to agree on a complete partition map", interval=0.5)
        c.broker.stop()
        def degraded():
            for w in ws:
                st, _, b = http_get(w.url + "/readyz")
                j = json.loads(b)
                if st != 200 or j.get("status") != "degraded" or j.get("kafka_up") is not False:
                    return False
            return True
        wait_for(degraded, 60, "readyz to report degraded (kafka_down) while still ready", interval=0.5)
        errs = []
        for u in users:
            w = random.choice(ws)
            st, _, b = http_get("%s/v1/profiles/%s" % (w.url, urllib.parse.quote(u)))
            if st != 200 or json.loads(b)["events"] != prefix.final(u)[0]:
                errs.append("%s at %s: %d" % (u, w.name, st))
        check(not errs, "with the broker down: %d failures, e.g. %s" % (len(errs), errs[:5]))
        for w in ws:
            t0 = time.monotonic()
            w.stop(timeout=30)
            check(time.monotonic() - t0 < 20, "shutdown with the broker down took too long")


if __name__ == "__main__":
    main([test_scale_out_kill_restart, test_owner_down_served_stale_within_1s, test_broker_down_keeps_serving])
