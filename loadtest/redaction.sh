#!/usr/bin/env bash
# Fan-out CPU with restricted fields (issue 10 §5): SUBSCRIBERS dashboards on resource-status while operators'
# status events carry their name (restricted to the claim pii), in three scenarios run side by side, REPEATS times
# each, interleaved:
#   one-view   every subscriber's token holds pii: one frame per event
#   two-views  half the tokens hold pii, half do not: two frames per event (with and without the name)
#   no-token   subscribers without tokens (no redaction looked at beyond the category check)
# Prints the hub's CPU per delivery (µs) for each run; the JSON reports stay in loadtest/out/.
#
# Builds release binaries (SKIP_BUILD=1 reuses them; BIN=dir takes statushub and statushub-load from dir). Hub on
# CPU 0, harness on CPU 1, memory engine (ENGINE=redis for Redis). Loopback only, bounded by `timeout`.
#
#   loadtest/redaction.sh
#   SUBSCRIBERS=500 RATE=50 REPEATS=2 BIN=.build-release/release loadtest/redaction.sh
set -euo pipefail

SUBSCRIBERS=${SUBSCRIBERS:-1000}
RATE=${RATE:-100}
DURATION=${DURATION:-10}
REPEATS=${REPEATS:-3}
ENGINE=${ENGINE:-memory}
SECRET=redaction-benchmark-secret-0123456789abcdef

cd "$(dirname "$0")/.."
ROOT=$(pwd)
. loadtest/lib.sh
prepare_benchmark redaction

token() {  # the see claim as a JSON list
    python3 - "$SECRET" "$1" <<'PY'
import base64, hashlib, hmac, json, sys, time
def b64(raw): return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"patterns": ["*"], "exp": int(time.time()) + 3600, "see": json.loads(sys.argv[2])}).encode())
print(head + "." + body + "." + b64(hmac.new(sys.argv[1].encode(), (head + "." + body).encode(), hashlib.sha256).digest()))
PY
}
PII=$(token '["pii"]')
FLOOR=$(token '[]')

run() {  # scenario repeat
    local tokens=()
    case "$1" in
        one-view) tokens=(--token "$PII") ;;
        two-views) tokens=(--token "$PII" --token "$FLOOR") ;;
        no-token) tokens=() ;;
    esac
    mkdir -p "$WORK/$1-$2"
    [ "$ENGINE" = redis ] && start_redis "$WORK/$1-$2"
    STATUSHUB_AUTH_JWT_HS256_SECRET=$SECRET start_hub "$WORK/$1-$2" "$HUB_DIR" "$ENGINE"
    local json="$OUT_DIR/redaction-$1-$2-$STAMP.json"
    timeout --signal=INT --kill-after=10 "$((DURATION + 120))" \
        "${CLIENT_PIN[@]}" "$BIN/statushub-load" run --url "http://127.0.0.1:$HUB_PORT" --hub-pid "$HUB_PID" \
        --subscribers "$SUBSCRIBERS" --rate "$RATE" --duration "$DURATION" --mix operator-status --quiet \
        "${tokens[@]}" --json "$json" >"$WORK/$1-$2/load.out" || { cat "$WORK/$1-$2/load.out" >&2; return 1; }
    python3 - "$1" "$2" "$json" <<'PY'
import json, sys
report = json.load(open(sys.argv[3]))
print(f"{sys.argv[1]:10} run {sys.argv[2]}: hub {report['hub']['cpu_us_per_delivery']:.2f} µs CPU per delivery, "
      f"{report['deliveries']} delivered, {report['lost']} lost, p99 {report['latency']['p99_ms']:.1f} ms")
PY
    stop_servers
}

export STATUSHUB_AUTH_JWT_HS256_SECRET=$SECRET
for repeat in $(seq "$REPEATS"); do
    for scenario in one-view two-views no-token; do run "$scenario" "$repeat"; done
done
