#!/bin/sh
# bench/run.sh -- `make bench` (QUICK=1 for the small, < 3 minute run).
# Installs the Debian bench tools if missing, builds the bench programs
# (release flags, build/bench/), then measures and reports:
#   bench/measure.py  runs the steps, starting and stopping every process
#                     itself, and writes build/bench/results.json only;
#   bench/report.py   writes bench-results.md and the bench_*.png plots from
#                     it: into docs/ for a full run of every step, else into
#                     build/bench/report/ (docs/BENCHMARKS.md is kept by hand).
# The environment passes through: STEPS=local,ingest runs a subset,
# BENCH_BIN_DIR=DIR measures other binaries (see the top of measure.py).
# The report is written even when a step failed; the exit status is then 1.
set -e
cd "$(dirname "$0")/.."
EXTRA_PKGS="rocksdb-tools redis-server redis-tools wrk gnuplot-nox" sh deploy/install-deps.sh
${MAKE:-make} -s bench-bins
export QUICK="${QUICK:-}"
rc=0
/usr/bin/python3 bench/measure.py || rc=$?
# 3: results written, some step failed; anything else but 0: nothing new to report
[ $rc = 0 ] || [ $rc = 3 ] || exit $rc
/usr/bin/python3 bench/report.py --results "${BENCH_RESULTS:-build/bench/results.json}" || exit 1
[ $rc = 0 ] || exit 1
