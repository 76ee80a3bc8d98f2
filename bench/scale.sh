# Part 7, scale (issue 15): N real stubs on a real 3-node ensemble; idle cost, memory,
# propagation to the last stub, and the herd after a leader kill, a follower kill and a rolling
# restart. Not in the default set (hundreds of processes; minutes). Sourced by run.sh; the
# driver is bench/scale.py.

part_scale() {
  local ns=${BENCH_SCALE_NS:-"1 50 200"} names=${BENCH_SCALE_NAMES:-1000} dir
  [ "$QUICK" = 1 ] && ns=${BENCH_SCALE_NS:-"1 20"}
  dir=$(data "$names")
  log "scale: N in $ns, $names names, a 3-node ensemble on tmpfs"
  "$PY" "$BENCH_DIR/scale.py" --zkdns "$ZKDNS" --zone-file "$dir/zone.zone" --names "$names" \
    --work "$RUN/scale" --out "$RESULTS" --ns "$ns"
  # the stubs on two observers only
  "$PY" "$BENCH_DIR/scale.py" --zkdns "$ZKDNS" --zone-file "$dir/zone.zone" --names "$names" \
    --work "$RUN/scale" --out "$RESULTS" --ns "$ns" --observers 2 --name scale-observers
  # the longer session timeout README's fleet section advises: reconnects spread over 4 s
  "$PY" "$BENCH_DIR/scale.py" --zkdns "$ZKDNS" --zone-file "$dir/zone.zone" --names "$names" \
    --work "$RUN/scale" --out "$RESULTS" --ns "${ns##* }" --stub-args "--zk-session-timeout 20s" \
    --name scale-session-20s
  # ZooKeeper's local sessions, which `serve`'s session (owning no ephemerals) could use
  "$PY" "$BENCH_DIR/scale.py" --zkdns "$ZKDNS" --zone-file "$dir/zone.zone" --names "$names" \
    --work "$RUN/scale" --out "$RESULTS" --ns "${ns##* }" --local-sessions \
    --name scale-local-sessions
}
