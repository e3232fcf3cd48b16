"""Every code block of README.md and docs/*.md runs as written, page after page, in one folder
that starts empty (as a reader following them would), on the model organism.

The rules the pages follow:

- ```python blocks run in order, in one namespace per page (like a notebook);
- ```bash blocks run line by line, each line an `xlvlm ...` command (``\\`` continues a line,
  ``#`` starts a comment), through the command line's own entry point;
- blocks without a language are output, file layouts or synopses with placeholders: never run;
- a block that cannot run here says why on the line just above its fence, as
  ``<!-- not run by tests: REASON -->`` (a GPU, the hub, a server that runs until stopped, a
  block another test runs with its own checks); :data:`SKIPPED` lists them by page, so a new
  skip is a visible change of this file.

A failure names the page, the block's number (1-based, counting every fenced block of the page)
and its line.
"""

from __future__ import annotations

import re
import shlex
import traceback
from pathlib import Path

import pytest

from xlvlm.cli import main

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
SKIP = re.compile(r"<!--\s*not run by tests:\s*(.+?)\s*-->\s*$")
RUNNABLE = {"python", "bash", "sh", "shell"}

# page -> how many blocks it marks as not run (the reasons are next to the blocks)
SKIPPED = {
    "README.md": 1,            # make demo / make test: build .venv, run everything
    "docs/concepts.md": 2,     # a Gemma Scope 2 SAE and Gemma 3 from the hub
    "docs/data.md": 1,         # datasets that do not ship (COCO, VQAv2, a folder of photos)
    "docs/patching.md": 2,     # a 7B model from the hub and photos that do not ship
    "docs/quickstart.md": 3,   # make demo; the session and its Python: tests/workflows/test_quickstart.py
    "docs/recipes.md": 6,      # 7B models and Gemma Scope: a GPU and the hub
    "docs/scale.md": 1,        # torchrun on 4 GPUs
    "docs/serve.md": 2,        # a server that runs until stopped
}


def blocks(page: str) -> list[tuple[int, int, str, str, str | None]]:
    """(number, first line, language, code, reason not run or None) of every fenced block."""
    text = (ROOT / page).read_text(encoding="utf-8")
    found = []
    for number, match in enumerate(FENCE.finditer(text), start=1):
        line = text.count("\n", 0, match.start()) + 1
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        reason = SKIP.search(before)
        found.append((number, line, match.group(1), match.group(2), reason.group(1) if reason else None))
    return found


def commands(code: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", code)
    return [line for line in (shlex.split(raw, comments=True) for raw in joined.splitlines()) if line]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("reader")  # one folder for every page: outputs must not collide


def test_skipped_blocks_are_the_listed_ones():
    marked = {page: sum(1 for *_, reason in blocks(page) if reason) for page in PAGES}
    assert {page: n for page, n in marked.items() if n} == SKIPPED


@pytest.mark.parametrize("page", PAGES)
def test_page_runs_as_written(page, folder, monkeypatch):
    monkeypatch.chdir(folder)
    for earlier in PAGES[:PAGES.index(page)]:  # a reader got here through the pages before (-k runs them too)
        if earlier not in _RUN:
            _run_page(earlier)
    _run_page(page)


_RUN: set[str] = set()


def _run_page(page: str) -> None:
    import torch

    _RUN.add(page)
    threads = torch.get_num_threads()  # a page may call xlvlm.use_safe_threads(): later tests keep theirs
    try:
        _run_blocks(page)
    finally:
        torch.set_num_threads(threads)


def _run_blocks(page: str) -> None:
    namespace: dict = {"__name__": "__main__"}
    for number, line, language, code, reason in blocks(page):
        if reason or language not in RUNNABLE:
            continue
        where = f"{page} block {number} (line {line})"
        if language == "python":
            try:
                exec(compile(code, f"{page}:block {number}", "exec"), namespace)
            except Exception:
                pytest.fail(f"{where} raised:\n{traceback.format_exc(limit=-3)}", pytrace=False)
            continue
        for argv in commands(code):
            if argv[0] != "xlvlm":
                pytest.fail(f"{where}: `{' '.join(argv)}` is not an xlvlm command; make it one, or mark the "
                            f"block <!-- not run by tests: REASON -->", pytrace=False)
            assert main(argv[1:]) == 0, f"{where}: {shlex.join(argv)}"  # bars stay off: not a terminal
