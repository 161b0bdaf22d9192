"""Liveness is not readiness: the "liveness" health service answers SERVING whenever the
process serves at all, while "" keeps the readiness answer, so a Kubernetes liveness probe does
not restart a pod because one of its models failed to load."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.models import build_double, write_broken_model

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Every server here holds the broken model on purpose.
pytestmark = pytest.mark.server_errors("failed to load: .*INVALID_PROTOBUF")


@pytest.fixture(scope="module")
def channel(start_module_server, tmp_path_factory) -> Iterator[grpc.Channel]:
    repo = tmp_path_factory.mktemp("repo")
    build_double(repo)
    write_broken_model(repo)
    server = start_module_server(repo)  # strict readiness (the default)
    with grpc.insecure_channel(server.address) as channel:
        yield channel


def check(channel: grpc.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def test_liveness_serves_while_readiness_reports_the_broken_model(channel) -> None:
    assert check(channel, "") == NOT_SERVING  # "broken" failed at start: not ready
    assert check(channel, "liveness") == SERVING  # but alive: no restart wanted
    assert check(channel, "double") == SERVING


def test_liveness_watch_sends_serving(channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    stream = stub.Watch(health_pb2.HealthCheckRequest(service="liveness"), timeout=10)
    assert next(stream).status == SERVING
    stream.cancel()


def test_liveness_with_lenient_readiness(start_server, tmp_path) -> None:
    # --strict-readiness false: the same broken repository is ready; liveness is unchanged.
    build_double(tmp_path)
    write_broken_model(tmp_path)
    server = start_server(tmp_path, "--strict-readiness", "false")
    with grpc.insecure_channel(server.address) as channel:
        assert check(channel, "") == SERVING
        assert check(channel, "liveness") == SERVING
        assert check(channel, "broken") == NOT_SERVING
