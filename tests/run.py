"""run.py -- the test runner behind `make test`.

Runs the unit tests (sanitizer build), then every black-box test module in
tests/bb/ (each against its own embedded broker), each with a time bound,
then the bench harness's tests (bench/test_bench.py).
Adds up their "N passed, N failed" lines and prints the total as the last line.

Black-box modules run PD_TEST_JOBS at a time (default 2): they mostly wait
for the embedded broker (rebalances, session timeouts), so two at once
nearly halve the wall time on two cores. Each module has its own broker,
ports and directories. Modules in EXCLUSIVE (they measure latency under
load) run afterwards, alone. A module's output is printed whole when it
ends.
Usage: tests/run.py [module-or-test-substring ...]
"""
import concurrent.futures
import threading
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BB = os.path.join(ROOT, "tests", "bb")
TIMEOUT = int(os.environ.get("PD_TEST_TIMEOUT", "900"))
JOBS = max(1, int(os.environ.get("PD_TEST_JOBS", "2")))
EXCLUSIVE = {"test_flood.py"}
_print_lock = threading.Lock()


def run(name, args):
    t0 = time.monotonic()
    try:
        p = subprocess.run(args, cwd=ROOT, timeout=TIMEOUT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = p.stdout.decode(errors="replace")
        rc = p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") + "\n(timed out after %ds)\n" % TIMEOUT
        rc = -1
    m = None
    for m in re.finditer(r"^(\d+) passed, (\d+) failed", out, re.M):
        pass
    if m:
        p_, f_ = int(m.group(1)), int(m.group(2))
    else:
        p_, f_ = 0, 1
    if rc != 0 and f_ == 0:
        out += "%s: exited %d with no failed test reported: counted as a failure\n" % (name, rc)
        f_ = 1
    with _print_lock:
        sys.stdout.write("== %s\n%s" % (name, out))
        print("   (%s: %.1fs)" % (name, time.monotonic() - t0), flush=True)
    return p_, f_


def main():
    filt = sys.argv[1:]
    py = sys.executable
    total_p = total_f = 0
    if not filt or "unit" in filt:
        p, f = run("unit", [os.path.join(ROOT, "build", "san", "bin", "test-unit")])
        total_p += p
        total_f += f
    mods = []
    for mod in sorted(os.listdir(BB)):
        if not (mod.startswith("test_") and mod.endswith(".py")):
            continue
        if filt and not any(x in mod for x in filt) and "unit" not in filt:
            continue
        if filt == ["unit"]:
            continue
        mods.append(mod)
    shared = [m for m in mods if m not in EXCLUSIVE]
    with concurrent.futures.ThreadPoolExecutor(max_workers=JOBS) as ex:
        for p, f in ex.map(lambda m: run(m, [py, os.path.join(BB, m)]), shared):
            total_p += p
            total_f += f
    for mod in [m for m in mods if m in EXCLUSIVE]:
        p, f = run(mod, [py, os.path.join(BB, mod)])
        total_p += p
        total_f += f
    # The bench harness's own tests (no broker, under a second): the report
    # and the verdicts `make bench` prints are code too.
    if not filt or any(x in "bench" for x in filt):
        # (bench_lat's tests run the sanitizer build `make san` made)
        os.environ.setdefault("BENCH_LAT_BIN", os.path.join(ROOT, "build", "san", "bench", "bench_lat"))
        p, f = run("bench/test_bench.py", [py, os.path.join(ROOT, "bench", "test_bench.py")])
        total_p += p
        total_f += f
    print("%d passed, %d failed" % (total_p, total_f))
    sys.exit(1 if total_f else 0)


if __name__ == "__main__":
    main()
