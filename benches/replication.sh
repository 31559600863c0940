#!/usr/bin/env bash
# Cross-cluster replication benchmark: a leader (`armada leader
# --replication.enabled`) and a follower (`armada follower`), one node each,
# on loopback. Measures lag from leader acknowledgement to follower
# visibility under steady write rates (medians over RUNS of each run's p50
# and p99), then Snapshot.Stream throughput after a bulk preload.
#
#   benches/replication.sh                 # RATES="100 1000" RUNS=3 SECONDS_PER_RUN=10
#   RATES=500 RUNS=1 benches/replication.sh
#
# Knobs: RATES, RUNS, SECONDS_PER_RUN, PRELOAD (keys of 2 KiB for the
# snapshot measurement, default 25000 ≈ 50 MB), BUILD (0: skip cargo),
# SATURATE (clients of a put load on the leader during every lag run, 0:
# none; 64 saturates a single-node leader on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
RATES=${RATES:-"100 1000"}
RUNS=${RUNS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
PRELOAD=${PRELOAD:-25000}
SATURATE=${SATURATE:-0}
BUILD=${BUILD:-1}
log() { echo "== $*" >&2; }

if [[ $BUILD == 1 ]]; then
    log "cargo build --release --bins --benches"
    cargo build --release --bins --benches >&2
fi
bin() { ls -t target/release/deps/"$1"-* | grep -v '\.d$' | head -1; }
ARMADA=target/release/armada
LAG=$(bin repl_lag)
LOADGEN=$(bin loadgen)

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DIR=$(mktemp -d "$PWD/target/bench-data/repl.XXXXXX" 2>/dev/null || { mkdir -p target/bench-data; mktemp -d "$PWD/target/bench-data/repl.XXXXXX"; })
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT

LAPI=$(port); LREST=$(port); LRAFT=$(port); LREPL=$(port)
FAPI=$(port); FREST=$(port); FRAFT=$(port)
"$ARMADA" leader --data-dir "$DIR/leader" --api.address "http://127.0.0.1:$LAPI" \
    --rest.address "http://127.0.0.1:$LREST" --raft.address "127.0.0.1:$LRAFT" \
    --replication.enabled --replication.address "http://127.0.0.1:$LREPL" >"$DIR/leader.log" 2>&1 &
PIDS+=($!)
"$ARMADA" follower --data-dir "$DIR/follower" --api.address "http://127.0.0.1:$FAPI" \
    --rest.address "http://127.0.0.1:$FREST" --raft.address "127.0.0.1:$FRAFT" \
    --replication.leader-address "127.0.0.1:$LREPL" >"$DIR/follower.log" 2>&1 &
PIDS+=($!)
for p in $LREST $FREST; do
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:$p/readyz" >/dev/null && break; sleep 0.1; done
done

declare -A P50 P99
for rate in $RATES; do
    for run in $(seq "$RUNS"); do
        LOAD_PID=""
        if ((SATURATE > 0)); then
            "$LOADGEN" --endpoint "http://127.0.0.1:$LAPI" --workload put --clients "$SATURATE" \
                --conns 4 --total 100000000 --key-space 100000 --val-size 256 >/dev/null 2>&1 &
            LOAD_PID=$!
            PIDS+=("$LOAD_PID")
        fi
        line=$("$LAG" --leader "http://127.0.0.1:$LAPI" --follower "http://127.0.0.1:$FAPI" \
            --rate "$rate" --seconds "$SECONDS_PER_RUN" | tee /dev/stderr | grep '^{')
        [[ -z $LOAD_PID ]] || { kill -KILL "$LOAD_PID"; wait "$LOAD_PID" 2>/dev/null || true; }
        P50[$rate]+="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["p50_ms"])' "$line") "
        P99[$rate]+="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["p99_ms"])' "$line") "
    done
done
median() { python3 -c 'import statistics,sys; print(f"{statistics.median(map(float, sys.argv[1:])):.2f}")' "$@"; }
echo
((SATURATE == 0)) || echo "(a put load of $SATURATE clients on the leader during every lag run)"
echo "| writes/s | lag p50 ms (median of $RUNS) | lag p99 ms (median of $RUNS) | runs p50 | runs p99 |"
echo "|---:|---:|---:|---|---|"
for rate in $RATES; do
    echo "| $rate | $(median ${P50[$rate]}) | $(median ${P99[$rate]}) | ${P50[$rate]}| ${P99[$rate]}|"
done

log "preloading $PRELOAD keys of 2 KiB on the leader"
"$LOADGEN" --endpoint "http://127.0.0.1:$LAPI" --workload put --clients 32 --conns 4 \
    --total "$PRELOAD" --key-space "$PRELOAD" --key-size 16 --val-size 2048 | grep '^#' >&2
for run in $(seq "$RUNS"); do
    "$LAG" --leader "http://127.0.0.1:$LAPI" --follower "http://127.0.0.1:$FAPI" \
        --replication "http://127.0.0.1:$LREPL" --snapshot-only | grep '^#'
done

# Bootstrap: a new follower of a leader whose log is compacted recovers from
# Snapshot.Stream; time from its start to holding the leader's revision.
rev() { etcdctl --endpoints "$1" endpoint status -w json 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])' 2>/dev/null || echo 0; }
target=$(rev "http://127.0.0.1:$LAPI")
for run in $(seq "$RUNS"); do
    BAPI=$(port); BREST=$(port); BRAFT=$(port)
    start=$(date +%s.%N)
    "$ARMADA" follower --data-dir "$DIR/boot$run" --api.address "http://127.0.0.1:$BAPI" \
        --rest.address "http://127.0.0.1:$BREST" --raft.address "127.0.0.1:$BRAFT" \
        --replication.leader-address "127.0.0.1:$LREPL" >"$DIR/boot$run.log" 2>&1 &
    pid=$!
    PIDS+=($pid)
    until [[ $(rev "http://127.0.0.1:$BAPI") -ge $target ]]; do sleep 0.05; done
    end=$(date +%s.%N)
    bytes=$(du -sb "$DIR/boot$run/state-machine" | cut -f1)
    python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); b=int(sys.argv[3]); print(f'# bootstrap of a new follower by snapshot: revision {sys.argv[4]}, {b/1e6:.1f} MB state in {s:.2f} s: {b/1e6/s:.1f} MB/s (incl. process start)')" "$start" "$end" "$bytes" "$target"
    kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
done
