"""A one-line progress bar on stderr for the long-running tools (a line per step off a tty)."""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    def __init__(self, total: int, out: TextIO = sys.stderr, width: int = 24) -> None:
        self.total = max(1, total)
        self.done = 0
        self.out = out
        self.width = width
        self._tty = out.isatty()

    def step(self, what: str) -> None:
        """Announces the step about to run."""
        filled = self.width * self.done // self.total
        bar = "#" * filled + "." * (self.width - filled)
        line = f"[{bar}] {self.done}/{self.total} {what}"
        if self._tty:
            self.out.write(f"\r\033[K{line}")
        else:
            self.out.write(line + "\n")
        self.out.flush()
        self.done = min(self.total, self.done + 1)

    def close(self) -> None:
        if self._tty:
            self.out.write("\r\033[K")
            self.out.flush()
