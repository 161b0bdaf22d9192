from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import ServerProcess

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_REPOSITORY = REPO_ROOT / "model_repository"


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """start_server(repository, *cli_args, wait_ready=True) -> a running ServerProcess."""
    started: list[ServerProcess] = []

    def start(repository: Path, *args: str, wait_ready: bool = True) -> ServerProcess:
        server = ServerProcess(repository, *args, log_dir=tmp_path)
        started.append(server)
        return server.start(wait_ready=wait_ready)

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def start_module_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., ServerProcess]]:
    """start_server for a whole test module: one server shared by its tests, stopped at the end."""
    log_dir = tmp_path_factory.mktemp("server-logs")
    started: list[ServerProcess] = []

    def start(repository: Path, *args: str, wait_ready: bool = True) -> ServerProcess:
        server = ServerProcess(repository, *args, log_dir=log_dir)
        started.append(server)
        return server.start(wait_ready=wait_ready)

    yield start
    for server in started:
        server.stop()
