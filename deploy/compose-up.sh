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

start=$SECONDS
compose up -d
url=http://127.0.0.1:${MEDIAFORGE_API_PORT:-8000}/readyz
until curl -fsS "$url" >/dev/null 2>&1; do
  if (( SECONDS - start > ${MEDIAFORGE_UP_TIMEOUT_S:-600} )); then
    echo "mediaforge: $url did not answer 200 in ${MEDIAFORGE_UP_TIMEOUT_S:-600} s" >&2
    compose ps >&2
    compose logs --tail 30 >&2
    exit 1
  fi
  sleep 2
done
echo "mediaforge: stack up, /readyz 200 after $((SECONDS - start)) s"
