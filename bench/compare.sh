#!/usr/bin/env bash
# The speed targets in one run, beside the protocol floor: the shared
# harness (its bench.py) measures the floor and portcullis on the four
# scenarios with CPU and memory, then bench/run.sh measures what only
# portcullis has (cold logins against the argon2id hash rate, the
# many-user steady state, idle connections over STARTTLS) on the same
# machine right after, and one table puts every target beside its number.
#
#   BENCH_HARNESS=<harness dir> bench/compare.sh
#   BENCH_HARNESS=<harness dir> REPEATS=1 DURATION=5 MANY_USERS=2000 bench/compare.sh   # quick look
#
# BENCH_HARNESS is the directory with bench.py and peers/ (the harness's
# own README: peers/install-all.sh builds its load generator and floor;
# only those two are needed here). The harness is copied to a temporary
# directory with peers/ours linked in, so it is not changed.
#
# Environment: REPEATS (3) DURATION (10) WARMUP (2) HOLD (1000) MANY_USERS
# (10000) COLD (1) OUT (default bench/results/compare-<stamp>), and
# BENCH_DATA_DIR (the harness's server keeps its spool there: /dev/shm
# shows what the disk's fsyncs cost; bench/peers/ours/start.sh).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${BENCH_HARNESS:?set BENCH_HARNESS to the shared harness directory (the one with bench.py)}"
REPEATS="${REPEATS:-3}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
HOLD="${HOLD:-1000}"
OUT="${OUT:-$REPO/bench/results/compare-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"

(cd "$REPO" && cargo build --release -q -p portcullis -p portcullis-load)
HARNESS="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-harness.XXXXXX")"
trap 'rm -rf "$HARNESS"' EXIT
cp -r "$BENCH_HARNESS/bench.py" "$BENCH_HARNESS/peers" "$BENCH_HARNESS/smtp-load" "$HARNESS/"
rm -rf "$HARNESS/peers/ours"
ln -s "$REPO/bench/peers/ours" "$HARNESS/peers/ours"

echo "== the shared harness: floor and portcullis" >&2
(cd "$HARNESS" && PORTCULLIS_REPO="$REPO" python3 bench.py --servers floor,ours \
  --repeats "$REPEATS" --duration "$DURATION" --warmup "$WARMUP" --hold "$HOLD" \
  --out "$OUT/harness" >"$OUT/harness.log" 2>&1)

echo "== bench/run.sh: cold logins, many users, idle connections" >&2
CORE=0 REPEATS=1 DURATION="$DURATION" WARMUP="$WARMUP" HOLD="$HOLD" OUT="$OUT/run" \
  "$REPO/bench/run.sh" >"$OUT/run.log" 2>&1

python3 - "$OUT" <<'PY' | tee "$OUT/table.md"
import json, os, statistics, sys
out = sys.argv[1]
summary = json.load(open(os.path.join(out, "harness", "summary.json")))

def ours_json(name):
    try:
        return json.load(open(os.path.join(out, "run", name + ".json")))
    except (OSError, ValueError):
        return None

def median(server, scenario, key):
    values = [r[key] for r in summary["runs"]
              if r["server"] == server and r["scenario"] == scenario and r.get(key) is not None]
    return statistics.median(values) if values else None

rows = []
def row(name, floor, ours, ratio, target, met):
    rows.append((name, floor, ours, ratio, target, "yes" if met else "no"))

scenarios = [("auth", "auth-only, sessions/s", "sessions_per_s", 0.9),
             ("msg1", "1 durable message/session, msg/s", "messages_per_s", 0.8),
             ("msg20", "20 durable messages/session, msg/s", "messages_per_s", 0.6),
             ("tls", "STARTTLS + 1 message, msg/s", "messages_per_s", 0.95)]
for key, label, rate, target in scenarios:
    f, o = median("floor", key, rate), median("ours", key, rate)
    if f and o:
        row(label, f"{f:,.0f}", f"{o:,.0f}", f"{o / f:.2f}", f">= {target}", o / f >= target)
for key, label, rate, _ in scenarios:
    f, o = median("floor", key, rate), median("ours", key, rate)
    fc, oc = median("floor", key, "cpu_server"), median("ours", key, "cpu_server")
    if f and o and fc and oc:
        fu, ou = fc / f * 1e6, oc / o * 1e6
        row(f"server CPU per unit, {key} (µs; cores {fc:.2f} / {oc:.2f})",
            f"{fu:.1f}", f"{ou:.1f}", f"{ou / fu:.2f}", "<= 1.2", ou / fu <= 1.2)
cold, rate = ours_json("g"), ours_json("hash-rate")
if cold and rate and rate.get("hashes_per_s"):
    r = cold["sessions_per_s"] / rate["hashes_per_s"]
    repeated = cold["sessions"] > cold["users"]
    row("cold logins, distinct users, /s (vs argon2id hashes/s)"
        + (f' (INVALID: {cold["sessions"]} sessions for {cold["users"]} users)' if repeated else ""),
        f'{rate["hashes_per_s"]:.1f} (hashes)', f'{cold["sessions_per_s"]:.1f}', f"{r:.2f}", ">= 0.9",
        r >= 0.9 and not repeated)
many, floor_auth = ours_json("h"), median("floor", "auth", "sessions_per_s")
if many and floor_auth:
    r = many["sessions_per_s"] / floor_auth
    row(f'{many.get("users", "")} users, random, cache warm, sessions/s (vs floor auth-only)',
        f"{floor_auth:,.0f}", f'{many["sessions_per_s"]:,.0f}', f"{r:.2f}", ">= 0.8", r >= 0.8)
mem, holds = summary["memory"], summary["holds"]
def per_conn(server, base):
    h = holds.get(server) or {}
    established = h.get("established") or 0
    if not established or not h.get("mem"):
        return None
    return (h["mem"]["pss_kb"] - mem[server][base]["pss_kb"]) / established
for base, what in [("idle", "since start (the harness's column)"), ("after_load", "since the end of the load")]:
    f, o = per_conn("floor", base), per_conn("ours", base)
    if f is not None and o is not None:
        row(f"idle authenticated connection, KiB ΣPSS, {what}", f"{f:.1f}", f"{o:.1f}", "", "<= 12.5", o <= 12.5)
tls = ours_json("f")
if tls and tls.get("server_rss_per_connection_kib") is not None:
    v = tls["server_rss_per_connection_kib"]
    row("idle connection over STARTTLS, KiB VmRSS", "", f"{v:.1f}", "", "<= 40", v <= 40)
print(f'portcullis {summary["servers"]["ours"].get("version", "")}; harness args {summary["args"]}')
print()
print("| target | floor | portcullis | ratio | target | met |")
print("|---|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
PY
echo "results in $OUT" >&2
