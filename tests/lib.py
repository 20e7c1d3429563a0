"""lib.py -- helpers for black-box tests: start the embedded broker and
workers (sanitizer builds), wait with bounds, stop everything.

Every process started through a Cluster is stopped when the Cluster closes
(SIGTERM, then SIGKILL after a bound), also when a test fails. Only loopback
addresses and ephemeral ports are used.
"""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("PD_BIN", os.path.join(ROOT, "build", "san", "bin"))
PROFILED = os.path.join(BIN, "profiled")
PROFILECTL = os.path.join(BIN, "profilectl")

SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=23",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    "LSAN_OPTIONS": "suppressions=" + os.path.join(ROOT, "tests", "lsan.supp") + ":print_suppressions=0",
}


class TestFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def wait_for(pred, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - keep polling, report at the end
            last = e
        time.sleep(interval)
    raise TestFailure("timed out after %.0fs waiting for %s (last: %r)" % (timeout, what, last))


def http_get(url, timeout=5.0, headers=None):
    """Returns (status, headers, body bytes)."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def metric(target, name, labels=""):
    """One sample of a worker's /metrics (target: the worker or its URL):
    `name` may carry its labels, or pass them as `labels` (with or without
    braces). 0 when the sample is absent (a counter not yet counted)."""
    url = getattr(target, "url", target)
    if labels and not labels.startswith("{"):
        labels = "{%s}" % labels
    want = name + labels + " "
    _, _, body = http_get(url + "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(want):
            return float(line.split()[-1])
    return 0


def run(args, timeout=120, input=None, check_rc=True, env=None):
    e = dict(os.environ)
    e.update(SAN_ENV)
    if env:
        e.update(env)
    p = subprocess.run(args, input=input, capture_output=True, timeout=timeout, env=e)
    if check_rc and p.returncode != 0:
        raise TestFailure("%s exited %d: %s" % (" ".join(args[:3]), p.returncode,
                                                p.stderr.decode(errors="replace")[-3000:]))
    return p


class Proc:
    def __init__(self, name, args, logdir, env=None):
        self.name = name
        self.args = args
        self.log_path = os.path.join(logdir, name + ".log")
        self.log = open(self.log_path, "ab")
        e = dict(os.environ)
        e.update(SAN_ENV)
        if env:
            e.update(env)
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, env=e)

    def readline(self, timeout):
        """First stdout line, bounded."""
        import select
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.p.stdout], [], [], 0.2)
            if r:
                c = os.read(self.p.stdout.fileno(), 1)
                if not c:
                    break
                if c == b"\n":
                    return buf.decode()
                buf += c
            elif self.p.poll() is not None:
                break
        raise TestFailure("%s: no output line within %ss; log tail:\n%s" % (self.name, timeout, self.tail()))

    def tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def alive(self):
        return self.p.poll() is None

    def kill9(self):
        if self.alive():
            self.p.send_signal(signal.SIGKILL)
        self.p.wait(timeout=10)

    def stop(self, timeout=40):
        """SIGTERM and wait; returns the exit code (SIGKILL after timeout)."""
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.send_signal(signal.SIGKILL)
                self.p.wait(timeout=10)
                raise TestFailure("%s did not stop within %ss:\n%s" % (self.name, timeout, self.tail()))
        if self.p.stdout:
            self.p.stdout.close()
        self.log.close()
        return self.p.returncode


class Cluster:
    """An embedded broker plus any number of workers, in a temp dir."""

    def __init__(self, partitions=4, brokers=1, topic="events", keep=False):
        self.dir = tempfile.mkdtemp(prefix="pd-bb-")
        self.partitions = partitions
        self.topic = topic
        self.procs = []
        self.workers = {}
        self.keep = keep
        # the workers' shared secret (issue 23: tests run with one, like a
        # deployment); given through the environment, never argv
        self.secret = os.urandom(16).hex()
        self.broker = self._start("broker", [PROFILECTL, "broker", "--partitions", str(partitions),
                                             "--brokers", str(brokers), "--topics", topic])
        self.bootstrap = self.broker.readline(30).strip()
        check(self.bootstrap.startswith("127.0.0.1:") or "localhost" in self.bootstrap,
              "unexpected bootstrap line %r" % self.bootstrap)

    def _start(self, name, args, env=None):
        p = Proc(name, args, self.dir, env)
        self.procs.append(p)
        return p

    def start_worker(self, wid, extra=None, wait_listen=True, env=None):
        data = os.path.join(self.dir, "data-" + wid)
        args = [PROFILED, "--brokers", self.bootstrap, "--topic", self.topic, "--group", "g",
                "--data_dir", data, "--id", wid, "--listen", "127.0.0.1:0",
                "--session_timeout_ms", "6000", "--commit_interval_ms", "50"]
        args += extra or []
        wenv = {"PROFILED_CLUSTER_TOKEN": self.secret}
        wenv.update(env or {})
        p = self._start(wid, args, wenv)
        p.data = data
        p.url = None
        if wait_listen:
            line = p.readline(60)
            check(line.startswith("listening "), "worker %s printed %r" % (wid, line))
            p.url = line.split()[1]
        self.workers[wid] = p
        return p

    def produce_file(self, path, extra=None, timeout=120):
        r = run([PROFILECTL, "produce", "--brokers", self.bootstrap, "--topic", self.topic,
                 "--file", path] + (extra or []), timeout=timeout)
        return r.stdout.decode()

    def ctl(self, *args, timeout=60, check_rc=True):
        return run([PROFILECTL] + list(args), timeout=timeout, check_rc=check_rc)

    def offsets(self, data_dir):
        """{partition: next_offset} from the store's checkpoints."""
        r = self.ctl("offsets", "--data-dir", data_dir, "--format", "json")
        out = {}
        for line in r.stdout.decode().splitlines():
            line = line.strip()
            if not line:
                continue
            o = json.loads(line)
            out[o["partition"]] = o["next_offset"]
        return out

    def end_offsets(self, topic=None):
        """{partition: high watermark} by reading the topic with consume."""
        r = self.ctl("consume", "--brokers", self.bootstrap, "--topic", topic or self.topic,
                     "--timeout_ms", "60000", timeout=90)
        ends = {p: 0 for p in range(self.partitions)}
        for line in r.stdout.decode().splitlines():
            rec = json.loads(line)
            ends[rec["partition"]] = max(ends[rec["partition"]], rec["offset"] + 1)
        return ends, r.stdout.decode()

    def watermarks(self, topic=None):
        """{partition: high watermark} (cheap: no records read)."""
        r = self.ctl("consume", "--brokers", self.bootstrap, "--topic", topic or self.topic,
                     "--watermarks", "true", timeout=60)
        return {o["partition"]: o["high"] for o in map(json.loads, r.stdout.decode().splitlines())}

    def caught_up(self, data_dirs, copies=1):
        """True when, for every partition, at least `copies` of the given
        stores have checkpointed the partition's current end offset."""
        ends = self.watermarks()
        have = {p: 0 for p in range(self.partitions)}
        for d in data_dirs:
            if not os.path.exists(os.path.join(d, "CURRENT")):
                continue
            for p, off in self.offsets(d).items():
                if p in ends and off >= ends[p]:
                    have[p] += 1
        return all(have[p] >= copies for p in range(self.partitions))

    def dump(self, data_dir, partition=None):
        args = ["dump", "--data-dir", data_dir, "--format", "json"]
        if partition is not None:
            args += ["--partition", str(partition)]
        r = self.ctl(*args, timeout=120)
        out = {}
        for line in r.stdout.decode().splitlines():
            if line.strip():
                o = json.loads(line)
                out[(o["user_id"], o["day"])] = o
        return out

    def close(self, ok=True):
        errors = []
        for p in reversed(self.procs):
            try:
                if p.alive():
                    rc = p.stop()
                    if rc not in (0, -9) and p.name != "broker":
                        errors.append("%s exited %s" % (p.name, rc))
            except TestFailure as e:
                errors.append(str(e))
        if ok and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print("  (logs kept in %s)" % self.dir)
        return errors


@contextlib.contextmanager
def cluster(**kw):
    """A Cluster that is always closed: every process it started is stopped.
    On success a worker that exited badly fails the test; on failure the
    logs are kept and their directory printed."""
    c = Cluster(**kw)
    ok = False
    try:
        yield c
        ok = True
    finally:
        errs = c.close(ok)
    if errs:
        raise TestFailure("; ".join(errs))


def main(tests):
    """Runs test functions (each takes no args); prints ok/FAIL lines and the
    closing 'N passed, N failed'. Filters by argv substrings."""
    want = sys.argv[1:]
    passed = failed = 0
    for t in tests:
        if want and not any(w in t.__name__ for w in want):
            continue
        t0 = time.monotonic()
        try:
            t()
            print("ok   %s (%.1fs)" % (t.__name__, time.monotonic() - t0), flush=True)
            passed += 1
        except Exception as e:  # noqa: BLE001
            import traceback
            print("FAIL %s (%.1fs): %s" % (t.__name__, time.monotonic() - t0, e), flush=True)
            if not isinstance(e, TestFailure):
                traceback.print_exc()
            failed += 1
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
