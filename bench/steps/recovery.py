"""Step 7: recovery after SIGKILL.

bench_process fill writes N user-days (30 days) straight into a store; a
worker starts on it, becomes ready, gets SIGKILL and is restarted; the
restart is timed to "listening" (its stdout line), "assigned" (its log line)
and ready (/readyz 200, every owned partition ready). Results:
ctx.r["recovery"], one entry per size.
"""
import json
import os
import shutil
import time

from benchlib import PARTS, all_ready, assigned_time, du, http_get, log, run, wait_for


def run_step(ctx):
    ctx.ensure_source()
    log("7/9 recovery")
    out = []
    for n in ctx.sizes["recovery"]:
        d = os.path.join(ctx.work, "rec-%d" % n)
        fill = json.loads(run([ctx.tool("bench_process"), "fill", "--file", ctx.e2e_file, "--dir", d,
                               "--partitions", str(PARTS), "--user-days", str(n), "--days", "30"], timeout=3600))
        grp = "rec-%d" % n
        w = ctx.start_worker("rec-%d-a" % n, d, topic="recov", group=grp)
        wait_for(lambda: http_get(w.url + "/readyz")[0] == 200, 120, "first start ready", 0.05)
        time.sleep(0.5)
        ctx.procs.kill9(w)
        w = ctx.start_worker("rec-%d-b" % n, d, topic="recov", group=grp)
        wait_for(lambda: all_ready(w.url), 120, "restart ready", 0.01)
        t_ready = time.time()
        t_assign = assigned_time(w.bench_log)
        total, _ = du(d)
        rec = {"user_days": n, "fill_secs": fill["secs"], "store_bytes": total,
               "listening_secs": w.t_listen - w.t_spawn, "ready_secs": t_ready - w.t_spawn,
               "assigned_secs": (t_assign - w.t_spawn) if t_assign else None}
        out.append(rec)
        log("   %d user-days: listening after %.2fs, assigned after %s s, ready after %.2fs" % (
            n, rec["listening_secs"], "%.2f" % rec["assigned_secs"] if t_assign else "?", rec["ready_secs"]))
        ctx.procs.stop(w)
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(d + ".tpl", ignore_errors=True)
    ctx.r["recovery"] = out
