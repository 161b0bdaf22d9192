"""Runs every model of tests/models.py with onnxruntime directly, so a broken builder fails here
rather than as a confusing server test failure."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from onnx import numpy_helper

from tests import models


def session(model_dir: Path, version: int = 1, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 4  # a cancelled run is logged as an error; expected here
    path = model_dir / str(version) / "model.onnx"
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def config(model_dir: Path) -> dict:
    return yaml.safe_load((model_dir / "config.yaml").read_text())


def test_double_doubles_and_echoes_ids(tmp_path: Path) -> None:
    model_dir = models.build_double(tmp_path)
    assert model_dir == tmp_path / "double"
    s = session(model_dir)
    for length in (1, 5):
        x = np.arange(3 * length, dtype=np.float32).reshape(3, length) - 4.5
        ids = np.array([[7], [-1], [2**40]], np.int64)
        out, id_out = s.run(["OUTPUT0", "ID_OUT"], {"INPUT0": x, "ID": ids})
        np.testing.assert_array_equal(out, 2 * x)
        np.testing.assert_array_equal(id_out, ids)
        assert id_out.dtype == np.int64
    cfg = config(model_dir)
    assert cfg["max_batch_size"] == 8
    assert "dynamic_batching" in cfg
    assert [i["name"] for i in cfg["inputs"]] == ["INPUT0", "ID"]


def test_double_fixed_dims_without_id(tmp_path: Path) -> None:
    model_dir = models.build_double(tmp_path, "double_fixed", dims=(2, 3), with_id=False)
    s = session(model_dir)
    assert [i.name for i in s.get_inputs()] == ["INPUT0"]
    assert s.get_inputs()[0].shape == [models.BATCH_DIM, 2, 3]
    x = np.ones((4, 2, 3), np.float32)
    (out,) = s.run(None, {"INPUT0": x})
    np.testing.assert_array_equal(out, 2 * x)
    assert config(model_dir)["inputs"] == [{"name": "INPUT0", "datatype": "FP32", "dims": [2, 3]}]


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT32", "INT64"])
def test_add_sub(tmp_path: Path, datatype: str) -> None:
    s = session(models.build_add_sub(tmp_path, datatype=datatype))
    dtype = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64}
    a = np.arange(32).reshape(2, 16).astype(dtype[datatype])
    b = np.full((2, 16), 3).astype(dtype[datatype])
    plus, minus = s.run(["OUTPUT0", "OUTPUT1"], {"INPUT0": a, "INPUT1": b})
    np.testing.assert_array_equal(plus, a + b)
    np.testing.assert_array_equal(minus, a - b)
    assert plus.dtype == dtype[datatype]


def _sample(datatype: str) -> np.ndarray:
    """Values that hit each type's edges, shaped [batch 2, 3]."""
    if datatype == "BOOL":
        return np.array([[True, False, True], [False, False, True]])
    if datatype == "BYTES":
        values = ["", "hello", "zero\x00inside", "é ünïcode", "x" * 1000, "\n"]
        return np.array(values, dtype=object).reshape(2, 3)
    dtype = np.dtype(
        {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}.get(datatype)
        or datatype.lower()
    )
    if dtype.kind == "f":
        info = np.finfo(dtype)
        values = [info.min, info.max, info.tiny, -0.0, np.inf, 1.5]
    else:
        info = np.iinfo(dtype)
        values = [info.min, info.max, 0, 1, info.max - 1, info.min + 1]
    return np.array(values, dtype=dtype).reshape(2, 3)


def test_identity_covers_every_protocol_datatype() -> None:
    from server.datatypes import NAMES

    assert set(models.DATATYPES) == set(NAMES)


@pytest.mark.parametrize("datatype", models.DATATYPES)
def test_identity_round_trip(tmp_path: Path, datatype: str) -> None:
    model_dir = models.build_identity(tmp_path, datatype=datatype)
    assert model_dir.name == f"identity_{datatype.lower()}"
    s = session(model_dir)
    x = _sample(datatype)
    (out,) = s.run(None, {"INPUT0": x})
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    if datatype == "BYTES":
        assert out.tolist() == x.tolist()
    else:
        np.testing.assert_array_equal(out, x)
        assert out.tobytes() == x.tobytes()  # bit-exact, -0.0 included
    assert config(model_dir)["inputs"][0]["datatype"] == datatype


def test_identity_all(tmp_path: Path) -> None:
    folders = models.build_identity_all(tmp_path)
    assert set(folders) == set(models.DATATYPES)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"identity_{d.lower()}" for d in models.DATATYPES
    )


def test_nonbatched_transposes_a_fixed_shape(tmp_path: Path) -> None:
    model_dir = models.build_nonbatched(tmp_path)
    s = session(model_dir)
    assert s.get_inputs()[0].shape == [2, 3]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (out,) = s.run(None, {"INPUT0": x})
    np.testing.assert_array_equal(out, x.T)
    assert config(model_dir)["max_batch_size"] == 0


def _median_run_seconds(s: ort.InferenceSession, feed: dict, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        s.run(None, feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def test_slow_echoes_after_its_floor(tmp_path: Path) -> None:
    model_dir = models.build_slow(tmp_path)  # about 50 ms
    s = session(model_dir)
    x = np.array([[-0.0, np.nan, np.inf], [1e30, -1.0, 3.25]], np.float32)
    (out,) = s.run(None, {"INPUT0": x})
    assert out.tobytes() == x.tobytes()
    # Floors the tests relying on this model need (a floor cannot fail on a slow machine);
    # generous: a machine 2.5x faster than the one the cost was measured on passes.
    assert _median_run_seconds(s, {"INPUT0": x}) > 0.020
    # The cost does not depend on the batch size.
    big = np.zeros((8, 3), np.float32)
    assert _median_run_seconds(s, {"INPUT0": big}) > 0.020
    assert config(model_dir)["session"] == {"intra_op_num_threads": 1}


def test_slow_is_cancellable(tmp_path: Path) -> None:
    s = session(models.build_slow(tmp_path, milliseconds=2000))
    options = ort.RunOptions()
    timer = threading.Timer(0.05, lambda: setattr(options, "terminate", True))
    timer.start()
    try:
        with pytest.raises(Exception, match="terminate"):
            s.run(None, {"INPUT0": np.zeros((1, 1), np.float32)}, options)
    finally:
        timer.cancel()
    # Only a run stopped part-way raises: the 2 s loop did not finish on its own.


def loop_iterations(model_dir: Path) -> int:
    graph = onnx.load(str(model_dir / "1" / "model.onnx")).graph
    (trip_count,) = [i for i in graph.initializer if i.name == "iterations"]
    return int(numpy_helper.to_array(trip_count))


def test_slow_milliseconds_scales_the_work(tmp_path: Path) -> None:
    # The work is the loop's trip count, proportional to `milliseconds` (its speed is the bench's).
    per_ms = 1000 / models.SLOW_MICROSECONDS_PER_ITERATION
    for milliseconds in (5, 50, 2000):
        model_dir = models.build_slow(tmp_path, f"slow{milliseconds}", milliseconds=milliseconds)
        assert loop_iterations(model_dir) == round(milliseconds * per_ms)


def test_versioned_versions_differ(tmp_path: Path) -> None:
    model_dir = models.build_versioned(tmp_path)
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "2", "config.yaml"]
    x = np.array([[1.0, 2.0]], np.float32)
    for version in (1, 2):
        (out,) = session(model_dir, version).run(None, {"INPUT0": x})
        np.testing.assert_array_equal(out, x + version)
    models.build_versioned(tmp_path, versions=[3])
    (out,) = session(model_dir, 3).run(None, {"INPUT0": x})
    np.testing.assert_array_equal(out, x + 3)
    assert "version_policy" not in config(model_dir)


def test_config_overrides_merge_and_remove_keys(tmp_path: Path) -> None:
    model_dir = models.build_double(
        tmp_path, config={"instance_group": {"count": 3}, "dynamic_batching": None}
    )
    cfg = config(model_dir)
    assert cfg["instance_group"] == {"count": 3}
    assert "dynamic_batching" not in cfg
    assert cfg["inputs"][0]["name"] == "INPUT0"


def test_config_is_not_rewritten_when_unchanged(tmp_path: Path) -> None:
    model_dir = models.build_add_sub(tmp_path)
    path = model_dir / "config.yaml"
    before = path.stat().st_mtime_ns
    time.sleep(0.01)  # lets the clock move, so a rewrite would show in the mtime
    models.build_add_sub(tmp_path)
    assert path.stat().st_mtime_ns == before
    models.build_add_sub(tmp_path, config={"max_batch_size": 4})
    assert config(model_dir)["max_batch_size"] == 4
    assert [p.name for p in model_dir.iterdir() if p.name.startswith(".")] == []


def test_write_config_from_dict_and_text(tmp_path: Path) -> None:
    model_dir = models.write_config(tmp_path, "m", {"backend": "onnxruntime", "max_batch_size": 2})
    assert config(model_dir) == {"backend": "onnxruntime", "max_batch_size": 2}
    models.write_config(tmp_path, "m", "max_batch_size: [unclosed\n")
    assert (model_dir / "config.yaml").read_text() == "max_batch_size: [unclosed\n"


def test_broken_model_does_not_load(tmp_path: Path) -> None:
    model_dir = models.write_broken_model(tmp_path)
    assert (model_dir / "1" / "model.onnx").read_bytes().startswith(b"this is not")
    assert config(model_dir)["backend"] == "onnxruntime"
    with pytest.raises(Exception):  # noqa: B017 - onnxruntime raises its own exception types
        session(model_dir)
