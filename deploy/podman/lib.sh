# shellcheck shell=bash
# Shared by image.sh and stack-check: podman's settings and the tools the two need.
# Sourced, not run.

PODMAN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export REPO_DIR
REPO_DIR="$(cd "$PODMAN_DIR/../.." && pwd)"
export CONTAINERS_CONF="$PODMAN_DIR/containers.conf"
export CONTAINERS_REGISTRIES_CONF="$PODMAN_DIR/registries.conf"

# Exit status when the machine cannot run containers at all (not a failure of the stack itself).
STACK_IMPOSSIBLE=3

say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

impossible() {
  say "CANNOT RUN HERE: $*"
  exit "$STACK_IMPOSSIBLE"
}

# The Debian packages: podman and its network stack (netavark publishes ports with iptables),
# runc (crun refuses hybrid cgroups), buildah, and debootstrap for a local base image when no
# registry answers. Recommended packages come along, as they did where this was tried.
STACK_PACKAGES=(podman buildah runc netavark aardvark-dns iptables debootstrap ca-certificates)

ensure_tools() {
  local missing=()
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  command -v buildah >/dev/null 2>&1 || missing+=(buildah)
  command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
  [ -x /usr/lib/podman/netavark ] || command -v netavark >/dev/null 2>&1 || missing+=(netavark)
  [ -x /usr/lib/podman/aardvark-dns ] || command -v aardvark-dns >/dev/null 2>&1 || missing+=(aardvark-dns)
  command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || missing+=(iptables)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    impossible "missing ${missing[*]}, and installing them needs root (Debian: sudo apt-get install ${STACK_PACKAGES[*]})"
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    impossible "missing ${missing[*]}, and this machine has no apt-get to install them"
  fi
  say "installing ${STACK_PACKAGES[*]} (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${STACK_PACKAGES[@]}" >/dev/null
}

ensure_root() {
  # Rootless podman needs subordinate ids and a user session this script does not set up.
  [ "$(id -u)" = 0 ] || impossible "the stack runs with root's podman (run as root, or under sudo)"
}

# The Debian mirror this machine's apt already uses (never written into the repository).
debian_mirror() {
  local mirror=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
  fi
  if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror="$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)"
  fi
  [ -n "$mirror" ] || impossible "no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
  printf '%s\n' "$mirror"
}
