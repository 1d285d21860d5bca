# syntax=docker/dockerfile:1
# One Dockerfile, two images (docker-compose.yml builds both):
#   docker build -t lorareg:server .                                  # the API: pip install .[server]
#   docker build -t lorareg:worker --build-arg EXTRAS=server,worker .  # GPU workers: adds torch
# No HEALTHCHECK here: the orchestrator (compose, Kubernetes) probes /api/v1/health.
FROM python:3.11-slim

ARG EXTRAS=server
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --user-group lorareg
WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that a code change does not reinstall torch.
COPY pyproject.toml README.md ./
RUN mkdir registry cli migrations \
    && touch registry/__init__.py cli/__init__.py migrations/__init__.py \
    && pip install ".[${EXTRAS}]" \
    && pip uninstall --yes lorareg \
    && rm -rf registry cli migrations build

COPY registry ./registry
COPY cli ./cli
COPY migrations ./migrations
RUN pip install --no-deps . && rm -rf build

USER lorareg
EXPOSE 8000
CMD ["lorareg", "serve", "--host", "0.0.0.0", "--port", "8000"]
