# mediaforge: one image for every service of compose.yaml (api, Celery workers, Ray head and workers).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsndfile1 espeak-ng curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY api api
COPY workers workers
COPY pipelines pipelines
COPY tokenizers_media tokenizers_media
# CPU torch by default; build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu130 for GPUs.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --extra-index-url "$TORCH_INDEX" .

RUN useradd --create-home --uid 1000 mediaforge && mkdir -p /data/artifacts && chown -R mediaforge /data
USER mediaforge
EXPOSE 8000
CMD ["mediaforge", "serve", "--host", "0.0.0.0", "--port", "8000"]
