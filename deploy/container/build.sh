#!/usr/bin/env bash
# Builds the `archipel:local` image without pulling anything: release binaries (or, with
# ARCHIPEL_PROFILE=debug, the test profile's), the shared libraries they need (found with
# ldd), a minimal /etc, then `docker build` FROM scratch.
#   deploy/container/build.sh [TAG]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tag="${1:-archipel:local}"
target="${CARGO_TARGET_DIR:-$root/target}"

# ARCHIPEL_PROFILE=debug builds the image from the test profile's binaries instead of the
# release ones: CI does, so that it compiles the workspace in one profile only (a release
# build would double its time). Deployments use the default, release.
profile="${ARCHIPEL_PROFILE:-release}"
case "$profile" in
  release) profile_flag=(--release) ;;
  debug) profile_flag=() ;;
  *) echo "build.sh: ARCHIPEL_PROFILE is release or debug, not $profile" >&2; exit 2 ;;
esac
# ARCHIPEL_NO_BUILD=1 reuses the binaries already in the target directory.
if [ -z "${ARCHIPEL_NO_BUILD:-}" ]; then
  (cd "$root" && cargo build "${profile_flag[@]}" -p archipel-node -p archipel)
fi

rootfs="$here/rootfs"
rm -rf "$rootfs"
rm -rf "$here/datadir"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc" "$rootfs/tmp" "$here/datadir/archipel"
chmod 1777 "$rootfs/tmp"
for bin in archipel-node archipel; do
  install -m 0755 "$target/$profile/$bin" "$rootfs/usr/local/bin/$bin"
  # Both profiles keep debug info (for profiling, for backtraces); the image does not need it.
  if command -v strip >/dev/null 2>&1; then strip --strip-debug "$rootfs/usr/local/bin/$bin"; fi
  # Every library the binary loads, and the dynamic loader, at the same paths.
  ldd "$target/$profile/$bin" | grep -o '/[^ ]*' |
    while read -r lib; do
      mkdir -p "$rootfs$(dirname "$lib")"
      cp -L "$lib" "$rootfs$lib"
    done
done
printf 'root:x:0:0::/:/nonexistent\narchipel:x:10001:10001::/var/lib/archipel:/nonexistent\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\narchipel:x:10001:\n' >"$rootfs/etc/group"
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
# The data directory is private to the node (the Dockerfile gives it to the node's user).
chmod 0700 "$here/datadir/archipel"
docker build -q -t "$tag" "$here" >/dev/null
echo "$tag"
