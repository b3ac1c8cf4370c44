# Sourced by bench/run.sh and bench/peers/ours/start.sh: how portcullis is
# configured and started for a benchmark. Not a peer of its own.
#
# The config keeps the server's defaults (argon2id users in SQLite, the
# durable spool, default limits) and changes only what a loopback benchmark
# needs:
# - one session worker thread (BENCH_WORKERS; 0 leaves the server's
#   default, one per CPU). The harness runs its floor on one thread too,
#   the fastest setting when the client shares the machine's 2 cores:
#   measured here in alternated pairs, one worker spent about 8 % less
#   server CPU per session and per message than two on average (noisy:
#   one pair of four went the other way), and served more over STARTTLS
#   (the spool writer, the history writer and argon2id's threads are
#   apart anyway);
# - one STARTTLS listener that also offers AUTH before TLS (the shared
#   harness's plaintext scenarios log in without TLS, as every peer there
#   allows);
# - a connection limit above the --hold count.

# portcullis_config DATA_DIR PORT MAX_CONNECTIONS [CERT KEY] > portcullis.toml
# Without CERT/KEY the server makes its own self-signed certificate.
portcullis_config() {
  local data=$1 port=$2 max=$3 cert=${4:-} key=${5:-}
  printf 'hostname = "bench.portcullis.test"\ndata_dir = "%s"\n' "$data"
  if [ "${BENCH_WORKERS:-1}" != 0 ]; then printf 'workers = %s\n' "${BENCH_WORKERS:-1}"; fi
  printf '\n'
  if [ -n "$cert" ]; then
    printf '[tls]\ncertificate = "%s"\nprivate_key = "%s"\n\n' "$cert" "$key"
  fi
  printf '[limits]\nmax_connections = %s\n\n' "$max"
  printf '[[listener]]\nname = "bench"\naddress = "127.0.0.1:%s"\n' "$port"
  printf 'tls = "starttls"\nauth = "required"\nallow_insecure_auth = true\n'
}

# portcullis_start BIN CONFIG LOG PIDFILE USER PASSWORD: adds the user,
# starts `portcullis serve` in the background, records its PID.
# PORTCULLIS_LOG defaults to warn: per-session info lines are a cost the
# peers in the harness do not pay either (their logs are off or at warn).
portcullis_start() {
  local bin=$1 config=$2 log=$3 pidfile=$4 user=$5 pass=$6
  local -a env=(PORTCULLIS_LOG="${PORTCULLIS_LOG:-warn}")
  printf '%s\n' "$pass" | "$bin" user add "$user" --password-stdin --config "$config" >/dev/null
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  env "${env[@]}" nohup "$bin" serve --config "$config" >"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

# portcullis_wait_port PORT [SECS]: until 127.0.0.1:PORT accepts.
portcullis_wait_port() {
  local port=$1 secs=${2:-30} i
  for ((i = 0; i < secs * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $port not open after ${secs}s" >&2
  return 1
}
