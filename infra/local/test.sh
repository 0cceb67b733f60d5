#!/usr/bin/env bash
# Runs every test of the workspace against a real PostgreSQL and a real Kafka-protocol broker,
# installing and starting both first when they are missing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_postgres
ensure_tansu
start_tansu

# Test databases of earlier runs.
psql "postgres://postgres@127.0.0.1:5432/postgres" -Atqc \
  "SELECT datname FROM pg_database WHERE datname LIKE 'aihub\_test\_%'" | while read -r db; do
  psql "postgres://postgres@127.0.0.1:5432/postgres" -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || true
done

cd "$ROOT"
say "building the workspace"
cargo build --workspace --all-targets
say "running every test (end-to-end tests use the broker at $KAFKA_BROKERS and PostgreSQL at 127.0.0.1:5432)"
cargo test --workspace --no-fail-fast "$@"
