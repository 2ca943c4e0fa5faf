#!/usr/bin/env bash
# Runs `echo-bench pingpong` against several echo servers over a list of
# connection counts and prints one result line per run, labelled with
# `server=NAME` (the input scripts/chart.py expects).
#
#   scripts/compare.sh [options] NAME=ADDR[=COMMAND] ...
#
#   NAME=ADDR           a server already running at ADDR
#   NAME=ADDR=COMMAND   start COMMAND for each round (exec'd through sh -c,
#                       so it must run the server in the foreground, on
#                       ADDR), pinned to --server-cpu; wait until ADDR
#                       answers; stop it (by its PID, SIGTERM, then SIGKILL
#                       after 5 s) when its runs are done. Its CPU time
#                       during each run is added as server_cpu_secs=.
#
# Options:
#   -c "N N ..."     connection counts (default "1 10 100 1000")
#   -R "R R ..."     open loop: for each count, one run per rate R
#                    (`pingpong --rate R`, messages per second in all);
#                    default: closed loop (scripts/sweep.sh uses this)
#   -P LIST          --percentiles for echo-bench (default 50,99,99.9)
#   -s BYTES         message size (default 64)
#   -D K             messages in flight per connection (default 1; with -R,
#                    echo-bench's default for --rate)
#   -d SECS          measured seconds per run (default 5)
#   -w SECS          warm-up seconds per run (default 1)
#   -r N             rounds; servers take turns within each round, so a
#                    slow spell of a shared machine hits them alike; chart.py
#                    keeps each server's best (default 1)
#   -S CPU           CPU for started servers (default 0; "" to not pin)
#   -B CPU           CPU for echo-bench (default 1; "" to not pin)
#   -o FILE          also append the result lines to FILE
#   -b PATH          echo-bench binary (default $ECHO_BENCH, else
#                    target/release/echo-bench; build it with
#                    `cargo build --release --bin echo-bench`)
#
# Loopback only: ADDR must be 127.x.x.x:PORT or [::1]:PORT. Every run is
# bounded (echo-bench's own deadlines, and `timeout` around it), and only the
# servers this script started are ever stopped.
#
# Example:
#   scripts/compare.sh -c "1 10 100 1000" -r 3 \
#     "mio-echo=127.0.0.1:7101=target/release/echo-server -l 127.0.0.1:7101" \
#     "other=127.0.0.1:7102" | tee results.txt
#   scripts/chart.py results.txt > chart.svg

set -euo pipefail

counts="1 10 100 1000"
rates=""
percentiles="50,99,99.9"
size=64
depth=""
duration=5
warmup=1
rounds=1
server_cpu=0
bench_cpu=1
output=""
bench="${ECHO_BENCH:-target/release/echo-bench}"

usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2
    exit 2
}
die() {
    echo "error: $*" >&2
    exit 2
}

while getopts "c:R:P:s:D:d:w:r:S:B:o:b:h" opt; do
    case "$opt" in
        c) counts="$OPTARG" ;;
        R) rates="$OPTARG" ;;
        P) percentiles="$OPTARG" ;;
        s) size="$OPTARG" ;;
        D) depth="$OPTARG" ;;
        d) duration="$OPTARG" ;;
        w) warmup="$OPTARG" ;;
        r) rounds="$OPTARG" ;;
        S) server_cpu="$OPTARG" ;;
        B) bench_cpu="$OPTARG" ;;
        o) output="$OPTARG" ;;
        b) bench="$OPTARG" ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || usage
[ -x "$bench" ] || die "no echo-bench at $bench (cargo build --release --bin echo-bench, or -b PATH)"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "-r wants a whole number of rounds, 1 or more"
for n in $counts; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "-c wants connection counts, such as \"1 10 100\""
done
for r in $rates; do
    [[ "$r" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "-R wants rates in messages per second, such as \"1000 50000\""
done
[ -z "$depth" ] || [[ "$depth" =~ ^[1-9][0-9]*$ ]] || die "-D wants a whole number of messages"
# Closed loop: one run per count, marked by an empty rate.
runs="${rates:--}"
for t in "$duration" "$warmup"; do
    [[ "$t" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "-d and -w want seconds, such as 5 or 0.5"
done

names=() addrs=() commands=()
for spec in "$@"; do
    name="${spec%%=*}"
    rest="${spec#*=}"
    [ "$name" != "$spec" ] && [ -n "$name" ] || die "expected NAME=ADDR[=COMMAND], got: $spec"
    [[ "$name" =~ ^[A-Za-z0-9._+-]+$ ]] || die "server names may use letters, digits and ._+- only: $name"
    addr="${rest%%=*}"
    command=""
    [ "$addr" != "$rest" ] && command="${rest#*=}"
    [[ "$addr" =~ ^(127\.[0-9]+\.[0-9]+\.[0-9]+|\[::1\]):[0-9]+$ ]] ||
        die "$name: $addr is not a loopback IP:PORT (127.x.x.x:PORT or [::1]:PORT)"
    names+=("$name") addrs+=("$addr") commands+=("$command")
done

pin() { # pin CPU COMMAND...: run COMMAND on CPU, or unpinned if CPU is empty
    local cpu="$1"
    shift
    if [ -n "$cpu" ]; then taskset -c "$cpu" "$@"; else "$@"; fi
}

answers() { # answers ADDR: whether an echo server there echoes one message
    "$bench" connections --addr "$1" --count 1 --timeout 1 >/dev/null 2>&1
}

server_pid=""
stop_server() {
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

cpu_ticks() { # utime + stime of a process, in clock ticks
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
tick=$(getconf CLK_TCK)

# The longest one echo-bench run may take: its own deadlines plus slack.
run_limit=$(awk -v d="$duration" -v w="$warmup" 'BEGIN { printf "%d", d + w + 30 }')

emit() {
    echo "$1"
    if [ -n "$output" ]; then echo "$1" >>"$output"; fi
}

for round in $(seq "$rounds"); do
    for i in "${!names[@]}"; do
        name="${names[$i]}" addr="${addrs[$i]}" command="${commands[$i]}"
        if [ -n "$command" ]; then
            # Whatever answers now is not the server we are about to start.
            if answers "$addr"; then
                die "$name: something already answers on $addr; stop it or choose another address"
            fi
            # Started directly (not through a function, whose $! would be a
            # subshell): taskset and sh both exec, so $! is the server.
            if [ -n "$server_cpu" ]; then
                taskset -c "$server_cpu" sh -c "exec $command" >&2 &
            else
                sh -c "exec $command" >&2 &
            fi
            server_pid=$!
            up=""
            for _ in $(seq 50); do
                kill -0 "$server_pid" 2>/dev/null || break
                if answers "$addr"; then
                    up=yes
                    break
                fi
                sleep 0.2
            done
            [ -n "$up" ] || die "$name: the server did not answer on $addr within 10 s"
        fi
        for n in $counts; do
          for rate in $runs; do
            args=(--connections "$n" --size "$size" --duration "$duration" --warmup "$warmup"
                --percentiles "$percentiles")
            [ -n "$depth" ] && args+=(--depth "$depth")
            what="$n connections"
            if [ "$rate" != "-" ]; then
                args+=(--rate "$rate")
                what+=" at $rate/s"
            fi
            before=""
            [ -n "$server_pid" ] && before=$(cpu_ticks "$server_pid")
            set +e
            line=$(pin "$bench_cpu" timeout -k 5 "$run_limit" "$bench" pingpong --addr "$addr" \
                "${args[@]}" | grep '^result ')
            status=$?
            set -e
            if [ -z "$line" ]; then
                echo "compare: $name at $what: no result (exit $status)" >&2
                continue
            fi
            [ "$status" -eq 0 ] || echo "compare: $name at $what: errors (exit $status)" >&2
            extra=" round=$round"
            if [ -n "$before" ]; then
                after=$(cpu_ticks "$server_pid")
                extra+=$(awk -v t="$((after - before))" -v hz="$tick" \
                    'BEGIN { printf " server_cpu_secs=%.2f", t / hz }')
            fi
            emit "result server=$name${line#result}$extra"
          done
        done
        stop_server
    done
done
