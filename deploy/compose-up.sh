#!/usr/bin/env bash
# The compose stack on a fresh machine, as root: a private dockerd, the Debian base image, the project image (built
# once, shared by every service), `docker-compose up`, then a wait for the API's /readyz on the host's port
# MEDIAFORGE_API_PORT (8000). Needs Debian's docker.io, docker-compose and mmdebstrap. Undo: deploy/compose-down.sh.
source "$(dirname "$0")/lib.sh"

engine_start
start=$SECONDS
base_image
build_image
echo "mediaforge: base + project image ready in $((SECONDS - start)) s"

# `up` gives up on a service whose dependency is unhealthy at that moment, e.g. a Ray node that `ray start` timed out
# on a busy machine and that its restart policy is starting again; `up` again then creates the rest.
start=$SECONDS ups=1
timeout=${MEDIAFORGE_UP_TIMEOUT_S:-600}
url=http://127.0.0.1:${MEDIAFORGE_API_PORT:-8000}/readyz
give_up_after_timeout() {
  (( SECONDS - start < timeout )) && return
  echo "mediaforge: $1 in $timeout s" >&2
  compose ps >&2
  compose logs --tail 30 >&2
  exit 1
}
until compose up -d; do
  give_up_after_timeout "docker-compose up did not succeed ($ups tries)"
  ups=$((ups + 1))
  sleep 5
done
until curl -fsS "$url" >/dev/null 2>&1; do
  give_up_after_timeout "$url did not answer 200"
  sleep 2
done
echo "mediaforge: stack up, /readyz 200 after $((SECONDS - start)) s ($ups docker-compose up)"
