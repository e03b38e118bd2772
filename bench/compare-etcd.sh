#!/usr/bin/env bash
# Keel vs etcd 3.4, side by side on this machine: a 3-member etcd and a 3-node Keel on loopback,
# fsync on for both (etcd's default; Keel always fdatasyncs its WAL before acknowledging), the
# same client (`keel bench`, built with feature `etcd`), the same matrix, the systems alternating
# run by run. Prints a side-by-side table with ratios, ends with one `RATIO ...` line, and writes
# bench/results/<UTC date>.md. Stops every process it started, even on Ctrl-C.
#
# Usage: bench/compare-etcd.sh            (full matrix, 10 s per run after a 2 s warm-up)
#        DURATION_S=3 WARMUP_S=1 bench/compare-etcd.sh   (a quick pass)
# Env:   KEEL_BIN   keel binary for the servers (default: the one built here)
#        BENCH_BIN  keel binary with the etcd driver (default: cargo build --release -p keel --features etcd)
#        BENCH_DIR  parent of the data directories (default: $TMPDIR or /tmp; must be a real disk)
#        RESULTS    results file (default: bench/results/<UTC date>.md)
#        OPEN_LOAD_PERCENT  open-loop rate as a share of each system's put-64 capacity (default 80)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%S)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
DURATION_S=${DURATION_S:-10}
WARMUP_S=${WARMUP_S:-2}
OPEN_LOAD_PERCENT=${OPEN_LOAD_PERCENT:-80}
KEYS=${KEYS:-10000}
VALUE_SIZE=${VALUE_SIZE:-128}
RESULTS=${RESULTS:-$ROOT/bench/results/$(date -u +%Y-%m-%d).md}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- tools --------------------------------------------------------------------------------------
if ! command -v etcd >/dev/null; then
  echo "installing etcd-server (Debian) ..." >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq etcd-server >/dev/null
fi
if [ -z "${BENCH_BIN:-}" ]; then
  if ! command -v protoc >/dev/null; then
    echo "installing protobuf-compiler (the etcd gRPC client is generated at build time) ..." >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq protobuf-compiler >/dev/null
  fi
  (cd "$ROOT" && cargo build --release -q -p keel --features etcd)
  BENCH_BIN=$ROOT/target/release/keel
fi
KEEL_BIN=${KEEL_BIN:-$BENCH_BIN}
ETCD_VERSION=$(etcd --version | head -1)

# --- processes, and stopping them whatever happens -----------------------------------------------
WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/keel-vs-etcd.XXXXXX")
FS_TYPE=$(stat -f -c %T "$WORK")
if [ "$FS_TYPE" = tmpfs ]; then
  echo "warning: $WORK is on tmpfs, where fsync costs nothing; set BENCH_DIR to a real disk" >&2
fi
PIDS=()
alive() {  # pid: running (a zombie child counts as gone)
  [ -r "/proc/$1/stat" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]
}
BENCH_PID=
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$BENCH_PID" ]; then kill "$BENCH_PID" 2>/dev/null || true; fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Up to 5 s to stop cleanly (an etcd member that lost its quorum can linger), then SIGKILL.
  for _ in $(seq 1 50); do
    local any=0
    for pid in "${PIDS[@]}"; do if alive "$pid"; then any=1; fi; done
    [ "$any" = 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do
    if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "interrupted: stopping every server this script started" >&2; cleanup; exit 130' INT TERM

ETCD_CLUSTER="e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803"
ETCD_ENDPOINTS="127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793"
ETCD_PIDS=()
for i in 1 2 3; do
  etcd --name "e$i" --data-dir "$WORK/etcd$i" \
    --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
    --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
    --initial-cluster "$ETCD_CLUSTER" --initial-cluster-state new --initial-cluster-token keel-bench \
    --logger zap --log-level error >"$WORK/etcd$i.log" 2>&1 &
  PIDS+=("$!"); ETCD_PIDS+=("$!")
done

KEEL_PEERS="1=127.0.0.1:17381,2=127.0.0.1:17382,3=127.0.0.1:17383"
KEEL_CLIENTS="1=127.0.0.1:17371,2=127.0.0.1:17372,3=127.0.0.1:17373"
KEEL_ENDPOINTS="127.0.0.1:17371,127.0.0.1:17372,127.0.0.1:17373"
KEEL_PIDS=()
for i in 1 2 3; do
  "$KEEL_BIN" serve --id "$i" --data-dir "$WORK/keel$i" \
    --listen-client "127.0.0.1:1737$i" --listen-peer "127.0.0.1:1738$i" \
    --peers "$KEEL_PEERS" --peer-clients "$KEEL_CLIENTS" --cluster-id keel-bench \
    --parent-pid $$ --log warn >"$WORK/keel$i.log" 2>&1 &
  PIDS+=("$!"); KEEL_PIDS+=("$!")
done
ETCD_PID_LIST=$(IFS=,; echo "${ETCD_PIDS[*]}")
KEEL_PID_LIST=$(IFS=,; echo "${KEEL_PIDS[*]}")

wait_ready() {  # name, url-of-health, pattern
  for _ in $(seq 1 200); do
    if curl -sf "$2" 2>/dev/null | grep -q "$3"; then return 0; fi
    sleep 0.1
  done
  echo "$1 did not become ready; its logs:" >&2
  tail -n 20 "$WORK"/"$1"*.log >&2
  exit 1
}
for i in 1 2 3; do wait_ready etcd "http://127.0.0.1:2379$i/health" '"health":"true"'; done
for i in 1 2 3; do wait_ready keel "http://127.0.0.1:1737$i/v1/status" '"mode":"healthy"'; done
echo "etcd pids $ETCD_PID_LIST, keel pids $KEEL_PID_LIST, data in $WORK ($FS_TYPE)" >&2

# --- the matrix, alternating systems run by run -----------------------------------------------------
OUT=$WORK/results
mkdir -p "$OUT"
COMMON=(--duration-s "$DURATION_S" --warmup-s "$WARMUP_S" --keys "$KEYS" --value-size "$VALUE_SIZE" --json)

# Runs a client in the background and waits for it, so a signal is handled at once (bash
# defers traps while a foreground child runs).
run_client() {
  local rc=0
  "$@" &
  BENCH_PID=$!
  wait "$BENCH_PID" || rc=$?
  BENCH_PID=
  return "$rc"
}
bench_one() {  # system, label, extra args...
  local system=$1 label=$2; shift 2
  local endpoints pids
  if [ "$system" = keel ]; then endpoints=$KEEL_ENDPOINTS; pids=$KEEL_PID_LIST
  else endpoints=$ETCD_ENDPOINTS; pids=$ETCD_PID_LIST; fi
  echo "  $system $label" >&2
  run_client "$BENCH_BIN" bench --system "$system" --endpoints "$endpoints" --pids "$pids" \
    "${COMMON[@]}" "$@" >"$OUT/$system--$label.json"
}
both() {  # label, args...: etcd then keel (the order flips every call)
  local label=$1; shift
  if [ "${FLIP:-0}" = 1 ]; then bench_one keel "$label" "$@"; bench_one etcd "$label" "$@"; FLIP=0
  else bench_one etcd "$label" "$@"; bench_one keel "$label" "$@"; FLIP=1; fi
}

echo "prefilling $KEYS keys in each system ..." >&2
run_client "$BENCH_BIN" bench --system etcd --endpoints "$ETCD_ENDPOINTS" --op get --clients 16 \
  --keys "$KEYS" --value-size "$VALUE_SIZE" --duration-s 0.2 --warmup-s 0 >/dev/null
run_client "$BENCH_BIN" bench --system keel --endpoints "$KEEL_ENDPOINTS" --op get --clients 16 \
  --keys "$KEYS" --value-size "$VALUE_SIZE" --duration-s 0.2 --warmup-s 0 >/dev/null
for c in 1 16 64; do both "put-$c" --op put --clients "$c"; done
for c in 1 16 64; do both "get-lin-$c" --op get --read linearizable --clients "$c" --no-prefill; done
for c in 1 16 64; do both "get-local-$c" --op get --read any --clients "$c" --no-prefill; done
both "mixed90-zipf-64" --op mixed:90 --read linearizable --dist zipf --clients 64 --no-prefill
both "cas-16" --op cas --clients 16 --no-prefill
both "txn-16" --op txn --clients 16 --no-prefill

# Open loop at a share of each system's own closed-loop put capacity (64 clients).
for system in etcd keel; do
  capacity=$(jq -r .ops_per_s "$OUT/$system--put-64.json")
  rate=$(python3 -c "print(max(1, round($capacity * $OPEN_LOAD_PERCENT / 100)))")
  bench_one "$system" "open-put-$OPEN_LOAD_PERCENT" --op put --clients 64 --rate "$rate"
done

# --- the table --------------------------------------------------------------------------------------
mkdir -p "$(dirname "$RESULTS")"
python3 "$ROOT/bench/table.py" "$OUT" \
  --meta "etcd: $ETCD_VERSION" \
  --meta "keel server: $KEEL_BIN ($("$KEEL_BIN" --version)); bench client: $BENCH_BIN; tree at $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  --meta "machine: $(nproc) cores, $(uname -r), data on $FS_TYPE; $DURATION_S s per run after $WARMUP_S s warm-up; $KEYS keys, 16-byte keys, $VALUE_SIZE-byte values" \
  --meta "command: DURATION_S=$DURATION_S WARMUP_S=$WARMUP_S bench/compare-etcd.sh; started $STARTED_AT UTC, load average before: $LOAD_BEFORE" \
  --results "$RESULTS"
echo "written: $RESULTS" >&2
