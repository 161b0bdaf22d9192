# onnxserve: a small image serving an ONNX model repository over the KServe v2 protocol.
# Build with `make image` (it downloads the wheels on the host first, so that nothing in here
# needs the network). BASE_IMAGE: python:3.11-slim-bookworm (default) or onnxserve-base:bookworm
# (`make base-image`, from Debian packages, for machines that cannot pull images).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# Lets `make image` remove this stage's image once the build is done.
LABEL org.onnxserve.stage=build
COPY build/image/wheels/ /wheels/
COPY constraints.txt deploy/docker/trim-venv.sh /build/
# python3 and its venv module exist in both bases (/usr/local/bin or /usr/bin): no apt, no network.
RUN python3 -m venv /opt/onnxserve \
 && /opt/onnxserve/bin/python -m pip install --quiet --no-index --no-cache-dir \
      --find-links /wheels --constraint /build/constraints.txt onnxserve \
 && sh /build/trim-venv.sh /opt/onnxserve

FROM ${BASE_IMAGE}
# Set by `make image` from pyproject.toml and git.
ARG VERSION=unknown
ARG SOURCE=unknown
ARG REVISION=unknown
LABEL org.opencontainers.image.title="onnxserve" \
      org.opencontainers.image.description="KServe v2 (Open Inference Protocol) server for ONNX models" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/onnxserve /opt/onnxserve
# KServe's entrypoint (deploy/kserve/): serves /mnt/models, a repository or a single model.
COPY deploy/docker/onnxserve-kserve /opt/onnxserve/bin/
# .pyc files were written at install time: a read-only root filesystem cannot take new ones.
# onnxruntime's telemetry off: no outbound upload and no device-id file on a read-only root.
ENV PATH=/opt/onnxserve/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ORT_DISABLE_TELEMETRY=1
# A numeric user, so that Kubernetes can check runAsNonRoot without a runAsUser.
USER 10001:10001
WORKDIR /tmp
# HTTP, gRPC, metrics.
EXPOSE 8000 8001 8002
STOPSIGNAL SIGTERM
# The exec form: the server is PID 1, gets SIGTERM itself, and arguments after the image name
# are appended (`docker run ... onnxserve:latest --model-control-mode poll`).
ENTRYPOINT ["/opt/onnxserve/bin/onnxserve", "serve", "--model-repository", "/models"]
