# Part forwarding: zkdns, dnsmasq and Unbound as caching forwarders in front of the same
# upstream (bench/tool/src/upstream.rs: authoritative for fwd.test on loopback, TTL 300,
# counting what it is asked), each pinned to core 0, dnsperf and the upstream to core 1.
# Three phases at a fixed rate, each repetition with names no server has seen yet:
#   warm      1,000 names asked for A and AAAA over and over (2,000 questions);
#   negative  1,000 missing names asked for A over and over (NXDOMAIN with the SOA: what a
#             search list under ndots:5 makes of an outside name);
#   cold      only unique names (every query a miss);
#   inzone    zkdns only: names of its own zone at the same rate, what a cache hit is held to.
# Per phase and server: CPU per query, average and p99 latency (from dnsperf -v), and the
# queries that reached the upstream; RSS after the cold phase (every cache full). zkdns runs
# with its default cache and, as the reference of what forwarding cost before the cache, with
# --no-cache; dnsmasq runs with a 10,000-entry cache and with its default (150). Sourced by
# run.sh.

FWD_SERVERS_DEFAULT="zkdns zkdns-nocache dnsmasq dnsmasq-default unbound"

# fwd_cmd NAME PORT UPSTREAM_PORT: sets SRV_CMD to NAME as a caching forwarder on
# 127.0.0.1:PORT in front of 127.0.0.1:UPSTREAM_PORT (its files in $RUN/fwd-NAME).
fwd_cmd() {
  local name=$1 port=$2 up=$3 conf=$RUN/fwd-$1
  rm -rf "$conf"
  mkdir -p "$conf"
  case $name in
    zkdns | zkdns-nocache)
      SRV_CMD=("$ZKDNS" serve --zk "$ZK" --root /f1000 --listen "127.0.0.1:$port"
        --upstream "127.0.0.1:$up" --udp-workers 1)
      if [ "$name" = zkdns-nocache ]; then SRV_CMD+=(--no-cache); fi
      ;;
    dnsmasq | dnsmasq-default)
      SRV_CMD=(dnsmasq --keep-in-foreground --conf-file=/dev/null --no-hosts --no-resolv
        --server="127.0.0.1#$up" --port="$port" --listen-address=127.0.0.1 --bind-interfaces
        --user=root --pid-file=)
      if [ "$name" = dnsmasq ]; then SRV_CMD+=(--cache-size=10000); fi
      ;;
    unbound)
      # Unbound answers the special-use name test. itself (RFC 6761) unless told not to
      unbound_conf "$conf/unbound.conf" "$port" "$conf" '    do-not-query-localhost: no
    module-config: "iterator"
    qname-minimisation: no
    local-zone: "test." nodefault' "forward-zone:
    name: \".\"
    forward-addr: 127.0.0.1@$up
"
      SRV_CMD=(unbound -d -c "$conf/unbound.conf")
      ;;
    *) die "unknown forwarder $name" ;;
  esac
}

# fwd_queries PHASE TAG LINES: writes a dnsperf query file for PHASE with names unique to TAG.
fwd_queries() {
  local phase=$1 tag=$2 lines=$3 out=$RUN/fwd-q-$1-$2.txt
  case $phase in
    warm) awk -v t="$tag" 'BEGIN { for (i = 0; i < 1000; i++) { printf "h%sn%d.fwd.test A\nh%sn%d.fwd.test AAAA\n", t, i, t, i } }' >"$out" ;;
    negative) awk -v t="$tag" 'BEGIN { for (i = 0; i < 1000; i++) printf "m%sn%d.fwd.test A\n", t, i }' >"$out" ;;
    cold) awk -v t="$tag" -v n="$lines" 'BEGIN { for (i = 0; i < n; i++) printf "h%su%d.fwd.test A\n", t, i }' >"$out" ;;
    inzone) cp "$(data 1000)/queries.txt" "$out" ;;
  esac
  echo "$out"
}

# fwd_ready PORT NAME: waits (up to 60 s) until 127.0.0.1:PORT answers NAME with an address.
fwd_ready() {
  local i
  for i in $(seq 600); do
    [ -n "$(dig +short +time=1 +tries=1 -p "$1" @127.0.0.1 "$2" A 2>/dev/null)" ] && return 0
    sleep 0.1
  done
  return 1
}

upstream_count() { cat "$RUN/upstream.count" 2>/dev/null || echo 0; }

part_forwarding() {
  local reps=${BENCH_REPS:-3} rate=${BENCH_FWD_RATE:-10000} secs=${BENCH_FIXED_SECS:-4}
  if [ "$QUICK" = 1 ]; then
    reps=${BENCH_REPS:-2}
    secs=${BENCH_FIXED_SECS:-2}
  fi
  local tsv=$RUN/forwarding.tsv
  printf 'phase\tserver\trep\tmetric\tvalue\n' >"$tsv"
  printf 'meta\trate\t%s\tsecs\t%s\treps\t%s\n' "$rate" "$secs" "$reps" >>"$tsv"
  local servers
  read -r -a servers <<<"${BENCH_FWD_SERVERS:-$FWD_SERVERS_DEFAULT}"
  # zkdns serves a small zone of its own; everything asked here is outside it
  zk_load 1000 /f1000 >/dev/null
  local up
  up=$(free_port)
  rm -f "$RUN/upstream.count"
  taskset -c 1 "$TOOL" upstream --listen "127.0.0.1:$up" --count-file "$RUN/upstream.count" \
    >"$RUN/upstream.log" 2>&1 &
  track $!
  declare -A port=() pid=()
  local s probe
  for s in "${servers[@]}"; do
    port[$s]=$(free_port)
    fwd_cmd "$s" "${port[$s]}" "$up"
    taskset -c 0 "${SRV_CMD[@]}" >"$RUN/fwd-$s/log" 2>&1 &
    pid[$s]=$!
    track "${pid[$s]}"
    fwd_ready "${port[$s]}" "hready${s//-/}.fwd.test" || { tail -5 "$RUN/fwd-$s/log" >&2; die "$s does not forward"; }
    log "forwarding: $s on 127.0.0.1:${port[$s]}, RSS $(($(rss_kb "${pid[$s]}") / 1024)) MiB"
  done
  local rep phase i k out q c0 c1 u0 u1 done_q
  for rep in $(seq "$reps"); do
    for phase in warm negative cold inzone; do
      for ((i = 0; i < ${#servers[@]}; i++)); do
        k=$(((i + rep - 1) % ${#servers[@]}))
        s=${servers[$k]}
        # the in-zone reference: what an answer from the map costs at the same rate
        if [ "$phase" = inzone ] && [ "$s" != zkdns ]; then continue; fi
        q=$(fwd_queries "$phase" "$rep${s//-/}" $((rate * secs * 3 / 2)))
        out=$RUN/fwd-$phase-$s-$rep.txt
        u0=$(upstream_count)
        c0=$(cpu_ticks "${pid[$s]}")
        taskset -c 1 dnsperf -s 127.0.0.1 -p "${port[$s]}" -d "$q" -l "$secs" -c 4 -T 1 \
          -q 500 -t 2 -Q "$rate" -v >"$out" 2>&1 || true
        c1=$(cpu_ticks "${pid[$s]}")
        sleep 0.2 # the upstream's count file is written every 50 ms
        u1=$(upstream_count)
        done_q=$(dnsperf_field "$out" completed)
        [ -n "$done_q" ] && [ "$done_q" -gt 0 ] || { tail -20 "$out" >&2; die "dnsperf got no answers from $s"; }
        {
          printf '%s\t%s\t%s\tqueries\t%s\n' "$phase" "$s" "$rep" "$done_q"
          printf '%s\t%s\t%s\tcpu_us\t%s\n' "$phase" "$s" "$rep" \
            "$(awk -v c=$((c1 - c0)) -v t="$CLK_TCK" -v q="$done_q" 'BEGIN { printf "%.3f", c * 1e6 / t / q }')"
          printf '%s\t%s\t%s\tlatency_us\t%s\n' "$phase" "$s" "$rep" "$(dnsperf_field "$out" latency_us)"
          # dnsperf -v: "> RCODE name type latency" per answer
          printf '%s\t%s\t%s\tp99_us\t%s\n' "$phase" "$s" "$rep" \
            "$(awk '/^> [A-Z]+ / { print $NF * 1e6 }' "$out" | sort -g \
              | awk '{ v[NR] = $1 } END { if (NR) { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.1f", v[i] } }')"
          printf '%s\t%s\t%s\tupstream\t%s\n' "$phase" "$s" "$rep" $((u1 - u0))
          printf '%s\t%s\t%s\tlost_pct\t%s\n' "$phase" "$s" "$rep" "$(dnsperf_field "$out" lost)"
          printf '%s\t%s\t%s\tanswered_pct\t%s\n' "$phase" "$s" "$rep" \
            "$(awk '/Response codes:/ { ok = 0; for (i = 3; i <= NF; i += 3) if ($i ~ /^(NOERROR|NXDOMAIN)/) { v = $(i + 2); gsub(/[()%,]/, "", v); ok += v } print ok }' "$out")"
        } >>"$tsv"
      done
    done
    log "  repetition $rep/$reps done"
  done
  for s in "${servers[@]}"; do
    printf 'cold\t%s\t0\trss_kb\t%s\n' "$s" "$(rss_kb "${pid[$s]}")" >>"$tsv"
    untrack_stop "${pid[$s]}"
  done
  unset port pid
  cp "$tsv" "$RESULTS/forwarding.tsv"
  "$PY" "$BENCH_DIR/report.py" forwarding --results "$RESULTS"
}
