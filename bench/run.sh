#!/bin/sh
# bench/run.sh -- `make bench` (QUICK=1 for the small, < 3 minute run).
# Installs the Debian bench tools if missing, builds the bench programs
# (release flags, build/bench/), then runs bench/bench.py, which starts and
# stops every process itself, writes build/bench/results.json and
# regenerates docs/BENCHMARKS.md and docs/bench_*.png.
set -e
cd "$(dirname "$0")/.."
EXTRA_PKGS="rocksdb-tools redis-server redis-tools wrk gnuplot-nox" sh deploy/install-deps.sh
${MAKE:-make} -s bench-bins
export QUICK="${QUICK:-}"
exec /usr/bin/python3 bench/bench.py
