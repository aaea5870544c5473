# syntax=docker/dockerfile:1
# One image for both programs: the agent (the pod's sidecar, `agent -c FILE`) and the injector
# (the admission webhook, `injector --cert FILE --key FILE --template FILE --port 8443`).
# Multi-stage: the build stage turns the project and its dependencies into wheels; the runtime
# stage installs them with no index and no compiler, and runs as a non-root user. Nothing is
# written at run time (bytecode is compiled at install), so the root filesystem can be read-only.
# A digest can be added to the tag for reproducible builds: python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the package is built from; .dockerignore keeps everything else out of the context.
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The wheels are mounted for this one step, so they never become a layer of the image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels /wheels/shutdown_coordinator-*.whl \
    && groupadd --gid 10001 coordinator \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin coordinator
# Numeric, so `runAsNonRoot: true` can check it without reading /etc/passwd.
USER 10001:10001
# 15120: the agent's hooks (outside Istio's 15000-15099); 8443: the injector's webhook.
EXPOSE 15120 8443
ENTRYPOINT ["shutdown-coordinator"]
CMD ["agent"]
