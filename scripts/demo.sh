#!/usr/bin/env bash
# The main job on a fresh machine: a local single-node ZooKeeper (data in .zkdns-demo/), the
# zones/ files imported, and `zkdns serve` answering on 127.0.0.1:5353. Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages demo

cargo build --release --locked
bin=$PWD/target/release/zkdns
state=$PWD/.zkdns-demo
zk_port=${ZKDNS_DEMO_ZK_PORT:-2181}
zk=127.0.0.1:$zk_port
mkdir -p "$state/zk/data" "$state/zk/log"
cat > "$state/zk/zoo.cfg" <<CFG
tickTime=500
dataDir=$state/zk/data
clientPort=$zk_port
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,mntr
maxClientCnxns=0
CFG

pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

ruok() { { exec 3<>"/dev/tcp/127.0.0.1/$zk_port" && echo ruok >&3 && head -c4 <&3; } 2>/dev/null; }
if [ "$(ruok)" = imok ]; then
  echo "a ZooKeeper already answers on $zk; using it" >&2
else
  ZOO_LOG_DIR="$state/zk/log" setsid /usr/share/zookeeper/bin/zkServer.sh start-foreground \
    "$state/zk/zoo.cfg" > "$state/zk/log/console.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 120); do [ "$(ruok)" = imok ] && break; sleep 0.5; done
  [ "$(ruok)" = imok ] || { echo "ZooKeeper did not start; see $state/zk/log/" >&2; exit 1; }
fi

"$bin" --zk "$zk" import zones/*.zone
"$bin" --zk "$zk" import --format hosts --zone office.test zones/office.test.hosts
"$bin" --zk "$zk" import --format json-map --zone legacy.test zones/legacy.test.json
"$bin" --zk "$zk" --root /zkdns-demo-upstream import scripts/demo/upstream.zone >/dev/null
setsid "$bin" --zk "$zk" --root /zkdns-demo-upstream serve --listen 127.0.0.1:5354 --no-upstream \
  2> "$state/upstream.log" &
pids+=($!)
setsid "$bin" --zk "$zk" serve --listen 127.0.0.1:5353 --upstream 127.0.0.1:5354 2> >(tee "$state/zkdns.log" >&2) &
pids+=($!)
for _ in $(seq 100); do grep -q "resynced" "$state/zkdns.log" 2>/dev/null && break; sleep 0.1; done

cat <<MSG

zkdns is answering on 127.0.0.1:5353 (ZooKeeper on $zk). Try:

  dig @127.0.0.1 -p 5353 web.cluster.test          # A records from ZooKeeper
  dig @127.0.0.1 -p 5353 nope.cluster.test         # NXDOMAIN with the zone's SOA
  dig @127.0.0.1 -p 5353 _http._tcp.web.cluster.test SRV
  dig @127.0.0.1 -p 5353 printer.office.test       # from zones/office.test.hosts
  dig @127.0.0.1 -p 5353 cache.legacy.test ANY     # from the old JSON map format
  dig @127.0.0.1 -p 5353 www.example.test          # forwarded to the upstream on 127.0.0.1:5354
  $bin --zk $zk set web.cluster.test A 10.0.0.99   # the next dig sees it

Ctrl-C stops zkdns and ZooKeeper.
MSG
wait
