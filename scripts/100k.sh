#!/usr/bin/env bash
# 100,000 concurrent connections, every one echoing, on one machine whose
# processes may hold only `ulimit -Hn` (here 20,000) descriptors each
# (BENCHMARKS.md, "100,000 concurrent connections"):
#
#   scripts/100k.sh [CONNECTIONS [SERVERS [BENCHES]]]
#
# defaults 100000 8 8. Everything runs in a network namespace of its own
# (`ip netns add`, so it needs root), whose loopback carries the load and
# whose ports are its own: the experiment cannot take ports from, or queue
# behind, anything else on the machine. In it:
#
#   - SERVERS echo-server processes on one address, all with --reuse-port
#     (the kernel spreads connections over them by a hash of the four-tuple),
#     each with --max-connections sized to fit under the descriptor cap;
#   - BENCHES echo-bench processes started together, each holding its share
#     of CONNECTIONS from source addresses of its own (process i binds
#     127.0.i.1 to 127.0.i.SOURCES), each running `pingpong --rate` (open
#     loop, latency from each message's due time) at RATE/BENCHES, so every
#     connection echoes about RATE/CONNECTIONS messages a second.
#
# It prints the machine's limits, then `hundredk key=value` lines: the time
# for all to open, server memory per connection (VmRSS held minus idle),
# kernel memory per connection (slab caches, /proc/meminfo Slab and the TCP
# page count of /proc/net/sockstat, all machine-wide: other work on the
# machine shows up in them too), CPU used while echoing, how long each
# process waited for a CPU (schedstat run_delay), TCP drop and retransmit
# counters of the namespace, each bench
# process's result line and each server's summary at SIGTERM.
#
# Environment: RATE (messages/s over all, default 10000), WARMUP and
# DURATION (each bench's seconds, default 12 and 10), START_IN (seconds from
# the benches' launch to their common start, --start-at, default 8: every
# connection must be open by then), SOURCES (addresses per bench process,
# default 4), PORT (default 7100), SAMPLE_FROM and SAMPLE_SECS (when, in
# seconds from the common start, and for how long to sample run-queue
# waits; default WARMUP and DURATION).
# Build first: cargo build --release --bins --examples
# Bounded: every wait has a deadline; it kills only the processes it started,
# by pid, and deletes the namespace it made.
set -euo pipefail

total=${1:-100000}
servers=${2:-8}
benches=${3:-8}
rate=${RATE:-10000}
warmup=${WARMUP:-12}
duration=${DURATION:-10}
start_in=${START_IN:-8}
sources=${SOURCES:-4}
port=${PORT:-7100}
server_bin=$(realpath "${ECHO_SERVER:-target/release/echo-server}")
bench_bin=$(realpath "${ECHO_BENCH:-target/release/echo-bench}")
ns=mio-echo-100k-$$
tmp=$(mktemp -d)
server_pids=()
bench_pids=()
sampler_pid=

if [ "$(id -u)" != 0 ]; then
    echo "error: needs root, for ip netns" >&2
    exit 1
fi
if [ "$((warmup + duration))" -lt 10 ]; then
    echo "error: WARMUP + DURATION must be at least 10 s: memory and CPU are read in the 7 s after the open" >&2
    exit 2
fi
if [ "$benches" -gt 250 ] || [ "$sources" -gt 254 ]; then
    echo "error: at most 250 bench processes of at most 254 sources each" >&2
    exit 2
fi

# Stops what this script started, by pid: TERM, then KILL after 10 s.
stop_pids() {
    local p
    for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 100); do
        local alive=0
        for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && return 0
        sleep 0.1
    done
    for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; done
}

cleanup() {
    stop_pids ${sampler_pid:+"$sampler_pid"} "${bench_pids[@]}" "${server_pids[@]}"
    ip netns delete "$ns" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap "exit 143" TERM INT

# Only in the foreground: a function run with & is a subshell, whose $!
# is not the program's pid.
in_ns() { ip netns exec "$ns" "$@"; }
now() { date +%s.%N; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# utime + stime of a process, in clock ticks (0 once it has gone).
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# The TCP line of /proc/net/sockstat as the namespace sees it (through a
# server's /proc entry: no process to start per read).
sockstat_tcp() { grep '^TCP:' "/proc/${server_pids[0]}/net/sockstat"; }
sock_field() { sockstat_tcp | awk -v k="$1" '{for (i = 1; i < NF; i++) if ($i == k) print $(i + 1)}'; }
# Bytes held by the slab caches a connection uses, machine-wide (active
# objects x object size), and /proc/meminfo's Slab in KiB.
slab_bytes() { awk -v name="$1" '$1 == name {print $2 * $4}' /proc/slabinfo; }
slab_caches="TCP request_sock_TCP tw_sock_TCP sock_inode_cache filp dentry eventpoll_epi skbuff_head_cache kmalloc-64 kmalloc-128 kmalloc-192 kmalloc-256 kmalloc-512 kmalloc-1k"
slab_snapshot() {
    local c
    for c in $slab_caches; do echo "$c $(slab_bytes "$c")"; done
    echo "meminfo_slab_kib $(awk '/^Slab:/ {print $2}' /proc/meminfo)"
}

# Packets dropped machine-wide because a CPU's input backlog
# (net.core.netdev_max_backlog) was full: loopback delivers through it.
softnet_drops() {
    local d=0 _processed dropped _rest
    while read -r _processed dropped _rest; do d=$((d + 16#$dropped)); done </proc/net/softnet_stat
    echo "$d"
}

ip netns add "$ns"
in_ns ip link set lo up

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== limits (load average: $load_start, $(nproc) cores)"
echo "per network namespace, read inside $ns (a new namespace starts from the kernel's defaults):"
for k in net/core/somaxconn net/ipv4/tcp_max_syn_backlog net/ipv4/ip_local_port_range \
    net/ipv4/tcp_tw_reuse net/ipv4/tcp_rmem net/ipv4/tcp_wmem; do
    echo "  $k = $(in_ns cat "/proc/sys/$k" | tr '\t' ' ')"
done
echo "machine-wide:"
for k in net/ipv4/tcp_mem fs/file-max fs/nr_open; do
    echo "  $k = $(tr '\t' ' ' <"/proc/sys/$k")"
done
echo "per process: ulimit -Hn = $(ulimit -Hn)"
echo "  net/core/netdev_max_backlog = $(cat /proc/sys/net/core/netdev_max_backlog)"
echo "page size: $(getconf PAGESIZE)"

# Servers: --max-connections within the cap, leaving room for the
# listener, the poll, the signal pipe and the log.
cap=$(ulimit -Hn)
per_server=$(((total + servers - 1) / servers))
max_conns=$((cap - 100))
if [ $((per_server * 105 / 100)) -gt "$max_conns" ]; then
    echo "error: $servers servers cannot hold $total under the $cap-descriptor cap" \
        "(--reuse-port spreads by hash, so leave 5% headroom): use more" >&2
    exit 2
fi
for s in $(seq "$servers"); do
    ip netns exec "$ns" "$server_bin" -l "127.0.0.1:$port" --reuse-port --max-connections "$max_conns" \
        --max-connections-per-ip 0 --shutdown-timeout 10 >/dev/null 2>"$tmp/server$s.log" &
    server_pids+=($!)
done
listening=0
for _ in $(seq 100); do
    listening=$(in_ns ss -Hltn "sport = :$port" | wc -l)
    [ "$listening" -ge "$servers" ] && break
    sleep 0.1
done
if [ "$listening" -lt "$servers" ]; then
    echo "error: only $listening of $servers servers listen on 127.0.0.1:$port after 10 s" >&2
    cat "$tmp"/server*.log >&2
    exit 1
fi
sleep 0.5
idle_rss=()
for p in "${server_pids[@]}"; do idle_rss+=("$(rss_kib "$p")"); done
slab_snapshot >"$tmp/slab.before"
mem_before=$(sock_field mem)
inuse_before=$(sock_field inuse)

# Benches: all started at once; shares differ by at most one.
drops_before=$(softnet_drops)
t0=$(now)
# One start for every bench's load, after all have opened (--start-at): the
# measured windows coincide, so no process's opening or closing falls in
# another's window.
start_at=$(python3 -c "print(f'{$t0 + $start_in:.3f}')")
for b in $(seq "$benches"); do
    share=$((total / benches + (b <= total % benches ? 1 : 0)))
    ip netns exec "$ns" "$bench_bin" pingpong --addr "127.0.0.1:$port" --connections "$share" \
        --sources "127.0.$b.1-127.0.$b.$sources" --rate "$(python3 -c "print($rate / $benches)")" \
        --size 64 --warmup "$warmup" --duration "$duration" --timeout 30 --start-at "$start_at" \
        --percentiles 50,90,99,99.9 >"$tmp/bench$b.out" 2>"$tmp/bench$b.err" </dev/null &
    bench_pids+=($!)
    echo "$(now)" >"$tmp/bench$b.start"
done

# Every connection open: both ends of each counted in the namespace's TCP
# sockets in use (the listeners were there before).
want=$((inuse_before + 2 * total))
t_open=
for _ in $(seq 1200); do
    if [ "$(sock_field inuse)" -ge "$want" ]; then
        t_open=$(now)
        break
    fi
    sleep 0.05
done
if [ -z "$t_open" ]; then
    echo "error: $(sock_field inuse) of $want TCP sockets after 60 s" >&2
    tail -n 3 "$tmp"/bench*.err "$tmp"/bench*.out >&2
    exit 1
fi

# How long each process waited for a CPU while runnable (schedstat's
# run_delay), sampled every 100 ms for DURATION s from WARMUP s after the
# common start (inside every bench's measured window, which begins WARMUP s
# after the --start-at time): the longest stretch in which it waited for
# more than half of every sample says whether a latency tail was the
# process not running at all.
python3 - "$tmp/sched" "${SAMPLE_SECS:-$duration}" "$(python3 -c "print($start_at + ${SAMPLE_FROM:-$warmup})")" \
    "${server_pids[@]}" -- "${bench_pids[@]}" <<'SAMPLER' &
import sys, time
out, limit, start, rest = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
time.sleep(max(0.0, start - time.time()))
servers, benches = rest[:rest.index("--")], rest[rest.index("--") + 1:]
def delay(p):
    try:
        return int(open(f"/proc/{p}/schedstat").read().split()[1]) / 1e9
    except OSError:
        return None
last = {p: delay(p) for p in servers + benches}
total = {p: 0.0 for p in last}
stretch = {p: 0.0 for p in last}
longest = {p: 0.0 for p in last}
t, end = time.monotonic(), time.monotonic() + limit
while time.monotonic() < end:
    time.sleep(0.1)
    now = time.monotonic()
    for p in last:
        d = delay(p)
        if d is None or last[p] is None:
            continue
        waited, last[p] = d - last[p], d
        total[p] += waited
        stretch[p] = stretch[p] + (now - t) if waited > (now - t) / 2 else 0.0
        longest[p] = max(longest[p], stretch[p])
    t = now
with open(out, "w") as f:
    for kind, pids in (("servers", servers), ("benches", benches)):
        print(f"hundredk cpu_wait_{kind} " + " ".join(
            f"{i + 1}:total={total[p]:.2f}s,longest_starved={longest[p]:.1f}s"
            for i, p in enumerate(pids)), file=f)
SAMPLER
sampler_pid=$!

# Held and echoing: memory, then CPU over the next 5 s.
sleep 2
held_rss=()
for p in "${server_pids[@]}"; do held_rss+=("$(rss_kib "$p")"); done
slab_snapshot >"$tmp/slab.held"
mem_held=$(sock_field mem)
tcp_line=$(sockstat_tcp)
# Socket buffer memory charged to TCP, from every socket in the namespace
# (both ends): forward-allocated + receive queue + send queue, from
# `ss -m`'s skmem (f, r, w). Unlike sockstat's page count, which is
# machine-wide, this is the experiment's alone.
skmem_from=$(now)
# (With `ss -i` the script once also counted retransmission timeouts: all
# were 204 ms or less; it made the walk twice as long, so it is gone.)
skmem=$(in_ns ss -Htnm state established | awk '
    /skmem:/ { match($0, /skmem:\([^)]*\)/); m = substr($0, RSTART + 6, RLENGTH - 7)
               n = split(m, kv, ","); for (i = 1; i <= n; i++) {
                   if (kv[i] ~ /^f[0-9]/) f += substr(kv[i], 2)
                   if (kv[i] ~ /^r[0-9]/) r += substr(kv[i], 2)
                   if (kv[i] ~ /^w[0-9]/) w += substr(kv[i], 2) }
               sockets++ }
    END { printf "sockets=%d fwd_alloc=%d rmem=%d wmem_queued=%d", sockets, f, r, w }')
skmem_secs=$(python3 -c "print(f'{$(now) - $skmem_from:.2f}')")
cpu_from=$(now)
declare -A ticks_from
for p in "${server_pids[@]}" "${bench_pids[@]}"; do ticks_from[$p]=$(ticks "$p"); done
sleep 5
cpu_until=$(now)
server_ticks=0
bench_ticks=0
for p in "${server_pids[@]}"; do server_ticks=$((server_ticks + $(ticks "$p") - ticks_from[$p])); done
for p in "${bench_pids[@]}"; do bench_ticks=$((bench_ticks + $(ticks "$p") - ticks_from[$p])); done

# Wait for the benches, bounded.
deadline=$(($(date +%s) + start_in + warmup + duration + 90))
for p in "${bench_pids[@]}"; do
    while kill -0 "$p" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
done
wait "$sampler_pid" || true
sampler_pid=
bench_status=0
for i in "${!bench_pids[@]}"; do
    wait "${bench_pids[$i]}" || bench_status=1
done
bench_pids=()
# The namespace's TCP counters (it is new, so they are this run's alone):
# overflowing accept queues and SYN queues, retransmissions, timeouts.
tcp_counters=$(cat "/proc/${server_pids[0]}/net/netstat" "/proc/${server_pids[0]}/net/snmp" | awk '
    $1 == "TcpExt:" || $1 == "Tcp:" { if (!($1 in names)) { names[$1] = $0; next }
        split(names[$1], k); for (i = 2; i <= NF; i++) v[$1 k[i]] = $i }
    END { n = split("TcpExt:ListenOverflows TcpExt:ListenDrops TcpExt:TCPReqQFullDrop " \
                    "TcpExt:TCPReqQFullDoCookies TcpExt:SyncookiesSent TcpExt:TCPTimeouts " \
                    "TcpExt:TCPSynRetrans TcpExt:TCPLossProbes Tcp:RetransSegs Tcp:ActiveOpens " \
                    "Tcp:PassiveOpens", want)
          for (i = 1; i <= n; i++) { key = want[i]; sub(/^[A-Za-z]*:/, "", key); printf "%s=%s ", key, v[want[i]] } }')
drops_after=$(softnet_drops)
stop_pids "${server_pids[@]}"
for p in "${server_pids[@]}"; do wait "$p" || true; done
server_pids_done=("${server_pids[@]}")
server_pids=()

hz=$(getconf CLK_TCK)
echo "== figures"
echo "hundredk connections=$total servers=$servers benches=$benches sources_per_bench=$sources" \
    "rate=$rate warmup_secs=$warmup duration_secs=$duration load_start=${load_start%% *}"
python3 - "$tmp" "$t0" "$t_open" "$total" "$benches" "$hz" "$server_ticks" "$bench_ticks" \
    "$cpu_from" "$cpu_until" "$mem_before" "$mem_held" "$(getconf PAGESIZE)" \
    "${idle_rss[*]}" "${held_rss[*]}" <<'EOF'
import glob, os, sys
(tmp, t0, t_open, total, benches, hz, sticks, bticks, c0, c1, mem0, mem1, page,
 idle, held) = sys.argv[1:]
t0, t_open, c0, c1 = float(t0), float(t_open), float(c0), float(c1)
total, benches, hz, page = int(total), int(benches), int(hz), int(page)
idle = [int(x) for x in idle.split()]
held = [int(x) for x in held.split()]

def fields(line):
    return dict(p.split("=", 1) for p in line.split()[1:] if "=" in p)

results, last_open = [], 0.0
for b in range(1, benches + 1):
    out = open(f"{tmp}/bench{b}.out").read().splitlines()
    line = next((l for l in out if l.startswith("result ")), None)
    start = float(open(f"{tmp}/bench{b}.start").read())
    if line is None:
        print(f"bench {b}: no result line; stderr: {open(f'{tmp}/bench{b}.err').read().strip()}")
        continue
    r = fields(line)
    results.append(r)
    last_open = max(last_open, start - t0 + float(r["connect_secs"]))
    print(f"bench{b} {line}")

print(f"hundredk open_all_secs={t_open - t0:.3f} (from the first start until both ends of "
      f"every connection are counted in sockstat) last_bench_open_secs={last_open:.3f} "
      f"(a bench's start offset + its connect_secs, the slowest)")
dr = [h - i for h, i in zip(held, idle)]
print(f"hundredk server_rss_idle_kib={idle} server_rss_held_kib={held} "
      f"server_rss_per_connection_bytes={sum(dr) * 1024 / total:.0f}")
before = dict(l.split() for l in open(f"{tmp}/slab.before"))
after = dict(l.split() for l in open(f"{tmp}/slab.held"))
slab_total = 0
parts = []
for k in before:
    if k == "meminfo_slab_kib":
        continue
    d = int(after.get(k, 0) or 0) - int(before[k] or 0)
    slab_total += d
    parts.append(f"{k}={d / total:.0f}")
meminfo = (int(after["meminfo_slab_kib"]) - int(before["meminfo_slab_kib"])) * 1024
print("hundredk kernel_slab_per_connection_bytes " + " ".join(parts) +
      f" listed_caches={slab_total / total:.0f} meminfo_slab={meminfo / total:.0f}")
print(f"hundredk machine_wide_tcp_pages_before={mem0} machine_wide_tcp_pages_held={mem1} "
      f"machine_wide_tcp_buffer_per_connection_bytes={(int(mem1) - int(mem0)) * page / total:.0f}")
secs = c1 - c0
print(f"hundredk cpu_window_secs={secs:.2f} server_cpu_cores={int(sticks) / hz / secs:.3f} "
      f"bench_cpu_cores={int(bticks) / hz / secs:.3f}")
if results:
    keys = [k for k in results[0] if k.startswith("p") and k.endswith("_us")] + ["max_us"]
    worst = {k: max(float(r[k]) for r in results) for k in keys}
    print("hundredk latency_worst_of_benches " + " ".join(f"{k}={v:.0f}" for k, v in worst.items()))
    echoes = sum(int(r["echoes"]) for r in results)
    errors = sum(int(r["errors"]) for r in results)
    kept = all(r.get("kept_up") == "true" for r in results)
    print(f"hundredk echoes={echoes} achieved_rate={sum(float(r['achieved_rate']) for r in results):.0f} "
          f"kept_up={str(kept).lower()} errors={errors} benches_reporting={len(results)}")
EOF
echo "hundredk tcp_counters $tcp_counters softnet_drops=$((drops_after - drops_before))"
echo "hundredk load_after=$(cut -d' ' -f1-3 /proc/loadavg)"
cat "$tmp/sched"
echo "hundredk sockstat_held $tcp_line"
echo "hundredk skmem_held $skmem walk_secs=$skmem_secs" | awk -v n="$total" '{
    for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] ~ /^(fwd_alloc|rmem|wmem_queued)$/) t += kv[2] }
    print $0, "charged_per_connection_bytes=" int(t / n + 0.5) }'
for s in $(seq "$servers"); do
    echo "server$s $(grep -o 'stopped: .*' "$tmp/server$s.log" || echo 'no summary line')"
done
for b in $(seq "$benches"); do
    if [ -s "$tmp/bench$b.err" ]; then echo "bench$b stderr: $(cat "$tmp/bench$b.err")"; fi
done
exit "$bench_status"
