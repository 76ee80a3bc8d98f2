#!/usr/bin/env bash
# zkdns's benchmarks, in one command. See docs/benchmarks.md.
#
#   bench/run.sh [--quick] [PART...]
#
# PART is any of: serving forwarding propagation coldstart hosts criterion (default: all of
# them), profile (not in the default set: a perf profile of zkdns under the serving load) or
# scale (not in the default set either: N stubs on a 3-node ensemble, bench/scale.py).
# Installs its peers from Debian's packages when missing, builds zkdns --release and the
# driver (bench/tool), starts its own ZooKeeper on a free loopback port, and stops
# everything it started on exit, Ctrl-C or failure. Each part prints its figures as ratios
# against the peers measured in the same run and PASS/FAIL against the targets of issue 8;
# the raw numbers go to bench/results/<part>.tsv and the summary of every part run so far
# to bench/results/latest.md.
#
# Environment: BENCH_REPS (3), BENCH_FIXED_SECS, BENCH_MAX_SECS, BENCH_RATE (40000),
# BENCH_SIZES ("10000 100000"), BENCH_SERVERS ("zkdns knot unbound dnsmasq hickory floor"),
# BENCH_FWD_RATE (10000), BENCH_FWD_SERVERS ("zkdns zkdns-nocache dnsmasq dnsmasq-default
# unbound"), BENCH_NO_HICKORY=1 to skip building hickory-dns, BENCH_SCALE_NS ("1 50 200"),
# BENCH_SCALE_NAMES (1000).
set -euo pipefail

. "$(dirname "$0")/lib.sh"
for part in serving forwarding propagation coldstart hosts criterion profile scale; do
  . "$BENCH_DIR/$part.sh"
done

QUICK=0
PARTS=()
for arg in "$@"; do
  case $arg in
    --quick) QUICK=1 ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    serving | forwarding | propagation | coldstart | hosts | criterion | profile | scale) PARTS+=("$arg") ;;
    *) echo "bench/run.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done
[ ${#PARTS[@]} -gt 0 ] || PARTS=(serving forwarding propagation coldstart hosts criterion)

mkdir -p "$WORK" "$RESULTS"
rm -rf "$RUN"
mkdir -p "$RUN"
need_packages
build
STARTED=$(date +%s)
log "zkdns $ZKDNS_REV; parts: ${PARTS[*]}$([ $QUICK = 1 ] && echo ' (quick)')"

needs_zk=0
for part in "${PARTS[@]}"; do
  case $part in serving | forwarding | propagation | coldstart | hosts | profile) needs_zk=1 ;; esac
done
[ $needs_zk = 1 ] && start_zookeeper

for part in "${PARTS[@]}"; do
  log "=== $part ==="
  "part_$part"
done

"$PY" "$BENCH_DIR/report.py" summary --results "$RESULTS" --rev "$ZKDNS_REV" \
  --quick "$QUICK" >/dev/null
log "done in $(($(date +%s) - STARTED)) s; summary: ${RESULTS#"$REPO"/}/latest.md"
