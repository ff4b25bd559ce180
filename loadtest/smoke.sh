#!/usr/bin/env bash
# CI smoke: proves the harness works end to end, in about 45 s. Reuses the debug binaries `swift test` built
# (builds them if missing), starts a memory-engine hub on a free loopback port, runs statushub-load for 10 s at
# 50 events/s with 20 subscribers, then 5 s of the plant mix on line subscriptions, then a restart storm of 300
# subscribers on two Redis nodes (hundred-thousand.sh), and fails unless each exits 0 (nothing lost, every publish
# accepted, every subscriber resumed), the first wrote its JSON and SVG, and the hub's own delivery histogram timed
# what its subscribers got. Stops everything it started. No speed is checked: that goes into loadtest/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. loadtest/lib.sh

WORK=$(mktemp -d /tmp/statushub-smoke.XXXXXX)
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_servers
    if [ "$status" -ne 0 ]; then
        for f in "$WORK/load.txt" "$WORK/hub.log"; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }; done
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

BIN=$(swift build --show-bin-path)
for product in statushub statushub-load; do
    [ -x "$BIN/$product" ] || swift build --product "$product" >&2
done
SERVER_PIN=() CLIENT_PIN=()
start_hub "$WORK" "$BIN" memory
status=0
LOAD_SUBSCRIBERS=20
timeout --signal=INT --kill-after=10 60 "$BIN/statushub-load" run --url "http://127.0.0.1:$HUB_PORT" \
    --hub-pid "$HUB_PID" --subscribers "$LOAD_SUBSCRIBERS" --rate 50 --duration 10 --mapping one-channel --quiet \
    --json "$WORK/smoke.json" --svg "$WORK/smoke.svg" >"$WORK/load.txt" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then say "statushub-load exited $status"; exit 1; fi
[ -s "$WORK/smoke.json" ] && grep -q '<svg' "$WORK/smoke.svg" || { say "no JSON or SVG written"; exit 1; }
# The hub's own delivery histogram (read from /metrics before and after) must have timed what the subscribers got:
# all of it, or all but the last event's fan-out if the hub had not committed that batch's figures when asked.
read -r delivered timed <<<"$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["deliveries"], (r.get("hub_latency") or {}).get("deliveries", 0))' "$WORK/smoke.json")"
if [ "$timed" -gt "$delivered" ] || [ "$timed" -lt $((delivered - LOAD_SUBSCRIBERS)) ]; then
    say "the hub timed $timed deliveries, the subscribers got $delivered"; exit 1
fi
# The plant mix (machines, operators, work orders, material, alerts, allocations) on line subscriptions: every
# event of every type must be accepted and delivered.
timeout --signal=INT --kill-after=10 60 "$BIN/statushub-load" run --url "http://127.0.0.1:$HUB_PORT" \
    --hub-pid "$HUB_PID" --subscribers 20 --rate 60 --duration 5 --mapping lines:5 --mix plant --quiet \
    >"$WORK/plant.txt" 2>&1 || { say "statushub-load --mix plant exited $?"; tail -n 30 "$WORK/plant.txt" >&2; exit 1; }
# The restart storm in miniature, on Redis: two nodes restarted under 300 subscribers that two harness processes hold
# (the way 100,000 are held where one process may not): every one must resume with `since` and get every event once.
SUBSCRIBERS=300 NODES=2 PUBLISH_EVERY=0.2 BIN="$BIN" timeout --kill-after=10 180 loadtest/hundred-thousand.sh \
    >"$WORK/storm.txt" 2>&1 || { say "hundred-thousand.sh (300 subscribers, 2 nodes) exited $?"; tail -n 30 "$WORK/storm.txt" >&2; exit 1; }
say "ok: $(grep -E '^(deliveries|latency p99|lost|hub.s own latency) ' "$WORK/load.txt" | tr -s ' ' | paste -sd ';' -); plant mix: $(grep -E '^(deliveries|lost) ' "$WORK/plant.txt" | tr -s ' ' | paste -sd ';' -); storm: $(grep -E '^  (resume|delivery check) ' "$WORK/storm.txt" | tr -s ' ' | paste -sd ';' -)"
