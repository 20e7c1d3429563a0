"""Step 5: the Redis design (bench/bench_redis.c, raw RESP over TCP).

Debian redis-server without persistence on a free loopback port; HINCRBY
ingest of the processing step's events, then (when a query step has written
the users file) pipelined HGETALL x30 queries. Results: ctx.r["redis"].
"""
import json
import os
import re
import shutil
import socket
import subprocess
import time

from benchlib import free_port, log, run, wait_for


def run_step(ctx):
    log("5/9 redis design")
    exe = shutil.which("redis-server")
    if not exe:
        ctx.r["redis"] = {"error": "redis-server not installed"}
        return
    evfile = ctx.ensure_proc_file()
    port = free_port()
    rdir = os.path.join(ctx.work, "redis")
    os.makedirs(rdir)
    rp = ctx.procs.start("redis", [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                   "--appendonly", "no", "--dir", rdir, "--protected-mode", "yes"])

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False
    wait_for(up, 20, "redis-server")
    ing = json.loads(run([ctx.tool("bench_redis"), "ingest", "--file", evfile, "--port", str(port),
                          "--pipeline", "200"], timeout=900))
    res = {"ingest": ing}
    if ctx.users_path:  # the users the query steps asked for
        secs = ctx.sizes["query_secs"]
        dist = os.path.join(ctx.work, "redis-dist.txt")
        res["query"] = json.loads(run([ctx.tool("bench_redis"), "query", "--port", str(port), "--users",
                                       ctx.users_path, "--today", str(int(time.time() // 86400)), "--days", "30",
                                       "--threads", str(ctx.sizes["redis_threads"]), "--secs", str(secs),
                                       "--dist", dist], timeout=secs + 60))
        with open(dist) as f:
            res["query"]["dist"] = [[float(a), float(b) * 1000] for a, b in (l.split() for l in f if l.strip())]
    try:
        info = subprocess.run(["redis-cli", "-p", str(port), "info", "memory"], capture_output=True,
                              timeout=10).stdout.decode()
        m = re.search(r"used_memory:(\d+)", info)
        res["used_memory"] = int(m.group(1)) if m else None
    except (OSError, subprocess.TimeoutExpired):
        pass
    ctx.procs.stop(rp)
    ctx.r["redis"] = res
    log("   redis ingest %.0f ev/s" % ing["eps"])
