"""test_robust.py -- unlucky operators and careless producers (issue 22,
hole 8): a worker stopped before its first assignment exits cleanly and
loses nothing, a bad record too large for one Kafka record still reaches
the DLQ (cut, with a header saying so), and a second worker on a data
directory already in use says so instead of RocksDB's raw LOCK message
(so does a worker given a topic that does not exist, and `profilectl dump
--user` of an unknown user), and a data directory deleted under a running
worker makes it log an error and leave /readyz at once.
Oracle: tests/oracle.py fed from the topic itself."""
import json
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import PROFILED, check, cluster, http_get, main, run, wait_for  # noqa: E402
from oracle import validate  # noqa: E402
from test_ingest import (NPARTS, build_input, misrouted_events, read_topic,  # noqa: E402
                         settle_and_compare)


def test_sigterm_before_first_assignment():
    """SIGTERM 0.2, 1, 2, 3 and 4 s after start, while another worker owns
    the group: exit code 0 (librdkafka 2.0.2 may abort destroying such a
    consumer, #4312), the store closed before that destroy (RocksDB logs
    "Shutdown complete" in its LOG), and afterwards the state equals the
    oracle's. With replicas (the default): a stopped worker's partitions are
    consumed meanwhile by a replica that is then promoted, which must
    dead-letter what it read (issue 22 hole 3, test_sidefx.py)."""
    with cluster(partitions=NPARTS) as c:
        path, bad = build_input(c, 6000, 500, 61)
        lines = open(path, "rb").read().splitlines()
        half = os.path.join(c.dir, "half.jsonl")
        rest = os.path.join(c.dir, "rest.jsonl")
        with open(half, "wb") as f:
            f.write(b"\n".join(lines[:len(lines) // 2]) + b"\n")
        with open(rest, "wb") as f:
            f.write(b"\n".join(lines[len(lines) // 2:]) + b"\n")
        w1 = c.start_worker("w1")
        c.produce_file(half, ["--key_field", "route_key"])
        hits = 0
        for i, delay in enumerate((0.2, 1.0, 2.0, 3.0, 4.0)):
            x = c.start_worker("x%d" % i, wait_listen=False)
            time.sleep(delay)
            rc = x.stop(timeout=60)
            check(rc == 0, "worker stopped %.1f s after start exited %s:\n%s" % (delay, rc, x.tail()))
            log = open(x.log_path, "rb").read().decode(errors="replace")
            check("stopped" in log, "x%d: no 'stopped' line:\n%s" % (i, x.tail()))
            rlog = os.path.join(x.data, "LOG")
            if os.path.exists(rlog):  # a stop before the store opened leaves none
                check("Shutdown complete" in open(rlog, errors="replace").read(),
                      "x%d: store not closed before the consumer destroy" % i)
            hits += "#4312" in log
            del c.workers["x%d" % i]
        print("  (%d of 5 stops went through the librdkafka #4312 abort)" % hits)
        c.produce_file(rest, ["--key_field", "route_key"])
        w2 = c.start_worker("x0")     # same data dir as the first stopped one
        settle_and_compare(c, [w1, w2], bad)


def test_dlq_truncates_oversized_record():
    """A 1.5 MB bad event (too_large) lands in the DLQ: value cut to its
    first bytes, header truncated = the original size, reason as the
    oracle says. Misrouted events (30, in one go) are logged once per
    partition with the murmur2 hint, not once each, and `profilectl days`
    counts their profiles (user-days)."""
    with cluster(partitions=NPARTS) as c:
        big = json.dumps({"user_id": "u-big", "ts": int(time.time() * 1000), "type": "view",
                          "pad": "x" * 1500000}).encode()
        reason, _ = validate(big)
        check(reason == "too_large", "oracle reason %r" % reason)
        path = os.path.join(c.dir, "big.jsonl")
        with open(path, "wb") as f:
            f.write(big + b"\n")
        c.produce_file(path, ["-X", "message.max.bytes=4000000"])
        mis = os.path.join(c.dir, "mis.jsonl")
        now = int(time.time() * 1000)
        mis_events = misrouted_events(now)
        # and users with several events a day: a profile per user-day, many merge operands
        many = [json.dumps({"event_id": "m-%d-%d" % (u, k), "user_id": "u-many-%d" % u, "ts": now - 10000 - k,
                            "type": "view", "item": {"make": "Audi"}}).encode() for u in range(3) for k in range(6)]
        with open(mis, "wb") as f:
            f.write(b"\n".join(mis_events) + b"\n")
        c.produce_file(mis, ["--key_field", "route_key"])
        w = c.start_worker("w1")
        for k in range(0, 6, 2):  # three rounds, three commits: merge operands pile up
            wait_for(lambda: c.caught_up([w.data]), 60, "round %d consumed" % k, interval=0.3)
            rnd = os.path.join(c.dir, "many%d.jsonl" % k)
            with open(rnd, "wb") as f:
                f.write(b"\n".join(many[u * 6 + k + j] for u in range(3) for j in range(2)) + b"\n")
            c.produce_file(rnd)

        def dlq():
            recs = read_topic(c, c.topic + ".dlq")
            return recs if recs else None
        recs = wait_for(dlq, 90, "the oversized record in the DLQ", interval=1.0)
        check(len(recs) == 1, "%d DLQ records" % len(recs))
        h = recs[0]["headers"]
        check(h.get("reason") == reason, "reason %r" % h.get("reason"))
        check(h.get("truncated") == str(len(big)), "truncated header %r, want %d" % (h.get("truncated"), len(big)))
        val = (recs[0].get("value") or "").encode()
        check(0 < len(val) <= 1000000 and big.startswith(val), "value of %d bytes is not a prefix" % len(val))
        wait_for(lambda: c.caught_up([w.data]), 60, "the misrouted events consumed", interval=0.5)
        check(w.stop() == 0, "stop failed")
        log = open(w.log_path, "rb").read().decode(errors="replace")
        lines = re.findall(r"partition (\d+): (\d+) misrouted event\(s\).*murmur2", log)
        parts = [p for p, _ in lines]
        check(lines and len(parts) == len(set(parts)), "misrouted log lines: %r" % lines)
        # `profilectl days` counts profiles (user-days), not RocksDB keys
        want = {}
        for e in map(json.loads, mis_events + many):
            day = time.strftime("%Y-%m-%d", time.gmtime(e["ts"] // 1000))
            want.setdefault(day, set()).add(e["user_id"])
        r = c.ctl("days", "--data-dir", w.data, "--format", "json")
        got = {o["day"]: o["profiles"] for o in map(json.loads, r.stdout.decode().splitlines())}
        want = {d: len(u) for d, u in want.items()}
        check(got == want, "days: profiles %r, want %r" % (got, want))


def test_operator_errors():
    """A second worker on a data directory in use exits non-zero with
    "data directory D is in use by another process (pid P)"; a worker given
    a topic that does not exist (a typo) exits non-zero naming it instead
    of having the broker create it."""
    with cluster(partitions=NPARTS) as c:
        w1 = c.start_worker("w1")
        args = list(w1.args)
        typo = list(args)
        typo[typo.index("--topic") + 1] = "evnets"
        typo[typo.index("--data_dir") + 1] = os.path.join(c.dir, "data-typo")
        r = run(typo, timeout=60, check_rc=False)
        check(r.returncode != 0 and b"topic 'evnets' does not exist" in r.stderr,
              "typo topic: rc %d %r" % (r.returncode, r.stderr[-1000:]))
        args[args.index("--id") + 1] = "w2"
        r = run([PROFILED] + args[1:], timeout=60, check_rc=False)
        err = r.stderr.decode(errors="replace")
        want = "data directory %s is in use by another process (pid %d)" % (w1.data, w1.p.pid)
        check(r.returncode != 0, "second worker exited 0")
        check(want in err, "stderr lacks %r:\n%s" % (want, err[-2000:]))
        check("LOCK" not in err, "raw RocksDB message:\n%s" % err[-2000:])
        check(w1.stop() == 0, "stop failed")
        # profilectl dump of a user the store does not have: exit 1, said on stderr
        r = c.ctl("dump", "--data-dir", w1.data, "--user", "nobody", check_rc=False)
        check(r.returncode == 1 and b"no profile for user nobody" in r.stderr and not r.stdout,
              "dump --user nobody: rc %d %r" % (r.returncode, r.stderr))


def test_data_dir_deleted():
    """The data directory deleted under a running worker: within a few
    seconds an error in the log and /readyz 503 naming it (it was 16 s of
    silence and "ready")."""
    with cluster(partitions=NPARTS) as c:
        w = c.start_worker("w1")
        wait_for(lambda: http_get(w.url + "/readyz")[0] == 200, 60, "ready")
        shutil.rmtree(w.data)
        t0 = time.monotonic()
        st, _, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(http_get(w.url + "/readyz")), 10,
                               "/readyz 503 after the data directory was deleted", interval=0.2)
        took = time.monotonic() - t0
        check(b"data directory" in body and took < 5, "readyz %d %r after %.1fs" % (st, body, took))
        log = open(w.log_path, "rb").read().decode(errors="replace")
        check("error data directory %s" % w.data in log, "no error logged:\n%s" % w.tail())
        w.kill9()  # its store is gone: nothing to stop cleanly


if __name__ == "__main__":
    main([test_sigterm_before_first_assignment, test_dlq_truncates_oversized_record, test_operator_errors,
          test_data_dir_deleted])
