#!/usr/bin/env bash
# 100,000 idle subscribers on one machine, then the nodes restarted under them (`statushub-load resume`).
#
# Starts redis-server and release hubs on one Redis, on 127.0.0.1 without WebSocket compression (the task-free path
# an idle connection takes): NODES nodes the subscribers connect to (A1…), and node B, which takes the events
# published while they restart. A process holds one descriptor per connection and may hold no more than `ulimit -n`:
# where that cannot be raised past the subscribers (a container without CAP_SYS_RESOURCE: 20,000 here), NODES is as
# many as the limit needs, and the harness holds its subscribers in as many processes (`--processes`), slice i on
# node Ai. SUBSCRIBERS idle subscribers connect from SOURCES (loopback source addresses, round-robin: one address has
# ~28,000 ephemeral ports), CONNECT_CONCURRENCY at a time, each on line:Line-0:*. Reported: the time until all are
# subscribed, the nodes' RSS per connection, and how long one event takes to reach all of them. Then the harness
# sends every A node SIGTERM; this script starts each again on its port as soon as it has exited, while the harness
# publishes an event every PUBLISH_EVERY seconds (0.1) through B; when every A answers /ready every subscriber
# reconnects at once with `since` (its last event_id). Reported: the time until every one is subscribed again,
# until every one has the events published meanwhile, and whether each got every event exactly once, in order.
#
# Builds nothing: BIN names a folder with release statushub and statushub-load. Run it as root: it raises
# `ulimit -n` to NOFILE for itself, the hubs and the harness (each holds one descriptor per subscriber) or, where it
# cannot, splits as above. Hubs and redis-server on CPU 0, the harness on CPU 1.
# Loopback only; the harness is bounded by `timeout`; everything started is stopped on exit.
#
# EXTRA_HUB_ENV: more settings for every node (e.g. LD_PRELOAD of another allocator). HOLD: seconds the harness keeps
# its subscribers after its report, for a look inside the nodes (RSS, `malloc_stats`, a heap profile).
#
# SHARDS=3 runs the nodes on three redis-servers (`redis.shards`, 12 partitions): the subscribers then resume with
# the resume token their last event carried instead of an event id.
#
#   BIN=.build-release/release loadtest/hundred-thousand.sh
#   SUBSCRIBERS=19000 BIN=.build-release/release loadtest/hundred-thousand.sh     # one node under a 20,000 limit
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
# Seconds the harness keeps its subscribers connected after its report, for a look inside the nodes (RSS, heap).
HOLD=${HOLD:-0}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
. loadtest/lib.sh
[ -n "${BIN:-}" ] || { say "set BIN to a folder with release statushub and statushub-load (this script builds nothing)"; exit 2; }
if ! ulimit -n "$NOFILE" 2>/dev/null; then
    # Without CAP_SYS_RESOURCE (a container may withhold it even from root) the hard limit is the ceiling.
    ulimit -n "$(ulimit -Hn)"
    say "cannot raise ulimit -n to $NOFILE (needs root with CAP_SYS_RESOURCE); using the hard limit $(ulimit -n)"
fi
# Connections one process may hold, leaving room for its own files, Redis connections and the ingest.
PER_PROCESS=$(($(ulimit -n) - 1000))
NODES=${NODES:-$(((SUBSCRIBERS + PER_PROCESS - 1) / PER_PROCESS))}
if [ "$(((SUBSCRIBERS + NODES - 1) / NODES))" -gt "$PER_PROCESS" ]; then
    say "$SUBSCRIBERS subscribers on $NODES nodes is more than the $PER_PROCESS a process may hold under ulimit -n $(ulimit -n): raise NODES"
    exit 2
fi
prepare_benchmark hundred-thousand

B_PID="" CLIENT_PID="" SHARD_PIDS=() A_PIDS=() A_PORTS=()
cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    [ -n "$CLIENT_PID" ] && stop_pid "$CLIENT_PID" statushub-load
    stop_pid "$B_PID" "statushub (node B)"
    # Each A node's pid file names it as it runs now, restarted or not (a restarted one is not this shell's child).
    for i in "${!A_PIDS[@]}"; do stop_pid "$(cat "$WORK/a$i.pid" 2>/dev/null)" statushub; done
    stop_servers
    for pid in "${SHARD_PIDS[@]}"; do stop_pid "$pid" redis-server; done
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

# A process that has exited but was not reaped yet still answers kill -0.
alive() { [ -r "/proc/$1/status" ] && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"; }

export HUB_ENV="STATUSHUB_WEBSOCKET_COMPRESSION=false ${EXTRA_HUB_ENV:-}"
export HUB_MAX_CONNECTIONS=$(((SUBSCRIBERS + NODES - 1) / NODES + 1000))
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
mkdir -p "$WORK/b"
start_hub "$WORK/b" "$HUB_DIR" "$ENGINE"
B_PID=$HUB_PID B_PORT=$HUB_PORT
NODE_ARGS=()
for i in $(seq "$NODES"); do
    mkdir -p "$WORK/a$i" "$WORK/a$i-restarted"
    start_hub "$WORK/a$i" "$HUB_DIR" "$ENGINE" "" "$WORK/a$i.pid"
    A_PIDS[i]=$HUB_PID A_PORTS[i]=$HUB_PORT
    NODE_ARGS+=(--url "http://127.0.0.1:$HUB_PORT" --hub-pid-file "$WORK/a$i.pid")
done
HUB_PID=""

BASE="$OUT_DIR/hundred-thousand-$SUBSCRIBERS-nodes-$NODES-shards-$SHARDS-$STAMP"
LOAD=("${CLIENT_PIN[@]}" "$BIN/statushub-load" resume "${NODE_ARGS[@]}" --processes "$NODES"
    --publish-url "http://127.0.0.1:$B_PORT" --subscribers "$SUBSCRIBERS" --source-addresses "$SOURCES"
    --connect-concurrency "$CONNECT_CONCURRENCY" --publish-every "$PUBLISH_EVERY" --restart --hold "$HOLD"
    --json "$BASE.json")
say "$NODES node(s) A (${A_PIDS[*]}) on ports ${A_PORTS[*]}, node B $B_PID on 127.0.0.1:$B_PORT, redis-server $REDIS_PID; ulimit -n $(ulimit -n)"
say "${LOAD[*]}"
timeout --signal=INT --kill-after=10 "$TIME_LIMIT" "${LOAD[@]}" > >(tee "$BASE.txt") 2>&1 &
CLIENT_PID=$!

# The harness sends every A node SIGTERM once the first event reached everyone: start each again on its port right
# after it exits (once).
RESTARTED=()
while alive "$CLIENT_PID"; do
    for i in $(seq "$NODES"); do
        if [ -z "${RESTARTED[i]:-}" ] && ! alive "${A_PIDS[i]}"; then
            term_status=0; wait "${A_PIDS[i]}" || term_status=$?
            say "node A$i exited ($term_status); starting it again on port ${A_PORTS[i]}"
            # In the background, so that the nodes start side by side; the pid file names the new one at once.
            start_hub "$WORK/a$i-restarted" "$HUB_DIR" "$ENGINE" "${A_PORTS[i]}" "$WORK/a$i.pid" &
            RESTARTED[i]=1
        fi
    done
    sleep 0.05
done
status=0; wait "$CLIENT_PID" || status=$?
CLIENT_PID=""
for i in $(seq "$NODES"); do
    say "node A$i's log before the restart: $(grep -ci error "$WORK/a$i/hub.log" || true) lines with 'error'; after: $(grep -ci error "$WORK/a$i-restarted/hub.log" 2>/dev/null || true)"
    # The restarted nodes' logs say why subscribers were told to resync: kept beside the results, with the logs
    # from before the restart.
    cp "$WORK/a$i-restarted/hub.log" "$BASE.restarted-hub-a$i.log" 2>/dev/null || true
    cp "$WORK/a$i/hub.log" "$BASE.hub-a$i.log" 2>/dev/null || true
done
# And node B's, which took the events published meanwhile (a refused or slow publish shows there).
cp "$WORK/b/hub.log" "$BASE.node-b.log" 2>/dev/null || true
say "results in $BASE.json, $BASE.txt and the nodes' logs $BASE.hub-a*.log, $BASE.restarted-hub-a*.log, $BASE.node-b.log"
exit "$status"
