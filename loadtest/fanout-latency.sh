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
SKIP_BUILD=${SKIP_BUILD:-0}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
. loadtest/lib.sh
OUT_DIR="$ROOT/loadtest/out"
mkdir -p "$OUT_DIR"
STAMP=$(date +%Y%m%d-%H%M%S)
WORK=$(mktemp -d /tmp/statushub-fanout.XXXXXX)

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_servers
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

command -v curl >/dev/null || { say "curl not found"; exit 1; }
setup_pinning

if [ "$SKIP_BUILD" != 1 ]; then
    echo "== building release (statushub, statushub-load)" >&2
    # One --product per invocation: given two, SwiftPM builds only the last one.
    swift build -c release --product statushub >&2
    swift build -c release --product statushub-load >&2
fi
BIN=$(swift build -c release --show-bin-path)

start_redis "$WORK"
start_hub "$WORK" "$BIN" redis
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
