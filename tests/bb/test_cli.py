"""test_cli.py -- command-line behaviour users rely on: --help, errors that
name the offending setting, the generated configuration doc being current,
and profilectl's usage errors."""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lib import PROFILECTL, PROFILED, ROOT, check, main, run  # noqa: E402


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
    for cmd in ("broker", "produce", "generate", "consume", "dump", "days", "offsets"):
        r = run([PROFILECTL, cmd, "--help"], check_rc=False)
        check(r.returncode == 0 and len(r.stdout) > 50, "%s --help: rc %d" % (cmd, r.returncode))
    r = run([PROFILECTL, "dump", "--data-dir", "/nonexistent/pd"], check_rc=False)
    check(r.returncode == 1 and r.stderr, "dump of a missing store: rc %d" % r.returncode)
    r = run([PROFILECTL, "produce", "--topic", "t"], check_rc=False)
    check(r.returncode == 2 and b"brokers" in r.stderr, "produce without --brokers: %r" % r.stderr)


if __name__ == "__main__":
    main([test_profiled_help_and_bad_settings, test_configuration_doc_is_current, test_profilectl_usage])
