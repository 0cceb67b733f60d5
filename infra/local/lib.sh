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

# Debian's PostgreSQL packages, when missing.
install_postgres() {
  command -v pg_ctlcluster >/dev/null 2>&1 && return
  say "installing PostgreSQL (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client >/dev/null
}

ensure_postgres() {
  if pg_ready; then say "PostgreSQL is running"; return; fi
  install_postgres
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
  # The broker is bookkeeping only (no chat call waits on it: the relay and the projectors do),
  # so on a machine it shares with the gateway it runs under SCHED_IDLE (`KAFKA_IDLE`, 1) and
  # at a lower CPU priority, `KAFKA_NICE` (docs/ARCHITECTURE.md, "Sharing a machine").
  say "starting Apache Kafka on 127.0.0.1:$KAFKA_PORT (KRaft, storage in $dir/data, log in $dir/kafka.log, nice ${KAFKA_NICE:-10}, idle ${KAFKA_IDLE:-1})"
  (lower_priority "${KAFKA_NICE:-10}" "${KAFKA_IDLE:-1}" && "$KAFKA" start "$dir" 1 "$KAFKA_PORT" "$cport" "1@127.0.0.1:$cport")
}

# The calling (sub)shell, and what it starts, at nice $1 and, with $2 = 1, under SCHED_IDLE:
# it runs only when nothing of a normal policy wants the CPU, and a request thread that wakes
# takes the CPU from it at once, which no nice value gives.
lower_priority() {
  renice -n "$1" -p "$BASHPID" >/dev/null || return
  [ "${2:-0}" = 1 ] || return 0
  chrt --idle -p 0 "$BASHPID" || echo "could not switch to SCHED_IDLE; staying at nice $1" >&2
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

# Python 3 with its venv module (Debian splits it out).
ensure_python_venv() {
  python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null && return
  say "installing Python 3 venv (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
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
  ensure_python_venv
  say "installing schemathesis $SCHEMATHESIS_VERSION into $venv (pip)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  touch "$venv/installed"
}

# aiosmtpd (PyPI), pinned, in a virtualenv of its own: the real SMTP server the alerting test
# sends its notification emails to (tests/tests/alerts.rs finds it through AIOSMTPD).
AIOSMTPD_VERSION=1.4.6
ensure_aiosmtpd() {
  local venv="${AIHUB_CACHE:-$HOME/.cache/aihub}/aiosmtpd-$AIOSMTPD_VERSION"
  export AIOSMTPD="$venv/bin/python"
  [ -f "$venv/installed" ] && return
  ensure_python_venv
  say "installing aiosmtpd $AIOSMTPD_VERSION into $venv (pip)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION"
  touch "$venv/installed"
}

# --- What tests/tests/deploy.rs checks the deployment artifacts with ------------------------------
#
# Debian's docker-compose (validates infra/docker/compose.yaml without an engine) and promtool
# (from the prometheus package: the rules in infra/prometheus); helm and kubeconform from the Go
# module proxy; the Kubernetes JSON schemas from PyPI's kubernetes-validate (kubeconform would
# download them from GitHub, which these machines cannot reach).
HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.8.0
KUBE_SCHEMAS_PACKAGE=kubernetes-validate==1.37.0
KUBE_VERSION=1.32.0
ensure_deploy_tools() {
  local cache="${AIHUB_CACHE:-$HOME/.cache/aihub}" missing=()
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (apt-get), to check the compose file and the Prometheus rules"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  export DOCKER_COMPOSE="$(command -v docker-compose)" PROMTOOL="$(command -v promtool)" PROMETHEUS="$(command -v prometheus)"
  local bin="$cache/go-bin"
  mkdir -p "$bin"
  if [ ! -x "$bin/helm-$HELM_VERSION" ]; then
    say "building helm $HELM_VERSION (go install, once)"
    GOBIN="$bin" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    mv "$bin/helm" "$bin/helm-$HELM_VERSION"
  fi
  if [ ! -x "$bin/kubeconform-$KUBECONFORM_VERSION" ]; then
    say "building kubeconform $KUBECONFORM_VERSION (go install, once)"
    GOBIN="$bin" go install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
    mv "$bin/kubeconform" "$bin/kubeconform-$KUBECONFORM_VERSION"
  fi
  export HELM="$bin/helm-$HELM_VERSION" KUBECONFORM="$bin/kubeconform-$KUBECONFORM_VERSION"
  local schemas="$cache/kube-schemas/v$KUBE_VERSION-local-strict"
  export KUBE_SCHEMAS="$schemas" KUBE_VERSION
  [ -f "$schemas/installed" ] && return
  say "fetching the Kubernetes $KUBE_VERSION JSON schemas ($KUBE_SCHEMAS_PACKAGE from PyPI)"
  local tmp
  tmp="$(mktemp -d)"
  python3 -m pip download -q --disable-pip-version-check --no-deps "$KUBE_SCHEMAS_PACKAGE" -d "$tmp"
  rm -rf "$schemas" && mkdir -p "$schemas"
  # The package's schemas name their shared definitions by a path of its own: point them at the
  # file on disk, which kubeconform resolves.
  python3 - "$tmp" "$schemas" "v$KUBE_VERSION-local-strict" <<'PY'
import glob, sys, zipfile
tmp, out, version = sys.argv[1:]
wheel = zipfile.ZipFile(glob.glob(tmp + "/*.whl")[0])
prefix = f"kubernetes_validate/kubernetes-json-schema/{version}/"
count = 0
for name in wheel.namelist():
    if name.startswith(prefix) and name.endswith(".json"):
        base = name[len(prefix):]
        text = wheel.read(name).decode()
        if base == "_definitions.json":
            text = text.replace('"/api/_definitions.json#/', '"#/')
        else:
            text = text.replace('"/api/_definitions.json#', f'"file://{out}/_definitions.json#')
        open(f"{out}/{base}", "w").write(text)
        count += 1
if count < 100:
    sys.exit(f"only {count} schemas for {version} in the package")
PY
  rm -rf "$tmp"
  touch "$schemas/installed"
}

# Dex, the OpenID Connect provider tests/tests/sso.rs logs in to for real. Built once with Go from
# the Go module proxy into the machine's cache. Dex's go.mod names the module without /v2 while
# its tags are v2.x, so the proxy serves a release only by its pseudo-version (the tag's commit),
# and its replace directive keeps `go install dex@version` from building it: a throwaway module
# requires that version and builds the command. A Go older than Dex's go.mod asks for fetches the
# newer toolchain from the same proxy (GOTOOLCHAIN=auto).
DEX_VERSION="v2.45.1"
DEX_MODULE_VERSION="v0.0.0-20260303133905-11d2eeb52b42"

ensure_dex() {
  local dir="${AIHUB_CACHE:-$HOME/.cache/aihub}/dex-$DEX_VERSION"
  export DEX="$dir/dex"
  [ -x "$DEX" ] && return
  export PATH="$PATH:/usr/local/go/bin"
  if ! command -v go >/dev/null 2>&1; then
    say "installing Go (apt-get), which builds Dex"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null
  fi
  say "building Dex $DEX_VERSION into $dir (go, from the Go module proxy)"
  local build
  build="$(mktemp -d)"
  (
    cd "$build"
    go mod init aihub-dex-build >/dev/null 2>&1
    go get "github.com/dexidp/dex/cmd/dex@$DEX_MODULE_VERSION"
    go build -o "$build/dex" github.com/dexidp/dex/cmd/dex
  )
  mkdir -p "$dir"
  mv "$build/dex" "$DEX"
  rm -rf "$build"
}

# The Python SDK's test tools (sdks/python/requirements-dev.txt: httpx, pytest, build, hatchling)
# in a virtualenv under the cache, named by the file's hash so a change makes a new one, and
# their wheels beside it: tests/tests/sdks.rs installs the SDK into a clean virtualenv and builds
# its wheel from those, offline. Exports AIHUB_SDK_PYTHON and AIHUB_SDK_WHEELHOUSE.
ensure_sdk_python() {
  local reqs="$ROOT/sdks/python/requirements-dev.txt" venv
  venv="${AIHUB_CACHE:-$HOME/.cache/aihub}/sdk-python-$(sha256sum "$reqs" | cut -c1-12)"
  export AIHUB_SDK_PYTHON="$venv/bin/python" AIHUB_SDK_WHEELHOUSE="$venv/wheelhouse"
  [ -f "$venv/installed" ] && return
  ensure_python_venv
  say "installing the Python SDK's test tools into $venv (pip)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$reqs"
  "$venv/bin/python" -m pip download -q --disable-pip-version-check -d "$venv/wheelhouse" -r "$reqs"
  touch "$venv/installed"
}

# The JavaScript SDK's development packages (sdks/javascript/package-lock.json: typescript,
# @types/node, and the official `openai` package its tests also drive) installed with `npm ci`
# under the cache, named by the lock file's hash. Exports AIHUB_SDK_NODE_MODULES.
ensure_sdk_node() {
  ensure_npm
  local js="$ROOT/sdks/javascript" dir
  dir="${AIHUB_CACHE:-$HOME/.cache/aihub}/sdk-node-$(cat "$js/package.json" "$js/package-lock.json" | sha256sum | cut -c1-12)"
  export AIHUB_SDK_NODE_MODULES="$dir/node_modules"
  [ -f "$dir/installed" ] && return
  say "installing the JavaScript SDK's development packages into $dir (npm ci)"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$js/package.json" "$js/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
  touch "$dir/installed"
}

# The build links the system OpenSSL into librdkafka (Kafka over TLS, with SASL): its headers,
# found through pkg-config. A bare Debian machine has neither.
ensure_build_deps() {
  local missing=()
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
  [ ${#missing[@]} -eq 0 ] && return
  say "installing ${missing[*]} (apt-get), which the build needs for Kafka over TLS"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# --- Servers configured as managed ones are: PostgreSQL over TLS, Kafka over SASL_SSL ----------
#
# A throwaway certificate authority and a server certificate it signed for 127.0.0.1 and
# localhost, made once with openssl. They live in the machine's cache, not in one checkout's
# .aihub: the TLS PostgreSQL cluster below is one per machine, and every checkout must trust the
# certificate it presents. Clients trust ca.pem (AIHUB_DATABASE_CA_FILE, KAFKA_SSL_CA_FILE).
TLS_DIR="${AIHUB_TLS_DIR:-${AIHUB_CACHE:-$HOME/.cache/aihub}/tls}"

ensure_certificates() {
  [ -s "$TLS_DIR/server.p12" ] && return
  if ! command -v openssl >/dev/null 2>&1; then
    say "installing openssl (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
  fi
  say "making a throwaway certificate authority and a server certificate in $TLS_DIR"
  mkdir -p "$(dirname "$TLS_DIR")"
  local tmp
  tmp="$(mktemp -d "$TLS_DIR.XXXXXX")"
  (
    cd "$tmp"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=AI Hub throwaway test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
      -extfile server.ext -out server.pem 2>/dev/null
    head -c 18 /dev/urandom | base64 | tr '+/' '-_' >keystore-password
    head -c 18 /dev/urandom | base64 | tr '+/' '-_' >postgres-password
    # Kafka's keystore: the key and the chain, PKCS12.
    openssl pkcs12 -export -name server -in server.pem -inkey server.key -certfile ca.pem \
      -passout "file:keystore-password" -out server.p12
    chmod 644 ca.pem server.pem
    rm -f server.csr server.ext ca.srl
  )
  rm -rf "$TLS_DIR"
  mv "$tmp" "$TLS_DIR"
}

# A PostgreSQL cluster of Debian's beside the main one, on TLS_PG_PORT, that accepts only TLS
# (hostssl; a plain connection is refused) with a password (SCRAM), as RDS or Cloud SQL with
# ssl enforced do. It presents the certificate above. The main cluster is not touched.
TLS_PG_PORT="${TLS_PG_PORT:-5433}"
TLS_PG_CLUSTER=aihub_tls

tls_database_url() {
  echo "postgres://postgres:$(cat "$TLS_DIR/postgres-password")@127.0.0.1:$TLS_PG_PORT/aihub?sslmode=require"
}

ensure_tls_postgres() {
  ensure_certificates
  install_postgres
  local version conf
  version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
  conf="/etc/postgresql/$version/$TLS_PG_CLUSTER"
  # The cluster as Debian's tools know it (a configuration directory alone, left behind by a
  # dropped cluster, is no cluster: it is cleared and the cluster made anew).
  if ! pg_lsclusters -h 2>/dev/null | awk -v v="$version" -v c="$TLS_PG_CLUSTER" '$1 == v && $2 == c { found = 1 } END { exit !found }'; then
    rm -rf "$conf"
    say "creating the PostgreSQL cluster $TLS_PG_CLUSTER on 127.0.0.1:$TLS_PG_PORT (TLS only)"
    pg_createcluster "$version" "$TLS_PG_CLUSTER" -p "$TLS_PG_PORT" >/dev/null
  fi
  install -o postgres -g postgres -m 0644 "$TLS_DIR/server.pem" "$conf/server.pem"
  install -o postgres -g postgres -m 0600 "$TLS_DIR/server.key" "$conf/server.key"
  mkdir -p "$conf/conf.d"
  cat >"$conf/conf.d/aihub-tls.conf" <<CONF
# Written by infra/local/lib.sh (ensure_tls_postgres).
port = $TLS_PG_PORT
listen_addresses = '127.0.0.1'
ssl = on
ssl_cert_file = '$conf/server.pem'
ssl_key_file = '$conf/server.key'
ssl_min_protocol_version = 'TLSv1.2'
password_encryption = 'scram-sha-256'
CONF
  cat >"$conf/pg_hba.conf" <<HBA
# Written by infra/local/lib.sh (ensure_tls_postgres): TCP only over TLS, with a password.
local     all  postgres                 peer
hostssl   all  all       127.0.0.1/32   scram-sha-256
hostnossl all  all       0.0.0.0/0      reject
HBA
  chown -R postgres:postgres "$conf"
  if pg_ctlcluster "$version" "$TLS_PG_CLUSTER" status >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$version" "$TLS_PG_CLUSTER" reload
  else
    say "starting the PostgreSQL cluster $TLS_PG_CLUSTER on 127.0.0.1:$TLS_PG_PORT"
    pg_ctlcluster --skip-systemctl-redirect "$version" "$TLS_PG_CLUSTER" start
  fi
  for _ in $(seq 1 450); do
    pg_isready -q -h 127.0.0.1 -p "$TLS_PG_PORT" && break
    sleep 0.2
  done
  # The password of the URL, set over the local socket (peer authentication as postgres).
  runuser -u postgres -- psql -p "$TLS_PG_PORT" -qAtc \
    "ALTER ROLE postgres PASSWORD '$(cat "$TLS_DIR/postgres-password")'" >/dev/null
  # libpq's strictest mode agrees: the certificate and the host name verify against our CA.
  local url
  url="$(tls_database_url)"
  if ! psql "${url%/aihub*}/postgres?sslmode=verify-full&sslrootcert=$TLS_DIR/ca.pem" -Atqc 'SELECT 1' >/dev/null; then
    echo "the TLS PostgreSQL cluster on $TLS_PG_PORT does not answer over verified TLS" >&2
    exit 1
  fi
  if psql "postgres://postgres@127.0.0.1:$TLS_PG_PORT/postgres?sslmode=disable" -Atqc 'SELECT 1' >/dev/null 2>&1; then
    echo "the TLS PostgreSQL cluster on $TLS_PG_PORT accepts plain connections" >&2
    exit 1
  fi
}

# A test broker that clients reach only over TLS, with empty storage in DIR: SASL_SSL on PORT
# (user `aihub`: SCRAM-SHA-512 and SCRAM-SHA-256 credentials made at format time, and PLAIN) and
# SSL without SASL on PORT+3, both presenting the certificate above. Its PLAINTEXT listener on
# PORT+2 and the controller on PORT+1 are the broker's own (inter-broker, quorum). The SASL
# password is written to DIR/password.
start_secure_test_kafka() {
  local port=$1 dir=${2:-$AIHUB_HOME/secure-kafka}
  local cport=$((port + 1)) pport=$((port + 2)) sport=$((port + 3))
  ensure_certificates
  "$KAFKA" stop "$dir"
  for p in "$port" "$cport" "$pport" "$sport"; do
    if port_open "$p"; then
      echo "port $p is taken by another process; set SECURE_KAFKA_PORT to a free port" >&2
      exit 1
    fi
  done
  rm -rf "$dir" && mkdir -p "$dir"
  local password keystore
  password="$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
  keystore="$(cat "$TLS_DIR/keystore-password")"
  (umask 077; printf '%s' "$password" >"$dir/password")
  say "starting a test broker (Apache Kafka) with SASL_SSL on 127.0.0.1:$port and SSL on 127.0.0.1:$sport, storage in $dir"
  KAFKA_ADD_SCRAM="SCRAM-SHA-512=[name=aihub,password=$password] SCRAM-SHA-256=[name=aihub,password=$password]" \
    "$KAFKA" start "$dir" 1 "$pport" "$cport" "1@127.0.0.1:$cport" \
    "listeners=PLAINTEXT://127.0.0.1:$pport,CONTROLLER://127.0.0.1:$cport,SASL_SSL://127.0.0.1:$port,SSL://127.0.0.1:$sport" \
    "advertised.listeners=PLAINTEXT://127.0.0.1:$pport,SASL_SSL://127.0.0.1:$port,SSL://127.0.0.1:$sport" \
    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL" \
    "sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN" \
    "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;" \
    "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;" \
    "listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_aihub=\"$password\";" \
    "ssl.keystore.type=PKCS12" "ssl.keystore.location=$TLS_DIR/server.p12" \
    "ssl.keystore.password=$keystore" "ssl.key.password=$keystore" "ssl.client.auth=none"
  # Every listener opens together, but wait for the one the clients use too.
  for _ in $(seq 1 100); do port_open "$port" && return 0; sleep 0.1; done
  echo "the SASL_SSL listener on $port did not open; see $dir/kafka.log" >&2
  exit 1
}

# The environment that points AI Hub (and the tests) at the two servers above, as `export` lines:
# PostgreSQL over verified TLS, Kafka over SASL_SSL with SCRAM-SHA-512.
secure_env() {
  local port=$1 dir=${2:-$AIHUB_HOME/secure-kafka}
  cat <<ENV
export DATABASE_URL='$(tls_database_url)'
export AIHUB_DATABASE_CA_FILE='$TLS_DIR/ca.pem'
export KAFKA_BROKERS='127.0.0.1:$port'
export KAFKA_SECURITY_PROTOCOL=SASL_SSL
export KAFKA_SASL_MECHANISM=SCRAM-SHA-512
export KAFKA_SASL_USERNAME=aihub
export KAFKA_SASL_PASSWORD='$(cat "$dir/password")'
export KAFKA_SSL_CA_FILE='$TLS_DIR/ca.pem'
export AIHUB_TEST_KAFKA_SSL_BROKERS='127.0.0.1:$((port + 3))'
ENV
}
