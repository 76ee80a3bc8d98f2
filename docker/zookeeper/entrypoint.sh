#!/bin/bash
# Starts a ZooKeeper server configured from the environment, with the variables (and
# defaults) of the official `zookeeper` image, so that one compose file fits that image and
# the Debian package alike:
#   ZOO_MY_ID (1)  ZOO_SERVERS ("server.1=zk1:2888:3888;2181 server.2=…"; empty: standalone)
#   ZOO_TICK_TIME (2000)  ZOO_INIT_LIMIT (5)  ZOO_SYNC_LIMIT (2)  ZOO_MAX_CLIENT_CNXNS (60)
#   ZOO_4LW_COMMANDS_WHITELIST (srvr)  ZOO_ADMINSERVER_ENABLED (true)
#   ZOO_STANDALONE_ENABLED (true)  ZOO_AUTOPURGE_PURGEINTERVAL (0)
#   ZOO_AUTOPURGE_SNAPRETAINCOUNT (3)  ZOO_CFG_EXTRA (more "key=value" words)
#   ZK_SERVER_HEAP (MB, 256 here)
# A zoo.cfg already in ZOO_CONF_DIR (a mount of yours) is used as it is. The server runs as
# the user zookeeper; logs go to stdout.
set -eu

conf_dir=${ZOO_CONF_DIR:-/conf}
data_dir=${ZOO_DATA_DIR:-/data}
datalog_dir=${ZOO_DATA_LOG_DIR:-/datalog}
log_dir=${ZOO_LOG_DIR:-/logs}
mkdir -p "$conf_dir" "$data_dir" "$datalog_dir" "$log_dir"

if [ "${1:-}" = zkServer.sh ] && [ ! -f "$conf_dir/zoo.cfg" ]; then
  {
    echo "dataDir=$data_dir"
    echo "dataLogDir=$datalog_dir"
    echo "tickTime=${ZOO_TICK_TIME:-2000}"
    echo "initLimit=${ZOO_INIT_LIMIT:-5}"
    echo "syncLimit=${ZOO_SYNC_LIMIT:-2}"
    echo "autopurge.snapRetainCount=${ZOO_AUTOPURGE_SNAPRETAINCOUNT:-3}"
    echo "autopurge.purgeInterval=${ZOO_AUTOPURGE_PURGEINTERVAL:-0}"
    echo "maxClientCnxns=${ZOO_MAX_CLIENT_CNXNS:-60}"
    echo "standaloneEnabled=${ZOO_STANDALONE_ENABLED:-true}"
    echo "admin.enableServer=${ZOO_ADMINSERVER_ENABLED:-true}"
    echo "4lw.commands.whitelist=${ZOO_4LW_COMMANDS_WHITELIST:-srvr}"
    # Docker's DNS gives a stopped container's name no address: listen on every address
    # rather than on the one the own name had when the server started.
    echo "quorumListenOnAllIPs=true"
    if [ -n "${ZOO_SERVERS:-}" ]; then
      for server in $ZOO_SERVERS; do echo "$server"; done
    else
      echo "clientPort=2181"
    fi
    for extra in ${ZOO_CFG_EXTRA:-}; do echo "$extra"; done
  } >"$conf_dir/zoo.cfg"
fi
if [ ! -f "$data_dir/myid" ]; then
  echo "${ZOO_MY_ID:-1}" >"$data_dir/myid"
fi

if [ "${1:-}" = zkServer.sh ]; then
  # Debian's zkServer.sh logs to a file unless told otherwise; the official one to the console
  export SERVER_JVMFLAGS="${SERVER_JVMFLAGS:-} -Dzookeeper.root.logger=INFO,CONSOLE -Xmx${ZK_SERVER_HEAP:-256}m"
  export ZOO_LOG_DIR=$log_dir
  set -- "$@" "$conf_dir/zoo.cfg"
fi

if [ "$(id -u)" = 0 ]; then
  chown -R zookeeper:zookeeper "$data_dir" "$datalog_dir" "$log_dir" "$conf_dir"
  exec setpriv --reuid=zookeeper --regid=zookeeper --init-groups -- "$@"
fi
exec "$@"
