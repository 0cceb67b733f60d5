#!/usr/bin/env bash
# Stops what up.sh started (by pid). PostgreSQL is left running: it may serve other things.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop_pid "$AIHUB_HOME/aihub.pid" aihub
say "stopping Kafka"
"$KAFKA" stop "$AIHUB_HOME/kafka"
say "stopped"
