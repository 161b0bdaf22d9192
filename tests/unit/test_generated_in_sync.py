"""server/grpc/generated/ must be exactly what tools/generate_protos.py makes of protos/.

If this fails after editing a .proto file, run `make protos` and commit the result.
"""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATOR = REPO_ROOT / "tools" / "generate_protos.py"
COMMITTED_DIR = REPO_ROOT / "server" / "grpc" / "generated"


def _package_files(directory: Path) -> dict[str, bytes]:
    # Only sources count; __pycache__ and the like are not part of the package.
    return {
        path.name: path.read_bytes()
        for path in sorted(directory.iterdir())
        if path.is_file() and path.suffix in {".py", ".pyi"}
    }


def _diff(name: str, committed: bytes, fresh: bytes) -> str:
    lines = difflib.unified_diff(
        committed.decode("utf-8", "replace").splitlines(keepends=True),
        fresh.decode("utf-8", "replace").splitlines(keepends=True),
        fromfile=f"committed/{name}",
        tofile=f"regenerated/{name}",
    )
    # The serialized descriptor is one very long line; clip lines to keep this readable.
    return "".join(line if len(line) <= 200 else line[:200] + "...\n" for line in list(lines)[:40])


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    # A subprocess, so protoc runs exactly as `make protos` runs it.
    subprocess.run(
        [sys.executable, str(GENERATOR), str(tmp_path)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    fresh = _package_files(tmp_path)
    committed = _package_files(COMMITTED_DIR)

    assert sorted(committed) == sorted(fresh), "file sets differ; run `make protos`"
    stale = [
        _diff(name, committed[name], fresh[name])
        for name in fresh
        if committed[name] != fresh[name]
    ]
    assert not stale, "generated code is stale; run `make protos`:\n" + "\n".join(stale)


def test_generator_is_deterministic(tmp_path: Path) -> None:
    for run in ("a", "b"):
        subprocess.run(
            [sys.executable, str(GENERATOR), str(tmp_path / run)],
            cwd=tmp_path,  # and independent of the working directory
            check=True,
            capture_output=True,
        )
    assert _package_files(tmp_path / "a") == _package_files(tmp_path / "b")
