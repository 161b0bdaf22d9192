#!/usr/bin/env python3
"""Regenerate the Python stubs in server/grpc/generated/ from protos/.

    python tools/generate_protos.py [OUTPUT_DIR]

OUTPUT_DIR defaults to server/grpc/generated. The output is a pure function of
protos/ and the pinned grpcio-tools, so tests/unit/test_generated_in_sync.py can
regenerate into a temporary directory and demand byte-identical files.

protoc's Python output is post-processed in two ways:

* Messages are registered in a descriptor pool private to the generated
  package instead of protobuf's process-wide default pool. tritonclient
  registers the very same ``inference.*`` names in the default pool, and the
  two sets of stubs must be importable in one process (tests do exactly that);
  a second registration in one pool fails with "duplicate symbol".
* protoc emits top-level imports between the generated modules
  (``import model_config_pb2``) that only work when the output directory is
  on sys.path; they are rewritten to import from the package.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = REPO_ROOT / "protos"
DEFAULT_OUTPUT_DIR = REPO_ROOT / "server" / "grpc" / "generated"
PACKAGE = "server.grpc.generated"

# model_config.proto first only for readability; protoc resolves the import itself.
PROTO_FILES = ("model_config.proto", "grpc_service.proto")

POSTPROCESS_NOTE = (
    "# Post-processed by tools/generate_protos.py: messages live in the package's private\n"
    "# descriptor pool and sibling modules are imported through the package.\n"
)

INIT_PY = '''"""Python stubs for protos/*.proto. Regenerate with `make protos`; do not edit.

The messages are registered in POOL, a descriptor pool private to this package,
not in protobuf's default pool: tritonclient registers the same ``inference.*``
names there, and both must load in one process. Code that needs a pool (for
example gRPC server reflection) should be given POOL.
"""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
'''


def _replace_once(text: str, old: str, new: str, filename: str) -> str:
    """Replace exactly one occurrence, so a change in protoc's output fails loudly."""
    count = text.count(old)
    if count != 1:
        raise RuntimeError(
            f"{filename}: expected exactly one {old!r} in protoc output, found {count}"
        )
    return text.replace(old, new)


def _add_note(text: str, filename: str) -> str:
    marker = "DO NOT EDIT!\n"
    return _replace_once(text, marker, marker + POSTPROCESS_NOTE, filename)


def _fix_pb2(text: str, filename: str) -> str:
    text = _add_note(text, filename)
    text = _replace_once(
        text,
        "from google.protobuf.internal import builder as _builder\n",
        "from google.protobuf.internal import builder as _builder\n"
        f"from {PACKAGE} import POOL as _POOL\n",
        filename,
    )
    text = _replace_once(
        text,
        "_descriptor_pool.Default().AddSerializedFile(",
        "_POOL.AddSerializedFile(",
        filename,
    )
    if filename == "grpc_service_pb2.py":
        text = _replace_once(
            text,
            "\nimport model_config_pb2 as model__config__pb2\n",
            f"\nfrom {PACKAGE} import model_config_pb2 as model__config__pb2\n",
            filename,
        )
    return text


def _fix_pb2_grpc(text: str, filename: str) -> str:
    text = _add_note(text, filename)
    return _replace_once(
        text,
        "\nimport grpc_service_pb2 as grpc__service__pb2\n",
        f"\nfrom {PACKAGE} import grpc_service_pb2 as grpc__service__pb2\n",
        filename,
    )


def _fix_pyi(text: str, filename: str) -> str:
    if filename == "grpc_service_pb2.pyi":
        text = _replace_once(
            text,
            "import model_config_pb2 as _model_config_pb2\n",
            f"from {PACKAGE} import model_config_pb2 as _model_config_pb2\n",
            filename,
        )
    return text


def _unchanged(text: str, filename: str) -> str:
    return text


# Every file the package consists of, with the fix-up each needs. protoc also
# writes an empty model_config_pb2_grpc.py (that file has no service); it is
# deliberately left out.
FIXUPS: dict[str, Callable[[str, str], str]] = {
    "model_config_pb2.py": _fix_pb2,
    "model_config_pb2.pyi": _unchanged,
    "grpc_service_pb2.py": _fix_pb2,
    "grpc_service_pb2.pyi": _fix_pyi,
    "grpc_service_pb2_grpc.py": _fix_pb2_grpc,
}
OUTPUT_FILES = ("__init__.py", *FIXUPS)


def _run_protoc(out_dir: Path) -> None:
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        # Relative include and file names keep absolute paths out of the output.
        f"--proto_path={PROTO_DIR}",
        f"--proto_path={well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *PROTO_FILES,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed; see its messages above")


def generate(output_dir: Path) -> list[Path]:
    """Write the generated package into output_dir and return the files written."""
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="protoc-") as tmp:
        _run_protoc(Path(tmp))
        contents = {"__init__.py": INIT_PY}
        for name, fixup in FIXUPS.items():
            contents[name] = fixup((Path(tmp) / name).read_text(encoding="utf-8"), name)
    for name in OUTPUT_FILES:
        path = output_dir / name
        # Bytes, not text mode, so no platform ever rewrites the line endings.
        path.write_bytes(contents[name].encode("utf-8"))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "output_dir",
        nargs="?",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        help=f"where to write the package (default: {DEFAULT_OUTPUT_DIR.relative_to(REPO_ROOT)})",
    )
    args = parser.parse_args(argv)
    for path in generate(args.output_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
