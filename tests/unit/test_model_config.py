"""config.yaml parsing, validation messages, completion from the model signature, printing."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from server.errors import ConfigError
from server.model_config import (
    DEFAULT_MAX_BATCH_SIZE,
    DynamicBatching,
    ExecutionProvider,
    InstanceGroup,
    ModelConfig,
    ModelSignature,
    ResponseCacheConfig,
    SessionConfig,
    TensorConfig,
    TensorSignature,
    VersionPolicy,
    Warmup,
    WarmupInput,
    complete_config,
    config_to_dict,
    dump_yaml,
    load_model_config,
    parse_config_dict,
)

SOURCE = "model_repository/resnet/config.yaml"

FULL_EXAMPLE = """\
backend: onnxruntime
max_batch_size: 8
inputs:
  - name: input
    datatype: FP32
    dims: [3, 224, 224]
outputs:
  - name: logits
    datatype: FP32
    dims: [11]
execution_providers:
  - name: cuda
    options: {device_id: 0}
  - name: cpu
session:
  intra_op_num_threads: 0
  inter_op_num_threads: 1
  graph_optimization_level: all
  execution_mode: sequential
  enable_cpu_mem_arena: true
  enable_mem_pattern: false
  arena_extend_strategy: next_power_of_two
  intra_op_allow_spinning: true
instance_group: {count: 1, kind: auto}
dynamic_batching:
  max_queue_delay_microseconds: 500
  preferred_batch_size: [4, 8]
  max_queue_size: 256
  default_timeout_microseconds: 0
version_policy: {latest: 1}
model_warmup:
  - name: zeros
    batch_size: 4
    count: 2
    inputs: [{name: input, datatype: FP32, dims: [3,224,224], fill: zeros}]
parameters: {key: value}
response_cache: {enable: true}
"""


def parse(data: Any, name: str = "resnet") -> ModelConfig:
    return parse_config_dict(data, name, SOURCE)


def load_config_text(text: str) -> ModelConfig:
    return parse(yaml.safe_load(text))


def problems(data: Any, name: str = "resnet") -> list[str]:
    """The error lines of an invalid document, without the file prefix (checked separately)."""
    with pytest.raises(ConfigError) as info:
        parse(data, name)
    lines = str(info.value).splitlines()
    assert all(line.startswith(f"{SOURCE}: ") for line in lines), lines
    return [line.removeprefix(f"{SOURCE}: ") for line in lines]


def write_config(tmp_path: Path, text: str | bytes, name: str = "resnet") -> Path:
    model_dir = tmp_path / name
    model_dir.mkdir()
    path = model_dir / "config.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return model_dir


def tensor(name: str, *shape: int | None, datatype: str = "FP32") -> TensorSignature:
    return TensorSignature(name, datatype, tuple(shape))


def signature(inputs: list[TensorSignature], outputs: list[TensorSignature]) -> ModelSignature:
    return ModelSignature(tuple(inputs), tuple(outputs))


def completion_problems(config: ModelConfig, sig: ModelSignature) -> list[str]:
    with pytest.raises(ConfigError) as info:
        complete_config(config, sig, SOURCE)
    lines = str(info.value).splitlines()
    assert all(line.startswith(f"{SOURCE}: ") for line in lines), lines
    return [line.removeprefix(f"{SOURCE}: ") for line in lines]


IMAGE_MODEL = signature([tensor("input", None, 3, 224, 224)], [tensor("logits", None, 11)])


# ---------------------------------------------------------------------------------- loading


def test_missing_config_file_gives_defaults_named_after_the_folder(tmp_path: Path) -> None:
    model_dir = tmp_path / "densenet"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.onnx").write_bytes(b"")
    config = load_model_config(model_dir)
    assert config == ModelConfig(name="densenet")
    assert config.max_batch_size is None
    assert config.inputs == () and config.outputs == ()
    assert config.dynamic_batching is None
    assert config.version_policy == VersionPolicy(latest=1)


@pytest.mark.parametrize("text", ["", "\n", "# nothing configured yet\n"])
def test_empty_config_file_gives_defaults(tmp_path: Path, text: str) -> None:
    assert load_model_config(write_config(tmp_path, text)) == ModelConfig(name="resnet")


def test_full_example_parses_into_frozen_dataclasses(tmp_path: Path) -> None:
    config = load_model_config(write_config(tmp_path, FULL_EXAMPLE))
    assert config == ModelConfig(
        name="resnet",
        backend="onnxruntime",
        max_batch_size=8,
        inputs=(TensorConfig("input", "FP32", (3, 224, 224)),),
        outputs=(TensorConfig("logits", "FP32", (11,)),),
        execution_providers=(
            ExecutionProvider("CUDAExecutionProvider", {"device_id": "0"}),
            ExecutionProvider("CPUExecutionProvider", {}),
        ),
        session=SessionConfig(),
        instance_group=InstanceGroup(count=1, kind="auto"),
        dynamic_batching=DynamicBatching(
            max_queue_delay_microseconds=500,
            preferred_batch_size=(4, 8),
            max_queue_size=256,
            default_timeout_microseconds=0,
        ),
        version_policy=VersionPolicy(latest=1),
        model_warmup=(
            Warmup(
                name="zeros",
                batch_size=4,
                count=2,
                inputs=(WarmupInput("input", "FP32", (3, 224, 224), "zeros"),),
            ),
        ),
        parameters={"key": "value"},
        response_cache=ResponseCacheConfig(enable=True),
    )
    assert isinstance(config.inputs[0].dims, tuple)
    assert isinstance(config.dynamic_batching.preferred_batch_size, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_batch_size = 4  # type: ignore[misc]


def test_session_values_are_read() -> None:
    config = parse(
        {
            "session": {
                "intra_op_num_threads": 4,
                "inter_op_num_threads": 2,
                "graph_optimization_level": "basic",
                "execution_mode": "parallel",
                "enable_cpu_mem_arena": False,
                "enable_mem_pattern": False,
                "arena_extend_strategy": "same_as_requested",
            },
            "instance_group": {"count": 3, "kind": "gpu"},
        }
    )
    assert config.session == SessionConfig(
        4, 2, "basic", "parallel", False, False, "same_as_requested"
    )
    assert config.instance_group == InstanceGroup(count=3, kind="gpu")


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    model_dir = write_config(tmp_path, "max_batch_size: 8\ninputs: [\n  {name: x\nfoo: : bar\n")
    with pytest.raises(ConfigError) as info:
        load_model_config(model_dir)
    assert str(info.value) == (
        f"{model_dir / 'config.yaml'}: line 4, column 4: invalid YAML: expected ',' or '}}',"
        " but got ':'"
    )


def test_yaml_error_line_number_is_one_based(tmp_path: Path) -> None:
    model_dir = write_config(tmp_path, "max_batch_size: 8\nsession:\n  intra: 1\n bad: 2\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: line 4, column 2: invalid YAML: "):
        load_model_config(model_dir)


def test_more_than_one_yaml_document_is_an_error(tmp_path: Path) -> None:
    model_dir = write_config(tmp_path, "max_batch_size: 8\n---\nmax_batch_size: 4\n")
    with pytest.raises(ConfigError) as info:
        load_model_config(model_dir)
    assert str(info.value) == (
        f"{model_dir / 'config.yaml'}: line 2, column 1: invalid YAML: expected a single document"
        " in the stream, but found another document"
    )


def test_duplicate_yaml_key_is_an_error_with_both_lines(tmp_path: Path) -> None:
    model_dir = write_config(
        tmp_path, "max_batch_size: 8\nbackend: onnxruntime\nmax_batch_size: 4\n"
    )
    with pytest.raises(ConfigError) as info:
        load_model_config(model_dir)
    assert str(info.value) == (
        f"{model_dir / 'config.yaml'}: line 3, column 1: invalid YAML: "
        "key 'max_batch_size' is given twice (first on line 1)"
    )


def test_yaml_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    text = """\
    parameters:
      <<: {a: x, b: y}
      b: z
    """
    config = load_model_config(write_config(tmp_path, text))
    assert config.parameters == {"a": "x", "b": "z"}


@pytest.mark.parametrize(
    ("text", "got"),
    [("- name: x\n", "[{name: 'x'}]"), ("just text\n", "'just text'"), ("8\n", "8")],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, got: str) -> None:
    model_dir = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_model_config(model_dir)
    assert str(info.value) == (
        f"{model_dir / 'config.yaml'}: expected a mapping of config keys at the top, got {got}"
    )


def test_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    model_dir = write_config(tmp_path, b"max_batch_size: \xff\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: cannot read the file: .*utf-8"):
        load_model_config(model_dir)


def test_errors_name_the_config_file_path(tmp_path: Path) -> None:
    model_dir = write_config(tmp_path, "max_batch_size: -1\n")
    with pytest.raises(ConfigError) as info:
        load_model_config(model_dir)
    assert str(info.value) == (
        f"{model_dir / 'config.yaml'}: max_batch_size: expected an integer >= 0, got -1"
    )


def test_name_key_must_match_the_folder() -> None:
    assert parse({"name": "resnet"}).name == "resnet"
    assert problems({"name": "resnet50"}) == [
        "name: expected the model folder name 'resnet', got 'resnet50'"
    ]


@pytest.mark.parametrize("data", [{}, {"backend": "onnxruntime"}])
def test_backend_may_be_omitted_or_onnxruntime(data: dict[str, Any]) -> None:
    assert parse(data).backend == "onnxruntime"


def test_other_backend_is_an_error() -> None:
    assert problems({"backend": "tensorflow"}) == [
        "backend: expected 'onnxruntime' (the only backend), got 'tensorflow'"
    ]


# ---------------------------------------------------------------------------- schema errors


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"max_batch_sise": 8},
            "max_batch_sise: unknown key; did you mean 'max_batch_size'? valid keys here: name,"
            " backend, max_batch_size, inputs, outputs, execution_providers, session,"
            " instance_group, dynamic_batching, version_policy, model_warmup, parameters,"
            " response_cache",
        ),
        (
            {"session": {"intra_op_threads": 2}},
            "session.intra_op_threads: unknown key; did you mean 'intra_op_num_threads'? valid"
            " keys here: intra_op_num_threads, inter_op_num_threads, graph_optimization_level,"
            " execution_mode, enable_cpu_mem_arena, enable_mem_pattern, arena_extend_strategy,"
            " intra_op_allow_spinning",
        ),
        (
            {"inputs": [{"name": "x", "datatype": "FP32", "dims": [1], "shape": [1]}]},
            "inputs[0].shape: unknown key; valid keys here: name, datatype, dims",
        ),
        (
            {
                "model_warmup": [
                    {
                        "name": "w",
                        "inputs": [
                            {"name": "x", "datatype": "FP32", "dims": [1], "zero_data": True}
                        ],
                    }
                ]
            },
            "model_warmup[0].inputs[0].zero_data: unknown key; valid keys here: name, datatype,"
            " dims, fill",
        ),
    ],
)
def test_unknown_keys_are_named_with_their_path(data: dict[str, Any], expected: str) -> None:
    assert problems(data) == [expected]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"max_batch_size": True}, "max_batch_size: expected an integer, got true"),
        ({"max_batch_size": "8"}, "max_batch_size: expected an integer, got '8'"),
        ({"max_batch_size": 8.0}, "max_batch_size: expected an integer, got 8.0"),
        ({"max_batch_size": -1}, "max_batch_size: expected an integer >= 0, got -1"),
        (
            {"session": {"enable_mem_pattern": "yes"}},
            "session.enable_mem_pattern: expected true or false, got 'yes'",
        ),
        (
            {"session": {"intra_op_num_threads": -1}},
            "session.intra_op_num_threads: expected an integer >= 0, got -1",
        ),
        (
            {"session": {"inter_op_num_threads": False}},
            "session.inter_op_num_threads: expected an integer, got false",
        ),
        (
            {"session": {"graph_optimization_level": "full"}},
            "session.graph_optimization_level: expected one of 'disable', 'basic', 'extended'"
            " or 'all', got 'full'",
        ),
        (
            {"session": {"execution_mode": "async"}},
            "session.execution_mode: expected one of 'sequential' or 'parallel', got 'async'",
        ),
        (
            {"session": {"arena_extend_strategy": "double"}},
            "session.arena_extend_strategy: expected one of 'next_power_of_two' or"
            " 'same_as_requested', got 'double'",
        ),
        ({"session": [1]}, "session: expected a mapping, got [1]"),
        ({"instance_group": {"count": 0}}, "instance_group.count: expected an integer >= 1, got 0"),
        (
            {"instance_group": {"kind": "tpu"}},
            "instance_group.kind: expected one of 'auto', 'cpu' or 'gpu', got 'tpu'",
        ),
        ({"inputs": {"name": "x"}}, "inputs: expected a list, got {name: 'x'}"),
        (
            {"dynamic_batching": {"max_queue_delay_microseconds": -5}},
            "dynamic_batching.max_queue_delay_microseconds: expected an integer >= 0, got -5",
        ),
        (
            {"dynamic_batching": {"preferred_batch_size": [4, 0]}},
            "dynamic_batching.preferred_batch_size[1]: expected an integer >= 1, got 0",
        ),
        (
            {"model_warmup": [{"name": "w", "count": 0}]},
            "model_warmup[0].count: expected an integer >= 1, got 0",
        ),
        (
            {
                "model_warmup": [
                    {
                        "name": "w",
                        "inputs": [{"name": "x", "datatype": "FP32", "dims": [-1], "fill": "ones"}],
                    }
                ]
            },
            "model_warmup[0].inputs[0].dims[0]: expected an integer >= 1, got -1",
        ),
    ],
)
def test_type_and_range_errors(data: dict[str, Any], expected: str) -> None:
    assert problems(data)[0] == expected


def test_warmup_fill_must_be_zeros_or_random() -> None:
    data = {
        "model_warmup": [
            {
                "name": "w",
                "inputs": [{"name": "x", "datatype": "FP32", "dims": [1], "fill": "ones"}],
            }
        ]
    }
    assert problems(data) == [
        "model_warmup[0].inputs[0].fill: expected one of 'zeros' or 'random', got 'ones'"
    ]


def test_unknown_datatype_lists_the_valid_ones() -> None:
    data = {"outputs": [{"name": "y", "datatype": "FLOAT32", "dims": [2]}]}
    assert problems(data) == [
        "outputs[0].datatype: expected a datatype, one of BOOL, UINT8, UINT16, UINT32, UINT64,"
        " INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES, got 'FLOAT32'"
    ]


@pytest.mark.parametrize(
    ("dims", "expected"),
    [
        ([3, 0], "inputs[0].dims[1]: expected a positive integer or -1, got 0"),
        ([-2], "inputs[0].dims[0]: expected a positive integer or -1, got -2"),
        ([3, True], "inputs[0].dims[1]: expected an integer, got true"),
    ],
)
def test_dims_must_be_positive_or_minus_one(dims: list[Any], expected: str) -> None:
    assert problems({"inputs": [{"name": "x", "datatype": "FP32", "dims": dims}]}) == [expected]


def test_missing_required_tensor_keys() -> None:
    assert problems({"inputs": [{"name": "x"}]}) == [
        "inputs[0].datatype: required key is missing",
        "inputs[0].dims: required key is missing",
    ]


def test_all_schema_problems_are_reported_at_once() -> None:
    data = {
        "max_batch_size": "8",
        "inputs": [{"name": "x", "datatype": "FP33", "dims": [0]}],
        "session": {"intra_op_num_threads": -1},
        "instance_group": {"count": 0},
    }
    assert problems(data) == [
        "max_batch_size: expected an integer, got '8'",
        "inputs[0].datatype: expected a datatype, one of BOOL, UINT8, UINT16, UINT32, UINT64,"
        " INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES, got 'FP33'",
        "inputs[0].dims[0]: expected a positive integer or -1, got 0",
        "session.intra_op_num_threads: expected an integer >= 0, got -1",
        "instance_group.count: expected an integer >= 1, got 0",
    ]


def test_empty_values_mean_left_out() -> None:
    config = parse({"session": None, "inputs": None, "max_batch_size": None, "parameters": None})
    assert config == ModelConfig(name="resnet")


def test_dynamic_batching_present_but_empty_turns_batching_on() -> None:
    assert parse({"max_batch_size": 4, "dynamic_batching": None}).dynamic_batching == (
        DynamicBatching()
    )
    assert parse({"max_batch_size": 4, "dynamic_batching": {}}).dynamic_batching == (
        DynamicBatching()
    )
    assert parse({"max_batch_size": 4}).dynamic_batching is None


# ------------------------------------------------------------------- providers and parameters


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("cpu", "CPUExecutionProvider"),
        ("CUDA", "CUDAExecutionProvider"),
        ("tensorrt", "TensorrtExecutionProvider"),
        ("rocm", "ROCMExecutionProvider"),
        ("openvino", "OpenVINOExecutionProvider"),
        ("dml", "DmlExecutionProvider"),
        ("coreml", "CoreMLExecutionProvider"),
        ("CUDAExecutionProvider", "CUDAExecutionProvider"),
        ("SomeNewExecutionProvider", "SomeNewExecutionProvider"),
    ],
)
def test_provider_names(given: str, expected: str) -> None:
    config = parse({"execution_providers": [{"name": given}]})
    assert config.execution_providers == (ExecutionProvider(expected, {}),)


def test_unknown_provider_short_name_lists_the_known_ones() -> None:
    lines = problems({"execution_providers": [{"name": "cpu"}, {"name": "gpu"}]})
    assert len(lines) == 1
    assert lines[0].startswith(
        "execution_providers[1].name: expected an execution provider: one of cpu, cuda, tensorrt,"
    )
    assert lines[0].endswith("or onnxruntime's own name (ending in ExecutionProvider), got 'gpu'")


def test_provider_option_values_are_strings_for_onnxruntime() -> None:
    config = parse(
        {
            "execution_providers": [
                {"name": "cuda", "options": {"device_id": 1, "use_tf32": False, "mem": 0.5}},
                {"name": "cpu", "options": None},
            ]
        }
    )
    assert config.execution_providers == (
        ExecutionProvider(
            "CUDAExecutionProvider", {"device_id": "1", "use_tf32": "false", "mem": "0.5"}
        ),
        ExecutionProvider("CPUExecutionProvider", {}),
    )


def test_provider_option_must_be_a_plain_value() -> None:
    data = {"execution_providers": [{"name": "cuda", "options": {"device_id": [0, 1]}}]}
    assert problems(data) == [
        "execution_providers[0].options.device_id: expected a string, number or boolean, got [0, 1]"
    ]


def test_duplicate_providers_after_name_resolution() -> None:
    data = {"execution_providers": [{"name": "cuda"}, {"name": "CUDAExecutionProvider"}]}
    assert problems(data) == [
        "execution_providers[1].name: 'CUDAExecutionProvider' is already used by"
        " execution_providers[0]"
    ]


def test_parameters_are_a_string_map() -> None:
    config = parse({"parameters": {"threshold": 0.5, "top_k": 3, "label": "x", "debug": True}})
    assert config.parameters == {"threshold": "0.5", "top_k": "3", "label": "x", "debug": "true"}


def test_parameter_keys_must_be_strings() -> None:
    assert problems({"parameters": {1: "x"}}) == ["parameters: key 1: expected a string key"]


# --------------------------------------------------------------------------- version policy


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"latest": 2}, VersionPolicy(latest=2)),
        ({"all": True}, VersionPolicy(latest=None, all=True)),
        ({"specific": [1, 3]}, VersionPolicy(latest=None, specific=(1, 3))),
    ],
)
def test_version_policy_forms(given: dict[str, Any], expected: VersionPolicy) -> None:
    assert parse({"version_policy": given}).version_policy == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, "version_policy: expected exactly one of latest, all or specific, got none of them"),
        (
            {"latest": 1, "specific": [2]},
            "version_policy: expected exactly one of latest, all or specific, got latest, specific",
        ),
        ({"all": False}, "version_policy.all: expected true (serve every version), got false"),
        ({"latest": 0}, "version_policy.latest: expected an integer >= 1, got 0"),
        ({"specific": []}, "version_policy.specific: expected at least 1 item(s), got []"),
        ({"specific": [1, 0]}, "version_policy.specific[1]: expected an integer >= 1, got 0"),
        (
            {"newest": 1},
            "version_policy.newest: unknown key; valid keys here: latest, all, specific",
        ),
    ],
)
def test_version_policy_errors(given: dict[str, Any], expected: str) -> None:
    assert problems({"version_policy": given})[0] == expected


# ------------------------------------------------------------------------ cross-field checks


def test_preferred_batch_size_larger_than_max_batch_size() -> None:
    data = {"max_batch_size": 8, "dynamic_batching": {"preferred_batch_size": [4, 64]}}
    assert problems(data) == [
        "dynamic_batching.preferred_batch_size[1]: 64 is larger than max_batch_size 8"
    ]


def test_preferred_batch_size_listed_twice() -> None:
    data = {"max_batch_size": 8, "dynamic_batching": {"preferred_batch_size": [4, 8, 4]}}
    assert problems(data) == ["dynamic_batching.preferred_batch_size[2]: 4 is listed twice"]


def test_dynamic_batching_needs_a_batched_model() -> None:
    assert problems({"max_batch_size": 0, "dynamic_batching": {}}) == [
        "dynamic_batching: needs max_batch_size > 0 (a batched model), but max_batch_size is 0"
    ]


def test_warmup_batch_size_bounded_by_max_batch_size() -> None:
    warmup = [{"name": "a", "batch_size": 8}, {"name": "b", "batch_size": 9}]
    assert problems({"max_batch_size": 8, "model_warmup": warmup}) == [
        "model_warmup[1].batch_size: 9 is larger than max_batch_size 8"
    ]
    assert problems({"max_batch_size": 0, "model_warmup": [{"name": "a", "batch_size": 2}]}) == [
        "model_warmup[0].batch_size: 2 needs max_batch_size > 0 (a batched model), but"
        " max_batch_size is 0"
    ]
    assert parse({"max_batch_size": 0, "model_warmup": [{"name": "a"}]}).model_warmup == (
        Warmup("a"),
    )


def test_batch_size_checks_wait_for_max_batch_size() -> None:
    config = parse(
        {"dynamic_batching": {"preferred_batch_size": [64]}, "model_warmup": [{"name": "w"}]}
    )
    assert config.max_batch_size is None
    assert config.dynamic_batching == DynamicBatching(preferred_batch_size=(64,))


def test_duplicate_tensor_names() -> None:
    x = {"name": "x", "datatype": "FP32", "dims": [1]}
    y = {"name": "y", "datatype": "FP32", "dims": [1]}
    data = {"inputs": [x, y, x], "outputs": [y, y]}
    assert problems(data) == [
        "inputs[2].name: 'x' is already used by inputs[0]",
        "outputs[1].name: 'y' is already used by outputs[0]",
    ]


def test_duplicate_warmup_names() -> None:
    inp = {"name": "x", "datatype": "FP32", "dims": [1]}
    data = {"model_warmup": [{"name": "w", "inputs": [inp, inp]}, {"name": "w"}]}
    assert problems(data) == [
        "model_warmup[1].name: 'w' is already used by model_warmup[0]",
        "model_warmup[0].inputs[1].name: 'x' is already used by model_warmup[0].inputs[0]",
    ]


def test_warmup_inputs_checked_against_declared_inputs() -> None:
    data = {
        "max_batch_size": 4,
        "inputs": [{"name": "image", "datatype": "FP32", "dims": [3, -1, -1]}],
        "model_warmup": [
            {
                "name": "w",
                "inputs": [
                    {"name": "img", "datatype": "FP32", "dims": [3, 8, 8]},
                    {"name": "image", "datatype": "FP16", "dims": [4, 8, 8]},
                    {"name": "image", "datatype": "FP32", "dims": [3, 8]},
                ],
            }
        ],
    }
    assert problems(data) == [
        "model_warmup[0].inputs[2].name: 'image' is already used by model_warmup[0].inputs[1]",
        "model_warmup[0].inputs[0].name: 'img' is not an input of the model; inputs: 'image'",
        "model_warmup[0].inputs[1].datatype: expected FP32 as in input 'image', got FP16",
        "model_warmup[0].inputs[1].dims[0]: expected 3 as in input 'image' [3, -1, -1], got 4",
        "model_warmup[0].inputs[2].dims: expected 3 dimensions as in input 'image' [3, -1, -1],"
        " got 2: [3, 8]",
    ]


def test_cross_field_problems_are_reported_together() -> None:
    data = {
        "name": "other",
        "max_batch_size": 2,
        "dynamic_batching": {"preferred_batch_size": [4]},
        "model_warmup": [{"name": "w", "batch_size": 3}],
    }
    assert problems(data) == [
        "name: expected the model folder name 'resnet', got 'other'",
        "dynamic_batching.preferred_batch_size[0]: 4 is larger than max_batch_size 2",
        "model_warmup[0].batch_size: 3 is larger than max_batch_size 2",
    ]


# -------------------------------------------------------------------------------- completion


def test_batchable_model_is_completed_with_batching() -> None:
    completed = complete_config(ModelConfig(name="resnet"), IMAGE_MODEL, SOURCE)
    assert completed.max_batch_size == DEFAULT_MAX_BATCH_SIZE == 8
    assert completed.batched
    assert completed.dynamic_batching == DynamicBatching()
    assert completed.inputs == (TensorConfig("input", "FP32", (3, 224, 224)),)
    assert completed.outputs == (TensorConfig("logits", "FP32", (11,)),)


def test_completion_keeps_the_configured_dynamic_batching() -> None:
    config = parse({"dynamic_batching": {"preferred_batch_size": [4], "max_queue_size": 16}})
    completed = complete_config(config, IMAGE_MODEL, SOURCE)
    assert completed.max_batch_size == 8
    assert completed.dynamic_batching == DynamicBatching(
        preferred_batch_size=(4,), max_queue_size=16
    )


def test_model_with_fixed_first_dimension_is_not_batched() -> None:
    sig = signature([tensor("x", 1, None, 4)], [tensor("y", None, 2)])
    completed = complete_config(ModelConfig(name="m"), sig, SOURCE)
    assert completed.max_batch_size == 0
    assert not completed.batched
    assert completed.dynamic_batching is None
    assert completed.inputs == (TensorConfig("x", "FP32", (1, -1, 4)),)
    assert completed.outputs == (TensorConfig("y", "FP32", (-1, 2)),)


@pytest.mark.parametrize(
    "sig",
    [
        signature([tensor("x", None, 3)], [tensor("y", 1, 2)]),  # an output with a fixed batch
        signature([tensor("x")], [tensor("y", None)]),  # a scalar input
        signature([], [tensor("y", None)]),  # no inputs
    ],
)
def test_any_fixed_first_dimension_makes_the_model_unbatched(sig: ModelSignature) -> None:
    assert complete_config(ModelConfig(name="m"), sig, SOURCE).max_batch_size == 0


def test_explicit_unbatched_keeps_the_full_shape() -> None:
    completed = complete_config(parse({"max_batch_size": 0}), IMAGE_MODEL, SOURCE)
    assert completed.max_batch_size == 0
    assert completed.dynamic_batching is None
    assert completed.inputs == (TensorConfig("input", "FP32", (-1, 3, 224, 224)),)


def test_explicit_max_batch_size_without_dynamic_batching() -> None:
    completed = complete_config(parse({"max_batch_size": 4}), IMAGE_MODEL, SOURCE)
    assert completed.max_batch_size == 4
    assert completed.dynamic_batching is None
    assert completed.inputs[0].dims == (3, 224, 224)


def test_explicit_max_batch_size_needs_a_dynamic_first_dimension() -> None:
    sig = signature([tensor("x", 1, 3)], [tensor("y", None, 2), tensor("z", 1)])
    assert completion_problems(parse({"max_batch_size": 4}), sig) == [
        "max_batch_size: 4 needs a dynamic first (batch) dimension, but the model's input 'x'"
        " has shape [1, 3]; set max_batch_size: 0 to serve the model unbatched",
        "max_batch_size: 4 needs a dynamic first (batch) dimension, but the model's output 'z'"
        " has shape [1]; set max_batch_size: 0 to serve the model unbatched",
    ]


def test_outputs_not_served_need_no_batch_dimension() -> None:
    sig = signature([tensor("x", None, 3)], [tensor("y", None, 2), tensor("debug", 1)])
    config = parse(
        {"max_batch_size": 4, "outputs": [{"name": "y", "datatype": "FP32", "dims": [2]}]}
    )
    completed = complete_config(config, sig, SOURCE)
    assert completed.outputs == (TensorConfig("y", "FP32", (2,)),)
    assert completed.inputs == (TensorConfig("x", "FP32", (3,)),)


def test_dynamic_batching_on_a_model_that_cannot_batch() -> None:
    sig = signature([tensor("x", 1, 3)], [tensor("y", 1, 2)])
    assert completion_problems(parse({"dynamic_batching": {}}), sig) == [
        "dynamic_batching: needs max_batch_size > 0 (a batched model), but max_batch_size is 0"
        " (completed from the model: input 'x' has shape [1, 3], no dynamic first dimension)"
    ]


def test_batch_sizes_checked_against_the_completed_max_batch_size() -> None:
    config = parse(
        {
            "dynamic_batching": {"preferred_batch_size": [16]},
            "model_warmup": [{"name": "w", "batch_size": 32}],
        }
    )
    assert completion_problems(config, IMAGE_MODEL) == [
        "dynamic_batching.preferred_batch_size[0]: 16 is larger than max_batch_size 8"
        " (completed from the model)",
        "model_warmup[0].batch_size: 32 is larger than max_batch_size 8 (completed from the model)",
    ]


def test_declared_tensors_are_checked_and_narrowed() -> None:
    sig = signature(
        [tensor("ids", None, None, datatype="INT64"), tensor("mask", None, 128, datatype="INT64")],
        [tensor("logits", None, 2)],
    )
    config = parse(
        {
            "max_batch_size": 16,
            "inputs": [
                {"name": "ids", "datatype": "INT64", "dims": [128]},
                {"name": "mask", "datatype": "INT64", "dims": [-1]},
            ],
            "outputs": [{"name": "logits", "datatype": "FP32", "dims": [-1]}],
        }
    )
    completed = complete_config(config, sig, SOURCE)
    # A fixed declared size stays where the model is dynamic; -1 takes the model's fixed size.
    assert completed.inputs == (
        TensorConfig("ids", "INT64", (128,)),
        TensorConfig("mask", "INT64", (128,)),
    )
    assert completed.outputs == (TensorConfig("logits", "FP32", (2,)),)
    assert complete_config(completed, sig, SOURCE) == completed


def test_declared_tensor_mismatches() -> None:
    sig = signature(
        [tensor("image", None, 3, 224, 224), tensor("scale", None, 1)],
        [tensor("logits", None, 11)],
    )
    config = parse(
        {
            "inputs": [
                {"name": "image", "datatype": "FP16", "dims": [3, 225, 224]},
                {"name": "scales", "datatype": "FP32", "dims": [1]},
            ],
            "outputs": [{"name": "logits", "datatype": "FP32", "dims": [-1, 11]}],
        }
    )
    assert completion_problems(config, sig) == [
        "inputs[0].datatype: expected FP32 as in the model's input 'image', got FP16",
        "inputs[0].dims[1]: expected 224 as in the model's input 'image' [3, 224, 224], got 225",
        "inputs[1].name: 'scales' is not an input of the model; the model's inputs: 'image',"
        " 'scale'",
        "inputs: the model's input 'scale' is not declared; when inputs are given, every input"
        " must be listed",
        "outputs[0].dims: expected 1 dimensions as in the model's output 'logits' [11], got 2:"
        " [-1, 11]; dims leave out the batch dimension, as max_batch_size is 8 (completed from"
        " the model)",
    ]


def test_declared_output_must_exist() -> None:
    config = parse({"outputs": [{"name": "prob", "datatype": "FP32", "dims": [11]}]})
    assert completion_problems(config, IMAGE_MODEL) == [
        "outputs[0].name: 'prob' is not an output of the model; the model's outputs: 'logits'"
    ]


def test_unbatched_declared_dims_are_the_full_shape() -> None:
    config = parse(
        {"max_batch_size": 0, "inputs": [{"name": "input", "datatype": "FP32", "dims": [3, 224]}]}
    )
    assert completion_problems(config, IMAGE_MODEL) == [
        "inputs[0].dims: expected 4 dimensions as in the model's input 'input' [-1, 3, 224, 224],"
        " got 2: [3, 224]"
    ]


def test_warmup_inputs_checked_against_completed_inputs() -> None:
    config = parse(
        {
            "model_warmup": [
                {"name": "ok", "batch_size": 2},
                {"name": "bad", "inputs": [{"name": "pixels", "datatype": "FP32", "dims": [3]}]},
            ]
        }
    )
    assert completion_problems(config, IMAGE_MODEL) == [
        "model_warmup[1].inputs[0].name: 'pixels' is not an input of the model; inputs: 'input'"
    ]


def test_warmup_inputs_left_out_stay_empty_for_the_backend() -> None:
    config = parse({"model_warmup": [{"name": "w", "batch_size": 2}]})
    completed = complete_config(config, IMAGE_MODEL, SOURCE)
    assert completed.model_warmup == (Warmup("w", batch_size=2),)


def test_completion_is_idempotent_and_keeps_other_fields() -> None:
    config = load_config_text(FULL_EXAMPLE)
    completed = complete_config(config, IMAGE_MODEL, SOURCE)
    assert completed == config
    assert complete_config(completed, IMAGE_MODEL, SOURCE) == completed


# ---------------------------------------------------------------------------------- printing


def test_config_to_dict_is_plain_data_in_config_yaml_layout() -> None:
    data = config_to_dict(load_config_text(FULL_EXAMPLE))
    expected = yaml.safe_load(FULL_EXAMPLE)
    expected["name"] = "resnet"
    expected["execution_providers"] = [
        {"name": "CUDAExecutionProvider", "options": {"device_id": "0"}},
        {"name": "CPUExecutionProvider", "options": {}},
    ]
    assert data == expected
    assert list(data) == [f.name for f in dataclasses.fields(ModelConfig)]


def test_config_to_dict_leaves_out_unknown_values() -> None:
    data = config_to_dict(ModelConfig(name="m"))
    assert "max_batch_size" not in data
    assert "dynamic_batching" not in data
    assert data["version_policy"] == {"latest": 1}
    assert data["inputs"] == []


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (VersionPolicy(latest=3), {"latest": 3}),
        (VersionPolicy(latest=None, all=True), {"all": True}),
        (VersionPolicy(latest=None, specific=(2, 5)), {"specific": [2, 5]}),
    ],
)
def test_version_policy_to_dict(policy: VersionPolicy, expected: dict[str, Any]) -> None:
    assert config_to_dict(ModelConfig(name="m", version_policy=policy))["version_policy"] == (
        expected
    )


def test_dump_yaml_reads_back_to_the_same_config(tmp_path: Path) -> None:
    config = complete_config(load_config_text(FULL_EXAMPLE), IMAGE_MODEL, SOURCE)
    text = dump_yaml(config)
    assert "  dims: [3, 224, 224]\n" in text
    assert "session:\n  intra_op_num_threads: 0\n" in text
    assert load_model_config(write_config(tmp_path, text)) == config


def test_completed_default_config_round_trips() -> None:
    completed = complete_config(ModelConfig(name="resnet"), IMAGE_MODEL, SOURCE)
    assert parse(config_to_dict(completed)) == completed
    assert parse(yaml.safe_load(dump_yaml(completed))) == completed


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=8)
dims = st.lists(st.integers(1, 64) | st.just(-1), max_size=4).map(tuple)
tensors = st.lists(
    st.builds(TensorConfig, names, st.sampled_from(["FP32", "INT64", "BYTES", "BOOL"]), dims),
    max_size=3,
    unique_by=lambda t: t.name,
).map(tuple)


@given(
    inputs=tensors,
    outputs=tensors,
    max_batch_size=st.none() | st.integers(1, 64),
    parameters=st.dictionaries(names, st.text(max_size=10), max_size=3),
    policy=st.sampled_from(
        [VersionPolicy(), VersionPolicy(latest=None, all=True), VersionPolicy(None, specific=(2,))]
    ),
)
def test_any_valid_config_round_trips_through_yaml(
    inputs: tuple[TensorConfig, ...],
    outputs: tuple[TensorConfig, ...],
    max_batch_size: int | None,
    parameters: dict[str, str],
    policy: VersionPolicy,
) -> None:
    config = ModelConfig(
        name="m",
        max_batch_size=max_batch_size,
        inputs=inputs,
        outputs=outputs,
        version_policy=policy,
        parameters=parameters,
    )
    assert parse_config_dict(yaml.safe_load(dump_yaml(config)), "m", SOURCE) == config
