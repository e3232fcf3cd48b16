"""docs/api.md's notebook section runs as written: in-memory extraction, concepts, a steering
vector from two in-memory stores, generation under steering, saving."""

import re
from pathlib import Path

import xlvlm
from xlvlm.features import InMemoryStore

PAGE = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_notebook_block_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    section = PAGE.read_text(encoding="utf-8").split("## In a notebook", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    scope: dict = {}
    exec(compile(block, str(PAGE), "exec"), scope)
    assert isinstance(scope["yes"], InMemoryStore) and len(scope["yes"]) == 60
    assert (tmp_path / "runs" / "notebook" / "yes" / "manifest.json").is_file()
    scope["saved"].verify()
    xlvlm.FeatureStore("runs/notebook/mine").verify()
    answers = eval(capsys.readouterr().out.strip().splitlines()[-1])  # the printed list of answers
    assert len(answers) == 4 and all(isinstance(a, str) for a in answers)
    assert len(scope["words"]) == 4
