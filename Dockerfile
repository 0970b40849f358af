# syntax=docker/dockerfile:1
# The monthly sector-rotation job. Build: docker build -t sector-rotation .
# CI builds it without a Docker engine on a locally made Debian base: scripts/build_image.sh.
#
# Works with a read-only root filesystem: everything the job writes (HOME, caches, the DuckDB
# warehouse, temporary files) is under /tmp, which Kubernetes mounts as an emptyDir.
# No secrets here: FRED_API_KEY and AWS credentials come from the environment at run time.

# Any Debian bookworm image with python3 (3.11): the official one, or the local debootstrap base in CI.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DEFAULT_TIMEOUT=180
# The official image ships ensurepip; Debian's python3 needs python3-venv (its version is the base's).
# hadolint ignore=DL3008
RUN if ! python3 -m venv /opt/venv 2>/dev/null; then \
        rm -rf /opt/venv \
        && apt-get update \
        && apt-get install -y --no-install-recommends python3-venv \
        && rm -rf /var/lib/apt/lists/* \
        && python3 -m venv /opt/venv; \
    fi
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Only set where the builder's network needs a CA bundle (CI); unset, pip uses its own.
ARG PIP_CERT
# Dependencies first, from pyproject.toml alone: this layer is reused while they do not change.
COPY pyproject.toml README.md ./
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt
COPY job/ job/
COPY sql/ sql/
COPY expectations/ expectations/
RUN pip install --no-cache-dir --no-deps . \
    && rotation --version


FROM ${BASE_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# tini runs as PID 1 (see entrypoint.sh): Python as PID 1 would ignore SIGTERM from Kubernetes.
# hadolint ignore=DL3008
RUN if ! command -v tini >/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends tini \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && groupadd --gid 10001 rotation \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp/home --shell /usr/sbin/nologin rotation

COPY --from=build /opt/venv /opt/venv
COPY sql/ /app/sql/
COPY expectations/ /app/expectations/
COPY --chmod=0755 entrypoint.sh /entrypoint.sh
# Dask reads /etc/dask at start: the configuration of the job's own `dask worker` processes (why: the file).
COPY docker/dask/dask.yaml /etc/dask/sector-rotation.yaml

# Everything writable lives under /tmp (an emptyDir in Kubernetes; the entrypoint creates the folders).
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp/home \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/cache \
    XDG_CONFIG_HOME=/tmp/config \
    MPLCONFIGDIR=/tmp/cache/matplotlib \
    KERAS_HOME=/tmp/cache/keras \
    YF_CACHE_DIR=/tmp/cache/yfinance \
    ROTATION_CACHE_DIR=/tmp/cache/rotation \
    TF_CPP_MIN_LOG_LEVEL=2 \
    ROTATION_HOME=/app \
    ROTATION_WAREHOUSE=/tmp/warehouse.duckdb

ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="sector-rotation" \
      org.opencontainers.image.description="Monthly machine-learning sector rotation: ingest, validate, train, forecast, allocate, backtest, publish, report." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://example.invalid/sector-rotation" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

WORKDIR /tmp
USER 10001:10001
ENTRYPOINT ["/entrypoint.sh"]
