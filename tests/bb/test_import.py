"""test_import.py -- rebuilding from an archive (issue 21 item 3):
`profilectl import` builds a store from archived events, and a worker
started on it continues from the topic at the offsets matching --until.

- The events (generated, three days) are split: the archive holds those up
  to a while after UNTIL (gzip and plain files, with bad lines), the topic
  holds a suffix that starts hours before UNTIL (an overlap imported AND
  replayed). Events without event_id after UNTIL are in the topic only.
  The embedded broker (librdkafka's mock cluster) answers every
  offsets_for_times lookup with "end"; in test_import_then_continue the
  worker is started on the store while the topic is still empty (its
  start resolves to offset 0, an answer the check confirms) and the
  suffix is produced afterwards. Half of the suffix is produced before a
  kill -9 of the worker, half while it is down.
- test_resolve_on_a_filled_topic: the topic holds records, stamped out of
  order, before the worker starts: the check refutes the mock's "end",
  the scan of record timestamps must find each partition's first record
  stamped >= UNTIL - max_future_skew (computed here from the topic), and
  an idle imported partition keeps its resolved offset across a kill -9
  (see its docstring).
- The import is killed with SIGKILL mid-way: a worker refuses the
  half-written store, and the same import run again gives the same store
  as an uninterrupted one (dumps equal).
- A worker on the imported store is SIGKILLed after it started consuming
  and started again. Every profile equals the oracle fed the union: the
  archive's lines with ts <= UNTIL (records without a timestamp: their
  delivery time is their ts), then every record of the topic, duplicates
  counted once by the oracle's de-dup rule.
- Bad lines land in the rejects file with the parser's reason, counted by
  reason in the summary; refusals of non-empty directories.
- test_resolution_checkpointed_before_it_is_offered: an importing worker
  joins a running one; the partitions it is given are offered to their
  replica at once, before any periodic commit (see its docstring).
- test_moves_and_promotion: the archive is imported into ONE of three
  workers (replicas = 1); its idle imported partitions move to the others
  by snapshot as they join, an owner of partitions it got that way is
  SIGKILLed with events flowing (its replicas are promoted) and started
  again: after each step every user at every worker, and every copy of a
  partition, equals the oracle (see its docstring).
"""
import gzip
import json
import os
import random
import re
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lib import PROFILECTL, Proc, check, cluster, http_get, main, run, wait_for, metric  # noqa: E402
from oracle import Oracle, diff_profiles, partition_for  # noqa: E402
import test_ingest as ti  # noqa: E402

NPARTS = 4
HOUR = 3600000
SKEW = HOUR  # the workers' max_future_skew (default)


def make_events(c, n, users, seed):
    now = int(time.time() * 1000)
    lines = ti.generate(c, os.path.join(c.dir, "gen-%d.jsonl" % seed), n, users, seed, days=3)
    evs = [json.loads(l) for l in lines]
    evs.sort(key=lambda e: e["ts"])
    until = now - 36 * HOUR
    # some events without event_id, in the topic alone (after the archive's
    # end): counted twice if a restarted worker replayed what it had committed
    for i, e in enumerate(evs):
        if i % 50 == 7 and e["ts"] > until + 2 * HOUR:
            e.pop("event_id", None)
    return now, until, evs


def write_archive(c, evs, until, bad):
    """Three files (two gzip, one plain) with every event up to UNTIL + 2 h
    and the bad lines spread over them."""
    arch = [e for e in evs if e["ts"] <= until + 2 * HOUR]
    random.Random(7).shuffle(arch)  # an archive is not in time order
    lines = [json.dumps(e).encode() for e in arch]
    for i, b in enumerate(bad):
        lines.insert((i * 97) % len(lines), b)
    adir = os.path.join(c.dir, "archive")
    os.makedirs(adir, exist_ok=True)
    k = len(lines) // 3
    chunks = [lines[:k], lines[k:2 * k], lines[2 * k:]]
    for i, ch in enumerate(chunks):
        data = b"\n".join(ch) + b"\n"
        if i < 2:
            with gzip.open(os.path.join(adir, "part-%d.jsonl.gz" % i), "wb") as f:
                f.write(data)
        else:
            open(os.path.join(adir, "part-%d.jsonl.gz" % i), "wb").write(data)  # plain, whatever the name
    return adir, lines


def produce_suffix(c, evs, start, end, name, extra=(), first=None):
    path = os.path.join(c.dir, name)
    with open(path, "wb") as f:
        for e in [e for e in evs if start <= e["ts"] < end][:first]:
            if True:
                d = dict(e)
                d["rts"] = e["ts"] - HOUR // 2  # the record timestamp
                f.write(json.dumps(d).encode() + b"\n")
    out = c.produce_file(path, ["--timestamp_field", "rts"] + list(extra))
    check("failed=0" in out, "produce: %s" % out)
    return [e for e in evs if start <= e["ts"] < end][:first]


def import_(c, adir, data, until, extra=(), check_rc=True):
    return run([PROFILECTL, "import", "--input", os.path.join(adir, "*.jsonl.gz"), "--data-dir", data,
                "--partitions", str(NPARTS), "--until", str(until), "--rejects", data + ".rej"] + list(extra),
               timeout=300, check_rc=check_rc)


def dump_all(c, data):
    return {k: v["profile"] for k, v in c.dump(data).items()}


def oracle_union(c, archive_lines, until, starts=None):
    """starts: {partition: the offset its start resolved to} (default 0)."""
    o = Oracle(nparts=NPARTS)
    for i, l in enumerate(archive_lines):
        try:
            e = json.loads(l)
            ts = e["ts"]
            uid = e["user_id"]
        except Exception:  # noqa: BLE001
            continue  # bad lines: rejected, never state
        if not isinstance(ts, int) or not isinstance(uid, str) or not uid or ts > until:
            continue
        o.feed(partition_for(uid.encode(), NPARTS), i, l, -1)
    # the worker started at the topic's end when it resolved UNTIL: offset 0
    for r in ti.read_topic(c, c.topic):
        if r["offset"] >= (starts or {}).get(r["partition"], 0):
            o.feed(r["partition"], r["offset"], r["value"].encode(), r["timestamp"])
    return o


def compare(want, got):
    errs = diff_profiles(want, got)
    check(not errs, "%d profile differences, e.g.:\n  %s" % (len(errs), "\n  ".join(errs[:10])))
    check(len(want) > 100, "too few profiles (%d)" % len(want))


def test_import_then_continue():
    with cluster(partitions=NPARTS) as c:
        now, until, evs = make_events(c, 12000, 800, 41)
        bad = [l for l, _ in ti.bad_events(now)]
        adir, lines = write_archive(c, evs, until, bad)
        # the reference: one uninterrupted import
        ref = os.path.join(c.dir, "ref")
        r = import_(c, adir, ref, until)
        s = json.loads(r.stdout)
        want_reasons = {}
        for l, why in ti.bad_events(now):
            if why != "future_ts":  # after UNTIL: not imported, counted so
                want_reasons[why] = want_reasons.get(why, 0) + 1
        check(s["rejected_by_reason"] == want_reasons, "reasons %s != %s" % (s["rejected_by_reason"], want_reasons))
        check(s["after_until"] > 100 and s["imported"] > 1000, "summary %s" % s)
        rej = [json.loads(x) for x in open(ref + ".rej", "rb").read().splitlines()]
        check(len(rej) == sum(want_reasons.values()), "%d lines in the rejects file" % len(rej))
        for x in rej:
            check(x["file"].endswith(".jsonl.gz") and x["line"] > 0 and x["detail"] and ("raw" in x or "raw_hex" in x),
                  "reject line %s" % x)
        got_bad = sorted(x.get("raw", "").encode() if "raw" in x else bytes.fromhex(x["raw_hex"]) for x in rej)
        check(got_bad == sorted(l for l, why in ti.bad_events(now) if why != "future_ts"),
              "the rejects file holds the bad lines")
        # kill -9 during an import: a worker refuses the store, the re-run equals the reference
        data = os.path.join(c.dir, "data-w1")
        p = Proc("import", [PROFILECTL, "import", "--input", os.path.join(adir, "*.jsonl.gz"), "--data-dir",
                            data, "--partitions", str(NPARTS), "--until", str(until), "--batch-events", "100",
                            "--progress-every", "1ms", "--rejects", data + ".rej"], c.dir)
        # killed while it reads the second of three files (commits made, not finished)
        wait_for(lambda: "file 2/3" in p.tail(5) or not p.alive(), 60, "the import to reach its second file",
                 interval=0.01)
        killed = p.alive()
        p.kill9()
        check(killed, "the import always finished before the kill")
        w = c.start_worker("w1", wait_listen=False)
        wait_for(lambda: not w.alive(), 30, "the worker to refuse a half-written import")
        check(w.p.returncode != 0 and "half-written import" in w.tail(), "refusal: %s" % w.tail())
        r = import_(c, adir, data, until)  # one commit: de-dup records at seq 1
        check(b"starting over" in r.stderr, "re-run: %r" % r.stderr[-300:])
        check(dump_all(c, data) == dump_all(c, ref), "the re-run store differs from an uninterrupted import")
        r = import_(c, adir, data, until, check_rc=False)
        check(r.returncode == 1 and b"finished import" in r.stderr, "import into a finished import: %r" % r.stderr)
        # The worker resolves UNTIL while the topic is empty (the embedded
        # broker, librdkafka's mock cluster, answers every timestamp lookup
        # with "end": the test cannot check the resolution against a real
        # ListOffsets, only what follows it): it starts at offset 0, and the
        # topic then gets a suffix from UNTIL - 4 h on, stamped 30 min before
        # the events -- an overlap of 4 h with the archive.
        w = c.start_worker("w1")
        wait_for(lambda: "continuing from offset 0" in w.tail(40), 60, "the worker to resolve its start")
        # half of it, a kill -9 after the first commits, the other half while the worker
        # is down: the restart must continue from its checkpoint (not
        # resolve UNTIL again) and reload the de-dup index it rewrote
        mid = until - 2 * HOUR  # the overlap goes on after the restart
        # first, slowly, a few events that are not in the archive (accepted):
        # the worker commits each partition's first one at offset 1 -- the
        # key of the import's de-dup records (seq 1), which it must rewrite
        # (pd_dedup_adopt), not overwrite
        early = [e for e in evs if e["ts"] > until + 4 * HOUR and "event_id" in e][:8]
        produce_suffix(c, early, 0, now + HOUR, "topic-0.jsonl", ["--rate", "4"])
        rest = [e for e in evs if e not in early]
        produce_suffix(c, rest, until - 4 * HOUR, mid, "topic-1.jsonl")
        wait_for(lambda: all(v > 0 for v in c.offsets(w.data).values()), 60, "the worker to commit")
        w.kill9()
        produce_suffix(c, rest, mid, now + HOUR, "topic-2.jsonl")
        w = c.start_worker("w1")
        ti.wait_caught_up(c, [w.data])
        check(w.stop() == 0, "graceful stop")
        o = oracle_union(c, lines, until)
        check(o.outcomes.get("duplicate", 0) > 50, "too little overlap: %s" % o.outcomes)
        compare(o.profiles(), dump_all(c, w.data))
        # a worker's store is refused
        r = import_(c, adir, w.data, until, check_rc=False)
        check(r.returncode == 1 and b"already holds" in r.stderr, "import into a worker's store: %r" % r.stderr)


def log_since(w, pos):
    with open(w.log_path, "rb") as f:
        f.seek(pos)
        return f.read().decode(errors="replace")



def write_topic_file(c, name, recs):
    """recs: (event, record timestamp) in produce order."""
    path = os.path.join(c.dir, name)
    with open(path, "wb") as f:
        for e, rts in recs:
            d = dict(e)
            d["rts"] = rts
            f.write(json.dumps(d).encode() + b"\n")
    out = c.produce_file(path, ["--timestamp_field", "rts"])
    check("failed=0" in out, "produce: %s" % out)


def test_resolve_on_a_filled_topic():
    """The topic holds records BEFORE the worker starts (the embedded
    broker answers "none" to offsets_for_times, i.e. the end): the check
    refutes that answer (the last record is recent) and the scan must find,
    per partition, the first record stamped >= UNTIL - max_future_skew
    among non-monotonic stamps. Partitions 0-2, in offset order:
      A. events UNTIL-6h .. target, stamped 0-55 min before their ts (all
         before the target; in the archive: duplicates),
      B. one boundary record per partition, stamped target + 1 min, holding
         an event UNTIL + 30 s (not imported: after UNTIL) -- the first
         record a correct scan keeps; skipping it loses its event,
      C. events from the target on, stamped 0-55 min before their ts (some
         before the target again). Half before the start, half while the
         worker is down after a kill -9.
    Partition 3 is empty when the worker starts (Kafka's answer verifies
    trivially), and gets, while the worker is down, a record stamped
    before the target holding an event not in the archive: an idle
    imported partition is checkpointed at its resolved offset at once, so
    the restart consumes it (resolving again would skip it).
    Expected: each partition's start offset equals the one computed here
    from the topic's stamps, and the profiles equal the oracle fed the
    archive (ts <= UNTIL) and every topic record."""
    with cluster(partitions=NPARTS) as c:
        now, until, evs = make_events(c, 6000, 500, 43)
        target = until - SKEW
        adir, lines = write_archive(c, evs, until, [])
        data = os.path.join(c.dir, "data-w1")
        import_(c, adir, data, until)
        rnd = random.Random(5)
        part = {id(e): partition_for(e["user_id"].encode(), NPARTS) for e in evs}
        live = [e for e in evs if part[id(e)] != 3 and "event_id" in e]

        def jittered(es):
            return [(e, e["ts"] - rnd.randrange(0, 55 * 60000)) for e in es]

        a = jittered([e for e in live if until - 6 * HOUR <= e["ts"] < target])
        boundary = []
        for p in range(3):
            e = dict(next(e for e in live if part[id(e)] == p))
            e["ts"] = until + 30000 + p
            e["event_id"] = "boundary-%d" % p
            boundary.append((e, target + 60000))
        rest = [e for e in live if e["ts"] >= target]
        c1 = jittered(rest[:len(rest) // 2])
        c2 = jittered(rest[len(rest) // 2:])
        write_topic_file(c, "topic-a.jsonl", a + boundary + c1)
        # what a correct resolution gives, from the topic's own stamps
        recs = ti.read_topic(c, c.topic)
        want_start = {}
        for p in range(NPARTS):
            stamps = [r["timestamp"] for r in recs if r["partition"] == p]
            check([r["offset"] for r in recs if r["partition"] == p] == list(range(len(stamps))), "offsets")
            check(p == 3 or any(x < y for x, y in zip(stamps[1:], stamps)), "partition %d: monotonic stamps" % p)
            want_start[p] = next((i for i, t in enumerate(stamps) if t >= target), len(stamps))
            check(p == 3 or 0 < want_start[p] < len(stamps) and stamps[-1] >= target,
                  "partition %d: the boundary is not inside the topic" % p)
        w = c.start_worker("w1")
        pat = re.compile(r"partition (\d+): imported up to \S+; continuing from offset (\d+) \(.*?; (by scan|Kafka's)")
        got = {}

        def resolved():
            for m in pat.finditer(log_since(w, 0)):
                got[int(m.group(1))] = (int(m.group(2)), m.group(3))
            return len(got) == NPARTS

        wait_for(resolved, 120, "the worker to resolve every partition's start")
        check({p: o for p, (o, _) in got.items()} == want_start, "start offsets %s != %s" % (got, want_start))
        check(all(got[p][1] == "by scan" for p in range(3)) and got[3][1] == "Kafka's", "how: %s" % got)
        check(metric(w.url, 'profiled_import_resolutions_total{how="scan"}') == 3 and
              metric(w.url, 'profiled_import_resolutions_total{how="lookup"}') == 1, "the resolution metric")
        wait_for(lambda: all(c.offsets(w.data).get(p, 0) > want_start[p] for p in range(3)), 60,
                 "the worker to commit")
        w.kill9()
        late = dict(next(e for e in evs if part[id(e)] == 3))
        late["ts"] = until - 2 * HOUR
        late["event_id"] = "late-3"
        write_topic_file(c, "topic-c.jsonl", c2 + [(late, late["ts"] - 600000)])
        pos = os.path.getsize(w.log_path)
        w = c.start_worker("w1")
        ti.wait_caught_up(c, [w.data])
        check(w.stop() == 0, "graceful stop")
        check("imported up to" not in log_since(w, pos), "the restart resolved a start time again")
        o = oracle_union(c, lines, until)
        check(o.outcomes.get("duplicate", 0) > 50, "too little overlap: %s" % o.outcomes)
        compare(o.profiles(), dump_all(c, w.data))


def readyz(w):
    st, _, body = http_get(w.url + "/readyz")
    try:
        return st, json.loads(body)
    except ValueError:
        return st, {}


def settled(ws):
    """Every partition owned by one of ws and replicated by another, every
    worker ready (no restore or catch-up in progress, no rebuild from the
    topic alone)."""
    rs = [readyz(w) for w in ws]
    return (all(st == 200 and j.get("status") == "ready" and not j.get("incomplete_rebuild") for st, j in rs) and
            sum(j.get("owned", 0) for _, j in rs) == NPARTS and
            sum(len(j.get("replicas", [])) for _, j in rs) == NPARTS)


def every_worker_equals(c, ws, o, what):
    """Every user at every worker (GET with a day breakdown: served by the
    owner, forwarded or not) equals the oracle, and every copy of a
    partition checkpointed at the topic's end (owner and replica: dump)
    too."""
    want = {}
    for (u, day), prof in o.profiles().items():
        want.setdefault(u, {})[day] = (prof["events"], prof["event_types"])
    errs = []
    for w in ws:
        for u in sorted(want):
            st, _, body = http_get("%s/v1/profiles/%s?breakdown=day" % (w.url, urllib.parse.quote(u)), timeout=15)
            if st != 200:
                errs.append("%s at %s: status %d" % (u, w.name, st))
                continue
            j = json.loads(body)
            got = {d["day"]: (d["events"], d["event_types"]) for d in j.get("days", [])}
            if got != want[u]:
                errs.append("%s at %s (served by %s): %s != oracle %s" % (u, w.name, j.get("served_by"), got,
                                                                         want[u]))
    check(not errs, "%s: %d answers differ from the oracle, e.g.:\n  %s" % (what, len(errs), "\n  ".join(errs[:8])))
    ends = c.watermarks()
    wantp = o.profiles()
    copies = {p: 0 for p in range(NPARTS)}
    for w in ws:
        for p, off in c.offsets(w.data).items():
            if off != ends.get(p):
                continue  # (a copy left behind: not held any more)
            copies[p] += 1
            got = {k: v["profile"] for k, v in c.dump(w.data, partition=p).items()}
            mine = {k: v for k, v in wantp.items() if partition_for(k[0].encode(), NPARTS) == p}
            errs = diff_profiles(mine, got)
            check(not errs, "%s: partition %d in %s's store differs from the oracle (%d), e.g.:\n  %s" %
                  (what, p, w.name, len(errs), "\n  ".join(errs[:8])))
    check(all(n >= 2 for n in copies.values()), "%s: copies at the end offset %s" % (what, copies))
    print("  %s: %d users at %d workers and every copy equal the oracle (%d duplicates dropped)" %
          (what, len(want), len(ws), o.outcomes.get("duplicate", 0)))


def test_moves_and_promotion():
    """An archive imported into ONE worker's data directory (w1); w2 and w3
    have none. w1 starts alone: partition 0 holds six records stamped
    before the target (archived events, three without event_id: a copy
    that consumed them would count those twice), the others are empty;
    every partition resolves (0 to offset 6, the others to 0) and stays
    idle (no record of the topic applied). With replicas = 1:
      (a) w2 and w3 join: partitions move to them (snapshots of idle
          imported partitions) and get replicas on them: every user at every
          worker equals the archive's oracle -- a worker rebuilding from the
          topic alone would have no user of its partitions;
      then a few events not in the archive arrive slowly (each commit of a
      receiver applies one record: its first de-dup record is keyed 1, the
      key of the import's only one, which it must rewrite, not replace),
      then the first hour of the overlap (events at or before UNTIL that
      the archive has: counted once);
      (b) w2 (owner of partitions it got by snapshot) is SIGKILLed with
          events flowing (produced while it is down and after its
          partitions were taken over); its replicas are promoted;
      then w2 is started again (its copies reload their de-dup index from
      its store, or from a peer's snapshot) and the rest of the overlap and
      events after UNTIL arrive.
    After each step every user at every live worker, and every copy at the
    topic's end, equals the oracle fed the archive (ts <= UNTIL) and the
    topic's records (duplicates counted once)."""
    with cluster(partitions=NPARTS) as c:
        now, until, evs = make_events(c, 12000, 500, 47)
        part = {id(e): partition_for(e["user_id"].encode(), NPARTS) for e in evs}
        # partition 0: records stamped before the target (archived events,
        # half without event_id) before w1 starts: it starts after them
        pre = [e for e in evs if part[id(e)] == 0 and until - 8 * HOUR <= e["ts"] < until - 6 * HOUR][:6]
        for e in pre[::2]:
            e.pop("event_id", None)
        adir, lines = write_archive(c, evs, until, [])
        import_(c, adir, os.path.join(c.dir, "data-w1"), until)  # one commit: de-dup records at seq 1
        write_topic_file(c, "topic-pre.jsonl", [(e, e["ts"] - HOUR // 2) for e in pre])
        starts = {0: len(pre)}
        opts = ["--replicas", "1"]
        w1 = c.start_worker("w1", opts)
        pat = re.compile(r"partition (\d+): imported up to \S+; continuing from offset (\d+)")
        wait_for(lambda: len(pat.findall(log_since(w1, 0))) == NPARTS, 60, "w1 to resolve every partition")
        got = {int(p): int(off) for p, off in pat.findall(log_since(w1, 0))}
        check(got == {p: starts.get(p, 0) for p in range(NPARTS)}, "start offsets %s" % got)
        ws = {"w1": w1}
        for wid in ("w2", "w3"):
            ws[wid] = c.start_worker(wid, opts)
            wait_for(lambda: settled(list(ws.values())), 120, "partitions to settle after %s joined" % wid,
                     interval=0.5)
        for wid in ("w2", "w3"):
            check("restored from" in log_since(ws[wid], 0), "%s fetched no snapshot" % wid)
            check("rebuilding from" not in log_since(ws[wid], 0), "%s rebuilt from the topic" % wid)
        o = oracle_union(c, lines, until, starts)  # the archive alone: nothing after the starts yet
        every_worker_equals(c, list(ws.values()), o, "(a) after the moves")
        early = []
        for p in range(NPARTS):
            early += [e for e in evs if part[id(e)] == p and e["ts"] > until + 4 * HOUR and "event_id" in e][:3]
        produce_suffix(c, early, 0, now + HOUR, "topic-0.jsonl", ["--rate", "4"])
        rest = [e for e in evs if e not in early]
        produce_suffix(c, rest, until - 4 * HOUR, until - 3 * HOUR, "topic-1.jsonl")
        wait_for(lambda: c.caught_up([w.data for w in ws.values()], 2), 120, "both copies to catch up",
                 interval=0.5)
        every_worker_equals(c, list(ws.values()), oracle_union(c, lines, until, starts),
                            "after the first hour of overlap")
        # (b) the owner of partitions it got by snapshot dies; events go on
        _, j = readyz(ws["w2"])
        check(j.get("owned", 0) > 0, "w2 owns nothing: %s" % j)
        ws["w2"].kill9()
        w2 = ws.pop("w2")
        produce_suffix(c, rest, until - 3 * HOUR, until - 2 * HOUR, "topic-2.jsonl")
        wait_for(lambda: settled(list(ws.values())), 120, "w2's partitions to be promoted", interval=0.5)
        produce_suffix(c, rest, until - 2 * HOUR, until - HOUR, "topic-3.jsonl")
        wait_for(lambda: c.caught_up([w.data for w in ws.values()], 2), 120, "both copies to catch up",
                 interval=0.5)
        every_worker_equals(c, list(ws.values()), oracle_union(c, lines, until, starts), "(b) after the promotion")
        # w2 comes back: partitions move again, its copies reload their de-dup index
        ws["w2"] = c.start_worker("w2", opts)
        wait_for(lambda: settled(list(ws.values())), 120, "partitions to settle after w2's restart", interval=0.5)
        produce_suffix(c, rest, until - HOUR, now + HOUR, "topic-4.jsonl")
        wait_for(lambda: c.caught_up([w.data for w in ws.values()], 2), 120, "both copies to catch up",
                 interval=0.5)
        o = oracle_union(c, lines, until, starts)
        check(o.outcomes.get("duplicate", 0) > 100, "too little overlap: %s" % o.outcomes)
        every_worker_equals(c, list(ws.values()), o, "after w2's restart")
        check(w2.p.returncode is not None, "w2 killed")


def test_resolution_checkpointed_before_it_is_offered():
    """A fresh resolution is checkpointed at once, not by the next periodic
    commit: w2 (no import) runs first on the empty topic and owns every
    partition (nothing to hold); w1, with the import and no commit due for
    a minute (commit_interval_ms = commit_min_interval_ms = 60 s), joins.
    The partitions it is given resolve as it takes them on, and w2, placed
    as their replica, fetches them from w1 at once. w1 is SIGKILLed: w2,
    promoted, must answer every user of those partitions as the oracle
    (archive + topic) -- had the resolution waited for the periodic
    commit, w1 would have refused the snapshot (start not resolved) and w2
    rebuilt them from the topic alone. (w2's own partitions have no
    archive: it took them on before any worker held the import, see
    docs/operations.md "Blue/green procedure".)"""
    with cluster(partitions=NPARTS) as c:
        now, until, evs = make_events(c, 4000, 300, 53)
        adir, lines = write_archive(c, evs, until, [])
        import_(c, adir, os.path.join(c.dir, "data-w1"), until)
        opts = ["--replicas", "1"]
        w2 = c.start_worker("w2", opts)
        wait_for(lambda: readyz(w2)[1].get("owned") == NPARTS, 60, "w2 to own every partition")
        w1 = c.start_worker("w1", opts + ["--commit_interval_ms", "60000", "--commit_min_interval_ms", "60000"])
        wait_for(lambda: settled([w1, w2]), 60, "w1's partitions to get their replica on w2", interval=0.2)
        _, _, body = http_get(w1.url + "/v1/partitions")
        mine = set(json.loads(body)["self"]["owned"])
        check(mine and len(mine) < NPARTS, "w1 owns %s" % mine)
        w1.kill9()
        wait_for(lambda: readyz(w2)[1].get("owned") == NPARTS and readyz(w2)[1].get("status") == "ready", 60,
                 "w2 to take w1's partitions over")
        o = oracle_union(c, lines, until)  # the topic is empty
        want = {}
        for (u, day), prof in o.profiles().items():
            if partition_for(u.encode(), NPARTS) in mine:
                want.setdefault(u, {})[day] = (prof["events"], prof["event_types"])
        errs = []
        for u in sorted(want):
            st, _, body = http_get("%s/v1/profiles/%s?breakdown=day" % (w2.url, urllib.parse.quote(u)), timeout=15)
            got = {d["day"]: (d["events"], d["event_types"]) for d in json.loads(body).get("days", [])} \
                if st == 200 else st
            if got != want[u]:
                errs.append("%s: %s != oracle %s" % (u, got, want[u]))
        check(len(want) > 50, "too few users on w1's partitions (%d)" % len(want))
        check(not errs, "%d of %d users of partitions %s differ at w2, e.g.:\n  %s" %
              (len(errs), len(want), sorted(mine), "\n  ".join(errs[:8])))
        print("  %d users of partitions %s equal the oracle at w2 after w1's death" % (len(want), sorted(mine)))


if __name__ == "__main__":
    main([test_import_then_continue, test_resolve_on_a_filled_topic, test_moves_and_promotion,
          test_resolution_checkpointed_before_it_is_offered])
