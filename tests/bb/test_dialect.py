"""test_dialect.py -- the strict event JSON dialect end to end.

Values that the former dialect (whatever cJSON 1.7.15 accepted) took and
RFC 8259 rejects must reach the dead-letter topic with reason invalid_json,
while valid events around them, including ones that only the strict rules
read right (\\u0000 inside a string, a surrogate pair, a repeated key), are
counted as the oracle (tests/oracle.py, strict like the worker) says.
"""
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import cluster, check, main  # noqa: E402
from test_ingest import (check_dlq, compare_state, generate, oracle_from_topic,  # noqa: E402
                         wait_caught_up)


def dialect_events(now_ms):
    """(line, DLQ reason or None) pairs: each line a Kafka record value."""
    def ev(uid, extra=b""):
        return (b'{"user_id":"%s","ts":%d,"type":"view"%s}' % (uid.encode(), now_ms - 2000, extra))

    bad = [
        # the four of issue 18
        (ev("u-dia-1", b',"item":{"color":"\\uZZZZ"}'), "invalid_json"),
        (ev("u-dia-2", b',"item":{"color":"bl\x01ue"}'), "invalid_json"),
        (b"\xef\xbb\xbf" + ev("u-dia-3"), "invalid_json"),
        (ev("u-dia-4\\ud800"), "invalid_json"),
        # and their neighbours
        (ev("u-dia-5", b',"item":{"color":"\\udc00x"}'), "invalid_json"),
        (ev("u-dia-6", b',"item":{"price":NaN}'), "invalid_json"),
        (ev("u-dia-7", b',"item":{"price":012}'), "invalid_json"),
        (ev("u-dia-8", b',"item":{"price":.5}'), "invalid_json"),
        (ev("u-dia-9", b',"x":' + b"[" * 64 + b"]" * 64), "invalid_json"),
        (ev("u-dia-10", b'\x0b'), "invalid_json"),
        (ev("u-dia-11", b',"item":{"color":"a\\u12"}'), "invalid_json"),
    ]
    good = [
        ev("u-dia-20", b',"item":{"color":"a\\u0000b","make":"\\ud83d\\ude00"}'),
        ev("u-dia-21", b',"item":{"color":"red","color":"blue"}'),
        ev("u-dia-22", b',"x":' + b"[" * 63 + b"]" * 63 + b',"item":{"price":1.5e3}'),
        ev("u-dia-23", b',"item":{"make":"\\u00e9\\/\\"\\\\","price":1e999}'),
    ]
    return bad, good


def test_strict_json_dlq():
    with cluster(partitions=4) as c:
        lines = generate(c, os.path.join(c.dir, "gen.jsonl"), 3000, 300, 41)
        now = int(time.time() * 1000)
        bad, good = dialect_events(now)
        for line, reason in bad:
            check(b"\n" not in line and b"\r" not in line, "test line holds a line break")
        lines += [l for l, _ in bad] + good
        random.Random(41).shuffle(lines)
        path = os.path.join(c.dir, "input.jsonl")
        with open(path, "wb") as f:
            for l in lines:
                f.write(l + b"\n")
        w = c.start_worker("w1")
        out = c.produce_file(path, ["--key_field", "route_key"])
        check("failed=0" in out, "produce reported failures: %s" % out)
        wait_caught_up(c, [w.data])
        check(w.stop() == 0, "worker did not exit cleanly")
        o = oracle_from_topic(c)
        # the oracle is strict too: every bad line is invalid_json there
        check(sorted(r for _, _, r in o.dlq) == ["invalid_json"] * len(bad),
              "oracle DLQ reasons: %s" % sorted(r for _, _, r in o.dlq))
        check_dlq(c, o, {l: r for l, r in bad})
        compare_state(c, o, [w.data])
        # the valid edge cases were counted, with their strict values
        prof = {}
        for k, v in c.dump(w.data).items():
            if "u-dia-20" in json.dumps(k):
                prof = v["profile"]
        check(json.dumps(prof).find("a\\u0000b") >= 0, "u-dia-20's color a\\u0000b not stored: %s"
              % json.dumps(prof)[:300])


if __name__ == "__main__":
    main([test_strict_json_dlq])
