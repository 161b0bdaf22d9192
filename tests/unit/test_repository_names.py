"""Model names from clients: only plain folders inside the repository get through."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.errors import InvalidArgumentError, NotFoundError
from server.repository.names import model_folder


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repository = tmp_path / "repo"
    (repository / "good").mkdir(parents=True)
    (repository / "not_a_folder.onnx").write_bytes(b"x")
    outside = tmp_path / "outside"
    (outside / "1").mkdir(parents=True)
    (outside / "config.yaml").write_text("secret: 1\n")
    os.symlink(outside, repository / "escape")
    os.symlink(repository / "good", repository / "alias")
    os.symlink(repository, repository / "self")
    os.symlink(tmp_path / "missing", repository / "dangling")
    return repository


def test_a_plain_folder_is_accepted(repo: Path) -> None:
    assert model_folder(repo, "good") == repo.resolve() / "good"


def test_a_symlink_to_a_folder_inside_the_repository_is_accepted(repo: Path) -> None:
    assert model_folder(repo, "alias") == repo.resolve() / "alias"


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../repo/good", "good/..", "/etc", "/", "a/b", "..\\x", "a\x00b", ".git", "_x"],
)
def test_names_that_are_not_plain_folder_names_are_refused(repo: Path, name: str) -> None:
    with pytest.raises(InvalidArgumentError):
        model_folder(repo, name)


@pytest.mark.parametrize("name", ["escape", "self", "dangling"])
def test_symlinks_that_leave_the_repository_are_refused(repo: Path, name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="outside the model repository"):
        model_folder(repo, name)


@pytest.mark.parametrize("name", ["missing", "not_a_folder.onnx"])
def test_names_of_no_folder_are_not_found(repo: Path, name: str) -> None:
    with pytest.raises(NotFoundError):
        model_folder(repo, name)
