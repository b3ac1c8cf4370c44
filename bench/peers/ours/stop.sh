#!/usr/bin/env bash
# Stops what start.sh started (SIGTERM, then SIGKILL after 10 s).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -n "${BENCH_HARNESS:-}" ]; then
  source "$BENCH_HARNESS/peers/common.sh"
else
  # dirname, not "..": the kernel would resolve ".." from the link's target
  source "$(dirname "$HERE")/common.sh"
fi
stop_pid ours
