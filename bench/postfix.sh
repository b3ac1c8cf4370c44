#!/usr/bin/env bash
# Logins per second through Postfix: a private Postfix (`postfix -c DIR`,
# never the system's) with `smtpd_sasl_type = dovecot` in front of
# portcullis's Dovecot-protocol listener, and, in the same run, a second
# private Postfix in front of Dovecot's own auth server (when dovecot-core
# is installed) with the very same argon2id hash in a passwd-file.
# portcullis-load runs AUTH-only sessions (connect, EHLO, AUTH PLAIN, QUIT)
# against each Postfix.
#
#   bench/postfix.sh                      # release build, 8 connections, 10 s
#   PROFILE=debug DURATION=5 bench/postfix.sh
#
# Three rows: portcullis as configured by default (a verified password is
# remembered, so repeat logins skip the hash), portcullis with that cache
# off (every login pays argon2id, as Dovecot's does: its auth cache keeps
# the hash, not the verification), and Dovecot.
#
# Needs root (Postfix's master starts as root). Environment: CONNS (8)
# DURATION (10) WARMUP (2) PORT (2720; uses PORT..PORT+5) PROFILE (release)
# OUT (results directory; default bench/results/postfix-<stamp>).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/bench/lib.sh"

CONNS="${CONNS:-8}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
PORT="${PORT:-2720}"
PROFILE="${PROFILE:-release}"
OUT="${OUT:-$REPO/bench/results/postfix-$(date +%Y%m%d-%H%M%S)}"
USER_NAME=bench
PASS=bench-pass

[ "$(id -u)" = 0 ] || { echo "needs root: Postfix's master starts as root" >&2; exit 1; }
[ -x /usr/lib/postfix/sbin/master ] || { echo "postfix is not installed" >&2; exit 1; }

if [ "$PROFILE" = release ]; then
  cargo build --release -p portcullis -p portcullis-load >&2
else
  cargo build -p portcullis -p portcullis-load >&2
fi
BIN="$REPO/target/$PROFILE/portcullis"
LOAD="$REPO/target/$PROFILE/portcullis-load"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 1
  rm -rf "$WORK"
}
trap cleanup EXIT

# postfix_start NAME SMTPD_PORT SASL_PATH: a private Postfix in $WORK/NAME.
postfix_start() {
  local dir="$WORK/$1" port=$2 sasl=$3
  mkdir -p "$dir/queue" "$dir/data"
  chown postfix "$dir/data"
  cat >"$dir/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 192.0.2.1/32
alias_maps =
alias_database =
local_recipient_maps =
smtpd_client_connection_rate_limit = 0
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = $sasl
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
default_transport = discard
EOF
  cat >"$dir/master.cf" <<EOF
127.0.0.1:$port inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
proxymap  unix  - - n - - proxymap
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF
  postfix -c "$dir" check >/dev/null 2>&1 || true
  /usr/lib/postfix/sbin/master -c "$dir" -d </dev/null >/dev/null 2>&1 &
  PIDS+=($!)
}

# portcullis_run NAME CACHE_TTL: portcullis with its auth listener on
# PORT+1 (or +3), Postfix on PORT (or +2).
run_load() {
  local label=$1 port=$2
  sleep 2
  "$LOAD" "127.0.0.1:$port" -c "$CONNS" -n 0 -d "$DURATION" -w "$WARMUP" \
    -u "$USER_NAME" -p "$PASS" --auth plain >"$OUT/$label.txt" 2>&1 || true
  local rate
  rate=$(awk '/^  auths/ {print $3}' "$OUT/$label.txt")
  printf '%-36s %12s\n' "$label" "${rate:-failed}"
}

portcullis_instance() {
  local label=$1 ttl=$2 base=$3
  local data="$WORK/$label"
  mkdir -p "$data"
  {
    printf 'hostname = "bench.portcullis.test"\ndata_dir = "%s"\n\n' "$data"
    printf '[auth]\nverified_cache_ttl = "%ss"\n\n' "$ttl"
    printf '[limits.auth]\nallow = ["127.0.0.0/8"]\n\n'
    printf '[[listener]]\nname = "bench"\naddress = "127.0.0.1:%s"\n' "$((base + 5))"
    printf 'tls = "starttls"\nauth = "required"\n\n'
    printf '[[auth_listener]]\nname = "postfix"\naddress = "127.0.0.1:%s"\n' "$((base + 1))"
  } >"$data/portcullis.toml"
  portcullis_start "$BIN" "$data/portcullis.toml" "$OUT/$label.log" "$data/pid" "$USER_NAME" "$PASS"
  PIDS+=("$(cat "$data/pid")")
  portcullis_wait_port "$((base + 1))"
  postfix_start "pf-$label" "$base" "inet:127.0.0.1:$((base + 1))"
  portcullis_wait_port "$base"
  run_load "$label" "$base"
  kill "$(cat "$data/pid")" 2>/dev/null || true
}

printf '%-36s %12s\n' "through Postfix ($CONNS connections)" "logins/s"
portcullis_instance portcullis "3600" "$PORT"
portcullis_instance portcullis-no-cache "0" "$((PORT + 10))"

if command -v dovecot >/dev/null; then
  # The same argon2id hash portcullis stored, in Dovecot's passwd-file.
  hash=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select password from users").fetchone()[0])' \
    "$WORK/portcullis/users.sqlite")
  dc="$WORK/dovecot"
  mkdir -p "$dc/run" "$dc/state"
  echo "$USER_NAME:{ARGON2ID}$hash" >"$dc/passwd"
  chmod 644 "$dc/passwd"
  cat >"$dc/dovecot.conf" <<EOF
base_dir = $dc/run
state_dir = $dc/state
log_path = $dc/dovecot.log
protocols =
ssl = no
listen = 127.0.0.1
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_cache_size = 10M
passdb {
  driver = passwd-file
  args = $dc/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=/tmp
}
service auth {
  inet_listener {
    address = 127.0.0.1
    port = $((PORT + 21))
  }
}
EOF
  dovecot -c "$dc/dovecot.conf" -F </dev/null >/dev/null 2>&1 &
  PIDS+=($!)
  portcullis_wait_port "$((PORT + 21))"
  postfix_start pf-dovecot "$((PORT + 20))" "inet:127.0.0.1:$((PORT + 21))"
  portcullis_wait_port "$((PORT + 20))"
  run_load "dovecot $(dovecot --version | cut -d' ' -f1)" "$((PORT + 20))"
else
  echo "dovecot: not installed (apt-get install dovecot-core), row left out"
fi
echo "details: $OUT"
