#!/usr/bin/env python3
"""Inclusive and self shares per function from a `perf record -g` of a Swift binary that perf cannot symbolize.

Debian's perf 6.1 reads no symbols from the hub's release binary ("symsrc__init: cannot get elf header", also with
the debug info stripped) and shows its frames as bare addresses; this resolves them with `nm` and demangles with
`swift-demangle`. Each function counts once per sample however often it recurs in the stack.

    perf record -F 2999 -g -p <hub pid> -o hub.data -- sleep 6
    perf script -i hub.data -F ip,sym,dso > hub.script
    loadtest/perf-report.py <the statushub binary> hub.script                       # the top 60
    loadtest/perf-report.py <binary> hub.script --exclude 'answerClose|close0'      # leave out samples through these
    loadtest/perf-report.py <binary> hub.script --focus 'runJobInEstablished'       # what runs below these frames
"""
import argparse
import bisect
import collections
import re
import shutil
import subprocess

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("binary")
parser.add_argument("script", help="output of perf script -F ip,sym,dso")
parser.add_argument("--top", type=int, default=60)
parser.add_argument("--exclude", help="drop samples with a frame matching this regular expression (raw or demangled names)")
parser.add_argument("--focus", help="keep samples through a frame matching this; count only that frame and what it called")
args = parser.parse_args()

symbols = []
for line in subprocess.run(["nm", "-n", "--defined-only", args.binary], capture_output=True, text=True, check=True).stdout.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[1] in "tTwW":
        symbols.append((int(parts[0], 16), parts[2]))
starts = [start for start, _ in symbols]
name = args.binary.rsplit("/", 1)[-1]

samples, stack = [], []
frame = re.compile(r"([0-9a-f]+) (.*) \((.*)\)$")
with open(args.script) as script:
    for line in script:
        line = line.strip()
        if not line:
            if stack:
                samples.append(stack)
            stack = []
            continue
        match = frame.match(line)
        if not match:
            continue
        ip, symbol, dso = match.groups()
        if dso.endswith("/" + name):
            index = bisect.bisect_right(starts, int(ip, 16)) - 1
            symbol = symbols[index][1] if index >= 0 else ip
        stack.append(symbol)
if stack:
    samples.append(stack)

demangler = shutil.which("swift-demangle") or "/opt/swift/usr/bin/swift-demangle"
raw = sorted({symbol for stack in samples for symbol in stack})
demangled = subprocess.run([demangler, "--simplified", "--compact"], input="\n".join(raw), capture_output=True, text=True).stdout.splitlines()
readable = dict(zip(raw, demangled)) if len(demangled) == len(raw) else {symbol: symbol for symbol in raw}

total = len(samples)
inclusive, own = collections.Counter(), collections.Counter()
for stack in samples:
    names = [readable[symbol] for symbol in stack]
    if args.exclude and any(re.search(args.exclude, n) or re.search(args.exclude, s) for n, s in zip(names, stack)):
        continue
    if args.focus:
        hits = [i for i, n in enumerate(names) if re.search(args.focus, n)]
        if not hits:
            continue
        names = names[: max(hits) + 1]
    for n in set(names):
        inclusive[n] += 1
    own[names[0]] += 1
print(f"{total} samples; shares of all of them")
for n, count in inclusive.most_common(args.top):
    print(f"{100 * count / total:6.2f}% incl {100 * own[n] / total:5.2f}% self  {n[:170]}")
