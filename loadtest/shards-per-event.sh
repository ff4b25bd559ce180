#!/usr/bin/env bash
# Ingest through 1 and through 3 independent Redis servers (redis.shards): accepted events/s and each
# redis-server's CPU per event — how far sharding carries a plant past one Redis core. One shard is today's engine
# (redis.url, one partition); three shards spread the default 12 partitions over three redis-servers (4 each). Both
# load the shipped catalog, counters and active sets included (CATALOG_WITHOUT_TALLIES=1 leaves out
# config/catalog/90-hub.yaml, as the first runs of 2026-12-01 did, before partitions could keep counters).
#
#   loadtest/shards-per-event.sh                        # release binaries (built unless SKIP_BUILD=1 or BIN is set)
#   SHARDS="1 3 1 3" BIN=.build-release/release loadtest/shards-per-event.sh
#   SHARDS="1 3 c3" BIN=.build-release/release loadtest/shards-per-event.sh   # c3: a 3-master Redis Cluster
#
# Knobs: SHARDS (counts to run, in order; cN is N redis-servers made one Redis Cluster by `redis-cli --cluster create`,
# the hub on it with redis.cluster and the same 12 partitions as three shards), RATE (events/s offered, 20000), DURATION (s, 10), BATCH (events per POST,
# 100), PUBLISHERS (8). Nothing is pinned: on a 2-core box the redis-servers, the hub and the client share both cores,
# so compare CPU per event, not events/s. Loopback only; everything started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
source loadtest/lib.sh

SHARDS=${SHARDS:-1 3}
RATE=${RATE:-20000}
DURATION=${DURATION:-10}
BATCH=${BATCH:-100}
PUBLISHERS=${PUBLISHERS:-8}
SERVER_PIN=()
[ -n "${BIN:-}" ] || build_release

WORK=$(mktemp -d)
SHARD_PIDS=()
cleanup() {
    stop_pid "$HUB_PID" statushub
    for pid in "${SHARD_PIDS[@]}"; do stop_pid "$pid" redis-server; done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

catalog=$(ls "$ROOT"/config/catalog/*.yaml | { if [ -n "${CATALOG_WITHOUT_TALLIES:-}" ]; then grep -v 90-hub.yaml; else cat; fi; } | sed 's/.*/"&"/' | paste -sd, -)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

for setup in $SHARDS; do
    count=${setup#c}
    cluster=""
    [ "$setup" != "$count" ] && cluster=1
    run="$WORK/shards-$setup-$RANDOM"
    mkdir -p "$run"
    ports=() SHARD_PIDS=()
    for index in $(seq "$count"); do
        port=$(free_port)
        mkdir -p "$run/redis-$index"
        cluster_arguments=()
        [ -n "$cluster" ] && cluster_arguments=(--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000)
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no "${cluster_arguments[@]}" \
            --logfile "$run/redis-$index/redis.log" --dir "$run/redis-$index" &
        SHARD_PIDS+=($!)
        wait_port "$port" "$!" 5 || { say "redis-server did not start"; exit 1; }
        ports+=("$port")
    done
    env_settings="STATUSHUB_CATALOG_DIRECTORY= STATUSHUB_CATALOG_FILES=[$catalog]"
    urls=$(printf '"redis://127.0.0.1:%s",' "${ports[@]}")
    if [ -n "$cluster" ]; then
        redis-cli --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") --cluster-yes >"$run/cluster-create.txt" 2>&1 \
            || { say "redis-cli --cluster create failed"; cat "$run/cluster-create.txt" >&2; exit 1; }
        for _ in $(seq 100); do
            redis-cli -p "${ports[0]}" cluster info | grep -q 'cluster_state:ok' && break
            sleep 0.1
        done
        HUB_ENV="$env_settings STATUSHUB_REDIS_CLUSTER=[${urls%,}] STATUSHUB_REDIS_PARTITIONS=12" start_hub "$run" "$BIN" memory
    elif [ "$count" = 1 ]; then
        REDIS_PORT=${ports[0]}
        HUB_ENV="$env_settings" start_hub "$run" "$BIN" redis
    else
        HUB_ENV="$env_settings STATUSHUB_REDIS_SHARDS=[${urls%,}]" start_hub "$run" "$BIN" memory
    fi
    before=()
    for pid in "${SHARD_PIDS[@]}"; do before+=("$(ticks "$pid")"); done
    timeout $((DURATION + 60)) "$BIN/statushub-load" run --url "http://127.0.0.1:$HUB_PORT" --subscribers 0 \
        --publishers "$PUBLISHERS" --batch "$BATCH" --rate "$RATE" --duration "$DURATION" --json "$run/out.json" >"$run/load.txt" 2>&1 || true
    accepted=$(grep -o '"events_accepted" *: *[0-9]*' "$run/out.json" | grep -o '[0-9]*$')
    per_s=$(grep -o '"accepted_per_s" *: *[0-9.]*' "$run/out.json" | grep -o '[0-9.]*$')
    cpu_each=()
    for index in "${!SHARD_PIDS[@]}"; do cpu_each+=($(( $(ticks "${SHARD_PIDS[$index]}") - before[index] ))); done
    awk -v n="$count" -v setup="$([ -n "$cluster" ] && echo "cluster of $count masters" || echo "$count shard(s)")" -v a="$accepted" -v s="$per_s" -v hz="$hz" -v each="${cpu_each[*]}" 'BEGIN {
        split(each, ticks, " "); total = 0; list = ""
        for (i = 1; i <= n; i++) { total += ticks[i]; list = list sprintf("%s%.2f", i > 1 ? " / " : "", ticks[i] / hz) }
        printf "%s: accepted %d (%.0f/s); redis-server CPU %s s (total %.2f s) = %.1f us per event in all, %.1f us per event per shard\n",
            setup, a, s, list, total / hz, a ? total / hz * 1e6 / a : 0, a ? total / hz * 1e6 / a / n : 0 }'
    stop_pid "$HUB_PID" statushub; HUB_PID=""
    for pid in "${SHARD_PIDS[@]}"; do stop_pid "$pid" redis-server; done
    SHARD_PIDS=()
done
