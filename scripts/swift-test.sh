#!/usr/bin/env bash
# `swift test`, with its whole output as usual, and — when it fails — a digest printed last: the failed tests and
# issues, and for a crash the crashing thread's frames and the tests that were running. CI keeps only the tail of
# a run's output, and a crash's tail is the backtracer's register dump and image list, which names no test.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"${SWIFT:-swift}" test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] && exit 0
python3 - "$log" <<'PY'
import re, sys
lines = open(sys.argv[1], errors="replace").read().splitlines()
print("\n==== swift test failed: digest ====")
failed = [l for l in lines if "✘" in l]
for l in failed[:80]:
    print(l)
if len(failed) > 80:
    print(f"... and {len(failed) - 80} more failure lines")
started, ended = {}, set()
for l in lines:
    m = re.search(r'◇ Test (.+?) started\.', l)
    if m and not m.group(1).startswith("case passing"):
        started.setdefault(m.group(1), len(started))
    m = re.search(r'[✔✘] Test (.+?) (passed|failed|skipped)', l)
    if m:
        ended.add(m.group(1))
crash = next((i for i, l in enumerate(lines) if "Program crashed" in l or "Fatal error" in l), None)
if crash is not None:
    print("\n-- crash --")
    print(lines[crash])
    # The backtracer lists every thread; the one that crashed is marked.
    thread = next((i for i, l in enumerate(lines) if i > crash and re.match(r"Thread \d+ .*crashed:$", l)), crash + 1)
    print("\n".join(lines[thread:thread + 14]))
    running = [name for name in sorted(started, key=started.get) if name not in ended]
    print(f"\n-- tests started and not ended when it crashed ({len(running)}) --")
    for name in running[-40:]:
        print(name)
PY
exit "$status"
