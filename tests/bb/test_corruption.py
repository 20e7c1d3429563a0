"""test_corruption.py -- a corrupt store (issue 22, hole 7). Files of a
stopped worker's store are damaged, then the worker is started again:

- table files (SST) garbled in their data blocks: RocksDB opens the store,
  but every read of a damaged block fails its checksum. No answer may be
  wrong: each 200 equals the oracle, the rest are 500s whose body names
  no server path; /readyz says failing, profiled_store_corruptions_total
  counts, the store is marked (CORRUPT). With store_corruption=refuse the
  worker goes on serving what reads fine and its next start refuses the
  store; with the default it restarts itself at the first corrupt read
  (same PID), quarantines the directory (kept as <data_dir>.corrupt-*) and
  restores every partition from the peer's snapshots: every user at both
  workers equals the oracle.
- the MANIFEST garbled: the store does not open. store_corruption=refuse
  exits with code 3 and says why; the default (quarantine) starts, restores
  and equals the oracle.
Oracle: tests/oracle.py fed from the topic (PrefixOracle)."""
import glob
import json
import os
import random
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import check, cluster, http_get, main, wait_for, metric  # noqa: E402
from test_handoff import PrefixOracle, all_caught_up, check_final, gen_file, read_log  # noqa: E402


def readyz(w):
    st, _, b = http_get(w.url + "/readyz")
    return st, json.loads(b)



def garble(path, rnd, offset_frac=0.5, n=4096):
    size = os.path.getsize(path)
    off = max(0, int(size * offset_frac) - n // 2)
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(bytes(rnd.getrandbits(8) for _ in range(min(n, size - off))))


def start_pair(c):
    args = ["--replicas", "1", "--write_buffer_mb", "1"]
    w1 = c.start_worker("w1", args)
    w2 = c.start_worker("w2", args)
    return args, w1, w2


def scan(c, w, users, prefix, stop_at_first_failure=False):
    """Asks w for users; returns (answered 200, refused, wrong answers).
    A 200 must equal the oracle; a 500/503 must not name a server path."""
    ok = bad = 0
    errs = []
    for u in users:
        st, _, b = http_get("%s/v1/profiles/%s" % (w.url, urllib.parse.quote(u)))
        if st == 200:
            j = json.loads(b)
            if (j["events"], j["event_types"]) != prefix.final(u):
                errs.append("%s: 200 with %s events, oracle %s" % (u, j["events"], prefix.final(u)[0]))
            ok += 1
        elif st in (500, 503):
            text = b.decode(errors="replace")
            if "/" in json.loads(b).get("detail", "") or c.dir in text or ".sst" in text:
                errs.append("%s: %d exposes a path: %s" % (u, st, text[:200]))
            bad += 1
            if stop_at_first_failure:
                break
        else:
            errs.append("%s: status %d %s" % (u, st, b[:120]))
    return ok, bad, errs


def test_corrupt_tables_never_served_then_quarantined():
    """SSTs of w1 garbled while it is stopped. With store_corruption=refuse
    w1 answers every user either as the oracle says or 500 without a path,
    /readyz failing, the store marked, and it keeps running; its next start
    refuses the store (exit 3). With the default (quarantine) and the
    damage found only while running (marker removed), the first corrupt
    read makes w1 restart itself (same PID), quarantine the store and
    restore every partition from w2: both equal the oracle. Fails on code
    that serves from a damaged store without saying so, that exposes paths
    in a 500, that never recovers, or that needs an outside restart."""
    nparts = 4
    rnd = random.Random(71)
    with cluster(partitions=nparts) as c:
        args, w1, w2 = start_pair(c)
        c.produce_file(gen_file(c, "a.jsonl", 12000, 300, 701))
        wait_for(lambda: all_caught_up(c, [w1, w2], nparts, copies=2), 180, "both copies caught up", interval=0.5)
        prefix = PrefixOracle(read_log(c), nparts)
        users = sorted(prefix.states)
        check(w1.stop() == 0, "w1 exit code")
        # an offline backup flushes the memtables: the state is in table files
        c.ctl("backup", "--data-dir", w1.data, "--to", os.path.join(c.dir, "bk"))
        # data blocks only (the first fifth of each larger table; its footer
        # and index are at the end): RocksDB opens the store as usual
        ssts = sorted(p for p in glob.glob(os.path.join(w1.data, "*.sst")) if os.path.getsize(p) > 32768)
        check(ssts, "no table files in w1's store to damage")
        for p in ssts:
            garble(p, rnd, 0.2, 64)
        refuse = args + ["--store_corruption", "refuse"]
        w1 = c.start_worker("w1", refuse)
        wait_for(lambda: readyz(w1)[1].get("owned", 0) > 0 and readyz(w1)[1].get("status") != "starting", 60,
                 "w1 to own partitions", interval=0.5)
        ok, bad, errs = scan(c, w1, users, prefix)
        refused = bad
        check(not errs, "%d wrong answers from the damaged store, e.g. %s" % (len(errs), errs[:3]))
        check(bad > 0, "no read failed: the damage was not detected (%d answered 200)" % ok)
        st, j = readyz(w1)
        check(st == 503 and j.get("status") == "failing" and "corrupt" in j.get("detail", ""),
              "/readyz after a corrupt read: %d %r" % (st, j))
        check(metric(w1, "profiled_store_corruptions_total") >= 1, "profiled_store_corruptions_total")
        check(os.path.exists(os.path.join(w1.data, "CORRUPT")), "the store was not marked")
        check(w1.alive() and "restarting" not in w1.tail(200), "store_corruption=refuse restarted the worker")
        w1.stop()
        w1 = c.start_worker("w1", refuse, wait_listen=False)
        wait_for(lambda: not w1.alive(), 30, "w1 to refuse the marked store")
        check(w1.p.returncode == 3 and "Not starting" in w1.tail(), "refusal: rc %s %s" % (w1.p.returncode, w1.tail(5)))
        # the damage found only while running: the same store without its marker
        os.unlink(os.path.join(w1.data, "CORRUPT"))
        w1 = c.start_worker("w1", args)
        pid = w1.p.pid
        wait_for(lambda: readyz(w1)[1].get("owned", 0) > 0 and readyz(w1)[1].get("status") != "starting", 60,
                 "w1 to own partitions", interval=0.5)
        ok, bad, errs = scan(c, w1, users, prefix, stop_at_first_failure=True)
        check(not errs, "wrong answers before the restart: %s" % errs[:3])
        check(bad == 1, "no read failed: the damage was not detected (%d answered 200)" % ok)
        # w1 restarts itself: the same process prints its new address
        line = w1.readline(120)
        check(line.startswith("listening ") and w1.p.pid == pid and w1.alive(),
              "w1 did not restart itself: %r, log %s" % (line, w1.tail(10)))
        w1.url = line.split()[1]
        quarantined = glob.glob(w1.data + ".corrupt-*")
        check(len(quarantined) == 1 and glob.glob(os.path.join(quarantined[0], "*.sst")),
              "quarantined copy: %r" % quarantined)
        check(metric(w1, "profiled_store_quarantines_total") == 1, "profiled_store_quarantines_total")
        wait_for(lambda: readyz(w1)[0] == 200 and readyz(w1)[1]["status"] == "ready", 120, "w1 ready again",
                 interval=0.5)
        check(readyz(w1)[1].get("store_quarantined") is True, "/readyz does not say the store was quarantined")
        wait_for(lambda: all_caught_up(c, [w1, w2], nparts, copies=2), 120, "both copies caught up again",
                 interval=0.5)
        c.produce_file(gen_file(c, "b.jsonl", 2000, 300, 702))
        wait_for(lambda: all_caught_up(c, [w1, w2], nparts, copies=2), 120, "the second batch", interval=0.5)
        prefix = PrefixOracle(read_log(c), nparts)
        check_final(c, [w1, w2], prefix, sorted(prefix.states))
        log = open(w1.log_path, "rb").read().decode(errors="replace")
        check("restarting (1 of at most 3)" in log and "Quarantined as" in log,
              "no log lines about the restart and the quarantine")
        print("  (%d users: %d refused by the damaged store; %d tables damaged; restarted after %d good answers)"
              % (len(users), refused, len(ssts), ok))


def test_corrupt_manifest_refused_or_quarantined():
    """The MANIFEST of a stopped w1 garbled: with store_corruption=refuse
    it exits 3 and says so, the directory untouched; with the default it
    quarantines, restores from w2 and equals the oracle. Fails on code
    that dies with RocksDB's raw error and never recovers."""
    nparts = 4
    rnd = random.Random(72)
    with cluster(partitions=nparts) as c:
        args, w1, w2 = start_pair(c)
        c.produce_file(gen_file(c, "a.jsonl", 4000, 200, 703))
        wait_for(lambda: all_caught_up(c, [w1, w2], nparts, copies=2), 180, "both copies caught up", interval=0.5)
        check(w1.stop() == 0, "w1 exit code")
        manifests = glob.glob(os.path.join(w1.data, "MANIFEST-*"))
        check(len(manifests) == 1, "manifests: %r" % manifests)
        garble(manifests[0], rnd, 0.3, 64)
        r = c.start_worker("w1r", args + ["--data_dir", w1.data, "--store_corruption", "refuse"], wait_listen=False)
        r.p.wait(timeout=60)
        check(r.p.returncode == 3, "refuse: exit code %r\n%s" % (r.p.returncode, r.tail()))
        check("is corrupt" in r.tail() and "store_corruption=quarantine" in r.tail(), "refuse: " + r.tail())
        check(not glob.glob(w1.data + ".corrupt-*"), "refuse moved the directory")
        del c.workers["w1r"]
        c.produce_file(gen_file(c, "b.jsonl", 1000, 200, 704))
        w1 = c.start_worker("w1", args)
        check(len(glob.glob(w1.data + ".corrupt-*")) == 1, "not quarantined")
        wait_for(lambda: readyz(w1)[0] == 200 and readyz(w1)[1]["status"] == "ready", 120, "w1 ready",
                 interval=0.5)
        wait_for(lambda: all_caught_up(c, [w1, w2], nparts, copies=2), 120, "both copies caught up again",
                 interval=0.5)
        prefix = PrefixOracle(read_log(c), nparts)
        check_final(c, [w1, w2], prefix, sorted(prefix.states))


if __name__ == "__main__":
    main([test_corrupt_tables_never_served_then_quarantined, test_corrupt_manifest_refused_or_quarantined])
