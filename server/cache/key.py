"""The response cache key: a BLAKE2b-256 digest of everything that decides a response.

BLAKE2b because a shared cache is a target: with a cryptographic hash nobody can craft a
request that collides with another's key and so read or poison its answer, and hashlib's
BLAKE2b runs at about memory speed, faster than SHA-256 on CPUs without SHA extensions. The
256-bit digest keeps accidental collisions out of reach at any cache size. Python's hash() is
salted per process (replicas would disagree) and only 64 bits wide.

Every field is length-prefixed, so no two different requests feed the hash the same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from server.inference import InferenceRequest
from server.model_config import ModelConfig, VersionPolicy

DIGEST_BYTES = 32
# Bumped when the key layout or the stored value format changes: old entries stop matching.
KEY_FORMAT = b"onnxserve-response-cache-1"
# Request parameters that change how or when the response is delivered, never what it holds.
DELIVERY_PARAMETERS = frozenset({"timeout", "priority", "binary_data_output"})
# Parameters of stateful (sequence) models: the response depends on earlier requests.
SEQUENCE_PARAMETERS = frozenset({"sequence_id", "sequence_start", "sequence_end"})

_LENGTH = struct.Struct("<Q")


def version_hasher(model: str, version: int, fingerprint: bytes) -> hashlib.blake2b:
    """The hash state of one loaded model version, copied for each request.

    `fingerprint` identifies what was loaded (model file and config), so a reload that changes
    either never answers from the entries of what it replaced.
    """
    hasher = hashlib.blake2b(digest_size=DIGEST_BYTES)
    _fields(hasher, (KEY_FORMAT, model.encode(), str(version).encode(), fingerprint))
    return hasher


def model_fingerprint(model_file: Path, config: ModelConfig) -> bytes:
    """What was loaded: the model file's bytes and the completed config. Blocking (reads the
    file); replicas that load the same files get the same fingerprint and share entries."""
    hasher = hashlib.blake2b(digest_size=DIGEST_BYTES)
    with open(model_file, "rb") as file:
        while chunk := file.read(1 << 20):
            hasher.update(chunk)
    # Which versions are served does not change what one version answers.
    hasher.update(repr(dataclasses.replace(config, version_policy=VersionPolicy())).encode())
    return hasher.digest()


def bypass_reason(request: InferenceRequest) -> str | None:
    """Why this request must not be answered from (or stored in) the cache; None if it may."""
    if request.output_placements:
        return "outputs go to shared memory"
    if any(name in SEQUENCE_PARAMETERS for name in request.parameters):
        return "sequence parameters"
    return None


def request_key(base: hashlib.blake2b, request: InferenceRequest) -> bytes:
    """The digest of a validated request on top of its model version's state."""
    hasher = base.copy()
    update = hasher.update
    inputs = request.inputs
    update(_LENGTH.pack(len(inputs)))
    for name in sorted(inputs):
        array = inputs[name]
        _fields(hasher, (name.encode(), array.dtype.str.encode()))
        update(_LENGTH.pack(array.ndim))
        update(struct.pack(f"<{array.ndim}q", *array.shape))
        if array.dtype.kind == "O":
            _elements(hasher, array)
        else:
            data = np.ascontiguousarray(array)
            update(_LENGTH.pack(data.nbytes))
            update(data)
    outputs = request.requested_outputs
    if outputs is None:
        update(b"\x00")  # every output, in the model's order
    else:
        update(b"\x01")
        _fields(hasher, [name.encode() for name in outputs])
    parameters = [(k, v) for k, v in request.parameters.items() if k not in DELIVERY_PARAMETERS]
    _fields(hasher, [repr(item).encode() for item in sorted(parameters, key=_first)])
    return hasher.digest()


def _first(item: tuple[str, object]) -> str:
    return item[0]


def _fields(hasher: hashlib.blake2b, fields: Iterable[bytes]) -> None:
    items = list(fields)
    hasher.update(_LENGTH.pack(len(items)))
    for item in items:
        hasher.update(_LENGTH.pack(len(item)))
        hasher.update(item)


def _elements(hasher: hashlib.blake2b, array: np.ndarray) -> None:
    """BYTES elements (bytes, or str once prepared for onnxruntime) as length-prefixed UTF-8."""
    hasher.update(_LENGTH.pack(array.size))
    for item in array.ravel():
        data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        hasher.update(_LENGTH.pack(len(data)))
        hasher.update(data)
