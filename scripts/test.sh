#!/usr/bin/env bash
# The test command: every unit, property and real-client integration test of the workspace,
# the operated e2e tests against a cluster they did not start, plus a compile-and-run-once of
# the criterion benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo nextest run --workspace --profile ci "$@"
# The operated e2e tests once more, the way the kind workflow runs them: against a control
# plane, a pod runner and an operator that they did not start (tributary-testbed starts
# them; docs/operator.md, "The suite on an existing cluster"). Only for a full run.
if [ $# -eq 0 ]; then
  cargo run -q -p tributary-e2e-kit --bin tributary-testbed -- -- \
    cargo nextest run --profile ci -p tributary-operator -j 1 \
    --test operated_cluster --test operated_failover --test operated_refusal
fi
# Criterion benchmarks in test mode (each runs once), in the already-built test profile.
cargo test -q -p tributary --bench log --bench metrics
