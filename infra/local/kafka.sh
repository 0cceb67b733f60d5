#!/usr/bin/env bash
# Apache Kafka (KRaft) on this machine, from Maven Central: no tarball, no Docker.
#
#   kafka.sh classpath                      fetch the broker once (Maven) and print the classpath file
#   kafka.sh run DIR NODE PORT CPORT VOTERS [key=value ...]
#                                           format DIR if new, then run the broker in the foreground
#   kafka.sh start DIR NODE PORT CPORT VOTERS [key=value ...]
#                                           the same in the background (pid in DIR/pid), until PORT opens
#   kafka.sh stop DIR                       stop the broker started in DIR
#   kafka.sh tool CLASS [args ...]          run one of Kafka's tools, e.g.
#                                           org.apache.kafka.tools.consumer.ConsoleConsumer
#
# VOTERS is the KRaft controller quorum, `1@127.0.0.1:9093` for one node. Every node of a cluster
# must be given the same KAFKA_CLUSTER_ID. KAFKA_HEAP sets the JVM heap. KAFKA_ADD_SCRAM adds
# SCRAM users when the storage is formatted.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INFRA="$(cd "$HERE/../kafka" && pwd)"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$INFRA/pom.xml")"
CACHE="${AIHUB_CACHE:-$HOME/.cache/aihub}/kafka-$KAFKA_VERSION"
KAFKA_HEAP="${KAFKA_HEAP:--Xms128m -Xmx768m}"

log() { printf '==> %s\n' "$*" >&2; }

ensure_java() {
  if command -v javac >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then return; fi
  # The JDK, not only the runtime: the topic-contract test runs a Java source file directly.
  log "installing Java 17 and Maven (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
}

# The classpath of the broker and its tools, resolved by Maven once per Kafka version and pom.
classpath_file() {
  local stamp
  stamp="$(sha256sum "$INFRA/pom.xml" | cut -c1-16)"
  local file="$CACHE/classpath-$stamp"
  if [ ! -s "$file" ]; then
    ensure_java
    mkdir -p "$CACHE"
    log "fetching Apache Kafka $KAFKA_VERSION from Maven Central (once; cached in $CACHE and ~/.m2)"
    mvn -q -B -f "$INFRA/pom.xml" dependency:build-classpath -Dmdep.outputFile="$file.tmp" >&2
    mv "$file.tmp" "$file"
  fi
  echo "$file"
}

java_opts() {
  # shellcheck disable=SC2206
  local heap=($KAFKA_HEAP)
  printf '%s\n' "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$INFRA/log4j2.properties" -cp "$(cat "$(classpath_file)")"
}

# 16 random bytes in URL-safe base64. One id in 64 starts with `-`, which the format tool would
# take for an option if it were a separate argument: it is passed as `--cluster-id=ID`.
random_cluster_id() { head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }

# Writes DIR/server.properties: our shared settings, then this node's.
configure() {
  local dir=$1 node=$2 port=$3 cport=$4 voters=$5
  shift 5
  mkdir -p "$dir/data"
  {
    cat "$INFRA/server.properties"
    echo
    echo "# This node"
    echo "node.id=$node"
    echo "listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
    echo "advertised.listeners=PLAINTEXT://127.0.0.1:$port"
    echo "controller.quorum.voters=$voters"
    echo "log.dirs=$dir/data"
    for extra in "$@"; do echo "$extra"; done
  } >"$dir/server.properties"
}

format_once() {
  local dir=$1
  [ -f "$dir/data/meta.properties" ] && return
  local id="${KAFKA_CLUSTER_ID:-$(random_cluster_id)}"
  local opts scram=()
  mapfile -t opts < <(java_opts)
  # SCRAM users exist from the start (KRaft keeps them in the metadata log), e.g.
  # KAFKA_ADD_SCRAM='SCRAM-SHA-512=[name=aihub,password=secret]', several separated by spaces.
  for credential in ${KAFKA_ADD_SCRAM:-}; do scram+=("--add-scram=$credential"); done
  java "${opts[@]}" kafka.tools.StorageTool format --ignore-formatted \
    --cluster-id="$id" "${scram[@]}" -c "$dir/server.properties" >>"$dir/format.log" 2>&1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cmd=${1:-}
shift || true
case "$cmd" in
  classpath)
    classpath_file
    ;;
  run)
    [ $# -ge 5 ] || { echo "usage: kafka.sh run DIR NODE PORT CPORT VOTERS [key=value ...]" >&2; exit 2; }
    configure "$@"
    format_once "$1"
    mapfile -t opts < <(java_opts)
    exec java "${opts[@]}" kafka.Kafka "$1/server.properties"
    ;;
  start)
    [ $# -ge 5 ] || { echo "usage: kafka.sh start DIR NODE PORT CPORT VOTERS [key=value ...]" >&2; exit 2; }
    dir=$1 port=$3
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      log "Kafka is running in $dir (pid $(cat "$dir/pid"))"; exit 0
    fi
    classpath_file >/dev/null
    mkdir -p "$dir"
    nohup "$HERE/kafka.sh" run "$@" >>"$dir/kafka.log" 2>&1 &
    echo $! >"$dir/pid"
    for _ in $(seq 1 600); do
      port_open "$port" && exit 0
      kill -0 "$(cat "$dir/pid")" 2>/dev/null || { echo "Kafka exited; see $dir/kafka.log" >&2; tail -n 20 "$dir/kafka.log" >&2; exit 1; }
      sleep 0.1
    done
    echo "Kafka did not open port $port within 60 s; see $dir/kafka.log" >&2
    exit 1
    ;;
  stop)
    dir=${1:?usage: kafka.sh stop DIR}
    [ -f "$dir/pid" ] || exit 0
    pid="$(cat "$dir/pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/pid"
    ;;
  tool)
    class=${1:?usage: kafka.sh tool CLASS [args ...]}
    shift
    mapfile -t opts < <(java_opts)
    exec java "${opts[@]}" "$class" "$@"
    ;;
  *)
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
