"""Runs every ```bash and ```python block of README.md and docs/*.md against a real server.

The docs cannot drift from the code when their examples are executed. One server serves
model_repository/ with the flags of `make run` (read from `make -n run`), on 127.0.0.1 and on
ports the OS picks. The conventions a block relies on are in docs/development.md ("Docs
examples"):
- the addresses localhost:8000 (HTTP), localhost:8001 (gRPC) and localhost:8002 (metrics), also
  written 127.0.0.1:PORT, are rewritten to the real ports;
- bash blocks run with `bash -euo pipefail`, python blocks with this interpreter, each in a fresh
  directory that links the checkout's top-level entries (so `clients/...` and `.venv/bin/...`
  resolve and files a block writes stay out of the checkout), with the venv's bin first on PATH;
- a ```text block right after a block is its expected stdout (its addresses rewritten too),
  where `...` matches any run of characters within a line and a line holding only `...`
  matches any number of lines.
Blocks that cannot run offline in seconds are fenced ```console instead. Relative links
between the pages are checked too, anchors included.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import ServerProcess

REPO_ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
RUNNABLE = ("bash", "python")
# Run (bash, python), or shown only: commands that cannot run here, output, files, queries.
_KNOWN_LANGUAGES = {*RUNNABLE, "console", "text", "yaml", "json", "promql", "protobuf"}
BLOCK_TIMEOUT = 60.0

_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)\s*$")
_ADDRESS = re.compile(r"\b(localhost|127\.0\.0\.1):(8000|8001|8002)\b")
# Flags of `make run` the test replaces: it serves on 127.0.0.1 and on ports the OS picks.
_SET_BY_TEST = {"--model-repository", "--host", "--grpc-port", "--metrics-port", "--http-port"}
_HTTP_LISTENING = re.compile(r"HTTP listening on [^:\s]+:(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    expected: str | None  # the ```text block right after, if any

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"


def fences(path: Path, text: str) -> list[tuple[int, int, str, str]]:
    """Every fenced block as (0-based first line, last line, language, body)."""
    fenced = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, lang = len(opening["indent"]), opening["lang"]
        body, j = [], i + 1
        while j < len(lines) and lines[j].strip() != "```":
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        if j == len(lines):
            raise ValueError(f"{path}:{i + 1}: a ```{lang} block is never closed")
        fenced.append((i, j, lang, "\n".join(body) + "\n"))
        i = j + 1
    return fenced


def parse_blocks(path: Path, text: str) -> list[Block]:
    """Every fenced block of a runnable language, with the ```text block that follows it."""
    fenced = fences(path, text)
    lines = text.splitlines()
    blocks = []
    for n, (first, last, lang, body) in enumerate(fenced):
        if lang not in RUNNABLE:
            continue
        expected = None
        if n + 1 < len(fenced):
            next_first, _, next_lang, next_body = fenced[n + 1]
            between = lines[last + 1 : next_first]
            if next_lang == "text" and all(not line.strip() for line in between):
                expected = next_body
        blocks.append(Block(path, first + 1, lang, body, expected))
    return blocks


def output_matches(expected: str, actual: str) -> bool:
    """Line by line, trailing spaces ignored; `...` is the wildcard (see the module docstring)."""
    parts = []
    for line in expected.strip("\n").splitlines():
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            pieces = (re.escape(piece) for piece in line.rstrip().split("..."))
            parts.append("[^\n]*".join(pieces) + r"[ \t]*\n")
    pattern = "".join(parts)
    normalized = "".join(line.rstrip() + "\n" for line in actual.strip("\n").splitlines())
    return re.fullmatch(pattern, normalized) is not None


def rewrite_ports(code: str, ports: dict[int, int]) -> str:
    return _ADDRESS.sub(lambda m: f"{m[1]}:{ports.get(int(m[2]), int(m[2]))}", code)


def run_block(block: Block, ports: dict[int, int], workdir: Path) -> subprocess.CompletedProcess:
    """Runs one block in workdir; returns the finished process (stdout and stderr as text)."""
    code = rewrite_ports(block.code, ports)
    if block.lang == "bash":
        command = ["bash", "-euo", "pipefail", "-c", code]
    else:
        script = workdir / "example.py"
        script.write_text(code)
        command = [sys.executable, str(script)]
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT
    )


def check_block(block: Block, ports: dict[int, int], workdir: Path) -> None:
    """Fails with the block's text and its output unless it exits 0 with the expected stdout."""
    done = run_block(block, ports, workdir)
    where = f"{block.name} ({block.lang}):\n{block.code}"
    output = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, f"{where}\nexited {done.returncode}\n{output}"
    if block.expected is not None:
        expected = rewrite_ports(block.expected, ports)
        assert output_matches(expected, done.stdout), (
            f"{where}\nexpected stdout:\n{block.expected}\n{output}"
        )


def make_workdir(path: Path) -> Path:
    """A directory that looks like the checkout (links to its entries) but takes new files."""
    path.mkdir(parents=True, exist_ok=True)
    for entry in REPO_ROOT.iterdir():
        if entry.name not in (".git", ".venv"):
            (path / entry.name).symlink_to(entry)
    # `.venv/bin/...` in a block means the environment running the tests.
    (path / ".venv").symlink_to(Path(sys.prefix))
    return path


def _all_blocks() -> list[Block]:
    return [b for path in DOC_FILES for b in parse_blocks(path, path.read_text())]


BLOCKS = _all_blocks()


def make_run_flags() -> list[str]:
    """The `onnxserve serve` flags of `make run`, less the ones the test sets itself (repository,
    host, ports), so that the examples meet the server a reader starts."""
    recipe = subprocess.run(
        ["make", "--no-print-directory", "-n", "run"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.replace("\\\n", " ")
    [line] = [line for line in recipe.splitlines() if " serve " in line]
    words = shlex.split(line)
    flags, i = [], words.index("serve") + 1
    while i < len(words):
        if words[i] in _SET_BY_TEST:
            i += 2  # the flag and its value
            continue
        flags.append(words[i])
        i += 1
    if any(word == "--http-port" for word in words):
        flags += ["--http-port", "0"]
    return flags


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, int]]:
    """One server on model_repository/, as `make run` serves it; the docs' ports -> real ones."""
    log_dir = tmp_path_factory.mktemp("docs-server")
    flags = make_run_flags()
    server = ServerProcess(REPO_ROOT / "model_repository", *flags, log_dir=log_dir)
    try:
        server.start()
    except BaseException:
        server.stop()  # closes its log file; the error says why it did not start
        raise
    mapping = {8001: server.port, 8002: server.metrics_port}
    if "--http-port" in flags:
        listening = _HTTP_LISTENING.search(server.logs())
        assert listening, f"the server takes --http-port but logged no HTTP port:\n{server.logs()}"
        mapping[8000] = int(listening[1])
    yield mapping
    assert server.stop() == 0, server.logs()


def test_make_run_polls_the_repository() -> None:
    # README promises that `make run` serves a model folder dropped in; the examples run so.
    flags = make_run_flags()
    assert flags[flags.index("--model-control-mode") + 1] == "poll"


@pytest.mark.parametrize("path", DOC_FILES, ids=[p.name for p in DOC_FILES])
def test_every_block_says_whether_it_runs(path: Path) -> None:
    # A shell block tagged `sh`, `shell` or nothing would silently escape the test.
    langs = {(lang, first + 1) for first, _, lang, _ in fences(path, path.read_text())}
    unknown = sorted((line, lang) for lang, line in langs if lang not in _KNOWN_LANGUAGES)
    assert not unknown, (
        f"{path.name}: blocks (line, tag) not in {sorted(_KNOWN_LANGUAGES)}: {unknown}"
    )


def test_the_docs_have_runnable_examples() -> None:
    # Guards against a parser that silently finds nothing (and so passes everything).
    readme = [b for b in BLOCKS if b.path.name == "README.md" and b.path.parent == REPO_ROOT]
    assert {b.lang for b in readme} == {"bash", "python"}
    assert any(b.expected is not None for b in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_docs_example(block: Block, ports: dict[int, int], tmp_path: Path) -> None:
    check_block(block, ports, make_workdir(tmp_path / "work"))


# --- the checker itself must be able to fail --------------------------------------------------


def test_a_wrong_model_name_fails(ports: dict[int, int], tmp_path: Path) -> None:
    text = "```bash\nonnxserve infer tabulr --url localhost:8001 -i features='[[0.5]]'\n```\n"
    [block] = parse_blocks(REPO_ROOT / "README.md", text)
    with pytest.raises(AssertionError, match="NOT_FOUND: unknown model 'tabulr'"):
        check_block(block, ports, make_workdir(tmp_path / "work"))


def test_wrong_output_fails(ports: dict[int, int], tmp_path: Path) -> None:
    text = (
        "```bash\nonnxserve health --url localhost:8001 --model tabular\n```\n\n"
        "```text\nserver localhost:8001: live, not ready\n...\n```\n"
    )
    [block] = parse_blocks(REPO_ROOT / "README.md", text)
    with pytest.raises(AssertionError, match="expected stdout"):
        check_block(block, ports, make_workdir(tmp_path / "work"))


def test_output_wildcards() -> None:
    assert output_matches("a ... c\n...\nend", "a b b c\nx\ny\nend\n")
    assert output_matches("[[...]]", "[[3]]")
    assert not output_matches("a ... c", "a b d")
    assert not output_matches("one", "one\ntwo")
    assert not output_matches("[[3]]", "[[2]]")


def test_ports_are_rewritten_only_in_addresses() -> None:
    code = "url = 'localhost:8001'; curl 127.0.0.1:8000/v2; n = 8001; x = 'localhost:80011'"
    rewritten = rewrite_ports(code, {8000: 40000, 8001: 40001})
    assert rewritten == (
        "url = 'localhost:40001'; curl 127.0.0.1:40000/v2; n = 8001; x = 'localhost:80011'"
    )


# --- links between the pages -------------------------------------------------------------------

_LINK = re.compile(r"\]\((?!https?://|mailto:)([^)#\s]*)(?:#([^)\s]+))?\)")
# Pages the README and the index link before they are written (HTTP, deployment, cache, tools).
_PAGES_TO_COME = {"http.md", "deployment.md", "response-cache.md", "optimize-and-tune.md"}


def _anchors(path: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", path.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("path", DOC_FILES, ids=[p.name for p in DOC_FILES])
def test_links_resolve(path: Path) -> None:
    broken = []
    for target, anchor in _LINK.findall(path.read_text()):
        linked = (path.parent / target).resolve() if target else path
        if not linked.exists():
            if linked.parent != REPO_ROOT / "docs" or linked.name not in _PAGES_TO_COME:
                broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}#{anchor}")
    assert not broken, f"{path.relative_to(REPO_ROOT)}: broken links {broken}"
