"""docs/quickstart.md stays true: its command block and its Python block run as written, on the
model organism, and what the page says to expect holds."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from xlvlm.cli import main
from xlvlm.evaluation import evaluate_predictions

PAGE = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)


def test_quickstart_commands_run_as_written_and_do_what_the_page_says(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    session = next(block for block in _blocks("bash") if "xlvlm extract" in block)
    commands = [line for line in session.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(commands) >= 12 and all(c.startswith("xlvlm ") for c in commands), commands
    for command in commands:
        assert main([*shlex.split(command)[1:], *(["--quiet"] if _has_quiet(command) else [])]) == 0, command
    printed = capsys.readouterr().out
    assert "concept  0:" in printed or "concept 0:" in printed
    assert (tmp_path / "runs" / "report.html").is_file() and (tmp_path / "runs" / "concepts" / "concept_grid.png").is_file()
    report = (tmp_path / "runs" / "report.html").read_text()
    assert "eval-steered" in report and "eval-gated" in report  # step 7 shows what step 6 measured

    ungated = evaluate_predictions("runs/steered.jsonl", baseline="runs/base.jsonl", source="yes", target="no")
    gated = evaluate_predictions("runs/gated.jsonl", baseline="runs/base.jsonl", source="yes", target="no")
    assert ungated["targeted"]["success"] >= 0.95
    colour = ungated["targeted"]["side_effects"]["color"]
    assert colour["baseline_accuracy"] >= 0.95 and colour["accuracy"] <= 0.05  # "colour accuracy 100% -> 0%"
    assert gated["targeted"]["success"] >= 0.95
    assert gated["targeted"]["side_effects_overall"]["unchanged"] == 1.0

    python = _blocks("python")
    assert len(python) == 1
    exec(compile(python[0], str(PAGE), "exec"), {})
    assert "no" in capsys.readouterr().out


def _has_quiet(command: str) -> bool:
    """Commands with a progress bar take --quiet here (the page leaves it out for readability)."""
    return command.split()[1] in ("extract", "concepts") or command.startswith("xlvlm steer apply")
