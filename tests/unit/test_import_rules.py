"""The dependency direction of server/ (pyproject.toml [tool.importlinter]) holds, and each
contract really catches the import it forbids."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
CONTRACTS = 7


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {CONTRACTS} kept, 0 broken." in result.stdout


@pytest.fixture(scope="module")
def broken_tree(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """A copy of server/ with one forbidden import per contract, linted from the copy."""
    root = tmp_path_factory.mktemp("tree")
    shutil.copytree(
        REPO_ROOT / "server", root / "server", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO_ROOT / "pyproject.toml", root)
    additions = {
        "server/dataplane.py": "import grpc  # noqa",
        "server/validation.py": "import onnxruntime  # noqa",
        "server/scheduling/policy.py": "from server.backends import onnxruntime  # noqa",
        "server/errors.py": "from server import inference  # noqa",
        "server/tools/progress.py": "import grpc  # noqa",
        "server/cache/local.py": "import redis  # noqa",
    }
    for path, line in additions.items():
        with open(root / path, "a") as f:
            f.write(f"\n{line}\n")
    return lint_imports(root)


@pytest.mark.parametrize(
    ("contract", "offender"),
    [
        ("only server.grpc and the entry points", "server.dataplane -> grpc"),
        ("the core never imports the gRPC frontend", "server.dataplane -> grpc"),
        ("only server.backends imports onnxruntime", "server.validation -> onnxruntime"),
        ("only the response cache's Redis store imports redis", "server.cache.local -> redis"),
        ("server.scheduling imports no transport", "server.scheduling.policy -> server.backends"),
        ("errors, datatypes and model_config", "server.errors -> server.inference"),
        ("optimize and tune, and the launcher", "server.tools.progress -> grpc"),
    ],
)
def test_each_contract_catches_its_violation(
    broken_tree: subprocess.CompletedProcess[str], contract: str, offender: str
) -> None:
    out = broken_tree.stdout
    assert broken_tree.returncode == 1, out + broken_tree.stderr
    assert f"Contracts: 0 kept, {CONTRACTS} broken." in out
    report = out.split("Broken contracts", 1)[1]
    section = report.split(contract, 1)[1]
    assert offender in section.split("\n\n\n", 1)[0], section
