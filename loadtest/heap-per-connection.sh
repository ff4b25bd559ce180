#!/usr/bin/env bash
# What an idle WebSocket connection keeps on the heap, by allocation site (heaptrack).
#
# Starts a release hub (memory engine, no auth, no compression offered by the harness) under heaptrack on 127.0.0.1,
# connects SUBSCRIBERS idle subscribers (`statushub-load run`, lines:100, 2 events/s for 4 s), stops the hub, then
# prints heaptrack's peak heap and the allocation sites alive at the peak with about one allocation per connection,
# each as bytes per connection, and the split between the hub's own code and the libraries under it (NIO, the
# runtime). loadtest/RESULTS.md ("an idle WebSocket keeps less") has the figures this gave.
#
# Builds nothing: BIN names a folder with release statushub and statushub-load. Needs heaptrack (Debian package).
# Loopback only; the harness is bounded by `timeout`; the hub is stopped on exit.
#
#   BIN=.build-release/release loadtest/heap-per-connection.sh
#   SUBSCRIBERS=5000 BIN=.build-release/release loadtest/heap-per-connection.sh
set -euo pipefail

SUBSCRIBERS=${SUBSCRIBERS:-2000}
cd "$(dirname "$0")/.."
. loadtest/lib.sh
[ -n "${BIN:-}" ] || { say "set BIN to a folder with release statushub and statushub-load (this script builds nothing)"; exit 2; }
command -v heaptrack >/dev/null && command -v heaptrack_print >/dev/null || { say "needs heaptrack (apt-get install -y heaptrack)"; exit 2; }

WORK=$(mktemp -d /tmp/statushub-heap.XXXXXX)
PORT=$(free_port)
HEAPTRACK_PID=""
cleanup() {
    [ -n "$HEAPTRACK_PID" ] && pkill -INT -f "statushub serve --host 127.0.0.1 --port $PORT" 2>/dev/null || true
    [ -n "$HEAPTRACK_PID" ] && wait "$HEAPTRACK_PID" 2>/dev/null || true
}
trap cleanup EXIT

STATUSHUB_SERVER_MAX_CONNECTIONS_PER_ADDRESS=0 STATUSHUB_SERVER_MAX_CONNECTIONS=$((SUBSCRIBERS + 100)) \
    heaptrack -o "$WORK/heap" "$BIN/statushub" serve --host 127.0.0.1 --port "$PORT" >"$WORK/hub.log" 2>&1 &
HEAPTRACK_PID=$!
wait_port "$PORT" "$HEAPTRACK_PID" 60 || { say "the hub did not start:"; tail -n 20 "$WORK/hub.log" >&2; exit 1; }
timeout 300 "$BIN/statushub-load" run --url "http://127.0.0.1:$PORT" --subscribers "$SUBSCRIBERS" --mapping lines:100 \
    --rate 2 --duration 4 --connect-concurrency 200 --quiet >"$WORK/load.txt" 2>&1 || { say "the harness failed:"; tail -n 20 "$WORK/load.txt" >&2; exit 1; }
grep -E "^(lost|subscribers) " "$WORK/load.txt" || true
pkill -INT -f "statushub serve --host 127.0.0.1 --port $PORT"
wait "$HEAPTRACK_PID" 2>/dev/null || true
HEAPTRACK_PID=""

heaptrack_print -f "$WORK/heap.zst" 2>/dev/null | grep -E "peak heap memory consumption" || true
heaptrack_print -f "$WORK/heap.zst" --print-peaks 1 --print-allocators 0 --print-temporary 0 --print-leaks 0 \
    --peak-limit 3 --sub-peak-limit 200 2>/dev/null | sed -n '/PEAK MEMORY/,$p' >"$WORK/peaks.txt"
python3 - "$WORK/peaks.txt" "$SUBSCRIBERS" <<'EOF' | swift demangle --simplified | cut -c1-200
import re, sys
lines = open(sys.argv[1]).read().splitlines()
connections = int(sys.argv[2])
starts = [i for i, l in enumerate(lines) if re.match(r'\s*[0-9.]+[KMG]?B? consumed over', l)] + [len(lines)]
unit = {'K': 1024, 'M': 1 << 20, 'G': 1 << 30}
# Frames that only allocate (the runtime, collections, closures' boxes): the first frame past them names the site.
plumbing = re.compile(r'swift_allocObject|swift_slowAlloc|^malloc|_ContiguousArrayBuffer|ContiguousArray|allocateUninitialized|'
                      r'_allocate|swift_|Array\.|Dictionary|_NativeSet|_NativeDictionary|Deque|CircularBuffer|init\(repeating|'
                      r'ManagedBuffer|^0x|outlined|thunk|partial apply|reserveCapacity|_copyToNewBuffer|append|HeapObject|_StringGuts')
split = {'hub': 0.0, 'libraries': 0.0}
rows = []
for a, b in zip(starts, starts[1:]):
    m = re.match(r'\s*([0-9.]+)([KMG]?)B? consumed over (\d+) calls', lines[a])
    calls = int(m.group(3))
    if not 0.95 * connections <= calls <= 1.05 * connections:
        continue  # not one per connection
    size = float(m.group(1)) * unit.get(m.group(2), 1)
    frames = [l.strip() for l in lines[a + 1:b] if l.strip() and not l.strip().startswith(('in /', 'at '))]
    site = next((f for f in frames if not plumbing.search(f)), frames[0] if frames else '?')
    ours = any(name in f for f in frames[:4] for name in ('StatusHub', 'SessionInbox', 'WebSocketUpgrade'))
    split['hub' if ours else 'libraries'] += size
    rows.append((size / connections, f'{"hub " if ours else "lib "} {site[:150]}'))
for per_connection, text in sorted(rows, reverse=True):
    print(f'{per_connection:7.0f} B  {text}')
print(f"per connection: the hub's code {split['hub'] / connections:.0f} B, the libraries' {split['libraries'] / connections:.0f} B")
EOF
say "heaptrack data in $WORK"
