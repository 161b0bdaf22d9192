"""Triton's config.pbtxt and its JSON form, read into our ModelConfig."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.errors import ConfigError
from server.grpc.config_proto import TRITON_FORMAT
from server.grpc.generated import model_config_pb2
from server.model_config import (
    DynamicBatching,
    ExecutionProvider,
    InstanceGroup,
    TensorConfig,
    VersionPolicy,
    Warmup,
    WarmupInput,
)
from server.model_config.pbtxt import TritonConfigReader
from server.repository.configs import ConfigSource

load_triton_config = TritonConfigReader(model_config_pb2.ModelConfig).load

FULL = """
name: "add_sub"
platform: "onnxruntime_onnx"
max_batch_size: 8
version_policy: { specific: { versions: [1, 3] } }
input [
  { name: "INPUT0", data_type: TYPE_FP32, dims: [ 16 ] },
  { name: "INPUT1", data_type: TYPE_STRING, dims: [ -1 ] }
]
output [ { name: "OUTPUT0", data_type: TYPE_INT64, dims: [ 16 ] } ]
instance_group [ { name: "add_sub_0", kind: KIND_CPU, count: 2 } ]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 100
  default_queue_policy { max_queue_size: 64, default_timeout_microseconds: 5000 }
}
optimization {
  graph { level: 1 }
  execution_accelerators { cpu_execution_accelerator: [ { name: "openvino" } ] }
}
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
parameters { key: "execution_mode" value: { string_value: "1" } }
parameters { key: "enable_mem_arena" value: { string_value: "0" } }
parameters { key: "team" value: { string_value: "search" } }
model_warmup [
  {
    name: "zeros"
    batch_size: 2
    count: 3
    inputs { key: "INPUT0" value: { data_type: TYPE_FP32, dims: [ 16 ], random_data: true } }
  }
]
"""


def write(tmp_path: Path, text: str, name: str = "add_sub") -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(text)
    return folder


def test_every_supported_field_is_converted(tmp_path: Path) -> None:
    config = load_triton_config(write(tmp_path, FULL))
    assert config.name == "add_sub"
    assert config.max_batch_size == 8
    assert config.version_policy == VersionPolicy(latest=None, specific=(1, 3))
    assert config.inputs == (
        TensorConfig("INPUT0", "FP32", (16,)),
        TensorConfig("INPUT1", "BYTES", (-1,)),
    )
    assert config.outputs == (TensorConfig("OUTPUT0", "INT64", (16,)),)
    assert config.instance_group == InstanceGroup(count=2, kind="cpu")
    assert config.dynamic_batching == DynamicBatching(
        max_queue_delay_microseconds=100,
        preferred_batch_size=(4, 8),
        max_queue_size=64,
        default_timeout_microseconds=5000,
    )
    assert config.session.graph_optimization_level == "extended"
    assert config.session.intra_op_num_threads == 1
    assert config.session.execution_mode == "parallel"
    assert config.session.enable_cpu_mem_arena is False
    assert config.execution_providers == (ExecutionProvider("OpenVINOExecutionProvider", {}),)
    assert dict(config.parameters) == {"team": "search"}
    assert config.model_warmup == (
        Warmup("zeros", 2, 3, (WarmupInput("INPUT0", "FP32", (16,), "random"),)),
    )


def test_unsupported_fields_are_reported_by_name_all_at_once(tmp_path: Path) -> None:
    text = """
    name: "m"
    platform: "tensorrt_plan"
    max_batch_size: 4
    input [ { name: "IN", data_type: TYPE_FP32, dims: [ 3 ], reshape: { shape: [ 1, 3 ] } } ]
    instance_group [ { kind: KIND_GPU, gpus: [ 0 ] }, { kind: KIND_CPU } ]
    sequence_batching { max_sequence_idle_microseconds: 100 }
    model_warmup [ { name: "w", inputs { key: "IN" value: { input_data_file: "raw" } } } ]
    """
    with pytest.raises(ConfigError) as caught:
        load_triton_config(write(tmp_path, text, "m"))
    lines = str(caught.value).splitlines()
    source = str(tmp_path / "m" / "config.pbtxt")
    assert all(line.startswith(f"{source}: ") for line in lines), lines
    message = str(caught.value)
    for expected in (
        "input[0].reshape: not supported",
        "instance_group[0].gpus: not supported",
        "sequence_batching: not supported",
        "model_warmup[0].inputs['IN'].input_data_file: not supported",
        "platform: expected 'onnxruntime_onnx' (the only platform), got 'tensorrt_plan'",
        "instance_group: only one group is supported, got 2",
    ):
        assert expected in message


def test_a_gpu_instance_runs_on_cuda(tmp_path: Path) -> None:
    text = "instance_group [ { kind: KIND_GPU } ]\n"
    config = load_triton_config(write(tmp_path, text, "g"))
    assert config.instance_group.kind == "gpu"
    assert config.execution_providers == (ExecutionProvider("CUDAExecutionProvider", {}),)


def test_max_batch_size_0_is_completed_from_the_model_unless_tensors_are_declared(
    tmp_path: Path,
) -> None:
    assert load_triton_config(write(tmp_path, 'name: "a"\n', "a")).max_batch_size is None
    declared = 'input [ { name: "X", data_type: TYPE_FP32, dims: [ 2, 3 ] } ]\n'
    assert load_triton_config(write(tmp_path, declared, "b")).max_batch_size == 0


def test_text_format_errors_name_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config.pbtxt: invalid protobuf text format: 2:1 .*nme"):
        load_triton_config(write(tmp_path, 'name: "x"\nnme: 1\n', "x"))


def test_our_validation_applies_to_triton_configs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="name: expected the model folder name 'y', got 'other'"):
        load_triton_config(write(tmp_path, 'name: "other"\n', "y"))


def test_config_yaml_wins_over_config_pbtxt(tmp_path: Path) -> None:
    folder = write(tmp_path, "max_batch_size: 4\n", "both")
    (folder / "config.yaml").write_text("max_batch_size: 2\n")
    source = ConfigSource(TRITON_FORMAT)
    assert source.read(folder).max_batch_size == 2
    (folder / "config.yaml").unlink()
    assert source.read(folder).max_batch_size == 4
    assert ConfigSource().read(folder).max_batch_size is None  # without the format: defaults


def test_a_load_override_may_use_our_layout_or_triton_json() -> None:
    source = ConfigSource(TRITON_FORMAT)
    ours = source.parse_override("m", json.dumps({"max_batch_size": 2, "instance_group": {}}))
    assert ours.max_batch_size == 2
    triton = {
        "max_batch_size": 4,
        "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [3]}],
        "instance_group": [{"count": 2, "kind": "KIND_CPU"}],
    }
    config = source.parse_override("m", json.dumps(triton))
    assert config.max_batch_size == 4
    assert config.inputs == (TensorConfig("X", "FP32", (3,)),)
    assert config.instance_group == InstanceGroup(count=2, kind="cpu")


def test_a_bad_override_is_reported_against_our_layout() -> None:
    source = ConfigSource(TRITON_FORMAT)
    with pytest.raises(ConfigError, match="invalid JSON"):
        source.parse_override("m", "{not json")
    with pytest.raises(ConfigError, match="max_batch_sise"):
        source.parse_override("m", json.dumps({"max_batch_sise": 2}))
    with pytest.raises(ConfigError, match="sequence_batching: not supported"):
        source.parse_override("m", json.dumps({"sequence_batching": {}}))
