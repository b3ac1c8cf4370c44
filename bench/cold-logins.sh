#!/usr/bin/env bash
# A burst of first logins: USERS distinct users (default 200) log in at the
# same moment on a server that has just started, so none of them is in the
# verified-password cache and every login pays its argon2id hash. This is
# what a restart looks like to a server whose users' mail clients all
# reconnect at once.
#
#   bench/cold-logins.sh                      # 200 users, 3 restarts
#   USERS=50 REPEATS=1 bench/cold-logins.sh
#   AUTH_CONFIG='slot_wait = "0s"' bench/cold-logins.sh   # extra [auth] keys
#
# Builds portcullis and portcullis-load in release mode, makes a temporary
# data directory with users u1..uN (passwords pw-1..pw-N, argon2id, in
# SQLite), then REPEATS times: starts the server, runs one AUTH-only session
# per user with as many connections as users (portcullis-load -c N
# --sessions N -n 0 --user-pattern 'u{n}'), stops the server. Each run
# prints how many logins got 454 (and any other error), the p50 / p99 / max
# AUTH latency of the logins that succeeded, how long the whole burst took,
# and how many times the server logged a stalled credential store.
#
# Environment: USERS (200) REPEATS (3) PORT (2710) AUTH_CONFIG (lines added
# under [auth]) PORTCULLIS_LOG (warn) OUT (results directory; default
# bench/results/cold-<stamp>)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/bench/lib.sh"

USERS="${USERS:-200}"
REPEATS="${REPEATS:-3}"
PORT="${PORT:-2710}"
OUT="${OUT:-$REPO/bench/results/cold-$(date +%Y%m%d-%H%M%S)}"

(cd "$REPO" && cargo build --release -q -p portcullis -p portcullis-load)
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}/release"
SERVER="$TARGET_DIR/portcullis"
LOAD="$TARGET_DIR/portcullis-load"

DATA="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-cold.XXXXXX")"
PIDFILE="$DATA/server.pid"
stop_server() {
  if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    kill "$(cat "$PIDFILE")"
    for _ in $(seq 100); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$(cat "$PIDFILE")" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
}
cleanup() {
  stop_server
  rm -rf "$DATA"
}
trap cleanup EXIT
mkdir -p "$OUT"

CONFIG="$DATA/portcullis.toml"
portcullis_config "$DATA" "$PORT" $((USERS + 100)) >"$CONFIG"
if [ -n "${AUTH_CONFIG:-}" ]; then printf '\n[auth]\n%s\n' "$AUTH_CONFIG" >>"$CONFIG"; fi

# One `user add` per user (each hashes once), in two parallel streams
# once the first has made the database (two processes creating its schema
# at the same moment can collide).
echo "adding $USERS users" >&2
add_user() { # N
  printf 'pw-%s\n' "$1" | "$SERVER" user add "u$1" --password-stdin --config "$CONFIG" >/dev/null
}
export -f add_user
export SERVER CONFIG
add_user 1
if [ "$USERS" -gt 1 ]; then
  seq 2 "$USERS" | xargs -P 2 -I{} bash -c 'add_user "$1"' _ {}
fi

start_server() { # LOG
  local -a env=(PORTCULLIS_LOG="${PORTCULLIS_LOG:-warn}")
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  env "${env[@]}" nohup "$SERVER" serve --config "$CONFIG" >"$1" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  portcullis_wait_port "$PORT"
}

for i in $(seq "$REPEATS"); do
  # A fresh process: every user is cold, as after a restart.
  start_server "$OUT/server-$i.log"
  echo "== burst $i: $USERS users, $USERS connections" >&2
  "$LOAD" "127.0.0.1:$PORT" --insecure --threads 1 --json -q \
    --user-pattern 'u{n}' --password-pattern 'pw-{n}' --user-count "$USERS" \
    -c "$USERS" --sessions "$USERS" -n 0 >"$OUT/burst-$i.json" || true
  stop_server
done

python3 - "$OUT" "$REPEATS" "$USERS" <<'PY'
import json, os, statistics, sys
out, repeats, users = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = []
for i in range(1, repeats + 1):
    with open(os.path.join(out, f"burst-{i}.json")) as f:
        r = json.load(f)
    with open(os.path.join(out, f"server-{i}.log"), errors="replace") as f:
        stalls = sum("credential store stalled" in line for line in f)
    e454 = sum(e["count"] for e in r["errors"] if e["step"] == "AUTH" and e["code"] == "454")
    other = r["errors_total"] - e454
    a = r["latency"]["auth"]
    rows.append((e454, other, a["count"], a["p50_ms"], a["p99_ms"], a["max_ms"], r["window_s"], stalls))
print()
print(f"| burst | 454 (of {users}) | other errors | logged in | AUTH p50 (ms) | p99 (ms) | max (ms) | burst took (s) | store-stall log lines |")
print("|---|---|---|---|---|---|---|---|---|")
for i, (e454, other, ok, p50, p99, mx, took, stalls) in enumerate(rows, 1):
    print(f"| {i} | {e454} | {other} | {ok} | {p50:.0f} | {p99:.0f} | {mx:.0f} | {took:.2f} | {stalls} |")
if len(rows) > 1:
    med = lambda k: statistics.median(row[k] for row in rows)
    print(f"| median | {med(0):.0f} | {med(1):.0f} | {med(2):.0f} | {med(3):.0f} | {med(4):.0f} | {med(5):.0f} | {med(6):.2f} | {med(7):.0f} |")
print(f"\nraw JSON and server logs in {out}")
PY
