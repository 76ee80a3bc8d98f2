#!/usr/bin/env bash
# Builds the Debian base image that the zkdns images use on machines without registry access:
# debootstrap of Debian bookworm (minbase) into a folder, then `docker import`. Nothing is
# pulled from an image registry; only Debian's package mirror is used.
#
# usage: docker/build-base.sh [IMAGE]        IMAGE defaults to zkdns-base:bookworm
# env:   ZKDNS_DEBIAN_MIRROR  package mirror (default http://deb.debian.org/debian)
#        ZKDNS_BASE_REBUILD=1 build even when IMAGE exists (otherwise an existing IMAGE is kept)
#
# Then: docker build --build-arg BASE=zkdns-base:bookworm …  (see docs/deployment.md)
set -euo pipefail

image=${1:-zkdns-base:bookworm}
suite=bookworm
mirror=${ZKDNS_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# Several test runs may start at once on one machine: one debootstrap at a time, and whoever
# waited finds the image made.
exec 9>"${TMPDIR:-/tmp}/zkdns-build-base.lock"
flock 9

if [ -z "${ZKDNS_BASE_REBUILD:-}" ] && docker image inspect "$image" >/dev/null 2>&1; then
  echo "build-base: $image exists (ZKDNS_BASE_REBUILD=1 builds it again)" >&2
  exit 0
fi

sudo=
[ "$(id -u)" = 0 ] || sudo=sudo
if ! command -v debootstrap >/dev/null; then
  echo "build-base: installing debootstrap" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends debootstrap >&2
fi

root=$(mktemp -d "${TMPDIR:-/tmp}/zkdns-base.XXXXXX")
trap '$sudo rm -rf --one-file-system "$root"' EXIT

started=$(date +%s)
echo "build-base: debootstrap --variant=minbase $suite from $mirror (a few minutes)" >&2
$sudo debootstrap --variant=minbase "$suite" "$root" "$mirror" >&2

# What the official debian:*-slim images do too: apt sources for updates and security fixes,
# no documentation, man pages or translations in images built from this one, no apt caches.
$sudo tee "$root/etc/apt/sources.list" >/dev/null <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SOURCES
$sudo tee "$root/etc/dpkg/dpkg.cfg.d/docker-slim" >/dev/null <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
SLIM
$sudo tee "$root/etc/apt/apt.conf.d/docker-clean" >/dev/null <<'CLEAN'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CLEAN
$sudo rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log
# Empty man sections stay: some maintainer scripts (openjdk's update-alternatives) link into them.
$sudo mkdir -p "$root"/usr/share/man/man{1..8}

# /dev, /proc and /sys are the engine's business in a container.
$sudo tar -C "$root" --numeric-owner --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* -c . |
  docker import \
    --change 'CMD ["bash"]' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL org.zkdns.base=debootstrap-$suite-minbase" \
    - "$image" >/dev/null
echo "build-base: $image made in $(( $(date +%s) - started ))s" >&2
