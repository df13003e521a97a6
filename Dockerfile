# mediaforge: one image for every service of compose.yaml (redis, api, Celery workers, Ray head and worker).
# No registry is reachable here, so the base is a local Debian bookworm image (python3.11, libsndfile1, espeak-ng,
# curl, redis-server) made by deploy/lib.sh. Build with BuildKit, the host's network (pip reaches PyPI only so) and
# the host's CA bundle as a secret (pip trusts what the host trusts, a TLS-inspecting proxy included; not baked in):
#   DOCKER_BUILDKIT=1 docker build --network host --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt \
#     -t mediaforge:latest .                                                   (deploy/compose-up.sh does this)
ARG BASE=mediaforge-base:bookworm
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv

WORKDIR /app
# The dependencies (torch's CUDA build from PyPI: ~5 GB) get their own layer, rebuilt only when pyproject.toml
# changes. No pip cache: behind this network's proxy PyPI's files come without caching headers, so pip's HTTP cache
# (a BuildKit cache mount was tried) stays empty; a rebuild of this layer downloads again (~1 min of its ~4).
COPY pyproject.toml ./
RUN --mount=type=secret,id=ca \
    export PIP_CERT=/run/secrets/ca \
 && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

COPY README.md ./
COPY api api
COPY workers workers
COPY pipelines pipelines
COPY tokenizers_media tokenizers_media
RUN --mount=type=secret,id=ca PIP_CERT=/run/secrets/ca pip install --no-deps . && rm -rf /app/build

RUN useradd --create-home --uid 1000 mediaforge \
 && mkdir -p /data/artifacts /data/redis && chown -R mediaforge /data
USER mediaforge
EXPOSE 8000
CMD ["mediaforge", "serve", "--host", "0.0.0.0", "--port", "8000"]
