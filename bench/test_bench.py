#!/usr/bin/python3
"""test_bench.py -- checks of the bench harness that need no broker or worker:
`/usr/bin/python3 bench/test_bench.py` (a few seconds).

  steps    measure.parse_steps: aliases, run order, unknown names
  verdict  report.rows on hand-made results: ratios and verdicts against
           figures worked out by hand here
  rss      steps.memory.rss_summary on a synthetic ramp of known slope
  output   report.py writes bench-results.md and plots into its output
           directory only (never BENCHMARKS.md), and sends QUICK or partial
           results to build/bench/report/ unless told otherwise
  lat      steps.rank.parse_lat on hand-made bench_lat lines; the request
           list draws the Python loop's users; and build/bench/bench_lat
           (when built: `make bench-bins`) against a small in-process
           HTTP/1.1 server here: its counts, the bodies it sends, the order
           of its percentiles (no timing is asserted)
"""
import http.server
import threading
import json
import os
import socket
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [HERE, os.path.join(ROOT, "tests")]
import measure  # noqa: E402
import report  # noqa: E402
from steps import memory  # noqa: E402
from steps import rank  # noqa: E402


def wrk_run(rps, p50_ms, p99_ms, p999_ms):
    return {"rps": rps, "p50_us": p50_ms * 1e3, "p99_us": p99_ms * 1e3, "p999_us": p999_ms * 1e3}


class Steps(unittest.TestCase):
    def test_aliases_expand_in_run_order(self):
        self.assertEqual(measure.parse_steps("memory,queries,process"),
                         ["processing", "local", "ingest", "freshness", "memory"])

    def test_all_and_default(self):
        full = ["processing", "e2e", "local", "topk", "reads", "tracked", "population", "rank", "signals", "ingest", "freshness", "forwarded",
                "freshness_fetch10", "redis", "recovery", "backup", "import", "handoff", "memory", "erase"]
        self.assertEqual(measure.parse_steps(""), full)
        self.assertEqual(measure.parse_steps("all"), full)
        self.assertEqual(measure.parse_steps("e2e,all,e2e"), full)

    def test_unknown_step(self):
        with self.assertRaises(ValueError):
            measure.parse_steps("local,locl")


class Verdicts(unittest.TestCase):
    def rows(self, r):
        return {row[0]: row for row in report.rows(r)}

    def test_local_queries_judged_on_the_median_pair(self):
        # 20,000 / 40,000 = 0.50 first; pairs 0.50 0.40 0.45 0.60 -> median 0.475: not met
        q = {"fixed": wrk_run(40000, 0.1, 0.8, 2), "local": wrk_run(20000, 0.2, 0.9, 3),
             "throughput_pairs": [0.5, 0.4, 0.45, 0.6]}
        rows = self.rows({"queries": q})
        tput = rows["3. Local query throughput, req/s (30 days, 20 dims)"]
        self.assertEqual(tput[1], "20,000")
        self.assertEqual(tput[3], "0.47")  # "%.2f" of 0.475 (binary 0.47499...)
        self.assertEqual(tput[5], "**no**")
        lat = rows["3. Local query p50 / p99 / p999, ms"]
        self.assertEqual((lat[1], lat[3], lat[5]), ("0.20 / 0.90 / 3.00", "1.12", "yes"))  # 0.9 ms <= 1 ms

    def test_ingest_rows_without_the_local_step(self):
        # a partial run: paced ingest row needs only local_paced; the saturating one needs local
        q = {"local_paced": wrk_run(5000, 0.2, 0.5, 1),
             "under_ingest_paced": dict(wrk_run(4000, 0.3, 0.9, 2), ingest_rate_target=1000, ingest_rate_seen=990),
             "under_ingest": dict(wrk_run(9000, 0.3, 3.0, 5), ingest_rate_target=1000, ingest_rate_seen=500)}
        rows = report.rows({"queries": q})
        self.assertEqual(len(rows), 1)
        self.assertEqual((rows[0][3], rows[0][5]), ("1.80", "yes"))  # 0.9 / 0.5 <= 2

    def test_processing_and_redis(self):
        r = {"processing": {"pipeline_eps": 300000.0, "cjson_eps": 400000.0, "writes": 1000,
                            "pipeline_secs": 2.0},
             "redis": {"ingest": {"eps": 50000.0}}}
        rows = self.rows(r)
        self.assertEqual(rows["1. Processing (replay pipeline), events/s"][3:], ("0.75", ">= 0.6x", "yes"))
        self.assertEqual(rows["5. Ingest events/s vs Redis HINCRBY design"][3:], ("6.00", ">= 5x", "yes"))

    def test_memory_budget_line(self):
        c = {"block_cache_mb": 64, "write_buffer_mb": 16, "batch_max_events": 20000, "queued_max_kbytes": 16384,
             "day_filter_max_mb": 8}
        b = memory.budget_mib(c)
        # 64 + 32 + 2 x 20000 x 640 B (24.4 MiB) + 16 + 8
        self.assertAlmostEqual(b["total"], 64 + 32 + 40000 * 640 / 2**20 + 16 + 8)
        mm = {"budget_mib": b, "config": c, "secs": 600, "rate_seen": 6000, "min_mib": 100, "median_mib": 150,
              "max_mib": 200, "at_mib": {"25": 1, "50": 2, "75": 3, "100": 4}, "growth_mib_per_min": 0.5,
              "second_half_start_mib": 100, "second_half_end_mib": 101, "slope_mib_per_min": 0.4,
              "baseline_mib": 20, "stable_ok": True}
        rows = report.rows({"memory": mm})
        self.assertIn("batches 2x20000x640 B 24", rows[0][2])
        self.assertEqual(rows[0][5], "yes")  # 200 <= 1.5 x 144.4 = 216.6
        mm["max_mib"] = 1.5 * b["total"] + 1
        self.assertEqual(report.rows({"memory": mm})[0][5], "**no**")


class Rss(unittest.TestCase):
    def test_linear_ramp(self):
        # 100 MiB rising 2 MiB per minute, sampled every second for 10 minutes
        samples = [(t, 100 + 2 * t / 60) for t in range(601)]
        s = memory.rss_summary(samples, 600.0)
        self.assertAlmostEqual(s["slope_mib_per_min"], 2.0, places=6)
        self.assertAlmostEqual(s["growth_mib_per_min"], 2.0, places=1)
        self.assertEqual((s["min_mib"], s["max_mib"]), (100, 120))
        self.assertAlmostEqual(s["at_mib"]["50"], 110)

    def test_flat(self):
        s = memory.rss_summary([(t, 50.0) for t in range(121)], 120.0)
        self.assertEqual((s["growth_mib_per_min"], s["slope_mib_per_min"]), (0.0, 0.0))


class Output(unittest.TestCase):
    def results(self, d, **kw):
        r = {"quick": False, "all_steps": True, "sizes": {}, "partitions": 32, "elapsed_secs": 1.0,
             "processing": {"pipeline_eps": 300000.0, "cjson_eps": 400000.0, "writes": 10, "pipeline_secs": 1.0}}
        r.update(kw)
        path = os.path.join(d, "results.json")
        with open(path, "w") as f:
            json.dump(r, f)
        return path

    def run_report(self, *args):
        return subprocess.run([sys.executable, os.path.join(HERE, "report.py")] + list(args), capture_output=True,
                              text=True, timeout=120)

    def test_writes_only_its_own_files(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "out")
            p = self.run_report("--results", self.results(d), "--out-dir", out)
            self.assertEqual(p.returncode, 0, p.stderr)
            made = sorted(os.listdir(out))
            self.assertIn("bench-results.md", made)
            self.assertTrue(all(f == "bench-results.md" or (f.startswith("bench_") and f.endswith(".png"))
                                for f in made), made)
            with open(os.path.join(out, "bench-results.md")) as f:
                md = f.read()
            self.assertIn("| 1. Processing (replay pipeline), events/s | 300,000 | bare cJSON parse: 400,000 | 0.75 |",
                          md)
            self.assertIn("Reproduce: `make bench` (measure, then report).", md)

    def test_quick_and_partial_runs_stay_out_of_docs(self):
        for kw in ({"quick": True}, {"all_steps": False, "steps": ["local"]}):
            self.assertFalse(report.is_full_run(dict({"quick": False, "all_steps": True}, **kw)), kw)
        self.assertTrue(report.is_full_run({"quick": False, "all_steps": True}))
        self.assertTrue(report.is_full_run({"quick": False}))  # bench.py's results: full unless QUICK

    def test_newer_schema_refused(self):
        with tempfile.TemporaryDirectory() as d:
            p = self.run_report("--results", self.results(d, schema=2), "--out-dir", os.path.join(d, "o"))
            self.assertEqual(p.returncode, 1)
            self.assertFalse(os.path.exists(os.path.join(d, "o")))


LAT_LINE = ('{"rate":100,"secs":10,"conns":1,"due":1000,"sent":1000,"ok":998,"non200":1,"errors":1,'
            '"unsent":0,"wall_s":10.001,"late":3,"lag_max_us":1500.5,'
            '"sched":{"p50_us":400.5,"p90_us":600.0,"p99_us":1900.0,"p999_us":2500.0,"max_us":3000.0},'
            '"send":{"p50_us":390.0,"p90_us":580.0,"p99_us":1200.0,"p999_us":2400.0,"max_us":2900.0},'
            '"first_error":"GET /v1/profiles/u answered 503"}')


class LatServer(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    seen = []  # (method, path, body) of every request

    def log_message(self, *a):
        pass

    def answer(self, body):
        LatServer.seen.append((self.command, self.path, body))
        code = 404 if self.path.startswith("/missing") else 200
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_GET(self):
        self.answer(b"")

    def do_POST(self):
        self.answer(self.rfile.read(int(self.headers["Content-Length"])))


class Lat(unittest.TestCase):
    BIN = os.environ.get("BENCH_LAT_BIN") or os.path.join(ROOT, "build", "bench", "bench_lat")

    def test_parse_line(self):
        r = rank.parse_lat("noise\n" + LAT_LINE + "\n")
        self.assertEqual((r["requests"], r["errors"], r["sent"], r["late"]), (998, 2, 1000, 3))
        self.assertEqual((r["p50_us"], r["p99_us"], r["p999_us"], r["max_us"]), (400.5, 1900.0, 2500.0, 3000.0))
        self.assertEqual((r["send_p50_us"], r["send_p99_us"]), (390.0, 1200.0))
        self.assertEqual(r["first_error"], "GET /v1/profiles/u answered 503")

    def test_parse_nothing_ok(self):
        j = json.loads(LAT_LINE)
        j.update(ok=0, errors=999, unsent=1, non200=0)
        j["sched"] = j["send"] = {k: None for k in j["sched"]}
        r = rank.parse_lat(json.dumps(j))
        self.assertEqual((r["requests"], r["errors"], r["p99_us"], r["send_max_us"]), (0, 1000, None, None))
        with self.assertRaises(ValueError):
            rank.parse_lat("bench_lat: warm-up failed\n")

    def test_request_list_draws_the_python_loops_users(self):
        users = ["u%d" % i for i in range(50)] + ["a b/c"]
        with tempfile.TemporaryDirectory() as d:
            rank.lat_requests(os.path.join(d, "p"), users, None, 200, 2)
            rank.lat_requests(os.path.join(d, "r"), users, "/x/rank100.json", 200, 2)
            with open(os.path.join(d, "p")) as f:
                plain = f.read().splitlines()
            with open(os.path.join(d, "r")) as f:
                ranked = f.read().splitlines()
        import random
        rnd = random.Random(2)  # light_load's draw
        want = [users[rnd.randrange(len(users))] for _ in range(200)]
        enc = {u: u.replace(" ", "%20").replace("/", "%2F") for u in users}
        self.assertEqual(plain, ["GET /v1/profiles/%s?days=30" % enc[u] for u in want])
        self.assertEqual(ranked, ["POST /v1/profiles/%s/rank /x/rank100.json" % enc[u] for u in want])

    def run_lat(self, lines, *args):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), LatServer)
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        LatServer.seen = []
        try:
            with tempfile.TemporaryDirectory() as d:
                body = os.path.join(d, "body.json")
                with open(body, "wb") as f:
                    f.write(b'{"items":[' + b",".join(b'{"id":"%d"}' % i for i in range(3000)) + b"]}")
                lst = os.path.join(d, "list.txt")
                with open(lst, "w") as f:
                    f.write("\n".join(l.replace("BODY", body) for l in lines) + "\n")
                p = subprocess.run([self.BIN, "--port", str(srv.server_address[1]), "--timeout-ms", "10000"] +
                                   list(args) + [lst], capture_output=True, text=True, timeout=60)
                with open(body, "rb") as f:
                    return p, f.read()
        finally:
            srv.shutdown()
            srv.server_close()

    @unittest.skipUnless(os.access(BIN, os.X_OK), "build/bench/bench_lat not built (make bench-bins)")
    def test_client_counts_and_bodies(self):
        p, body = self.run_lat(["# a comment", "GET /ok/1?days=30", "", "POST /ok/2/rank BODY", "GET /missing"],
                               "--rate", "300", "--secs", "0.3", "--conns", "2")
        self.assertEqual(p.returncode, 1, p.stderr)  # the 404s
        r = rank.parse_lat(p.stdout)
        self.assertEqual((r["sent"], r["requests"], r["errors"]), (90, 60, 30))
        self.assertIn("GET /missing answered 404", r["first_error"])
        # the warm-up (the first line, once per connection) and the 90 in order per connection
        self.assertEqual(len(LatServer.seen), 92)
        self.assertEqual(sorted(set(LatServer.seen)), [("GET", "/missing", b""), ("GET", "/ok/1?days=30", b""),
                                                        ("POST", "/ok/2/rank", body)])
        self.assertEqual(sum(1 for s in LatServer.seen if s[0] == "POST"), 30)
        for pre in ("", "send_"):
            v = [r[pre + k] for k in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us")]
            self.assertEqual(v, sorted(v))
            self.assertGreater(v[0], 0)
        for k in ("p50_us", "max_us"):  # from the due time >= from the send
            self.assertGreaterEqual(r[k], r["send_" + k])

    @unittest.skipUnless(os.access(BIN, os.X_OK), "build/bench/bench_lat not built (make bench-bins)")
    def test_client_refuses_and_reports(self):
        p, _ = self.run_lat(["GET /ok"], "--rate", "100", "--secs", "0.1")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(rank.parse_lat(p.stdout)["requests"], 10)
        self.assertNotIn("first_error", rank.parse_lat(p.stdout))
        for bad in (["GET ok"], ["GET /ok /some/body"], ["# nothing"]):
            p, _ = self.run_lat(bad, "--rate", "100", "--secs", "0.1")
            self.assertEqual((p.returncode, p.stdout), (2, ""), bad)
        p, _ = self.run_lat(["GET /ok"], "--rate", "0", "--secs", "1")
        self.assertEqual(p.returncode, 2)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))  # a port nobody listens on (bound, not listening)
        try:
            with tempfile.TemporaryDirectory() as d:
                lst = os.path.join(d, "list.txt")
                with open(lst, "w") as f:
                    f.write("GET /ok\n")
                q = subprocess.run([self.BIN, "--port", str(s.getsockname()[1]), "--rate", "10", "--secs", "1", lst],
                                   capture_output=True, text=True, timeout=30)
            self.assertEqual((q.returncode, q.stdout), (3, ""))  # the warm-up could not connect: nothing measured
            self.assertIn("warm-up GET", q.stderr)
        finally:
            s.close()


if __name__ == "__main__":
    # The project's closing line ("N passed, N failed"), which tests/run.py adds up.
    res = unittest.main(exit=False).result
    bad = len(res.failures) + len(res.errors)
    print("%d passed, %d failed" % (res.testsRun - bad, bad))
    sys.exit(1 if bad else 0)
