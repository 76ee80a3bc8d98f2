# `bench/run.sh profile`: where zkdns spends its CPU at the serving part's fixed rate (10k
# names, pinned to core 0, dnsperf on core 1), by `perf record -e cpu-clock -g`. Not part of
# the default run: perf's sampling costs CPU itself. Sourced by run.sh.

part_profile() {
  local n=10000 secs=${BENCH_FIXED_SECS:-10} rate=${BENCH_RATE:-40000} port dir data s
  command -v perf >/dev/null || {
    log "installing linux-perf"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf >&2
  }
  dir=$(data $n)
  zk_load $n /b$n >/dev/null
  : >"$RUN/profile.txt"
  for s in ${BENCH_PROFILE_SERVERS:-zkdns knot}; do
    port=$(free_port)
    start_server "$s" $n "$port" 0
    wait_ready $n "$port" >/dev/null
    dnsperf_run "$port" "$dir/queries.txt" 1 20000 "$RUN/profile-warmup.txt"
    data=$RUN/profile-$s.perf.data
    perf record -q -e cpu-clock -F 2000 -g -p "$SRV_PID" -o "$data" -- sleep "$secs" 2>/dev/null &
    local perf_pid=$!
    track $perf_pid
    dnsperf_run "$port" "$dir/queries.txt" "$secs" "$rate" "$RUN/profile-dnsperf-$s.txt"
    wait $perf_pid || true
    untrack_stop "$SRV_PID"
    {
      echo "== $s at $rate qps, $n names: where its CPU goes (perf record -e cpu-clock -g)"
      echo "-- by thread and object"
      perf report -i "$data" --no-children --sort comm,dso --stdio 2>/dev/null \
        | awk '/^ +[0-9.]+%/ && n++ < 8'
      echo "-- by symbol"
      perf report -i "$data" --no-children -F overhead,sym --stdio --percent-limit 0.7 2>/dev/null \
        | awk '/^ +[0-9.]+%/ && n++ < 25'
      echo
    } | tee -a "$RUN/profile.txt"
  done
  cp "$RUN/profile.txt" "$RESULTS/profile.txt"
  log "profile: ${RESULTS#"$REPO"/}/profile.txt (perf data in $RUN: perf report -i FILE -g for call graphs)"
}
