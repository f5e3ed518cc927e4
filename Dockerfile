# imagegate: `docker build -t imagegate .`, then `docker run -p 8000:8000 imagegate`
# (settings from IMAGEGATE_* variables; see docs/deploy.md). BASE may be any Debian-like
# image with python3 (>= 3.11) and its venv module; the default is the official slim image.
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# wheels come from the package index; the venv is the only thing the final stage takes
RUN python3 -m venv /opt/imagegate \
    && /opt/imagegate/bin/pip install --no-cache-dir .

FROM ${BASE}
RUN useradd --no-log-init --uid 10001 --user-group --home-dir /data --no-create-home imagegate \
    && mkdir -p /data \
    && chown imagegate:imagegate /data
COPY --from=build /opt/imagegate /opt/imagegate
ENV PATH=/opt/imagegate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    IMAGEGATE_HOST=0.0.0.0 \
    IMAGEGATE_PORT=8000 \
    IMAGEGATE_DATA_DIR=/data
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["imagegate", "healthcheck"]
ENTRYPOINT ["imagegate"]
CMD ["serve"]
