"""oracle.py -- an independent model of what profiled must compute.

Written from the documented rules (docs/data-model.md, docs/architecture.md,
docs/api.md), not from the C code: event validation, the future bound of
record times, Kafka's murmur2 partitioner, the per-partition event-time
clock, retention, de-dup on deliveries, the categorical cap (exact below a
dimension's max_values; beyond it the values of highest occurrence level
counted by a Count-Min sketch) and the query answer (weights, totals,
shares, top=K, approximate flags). Tests feed it the same input they
produce to Kafka and compare its profiles with what the workers stored or
serve.
"""
import json
import math
import struct
import time

import xxhash

from json_corpus import strict_valid

TS_MIN = 946684800000      # 2000-01-01
TS_MAX = 7258118400000     # 2200-01-01
DAY_MS = 86400000

VEHICLE_CATEGORICAL = ["make", "model", "color", "fuel", "gearbox", "body", "condition",
                       "seller_type", "region", "emission_class", "damaged", "doors"]
VEHICLE_NUMERIC = {
    "price": [5000, 10000, 15000, 20000, 30000, 50000, 75000, 100000],
    "mileage": [10000, 25000, 50000, 100000, 150000, 200000],
    "year": [2000, 2005, 2010, 2015, 2018, 2020, 2022, 2024],
    "power_kw": [50, 75, 100, 150, 200, 300],
    "seats": [2, 4, 5, 7],
    "engine_cc": [1000, 1400, 1600, 2000, 3000, 4000],
    "co2_g_km": [0, 50, 100, 130, 160, 200, 250],
    "owners": [1, 2, 3, 5],
}


def vehicle_schema():
    dims = [(n, "categorical", None) for n in VEHICLE_CATEGORICAL]
    dims += [(n, "numeric", b) for n, b in VEHICLE_NUMERIC.items()]
    return dims


def murmur2(data: bytes) -> int:
    """Kafka's Utils.murmur2 (unsigned 32-bit result)."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    n4 = length // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length & 3
    tail = data[4 * n4:]
    if rest == 3:
        h ^= tail[2] << 16
    if rest >= 2:
        h ^= tail[1] << 8
    if rest >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for(key: bytes, nparts: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % nparts


def day_of(ms, tz_offset_ms=0):
    return (ms + tz_offset_ms) // DAY_MS


def day_str(day):
    import datetime
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=day)).isoformat()


def ts_str(ms):
    import datetime
    d = datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=ms)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def _first_wins(pairs):
    """An object whose repeated keys keep their first value, as the worker's."""
    d = {}
    for k, v in pairs:
        d.setdefault(k, v)
    return d


def _utf8_ok(b: bytes):
    try:
        b.decode("utf-8", errors="strict")
        return True
    except UnicodeDecodeError:
        return False


def parse_rfc3339(s):
    import re
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", s)
    if not m:
        return None
    import datetime
    y, mo, d, hh, mi, ss = (int(m.group(i)) for i in range(1, 7))
    try:
        base = datetime.datetime(y, mo, d)
    except ValueError:
        return None
    if hh > 23 or mi > 59 or ss > 60 or y < 1970:
        return None
    ss = min(ss, 59)
    frac = m.group(7)
    ms = int((frac[1:] + "000")[:3]) if frac else 0
    off = 0
    z = m.group(8)
    if z not in ("Z", "z"):
        oh, om = int(z[1:3]), int(z[4:6])
        if oh > 23 or om > 59:
            return None
        off = (oh * 60 + om) * 60000 * (1 if z[0] == "+" else -1)
    days = (base - datetime.datetime(1970, 1, 1)).days
    return days * DAY_MS + hh * 3600000 + mi * 60000 + ss * 1000 + ms - off


def validate(value: bytes, max_bytes=65536):
    """Returns (reason, event_dict). reason None = valid."""
    if len(value) == 0:
        return "empty", None
    if len(value) > max_bytes:
        return "too_large", None
    if not _utf8_ok(value):
        return "invalid_utf8", None
    # The event dialect is strict RFC 8259 (docs/data-model.md): json alone
    # would take NaN, lone surrogate escapes and any nesting depth.
    if not strict_valid(value):
        return "invalid_json", None
    ev = json.loads(value.decode("utf-8"), object_pairs_hook=_first_wins)
    if not isinstance(ev, dict):
        return "not_object", None
    uid = ev.get("user_id")
    if "user_id" not in ev or uid is None:
        return "missing_user_id", None
    if not isinstance(uid, str):
        return "bad_user_id_type", None
    if uid == "":
        return "empty_user_id", None
    if len(uid.encode("utf-8")) > 256:
        return "user_id_too_long", None
    if "ts" not in ev or ev["ts"] is None:
        return "missing_ts", None
    ts = ev["ts"]
    if isinstance(ts, bool) or not isinstance(ts, (int, float, str)):
        return "bad_ts_type", None
    if isinstance(ts, str):
        t = parse_rfc3339(ts)
        if t is None:
            return "bad_ts_format", None
        ts = t
    elif isinstance(ts, float):
        if not ts.is_integer():
            return "bad_ts_format", None
        ts = int(ts)
    if not (TS_MIN <= ts < TS_MAX):
        return "ts_out_of_range", None
    typ = ev.get("type")
    if "type" not in ev or typ is None:
        return "missing_type", None
    if not isinstance(typ, str):
        return "bad_type_type", None
    if typ == "":
        return "empty_type", None
    if len(typ.encode("utf-8")) > 64:
        return "type_too_long", None
    if "event_id" in ev and ev["event_id"] is not None:
        eid = ev["event_id"]
        if not isinstance(eid, str) or eid == "" or len(eid.encode("utf-8")) > 256:
            return "bad_event_id", None
    for c in ("item", "filters"):
        if c in ev and ev[c] is not None and not isinstance(ev[c], dict):
            return "bad_attr_container", None
    ev = dict(ev)
    ev["_ts"] = ts
    return None, ev


def _cat_text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 2 ** 53:
            return str(int(v))
        return "%.17g" % v
    if isinstance(v, str):
        b = v.encode("utf-8")
        if 1 <= len(b) <= 256:
            return v
    return None


def attribute(ev, dim, kind, paths=None):
    """Returns ('absent'|'bad'|'ok', value). paths: the dimension's schema
    paths (dot-separated), tried in order; default item.<dim>, filters.<dim>."""
    for path in paths or ("item." + dim, "filters." + dim):
        cur = ev
        segs = path.split(".")
        bad = False
        for k, seg in enumerate(segs):
            if not isinstance(cur, dict):
                bad = k > 1   # the top-level container is checked with the event
                cur = None
                break
            cur = cur.get(seg)
            if cur is None:
                break
        if bad:
            return "bad", None
        if cur is None:
            continue
        v = cur
        if kind == "categorical":
            t = _cat_text(v)
            return ("ok", t) if t is not None else ("bad", None)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return "bad", None
        return "ok", float(v)
    return "absent", None


M64 = (1 << 64) - 1
SKETCH_ROWS = 4
SKETCH_SEED = 0x70726F66696C6564   # "profiled"


def _uv(n):
    """LEB128 varint of n >= 0."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _cdouble(v):
    """A number as a recent item's body writes it (docs/data-model.md):
    integral and |v| < 2^53: varint(zigzag(v) * 2); else 1 and the f64
    little-endian."""
    if v == 0:
        v = 0.0   # a recent item's number: -0 is written as 0
    if v == math.trunc(v) and abs(v) < 2 ** 53:
        i = int(v)
        zz = i << 1 if i >= 0 else ((-i) << 1) - 1
        return _uv(zz << 1)
    return b"\x01" + struct.pack("<d", v)


def okey(ev):
    """Occurrence key of a validated event: XXH3-64 of "i" + event_id, or
    of "t" + ts (8 bytes big-endian) + type."""
    eid = ev.get("event_id")
    if isinstance(eid, str) and eid:
        return xxhash.xxh3_64_intdigest(b"i" + eid.encode("utf-8"))
    return xxhash.xxh3_64_intdigest(b"t" + (ev["_ts"] & M64).to_bytes(8, "big") + ev["type"].encode("utf-8"))


def level(key, v: str):
    """Occurrence level of value v in the event with occurrence key `key`:
    -log2(u / 2^64) in eighths of an octave, u = XXH3-64(v, seed=key)."""
    u = xxhash.xxh3_64_intdigest(v.encode("utf-8"), seed=key)
    if u == 0:
        return 255
    z = 64 - u.bit_length()
    m = ((u << z) & M64) >> 60 & 7
    return min(255, 8 * z + 7 - m)


def sketch_width(cap):
    w = 64
    while w < 131072 and w < 2 * cap:
        w *= 2
    return w


def sketch_cells(v: str, w):
    h = xxhash.xxh3_128_intdigest(v.encode("utf-8"), seed=SKETCH_SEED)
    return [((h >> (32 * r)) & 0xFFFFFFFF) % w for r in range(SKETCH_ROWS)]


def _rank(v: str):
    b = v.encode("utf-8")
    return (xxhash.xxh3_64_intdigest(b), b)


def capped(counts: dict, levels: dict, cap: int):
    """One user-day's catset under cap: (counts of the kept values, other,
    approximate). Exact when at most cap distinct values; else the cap
    values of highest level (ties: smaller XXH3-64, then bytes) are kept,
    each counted by the Count-Min estimate (min over the rows of the
    counters its cells got from every value's count), and other is the
    total less those estimates, at least 0."""
    if len(counts) <= cap:
        return dict(counts), 0, False
    keep = sorted(counts, key=lambda v: (-levels[v],) + _rank(v))[:cap]
    w = sketch_width(cap)
    rows = [[0] * w for _ in range(SKETCH_ROWS)]
    for v, c in counts.items():
        for r, b in enumerate(sketch_cells(v, w)):
            rows[r][b] += c
    kept = {}
    for v in keep:
        kept[v] = min(rows[r][b] for r, b in enumerate(sketch_cells(v, w)))
    other = max(0, sum(counts.values()) - sum(kept.values()))
    return kept, other, True


def weight(decay, age):
    """The weight of a day of age `age` (days before today, at least 0)."""
    age = max(age, 0)
    if decay is None:
        return 1.0
    kind, p = decay
    if kind == "exp":
        return 2.0 ** (-age / p)
    return max(0.0, 1.0 - age / p)


class Oracle:
    def __init__(self, schema=None, max_values=64, retention_days=60, dedup_window_ms=DAY_MS,
                 max_future_skew_ms=3600000, nparts=None, tz_offset_ms=0, now_ms=None, caps=None,
                 dedup_max_ids=0, tracked=None, recent=None):
        self.schema = schema or vehicle_schema()
        self.tracked = list(tracked or [])   # the schema's tracked_types
        # the schema's "recent": {"max": K, "item_id": path, "attributes": [dims]};
        # None (no key in the schema) is every default: on, 10, item.id, no
        # attributes; {"max": 0} is off
        self.recent = dict(recent or {})
        self.recent.setdefault("max", 10)
        self.recent.setdefault("item_id", "item.id")
        self.recent.setdefault("attributes", [])
        if self.recent["max"] == 0:
            self.recent = None
        self.max_values = max_values        # the default cap, and the event types'
        self.caps = dict(caps or {})        # dimension -> its own max_values
        self.retention_days = retention_days
        self.window = dedup_window_ms
        self.skew = max_future_skew_ms
        self.nparts = nparts
        self.tz = tz_offset_ms
        self.now_ms = now_ms   # the worker's clock (None: this process's, at each record)
        self.clock = {}        # partition -> newest event ts
        self.dclock = {}       # partition -> newest delivery time of an accepted event with an id
        self.seen = {}         # (partition, id) -> delivery time of its latest accepted occurrence
        self.max_ids = dedup_max_ids  # 0: no bound
        self.accepts = {}      # partition -> delivery times of every acceptance, in order
        self.caph = {}         # partition -> cap horizon: ids accepted before it are forgotten
        self.raw = {}          # (user, day) -> accumulated raw profile
        self.pop_raw = {}      # (partition, day) -> raw profile of ALL its accepted events (never erased)
        self.outcomes = {}     # outcome -> count
        self.dlq = []          # (partition, offset, reason)

    def _count(self, k):
        self.outcomes[k] = self.outcomes.get(k, 0) + 1

    def _future(self, ev_ts, record_ts, ts_type):
        """The future bound (docs/data-model.md, "Record timestamps"): a
        producer's CreateTime may not be more than the skew ahead of the
        worker's clock, an event's ts not more than the skew ahead of the
        broker's LogAppendTime, or of both the CreateTime and the worker's
        clock. Tests keep times far from the bounds (the worker's clock is
        only approximately this process's)."""
        now = self.now_ms if self.now_ms is not None else int(time.time() * 1000)
        if ts_type == "create" and record_ts - now > self.skew:
            return "future_timestamp"
        if ts_type in ("create", "append") and ev_ts - record_ts > self.skew:
            return "future_ts"
        if ts_type != "append" and ev_ts - now > self.skew:
            return "future_ts"
        return None

    def erase(self, partition, offset, value: bytes, key=None, kind="erase"):
        """A control record (header profiled-control = kind) at (partition,
        offset), per docs/data-model.md "Erasure records": kind "erase"
        with a value {"user_id": <1..256 bytes of UTF-8>} whose key, if any,
        equals the user id and whose partition is the user's, deletes every
        day of the user as of this point (later events count fresh);
        anything else goes to the DLQ (bad_control / bad_erasure). The
        de-dup memory and the clocks are untouched."""
        reason = None
        uid = None
        if kind != "erase":
            reason = "bad_control"
        else:
            v = None
            if _utf8_ok(value) and strict_valid(value):  # the event dialect, as for events
                v = json.loads(value.decode("utf-8"), object_pairs_hook=_first_wins)
            uid = v.get("user_id") if isinstance(v, dict) else None
            ub = uid.encode("utf-8", "surrogatepass") if isinstance(uid, str) else b""
            if not isinstance(uid, str) or not 1 <= len(ub) <= 256 or not _utf8_ok(ub):
                reason = "bad_erasure"
            elif key is not None and key != ub:
                reason = "bad_erasure"
            elif self.nparts and partition_for(ub, self.nparts) != partition:
                reason = "bad_erasure"
        if reason:
            self.dlq.append((partition, offset, reason))
            self._count("dlq")
            return "dlq:" + reason
        for k in [k for k in self.raw if k[0] == uid]:
            del self.raw[k]
        self._count("erased")
        return "erased"

    def feed(self, partition, offset, value: bytes, record_ts=-1, origin=None, ts_type=None):
        """One record of `partition`, in offset order. ts_type: "create"
        (default when record_ts >= 0: the embedded broker's only kind),
        "append" (LogAppendTime) or "none"."""
        if ts_type is None:
            ts_type = "create" if record_ts >= 0 else "none"
        reason, ev = validate(value)
        if reason is None:
            reason = self._future(ev["_ts"], record_ts, ts_type)
        if reason:
            self.dlq.append((partition, offset, reason))
            self._count("dlq")
            return "dlq:" + reason
        uid = ev["user_id"]
        if self.nparts and partition_for(uid.encode("utf-8"), self.nparts) != partition:
            self._count("misrouted")
            return "misrouted"
        ts = ev["_ts"]
        clock = max(self.clock.get(partition, 0), ts)
        self.clock[partition] = clock
        day = day_of(ts, self.tz)
        if day < day_of(clock, self.tz) - self.retention_days + 1:
            self._count("too_old")
            return "too_old"
        did = ev.get("event_id")
        if did is None and origin:
            did = "\x01origin:" + origin
        if did is not None:
            # De-dup on deliveries: the partition's delivery clock (newest
            # delivery of an accepted event with an id), moved by this
            # record's timestamp (its event time when it has none); a
            # duplicate when the clock has moved at most the window since
            # the id was last accepted.
            delivered = record_ts if ts_type != "none" else ts
            dclock = max(self.dclock.get(partition, delivered), delivered)
            key = (partition, did)
            d0 = self.seen.get(key)
            # dedup_max_ids: an id is also forgotten once max_ids later
            # acceptances happened in its partition (the horizon moves
            # past the delivery time of the acceptance max_ids + 1 back)
            if d0 is not None and dclock - d0 <= self.window and d0 >= self.caph.get(partition, d0):
                self._count("duplicate")
                return "duplicate"
            self.dclock[partition] = dclock
            self.seen[key] = dclock
            if self.max_ids:
                acc = self.accepts.setdefault(partition, [])
                acc.append(dclock)
                if len(acc) > self.max_ids:
                    out = acc[-1 - self.max_ids]
                    self.caph[partition] = max(self.caph.get(partition, out + 1), out + 1)
        self._add(uid, day, ev, ts)
        self._add(partition, day, ev, ts, into=self.pop_raw)
        self._count("accepted")
        return "accepted"

    def cap(self, name):
        return self.caps.get(name, self.max_values)

    def _add(self, uid, day, ev, ts, into=None):
        raw = self.raw if into is None else into
        p = raw.get((uid, day))
        if p is None:
            p = {"events": 0, "first": ts, "last": ts, "types": {}, "cat": {}, "num": {}, "lv": {}, "by_type": {}}
            raw[(uid, day)] = p
        self._add_raw(p, ev, ts)
        if self.recent and into is None:
            # every event, kept whole: the recent items of any range are
            # the K newest of its events (time, then occurrence key, then
            # the item's encoded bytes). The population keeps none.
            st, item = attribute(ev, "item_id", "categorical", [self.recent["item_id"]])
            attrs = {}
            body = _uv(len(ev["type"].encode("utf-8"))) + ev["type"].encode("utf-8")
            ib = item.encode("utf-8") if st == "ok" else b""
            body += _uv(len(ib)) + ib
            for name in self.recent["attributes"]:
                dim = next(d for d in self.schema if d[0] == name)
                st2, v = attribute(ev, name, dim[1], dim[3] if len(dim) > 3 else None)
                if st2 == "ok" and (dim[1] == "categorical" or math.isfinite(v)):
                    attrs[name] = v
                    if dim[1] == "categorical":
                        vb = v.encode("utf-8")
                        body += b"\x01" + _uv(len(vb)) + vb
                    else:
                        body += b"\x02" + _cdouble(v)
                else:
                    body += b"\x00"
            p.setdefault("events_list", []).append(
                {"ts": ts, "okey": okey(ev), "body": body, "type": ev["type"],
                 "item_id": item if st == "ok" else None, "attributes": attrs})
        # every type apart as well: the per-type answers (types=, weights=)
        # are sums over these, and a tracked type's is its sub-profile
        t = p["by_type"].get(ev["type"])
        if t is None:
            t = p["by_type"][ev["type"]] = {"events": 0, "first": ts, "last": ts, "types": {}, "cat": {}, "num": {},
                                            "lv": {}}
        self._add_raw(t, ev, ts)

    def _add_raw(self, p, ev, ts):
        key = okey(ev)
        p["events"] += 1
        p["first"] = min(p["first"], ts)
        p["last"] = max(p["last"], ts)
        p["types"][ev["type"]] = p["types"].get(ev["type"], 0) + 1
        lv = p["lv"].setdefault(None, {})
        lv[ev["type"]] = max(lv.get(ev["type"], 0), level(key, ev["type"]))
        for dim in self.schema:
            name, kind, bounds = dim[:3]
            st, v = attribute(ev, name, kind, dim[3] if len(dim) > 3 else None)
            if st != "ok":
                continue
            if kind == "categorical":
                d = p["cat"].setdefault(name, {})
                d[v] = d.get(v, 0) + 1
                lv = p["lv"].setdefault(name, {})
                lv[v] = max(lv.get(v, 0), level(key, v))
            else:
                if not math.isfinite(v):
                    continue
                n = p["num"].setdefault(name, {"count": 0, "sum": 0.0, "sumsq": 0.0, "min": v, "max": v,
                                               "hist": [0] * (len(bounds) + 1)})
                n["count"] += 1
                n["sum"] += v
                n["sumsq"] += v * v
                n["min"] = min(n["min"], v)
                n["max"] = max(n["max"], v)
                i = next((k for k, b in enumerate(bounds) if v <= b), len(bounds))
                n["hist"][i] += 1

    def drop_floor(self):
        """First day a store still keeps: day families older than every
        partition's retention floor are dropped whole."""
        if not self.clock:
            return None
        return min(day_of(c, self.tz) for c in self.clock.values()) - self.retention_days + 1

    def profiles(self):
        """{(user, day_str): profile in the dump tool's JSON shape}, without
        the days a store has dropped by retention."""
        out = {}
        floor = self.drop_floor()
        for (uid, day), p in self.raw.items():
            if floor is not None and day < floor:
                continue
            types, tother, tapprox = self.day_catset(p, None)
            if tother:
                types["__other__"] = tother
            out[(uid, day_str(day))] = {"events": p["events"], "first_seen": ts_str(p["first"]),
                                        "last_seen": ts_str(p["last"]), "event_types": types,
                                        "event_types_approximate": tapprox, "dimensions": self._dump_dims(p)}
            if self.recent:
                out[(uid, day_str(day))]["recent"] = self.recent_items([p])
            tracked = {t: p["by_type"][t] for t in self.tracked if t in p["by_type"]}
            if tracked:
                out[(uid, day_str(day))]["tracked"] = {
                    t: {"events": q["events"], "first_seen": ts_str(q["first"]), "last_seen": ts_str(q["last"]),
                        "dimensions": self._dump_dims(q)} for t, q in tracked.items()}
        return out

    def recent_items(self, day_profiles, keep=lambda t: True):
        """The recent items over the given raw day profiles: of the K newest
        events (a day keeps no more), those of the types kept, newest first
        (ties of time: larger occurrence key first; ties of both -- events
        without an id, same time and type -- by the item's encoded bytes,
        docs/data-model.md, lexicographically), in the answer's shape."""
        evs = [e for p in day_profiles for e in p.get("events_list", [])]
        evs.sort(key=lambda e: (-e["ts"], -e["okey"], e["body"]))
        return [{"ts": ts_str(e["ts"]), "type": e["type"], "item_id": e["item_id"],
                 "attributes": dict(e["attributes"])} for e in evs[:self.recent["max"]] if keep(e["type"])]

    def _dump_dims(self, p):
        dims = {}
        for name, kind, bounds, *_ in self.schema:
            if kind == "categorical" and name in p["cat"]:
                kept, other, approx = self.day_catset(p, name)
                if other:
                    kept["__other__"] = other
                dims[name] = {"type": "categorical", "total": sum(p["cat"][name].values()),
                              "approximate": approx, "counts": kept}
            elif kind == "numeric" and name in p["num"]:
                n = p["num"][name]
                hist = [{"le": b, "count": c} for b, c in zip(bounds, n["hist"])]
                hist.append({"le": "+Inf", "count": n["hist"][-1]})
                dims[name] = {"type": "numeric", "count": n["count"], "sum": n["sum"], "sumsq": n["sumsq"],
                              "min": n["min"], "max": n["max"], "histogram": hist}
        return dims

    def day_catset(self, p, name):
        """(kept counts, other, approximate) of raw day profile p's dimension
        `name` (None: the event types) under its cap."""
        if name is None:
            return capped(p["types"], p["lv"].get(None, {}), self.max_values)
        return capped(p["cat"].get(name, {}), p["lv"].get(name, {}), self.cap(name))

    def type_weight(self, t, types=None, weights=None):
        """The weight of events of type t (docs/api.md, "Types and
        weights"): with types=, 0 unless t is named; a named or tracked
        type its weights= entry, else the weight of '*', else 1."""
        if types is not None and t not in types:
            return 0.0
        w = weights or {}
        return float(w.get(t, w.get("*", 1.0)))

    def answer_signals(self, user, frm, to, today, types=None, weights=None, dims=None, decay=None,
                       breakdown=False, top=None, recent=None):
        """The expected answer with types= (a list of tracked types) and/or
        weights= ({type or '*': w}), computed straight from the definition:
        every event counts with the weight of its type, so each sum is
        sum over days d of w(d) * sum over types t of wt(t) * (t's own
        counts on d). A categorical dimension is approximate when a day of
        weight > 0 overflowed a cap in a catset the server reads: the
        all-types one when '*' weighs > 0 (or is subtracted from: a tracked
        type weighted apart), a tracked type's when its weight differs from
        '*'. Its counts are then not comparable: the caller compares total
        and the flag only ("counts_exact": False marks it here). min/max
        and first/last_seen are over the types of weight > 0, except that
        with '*' > 0 they are the all-types ones, min/max then flagged
        "minmax_approximate" when a tracked type of weight 0 had values."""
        floor = self.drop_floor()
        days = sorted(d for (u, d) in self.raw if u == user and frm <= d <= to and
                      (floor is None or d >= floor) and self.raw[(u, d)]["events"] > 0)
        if not days:
            return None
        wt = lambda t: self.type_weight(t, types, weights)  # noqa: E731
        w_rest = 0.0 if types is not None else float((weights or {}).get("*", 1.0))
        # which catsets the server reads: all-types if w_rest != 0 (or a
        # tracked type has a coefficient: it is all minus the sub-profiles)
        coef = {t: wt(t) - w_rest for t in self.tracked}
        names = dims or [d[0] for d in self.schema]

        def types_of(d):
            return self.raw[(user, d)]["by_type"]

        def overflowed(p, name):
            return len(p["cat"].get(name, {}) if name else p["types"]) > (self.cap(name) if name else self.max_values)

        def agg(day_list):
            ev = 0.0
            tcounts = {}
            for d in day_list:
                wd = weight(decay, today - d)
                if not wd > 0:
                    continue
                for t, q in types_of(d).items():
                    ev += wd * wt(t) * q["events"]
                    if wt(t) > 0:
                        tcounts[t] = tcounts.get(t, 0) + wd * wt(t) * q["events"]
            tapprox = any(weight(decay, today - d) > 0 and w_rest != 0 and overflowed(self.raw[(user, d)], None)
                          for d in day_list)
            out = {"events": ev, "event_types": tcounts, "event_types_approximate": tapprox}
            dims_out = {}
            for n, kind, bounds, *_ in self.schema:
                if n not in names:
                    continue
                if kind == "categorical":
                    counts, total, approx = {}, 0.0, False
                    for d in day_list:
                        wd = weight(decay, today - d)
                        if not wd > 0:
                            continue
                        p = self.raw[(user, d)]
                        if w_rest != 0 and overflowed(p, n):
                            approx = True
                        for t, q in types_of(d).items():
                            if t in coef and coef[t] != 0 and overflowed(q, n):
                                approx = True
                            for v, c in q["cat"].get(n, {}).items():
                                if wt(t) > 0:
                                    counts[v] = counts.get(v, 0) + wd * wt(t) * c
                                total += wd * wt(t) * c
                    if total == 0 and not dims:
                        continue
                    o = {"type": "categorical", "total": total, "approximate": approx}
                    if approx:
                        o["counts_exact"] = False
                    elif top:
                        def key(k):
                            return (-math.floor(counts[k] * 1e6 + 0.5), k.encode("utf-8"))
                        o["top"] = [{"value": k, "count": counts[k], "share": counts[k] / total if total else 0}
                                    for k in sorted(counts, key=key)[:top]]
                    else:
                        o["counts"] = counts
                        o["shares"] = {k: v / total for k, v in counts.items()} if total else {}
                    dims_out[n] = o
                else:
                    x = {"count": 0.0, "sum": 0.0, "sumsq": 0.0, "min": None, "max": None,
                         "hist": [0.0] * (len(bounds) + 1)}
                    mm_approx = False
                    for d in day_list:
                        wd = weight(decay, today - d)
                        if not wd > 0:
                            continue
                        for t, q in types_of(d).items():
                            src = q["num"].get(n)
                            if src is None:
                                continue
                            x["count"] += wd * wt(t) * src["count"]
                            x["sum"] += wd * wt(t) * src["sum"]
                            x["sumsq"] += wd * wt(t) * src["sumsq"]
                            for i, cnt in enumerate(src["hist"]):
                                x["hist"][i] += wd * wt(t) * cnt
                            if wt(t) > 0 or w_rest > 0:
                                x["min"] = src["min"] if x["min"] is None else min(x["min"], src["min"])
                                x["max"] = src["max"] if x["max"] is None else max(x["max"], src["max"])
                            if wt(t) == 0 and w_rest > 0:
                                mm_approx = True
                    if x["count"] == 0 and not dims:
                        continue
                    if x["count"] == 0:
                        o = {"type": "numeric", "count": 0, "mean": None, "stddev": None, "min": None, "max": None}
                    else:
                        mean = x["sum"] / x["count"]
                        var = max(0.0, x["sumsq"] / x["count"] - mean * mean)
                        o = {"type": "numeric", "count": x["count"], "mean": mean, "stddev": math.sqrt(var),
                             "min": x["min"], "max": x["max"]}
                        if mm_approx:
                            o["minmax_approximate"] = True
                    o["histogram"] = [{"le": b, "count": c} for b, c in zip(bounds, x["hist"])] + \
                        [{"le": "+Inf", "count": x["hist"][-1]}]
                    dims_out[n] = o
            out["dimensions"] = dims_out
            return out

        a = agg(days)
        seen = [q for d in days for t, q in types_of(d).items() if wt(t) > 0 or w_rest > 0]
        res = {"user_id": user, "from": day_str(frm), "to": day_str(to)}
        if types is not None:
            res["types"] = [t for t in self.tracked if t in types]
        if weights is not None:
            res["weights"] = {"*": w_rest}
            res["weights"].update({t: wt(t) for t in self.tracked})
        res.update({"events": a["events"], "event_types": a["event_types"],
                    "event_types_approximate": a["event_types_approximate"],
                    "first_seen": ts_str(min(q["first"] for q in seen)) if seen else None,
                    "last_seen": ts_str(max(q["last"] for q in seen)) if seen else None,
                    "dimensions": a["dimensions"], "stale": False})
        # recent=N: the first N of the list; 0: no list at all
        listed = self.recent and recent != 0
        if listed:
            res["recent"] = self.recent_items([self.raw[(user, d)] for d in days], keep=lambda t: wt(t) > 0)[:recent]
        if breakdown:
            res["days"] = []
            for d in days:
                b = agg([d])
                res["days"].append({"day": day_str(d), "events": b["events"], "event_types": b["event_types"],
                                    "event_types_approximate": b["event_types_approximate"],
                                    "dimensions": b["dimensions"]})
                if listed:  # the day's own K newest, of the types that count
                    res["days"][-1]["recent"] = self.recent_items([self.raw[(user, d)]],
                                                                  keep=lambda t: wt(t) > 0)[:recent]
        return res

    def answer(self, user, frm, to, today, dims=None, decay=None, breakdown=False, top=None):
        """The expected GET /v1/profiles/{user} body (without partition,
        served_by) for the day range [frm, to] (day numbers) from the days
        still kept, or None when the user has no events there (a 404).
        docs/api.md: every day weighs w(today - day); counts, totals and
        numeric sums are weighted sums; a categorical total sums the days'
        exact totals; "approximate" when a day of weight > 0 overflowed;
        top=K lists the K largest counts (as printed), ties by value bytes."""
        floor = self.drop_floor()
        days = sorted(d for (u, d) in self.raw if u == user and frm <= d <= to and
                      (floor is None or d >= floor) and self.raw[(u, d)]["events"] > 0)
        if not days:
            return None
        names = dims or [d[0] for d in self.schema]
        weighted = decay is not None

        def cat_merge(day_list, name):
            counts, other, total, approx = {}, 0.0, 0.0, False
            for d in day_list:
                p = self.raw[(user, d)]
                w = weight(decay, today - d)
                if not w > 0:
                    continue
                if name is not None and name not in p["cat"]:
                    continue
                kept, oth, ap = self.day_catset(p, name)
                for k, v in kept.items():
                    if k == "__other__":
                        oth += v
                    else:
                        counts[k] = counts.get(k, 0) + w * v
                other += w * oth
                total += w * sum((p["types"] if name is None else p["cat"][name]).values())
                approx = approx or ap
            counts = {k: v for k, v in counts.items() if v > 0}
            return counts, other, total, approx

        def agg(day_list):
            out = {"events": sum(weight(decay, today - d) * self.raw[(user, d)]["events"] for d in day_list
                                 if weight(decay, today - d) > 0)}
            tc, tother, _, tapprox = cat_merge(day_list, None)
            if tother > 0:
                tc["__other__"] = tother
            out["event_types"] = tc
            out["event_types_approximate"] = tapprox
            dims_out = {}
            for n, kind, bounds, *_ in self.schema:
                if n not in names:
                    continue
                if kind == "categorical":
                    c, other, total, approx = cat_merge(day_list, n)
                    if total == 0 and not dims:
                        continue
                    o = {"type": "categorical", "total": total, "approximate": approx}
                    if top:
                        def key(k):
                            v = c[k]
                            return (-(math.floor(v * 1e6 + 0.5) if weighted else v), k.encode("utf-8"))
                        o["top"] = [{"value": k, "count": c[k], "share": c[k] / total if total else 0}
                                    for k in sorted(c, key=key)[:top]]
                    else:
                        counts = dict(c)
                        if other > 0:
                            counts["__other__"] = other
                        o["counts"] = counts
                        o["shares"] = {k: v / total for k, v in counts.items()} if total else {}
                    dims_out[n] = o
                else:
                    x = {"count": 0.0, "sum": 0.0, "sumsq": 0.0, "min": None, "max": None,
                         "hist": [0.0] * (len(bounds) + 1)}
                    for d in day_list:
                        src = self.raw[(user, d)]["num"].get(n)
                        w = weight(decay, today - d)
                        if src is None or not w > 0:
                            continue
                        x["count"] += w * src["count"]
                        x["sum"] += w * src["sum"]
                        x["sumsq"] += w * src["sumsq"]
                        x["min"] = src["min"] if x["min"] is None else min(x["min"], src["min"])
                        x["max"] = src["max"] if x["max"] is None else max(x["max"], src["max"])
                        for i, cnt in enumerate(src["hist"]):
                            x["hist"][i] += w * cnt
                    if x["count"] == 0 and not dims:
                        continue
                    if x["count"] == 0:
                        o = {"type": "numeric", "count": 0, "mean": None, "stddev": None, "min": None, "max": None}
                    else:
                        mean = x["sum"] / x["count"]
                        var = max(0.0, x["sumsq"] / x["count"] - mean * mean)
                        o = {"type": "numeric", "count": x["count"], "mean": mean, "stddev": math.sqrt(var),
                             "min": x["min"], "max": x["max"]}
                    o["histogram"] = [{"le": b, "count": c} for b, c in zip(bounds, x["hist"])] + \
                        [{"le": "+Inf", "count": x["hist"][-1]}]
                    dims_out[n] = o
            out["dimensions"] = dims_out
            return out

        a = agg(days)
        res = {"user_id": user, "from": day_str(frm), "to": day_str(to), "events": a["events"],
               "event_types": a["event_types"], "event_types_approximate": a["event_types_approximate"],
               "first_seen": ts_str(min(self.raw[(user, d)]["first"] for d in days)),
               "last_seen": ts_str(max(self.raw[(user, d)]["last"] for d in days)),
               "dimensions": a["dimensions"], "stale": False}
        if self.recent:
            res["recent"] = self.recent_items([self.raw[(user, d)] for d in days])
        if breakdown:
            res["days"] = []
            for d in days:
                b = agg([d])
                res["days"].append({"day": day_str(d), "events": b["events"], "event_types": b["event_types"],
                                    "event_types_approximate": b["event_types_approximate"],
                                    "dimensions": b["dimensions"]})
                if self.recent:  # the day's own K newest
                    res["days"][-1]["recent"] = self.recent_items([self.raw[(user, d)]])
        return res


def feed_topic(o, recs):
    """Feeds `o` a topic's records as `profilectl consume` prints them
    (partition, offset, timestamp, key, value or value_base64, headers), in
    (partition, offset) order: control records (header profiled-control)
    as erasures, the others as events with their profiled-origin. Returns
    [(record, value bytes, outcome)] in that order."""
    import base64
    out = []
    for r in sorted(recs, key=lambda r: (r["partition"], r["offset"])):
        val = base64.b64decode(r["value_base64"]) if "value_base64" in r else (r.get("value") or "").encode("utf-8")
        h = r.get("headers") or {}
        kind = h.get("profiled-control")
        if kind is not None:
            key = r.get("key")
            res = o.erase(r["partition"], r["offset"], val, key.encode("utf-8") if key is not None else None, kind)
        else:
            res = o.feed(r["partition"], r["offset"], val, r["timestamp"], h.get("profiled-origin"))
        out.append((r, val, res))
    return out


def population(o, frm, to, today, pop_cap=10000, **kw):
    """The expected GET /v1/population body (without prior, served_by) for
    the day range [frm, to]: per day, the sum over every partition of all
    its accepted events -- the users' events, erased users' too (the
    population is not personal data) -- rendered like a profile answer
    (Oracle.answer) with every categorical cap = pop_cap. Stored per
    partition and day under the cap; this oracle models only the exact
    case (no partition-day with more distinct values than pop_cap in any
    dimension: asserted), where the capped sum is the plain sum."""
    floor = o.drop_floor()
    merged = {}
    for (part, day), r in o.pop_raw.items():
        if not frm <= day <= to or (floor is not None and day < floor):
            continue
        for name, c in list(r["cat"].items()) + [(None, r["types"])]:
            assert len(c) <= pop_cap, "oracle: partition %d day %d dimension %s over the population cap" % (
                part, day, name)
        m = merged.get(day)
        if m is None:
            m = merged[day] = {"events": 0, "first": r["first"], "last": r["last"], "types": {}, "cat": {},
                               "num": {}, "lv": {}}
        m["events"] += r["events"]
        m["first"] = min(m["first"], r["first"])
        m["last"] = max(m["last"], r["last"])
        for k, v in r["types"].items():
            m["types"][k] = m["types"].get(k, 0) + v
        for name, c in r["cat"].items():
            d = m["cat"].setdefault(name, {})
            for k, v in c.items():
                d[k] = d.get(k, 0) + v
        for name, n in r["num"].items():
            x = m["num"].get(name)
            if x is None:
                m["num"][name] = {"count": n["count"], "sum": n["sum"], "sumsq": n["sumsq"], "min": n["min"],
                                  "max": n["max"], "hist": list(n["hist"])}
            else:
                x["count"] += n["count"]
                x["sum"] += n["sum"]
                x["sumsq"] += n["sumsq"]
                x["min"] = min(x["min"], n["min"])
                x["max"] = max(x["max"], n["max"])
                x["hist"] = [a + b for a, b in zip(x["hist"], n["hist"])]
    # answer() over one pseudo-user holding the merged days, caps = pop_cap
    saved = (o.raw, o.max_values, o.caps)
    try:
        o.raw = {("", d): m for d, m in merged.items()}
        o.max_values, o.caps = pop_cap, {}
        a = o.answer("", frm, to, today, **kw)
    finally:
        o.raw, o.max_values, o.caps = saved
    if a is None:
        a = {"from": day_str(frm), "to": day_str(to), "events": 0, "event_types": {},
             "event_types_approximate": False, "first_seen": None, "last_seen": None, "dimensions": {}}
        names = kw.get("dims")
        for n, kind, bounds, *_ in o.schema:
            if names and n in names:
                a["dimensions"][n] = ({"type": "categorical", "total": 0, "approximate": False, "counts": {},
                                       "shares": {}} if kind == "categorical" else
                                      {"type": "numeric", "count": 0, "mean": None, "stddev": None, "min": None,
                                       "max": None, "histogram": [{"le": b, "count": 0} for b in bounds] +
                                       [{"le": "+Inf", "count": 0}]})
    a.pop("user_id", None)
    a.pop("stale", None)
    # the population schema keeps no recent items (docs/data-model.md)
    a.pop("recent", None)
    for d in a.get("days", []):
        d.pop("recent", None)
    return a


def _close(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    return a == b


def diff_profiles(want, got):
    """Differences between the oracle's {(user, day): profile} and a
    store's (list of str): keys missing from the store, keys the oracle
    does not have, then each common profile's diff_profile."""
    errs = []
    for k in sorted(set(want) | set(got)):
        if k not in got:
            errs.append("%s: missing from the store" % (k,))
        elif k not in want:
            errs.append("%s: in the store but not in the oracle: %s" % (k, json.dumps(got[k])[:200]))
        else:
            errs += ["%s%s" % (k, e) for e in diff_profile(want[k], got[k])]
    return errs


def diff_profile(want, got, path=""):
    """Differences between an oracle profile and a stored one (list of str).
    Keys the oracle does not model (mean, stddev) are ignored."""
    errs = []
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return ["%s: expected object, got %r" % (path, got)]
        for k, v in want.items():
            if k not in got:
                errs.append("%s.%s: missing" % (path, k))
            else:
                errs += diff_profile(v, got[k], path + "." + k)
        for k in got:
            if k not in want and k not in ("mean", "stddev"):
                errs.append("%s.%s: unexpected %r" % (path, k, got[k]))
    elif isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return ["%s: expected list of %d, got %r" % (path, len(want), got)]
        for i, (a, b) in enumerate(zip(want, got)):
            errs += diff_profile(a, b, "%s[%d]" % (path, i))
    elif not _close(want, got):
        errs.append("%s: expected %r, got %r" % (path, want, got))
    return errs
