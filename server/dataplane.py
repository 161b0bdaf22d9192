"""The transport-independent operations a frontend serves: health, metadata, inference.

A frontend decodes its wire format into these calls and encodes what they return; it holds no
logic of its own beyond that.
"""

from __future__ import annotations

import numpy as np

from server.inference import InferenceRequest
from server.model import ModelVersion
from server.repository.manager import ModelRepositoryManager

SERVER_NAME = "onnxserve"
SERVER_VERSION = "0.1.0"


class DataPlane:
    def __init__(self, manager: ModelRepositoryManager) -> None:
        self.manager = manager
        self.accepting = True  # False once shutdown begins: readiness turns off first
        self.started = False  # True once the models that load at start have been tried

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.started and self.accepting

    def model_ready(self, name: str, version: str = "") -> bool:
        return self.manager.is_ready(name, version)

    def model(self, name: str, version: str = "") -> ModelVersion:
        return self.manager.get(name, version)

    def ready_versions(self, name: str) -> list[str]:
        return [str(m.version) for m in self.manager.served_versions() if m.name == name]

    async def infer(self, request: InferenceRequest) -> tuple[ModelVersion, dict[str, np.ndarray]]:
        model = self.manager.get(request.model_name, request.model_version)
        return model, await model.infer(request)
