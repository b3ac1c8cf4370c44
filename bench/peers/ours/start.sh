#!/usr/bin/env bash
# portcullis for the shared benchmark harness (its README, "Comparing our
# server"): link or copy this directory to <harness>/peers/ours, then
#   ./bench.py --servers floor,ours,postfix
# It may also be run from this repository with BENCH_HARNESS pointing at the
# harness directory (the one holding peers/common.sh).
#
# Starts a release build on 127.0.0.1:${PORT:-2606} (STARTTLS, AUTH also
# before TLS like the other peers), user $BENCH_USER / $BENCH_PASS stored as
# argon2id (the default), the harness's certificate, data in
# $PEERS_DIR/ours (made afresh). Prints: PID=<pid> PORT=<port> STARTTLS=1
#
# BENCH_DATA_DIR puts the data (the spool) in $BENCH_DATA_DIR/ours instead:
# on a tmpfs (/dev/shm) an fdatasync costs next to nothing, so a run there
# beside a run on disk tells how much of a durable message's cost is the
# disk's. Such a run measures no durable spool: never quote it as one.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The real directory (not the link in the harness) tells where the repository is.
REPO="${PORTCULLIS_REPO:-$(cd -P "$HERE/../../.." && pwd)}"
if [ -n "${BENCH_HARNESS:-}" ]; then
  source "$BENCH_HARNESS/peers/common.sh"
else
  # dirname, not "..": the kernel would resolve ".." from the link's target
  source "$(dirname "$HERE")/common.sh"
fi
source "$REPO/bench/lib.sh"

PORT="${PORT:-2606}"
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/portcullis"
[ -x "$BIN" ] || (cd "$REPO" && cargo build --release -q --bin portcullis) >&2
ensure_cert
port_free "$PORT"

DATA="${BENCH_DATA_DIR:-$PEERS_DIR}/ours"
rm -rf "$DATA"
mkdir -p "$DATA"
portcullis_config "$DATA" "$PORT" 5000 "$TLS_DIR/cert.pem" "$TLS_DIR/key.pem" >"$DATA/portcullis.toml"
portcullis_start "$BIN" "$DATA/portcullis.toml" "$RUN_DIR/ours.log" "$RUN_DIR/ours.pid" \
  "$BENCH_USER" "$BENCH_PASS"
wait_port "$PORT"
echo "PID=$(cat "$RUN_DIR/ours.pid") PORT=$PORT STARTTLS=1"
echo "VERSION: portcullis $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown) (tokio + rustls/ring, argon2id users, fsynced spool)"
