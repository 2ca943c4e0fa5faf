#!/usr/bin/env bash
# Counted costs of an echo server under a fixed load, for BENCHMARKS.md:
#
#   scripts/costs.sh instructions NAME PORT COMMAND...
#       User-space instructions per echo, counted by callgrind
#       (deterministic, unlike time): the server runs under
#       `valgrind --tool=callgrind` on CPU 0 while echo-bench drives 100
#       connections x 64 B ping-pong from CPU 1 for 8 s; instructions over
#       the server's whole life / echoes verified (start-up included: under
#       0.5 per echo at this length).
#   scripts/costs.sh syscalls NAME PORT COMMAND...
#       System calls per echo: `perf stat -e raw_syscalls:sys_enter` on the
#       server for 3 s in the middle of a 6 s run, / echoes/s x 3.
#   scripts/costs.sh memory NAME PORT COUNT COMMAND...
#       Resident memory per idle connection: the server's VmRSS before and
#       while echo-bench holds COUNT connections (one echo each), / COUNT;
#       also the time to open them all (a connection storm).
#
# COMMAND runs the server in the foreground on 127.0.0.1:PORT, e.g.
#   scripts/costs.sh instructions mio-echo 7101 target/release/echo-server -l 127.0.0.1:7101
#   scripts/costs.sh instructions epoll 7102 target/release/examples/peer epoll 127.0.0.1:7102
# Build first: cargo build --release --bins --examples
# Needs valgrind (instructions) and perf from Debian's linux-perf (syscalls).
# Loopback only; every wait is bounded; only the server it started is stopped.
set -euo pipefail

mode=${1:?mode: instructions, syscalls or memory}
name=${2:?name}
port=${3:?port}
shift 3
count=10000
if [ "$mode" = memory ]; then
    count=${1:?count}
    shift
fi
bench=${ECHO_BENCH:-target/release/echo-bench}
tmp=$(mktemp -d)
pid=

stop() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap stop EXIT

wait_ready() {
    for _ in $(seq 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "error: nothing answers on 127.0.0.1:$port after 30 s" >&2
    exit 1
}

field() { grep -o "$1=[0-9.]*" | head -1 | cut -d= -f2; }

case "$mode" in
instructions)
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$@" 2>"$tmp/err" &
    pid=$!
    wait_ready
    res=$(taskset -c 1 timeout 60 "$bench" pingpong --addr "127.0.0.1:$port" \
        --connections 100 --size 64 --duration 8 --warmup 1 --timeout 20 | grep '^result')
    kill -TERM "$pid"
    wait "$pid" || true
    pid=
    ir=$(grep -m1 '^summary:' "$tmp/cg.out" | awk '{print $2}')
    bytes=$(echo "$res" | field verified_bytes)
    python3 -c "print('cost mode=instructions server=$name instructions=$ir echoes=%d per_echo=%.1f' % ($bytes // 64, $ir / ($bytes / 64)))"
    ;;
syscalls)
    taskset -c 0 "$@" 2>"$tmp/err" &
    pid=$!
    wait_ready
    taskset -c 1 timeout 60 "$bench" pingpong --addr "127.0.0.1:$port" \
        --connections 100 --size 64 --duration 6 --warmup 1 >"$tmp/bench" &
    bpid=$!
    sleep 2
    perf stat -e raw_syscalls:sys_enter -p "$pid" -x, -o "$tmp/perf" -- sleep 3
    wait "$bpid"
    calls=$(grep sys_enter "$tmp/perf" | cut -d, -f1)
    eps=$(field echoes_per_sec <"$tmp/bench")
    python3 -c "print('cost mode=syscalls server=$name syscalls=$calls echoes_per_sec=$eps per_echo=%.3f' % ($calls / ($eps * 3)))"
    ;;
memory)
    taskset -c 0 "$@" 2>"$tmp/err" &
    pid=$!
    wait_ready
    sleep 0.3
    before=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    taskset -c 1 timeout 120 "$bench" connections --addr "127.0.0.1:$port" \
        --count "$count" --hold 3 --sources 4 >"$tmp/bench" &
    bpid=$!
    # Read the RSS while every connection is held (they open in well under 2 s).
    sleep 2.5
    held=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    threads=$(ls "/proc/$pid/task" | wc -l)
    wait "$bpid"
    res=$(grep '^result' "$tmp/bench")
    echo "cost mode=memory server=$name connections=$count rss_before_kib=$before rss_held_kib=$held" \
        "per_connection_bytes=$(((held - before) * 1024 / count)) threads=$threads" \
        "open_secs=$(echo "$res" | field open_secs) errors=$(echo "$res" | field errors)"
    ;;
*)
    echo "error: unknown mode $mode (instructions, syscalls or memory)" >&2
    exit 2
    ;;
esac
