"""test_flood.py -- connection floods against one worker (issue 23, hole 4).

A worker with small limits (http_max_connections 64, 16 per client address,
a 300 ms head timeout, 300 ms keep-alive idle, 20 requests per connection)
is flooded from other loopback addresses (127.0.0.2 and up; Linux routes all
of 127/8 to lo) by a separate process, one kind of abuse after another, each
for FLOOD_SECS seconds:

  idle       300 connections that connect and never send a byte
  slowloris  200 connections that send a request head one byte per 100 ms
  keepalive  40 connections that send one request, read the answer and then
             sit idle on the kept connection (each reconnects when closed)
  one_addr   100 connections from ONE address (over the per-client limit)

Every broken connection is reopened at once, so the pressure stays on. While
each flood runs, a probe from 127.0.0.1 opens a new connection every 25 ms
and alternates GET /healthz, a real profile query and /readyz (and /metrics
now and then). Pass: every probe is answered with 200, the profile's event
count equals the count in the produced file (the independent oracle), the
probes' p99 stays under P99_BOUND and none over MAX_BOUND, and /metrics
shows the limits at work (per-client rejections, evictions or head
time-outs), and the per-client flood got 503 answers with a JSON error and
Retry-After.

Bounds: measured on this 2-core machine (ASan build, other jobs running),
the probes' p99 during the floods was 2-10 ms and the maximum under 15 ms;
the bounds (p99 0.5 s, max 1.5 s) leave a wide margin for a shared, noisy
machine. Before the front end (civetweb alone, 8 threads, with
request_timeout_ms 5000 and with 300 alike) each flood left the probes 2
answers in 3 s, 1.2 s or a 2 s timeout each, so the test fails on that code.
Injected bugs it catches: no per-client limit (the single-address flood
fills every slot: probes get 503), no eviction at the total limit (probes
refused), no head deadline (the slow head is never answered 408), no
keep-alive request limit (the 20th answer says keep-alive).
"""
import json
import multiprocessing
import os
import random
import select
import socket
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lib import TestFailure, check, cluster, http_get, main, wait_for  # noqa: E402

FLOOD_SECS = 3.0
PROBE_EVERY = 0.025
PROBE_TIMEOUT = 2.0
P99_BOUND = 0.5     # seconds
MAX_BOUND = 1.5     # seconds
DAY = 86400000

LIMITS = ["--http_threads", "8", "--http_max_connections", "64", "--http_max_connections_per_client", "16",
          "--http_head_timeout_ms", "300", "--http_keepalive_timeout_ms", "300",
          "--http_keepalive_max_requests", "20"]


def attacker(kind, port, secs, out):
    """Runs in its own process (no GIL shared with the probes). Keeps the
    flood's connections open, reopening each one the server closes. Puts a
    summary dict into `out`."""
    stats = {"connects": 0, "closed_by_server": 0, "status": {}, "json_503": 0, "retry_after": 0, "errors": 0}
    n = {"idle": 300, "slowloris": 200, "keepalive": 40, "one_addr": 100}[kind]
    head = b"GET /healthz HTTP/1.1\r\nHost: flood\r\nX-Pad: " + b"a" * 200 + b"\r\n\r\n"
    socks = {}  # socket -> state dict

    def src(i):
        if kind == "one_addr":
            return "127.0.0.9"
        return "127.0.%d.%d" % (1 + i // 200, 2 + i % 200)  # one address per connection

    def open_one(i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.bind((src(i), 0))
            s.connect_ex(("127.0.0.1", port))
        except OSError:
            stats["errors"] += 1
            s.close()
            return
        stats["connects"] += 1
        st = {"i": i, "sent": 0, "buf": b"", "t": time.monotonic(), "done": False}
        socks[s] = st

    def answered(st, data):
        st["buf"] += data
        h, sep, _ = st["buf"].partition(b"\r\n\r\n")
        if not sep:
            return
        lines = h.decode("latin-1").split("\r\n")
        code = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "?"
        stats["status"][code] = stats["status"].get(code, 0) + 1
        if code == "503":
            low = h.lower()
            if b"retry-after:" in low:
                stats["retry_after"] += 1
            body = st["buf"].split(b"\r\n\r\n", 1)[1]
            try:
                o = json.loads(body)
                if isinstance(o.get("error"), str) and isinstance(o.get("detail"), str):
                    stats["json_503"] += 1
            except ValueError:
                pass
        st["done"] = True
        st["buf"] = b""

    for i in range(n):
        open_one(i)
    end = time.monotonic() + secs
    # one_addr: only the first 100 connections, then reopen slowly; the rest alike
    while time.monotonic() < end:
        now = time.monotonic()
        for s, st in list(socks.items()):
            try:
                if kind == "slowloris" and now - st["t"] >= 0.1 and st["sent"] < len(head) - 4:
                    s.send(head[st["sent"]:st["sent"] + 1])
                    st["sent"] += 1
                    st["t"] = now
                elif kind in ("keepalive", "one_addr") and st["sent"] == 0:
                    s.send(head)
                    st["sent"] = len(head)
            except BlockingIOError:
                pass
            except OSError:
                pass
        r, _, _ = select.select(list(socks), [], [], 0.02)
        for s in r:
            st = socks[s]
            try:
                d = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                d = b""
            if d:
                answered(st, d)
                continue
            stats["closed_by_server"] += 1
            del socks[s]
            s.close()
            if time.monotonic() < end:
                open_one(st["i"])
    for s in socks:
        s.close()
    out.put(stats)


def probe_loop(url, user_path, want_events, secs):
    """Probes from 127.0.0.1 for `secs`; returns (latencies, failures, counts)."""
    lat, fails = [], []
    paths = ["/healthz", user_path, "/readyz", user_path]
    k = 0
    end = time.monotonic() + secs
    while time.monotonic() < end:
        path = paths[k % len(paths)] if k % 20 != 19 else "/metrics"
        k += 1
        t0 = time.monotonic()
        try:
            st, _, body = http_get(url + path, timeout=PROBE_TIMEOUT)
        except Exception as e:  # noqa: BLE001 - a failed probe is what we count
            fails.append("%s: %s after %.2fs" % (path, e, time.monotonic() - t0))
            continue
        dt = time.monotonic() - t0
        lat.append(dt)
        if st != 200:
            fails.append("%s: status %d: %r" % (path, st, body[:200]))
        elif path == user_path:
            ev = json.loads(body).get("events")
            if ev != want_events:
                fails.append("%s: events %r, want %r" % (path, ev, want_events))
        time.sleep(max(0.0, PROBE_EVERY - dt))
    return lat, fails, k


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def metric_sum(text, name):
    v = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            v += float(line.rsplit(" ", 1)[1])
    return v


def test_flood_keeps_probes_and_queries_answering():
    with cluster(partitions=2) as c:
        start = int(time.time() * 1000) - 2 * DAY
        r = c.ctl("generate", "400", "--users", "20", "--days", "2", "--seed", "23",
                  "--start_ts", str(start), "--dup_rate", "0")
        path = os.path.join(c.dir, "in.jsonl")
        open(path, "wb").write(r.stdout)
        counts = {}
        for line in r.stdout.decode().splitlines():
            u = json.loads(line)["user_id"]
            counts[u] = counts.get(u, 0) + 1
        user = max(sorted(counts), key=lambda u: counts[u])
        w = c.start_worker("w1", extra=LIMITS)
        port = int(w.url.rsplit(":", 1)[1])
        out = c.produce_file(path)
        check("failed=0" in out, out)
        wait_for(lambda: http_get(w.url + "/readyz")[0] == 200, 90, "worker ready", interval=0.3)
        wait_for(lambda: c.caught_up([w.data]), 120, "ingestion to catch up", interval=0.5)
        user_path = "/v1/profiles/%s?days=30" % urllib.parse.quote(user, safe="")
        st, _, body = http_get(w.url + user_path)
        check(st == 200 and json.loads(body)["events"] == counts[user],
              "profile before the flood: %d %r (want %d events)" % (st, body[:200], counts[user]))

        report, problems = [], []
        q = multiprocessing.Queue()
        for kind in ("idle", "slowloris", "keepalive", "one_addr"):
            p = multiprocessing.Process(target=attacker, args=(kind, port, FLOOD_SECS + 0.5, q), daemon=True)
            p.start()
            try:
                time.sleep(0.3)  # let the flood build up
                lat, fails, n = probe_loop(w.url, user_path, counts[user], FLOOD_SECS)
                stats = q.get(timeout=30)
            finally:
                p.join(timeout=10)
                if p.is_alive():
                    os.kill(p.pid, 9)
                    p.join(timeout=5)
            p99, mx = pct(lat, 0.99), max(lat) if lat else float("nan")
            report.append("%-9s probes %d, p50 %.1f ms, p99 %.1f ms, max %.1f ms, failed %d; flood %s" % (
                kind, n, pct(lat, 0.5) * 1e3, p99 * 1e3, mx * 1e3, len(fails), stats))
            if fails:
                problems.append("%s: %d of %d probes failed, e.g. %s" % (kind, len(fails), n, fails[:3]))
            if lat and (p99 > P99_BOUND or mx > MAX_BOUND):
                problems.append("%s: probe p99 %.3fs (bound %.1fs), max %.3fs (bound %.1fs)" % (
                    kind, p99, P99_BOUND, mx, MAX_BOUND))
            if kind == "one_addr":
                if not (stats["status"].get("503", 0) > 0 and stats["json_503"] == stats["status"]["503"]
                        and stats["retry_after"] == stats["status"]["503"]):
                    problems.append("one_addr: want 503s with a JSON error and Retry-After, got %s" % stats)
        print("\n".join("   " + l for l in report), flush=True)
        _, _, m = http_get(w.url + "/metrics")
        m = m.decode()
        rej = metric_sum(m, 'profiled_http_connections_rejected_total{reason="per_client"}')
        ev = metric_sum(m, "profiled_http_connections_evicted_total")
        to = metric_sum(m, 'profiled_http_connections_timed_out_total{phase="head"}')
        check("profiled_http_connections " in m, "/metrics has no profiled_http_connections gauge")
        if not (rej > 0 and ev + to > 0):
            problems.append("metrics: per-client rejections %g, evictions %g, head time-outs %g" % (rej, ev, to))
        # after the floods: everything closes down to the probe's own connection
        wait_for(lambda: metric_sum(http_get(w.url + "/metrics")[2].decode(), "profiled_http_connections") <= 2,
                 10, "open connections back to the probe's")
        check(w.stop() == 0, "exit code")
        check(not problems, "\n  ".join(problems))


def test_keepalive_max_requests_and_idle_close():
    """The keep-alive limits: the 20th answer on one connection says
    Connection: close and the server closes; an idle kept connection is
    closed after http_keepalive_timeout_ms."""
    with cluster(partitions=1) as c:
        w = c.start_worker("w1", extra=LIMITS)
        port = int(w.url.rsplit(":", 1)[1])
        wait_for(lambda: http_get(w.url + "/healthz")[0] == 200, 60, "healthz")
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn_hdrs = []
        buf = b""
        try:
            for i in range(20):
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                while True:
                    head, sep, tail = buf.partition(b"\r\n\r\n")
                    if sep and len(tail) >= 15:
                        break
                    d = s.recv(4096)
                    check(d, "connection closed after %d answers" % i)
                    buf += d
                head, _, tail = buf.partition(b"\r\n\r\n")
                buf = tail[15:]
                conn_hdrs.append([l for l in head.decode().split("\r\n") if l.lower().startswith("connection:")])
            s.settimeout(2)
            check(s.recv(100) == b"", "server kept the connection after the 20th answer")
        finally:
            s.close()
        check(all(h == ["Connection: keep-alive"] for h in conn_hdrs[:19]), "first 19: %r" % conn_hdrs[:19])
        check(conn_hdrs[19] == ["Connection: close"], "20th: %r" % conn_hdrs[19])
        # idle close
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            d = s.recv(4096)
            check(b" 200 " in d.split(b"\r\n")[0], "answer %r" % d[:100])
            t0 = time.monotonic()
            s.settimeout(3)
            check(s.recv(100) == b"", "idle kept connection not closed")
            dt = time.monotonic() - t0
            check(0.2 <= dt <= 1.5, "idle kept connection closed after %.2fs, want about 0.3s" % dt)
        finally:
            s.close()
        # a head that does not complete in time: 408 JSON, closed
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost:")
            t0 = time.monotonic()
            s.settimeout(3)
            d = b""
            while True:
                x = s.recv(4096)
                if not x:
                    break
                d += x
            dt = time.monotonic() - t0
            check(d.startswith(b"HTTP/1.1 408 ") and b'"error":"request timeout"' in d, "slow head: %r" % d[:200])
            check(dt <= 1.5, "slow head closed after %.2fs, want about 0.3s" % dt)
        finally:
            s.close()
        check(w.stop() == 0, "exit code")


def test_front_off_serves_directly():
    """http_front = false (the opt-out): civetweb answers on the public port
    itself; no front-end gauges; a query still answers."""
    with cluster(partitions=2) as c:
        w = c.start_worker("w1", ["--http_front", "false"])
        st, _, _ = http_get(w.url + "/healthz")
        check(st == 200, "healthz %d" % st)
        st, _, body = http_get(w.url + "/v1/profiles/nobody")
        check(st in (404, 503) and b"error" in body, "profile of nobody: %d %r" % (st, body))
        _, _, m = http_get(w.url + "/metrics")
        check(metric_sum(m.decode(), "profiled_http_connections_accepted_total") == 0,
              "the front end is off: nothing accepted by it")
        check(w.stop() == 0, "stop")


if __name__ == "__main__":
    main([test_flood_keeps_probes_and_queries_answering, test_keepalive_max_requests_and_idle_close,
          test_front_off_serves_directly])
