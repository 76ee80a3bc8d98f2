# Part 5, criterion benches of the query path (benches/query_path.rs). Sourced by run.sh.

part_criterion() {
  local args=(--warm-up-time 1 --measurement-time 3)
  [ "$QUICK" = 1 ] && args=(--warm-up-time 0.5 --measurement-time 1)
  log "criterion: cargo bench --bench query_path"
  (cd "$REPO" && cargo bench --quiet --bench query_path -- --noplot "${args[@]}") \
    2>&1 | tee "$RUN/criterion.txt" | grep -E 'time:|^[a-z0-9_]+/|^snapshot' >&2 || true
  grep -q 'time:' "$RUN/criterion.txt" || { tail -20 "$RUN/criterion.txt" >&2; die "cargo bench failed"; }
  cp "$RUN/criterion.txt" "$RESULTS/criterion.txt"
  "$PY" "$BENCH_DIR/report.py" criterion --results "$RESULTS"
}
