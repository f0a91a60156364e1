# Countersign: `countersign serve` in a slim Python 3.11 image, run as an unprivileged user.
#
#   docker build -t countersign .          (or: podman build -t countersign .)
#   docker run --env-file deploy/.env -v "$PWD/manifests:/app/manifests:ro" -p 3000:3000 countersign
#
# The service migrates its database itself when it starts (store/migrate.py; on PostgreSQL an
# advisory lock lets replicas that start together take turns), so there is no migration step here.
# docs/deploy.md covers the rest: Slack app, tokens, compose.yaml, upgrades, backups.

# The base image; a build argument so a mirror or a pinned digest can be used instead.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is built from: the service's packages and the metadata (.dockerignore keeps the rest out).
COPY pyproject.toml README.md ./
COPY policy ./policy
COPY store ./store
COPY bot ./bot
# A regular (not editable) install: the venv holds the built wheel and its dependencies, nothing refers to /src.
RUN python3 -m venv /opt/countersign \
    && /opt/countersign/bin/python -m pip install --no-cache-dir . \
    && /opt/countersign/bin/countersign --help > /dev/null

FROM ${PYTHON_IMAGE}
# A fixed numeric uid/gid, so volume ownership and runAsNonRoot-style checks can rely on it.
RUN groupadd --system --gid 10001 countersign \
    && useradd --system --uid 10001 --gid countersign --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin countersign \
    && mkdir -p /app/manifests /app/data \
    && chown countersign:countersign /app/data
COPY --from=builder /opt/countersign /opt/countersign
WORKDIR /app

# Defaults for a container: listen on every interface, manifests mounted at /app/manifests, an
# SQLite file in the /app/data volume (one replica only; compose.yaml uses PostgreSQL), JSON logs.
ENV PATH=/opt/countersign/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    COUNTERSIGN_HOST=0.0.0.0 \
    COUNTERSIGN_PORT=3000 \
    COUNTERSIGN_MANIFESTS=/app/manifests \
    COUNTERSIGN_DATABASE_URL=sqlite+aiosqlite:////app/data/countersign.db \
    COUNTERSIGN_LOG_JSON=1
VOLUME ["/app/data"]
EXPOSE 3000
USER 10001:10001

# Liveness: the process answers /healthz (python's urllib, so the image needs no curl). Readiness
# (database, manifests, background loops) is /readyz: compose.yaml checks that one.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('COUNTERSIGN_PORT', '3000'), timeout=4)"]

ENTRYPOINT ["countersign"]
CMD ["serve"]
