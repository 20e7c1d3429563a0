#!/usr/bin/env python3
"""chaos.py -- `make chaos`: random faults against a 3-worker cluster, then
every user at every worker, every store, the DLQ, the population prior and
rankings against the independent oracles.

Not part of `make test` (it is long by design). Each round:

  - an embedded broker (4 partitions) and 3 workers with one replica each,
    the vehicle schema with tracked types park and contact (test_rank's),
    population_refresh 500 ms;
  - producers nobody here wrote next to ours, in random order and chunks:
    `profilectl produce` (murmur2), `profilectl produce -X
    partitioner=consistent_random` (CRC32: most records land on another
    partition than their user's and must be re-routed), kcat (CRC32, its
    default), kafka-python (Java's murmur2); the input holds exact
    duplicates, late retries of events up to 3 days old (same event_id,
    delivered again seconds later), malformed records, an oversized record
    (too_large) and a 1.5 MB one (DLQ value truncated), and records whose
    Kafka key is not the user (misrouted);
  - meanwhile a fault loop: SIGKILL of a random worker during ingestion;
    of an owner and then of the replica being promoted; of a worker whose
    data directory was wiped, while it restores its partitions from peer
    snapshots (hand-off); of a worker within a second of its start; the
    broker paused (SIGSTOP) and lost (every mock broker down, SIGUSR1/2);
    a full disk (w3's data directory is a 400 MB tmpfs watched with
    disk_min_free_mb 64: a ballast file leaves 8-32 MB free for 2-8 s;
    only as root, where tmpfs can be mounted; PD_CHAOS_DISK=0 turns it off);
    PD_CHAOS_FAULTS=promotion,disk_full,... limits the loop to those kinds;
  - meanwhile erasures (issue 21): after about 2 chunks in 5, 1-2 users
    already sent are erased, each either by DELETE at a random live worker
    (retried, bounded, on a refused connection or a 5xx while workers die;
    a 4xx is a mismatch) or by an erasure record from kcat (-H
    profiled-control=erase, to the user's partition); every other one gets
    1-3 fresh events right after (kcat), and their events may go on in
    later chunks; 4 more at the end with nothing after them (once the
    stores hold the input: no re-routed copy of theirs comes after);
  - then every worker is (re)started, the cluster settles, and:
      * every user of the oracle (tests/oracle.py, fed from the topic,
        erasure records included) and every erased user is queried at
        every worker: events and event types must be exactly the oracle's
        (404 for users the oracle has none of: erased users without later
        events, and one never seen);
      * GET /v1/population at every worker, test_population's 7 variants
        (range, dims, breakdown, decay, top, at), equal to the oracle's
        population() once every worker's prior is complete and was built
        after the stores caught up;
      * POST /v1/profiles/{u}/rank and GET .../affinities (test_rank's
        sweep: 5 bodies, 2 queries; scores within 1e-9 relative of
        tests/score_oracle.py, ranks exact) at every worker for 8 users, 2
        erased for good (cold), 2 erased with later events, and one never
        seen;
      * every user-day in the owners' stores (profilectl dump) must equal
        the oracle's, field by field (tracks included); erased users
        without later events have no key in any copy of their partition
        that reached the end (owner and replica);
      * the DLQ, de-duplicated by source position, must hold exactly the
        records the oracle rejects, each with the oracle's reason.

Prints one table row per round (erasures by kind, checks by count) and a
total; exits 1 on any mismatch.
Bounded: stops starting rounds when --budget (minutes) would be exceeded,
and every wait has its own bound. Release binaries by default (bin/;
PD_BIN=build/san/bin for the sanitizer build).

Usage: tests/chaos.py [--rounds N] [--kills K] [--budget MIN] [--seed S] [--events N]
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("PD_BIN", os.path.join(ROOT, "bin"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "bb"))
from lib import Cluster, TestFailure, http_get, wait_for  # noqa: E402
import test_ingest as ti  # noqa: E402
import test_population as tp  # noqa: E402
import test_rank as tr  # noqa: E402
from test_sidefx import kcat_produce  # noqa: E402
from oracle import diff_profiles, partition_for  # noqa: E402

NPARTS = ti.NPARTS
DAY = 86400000
WORKER_ARGS = ["--replicas", "1", "--shutdown_timeout_ms", "8000", "--handoff_min_lag", "200",
               "--cleanup_grace", "2s", "--population_refresh", "500ms"]
WIDS = ("w1", "w2", "w3")
# The full-disk fault: DISK_WID's data directory is a tmpfs of DISK_MB
# (needs root; skipped otherwise) watched with a floor of DISK_FLOOR_MB.
DISK_WID, DISK_MB, DISK_FLOOR_MB = "w3", 400, 64


def worker_args(c, wid, disk):
    """The vehicle schema with test_rank's tracked types (rank bodies with
    types/weights score against them; the stores keep their tracks)."""
    return WORKER_ARGS + tr.schema_args(c) + (["--disk_min_free_mb", str(DISK_FLOOR_MB)]
                                              if disk and wid == DISK_WID else [])


def mount_disk(c):
    """Mounts a tmpfs at DISK_WID's data directory; False when that is not
    possible here (not root, no mount)."""
    d = os.path.join(c.dir, "data-" + DISK_WID)
    os.makedirs(d, exist_ok=True)
    if os.geteuid() != 0 or os.environ.get("PD_CHAOS_DISK", "1") == "0":
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % DISK_MB, "tmpfs", d], capture_output=True)
    return r.returncode == 0


def umount_disk(c):
    d = os.path.join(c.dir, "data-" + DISK_WID)
    for _ in range(20):
        if subprocess.run(["umount", d], capture_output=True).returncode == 0 or not os.path.ismount(d):
            return
        time.sleep(0.5)


def log(msg):
    print("  %s %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


# ---------------------------------------------------------------- input

def build_input(c, rnd, n, users):
    """[(producer, [lines])] chunks in send order, and the bad records
    {line: reason} the DLQ must hold."""
    start = int(time.time() * 1000) - 3 * DAY
    r = c.ctl("generate", str(n), "--users", str(users), "--days", "3", "--seed", str(rnd.randrange(1 << 30)),
              "--start_ts", str(start), "--dup_rate", "0.03", timeout=120)
    good = [l for l in r.stdout.splitlines() if l.strip()]
    now = int(time.time() * 1000)
    bad = {l: reason for l, reason in ti.bad_events(now)}
    big = json.dumps({"user_id": "u-big", "ts": now, "type": "view", "pad": "x" * 100000}).encode()
    bad[big] = "too_large"
    huge = json.dumps({"user_id": "u-huge", "ts": now, "type": "view", "pad": "y" * 1500000}).encode()
    bad[huge] = "too_large"
    mis = ti.misrouted_events(now, 20)
    # late retries: events of the first half again (same id, same payload),
    # mixed into the second half
    half = len(good) // 2
    retries = rnd.sample(good[:half], max(1, len(good) // 20))
    first = good[:half]
    second = good[half:] + retries + mis + [l for l in bad if l is not huge]
    rnd.shuffle(second)
    lines = first + second
    producers = ["murmur2", "crc32", "kcat", "kafka-python"]
    chunks = []
    i = 0
    while i < len(lines):
        k = rnd.randint(len(lines) // 16, len(lines) // 8)
        chunks.append((rnd.choice(producers), lines[i:i + k]))
        i += k
    chunks.insert(rnd.randrange(len(chunks)), ("huge", [huge]))
    return chunks, bad


def parsed_events(lines):
    """The lines that are events of a generated user ("u-<n>"), parsed."""
    out = []
    for l in lines:
        try:
            ev = json.loads(l)
        except ValueError:
            continue
        if isinstance(ev, dict) and isinstance(ev.get("user_id"), str) and ev["user_id"][2:].isdigit():
            out.append(ev)
    return out


def user_key(line):
    """The record key a careless producer would use: the user id when the
    line has a usable one (no tab: the kcat key delimiter)."""
    try:
        ev = json.loads(line)
    except ValueError:
        return "nokey"
    k = ev.get("user_id") if isinstance(ev, dict) else None
    return k if isinstance(k, str) and k and "\t" not in k and "\n" not in k else "nokey"


def produce(c, kind, lines, path):
    with open(path, "wb") as f:
        for l in lines:
            f.write(l.replace(b"\n", b" ") + b"\n")
    if kind == "murmur2":
        c.produce_file(path, ["--key_field", "route_key", "--rate", "2000", "--quiet", "true"])
    elif kind == "crc32":
        c.produce_file(path, ["-X", "partitioner=consistent_random", "--rate", "2000", "--quiet", "true"])
    elif kind == "huge":
        c.produce_file(path, ["-X", "message.max.bytes=4000000", "--quiet", "true"])
    elif kind == "kcat":
        keyed = path + ".kv"
        with open(keyed, "wb") as f:
            for l in lines:
                f.write(user_key(l).encode() + b"\t" + l.replace(b"\n", b" ") + b"\n")
        # kcat gives up when every broker is down (a "broker lost" fault):
        # run it again, for up to a minute. A chunk sent twice is fine: the
        # oracle reads the topic.
        for attempt in range(12):
            r = subprocess.run(["kcat", "-P", "-b", c.bootstrap, "-t", c.topic, "-K", "\t", "-l", keyed],
                               timeout=120, capture_output=True)
            if r.returncode == 0 or b"brokers are down" not in r.stderr:
                break
            time.sleep(5)
        if r.returncode:
            raise subprocess.CalledProcessError(r.returncode, r.args, r.stdout, r.stderr)
    elif kind == "kafka-python":
        # The broker may be down (a "broker lost" fault) when the client
        # starts or while it sends: keep trying to connect for up to a
        # minute, and retry sends for as long as the flush allows. A record
        # that still fails is simply not in the topic, and the oracle reads
        # the topic.
        code = ("import sys,json,time\n"
                "from kafka import KafkaProducer\n"
                "from kafka.errors import NoBrokersAvailable\n"
                "for i in range(60):\n"
                "    try:\n"
                "        p=KafkaProducer(bootstrap_servers=sys.argv[1],acks='all',retries=1000,retry_backoff_ms=200,"
                "max_request_size=4000000)\n"
                "        break\n"
                "    except NoBrokersAvailable:\n"
                "        time.sleep(1)\n"
                "else:\n"
                "    sys.exit('kafka-python: no broker for 60 s')\n"
                "for l in open(sys.argv[3],'rb'):\n"
                "    l=l.rstrip(b'\\n')\n"
                "    k,_,v=l.partition(b'\\t')\n"
                "    p.send(sys.argv[2],key=k,value=v)\n"
                "p.flush(timeout=120); p.close()\n")
        keyed = path + ".kv"
        with open(keyed, "wb") as f:
            for l in lines:
                f.write(user_key(l).encode() + b"\t" + l.replace(b"\n", b" ") + b"\n")
        subprocess.run(["/usr/bin/python3", "-c", code, c.bootstrap, c.topic, keyed], check=True, timeout=180,
                       capture_output=True)
    else:
        raise ValueError(kind)


# ---------------------------------------------------------------- erasures

def http_delete(url, timeout=15.0):
    req = urllib.request.Request(url, method="DELETE")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


class Erasures:
    """Erases users while the faults go on (issue 21): DELETE at a random
    live worker -- retried, bounded, while workers die (connection refused,
    5xx such as 503 + Retry-After) -- or an erasure record produced by
    kcat (-H profiled-control=erase, keyed by the user, to the user's
    partition); every other one followed by fresh events of the user (kcat, same
    partition, after the erasure's acknowledgement). The oracle reads the
    topic, so an erasure given up on is no mismatch; a 4xx answer is."""

    def __init__(self, c, rnd):
        self.c = c
        self.rnd = rnd
        self.users = set()   # every user an erasure was attempted for
        self.counts = {}
        self.errors = []
        self.seq = 0
        self.nth = 0

    def count(self, k):
        self.counts[k] = self.counts.get(k, 0) + 1

    def kcat(self, lines, partition, headers=()):
        """kcat_produce, again for up to a minute while the broker is lost."""
        for _ in range(12):
            try:
                kcat_produce(self.c, lines, partition=partition, headers=headers)
                return True
            except (TestFailure, subprocess.SubprocessError):
                time.sleep(5)
        return False

    def delete(self, u):
        for _ in range(40):
            live = [w for w in self.c.workers.values() if w.alive() and w.url]
            st = None
            if live:
                w = self.rnd.choice(live)
                try:
                    st = http_delete("%s/v1/profiles/%s" % (w.url, urllib.parse.quote(u, safe="")))
                except OSError:  # killed meanwhile: refused, reset, timed out
                    st = None
            if st == 202:
                self.count("DELETE")
                return
            if st is not None and st < 500:
                self.errors.append("DELETE %s at %s: %d, want 202 or a retryable error" % (u, w.name, st))
                return
            self.count("DELETE retried")
            time.sleep(0.5)
        self.count("DELETE given up")

    def record(self, u):
        line = u.encode() + b"\t" + json.dumps({"user_id": u}).encode()
        self.count("kcat" if self.kcat([line], partition_for(u.encode(), NPARTS), ["profiled-control=erase"])
                   else "kcat given up")

    def later_events(self, u):
        now = int(time.time() * 1000)
        lines = []
        for i in range(self.rnd.randint(1, 3)):
            self.seq += 1
            ev = {"user_id": u, "ts": now - 1000 * i, "type": self.rnd.choice(["view", "park", "contact"]),
                  "event_id": "after-erase-%d" % self.seq,
                  "item": {"id": "ae-%d" % self.seq, "make": self.rnd.choice(["Audi", "BMW", "Fiat"]),
                           "color": self.rnd.choice(["red", "black"]), "price": self.rnd.randint(3000, 90000)}}
            lines.append(u.encode() + b"\t" + json.dumps(ev).encode())
        self.count("followed by events" if self.kcat(lines, partition_for(u.encode(), NPARTS))
                   else "events after: kcat given up")

    def erase(self, users, later=True):
        """Erases each user; with `later`, every other one gets fresh events
        right after."""
        for u in users:
            self.users.add(u)
            if self.rnd.random() < 0.5:
                self.delete(u)
            else:
                self.record(u)
            self.nth += later
            if later and self.nth % 2:
                self.later_events(u)
            else:
                self.count("no events after")


# ---------------------------------------------------------------- faults

class Faults(threading.Thread):
    """The fault loop: one fault at a time, until stopped; counts kills by
    phase and other faults by kind. Leaves every worker running."""

    def __init__(self, c, rnd, want_kills, disk=False):
        super().__init__(daemon=True)
        self.c = c
        self.disk = disk
        self.rnd = rnd
        self.want = want_kills
        self.stop_ev = threading.Event()
        self.kills = {}
        self.faults = {}
        self.error = None

    def count(self, d, k):
        d[k] = d.get(k, 0) + 1

    def start_worker(self, wid, wait=True):
        return self.c.start_worker(wid, worker_args(self.c, wid, self.disk), wait_listen=wait)

    def kill(self, wid, phase):
        w = self.c.workers[wid]
        if w.alive():
            w.kill9()
            self.count(self.kills, phase)

    def pause(self, lo, hi):
        self.stop_ev.wait(self.rnd.uniform(lo, hi))

    def owner_map(self):
        """{partition: owner id} as some live worker sees it ({} if none answers)."""
        for wid in self.rnd.sample(WIDS, len(WIDS)):
            w = self.c.workers[wid]
            if not w.alive() or not w.url:
                continue
            try:
                st, _, b = http_get(w.url + "/v1/partitions", timeout=2)
            except OSError:
                continue
            if st == 200:
                return {o["partition"]: o["owner"].get("id") for o in json.loads(b).get("owners", [])
                        if o.get("owner")}
        return {}

    def owner_of_some_partition(self):
        for wid in self.rnd.sample(WIDS, len(WIDS)):
            w = self.c.workers[wid]
            if not w.alive() or not w.url:
                continue
            try:
                st, _, b = http_get(w.url + "/v1/partitions", timeout=2)
            except OSError:
                continue
            if st != 200:
                continue
            owners = [o["owner"].get("id") for o in json.loads(b).get("owners", []) if o.get("owner")]
            if owners:
                o = self.rnd.choice(owners)
                return o if o in WIDS else None
        return None

    def one(self):
        kinds = ["ingest", "ingest", "promotion", "handoff", "startup", "broker_pause", "broker_lost"]
        if self.disk:
            kinds.append("disk_full")
        only = [k for k in os.environ.get("PD_CHAOS_FAULTS", "").split(",") if k in kinds]
        if only:  # e.g. PD_CHAOS_FAULTS=promotion,disk_full: only those
            kinds = only
        k = self.rnd.choice(kinds)
        if k == "ingest":
            wid = self.rnd.choice(WIDS)
            self.kill(wid, "ingestion")
            self.pause(0.2, 2.5)
            self.start_worker(wid)
        elif k == "promotion":
            a = self.owner_of_some_partition() or self.rnd.choice(WIDS)
            parts = [p for p, o in self.owner_map().items() if o == a]
            self.kill(a, "ingestion")
            # the group rebalances (~5 s): a replica of a's partitions is
            # promoted (session timeout + a rebalance: ~11 s here); kill
            # the new owner of one of them as soon as the map names it
            # (within 25 s)
            b = None
            t_end = time.monotonic() + 25
            while b is None and time.monotonic() < t_end:
                time.sleep(self.rnd.uniform(0.2, 0.5))
                m = self.owner_map()
                news = [m[p] for p in parts if m.get(p) not in (None, a)]
                b = self.rnd.choice(news) if news else None
            if b and b != a and b in WIDS:
                self.kill(b, "promotion")
                self.pause(0.2, 1.5)
                self.start_worker(b)
            self.start_worker(a)
        elif k == "handoff":
            wid = self.rnd.choice(WIDS)
            self.kill(wid, "ingestion")
            shutil.rmtree(self.c.workers[wid].data, ignore_errors=True)
            self.start_worker(wid)
            self.pause(0.3, 6.0)  # restoring its partitions from peer snapshots
            self.kill(wid, "hand-off/restore")
            self.pause(0.2, 1.0)
            self.start_worker(wid)
        elif k == "startup":
            wid = self.rnd.choice(WIDS)
            self.kill(wid, "ingestion")
            self.start_worker(wid, wait=False)
            time.sleep(self.rnd.uniform(0.05, 1.0))
            self.kill(wid, "startup")
            self.start_worker(wid)
        elif k == "broker_pause":
            self.c.broker.p.send_signal(signal.SIGSTOP)
            self.count(self.faults, "broker paused")
            self.pause(1.0, 4.0)
            self.c.broker.p.send_signal(signal.SIGCONT)
        elif k == "disk_full":
            # fill DISK_WID's filesystem to below the floor (the worker stops
            # consuming, keeps serving), hold it, free it (it resumes)
            d = self.c.workers[DISK_WID].data
            st = os.statvfs(d)
            free = st.f_bavail * st.f_frsize
            fill = free - self.rnd.randint(8, DISK_FLOOR_MB // 2) * 1024 * 1024
            ballast = os.path.join(d, "chaos-ballast")
            if fill > 0:
                try:
                    with open(ballast, "wb") as f:
                        chunk = b"\0" * (1 << 20)
                        while fill > 0:
                            f.write(chunk[:min(fill, len(chunk))])
                            fill -= len(chunk)
                except OSError:
                    pass
                self.count(self.faults, "disk full")
                self.pause(2.0, 8.0)
            try:
                os.unlink(ballast)
            except OSError:
                pass
        elif k == "broker_lost":
            self.c.broker.p.send_signal(signal.SIGUSR1)
            self.count(self.faults, "broker lost")
            self.pause(2.0, 8.0)
            self.c.broker.p.send_signal(signal.SIGUSR2)

    def run(self):
        try:
            while not self.stop_ev.is_set() or sum(self.kills.values()) < self.want:
                self.one()
                self.pause(0.5, 2.0)
                if sum(self.kills.values()) >= self.want and self.stop_ev.is_set():
                    break
        except Exception as e:  # noqa: BLE001
            self.error = e
        finally:
            self.c.broker.p.send_signal(signal.SIGCONT)
            self.c.broker.p.send_signal(signal.SIGUSR2)


# ---------------------------------------------------------------- checks

UNSETTLED = {}  # wid -> the last /readyz answer that was not 200 (for the timeout's message)


def maps_settled(c):
    seen = []
    owned = 0
    UNSETTLED.clear()
    for wid in WIDS:
        w = c.workers[wid]
        st, _, b = http_get(w.url + "/v1/partitions", timeout=3)
        rst, _, rb = http_get(w.url + "/readyz", timeout=3)
        if st != 200 or rst != 200:
            UNSETTLED[wid] = "partitions %d, readyz %d %s" % (st, rst, rb[:300].decode(errors="replace"))
            return False
        j = json.loads(b)
        UNSETTLED[wid] = "owns %s, map %s" % (j["self"]["owned"], json.dumps(j["owners"], sort_keys=True)[:600])
        if len(j["owners"]) != NPARTS or any(not o.get("owner") for o in j["owners"]):
            return False
        seen.append(json.dumps(j["owners"], sort_keys=True))
        owned += len(j["self"]["owned"])
    return owned == NPARTS and len(set(seen)) == 1


def totals(oracle):
    """user -> (events, event_types) over all retained days."""
    out = {}
    for (u, _day), p in oracle.profiles().items():
        n, t = out.get(u, (0, {}))
        t = dict(t)
        for k, v in p["event_types"].items():
            t[k] = t.get(k, 0) + v
        out[u] = (n + p["events"], t)
    return out


def check_population(c, o):
    """Every worker's GET /v1/population (test_population's variants)
    against the oracle, once every worker's prior is complete and was built
    after the stores caught up. Returns (answers compared, [mismatches])."""
    ws = [c.workers[wid] for wid in WIDS]
    tr.wait_prior(ws, time.monotonic())
    last = []
    tries = [0]

    def equal():
        tries[0] += 1
        last[:] = tp.population_errors(ws, o, nparts=NPARTS)
        return not last
    try:
        wait_for(equal, 60, "every worker's population equal to the oracle", interval=0.5)
    except TestFailure:
        return len(tp.variants(tp.today())) * len(ws), ["population: " + e for e in last]
    if tries[0] > 1:
        log("population equal to the oracle at the %d-th comparison" % tries[0])
    return len(tp.variants(tp.today())) * len(ws), []


def check_rank(c, o, want, erased, events, rnd):
    """test_rank's sweep (every rank variant and the affinities, scores to
    1e-9 relative, order exact) at every worker for a sample of users:
    some with events, erased ones (gone: cold; with later events) and a
    user never seen. Returns (users ranked, [mismatches])."""
    ws = [c.workers[wid] for wid in WIDS]
    gone = sorted(u for u in erased if u not in want)
    back = sorted(u for u in erased if u in want)
    live = sorted(set(want) - erased)
    sample = (rnd.sample(live, min(8, len(live))) + rnd.sample(gone, min(2, len(gone))) +
              rnd.sample(back, min(2, len(back))) + ["nobody-at-all"])
    items = tr.candidates(events, seed=rnd.randrange(1 << 20))
    errs, _ = tr.sweep(o, ws, sample, items, tr.today(), "rank")
    return len(sample), ["rank: " + e for e in errs]


def check_round(c, erased, events, rnd):
    """Returns (users checked, [mismatch descriptions], oracle, {check: count})."""
    errs = []
    counts = {}
    o = ti.oracle_from_topic(c, tracked=tr.TRACKED)
    want = totals(o)
    users = sorted(set(want) | erased) + ["u-never-seen"]
    counts["erased: gone"] = len([u for u in erased if u not in want])
    counts["erased: later events"] = len([u for u in erased if u in want])
    for wid in WIDS:
        w = c.workers[wid]
        for u in users:
            st, _, b = http_get("%s/v1/profiles/%s?days=10" % (w.url, urllib.parse.quote(u)), timeout=5)
            if u not in want:
                if st != 404:
                    errs.append("%s at %s: %d, want 404" % (u, wid, st))
                continue
            if st != 200:
                errs.append("%s at %s: HTTP %d" % (u, wid, st))
                continue
            j = json.loads(b)
            if (j.get("events"), j.get("event_types")) != want[u]:
                errs.append("%s at %s: events %s %s, oracle %s" % (u, wid, j.get("events"), j.get("event_types"),
                                                                   want[u]))
    counts["population answers"], e = check_population(c, o)
    errs += e
    counts["users ranked"], e = check_rank(c, o, want, erased, events, rnd)
    errs += e
    dirs = [c.workers[wid].data for wid in WIDS]
    for wid in WIDS:
        if c.workers[wid].stop() != 0:
            errs.append("%s: graceful stop failed" % wid)
    # stores, user-day by user-day
    owners = ti.owner_dirs(c, dirs)
    got = {}
    for p in range(NPARTS):
        if p not in owners:
            errs.append("partition %d: no store has a checkpoint" % p)
            continue
        for k, v in c.dump(owners[p], partition=p).items():
            got[k] = v["profile"]
    wantd = o.profiles()
    errs += ["store: " + e for e in diff_profiles(wantd, got)]
    # erased users without later events: no key in any copy of their
    # partition that reached the end (owner and replica; a left-over copy
    # below the end is deleted after cleanup_grace)
    gone = set(u for u in erased if u not in want)
    ends = c.watermarks()
    for wid, d in zip(WIDS, dirs):
        for p, off in sorted(c.offsets(d).items()):
            if off < ends.get(p, 0):
                continue
            left = sorted(gone & set(u for u, _ in c.dump(d, partition=p)))
            errs += ["store %s partition %d: erased user %s still has keys" % (wid, p, u) for u in left]
    # the DLQ, de-duplicated by source position. The mock broker keeps
    # about 5 MiB per partition and drops the oldest records beyond that
    # (redone side effects repeat the 1 MB truncated record): a DLQ
    # partition whose low watermark moved cannot be checked in full.
    r = c.ctl("consume", "--brokers", c.bootstrap, "--topic", c.topic + ".dlq", "--watermarks", "true",
              timeout=60)
    for wm in map(json.loads, r.stdout.decode().splitlines()):
        if wm["low"] > 0:
            errs.append("DLQ partition %d: the mock broker dropped its first %d records (retention), "
                        "not a profiled fault; the DLQ check is incomplete" % (wm["partition"], wm["low"]))
    seen = {}
    for r in ti.read_topic(c, c.topic + ".dlq"):
        h = r["headers"]
        pos = (int(h["source_partition"]), int(h["source_offset"]))
        if pos in seen and seen[pos] != h["reason"]:
            errs.append("DLQ: %s twice with different reasons" % (pos,))
        seen[pos] = h["reason"]
    wdlq = {(p, off): reason for p, off, reason in o.dlq}
    for pos, reason in wdlq.items():
        if pos not in seen:
            errs.append("DLQ: %d/%d (%s) missing" % (pos[0], pos[1], reason))
        elif seen[pos] != reason:
            errs.append("DLQ: %d/%d is %s, oracle %s" % (pos[0], pos[1], seen[pos], reason))
    for pos in set(seen) - set(wdlq):
        errs.append("DLQ: %d/%d (%s) not bad" % (pos[0], pos[1], seen[pos]))
    return len(users), errs, o, counts


def one_round(i, rnd, args, want_kills):
    t0 = time.monotonic()
    c = Cluster(partitions=NPARTS, keep=False)
    disk = mount_disk(c)
    ok = False
    row = {"round": i, "kills": {}, "faults": {}, "mismatches": 0, "users": 0, "events": 0, "erasures": {},
           "checks": {}}
    try:
        chunks, bad = build_input(c, rnd, args.events, args.users)
        row["events"] = sum(len(ls) for _, ls in chunks)
        for wid in WIDS:
            c.start_worker(wid, worker_args(c, wid, disk))
        events = []  # the good events sent so far (parsed): erasure victims, rank candidates
        er = Erasures(c, random.Random(rnd.randrange(1 << 30)))  # its own: the fault loop draws from rnd too
        f = Faults(c, rnd, want_kills, disk)
        f.start()
        for k, (kind, lines) in enumerate(chunks):
            produce(c, kind, lines, os.path.join(c.dir, "chunk%d.jsonl" % k))
            events += parsed_events(lines)
            # now and then erase users already sent (their events may go on
            # in later chunks), some followed by events of their own
            if rnd.random() < 0.4:
                er.erase(rnd.sample(sorted({e["user_id"] for e in events}), rnd.randint(1, 2)))
            time.sleep(rnd.uniform(0.2, 1.5))
        # and a few at the end, without later events: gone for good. Once
        # the input is in the stores (the faults go on), so that no re-routed
        # copy of a misrouted event of theirs follows the erasure.
        wait_for(lambda: c.caught_up([c.workers[wid].data for wid in WIDS]), 240,
                 "the input in the stores before the last erasures", interval=1.0)
        er.erase(rnd.sample(sorted({e["user_id"] for e in events} - er.users), 4), later=False)
        f.stop_ev.set()
        f.join(timeout=240)
        if f.is_alive():
            raise TestFailure("the fault loop did not finish within 240 s")
        if f.error:
            raise TestFailure("fault loop: %s" % f.error)
        row["kills"], row["faults"], row["erasures"] = f.kills, f.faults, er.counts
        for wid in WIDS:
            if not c.workers[wid].alive() or not c.workers[wid].url:
                c.start_worker(wid, worker_args(c, wid, disk))
        dirs = [c.workers[wid].data for wid in WIDS]
        wait_for(lambda: c.caught_up(dirs, copies=2), 240, "every partition checkpointed by owner and replica",
                 interval=1.0)
        try:
            wait_for(lambda: maps_settled(c), 120, "the workers to agree on a complete partition map", interval=1.0)
        except TestFailure as e:
            raise TestFailure("%s; last seen: %s" % (e, UNSETTLED))
        n, errs, o, row["checks"] = check_round(c, er.users, events, rnd)
        errs = er.errors + errs
        row["users"] = n
        row["mismatches"] = len(errs)
        row["outcomes"] = o.outcomes
        for e in errs[:10]:
            log("MISMATCH " + e)
        if errs:  # all of them, next to the logs (kept)
            with open(os.path.join(c.dir, "mismatches.txt"), "w") as f:
                f.write("".join(e + "\n" for e in errs))
        ok = not errs
    except (TestFailure, OSError, subprocess.SubprocessError) as e:
        tail = getattr(e, "stderr", None)
        if tail:
            e = "%s; stderr: %s" % (e, tail.decode(errors="replace").strip()[-600:])
        log("round %d failed: %s" % (i, e))
        row["mismatches"] = row["mismatches"] or 1
        row["error"] = str(e)
    finally:
        errs = c.close(ok)
        if disk:
            umount_disk(c)
            if ok:
                shutil.rmtree(c.dir, ignore_errors=True)
        if errs:
            log("close: %s" % "; ".join(errs))
    row["seconds"] = time.monotonic() - t0
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=12, help="at most this many rounds (default 12)")
    ap.add_argument("--kills", type=int, default=110, help="stop once this many SIGKILLs were done (default 110)")
    ap.add_argument("--budget", type=float, default=20.0, help="minutes; no round starts after budget - 2.5")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--events", type=int, default=6000, help="generated events per round")
    ap.add_argument("--users", type=int, default=300)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    print("chaos: seed %d, up to %d rounds, %d kills, %.0f min budget, binaries in %s" % (
        args.seed, args.rounds, args.kills, args.budget, os.environ["PD_BIN"]), flush=True)
    t0 = time.monotonic()
    rows = []
    kills = 0
    for i in range(1, args.rounds + 1):
        left = args.rounds - i + 1
        if time.monotonic() - t0 > (args.budget - 2.5) * 60 or kills >= args.kills:
            break
        want = max(4, (args.kills - kills + left - 1) // left)
        row = one_round(i, rnd, args, want)
        rows.append(row)
        kills += sum(row["kills"].values())
        print("round %2d: %5.0fs  events %5d  kills %3d %s  faults %s  erasures %s  users %d  checks %s  "
              "mismatches %d" % (i, row["seconds"], row["events"], sum(row["kills"].values()), row["kills"],
                                 row["faults"], row["erasures"], row["users"], row["checks"], row["mismatches"]),
              flush=True)
    tot_k, tot_f, tot_e, tot_c = {}, {}, {}, {}
    for r in rows:
        for tot, d in ((tot_k, r["kills"]), (tot_f, r["faults"]), (tot_e, r["erasures"]), (tot_c, r["checks"])):
            for k, v in d.items():
                tot[k] = tot.get(k, 0) + v
    mism = sum(r["mismatches"] for r in rows)
    print()
    print("| rounds | kills | kills by phase | other faults | erasures | users checked x 3 workers | "
          "further checks | mismatches | time |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("| %d | %d | %s | %s | %s | %d | %s | %d | %.1f min |" % (
        len(rows), sum(tot_k.values()), ", ".join("%s %d" % kv for kv in sorted(tot_k.items())),
        ", ".join("%s %d" % kv for kv in sorted(tot_f.items())),
        ", ".join("%s %d" % kv for kv in sorted(tot_e.items())), sum(r["users"] for r in rows),
        ", ".join("%s %d" % kv for kv in sorted(tot_c.items())), mism, (time.monotonic() - t0) / 60))
    print("command: tests/chaos.py --seed %d --rounds %d --kills %d --budget %g --events %d --users %d" % (
        args.seed, args.rounds, args.kills, args.budget, args.events, args.users))
    sys.exit(1 if mism or not rows else 0)


if __name__ == "__main__":
    main()
