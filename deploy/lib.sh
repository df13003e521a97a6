# Sourced by deploy/compose-up.sh and deploy/compose-down.sh: a private Docker engine (Debian's docker.io) on its own
# socket, data root and exec root, so it neither needs nor disturbs a system dockerd; a base image made here (no
# registry is reachable); the project image, built once for every service.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MF_STATE=${MF_STATE:-/var/lib/mediaforge}   # kept between runs: the engine's images, build cache and pip cache
MF_RUN=${MF_RUN:-/run/mediaforge}
DOCKER=/usr/bin/docker                      # Debian's client, the engine's version (BuildKit without buildx)
BASE_IMAGE=mediaforge-base:bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
export DOCKER_HOST=unix://$MF_RUN/docker.sock COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-mediaforge}
# Every service reads the same Ray token; one is made on first use and kept, so `down` sees the same file.
if [[ -z ${RAY_AUTH_TOKEN:-} ]]; then
  mkdir -p "$MF_STATE"
  [[ -s $MF_STATE/ray_auth_token ]] || python3 -c 'import secrets; print(secrets.token_hex(32))' > "$MF_STATE/ray_auth_token"
  RAY_AUTH_TOKEN=$(cat "$MF_STATE/ray_auth_token")
fi
export RAY_AUTH_TOKEN

compose() { docker-compose -f "$REPO/compose.yaml" "$@"; }

engine_start() {
  "$DOCKER" info >/dev/null 2>&1 && return
  mkdir -p "$MF_STATE/docker" "$MF_RUN"
  # --bridge none: no docker0 (compose makes its own bridge network), so a system engine keeps its own.
  setsid dockerd --host "$DOCKER_HOST" --data-root "$MF_STATE/docker" --exec-root "$MF_RUN/exec" --bridge none \
    --pidfile "$MF_RUN/docker.pid" >>"$MF_STATE/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 120); do "$DOCKER" info >/dev/null 2>&1 && return; sleep 0.5; done
  echo "dockerd did not answer on $DOCKER_HOST; its log ($MF_STATE/dockerd.log) ends:" >&2
  tail -n 20 "$MF_STATE/dockerd.log" >&2
  return 1
}

engine_stop() {
  [[ -s $MF_RUN/docker.pid ]] || return 0
  local pid
  pid=$(cat "$MF_RUN/docker.pid")
  kill "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
}

# Debian bookworm (python3.11 as the venv's interpreter, the libraries the pipelines load, redis-server for the
# redis service, a compiler for pesq, which PyPI has only as source) imported as an image.
base_image() {
  "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return
  mmdebstrap --quiet --variant=minbase \
    --include=python3,python3-venv,python3-dev,gcc,libc6-dev,libsndfile1,espeak-ng,curl,redis-server,ca-certificates,procps \
    bookworm - "deb $DEBIAN_MIRROR bookworm main" "deb $DEBIAN_MIRROR bookworm-updates main" \
    "deb ${DEBIAN_MIRROR%/debian}/debian-security bookworm-security main" \
    | "$DOCKER" import --change 'ENV LANG=C.UTF-8' - "$BASE_IMAGE"
}

# The one image of every service. BuildKit keeps the layers in the engine's data root, so a second build with an
# unchanged pyproject.toml reuses the dependency layer; the image a rebuild replaces is pruned.
build_image() {
  DOCKER_BUILDKIT=1 "$DOCKER" build --network host --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt \
    --build-arg BASE="$BASE_IMAGE" -t mediaforge:latest "$REPO"
  "$DOCKER" image prune -f >/dev/null
}
