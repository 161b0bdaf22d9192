"""Starts `python -m server serve` in a subprocess on OS-chosen ports and waits on its log.

The tests, the benchmarks and `onnxserve tune` all start the server this way. Each listener is
asked for port 0 and the port the OS gave it is read back from the server's own start-up line,
so parallel servers never collide. Readiness is read from the log too ("startup finished"),
which keeps this module free of gRPC: it may be imported from anywhere in the package.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_STARTED = "startup finished"


@dataclass(frozen=True)
class Listener:
    attribute: str  # the launcher's attribute holding the port
    flag: str  # the serve option that sets it
    logged: re.Pattern[str]  # the start-up line that reports it


# Every listener the server opens, in one table: a new frontend adds its row here.
LISTENERS = (
    Listener("port", "--grpc-port", re.compile(r"gRPC listening on [^:]+:(\d+)")),
    Listener("http_port", "--http-port", re.compile(r"HTTP listening on [^:]+:(\d+)")),
    Listener("metrics_port", "--metrics-port", re.compile(r"metrics listening on [^:]+:(\d+)")),
)


def logged_ports(logs: str) -> dict[str, int]:
    """The ports found in the server's log so far, by launcher attribute."""
    found = {}
    for listener in LISTENERS:
        match = listener.logged.search(logs)
        if match:
            found[listener.attribute] = int(match.group(1))
    return found


class ServerLauncher:
    """One server process; stdout and stderr go to `log_path`."""

    def __init__(
        self, repository: Path, *args: str, log_path: Path, cwd: Path | None = None
    ) -> None:
        self.repository = repository
        self.args = list(args)
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self._terminated = False
        self.port = 0
        self.metrics_port = 0
        self.http_port = 0  # stays 0 when the args turn HTTP off (--http-port -1)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_address(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        ports = [arg for listener in LISTENERS for arg in (listener.flag, "0")]
        return [
            sys.executable, "-m", "server", "serve",
            "--model-repository", str(self.repository), "--host", "127.0.0.1",
            *ports, *self.args,
        ]  # fmt: skip

    def start(self, wait_ready: bool = True, timeout: float = 60.0) -> ServerLauncher:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.cwd
        )
        deadline = time.monotonic() + timeout
        # Every port is logged before the models load: wait for all the lines.
        while True:
            ports = logged_ports(self.logs())
            if len(ports) == self._listening():
                break
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"server did not listen in {timeout}s:\n{self.logs()}")
            time.sleep(0.05)  # pacing: polls a file the server appends to
        for attribute, port in ports.items():
            setattr(self, attribute, port)
        if wait_ready:
            self.wait_ready(deadline - time.monotonic())
        return self

    def _listening(self) -> int:
        """How many listeners will log their port: one turned off (port -1) logs none."""
        args = self.args
        off = {flag for flag, value in zip(args, args[1:], strict=False) if value == "-1"}
        return sum(listener.flag not in off for listener in LISTENERS)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Waits for the end of the start-up load (ServerReady may stay false after it under
        strict readiness when a model failed, which tests of broken models rely on)."""
        deadline = time.monotonic() + timeout
        while _STARTED not in self.logs():
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"server did not finish starting in {timeout}s:\n{self.logs()}")
            time.sleep(0.05)  # pacing: polls a file the server appends to

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def terminate(self) -> None:
        """Sends SIGTERM once, without waiting: several servers then shut down side by side."""
        if self.process is not None and self.process.poll() is None and not self._terminated:
            self.process.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (unless terminate() sent it), then wait; returns the exit code (killed after
        timeout)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> ServerLauncher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (all its threads)."""
        return cpu_seconds(self.pid)

    def loop_cpu_seconds(self) -> float:
        """CPU time of the server's main thread, which runs the event loop."""
        return cpu_seconds(self.pid, self.pid)

    def rss_bytes(self) -> int:
        """Resident memory of the server process now."""
        return int(Path(f"/proc/{self.pid}/statm").read_text().split()[1]) * _PAGE

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.logs()}")


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU time so far of a process (Linux /proc), or of one of its threads."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS
