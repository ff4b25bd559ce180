#!/usr/bin/env bash
# Two builds of the hub side by side on the ingest scenario: alternating A and B, ROUNDS times, each run on fresh
# servers (redis-server + hub pinned to CPU $SERVER_CPU, the harness on CPU $CLIENT_CPU), so both see the same
# machine noise. Per run: accepted single-event POSTs/s, and redis-server's CPU per accepted event (its utime +
# stime from /proc over the run, divided by the events accepted), the time Redis spent inside the append script
# per event (INFO commandstats: less disturbed by other load on the machine than CPU time) and script calls per event.
#
#   BIN_A=/tmp/before BIN_B=/tmp/after loadtest/ab-ingest.sh
#
# BIN_A/BIN_B hold a release `statushub` each; `statushub-load` comes from $LOAD_BIN (default: BIN_B).
# Knobs: ROUNDS (3), RATE (20000), DURATION (10), PUBLISHERS (32), BATCH (1); ENV_A / ENV_B: settings for each hub
# (as HUB_ENV, `loadtest/lib.sh`), so one build can be compared with itself under two configurations; LOAD_ARGS: more
# `statushub-load run` options for both (e.g. `--api-key KEY`).
#
#   # a line-scoped publisher key against an unscoped one (the append script's line check):
#   KEYS='[{"name":"mes","hash":"'$(printf %s k | statushub hash-key)'"'; LINES='"lines":["Line-0",…]'
#   BIN_A=b BIN_B=b ENV_A="STATUSHUB_AUTH_API_KEYS=$KEYS}]" ENV_B="STATUSHUB_AUTH_API_KEYS=$KEYS,$LINES}]" \
#       LOAD_ARGS="--api-key k" loadtest/ab-ingest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. loadtest/lib.sh

BIN_A=${BIN_A:?set BIN_A} BIN_B=${BIN_B:?set BIN_B} LOAD_BIN=${LOAD_BIN:-$BIN_B}
ROUNDS=${ROUNDS:-3} RATE=${RATE:-20000} DURATION=${DURATION:-10} PUBLISHERS=${PUBLISHERS:-32} BATCH=${BATCH:-1}
WORK=$(mktemp -d /tmp/statushub-ab.XXXXXX)
cleanup() { local status=$?; trap - EXIT INT TERM; stop_servers; rm -rf "$WORK"; exit "$status"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
setup_pinning
TICKS=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# "calls usec" of EVALSHA so far: the append script's calls, and the time Redis spent running them.
evalsha_stats() {
    redis-cli -p "$REDIS_PORT" INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),usec=\([0-9]*\),.*/\1 \2/p'
}

printf '%s\n' "round	build	accepted/s	redis_cpu_us/event	script_us/event	calls/event	server_cpu_%"
for round in $(seq "$ROUNDS"); do
    for build in A B; do
        bin=$BIN_A; [ "$build" = B ] && bin=$BIN_B
        rm -rf "${WORK:?}"/*
        hub_env=${ENV_A:-}; [ "$build" = B ] && hub_env=${ENV_B:-}
        start_redis "$WORK"; HUB_ENV=$hub_env start_hub "$WORK" "$bin" redis
        before=$(cpu_ticks "$REDIS_PID"); read -r calls_before usec_before <<<"$(evalsha_stats)"
        "${CLIENT_PIN[@]}" timeout --signal=INT --kill-after=10 $((DURATION + 60)) "$LOAD_BIN/statushub-load" run \
            --url "http://127.0.0.1:$HUB_PORT" --hub-pid "$HUB_PID" --hub-pid "$REDIS_PID" \
            --subscribers 0 --publishers "$PUBLISHERS" --rate "$RATE" --duration "$DURATION" --batch "$BATCH" \
            --mapping one-channel --payload-bytes 200 --max-in-flight 64 --quiet --json "$WORK/run.json" ${LOAD_ARGS:-} \
            >"$WORK/run.txt" 2>&1 || true
        after=$(cpu_ticks "$REDIS_PID"); read -r calls_after usec_after <<<"$(evalsha_stats)"
        stop_servers
        jq -r --arg r "$round" --arg b "$build" --argjson ticks $((after - before)) --argjson hz "$TICKS" \
            --argjson calls $((calls_after - calls_before)) --argjson usec $((usec_after - usec_before)) \
            '[$r, $b, (.accepted_per_s|floor), (if .events_accepted > 0 then ($ticks / $hz * 1e6 / .events_accepted * 10 | round) / 10 else 0 end),
              (if .events_accepted > 0 then ($usec / .events_accepted * 100 | round) / 100 else 0 end),
              (if .events_accepted > 0 then ($calls / .events_accepted * 1000 | round) / 1000 else 0 end),
              (.hub.cpu_percent_of_one_core // 0 | . * 10 | round / 10)] | @tsv' "$WORK/run.json"
    done
done
