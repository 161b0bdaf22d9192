"""Builds the example models in model_repository/ deterministically: fixed seeds, no downloads.

    python tools/build_example_models.py [--repository model_repository] [--only tabular|image]

`make examples` runs this after installing the `examples` extra (scikit-learn, skl2onnx), which
only this script needs; the server itself never imports them. Running it twice on the same
machine writes byte-identical files.

tabular  A StandardScaler + MLPClassifier pipeline trained on a synthetic 16-feature,
         4-class problem (make_classification) and converted with skl2onnx. The light-weight
         model of the benchmarks: a few thousand weights, per-request cost is all overhead.
image    A MobileNet-style convolutional classifier written with onnx.helper. It takes raw
         uint8 HWC images and does the usual preprocessing inside the graph. Its weights are
         random (fixed seed): the predictions mean nothing; it exists to exercise the serving
         path with realistic tensor sizes and as the compute-heavy benchmark model
         (~96 M multiply-adds, about 4.4 ms per image on one core of an AMD EPYC VM).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import yaml
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REPOSITORY = ROOT / "model_repository"

OPSET = 17
IR_VERSION = 8  # accepted by every onnxruntime release since 1.10
SEED = 20240917
PRODUCER = "onnxserve/tools/build_example_models.py"

TABULAR_FEATURES = 16
TABULAR_CLASSES = 4
IMAGE_SIZE = 224
IMAGE_CLASSES = 10
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def write_config(model_dir: Path, config: dict) -> None:
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
    (model_dir / "config.yaml").write_text(text)


def save_model(model: onnx.ModelProto, path: Path) -> None:
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString(deterministic=True))


# --- tabular -------------------------------------------------------------------------------


def build_tabular(repository: Path) -> Path:
    """StandardScaler + MLPClassifier on make_classification(16 features, 4 classes)."""
    # Imported here so the image model can be built without the examples extra.
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = make_classification(
        n_samples=4000,
        n_features=TABULAR_FEATURES,
        n_informative=10,
        n_redundant=2,
        n_classes=TABULAR_CLASSES,
        n_clusters_per_class=2,
        class_sep=1.5,
        random_state=SEED,
    )
    x = x.astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=SEED)
    pipeline = make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=300, random_state=SEED),
    )
    pipeline.fit(x_train, y_train)
    accuracy = pipeline.score(x_test, y_test)

    onx = convert_sklearn(
        pipeline,
        name="tabular",
        initial_types=[("features", FloatTensorType([None, TABULAR_FEATURES]))],
        options={id(pipeline.steps[-1][1]): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )
    model = _label_as_column(onx)
    model.ir_version = IR_VERSION
    model.producer_name = PRODUCER
    model.producer_version = ""
    model.doc_string = (
        f"StandardScaler + MLPClassifier(64, 32) on a synthetic {TABULAR_FEATURES}-feature "
        f"{TABULAR_CLASSES}-class problem; held-out accuracy {accuracy:.3f}."
    )

    model_dir = repository / "tabular"
    save_model(model, model_dir / "1" / "model.onnx")
    write_config(
        model_dir,
        {
            "backend": "onnxruntime",
            "max_batch_size": 64,
            "inputs": [{"name": "features", "datatype": "FP32", "dims": [TABULAR_FEATURES]}],
            "outputs": [
                {"name": "label", "datatype": "INT64", "dims": [1]},
                {"name": "probabilities", "datatype": "FP32", "dims": [TABULAR_CLASSES]},
            ],
            "instance_group": {"count": 1},
            "dynamic_batching": {
                "max_queue_delay_microseconds": 100,
                "preferred_batch_size": [16, 32, 64],
                "max_queue_size": 1024,
            },
        },
    )
    print(f"tabular: held-out accuracy {accuracy:.3f}")
    return model_dir


def _label_as_column(model: onnx.ModelProto) -> onnx.ModelProto:
    """skl2onnx's `label` is [N]; make it [N, 1] so every output has a per-row shape."""
    graph = model.graph
    (label,) = [o for o in graph.output if o.name == "label"]
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == "label":
                node.output[i] = "label_flat"
    graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "label_axes"))
    graph.node.append(
        helper.make_node("Unsqueeze", ["label_flat", "label_axes"], ["label"], name="label_column")
    )
    graph.output.remove(label)
    graph.output.insert(0, helper.make_tensor_value_info("label", TensorProto.INT64, ["N", 1]))
    for value in [*graph.input, *graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "N"  # skl2onnx leaves it unnamed
    return model


# --- image ---------------------------------------------------------------------------------

# (output channels, stride) of each depthwise-separable block after the 3x3 stem convolution.
IMAGE_STEM_CHANNELS = 16
IMAGE_BLOCKS = (
    (32, 1),
    (64, 2),
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (256, 1),
    (512, 2),
)


class _GraphBuilder:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def conv_relu(
        self, name: str, x: str, c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1
    ) -> str:
        fan_in = (c_in // groups) * kernel * kernel
        # He initialisation keeps activations in a sane range through the ReLU stack.
        w = self.rng.normal(0.0, np.sqrt(2.0 / fan_in), (c_out, c_in // groups, kernel, kernel))
        b = np.zeros(c_out)
        y = self.node(
            "Conv",
            [
                x,
                self.const(f"{name}.w", w.astype(np.float32)),
                self.const(f"{name}.b", b.astype(np.float32)),
            ],
            f"{name}.conv",
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[kernel // 2] * 4,
            group=groups,
        )
        return self.node("Relu", [y], f"{name}.relu")


def build_image(repository: Path) -> Path:
    """uint8 HWC image -> normalise -> NCHW -> MobileNet-style convs -> logits, probabilities."""
    g = _GraphBuilder(np.random.default_rng(SEED))
    x = g.node("Cast", ["image"], "pre.float", to=TensorProto.FLOAT)
    x = g.node("Mul", [x, g.const("pre.scale", np.array(1 / 255, np.float32))], "pre.scaled")
    mean = np.array(IMAGENET_MEAN, np.float32)
    std = np.array(IMAGENET_STD, np.float32)
    x = g.node("Sub", [x, g.const("pre.mean", mean)], "pre.centered")
    x = g.node("Div", [x, g.const("pre.std", std)], "pre.normalized")
    x = g.node("Transpose", [x], "pre.nchw", perm=[0, 3, 1, 2])

    x = g.conv_relu("stem", x, 3, IMAGE_STEM_CHANNELS, kernel=3, stride=2)
    channels = IMAGE_STEM_CHANNELS
    for i, (c_out, stride) in enumerate(IMAGE_BLOCKS, start=1):
        x = g.conv_relu(f"block{i}.dw", x, channels, channels, 3, stride, groups=channels)
        x = g.conv_relu(f"block{i}.pw", x, channels, c_out, 1, 1)
        channels = c_out
    x = g.node("GlobalAveragePool", [x], "head.pool")
    features = g.node("Flatten", [x], "head.features", axis=1)

    # With random convolution weights the pooled features share one large common component, so
    # a random head would give every image the same class. Standardise the features with
    # statistics measured on synthetic images (folded into the Gemm) so predictions vary.
    image_input = helper.make_tensor_value_info(
        "image", TensorProto.UINT8, ["N", IMAGE_SIZE, IMAGE_SIZE, 3]
    )
    feature_model = _image_model(
        g,
        image_input,
        [helper.make_tensor_value_info(features, TensorProto.FLOAT, ["N", channels])],
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the same sums in the same order on every run
    session = ort.InferenceSession(
        feature_model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    (f,) = session.run(None, {"image": _calibration_images(np.random.default_rng(SEED + 1))})
    f_mean = f.mean(axis=0)
    f_std = f.std(axis=0) + 1e-3
    w = g.rng.normal(0.0, 1.0 / np.sqrt(channels), (channels, IMAGE_CLASSES))
    head_w = (w / f_std[:, None]).astype(np.float32)
    head_b = (-(f_mean / f_std) @ w).astype(np.float32)
    g.node("Gemm", [features, g.const("head.w", head_w), g.const("head.b", head_b)], "logits")
    g.node("Softmax", ["logits"], "probabilities", axis=1)

    model = _image_model(
        g,
        image_input,
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", IMAGE_CLASSES]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", IMAGE_CLASSES]),
        ],
    )
    model_dir = repository / "image"
    save_model(model, model_dir / "1" / "model.onnx")
    write_config(
        model_dir,
        {
            "backend": "onnxruntime",
            "max_batch_size": 16,
            "inputs": [{"name": "image", "datatype": "UINT8", "dims": [IMAGE_SIZE, IMAGE_SIZE, 3]}],
            "outputs": [
                {"name": "logits", "datatype": "FP32", "dims": [IMAGE_CLASSES]},
                {"name": "probabilities", "datatype": "FP32", "dims": [IMAGE_CLASSES]},
            ],
            "instance_group": {"count": 1},
            "dynamic_batching": {
                "max_queue_delay_microseconds": 1000,
                "preferred_batch_size": [4, 8],
                "max_queue_size": 256,
            },
            # Zero images before READY; it matters most on GPU providers, whose first run
            # sets up kernels.
            "model_warmup": [{"name": "zeros", "batch_size": 8, "count": 2}],
        },
    )
    return model_dir


def _image_model(
    g: _GraphBuilder, image: onnx.ValueInfoProto, outputs: list[onnx.ValueInfoProto]
) -> onnx.ModelProto:
    graph = helper.make_graph(g.nodes, "image", [image], outputs, g.initializers)
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name=PRODUCER,
        doc_string=(
            "MobileNet-style classifier with random weights (fixed seed) for serving demos and "
            "benchmarks; its predictions are meaningless."
        ),
    )


def _calibration_images(rng: np.random.Generator, count: int = 64) -> np.ndarray:
    """Blurry colour blobs plus pixel noise: cheap stand-ins for photos."""
    coarse = rng.uniform(0, 255, (count, 7, 7, 3))
    scale = IMAGE_SIZE // 7
    smooth = coarse.repeat(scale, axis=1).repeat(scale, axis=2)
    noisy = smooth + rng.normal(0, 20, smooth.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


BUILDERS = {"tabular": build_tabular, "image": build_image}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--only", choices=sorted(BUILDERS), action="append")
    args = parser.parse_args(argv)
    for name in args.only or BUILDERS:
        model_dir = BUILDERS[name](args.repository)
        size = (model_dir / "1" / "model.onnx").stat().st_size
        print(f"{name}: wrote {model_dir} (model.onnx {size / 1024:.1f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
