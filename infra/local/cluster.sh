#!/usr/bin/env bash
# Three Apache Kafka brokers (KRaft, each also a controller) on this machine, for the fault
# tests: internal topics with 3 replicas and min.insync.replicas=2, so one broker may die.
#
#   cluster.sh start [DIR] [BASE]   start nodes 1-3 (node N listens on BASE+2(N-1), its
#                                   controller on the next port); prints the bootstrap list
#   cluster.sh node DIR BASE N      start node N again (after a stop or a kill)
#   cluster.sh stop [DIR]           stop every node
#
# DIR defaults to .aihub/cluster, BASE to 29092. Create our topic on it with
# AIHUB_TOPIC_REPLICATION=3.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA="$HERE/kafka.sh"
DEFAULT_DIR="${AIHUB_HOME:-$HERE/../../.aihub}/cluster"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

voters() {
  local base=$1
  echo "1@127.0.0.1:$((base + 1)),2@127.0.0.1:$((base + 3)),3@127.0.0.1:$((base + 5))"
}

# Launches node N in the background; the caller waits for its port.
launch() {
  local dir=$1 base=$2 n=$3
  local node="$dir/node-$n" port=$((base + 2 * (n - 1)))
  if [ -f "$node/pid" ] && kill -0 "$(cat "$node/pid")" 2>/dev/null; then return; fi
  mkdir -p "$node"
  KAFKA_CLUSTER_ID="$(cat "$dir/cluster-id")" nohup "$KAFKA" run "$node" "$n" "$port" "$((port + 1))" "$(voters "$base")" \
    default.replication.factor=3 min.insync.replicas=2 \
    offsets.topic.replication.factor=3 \
    transaction.state.log.replication.factor=3 transaction.state.log.min.isr=2 \
    share.coordinator.state.topic.replication.factor=3 share.coordinator.state.topic.min.isr=2 \
    >>"$node/kafka.log" 2>&1 &
  echo $! >"$node/pid"
}

wait_for() {
  local dir=$1 base=$2 n=$3 port=$(($2 + 2 * ($3 - 1)))
  for _ in $(seq 1 1200); do
    port_open "$port" && return 0
    kill -0 "$(cat "$dir/node-$n/pid")" 2>/dev/null || { echo "node $n exited; see $dir/node-$n/kafka.log" >&2; tail -n 20 "$dir/node-$n/kafka.log" >&2; return 1; }
    sleep 0.1
  done
  echo "node $n did not open port $port within 120 s" >&2
  return 1
}

cmd=${1:-}
case "$cmd" in
  start)
    dir="${2:-$DEFAULT_DIR}" base="${3:-29092}"
    mkdir -p "$dir"
    "$KAFKA" classpath >/dev/null
    [ -s "$dir/cluster-id" ] || head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$dir/cluster-id"
    # A broker serves only once the controllers have a quorum: launch all three, then wait.
    for n in 1 2 3; do launch "$dir" "$base" "$n"; done
    for n in 1 2 3; do wait_for "$dir" "$base" "$n"; done
    echo "127.0.0.1:$base,127.0.0.1:$((base + 2)),127.0.0.1:$((base + 4))"
    ;;
  node)
    dir=${2:?usage: cluster.sh node DIR BASE N} base=${3:?} n=${4:?}
    launch "$dir" "$base" "$n"
    wait_for "$dir" "$base" "$n"
    ;;
  stop)
    dir="${2:-$DEFAULT_DIR}"
    for n in 1 2 3; do [ -d "$dir/node-$n" ] && "$KAFKA" stop "$dir/node-$n"; done
    ;;
  *)
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
