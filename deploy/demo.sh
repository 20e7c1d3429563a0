#!/bin/sh
# make demo: the whole system on one machine. Starts the embedded broker
# (librdkafka mock cluster), two workers and a generator producing realistic
# marketplace traffic at a steady rate; prints the worker URLs and example
# queries. Ctrl-C (or SIGTERM) stops everything cleanly.
#
# Environment: DEMO_RATE (events/s, default 500), DEMO_USERS (default 2000),
# DEMO_PARTITIONS (default 12), DEMO_SECONDS (0 = run until Ctrl-C).
set -u
BIN=${BIN:-bin}
RATE=${DEMO_RATE:-500}
USERS=${DEMO_USERS:-2000}
PARTS=${DEMO_PARTITIONS:-12}
SECONDS_LIMIT=${DEMO_SECONDS:-0}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/profiled-demo.XXXXXX")
pids=""

cleanup() {
    trap - INT TERM EXIT
    echo
    echo "demo: stopping (workers flush and leave the group)..."
    for p in $pids; do kill -TERM "$p" 2>/dev/null; done
    for p in $pids; do
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$p" 2>/dev/null
    done
    echo "demo: stopped. Logs and data: $DIR"
    exit 0
}
trap cleanup INT TERM EXIT

"$BIN/profilectl" broker --partitions "$PARTS" --brokers 3 --topics events \
    --bootstrap-file "$DIR/bootstrap" >"$DIR/broker.out" 2>"$DIR/broker.log" &
pids="$!"
i=0
while [ ! -s "$DIR/bootstrap" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -s "$DIR/bootstrap" ] || { echo "demo: broker did not start (see $DIR/broker.log)"; exit 1; }
BS=$(cat "$DIR/bootstrap")
echo "demo: embedded broker at $BS (topic 'events', $PARTS partitions)"

# A generated secret between the workers (internal routes: query
# forwarding, snapshots), read from a file so that it stays out of the
# process list.
(umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$DIR/cluster_token")
urls=""
for n in 1 2; do
    "$BIN/profiled" --brokers "$BS" --topic events --group demo --id "worker-$n" \
        --data_dir "$DIR/worker-$n" --listen 127.0.0.1:0 --session_timeout_ms 6000 \
        --cluster_token_file "$DIR/cluster_token" \
        >"$DIR/worker-$n.out" 2>"$DIR/worker-$n.log" &
    pids="$pids $!"
done
for n in 1 2; do
    i=0
    while ! grep -q '^listening ' "$DIR/worker-$n.out" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    u=$(sed -n 's/^listening //p' "$DIR/worker-$n.out")
    [ -n "$u" ] || { echo "demo: worker-$n did not start (see $DIR/worker-$n.log)"; exit 1; }
    urls="$urls $u"
    echo "demo: worker-$n serving on $u"
done

"$BIN/profilectl" produce --brokers "$BS" --topic events --generate 1000000000 \
    --users "$USERS" --days 1 --live true --rate "$RATE" --quiet >"$DIR/producer.out" 2>"$DIR/producer.log" &
pids="$pids $!"
set -- $urls
printf "demo: waiting for both workers to be assigned partitions"
i=0
while [ $i -lt 300 ]; do
    if curl -sf "$1/readyz" >/dev/null 2>&1 && curl -sf "$2/readyz" >/dev/null 2>&1 &&
       ! curl -s "$1/v1/partitions" | grep -q '"owner":null'; then
        break
    fi
    printf "."
    sleep 0.2
    i=$((i + 1))
done
echo " ready"
echo "demo: producing $RATE events/s for $USERS users (Zipf: u-1 is the most active)"
cat <<EOT

Try (any worker answers for any user; non-owners forward to the owner):
  curl -s '$1/v1/profiles/u-1?days=7' | python3 -m json.tool
  curl -s '$2/v1/profiles/u-1?dims=make,color,price&breakdown=day'
  curl -s '$1/v1/profiles/u-2?decay=exp:3'
  curl -s '$1/v1/partitions'
  curl -s '$2/metrics' | grep profiled_events_total
Inspect a worker's store (read-only, safe while it runs):
  $BIN/profilectl days --data-dir $DIR/worker-1
  $BIN/profilectl dump --data-dir $DIR/worker-1 --user u-1 --format text

Ctrl-C stops everything.
EOT
start=$(date +%s)
while :; do
    sleep 1
    for p in $pids; do
        kill -0 "$p" 2>/dev/null || { echo "demo: a process exited unexpectedly; logs in $DIR"; exit 1; }
    done
    if [ "$SECONDS_LIMIT" -gt 0 ] && [ $(( $(date +%s) - start )) -ge "$SECONDS_LIMIT" ]; then
        exit 0
    fi
done
