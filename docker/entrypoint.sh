#!/bin/bash
# zkdns-entrypoint: runs zkdns beside the container's application, so that the application
# finds the other containers by name, then runs the application (CMD) and, when it ends or
# the container is stopped, withdraws the name and stops zkdns.
#
#   ZKDNS_MODE=dns    (default) `zkdns serve` on ZKDNS_LISTEN (127.0.0.53:53) becomes the
#                     container's nameserver: /etc/resolv.conf is rewritten in place to name
#                     it, and its original nameservers become the stub's upstreams.
#   ZKDNS_MODE=hosts  `zkdns hosts` keeps a block of /etc/hosts (ZKDNS_HOSTS_FILE) current;
#                     resolv.conf is left alone.
#   ZKDNS_MODE=register  no stub of its own: the container resolves through a stub shared by
#                     its host (compose's `dns:`, docker/compose.per-host.yaml) and only
#                     publishes its name.
#   ZKDNS_MODE=off    runs the command alone: the default when the command starts with
#                     `zkdns` (docker run IMAGE zkdns ls).
#
# In dns, hosts and register mode `zkdns register NAME` publishes this container while it runs. NAME is
# ZKDNS_NAME, by default the container's hostname plus its domain name (compose: hostname: app1,
# domainname: cluster.test -> app1.cluster.test); ZKDNS_NAME= (empty) registers nothing. The
# address and the other options come from register's own ZKDNS_REGISTER_* variables; ZooKeeper
# from ZKDNS_ZK. Every other ZKDNS_* variable reaches zkdns as it is (`zkdns serve --help`).
#
# Run as root (the default), the entrypoint does the two things that need root - rewriting
# the root-owned resolv.conf that Docker bind-mounts, and handing /etc/hosts to the zkdns user
# in hosts mode - and runs zkdns as ZKDNS_USER (default zkdns, with CAP_NET_BIND_SERVICE as its
# only capability, for port 53) and the application as ZKDNS_APP_USER when that is set. Run as
# another user, it needs those files writable (bind mounts of your own).
#
# The entrypoint stays as the parent of everything (under tini) rather than exec-ing the
# application: it is what stops the helpers. On SIGTERM/SIGINT: register goes first (the name
# disappears from the other containers at once), then the application gets the signal, then,
# once it has exited, the stub. If serve, hosts or register dies, the application is stopped
# and the container exits 1. Exit status: the application's.
set -u

log() { echo "zkdns-entrypoint: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

mode=${ZKDNS_MODE:-}
if [ -z "$mode" ]; then
  case "${1:-}" in
    zkdns | */zkdns) mode=off ;;
    *) mode=dns ;;
  esac
fi
case "$mode" in
  off) exec "$@" ;;
  dns | hosts | register) ;;
  *) die "ZKDNS_MODE=$mode: expected dns, hosts, register or off" ;;
esac
[ $# -gt 0 ] || die "no command to run"

listen=${ZKDNS_LISTEN:-127.0.0.53:53}
resolv_conf=${ZKDNS_RESOLV_CONF:-/etc/resolv.conf}
hosts_file=${ZKDNS_HOSTS_FILE:-/etc/hosts}
helper_user=${ZKDNS_USER:-zkdns}
ready_timeout=${ZKDNS_READY_TIMEOUT:-30}
# /healthz of the stub tells when it has read the zones; an address of its own, so that no
# application port is taken.
metrics=${ZKDNS_METRICS:-127.0.0.53:9153}

if [ "${ZKDNS_NAME+set}" = set ]; then
  name=$ZKDNS_NAME
else
  name=$(cat /proc/sys/kernel/hostname)
  domain=$(cat /proc/sys/kernel/domainname 2>/dev/null || true)
  case "$domain" in "" | "(none)") ;; *) name="$name.$domain" ;; esac
fi
[ "$mode" != register ] || [ -n "$name" ] || die "ZKDNS_MODE=register with an empty ZKDNS_NAME: nothing to do"

# --- privileges -------------------------------------------------------------------------
root=
[ "$(id -u)" = 0 ] && root=1

# The helper user keeps one capability, CAP_NET_BIND_SERVICE (port 53), as an ambient one,
# when the container has it (Docker's default set does). Without it, binding port 53 as that
# user works only where net.ipv4.ip_unprivileged_port_start allows it (Docker's default: 0).
# Shrinking the bounding set as well needs CAP_SETPCAP, which a container may lack.
has_cap() { # has_cap SET BIT
  local set
  set=$(awk -v f="$1:" '$1 == f { print $2 }' /proc/self/status)
  (((0x${set:-0} >> $2) & 1))
}
helper_caps=(--inh-caps=-all --ambient-caps=-all)
if has_cap CapEff 10; then
  # shellcheck disable=SC2054 # setpriv's lists are comma-separated
  helper_caps=(--inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service)
  # shellcheck disable=SC2054
  has_cap CapEff 8 && helper_caps+=(--bounding-set=-all,+net_bind_service)
elif has_cap CapEff 8; then
  helper_caps+=(--bounding-set=-all)
fi

# ZooKeeper credentials in a file (ZKDNS_ZK_AUTH_FILE) are usually a secret that only root may
# read (mode 0400); zkdns runs as the helper user, so it gets the content as ZKDNS_ZK_AUTH (the
# same credentials), in its environment only.
zk_auth=
if [ -n "$root" ] && [ "$helper_user" != root ] && [ -n "${ZKDNS_ZK_AUTH_FILE:-}" ]; then
  [ -z "${ZKDNS_ZK_AUTH:-}" ] || die "ZKDNS_ZK_AUTH_FILE and ZKDNS_ZK_AUTH are both set"
  zk_auth=$(cat "$ZKDNS_ZK_AUTH_FILE") || die "cannot read ZKDNS_ZK_AUTH_FILE ($ZKDNS_ZK_AUTH_FILE)"
fi

# Runs "$@" as the helper user, in its own session (a Ctrl-C meant for the application does
# not reach zkdns; the entrypoint stops it in order).
as_helper() {
  if [ -n "$root" ] && [ "$helper_user" != root ]; then
    if [ -n "$zk_auth" ]; then
      unset ZKDNS_ZK_AUTH_FILE
      export ZKDNS_ZK_AUTH="$zk_auth"
    fi
    exec setsid setpriv --reuid="$helper_user" --regid="$helper_user" --init-groups \
      "${helper_caps[@]}" -- "$@"
  fi
  exec setsid -- "$@"
}

as_app() {
  if [ -n "$root" ] && [ -n "${ZKDNS_APP_USER:-}" ]; then
    local user=${ZKDNS_APP_USER%%:*} group=${ZKDNS_APP_USER#*:}
    # no group given: the user's own (nobody's is nogroup), else the same number
    [ "$group" != "$ZKDNS_APP_USER" ] || group=$(id -g "$user" 2>/dev/null || echo "$user")
    if [ "$user" = "${user#[0-9]}" ] && [ "$group" = "${group#[0-9]}" ]; then
      exec setpriv --reuid="$user" --regid="$group" --init-groups -- "$@"
    fi
    exec setpriv --reuid="$user" --regid="$group" --clear-groups -- "$@"
  fi
  exec "$@"
}

# --- resolv.conf ------------------------------------------------------------------------
# The stub's addresses that resolv.conf can name: IPs on port 53 (resolv.conf has no port).
stub_ips=()
IFS=', ' read -r -a listens <<<"$listen"
for l in "${listens[@]}"; do
  [ -n "$l" ] || continue
  port=${l##*:}
  ip=${l%:*}
  ip=${ip#[}
  ip=${ip%]}
  [ "$port" = 53 ] && stub_ips+=("$ip")
done

# The nameservers to forward to: those that an earlier run of this entrypoint saved in the
# file (a restarted container keeps its rewritten resolv.conf), else the file's own.
original_nameservers() {
  local saved
  saved=$(awk '$1 == "#" && $2 == "zkdns-upstream" { print $3 }' "$resolv_conf")
  if [ -n "$saved" ]; then
    echo "$saved"
    return
  fi
  awk '$1 == "nameserver" { print $2 }' "$resolv_conf" | while read -r ns; do
    case "$ns" in *%*) continue ;; esac # link-local with a scope: not an upstream address
    for s in "${stub_ips[@]}"; do [ "$ns" = "$s" ] && continue 2; done
    echo "$ns"
  done
}

# Points resolv.conf at the stub, keeping search, options and everything else. In place
# (truncate + write): Docker bind-mounts the file, so a rename onto it fails with EBUSY.
rewrite_resolv_conf() {
  local upstreams=("$@") content s u
  content="# zkdns: written by zkdns-entrypoint; the zkdns stub answers for this container, and"
  content+=$'\n'"# zkdns: the nameservers it had before are the stub's upstreams:"
  for u in "${upstreams[@]}"; do content+=$'\n'"# zkdns-upstream $u"; done
  for s in "${stub_ips[@]}"; do content+=$'\n'"nameserver $s"; done
  content+=$'\n'$(awk '$1 != "nameserver" && index($0, "# zkdns") != 1' "$resolv_conf")
  printf '%s\n' "$content" >"$resolv_conf"
}

# --- helpers ----------------------------------------------------------------------------
serve_pid='' hosts_pid='' register_pid='' app_pid=''

helper_name() {
  case "$1" in
    "$serve_pid") echo "zkdns serve" ;;
    "$hosts_pid") echo "zkdns hosts" ;;
    "$register_pid") echo "zkdns register" ;;
    *) echo "process $1" ;;
  esac
}

# SIGTERM to pid $1 and waits for it; SIGKILL after $2 seconds.
stop() {
  local pid=$1 grace=$2 killer
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  (
    sleep "$grace"
    kill -KILL "$pid" 2>/dev/null
  ) &
  killer=$!
  wait "$pid" 2>/dev/null
  # KILL: the killer inherited the ignored TERM of the shutdown
  kill -KILL "$killer" 2>/dev/null
  wait "$killer" 2>/dev/null
}

# Not `kill -0`: without CAP_KILL root may not signal the helper user's processes.
alive() {
  local state
  [ -n "$1" ] && state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) && [ "${state%% *}" != Z ]
}

# The stub's /healthz: 200 once it has read the zones from ZooKeeper.
# shellcheck disable=SC2317 # called through wait_for
stub_ready() {
  local host=${metrics%:*} port=${metrics##*:}
  host=${host#[}
  host=${host%]}
  (
    exec 3<>"/dev/tcp/$host/$port" || exit 1
    printf 'GET /healthz HTTP/1.0\r\nHost: zkdns\r\n\r\n' >&3
    read -r -t 2 _ status _ <&3
    [ "$status" = 200 ]
  ) 2>/dev/null
}

# Waits up to ready_timeout seconds for "$@" to succeed while the helpers live.
wait_for() {
  local what=$1 deadline=$((SECONDS + ready_timeout))
  shift
  until "$@"; do
    for pid in $serve_pid $hosts_pid $register_pid; do
      alive "$pid" || die "$(helper_name "$pid") exited before $what"
    done
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "warning: $what: still waiting after ${ready_timeout}s; starting the application anyway"
      return 1
    fi
    sleep 0.1
  done
}

if [ "$mode" = dns ]; then
  [ ${#stub_ips[@]} -gt 0 ] || die "ZKDNS_LISTEN=$listen: resolv.conf cannot name a port, so the stub must listen on port 53"
  [ -w "$resolv_conf" ] || die "$resolv_conf is not writable: run the entrypoint as root, or bind-mount a writable resolv.conf"
  mapfile -t upstreams < <(original_nameservers)
  serve=(zkdns serve --listen "$listen" --metrics "$metrics")
  if [ -n "${ZKDNS_UPSTREAM:-}" ] || [ -n "${ZKDNS_NO_UPSTREAM:-}" ]; then
    : # the user's choice, read by serve itself
  elif [ ${#upstreams[@]} -gt 0 ]; then
    serve+=(--upstream "$(IFS=,; echo "${upstreams[*]}")")
  else
    serve+=(--no-upstream)
  fi
  log "starting ${serve[*]}"
  as_helper "${serve[@]}" &
  serve_pid=$!
elif [ "$mode" = hosts ]; then
  if [ -n "$root" ] && [ "$helper_user" != root ]; then
    # zkdns writes Docker's bind-mounted hosts file in place; that needs it to own the file
    { touch "$hosts_file" && chown "$helper_user" "$hosts_file"; } || die "cannot hand $hosts_file to $helper_user"
  fi
  log "starting zkdns hosts --file $hosts_file"
  as_helper zkdns hosts --file "$hosts_file" &
  hosts_pid=$!
fi

if [ -n "$name" ]; then
  log "starting zkdns register $name"
  as_helper zkdns register "$name" &
  register_pid=$!
else
  log "ZKDNS_NAME is empty: not registering this container"
fi

if [ "$mode" = dns ]; then
  # resolv.conf names the stub only once it answers, so nothing resolves into a void
  wait_for "the stub's /healthz" stub_ready || true
  rewrite_resolv_conf "${upstreams[@]}" || die "cannot rewrite $resolv_conf"
  log "$resolv_conf points at ${stub_ips[*]}; upstreams: ${upstreams[*]:-none}"
elif [ "$mode" = hosts ]; then
  wait_for "the zkdns block in $hosts_file" grep -qx '# BEGIN zkdns' "$hosts_file" || true
fi

# --- the application --------------------------------------------------------------------
signal=
trap 'signal=TERM' TERM
trap 'signal=INT' INT
trap 'signal=QUIT' QUIT
# SIGHUP often means "reload": passed on, and the container goes on
trap 'kill -HUP "$app_pid" 2>/dev/null' HUP

as_app "$@" <&0 &
app_pid=$!

status=0
failed=
while :; do
  exited=
  wait -n -p exited
  code=$?
  [ -n "$signal" ] && break
  [ -n "$exited" ] || continue
  if [ "$exited" = "$app_pid" ]; then
    status=$code
    app_pid=
    break
  fi
  log "error: $(helper_name "$exited") exited with status $code; stopping the application"
  case "$exited" in
    "$serve_pid") serve_pid= ;;
    "$hosts_pid") hosts_pid= ;;
    "$register_pid") register_pid= ;;
  esac
  failed=1
  break
done
trap '' TERM INT QUIT HUP

stop "$register_pid" 5
if [ -n "$app_pid" ]; then
  kill -"${signal:-TERM}" "$app_pid" 2>/dev/null
  wait "$app_pid"
  status=$?
fi
stop "$serve_pid" 5
stop "$hosts_pid" 5
[ -n "$failed" ] && exit 1
exit "$status"
