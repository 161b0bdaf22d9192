"""The baseline of bench/http_bench.py: a plain FastAPI + onnxruntime app serving one example
model's KServe v2 JSON inference route, written as such apps commonly are (pydantic request
models, a sync handler in FastAPI's thread pool, run under uvicorn with two workers).

It also answers the few routes perf_analyzer reads before it sends load (metadata, config,
statistics), so the same load generator drives it and onnxserve.

    BASELINE_MODEL=tabular bench/.venv-perf/bin/uvicorn bench.fastapi_baseline:app --workers 2
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel

MODEL = os.environ.get("BASELINE_MODEL", "tabular")
MAX_BATCH = {"tabular": 64, "image": 16}.get(MODEL, 8)
REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"
_TYPES = {
    "tensor(float)": ("FP32", np.float32),
    "tensor(uint8)": ("UINT8", np.uint8),
    "tensor(int64)": ("INT64", np.int64),
}
DTYPES = {name: dtype for name, dtype in _TYPES.values()}

session = ort.InferenceSession(
    str(REPOSITORY / MODEL / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
)
OUTPUTS = [o.name for o in session.get_outputs()]
app = FastAPI()


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    id: str | None = None
    inputs: list[Tensor]
    outputs: list[dict[str, Any]] | None = None
    parameters: dict[str, Any] | None = None


@app.post("/v2/models/{model}/infer")
@app.post("/v2/models/{model}/versions/{version}/infer")
def infer(model: str, request: InferRequest, version: str = "1") -> dict[str, Any]:
    feeds = {
        t.name: np.asarray(t.data, dtype=DTYPES[t.datatype]).reshape(t.shape)
        for t in request.inputs
    }
    results = session.run(OUTPUTS, feeds)
    outputs = [
        {
            "name": name,
            "datatype": _datatype(result.dtype),
            "shape": list(result.shape),
            "data": result.ravel().tolist(),
        }
        for name, result in zip(OUTPUTS, results, strict=True)
    ]
    response: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": outputs}
    if request.id:
        response["id"] = request.id
    return response


def _datatype(dtype: np.dtype) -> str:
    return next(name for name, d in _TYPES.values() if np.dtype(d) == dtype)


def _tensors(nodes: list[Any]) -> list[dict[str, Any]]:
    return [
        {"name": n.name, "datatype": _TYPES[n.type][0], "shape": [-1, *n.shape[1:]]} for n in nodes
    ]


@app.get("/v2")
def server_metadata() -> dict[str, Any]:
    return {"name": "fastapi-baseline", "version": "1", "extensions": []}


@app.get("/v2/health/ready")
@app.get("/v2/health/live")
def health() -> dict[str, Any]:
    return {}


@app.get("/v2/models/{model}")
@app.get("/v2/models/{model}/versions/{version}")
def metadata(model: str, version: str = "1") -> dict[str, Any]:
    return {
        "name": model,
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": _tensors(session.get_inputs()),
        "outputs": _tensors(session.get_outputs()),
    }


@app.get("/v2/models/{model}/config")
@app.get("/v2/models/{model}/versions/{version}/config")
def config(model: str, version: str = "1") -> dict[str, Any]:
    def tensors(nodes: list[Any]) -> list[dict[str, Any]]:
        return [
            {"name": n.name, "data_type": "TYPE_" + _TYPES[n.type][0], "dims": n.shape[1:]}
            for n in nodes
        ]

    return {
        "name": model,
        "platform": "onnxruntime_onnx",
        "max_batch_size": MAX_BATCH,
        "input": tensors(session.get_inputs()),
        "output": tensors(session.get_outputs()),
    }


@app.get("/v2/models/{model}/stats")
@app.get("/v2/models/{model}/versions/{version}/stats")
def stats(model: str, version: str = "1") -> dict[str, Any]:
    zero = {"count": 0, "ns": 0}
    parts = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")
    return {
        "model_stats": [
            {
                "name": model,
                "version": "1",
                "last_inference": 0,
                "inference_count": 0,
                "execution_count": 0,
                "inference_stats": {p: zero for p in parts},
                "batch_stats": [],
            }
        ]
    }
