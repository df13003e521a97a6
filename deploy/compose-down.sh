#!/usr/bin/env bash
# Stop the compose stack, remove its containers, network and volumes (`down -v`), then stop the private dockerd
# unless another project still has containers on it. Images and build cache stay in /var/lib/mediaforge for the
# next deploy/compose-up.sh.
source "$(dirname "$0")/lib.sh"

if "$DOCKER" info >/dev/null 2>&1; then
  compose down -v --remove-orphans
  [[ -n $("$DOCKER" ps -aq) ]] || engine_stop
fi
