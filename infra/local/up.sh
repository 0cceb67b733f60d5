#!/usr/bin/env bash
# Runs the whole platform on this machine: PostgreSQL, Apache Kafka (KRaft), the
# database, the topic, and `aihub serve` on 127.0.0.1:8001. Safe to run again.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if ! command -v curl >/dev/null 2>&1; then
  say "installing curl (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
fi
ensure_build_deps
ensure_postgres
ensure_kafka
ensure_npm
start_kafka

# AIHUB_BIN runs a binary built already (the tests point it at their debug build, to spare a
# release build); by default up.sh builds the release binary.
if [ -n "${AIHUB_BIN:-}" ]; then
  AIHUB="$AIHUB_BIN"
  [ -x "$AIHUB" ] || { echo "AIHUB_BIN=$AIHUB is not an executable" >&2; exit 1; }
  say "running $AIHUB (AIHUB_BIN)"
else
  say "building aihub (release)"
  (cd "$ROOT" && cargo build --release -q -p aihub)
  AIHUB="$ROOT/target/release/aihub"
fi

if [ -z "${AIHUB_ADMIN_TOKEN:-}" ]; then
  if [ ! -s "$AIHUB_HOME/admin-token" ]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$AIHUB_HOME/admin-token")
  fi
  AIHUB_ADMIN_TOKEN="$(cat "$AIHUB_HOME/admin-token")"
fi
export AIHUB_ADMIN_TOKEN
# GDPR crypto-shredding's secret: made once and kept beside the admin token.
if [ -z "${AIHUB_PERSONAL_DATA_SECRET:-}" ]; then
  if [ ! -s "$AIHUB_HOME/personal-data-secret" ]; then
    (umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$AIHUB_HOME/personal-data-secret")
  fi
  AIHUB_PERSONAL_DATA_SECRET="$(cat "$AIHUB_HOME/personal-data-secret")"
fi
export AIHUB_PERSONAL_DATA_SECRET

say "creating the database, migrating, creating the topic"
"$AIHUB" bootstrap

LISTEN="${AIHUB_LISTEN:-127.0.0.1:8001}"
export AIHUB_LISTEN="$LISTEN"
if alive "$AIHUB_HOME/aihub.pid"; then
  say "aihub is running (pid $(cat "$AIHUB_HOME/aihub.pid"))"
else
  say "starting aihub serve on $LISTEN (logs in $LOGS/aihub.log)"
  nohup "$AIHUB" serve >>"$LOGS/aihub.log" 2>&1 &
  echo $! >"$AIHUB_HOME/aihub.pid"
fi
for _ in $(seq 1 150); do
  curl -fsS "http://$LISTEN/healthz" >/dev/null 2>&1 && break
  alive "$AIHUB_HOME/aihub.pid" || { echo "aihub exited; see $LOGS/aihub.log" >&2; tail -n 20 "$LOGS/aihub.log" >&2; exit 1; }
  sleep 0.2
done
curl -fsS "http://$LISTEN/healthz" >/dev/null

cat <<MSG

AI Hub is up.
  API:       http://$LISTEN/api/v1
  Docs:      http://$LISTEN/docs
  Readiness: http://$LISTEN/readyz
  Admin:     Authorization: Bearer $AIHUB_ADMIN_TOKEN
             (kept in $AIHUB_HOME/admin-token unless AIHUB_ADMIN_TOKEN was set)
  Try:       curl -H "Authorization: Bearer $AIHUB_ADMIN_TOKEN" http://$LISTEN/api/v1/organizations
  Stop:      infra/local/down.sh
MSG
