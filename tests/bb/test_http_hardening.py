"""test_http_hardening.py -- hostile HTTP and the cluster secret (issue 23).

- Raw requests (exact bytes on a socket, so nothing normalises them): many
  small headers, absolute-form and asterisk targets, request smuggling
  framings, an unknown HTTP version. Each gets its status code and a JSON
  error body, never a silently closed connection; a smuggling framing also
  closes the connection, so the bytes after it are never read as a request.
- Two workers with only api_token set (one from api_token_file, one from
  PROFILED_API_TOKEN) hand partitions off by snapshot, not by a rebuild; a
  public 503 for an unreachable owner names no peer URL; no log line
  carries a token.
- A worker on a non-loopback address without any token refuses to start.
"""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lib import PROFILED, TestFailure, cluster, check, http_get, main, run, wait_for, metric  # noqa: E402


def raw(port, data, timeout=5.0):
    """Sends exact bytes; reads until the server closes or `timeout`.
    Returns (status, reason, headers{lower: value}, body, rest, closed):
    rest = bytes after the first response; closed = the server closed."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    buf = b""
    closed = False
    try:
        s.sendall(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            if not d:
                closed = True
                break
            buf += d
            head, sep, tail = buf.partition(b"\r\n\r\n")
            if sep:
                cl = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                n = int(cl[0].split(b":")[1]) if cl else 0
                if len(tail) >= n and b"connection: keep-alive" in head.lower():
                    break  # a kept connection: the whole answer is here
    finally:
        s.close()
    head, sep, tail = buf.partition(b"\r\n\r\n")
    check(sep, "no HTTP answer to %r (got %r, closed=%s)" % (data[:80], buf[:200], closed))
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    hdrs = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    return int(parts[1]), parts[2] if len(parts) > 2 else "", hdrs, tail[:n], tail[n:], closed


def json_error(body, what):
    try:
        o = json.loads(body)
    except ValueError:
        raise TestFailure("%s: body is not JSON: %r" % (what, body[:200]))
    check(isinstance(o.get("error"), str) and isinstance(o.get("detail"), str),
          "%s: not a JSON error: %r" % (what, o))
    return o


def no_secret_in_logs(c, *secrets):
    """Fails when any log of the cluster's processes contains a secret."""
    for name in os.listdir(c.dir):
        if name.endswith(".log"):
            with open(os.path.join(c.dir, name), "rb") as f:
                text = f.read()
            for s in secrets:
                check(s.encode() not in text, "%s shows a token" % name)


def test_raw_requests():
    with cluster(partitions=2) as c:
        w = c.start_worker("w1")
        port = int(w.url.rsplit(":", 1)[1])
        wait_for(lambda: http_get(w.url + "/healthz")[0] == 200, 60, "healthz")
        fails = []

        def case(what, data, status, reason=None, want_json_error=True, closes=False, body=None, header=None):
            """One raw request; records every way its answer is wrong."""
            try:
                st, rs, h, b, rest, closed = raw(port, data)
            except TestFailure as e:
                fails.append("%s: %s" % (what, e))
                return
            bad = []
            if st != status:
                bad.append("status %d, want %d" % (st, status))
            if reason is not None and rs != reason:
                bad.append("reason %r, want %r" % (rs, reason))
            if want_json_error:
                try:
                    json_error(b, what)
                except TestFailure as e:
                    bad.append(str(e))
            if body is not None and b != body:
                bad.append("body %r, want %r" % (b, body))
            if header is not None and h.get(header[0].lower()) != header[1]:
                bad.append("%s: %r, want %r" % (header[0], h.get(header[0].lower()), header[1]))
            if closes and not (h.get("connection") == "close" and closed and not rest):
                bad.append("connection kept or a second answer (%r, closed=%s)" % (rest[:80], closed))
            if bad:
                fails.append("%s: %s" % (what, "; ".join(bad)))

        get = b"GET /healthz HTTP/1.1\r\nHost: t\r\n"
        # 19 KiB of head in 67 fields: the first 64 (what civetweb keeps)
        # are under the 16 KiB limit, the 3 it drops push it over
        small = b"".join(b"X-S%d: %s\r\n" % (i, b"v" * 200) for i in range(64))
        big = b"".join(b"X-B%d: %s\r\n" % (i, b"w" * 2000) for i in range(3))
        case("64 small + 3 big headers (19 KiB)", get + small + big + b"\r\n", 431, closes=True)
        case("70 headers x 280 bytes", get + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 270) for i in range(70))
             + b"\r\n", 431)
        case("66 tiny headers", get + b"".join(b"X-%d: 1\r\n" % i for i in range(66)) + b"\r\n", 431)
        case("40 tiny headers", get + b"Connection: close\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(40))
             + b"\r\n", 200, want_json_error=False, body=b'{"status":"ok"}')

        # absolute form naming this listener: served as its path
        case("absolute form, our port", b"GET http://127.0.0.1:%d/healthz HTTP/1.1\r\nHost: t\r\n"
             b"Connection: close\r\n\r\n" % port, 200, want_json_error=False, body=b'{"status":"ok"}')
        # naming another server: 400 JSON, not a silent close
        case("absolute form, default port", b"GET http://host/healthz HTTP/1.1\r\nHost: t\r\n\r\n", 400)
        case("absolute form, other port", b"GET http://example.com:81/v1/profiles/u-1 HTTP/1.1\r\n"
             b"Host: t\r\n\r\n", 400)
        # asterisk form
        case("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", 200, want_json_error=False,
             body=b'{"allow":["GET"]}', header=("Allow", "GET"))
        case("GET *", b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400)

        # smuggling framings: 400, connection closed, the request hidden
        # behind them never answered
        hidden = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
        for what, framing, payload in (
                ("two Content-Length", b"Content-Length: 0\r\nContent-Length: %d\r\n" % len(hidden), hidden),
                ("Content-Length + chunked", b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(hidden),
                 b"0\r\n\r\n" + hidden),
                ("chunked + Content-Length", b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                 b"0\r\n\r\n" + hidden),
                ("Content-Length list", b"Content-Length: 0, %d\r\n" % len(hidden), hidden)):
            case(what, get + framing + b"\r\n" + payload, 400, closes=True)

        # unknown version: 505 with its reason phrase
        case("HTTP/9.9", b"GET /healthz HTTP/9.9\r\nHost: t\r\n\r\n", 505, reason="HTTP Version Not Supported")
        check(http_get(w.url + "/healthz")[0] == 200, "worker still answers")
        check(w.stop() == 0, "exit code")
        no_secret_in_logs(c, c.secret)
        check(not fails, "%d raw request(s) answered wrongly:\n  %s" % (len(fails), "\n  ".join(fails)))


def test_unread_bodies_never_desynchronise():
    """Requests with a body travel over the front end's pooled worker
    connections. Bodies a route never reads (405 on a profile, 405 on
    /healthz, a rank body refused as invalid JSON after reading it) each
    hide a complete request; right after each, on other client
    connections, a profile query must get its own answer, never the hidden
    request's. Fails when a worker connection keeps bytes of a body after
    its answer (a desynchronised pool answers the next client with the
    hidden /healthz)."""
    with cluster(partitions=2) as c:
        w = c.start_worker("w1")
        port = int(w.url.rsplit(":", 1)[1])
        wait_for(lambda: http_get(w.url + "/healthz")[0] == 200, 60, "healthz")
        wait_for(lambda: http_get(w.url + "/readyz")[0] == 200, 60, "w1 ready")
        hidden = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
        wrong = []
        for i in range(60):
            target = (b"/v1/profiles/u-%d" % i, b"/healthz", b"/v1/profiles/u-%d/rank" % i)[i % 3]
            body = hidden * (1 + i % 4)
            st, _, _, b, rest, _ = raw(port, b"POST " + target + b" HTTP/1.1\r\nHost: t\r\n"
                                       b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                                       + body, timeout=5)
            if st not in (400, 405) or rest:
                wrong.append("POST %s: %d, then %r" % (target.decode(), st, rest[:60]))
            for _ in range(3):
                st, _, body = http_get(w.url + "/v1/profiles/nobody-%d" % i)
                if st != 404 or b'"status":"ok"' in body:
                    wrong.append("after POST %s: GET answered %d %r" % (target.decode(), st, body[:80]))
        check(not wrong, "%d wrong answers, e.g. %s" % (len(wrong), wrong[:4]))
        check(http_get(w.url + "/healthz")[0] == 200, "worker still answers")
        check(w.stop() == 0, "exit code")



def test_api_token_only_hands_off_by_snapshot():
    token = "api-secret-7f3c9e1d"
    with cluster(partitions=4) as c:
        tf = os.path.join(c.dir, "api_token")
        with open(tf, "w") as f:
            f.write(token + "\n")
        os.chmod(tf, 0o600)
        auth = {"Authorization": "Bearer " + token}
        common = ["--replicas", "0", "--handoff_min_lag", "0"]
        no_cluster_token = {"PROFILED_CLUSTER_TOKEN": ""}  # lib.Cluster gives one by default
        w1 = c.start_worker("w1", common + ["--api_token_file", tf], env=no_cluster_token)
        r = c.ctl("generate", "3000", "--users", "300", "--days", "2", "--seed", "5",
                  "--start_ts", str(int(time.time() * 1000) - 2 * 86400000))
        path = os.path.join(c.dir, "ev.jsonl")
        open(path, "wb").write(r.stdout)
        c.produce_file(path)
        wait_for(lambda: c.caught_up([w1.data]), 90, "w1 to ingest", interval=0.5)
        w2 = c.start_worker("w2", common, env=dict(no_cluster_token, PROFILED_API_TOKEN=token))
        def settled():
            ok, bad = metric(w2.url, "profiled_restores_total"), metric(w2.url, "profiled_restore_failures_total")
            return (ok, bad) if ok + bad > 0 else None
        ok, bad = wait_for(settled, 60, "w2 to take partitions over")
        check(ok > 0 and bad == 0, "w2: %d snapshot restores, %d failures (a rebuild instead)" % (ok, bad))
        wait_for(lambda: all(http_get(w.url + "/readyz", headers=auth)[0] == 200 for w in (w1, w2)), 60, "ready")
        # the internal route wants the token too
        st, _, _ = http_get(w1.url + "/internal/v1/snapshot/0")
        check(st == 401, "snapshot without a token: %d" % st)

        # owner gone, no replica: the public 503 names the owner, not its URL
        w2.kill9()
        seen = 0
        for i in range(300):
            st, _, body = http_get(w1.url + "/v1/profiles/u-%d" % i, headers=auth)
            if st == 503:
                seen += 1
                text = body.decode()
                check("http://" not in text and "127.0.0.1" not in text, "503 shows a peer URL: %s" % text)
                json_error(body, "503")
            if seen >= 3:
                break
        check(seen > 0, "no query reached the dead owner")
        check(w1.stop() == 0, "exit code")
        no_secret_in_logs(c, token)


def test_no_secret_no_cluster():
    with cluster(partitions=1) as c:
        base = [PROFILED, "--brokers", c.bootstrap, "--topic", c.topic, "--data_dir",
                os.path.join(c.dir, "d"), "--listen", "192.0.2.1:0"]  # TEST-NET: never bound
        p = run(base, timeout=30, check_rc=False)
        err = p.stderr.decode(errors="replace")
        check(p.returncode != 0 and "insecure_cluster" in err and "listen" in err,
              "open non-loopback worker: rc %d, %s" % (p.returncode, err[-400:]))
        p = run(base + ["--cluster_token_file", os.path.join(c.dir, "missing")], timeout=30, check_rc=False)
        err = p.stderr.decode(errors="replace")
        check(p.returncode != 0 and "cluster_token_file" in err, "unreadable token file: rc %d, %s"
              % (p.returncode, err[-400:]))


if __name__ == "__main__":
    main([test_raw_requests, test_unread_bodies_never_desynchronise, test_api_token_only_hands_off_by_snapshot, test_no_secret_no_cluster])
