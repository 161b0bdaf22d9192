# Two entry points: `make run` serves model_repository/ (HTTP 8000, gRPC 8001, metrics 8002), `make test` runs the suite.
# Both build .venv with the pinned dependencies from pyproject.toml on first use.
# `make run` polls the repository, so a model folder copied in is served without a restart;
# `make run MODEL_CONTROL_MODE=none` loads the models once and never rescans.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
MODEL_CONTROL_MODE ?= poll

.PHONY: run test lint protos examples bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,protos]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/onnxserve serve --model-repository model_repository --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) \
		--metrics-port $(METRICS_PORT) --model-control-mode $(MODEL_CONTROL_MODE)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check server clients tests bench tools deploy
	$(BIN)/ruff format --check server clients tests bench tools deploy
	$(BIN)/lint-imports --no-logo

# Regenerates server/grpc/generated/ from protos/ (a test checks the two agree).
protos: $(STAMP)
	$(BIN)/python tools/generate_protos.py

# Rebuilds the example models in model_repository/ (needs scikit-learn and skl2onnx).
examples: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[examples]'
	$(BIN)/python tools/build_example_models.py

# Drives the real server with Triton's perf_analyzer (bench/setup.sh installs it into
# bench/.venv-perf; without it bench/run.py falls back to grpc.aio) and prints markdown tables.
# Results land in bench/results/. Extra options: make bench BENCH_ARGS="--models tabular".
bench: $(STAMP)
	bash bench/setup.sh || echo "bench: perf_analyzer unavailable, using the grpc.aio load generator"
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache

# Container image (docs/deployment.md). The wheels are downloaded on the host, so the build needs
# no network inside a container; BASE_IMAGE=onnxserve-base:bookworm builds on `make base-image`.
# Each target runs under deploy/docker/with-docker.sh: it installs docker.io and debootstrap when
# missing, starts dockerd when none answers and stops what it started.
IMAGE ?= onnxserve
BASE_IMAGE ?= python:3.11-slim-bookworm
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
WITH_DOCKER := bash deploy/docker/with-docker.sh

.PHONY: base-image image image-test

base-image:
	$(WITH_DOCKER) bash deploy/docker/base-image.sh onnxserve-base:bookworm

image: $(STAMP)
	bash deploy/docker/download-wheels.sh $(BIN)/python build/image/wheels
	$(WITH_DOCKER) bash deploy/docker/build-image.sh $(BASE_IMAGE) $(IMAGE) $(VERSION)

# Smoke-tests $(IMAGE):latest (building the base and the image first when it is missing).
image-test: $(STAMP)
	$(WITH_DOCKER) bash deploy/docker/image-test.sh $(BIN)/python $(IMAGE)
