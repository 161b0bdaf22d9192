"""Reading the repository folder: which models and versions are there. No loading, no state."""

from __future__ import annotations

from pathlib import Path

from server.model_config import MODEL_FILE, VersionPolicy


def list_models(repo: Path) -> list[str]:
    """Model folders, sorted; hidden folders (.x) and ones starting with _ are ignored."""
    if not repo.is_dir():
        return []
    return sorted(
        p.name for p in repo.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    )


def list_versions(model_dir: Path) -> list[int]:
    """Positive integer subfolders that hold a model file, ascending."""
    versions = []
    if model_dir.is_dir():
        for p in model_dir.iterdir():
            if p.name.isdigit() and int(p.name) > 0 and (p / MODEL_FILE).is_file():
                versions.append(int(p.name))
    return sorted(versions)


def select_versions(available: list[int], policy: VersionPolicy) -> list[int]:
    """The versions a policy asks to serve, ascending."""
    if policy.all:
        return list(available)
    if policy.specific:
        return [v for v in available if v in set(policy.specific)]
    latest = policy.latest or 1
    return available[-latest:]
