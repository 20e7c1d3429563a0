"""test_backup.py -- backups and restore (issue 21): consistent, incremental
backups of a running worker, and a worker continuing from a restored store.

- A worker with backup_dir and a 1 s backup_interval ingests while backups
  are taken (scheduled ones, and one requested with `profilectl backup
  --url`). It is SIGKILLed mid-ingestion, its data directory wiped, the
  newest backup restored with `profilectl restore`, and a worker started
  on it continues from the restored offsets: every user equals the oracle
  and the DLQ holds exactly the bad records.
- Old backups are deleted down to backup_keep; an offline store is backed
  up by `profilectl backup --data-dir --to`, twice, the second adding
  little (incremental).
- Refusals: a backup into a non-empty directory that is not a backup
  directory, a restore into a non-empty data directory, from a directory
  that is not a backup, or of another schema; a running worker's store
  (pointing at --url); POST without backup_dir (409), GET (405), no token
  (401).
"""
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lib import PROFILECTL, check, cluster, http_get, main, run, wait_for, metric  # noqa: E402
import test_ingest as ti  # noqa: E402



def ctl(c, *args, check_rc=True):
    return run([PROFILECTL] + list(args), timeout=120, check_rc=check_rc,
               env={"PROFILED_CLUSTER_TOKEN": c.secret})


def test_backup_restore_continue():
    with cluster(partitions=ti.NPARTS) as c:
        path, bad = ti.build_input(c, 9000, 600, 31)
        lines = open(path, "rb").read().splitlines()
        half = len(lines) // 2
        parts = [lines[:half], lines[half:half + half // 2], lines[half + half // 2:]]
        files = []
        for i, p in enumerate(parts):
            f = os.path.join(c.dir, "part%d.jsonl" % i)
            open(f, "wb").write(b"\n".join(p) + b"\n")
            files.append(f)
        bdir = os.path.join(c.dir, "backups")
        args = ["--backup_dir", bdir, "--backup_interval", "1s", "--backup_keep", "3", "--replicas", "0"]
        w = c.start_worker("w1", args)
        c.produce_file(files[0], ["--key_field", "route_key"])
        r = ctl(c, "backup", "--url", w.url)           # requested, while ingesting
        j = json.loads(r.stdout)
        check(j["id"] >= 1 and j["size_bytes"] > 0, "backup answer %s" % j)
        ti.wait_caught_up(c, [w.data])
        c.produce_file(files[1], ["--key_field", "route_key"])
        wait_for(lambda: (metric(w.url, 'profiled_backups_total{result="ok"}') or 0) >= 3, 30,
                 "scheduled backups")
        check(metric(w.url, "profiled_backup_last_success_timestamp_seconds") > time.time() - 60,
              "last success gauge")
        check(metric(w.url, "profiled_backup_last_size_bytes") > 0, "size gauge")
        time.sleep(1.5)
        w.kill9()                                       # lost with its disk
        shutil.rmtree(w.data)
        r = ctl(c, "backups", "--from", bdir)
        listed = [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]
        check(1 <= len(listed) <= 3, "backup_keep: %d backups listed" % len(listed))
        r = ctl(c, "restore", "--from", bdir, "--data-dir", w.data, "--schema", "builtin")
        check(json.loads(r.stdout)["restored"] is True, "restore output %r" % r.stdout)
        restored = c.offsets(w.data)
        check(sum(restored.values()) > 0, "the restored store has checkpoints: %s" % restored)
        w = c.start_worker("w1", args)
        c.produce_file(files[2], ["--key_field", "route_key"])
        ti.settle_and_compare(c, [w], bad)
        # the same store, offline: a backup and an incremental one
        b2 = os.path.join(c.dir, "offline")
        j1 = json.loads(ctl(c, "backup", "--data-dir", w.data, "--to", b2).stdout)
        j2 = json.loads(ctl(c, "backup", "--data-dir", w.data, "--to", b2).stdout)
        check(j2["id"] == j1["id"] + 1, "ids %s %s" % (j1, j2))
        check(j2["added_bytes"] < j1["added_bytes"] / 2 + 65536,
              "incremental: first added %d, second %d" % (j1["added_bytes"], j2["added_bytes"]))


def test_backup_refusals():
    with cluster(partitions=ti.NPARTS) as c:
        w = c.start_worker("w1", ["--replicas", "0"])
        st, _, b = http_get(w.url + "/internal/v1/backup")
        check(st == 401, "no token: %d %s" % (st, b))
        r = ctl(c, "backup", "--url", w.url, check_rc=False)
        check(r.returncode == 1 and b"409" in r.stderr and b"backup_dir" in r.stderr, "no backup_dir: %r" % r.stderr)
        r = ctl(c, "backup", "--data-dir", w.data, "--to", os.path.join(c.dir, "b"), check_rc=False)
        check(r.returncode == 1 and b"--url" in r.stderr, "store in use: %r" % r.stderr)
        check(w.stop() == 0, "stop")
        junk = os.path.join(c.dir, "junk")
        os.makedirs(junk)
        open(os.path.join(junk, "x"), "w").write("x")
        r = ctl(c, "backup", "--data-dir", w.data, "--to", junk, check_rc=False)
        check(r.returncode == 1 and b"not a profiled backup directory" in r.stderr, "junk dir: %r" % r.stderr)
        r = ctl(c, "restore", "--from", junk, "--data-dir", os.path.join(c.dir, "new"), check_rc=False)
        check(r.returncode == 1 and b"not a profiled backup directory" in r.stderr, "restore junk: %r" % r.stderr)
        bdir = os.path.join(c.dir, "b")
        ctl(c, "backup", "--data-dir", w.data, "--to", bdir)
        r = ctl(c, "restore", "--from", bdir, "--data-dir", junk, check_rc=False)
        check(r.returncode == 1 and b"not empty" in r.stderr, "restore into non-empty: %r" % r.stderr)
        other = os.path.join(c.dir, "schema.json")
        open(other, "w").write(json.dumps({"dimensions": [{"name": "artist", "type": "categorical"}]}))
        r = ctl(c, "restore", "--from", bdir, "--data-dir", os.path.join(c.dir, "new"), "--schema", other,
                check_rc=False)
        check(r.returncode == 1 and b"another schema" in r.stderr, "other schema: %r" % r.stderr)
        check(not os.path.exists(os.path.join(c.dir, "new", "CURRENT")), "nothing restored")
        w2 = c.start_worker("w2", ["--replicas", "0", "--backup_dir", os.path.join(c.dir, "wb"),
                                   "--backup_interval", "0"])
        st, _, b = http_get(w2.url + "/internal/v1/backup", headers={"Authorization": "Bearer " + c.secret})
        check(st == 405, "GET: %d %s" % (st, b))
        r = ctl(c, "backup", "--url", w2.url)
        check(json.loads(r.stdout)["id"] == 1, "requested backup: %r" % r.stdout)


if __name__ == "__main__":
    main([test_backup_restore_continue, test_backup_refusals])
