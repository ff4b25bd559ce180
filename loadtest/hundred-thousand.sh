#!/usr/bin/env bash
# 100,000 idle subscribers on one node, then the node restarted under them (`statushub-load resume`).
#
# Starts redis-server and two release hubs on one Redis, on 127.0.0.1 without WebSocket compression (the
# task-free path an idle connection takes): node A, which the subscribers connect to, and node B, which takes the
# events published while A restarts. SUBSCRIBERS idle subscribers connect to A from SOURCES (loopback source
# addresses, round-robin: one address has ~28,000 ephemeral ports), CONNECT_CONCURRENCY at a time, each on
# line:Line-0:*. Reported: the time until all are subscribed, A's RSS per connection, and how long one event takes
# to reach all of them. Then the harness sends A SIGTERM; this script starts A again on the same port as soon as it
# has exited, while the harness publishes an event every PUBLISH_EVERY seconds (0.1) through B; when A answers /ready every subscriber
# reconnects at once with `since` (its last event_id). Reported: the time until every one is subscribed again,
# until every one has the events published meanwhile, and whether each got every event exactly once, in order.
#
# Builds nothing: BIN names a folder with release statushub and statushub-load. Run it as root: it raises
# `ulimit -n` to NOFILE for itself, the hubs and the harness (each holds one descriptor per subscriber), and
# refuses a SUBSCRIBERS count that the limit it got cannot hold. Hubs and redis-server on CPU 0, the harness on CPU 1.
# Loopback only; the harness is bounded by `timeout`; everything started is stopped on exit.
#
# SHARDS=3 runs both nodes on three redis-servers (`redis.shards`, 12 partitions): the subscribers then resume with
# the resume token their last event carried instead of an event id.
#
#   BIN=.build-release/release loadtest/hundred-thousand.sh
#   SUBSCRIBERS=50000 BIN=.build-release/release loadtest/hundred-thousand.sh
#   SUBSCRIBERS=2000 SHARDS=3 BIN=.build-release/release loadtest/hundred-thousand.sh
set -euo pipefail

SUBSCRIBERS=${SUBSCRIBERS:-100000}
SHARDS=${SHARDS:-1}
SOURCES=${SOURCES:-127.0.0.2-127.0.0.11}
CONNECT_CONCURRENCY=${CONNECT_CONCURRENCY:-1000}
# Seconds between the events published through B while A restarts (and on until every subscriber has them): each
# one is a delivery to every subscriber, so 0.1 s × 19,000 subscribers asks 190,000 deliveries/s of node A.
PUBLISH_EVERY=${PUBLISH_EVERY:-0.1}
NOFILE=${NOFILE:-300000}
TIME_LIMIT=${TIME_LIMIT:-1800}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
. loadtest/lib.sh
[ -n "${BIN:-}" ] || { say "set BIN to a folder with release statushub and statushub-load (this script builds nothing)"; exit 2; }
if ! ulimit -n "$NOFILE" 2>/dev/null; then
    # Without CAP_SYS_RESOURCE (a container may withhold it even from root) the hard limit is the ceiling.
    ulimit -n "$(ulimit -Hn)"
    say "cannot raise ulimit -n to $NOFILE (needs root with CAP_SYS_RESOURCE); using the hard limit $(ulimit -n)"
fi
if [ "$((SUBSCRIBERS + 500))" -gt "$(ulimit -n)" ]; then
    say "$SUBSCRIBERS subscribers need $((SUBSCRIBERS + 500)) descriptors in the hub and in the harness; ulimit -n is $(ulimit -n): run SUBSCRIBERS=$(($(ulimit -n) - 500)) or raise the limit"
    exit 2
fi
prepare_benchmark hundred-thousand

B_PID="" CLIENT_PID="" SHARD_PIDS=()
cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    [ -n "$CLIENT_PID" ] && stop_pid "$CLIENT_PID" statushub-load
    stop_pid "$B_PID" "statushub (node B)"
    stop_servers
    for pid in "${SHARD_PIDS[@]}"; do stop_pid "$pid" redis-server; done
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

# A process that has exited but was not reaped yet still answers kill -0.
alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }

export HUB_ENV="STATUSHUB_WEBSOCKET_COMPRESSION=false"
export HUB_MAX_CONNECTIONS=$((SUBSCRIBERS + 1000))
start_redis "$WORK"
ENGINE=redis
if [ "$SHARDS" -gt 1 ]; then
    urls="\"redis://127.0.0.1:$REDIS_PORT\""
    for index in $(seq 2 "$SHARDS"); do
        port=$(free_port)
        mkdir -p "$WORK/redis-$index"
        "${SERVER_PIN[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
            --logfile "$WORK/redis-$index/redis.log" --dir "$WORK/redis-$index" &
        SHARD_PIDS+=($!)
        wait_port "$port" "$!" 5 || { say "redis-server did not start"; exit 1; }
        urls="$urls,\"redis://127.0.0.1:$port\""
    done
    # The shards instead of redis.url: start_hub's "memory" passes no --redis.
    HUB_ENV="$HUB_ENV STATUSHUB_REDIS_SHARDS=[$urls]" ENGINE=memory
    export HUB_ENV
fi
mkdir -p "$WORK/b" "$WORK/a" "$WORK/a-restarted"
start_hub "$WORK/b" "$HUB_DIR" "$ENGINE"
B_PID=$HUB_PID B_PORT=$HUB_PORT
start_hub "$WORK/a" "$HUB_DIR" "$ENGINE"
A_PORT=$HUB_PORT
echo "$HUB_PID" >"$WORK/hub.pid"

BASE="$OUT_DIR/hundred-thousand-$SUBSCRIBERS-shards-$SHARDS-$STAMP"
LOAD=("${CLIENT_PIN[@]}" "$BIN/statushub-load" resume --url "http://127.0.0.1:$A_PORT"
    --publish-url "http://127.0.0.1:$B_PORT" --subscribers "$SUBSCRIBERS" --source-addresses "$SOURCES"
    --connect-concurrency "$CONNECT_CONCURRENCY" --publish-every "$PUBLISH_EVERY" --hub-pid-file "$WORK/hub.pid" --restart
    --json "$BASE.json")
say "node A $HUB_PID on 127.0.0.1:$A_PORT, node B $B_PID on 127.0.0.1:$B_PORT, redis-server $REDIS_PID; ulimit -n $(ulimit -n)"
say "${LOAD[*]}"
timeout --signal=INT --kill-after=10 "$TIME_LIMIT" "${LOAD[@]}" > >(tee "$BASE.txt") 2>&1 &
CLIENT_PID=$!

# The harness sends node A SIGTERM once the first event reached everyone: start A again on its port right after
# it exits (once).
restarted=0
while alive "$CLIENT_PID"; do
    if [ "$restarted" = 0 ] && ! alive "$HUB_PID"; then
        term_status=0; wait "$HUB_PID" || term_status=$?
        say "node A exited ($term_status); starting it again on port $A_PORT"
        start_hub "$WORK/a-restarted" "$HUB_DIR" "$ENGINE" "$A_PORT"
        echo "$HUB_PID" >"$WORK/hub.pid"
        restarted=1
    fi
    sleep 0.05
done
status=0; wait "$CLIENT_PID" || status=$?
CLIENT_PID=""
say "node A's log before the restart: $(grep -ci error "$WORK/a/hub.log" || true) lines with 'error'; after: $(grep -ci error "$WORK/a-restarted/hub.log" 2>/dev/null || true)"
# The restarted node's log is what says why subscribers were told to resync: kept beside the results.
cp "$WORK/a-restarted/hub.log" "$BASE.restarted-hub.log" 2>/dev/null || true
# And node B's, which took the events published meanwhile (a refused or slow publish shows there).
cp "$WORK/b/hub.log" "$BASE.node-b.log" 2>/dev/null || true
say "results in $BASE.json, $BASE.txt and the nodes' logs $BASE.restarted-hub.log, $BASE.node-b.log"
exit "$status"
