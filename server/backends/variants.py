"""Model variants made by onnxruntime's own tooling: offline graph optimization, int8, fp16.

`onnxserve optimize` asks for them (server/tools/optimize.py); they live here because this is
the package that may import onnxruntime. The quantization and fp16 tools import the onnx
package, an optional extra: MissingToolError says how to install it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from server.errors import ConfigError
from server.model_config import ModelConfig

# Execution providers on which fp16 weights and activations run faster than fp32.
FP16_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "DmlExecutionProvider")


class MissingToolError(ConfigError):
    """The onnx package (the `tools` extra) is not installed."""


def _quantization():  # noqa: ANN202 - the module, imported on first use
    try:
        import onnxruntime.quantization as quantization
    except ImportError as error:
        raise MissingToolError(
            f"onnxruntime's quantization and fp16 tools need the onnx package ({error.name} "
            "cannot be imported): pip install 'onnxserve[tools]'"
        ) from None
    return quantization


def optimize_graph(source: Path, target: Path) -> None:
    """Saves the model after onnxruntime's extended graph optimizations for the CPU provider.

    Not the `all` level: its layout transformations depend on the machine's instruction set, so
    onnxruntime applies them online, where the model runs (the server does so at load).
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3
    ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])


def _preprocessed(source: Path, target: Path) -> Path:
    """The model after the quantizer's advised pre-processing (ONNX shape inference).

    Symbolic shape inference is skipped: it needs sympy, and ONNX's own inference suffices for
    models whose shapes are declared, as the server's are.
    """
    quantization = _quantization()
    prepared = target.with_name("preprocessed.onnx")
    quantization.quant_pre_process(
        source, prepared, skip_optimization=True, skip_symbolic_shape=True
    )
    return prepared


def quantize_dynamic_int8(source: Path, target: Path) -> None:
    """Weights to int8 now, activations quantized at run time from their observed range."""
    quantization = _quantization()
    prepared = _preprocessed(source, target)
    quantization.quantize_dynamic(prepared, target, weight_type=quantization.QuantType.QInt8)
    prepared.unlink()


def quantize_static_int8(
    source: Path, target: Path, samples: Sequence[dict[str, np.ndarray]]
) -> None:
    """QDQ int8 with activation ranges calibrated (min-max) on `samples`, one feed per item.

    uint8 activations with int8 weights, the combination onnxruntime advises on x86 CPUs.
    """
    quantization = _quantization()

    class Reader(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds: Iterator[dict[str, np.ndarray]] = iter(samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    prepared = _preprocessed(source, target)
    quantization.quantize_static(
        prepared,
        target,
        Reader(),
        quant_format=quantization.QuantFormat.QDQ,
        activation_type=quantization.QuantType.QUInt8,
        weight_type=quantization.QuantType.QInt8,
    )
    prepared.unlink()


def convert_fp16(source: Path, target: Path) -> None:
    """fp16 weights and arithmetic inside, the model's fp32 inputs and outputs kept."""
    _quantization()  # the same onnx dependency, with the same message when it is missing
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))


def fp16_providers(config: ModelConfig) -> list[str]:
    """The configured providers that would run fp16 faster and this onnxruntime has."""
    available = set(ort.get_available_providers())
    return [
        p.name
        for p in config.execution_providers
        if p.name in FP16_PROVIDERS and p.name in available
    ]


def op_types(model_file: Path) -> set[str]:
    """Every operator type in the model, its subgraphs (Loop, If, Scan bodies) included."""
    _quantization()
    import onnx

    found: set[str] = set()
    graphs = [onnx.load(str(model_file), load_external_data=False).graph]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            found.add(node.op_type)
            graphs.extend(a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH)
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPHS:
                    graphs.extend(a.graphs)
    return found
