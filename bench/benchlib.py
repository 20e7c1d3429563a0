"""benchlib.py -- what every measurement step of `make bench` shares.

The processes a run starts (Procs: each registered, each stopped on exit),
bounded waits, HTTP and /metrics probes, /proc CPU and log-line readers, and
Ctx: one run's context (paths of the binaries under test, sizes, the work
directory, the broker, the first worker and the event files the steps hand
on to each other, and the results dict that measure.py writes out as
build/bench/results.json).

Ownership: Ctx owns the work directory and every process started through
ctx.procs; measure.py stops them all (Procs.stop_all) and removes the work
directory when the run ends, also on errors and signals. Steps only add to
ctx.r (their own top-level key) and to the shared fixtures below; the report
(report.py) never imports this module, only reads results.json.
"""
import json
import os
import re
import resource
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = 32
# Worst-case batch memory per event (every event a new user-day, 20
# attributes): its log record (~270 B) + a batch entry (~330 B) + table slot
# and sort pointer; docs/operations.md states the same bound.
BATCH_BYTES_PER_EVENT = 640
# Rate-limited background producers linger 50 ms: the mock broker finds a
# fetch's offset by walking the partition's list of stored batches (about
# 95 % of its CPU in a perf profile), so one-message batches make it burn a
# core that the worker under test would otherwise get. Production brokers
# index their logs; this only keeps the stand-in broker cheap.
PRODUCE_BATCHING = ["-X", "linger.ms=50"]
# Paced query load: each wrk connection waits this long after a response.
PACE_MS = 1

SIZES = {
    True: dict(proc_n=100_000, users=20_000, e2e_n=100_000, query_secs=4, conns=8,
               fresh_n=40, recovery=[100_000], redis_threads=8, handoff=200_000, mem_secs=20, mem_warm=5,
               pairs=0),
    False: dict(proc_n=1_000_000, users=200_000, e2e_n=250_000, query_secs=15, conns=8,
                fresh_n=300, recovery=[1_000_000, 10_000_000], redis_threads=8, handoff=1_000_000,
                mem_secs=600, mem_warm=300, pairs=3),
}


def log(msg):
    print("bench: " + msg, flush=True)


# ---------------------------------------------------------------- processes

class Procs:
    """Every long-running process the bench starts; stop_all() ends them."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = []

    def start(self, name, args, stdin=None, env=None):
        logf = open(os.path.join(self.workdir, name + ".log"), "ab")
        e = dict(os.environ)
        e.update(env or {})
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=logf, stdin=stdin, env=e)
        p.bench_name = name
        p.bench_log = os.path.join(self.workdir, name + ".log")
        p.bench_logf = logf
        self.procs.append(p)
        return p

    def stop(self, p, timeout=30):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        for f in (p.stdout, p.stdin):
            if f:
                try:
                    f.close()
                except OSError:
                    pass
        p.bench_logf.close()
        if p in self.procs:
            self.procs.remove(p)

    def kill9(self, p):
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
        self.stop(p)

    def stop_all(self):
        for p in reversed(list(self.procs)):
            try:
                self.stop(p, timeout=15)
            except Exception as e:  # noqa: BLE001 - keep stopping the others
                log("could not stop %s: %s" % (p.bench_name, e))


def readline(p, timeout):
    """First stdout line of p, bounded."""
    import select
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 0.1)
        if r:
            c = os.read(p.stdout.fileno(), 1)
            if not c:
                break
            if c == b"\n":
                return buf.decode()
            buf += c
        elif p.poll() is not None:
            break
    raise RuntimeError("%s printed no line within %ss (log %s)" % (p.bench_name, timeout, p.bench_log))


def run(args, timeout, **kw):
    r = subprocess.run(args, capture_output=True, timeout=timeout, **kw)
    if r.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (" ".join(map(str, args[:3])), r.returncode,
                                                 r.stderr.decode(errors="replace")[-2000:]))
    return r.stdout.decode()


def http_get(url, timeout=5.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def wait_for(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise RuntimeError("timed out after %ss waiting for %s" % (timeout, what))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def proc_cpu(pid):
    """CPU seconds (user + system) process pid has used so far, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def thread_cpu(pid):
    """CPU seconds per thread name (comm) of process pid, or {}."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for t in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, t)) as f:
                head, rest = f.read().rsplit(")", 1)
            name = head.split("(", 1)[1]
            fields = rest.split()
            out[name] = out.get(name, 0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return out


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def metric_sum(url, name):
    st, body = http_get(url + "/metrics", timeout=2)
    if st != 200:
        return None
    total = 0
    for line in body.decode(errors="replace").splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            try:
                total += float(line.rsplit(None, 1)[1])
            except ValueError:
                pass
    return total


def http_statuses(url):
    """{"route/status": count} from the worker's profiled_http_requests_total."""
    st, body = http_get(url + "/metrics", timeout=2)
    out = {}
    if st != 200:
        return out
    for line in body.decode(errors="replace").splitlines():
        m = re.match(r'profiled_http_requests_total\{route="(\w+)",status="(\w+)"\} (\d+)', line)
        if m and m.group(1) != "metrics":
            out[m.group(1) + "/" + m.group(2)] = int(m.group(3))
    return out


def log_time(path, pattern):
    """Wall-clock epoch seconds of the first log line matching pattern, or None."""
    found = log_lines(path, pattern)
    return found[0][0] if found else None


def log_lines(path, pattern):
    """[(epoch seconds, match)] for every log line matching pattern (lines
    start with an RFC 3339 UTC timestamp, "2026-11-02T10:11:12.345Z")."""
    import calendar
    out = []
    try:
        with open(path, "rb") as f:
            for raw in f:
                line = raw.decode(errors="replace")
                m = re.search(pattern, line)
                if not m:
                    continue
                ts = line.split(None, 1)[0]
                try:
                    secs = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
                except ValueError:
                    continue
                frac = re.match(r"\.(\d+)", ts[19:])
                out.append((secs + (float("0." + frac.group(1)) if frac else 0.0), m))
    except OSError:
        pass
    return out


def assigned_time(path):
    """Time of the worker's first "assigned N partition(s)" line with N > 0.
    /readyz can turn 200 just before that line is written: wait up to 2 s."""
    try:
        return wait_for(lambda: log_time(path, r"assigned [1-9]\d* partition"), 2, "assigned line", 0.05)
    except RuntimeError:
        return None


def readyz(url):
    """(status, parsed body or {}) of GET /readyz."""
    st, body = http_get(url + "/readyz", timeout=1)
    try:
        return st, json.loads(body)
    except ValueError:
        return st, {}


def all_ready(url):
    """/readyz's body when it answers 200 with partitions owned and every
    owned partition ready, else False."""
    st, b = readyz(url)
    return st == 200 and b.get("owned", 0) > 0 and b.get("ready") == b.get("owned") and b


def du(path):
    total = sst = 0
    for d, _, files in os.walk(path):
        for f in files:
            n = os.path.getsize(os.path.join(d, f))
            total += n
            if f.endswith(".sst"):
                sst += n
    return total, sst



# ---------------------------------------------------------------- one run

class Ctx:
    """One run: where the binaries are, its sizes, its processes, and the
    fixtures steps share (created on first use, so any subset of steps can
    run alone)."""

    def __init__(self, quick, bin_dir, tools_dir, worker_args=(), mem_secs=None, mem_warm=None, keep=False):
        self.quick = quick
        self.sizes = dict(SIZES[quick])
        self.bin_dir = bin_dir      # profiled, profilectl
        self.tools_dir = tools_dir  # bench_process, bench_consume, bench_redis
        self.worker_args = list(worker_args)
        self.mem_secs = mem_secs or self.sizes["mem_secs"]
        self.mem_warm = mem_warm or self.sizes["mem_warm"]
        self.keep = keep
        self.work = tempfile.mkdtemp(prefix="pd-bench-")
        self.procs = Procs(self.work)
        self.r = {"quick": quick, "sizes": self.sizes, "partitions": PARTS, "loadavg_start": os.getloadavg()}
        self.broker = None
        self.bootstrap = None
        self.w1 = None           # the worker of the end-to-end step; owns every partition of "events"
        self.e2e_file = None     # events produced to "events" (or a small template file, see ensure_source)
        self.proc_file = None    # the processing step's events (also Redis's input)
        self.users = None        # user ids of e2e_file, sorted
        self.users_path = None   # the same, one per line (wrk_profiles.lua, bench_redis)
        self.done = []           # steps run so far, in order (failed ones included)
        self.run_step = None     # measure.py: runs a step by name (dependencies)

    def bin(self, name):
        return os.path.join(self.bin_dir, name)

    def tool(self, name):
        return os.path.join(self.tools_dir, name)

    # -- processes
    def start_broker(self):
        self.broker = self.procs.start("broker", [self.bin("profilectl"), "broker", "--partitions", str(PARTS),
                                                  "--brokers", "1", "--topics", "events,recov,hoff1,hoff0,mem,imp,trk"])
        self.bootstrap = readline(self.broker, 30).strip()

    def ensure_broker(self):
        if not self.bootstrap:
            self.start_broker()

    def start_worker(self, wid, data, topic="events", group="bench", extra=None):
        args = [self.bin("profiled"), "--brokers", self.bootstrap, "--topic", topic, "--group", group,
                "--data_dir", data, "--id", wid, "--listen", "127.0.0.1:0", "--session_timeout_ms", "6000",
                "--quiet", "false"] + (extra or []) + self.worker_args
        t0 = time.time()
        p = self.procs.start(wid, args)
        line = readline(p, 120)
        if not line.startswith("listening "):
            raise RuntimeError("%s printed %r" % (wid, line))
        p.url = line.split()[1]
        p.t_spawn = t0
        p.t_listen = time.time()
        return p

    def produce_file(self, path, timeout=300):
        return run([self.bin("profilectl"), "produce", "--brokers", self.bootstrap, "--topic", "events",
                    "--file", path, "--quiet", "true"], timeout=timeout)

    def generate(self, path, n, *args):
        """profilectl generate n events (extra generator arguments) into path."""
        with open(path, "wb") as f:
            subprocess.run([self.bin("profilectl"), "generate", str(n)] + list(args), stdout=f, check=True,
                           timeout=300)
        return path

    # -- shared fixtures
    def ensure_source(self):
        """Broker and template event file for the fill-based steps (recovery,
        hand-off): the end-to-end step's file when it ran, else a small one."""
        self.ensure_broker()
        if not self.e2e_file:
            self.e2e_file = self.generate(os.path.join(self.work, "e2e.jsonl"), 20000, "--users", "5000", "--days",
                                          "7", "--seed", "2")

    def ensure_proc_file(self):
        if not self.proc_file:
            self.proc_file = self.generate(os.path.join(self.work, "events.jsonl"), self.sizes["proc_n"], "--users",
                                           str(self.sizes["users"]), "--days", "7", "--seed", "1")
        return self.proc_file

    def ensure_w1(self):
        """The end-to-end step's worker, which the query steps measure; runs
        that step first when it has not run (self.run_step: measure.py's)."""
        if "e2e" not in self.done:
            self.run_step("e2e")
        if self.w1 is None or self.w1.poll() is not None:
            raise RuntimeError("the end-to-end step's worker is not running (see errors.e2e)")
        return self.w1

    def users_file(self):
        """Users of the end-to-end events, one per line (needs ensure_w1)."""
        if not self.users_path:
            self.users = sorted({json.loads(l)["user_id"] for l in open(self.e2e_file) if l.strip()})
            self.users_path = os.path.join(self.work, "users.txt")
            with open(self.users_path, "w") as f:
                f.write("\n".join(self.users) + "\n")
        return self.users_path

    # -- wrk
    def wrk(self, url, secs, users=None, path="/healthz", name="wrk", delay_ms=0, watch=None, query="",
            body_file=None, suffix=""):
        """One wrk run; watch = {name: pid} whose CPU (cores used, on
        average) is recorded next to wrk's own in res["cpu"]."""
        before = http_statuses(url)
        watch = dict(watch or {})
        if self.broker:
            watch.setdefault("broker", self.broker.pid)
        cpu0 = {k: proc_cpu(v) for k, v in watch.items()}
        th0 = thread_cpu(watch["worker"]) if "worker" in watch else {}
        c0, t0 = children_cpu(), time.monotonic()
        out = os.path.join(self.work, name + ".json")
        env = dict(os.environ, BENCH_OUT=out, BENCH_PATH=path, BENCH_USERS=users or "", BENCH_QUERY=query,
                   BENCH_DELAY_MS=str(delay_ms) if delay_ms else "", BENCH_BODY_FILE=body_file or "",
                   BENCH_SUFFIX=suffix)
        run(["wrk", "-t1", "-c%d" % self.sizes["conns"], "-d%ds" % secs, "--timeout", "5s", "-s",
             os.path.join(ROOT, "bench", "wrk_profiles.lua"), url], timeout=secs + 60, env=env)
        wall = time.monotonic() - t0
        cpu = {"wrk": (children_cpu() - c0) / wall}
        for k, v in watch.items():
            c1 = proc_cpu(v)
            if c1 is not None and cpu0[k] is not None:
                cpu[k] = (c1 - cpu0[k]) / wall
        if "worker" in watch:
            th1 = thread_cpu(watch["worker"])
            cpu["worker_threads"] = {k: round((v - th0.get(k, 0)) / wall, 3) for k, v in th1.items()
                                     if v - th0.get(k, 0) > 0}
        with open(out) as f:
            res = json.load(f)
        res["cpu"] = cpu
        res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
        res["errors"] = sum(res[k] for k in res if k.startswith("errors_"))
        after = http_statuses(url)
        res["statuses"] = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0) > 0}
        return res
