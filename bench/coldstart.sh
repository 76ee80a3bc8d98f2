# Part 3, cold start, idle and resync: zkdns from process start to its first correct answer
# with 100k names in ZooKeeper (and the peers from their files, for the ratio), memory then;
# the CPU of an idle stub; and the time to resync after a cut ZooKeeper connection, short
# (reconnect) and past the session timeout (expiry). Sourced by run.sh.

part_coldstart() {
  local reps=${BENCH_REPS:-3} idle=30 resync_runs=3
  [ "$QUICK" = 1 ] && { idle=10; resync_runs=1; }
  local n=100000 tsv=$RUN/coldstart.tsv dir secs probe port rep s
  : >"$tsv"
  : >"$RUN/resync.tsv"
  dir=$(data $n)
  secs=$(zk_load $n /b$n)
  log "cold start: $n names imported in $secs s"
  read -r -a probe <"$dir/probe"
  local peers=(knot unbound dnsmasq)
  for rep in $(seq "$reps"); do
    for s in zkdns "${peers[@]}"; do
      port=$(free_port)
      server_cmd "$s" $n "$port"
      local idle_arg=0
      [ "$s" = zkdns ] && [ "$rep" = "$reps" ] && idle_arg=$idle
      "$TOOL" coldstart --dns "127.0.0.1:$port" --name "${probe[0]}" --expect "${probe[1]}" \
        --runs 1 --idle-secs "$idle_arg" --label "$s" --out "$tsv" --log "$RUN/coldstart-$s.log" \
        -- "${SRV_CMD[@]}"
    done
  done

  log "resync: cut and restore zkdns's ZooKeeper connection ($resync_runs runs)"
  port=$(free_port)
  "$TOOL" resync --zk "$ZK" --root /b$n --zone bench.test --dns "127.0.0.1:$port" \
    --session-timeout-ms 2000 --runs "$resync_runs" --out "$RUN/resync.tsv" \
    --log "$RUN/resync-zkdns.log" -- \
    "$ZKDNS" serve --zk '{zk}' --zk-session-timeout 2s --root /b$n --listen "127.0.0.1:$port" --no-upstream
  cp "$tsv" "$RUN/resync.tsv" "$RESULTS/"
  "$PY" "$BENCH_DIR/report.py" coldstart --results "$RESULTS"
}
