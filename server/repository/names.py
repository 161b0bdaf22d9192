"""Checking a model name that a client sent before anything on disk is touched.

A name must be one plain folder directly inside the repository: no separators, no `.` or `..`,
no hidden (`.x`) or ignored (`_x`) folders, and a symlinked folder must stay inside the
repository. Only then is the folder looked at.
"""

from __future__ import annotations

from pathlib import Path

from server.errors import InvalidArgumentError, NotFoundError

_FORBIDDEN_CHARACTERS = ("/", "\\", "\x00")


def check_model_name(name: str) -> None:
    """Raises InvalidArgumentError unless `name` can only mean a folder in the repository."""
    if not name:
        raise InvalidArgumentError("model name is empty")
    if any(c in name for c in _FORBIDDEN_CHARACTERS) or name.startswith((".", "_")):
        raise InvalidArgumentError(
            f"model name {name!r} is not a model folder name: it must not contain '/', '\\' or"
            " NUL, nor start with '.' or '_'"
        )


def model_folder(repository: Path, name: str) -> Path:
    """The folder of the model a client named; InvalidArgumentError or NotFoundError otherwise."""
    check_model_name(name)
    root = repository.resolve()
    folder = root / name
    # A symlink may point elsewhere in the repository, never outside of it.
    target = folder.resolve()
    if target == root or not target.is_relative_to(root):
        raise InvalidArgumentError(f"model name {name!r} leads outside the model repository")
    if not target.is_dir():
        raise NotFoundError(f"model '{name}' is not in the model repository")
    return folder
