#!/usr/bin/env python3
"""Idle CPU of a hub that remembers many idempotency keys (issue 9, item 4).

Posts --keys events, each with its own idempotency_key, in batches of 1,000 to a running hub, then samples the
hub process's CPU time (/proc/PID/stat) over --seconds of idleness and prints the percentage of one core.
Loopback only; stops by itself.

    python3 loadtest/idempotency-idle.py --url http://127.0.0.1:8080 --pid $(pgrep -f 'statushub serve') --keys 1000000
"""
import argparse, json, os, time, urllib.request

def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    started = time.monotonic()
    for start in range(0, args.keys, 1000):
        events = [{"event_type": "alert_raised", "entity_type": "machine", "entity_id": f"M-{i % 500}",
                   "timestamp": "2025-11-18T14:23:45.678Z", "data": {"severity": "low", "message": "keyed"},
                   "metadata": {"source": "idle-test", "triggered_by": "system"}, "idempotency_key": f"key-{i}"}
                  for i in range(start, min(args.keys, start + 1000))]
        request = urllib.request.Request(args.url + "/v1/events", data=json.dumps(events).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert reply.status == 202, reply.status
    print(f"posted {args.keys} keyed events in {time.monotonic() - started:.1f} s; hub RSS {rss_mib(args.pid):.0f} MiB")
    time.sleep(1)
    before, t0 = cpu_seconds(args.pid), time.monotonic()
    time.sleep(args.seconds)
    used, elapsed = cpu_seconds(args.pid) - before, time.monotonic() - t0
    print(f"idle CPU with {args.keys} idempotency keys: {100 * used / elapsed:.1f} % of one core over {elapsed:.0f} s")

if __name__ == "__main__":
    main()
