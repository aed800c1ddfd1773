#!/usr/bin/env bash
# Build a systemd test-host image without a registry: debootstrap a minimal root, import it into podman.
# Usage: build-image.sh debian13|ubuntu2404 [--force]
# Idempotent: an existing image is kept unless --force is given.
set -euo pipefail

name=${1:?usage: build-image.sh debian13|ubuntu2404 [--force]}
force=${2:-}
image="localhost/llamafleet-${name}:latest"
export CONTAINERS_CONF=${CONTAINERS_CONF:-$(cd "$(dirname "$0")/.." && pwd)/containers.conf}

if [[ "$force" != "--force" ]] && podman image exists "$image"; then
  echo "image $image exists"
  exit 0
fi

case "$name" in
  debian13) suite=trixie; extra=() ;;
  ubuntu2404) suite=noble; extra=(--no-check-gpg --components=main,universe) ;;
  *) echo "unknown image $name (debian13, ubuntu2404)" >&2; exit 2 ;;
esac

scripts=/usr/share/debootstrap/scripts
if [[ ! -e "$scripts/$suite" ]]; then
  # Debian 12's debootstrap predates noble; the gutsy script handles every later Ubuntu suite.
  ln -s gutsy "$scripts/$suite"
fi

root=$(mktemp -d /var/tmp/llamafleet-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase "${extra[@]}" \
  --include=systemd,systemd-sysv,dbus,dbus-user-session,python3,sudo,ca-certificates \
  "$suite" "$root"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
# The image's own machine-id is generated at first boot.
: > "$root/etc/machine-id"
tar -C "$root" -c . | podman import \
  --change 'CMD ["/sbin/init"]' --change 'ENV container=podman' --change 'STOPSIGNAL SIGRTMIN+3' \
  - "$image"
echo "built $image"
