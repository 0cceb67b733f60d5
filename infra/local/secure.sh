#!/usr/bin/env bash
# Servers configured as managed ones are, for the tests that reach them over TLS:
#
#   secure.sh up [PORT]   the throwaway CA and certificate (once), the PostgreSQL cluster that
#                         accepts only TLS (TLS_PG_PORT, 5433), and a test broker with SASL_SSL
#                         on PORT (29192) and SSL on PORT+3; prints the environment that points
#                         AI Hub at them, as export lines:  eval "$(infra/local/secure.sh up)"
#   secure.sh down        stop that broker (the PostgreSQL cluster stays, like the main one)
#
# test.sh does the same for its run of tests/tests/secure_transport.rs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dir="$AIHUB_HOME/secure-kafka"
case "${1:-}" in
  up)
    port="${2:-29192}"
    ensure_kafka >&2
    ensure_tls_postgres >&2
    start_secure_test_kafka "$port" "$dir" >&2
    secure_env "$port" "$dir"
    ;;
  down)
    "$KAFKA" stop "$dir"
    ;;
  *)
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
