"""test_membership.py -- the cluster's own records are authenticated
(issue 23, hole 1).

- Forged membership records, produced with a third-party client (kcat)
  straight to the membership topic: unsigned, signed with a guessed
  secret, impersonating a real worker, authentic but speaking for another
  member than its key, and a genuine record of w1 produced again (a
  replay). Each is rejected and counted by reason; the forger (a fake peer
  run by this test, which records every request it gets) is never asked
  anything -- so never sees the cluster token -- and queries at every
  worker, before and after a second worker joins and restores partitions
  by snapshot, return the oracle's profiles, never the forger's.
- A forged snapshot: w1 is reached through a path (an HTTP relay run by
  this test, standing for a proxy or network that does not hold the
  secret) that replaces or alters every snapshot stream it relays. The
  joining worker rejects each stream (MAC), counts it, rebuilds the
  partitions from the topic instead, and every user still equals the
  oracle.

The MAC formulas (docs/operations.md, "Threat model") are implemented here
with Python's hmac module, independently of src/mac.c.
"""
import hashlib
import hmac
import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lib import TestFailure, cluster, check, http_get, main, wait_for, metric  # noqa: E402
from oracle import Oracle  # noqa: E402
from test_query import close, today  # noqa: E402

NPARTS = 4
DAY = 86400000
SNAP_HDR = 24
SNAP_TRAILER = 1 + 8 + 8 + 8 + 32


def derive(secret, purpose):
    return hmac.new(secret.encode(), b"profiled/1/" + purpose.encode(), hashlib.sha256).digest()


def record_mac(secret, topic, key, value):
    k = derive(secret, "members")
    msg = len(topic).to_bytes(4, "big") + topic.encode() + len(key).to_bytes(4, "big") + key.encode() + value.encode()
    return hmac.new(k, msg, hashlib.sha256).hexdigest()


def seal_snapshot(secret, body_without_mac):
    return body_without_mac + hmac.new(derive(secret, "snapshot"), body_without_mac, hashlib.sha256).digest()


def kcat_produce(c, topic, key, value, headers=()):
    args = ["kcat", "-P", "-b", c.bootstrap, "-t", topic, "-p", "0", "-K", "\t"]
    for h in headers:
        args += ["-H", h]
    p = subprocess.run(args, input=("%s\t%s\n" % (key, value)).encode(), capture_output=True, timeout=30)
    check(p.returncode == 0, "kcat produce failed: %s" % p.stderr.decode(errors="replace")[-500:])


def kcat_records(c, topic):
    """Every record of partition 0: (key, {header: value}, value)."""
    p = subprocess.run(["kcat", "-C", "-b", c.bootstrap, "-t", topic, "-p", "0", "-o", "beginning", "-e",
                        "-q", "-f", "%k\\t%h\\t%s\\n"], capture_output=True, timeout=30)
    check(p.returncode == 0, "kcat consume failed: %s" % p.stderr.decode(errors="replace")[-500:])
    out = []
    for line in p.stdout.decode().splitlines():
        parts = line.split("\t", 2)
        if len(parts) != 3:
            continue
        hdrs = dict(h.split("=", 1) for h in parts[1].split(",") if "=" in h)
        out.append((parts[0], hdrs, parts[2]))
    return out



def rejected(url, reason):
    return metric(url, "profiled_member_records_rejected_total", 'reason="%s"' % reason)


class Server:
    """A loopback HTTP/1.1 server on an ephemeral port; handle(path,
    headers) -> (status, content type, body). Records (path, Authorization)
    of every request."""

    def __init__(self, handle):
        self.requests = []
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                with outer.lock:
                    outer.requests.append((self.path, self.headers.get("Authorization")))
                status, ctype, body = handle(self.path, self.headers)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        self.th = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.th.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()
        self.th.join(10)


def load(c, n=4000, users=300, seed=41):
    r = c.ctl("generate", str(n), "--users", str(users), "--days", "3", "--seed", str(seed),
              "--start_ts", str(int(time.time() * 1000) - 3 * DAY), "--dup_rate", "0.02")
    path = os.path.join(c.dir, "in.jsonl")
    open(path, "wb").write(r.stdout)
    out = c.produce_file(path)
    check("failed=0" in out, out)


def oracle(c):
    _, text = c.end_offsets()
    o = Oracle(nparts=NPARTS)
    for line in text.splitlines():
        rec = json.loads(line)
        o.feed(rec["partition"], rec["offset"], rec["value"].encode(), rec["timestamp"])
    return o


def ready(ws):
    """Every worker ready, every partition owned, each worker owning some,
    and all of them agreeing on the map."""
    ids = {w.name for w in ws}
    maps = set()
    for w in ws:
        if http_get(w.url + "/readyz")[0] != 200:
            return False
        st, _, body = http_get(w.url + "/v1/partitions")
        if st != 200:
            return False
        owners = json.loads(body)["owners"]
        if len(owners) != NPARTS or any(not o.get("owner") for o in owners):
            return False
        m = tuple(o["owner"]["id"] for o in owners)
        if set(m) != ids:
            return False
        maps.add(m)
    return len(maps) == 1


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def compare_all(o, ws):
    """Every user at every worker: the oracle's profile (default query).
    Returns (users, list of differences)."""
    t = today()
    users = sorted({u for (u, d) in o.raw})
    check(len(users) > 100, "too few users: %d" % len(users))
    errs = []
    for u in users:
        want = o.answer(u, t - 60 + 1, t, t)
        for w in ws:
            st, _, body = http_get("%s/v1/profiles/%s" % (w.url, urllib.parse.quote(u, safe="")))
            if want is None:
                if st != 404:
                    errs.append("%s at %s: expected 404, got %d" % (u, w.name, st))
                continue
            if st != 200:
                errs.append("%s at %s: status %d %s" % (u, w.name, st, body[:200]))
                continue
            j = json.loads(body)
            if "hacked" in json.dumps(j):
                errs.append("%s at %s: the forger's profile %s" % (u, w.name, body[:200]))
            j.pop("served_by", None)
            e = []
            close(want, j, "%s at %s" % (u, w.name), e)
            errs += e[:2]
        if len(errs) > 20:
            break
    return len(users), errs


def check_answers(errs):
    check(not errs, "%d wrong answers:\n  %s" % (len(errs), "\n  ".join(errs[:12])))


def forged_stream(real, secret):
    """A stream with the real header and checkpoint but no records (every
    user of the partition would vanish), sealed under `secret`."""
    check(len(real) >= SNAP_HDR + SNAP_TRAILER and real[:8] == b"PDSNAP07", "not a PDSNAP07 stream: %r" % real[:8])
    t = real[-SNAP_TRAILER:]
    body = real[:SNAP_HDR] + b"E" + t[1:17] + (0).to_bytes(8, "big")
    return seal_snapshot(secret, body)


def test_forged_membership_records():
    with cluster(partitions=NPARTS) as c:
        topic = c.topic + ".members"
        auth = {"Authorization": "Bearer " + c.secret}
        common = ["--replicas", "0", "--handoff_min_lag", "0"]
        snap_header = {}

        def forger_answers(path, headers):
            if path.startswith("/internal/v1/snapshot/"):
                p = int(path.rsplit("/", 1)[1])
                real = snap_header.get(p)
                if real is None:
                    return 404, "application/json", b"{}"
                return 200, "application/octet-stream", forged_stream(real, "the-forgers-guess")
            uid = urllib.parse.unquote(path.split("?")[0].rsplit("/", 1)[1])
            body = {"user_id": uid, "events": 31337, "event_types": {"hacked": 31337}, "dimensions": {}}
            return 200, "application/json", json.dumps(body).encode()

        forger = Server(forger_answers)
        try:
            w1 = c.start_worker("w1", common)
            load(c)
            wait_for(lambda: c.caught_up([w1.data]), 120, "w1 to ingest", interval=0.5)
            for p in range(NPARTS):  # what a forger would copy: the real header
                st, _, body = http_get("%s/internal/v1/snapshot/%d" % (w1.url, p), headers=auth, timeout=30)
                check(st == 200, "snapshot %d from w1: %d" % (p, st))
                snap_header[p] = body

            now = int(time.time() * 1000)

            def claim(wid, ts):
                return json.dumps({"id": wid, "url": forger.url, "gen": 99, "ts": ts, "partitions": list(range(NPARTS)),
                                   "held": [[p, 10 ** 12, 1] for p in range(NPARTS)], "alive": True},
                                  separators=(",", ":"))
            v = claim("evil", now)
            kcat_produce(c, topic, "evil", v)  # unsigned
            v = claim("evil", now + 1)
            kcat_produce(c, topic, "evil", v, ["profiled-mac=" + record_mac("guessed", topic, "evil", v)])
            v = claim("w1", now + 10 ** 7)  # impersonates w1, far in the future
            kcat_produce(c, topic, "w1", v, ["profiled-mac=" + record_mac("guessed", topic, "w1", v)])
            v = claim("evil", now + 2)  # authentic (the test holds the secret) but under w1's key
            kcat_produce(c, topic, "w1", v, ["profiled-mac=" + record_mac(c.secret, topic, "w1", v)])
            # a genuine record of w1, produced again verbatim
            recs = [r for r in kcat_records(c, topic) if r[0] == "w1" and "profiled-mac" in r[1]
                    and json.loads(r[2]).get("url") == w1.url]
            check(recs, "no record of w1 on %s" % topic)
            key, hdrs, val = recs[-1]
            check(hdrs["profiled-mac"] == record_mac(c.secret, topic, key, val),
                  "w1's record does not carry the documented MAC")
            kcat_produce(c, topic, key, val, ["profiled-mac=" + hdrs["profiled-mac"]])
            time.sleep(1.5)  # the members thread polls every 100 ms

            # w2 joins: partitions move, w2 restores them from the holders it
            # knows (the forger announced offset 10^12 for every partition)
            w2 = c.start_worker("w2", common)
            wait_for(lambda: metric(w2.url, "profiled_restores_total") + metric(w2.url, "profiled_rebuilds_total") > 0,
                     90, "w2 to take partitions over")
            settle_err = None
            try:  # the forger's claims, were they believed, would keep this from settling
                wait_for(lambda: ready([w1, w2]), 60, "w1 and w2 to share the partitions")
                wait_for(lambda: c.caught_up([w1.data, w2.data]), 120, "both to catch up", interval=0.5)
            except TestFailure as e:
                settle_err = e
            restores = metric(w2.url, "profiled_restores_total")
            n, errs = compare_all(oracle(c), [w1, w2])

            with forger.lock:
                seen = list(forger.requests)
            leaked = [p for p, a in seen if a and c.secret in a]
            check(not leaked, "the forger got the cluster token with %d requests, e.g. %s" % (len(leaked), leaked[:3]))
            check(not seen, "the forger was asked %d times, e.g. %s" % (len(seen), seen[:3]))
            check_answers(errs)
            if settle_err:
                raise settle_err
            check(restores > 0, "w2 restored nothing by snapshot (rebuilt instead)")
            for reason, want in (("unsigned", 1), ("bad_mac", 2), ("key_mismatch", 1), ("stale", 1)):
                got = rejected(w1.url, reason)
                check(got >= want, "w1 counted %d %s records, want >= %d" % (got, reason, want))
            # w2 read the same history at start: the unauthentic ones count there too
            for reason, want in (("unsigned", 1), ("bad_mac", 2), ("key_mismatch", 1)):
                got = rejected(w2.url, reason)
                check(got >= want, "w2 counted %d %s records, want >= %d" % (got, reason, want))
            log = open(w1.log_path, "rb").read().decode(errors="replace")
            check("rejected: " in log, "no rejection logged")
            check(c.secret not in log, "the secret is in the log")
            print("  %d users equal the oracle at both workers; w2 restored %d partitions by snapshot; "
                  "w1 rejected: %s" % (n, restores, {r: rejected(w1.url, r) for r in
                                                     ("unsigned", "bad_mac", "key_mismatch", "stale", "expired")}))
            check(w1.stop() == 0 and w2.stop() == 0, "exit codes")
        finally:
            forger.close()


def test_another_group_on_the_same_topics():
    """Two clusters on the same events and membership topic with the same
    secret, in different consumer groups (blue/green with the default
    members_topic): each worker admits only its own group's records, so
    each owns and answers every partition itself, routes nothing to the
    other, and counts the other's records as "other_group"."""
    with cluster(partitions=NPARTS) as c:
        common = ["--replicas", "0"]
        blue = c.start_worker("blue", common + ["--group", "blue"])
        green = c.start_worker("green", common + ["--group", "green"])
        ws = [blue, green]
        load(c)
        wait_for(lambda: c.caught_up([blue.data]) and c.caught_up([green.data]), 120, "both groups to ingest",
                 interval=0.5)

        def alone(w):
            st, _, body = http_get(w.url + "/v1/partitions")
            if st != 200:
                return False
            owners = json.loads(body)["owners"]
            return len(owners) == NPARTS and all((o.get("owner") or {}).get("id") == w.name for o in owners)
        wait_for(lambda: all(http_get(w.url + "/readyz")[0] == 200 for w in ws), 60, "both ready")
        # both publish their records every second or so, and read each
        # other's at once: were the other group's admitted, its claims would
        # show in the map within this wait
        time.sleep(3.0)
        for w in ws:
            check(alone(w), "%s's partition map names another worker: %s" % (w.name, http_get(w.url + "/v1/partitions")[2][:400]))
        n, errs = compare_all(oracle(c), ws)
        for w in ws:
            for u in sorted({u for (u, d) in oracle(c).raw})[:20]:
                st, _, body = http_get("%s/v1/profiles/%s" % (w.url, urllib.parse.quote(u, safe="")))
                if st == 200 and json.loads(body).get("served_by") != w.name:
                    errs.append("%s at %s: served by %s" % (u, w.name, json.loads(body).get("served_by")))
        check_answers(errs)
        for w in ws:
            check(rejected(w.url, "other_group") > 0, "%s counted no other_group record" % w.name)
        log = open(blue.log_path, "rb").read().decode(errors="replace")
        check("another consumer group" in log, "the other group's records were not logged")
        print("  %d users equal the oracle in both groups; other_group records: blue %d, green %d"
              % (n, rejected(blue.url, "other_group"), rejected(green.url, "other_group")))
        check(blue.stop() == 0 and green.stop() == 0, "exit codes")


def test_forged_snapshot_on_the_path():
    with cluster(partitions=NPARTS) as c:
        backend = {}
        tampered = []

        def relay(path, headers):
            u = urllib.parse.urlsplit(backend["url"])
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            fwd = {k: headers[k] for k in ("Authorization", "X-Profiled-Hops", "X-Profiled-Stale-Ok", "Accept")
                   if headers.get(k)}
            conn.request("GET", path, headers=fwd)
            r = conn.getresponse()
            body = r.read()
            conn.close()
            if path.startswith("/internal/v1/snapshot/") and r.status == 200:
                if len(tampered) % 2 == 0:
                    body = forged_stream(body, "not-the-secret")  # replaced
                else:
                    b = bytearray(body)  # altered: one bit of a profile
                    b[SNAP_HDR + (len(b) - SNAP_HDR - SNAP_TRAILER) // 2] ^= 0x01
                    body = bytes(b)
                tampered.append(path)
            return r.status, r.getheader("Content-Type") or "application/json", body

        path_srv = Server(relay)
        try:
            common = ["--replicas", "0", "--handoff_min_lag", "0"]
            port = free_port()
            w1 = c.start_worker("w1", common + ["--listen", "127.0.0.1:%d" % port, "--advertise", path_srv.url])
            w1.url = backend["url"] = "http://127.0.0.1:%d" % port  # it prints the advertised URL
            load(c, seed=43)
            wait_for(lambda: c.caught_up([w1.data]), 120, "w1 to ingest", interval=0.5)
            w2 = c.start_worker("w2", common)

            wait_for(lambda: metric(w2.url, "profiled_restore_failures_total") +
                     metric(w2.url, "profiled_restores_total") > 0, 120, "w2 to take partitions over", interval=0.5)
            wait_for(lambda: ready([w1, w2]), 90, "w1 and w2 to share the partitions")
            wait_for(lambda: c.caught_up([w1.data, w2.data]), 120, "both to catch up", interval=0.5)
            n, errs = compare_all(oracle(c), [w1, w2])
            check_answers(errs)
            rej = metric(w2.url, "profiled_snapshots_rejected_total", 'reason="mac"')
            ok = metric(w2.url, "profiled_restores_total")
            failed = metric(w2.url, "profiled_restore_failures_total")
            rebuilt = metric(w2.url, "profiled_rebuilds_total")
            check(tampered, "no snapshot went through the path")
            check(rej >= len(tampered) and rej > 0, "w2 rejected %d of %d tampered streams" % (rej, len(tampered)))
            check(ok == 0, "w2 restored %d partitions from tampered streams" % ok)
            check(failed > 0 and rebuilt >= failed, "w2: %d restore failures, %d rebuilds" % (failed, rebuilt))
            log = open(w2.log_path, "rb").read().decode(errors="replace")
            check("MAC does not verify" in log, "no rejection logged")
            print("  %d tampered snapshot streams rejected (mac), %d partitions rebuilt from the topic, "
                  "%d users equal the oracle" % (rej, rebuilt, n))
            check(w1.stop() == 0 and w2.stop() == 0, "exit codes")
        finally:
            path_srv.close()


if __name__ == "__main__":
    main([test_forged_membership_records, test_another_group_on_the_same_topics, test_forged_snapshot_on_the_path])
