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
    # the client matrix (tests/integration/client_matrix.rs): musl 1.2.3, Go's own resolver,
    # busybox nslookup, bind's host (dig's package above has nslookup), Python, and a JDK
    # only where there is no java
    command -v musl-gcc >/dev/null || want+=(musl-tools)
    command -v go >/dev/null || want+=(golang-go)
    [ -x /bin/busybox ] || want+=(busybox-static)
    command -v host >/dev/null || want+=(bind9-host)
    command -v python3 >/dev/null || want+=(python3)
    command -v java >/dev/null || want+=(default-jdk-headless)
  fi
  [ ${#want[@]} -eq 0 ] && return 0
  local sudo=
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "installing ${want[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${want[@]}" >&2
}
