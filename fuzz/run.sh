#!/bin/sh
# Property-based fuzzing outside CI: 1,000,000 inputs per target (ingest decoder + validator, client-message
# decoder, pattern parser, filter parser). CI runs the same tests with 20,000. Usage: fuzz/run.sh [iterations] [seed]
set -eu
cd "$(dirname "$0")/.."
swift build --build-tests
STATUSHUB_FUZZ_ITERATIONS="${1:-1000000}" STATUSHUB_FUZZ_SEED="${2:-24301}" \
  swift test --skip-build --filter HostileInputTests 2>&1 | grep -E "fuzz |✔|✘|error"
