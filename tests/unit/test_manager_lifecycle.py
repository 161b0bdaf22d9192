"""ModelRepositoryManager with real tiny models, in-process: versions, swaps, failures, warm-up."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.backends import onnxruntime as backend
from server.errors import NotFoundError, UnavailableError
from server.inference import InferenceRequest
from server.repository.manager import ModelRepositoryManager
from server.repository.states import ModelState
from tests.models import build_add_constant, build_versioned, write_config, write_model

Scenario = Callable[[ModelRepositoryManager], Awaitable[Any]]


def run(repo: Path, scenario: Scenario) -> Any:
    async def main() -> Any:
        manager = ModelRepositoryManager(repo)
        try:
            return await scenario(manager)
        finally:
            await manager.close(5)

    return asyncio.run(main())


async def infer(manager: ModelRepositoryManager, name: str, version: str = "") -> float:
    request = InferenceRequest(name, version, {"INPUT0": np.zeros((1, 1), np.float32)})
    request.batch_size = 1
    outputs = await manager.get(name, version).infer(request)
    return float(outputs["OUTPUT0"][0, 0])


def states(manager: ModelRepositoryManager) -> dict[int | None, tuple[str, str]]:
    return {s.version: (s.state.value, s.reason) for s in manager.index()}


async def drained(manager: ModelRepositoryManager) -> None:
    for _ in range(200):
        if all(s.state is not ModelState.UNLOADING for s in manager.index()):
            return
        await asyncio.sleep(0.01)  # pacing the poll
    raise AssertionError(f"still draining: {manager.index()}")


def test_the_highest_version_serves_and_explicit_versions_follow_the_policy(
    tmp_path: Path,
) -> None:
    build_versioned(tmp_path, versions=(1, 2, 3), config={"version_policy": {"latest": 2}})

    async def scenario(manager: ModelRepositoryManager) -> None:
        assert await manager.load_model("versioned") == []
        assert await infer(manager, "versioned") == 3.0
        assert await infer(manager, "versioned", "2") == 2.0
        with pytest.raises(NotFoundError):
            manager.get("versioned", "1")
        assert states(manager) == {2: ("READY", ""), 3: ("READY", "")}

    run(tmp_path, scenario)


def test_a_broken_new_version_leaves_the_old_one_serving_until_it_is_fixed(
    tmp_path: Path,
) -> None:
    build_versioned(tmp_path, versions=(1,))

    async def scenario(manager: ModelRepositoryManager) -> None:
        await manager.load_model("versioned")
        write_model(tmp_path, "versioned", 2, b"not an onnx model", None)
        failures = await manager.load_model("versioned", keep_unchanged=True)
        assert len(failures) == 1 and "version 2" in failures[0]
        assert await infer(manager, "versioned") == 1.0
        status = states(manager)
        assert status[1] == ("READY", "")
        assert status[2][0] == "UNAVAILABLE" and "cannot load the model" in status[2][1]
        with pytest.raises(UnavailableError, match="version 2 is UNAVAILABLE"):
            manager.get("versioned", "2")

        old = manager.get("versioned", "1")
        build_versioned(tmp_path, versions=(2,))
        assert await manager.load_model("versioned", keep_unchanged=True) == []
        assert states(manager)[1][0] == "UNLOADING"  # draining in the background
        assert await infer(manager, "versioned") == 2.0
        await drained(manager)
        assert states(manager) == {2: ("READY", "")}
        with pytest.raises(UnavailableError):  # the replaced version takes no more requests
            old.scheduler.enqueue(InferenceRequest("versioned", "1", {}))

    run(tmp_path, scenario)


def test_unchanged_versions_are_kept_and_a_config_change_reloads(tmp_path: Path) -> None:
    build_versioned(tmp_path, versions=(1, 2), config={"version_policy": {"all": True}})

    async def scenario(manager: ModelRepositoryManager) -> None:
        await manager.load_model("versioned")
        v1, v2 = manager.get("versioned", "1"), manager.get("versioned", "2")
        config = {"version_policy": {"all": True}}
        build_add_constant(tmp_path, "versioned", 2, config, addend=20.0)  # only version 2
        await manager.load_model("versioned", keep_unchanged=True)
        assert manager.get("versioned", "1") is v1
        assert manager.get("versioned", "2") is not v2
        assert await infer(manager, "versioned") == 20.0

        v1 = manager.get("versioned", "1")
        write_config(tmp_path, "versioned", {**config, "max_batch_size": 4})
        await manager.load_model("versioned", keep_unchanged=True)
        assert manager.get("versioned", "1") is not v1
        assert manager.get("versioned", "1").config.max_batch_size == 4
        await manager.load_model("versioned")  # without keep_unchanged: a full reload
        assert manager.get("versioned", "1").config.max_batch_size == 4

    run(tmp_path, scenario)


def test_a_broken_config_on_reload_keeps_serving_and_says_why(tmp_path: Path) -> None:
    build_versioned(tmp_path, versions=(1,))

    async def scenario(manager: ModelRepositoryManager) -> None:
        await manager.load_model("versioned")
        write_config(tmp_path, "versioned", "max_batch_size: [oops\n")
        failures = await manager.load_model("versioned", keep_unchanged=True)
        assert failures and "invalid YAML" in failures[0]
        assert await infer(manager, "versioned") == 1.0
        state, reason = states(manager)[1]
        assert state == "READY" and "reload failed" in reason and "invalid YAML" in reason

    run(tmp_path, scenario)


def test_unload_leaves_the_model_unavailable_and_forget_removes_it(tmp_path: Path) -> None:
    build_versioned(tmp_path, versions=(1,))

    async def scenario(manager: ModelRepositoryManager) -> None:
        await manager.load_model("versioned")
        await manager.unload_model("versioned")
        assert states(manager) == {None: ("UNAVAILABLE", "unloaded")}
        with pytest.raises(UnavailableError, match="unloaded"):
            manager.get("versioned")
        await manager.load_model("versioned")
        assert await infer(manager, "versioned") == 1.0
        await manager.unload_model("versioned", forget=True)
        assert manager.index() == []
        with pytest.raises(NotFoundError):
            manager.get("versioned")

    run(tmp_path, scenario)


def test_warm_up_runs_before_the_version_is_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warmup = {"name": "w", "batch_size": 3, "count": 2}
    build_versioned(
        tmp_path, versions=(1,), config={"model_warmup": [warmup], "instance_group": {"count": 2}}
    )
    seen: list[tuple[str, tuple[int, ...]]] = []
    manager = ModelRepositoryManager(tmp_path)
    real_warm_up = backend.warm_up

    def spy(instance: backend.OrtInstance, config: Any) -> None:
        # Runs in the loading thread: nothing serves the model yet.
        state = {s.version: s.state for s in manager.index()}[1]
        feeds = backend.warmup_feeds(config.model_warmup[0], config, np.random.default_rng(0))
        seen.append((state.value, feeds["INPUT0"].shape))
        assert not manager.is_ready("versioned")
        real_warm_up(instance, config)

    monkeypatch.setattr(backend, "warm_up", spy)

    async def main() -> None:
        try:
            assert await manager.load_model("versioned") == []
            assert manager.is_ready("versioned")
        finally:
            await manager.close(5)

    asyncio.run(main())
    assert seen == [("LOADING", (3, 1))] * 2  # once per instance, with the sample's batch size


def test_an_unreadable_folder_is_a_failure_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_versioned(tmp_path, versions=(1,))

    def refuse(model_dir: Path) -> list[int]:
        raise PermissionError(13, "Permission denied", str(model_dir))

    monkeypatch.setattr("server.repository.manager.list_versions", refuse)

    async def scenario(manager: ModelRepositoryManager) -> None:
        failures = await manager.load_model("versioned")
        assert len(failures) == 1 and "Permission denied" in failures[0]
        state, reason = states(manager)[None]
        assert state == "UNAVAILABLE" and reason.startswith("cannot read")

    run(tmp_path, scenario)


def test_version_folders_must_be_plain_ascii_digits(tmp_path: Path) -> None:
    from server.repository.scanner import list_versions, parse_version

    assert [parse_version(t) for t in ("1", "12", "0", "²", "1a", "", "-1")] == [
        1, 12, None, None, None, None, None,
    ]  # fmt: skip
    for name in ("1", "²", "3"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.onnx").write_bytes(b"")
    assert list_versions(tmp_path) == [1, 3]


def test_a_config_that_does_not_fit_the_model_names_the_file_it_came_from(
    tmp_path: Path,
) -> None:
    from server.grpc.config_proto import TRITON_FORMAT
    from server.repository.configs import ConfigSource

    model_dir = build_add_constant(tmp_path, "from_pbtxt")
    (model_dir / "config.yaml").unlink()
    (model_dir / "config.pbtxt").write_text(
        'max_batch_size: 4\ninput [{ name: "INPUT0", data_type: TYPE_FP64, dims: [1] }]\n'
    )

    async def main() -> list[str]:
        manager = ModelRepositoryManager(tmp_path, configs=ConfigSource(TRITON_FORMAT))
        try:
            return await manager.load_model("from_pbtxt")
        finally:
            await manager.close(5)

    (failure,) = asyncio.run(main())
    assert f"{model_dir / 'config.pbtxt'}: inputs[0].datatype" in failure, failure
    assert "config.yaml" not in failure


def _models_with_warm_up(repo: Path, names: tuple[str, ...]) -> None:
    warmup = {"name": "w", "batch_size": 1, "count": 1}
    for name in names:
        build_add_constant(repo, name, config={"model_warmup": [warmup]})


def test_models_load_side_by_side(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every warm-up waits until all three models are warming up at once: only parallel loads
    # get past it (a sequential load would break the barrier after its timeout).
    names = ("c", "a", "b")
    _models_with_warm_up(tmp_path, names)
    all_loading = threading.Barrier(len(names), timeout=20)
    real_warm_up = backend.warm_up

    def spy(instance: backend.OrtInstance, config: Any) -> None:
        all_loading.wait()
        real_warm_up(instance, config)

    monkeypatch.setattr(backend, "warm_up", spy)

    async def scenario(manager: ModelRepositoryManager) -> tuple[list[str], list[str]]:
        await manager.load_all(parallel=3)
        ready = sorted(m.name for m in manager.served_versions())
        return [s.name for s in manager.index()], ready

    listed, ready = run(tmp_path, scenario)
    assert listed == ["a", "b", "c"]  # the folders' order, whichever finished first
    assert ready == ["a", "b", "c"]


def test_one_load_at_a_time_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _models_with_warm_up(tmp_path, ("a", "b", "c"))
    events: list[str] = []
    real_warm_up = backend.warm_up

    def spy(instance: backend.OrtInstance, config: Any) -> None:
        events.append(f"start {config.name}")
        real_warm_up(instance, config)
        events.append(f"end {config.name}")

    monkeypatch.setattr(backend, "warm_up", spy)

    async def scenario(manager: ModelRepositoryManager) -> None:
        await manager.load_all(parallel=1)

    run(tmp_path, scenario)
    assert events == ["start a", "end a", "start b", "end b", "start c", "end c"]
