#!/usr/bin/python3
"""measure.py -- the measuring half of `make bench` (started by bench/run.sh).

Runs, on this machine, each measurement of issue 6 (and the hand-off figures
of issue 5) next to its reference and writes the raw figures to
build/bench/results.json. It writes nothing else: bench/report.py turns a
results file into docs/bench-results.md and the docs/bench_*.png plots, and
the method and analysis prose is kept by hand in docs/BENCHMARKS.md.

Steps, in the order they run (bench/steps/, one module per measured job):

  processing         1 + 6: replay pipeline vs bare cJSON, db_bench
                     fillrandom, bytes per user-day            (alias: process)
  e2e                2: one worker from the embedded broker vs bench_consume
  local              3: /healthz and local queries (saturating, interleaved
                     pairs in the full run, paced)
  topk               3b: worker CPU per request of top=10 vs the plain
                     query, interleaved pairs (issue 19)
  population         3c: GET /v1/population vs the profile query, and the
                     ingest cost of population profiles (replay pipeline
                     with/without), interleaved pairs (issue 20)
  reads              3f: GET at= (a past day) and /affinities vs the plain
                     query, worker CPU per request, interleaved (issues
                     19, 20)
  rank               3d: POST rank of 100 and 1,000 candidates vs the plain
                     query (req/s, p50/p99, worker CPU/req, items/s),
                     interleaved; a client-side scoring reference (issue 20)
  signals            3e: per-type tracks and recent items: bytes per
                     user-day with 0/1/2 tracked types and with recent
                     items (default 10) vs off, CPU of weights=/types= and
                     of recent items vs the plain query (in process,
                     bench_tracks); the replay pipeline with the default
                     recent items vs off, interleaved pairs (bench_process;
                     issue 19)
  ingest             3: the same queries under ingestion
  freshness          4: produce -> visible in a query
  forwarded          3: queries through a second worker
  freshness_fetch10  4: freshness with kafka.fetch.wait.max.ms=10
  redis              5: the Redis HINCRBY/HGETALL design
  recovery           7: SIGKILL, restart, time to ready
  backup             7b: full backup and restore vs cp -a (interleaved),
                     an incremental backup (issue 21)
  import             7c: profilectl import (plain, gzip) vs a worker replaying
                     the same events from the topic (issue 21)
  handoff            8: a second worker joins a filled one
  memory             9: RSS under sustained ingestion against the budget
  erase              10: DELETE /v1/profiles vs GET (interleaved pairs);
                     erasure applied vs event visible (issue 21; runs
                     last: it erases users)

`queries` stands for local,ingest,freshness. The query steps measure the
end-to-end step's worker and run that step first when it was not asked for.

Options (environment variable in brackets, as `make bench VAR=...` passes it):
  --steps LIST    comma-separated steps or aliases [STEPS, or BENCH_ONLY];
                  default all
  --quick         small sizes, the whole run under 3 minutes [QUICK=1]
  --bin-dir DIR   profiled and profilectl to measure [BENCH_BIN_DIR];
                  default bin/
  --tools-dir DIR bench_process, bench_consume, bench_redis [BENCH_TOOLS_DIR];
                  default DIR/../build/bench of --bin-dir when it exists,
                  else build/bench/
  --out PATH      results file [BENCH_RESULTS]; default
                  build/bench/results.json
  --keep          keep the work directory: logs, stores [BENCH_KEEP=1]
  --worker-args S adds settings to every worker, e.g. "--k v"
                  [BENCH_WORKER_ARGS]
  --mem-secs N, --mem-warm N  the memory step's measured window and its
                  longest warm-up, seconds [BENCH_MEM_SECS, BENCH_MEM_WARM]

Comparing two builds: build the other commit in its own tree, then run the
steps alternately, e.g.
  bench/measure.py --steps local --bin-dir /tmp/a/bin --out build/bench/a1.json
  bench/measure.py --steps local --out build/bench/b1.json   (and again)
and render each with bench/report.py --results FILE --out-dir DIR.

Exit status: 0, or 3 when a step failed (its error is in the results file,
which is written all the same); 2 for bad options. Every process started
here is registered and stopped on exit (also on errors and signals); only 127.0.0.1 is used; every wait is bounded. The
results file records the steps that ran, the binaries' directories and
their git commit, the machine, and "schema": 1 (the layout bench.py wrote
before the split, which had no "schema" key, plus these fields).
"""
import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))  # oracle.py
from benchlib import ROOT, Ctx, log  # noqa: E402
from steps import archive, backup, e2e, erase, handoff, memory, population, processing, queries, rank, recovery, redis, signals  # noqa: E402

SCHEMA = 1
STEP_FAILED = 3  # exit status: results written, some step failed (2: bad options, 1: crashed)
STEPS = [("processing", processing.run_step), ("e2e", e2e.run_step), ("local", queries.local),
         ("topk", queries.topk), ("reads", queries.reads), ("tracked", queries.tracked), ("population", population.run_step), ("rank", rank.run_step), ("signals", signals.run_step), ("ingest", queries.ingest), ("freshness", queries.freshness), ("forwarded", queries.forwarded),
         ("freshness_fetch10", queries.freshness_fetch10), ("redis", redis.run_step),
         ("recovery", recovery.run_step), ("backup", backup.run_step), ("import", archive.run_step), ("handoff", handoff.run_step), ("memory", memory.run_step),
         ("erase", erase.run_step)]
ALIASES = {"process": ["processing"], "queries": ["local", "ingest", "freshness"], "all": [n for n, _ in STEPS]}


def parse_steps(spec):
    """Step names in run order from a comma-separated list of steps and
    aliases; ValueError names an unknown one."""
    known = {n for n, _ in STEPS}
    want = set()
    for x in (s.strip() for s in (spec or "all").split(",")):
        if not x:
            continue
        if x in ALIASES:
            want.update(ALIASES[x])
        elif x in known:
            want.add(x)
        else:
            raise ValueError("unknown step %r (steps: %s; aliases: %s)" % (
                x, ", ".join(n for n, _ in STEPS), ", ".join(sorted(ALIASES))))
    return [n for n, _ in STEPS if n in want]


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, timeout=10).stdout.decode().strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_info():
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = [l for l in open("/proc/meminfo") if l.startswith("MemTotal")][0].split()[1]
        mem_gib = int(mem) / 1024 / 1024
    except (OSError, IndexError):
        mem_gib = 0
    pk = {}
    for p in ("librdkafka1", "librocksdb7.8", "libcivetweb1", "libcjson1", "libxxhash0", "redis-server", "wrk",
              "rocksdb-tools", "gcc"):
        v = sh("dpkg-query -W -f='${Version}' %s 2>/dev/null" % p)
        if v:
            pk[p] = v
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_gib": round(mem_gib, 1), "kernel": platform.release(),
            "os": sh(". /etc/os-release && echo $PRETTY_NAME"), "packages": pk,
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def commit_of(d):
    """Short commit of the git tree holding directory d, "+dirty" when its
    tracked files differ from it; None outside a git tree."""
    c = sh("git -C '%s' rev-parse --short HEAD 2>/dev/null" % d)
    if not c:
        return None
    return c + ("+dirty" if sh("git -C '%s' status --porcelain -uno 2>/dev/null" % d) else "")


def command_of(a):
    """The measure.py command line that repeats a run with options a."""
    cmd = ["bench/measure.py"]
    if a.quick:
        cmd.append("--quick")
    if a.steps != [n for n, _ in STEPS]:
        cmd += ["--steps", ",".join(a.steps)]
    if a.bin_dir != os.path.join(ROOT, "bin"):
        cmd += ["--bin-dir", a.bin_dir]
    if a.worker_args.strip():
        cmd += ["--worker-args", "'%s'" % a.worker_args.strip()]
    for opt, v in (("--mem-secs", a.mem_secs), ("--mem-warm", a.mem_warm)):
        if v:
            cmd += [opt, str(v)]
    return " ".join(cmd)


def options(argv):
    env = os.environ.get
    ap = argparse.ArgumentParser(description="Run the bench measurements; write results.json (see the top of "
                                             "this file).")
    ap.add_argument("--steps", default=env("STEPS") or env("BENCH_ONLY") or "all")
    ap.add_argument("--quick", action="store_true", default=env("QUICK", "") not in ("", "0"))
    ap.add_argument("--bin-dir", default=env("BENCH_BIN_DIR") or os.path.join(ROOT, "bin"))
    ap.add_argument("--tools-dir", default=env("BENCH_TOOLS_DIR"))
    ap.add_argument("--out", default=env("BENCH_RESULTS") or os.path.join(ROOT, "build", "bench", "results.json"))
    ap.add_argument("--keep", action="store_true", default=bool(env("BENCH_KEEP")))
    ap.add_argument("--worker-args", default=env("BENCH_WORKER_ARGS", ""))
    ap.add_argument("--mem-secs", type=int, default=int(env("BENCH_MEM_SECS") or 0))
    ap.add_argument("--mem-warm", type=int, default=int(env("BENCH_MEM_WARM") or 0))
    a = ap.parse_args(argv)
    try:
        a.steps = parse_steps(a.steps)
    except ValueError as e:
        ap.error(str(e))
    a.bin_dir = os.path.abspath(a.bin_dir)
    if not a.tools_dir:
        sibling = os.path.join(os.path.dirname(a.bin_dir), "build", "bench")
        a.tools_dir = sibling if os.path.isdir(sibling) else os.path.join(ROOT, "build", "bench")
    a.tools_dir = os.path.abspath(a.tools_dir)
    for d, names in ((a.bin_dir, ("profiled", "profilectl")),
                     (a.tools_dir, ("bench_process", "bench_consume", "bench_redis"))):
        missing = [n for n in names if not os.access(os.path.join(d, n), os.X_OK)]
        if missing:
            ap.error("%s: missing %s (make all bench-bins builds them)" % (d, ", ".join(missing)))
    return a


def measure(ctx, steps):
    """Runs steps (names, in order); a failing step is recorded under
    results["errors"] and the others still run."""
    fns = dict(STEPS)

    def run_step(name):
        if name in ctx.done:
            return
        ctx.done.append(name)
        try:
            fns[name](ctx)
        except Exception as e:  # noqa: BLE001 - record and go on with the others
            traceback.print_exc()
            ctx.r.setdefault("errors", {})[name] = str(e)
            log("%s failed: %s" % (name, e))
    ctx.run_step = run_step
    t0 = time.monotonic()
    for name in steps:
        run_step(name)
    ctx.r["elapsed_secs"] = time.monotonic() - t0


def main(argv):
    a = options(argv)
    ctx = Ctx(a.quick, a.bin_dir, a.tools_dir, worker_args=a.worker_args.split(), mem_secs=a.mem_secs,
              mem_warm=a.mem_warm, keep=a.keep)

    def on_signal(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    try:
        try:
            measure(ctx, a.steps)
        finally:
            ctx.procs.stop_all()
        ctx.r.update({"schema": SCHEMA, "steps_requested": a.steps, "steps": ctx.done,
                      "all_steps": ctx.done == [n for n, _ in STEPS],
                      "bin_dir": a.bin_dir, "tools_dir": a.tools_dir, "commit": commit_of(a.bin_dir),
                      "worker_args": ctx.worker_args, "command": command_of(a),
                      "machine": machine_info()})
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(ctx.r, f, indent=1)
        log("wrote %s in %.0f s (steps: %s%s)" % (a.out, ctx.r["elapsed_secs"], ", ".join(ctx.done),
                                                  "; failed: " + ", ".join(ctx.r["errors"]) if ctx.r.get("errors")
                                                  else ""))
        return STEP_FAILED if ctx.r.get("errors") else 0
    finally:
        # The work dir can hold gigabytes (the recovery step's stores): it
        # goes on every exit -- partial runs and failures included -- unless
        # --keep asks to keep it.
        if ctx.keep:
            log("work dir kept: %s" % ctx.work)
        else:
            shutil.rmtree(ctx.work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
