#!/usr/bin/env bash
# Archipel with its blobs in Garage against rclone uploading the same corpus to the same
# Garage, and against Archipel on its embedded store (issue 8, BENCHMARKS.md): builds the
# release binaries, then runs tests/src/bin/s3_bench.rs with the arguments passed through.
#   ./s3_bench.sh                          512 MiB file + 2,000 files of 4-64 KiB
#   ./s3_bench.sh --big-mib 1024 --small 10000 --work /var/tmp/s3-bench
# Needs garage 2.5.0 (cargo install garage --version 2.5.0 --locked); installs rclone
# (Debian) if it is missing.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v rclone >/dev/null 2>&1; then
    echo "s3_bench.sh: rclone is missing; installing the Debian package" >&2
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get install -y rclone >&2 || { $sudo apt-get update >&2 && $sudo apt-get install -y rclone >&2; }
fi
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -p archipel-node -p archipel -p archipel-tests --bins

target_dir="${CARGO_TARGET_DIR:-target}"
exec "$target_dir/release/s3_bench" "$@"
