#!/usr/bin/env bash
# AI Hub's gateway and TensorZero's, side by side on this machine, against the same canned
# upstream: nginx answering every chat completion with one fixed body. Prints one table.
#
#   closed loop (saturation): wrk, 2 threads, at 4 and at 32 connections, BENCH_SECONDS each,
#                             after BENCH_WARMUP seconds (40) of unmeasured load;
#   open loop (offered rate): vegeta at BENCH_RATE req/s (default 1000) for BENCH_SECONDS,
#                             the added p99 being the gateway's p99 minus the upstream's.
#
# AI Hub runs as `aihub serve` (every role in one process: authentication, rate limits, quota,
# the billing event appended to the journal, the relay to Kafka, the projectors), release build,
# on a broker and a database of the bench's own. TensorZero 2025.12.0 runs with observability
# off (its load-test configuration), built by tensorzero.sh. The load generators share the two
# cores with the gateways, the same way for both.
#
# Run: benches/side-by-side/run.sh   (BENCH_SECONDS=15 BENCH_RATE=1000; TENSORZERO_BIN to skip
# the build; BENCH_ONLY=aihub to measure our gateway alone while profiling; AIHUB_BIN to measure
# another build of ours than the tree's, e.g. before and after a change; BENCH_ROUNDS=N to measure
# every target N times, taking turns, and print the medians). The machine is set up
# the way docs/OPERATIONS.md advises for a host the gateway shares with its database and broker,
# for both gateways alike, and the header says so: the kernel's autogroup scheduling off for the
# run (BENCH_AUTOGROUP, default 0; 1 measures the host's default), the broker at nice 10 as
# up.sh starts it (BENCH_BROKER_NICE), the database at its own priority (BENCH_DATABASE_NICE, 0).
#
# Between phases the script waits until aihub's relay and projections have caught up (from its
# /metrics) and vacuums aihub's database (what autovacuum would otherwise do during the next
# phase), so every phase starts from the same quiet state, and prints how long that took: the
# bookkeeping a phase left behind it. It also prints aihub's chat answers by status (503
# `overloaded` means calls came faster than the journal took their events).
source "$(dirname "${BASH_SOURCE[0]}")/../../infra/local/lib.sh"

SECONDS_EACH="${BENCH_SECONDS:-15}"
WARMUP="${BENCH_WARMUP:-40}"
RATE="${BENCH_RATE:-1000}"
ONLY="${BENCH_ONLY:-}"
DIR="$AIHUB_HOME/bench-side-by-side"
mkdir -p "$DIR"
export AIHUB_HOME="$DIR"   # the bench's broker lives under here, not beside up.sh's

for tool in wrk nginx jq; do
  command -v "$tool" >/dev/null 2>&1 && continue
  say "installing $tool (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$([ "$tool" = nginx ] && echo nginx-light || echo "$tool")" >/dev/null
done
VEGETA="$HOME/.cache/aihub/go-bin/vegeta"
if [ ! -x "$VEGETA" ]; then
  say "building vegeta v12.13.0 (go install, once)"
  GOBIN="$(dirname "$VEGETA")" go install github.com/tsenart/vegeta/v12@v12.13.0
fi
ensure_build_deps
ensure_postgres
ensure_kafka

if [ "$ONLY" != "aihub" ]; then
  TENSORZERO_BIN="${TENSORZERO_BIN:-$("$ROOT/benches/side-by-side/tensorzero.sh")}"
fi
if [ -n "${AIHUB_BIN:-}" ]; then
  AIHUB="$AIHUB_BIN"   # another build of ours, to compare two side by side on one machine
else
  say "building aihub (release)"
  (cd "$ROOT" && cargo build --release -q -p aihub)
  AIHUB="${CARGO_TARGET_DIR:-$ROOT/target}/release/aihub"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP_PORT=$(free_port); HUB_PORT=$(free_port); TZ_PORT=$(free_port)
KPORT="${BENCH_KAFKA_PORT:-19500}"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$DIR/nginx/nginx.pid" ] && kill "$(cat "$DIR/nginx/nginx.pid")" 2>/dev/null || true
  "$KAFKA" stop "$DIR/test-kafka" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# The kernel's autogroup scheduling (on by default in Debian's kernels) shares the CPU fairly
# between sessions, not threads — and every Postgres backend calls setsid(), so each busy backend
# weighs as much as the whole gateway with all its threads, and nice values do not reach across
# sessions. The header prints the setting; BENCH_AUTOGROUP sets it for the run.
AUTOGROUP_FILE=/proc/sys/kernel/sched_autogroup_enabled
AUTOGROUP_WAS=$(cat "$AUTOGROUP_FILE" 2>/dev/null || echo "")
# Off by default, as docs/OPERATIONS.md advises for a host where the gateway shares the CPU with
# its database; set when it can be (root), left and said otherwise.
BENCH_AUTOGROUP="${BENCH_AUTOGROUP-0}"
[ -w "$AUTOGROUP_FILE" ] || BENCH_AUTOGROUP=""
AUTOGROUP_SET=""
if [ -n "$BENCH_AUTOGROUP" ] && [ -n "$AUTOGROUP_WAS" ]; then
  echo "$BENCH_AUTOGROUP" >"$AUTOGROUP_FILE" && AUTOGROUP_SET=1
fi
# BENCH_BROKER_NICE=N and BENCH_DATABASE_NICE=N run the broker and the database at nice N for
# the run (the database restored after). Neither is on a chat call's path (the call's event goes
# to the spool file; the appender batches it into the journal after the answer), so both are
# bookkeeping, like aihub's background runtime — but the journal's appends keep 503 `overloaded`
# away, and they run in the database. The broker is started from this script's session, like
# aihub, so its nice value counts either way; the database's only with autogroup off.
BROKER_NICE="${BENCH_BROKER_NICE:-${KAFKA_NICE:-10}}"   # as up.sh starts it
# BENCH_BROKER_IDLE=0 runs the broker under the normal policy; 1 (as up.sh) under SCHED_IDLE.
BROKER_IDLE="${BENCH_BROKER_IDLE:-${KAFKA_IDLE:-1}}"
DATABASE_NICE="${BENCH_DATABASE_NICE:-0}"
# The cluster at 5432 (ensure_postgres's): its postmaster, from its pid file, and its children.
postgres_pids() {
  local pm
  pm=$(head -n 1 "$(psql "postgres://postgres@127.0.0.1:5432/postgres" -Atc "SHOW data_directory")/postmaster.pid" 2>/dev/null) \
    || return 0
  echo "$pm" $(pgrep -P "$pm")
}
[ "$DATABASE_NICE" != 0 ] && renice -n "$DATABASE_NICE" -p $(postgres_pids) >/dev/null
# BENCH_BACKGROUND_DATABASE_NICE=N (experiment): the backends of aihub's background pool (the
# relay's and the projectors', `application_name` "aihub background") at nice N, set after the
# warm-up opened them.
BACKGROUND_DATABASE_NICE="${BENCH_BACKGROUND_DATABASE_NICE:-0}"
background_backends() {
  psql "$DATABASE_URL" -Atc "SELECT pid FROM pg_stat_activity WHERE application_name = 'aihub background'" 2>/dev/null
}
# The backends of the chat events' appender (`application_name` "aihub journal").
journal_backends() {
  psql "$DATABASE_URL" -Atc "SELECT pid FROM pg_stat_activity WHERE application_name = 'aihub journal'" 2>/dev/null
}
# Every backend serving aihub's database: both pools, the relay's and the listeners' connections.
database_backends() {
  psql "$DATABASE_URL" -Atc "SELECT pid FROM pg_stat_activity WHERE datname = current_database()
    AND backend_type = 'client backend' AND pid <> pg_backend_pid()" 2>/dev/null
}
# What the run changed on the machine, put back as it was.
restore() {
  cleanup
  [ -n "$AUTOGROUP_SET" ] && echo "$AUTOGROUP_WAS" >"$AUTOGROUP_FILE"
  [ "$DATABASE_NICE" != 0 ] && renice -n 0 -p $(postgres_pids) >/dev/null 2>&1
  true
}
trap restore EXIT

# --- the canned upstream --------------------------------------------------------------------
COMPLETION='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench/model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the bench upstream."},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":7,"total_tokens":16}}'
mkdir -p "$DIR/nginx/logs"
cat >"$DIR/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $DIR/nginx/nginx.pid;
error_log $DIR/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$UP_PORT;
    location ~ /chat/completions\$ {
      default_type application/json;
      return 200 '$COMPLETION';
    }
  }
}
CONF
say "starting nginx on 127.0.0.1:$UP_PORT"
nginx -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf"

# --- AI Hub ----------------------------------------------------------------------------------
(lower_priority "$BROKER_NICE" "$BROKER_IDLE"; start_test_kafka "$KPORT" >/dev/null)
export KAFKA_BROKERS="127.0.0.1:$KPORT"
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/aihub_bench_side_by_side"
psql "postgres://postgres@127.0.0.1:5432/postgres" -qc "DROP DATABASE IF EXISTS aihub_bench_side_by_side WITH (FORCE)"
export AIHUB_ADMIN_TOKEN="bench-admin-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cat >"$DIR/models.json" <<JSON
[{"name": "bench", "tier": "basic", "context_length": 8192, "input_micros_per_mtok": 1,
  "output_micros_per_mtok": 1, "deployments": [{"provider": "openrouter", "upstream_model": "bench/model"}]}]
JSON
"$AIHUB" bootstrap >"$DIR/bootstrap.log" 2>&1
say "starting aihub serve on 127.0.0.1:$HUB_PORT (log: $DIR/aihub.log)"
AIHUB_LISTEN="127.0.0.1:$HUB_PORT" OPENROUTER_API_KEY=bench OPENROUTER_BASE_URL="http://127.0.0.1:$UP_PORT/api/v1" \
  AIHUB_MODELS_FILE="$DIR/models.json" \
  "$AIHUB" serve >"$DIR/aihub.log" 2>&1 &
HUB_PID=$!; PIDS+=($!)
for _ in $(seq 1 300); do curl -fsS "http://127.0.0.1:$HUB_PORT/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
API="http://127.0.0.1:$HUB_PORT/api/v1"
admin() { curl -fsS -H "Authorization: Bearer $AIHUB_ADMIN_TOKEN" -H 'Content-Type: application/json' "$@"; }
ORG=$(admin -X POST "$API/organizations" -d '{"name": "Bench", "slug": "bench", "owner_email": "bench@bench.example"}' | jq -r .id)
admin -X PUT "$API/subscriptions/$ORG/upgrade" -d '{"plan": "enterprise"}' >/dev/null
# Limits far above the offered load: the limiter stays on the measured path, and admits.
admin -X PUT "$API/organizations/$ORG/limits" \
  -d '{"requests_per_minute": 1000000000, "tokens_per_minute": 1000000000000, "concurrent_streams": 1000000}' >/dev/null
KEY=$(admin -X POST "$API/api-keys" -d "{\"org_id\": \"$ORG\", \"name\": \"bench\", \"permissions\": [\"chat:write\"]}" | jq -r .key)
HUB_BODY='{"model": "bench", "messages": [{"role": "user", "content": "Hello benchmark"}]}'
curl -fsS "$API/chat/completions" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d "$HUB_BODY" | jq -e '.choices[0].message.content' >/dev/null

# --- TensorZero ------------------------------------------------------------------------------
TZ_BODY='{"model": "tensorzero::model_name::bench", "messages": [{"role": "user", "content": "Hello benchmark"}]}'
if [ "$ONLY" != "aihub" ]; then
  cat >"$DIR/tensorzero.toml" <<TOML
[gateway]
observability.enabled = false
bind_address = "127.0.0.1:$TZ_PORT"

[models.bench]
routing = ["upstream"]

[models.bench.providers.upstream]
type = "openai"
model_name = "bench/model"
api_base = "http://127.0.0.1:$UP_PORT/v1/"
api_key_location = "none"
TOML
  say "starting TensorZero's gateway on 127.0.0.1:$TZ_PORT (log: $DIR/tensorzero.log)"
  "$TENSORZERO_BIN" --config-file "$DIR/tensorzero.toml" >"$DIR/tensorzero.log" 2>&1 &
  TZ_PID=$!; PIDS+=($!)
  for _ in $(seq 1 150); do curl -fsS "http://127.0.0.1:$TZ_PORT/health" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fsS "http://127.0.0.1:$TZ_PORT/openai/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "$TZ_BODY" | jq -e '.choices[0].message.content' >/dev/null
fi

# --- measuring -------------------------------------------------------------------------------
# name url token body
TARGETS=("upstream|http://127.0.0.1:$UP_PORT/v1/chat/completions|none|$HUB_BODY"
         "aihub|$API/chat/completions|$KEY|$HUB_BODY")
[ "$ONLY" != "aihub" ] && TARGETS+=("tensorzero|http://127.0.0.1:$TZ_PORT/openai/v1/chat/completions|none|$TZ_BODY")

# wrk's latency figure in ms.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.2f", v}'; }

closed() {  # name url token body connections [seconds] -> "req/s p50 p99 errors"
  local name=$1 url=$2 token=$3 body=$4 conns=$5 seconds=${6:-$SECONDS_EACH} lua="$DIR/$1.lua" out
  cat >"$lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA
  out=$(wrk -t2 -c"$conns" -d"${seconds}s" --latency -s "$lua" "$url")
  echo "$out" >"$DIR/wrk-$name-c$conns.txt"
  local rps p50 p99 errs
  rps=$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}' | to_ms)
  p99=$(echo "$out" | awk '$1=="99%" {print $2}' | to_ms)
  errs=$(echo "$out" | awk '/Non-2xx/ {print $NF} /Socket errors/ {print "socket"}' | tr '\n' ' ')
  echo "$rps $p50 $p99 ${errs:-0}"
}

open_loop() {  # name url token body -> "p50 p99 success"
  local name=$1 url=$2 token=$3 body=$4
  printf '%s' "$body" >"$DIR/$name.json"
  echo "POST $url" | "$VEGETA" attack -rate="$RATE" -duration="${SECONDS_EACH}s" -body="$DIR/$name.json" \
    -header "Content-Type: application/json" -header "Authorization: Bearer $token" -timeout=10s \
    | "$VEGETA" report -type=json >"$DIR/vegeta-$name.json"
  jq -r '"\(.latencies["50th"]/1e6|.*100|round/100) \(.latencies["99th"]/1e6|.*100|round/100) \(.success)"' "$DIR/vegeta-$name.json"
}

# aihub's /metrics (the platform admin's token); empty when it cannot be read.
hub_metrics() { admin "http://127.0.0.1:$HUB_PORT/metrics" 2>/dev/null; }
# The bookkeeping behind (chat events the journal does not have yet, relay, projections, in
# events), from aihub's /metrics; empty when it cannot be read.
behind() {
  hub_metrics \
    | awk '/^aihub_(relay_lag|projection_lag|spool_pending)_events/ {s += $NF; n++} END {if (n) printf "%d", s}'
}
# aihub's chat answers so far by status, from its /metrics ("200=… 503=…").
statuses() {
  hub_metrics \
    | awk -F'[{}]' '/^aihub_http_request_duration_seconds_count/ && /chat\/completions/ {
        match($2, /status="[0-9]+"/); st = substr($2, RSTART + 8, 3); n[st] += $3 }
        END {for (k in n) printf "%s=%d ", k, n[k]}'
}
# aihub's own view of its chat calls so far, from its request-duration histogram: "count le1ms
# le2.5ms le10ms" (how many took at most 1, 2.5 and 10 ms inside the server, from routing to the
# last byte handed to hyper); -1 for a bucket the build does not have (before session 20 the
# smallest was 5 ms).
served() {
  hub_metrics \
    | awk 'BEGIN {a = b = c = -1}
        /^aihub_http_request_duration_seconds_bucket/ && /chat\/completions/ {
        if ($0 ~ /le="\+Inf"/) n += $NF
        if ($0 ~ /le="0.001"/) a += $NF + (a < 0)
        if ($0 ~ /le="0.0025"/) b += $NF + (b < 0)
        if ($0 ~ /le="0.01"/) c += $NF + (c < 0) }
        END {printf "%d %d %d %d", n, a, b, c}'
}
# The share of a phase's calls (between two `served` readings) slower than 1, 2.5 and 10 ms
# inside the server, against the share wrk saw beyond its p99: tells a tail made in aihub's
# handlers from one made before or after them (accept, scheduling, the client's own threads).
server_tail() {
  read -r n0 a0 b0 c0 <<<"$1"; read -r n1 a1 b1 c1 <<<"$2"
  awk -v n=$((n1 - n0)) -v a0="$a0" -v a1="$a1" -v b0="$b0" -v b1="$b1" -v c0="$c0" -v c1="$c1" '
    function over(x0, x1, label) { return (x0 < 0 || x1 < 0) ? "" : sprintf("%s%.2f%% over %s", sep++ ? ", " : "", 100 * (n - (x1 - x0)) / n, label) }
    BEGIN {if (n > 0) printf "%s%s%s", over(a0, a1, "1 ms"), over(b0, b1, "2.5 ms"), over(c0, c1, "10 ms")}'
}
# CPU time in clock ticks (user + system, with reaped children's) of the given processes.
ticks_of() {
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13 + $14 + $15}')))
  done
  echo "$t"
}
# BENCH_STATEMENTS=1 (experiment; the cluster must preload pg_stat_statements): what each aihub
# phase's statements cost the database, its bookkeeping after the phase included, into
# $DIR/statements-aihub-<phase>.txt — the costliest first, with their time per chat call.
statements_reset() {
  [ "${BENCH_STATEMENTS:-0}" = 1 ] && [ "$1" = aihub ] || return 0
  psql "$DATABASE_URL" -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null
}
statements_dump() {
  [ "${BENCH_STATEMENTS:-0}" = 1 ] && [ "$1" = aihub ] || return 0
  psql "$DATABASE_URL" -qc "SELECT calls, round(total_exec_time::numeric, 0) AS ms,
      round((total_exec_time * 1000 / $3)::numeric, 1) AS us_per_chat_call, rows,
      left(regexp_replace(query, '\s+', ' ', 'g'), 160) AS query
    FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    ORDER BY total_exec_time DESC LIMIT 25" >"$DIR/statements-$1-$2.txt" 2>&1
}
# "gateway database broker": the CPU ticks each has used so far (the gateway: its pids). The database is every process
# of the cluster (its exited backends counted in the postmaster's reaped time).
cpu_now() { echo "$(ticks_of $1) $(ticks_of $(postgres_pids)) $(ticks_of "$(cat "$DIR/test-kafka/pid" 2>/dev/null)")"; }
# CPU per call, in µs, of gateway, database and broker between two `cpu_now` readings over
# CALLS calls: what each call cost the machine in all, the bookkeeping after the phase included.
per_call() {
  read -r g0 d0 k0 <<<"$1"; read -r g1 d1 k1 <<<"$2"
  awk -v g=$((g1 - g0)) -v d=$((d1 - d0)) -v k=$((k1 - k0)) -v n="$3" -v hz="$(getconf CLK_TCK)" \
    'BEGIN {if (n > 0) printf "%.0f / %.0f / %.0f", g * 1e6 / hz / n, d * 1e6 / hz / n, k * 1e6 / hz / n}'
}
# Calls a phase made, from its raw output.
wrk_calls() { awk '/requests in/ {print $1}' "$DIR/wrk-$1-c$2.txt"; }
vegeta_calls() { jq -r .requests "$DIR/vegeta-$1.json"; }

# Waits (up to 5 minutes) until aihub's relay and projections have caught up with every call so
# far, and then vacuums aihub's database, so that each phase starts from the same quiet
# state, whichever gateway it measures; says how long each took (the bookkeeping a burst left
# behind it).
settle() {
  local start=$SECONDS left
  for _ in $(seq 1 600); do
    left=$(behind)
    [ "$left" = 0 ] && break
    sleep 0.5
  done
  SETTLED="$((SECONDS - start)) s"
  [ "$left" = 0 ] || SETTLED="not caught up after $((SECONDS - start)) s: ${left:-?} events behind"
  # Then the vacuum of what the phase wrote (the journal, the audit log, the usage rows), done
  # here rather than left to autovacuum: a closed phase writes in 15 s what 1,000 calls/s write
  # in minutes, and autovacuum (which looks once a minute) would vacuum it during the next
  # phase, to be measured there as that phase's cost.
  start=$SECONDS
  psql "$DATABASE_URL" -qc "VACUUM (ANALYZE)" >/dev/null 2>&1 || true
  SETTLED="$SETTLED + vacuum $((SECONDS - start)) s"
  # BENCH_SETTLE_FLUSH=1 (experiment): then a checkpoint and the kernel's writeback of every dirty
  # page, so that the next phase does not carry the disk writes of this one's catching up.
  if [ "${BENCH_SETTLE_FLUSH:-0}" = 1 ]; then
    start=$SECONDS
    psql "$DATABASE_URL" -qc "CHECKPOINT" >/dev/null 2>&1 || true
    sync
    SETTLED="$SETTLED + flush $((SECONDS - start)) s"
  fi
}

# BENCH_STALL_JOURNAL=1 (experiment): aihub's journal stalled through each measured phase (its
# chain heads locked), so the calls' events wait in the spool and no bookkeeping runs until the
# phase ends: the gateway's request path alone, spool included.
stall_journal() {  # name
  [ "${BENCH_STALL_JOURNAL:-0}" = 1 ] && [ "$1" = aihub ] || return 0
  psql "$DATABASE_URL" -qc "BEGIN; LOCK TABLE audit_chain_heads IN EXCLUSIVE MODE; SELECT pg_sleep($SECONDS_EACH + 1); COMMIT;" \
    >/dev/null 2>&1 &
  sleep 0.5
}

# BENCH_PERF=c4 (or c32) samples the whole machine with `perf record` through the middle of that
# closed-loop phase of each gateway, into $DIR/perf-<name>-c<N>.data: read it with
# `perf report -i FILE --sort comm,dso` (which process and thread) and `--comm NAME --sort sym`;
# BENCH_PERF_ARGS adds options (`-F 499 --call-graph dwarf` for call chains).
profile() {  # name connections
  [ "${BENCH_PERF:-}" = "c$2" ] && [ "$1" != upstream ] || return 0
  # Which backend is whose (`perf report --sort pid`): aihub's pools name their connections.
  psql "$DATABASE_URL" -Atc "SELECT pid, application_name, backend_type FROM pg_stat_activity" \
    >"$DIR/perf-$1-c$2.backends" 2>/dev/null || true
  (sleep 2; perf record -a -q ${BENCH_PERF_ARGS:-} -o "$DIR/perf-$1-c$2.data" -- sleep $((SECONDS_EACH > 6 ? SECONDS_EACH - 4 : 2)) \
     >/dev/null 2>&1) &
}

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); load before: $(cut -d' ' -f1-3 /proc/loadavg); sched_autogroup_enabled=$(cat "$AUTOGROUP_FILE" 2>/dev/null || echo n/a); nice: broker $BROKER_NICE (idle $BROKER_IDLE), database $DATABASE_NICE"
echo "aihub ${AIHUB_BIN:-$(git -C "$ROOT" rev-parse --short HEAD)}; TensorZero 2025.12.0 (observability off); upstream nginx $(nginx -v 2>&1 | cut -d/ -f2)"
# The ids of aihub's threads whose name matches the glob PATTERN.
hub_threads() {  # pattern
  local t
  for t in /proc/"$HUB_PID"/task/*; do
    case "$(cat "$t/comm" 2>/dev/null)" in $1) echo "${t##*/}" ;; esac
  done
}

echo
printf '%-11s | %-28s | %-28s | %-30s\n' gateway "c=4 req/s · p50 / p99 ms" "c=32 req/s · p50 / p99 ms" "open ${RATE}/s p50 / p99 ms (added p99)"
printf -- '------------|------------------------------|------------------------------|-------------------------------\n'
UP_P99=""
for t in "${TARGETS[@]}"; do
  IFS='|' read -r name url token body <<<"$t"
  # Warm-up, not measured: the broker's JVM compiles its hot paths in its first minute of load
  # (`perf sched` showed its C2 compiler thread taking a third of a core during the first phase;
  # after one 15 s warm-up at c=4 it still took 4-7 % of the machine through the measured c=4
  # phase, `perf record`, session 15), and every gateway's pools and caches fill. BENCH_WARMUP
  # seconds (default 40) at 4 connections, then at 32.
  closed "$name" "$url" "$token" "$body" 4 $((WARMUP / 2)) >/dev/null
  closed "$name" "$url" "$token" "$body" 32 $((WARMUP - WARMUP / 2)) >/dev/null
  settle; sleep 2
  if [ "$name" = aihub ] && [ "$BACKGROUND_DATABASE_NICE" != 0 ]; then
    pids=$(background_backends)
    [ -n "$pids" ] && renice -n "$BACKGROUND_DATABASE_NICE" -p $pids >/dev/null
    say "background backends at nice $BACKGROUND_DATABASE_NICE: $(echo $pids)"
  fi
  # BENCH_IDLE=backends,threads,broker (experiment): SCHED_IDLE, set after the warm-up, for the
  # database backends of aihub's background pool, for aihub's background and librdkafka threads
  # (what AIHUB_BACKGROUND_IDLE does from the start), for the broker's threads (BROKER_IDLE);
  # `journal` for the backends of the chat events' appender (what docs/OPERATIONS.md advises for
  # a host the gateway shares with its database); `database` for every backend of aihub's
  # database (the ceiling of a design where no database work runs before a request).
  if [ "$name" = aihub ] && [ -n "${BENCH_IDLE:-}" ]; then
    idle=""
    case ",$BENCH_IDLE," in *,backends,*) idle="$idle $(background_backends)" ;; esac
    case ",$BENCH_IDLE," in *,journal,*) idle="$idle $(journal_backends)" ;; esac
    case ",$BENCH_IDLE," in *,database,*) idle="$idle $(database_backends)" ;; esac
    case ",$BENCH_IDLE," in *,threads,*) idle="$idle $(hub_threads 'aihub-backgroun*') $(hub_threads 'rdk:*')" ;; esac
    case ",$BENCH_IDLE," in *,broker,*) idle="$idle $(ls /proc/"$(cat "$DIR/test-kafka/pid")"/task)" ;; esac
    n=0; for p in $idle; do chrt -i -p 0 "$p" 2>/dev/null && n=$((n + 1)); done
    say "SCHED_IDLE ($BENCH_IDLE): $n threads"
  fi
  # BENCH_SLICE_US=N (experiment): aihub's request threads (`tokio-rt-worker`) ask the kernel
  # for an N µs time slice (slice.py; Linux 6.12 or later), set after the warm-up.
  if [ "$name" = aihub ] && [ -n "${BENCH_SLICE_US:-}" ]; then
    set_slices=$(python3 "$ROOT/benches/side-by-side/slice.py" "$BENCH_SLICE_US" $(hub_threads tokio-rt-worker)) || say "the kernel refused some slices"
    say "time slice ${BENCH_SLICE_US} µs: $(grep -c -- '->' <<<"$set_slices") request threads"
  fi
done

# One measured closed-loop phase of a target (GW: its pids) at CONNS connections, and the settling
# after it: sets R A B E (req/s, p50, p99, errors), T (aihub's own tail), S (how long the
# bookkeeping took to catch up) and U (CPU per call).
closed_phase() {  # name url token body conns
  local name=$1 conns=$5 v0="" c0
  [ "$name" = aihub ] && v0=$(served)
  c0=$(cpu_now "$GW")
  profile "$name" "$conns"
  statements_reset "$name"
  stall_journal "$name"
  read -r R A B E <<<"$(closed "$@")"
  T=""; [ "$name" = aihub ] && T=$(server_tail "$v0" "$(served)")
  settle; S=$SETTLED; U=$(per_call "$c0" "$(cpu_now "$GW")" "$(wrk_calls "$name" "$conns")")
  statements_dump "$name" "c$conns" "$(wrk_calls "$name" "$conns")"; sleep 2
}

# BENCH_ROUNDS=N measures every target N times, the targets taking turns phase set by phase set
# (the gateways in the opposite order every other round), and then prints each one's median: on a
# shared host the noise drifts over minutes, and one set of phases per gateway, minutes apart,
# compared the gateways as much as the host's moments. The open loop's added p99 is taken within
# each round (the gateway's p99 minus the upstream's of the same round), then its median.
ROUNDS="${BENCH_ROUNDS:-1}"
: >"$DIR/rounds.txt"
for round in $(seq 1 "$ROUNDS"); do
  order=("${TARGETS[@]}")
  if [ $((round % 2)) = 0 ] && [ "${#TARGETS[@]}" = 3 ]; then order=("${TARGETS[0]}" "${TARGETS[2]}" "${TARGETS[1]}"); fi
  [ "$ROUNDS" -gt 1 ] && echo "round $round of $ROUNDS"
  for t in "${order[@]}"; do
    IFS='|' read -r name url token body <<<"$t"
    case $name in aihub) GW=$HUB_PID ;; tensorzero) GW=${TZ_PID:-} ;; *) GW="$(cat "$DIR/nginx/nginx.pid") $(pgrep -P "$(cat "$DIR/nginx/nginx.pid")")" ;; esac
    closed_phase "$name" "$url" "$token" "$body" 4
    r4=$R a4=$A b4=$B e4=$E T4=$T S4=$S U4=$U
    closed_phase "$name" "$url" "$token" "$body" 32
    r32=$R a32=$A b32=$B e32=$E T32=$T S32=$S U32=$U
    C0=$(cpu_now "$GW")
    stall_journal "$name"
    read -r o50 o99 ok <<<"$(open_loop "$name" "$url" "$token" "$body")"
    settle; SO=$SETTLED; UO=$(per_call "$C0" "$(cpu_now "$GW")" "$(vegeta_calls "$name")")
    [ "$name" = upstream ] && UP_P99=$o99
    added=$(awk -v a="$o99" -v b="$UP_P99" 'BEGIN {printf "%+.2f", a-b}')
    printf '%-11s | %6s · %6s / %7s     | %6s · %6s / %7s     | %6s / %7s (%s) ok=%s\n' \
      "$name" "$r4" "$a4" "$b4" "$r32" "$a32" "$b32" "$o50" "$o99" "$added" "$ok"
    [ "$e4 $e32" != "0 0" ] && echo "            errors: c=4 [$e4] c=32 [$e32]"
    echo "            CPU per call, µs, gateway / database / broker: c=4 $U4; c=32 $U32; open $UO"
    if [ "$name" = aihub ]; then
      echo "            bookkeeping caught up after: c=4 $S4, c=32 $S32, open $SO"
      echo "            chat answers by status, all phases: $(statuses)"
      echo "            inside the server: c=4 $T4; c=32 $T32"
    fi
    echo "$name $r4 $b4 $r32 $b32 $o99 $added" >>"$DIR/rounds.txt"
    if [ "$ROUNDS" -gt 1 ]; then
      for f in "$DIR/wrk-$name-c4.txt" "$DIR/wrk-$name-c32.txt" "$DIR/vegeta-$name.json"; do
        [ -f "$f" ] && cp "$f" "${f%.*}-r$round.${f##*.}"
      done
    fi
  done
done
if [ "$ROUNDS" -gt 1 ]; then
  echo
  echo "median of $ROUNDS rounds (each figure's median on its own; lowest–highest in brackets):"
  printf '%-11s | %-38s | %-38s | %s\n' gateway "c=4 req/s · p99 ms" "c=32 req/s · p99 ms" "open added p99 ms"
  printf -- '------------|----------------------------------------|----------------------------------------|------------------\n'
  for t in "${TARGETS[@]}"; do
    name=${t%%|*}
    # median and range of column $1 of this gateway's rows
    median_of() { awk -v n="$name" -v c="$1" '$1 == n {print $c}' "$DIR/rounds.txt" | sort -g \
      | awk '{v[NR] = $1} END {
          if (!NR) exit
          # an even count: the mean of the middle two, written as the figures are
          m = NR % 2 ? v[(NR + 1) / 2] : sprintf(v[1] ~ /\./ ? (v[1] ~ /^[+-]/ ? "%+.2f" : "%.2f") : "%.0f", (v[NR / 2] + v[NR / 2 + 1]) / 2)
          printf "%s [%s–%s]", m, v[1], v[NR]}'; }
    printf '%-11s | %-38s | %-38s | %s\n' "$name" "$(median_of 2) · $(median_of 3)" "$(median_of 4) · $(median_of 5)" "$(median_of 7)"
  done
  # Round by round, aihub against TensorZero: in how many rounds each of aihub's figures was at
  # least as good (throughput not lower, p99 not higher).
  awk '$1 == "aihub" {a[++na] = $0} $1 == "tensorzero" {t[++nt] = $0}
    END {
      if (!nt) exit
      split("c=4 req/s,c=4 p99,c=32 req/s,c=32 p99,,open added p99", label, ",")
      for (i = 1; i <= na && i <= nt; i++) {
        split(a[i], x, " "); split(t[i], y, " ")
        for (c = 2; c <= 7; c++) if ((c == 2 || c == 4) ? x[c] + 0 >= y[c] + 0 : x[c] + 0 <= y[c] + 0) won[c]++
      }
      printf "aihub at least as good as TensorZero, rounds of %d:", (na < nt ? na : nt)
      for (c = 2; c <= 7; c++) if (c != 6) printf " %s %d%s", label[c - 1], won[c], (c < 7 ? "," : "\n")
    }' "$DIR/rounds.txt"
fi
echo
echo "raw outputs: $DIR/wrk-*.txt, $DIR/vegeta-*.json"
