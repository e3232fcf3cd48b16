"""A stage's outputs are one unit: a rerun killed (SIGKILL) or failing at any point leaves the
previous complete outputs, or nothing that looks complete, and the report checks which.

Once, a `concepts` rerun killed mid-way left its result file saying 3 concepts beside a
dictionary of 6 and a redrawn grid, and `report` showed them together.
"""

import faulthandler
import importlib
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from tqdm.auto import tqdm

import xlvlm
from xlvlm.cli import main
from xlvlm.concepts import ConceptDictionary
from xlvlm.errors import XlvlmError
from xlvlm.io import UNIT_PREFIX, OutputUnit, check_outputs
from xlvlm.report import build_report
from tests.scale.conftest import write_jsonl, write_store

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks the test process")

def _killed_at(tmp_path, module: str, attr: str, nth: int, argv: list[str]) -> None:
    """Run ``xlvlm argv`` in a forked child (everything already imported: no start-up cost) and
    SIGKILL it just before the ``nth`` call of ``module.attr``."""
    marker = tmp_path / f"stalled-{attr}-{nth}"

    def work():
        torch.set_num_threads(1)  # no OpenMP pool in a forked child
        tqdm.set_lock(threading.RLock())  # not the semaphore shared with the parent
        faulthandler.dump_traceback_later(120, exit=True)  # a hang shows where, and fails
        target = importlib.import_module(module)
        real, calls = getattr(target, attr), [0]

        def stalled(*args, **kwargs):
            calls[0] += 1
            if calls[0] == nth:
                marker.touch()
                time.sleep(120)
            return real(*args, **kwargs)

        setattr(target, attr, stalled)
        os._exit(main(argv))

    child = multiprocessing.get_context("fork").Process(target=work, daemon=True)
    child.start()
    deadline = time.monotonic() + 120
    while not marker.exists() and child.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marker.exists(), f"never reached {module}.{attr} #{nth} (exit code {child.exitcode})"
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)


def _store(path, samples, seed=0):
    rows = torch.rand(8, 6, generator=torch.Generator().manual_seed(seed)) + 0.1
    rows[:4, 0] += 3
    write_store(path, {"final": rows}, shard_rows=4,
                fields=[{"image": s["image"], "prompt": s["prompt"], "answer": s.get("answer")} for s in samples[:8]])
    return path


def _concepts(store, out, k):
    return ["concepts", "--features", str(store), "--layer", "final", "--method", "kmeans", "--n-concepts", str(k),
            "--no-text-similarity", "--quiet", "--out", str(out), "--overwrite"]


def _assert_complete(result: Path):
    """The unit behind ``result`` is whole: every file it lists is there, unchanged."""
    assert check_outputs(result)
    outputs = json.loads(result.read_text())["outputs"]
    assert outputs and all((result.parent / name).is_file() for name in outputs)


def test_concepts_rerun_killed_keeps_the_old_unit(samples, tmp_path):
    store, run = _store(tmp_path / "store", samples), tmp_path / "run"
    out = run / "concepts"
    assert main(_concepts(store, out, 3)) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # Killed after the new dictionary (6 concepts) was saved, while the grid is drawn.
    _killed_at(tmp_path, "xlvlm.figures", "concept_grid", 1, _concepts(store, out, 6))
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()
             and not any(part.startswith(UNIT_PREFIX) for part in p.relative_to(out).parts)}
    assert after == before  # the old unit, byte for byte
    assert ConceptDictionary.load(out / "dictionary").n_concepts == 3
    _assert_complete(out / "result.json")
    assert "dictionary of 3 concepts" in build_report(run).read_text()
    # The next run finishes, clears the killed run's work folder, and replaces the unit.
    assert main(_concepts(store, out, 6)) == 0
    assert ConceptDictionary.load(out / "dictionary").n_concepts == 6
    assert not list(out.glob(UNIT_PREFIX + "*"))
    _assert_complete(out / "result.json")
    assert "--n-concepts 6" in (out / "command.txt").read_text()
    assert "dictionary of 6 concepts" in build_report(run).read_text()


@pytest.mark.parametrize("nth", [1, 3, 5])
def test_concepts_killed_while_replacing_leaves_nothing_that_looks_complete(nth, samples, tmp_path):
    store, run = _store(tmp_path / "store", samples), tmp_path / "run"
    out = run / "concepts"
    assert main(_concepts(store, out, 3)) == 0
    _killed_at(tmp_path, "xlvlm.io", "_remove", nth, _concepts(store, out, 6))
    assert not (out / "result.json").exists()
    with pytest.raises(XlvlmError, match="no stage outputs found"):
        build_report(run)


def test_shift_rerun_killed_keeps_the_old_unit(samples, tmp_path):
    original, finetuned = _store(tmp_path / "o", samples, 0), _store(tmp_path / "f", samples, 1)
    out = tmp_path / "run" / "shift"

    def shift(k):
        return ["shift", "--original", str(original), "--finetuned", str(finetuned), "--layer", "final",
                "--method", "kmeans", "--n-concepts", str(k), "--out", str(out), "--overwrite"]

    assert main(shift(2)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    _killed_at(tmp_path, "xlvlm.shift.outputs", "bar_chart", 2, shift(3))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    _assert_complete(out / "result.json")
    build_report(tmp_path / "run")


def test_sweep_rerun_killed_keeps_the_old_unit(tiny_dir, samples, tmp_path):
    vlm = xlvlm.load_vlm(tiny_dir("llava"))
    for name, rows in (("source", samples[:4]), ("target", samples[4:])):
        xlvlm.extract(vlm, rows, layers=[1], out=tmp_path / name, progress=False)
    data = write_jsonl(tmp_path / "d.jsonl", [dict(samples[0], answer="yes", answer_type="yes/no"),
                                              dict(samples[1], answer="red", answer_type="color")])
    out = tmp_path / "run" / "sweep"

    def sweep(alphas):
        return ["steer", "sweep", "--model", str(tiny_dir("llava")), "--data", str(data), "--source",
                str(tmp_path / "source"), "--target", str(tmp_path / "target"), "--layers", "1", "--alphas", alphas,
                "--max-new-tokens", "2", "--quiet", "--out", str(out), "--overwrite"]

    assert main(sweep("1,2")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    _killed_at(tmp_path, "xlvlm.steer.run", "predict", 3, sweep("4,8"))  # baseline and alpha 4 done
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in out.glob("pred_*")) == ["pred_mean-diff_L1_a1.jsonl", "pred_mean-diff_L1_a2.jsonl"]
    _assert_complete(out / "result.json")
    build_report(tmp_path / "run")


# ---- the mechanism, in process ------------------------------------------------------------------
def _unit(folder, files: dict, result: dict, owned=("*.png", "command.txt")):
    with OutputUnit(folder, "result.json", owned) as unit:
        for name, text in files.items():
            (unit.work / name).parent.mkdir(parents=True, exist_ok=True)
            (unit.work / name).write_text(text)
        (unit.work / "result.json").write_text(json.dumps(result))
        unit.commit()


def test_a_failure_at_any_step_of_the_commit_leaves_old_or_nothing(tmp_path, monkeypatch):
    import xlvlm.io

    real = xlvlm.io._remove
    step = 0
    while True:
        step += 1
        folder = tmp_path / f"run{step}"
        _unit(folder, {"a.png": "old a", "b.png": "old b", "sub/c.txt": "old c"}, {"n": 1})
        (folder / "mine.txt").write_text("the user's")
        calls = {"n": 0}

        def failing(path):
            calls["n"] += 1
            if calls["n"] == step:
                raise OSError(28, "No space left on device")
            return real(path)

        monkeypatch.setattr(xlvlm.io, "_remove", failing)
        try:
            _unit(folder, {"a.png": "new a", "sub/c.txt": "new c"}, {"n": 2})
            failed = False
        except OSError:
            failed = True
        monkeypatch.setattr(xlvlm.io, "_remove", real)
        result = folder / "result.json"
        assert (folder / "mine.txt").read_text() == "the user's"
        if not failed:
            assert json.loads(result.read_text())["n"] == 2 and not (folder / "b.png").exists()
            _assert_complete(result)
            break
        assert not result.exists()  # the old result went first: nothing looks complete
        assert step < 20


def test_report_refuses_files_that_do_not_belong_to_their_result(tmp_path):
    folder = tmp_path / "run" / "stage"
    _unit(folder, {"grid.png": "new", "command.txt": "xlvlm ..."}, {"n": 1})
    assert check_outputs(folder / "result.json")
    (folder / "grid.png").write_text("from another run")
    with pytest.raises(XlvlmError) as info:
        check_outputs(folder / "result.json")
    assert "grid.png: not the file result.json was written with" in str(info.value)
    (folder / "grid.png").unlink()
    with pytest.raises(XlvlmError, match="grid.png: missing"):
        check_outputs(folder / "result.json")
    assert not check_outputs(tmp_path / f"{UNIT_PREFIX}x" / "concepts.json")  # an unfinished rerun's


def test_only_work_folders_of_finished_processes_are_removed(tmp_path):
    child = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    child.start()
    child.join()
    dead, running = tmp_path / f"{UNIT_PREFIX}{child.pid}-abc", tmp_path / f"{UNIT_PREFIX}{os.getpid()}-def"
    for folder in (dead, running):
        folder.mkdir(parents=True)
    _unit(tmp_path, {"a.png": "a"}, {"n": 1})
    assert not dead.exists() and running.exists()  # a concurrent run's work is not pulled away
