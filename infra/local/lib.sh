# Shared by up.sh, down.sh and test.sh: install and start what AI Hub needs on a bare Debian
# machine where we are root. Every step is safe to run twice.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
AIHUB_HOME="${AIHUB_HOME:-$ROOT/.aihub}"
LOGS="$AIHUB_HOME/logs"
KAFKA_PORT="${KAFKA_PORT:-9092}"
export KAFKA_BROKERS="${KAFKA_BROKERS:-127.0.0.1:$KAFKA_PORT}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/aihub}"
export PATH="$HOME/.cargo/bin:$PATH"
mkdir -p "$LOGS"

say() { printf '==> %s\n' "$*"; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pg_ready() { psql "postgres://postgres@127.0.0.1:5432/postgres" -Atqc 'SELECT 1' >/dev/null 2>&1; }

ensure_postgres() {
  if pg_ready; then say "PostgreSQL is running"; return; fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    say "installing PostgreSQL (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client >/dev/null
  fi
  local version
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -z "$version" ]; then
    version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
    pg_createcluster "$version" main >/dev/null
  fi
  say "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || pg_ctlcluster "$version" main start || true
  # A cluster that was not shut down cleanly replays its WAL first; on a busy machine that can
  # take a while, so wait up to 90 s for it to accept connections.
  for _ in $(seq 1 450); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.2
  done
  if ! pg_ready; then
    # A fresh Debian cluster asks for a password on TCP; this is a local development and CI
    # machine, so trust loopback connections as the machines we run on already do.
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    say "trusting loopback connections in $hba"
    sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || pg_ctlcluster "$version" main reload
    for _ in $(seq 1 50); do pg_ready && break; sleep 0.2; done
  fi
  pg_ready || { echo "PostgreSQL is not reachable at 127.0.0.1:5432 as user postgres" >&2; exit 1; }
}

# Apache Kafka in KRaft mode, fetched from Maven Central once (infra/local/kafka.sh).
KAFKA="$ROOT/infra/local/kafka.sh"

ensure_kafka() {
  say "Apache Kafka: $("$KAFKA" classpath)"
}

# The platform's broker, kept under $AIHUB_HOME/kafka across restarts.
start_kafka() {
  local dir="$AIHUB_HOME/kafka" cport="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
  if alive "$dir/pid"; then say "Kafka is running (pid $(cat "$dir/pid"))"; return; fi
  if port_open "$KAFKA_PORT"; then say "a broker already listens on $KAFKA_PORT; using it"; return; fi
  say "starting Apache Kafka on 127.0.0.1:$KAFKA_PORT (KRaft, storage in $dir/data, log in $dir/kafka.log)"
  "$KAFKA" start "$dir" 1 "$KAFKA_PORT" "$cport" "1@127.0.0.1:$cport"
}

# A broker of the test run's own, on its own ports with empty storage, so the tests never depend
# on (or pile topics into) the broker up.sh started, nor on one left busy by earlier work.
start_test_kafka() {
  local port=$1 cport=$(($1 + 1)) dir="$AIHUB_HOME/test-kafka"
  "$KAFKA" stop "$dir"
  if port_open "$port" || port_open "$cport"; then
    echo "port $port or $cport is taken by another process; set TEST_KAFKA_PORT to a free port" >&2
    exit 1
  fi
  rm -rf "$dir" && mkdir -p "$dir"
  say "starting a test broker (Apache Kafka) on 127.0.0.1:$port with empty storage in $dir"
  "$KAFKA" start "$dir" 1 "$port" "$cport" "1@127.0.0.1:$cport"
}

stop_pid() {
  local file=$1 name=$2
  if alive "$file"; then
    local pid
    pid="$(cat "$file")"
    say "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

# Debian's kcat, for the test that reads our topic as an outside tool would.
ensure_kcat() {
  command -v kcat >/dev/null 2>&1 && return
  say "installing kcat (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null
}

# Python 3 with the official `openai` package, for the SDK compatibility test.
ensure_python_openai() {
  if python3 -c 'import openai' 2>/dev/null; then return; fi
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
    say "installing Python 3 and pip (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip >/dev/null
  fi
  say "installing the openai Python package (pip)"
  python3 -m pip install -q --disable-pip-version-check openai \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages openai
}

# Debian's Chromium, for the test that renders /docs headless.
ensure_chromium() {
  command -v chromium >/dev/null 2>&1 && return
  say "installing Chromium (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

# jq, which the README's first session (run as a test) uses.
ensure_jq() {
  command -v jq >/dev/null 2>&1 && return
  say "installing jq (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null
}

# npm, which the build uses once to take Swagger UI (the /docs portal) from the npm registry
# (aihub/build.rs); afterwards the unpacked package is cached under ~/.cache/aihub.
ensure_npm() {
  command -v npm >/dev/null 2>&1 && return
  say "installing npm (apt-get), used by the build to fetch Swagger UI once"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
}

# schemathesis (PyPI), pinned, in a virtualenv of its own under the cache: its many dependencies
# stay out of the system Python. The contract test finds it through SCHEMATHESIS.
SCHEMATHESIS_VERSION=4.32.5
ensure_schemathesis() {
  local venv="${AIHUB_CACHE:-$HOME/.cache/aihub}/schemathesis-$SCHEMATHESIS_VERSION"
  export SCHEMATHESIS="$venv/bin/st"
  # A virtualenv cannot be moved (its scripts name their interpreter by path): a stamp marks
  # a finished install, and an unfinished one is made again.
  [ -f "$venv/installed" ] && return
  if ! python3 -m venv --help >/dev/null 2>&1; then
    say "installing Python 3 venv (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  say "installing schemathesis $SCHEMATHESIS_VERSION into $venv (pip)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  touch "$venv/installed"
}
