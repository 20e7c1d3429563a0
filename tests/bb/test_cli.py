"""test_cli.py -- command-line behaviour users rely on: --help, errors that
name the offending setting, the generated configuration doc being current,
profilectl's usage errors and `profilectl broker --topics`; and two checks
of how the binaries are built: bin/profiled links only the worker (nm), and
test-unit isolates a crashing, hanging or failing test."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lib import BIN, PROFILECTL, PROFILED, ROOT, Proc, check, main, run  # noqa: E402


def test_profiled_help_and_bad_settings():
    r = run([PROFILED, "--help"])
    out = r.stdout.decode()
    for key in ("--retention_days", "--commit_interval_ms", "--dedup_window", "--kafka.<property>", "--replicas"):
        check(key in out, "--help lacks %s" % key)
    r = run([PROFILED, "--retention_dayz", "5"], check_rc=False)
    check(r.returncode == 2 and b"retention_dayz" in r.stderr, "unknown key: rc %d %r" % (r.returncode, r.stderr))
    r = run([PROFILED, "--retention_days", "0"], check_rc=False)
    check(r.returncode == 2 and b"retention_days" in r.stderr, "out of range: %r" % r.stderr)
    r = run([PROFILED, "--dedup_window", "soon"], check_rc=False)
    check(r.returncode == 2 and b"dedup_window" in r.stderr, "bad duration: %r" % r.stderr)
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write("topic = t\nnot_a_setting = 1\n")
    r = run([PROFILED, "--config", f.name], check_rc=False)
    os.unlink(f.name)
    check(r.returncode == 2 and b":2:" in r.stderr and b"not_a_setting" in r.stderr, "config file error: %r" % r.stderr)
    r = run([PROFILED, "--timezone", "Mars/Olympus"], check_rc=False)
    check(r.returncode == 2 and b"timezone" in r.stderr, "bad timezone: %r" % r.stderr)


def test_configuration_doc_is_current():
    r = run([PROFILED, "--print-config-markdown"])
    doc = open(os.path.join(ROOT, "docs", "configuration.md"), "rb").read()
    check(r.stdout == doc, "docs/configuration.md is stale: run `make docs`")


def test_profilectl_usage():
    check(run([PROFILECTL, "--help"]).returncode == 0, "--help")
    r = run([PROFILECTL, "frobnicate"], check_rc=False)
    check(r.returncode == 2 and b"frobnicate" in r.stderr, "unknown command")
    for cmd in ("broker", "produce", "generate", "consume", "dump", "days", "offsets", "schema"):
        r = run([PROFILECTL, cmd, "--help"], check_rc=False)
        check(r.returncode == 0 and len(r.stdout) > 50, "%s --help: rc %d" % (cmd, r.returncode))
    r = run([PROFILECTL, "dump", "--data-dir", "/nonexistent/pd"], check_rc=False)
    check(r.returncode == 1 and r.stderr, "dump of a missing store: rc %d" % r.returncode)
    r = run([PROFILECTL, "schema", "--format", "yaml"], check_rc=False)
    check(r.returncode == 2 and b"--format" in r.stderr, "schema --format yaml: rc %d %r" % (r.returncode, r.stderr))
    r = run([PROFILECTL, "schema", "--schema", "/nonexistent/s.json"], check_rc=False)
    check(r.returncode == 1 and b"/nonexistent/s.json" in r.stderr, "schema of a missing file: %r" % r.stderr)
    r = run([PROFILECTL, "schema", "--schema", "builtin", "--data-dir", "/tmp"], check_rc=False)
    check(r.returncode == 2 and b"--data-dir and --schema" in r.stderr, "schema with both: %r" % r.stderr)
    r = run([PROFILECTL, "produce", "--topic", "t"], check_rc=False)
    check(r.returncode == 2 and b"brokers" in r.stderr, "produce without --brokers: %r" % r.stderr)


def test_broker_topics_listing_internal_topics():
    """`--topics events,events.dlq,events.members`: the listed internal
    topics are the ones the broker creates for events anyway; not an error,
    each created once with its own partition count (oracle: the partitions
    `consume --watermarks` reports through the Kafka protocol)."""
    d = tempfile.mkdtemp(prefix="pd-bb-broker-")
    b = Proc("broker", [PROFILECTL, "broker", "--partitions", "3", "--brokers", "1",
                        "--topics", "events, events.dlq,events.members"], d)
    try:
        boot = b.readline(60).strip()
        check(boot.startswith("127.0.0.1:"), "bootstrap line %r" % boot)
        for topic, nparts in (("events", 3), ("events.dlq", 3), ("events.members", 1)):
            r = run([PROFILECTL, "consume", "--brokers", boot, "--topic", topic, "--watermarks", "true",
                     "--timeout_ms", "20000"], timeout=60)
            parts = sorted(int(m) for m in re.findall(rb'"partition":(\d+)', r.stdout))
            check(parts == list(range(nparts)), "%s: partitions %r, want %d" % (topic, parts, nparts))
    finally:
        rc = b.stop()
        log = open(b.log_path, "rb").read().decode(errors="replace")
        shutil.rmtree(d, ignore_errors=True)
    check(rc == 0, "broker exited %d:\n%s" % (rc, log[-2000:]))
    check(" error " not in log, "broker logged an error:\n%s" % log[-2000:])
    created = re.findall(r"topic (\S+) partitions=(\d+)", log)
    check(sorted(created) == [("events", "3"), ("events.dlq", "3"), ("events.members", "1")],
          "created %r" % created)


def defined_symbols(path):
    """Global text/data symbols a file defines (nm, external only)."""
    r = subprocess.run(["nm", "--defined-only", "--extern-only", path], capture_output=True, check=True)
    return {ln.split()[-1] for ln in r.stdout.decode().splitlines() if len(ln.split()) >= 3}


def test_worker_binary_links_only_the_worker():
    """profiled contains none of the CLI's code (mock broker, generator,
    produce/consume/dump commands): no symbol defined by a CLI object file
    (oracle: nm of those objects, the Makefile's CTL_SRC), no reference to
    librdkafka's mock cluster, no ctl_ / gen_ names; and profilectl does not
    load civetweb (the HTTP server is the worker's)."""
    # objects beside the binaries: build/san/bin -> build/san/src, bin -> build/rel/src
    objdir = os.path.join(os.path.dirname(BIN), "src")
    if os.path.realpath(BIN) == os.path.realpath(os.path.join(ROOT, "bin")):
        objdir = os.path.join(ROOT, "build", "rel", "src")
    mk = open(os.path.join(ROOT, "Makefile")).read()
    m = re.search(r"^CTL_SRC\s*:=((?:.*\\\n)*.*)$", mk, re.M)
    check(m is not None, "Makefile has no CTL_SRC list")
    ctl_src = m.group(1).replace("\\", " ").split()
    check(len(ctl_src) >= 4, "CTL_SRC %r" % ctl_src)
    ctl_syms = set()
    for src in ctl_src:
        obj = os.path.join(objdir, os.path.basename(src)[:-2] + ".o")
        check(os.path.exists(obj), "no object %s" % obj)
        ctl_syms |= defined_symbols(obj)
    check(len(ctl_syms) > 5, "CLI objects define %d symbols" % len(ctl_syms))
    r = subprocess.run(["nm", PROFILED], capture_output=True, check=True)
    names = {ln.split()[-1] for ln in r.stdout.decode().splitlines() if ln.split()}
    leaked = sorted(ctl_syms & names)
    check(not leaked, "profiled contains CLI symbols: %s" % leaked[:10])
    odd = sorted(n for n in names if n.startswith(("ctl_", "gen_", "pd_gen_", "rd_kafka_mock")))
    check(not odd, "profiled contains %s" % odd[:10])
    r = subprocess.run(["readelf", "-d", PROFILECTL], capture_output=True, check=True)
    check(b"civetweb" not in r.stdout, "profilectl is linked against civetweb")


def test_unit_runner_isolates_tests():
    """test-unit runs each test in its own process: a test that aborts, one
    that hangs past PD_UNIT_TIMEOUT and one with a failed CHECK are each
    reported FAIL with the reason, and the tests after them still run."""
    unit = os.path.join(BIN, "test-unit")
    r = run([unit, "--list", "runner_probe"])
    check(r.stdout.decode().split() == ["runner_probe_check", "runner_probe_crash", "runner_probe_hang"],
          "--list: %r" % r.stdout)
    r = run([unit, "runner_probe", "murmur2", "varints"], check_rc=False, timeout=120,
            env={"PD_UNIT_PROBE": "crash,hang,check", "PD_UNIT_TIMEOUT": "2"})
    out = r.stdout.decode(errors="replace")
    check(r.returncode == 1, "rc %d" % r.returncode)
    check(re.search(r"^FAIL runner_probe_crash \(killed by SIGABRT\)$", out, re.M), "crash: %s" % out)
    check(re.search(r"^FAIL runner_probe_hang \(timed out after 2 s", out, re.M), "hang: %s" % out)
    check(re.search(r"^FAIL runner_probe_check \(checks failed\)$", out, re.M), "check: %s" % out)
    for t in ("murmur2_kafka_vectors", "murmur2_partition_to_positive", "varints_and_zigzag"):
        check(re.search(r"^ok   %s$" % t, out, re.M), "%s did not run: %s" % (t, out))
    check(out.rstrip().splitlines()[-1] == "3 passed, 3 failed", "last line: %s" % out)
    r = run([unit, "runner_probe"])  # inert without PD_UNIT_PROBE
    check(r.stdout.decode().rstrip().splitlines()[-1] == "3 passed, 0 failed", "probes: %r" % r.stdout)


if __name__ == "__main__":
    main([test_profiled_help_and_bad_settings, test_configuration_doc_is_current, test_profilectl_usage,
          test_broker_topics_listing_internal_topics, test_worker_binary_links_only_the_worker,
          test_unit_runner_isolates_tests])
