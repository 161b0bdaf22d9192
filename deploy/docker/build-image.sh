#!/usr/bin/env bash
# Builds IMAGE:latest and IMAGE:VERSION from the Dockerfile on BASE_IMAGE (the wheels must be in
# build/image/wheels), removes the build stage's leftover image, and prints the size.
# Usage: deploy/docker/build-image.sh BASE_IMAGE IMAGE VERSION
set -euo pipefail
BASE_IMAGE="$1"
IMAGE="$2"
VERSION="$3"
previous=$(docker image inspect --format '{{.Id}}' "$IMAGE:latest" 2>/dev/null || true)
docker build --quiet --force-rm --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VERSION=$VERSION" \
  --build-arg "SOURCE=$(git remote get-url origin 2>/dev/null || echo unknown)" \
  --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --tag "$IMAGE:latest" --tag "$IMAGE:$VERSION" . >/dev/null
# The legacy builder leaves the build stage behind as an untagged image: only that one goes.
docker image prune --force --filter label=org.onnxserve.stage=build >/dev/null
# And the image this build replaced, unless it is the same or still tagged elsewhere.
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect --format '{{.Id}}' "$IMAGE:latest")" ]; then
  docker image rm "$previous" >/dev/null 2>&1 || true
fi
docker image ls "$IMAGE:$VERSION"
