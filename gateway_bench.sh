#!/usr/bin/env bash
# The citizen gateway against nginx, side by side in one run (issue 5, BENCHMARKS.md):
# wrk against a download from the gateway of a fresh release node and against nginx
# serving the same files, already decrypted, from disk.
#   - a 10 KiB record: requests per second and p99 latency (wrk -t2 -c32 --latency);
#   - a 100 MiB file: MB/s from wrk's Transfer/sec (wrk -t2 -c4);
# each interleaved ROUNDS times (gateway and nginx alternate, the order flips every round),
# plus the peak RSS (VmHWM, reset after the ingest) of the node and of nginx's workers.
#
#   ./gateway_bench.sh                       build, run, print the table
#   ./gateway_bench.sh --duration 15 --rounds 2 --work /tmp/gw-bench --keep
#   ./gateway_bench.sh --perf DIR            also `perf record -g` the node during one extra
#                                            wrk run of each workload (reports in DIR)
#   ./gateway_bench.sh --no-build            use the binaries already in target/release
#
# Installs wrk and nginx (Debian packages) with apt-get if they are missing. If the node's
# config has a per-client rate limit for the gateway (fields `gateway_rate*` /
# `gateway_burst*` in node/src/config.rs), the benchmark node sets them to 100,000, the
# highest the config accepts: the limiter stays in the path (as in production) but never
# answers 429 here; wrk is one client (127.0.0.1) and this measures the server, not the
# limit. Any non-2xx answer or socket error is printed under the table.
set -euo pipefail
cd "$(dirname "$0")"
repo=$(pwd)

duration=15
rounds=2
small_conns=32
large_conns=4
threads=2
work=""
keep=0
perf_dir=""
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) duration=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --small-connections) small_conns=$2; shift 2 ;;
        --large-connections) large_conns=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --work) work=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        --perf) perf_dir=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gateway_bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { echo "gateway_bench: $*" >&2; }

# --- tools ---------------------------------------------------------------------------------
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (Debian packages)"
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get install -y "${missing[@]}" >&2 ||
        { $sudo apt-get update >&2 && $sudo apt-get install -y "${missing[@]}" >&2; }
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
for t in wrk curl "$nginx_bin"; do
    command -v "$t" >/dev/null 2>&1 || { say "$t is missing"; exit 1; }
done

if [ "$build" = 1 ]; then
    cargo build --release -p archipel-node -p archipel >&2
fi
bin="${CARGO_TARGET_DIR:-$repo/target}/release"
[ -x "$bin/archipel-node" ] && [ -x "$bin/archipel" ] || { say "no release binaries in $bin"; exit 1; }

# --- work directory, cleanup ---------------------------------------------------------------
if [ -z "$work" ]; then
    work=$(mktemp -d /tmp/gateway-bench.XXXXXX)
else
    rm -rf "$work"
    mkdir -p "$work"
fi
node_pid=""
nginx_pid=""
cleanup() {
    if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null || true; fi
    if [ -n "$node_pid" ]; then kill "$node_pid" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    if [ "$keep" = 0 ]; then rm -rf "$work"; else say "kept $work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# --- corpus --------------------------------------------------------------------------------
www="$work/www"
mkdir -p "$www"
head -c $((10 * 1024)) /dev/urandom >"$www/small.bin"
head -c $((100 * 1024 * 1024)) /dev/urandom >"$www/large.bin"
small_size=$(stat -c %s "$www/small.bin")
large_size=$(stat -c %s "$www/large.bin")

# --- the node ------------------------------------------------------------------------------
data="$work/node"
gw_port=$(free_port)
"$bin/archipel-node" init --data "$data" --territory "Banc d'essai" \
    --gateway-listen "127.0.0.1:$gw_port" >/dev/null
rate_fields=$(grep -oE 'pub (gateway_rate[a-z_]*|gateway_burst[a-z_]*):' node/src/config.rs |
    sed -E 's/pub ([a-z_]+):/\1/' || true)
rate_note="no per-client rate limit in node/src/config.rs"
if [ -n "$rate_fields" ]; then
    # Top-level keys: prepend them, before any [table] init wrote.
    tmp="$data/archipel.toml.new"
    : >"$tmp"
    for f in $rate_fields; do echo "$f = 100000" >>"$tmp"; done
    cat "$data/archipel.toml" >>"$tmp"
    mv "$tmp" "$data/archipel.toml"
    rate_note="gateway rate limit set to 100000 (the maximum): $(echo $rate_fields | tr ' ' ',')"
fi
say "$rate_note"
"$bin/archipel-node" run --data "$data" >"$work/node.log" 2>&1 &
node_pid=$!
gw="http://127.0.0.1:$gw_port"
for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$gw/" 2>/dev/null && break
    kill -0 "$node_pid" 2>/dev/null || { cat "$work/node.log" >&2; say "node exited"; exit 1; }
    sleep 0.1
done
curl -fsS -o /dev/null "$gw/" || { cat "$work/node.log" >&2; say "gateway not answering"; exit 1; }

ingest() {
    "$bin/archipel" --node "$data" ingest "$1" --title "$2" --communicability immediate --json |
        python3 -c 'import json,sys
d=json.load(sys.stdin)
for k in ("record_id","id","record"):
    if isinstance(d.get(k),str): print(d[k]); break
else: sys.exit("no record id in "+json.dumps(d))'
}
small_id=$(ingest "$www/small.bin" "Banc d'essai 10 KiB")
large_id=$(ingest "$www/large.bin" "Banc d'essai 100 MiB")

# --- nginx ---------------------------------------------------------------------------------
ng_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types { application/octet-stream bin; }
    default_type application/octet-stream;
    client_body_temp_path $work/nginx/tmp;
    proxy_temp_path $work/nginx/tmp;
    fastcgi_temp_path $work/nginx/tmp;
    uwsgi_temp_path $work/nginx/tmp;
    scgi_temp_path $work/nginx/tmp;
    server {
        listen 127.0.0.1:$ng_port;
        root $www;
    }
}
EOF
mkdir -p "$work/nginx/tmp"
"$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
nginx_pid=$!
ng="http://127.0.0.1:$ng_port"
for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$ng/small.bin" 2>/dev/null && break
    sleep 0.1
done

# --- check both serve the same bytes (and warm the page cache) ----------------------------
gw_small="$gw/records/$small_id/files/small.bin"
gw_large="$gw/records/$large_id/files/large.bin"
ng_small="$ng/small.bin"
ng_large="$ng/large.bin"
for pair in "$gw_small $www/small.bin" "$ng_small $www/small.bin" \
    "$gw_large $www/large.bin" "$ng_large $www/large.bin"; do
    set -- $pair
    got=$(curl -fsS "$1" | sha256sum | cut -d' ' -f1)
    want=$(sha256sum <"$2" | cut -d' ' -f1)
    [ "$got" = "$want" ] || { say "$1 does not serve the bytes of $2"; exit 1; }
done

nginx_workers() { pgrep -P "$nginx_pid" || true; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
reset_hwm() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }
reset_hwm "$node_pid"
reset_hwm "$nginx_pid"
for w in $(nginx_workers); do reset_hwm "$w"; done

# wrk output → "rps p99_ms transfer_MBps non2xx errors"
parse_wrk() {
    python3 - "$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def unit(v, u, scale):
    return float(v) * scale[u]
rps = float(re.search(r'Requests/sec:\s+([\d.]+)', t).group(1))
m = re.search(r'Transfer/sec:\s+([\d.]+)([KMGT]?B)', t)
b = {'B': 1, 'KB': 1024, 'MB': 1024**2, 'GB': 1024**3, 'TB': 1024**4}
mbps = unit(m.group(1), m.group(2), b) / 1e6
p99 = re.search(r'\s99%\s+([\d.]+)(us|ms|s)\b', t)
p99ms = unit(p99.group(1), p99.group(2), {'us': 1e-3, 'ms': 1, 's': 1000}) if p99 else float('nan')
non2xx = re.search(r'Non-2xx or 3xx responses:\s+(\d+)', t)
errs = re.search(r'Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)', t)
print(f"{rps:.1f} {p99ms:.3f} {mbps:.1f} {non2xx.group(1) if non2xx else 0} "
      f"{sum(int(x) for x in errs.groups()) if errs else 0}")
PY
}

results="$work/results.txt"
: >"$results"
run() { # server workload url connections round
    local out="$work/wrk-$1-$2-$5.txt"
    wrk -t"$threads" -c"$4" -d"${duration}s" --latency "$3" >"$out" 2>&1
    echo "$1 $2 $5 $(parse_wrk "$out")" >>"$results"
    say "$(tail -n1 "$results")  (server workload round rps p99_ms MB/s non2xx sockerr)"
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) = 1 ]; then order="gateway nginx"; else order="nginx gateway"; fi
    for s in $order; do
        if [ "$s" = gateway ]; then run gateway small "$gw_small" "$small_conns" "$r"
        else run nginx small "$ng_small" "$small_conns" "$r"; fi
    done
    for s in $order; do
        if [ "$s" = gateway ]; then run gateway large "$gw_large" "$large_conns" "$r"
        else run nginx large "$ng_large" "$large_conns" "$r"; fi
    done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
node_hwm=$(hwm_kib "$node_pid")
ng_master_hwm=$(hwm_kib "$nginx_pid")
ng_workers_hwm=""
for w in $(nginx_workers); do ng_workers_hwm="$ng_workers_hwm $(hwm_kib "$w")"; done

if [ -n "$perf_dir" ]; then
    mkdir -p "$perf_dir"
    for wl in small large; do
        if [ "$wl" = small ]; then url=$gw_small; c=$small_conns; else url=$gw_large; c=$large_conns; fi
        perf record -g -o "$perf_dir/node-$wl.data" -p "$node_pid" -- sleep "$duration" \
            >/dev/null 2>"$perf_dir/perf-$wl.log" &
        perf_pid=$!
        wrk -t"$threads" -c"$c" -d"${duration}s" "$url" >"$perf_dir/wrk-$wl.txt" 2>&1
        wait "$perf_pid" || true
        perf report -i "$perf_dir/node-$wl.data" --no-children --percent-limit 1 --stdio \
            -g none >"$perf_dir/node-$wl.txt" 2>/dev/null || true
        say "perf of the node, $wl: $perf_dir/node-$wl.txt"
    done
fi

# --- table ---------------------------------------------------------------------------------
echo
echo "Gateway against nginx $("$nginx_bin" -v 2>&1 | sed 's/.*nginx\///'), $started, wrk -t$threads -d${duration}s," \
    "$rounds rounds interleaved; $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores"
echo "load average at start $load_start, at end $load_end; $rate_note"
echo "build: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo ' + uncommitted changes')"
echo "small: $small_size bytes (-c$small_conns, --latency); large: $large_size bytes (-c$large_conns); MB = 10^6 bytes"
python3 - "$results" "$node_hwm" "$ng_master_hwm" "$ng_workers_hwm" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def get(server, wl, col):
    return [float(r[3 + col]) for r in rows if r[0] == server and r[1] == wl]
def fmt(xs, d=1):
    return f"{st.mean(xs):,.{d}f} ({', '.join(f'{x:,.{d}f}' for x in xs)})"
print()
print("| workload | figure | gateway (mean; runs) | nginx (mean; runs) | ratio gateway/nginx |")
print("|---|---|---|---|---|")
for wl, label in (("small", "10 KiB download"), ("large", "100 MiB download")):
    figs = [("requests/s", 0, 1), ("p99 latency, ms", 1, 2)] if wl == "small" else [("MB/s", 2, 1), ("requests/s", 0, 2)]
    for name, col, d in figs:
        g, n = get("gateway", wl, col), get("nginx", wl, col)
        ratio = st.mean(g) / st.mean(n) if st.mean(n) else float('nan')
        print(f"| {label} | {name} | {fmt(g, d)} | {fmt(n, d)} | **{ratio:.2f}** |")
bad = [r for r in rows if r[6] != "0" or r[7] != "0"]
for r in bad:
    print(f"warning: {r[0]} {r[1]} round {r[2]}: {r[6]} non-2xx answers, {r[7]} socket errors")
node = int(sys.argv[2]) / 1024
workers = [int(x) / 1024 for x in sys.argv[4].split()]
print()
print(f"peak RSS during the runs (VmHWM, reset after the ingest): node {node:.1f} MiB; "
      f"nginx master {int(sys.argv[3]) / 1024:.1f} MiB, workers "
      f"{' + '.join(f'{w:.1f}' for w in workers)} = {sum(workers):.1f} MiB")
g = get("gateway", "small", 0); n = get("nginx", "small", 0)
gl = get("gateway", "large", 2); nl = get("nginx", "large", 2)
print(f"targets: small ≥ 0.5× nginx req/s: {'met' if st.mean(g) >= 0.5 * st.mean(n) else 'MISSED'}"
      f" ({st.mean(g) / st.mean(n):.2f}); large ≥ 0.7× nginx MB/s: "
      f"{'met' if st.mean(gl) >= 0.7 * st.mean(nl) else 'MISSED'} ({st.mean(gl) / st.mean(nl):.2f})")
PY
