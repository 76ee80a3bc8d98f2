# Shared by bench/run.sh and its parts: packages, builds, ports, process bookkeeping,
# ZooKeeper, data sets, and the servers under test. Sourced, not run.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")
WORK=${BENCH_WORK:-$BENCH_DIR/.work}
RESULTS=${BENCH_RESULTS:-$BENCH_DIR/results}
RUN=$WORK/run                 # per-run scratch: configs, logs, pids (wiped at the start)
BIN=$WORK/bin                 # the binaries this run measures
TOOL=$BIN/zkdns-bench
ZKDNS=$BIN/zkdns
HICKORY=$WORK/hickory/bin/hickory-dns
CLK_TCK=$(getconf CLK_TCK)
PY=$(command -v /usr/bin/python3 || command -v python3)

log() { printf '\033[1m[bench %(%H:%M:%S)T]\033[0m %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- processes we started: stopped on exit, Ctrl-C or failure -------------------------------
PIDS=()
track() { PIDS+=("$1"); }

stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Stops one tracked process and forgets it.
untrack_stop() {
  local pid=$1 kept=() p
  stop_pid "$pid"
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
  PIDS=("${kept[@]}")
}

cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}"; done
  case $ZK_DATA in /dev/shm/zkdns-bench-*) rm -rf "$ZK_DATA" ;; esac
  [ $rc -eq 0 ] || log "stopped (exit $rc); logs in $RUN"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- packages and builds ----------------------------------------------------------------------
need_packages() {
  local want=()
  command -v dnsperf >/dev/null || want+=(dnsperf)
  command -v dig >/dev/null || want+=(bind9-dnsutils)
  command -v dnsmasq >/dev/null || want+=(dnsmasq-base)
  command -v unbound >/dev/null || want+=(unbound)
  command -v knotd >/dev/null || want+=(knot)
  [ -x /usr/share/zookeeper/bin/zkServer.sh ] || want+=(zookeeper)
  command -v taskset >/dev/null || want+=(util-linux)
  [ -n "$PY" ] || want+=(python3)
  [ ${#want[@]} -eq 0 ] && return 0
  local sudo=
  [ "$(id -u)" = 0 ] || sudo=sudo
  log "installing ${want[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${want[@]}" >&2
  PY=$(command -v /usr/bin/python3 || command -v python3)
}

# Builds zkdns (release) and the driver, and copies both to $BIN, so that a rebuild of the
# work tree during the run does not change what is measured.
build() {
  mkdir -p "$BIN"
  log "building zkdns --release"
  (cd "$REPO" && cargo build --release --quiet --bin zkdns) || die "zkdns does not build"
  cp -f "$REPO/target/release/zkdns" "$ZKDNS.new" && mv -f "$ZKDNS.new" "$ZKDNS"
  log "building the driver (bench/tool)"
  (cd "$BENCH_DIR/tool" && CARGO_TARGET_DIR="$WORK/tool-target" cargo build --release --quiet) \
    || die "bench/tool does not build"
  cp -f "$WORK/tool-target/release/zkdns-bench" "$TOOL.new" && mv -f "$TOOL.new" "$TOOL"
  ZKDNS_REV=$(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo unknown)
  export ZKDNS_REV
}

# hickory-dns from crates.io, optional: built once into $WORK/hickory.
build_hickory() {
  [ -x "$HICKORY" ] && return 0
  [ "${BENCH_NO_HICKORY:-}" = 1 ] && return 1
  log "building hickory-dns 0.26.3 from crates.io (once, a few minutes)"
  cargo install hickory-dns --version 0.26.3 --locked --no-default-features --quiet \
    --root "$WORK/hickory" --target-dir "$WORK/hickory-target" >"$WORK/hickory-install.log" 2>&1
  [ -x "$HICKORY" ] || { log "hickory-dns did not build (see $WORK/hickory-install.log): skipped"; return 1; }
}

# --- ports, CPU, memory -----------------------------------------------------------------------
# A loopback port free for both UDP and TCP.
free_port() {
  "$PY" - <<'EOF'
import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port)); print(port); break
    except OSError:
        pass
    finally:
        u.close(); t.close()
EOF
}

# utime + stime of every thread of a process, in clock ticks.
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# Clock ticks one CPU spent running processes (user, nice, system; not interrupts, which the
# kernel may account apart from any process), from /proc/stat.
core_busy() { awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 }' /proc/stat; }

# Context switches (voluntary + not) of every thread of a process: how often it slept and woke.
ctx_switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null \
    | awk '/^(non)?voluntary_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# the anonymous part of it (heap, stacks): what is the process's own, not shared code pages
rss_anon_kb() { awk '/^RssAnon:/ { print $2 }' "/proc/$1/status"; }

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

# --- ZooKeeper ----------------------------------------------------------------------------------
ZK_PORT=
ZK=
ZK_DATA=
ZK_STORAGE=
start_zookeeper() {
  local dir=$RUN/zookeeper data i
  rm -rf "$dir"
  mkdir -p "$dir"
  # Data on tmpfs by default: ZooKeeper's fsync on this shared disk adds tens of ms at the
  # tail (other developers' I/O), which would drown what zkdns itself adds. BENCH_ZK_DISK=1
  # puts it on disk, as a production server would have it.
  if [ "${BENCH_ZK_DISK:-0}" != 1 ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    data=/dev/shm/zkdns-bench-$$
    ZK_STORAGE="tmpfs"
  else
    data=$dir/data
    ZK_STORAGE="disk ($(df --output=source "$dir" | tail -1))"
  fi
  rm -rf "$data"
  mkdir -p "$data"
  ZK_DATA=$data
  ZK_PORT=$(free_port)
  # tickTime 500: sessions may be as short as 1 s (the resync part cuts past one)
  cat >"$dir/zoo.cfg" <<EOF
tickTime=500
initLimit=10
syncLimit=5
dataDir=$data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=*
autopurge.purgeInterval=0
EOF
  ZOO_LOG_DIR=$dir /usr/share/zookeeper/bin/zkServer.sh start-foreground "$dir/zoo.cfg" \
    >"$dir/zookeeper.out" 2>&1 &
  track $!
  ZK=127.0.0.1:$ZK_PORT
  for i in $(seq 600); do
    if [ "$(zk_cmd ruok)" = imok ]; then
      log "ZooKeeper on $ZK (data on $ZK_STORAGE: $data; logs in $dir)"
      return 0
    fi
    sleep 0.1
  done
  tail -20 "$dir/zookeeper.out" >&2
  die "ZooKeeper did not start"
}

zk_cmd() {
  { exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT"; } 2>/dev/null || return 0
  printf '%s' "$1" >&3
  timeout 2 cat <&3 2>/dev/null || true
  exec 3<&- 3>&-
}

# --- data sets ----------------------------------------------------------------------------------
# data N: generates (once) the data set of N names; prints its directory.
data() {
  local dir=$WORK/data/$1
  if [ ! -s "$dir/probe" ] || [ "$dir/probe" -ot "$BENCH_DIR/gen.py" ]; then
    log "generating $1 names"
    "$PY" "$BENCH_DIR/gen.py" "$1" "$dir"
  fi
  echo "$dir"
}

# zk_load N ROOT: imports the data set of N names under ROOT; prints the seconds it took.
zk_load() {
  local dir t0 t1
  dir=$(data "$1")
  t0=$(date +%s.%N)
  "$ZKDNS" import --zk "$ZK" --root "$2" "$dir/zone.zone" >"$RUN/import-$1.log" 2>&1 \
    || { cat "$RUN/import-$1.log" >&2; die "zkdns import of $1 names failed"; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }'
}

# unbound_conf FILE PORT DIR SERVER_LINES [SECTIONS]: writes an Unbound configuration for one
# thread on 127.0.0.1:PORT in the foreground (working directory DIR, logging to stderr), with
# SERVER_LINES added to its server clause and SECTIONS (whole clauses) after it.
unbound_conf() {
  cat >"$1" <<EOF
server:
    interface: 127.0.0.1@$2
    port: $2
    num-threads: 1
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "$3"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 0
    do-ip6: no
    so-reuseport: no
    access-control: 127.0.0.0/8 allow
$4
${5:-}remote-control:
    control-enable: no
EOF
}

# --- the servers --------------------------------------------------------------------------------
# server_cmd NAME N PORT: writes NAME's configuration for the set of N names on
# 127.0.0.1:PORT into $RUN/NAME-N and sets SRV_CMD to its command line (foreground).
SRV_CMD=()
server_cmd() {
  local name=$1 n=$2 port=$3 dir conf
  dir=$(data "$n")
  conf=$RUN/$name-$n
  rm -rf "$conf"
  mkdir -p "$conf"
  case $name in
    zkdns)
      SRV_CMD=("$ZKDNS" serve --zk "$ZK" --root "/b$n" --listen "127.0.0.1:$port" --no-upstream)
      ;;
    knot)
      mkdir -p "$conf/db"
      cat >"$conf/knot.conf" <<EOF
server:
    rundir: "$conf"
    listen: 127.0.0.1@$port
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$conf/db"
log:
  - target: stderr
    any: warning
zone:
  - domain: bench.test
    file: "$dir/zone.zone"
    journal-content: none
    zonefile-sync: -1
EOF
      SRV_CMD=(knotd -c "$conf/knot.conf")
      ;;
    unbound)
      unbound_conf "$conf/unbound.conf" "$port" "$conf" "    include: \"$dir/unbound.conf\""
      SRV_CMD=(unbound -d -c "$conf/unbound.conf")
      ;;
    dnsmasq)
      SRV_CMD=(dnsmasq --keep-in-foreground --conf-file=/dev/null --no-hosts --no-resolv
        --addn-hosts="$dir/hosts" --port="$port" --listen-address=127.0.0.1 --bind-interfaces
        --local=/bench.test/ --user=root --pid-file=)
      ;;
    hickory)
      cat >"$conf/named.toml" <<EOF
listen_addrs_ipv4 = ["127.0.0.1"]
drop_privileges = false
[[zones]]
zone = "bench.test"
zone_type = "Primary"
[zones.stores]
type = "file"
zone_path = "zone.zone"
EOF
      SRV_CMD=("$HICKORY" -q -c "$conf/named.toml" -z "$dir" -p "$port")
      ;;
    floor)
      # the bare loop (bench/tool/src/floor.rs): a reference, not a peer
      SRV_CMD=("$TOOL" floor --listen "127.0.0.1:$port" --names "$dir/names.tsv")
      ;;
    *) die "unknown server $name" ;;
  esac
}

# start_server NAME N PORT [CORE]: starts NAME serving the set of N names on 127.0.0.1:PORT,
# pinned to CORE (default 0), with one worker thread where it has a knob for it; sets
# SRV_PID. Readiness is the caller's (wait_ready).
SRV_PID=
start_server() {
  local name=$1 n=$2 port=$3 core=${4:-0} one=()
  server_cmd "$name" "$n" "$port"
  case $name in
    zkdns) one=(--udp-workers 1) ;;
    hickory) one=(--workers 1) ;;
  esac
  taskset -c "$core" "${SRV_CMD[@]}" "${one[@]}" >"$RUN/$name-$n/log" 2>&1 &
  SRV_PID=$!
  track "$SRV_PID"
}

# wait_ready N PORT: waits until 127.0.0.1:PORT answers the probe name of the set of N names;
# prints the milliseconds it took.
wait_ready() {
  local probe
  read -r -a probe <"$(data "$1")/probe"
  "$TOOL" wait --dns "127.0.0.1:$2" --name "${probe[0]}" --expect "${probe[1]}" --timeout "${3:-180}"
}

# dnsperf_run PORT QUERIES SECS QPS OUT [CORE] [OUTSTANDING]: QPS 0 = as fast as it goes.
dnsperf_run() {
  local port=$1 queries=$2 secs=$3 qps=$4 out=$5 core=${6:-1} outstanding=${7:-500}
  local rate=()
  [ "$qps" -gt 0 ] && rate=(-Q "$qps")
  taskset -c "$core" dnsperf -s 127.0.0.1 -p "$port" -d "$queries" -l "$secs" -c 4 -T 1 \
    -q "$outstanding" -t 2 "${rate[@]}" >"$out" 2>&1 || true
}

# dnsperf_field OUT NAME: completed | lost | qps | latency_us | noerror_pct
dnsperf_field() {
  case $2 in
    completed) awk '/Queries completed:/ { print $3 }' "$1" ;;
    lost) awk '/Queries lost:/ { gsub(/[()%]/, "", $4); print $4 }' "$1" ;;
    qps) awk '/Queries per second:/ { print $4 }' "$1" ;;
    latency_us) awk '/Average Latency \(s\):/ { printf "%.1f\n", $4 * 1e6 }' "$1" ;;
    noerror_pct) awk '/Response codes:/ { for (i = 3; i <= NF; i++) if ($i == "NOERROR") { gsub(/[()%,]/, "", $(i + 2)); print $(i + 2) } }' "$1" ;;
  esac
}
