#!/usr/bin/env bash
# StatusHub beside Nchan (Debian's libnginx-mod-nchan, nginx with one worker) through the same harness and the
# same scenario file, each step on fresh servers pinned to CPU $SERVER_CPU (client on CPU $CLIENT_CPU).
#
#   loadtest/compare-nchan.sh                                   # fanout-compare.env, Redis storage on both
#   STORAGE="memory redis" loadtest/compare-nchan.sh loadtest/scenarios/filtered.env
#
# Prints each run's summary line, then per storage: the highest rate each server held with p99 <= the
# scenario's STOP_P99_MS and no loss, and at each rate both reached the ratios StatusHub / Nchan of p99 and of
# server CPU per delivery (hub + redis-server vs nginx + redis-server). Needs nginx-light (or nginx) and
# libnginx-mod-nchan. Everything started is stopped on exit (run-scenario.sh's traps).
set -euo pipefail
cd "$(dirname "$0")/.."
SCENARIO=${1:-loadtest/scenarios/fanout-compare.env}
STORAGE=${STORAGE:-redis}
SUMMARY=$(mktemp /tmp/statushub-compare.XXXXXX)
trap 'rm -f "$SUMMARY"' EXIT
TARGETS=()
for storage in $STORAGE; do TARGETS+=("statushub-$storage" "nchan-$storage"); done
SUMMARY="$SUMMARY" loadtest/run-scenario.sh "$SCENARIO" "${TARGETS[@]}"
# shellcheck disable=SC1090
STOP_P99_MS=500; . "$SCENARIO"
echo
echo "== ratios (StatusHub / Nchan), p99 limit $STOP_P99_MS ms"
for storage in $STORAGE; do
    awk -F'\t' -v hub="statushub-$storage" -v nchan="nchan-$storage" -v limit="$STOP_P99_MS" '
        $2 == hub   { hp[$3] = $7; hc[$3] = $11; if ($7 <= limit && $9 == 0 && $3 > hmax) hmax = $3 }
        $2 == nchan { np[$3] = $7; nc[$3] = $11; if ($7 <= limit && $9 == 0 && $3 > nmax) nmax = $3 }
        END {
            printf "%s: highest rate with p99 <= %s ms and no loss: StatusHub %s, Nchan %s events/s", hub, limit, hmax + 0, nmax + 0
            if (nmax > 0) printf " (ratio %.2f)", hmax / nmax
            printf "\n  rate  p99 hub/nchan (ms)        ratio   cpu µs/delivery hub/nchan   ratio\n"
            for (r in hp) if (r in np) printf "  %5s  %8.3f / %-8.3f  %6.2f   %7.3f / %-7.3f  %6.2f\n", r, hp[r], np[r], (np[r] > 0 ? hp[r] / np[r] : 0), hc[r], nc[r], (nc[r] > 0 ? hc[r] / nc[r] : 0)
        }' "$SUMMARY"
done
