#!/usr/bin/env bash
# Runs one scenario file (loadtest/scenarios/*.env) against one or more servers, each step on fresh servers:
# redis-server and the hub (or nginx + Nchan) pinned to CPU $SERVER_CPU, statushub-load pinned to CPU $CLIENT_CPU.
#
#   loadtest/run-scenario.sh loadtest/scenarios/fanout.env                     # StatusHub, Redis engine
#   loadtest/run-scenario.sh loadtest/scenarios/fanout.env statushub-memory nchan-redis
#
# Targets: statushub-redis (default), statushub-memory, nchan-redis, nchan-memory.
# For each RATE in the scenario's RATES, in order, it runs the harness (JSON and an SVG of latency over time in
# loadtest/out/), and prints one summary line; it goes on to the next rate only while p99 <= STOP_P99_MS and
# nothing was lost. Summary lines (tab-separated) are also appended to $SUMMARY when set. Everything it starts
# is stopped on exit; each harness run is bounded by `timeout`. SKIP_BUILD=1 reuses the release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. loadtest/lib.sh

SCENARIO=${1:?usage: run-scenario.sh SCENARIO.env [TARGET...]}
shift
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(statushub-redis)

# Scenario defaults; the file overrides them.
SUBSCRIBERS=100 MAPPING=one-channel PUBLISHERS=1 BATCH=1 RATES=200 DURATION=10 PAYLOAD_BYTES=200
STOP_P99_MS=500 STOP_ON_LOSS=1 EXTRA_ARGS="" DESCRIPTION=""
# shellcheck disable=SC1090
. "$SCENARIO"
NAME=$(basename "$SCENARIO" .env)

OUT_DIR="$ROOT/loadtest/out"
mkdir -p "$OUT_DIR"
STAMP=$(date +%Y%m%d-%H%M%S)
WORK=$(mktemp -d /tmp/statushub-scenario.XXXXXX)
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_servers
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
setup_pinning
build_release
say "$NAME: $DESCRIPTION"

printf '%s\n' "scenario	target	rate	accepted/s	deliveries/s	p50_ms	p99_ms	max_ms	lost	server_cpu_%	server_cpu_us/delivery	rss_kib/subscriber	all_subscribed_ms	client_cpu_%	hub_own_p99_ms	server_cpu_us/connect	client_cpu_us/connect	json"
# Subscribers that offer permessage-deflate get compressed frames from Nchan too: it negotiates the extension by
# default but sends every message plain unless the publisher keeps a deflated copy of it (made once per message).
case " $EXTRA_ARGS " in *" --compression "*) export NCHAN_DEFLATE=1 ;; esac
for target in "${TARGETS[@]}"; do
    for rate in $RATES; do
        rm -rf "$WORK"/*
        case "$target" in
            statushub-redis) start_redis "$WORK"; start_hub "$WORK" "$BIN" redis
                URLS=(--url "http://127.0.0.1:$HUB_PORT") ;;
            statushub-memory) start_hub "$WORK" "$BIN" memory
                URLS=(--url "http://127.0.0.1:$HUB_PORT") ;;
            nchan-redis) start_redis "$WORK"; start_nchan "$WORK" redis
                URLS=(--publish-url-template "http://127.0.0.1:$NCHAN_PORT/pub?id={channel}"
                      --subscribe-url-template "ws://127.0.0.1:$NCHAN_PORT/sub/{channel}") ;;
            nchan-memory) start_nchan "$WORK" memory
                URLS=(--publish-url-template "http://127.0.0.1:$NCHAN_PORT/pub?id={channel}"
                      --subscribe-url-template "ws://127.0.0.1:$NCHAN_PORT/sub/{channel}") ;;
            *) say "unknown target $target"; exit 2 ;;
        esac
        PIDS=()
        for pid in $(server_pids); do PIDS+=(--hub-pid "$pid"); done
        BASE="$OUT_DIR/$NAME-$target-$rate-$STAMP"
        # shellcheck disable=SC2086
        LOAD=("${CLIENT_PIN[@]}" "$BIN/statushub-load" run "${URLS[@]}" "${PIDS[@]}"
            --subscribers "$SUBSCRIBERS" --publishers "$PUBLISHERS" --rate "$rate" --duration "$DURATION"
            --batch "$BATCH" --mapping "$MAPPING" --payload-bytes "$PAYLOAD_BYTES" --quiet
            --json "$BASE.json" --svg "$BASE.svg" $EXTRA_ARGS)
        say "$target @ $rate events/s: ${LOAD[*]}"
        status=0
        timeout --signal=INT --kill-after=10 "$(printf '%.0f' "$(echo "$DURATION + 120" | bc)")" "${LOAD[@]}" >"$BASE.txt" 2>&1 || status=$?
        stop_servers
        if [ ! -s "$BASE.json" ]; then
            say "no results (exit $status):"; tail -n 20 "$BASE.txt" >&2
            break
        fi
        line=$(jq -r --arg s "$NAME" --arg t "$target" --arg j "$BASE.json" '[$s, $t, .config.rate, (.accepted_per_s|floor),
            (.deliveries_per_s|floor), .latency.p50_ms, .latency.p99_ms, .latency.max_ms, .lost,
            (.hub.cpu_percent_of_one_core // 0 | .*10|floor/10), (.hub.cpu_us_per_delivery // 0 | .*1000|floor/1000),
            (.hub.rss_per_subscriber_kib // 0 | .*100|floor/100), (.connect_phase_ms|floor),
            (.client_cpu_percent_of_one_core|floor), (.hub_latency.p99_ms_estimate // "-" | if type == "number" then .*10|floor/10 else . end),
            (.hub.cpu_us_per_subscriber_connecting // 0 | floor), (.client_cpu_us_per_subscriber_connecting // 0 | floor),
            $j] | @tsv' "$BASE.json")
        echo "$line"
        [ -n "${SUMMARY:-}" ] && echo "$line" >>"$SUMMARY"
        p99=$(jq .latency.p99_ms "$BASE.json"); lost=$(jq .lost "$BASE.json")
        if [ "$(echo "$p99 > $STOP_P99_MS" | bc)" = 1 ]; then say "$target: p99 $p99 ms > $STOP_P99_MS ms at $rate events/s; stopping"; break; fi
        if [ "$STOP_ON_LOSS" = 1 ] && [ "$lost" != 0 ]; then say "$target: $lost deliveries lost at $rate events/s; stopping"; break; fi
    done
done
