"""The --cache flags: what `onnxserve serve` refuses before it starts anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.cli import main


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--cache", "memcached://127.0.0.1:11211"],
            "--cache: expected local or a redis://, rediss:// or unix:// URL,"
            " got 'memcached://127.0.0.1:11211'",
        ),
        (
            ["--cache", "local", "--cache-ttl", "60"],
            "--cache-ttl, --cache-password-file and --cache-tls-ca need --cache redis://...",
        ),
        (
            ["--cache", "redis://127.0.0.1:6379/0", "--cache-timeout-ms", "0"],
            "--cache-ttl must be 0 or more and --cache-timeout-ms more than 0",
        ),
    ],
)
def test_inconsistent_cache_flags_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["serve", "--model-repository", str(tmp_path), *flags]) == 2
    assert capsys.readouterr().err == f"onnxserve serve: {message}\n"


@pytest.mark.parametrize("size", ["0", "12X", "-5", "M"])
def test_a_cache_size_must_be_a_positive_byte_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], size: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--model-repository", str(tmp_path), "--cache-size", size])
    assert exited.value.code == 2
    assert f"expected a positive number of bytes, got {size!r}" in capsys.readouterr().err
