"""`onnxserve check`: validate every model of a repository without serving it.

Each model version is loaded as the server would load it (config read and checked, sessions
created, config completed from the model, warm-up run); its completed config is printed as
config.yaml text, or its problems are. Nothing listens and nothing is kept.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TextIO

from server.errors import ConfigError
from server.model import load_sessions
from server.model_config import InstanceGroup, dump_yaml
from server.repository.configs import ConfigSource
from server.repository.scanner import list_models, list_versions, select_versions


def check_repository(repository: Path, configs: ConfigSource, out: TextIO) -> int:
    """Prints every model version's completed config or problems; returns the problem count."""
    if not repository.is_dir():
        print(f"{repository}: not a folder", file=out)
        return 1
    names = list_models(repository)
    if not names:
        print(f"{repository}: no model folders", file=out)
        return 1
    problems = 0
    checked = 0
    for name in names:
        count, found = _check_model(repository / name, configs, out)
        checked += count
        problems += found
    print(f"checked {len(names)} model(s), {checked} version(s): {problems} problem(s)", file=out)
    return problems


def _check_model(model_dir: Path, configs: ConfigSource, out: TextIO) -> tuple[int, int]:
    """(versions checked, problems found) for one model folder."""
    name = model_dir.name
    try:
        config = configs.read(model_dir)
    except ConfigError as error:
        _report(out, f"model '{name}'", str(error))
        return 0, 1
    versions = select_versions(list_versions(model_dir), config.version_policy)
    if not versions:
        reason = f"{model_dir}: no version folder (e.g. 1/model.onnx) matches the version policy"
        _report(out, f"model '{name}'", reason)
        return 0, 1
    # One session proves the model; the printed config keeps the configured instance count.
    single = dataclasses.replace(
        config, instance_group=InstanceGroup(1, config.instance_group.kind)
    )
    problems = 0
    for version in versions:
        title = f"model '{name}' version {version}"
        try:
            loaded = load_sessions(model_dir, version, single, configs.describe(model_dir))
        except ConfigError as error:
            _report(out, title, str(error))
            problems += 1
            continue
        except Exception as error:  # whatever the server would fail on, reported the same way
            _report(out, title, f"unexpected error while loading: {error!r}")
            problems += 1
            continue
        completed = dataclasses.replace(loaded.config, instance_group=config.instance_group)
        print(f"--- {title}: ok", file=out)
        print(dump_yaml(completed), file=out)
    return len(versions), problems


def _report(out: TextIO, title: str, problem: str) -> None:
    lines = problem.splitlines()
    print(f"--- {title}: {len(lines)} problem(s)", file=out)
    for line in lines:
        print(f"  {line}", file=out)
    print(file=out)
