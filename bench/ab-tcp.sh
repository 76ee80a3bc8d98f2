#!/usr/bin/env bash
# An A/B of zkdns's TCP path: two zkdns binaries (A and B, e.g. this tree's TCP listener and
# hickory-server's) serve the same 1,000 names from one ZooKeeper, each pinned to core 0,
# and dnsperf over TCP (-m tcp, 4 connections kept open) asks them in turn at a fixed rate
# from core 1. Per binary: CPU per query, average latency, answered queries (medians of
# BENCH_REPS). Writes bench/results/ab-tcp.tsv and prints a table.
#
#   bench/ab-tcp.sh A_BINARY B_BINARY [LABEL_A LABEL_B]
#
# Environment: BENCH_REPS (5), BENCH_TCP_RATE (5000), BENCH_FIXED_SECS (5).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ $# -ge 2 ] || die "usage: bench/ab-tcp.sh A_BINARY B_BINARY [LABEL_A LABEL_B]"
BINS=("$1" "$2")
LABELS=("${3:-A}" "${4:-B}")
reps=${BENCH_REPS:-5} rate=${BENCH_TCP_RATE:-5000} secs=${BENCH_FIXED_SECS:-5}
mkdir -p "$WORK" "$RESULTS"
rm -rf "$RUN"
mkdir -p "$RUN"
need_packages
build
start_zookeeper
zk_load 1000 /t1000 >/dev/null
queries=$(data 1000)/queries.txt
declare -a port=() pid=()
for i in 0 1; do
  port[i]=$(free_port)
  taskset -c 0 "${BINS[i]}" serve --zk "$ZK" --root /t1000 --listen "127.0.0.1:${port[i]}" \
    --no-upstream --udp-workers 1 >"$RUN/ab-$i.log" 2>&1 &
  pid[i]=$!
  track "${pid[i]}"
  probe=$(head -1 "$queries" | cut -d' ' -f1)
  for _ in $(seq 300); do
    [ -n "$(dig +tcp +short +time=1 +tries=1 -p "${port[i]}" @127.0.0.1 "$probe" A 2>/dev/null)" ] && break
    sleep 0.1
  done
  log "${LABELS[i]}: ${BINS[i]} on 127.0.0.1:${port[i]}"
done
tsv=$RESULTS/ab-tcp.tsv
printf 'binary\trep\tcpu_us\tlatency_us\tcompleted\n' >"$tsv"
for rep in $(seq "$reps"); do
  for k in 0 1; do
    i=$(((k + rep) % 2))
    out=$RUN/ab-$i-$rep.txt
    c0=$(cpu_ticks "${pid[i]}")
    taskset -c 1 dnsperf -m tcp -s 127.0.0.1 -p "${port[i]}" -d "$queries" -l "$secs" -c 4 \
      -T 1 -Q "$rate" >"$out" 2>&1 || true
    c1=$(cpu_ticks "${pid[i]}")
    done_q=$(dnsperf_field "$out" completed)
    [ -n "$done_q" ] && [ "$done_q" -gt 0 ] || { tail "$out" >&2; die "no answers from ${LABELS[i]}"; }
    printf '%s\t%s\t%s\t%s\t%s\n' "${LABELS[i]}" "$rep" \
      "$(awk -v c=$((c1 - c0)) -v t="$CLK_TCK" -v q="$done_q" 'BEGIN { printf "%.3f", c * 1e6 / t / q }')" \
      "$(dnsperf_field "$out" latency_us)" "$done_q" >>"$tsv"
  done
done
"$PY" - "$tsv" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
by = {}
for b, _, cpu, lat, done in rows:
    by.setdefault(b, []).append((float(cpu), float(lat), int(done)))
print("| binary | CPU µs/query | avg latency µs | answered per run |")
print("| --- | ---: | ---: | ---: |")
for b, v in by.items():
    med = lambda i: statistics.median(x[i] for x in v)
    print(f"| {b} | {med(0):.2f} | {med(1):.0f} | {med(2):,.0f} |")
PY
