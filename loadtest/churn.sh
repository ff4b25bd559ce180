#!/usr/bin/env bash
# Connection churn: does a hub give back what a closed WebSocket held? Opens and closes CONNECTIONS WebSockets
# (each subscribes, then leaves with a close frame or a TCP reset, alternately) against a fresh hub per engine,
# and prints the hub's RSS every REPORT_EVERY connections. A hub that frees closed connections stays flat once
# its allocator has warmed up (the first reading); the leak this was written for grew ~4.8 KB a connection.
#
# Builds release binaries (SKIP_BUILD=1 reuses them; BIN=dir takes statushub and statushub-load from dir, e.g.
# .build/debug; HUB_BIN=path runs another statushub, e.g. an older build to compare). Hub (and redis-server)
# on CPU 0, the harness on CPU 1. Loopback only; every run is bounded by `timeout`; everything started is stopped
# on exit. Exit status: non-zero if a harness run failed or timed out.
#
#   loadtest/churn.sh                                         # 20,000 connections, memory and redis engines
#   CONNECTIONS=5000 ENGINES=memory SKIP_BUILD=1 loadtest/churn.sh
set -euo pipefail

CONNECTIONS=${CONNECTIONS:-20000}
CONCURRENCY=${CONCURRENCY:-50}
REPORT_EVERY=${REPORT_EVERY:-5000}
GOODBYE=${GOODBYE:-mixed}
ENGINES=${ENGINES:-memory redis}
SETTLE=${SETTLE:-3}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
. loadtest/lib.sh
prepare_benchmark churn
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

status=0
for engine in $ENGINES; do
    mkdir -p "$WORK/$engine"
    [ "$engine" = redis ] && start_redis "$WORK/$engine"
    start_hub "$WORK/$engine" "$HUB_DIR" "$engine"
    JSON="$OUT_DIR/churn-$engine-$STAMP.json"
    say "$engine engine: hub $HUB_PID on 127.0.0.1:$HUB_PORT; $CONNECTIONS connections, $CONCURRENCY at a time, goodbye $GOODBYE"
    # Generous: a debug build on a busy 2-core box does a few hundred connections a second.
    timeout --signal=INT --kill-after=10 "$((CONNECTIONS / 20 + 120))" \
        "${CLIENT_PIN[@]}" "$BIN/statushub-load" churn --url "http://127.0.0.1:$HUB_PORT" --hub-pid "$HUB_PID" \
        --connections "$CONNECTIONS" --concurrency "$CONCURRENCY" --report-every "$REPORT_EVERY" \
        --goodbye "$GOODBYE" --settle "$SETTLE" --json "$JSON" || status=$?
    curl -sf "http://127.0.0.1:$HUB_PORT/metrics" | grep -E '^statushub_websocket_connections' >&2 || true
    stop_servers
    say "$engine engine: results in $JSON"
done
exit "$status"
