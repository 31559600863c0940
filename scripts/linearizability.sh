#!/usr/bin/env bash
# Runs the seeded linearizability fault test (tests/linearizability.rs: 6
# clients on a 3-node cluster while a nemesis kill -9s and restarts raft
# leaders; the history must be linearizable) RUNS times, each with a fresh
# random seed, or with LIN_SEED every time when it is given (same schedule,
# different timing). Bigger than the CI default: LIN_OPS operations and
# LIN_KILLS kills per run, in release mode.
#
#   RUNS=20 LIN_OPS=8000 LIN_KILLS=12 scripts/linearizability.sh
#   LIN_SEED=123 RUNS=5 scripts/linearizability.sh   # repeat a failing seed
#
# Each run's output goes to target/linearizability/<seed>.log; a failing
# run's full history is written to $TMPDIR/armada-linearizability-<seed>.txt.
# Prints every seed with the command that repeats it; exits 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-10}
LIN_OPS=${LIN_OPS:-5000}
LIN_KILLS=${LIN_KILLS:-10}
logs=target/linearizability
mkdir -p "$logs"

cargo test --release --test linearizability --no-run

failed=()
for run in $(seq 1 "$RUNS"); do
  seed=${LIN_SEED:-$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')}
  repeat="LIN_SEED=$seed LIN_OPS=$LIN_OPS LIN_KILLS=$LIN_KILLS cargo test --release --test linearizability -- --nocapture"
  echo "run $run/$RUNS: $repeat"
  log="$logs/$seed.log"
  started=$SECONDS
  if LIN_SEED=$seed LIN_OPS=$LIN_OPS LIN_KILLS=$LIN_KILLS \
    cargo test --release --test linearizability -- --nocapture >"$log" 2>&1; then
    echo "  ok in $((SECONDS - started)) s: $(grep -m1 '^history:' "$log" || true)"
  else
    echo "  FAILED in $((SECONDS - started)) s (log: $log)"
    grep -A40 -m1 'panicked at' "$log" | sed 's/^/    /' || tail -40 "$log"
    failed+=("$seed")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "${#failed[@]} of $RUNS runs failed; seeds: ${failed[*]}"
  for seed in "${failed[@]}"; do
    echo "  LIN_SEED=$seed LIN_OPS=$LIN_OPS LIN_KILLS=$LIN_KILLS cargo test --release --test linearizability -- --nocapture"
  done
  exit 1
fi
echo "all $RUNS runs linearizable"
