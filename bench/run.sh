#!/usr/bin/env bash
# The issue's benchmark, repeatable by anyone: builds portcullis and
# portcullis-load in release mode, starts the server on its defaults in a
# temporary data directory (argon2id user bench/bench-pass, self-signed
# certificate, fsynced spool), runs the scenarios of the table, prints it,
# and stops the server.
#
#   bench/run.sh                       # 50 connections, 10 s windows, hold 1000
#   DURATION=3 HOLD=200 bench/run.sh   # quick look
#
# Scenarios (as in the shared harness, ../shared/bench): AUTH PLAIN with
# initial response; (a)-(c) log in without TLS like the peers there, (d)
# pays a full STARTTLS handshake per session:
#   a  connect, EHLO, AUTH, QUIT                   sessions/s
#   b  + 1 message of SIZE bytes per session       messages/s
#   c  + 20 messages per session                   messages/s
#   d  STARTTLS (full handshake) + 1 message       messages/s
#   g  cold logins: connect, EHLO, AUTH, QUIT as COLD_USERS distinct users
#      (cold{n} / cold-pass-{n}), each used once in the run, so every login
#      pays one argon2id verification (no verified-cache hit); beside it,
#      portcullis-load --hash-rate: argon2id hashes/s with the server's
#      parameters on all cores, the ceiling of cold logins/s
#   h  many users: connect, EHLO, AUTH, QUIT, each session as one of
#      MANY_USERS users (many{n} / many-pass-{n}) picked at random, after
#      each has logged in once (the verified cache warm, as in a steady
#      state where every user logs in now and then)   sessions/s
#   e  HOLD idle authenticated connections         server VmRSS per connection
#   f  the same over STARTTLS
# The hold runs last, so the server's allocator has already seen the load
# (the first argon2id verifications grow the heap; that is not per-connection
# memory). Client and server share the machine's cores; the client runs on
# one thread (LOAD_THREADS) to leave the most CPU to the server.
#
# Commands go one at a time, as in the harness (its table is the reference);
# PIPELINING=1 lets portcullis-load pipeline MAIL/RCPT/DATA.
#
# Environment: CONNS (50) DURATION (10) WARMUP (2) REPEATS (1, median is
# shown) SIZE (1024) HOLD (1000) HOLD_SECS (5) PORT (2700) LOAD_THREADS (1)
# OUT (results directory; default bench/results/<stamp>) PORTCULLIS_LOG (warn)
# BENCH_WORKERS (1 session worker thread, as the harness runs its floor; 0:
# the server's default, one per CPU; see bench/lib.sh)
# CORE=0 skips scenarios a-d (bench/compare.sh measures them in the shared
# harness, beside the floor); MANY_USERS (10000; 0 skips the many-user
# scenario; they are made with `portcullis user import`, about a minute
# and a half for 10 000 here)
# COLD=0 skips the cold-login scenario; COLD_USERS (default 250 per second
# of warmup and window: about twice what this machine verifies, so none
# repeats; the table says so if one did)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/bench/lib.sh"

CONNS="${CONNS:-50}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
REPEATS="${REPEATS:-1}"
SIZE="${SIZE:-1024}"
HOLD="${HOLD:-1000}"
HOLD_SECS="${HOLD_SECS:-5}"
PORT="${PORT:-2700}"
COLD="${COLD:-1}"
MANY_USERS="${MANY_USERS:-10000}"
CORE="${CORE:-1}"
LOAD_THREADS="${LOAD_THREADS:-1}"
OUT="${OUT:-$REPO/bench/results/$(date +%Y%m%d-%H%M%S)}"
export BENCH_PASS="${BENCH_PASS:-bench-pass}"
BENCH_USER="${BENCH_USER:-bench}"

(cd "$REPO" && cargo build --release -q -p portcullis -p portcullis-load)
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}/release"
SERVER="$TARGET_DIR/portcullis"
LOAD="$TARGET_DIR/portcullis-load"

DATA="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-bench.XXXXXX")"
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

portcullis_config "$DATA" "$PORT" $((HOLD + CONNS + 100)) >"$DATA/portcullis.toml"
if [ "$MANY_USERS" -gt 0 ]; then
  echo "importing $MANY_USERS users for the many-user scenario" >&2
  seq "$MANY_USERS" | sed 's/.*/many&:many-pass-&/' |
    "$SERVER" user import - --config "$DATA/portcullis.toml" >&2
fi
portcullis_start "$SERVER" "$DATA/portcullis.toml" "$OUT/server.log" "$PIDFILE" \
  "$BENCH_USER" "$BENCH_PASS"
if [ "$COLD" = 1 ]; then
  COLD_USERS="${COLD_USERS:-$(python3 -c "import math; print(math.ceil(($DURATION + $WARMUP) * 250))")}"
  echo "adding $COLD_USERS users for the cold-login scenario" >&2
  seq "$COLD_USERS" | sed 's/.*/cold&:cold-pass-&/' |
    "$SERVER" user import - --config "$DATA/portcullis.toml" >&2
fi
portcullis_wait_port "$PORT"
PID="$(cat "$PIDFILE")"
echo "portcullis pid $PID on 127.0.0.1:$PORT, data in $DATA, results in $OUT" >&2

load() { # NAME ARGS...: one run, JSON to $OUT/NAME.json
  local name=$1
  shift
  echo "== $name: portcullis-load $*" >&2
  "$LOAD" "127.0.0.1:$PORT" -u "$BENCH_USER" --password-env BENCH_PASS --insecure \
    --threads "$LOAD_THREADS" --json -q "$@" >"$OUT/$name.json" || true
}

common=(-c "$CONNS" -d "$DURATION" -w "$WARMUP" -s "$SIZE")
[ "${PIPELINING:-0}" = 1 ] || common+=(--no-pipelining)
for i in $(seq "$REPEATS"); do
  [ "$CORE" = 1 ] || break
  load "a-$i" "${common[@]}" -n 0
  load "b-$i" "${common[@]}" -n 1
  load "c-$i" "${common[@]}" -n 20
  load "d-$i" "${common[@]}" -n 1 --starttls
done
if [ "$COLD" = 1 ]; then
  echo "== hash rate: portcullis-load --hash-rate" >&2
  "$LOAD" --hash-rate -d "$DURATION" --json >"$OUT/hash-rate.json" || true
  # No warmup: the first logins are as cold as the last.
  echo "== g: portcullis-load --user-pattern cold{n} ($COLD_USERS users)" >&2
  "$LOAD" "127.0.0.1:$PORT" --user-pattern 'cold{n}' --password-pattern 'cold-pass-{n}' \
    --user-count "$COLD_USERS" --insecure --threads "$LOAD_THREADS" --json -q \
    -c "$CONNS" -d "$DURATION" -w 0 -n 0 >"$OUT/g.json" || true
fi
if [ "$MANY_USERS" -gt 0 ]; then
  many=(--user-pattern 'many{n}' --password-pattern 'many-pass-{n}' --user-count "$MANY_USERS"
    --insecure --threads "$LOAD_THREADS" --json -q -c "$CONNS" -n 0)
  echo "== h: warming the verified cache: each of $MANY_USERS users logs in once" >&2
  "$LOAD" "127.0.0.1:$PORT" "${many[@]}" --sessions "$MANY_USERS" >"$OUT/h-warm.json" || true
  echo "== h: portcullis-load --random-users over $MANY_USERS users" >&2
  "$LOAD" "127.0.0.1:$PORT" "${many[@]}" --random-users -d "$DURATION" -w "$WARMUP" >"$OUT/h.json" || true
fi
load e -c "$CONNS" --hold "$HOLD" -d "$HOLD_SECS" --server-pid "$PID"
load f -c "$CONNS" --hold "$HOLD" -d "$HOLD_SECS" --server-pid "$PID" --starttls
VM_HWM="$(sed -n 's/^VmHWM:[[:space:]]*//p' "/proc/$PID/status")"

python3 - "$OUT" "$REPEATS" "$VM_HWM" <<'PY'
import json, os, statistics, sys
out, repeats, hwm = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def read(name):
    try:
        with open(os.path.join(out, name + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def errors(runs):
    total = sum(r["errors_total"] for r in runs)
    if not total:
        return "0"
    keys = {}
    for r in runs:
        for e in r["errors"]:
            k = f'{e["step"]} {e["code"]}'
            keys[k] = keys.get(k, 0) + e["count"]
    return f"{total} (" + ", ".join(f"{k}: {n}" for k, n in keys.items()) + ")"

rows = []
for key, label, rate, lat in [
    ("a", "connect, EHLO, AUTH, QUIT", "sessions_per_s", "auth"),
    ("b", "+ 1 message per session", "messages_per_s", "message"),
    ("c", "+ 20 messages per session", "messages_per_s", "message"),
    ("d", "STARTTLS + 1 message", "messages_per_s", "session"),
]:
    runs = [r for r in (read(f"{key}-{i}") for i in range(1, repeats + 1)) if r]
    if not runs and not os.path.exists(os.path.join(out, "a-1.json")):
        continue  # CORE=0
    if not runs:
        rows.append((label, "failed", "", "", ""))
        continue
    unit = "sessions/s" if rate == "sessions_per_s" else "msg/s"
    med = statistics.median(r[rate] for r in runs)
    spread = f" [{min(r[rate] for r in runs):.0f}-{max(r[rate] for r in runs):.0f}]" if len(runs) > 1 else ""
    p50 = statistics.median(r["latency"][lat]["p50_ms"] for r in runs)
    p99 = statistics.median(r["latency"][lat]["p99_ms"] for r in runs)
    rows.append((label, f"{med:,.0f} {unit}{spread}", f"{lat} {p50:.2f} / {p99:.2f}", errors(runs), ""))
cold = read("g")
rate = read("hash-rate")
if cold and rate:
    ratio = cold["sessions_per_s"] / rate["hashes_per_s"] if rate["hashes_per_s"] else 0
    rows.append(("cold logins, distinct users", f'{cold["sessions_per_s"]:,.1f} sessions/s',
                 f'auth {cold["latency"]["auth"]["p50_ms"]:.2f} / {cold["latency"]["auth"]["p99_ms"]:.2f}',
                 errors([cold]),
                 f'{ratio:.2f}x the argon2id hash rate ({rate["hashes_per_s"]:.1f}/s on {rate["threads"]} threads)'
                 + (f'; NOT ALL COLD: {cold["sessions"]} sessions for {cold["users"]} users'
                    if cold["sessions"] > cold["users"] else "")))
many = read("h")
if many:
    rows.append((f"many users, random, cache warm", f'{many["sessions_per_s"]:,.0f} sessions/s',
                 f'auth {many["latency"]["auth"]["p50_ms"]:.2f} / {many["latency"]["auth"]["p99_ms"]:.2f}',
                 errors([many]), f'{many.get("users", "")} users'))
for key, label in [("e", "idle authenticated connection"), ("f", "idle connection, STARTTLS")]:
    r = read(key)
    if not r:
        rows.append((label, "failed", "", "", ""))
        continue
    per = r.get("server_rss_per_connection_kib")
    value = f"{per:.1f} KiB" if per is not None else "n/a"
    rows.append((label, value, f'held {r["held"]}/{r["requested"]}, QUIT ok {r["quit_ok"]}',
                 errors([r]), f'VmRSS {r["server_rss_before_kib"]} -> {r["server_rss_after_kib"]} KiB'))

print()
print("| scenario | result | latency p50 / p99 (ms) or hold | errors | |")
print("|---|---|---|---|---|")
for row in rows:
    print("| " + " | ".join(row) + " |")
print(f"\nserver VmHWM after all runs: {hwm}; raw JSON in {out}")
PY
