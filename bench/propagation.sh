# Part 2, propagation: ZooKeeper write → first answer from zkdns that shows it, with 10k names
# loaded, idle and under a 20k qps dnsperf load on the other names. Five kinds of change per
# round (set, create, delete, ephemeral member, session close). Sourced by run.sh.

part_propagation() {
  local rounds=${BENCH_PROP_ROUNDS:-200} load_qps=${BENCH_PROP_QPS:-20000}
  [ "$QUICK" = 1 ] && rounds=${BENCH_PROP_ROUNDS:-100}
  local n=10000 tsv=$RUN/propagation.tsv dir port zpid secs
  printf 'zookeeper\t%s\n' "$ZK_STORAGE" >"$tsv"
  dir=$(data $n)
  secs=$(zk_load $n /p$n)
  log "propagation: $n names imported in $secs s; $rounds rounds of 5 changes, idle then under $load_qps qps"
  port=$(free_port)
  "$ZKDNS" serve --zk "$ZK" --root /p$n --listen "127.0.0.1:$port" --no-upstream \
    >"$RUN/propagation-zkdns.log" 2>&1 &
  zpid=$!
  track $zpid
  wait_ready $n "$port" >/dev/null || die "zkdns did not load $n names"

  "$TOOL" propagation --zk "$ZK" --root /p$n --zone bench.test --dns "127.0.0.1:$port" \
    --rounds "$rounds" --label idle --out "$tsv"

  # the load: dnsperf on the loaded names (none of which the rounds change), for as long as
  # the rounds take
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$dir/queries.txt" -l 600 -c 4 -T 1 -q 200 \
    -Q "$load_qps" >"$RUN/propagation-dnsperf.txt" 2>&1 &
  local dpid=$!
  track $dpid
  sleep 1
  "$TOOL" propagation --zk "$ZK" --root /p$n --zone bench.test --dns "127.0.0.1:$port" \
    --rounds "$rounds" --label load --out "$tsv"
  kill -INT $dpid 2>/dev/null || true
  wait $dpid 2>/dev/null || true
  untrack_stop $dpid
  printf 'dnsperf\tload\t%s qps answered, %s %% lost\n' \
    "$(dnsperf_field "$RUN/propagation-dnsperf.txt" qps | cut -d. -f1)" \
    "$(dnsperf_field "$RUN/propagation-dnsperf.txt" lost)" >>"$tsv"
  untrack_stop $zpid
  cp "$tsv" "$RESULTS/propagation.tsv"
  "$PY" "$BENCH_DIR/report.py" propagation --results "$RESULTS"
}
