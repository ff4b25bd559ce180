#!/usr/bin/env bash
# Fan-out latency, one node on Redis: 1 publisher, 100 subscribers on one channel, 200 events/s for 20 s.
#
# Builds release binaries, starts a throw-away redis-server and a hub on free loopback ports (both pinned to
# CPU 0), runs statushub-load on CPU 1, prints its table and keeps the JSON in loadtest/out/. Everything it
# starts is stopped on exit, whatever happens. Loopback only; bounded in time (apart from the build).
#
#   loadtest/fanout-latency.sh                         # the defaults below
#   SUBSCRIBERS=1000 RATE=300 loadtest/fanout-latency.sh
#   loadtest/fanout-latency.sh --mapping lines:10      # extra arguments go to `statushub-load run`
set -euo pipefail

SUBSCRIBERS=${SUBSCRIBERS:-100}
PUBLISHERS=${PUBLISHERS:-1}
RATE=${RATE:-200}
DURATION=${DURATION:-20}
BATCH=${BATCH:-1}
MAPPING=${MAPPING:-one-channel}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-200}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT_DIR="$ROOT/loadtest/out"
mkdir -p "$OUT_DIR"
STAMP=$(date +%Y%m%d-%H%M%S)
WORK=$(mktemp -d /tmp/statushub-fanout.XXXXXX)

REDIS_PID=""
HUB_PID=""

# Stops a process we started: TERM, up to 5 s to exit, then KILL.
stop_pid() {
    local pid=$1 name=$2
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "fanout-latency: $name ($pid) ignored SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_pid "$HUB_PID" statushub
    stop_pid "$REDIS_PID" redis-server
    if [ "$status" -ne 0 ] && [ -f "$WORK/hub.log" ]; then
        echo "--- last lines of the hub log ($WORK/hub.log) ---" >&2
        tail -n 20 "$WORK/hub.log" >&2 || true
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A loopback port nobody listens on (nothing answers a connect to it).
free_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
    done
    echo "fanout-latency: no free port found" >&2
    return 1
}

command -v redis-server >/dev/null || { echo "fanout-latency: redis-server not found (make deps installs it)" >&2; exit 1; }
command -v curl >/dev/null || { echo "fanout-latency: curl not found" >&2; exit 1; }

SERVER_PIN=()
CLIENT_PIN=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SERVER_PIN=(taskset -c "$SERVER_CPU")
    CLIENT_PIN=(taskset -c "$CLIENT_CPU")
else
    echo "fanout-latency: fewer than 2 CPUs or no taskset: not pinning (server and client will compete)" >&2
fi

if [ "$SKIP_BUILD" != 1 ]; then
    echo "== building release (statushub, statushub-load)" >&2
    # One --product per invocation: given two, SwiftPM builds only the last one.
    swift build -c release --product statushub >&2
    swift build -c release --product statushub-load >&2
fi
BIN=$(swift build -c release --show-bin-path)

REDIS_PORT=$(free_port)
"${SERVER_PIN[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --logfile "$WORK/redis.log" --dir "$WORK" &
REDIS_PID=$!
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && break
    kill -0 "$REDIS_PID" 2>/dev/null || { echo "fanout-latency: redis-server exited" >&2; cat "$WORK/redis.log" >&2; exit 1; }
    sleep 0.1
done

HUB_PORT=$(free_port)
"${SERVER_PIN[@]}" "$BIN/statushub" serve --host 127.0.0.1 --port "$HUB_PORT" \
    --redis "redis://127.0.0.1:$REDIS_PORT" >"$WORK/hub.log" 2>&1 &
HUB_PID=$!
ready=0
for _ in $(seq 150); do
    if curl -sf "http://127.0.0.1:$HUB_PORT/ready" >/dev/null 2>&1; then ready=1; break; fi
    kill -0 "$HUB_PID" 2>/dev/null || break
    sleep 0.1
done
[ "$ready" = 1 ] || { echo "fanout-latency: the hub did not become ready within 15 s" >&2; exit 1; }
echo "== hub on 127.0.0.1:$HUB_PORT, redis on 127.0.0.1:$REDIS_PORT (${SERVER_PIN[*]:-unpinned}); client: ${CLIENT_PIN[*]:-unpinned}" >&2

JSON="$OUT_DIR/fanout-latency-$STAMP.json"
LOAD=("${CLIENT_PIN[@]}" "$BIN/statushub-load" run --url "http://127.0.0.1:$HUB_PORT"
    --subscribers "$SUBSCRIBERS" --publishers "$PUBLISHERS" --rate "$RATE" --duration "$DURATION"
    --batch "$BATCH" --mapping "$MAPPING" --payload-bytes "$PAYLOAD_BYTES" --json "$JSON" "$@")
echo "== ${LOAD[*]}" >&2
# Connect (≤30 s) + duration + drain + shutdown: bounded by a generous timeout all the same.
load_status=0
timeout --signal=INT --kill-after=10 "$((DURATION + 90))" "${LOAD[@]}" || load_status=$?

echo "== hub counters" >&2
curl -sf "http://127.0.0.1:$HUB_PORT/metrics" \
    | grep -E '^statushub_(events_accepted_total|events_fanned_out_total|deliveries_total|slow_consumer_closes_total|websocket_connections)' >&2 || true
echo "== results: $JSON (statushub-load exit status $load_status)" >&2
exit "$load_status"
