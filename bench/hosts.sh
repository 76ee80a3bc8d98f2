# Part 4, hosts mode: `zkdns hosts --file PATH` with 1k names: ZooKeeper write → file
# rewritten, and file writes per burst of 1000 changes made within about a second.
# Sourced by run.sh.

part_hosts() {
  local changes=100 bursts=3 n=1000 tsv=$RUN/hosts.tsv secs file
  [ "$QUICK" = 1 ] && { changes=30; bursts=2; }
  : >"$tsv"
  if ! "$ZKDNS" --help 2>/dev/null | grep -qE '^\s+hosts\b'; then
    printf 'skipped\t`zkdns hosts` is not in this build (zkdns --help); written against DESIGN.md\n' >>"$tsv"
    log "hosts: zkdns has no hosts command yet: skipped"
    cp "$tsv" "$RESULTS/hosts.tsv"
    "$PY" "$BENCH_DIR/report.py" hosts --results "$RESULTS"
    return 0
  fi
  secs=$(zk_load $n /h$n)
  log "hosts: $n names imported in $secs s; $changes changes, $bursts bursts of 1000"
  mkdir -p "$RUN/hosts"
  file=$RUN/hosts/hosts
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n' >"$file"
  "$TOOL" hosts --zk "$ZK" --root /h$n --zone bench.test --file "$file" --changes "$changes" \
    --bursts "$bursts" --out "$tsv" --log "$RUN/hosts-zkdns.log" -- \
    "$ZKDNS" hosts --zk "$ZK" --root /h$n --file "$file"
  cp "$tsv" "$RESULTS/hosts.tsv"
  "$PY" "$BENCH_DIR/report.py" hosts --results "$RESULTS"
}
