#!/bin/sh
# Creates a realistic stack image (Debian minbase: bash, coreutils, apt, python3 with its standard library) on a machine
# without a registry: debootstrap a root file system, add the unprivileged `app` user
# (uid/gid 1000, home /app) that the paas builder and scheduler run as, and import it with
# `docker import`. About 30 s and ~230 MB; it does nothing when the tag exists already.
#
# Usage: make-debian-stack.sh [TAG] [SUITE] [INCLUDE]
#   TAG      image tag              (default paas/stack-debian:1)
#   SUITE    Debian suite           (default bookworm)
#   INCLUDE  extra packages, comma  (default python3,ca-certificates)
#   DEBIAN_MIRROR overrides http://deb.debian.org/debian
#
# Use it with: DockerBuilderSettings { stack_image: "paas/stack-debian:1".into(), .. }
# Needs root (debootstrap) and the docker CLI.
set -eu

tag=${1:-paas/stack-debian:1}
suite=${2:-bookworm}
include=${3:-python3,ca-certificates}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag exists"
    exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get install -y debootstrap
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT INT TERM

debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror"

# The unprivileged user of the platform, written directly (no chroot needed).
echo 'app:x:1000:1000:app:/app:/bin/bash' >>"$root/etc/passwd"
echo 'app:x:1000:' >>"$root/etc/group"
echo 'app:*:19000:0:99999:7:::' >>"$root/etc/shadow"
mkdir -p "$root/app"
chown 1000:1000 "$root/app"
chmod 1777 "$root/tmp"
# Keep the image small: package caches and lists are not needed at run time.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/*

tar -C "$root" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV HOME=/app' \
    --change 'WORKDIR /app' \
    --change 'USER 1000:1000' \
    --change 'LABEL paas.stack=debian' \
    --change 'CMD ["/bin/bash"]' \
    - "$tag"
echo "created $tag"
