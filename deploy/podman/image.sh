#!/usr/bin/env bash
# `make image`: the project's image, built with podman from the repository's own Dockerfile, and
# the other images deploy/compose.yaml names (redis:7-alpine, prom/prometheus:v2.53.0).
#
# Each image is pulled when a registry answers. Where none does, it is made from Debian's packages:
# a minimal Debian (debootstrap, from the mirror this machine's apt uses) imported as
# localhost/smsgw-debian:bookworm, then a Python base (Debian's python3 in a venv, `python` on PATH)
# and stand-ins for Redis and Prometheus under the names the compose file uses. Images already
# present are reused, so only the first run pays for them.
#
# Environment: SMSGW_IMAGE (default smsgw:local), SMSGW_BASE (a base image to use as it is),
# SMSGW_REBUILD_BASE=1 (make the local images again).
set -euo pipefail
# shellcheck source=deploy/podman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMAGE="${SMSGW_IMAGE:-smsgw:local}"
OFFICIAL_BASE="docker.io/library/python:3.11-slim"
DEBIAN_IMAGE="localhost/smsgw-debian:bookworm"
LOCAL_BASE="localhost/smsgw-python:bookworm"
REDIS_IMAGE="docker.io/library/redis:7-alpine"
PROMETHEUS_IMAGE="docker.io/prom/prometheus:v2.53.0"
STANDIN_LABEL="org.opencontainers.image.description=stand-in made from Debian packages by deploy/podman/image.sh"

WORK=""
LOGS=""
builders=()
cleanup() {
  # a build still running when image.sh ends (a failure, Ctrl-C) ends with it
  local builder pid
  for builder in "${builders[@]}"; do
    read -r pid _ <<<"$builder"
    kill "$pid" 2>/dev/null || true
  done
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then rm -rf -- "$WORK"; fi
  if [ -n "$LOGS" ] && [ -d "$LOGS" ]; then rm -rf -- "$LOGS"; fi
}
trap cleanup EXIT

ensure_root
ensure_tools
started=$SECONDS

have() { podman image exists "$1"; }

# One attempt, bounded: where no registry answers this fails within seconds.
pull() {
  timeout 120 podman pull -q "$1" >/dev/null 2>&1
}

fresh() { [ "${SMSGW_REBUILD_BASE:-0}" != 1 ] && have "$1"; }

debian_image() {
  if fresh "$DEBIAN_IMAGE"; then return 0; fi
  local mirror
  mirror="$(debian_mirror)"
  WORK="$(mktemp -d /var/tmp/smsgw-image.XXXXXX)"
  say "making $DEBIAN_IMAGE: debootstrap --variant=minbase bookworm from this machine's Debian mirror"
  if ! timeout 900 debootstrap --variant=minbase bookworm "$WORK/rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1; then
    tail -20 "$WORK/debootstrap.log"
    say "FAILED: debootstrap (log above)"
    exit 1
  fi
  rm -rf "$WORK/rootfs/var/lib/apt/lists/"* "$WORK/rootfs/var/cache/apt/archives/"*.deb
  tar -C "$WORK/rootfs" -c . | podman import -q --change 'CMD ["/bin/bash"]' - "$DEBIAN_IMAGE" >/dev/null
  rm -rf -- "$WORK"
  WORK=""
}

# podman build of a Containerfile from deploy/podman, FROM the local Debian image.
# (An argument list, so a build in the background is podman itself and its pid stops it.)
build_args() {
  BUILD=(podman build -q --format docker --network=host --label "$STANDIN_LABEL"
    --build-arg "DEBIAN=$DEBIAN_IMAGE" -t "$1" -f "$PODMAN_DIR/$2" "$PODMAN_DIR")
}

# Redis and Prometheus for the compose file: pulled, else made from Debian's packages. Their
# builds run beside the project's image (downloads from different places); image.sh waits for them.
standins=()
for pair in "$REDIS_IMAGE redis.Containerfile" "$PROMETHEUS_IMAGE prometheus.Containerfile"; do
  read -r tag file <<<"$pair"
  if [ "${SMSGW_REBUILD_BASE:-0}" = 1 ]; then
    # only a stand-in is made again, never an image that was pulled
    label="$(podman image inspect --format '{{index .Labels "org.opencontainers.image.description"}}' "$tag" 2>/dev/null || true)"
    if have "$tag" && [ -z "$label" ]; then continue; fi
  elif have "$tag" || pull "$tag"; then
    continue
  fi
  standins+=("$tag $file")
done

# The base of the project's image: the official one, else a local one.
base=""
if [ -n "${SMSGW_BASE:-}" ]; then
  base="$SMSGW_BASE"
elif have "$OFFICIAL_BASE" || pull "$OFFICIAL_BASE"; then
  base="$OFFICIAL_BASE"
else
  say "no registry answers for $OFFICIAL_BASE: using a base made from Debian's packages"
  fresh "$LOCAL_BASE" || standins=("$LOCAL_BASE python.Containerfile" "${standins[@]}")
  base="$LOCAL_BASE"
fi

if [ ${#standins[@]} -gt 0 ]; then
  debian_image
  LOGS="$(mktemp -d /var/tmp/smsgw-standins.XXXXXX)"
  for pair in "${standins[@]}"; do
    read -r tag file <<<"$pair"
    say "making $tag from Debian's packages ($file)"
    if [ "$tag" = "$LOCAL_BASE" ]; then
      # the project's image waits for this one
      build_args "$tag" "$file"
      "${BUILD[@]}" >"$LOGS/$file.log" 2>&1 || {
        tail -20 "$LOGS/$file.log"
        say "FAILED: $tag ($file; its output above)"
        exit 1
      }
    else
      build_args "$tag" "$file"
      "${BUILD[@]}" >"$LOGS/$file.log" 2>&1 &
      builders+=("$! $tag $file")
    fi
  done
fi

# The project's image. The build reaches PyPI through the host's network; the host's CA bundle is
# lent read-only for the build, for machines behind a TLS-inspecting proxy (the local base's pip
# reads it; the official image's pip keeps its own).
ca_mount=()
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  ca_mount=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
fi
say "building $IMAGE from the Dockerfile (FROM $base)"
# --format docker keeps the HEALTHCHECK (the OCI image format has none).
WORK="$(mktemp -d /var/tmp/smsgw-image.XXXXXX)"
if ! podman build --format docker --network=host "${ca_mount[@]}" \
  --build-arg "BASE=$base" -t "$IMAGE" -f "$REPO_DIR/Dockerfile" "$REPO_DIR" >"$WORK/build.log" 2>&1; then
  tail -40 "$WORK/build.log"
  say "FAILED: podman build of the Dockerfile (its output above)"
  exit 1
fi
grep -E '^STEP' "$WORK/build.log" || true
failed=0
for builder in "${builders[@]}"; do
  read -r pid tag file <<<"$builder"
  if ! wait "$pid"; then
    tail -20 "$LOGS/$file.log"
    say "FAILED: $tag ($file; its output above)"
    failed=1
  fi
done
[ "$failed" = 0 ] || exit 1
created="$(podman image inspect --format '{{.Created}}' "$IMAGE")"
say "OK: $IMAGE (created $created), base $base, in $((SECONDS - started)) s"
