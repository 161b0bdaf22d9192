"""The poller against a recording manager: two-scan stability, retries on change only, and a
loop that survives a failing model."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from server.repository.poller import RepositoryPoller
from server.repository.scanner import ModelFingerprint, fingerprint


class RecordingManager:
    """What the poller uses of ModelRepositoryManager; a load records the folder it saw."""

    def __init__(self, repository: Path, failing: frozenset[str] = frozenset()) -> None:
        self.repository = repository
        self.failing = failing
        self.calls: list[tuple[str, str]] = []
        self._fingerprints: dict[str, ModelFingerprint | None] = {}

    def model_names(self) -> list[str]:
        return list(self._fingerprints)

    def loaded_fingerprint(self, name: str) -> ModelFingerprint | None:
        return self._fingerprints.get(name)

    async def load_model(self, name: str, *, keep_unchanged: bool = False) -> list[str]:
        assert keep_unchanged
        self.calls.append(("load", name))
        self._fingerprints[name] = fingerprint(self.repository / name)
        if name in self.failing:
            raise RuntimeError(f"{name} is broken")
        return []

    async def unload_model(self, name: str, *, forget: bool = False) -> None:
        assert forget
        self.calls.append(("unload", name))
        del self._fingerprints[name]


def add_model(repo: Path, name: str, content: bytes = b"model") -> Path:
    folder = repo / name
    (folder / "1").mkdir(parents=True)
    (folder / "config.yaml").write_text("max_batch_size: 2\n")
    (folder / "1" / "model.onnx").write_bytes(content)
    return folder


def poll(poller: RepositoryPoller) -> bool:
    return asyncio.run(poller.poll_once())


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    return path


def test_a_new_folder_loads_once_two_scans_agree(repo: Path) -> None:
    manager = RecordingManager(repo)
    poller = RepositoryPoller(manager, interval=5)  # type: ignore[arg-type]
    add_model(repo, "m")
    assert poll(poller) is True  # seen once: still settling
    assert manager.calls == []
    assert poll(poller) is False
    assert manager.calls == [("load", "m")]
    assert poll(poller) is False  # nothing changed since the load
    assert manager.calls == [("load", "m")]


def test_a_file_still_being_written_waits_until_it_holds_still(repo: Path) -> None:
    manager = RecordingManager(repo)
    poller = RepositoryPoller(manager, interval=5)  # type: ignore[arg-type]
    model_file = add_model(repo, "m", b"part") / "1" / "model.onnx"
    poll(poller)
    for chunk in (b"-more", b"-rest"):  # each scan sees a different size
        with open(model_file, "ab") as f:
            f.write(chunk)
        assert poll(poller) is True
        assert manager.calls == []
    assert poll(poller) is False
    assert manager.calls == [("load", "m")]


def test_changes_reload_and_a_removed_folder_unloads(repo: Path) -> None:
    manager = RecordingManager(repo)
    poller = RepositoryPoller(manager, interval=5)  # type: ignore[arg-type]
    folder = add_model(repo, "m")
    poll(poller), poll(poller)
    config = folder / "config.yaml"
    config.write_text("max_batch_size: 4\n")
    os.utime(config, ns=(1, 1))  # a different mtime even on coarse-clock filesystems
    poll(poller), poll(poller)
    (folder / "2").mkdir()
    (folder / "2" / "model.onnx").write_bytes(b"v2")
    poll(poller), poll(poller)
    shutil.rmtree(folder)
    assert poll(poller) is True
    assert poll(poller) is False
    assert manager.calls == [("load", "m")] * 3 + [("unload", "m")]
    assert manager.model_names() == []


@pytest.mark.parametrize("how", ["in place", "renamed in"])
def test_a_copy_that_keeps_size_and_mtime_still_reloads(repo: Path, how: str) -> None:
    # `cp -p` rewrites in place; `rsync -t` writes a temporary file and renames it over.
    manager = RecordingManager(repo)
    poller = RepositoryPoller(manager, interval=5)  # type: ignore[arg-type]
    model_file = add_model(repo, "m", b"model-1") / "1" / "model.onnx"
    poll(poller), poll(poller)
    before = model_file.stat()
    target = model_file if how == "in place" else model_file.with_name(".model.onnx.tmp")
    target.write_bytes(b"model-2")
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    if target != model_file:
        target.rename(model_file)
    after = model_file.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    poll(poller), poll(poller)
    assert manager.calls == [("load", "m")] * 2


def test_hidden_files_do_not_count_as_changes(repo: Path) -> None:
    manager = RecordingManager(repo)
    poller = RepositoryPoller(manager, interval=5)  # type: ignore[arg-type]
    folder = add_model(repo, "m")
    poll(poller), poll(poller)
    (folder / ".config.yaml.swp").write_bytes(b"editor")
    (folder / "1" / ".model.onnx.tmp").write_bytes(b"half")
    assert poll(poller) is False
    assert manager.calls == [("load", "m")]


def test_a_failing_model_is_retried_on_its_next_change_only(repo: Path) -> None:
    manager = RecordingManager(repo, failing=frozenset({"a_broken"}))
    poller = RepositoryPoller(manager, interval=5)  # type: ignore[arg-type]
    broken = add_model(repo, "a_broken")
    add_model(repo, "b_good")
    poll(poller), poll(poller)
    # The failure did not stop the scan: the model after it loaded too.
    assert manager.calls == [("load", "a_broken"), ("load", "b_good")]
    poll(poller), poll(poller)
    assert len(manager.calls) == 2  # not retried while nothing changed
    (broken / "1" / "model.onnx").write_bytes(b"fixed model")
    poll(poller), poll(poller)
    assert manager.calls[2:] == [("load", "a_broken")]


def test_the_loop_polls_on_its_own_and_stops_on_close(repo: Path) -> None:
    manager = RecordingManager(repo)

    async def main() -> None:
        poller = RepositoryPoller(manager, interval=0.05)  # type: ignore[arg-type]
        poller.start()
        add_model(repo, "m")
        for _ in range(200):
            if manager.calls:
                break
            await asyncio.sleep(0.05)  # pacing the wait for the poller's own first poll
        await poller.close()

    asyncio.run(main())
    assert manager.calls == [("load", "m")]
