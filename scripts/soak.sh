#!/usr/bin/env bash
# Soak test of the media transport: STREAMS simultaneous simulated media streams on loopback for
# SECONDS (default: 50 streams, 10 minutes), through the real server with the engines swapped for
# instant fakes. Prints lost and reordered frames both ways, memory over time and every warning the
# server logged; exits non-zero if anything was lost, reordered or logged.
set -euo pipefail
cd "$(dirname "$0")/.."
streams="${1:-50}"
seconds="${2:-600}"
exec cargo run --release --locked -q -p switchboard-server --example soak -- "$streams" "$seconds"
