#!/usr/bin/env bash
# Looks for the kernel-level wedge of a bulk connection under a clamped
# receive buffer (README.md, "Kernel memory"), and captures each one found:
#
#   sudo unshare -n scripts/socket-buffer-stall.sh OUT RUNS [SERVER ARGS...]
#
# Each run starts a fresh server on CPU 0 (target/release/echo-server -l
# 127.0.0.1:PORT SERVER ARGS, default `--socket-buffer 2M`) and drives it
# from CPU 1 with `echo-bench stream -c 50 -b 2G --timeout 60`. A run still
# going after 15 s is captured in OUT/stall-N-*: `ss -tmie` of both ends
# (which side holds the bytes: Recv-Q, Send-Q, timers and backoff), the
# netns's TCP counters and the kernel's drop reasons (`skb:kfree_skb`) over
# 16 s of the wedge, and the server's SIGUSR1 stats; then both are killed.
# In its own network namespace (unshare -n) the counters are this run's
# alone. The wedge is likelier with CPU load: run a busy loop on each core
# (`taskset -c 0 sh -c 'while :; do :; done' &`, likewise on 1) and kill it
# by its pid after.
set -u
out=$1
runs=$2
shift 2
[ $# -gt 0 ] || set -- --socket-buffer 2M
mkdir -p "$out"
ip link set lo up
export NSTAT_HISTORY=$out/nstat.hist
wedged=0
for i in $(seq "$runs"); do
  port=$((27000 + i))
  taskset -c 0 target/release/echo-server -l 127.0.0.1:$port "$@" >"$out/srv-$i.log" 2>&1 &
  srv=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
  nstat -n >/dev/null
  taskset -c 1 target/release/echo-bench stream -a 127.0.0.1:$port -c 50 -b 2G --timeout 60 \
    >"$out/bench-$i.txt" 2>&1 &
  bench=$!
  for _ in $(seq 150); do kill -0 $bench 2>/dev/null || break; sleep 0.1; done
  if kill -0 $bench 2>/dev/null; then
    wedged=$((wedged + 1))
    filter="( sport = :$port or dport = :$port )"
    ss -tmienHo state established "$filter" >"$out/stall-$i-ss.txt"
    kill -USR1 $srv
    nstat -n >/dev/null
    perf record -q -e skb:kfree_skb -a -o "$out/stall-$i.data" -- sleep 16 >/dev/null 2>&1
    nstat >"$out/stall-$i-nstat.txt"
    ss -tmienHo state established "$filter" >"$out/stall-$i-ss-after.txt"
    perf script -i "$out/stall-$i.data" 2>/dev/null | grep -oE 'reason: [A-Z_]+' | sort | uniq -c \
      >"$out/stall-$i-drops.txt"
    rm -f "$out/stall-$i.data"
    kill -USR1 $srv
    sleep 0.2
    kill $bench
    echo "run $i: wedged, captured in $out/stall-$i-*"
  else
    echo "run $i: $(grep -oE 'mib_per_sec=[0-9.]*|error:.*' "$out/bench-$i.txt" | tr '\n' ' ')"
  fi
  wait $bench 2>/dev/null
  kill -TERM $srv
  wait $srv 2>/dev/null
done
echo "$wedged of $runs runs wedged"
