#!/usr/bin/env bash
# The image smoke tests (deploy/image_test/), run by `make image-test` with a docker daemon.
# Builds the Debian base and the image first when IMAGE:latest is missing.
# Usage: deploy/docker/image-test.sh PYTHON IMAGE
set -euo pipefail
PYTHON="$1"
IMAGE="$2"
if ! docker image inspect "$IMAGE:latest" >/dev/null 2>&1; then
  echo "image-test: $IMAGE:latest is missing: building it on onnxserve-base:bookworm" >&2
  docker image inspect onnxserve-base:bookworm >/dev/null 2>&1 \
    || bash deploy/docker/base-image.sh onnxserve-base:bookworm
  bash deploy/docker/download-wheels.sh "$PYTHON" build/image/wheels
  bash deploy/docker/build-image.sh onnxserve-base:bookworm "$IMAGE" \
    "$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)"
fi
IMAGE="$IMAGE:latest" "$PYTHON" -m pytest -q -s -p no:cacheprovider deploy/image_test
