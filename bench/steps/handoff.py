"""Step 8: hand-off to a joining worker.

A worker ("A") holding N user-days written by bench_process fill is joined
by an empty one ("B"); the cooperative rebalance moves half the partitions
to B, which fetches their snapshots from A. Figures come from B's log lines
(per partition: bytes, records, fetch and apply seconds) and its /readyz.
Run on two copies of the same store, replicas=1 then replicas=0. Results:
ctx.r["handoff"] (replicas1, replicas0: per-partition records and their
sums).
"""
import json
import os
import shutil
import time

from benchlib import PARTS, all_ready, assigned_time, du, http_get, log, log_lines, run, wait_for


def run_step(ctx):
    """A worker holding N user-days is joined by an empty one; half the
    partitions move to the newcomer. Run twice: with the default
    replicas=1 (the newcomer warms a replica copy of every partition as
    soon as it sees the membership, usually before the rebalance hands
    it any) and with replicas=0 (pure owner hand-off: every fetch
    starts at the assignment, so restore time is on the path to ready)."""
    ctx.ensure_source()
    n = ctx.sizes["handoff"]
    log("8/9 hand-off: %d user-days over %d partitions, a second worker joins" % (n, PARTS))
    tpl = os.path.join(ctx.work, "hoff-tpl")
    fill = json.loads(run([ctx.tool("bench_process"), "fill", "--file", ctx.e2e_file, "--dir", tpl,
                           "--partitions", str(PARTS), "--user-days", str(n), "--days", "30"], timeout=3600))
    shutil.rmtree(tpl + ".tpl", ignore_errors=True)
    store_bytes, _ = du(tpl)
    ctx.r["handoff"] = {"user_days": fill["user_days"], "store_bytes": store_bytes, "fill_secs": fill["secs"]}
    for replicas in (1, 0):
        try:
            ctx.r["handoff"]["replicas%d" % replicas] = handoff_run(ctx, tpl, replicas)
        except RuntimeError as e:
            ctx.r["handoff"]["replicas%d" % replicas] = {"error": str(e)}
            log("   replicas=%d: %s" % (replicas, e))
    shutil.rmtree(tpl, ignore_errors=True)


def handoff_run(ctx, tpl, replicas):
    topic = "hoff%d" % replicas
    da, db = os.path.join(ctx.work, topic + "-a"), os.path.join(ctx.work, topic + "-b")
    shutil.copytree(tpl, da)
    extra = ["--replicas", str(replicas)]
    wa = ctx.start_worker(topic + "-a", da, topic=topic, group=topic, extra=extra)
    wait_for(lambda: all_ready(wa.url), 120, topic + "-a ready", 0.05)
    time.sleep(1.5)  # its membership record (what it holds, at which offset) is published
    wb = ctx.start_worker(topic + "-b", db, topic=topic, group=topic, extra=extra)
    rz = wait_for(lambda: all_ready(wb.url), 120, topic + "-b owns partitions and all are ready", 0.01)
    t_ready = time.time()
    fetch_re = r"partition (\d+): (?:no local state|local copy is behind), fetching a snapshot from (\S+)"
    done_re = (r"partition (\d+): restored from (\S+): (\d+) bytes, (\d+) records, offset (-?\d+), "
               r"([\d.]+)s \(fetch ([\d.]+)s, apply ([\d.]+)s\)")
    fail_re = r"partition (\d+): no usable snapshot"

    def all_done():
        f = {m.group(1) for _, m in log_lines(wb.bench_log, fetch_re)}
        d = {m.group(1) for _, m in log_lines(wb.bench_log, done_re)}
        d |= {m.group(1) for _, m in log_lines(wb.bench_log, fail_re)}
        return f <= d  # (no fetch at all: nothing to wait for)
    # Replica partitions are restored too: wait for every fetch started to finish.
    try:
        wait_for(all_done, 60, "every snapshot fetch of %s-b to finish" % topic, 0.1)
    except RuntimeError as e:
        log("   " + str(e))
    st, body = http_get(wb.url + "/v1/partitions")
    owned = set()
    if st == 200:
        owned = set(json.loads(body)["self"]["owned"])  # its own view, not the membership's
    fetches = {int(m.group(1)): t for t, m in log_lines(wb.bench_log, fetch_re)}
    parts = []
    for t, m in log_lines(wb.bench_log, done_re):
        p = int(m.group(1))
        parts.append({"partition": p, "bytes": int(m.group(3)), "records": int(m.group(4)),
                      "secs": float(m.group(6)), "fetch_secs": float(m.group(7)),
                      "apply_secs": float(m.group(8)), "t_done": t,
                      "t_start": fetches.get(p, t - float(m.group(6))), "owned": p in owned})
    t_assign = assigned_time(wb.bench_log)
    res = {"replicas": replicas, "owned": rz.get("owned"), "restored": len(parts),
           "failed": len(log_lines(wb.bench_log, fail_re)), "rebuilt": len(log_lines(wb.bench_log, r"rebuilding from")),
           "restored_owned": sum(1 for x in parts if x["owned"]),
           "listening_secs": wb.t_listen - wb.t_spawn, "ready_secs": t_ready - wb.t_spawn,
           "assigned_secs": (t_assign - wb.t_spawn) if t_assign else None, "partitions": parts}

    def agg(sel):
        if not sel:
            return None
        b = sum(x["bytes"] for x in sel)
        r = sum(x["records"] for x in sel)
        t0, t1 = min(x["t_start"] for x in sel), max(x["t_done"] for x in sel)
        wall = max(t1 - t0, max(x["secs"] for x in sel), 1e-3)  # log stamps are ms
        fsum = sum(x["fetch_secs"] for x in sel)
        asum = sum(x["apply_secs"] for x in sel)
        return {"partitions": len(sel), "bytes": b, "records": r, "wall_secs": wall,
                "mb_per_s": b / 1e6 / wall, "keys_per_s": r / wall,
                "fetch_secs_max": max(x["fetch_secs"] for x in sel), "fetch_secs_sum": fsum,
                "apply_secs_sum": asum, "apply_secs_max": max(x["apply_secs"] for x in sel),
                "apply_keys_per_s": r / max(asum, 1e-3), "apply_mb_per_s": b / 1e6 / max(asum, 1e-3),
                "first_fetch_after_start": t0 - wb.t_spawn, "last_restored_after_start": t1 - wb.t_spawn}
    res["owned_restore"] = agg([x for x in parts if x["owned"]])
    res["all_restore"] = agg(parts)
    a = res["all_restore"] or {}
    log("   replicas=%d: %s-b listening %.2fs, assigned %s s, ready %.2fs; %d partitions restored "
        "(%d owned): %.1f MB, %d keys in %.2fs = %.1f MB/s, %.0f keys/s (apply alone %.0f keys/s)" % (
            replicas, topic, res["listening_secs"], "%.2f" % res["assigned_secs"] if t_assign else "?",
            res["ready_secs"], len(parts), res["restored_owned"], a.get("bytes", 0) / 1e6, a.get("records", 0),
            a.get("wall_secs", 0), a.get("mb_per_s", 0), a.get("keys_per_s", 0), a.get("apply_keys_per_s", 0)))
    ctx.procs.stop(wb)
    ctx.procs.stop(wa)
    shutil.rmtree(da, ignore_errors=True)
    shutil.rmtree(db, ignore_errors=True)
    return res
