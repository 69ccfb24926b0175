#!/usr/bin/env bash
# Runs every test of the workspace: unit, property and golden tests, and the
# system tests against a real Apache Kafka broker, which this script starts
# (deploy/local/kafka) unless one is already running, and stops again if it
# started it. Usage: tests/run-all.sh [extra cargo test args]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
kafka="$root/deploy/local/kafka"
started=0
if ! "$kafka" status >/dev/null 2>&1; then
  "$kafka" start
  started=1
fi
cleanup() { if [ "$started" = 1 ]; then "$kafka" stop || true; fi; }
trap cleanup EXIT
export PROPENSITY_TEST_BROKERS="${PROPENSITY_TEST_BROKERS:-$("$kafka" bootstrap)}"
export PROPENSITY_TEST_BROKER_SCRIPT="$kafka"
# The system tests run the real binary.
cargo build --locked -p propensity-cli
cargo test --locked --workspace "$@"
# Benchmarks are not part of the tests, but a smoke run of the Kafka Streams
# comparison is (it builds the Java app with Maven and fails when either
# side makes no offers or they disagree where their semantics agree).
# Skipped when arguments select tests.
if [ "$#" -eq 0 ]; then
  python3 benches/kstreams_vs_propensity.py --smoke \
    --bin "${CARGO_TARGET_DIR:-$root/target}/debug/propensity" \
    --brokers "$PROPENSITY_TEST_BROKERS"
fi
