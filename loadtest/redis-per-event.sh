#!/usr/bin/env bash
# redis-server CPU per accepted event for ingest through one Redis master — how far one Redis core goes — with
# or without a replica that must confirm each write (redis.min_replicas_acked, WAIT).
#
#   loadtest/redis-per-event.sh                          # release binaries (built unless SKIP_BUILD=1)
#   BIN=.build/debug loadtest/redis-per-event.sh         # other binaries: redis-server's share of the work is the same
#   REPLICA=1 ACKED=1 loadtest/redis-per-event.sh                # a replica, and acknowledge only what it confirmed
#
# Knobs: RATE (events/s offered, default 20000), DURATION (s, 10), BATCH (events per POST, 100), PUBLISHERS (8).
# Prints accepted events/s, redis-server's and the hub's CPU seconds (utime+stime from /proc) and µs of each per event,
# EVALSHA's own µs per call and per event (INFO commandstats), then every command's calls and µs per event — the
# ones the append script runs through `redis.call` among them — and what EVALSHA spent besides those commands: Lua
# and Redis's machinery around each `redis.call`. Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh

RATE=${RATE:-20000}
DURATION=${DURATION:-10}
BATCH=${BATCH:-100}
PUBLISHERS=${PUBLISHERS:-8}
REPLICA=${REPLICA:-0}
ACKED=${ACKED:-0}
SERVER_PIN=()
[ -n "${BIN:-}" ] || build_release

WORK=$(mktemp -d)
REPLICA_PID=
cleanup() {
    stop_servers
    [ -n "$REPLICA_PID" ] && stop_pid "$REPLICA_PID" redis-replica
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

start_redis "$WORK"
redis-cli -p "$REDIS_PORT" config set repl-diskless-sync-delay 0 >/dev/null
if [ "$REPLICA" = 1 ]; then
    REPLICA_PORT=$(free_port)
    mkdir -p "$WORK/replica"
    redis-server --port "$REPLICA_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        --logfile "$WORK/replica/redis.log" --dir "$WORK/replica" --replicaof 127.0.0.1 "$REDIS_PORT" &
    REPLICA_PID=$!
    for _ in $(seq 100); do
        redis-cli -p "$REPLICA_PORT" info replication 2>/dev/null | grep -q master_link_status:up && break
        sleep 0.1
    done
fi
STATUSHUB_REDIS_MIN_REPLICAS_ACKED=$ACKED start_hub "$WORK" "$BIN" redis
redis-cli -p "$REDIS_PORT" config resetstat >/dev/null

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks "$REDIS_PID")
hub_before=$(ticks "$HUB_PID")
timeout $((DURATION + 60)) "$BIN/statushub-load" run --url "http://127.0.0.1:$HUB_PORT" --subscribers 0 \
    --publishers "$PUBLISHERS" --batch "$BATCH" --rate "$RATE" --duration "$DURATION" --json "$WORK/out.json" >"$WORK/load.txt" || true
after=$(ticks "$REDIS_PID")
hub_after=$(ticks "$HUB_PID")
accepted=$(grep -o '"events_accepted" *: *[0-9]*' "$WORK/out.json" | grep -o '[0-9]*$')
per_s=$(grep -o '"accepted_per_s" *: *[0-9.]*' "$WORK/out.json" | grep -o '[0-9.]*$')
redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' >"$WORK/commandstats.txt"
evalsha=$(grep '^cmdstat_evalsha:' "$WORK/commandstats.txt" || true)
calls=$(echo "$evalsha" | sed -E 's/^cmdstat_evalsha:calls=([0-9]+),.*/\1/')
usec=$(echo "$evalsha" | sed -E 's/^cmdstat_evalsha:calls=[0-9]+,usec=([0-9]+),.*/\1/')
awk -v a="$accepted" -v s="$per_s" -v t=$((after - before)) -v h=$((hub_after - hub_before)) -v hz="$hz" -v c="$calls" -v u="$usec" \
    -v replica="$REPLICA" -v acked="$ACKED" 'BEGIN {
    cpu = t / hz; hub = h / hz
    printf "replica %s, min_replicas_acked %s: accepted %d (%.0f/s); redis-server CPU %.2f s = %.1f us/event; hub CPU %.2f s = %.1f us/event; EVALSHA %d calls, %.0f us/call, %.1f us/event\n",
        replica, acked, a, s, cpu, a ? cpu * 1e6 / a : 0, hub, a ? hub * 1e6 / a : 0, c, c ? u / c : 0, a ? u / a : 0 }'
# Per command: calls and µs per accepted event. What the hub sends outside the script (WAIT, PING, reads, the
# filing SADDs) is listed too but, SADD aside, not counted as the script's; SADD also runs in the script (counters'
# indexes), and counting all of it there makes the machinery's share below a lower bound.
awk -F'[:,=]' -v a="$accepted" -v total="$usec" '/^cmdstat_/ {
    name = substr($1, 9); calls = $3; us = $5
    if (name == "evalsha" || !a) next
    printf "  %-18s %6.2f calls/event %6.2f us/event\n", name, calls / a, us / a
    if (name !~ /^(wait|ping|info|hello|select|subscribe|ssubscribe|psubscribe|zrangebyscore|xrange|xrevrange|mget|scan|sscan|smembers)$/ && name !~ /^(config|client|script)\|/) inside += us
} END { if (a) printf "  EVALSHA besides the commands it ran (Lua and the redis.call machinery): %.1f us/event\n", (total - inside) / a }' "$WORK/commandstats.txt"
