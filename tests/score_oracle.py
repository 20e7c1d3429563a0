"""score_oracle.py -- an independent model of scoring (issue 20,
docs/scoring.md): candidate ranking and affinities against a population
prior, written from the formulas, not from src/score.c.

Input: an Oracle (tests/oracle.py) fed with the same records the workers
consumed -- its raw day profiles are the user's days -- and a POPULATION,
given explicitly so that a test decides which prior applies:
  - empty_population(): no prior (a worker before its first prior:
    "prior": {"age_s": null});
  - population_from(oracle): the sum over every user of the oracle's raw
    day profiles, exact (the population's cap, 10,000 values per
    dimension and day, is far above what tests generate).
Tests pick the population from the answer's "prior" (tests/bb/test_rank.py
pick_population) and wait for a complete one (partitions_covered ==
partitions_total) before comparing.

The model, for a user u, days t of the range with weights w_t (the decay,
oracle.weight) and a scoring dimension d:
  categorical  n_u(v) = sum_t w_t count_{u,t,d}(v) over the values the day
               kept under the user's cap; N_u = sum_t w_t total_{u,t,d};
               a value "__other__" is attributable to nothing (n = 0)
  numeric      the value's bucket (first bound >= v, else +Inf); n_u the
               bucket's weighted count, N_u every weighted count
  population   n_P, N_P the same sums over the population's days;
               K_d = #{v : n_P(v) > 0} + 1 (numeric: the number of buckets)
  p_P = (n_P + 1) / (N_P + K_d); p_u = (n_u + alpha p_P) / (N_u + alpha)
  c_d = lambda_d ln(p_u / p_P); c_d = 0 when N_u = 0 (then p_u = p_P)
  score = sum of c_d over the dimensions with a valid candidate value.
"""
import math

from oracle import _cat_text, weight


def _dims(schema):
    return {d[0]: (d[1], d[2], d[3] if len(d) > 3 else None) for d in schema}


def typed_day(o, p, types, weights):
    """A raw day profile with every event counted with the weight of its
    type (types=/weights=, oracle.type_weight), summed straight from the
    day's per-type profiles ("by_type": one per type, every type), as
    {"events", "cat": {dim: (counts, total)}, "num": {dim: (count, hist)}}.
    Uncapped: the tests that use it stay below every cap."""
    # a dimension whose all-types catset overflowed its cap that day: the
    # server reads sketch estimates there (all types minus the tracked
    # ones), so its sums are approximate -- "overflow" names them
    out = {"events": 0.0, "cat": {}, "num": {},
           "overflow": {n for n, c in p["cat"].items() if len(c) > o.cap(n)}}
    for t, q in p["by_type"].items():
        w = o.type_weight(t, types, weights)
        out["events"] += w * q["events"]
        for name, counts in q["cat"].items():
            kept, total = out["cat"].get(name, ({}, 0.0))
            for v, c in counts.items():
                kept[v] = kept.get(v, 0.0) + w * c
            out["cat"][name] = (kept, total + w * sum(counts.values()))
        for name, n in q["num"].items():
            cnt, hist = out["num"].get(name, (0.0, [0.0] * len(n["hist"])))
            out["num"][name] = (cnt + w * n["count"], [a + w * b for a, b in zip(hist, n["hist"])])
    return out


def user_days(o, user, frm, to, types=None, weights=None):
    """[(day, {"events", "cat": {dim: (kept counts, total)}, "num": {dim: (count, hist)}})]
    of the user's days in [frm, to] still kept by the stores; with types
    (a list) or weights ({type or '*': w}) every event weighted by its type."""
    floor = o.drop_floor()
    out = []
    for (u, d), p in sorted(o.raw.items(), key=lambda kv: kv[0][1]):
        if u != user or not frm <= d <= to or (floor is not None and d < floor) or p["events"] == 0:
            continue
        if types is not None or weights is not None:
            out.append((d, typed_day(o, p, types, weights)))
            continue
        cat = {}
        for name, kind, *_ in o.schema:
            if kind == "categorical" and name in p["cat"]:
                kept, _other, _approx = o.day_catset(p, name)
                cat[name] = ({k: v for k, v in kept.items() if k != "__other__"}, sum(p["cat"][name].values()))
        num = {name: (n["count"], list(n["hist"])) for name, n in p["num"].items()}
        out.append((d, {"events": p["events"], "cat": cat, "num": num}))
    return out


def empty_population():
    return []


def population_from(o, frm, to, types=None, weights=None):
    """The population's days in [frm, to]: every partition's raw day
    profiles (all its accepted events, erased users' included: the
    population is never erased, docs/operations.md) summed per day, exact;
    with types/weights every event weighted by its type, as on the user's
    side (the population keeps per-type tracks)."""
    floor = o.drop_floor()
    days = {}
    for (_part, d), p in o.pop_raw.items():
        if not frm <= d <= to or (floor is not None and d < floor) or p["events"] == 0:
            continue
        P = days.setdefault(d, {"events": 0, "cat": {}, "num": {}})
        if types is not None or weights is not None:
            q = typed_day(o, p, types, weights)
            P["events"] += q["events"]
            for name, (counts, tot) in q["cat"].items():
                kept, total = P["cat"].get(name, ({}, 0.0))
                for v, c in counts.items():
                    kept[v] = kept.get(v, 0.0) + c
                P["cat"][name] = (kept, total + tot)
            for name, (cnt, hist) in q["num"].items():
                c0, h0 = P["num"].get(name, (0.0, [0.0] * len(hist)))
                P["num"][name] = (c0 + cnt, [a + b for a, b in zip(h0, hist)])
            continue
        P["events"] += p["events"]
        for name, counts in p["cat"].items():
            kept, total = P["cat"].setdefault(name, ({}, 0))
            for v, c in counts.items():
                kept[v] = kept.get(v, 0) + c
            P["cat"][name] = (kept, total + sum(counts.values()))
        for name, n in p["num"].items():
            cnt, hist = P["num"].get(name, (0, [0] * len(n["hist"])))
            P["num"][name] = (cnt + n["count"], [a + b for a, b in zip(hist, n["hist"])])
    return sorted(days.items())


class Sums:
    """Weighted sums of one dimension over a list of days."""

    def __init__(self, days, name, kind, nb, today, decay):
        self.N = 0.0
        self.c = {}
        self.hist = [0.0] * (nb + 1)
        for d, p in days:
            w = weight(decay, today - d)
            if not w > 0:
                continue
            if kind == "categorical":
                if name not in p["cat"]:
                    continue
                kept, total = p["cat"][name]
                self.N += w * total
                for v, c in kept.items():
                    if v != "__other__":
                        self.c[v] = self.c.get(v, 0.0) + w * c
            else:
                if name not in p["num"]:
                    continue
                cnt, hist = p["num"][name]
                self.N += w * cnt
                for k, h in enumerate(hist):
                    self.hist[k] += w * h
        if kind == "categorical":
            self.K = sum(1 for c in self.c.values() if c > 0) + 1
        else:
            self.K = nb + 1


def bucket(bounds, v):
    return next((k for k, b in enumerate(bounds) if v <= b), len(bounds))


def probs(U, P, kind, bounds, v, alpha):
    """(p_user, p_population, ln ratio or 0) of value v."""
    if kind == "categorical":
        nu, np_ = U.c.get(v, 0.0), P.c.get(v, 0.0)
    else:
        k = bucket(bounds, v)
        nu, np_ = U.hist[k], P.hist[k]
    pp = (np_ + 1.0) / (P.N + P.K)
    if U.N == 0:
        return pp, pp, 0.0
    pu = (nu + alpha * pp) / (U.N + alpha)
    return pu, pp, math.log(pu / pp)


def candidate_value(item, name, kind, paths):
    """('absent'|'bad'|'ok', value) of a candidate: the schema's paths as
    in events (first present non-null decides), else the top-level member
    named like the dimension."""
    for path in paths or ("item." + name, "filters." + name):
        cur = item
        bad = False
        for k, seg in enumerate(path.split(".")):
            if not isinstance(cur, dict):
                bad = k > 1
                cur = None
                break
            cur = cur.get(seg)
            if cur is None:
                break
        if bad:
            return "bad", None
        if cur is not None:
            break
    else:
        cur = item.get(name) if name != "id" else None
    if cur is None:
        return "absent", None
    if kind == "categorical":
        t = _cat_text(cur)
        return ("ok", t) if t is not None else ("bad", None)
    if isinstance(cur, bool) or not isinstance(cur, (int, float)) or not math.isfinite(cur):
        return "bad", None
    return "ok", float(cur)


class Model:
    def __init__(self, schema, udays, pdays, today, decay, dims, alpha):
        self.schema = _dims(schema)
        self.dims = dims
        self.alpha = alpha
        self.cold = sum(p["events"] for _, p in udays) == 0
        # with types/weights: dimensions with approximate user sums (typed_day)
        self.approx = set().union(*[p.get("overflow", set()) for _, p in udays]) & set(dims)
        self.u, self.p = {}, {}
        for name in dims:
            kind, bounds, _ = self.schema[name]
            nb = len(bounds) if bounds else 0
            self.u[name] = Sums(udays, name, kind, nb, today, decay)
            self.p[name] = Sums(pdays, name, kind, nb, today, decay)

    def score(self, item, lambdas=None):
        """(score, {dim: contribution}, missing, invalid)"""
        total, contrib, missing, invalid = 0.0, {}, [], []
        for name in self.dims:
            kind, bounds, paths = self.schema[name]
            st, v = candidate_value(item, name, kind, paths)
            if st == "absent":
                missing.append(name)
                continue
            if st == "bad":
                invalid.append(name)
                continue
            _, _, c = probs(self.u[name], self.p[name], kind, bounds, v, self.alpha)
            c = 0.0 if self.cold else (lambdas or {}).get(name, 1.0) * c
            contrib[name] = c
            total += c
        return total, contrib, missing, invalid

    def rank(self, items, lambdas=None):
        """[(id, score)] sorted by score descending, ties in input order."""
        scored = [(it["id"], self.score(it, lambdas)[0], i) for i, it in enumerate(items)]
        scored.sort(key=lambda x: (-x[1], x[2]))
        return [(i, s) for i, s, _ in scored]

    def affinities(self, top, by="lift"):
        """{dim: [(value or bucket bound, count, p_user, p_population, lift)]}"""
        out = {}
        for name in self.dims:
            kind, bounds, _ = self.schema[name]
            U, P = self.u[name], self.p[name]
            rows = []
            if kind == "categorical":
                for v, n in U.c.items():
                    if n > 0:
                        pu, pp, _ = probs(U, P, kind, bounds, v, self.alpha)
                        rows.append((v, n, pu, pp, pu / pp))
                key = (lambda r: (-(r[2] if by == "p_user" else r[4]), r[0].encode()))
            else:
                for k, n in enumerate(U.hist):
                    if n > 0:
                        le = bounds[k] if k < len(bounds) else "+Inf"
                        v = bounds[k] if k < len(bounds) else math.inf
                        pu, pp, _ = probs(U, P, kind, bounds, v, self.alpha)
                        rows.append((le, n, pu, pp, pu / pp, k))
                key = (lambda r: (-(r[2] if by == "p_user" else r[4]), r[5]))
            rows.sort(key=key)
            out[name] = [r[:5] for r in rows[:top]]
        return out


def close(a, b, rel=1e-9, abs_=1e-12):
    return a is not None and b is not None and math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def order_ok(got, want_scores, index, rel=1e-9):
    """got: [(id, score)] as answered; want_scores: {id: oracle score};
    index: {id: input position}. The answer's order must be the oracle's:
    scores non-increasing, equal scores in input order. Two scores that
    agree within the tolerance but not exactly (one value computed along
    two roundings) may come in either order. Returns a list of problems."""
    errs = []
    for k in range(len(got) - 1):
        a, b = got[k][0], got[k + 1][0]
        sa, sb = want_scores[a], want_scores[b]
        if sa < sb and not close(sa, sb, rel):
            errs.append("%r (%r) ranked before %r (%r)" % (a, sa, b, sb))
        elif sa == sb and index[a] > index[b]:
            errs.append("tie %r (%r) not in input order with %r" % (a, sa, b))
    return errs
