#!/usr/bin/env bash
# Login rates in one run, on one server: an app password (one look-up by
# id and one HMAC-SHA-256), a cached argon2id login (the same user and
# password again: the verified-credential cache answers) and a cold
# argon2id login (USERS distinct users, each logging in once, so each pays
# its argon2id hash).
#
#   bench/app-passwords.sh                 # 50 connections, 10 s windows, 200 cold users
#   DURATION=5 USERS=100 bench/app-passwords.sh
#
# Builds portcullis and portcullis-load in release mode; the server runs on
# its defaults (argon2id, SQLite users, self-signed certificate) in a
# temporary data directory; sessions are connect, EHLO, AUTH PLAIN, QUIT
# (no TLS, as in bench/run.sh scenario a). Client and server share the
# machine; the client runs on one thread.
#
# Environment: CONNS (50) DURATION (10) WARMUP (2) USERS (200) PORT (2720)
# BUILD (1; 0 uses the release binaries as they are)
# OUT (results directory; default bench/results/app-passwords-<stamp>)
# PORTCULLIS_LOG (warn)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/bench/lib.sh"

CONNS="${CONNS:-50}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
USERS="${USERS:-200}"
PORT="${PORT:-2720}"
OUT="${OUT:-$REPO/bench/results/app-passwords-$(date +%Y%m%d-%H%M%S)}"
export BENCH_PASS="${BENCH_PASS:-bench-pass}"

if [ "${BUILD:-1}" != 0 ]; then
  (cd "$REPO" && cargo build --release -q -p portcullis -p portcullis-load)
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}/release"
SERVER="$TARGET_DIR/portcullis"
LOAD="$TARGET_DIR/portcullis-load"

DATA="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-apppw.XXXXXX")"
PIDFILE="$DATA/server.pid"
cleanup() {
  if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    kill "$(cat "$PIDFILE")"
    for _ in $(seq 100); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$(cat "$PIDFILE")" 2>/dev/null || true
  fi
  rm -rf "$DATA"
}
trap cleanup EXIT
mkdir -p "$OUT"

CONFIG="$DATA/portcullis.toml"
portcullis_config "$DATA" "$PORT" $((CONNS + USERS + 100)) >"$CONFIG"

echo "adding bench and $USERS cold users" >&2
add_user() { # N
  printf 'pw-%s\n' "$1" | "$SERVER" user add "u$1" --password-stdin --config "$CONFIG" >/dev/null
}
export -f add_user
export SERVER CONFIG
add_user 1
if [ "$USERS" -gt 1 ]; then
  seq 2 "$USERS" | xargs -P 2 -I{} bash -c 'add_user "$1"' _ {}
fi
portcullis_start "$SERVER" "$CONFIG" "$OUT/server.log" "$PIDFILE" bench "$BENCH_PASS"
portcullis_wait_port "$PORT"
APP_PASS="$("$SERVER" credential add bench --label load --config "$CONFIG" | tail -n 1)"
export APP_PASS

run() { # NAME ARGS...
  local name=$1
  shift
  echo "== $name: portcullis-load $*" >&2
  "$LOAD" "127.0.0.1:$PORT" --insecure --threads 1 --json -q -n 0 "$@" >"$OUT/$name.json" || true
}
window=(-c "$CONNS" -d "$DURATION" -w "$WARMUP")
run app-password -u bench --password-env APP_PASS "${window[@]}"
run cached-argon2id -u bench --password-env BENCH_PASS "${window[@]}"
# Each user once: every login is the user's first since the start.
run cold-argon2id --user-pattern 'u{n}' --password-pattern 'pw-{n}' --user-count "$USERS" \
  -c "$CONNS" --sessions "$USERS"

python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
print()
print("| login | logins/s | AUTH p50 (ms) | p99 (ms) | errors |")
print("|---|---|---|---|---|")
for name in ["app-password", "cached-argon2id", "cold-argon2id"]:
    try:
        with open(os.path.join(out, name + ".json")) as f:
            r = json.load(f)
    except (OSError, ValueError):
        print(f"| {name} | failed | | | |")
        continue
    a = r["latency"]["auth"]
    print(f'| {name} | {r["sessions_per_s"]:,.0f} | {a["p50_ms"]:.2f} | {a["p99_ms"]:.2f} | {r["errors_total"]} |')
print(f"\nraw JSON and the server log in {out}")
PY
