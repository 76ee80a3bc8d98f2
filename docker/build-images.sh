#!/usr/bin/env bash
# Builds the images of docker/compose.yaml on a machine without registry access: the Debian
# base from docker/build-base.sh (made once), ZooKeeper from Debian's package on it, and zkdns
# from a binary built outside Docker (a Rust toolchain cannot be fetched inside the build).
# Layers are cached: a second run only copies a changed binary in.
#
# usage: docker/build-images.sh [--binary PATH] [--tag TAG]
#   --binary  the zkdns binary (default target/release/zkdns; `cargo build --release` first).
#             It must run on Debian 12 (glibc 2.36): build it on Debian 12 or older.
#   --tag     tag of both images (default latest): zkdns:TAG, zkdns-zookeeper:TAG
# env: ZKDNS_BASE_IMAGE (default zkdns-base:bookworm), and build-base.sh's variables.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=target/release/zkdns
tag=latest
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    *) echo "usage: docker/build-images.sh [--binary PATH] [--tag TAG]" >&2; exit 2 ;;
  esac
done
[ -x "$binary" ] || { echo "build-images: no binary at $binary (cargo build --release)" >&2; exit 2; }
base=${ZKDNS_BASE_IMAGE:-zkdns-base:bookworm}

# Debian's docker.io has no BuildKit client (buildx): the legacy builder then.
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0

docker/build-base.sh "$base"

started=$(date +%s)
docker build --build-arg BASE="$base" -t "zkdns-zookeeper:$tag" docker/zookeeper >&2
echo "build-images: zkdns-zookeeper:$tag in $(( $(date +%s) - started ))s" >&2

# A small build context: the binary and what the Dockerfile copies, not the whole tree.
context=$(mktemp -d "${TMPDIR:-/tmp}/zkdns-image.XXXXXX")
trap 'rm -rf "$context"' EXIT
mkdir "$context/docker"
cp docker/Dockerfile docker/entrypoint.sh "$context/docker/"
cp "$binary" "$context/zkdns"
started=$(date +%s)
docker build -f "$context/docker/Dockerfile" --target prebuilt \
  --build-arg BASE="$base" --build-arg ZKDNS_BIN=zkdns -t "zkdns:$tag" "$context" >&2
echo "build-images: zkdns:$tag in $(( $(date +%s) - started ))s" >&2

# the images these builds replaced (each would keep a whole binary)
docker image prune -f --filter label=org.zkdns.image >/dev/null
