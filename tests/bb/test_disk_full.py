"""test_disk_full.py -- a full disk (issue 22, hole 6): a worker whose data
directory is on a small tmpfs, filled by a ballast file below
disk_min_free_mb, stops consuming and committing (its store's checkpoints
do not move), keeps answering every user (a state the profile went
through), says so (/readyz degraded disk_low, profiled_disk_low, a log
line), survives kill -9 and a restart on the still-full disk (no RocksDB
abort), and once the ballast is gone resumes by itself: every user at
every worker then equals the oracle (tests/oracle.py, fed from the topic),
duplicates included. Needs root (mount -t tmpfs); skipped otherwise."""
import json
import os
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import check, cluster, http_get, main, wait_for, metric  # noqa: E402
from test_handoff import PrefixOracle, all_caught_up, check_final, gen_file, read_log  # noqa: E402

FLOOR_MB = 8


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path, mnt, leave):
    """Writes the ballast file until `leave` bytes are free on mnt."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        while free_bytes(mnt) > leave:
            os.write(fd, b"\0" * min(1 << 16, max(4096, free_bytes(mnt) - leave)))
    finally:
        os.close(fd)


def readyz(w):
    st, _, b = http_get(w.url + "/readyz")
    return st, json.loads(b)



def disk_low(w):
    st, j = readyz(w)
    return "disk_low" in j.get("degraded", []) and metric(w, 'profiled_disk_low{reason="floor"}') == 1


def test_disk_low_pauses_serves_and_resumes():
    """Two workers (replicas 1), w1's data on a 40 MiB tmpfs. Ballast to
    3 MiB free (floor 8 MiB): w1 pauses; a second batch (with duplicates)
    is produced; w1's checkpoints stay where they were, every user answers
    200 at w1 with a state its profile went through. Ballast removed: w1
    resumes and every user at both workers equals the oracle. Full again,
    a third batch, kill -9 of w1 and a restart on the full disk: it binds,
    serves (a state the profile went through, or 503), stays paused.
    Ballast removed: the oracle's answer at both workers again.
    Fails when the floor does not pause (checkpoints move, or RocksDB
    aborts at ENOSPC), when /readyz or the metric hide it, or when
    resuming loses the records fetched before the pause."""
    if os.geteuid() != 0:
        print("  (skipped: needs root for mount -t tmpfs)")
        return
    nparts = 4
    with cluster(partitions=nparts) as c:
        mnt = os.path.join(c.dir, "mnt")
        os.makedirs(mnt)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", mnt], check=True, timeout=30)
        ballast = os.path.join(mnt, "ballast")
        w1 = None
        try:
            args = ["--replicas", "1", "--disk_min_free_mb", str(FLOOR_MB), "--write_buffer_mb", "1"]
            w1 = c.start_worker("w1", args + ["--data_dir", os.path.join(mnt, "data")])
            w1.data = os.path.join(mnt, "data")
            w2 = c.start_worker("w2", args)
            c.produce_file(gen_file(c, "a.jsonl", 3000, 200, 601))
            wait_for(lambda: all_caught_up(c, [w1, w2], nparts, copies=2), 120, "both copies caught up",
                     interval=0.5)
            before = c.offsets(w1.data)
            first = set(PrefixOracle(read_log(c), nparts).states)  # users of the first batch
            fill(ballast, mnt, 3 << 20)
            wait_for(lambda: disk_low(w1), 20, "w1 to report disk_low", interval=0.3)
            check(metric(w1, "profiled_disk_pauses_total") >= 1, "profiled_disk_pauses_total")
            check("below disk_min_free_mb" in open(w1.log_path, "rb").read().decode(errors="replace"),
                  "no log line about the floor")
            c.produce_file(gen_file(c, "b.jsonl", 3000, 200, 602))
            # w2 ingests its own partitions; w1 must not move at all
            wait_for(lambda: metric(w2, "profiled_flushes_total") > 0, 30, "w2 flushing")
            time.sleep(4)
            check(c.offsets(w1.data) == before,
                  "w1 committed below the floor: %r -> %r" % (before, c.offsets(w1.data)))
            prefix = PrefixOracle(read_log(c), nparts)
            users = sorted(prefix.states)
            errs = []
            for u in users:
                st, _, b = http_get("%s/v1/profiles/%s" % (w1.url, urllib.parse.quote(u)))
                if st == 404 and u not in first:
                    continue  # only in the second batch, on a partition w1 owns: not read yet
                if st != 200 or not prefix.valid(u, json.loads(b)):
                    errs.append("%s: %d %s" % (u, st, b[:100]))
            check(not errs, "serving below the floor: %d bad answers, e.g. %s" % (len(errs), errs[:3]))
            # space returns: w1 resumes by itself, from where it stopped reading
            os.unlink(ballast)
            wait_for(lambda: not disk_low(w1) and readyz(w1)[1]["status"] == "ready", 60, "w1 to resume",
                     interval=0.5)
            wait_for(lambda: all_caught_up(c, [w1, w2], nparts, copies=2), 120, "both copies caught up",
                     interval=0.5)
            check_final(c, [w1, w2], prefix, users)
            # full again, a third batch, then kill -9 and a restart on the
            # full disk: no abort, serves, stays paused
            before = c.offsets(w1.data)
            fill(ballast, mnt, 3 << 20)
            wait_for(lambda: disk_low(w1), 20, "w1 to report disk_low again", interval=0.3)
            c.produce_file(gen_file(c, "c.jsonl", 2000, 200, 603))
            time.sleep(2)
            w1.kill9()
            w1 = c.start_worker("w1", args + ["--data_dir", os.path.join(mnt, "data")])
            w1.data = os.path.join(mnt, "data")
            wait_for(lambda: disk_low(w1), 30, "restarted w1 to report disk_low", interval=0.3)
            time.sleep(3)
            check(w1.alive(), "w1 died on the full disk:\n" + w1.tail())
            check(c.offsets(w1.data) == before, "restarted w1 committed below the floor")
            prefix = PrefixOracle(read_log(c), nparts)
            for u in users:
                st, _, b = http_get("%s/v1/profiles/%s" % (w1.url, urllib.parse.quote(u)))
                check(st == 503 or (st == 200 and prefix.valid(u, json.loads(b))),
                      "%s at the restarted w1: %d %s" % (u, st, b[:200]))
            os.unlink(ballast)
            wait_for(lambda: not disk_low(w1) and readyz(w1)[1]["status"] == "ready", 60, "w1 to resume",
                     interval=0.5)
            wait_for(lambda: all_caught_up(c, [w1, w2], nparts, copies=2), 120, "both copies caught up again",
                     interval=0.5)
            prefix = PrefixOracle(read_log(c), nparts)
            check_final(c, [w1, w2], prefix, sorted(prefix.states))
            check(w1.stop() == 0, "w1 exit code")
            check(w2.stop() == 0, "w2 exit code")
            print("  (%d users; w1 paused at %.1f MiB free, floor %d MiB)" % (len(users), 3.0, FLOOR_MB))
        finally:
            if w1 is not None and w1.alive():
                w1.kill9()
            subprocess.run(["umount", "-l", mnt], timeout=30)


if __name__ == "__main__":
    main([test_disk_low_pauses_serves_and_resumes])
