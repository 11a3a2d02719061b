#!/usr/bin/env bash
# Archipel against restic, side by side: builds the release binaries, then runs the
# benchmark harness (tests/src/bin/bench.rs) with the arguments passed through.
#   ./bench.sh --quick                 smoke run, small sizes
#   ./bench.sh                         1 GiB file + 10,000 small files
#   ./bench.sh --work /var/tmp/bench --out results.json     keep the corpus, write JSON
#   ./bench.sh --help                  every flag
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v restic >/dev/null 2>&1; then
    echo "bench.sh: restic is missing; installing the Debian package" >&2
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get install -y restic >&2 || { $sudo apt-get update >&2 && $sudo apt-get install -y restic >&2; } ||
        echo "bench.sh: could not install restic (run with --tools archipel to skip it)" >&2
fi

cargo build --release -p archipel-node -p archipel -p archipel-tests --bins

target_dir="${CARGO_TARGET_DIR:-target}"
exec "$target_dir/release/bench" "$@"
