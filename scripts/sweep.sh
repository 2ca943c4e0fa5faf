#!/usr/bin/env bash
# Latency against throughput: runs `echo-bench pingpong --rate R` against
# each server at each of a series of rates and prints one result line per
# run (labelled `server=NAME`, for scripts/chart.py --latency), then, on
# standard error, a table of requested rate, achieved rate, p50, p99 and
# p99.9 per server.
#
#   scripts/sweep.sh [options] NAME=ADDR[=COMMAND] ...
#
# Servers are given, started, pinned and stopped as for scripts/compare.sh,
# which runs the sweep (servers take turns at each round).
#
# Options:
#   -R "R R ..."   rates, messages per second over all connections
#                  (default "20000 50000 100000 150000 200000 250000 300000")
#   -c N           connections (default 50)
#   -s BYTES       message size (default 64)
#   -D K           most messages in flight per connection (default: echo-bench's, 1024)
#   -d SECS        measured seconds per run (default 5)
#   -w SECS        warm-up seconds per run (default 1)
#   -r N           rounds (default 1; chart.py keeps each point's best p99)
#   -S CPU, -B CPU, -b PATH   as for scripts/compare.sh
#   -o FILE        also append the result lines to FILE
#
# Why a script and not an echo-bench mode: every point is a separate run
# with its own warm-up, and the servers are started, pinned and stopped
# around the runs; compare.sh already does that, and echo-bench stays a tool
# for one run whose result line is its interface.
#
# Example:
#   scripts/sweep.sh -R "50000 100000 200000" \
#     "mio-echo=127.0.0.1:7101=target/release/echo-server -l 127.0.0.1:7101" \
#     "epoll=127.0.0.1:7102=target/release/examples/peer epoll 127.0.0.1:7102" | tee sweep.txt
#   scripts/chart.py --latency sweep.txt -o docs/latency-vs-throughput.svg

set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
rates="20000 50000 100000 150000 200000 250000 300000"
connections=50
pass=()

usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

while getopts "R:c:s:D:d:w:r:S:B:o:b:h" opt; do
    case "$opt" in
        R) rates="$OPTARG" ;;
        c) connections="$OPTARG" ;;
        s | D | d | w | r | S | B | o | b) pass+=("-$opt" "$OPTARG") ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || usage
[[ "$connections" =~ ^[1-9][0-9]*$ ]] || { echo "error: -c wants one connection count" >&2; exit 2; }

lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
"$here/compare.sh" -c "$connections" -R "$rates" -P "50,99,99.9" "${pass[@]}" "$@" | tee "$lines"

# The table: one row per run, in the order they ran.
awk '
    /^result / {
        delete f
        for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        if (!header++) printf "%-12s %10s %10s %10s %10s %10s  %s\n", "server", "requested", "achieved", "p50_us", "p99_us", "p99.9_us", "kept up" > "/dev/stderr"
        printf "%-12s %10s %10s %10s %10s %10s  %s%s\n", f["server"], f["rate"], f["achieved_rate"], f["p50_us"], f["p99_us"], f["p99_9_us"], f["kept_up"], (f["errors"] == "0" ? "" : "  (" f["errors"] " errors)") > "/dev/stderr"
    }
' "$lines"
