"""Steps 1 and 6: the replay pipeline against bare cJSON, db_bench fillrandom
with our key/value sizes and write count, and compacted state size.

bench_process (bench/bench_process.c) runs the worker's ingest pipeline
in-process on a generated event file; its "size" store holds every user-day
rewritten as one merged value. Results: ctx.r["processing"], ["db_bench"],
["state_size"].
"""
import json
import os
import re
import shutil

from benchlib import PARTS, du, log, run


def run_step(ctx):
    log("1/9 processing: generating %d events" % ctx.sizes["proc_n"])
    evfile = ctx.ensure_proc_file()
    size_dir = os.path.join(ctx.work, "size-store")
    out = run([ctx.tool("bench_process"), "process", "--file", evfile, "--dir",
               os.path.join(ctx.work, "proc-store"), "--partitions", str(PARTS), "--batch", "20000",
               "--size-dir", size_dir], timeout=900)
    p = json.loads(out)
    ctx.r["processing"] = p
    log("   pipeline %.0f ev/s, cJSON %.0f ev/s" % (p["pipeline_eps"], p["cjson_eps"]))
    # db_bench fillrandom with our sizes and write count
    dbb = shutil.which("db_bench") or shutil.which("rocksdb_db_bench")
    if dbb:
        out = run([dbb, "--benchmarks=fillrandom", "--num=%d" % p["writes"], "--key_size=%d" % round(p["avg_key"]),
                   "--value_size=%d" % round(p["avg_value"]), "--compression_type=lz4", "--threads=1",
                   "--db=" + os.path.join(ctx.work, "dbbench"), "--statistics=0"], timeout=600)
        m = re.search(r"fillrandom\s*:\s*([\d.]+) micros/op\s+(\d+) ops/sec", out)
        ctx.r["db_bench"] = {"ops_per_sec": float(m.group(2)), "micros_per_op": float(m.group(1)),
                             "num": p["writes"], "key_size": round(p["avg_key"]),
                             "value_size": round(p["avg_value"]), "binary": dbb} if m else {"error": out[-500:]}
    else:
        ctx.r["db_bench"] = {"error": "db_bench not installed (rocksdb-tools)"}
    # 6: state size
    total, sst = du(size_dir)
    ud = max(p["user_days"], 1)
    per = total / ud
    ctx.r["state_size"] = {
        "user_days": p["user_days"], "dir_bytes": total, "sst_bytes": sst, "bytes_per_user_day": per,
        "sst_bytes_per_user_day": sst / ud, "events_per_user_day": p["accepted"] / ud,
        "logical_value_bytes_per_user_day": p["compact_value_bytes"] / ud,
        "projection": {str(w): 2_000_000 * 60 * per / w for w in (4, 8, 16)},
    }
