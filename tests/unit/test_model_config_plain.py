"""plain.py: never accepts what the schema refuses, and builds what the schema's path builds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from server.errors import ConfigError
from server.model_config import ModelConfig, load_model_config, parse_config_dict
from server.model_config import parsing as parsing_module
from server.model_config.plain import build_plain
from server.model_config.schema import validate_document

ROOT = Path(__file__).resolve().parents[2]

# Values a YAML document may hold where an integer, a string or a list is expected.
odd = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["", "8", "FP32", "auto", "cpu", "onnxruntime", "tensorflow"]),
    st.lists(st.integers(-2, 4), max_size=3),
    st.dictionaries(st.sampled_from(["count", "kind", "x"]), st.integers(0, 2), max_size=2),
)


def maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(value, value, value, odd)


tensor = st.fixed_dictionaries(
    {
        "name": maybe(st.sampled_from(["x", "y", "features", ""])),
        "datatype": maybe(st.sampled_from(["FP32", "INT64", "UINT8", "BYTES", "FP8"])),
        "dims": maybe(st.lists(st.sampled_from([-1, 1, 3, 16, 0, -2]), max_size=3)),
    },
    optional={"format": st.just("NCHW")},
)
document = st.fixed_dictionaries(
    {},
    optional={
        "name": maybe(st.sampled_from(["m", "other", ""])),
        "backend": maybe(st.just("onnxruntime")),
        "max_batch_size": maybe(st.integers(0, 64)),
        "inputs": maybe(st.lists(tensor, max_size=2)),
        "outputs": maybe(st.lists(tensor, max_size=2)),
        "instance_group": maybe(
            st.fixed_dictionaries(
                {}, optional={"count": maybe(st.integers(1, 4)), "kind": maybe(st.just("cpu"))}
            )
        ),
        "dynamic_batching": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "max_queue_delay_microseconds": maybe(st.integers(0, 1000)),
                    "preferred_batch_size": maybe(st.lists(st.integers(1, 64), max_size=3)),
                    "max_queue_size": maybe(st.integers(0, 100)),
                    "default_timeout_microseconds": maybe(st.integers(0, 100)),
                    "priority_levels": st.just(2),
                },
            )
        ),
        "model_warmup": maybe(
            st.lists(
                st.fixed_dictionaries(
                    {"name": maybe(st.just("zeros"))},
                    optional={
                        "batch_size": maybe(st.integers(1, 8)),
                        "count": maybe(st.integers(1, 3)),
                    },
                ),
                max_size=2,
            )
        ),
        "session": st.just({"intra_op_num_threads": 1}),
        "unknown_key": st.just(1),
    },
)


def through_schema(data: dict[str, Any], name: str) -> ModelConfig | None:
    try:
        document = validate_document(data, "config.yaml")
    except ConfigError:
        return None
    return parsing_module._build(document, name)


@settings(max_examples=400, deadline=None)
@given(document)
def test_what_the_plain_checks_accept_the_schema_accepts_and_builds_alike(data: dict) -> None:
    plain = build_plain(data, "m")
    if plain is not None:
        assert through_schema(data, "m") == plain


def test_the_example_configs_take_the_plain_path_and_equal_the_schema_path() -> None:
    import yaml

    for model in ("tabular", "image"):
        data = yaml.safe_load((ROOT / "model_repository" / model / "config.yaml").read_text())
        plain = build_plain(data, model)
        assert plain is not None
        assert plain == through_schema(data, model)
        assert plain == load_model_config(ROOT / "model_repository" / model)


def test_a_document_outside_the_plain_subset_still_gets_the_schemas_errors() -> None:
    data = {"max_batch_size": True, "inputs": [{"name": "x", "datatype": "FP32", "dims": [0]}]}
    assert build_plain(data, "m") is None
    try:
        parse_config_dict(data, "m", "config.yaml")
    except ConfigError as error:
        assert str(error).splitlines() == [
            "config.yaml: max_batch_size: expected an integer, got true",
            "config.yaml: inputs[0].dims[0]: expected a positive integer or -1, got 0",
        ]
    else:
        raise AssertionError("the schema accepted a bad document")


def test_a_plain_document_with_the_wrong_name_is_refused() -> None:
    try:
        parse_config_dict({"name": "other", "max_batch_size": 4}, "m", "config.yaml")
    except ConfigError as error:
        assert str(error) == ("config.yaml: name: expected the model folder name 'm', got 'other'")
    else:
        raise AssertionError("a mismatched name was accepted")


def test_reading_the_example_repository_does_not_import_pydantic() -> None:
    code = (
        "import sys; from pathlib import Path; import server.cli, server.app; "
        "from server.model_config import load_model_config; "
        "[load_model_config(Path('model_repository') / m) for m in ('tabular', 'image')]; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
