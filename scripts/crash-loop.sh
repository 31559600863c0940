#!/usr/bin/env bash
# Longer seeded runs of the crash-point tests (tests/crash_points.rs): every
# seed varies which member dies and how many writes go where. Prints each
# seed before its run; the first failure stops the loop and leaves its seed
# on the last line. Usage: scripts/crash-loop.sh [rounds] [first seed]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-20}
first=${2:-$(date +%s)}
cargo build --bins --quiet
for ((i = 0; i < rounds; i++)); do
  seed=$((first + i))
  echo "ARMADA_CRASH_SEED=$seed"
  ARMADA_CRASH_SEED=$seed cargo test --quiet -p armada --test crash_points -- --test-threads 1
done
echo "all $rounds seeds passed (from $first)"
