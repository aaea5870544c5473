# Multi-stage: build a wheel with its dependencies, install it into a slim, non-root runtime.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# No compilers here: every dependency arrives as a wheel from the build stage.
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels shutdown-coordinator \
    && rm -rf /wheels \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin coordinator
USER 10001
# The hook port, outside Istio's 15000-15099.
EXPOSE 15120
ENTRYPOINT ["shutdown-coordinator"]
CMD ["agent"]
