#!/usr/bin/env bash
# Archipel's federation against rsync, side by side: replication of a corpus from one node
# to two peers (against rsync to two rsync daemons), restore of a wiped node from its two
# peers, and the time from ingest to 3 copies receipted. Builds the release binaries, then
# runs the harness (tests/src/bin/fed_bench.rs) with the arguments passed through.
#   ./fed_bench.sh --quick             smoke run, small sizes
#   ./fed_bench.sh                     1 GiB file + 10,000 small records
#   ./fed_bench.sh --work /tmp/bench-work --out fed-results.json   keep the corpus, write JSON
#   ./fed_bench.sh --help              every flag
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v rsync >/dev/null 2>&1; then
    echo "fed_bench.sh: rsync is missing; installing the Debian package" >&2
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get install -y rsync >&2 || { $sudo apt-get update >&2 && $sudo apt-get install -y rsync >&2; } ||
        echo "fed_bench.sh: could not install rsync (run with --tools archipel to skip it)" >&2
fi

cargo build --release -p archipel-node -p archipel -p archipel-tests --bin archipel-node --bin archipel --bin fed_bench

target_dir="${CARGO_TARGET_DIR:-target}"
exec "$target_dir/release/fed_bench" "$@"
