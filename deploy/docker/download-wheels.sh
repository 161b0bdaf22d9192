#!/usr/bin/env bash
# Puts into DIR the wheels the image installs: onnxserve itself (built here) and its pinned
# runtime dependencies for the image's platform (Linux, CPython 3.11, this machine's CPU), so
# that the Dockerfile installs with --no-index and the build needs no network inside a container.
# Usage: deploy/docker/download-wheels.sh PYTHON DIR
set -euo pipefail
PYTHON="$1"
DIR="$2"
ARCH=$(uname -m)
rm -rf "$DIR"
mkdir -p "$DIR"
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$DIR" .
# pip does not widen one --platform to older manylinux tags: list every tag bookworm's glibc
# (2.36) can run.
platforms=(--platform "manylinux2014_$ARCH")
for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_$ARCH"); done
"$PYTHON" -m pip download --quiet --dest "$DIR" --constraint constraints.txt \
  --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none \
  "${platforms[@]}" "$DIR"/onnxserve-*.whl
# pip evaluates environment markers with the host's interpreter, not the target's: add what
# bookworm's Python 3.11.2 needs beyond a newer 3.11 (redis wants async-timeout below 3.11.3).
"$PYTHON" -m pip download --quiet --dest "$DIR" --constraint constraints.txt \
  --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none \
  "${platforms[@]}" async-timeout
ls "$DIR"
