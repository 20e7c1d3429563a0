"""Step: backups (issue 21) against a plain copy of the same store.

bench_process fill writes N user-days (30 days) into a store. Then, in
interleaved pairs (the machine is shared and noisy): `cp -a` of the store
then `sync -f` (the reference: the backup engine makes its files durable
too) and `profilectl backup --data-dir --to <new dir>` (a full
backup: every file copied, verified); `cp -a` of the store again and
`profilectl restore` of that backup into a new directory. Then one
incremental backup into the same directory after the store changed a
little (a second fill of 1 % more user-days). Results: ctx.r["backup"]:
MB/s of each, the ratios backup/cp and restore/cp per pair, and the
incremental backup's added bytes and time.
"""
import json
import os
import shutil
import time

from benchlib import PARTS, du, log, run


def timed(args, timeout=3600):
    t0 = time.monotonic()
    out = run(args, timeout=timeout)
    return time.monotonic() - t0, out


def run_step(ctx):
    ctx.ensure_source()
    log("backup: full backup and restore vs cp -a, incremental backup")
    n = ctx.sizes["recovery"][0]
    d = os.path.join(ctx.work, "bk-store")
    run([ctx.tool("bench_process"), "fill", "--file", ctx.e2e_file, "--dir", d, "--partitions", str(PARTS),
         "--user-days", str(n), "--days", "30"], timeout=3600)
    size, _ = du(d)
    mb = size / 1e6
    ctl = ctx.bin("profilectl")
    pairs = []
    for i in range(max(ctx.sizes["pairs"], 2)):
        cp1 = os.path.join(ctx.work, "bk-cp%d" % i)
        bdir = os.path.join(ctx.work, "bk-dir%d" % i)
        rdir = os.path.join(ctx.work, "bk-restored%d" % i)
        t_cp, _ = timed(["sh", "-c", 'cp -a "$1" "$2" && sync -f "$2"', "cp", d, cp1])
        shutil.rmtree(cp1)
        t_bk, out = timed([ctl, "backup", "--data-dir", d, "--to", bdir])
        t_cp2, _ = timed(["sh", "-c", 'cp -a "$1" "$2" && sync -f "$2"', "cp", d, cp1])
        shutil.rmtree(cp1)
        t_rs, _ = timed([ctl, "restore", "--from", bdir, "--data-dir", rdir])
        shutil.rmtree(rdir)
        if i:
            shutil.rmtree(bdir)
        rec = {"cp_secs": t_cp, "backup_secs": t_bk, "cp2_secs": t_cp2, "restore_secs": t_rs,
               "backup_vs_cp": t_cp / t_bk, "restore_vs_cp": t_cp2 / t_rs,
               "backup_bytes": json.loads(out)["size_bytes"]}
        pairs.append(rec)
        log("   pair %d: cp %.2fs, backup %.2fs (%.2fx cp's speed); cp %.2fs, restore %.2fs (%.2fx)" % (
            i + 1, t_cp, t_bk, rec["backup_vs_cp"], t_cp2, t_rs, rec["restore_vs_cp"]))
    # incremental: the store grows by 1 % of its user-days, then a second backup into bk-dir0
    run([ctx.tool("bench_process"), "fill", "--file", ctx.e2e_file, "--dir", d, "--partitions", str(PARTS),
         "--user-days", str(max(n // 100, 1000)), "--days", "1"], timeout=3600)
    t_inc, out = timed([ctl, "backup", "--data-dir", d, "--to", os.path.join(ctx.work, "bk-dir0")])
    inc = json.loads(out)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    res = {"user_days": n, "store_bytes": size, "pairs": pairs,
           "backup_mb_s": mb / med([p["backup_secs"] for p in pairs]),
           "restore_mb_s": mb / med([p["restore_secs"] for p in pairs]),
           "cp_mb_s": mb / med([p["cp_secs"] for p in pairs] + [p["cp2_secs"] for p in pairs]),
           "backup_vs_cp_median": med([p["backup_vs_cp"] for p in pairs]),
           "restore_vs_cp_median": med([p["restore_vs_cp"] for p in pairs]),
           "incremental": {"secs": t_inc, "added_bytes": inc["added_bytes"], "size_bytes": inc["size_bytes"]}}
    log("   %s user-days, %.0f MB: backup %.0f MB/s, restore %.0f MB/s, cp -a %.0f MB/s; incremental backup "
        "%.2fs adding %.1f MB" % (n, mb, res["backup_mb_s"], res["restore_mb_s"], res["cp_mb_s"], t_inc,
                                  inc["added_bytes"] / 1e6))
    ctx.r["backup"] = res
    shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(os.path.join(ctx.work, "bk-dir0"), ignore_errors=True)
