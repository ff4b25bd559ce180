#!/usr/bin/env bash
# The MQTT bridge under load: Sparkplug B status changes bridged into the hub (Redis engine, or memory), with
# publish → WebSocket latency. mosquitto, redis-server and the hub on CPU $SERVER_CPU; `statushub sparkplug-edge`
# (edge nodes publishing open-loop, and one WebSocket subscriber to machine:* measuring) on CPU $CLIENT_CPU.
# Latency is the subscriber's arrival time minus the metric timestamp the edge node set as it published (one
# clock; Sparkplug timestamps are whole milliseconds). lost = status changes published and not delivered to the
# subscriber within 2 s of the end; hub_events_bridged = every event the bridge stored (status, metrics, births).
#
#   loadtest/mqtt.sh                       # RATES="500 1000 2000 4000" DURATION=15 ENGINE=redis
#   SKIP_BUILD=1 RATES=2000 loadtest/mqtt.sh
#
# Prints one JSON line per rate and keeps them in loadtest/out/mqtt-<stamp>.ndjson.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. loadtest/lib.sh

RATES=${RATES:-"500 1000 2000 4000"} DURATION=${DURATION:-15} ENGINE=${ENGINE:-redis}
LINES=${LINES:-4} MACHINES=${MACHINES:-25}
MOSQUITTO_PID=""
prepare_benchmark mqtt
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || { say "mosquitto not found (make deps installs it)"; exit 1; }
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
stop_mosquitto() { stop_pid "$MOSQUITTO_PID" mosquitto; MOSQUITTO_PID=""; }
trap 'stop_mosquitto; benchmark_cleanup' EXIT
RESULTS="$OUT_DIR/mqtt-$STAMP.ndjson"

for rate in $RATES; do
    rm -rf "${WORK:?}"/*
    MQTT_PORT=$(free_port)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n' "$MQTT_PORT" >"$WORK/mosquitto.conf"
    "${SERVER_PIN[@]}" "$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
    MOSQUITTO_PID=$!
    wait_port "$MQTT_PORT" "$MOSQUITTO_PID" 5 || { say "mosquitto did not start"; cat "$WORK/mosquitto.log" >&2; exit 1; }
    [ "$ENGINE" = redis ] && start_redis "$WORK"
    # The bridge's section by environment: a Sparkplug host with the default mapping (device = machine, node = line).
    export STATUSHUB_MQTT_URL="mqtt://127.0.0.1:$MQTT_PORT" STATUSHUB_MQTT_CLIENT_ID="statushub-loadtest"
    printf 'mqtt:\n  sparkplug:\n    host_id: statushub-loadtest\n' >"$WORK/hub.yaml"
    HUB_PORT=$(free_port)
    args=(serve --config "$WORK/hub.yaml" --host 127.0.0.1 --port "$HUB_PORT")
    [ "$ENGINE" = redis ] && args+=(--redis "redis://127.0.0.1:$REDIS_PORT")
    "${SERVER_PIN[@]}" "$HUB_DIR/statushub" "${args[@]}" >"$WORK/hub.log" 2>&1 &
    HUB_PID=$!
    for _ in $(seq 150); do curl -sf "http://127.0.0.1:$HUB_PORT/ready" | grep -qv degraded && break; sleep 0.1; done
    "${CLIENT_PIN[@]}" "$BIN/statushub" sparkplug-edge --broker "mqtt://127.0.0.1:$MQTT_PORT" --lines "$LINES" \
        --machines "$MACHINES" --rate "$rate" --duration "$DURATION" --measure "ws://127.0.0.1:$HUB_PORT/v1/ws" \
        >"$WORK/edge.json" 2>"$WORK/edge.log" || { say "sparkplug-edge failed"; cat "$WORK/edge.log" >&2; }
    bridged=$(curl -s "http://127.0.0.1:$HUB_PORT/metrics" | sed -n 's/^statushub_mqtt_events_mapped_total \([0-9]*\).*/\1/p')
    refused=$(curl -s "http://127.0.0.1:$HUB_PORT/metrics" | sed -n 's/^statushub_mqtt_messages_refused_total \([0-9]*\).*/\1/p')
    closes=$(curl -s "http://127.0.0.1:$HUB_PORT/metrics" | sed -n 's/^statushub_slow_consumer_closes_total \([0-9]*\).*/\1/p')
    jq -c --arg engine "$ENGINE" --argjson rate "$rate" --argjson bridged "${bridged:-0}" --argjson refused "${refused:-0}" --argjson closes "${closes:-0}" \
        '{engine: $engine, rate: $rate} + . + {hub_events_bridged: $bridged, refused: $refused, slow_consumer_closes: $closes}' "$WORK/edge.json" | tee -a "$RESULTS"
    stop_pid "$HUB_PID" statushub; HUB_PID=""
    stop_mosquitto
    stop_servers
done
say "results in $RESULTS"
