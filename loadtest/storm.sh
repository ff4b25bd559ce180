#!/usr/bin/env bash
# Reconnect storm over a large cache: ENTITIES machines on LINES lines are cached, then DASHBOARDS line dashboards
# connect at once, each asking for its line's snapshot, while a bystander pings and a publisher keeps posting
# (`statushub-load storm`). Prints each engine's snapshot times, the bystander's and the publisher's latency
# meanwhile, and the hub's (and redis-server's) RSS before, at the peak and 10 s after.
#
# Builds release binaries (SKIP_BUILD=1 reuses them; BIN=dir takes statushub and statushub-load from dir;
# HUB_BIN=path runs another statushub, e.g. an older build to compare). Hub (and redis-server) on CPU 0, the
# harness on CPU 1. Loopback only; every run is bounded by `timeout`; everything started is stopped on exit.
#
#   loadtest/storm.sh                                   # 50,000 machines, 10 lines, 10 dashboards, both engines
#   ENTITIES=20000 ENGINES=memory BIN=.build/debug loadtest/storm.sh
set -euo pipefail

ENTITIES=${ENTITIES:-50000}
LINES=${LINES:-10}
DASHBOARDS=${DASHBOARDS:-10}
ENGINES=${ENGINES:-memory redis}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
. loadtest/lib.sh
prepare_benchmark storm

status=0
for engine in $ENGINES; do
    mkdir -p "$WORK/$engine"
    REDIS_ARGS=()
    if [ "$engine" = redis ]; then start_redis "$WORK/$engine"; REDIS_ARGS=(--redis-pid "$REDIS_PID"); fi
    start_hub "$WORK/$engine" "$HUB_DIR" "$engine"
    JSON="$OUT_DIR/storm-$engine-$STAMP.json"
    say "$engine engine: hub $HUB_PID on 127.0.0.1:$HUB_PORT; $ENTITIES machines, $LINES lines, $DASHBOARDS dashboards"
    timeout --signal=INT --kill-after=10 "$((ENTITIES / 100 + 180))" \
        "${CLIENT_PIN[@]}" "$BIN/statushub-load" storm --url "http://127.0.0.1:$HUB_PORT" --hub-pid "$HUB_PID" \
        "${REDIS_ARGS[@]}" --entities "$ENTITIES" --lines "$LINES" --dashboards "$DASHBOARDS" --json "$JSON" || status=$?
    # The same reads over HTTP: ten GET /v1/state?pattern=line:Line-3:* at once, each timed by curl.
    times=$(for _ in $(seq "$DASHBOARDS"); do
        curl -s -o /dev/null -w '%{time_total} %{size_download}\n' "http://127.0.0.1:$HUB_PORT/v1/state?pattern=line:Line-3:*" &
    done; wait)
    say "$engine engine: $DASHBOARDS concurrent GET /v1/state?pattern=line:Line-3:* (seconds, bytes): $(echo "$times" | sort -n | tr '\n' ' ')"
    stop_servers
    say "$engine engine: results in $JSON"
done
exit "$status"
