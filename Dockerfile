# syntax=docker/dockerfile:1.7
#
# One image for every Baton service: the `baton` CLI picks the role at start-up.
#
#   docker build -t ghcr.io/baton-engine/baton:latest .
#   docker run --rm ghcr.io/baton-engine/baton:latest serve planner
#
# The workspace members are installed non-editable into a venv in the build stage; the runtime
# stage gets only that venv (no compilers, no sources, no pip cache).

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Dependency order: common first, the CLI (which depends on everything) last.
COPY libs/common        libs/common
COPY services/gateway   services/gateway
COPY services/planner   services/planner
COPY services/executor  services/executor
COPY services/projector services/projector
COPY services/hitl      services/hitl
COPY services/scheduler services/scheduler
COPY services/webhook   services/webhook
COPY services/calendar  services/calendar
COPY libs/cli           libs/cli

# All members in one resolver run, so `baton-common` & co. resolve to these local paths and
# never to an index. pip byte-compiles while installing, so the runtime never writes .pyc files.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --upgrade pip \
 && pip install \
        ./libs/common \
        ./services/gateway \
        ./services/planner \
        ./services/executor \
        ./services/projector \
        ./services/hitl \
        ./services/scheduler \
        ./services/webhook \
        ./services/calendar \
        ./libs/cli \
 && baton --help >/dev/null

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="baton" \
      org.opencontainers.image.description="Baton: event-sourced orchestration engine (gateway, planner, executor, worker, projector, hitl, scheduler, webhook, calendar)" \
      org.opencontainers.image.source="https://github.com/baton-engine/baton"

# A fixed numeric UID/GID (10001) so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
RUN groupadd --system --gid 10001 baton \
 && useradd --system --uid 10001 --gid baton --home-dir /home/baton --create-home \
        --shell /usr/sbin/nologin baton \
 && mkdir -p /data /keys \
 && chown baton:baton /data /keys

COPY --from=build /opt/venv /opt/venv

# BATON_HTTP_HOST: the settings default to 127.0.0.1, which is unreachable from outside the
# container; listen on every interface so ports, probes and Services work.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BATON_DATA_DIR=/data \
    BATON_HTTP_HOST=0.0.0.0

USER 10001:10001
# BATON_DATA_DIR: mount a volume here (compose/k8s do) if its contents must outlive the container.
WORKDIR /data

# 8080: gateway HTTP API (BATON_HTTP_PORT). 8081: /healthz, /readyz, /metrics of the other
# services when BATON_HEALTH_PORT=8081. 8090: the webhook service's inbound hooks
# (BATON_WEBHOOK_PORT).
EXPOSE 8080 8081 8090

# Exec form: `baton` is PID 1 and receives SIGTERM itself; the services drain on SIGTERM.
ENTRYPOINT ["baton"]
CMD ["serve", "gateway"]
