# Part 1, serving: zkdns and its peers serving the same A records, each pinned to core 0 and
# dnsperf to core 1, beside the bare loop (bench/tool/src/floor.rs: the CPU floor of a UDP
# server on this machine, a reference and not a peer). Per server and set size: CPU per
# answered query and average latency at a fixed rate, the most answered queries per second,
# and memory after loading. Every measurement is repeated (interleaved across servers, so
# drift hits all alike) and the median kept. Sourced by run.sh.

serving_servers() {
  local s out=()
  for s in ${BENCH_SERVERS:-zkdns knot unbound dnsmasq hickory floor}; do
    if [ "$s" = hickory ] && ! build_hickory; then
      echo "hickory	skipped	hickory-dns could not be built" >>"$RUN/serving.tsv"
      continue
    fi
    out+=("$s")
  done
  echo "${out[@]}"
}

part_serving() {
  # many short interleaved runs rather than a few long ones: drift on this shared machine
  # then spreads over every server alike
  local reps=${BENCH_REPS:-5} rate=${BENCH_RATE:-40000}
  local fixed=${BENCH_FIXED_SECS:-4} max=${BENCH_MAX_SECS:-3}
  if [ "$QUICK" = 1 ]; then
    reps=${BENCH_REPS:-3}
    fixed=${BENCH_FIXED_SECS:-2}
    max=${BENCH_MAX_SECS:-2}
  fi
  # written under $RUN, copied to the results only when the part completes
  local tsv=$RUN/serving.tsv
  printf 'size\tserver\trep\tmetric\tvalue\n' >"$tsv"
  printf 'meta\trate\t%s\tfixed_secs\t%s\treps\t%s\n' "$rate" "$fixed" "$reps" >>"$tsv"
  local servers
  read -r -a servers <<<"$(serving_servers)"
  local n
  for n in ${BENCH_SIZES:-10000 100000}; do
    local dir secs
    dir=$(data "$n")
    secs=$(zk_load "$n" "/b$n")
    log "serving: $n names (zkdns import: $secs s); servers: ${servers[*]}"
    declare -A port=() pid=()
    local s ms
    for s in "${servers[@]}"; do
      port[$s]=$(free_port)
      start_server "$s" "$n" "${port[$s]}" 0
      pid[$s]=$SRV_PID
      if ! ms=$(wait_ready "$n" "${port[$s]}"); then
        tail -5 "$RUN/$s-$n/log" >&2
        die "$s did not answer with $n names"
      fi
      sleep 1
      kill -0 "${pid[$s]}" 2>/dev/null || { tail -5 "$RUN/$s-$n/log" >&2; die "$s exited"; }
      printf '%s\t%s\t0\tload_ms\t%s\n' "$n" "$s" "$ms" >>"$tsv"
      printf '%s\t%s\t0\trss_kb\t%s\n' "$n" "$s" "$(rss_kb "${pid[$s]}")" >>"$tsv"
      printf '%s\t%s\t0\trss_anon_kb\t%s\n' "$n" "$s" "$(rss_anon_kb "${pid[$s]}")" >>"$tsv"
      log "  $s: answering after $ms ms, RSS $(($(rss_kb "${pid[$s]}") / 1024)) MiB"
      # warm-up: first-touch of pages and caches
      dnsperf_run "${port[$s]}" "$dir/queries.txt" 1 20000 "$RUN/warmup-$s-$n.txt"
    done
    local rep i k out c0 c1 w0 w1 b0 b1 t0 t1 done_q
    for rep in $(seq "$reps"); do
      # rotate the order each repetition
      for ((i = 0; i < ${#servers[@]}; i++)); do
        k=$(((i + rep - 1) % ${#servers[@]}))
        s=${servers[$k]}
        out=$RUN/fixed-$s-$n-$rep.txt
        c0=$(cpu_ticks "${pid[$s]}")
        w0=$(ctx_switches "${pid[$s]}")
        b0=$(core_busy 0)
        t0=$(date +%s%N)
        dnsperf_run "${port[$s]}" "$dir/queries.txt" "$fixed" "$rate" "$out"
        t1=$(date +%s%N)
        b1=$(core_busy 0)
        c1=$(cpu_ticks "${pid[$s]}")
        w1=$(ctx_switches "${pid[$s]}")
        done_q=$(dnsperf_field "$out" completed)
        [ -n "$done_q" ] && [ "$done_q" -gt 0 ] || { cat "$out" >&2; die "dnsperf got no answers from $s"; }
        {
          printf '%s\t%s\t%s\tcpu_us\t%s\n' "$n" "$s" "$rep" \
            "$(awk -v c=$((c1 - c0)) -v t="$CLK_TCK" -v q="$done_q" 'BEGIN { printf "%.3f", c * 1e6 / t / q }')"
          printf '%s\t%s\t%s\tlatency_us\t%s\n' "$n" "$s" "$rep" "$(dnsperf_field "$out" latency_us)"
          # how much of core 0 went to anything but the server (other developers' builds)
          printf '%s\t%s\t%s\tothers_core0_pct\t%s\n' "$n" "$s" "$rep" \
            "$(awk -v b=$((b1 - b0)) -v c=$((c1 - c0)) -v t="$CLK_TCK" -v s="$(((t1 - t0) / 1000000))e-3" \
              'BEGIN { v = (b - c) * 100 / t / s; printf "%.1f", v < 0 ? 0 : v }')"
          printf '%s\t%s\t%s\tswitches_per_q\t%s\n' "$n" "$s" "$rep" \
            "$(awk -v w=$((w1 - w0)) -v q="$done_q" 'BEGIN { printf "%.3f", w / q }')"
          printf '%s\t%s\t%s\tfixed_qps\t%s\n' "$n" "$s" "$rep" "$(dnsperf_field "$out" qps)"
          printf '%s\t%s\t%s\tnoerror_pct\t%s\n' "$n" "$s" "$rep" "$(dnsperf_field "$out" noerror_pct)"
        } >>"$tsv"
      done
      for ((i = 0; i < ${#servers[@]}; i++)); do
        k=$(((i + rep - 1) % ${#servers[@]}))
        s=${servers[$k]}
        out=$RUN/max-$s-$n-$rep.txt
        c0=$(cpu_ticks "${pid[$s]}")
        dnsperf_run "${port[$s]}" "$dir/queries.txt" "$max" 0 "$out" 1 1000
        c1=$(cpu_ticks "${pid[$s]}")
        {
          printf '%s\t%s\t%s\tmax_qps\t%s\n' "$n" "$s" "$rep" "$(dnsperf_field "$out" qps)"
          printf '%s\t%s\t%s\tmax_lost_pct\t%s\n' "$n" "$s" "$rep" "$(dnsperf_field "$out" lost)"
          printf '%s\t%s\t%s\tmax_server_cpu_pct\t%s\n' "$n" "$s" "$rep" \
            "$(awk -v c=$((c1 - c0)) -v t="$CLK_TCK" -v s="$max" 'BEGIN { printf "%.1f", c * 100 / t / s }')"
        } >>"$tsv"
      done
      log "  repetition $rep/$reps done"
    done
    for s in "${servers[@]}"; do
      printf '%s\t%s\t0\trss_after_kb\t%s\n' "$n" "$s" "$(rss_kb "${pid[$s]}")" >>"$tsv"
      untrack_stop "${pid[$s]}"
    done
    unset port pid
  done
  cp "$tsv" "$RESULTS/serving.tsv"
  "$PY" "$BENCH_DIR/report.py" serving --results "$RESULTS"
}
