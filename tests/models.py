"""Tiny ONNX models for tests, written into a model repository folder.

Every builder writes `<repo_dir>/<name>/config.yaml` and `<repo_dir>/<name>/<version>/model.onnx`
and returns the model folder `<repo_dir>/<name>`. The common signature is

    build_x(repo_dir, name="x", version=1, config=None, *, <model options>) -> Path

`config` is merged over the builder's default config key by key at the top level; a key set to
None removes it. So `config={"instance_group": {"count": 2}}` keeps the declared inputs and
outputs, and `config={"dynamic_batching": None}` turns batching off. For an exact file, or for
malformed YAML, call write_config() after building.

In `dims`, -1 is a dimension of any size (a symbolic dimension in the ONNX file). With
max_batch_size > 0 the ONNX tensors also have a leading dynamic batch dimension that `dims`
leaves out, as in config.yaml.

Models (all CPU, opset 17, IR version 8):
  double       INPUT0 FP32 -> OUTPUT0 = 2 * INPUT0; ID INT64 [1] -> ID_OUT (echo), so a test can
               tell which rows of a dynamic batch came back in which response.
  add_sub      Triton's example: INPUT0, INPUT1 [16] -> OUTPUT0 = a + b, OUTPUT1 = a - b.
  identity     INPUT0 -> OUTPUT0 for one protocol datatype; build_identity_all() writes one per
               datatype, named identity_<datatype lowercase> (identity_fp32, identity_bytes...).
  nonbatched   max_batch_size 0; INPUT0 FP32 [2, 3] -> OUTPUT0 FP32 [3, 2] = transpose(INPUT0).
  slow         INPUT0 FP32 -> OUTPUT0 = INPUT0, after a fixed amount of single-threaded work
               whatever the batch size (see build_slow for the timings).
  versioned    version v: INPUT0 FP32 -> OUTPUT0 = INPUT0 + v.
  wide         INPUT0 FP32 [-1] -> OUTPUT0 FP32 [-1]: per value, the sum of tanh over `width`
               scaled copies; its intermediates are `width` times the input, so ONNX
               Runtime's memory use follows the request's shape.
  broken       garbage bytes in model.onnx with a valid config.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # loads in every onnxruntime release since 1.10
BATCH_DIM = "batch"

# Protocol datatype -> ONNX element type; covers every datatype of server/datatypes.py.
ONNX_TYPES: dict[str, int] = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}
DATATYPES: tuple[str, ...] = tuple(ONNX_TYPES)

# build_slow: one loop iteration (a [16,128] x [128,128] MatMul and a Tanh) took about this long
# with one intra-op thread on a 2-core AMD EPYC VM with onnxruntime 1.32.
SLOW_MICROSECONDS_PER_ITERATION = 8.3


# --- writing files -------------------------------------------------------------------------


def write_config(repo_dir: Path, name: str, config: Mapping[str, Any] | str) -> Path:
    """Writes <repo_dir>/<name>/config.yaml from a dict (as YAML) or verbatim from a str.

    The file is left alone when it already has exactly this content, so rewriting a config
    does not look like a change to a server that watches modification times.
    """
    model_dir = Path(repo_dir) / name
    text = config if isinstance(config, str) else yaml.safe_dump(dict(config), sort_keys=False)
    path = model_dir / "config.yaml"
    if not (path.is_file() and path.read_text() == text):
        _write_atomically(path, text.encode())
    return model_dir


def write_model(
    repo_dir: Path,
    name: str,
    version: int,
    model: onnx.ModelProto | bytes,
    config: Mapping[str, Any] | str | None,
) -> Path:
    """Writes <name>/<version>/model.onnx (checked unless given as bytes) and, if given, the config.

    model.onnx is written to a temporary file and renamed into place, so a server polling the
    repository never reads half a file.
    """
    if isinstance(model, onnx.ModelProto):
        onnx.checker.check_model(model, full_check=True)
        data = model.SerializeToString()
    else:
        data = bytes(model)
    model_dir = Path(repo_dir) / name
    _write_atomically(model_dir / str(version) / "model.onnx", data)
    if config is not None:
        write_config(repo_dir, name, config)
    return model_dir


def write_broken_model(
    repo_dir: Path,
    name: str = "broken",
    version: int = 1,
    config: Mapping[str, Any] | None = None,
    *,
    content: bytes = b"this is not an ONNX model\x00\xff\xfe",
) -> Path:
    """A model folder whose model.onnx holds `content` (garbage by default) and a valid config."""
    defaults = {"backend": "onnxruntime", "max_batch_size": 8}
    return write_model(repo_dir, name, version, content, _merge(defaults, config))


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    initializers: Sequence[onnx.TensorProto] = (),
    name: str = "test_model",
) -> onnx.ModelProto:
    """A ModelProto at the opset and IR version every model here uses."""
    graph = helper.make_graph(list(nodes), name, list(inputs), list(outputs), list(initializers))
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="onnxserve tests/models.py",
    )


def tensor(name: str, datatype: str, dims: Sequence[int], batched: bool = True):
    """An ONNX value info; -1 dims become symbolic, `batched` adds the leading batch dimension."""
    shape: list[int | str] = [BATCH_DIM] if batched else []
    shape += [f"{name}_d{i}" if d == -1 else d for i, d in enumerate(dims)]
    return helper.make_tensor_value_info(name, ONNX_TYPES[datatype], shape)


def tensor_config(name: str, datatype: str, dims: Sequence[int]) -> dict[str, Any]:
    """One entry of config.yaml's inputs/outputs."""
    return {"name": name, "datatype": datatype, "dims": list(dims)}


# --- models --------------------------------------------------------------------------------


def build_double(
    repo_dir: Path,
    name: str = "double",
    version: int = 1,
    config: Mapping[str, Any] | None = None,
    *,
    dims: Sequence[int] = (-1,),
    with_id: bool = True,
) -> Path:
    """OUTPUT0 = 2 * INPUT0 (FP32, `dims`), and ID (INT64 [1]) echoed as ID_OUT.

    With the default dims (-1,) requests of different lengths can share the model, which is what
    batcher tests need. Default config: max_batch_size 8, dynamic batching with a 1 ms delay.
    with_id=False leaves out ID and ID_OUT.
    """
    nodes = [helper.make_node("Mul", ["INPUT0", "two"], ["OUTPUT0"])]
    inputs = [tensor("INPUT0", "FP32", dims)]
    outputs = [tensor("OUTPUT0", "FP32", dims)]
    input_configs = [tensor_config("INPUT0", "FP32", dims)]
    output_configs = [tensor_config("OUTPUT0", "FP32", dims)]
    if with_id:
        nodes.append(helper.make_node("Identity", ["ID"], ["ID_OUT"]))
        inputs.append(tensor("ID", "INT64", [1]))
        outputs.append(tensor("ID_OUT", "INT64", [1]))
        input_configs.append(tensor_config("ID", "INT64", [1]))
        output_configs.append(tensor_config("ID_OUT", "INT64", [1]))
    model = make_model(
        nodes, inputs, outputs, [numpy_helper.from_array(np.array(2, np.float32), "two")], name
    )
    defaults = {
        "backend": "onnxruntime",
        "max_batch_size": 8,
        "inputs": input_configs,
        "outputs": output_configs,
        "instance_group": {"count": 1},
        "dynamic_batching": {"max_queue_delay_microseconds": 1000},
    }
    return write_model(repo_dir, name, version, model, _merge(defaults, config))


def build_add_sub(
    repo_dir: Path,
    name: str = "add_sub",
    version: int = 1,
    config: Mapping[str, Any] | None = None,
    *,
    datatype: str = "FP32",
    dims: Sequence[int] = (16,),
) -> Path:
    """OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1; all `datatype` and `dims`.

    datatype: FP32 (default), FP64, INT32 or INT64. Default config: max_batch_size 8, no
    dynamic batching (Triton's `simple` model, so tritonclient examples work against it).
    """
    model = make_model(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        [tensor("INPUT0", datatype, dims), tensor("INPUT1", datatype, dims)],
        [tensor("OUTPUT0", datatype, dims), tensor("OUTPUT1", datatype, dims)],
        name=name,
    )
    defaults = {
        "backend": "onnxruntime",
        "max_batch_size": 8,
        "inputs": [tensor_config(n, datatype, dims) for n in ("INPUT0", "INPUT1")],
        "outputs": [tensor_config(n, datatype, dims) for n in ("OUTPUT0", "OUTPUT1")],
    }
    return write_model(repo_dir, name, version, model, _merge(defaults, config))


def build_identity(
    repo_dir: Path,
    name: str | None = None,
    version: int = 1,
    config: Mapping[str, Any] | None = None,
    *,
    datatype: str = "FP32",
    dims: Sequence[int] = (-1,),
) -> Path:
    """OUTPUT0 = INPUT0 for one protocol datatype; name defaults to identity_<datatype lowercase>.

    BYTES is an ONNX string tensor. Note that onnxruntime's Python API only round-trips str
    elements: feed an object array of str (bytes elements come back as their repr, "b'..'"),
    and string outputs come back as str. Default config: max_batch_size 8, no dynamic batching.
    """
    name = name or f"identity_{datatype.lower()}"
    model = make_model(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        [tensor("INPUT0", datatype, dims)],
        [tensor("OUTPUT0", datatype, dims)],
        name=name,
    )
    defaults = {
        "backend": "onnxruntime",
        "max_batch_size": 8,
        "inputs": [tensor_config("INPUT0", datatype, dims)],
        "outputs": [tensor_config("OUTPUT0", datatype, dims)],
    }
    return write_model(repo_dir, name, version, model, _merge(defaults, config))


def build_identity_all(
    repo_dir: Path, config: Mapping[str, Any] | None = None, *, dims: Sequence[int] = (-1,)
) -> dict[str, Path]:
    """build_identity for every protocol datatype; returns {datatype: model folder}."""
    return {
        datatype: build_identity(repo_dir, config=config, datatype=datatype, dims=dims)
        for datatype in DATATYPES
    }


def build_nonbatched(
    repo_dir: Path,
    name: str = "nonbatched",
    version: int = 1,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """max_batch_size 0: INPUT0 FP32 [2, 3] -> OUTPUT0 FP32 [3, 2] = transpose(INPUT0).

    The output shape differs from the input shape, so a server that treats the first dimension
    as a batch dimension, or copies the input shape to the output, gets caught.
    """
    model = make_model(
        [helper.make_node("Transpose", ["INPUT0"], ["OUTPUT0"], perm=[1, 0])],
        [tensor("INPUT0", "FP32", [2, 3], batched=False)],
        [tensor("OUTPUT0", "FP32", [3, 2], batched=False)],
        name=name,
    )
    defaults = {
        "backend": "onnxruntime",
        "max_batch_size": 0,
        "inputs": [tensor_config("INPUT0", "FP32", [2, 3])],
        "outputs": [tensor_config("OUTPUT0", "FP32", [3, 2])],
    }
    return write_model(repo_dir, name, version, model, _merge(defaults, config))


def build_slow(
    repo_dir: Path,
    name: str = "slow",
    version: int = 1,
    config: Mapping[str, Any] | None = None,
    *,
    milliseconds: float = 50.0,
    dims: Sequence[int] = (-1,),
) -> Path:
    """OUTPUT0 = INPUT0 (FP32, `dims`, bit-exact), computed after about `milliseconds` of work.

    The work is a Loop of round(milliseconds * 1000 / SLOW_MICROSECONDS_PER_ITERATION) small
    MatMul + Tanh steps on a constant-size state: the same work for any batch size, and
    cancellable between iterations with RunOptions.terminate. Measured here (2-core AMD EPYC VM,
    onnxruntime 1.32, 1 intra-op thread, medians): milliseconds=20 -> 20 ms, 50 -> 49-51 ms,
    100 -> 97-100 ms; 2 intra-op threads are only 5-15% faster. Two sessions on two cores run in
    parallel without slowing each other. It is plain CPU work, so faster machines finish sooner
    and runs slow each other down once they outnumber the cores: assert floors well below
    `milliseconds` (the unit test uses 20 ms for 50).

    Default config: max_batch_size 8, dynamic batching without delay, one instance with one
    intra-op thread.
    """
    iterations = max(1, round(milliseconds * 1000 / SLOW_MICROSECONDS_PER_ITERATION))
    rows, width = 16, 128
    rng = np.random.default_rng(0)
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["state_in", "weights"], ["product"]),
            helper.make_node("Tanh", ["product"], ["state_out"]),
        ],
        "slow_body",
        [
            helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [rows, width]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [rows, width]),
        ],
    )
    nodes = [
        # The start state depends on the input's batch size, so onnxruntime cannot precompute
        # the loop when it creates the session; tanh keeps every value in [-1, 1].
        helper.make_node("Shape", ["INPUT0"], ["batch_size"], start=0, end=1),
        helper.make_node("Cast", ["batch_size"], ["batch_size_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["batch_size_f", "start_scale"], ["start_value"]),
        helper.make_node("Expand", ["start_value", "state_shape"], ["start_state"]),
        helper.make_node("Loop", ["iterations", "true", "start_state"], ["end_state"], body=body),
        helper.make_node("ReduceSum", ["end_state"], ["total"], keepdims=0),
        # |total| <= rows * width, so the condition is always false and OUTPUT0 is INPUT0 bit
        # for bit; but OUTPUT0 depends on the loop, so the loop cannot be optimised away.
        helper.make_node("Greater", ["total", "never"], ["impossible"]),
        helper.make_node("Where", ["impossible", "zero", "INPUT0"], ["OUTPUT0"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array(iterations, np.int64), "iterations"),
        numpy_helper.from_array(np.array(True), "true"),
        numpy_helper.from_array(np.array(0.01, np.float32), "start_scale"),
        numpy_helper.from_array(np.array([rows, width], np.int64), "state_shape"),
        numpy_helper.from_array(
            rng.normal(0, 1 / np.sqrt(width), (width, width)).astype(np.float32), "weights"
        ),
        numpy_helper.from_array(np.array(2.0 * rows * width, np.float32), "never"),
        numpy_helper.from_array(np.array(0, np.float32), "zero"),
    ]
    model = make_model(
        nodes,
        [tensor("INPUT0", "FP32", dims)],
        [tensor("OUTPUT0", "FP32", dims)],
        initializers,
        name,
    )
    model.doc_string = f"{iterations} loop iterations, about {milliseconds:g} ms"
    defaults = {
        "backend": "onnxruntime",
        "max_batch_size": 8,
        "inputs": [tensor_config("INPUT0", "FP32", dims)],
        "outputs": [tensor_config("OUTPUT0", "FP32", dims)],
        "instance_group": {"count": 1},
        "session": {"intra_op_num_threads": 1},
        "dynamic_batching": {"max_queue_delay_microseconds": 0},
    }
    return write_model(repo_dir, name, version, model, _merge(defaults, config))


def build_add_constant(
    repo_dir: Path,
    name: str = "add_constant",
    version: int = 1,
    config: Mapping[str, Any] | None = None,
    *,
    addend: float = 1.0,
    dims: Sequence[int] = (-1,),
) -> Path:
    """OUTPUT0 = INPUT0 + addend (FP32, `dims`). Default config: max_batch_size 8."""
    model = make_model(
        [helper.make_node("Add", ["INPUT0", "addend"], ["OUTPUT0"])],
        [tensor("INPUT0", "FP32", dims)],
        [tensor("OUTPUT0", "FP32", dims)],
        [numpy_helper.from_array(np.array(addend, np.float32), "addend")],
        name,
    )
    defaults = {
        "backend": "onnxruntime",
        "max_batch_size": 8,
        "inputs": [tensor_config("INPUT0", "FP32", dims)],
        "outputs": [tensor_config("OUTPUT0", "FP32", dims)],
    }
    return write_model(repo_dir, name, version, model, _merge(defaults, config))


def build_versioned(
    repo_dir: Path,
    name: str = "versioned",
    versions: Iterable[int] = (1, 2),
    config: Mapping[str, Any] | None = None,
    *,
    dims: Sequence[int] = (-1,),
) -> Path:
    """One version folder per entry of `versions`; version v computes OUTPUT0 = INPUT0 + v.

    Call it again with versions=[3] to add a version to a live repository (config.yaml is only
    rewritten when its content changes). The default config has no version_policy, so the
    server's default applies (the highest version only); pass
    config={"version_policy": {"all": True}} to serve every version.
    """
    model_dir = Path(repo_dir) / name
    for version in versions:
        model_dir = build_add_constant(
            repo_dir, name, version, config, addend=float(version), dims=dims
        )
    return model_dir


def build_wide(
    repo_dir: Path,
    name: str = "wide",
    version: int = 1,
    config: Mapping[str, Any] | None = None,
    *,
    width: int = 256,
) -> Path:
    """OUTPUT0[b, i] = sum_k tanh(INPUT0[b, i] * scale[k]) over `width` scales in [0.5, 1.5].

    Memory-heavy and cheap: a [rows, n] request makes [rows, n, width] FP32 intermediates
    (32 MiB for 16 x 2048 at the default width), so allocator behaviour under varying batch
    sizes and lengths shows in the server's RSS. Default config: max_batch_size 16, dynamic
    batching without delay.
    """
    scales = np.linspace(0.5, 1.5, width).astype(np.float32)
    nodes = [
        helper.make_node("Unsqueeze", ["INPUT0", "last_axis"], ["column"]),
        helper.make_node("Mul", ["column", "scales"], ["scaled"]),  # broadcasts to [.., width]
        helper.make_node("Tanh", ["scaled"], ["bent"]),
        helper.make_node("ReduceSum", ["bent", "last_axis"], ["OUTPUT0"], keepdims=0),
    ]
    initializers = [
        numpy_helper.from_array(np.array([2], np.int64), "last_axis"),
        numpy_helper.from_array(scales, "scales"),
    ]
    model = make_model(
        nodes,
        [tensor("INPUT0", "FP32", [-1])],
        [tensor("OUTPUT0", "FP32", [-1])],
        initializers,
        name,
    )
    defaults = {
        "backend": "onnxruntime",
        "max_batch_size": 16,
        "inputs": [tensor_config("INPUT0", "FP32", [-1])],
        "outputs": [tensor_config("OUTPUT0", "FP32", [-1])],
        "dynamic_batching": {"max_queue_delay_microseconds": 0},
    }
    return write_model(repo_dir, name, version, model, _merge(defaults, config))


# --- helpers -------------------------------------------------------------------------------


def _merge(defaults: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in (overrides or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
