"""Our protos must stay wire-compatible with the ones tritonclient was built from.

tritonclient ships the descriptors of Triton's grpc_service.proto and
model_config.proto. Every message, nested message, map entry and enum is compared
with ours field by field (name, number, type, label, referenced type, oneof),
and the service method by method. A drifted field number or a renamed field
breaks tritonclient and perf_analyzer silently on the wire, so it fails here
instead.

The remaining tests check that our generated stubs (kept in a private
descriptor pool) and tritonclient's coexist in one process and exchange bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from types import ModuleType

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from google.protobuf import descriptor_pb2, descriptor_pool, text_format
from tritonclient.grpc import model_config_pb2 as triton_model_config_pb2
from tritonclient.grpc import service_pb2 as triton_service_pb2

from server.grpc.generated import POOL, grpc_service_pb2, grpc_service_pb2_grpc, model_config_pb2

# The RPCs tritonclient calls; each must exist whatever tritonclient version is installed.
EXPECTED_RPCS = {
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelInfer",
    "ModelStreamInfer",
    "ModelConfig",
    "ModelStatistics",
    "RepositoryIndex",
    "RepositoryModelLoad",
    "RepositoryModelUnload",
    "SystemSharedMemoryStatus",
    "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister",
    "CudaSharedMemoryStatus",
    "CudaSharedMemoryRegister",
    "CudaSharedMemoryUnregister",
    "TraceSetting",
    "LogSettings",
}

FieldDescriptorProto = descriptor_pb2.FieldDescriptorProto


@dataclass(frozen=True)
class ProtoFile:
    """All definitions of one .proto file, keyed by fully qualified name."""

    proto: descriptor_pb2.FileDescriptorProto
    messages: dict[str, descriptor_pb2.DescriptorProto]
    enums: dict[str, descriptor_pb2.EnumDescriptorProto]


def _load(module: ModuleType) -> ProtoFile:
    # Compare FileDescriptorProtos rather than live descriptors: they are plain
    # data, identical in shape for both protobuf backends.
    proto = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(proto)
    messages: dict[str, descriptor_pb2.DescriptorProto] = {}
    enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}

    def walk(message: descriptor_pb2.DescriptorProto, scope: str) -> None:
        name = f"{scope}.{message.name}"
        messages[name] = message
        for enum in message.enum_type:
            enums[f"{name}.{enum.name}"] = enum
        for nested in message.nested_type:  # includes synthesised map entries
            walk(nested, name)

    for enum in proto.enum_type:
        enums[f"{proto.package}.{enum.name}"] = enum
    for message in proto.message_type:
        walk(message, proto.package)
    return ProtoFile(proto, messages, enums)


# (ours, tritonclient's) for each of the two files.
PAIRS = {
    "grpc_service": (grpc_service_pb2, triton_service_pb2),
    "model_config": (model_config_pb2, triton_model_config_pb2),
}


@pytest.fixture(params=sorted(PAIRS), scope="module")
def pair(request: pytest.FixtureRequest) -> tuple[ProtoFile, ProtoFile]:
    ours, theirs = PAIRS[request.param]
    return _load(ours), _load(theirs)


def _field_facts(message: descriptor_pb2.DescriptorProto) -> dict[str, dict[str, object]]:
    facts = {}
    for field in message.field:
        oneof = (
            message.oneof_decl[field.oneof_index].name if field.HasField("oneof_index") else None
        )
        facts[field.name] = {
            "number": field.number,
            "type": FieldDescriptorProto.Type.Name(field.type),
            "label": FieldDescriptorProto.Label.Name(field.label),
            # Fully qualified (".inference.X") for message and enum fields, else "".
            "type_name": field.type_name,
            "oneof": oneof,
            "proto3_optional": field.proto3_optional,
        }
    return facts


def _diff_message(
    name: str, ours: descriptor_pb2.DescriptorProto, theirs: descriptor_pb2.DescriptorProto
) -> list[str]:
    problems = []
    if ours.options.map_entry != theirs.options.map_entry:
        problems.append(
            f"{name}: map_entry is {ours.options.map_entry}, tritonclient has "
            f"{theirs.options.map_entry}"
        )
    our_fields, their_fields = _field_facts(ours), _field_facts(theirs)
    for field in sorted(their_fields.keys() - our_fields.keys()):
        problems.append(f"{name}: missing field {field!r}; tritonclient has {their_fields[field]}")
    for field in sorted(our_fields.keys() - their_fields.keys()):
        problems.append(
            f"{name}: field {field!r} is not in tritonclient; ours is {our_fields[field]}"
        )
    for field in sorted(our_fields.keys() & their_fields.keys()):
        for attribute, expected in their_fields[field].items():
            actual = our_fields[field][attribute]
            if actual != expected:
                problems.append(
                    f"{name}.{field}: {attribute} is {actual!r}, tritonclient has {expected!r}"
                )
    return problems


def _diff_enum(
    name: str, ours: descriptor_pb2.EnumDescriptorProto, theirs: descriptor_pb2.EnumDescriptorProto
) -> list[str]:
    our_values = {v.name: v.number for v in ours.value}
    their_values = {v.name: v.number for v in theirs.value}
    return [
        f"{name}.{value}: number is {our_values.get(value)}, "
        f"tritonclient has {their_values.get(value)}"
        for value in sorted(our_values.keys() | their_values.keys())
        if our_values.get(value) != their_values.get(value)
    ]


def _report(problems: list[str]) -> None:
    assert not problems, "protos drifted from tritonclient:\n  " + "\n  ".join(problems)


def test_file_level_settings_match(pair: tuple[ProtoFile, ProtoFile]) -> None:
    ours, theirs = pair
    assert ours.proto.name == theirs.proto.name
    assert ours.proto.package == theirs.proto.package == "inference"
    assert ours.proto.syntax == theirs.proto.syntax
    assert list(ours.proto.dependency) == list(theirs.proto.dependency)


def test_every_tritonclient_definition_exists(pair: tuple[ProtoFile, ProtoFile]) -> None:
    ours, theirs = pair
    missing = sorted(theirs.messages.keys() - ours.messages.keys())
    missing += sorted(f"enum {name}" for name in theirs.enums.keys() - ours.enums.keys())
    assert not missing, f"{ours.proto.name} lacks definitions tritonclient has: {missing}"


def test_messages_match_field_by_field(pair: tuple[ProtoFile, ProtoFile]) -> None:
    ours, theirs = pair
    problems: list[str] = []
    for name in sorted(ours.messages.keys() & theirs.messages.keys()):
        problems += _diff_message(name, ours.messages[name], theirs.messages[name])
    _report(problems)


def test_enums_match_value_by_value(pair: tuple[ProtoFile, ProtoFile]) -> None:
    ours, theirs = pair
    problems: list[str] = []
    for name in sorted(ours.enums.keys() & theirs.enums.keys()):
        problems += _diff_enum(name, ours.enums[name], theirs.enums[name])
    _report(problems)


def test_definitions_beyond_tritonclient_are_reported(pair: tuple[ProtoFile, ProtoFile]) -> None:
    # Extra definitions are allowed (a newer protocol revision may add some) but
    # should be deliberate, so they show up in the pytest summary as a skip.
    ours, theirs = pair
    extra = sorted(ours.messages.keys() - theirs.messages.keys())
    extra += sorted(f"enum {name}" for name in ours.enums.keys() - theirs.enums.keys())
    if extra:
        pytest.skip(f"{ours.proto.name} defines what tritonclient does not: {extra}")


def _methods(module: ModuleType) -> dict[str, tuple[str, str, bool, bool]]:
    service = module.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    return {
        m.name: (
            m.input_type.full_name,
            m.output_type.full_name,
            m.client_streaming,
            m.server_streaming,
        )
        for m in service.methods
    }


def test_service_methods_match() -> None:
    ours, theirs = _methods(grpc_service_pb2), _methods(triton_service_pb2)
    assert EXPECTED_RPCS <= ours.keys(), f"missing RPCs: {sorted(EXPECTED_RPCS - ours.keys())}"
    assert sorted(ours) == sorted(theirs)
    for name, signature in theirs.items():
        assert ours[name] == signature, f"rpc {name}: ours {ours[name]}, tritonclient {signature}"
    # Only ModelStreamInfer streams, and in both directions.
    assert ours["ModelStreamInfer"][2:] == (True, True)


# --- coexistence with tritonclient in one process -------------------------------------


def test_stubs_live_in_the_private_pool() -> None:
    assert grpc_service_pb2.DESCRIPTOR.pool is POOL
    assert model_config_pb2.DESCRIPTOR.pool is POOL
    # tritonclient still owns the names in the default pool.
    default = descriptor_pool.Default().FindMessageTypeByName("inference.ModelInferRequest")
    assert default is triton_service_pb2.ModelInferRequest.DESCRIPTOR
    assert POOL.FindMessageTypeByName("inference.ModelInferRequest") is (
        grpc_service_pb2.ModelInferRequest.DESCRIPTOR
    )


def _sample_request() -> grpc_service_pb2.ModelInferRequest:
    request = grpc_service_pb2.ModelInferRequest(model_name="add", model_version="1", id="req-7")
    request.parameters["sequence_id"].uint64_param = 2**63 + 5
    request.parameters["priority"].int64_param = 1
    tensor = request.inputs.add(name="INPUT0", datatype="FP32", shape=[2, 3])
    tensor.parameters["binary_data_size"].int64_param = 24
    text = request.inputs.add(name="TEXT", datatype="BYTES", shape=[1])
    text.contents.bytes_contents.append(b"hello")
    request.outputs.add(name="OUTPUT0").parameters["classification"].int64_param = 2
    request.raw_input_contents.append(np.arange(6, dtype="<f4").tobytes())
    return request


def test_request_bytes_interoperate_with_tritonclient() -> None:
    ours = _sample_request()
    wire = ours.SerializeToString(deterministic=True)
    theirs = triton_service_pb2.ModelInferRequest.FromString(wire)
    assert theirs.parameters["sequence_id"].uint64_param == 2**63 + 5
    assert theirs.inputs[1].contents.bytes_contents == [b"hello"]
    assert theirs.SerializeToString(deterministic=True) == wire
    assert grpc_service_pb2.ModelInferRequest.FromString(theirs.SerializeToString()) == ours


def test_stream_response_bytes_interoperate_with_tritonclient() -> None:
    theirs = triton_service_pb2.ModelStreamInferResponse(error_message="")
    output = theirs.infer_response.outputs.add(name="OUT", datatype="INT64", shape=[3])
    output.contents.int64_contents.extend([1, -2, 3])
    theirs.infer_response.parameters["triton_final_response"].bool_param = True
    ours = grpc_service_pb2.ModelStreamInferResponse.FromString(theirs.SerializeToString())
    assert list(ours.infer_response.outputs[0].contents.int64_contents) == [1, -2, 3]
    assert ours.infer_response.parameters["triton_final_response"].bool_param
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(
        deterministic=True
    )


# A config touching most of the schema, in the shape Triton users write them.
CONFIG_PBTXT = """
name: "resnet"
platform: "onnxruntime_onnx"
backend: "onnxruntime"
max_batch_size: 16
version_policy: { latest: { num_versions: 2 } }
input [
  {
    name: "INPUT__0"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, -1, -1 ]
    reshape: { shape: [ 3, 224, 224 ] }
    optional: false
  }
]
output [
  { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 1000 ] label_filename: "labels.txt" }
]
instance_group [
  { count: 2 kind: KIND_CPU rate_limiter { resources [ { name: "R1" count: 1 } ] } }
]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 100
  priority_levels: 2
  default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 1000 }
  priority_queue_policy { key: 1 value: { max_queue_size: 8 } }
}
optimization {
  graph { level: 1 }
  execution_accelerators {
    cpu_execution_accelerator: [ { name: "openvino" parameters { key: "k" value: "v" } } ]
  }
  input_pinned_memory { enable: false }
}
parameters { key: "intra_op_thread_count" value: { string_value: "2" } }
model_warmup [
  {
    name: "zeros"
    batch_size: 1
    inputs {
      key: "INPUT__0"
      value: { data_type: TYPE_FP32 dims: [ 3, 224, 224 ] zero_data: true }
    }
  }
]
model_transaction_policy { decoupled: false }
response_cache { enable: true }
model_repository_agents { agents [ { name: "checksum" parameters { key: "MD5" value: "x" } } ] }
"""


def test_triton_config_pbtxt_parses_and_travels_as_tritonclient_config() -> None:
    config = text_format.Parse(CONFIG_PBTXT, model_config_pb2.ModelConfig())
    assert config.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert config.dynamic_batching.priority_queue_policy[1].max_queue_size == 8
    response = grpc_service_pb2.ModelConfigResponse(config=config)
    theirs = triton_service_pb2.ModelConfigResponse.FromString(response.SerializeToString())
    assert text_format.MessageToString(theirs.config) == text_format.MessageToString(config)


# --- the generated servicer and stub ------------------------------------------------


class _EchoServicer(grpc_service_pb2_grpc.GRPCInferenceServiceServicer):
    """Just enough of a server to drive the generated code from both clients."""

    def ServerLive(self, request, context):
        return grpc_service_pb2.ServerLiveResponse(live=True)

    def ModelInfer(self, request, context):
        response = grpc_service_pb2.ModelInferResponse(model_name=request.model_name, id=request.id)
        for tensor in request.inputs:
            response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        response.raw_output_contents.extend(request.raw_input_contents)
        return response

    def ModelStreamInfer(self, request_iterator, context):
        for request in request_iterator:
            yield grpc_service_pb2.ModelStreamInferResponse(
                infer_response=self.ModelInfer(request, context)
            )


@pytest.fixture
def echo_server() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(_EchoServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def test_generated_servicer_answers_tritonclient(echo_server: str) -> None:
    client = triton_grpc.InferenceServerClient(echo_server)
    try:
        assert client.is_server_live()
        data = np.arange(6, dtype=np.float32).reshape(2, 3)
        tensor = triton_grpc.InferInput("INPUT0", list(data.shape), "FP32")
        tensor.set_data_from_numpy(data)
        result = client.infer("echo", [tensor], request_id="r1")
        np.testing.assert_array_equal(result.as_numpy("INPUT0"), data)
        assert result.get_response().id == "r1"
    finally:
        client.close()


def test_generated_stub_talks_to_generated_servicer(echo_server: str) -> None:
    with grpc.insecure_channel(echo_server) as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(grpc_service_pb2.ServerLiveRequest()).live
        with pytest.raises(grpc.RpcError) as excinfo:
            stub.ServerReady(grpc_service_pb2.ServerReadyRequest())
        assert excinfo.value.code() == grpc.StatusCode.UNIMPLEMENTED
        responses = list(stub.ModelStreamInfer(iter([_sample_request(), _sample_request()])))
        assert [r.infer_response.id for r in responses] == ["req-7", "req-7"]
