"""The standard gRPC health service (server and per-model readiness) and server reflection, on
the inference port."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.harness import ServerProcess
from tests.models import build_double, write_broken_model

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


# The repository holds a broken model on purpose.
pytestmark = pytest.mark.server_errors("failed to load: .*INVALID_PROTOBUF")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory):
    repo = tmp_path_factory.mktemp("repo")
    build_double(repo)
    write_broken_model(repo)
    return repo


@pytest.fixture(scope="module")
def channel(start_module_server, repo) -> Iterator[grpc.Channel]:
    server = start_module_server(repo)
    with grpc.insecure_channel(server.address) as channel:
        yield channel


def check(channel: grpc.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def test_server_and_model_health(channel: grpc.Channel) -> None:
    # Strict readiness (the default): "broken" was loaded at start and failed, so the server
    # as a whole is not serving, while each good model reports its own readiness.
    assert check(channel, "") == NOT_SERVING
    assert check(channel, "inference.GRPCInferenceService") == NOT_SERVING
    assert check(channel, "double") == SERVING
    assert check(channel, "broken") == NOT_SERVING  # known, but failed to load


def test_unknown_service_is_not_found(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as error:
        check(channel, "no_such_model")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_watch_sends_the_current_status(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    stream = stub.Watch(health_pb2.HealthCheckRequest(service="double"), timeout=10)
    assert next(stream).status == SERVING
    stream.cancel()


def _reflect(channel: grpc.Channel, **request: str) -> reflection_pb2.ServerReflectionResponse:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    message = reflection_pb2.ServerReflectionRequest(**request)
    (response,) = list(stub.ServerReflectionInfo(iter([message]), timeout=10))
    return response


def test_reflection_lists_the_services(channel: grpc.Channel) -> None:
    response = _reflect(channel, list_services="")
    assert sorted(s.name for s in response.list_services_response.service) == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "inference.GRPCInferenceService",
    ]


@pytest.mark.parametrize(
    ("symbol", "method"),
    [("inference.GRPCInferenceService", "ModelInfer"), ("grpc.health.v1.Health", "Check")],
)
def test_reflection_describes_the_services(channel: grpc.Channel, symbol, method) -> None:
    response = _reflect(channel, file_containing_symbol=symbol)
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in response.file_descriptor_response.file_descriptor_proto
    ]
    services = {f"{f.package}.{s.name}": s for f in files for s in f.service}
    assert method in [m.name for m in services[symbol].method]


def test_shutdown_turns_health_off_and_ends_watches(start_server, repo) -> None:
    # The repository holds a broken model: judge the server by its start-up load alone.
    server: ServerProcess = start_server(repo, "--strict-readiness", "false")
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        stream = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert next(stream).status == SERVING
        server.signal(signal.SIGTERM)
        assert next(stream).status == NOT_SERVING
        with pytest.raises(StopIteration):
            next(stream)  # the stream ends instead of holding the shutdown grace period
    assert server.stop() == 0
