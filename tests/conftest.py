from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests import server_logs
from tests.harness import ServerProcess

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_REPOSITORY = REPO_ROOT / "model_repository"

# Hypothesis fails an example slower than 200 ms by default: a timing assertion that a loaded
# machine trips. Speed belongs to bench/; properties are checked without a deadline.
settings.register_profile("onnxserve", deadline=None)
settings.load_profile("onnxserve")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{server_logs.MARKER}(*patterns, exit_code=0): the server errors (regular expressions"
        " searched in ERROR lines and tracebacks; none: any) and exit code the test provokes",
    )


def stop_and_check(
    servers: Iterable[ServerProcess], markers: Iterable[pytest.Mark], name: str
) -> None:
    """Stops every server, then fails on an exit code or a logged error nobody expected."""
    expected = server_logs.expected_from(markers)
    stopped = [(server, server.stop()) for server in servers]
    for server, code in stopped:
        server_logs.check(name, server.logs(), code, expected)


def module_markers(request: pytest.FixtureRequest) -> list[pytest.Mark]:
    """The server_errors markers of a module and of every collected test in it."""
    markers = list(request.node.iter_markers(server_logs.MARKER))
    for item in request.session.items:
        if getattr(item, "module", None) is request.module:
            markers += item.iter_markers(server_logs.MARKER)
    return markers


@pytest.fixture
def start_server(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., ServerProcess]]:
    """start_server(repository, *cli_args, wait_ready=True) -> a running ServerProcess."""
    started: list[ServerProcess] = []

    def start(repository: Path, *args: str, wait_ready: bool = True) -> ServerProcess:
        server = ServerProcess(repository, *args, log_dir=tmp_path)
        started.append(server)
        return server.start(wait_ready=wait_ready)

    yield start
    stop_and_check(started, request.node.iter_markers(server_logs.MARKER), request.node.nodeid)


@pytest.fixture(scope="module")
def start_module_server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Callable[..., ServerProcess]]:
    """start_server for a whole test module: one server shared by its tests, stopped at the end."""
    log_dir = tmp_path_factory.mktemp("server-logs")
    started: list[ServerProcess] = []

    def start(repository: Path, *args: str, wait_ready: bool = True) -> ServerProcess:
        server = ServerProcess(repository, *args, log_dir=log_dir)
        started.append(server)
        return server.start(wait_ready=wait_ready)

    yield start
    stop_and_check(started, module_markers(request), request.node.nodeid)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    # pytest-randomly shuffles the order; -q hides the header that names the seed.
    seed = getattr(config.option, "randomly_seed", None)
    if config.pluginmanager.has_plugin("randomly") and isinstance(seed, int):
        terminalreporter.write_line(f"test order: replay with -p randomly --randomly-seed={seed}")
