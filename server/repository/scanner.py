"""Reading the repository folder: which models and versions are there. No loading, no state."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from server.model_config import MODEL_FILE, VersionPolicy

# One file as a scan sees it: path relative to its folder, size, modification time, inode and
# status-change time (ns). The last two catch copies that keep size and mtime (`cp -p`,
# `rsync -t`): writing the data or setting the mtime moves ctime, and a rename-in brings a new
# inode, neither of which a user can set back.
FileStat = tuple[str, int, int, int, int]


def list_models(repo: Path) -> list[str]:
    """Model folders, sorted; hidden folders (.x) and ones starting with _ are ignored."""
    if not repo.is_dir():
        return []
    return sorted(
        p.name for p in repo.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    )


def parse_version(text: str) -> int | None:
    """A version number written in plain ASCII digits, or None ('²' passes isdigit(), not int())."""
    if text.isascii() and text.isdigit() and int(text) > 0:
        return int(text)
    return None


def list_versions(model_dir: Path) -> list[int]:
    """Positive integer subfolders that hold a model file, ascending."""
    versions = []
    if model_dir.is_dir():
        for p in model_dir.iterdir():
            version = parse_version(p.name)
            if version is not None and (p / MODEL_FILE).is_file():
                versions.append(version)
    return sorted(versions)


def select_versions(available: list[int], policy: VersionPolicy) -> list[int]:
    """The versions a policy asks to serve, ascending."""
    if policy.all:
        return list(available)
    if policy.specific:
        return [v for v in available if v in set(policy.specific)]
    latest = policy.latest or 1
    return available[-latest:]


@dataclass(frozen=True, slots=True)
class ModelFingerprint:
    """What a model folder held at one scan; two equal fingerprints mean nothing changed.

    `files` are the files directly in the folder (config.yaml, config.pbtxt, ...); `versions`
    the files under each numbered version folder. Hidden files (.x) are left out, so editors'
    swap files and half-written temporary files do not count as changes.
    """

    files: tuple[FileStat, ...]
    versions: tuple[tuple[int, tuple[FileStat, ...]], ...]

    def version(self, number: int) -> tuple[FileStat, ...] | None:
        for version, files in self.versions:
            if version == number:
                return files
        return None


def fingerprint(model_dir: Path) -> ModelFingerprint | None:
    """The folder's fingerprint, or None when the folder is gone."""
    try:
        entries = sorted(os.scandir(model_dir), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return None
    files: list[FileStat] = []
    versions: list[tuple[int, tuple[FileStat, ...]]] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            version = parse_version(entry.name)
            if version is not None:
                versions.append((version, _tree(Path(entry.path))))
        elif entry.is_file():
            _add_stat(files, entry.path, entry.name)
    return ModelFingerprint(tuple(files), tuple(versions))


def _tree(folder: Path) -> tuple[FileStat, ...]:
    stats: list[FileStat] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                path = os.path.join(root, name)
                _add_stat(stats, path, os.path.relpath(path, folder))
    return tuple(stats)


def _add_stat(stats: list[FileStat], path: str, relative: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:  # removed while scanning: the next scan sees the new state
        return
    stats.append((relative, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns))
