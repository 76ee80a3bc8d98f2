# Installs the Debian packages a zkdns script needs, when missing. Sourced, not run.
# usage: need_packages demo|test
need_packages() {
  local want=()
  [ -x /usr/share/zookeeper/bin/zkServer.sh ] || want+=(zookeeper)
  command -v dig >/dev/null || want+=(bind9-dnsutils)
  if [ "$1" = test ]; then
    command -v knotd >/dev/null || want+=(knot)
    command -v ip >/dev/null || want+=(iproute2)
    command -v unshare >/dev/null || want+=(util-linux)
    command -v debootstrap >/dev/null || want+=(debootstrap)
  fi
  [ ${#want[@]} -eq 0 ] && return 0
  local sudo=
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "installing ${want[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${want[@]}" >&2
}
