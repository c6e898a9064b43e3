#!/usr/bin/env bash
# The test command: every unit, property and real-client integration test of the workspace,
# plus a compile-and-run-once of the criterion benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo nextest run --workspace --profile ci "$@"
# Criterion benchmarks in test mode (each runs once), in the already-built test profile.
cargo test -q -p tributary --bench log --bench metrics
