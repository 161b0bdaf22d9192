"""Classifies an image with the example `image` model and prints the top classes.

    python clients/examples/image_classification.py --url localhost:8001 --image cat.jpg

The model takes raw RGB pixels, UINT8 [224, 224, 3]; resizing happens here. JPEG and PNG need
Pillow (`pip install pillow`); without it pass a .npy file holding a uint8 HxWx3 array. With no
--image a generated test picture is used. (The example model's weights are random, so its
classes mean nothing: this shows the calls, not a classifier.)
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from clients import InferenceServerClient

SIZE = 224


def load_image(path: str | None) -> np.ndarray:
    if path is None:  # a smooth colour gradient: no file, no extra package
        ramp = np.linspace(0, 255, SIZE, dtype=np.float32)
        red, green = np.meshgrid(ramp, ramp)
        return np.stack([red, green, 255 - red], axis=-1).astype(np.uint8)
    if path.endswith(".npy"):
        image = np.load(path, allow_pickle=False)
    else:
        try:
            from PIL import Image
        except ImportError:
            sys.exit("reading JPEG or PNG needs Pillow (pip install pillow); or pass a .npy file")
        with Image.open(path) as picture:
            image = np.asarray(picture.convert("RGB").resize((SIZE, SIZE)))
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        sys.exit(f"{path}: expected a uint8 HxWx3 image, got {image.dtype} {image.shape}")
    if image.shape[:2] != (SIZE, SIZE):
        # Nearest-neighbour resize in numpy, for .npy input without Pillow.
        rows = np.arange(SIZE) * image.shape[0] // SIZE
        cols = np.arange(SIZE) * image.shape[1] // SIZE
        image = image[rows][:, cols]
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="localhost:8001", help="server host:port")
    parser.add_argument("--model", default="image")
    parser.add_argument("--image", help="a JPEG/PNG (with Pillow) or .npy file")
    parser.add_argument("--top", type=int, default=3, help="how many classes to print")
    args = parser.parse_args()

    image = load_image(args.image)
    with InferenceServerClient(args.url, timeout=30) as client:
        outputs = client.infer(args.model, {"image": image[None]}, outputs=["probabilities"])
    probabilities = outputs["probabilities"][0]
    for rank, cls in enumerate(np.argsort(probabilities)[::-1][: args.top], start=1):
        print(f"{rank}. class {cls}: {probabilities[cls]:.4f}")


if __name__ == "__main__":
    main()
